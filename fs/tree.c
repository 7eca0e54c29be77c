/*
 * fs/tree.c — the mount's tree, and the owner of inode numbers.
 *
 * mfs_tree_build() walks a model description once and lays it out as
 * doc/design.md §3.1/§3.2 say.  The result is an immutable array of stored
 * entries (struct mfs_tnode, 32 bytes each) plus these side structures:
 *
 *   children[]   for each directory, its stored children's indices in
 *                display order (a directory's u.dir.first is where its run
 *                starts), so readdir at offset i is children[first + i];
 *   slots[]      an open-addressing hash table keyed by (parent index,
 *                name) over the children of directories with more than
 *                SMALL_DIR stored children, so lookup is O(1) whatever the
 *                size of the directory (nodes/ of a big graph has 100,000
 *                entries); in smaller ones it compares names along the
 *                children[] run (while building, every entry is hashed);
 *   own_dir[], own_id[]  the stored tensor directories: the files every
 *                one of them has (data dtype shape name sha256 stats) are not stored;
 *   vd_*[]       the leaf tensor directories, not stored either (below);
 *   pool         the strings the tree made itself: encoded names that differ
 *                from the model's bytes, shapes, joined input/output lists.
 *
 * A TENSOR'S OWN FILES
 *
 * Most entries of a big checkpoint would be the six files of each tensor
 * directory (1.2 of 1.9 million for 300,000 tensors), all alike.  They are
 * numbered after the n stored entries: own directory r (u.dir.own = r + 1)
 * has entries n + 6r + k, k indexing own_names[], listed before its stored
 * children (or after those it held before it became a tensor's: own_late).
 * mfs_tree_node() makes such an entry in the caller's buffer from the
 * tensor; a shape, an unknown dtype's name and a name that needs escapes
 * are generated on each read (MFS_TNF_GEN).  Once built, a tensor
 * directory that holds nothing but those files and is named by the end of
 * its tensor's name (weight/ of "...up_proj.weight") leaves nodes[] too
 * (make_leaves): its parent, tensor id and name length are enough to make
 * it (vd_node).  Index order still puts every parent before its children,
 * which is all inode.c needs to map numbers by path across rebuilds.
 *
 * Everything else points into the description: a node's `op_type` file is
 * the description's op_type string plus an implicit '\n' (MFS_TNF_NL) —
 * unless it holds a byte that text values escape (doc/design.md §3.5:
 * '%', controls), when the pool holds its escaped copy — a
 * tensor's `data` file is a pointer to its struct mfs_tensor, a weights/
 * directory named "conv2" points into the middle of "layer4.1.conv2.weight".
 * So memory grows with the number of entries, never with tensor bytes.
 *
 * INODE NUMBERS
 *
 * A tree is immutable: when the mount's structure changes (a prop created,
 * removed or renamed, a commit, an abort) the daemon builds a new one.
 * Entry indices therefore mean something only within one tree, and they
 * never reach the kernel directly: fs/inode.c owns the inode numbers and
 * maps them onto each new tree by path, so a file keeps its number across
 * rebuilds.  For the first tree that mapping is ino = index + 1
 * (mfs_tree_ino / mfs_tree_index below), which is all a read-only mount
 * ever uses.  Format ids never become inode numbers either: a graph node's
 * directory, a tensor's `data` file and its `dtype` file are just entries.
 *
 * HOW IT WORKS
 *
 * While building, each directory keeps a singly linked list of its children
 * (first child, last child, next-sibling array) so that entries may be added
 * to any directory in any order (weights/ paths interleave), and every
 * insertion first asks the hash table whether the name is taken.  A name
 * that is taken gets "~1", "~2", ... (the model's `name` file stays the
 * truth).  At the end the lists are flattened into children[] and the
 * build-only arrays are freed.  Any allocation failure is sticky: the
 * builder records the first error and every later step becomes a no-op.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "names.h"
#include "tree.h"
#include "modelfs/view.h"

#define NONE 0u                          /* "no entry": index 0 is the root, never a child */
#define MAX_ENTRIES (UINT32_MAX - 1u)

/* The limit in force: MAX_ENTRIES but in tests (mfs_tree_test_limit). */
static uint32_t max_entries = MAX_ENTRIES;

void mfs_tree_test_limit(uint32_t max)
{
	max_entries = max && max < MAX_ENTRIES ? max : MAX_ENTRIES;
}

/* ---------------------------------------------------------------- pool */

/*
 * The tree's own strings, carved from 64 KiB chunks (big strings get a chunk
 * of their own) and freed together.
 */
struct chunk {
	struct chunk *next;
	size_t used, cap;
	char data[];
};

struct pool {
	struct chunk *head;
	uint64_t bytes;
};

static char *pool_alloc(struct pool *p, size_t len)
{
	struct chunk *c = p->head;
	if (!c || c->cap - c->used < len) {
		size_t cap = len > 4096 ? len : 65536;
		struct chunk *n = malloc(sizeof(*n) + cap);
		if (!n)
			return NULL;
		n->used = 0;
		n->cap = cap;
		p->bytes += sizeof(*n) + cap;
		if (c && len > 4096) {
			/* Keep filling the current chunk: link the big one behind it. */
			n->next = c->next;
			c->next = n;
		} else {
			n->next = c;
			p->head = n;
		}
		c = n;
	}
	char *s = c->data + c->used;
	c->used += len;
	return s;
}

static void pool_free(struct pool *p)
{
	struct chunk *c = p->head;
	while (c) {
		struct chunk *n = c->next;
		free(c);
		c = n;
	}
	p->head = NULL;
}

/* ---------------------------------------------------------------- tree */

struct mfs_tree {
	const struct mfs_desc *desc;    /* borrowed */
	struct mfs_tnode *nodes;
	uint32_t n;             /* stored entries; leaf directories and own files
	                         * are numbered after them */
	uint32_t n_vd;          /* leaf tensor directories (entries n .. n + n_vd - 1) */
	uint32_t *vd_parent;    /* n_vd: each one's parent */
	uint32_t *vd_tid;       /* n_vd: its tensor's index in desc->tensors */
	uint8_t *vd_len;        /* n_vd: its name's length: the end of the tensor's name */
	uint32_t n_own, own_cap;        /* stored tensor directories with own files */
	uint32_t *own_dir;      /* n_own: the directory of each */
	uint32_t *own_id;       /* n_own: its tensor's index in desc->tensors, or
	                         * OWN_X when that is not where it is (see own_x) */
	struct own_x *own_x;    /* n_x, by own: the tensors of OWN_X */
	uint32_t n_x, x_cap;
	struct own_late *late;  /* n_late, by own: own files listed after other children */
	uint32_t n_late, late_cap;
	uint32_t *children;
	uint32_t *slots;        /* entry index, NONE = empty */
	uint32_t mask;          /* slots has mask + 1 entries, a power of two */
	bool scan_small;        /* built: entries of small directories are not in
	                         * slots[], lookup scans their children */
	uint64_t seed;
	struct pool pool;
	uint32_t props_first;   /* entries props_first .. + n_props - 1 are desc->props[] */
	uint32_t n_props;
	/* Graph fields (model.h): entry fld_at[k] shows field fld_id[k];
	 * ascending entries, as they are added in order. */
	uint32_t *fld_at;
	uint64_t *fld_id;
	uint32_t n_fld, fld_cap;
};

/*
 * The files a tensor directory has of its own, in this order.  They are not
 * stored, and neither is a tensor directory that holds nothing else and is
 * named by the end of its tensor's name (most `weight/`): the index space of
 * a built tree is
 *
 *   0 .. n - 1                 stored entries (nodes[])
 *   n + v                      leaf tensor directory v (vd_*[v])
 *   n + n_vd + N_OWN * v + k   own file k of leaf directory v
 *   n + 7 n_vd + N_OWN * r + k own file k of stored directory r
 *                              (u.dir.own = r + 1, own_dir[r])
 *
 * so every parent comes before its children.  While building, n_vd is 0
 * and every tensor directory is stored; finish() makes the leaves.
 */
#define N_OWN 6u

/*
 * Own files are listed first, unless the directory held children before it
 * became a tensor's (tensor "p.q" before "p"): then they come after those
 * `pos` children, as they did when they were stored.  Rare, so kept aside.
 */
struct own_late {
	uint32_t own, pos;
};

/* Flag of a directory that has a struct own_late. */
#define TNF_LATE 0x80

/* A tensor that desc->tensors does not list at its id. */
#define OWN_X UINT32_MAX
struct own_x {
	uint32_t own;
	const struct mfs_tensor *t;
};
/*
 * sha256 and stats are views (fs/view.c): computed from the tensor's bytes
 * by the daemon, never by the tree, which only gives them a place (their
 * entries are empty generated texts; fs/entry.c classifies them).
 */
enum { OWN_DATA, OWN_DTYPE, OWN_SHAPE, OWN_NAME, OWN_SHA256, OWN_STATS };
static const char *const own_names[N_OWN] = {"data", "dtype", "shape", "name", "sha256",
                                             "stats"};
static const uint8_t own_lens[N_OWN] = {4, 5, 5, 4, 6, 5};

/* Which own file `name` is, or -1. */
static int own_slot(const char *name, size_t len)
{
	for (unsigned k = 0; k < N_OWN; k++)
		if (len == own_lens[k] && !memcmp(name, own_names[k], len))
			return (int)k;
	return -1;
}

/* Is `name` one of the own files directory `dir` (stored) shows? */
static bool own_taken(const struct mfs_tree *t, uint32_t dir, const char *name, size_t len)
{
	return t->nodes[dir].kind == MFS_TN_DIR && t->nodes[dir].u.dir.own &&
	       own_slot(name, len) >= 0;
}

/* Entries stored and made. */
static uint64_t total(const struct mfs_tree *t)
{
	return (uint64_t)t->n + (uint64_t)(N_OWN + 1) * t->n_vd + (uint64_t)N_OWN * t->n_own;
}

/* The first own file of a leaf directory, of a stored one. */
static uint32_t leaf_own_base(const struct mfs_tree *t)
{
	return t->n + t->n_vd;
}

static uint32_t stored_own_base(const struct mfs_tree *t)
{
	return t->n + (N_OWN + 1) * t->n_vd;
}

/* The name of leaf directory v: the end of its tensor's name. */
static const char *vd_name(const struct mfs_tree *t, uint32_t v)
{
	const char *nm = t->desc->tensors[t->vd_tid[v]]->name;
	return nm + strlen(nm) - t->vd_len[v];
}

/* Is entry i (stored or leaf) named name[0 .. len) (and in `parent`)? */
static bool key_is(const struct mfs_tree *t, uint32_t i, const uint32_t *parent, const char *name,
                   size_t len)
{
	if (i < t->n) {
		const struct mfs_tnode *e = &t->nodes[i];
		return (!parent || e->parent == *parent) && e->name_len == len &&
		       !memcmp(e->name, name, len);
	}
	uint32_t v = i - t->n;
	return (!parent || t->vd_parent[v] == *parent) && t->vd_len[v] == len &&
	       !memcmp(vd_name(t, v), name, len);
}

/* Is a dtype's name a string that lives forever (mfs_desc_dtype_name)? */
static bool dtype_static(int32_t dtype)
{
	return mfs_dtype_known(dtype);
}

/* The tensor of own directory number r (u.dir.own = r + 1). */
static const struct mfs_tensor *own_tensor(const struct mfs_tree *t, uint32_t r)
{
	if (t->own_id[r] != OWN_X)
		return t->desc->tensors[t->own_id[r]];
	uint32_t lo = 0, hi = t->n_x;      /* own_x[] is sorted by own */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (t->own_x[mid].own < r + 1)
			lo = mid + 1;
		else
			hi = mid;
	}
	return t->own_x[lo].t;          /* there: tensor_contents() put it */
}

/* Own file `idx`: its tensor, directory and k.  Returns k. */
static unsigned own_of(const struct mfs_tree *t, uint32_t idx, const struct mfs_tensor **ts,
                       uint32_t *dir)
{
	if (idx < stored_own_base(t)) {
		uint32_t w = idx - leaf_own_base(t);
		*ts = t->desc->tensors[t->vd_tid[w / N_OWN]];
		*dir = t->n + w / N_OWN;
		return w % N_OWN;
	}
	uint32_t w = idx - stored_own_base(t);
	*ts = own_tensor(t, w / N_OWN);
	*dir = t->own_dir[w / N_OWN];
	return w % N_OWN;
}

/* Make leaf directory v in `e`. */
static void vd_node(const struct mfs_tree *t, uint32_t v, struct mfs_tnode *e)
{
	memset(e, 0, sizeof(*e));
	e->name = vd_name(t, v);
	e->name_len = t->vd_len[v];
	e->parent = t->vd_parent[v];
	e->kind = MFS_TN_DIR;
	e->flags = MFS_TNF_TENSOR;
	e->u.dir.count = N_OWN;
}

/* Make own entry `idx` (leaf_own_base <= idx < total) in `e`. */
static void own_node(const struct mfs_tree *t, uint32_t idx, struct mfs_tnode *e)
{
	const struct mfs_tensor *ts;
	uint32_t dir;
	unsigned k = own_of(t, idx, &ts, &dir);
	memset(e, 0, sizeof(*e));
	e->name = own_names[k];
	e->name_len = own_lens[k];
	e->parent = dir;
	e->flags = MFS_TNF_OWN;
	e->kind = MFS_TN_TEXT;
	switch (k) {
	case OWN_DATA:
		e->kind = MFS_TN_TENSOR;
		e->u.tensor = ts;
		break;
	case OWN_DTYPE:
		e->flags |= MFS_TNF_NL;
		e->u.text.len = strlen(mfs_desc_dtype_name(t->desc, ts->dtype));
		if (dtype_static(ts->dtype))
			e->u.text.p = mfs_desc_dtype_name(t->desc, ts->dtype);
		else
			e->flags |= MFS_TNF_GEN;
		break;
	case OWN_SHAPE:
		e->flags |= MFS_TNF_NL | MFS_TNF_GEN;
		e->u.text.len = mfs_dims_format(NULL, 0, ts->dims, ts->rank);
		break;
	case OWN_SHA256:
	case OWN_STATS:
		e->flags |= MFS_TNF_GEN;        /* empty here: the daemon fills it */
		break;
	default: {
		const char *nm = ts->name ? ts->name : "";
		size_t len = strlen(nm);
		e->flags |= MFS_TNF_NL;
		if (mfs_text_plain(nm, len)) {
			e->u.text.p = nm;
			e->u.text.len = len;
		} else {
			e->flags |= MFS_TNF_GEN;
			e->u.text.len = mfs_text_escape(NULL, 0, nm, len);
		}
		break;
	}
	}
}

/*
 * Write generated text of own entry `idx` (len bytes, as own_node() said)
 * and a NUL into `buf` of `cap` > len bytes.
 */
static void own_text(const struct mfs_tree *t, uint32_t idx, char *buf, size_t cap)
{
	const struct mfs_tensor *ts;
	uint32_t dir;
	switch (own_of(t, idx, &ts, &dir)) {
	case OWN_DTYPE:
		snprintf(buf, cap, "%s", mfs_desc_dtype_name(t->desc, ts->dtype));
		break;
	case OWN_SHAPE:
		mfs_dims_format(buf, cap, ts->dims, ts->rank);
		break;
	case OWN_SHA256:
	case OWN_STATS:
		buf[0] = '\0';
		break;
	default: {
		const char *nm = ts->name ? ts->name : "";
		mfs_text_escape(buf, cap, nm, strlen(nm));
		break;
	}
	}
}

/*
 * The directories the last weights/ path went through (weight_dir): tensors
 * come in file order, and neighbours share most of their path
 * ("model.layers.7.mlp.experts.12.up_proj" and ".down_proj"), so most
 * segments are found here without a hash lookup.
 */
#define WCACHE_DEPTH 32

struct wseg {
	const char *seg;        /* the segment's bytes, in the tensor's name */
	size_t len;
	uint32_t parent, dir;   /* the lookup of `seg` in `parent` gave `dir` */
};

struct build {
	struct mfs_tree *t;
	const struct mfs_desc *d;
	uint32_t cap;           /* of t->nodes */
	uint32_t *next;         /* next sibling, parallel to t->nodes */
	int err;                /* first failure; then everything is a no-op */
	struct wseg wcache[WCACHE_DEPTH];
	size_t wcache_n;
	const uint64_t *hidden; /* ids of tensors not shown, ascending */
	size_t n_hidden;
};

static bool hidden(const struct build *b, uint64_t id)
{
	size_t lo = 0, hi = b->n_hidden;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->hidden[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < b->n_hidden && b->hidden[lo] == id;
}

static uint32_t slot_of(const struct mfs_tree *t, uint32_t parent, const char *name, size_t len)
{
	uint64_t h = mfs_name_hash(name, len, t->seed ^ ((uint64_t)parent * 0x9e3779b97f4a7c15ull));
	return (uint32_t)(h ^ (h >> 32)) & t->mask;
}

/*
 * A built tree hashes only the children of directories with more than
 * SMALL_DIR stored children; lookup in the others compares names along
 * their children[] run.  Most directories of a big checkpoint hold one to
 * three (a tensor's `<proj>/` and `weight/`), so this keeps the table to a
 * fraction of the entries.
 */
#define SMALL_DIR 8u

/* Children of stored directory `d` in children[] (own files are not). */
static uint32_t stored_children(const struct mfs_tnode *d)
{
	return d->u.dir.count - (d->u.dir.own ? N_OWN : 0);
}

/* The child named name[0 .. len) of stored directory `parent` (not an own file). */
static uint32_t find(const struct mfs_tree *t, uint32_t parent, const char *name, size_t len)
{
	if (t->scan_small) {
		const struct mfs_tnode *d = &t->nodes[parent];
		uint32_t nc = stored_children(d);
		if (nc <= SMALL_DIR) {
			const uint32_t *c = t->children + d->u.dir.first;
			for (uint32_t k = 0; k < nc; k++)
				if (key_is(t, c[k], NULL, name, len))
					return c[k];
			return NONE;
		}
	}
	for (uint32_t s = slot_of(t, parent, name, len);; s = (s + 1) & t->mask) {
		uint32_t i = t->slots[s];
		if (i == NONE)
			return NONE;
		if (key_is(t, i, &parent, name, len))
			return i;
	}
}

static void slot_put(struct mfs_tree *t, uint32_t i)
{
	struct mfs_tnode buf;
	const struct mfs_tnode *e = i < t->n ? &t->nodes[i] : (vd_node(t, i - t->n, &buf), &buf);
	uint32_t s = slot_of(t, e->parent, e->name, e->name_len);
	while (t->slots[s] != NONE)
		s = (s + 1) & t->mask;
	t->slots[s] = i;
}

/* Keep the table at most 3/4 full. */
static int slots_reserve(struct mfs_tree *t, uint32_t n)
{
	uint64_t want = (uint64_t)n + n / 3 + 1;
	if (t->slots && want <= (uint64_t)t->mask + 1)
		return 0;
	uint64_t cap = 64;
	while (cap < want)
		cap *= 2;
	if (cap > (1ull << 32))
		return -EFBIG;
	uint32_t *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	free(t->slots);
	t->slots = slots;
	t->mask = (uint32_t)(cap - 1);
	for (uint32_t i = 1; i < t->n; i++)
		slot_put(t, i);
	return 0;
}

static void set_err(struct build *b, int rc)
{
	if (!b->err)
		b->err = rc;
}

/* Copy `len` bytes into the pool. */
static const char *keep(struct build *b, const char *s, size_t len)
{
	if (b->err)
		return NULL;
	char *p = pool_alloc(&b->t->pool, len ? len : 1);
	if (!p) {
		set_err(b, -ENOMEM);
		return NULL;
	}
	memcpy(p, s, len);
	return p;
}

/*
 * Append an entry named `name[0 .. len)` (final: encoded, unique in
 * `parent`, stored where it will stay) to `parent`.  Returns its index, or
 * NONE after a failure.
 */
static uint32_t add(struct build *b, uint32_t parent, const char *name, size_t len, int kind,
                    unsigned flags)
{
	struct mfs_tree *t = b->t;
	if (b->err)
		return NONE;
	if (total(t) >= max_entries) {
		set_err(b, -EFBIG);
		return NONE;
	}
	if (len == 0 || len > MFS_NAME_MAX) {
		set_err(b, -EINVAL);    /* a bug here, never the model's doing */
		return NONE;
	}
	if (t->n == b->cap) {
		uint32_t cap = b->cap < MAX_ENTRIES / 2 ? b->cap * 2 : MAX_ENTRIES;
		struct mfs_tnode *nodes = realloc(t->nodes, (size_t)cap * sizeof(*nodes));
		if (nodes)
			t->nodes = nodes;
		uint32_t *next = realloc(b->next, (size_t)cap * sizeof(*next));
		if (next)
			b->next = next;
		if (!nodes || !next) {
			set_err(b, -ENOMEM);
			return NONE;
		}
		b->cap = cap;
	}
	int rc = slots_reserve(t, t->n + 1);
	if (rc < 0) {
		set_err(b, rc);
		return NONE;
	}
	uint32_t i = t->n++;
	struct mfs_tnode *e = &t->nodes[i];
	memset(e, 0, sizeof(*e));
	e->name = name;
	e->name_len = (uint8_t)len;
	e->parent = parent;
	e->kind = (uint8_t)kind;
	e->flags = (uint8_t)flags;
	b->next[i] = NONE;
	slot_put(t, i);

	/* Build-time list: dir.first = first child, dir.n_subdirs = last child. */
	struct mfs_tnode *p = &t->nodes[parent];
	if (p->u.dir.count++ == 0)
		p->u.dir.first = i;
	else
		b->next[p->u.dir.n_subdirs] = i;
	p->u.dir.n_subdirs = i;
	return i;
}

/*
 * The n-th spelling of an encoded component: itself, then "base~1",
 * "base~2", ...  A base too long for its suffix is cut before it, never
 * inside a %XX escape.  Returns the length written to `out`.
 */
static size_t spelling(char *out, const char *base, size_t len, unsigned n)
{
	if (n == 0) {
		memcpy(out, base, len);
		return len;
	}
	char suffix[16];
	size_t sl = (size_t)snprintf(suffix, sizeof(suffix), "~%u", n);
	size_t keep_len = len;
	if (keep_len + sl > MFS_NAME_MAX) {
		keep_len = MFS_NAME_MAX - sl;
		if (keep_len >= 1 && base[keep_len - 1] == '%')
			keep_len -= 1;
		else if (keep_len >= 2 && base[keep_len - 2] == '%')
			keep_len -= 2;
	}
	memcpy(out, base, keep_len);
	memcpy(out + keep_len, suffix, sl);
	return keep_len + sl;
}

/*
 * Encode a model-provided name for a component of at most `max` bytes.
 * When the encoding is the name itself, *out points at the model's bytes
 * (no copy); otherwise at `buf`.
 */
static size_t encode(const char **out, char buf[MFS_NAME_MAX + 1], const char *name, size_t len,
                     size_t max)
{
	if (mfs_name_is_plain(name, len, max)) {
		*out = name;
		return len;
	}
	*out = buf;
	return mfs_name_encode(buf, max, name, len);
}

/*
 * Add a new entry under an already-encoded name `enc` (which lives in the
 * description when `stable`, else in a scratch buffer), with "~N" when the
 * name is taken.
 */
static uint32_t add_unique_enc(struct build *b, uint32_t parent, const char *enc, size_t len,
                               bool stable, int kind, unsigned flags)
{
	if (b->err)
		return NONE;
	if (find(b->t, parent, enc, len) == NONE && !own_taken(b->t, parent, enc, len)) {
		const char *name = stable ? enc : keep(b, enc, len);
		return name ? add(b, parent, name, len, kind, flags) : NONE;
	}
	char cand[MFS_NAME_MAX + 16];
	for (unsigned n = 1;; n++) {
		size_t cl = spelling(cand, enc, len, n);
		if (find(b->t, parent, cand, cl) == NONE && !own_taken(b->t, parent, cand, cl)) {
			const char *name = keep(b, cand, cl);
			return name ? add(b, parent, name, cl, kind, flags) : NONE;
		}
	}
}

/* Add an entry for a model-provided name: encoded, made unique. */
static uint32_t add_named(struct build *b, uint32_t parent, const char *name, size_t len, int kind,
                          unsigned flags)
{
	char buf[MFS_NAME_MAX + 1];
	const char *enc;
	size_t el = encode(&enc, buf, name, len, MFS_NAME_MAX);
	return add_unique_enc(b, parent, enc, el, enc == name, kind, flags);
}

/* A fixed name ("dtype", "nodes") in a directory that cannot have it yet. */
static uint32_t add_fixed(struct build *b, uint32_t parent, const char *name, int kind,
                          unsigned flags)
{
	return add(b, parent, name, strlen(name), kind, flags);
}

/* The directory `name` in `parent`: the existing one (merge) or a new one. */
static uint32_t dir_get(struct build *b, uint32_t parent, const char *name, size_t len,
                        bool stable)
{
	if (b->err)
		return NONE;
	uint32_t i = find(b->t, parent, name, len);
	if (i != NONE && b->t->nodes[i].kind == MFS_TN_DIR)
		return i;
	return add_unique_enc(b, parent, name, len, stable, MFS_TN_DIR, 0);
}

static void set_text(struct build *b, uint32_t i, const char *p, uint64_t len, bool nl)
{
	if (b->err || i == NONE)
		return;
	struct mfs_tnode *e = &b->t->nodes[i];
	e->u.text.p = p ? p : "";
	e->u.text.len = p ? len : 0;
	if (nl)
		e->flags |= MFS_TNF_NL;
}

/* A text file with a fixed name: `s` plus '\n' when `nl`. */
static uint32_t text_fixed(struct build *b, uint32_t parent, const char *name, const char *s,
                           uint64_t len, bool nl, unsigned flags)
{
	uint32_t i = add_fixed(b, parent, name, MFS_TN_TEXT, flags);
	set_text(b, i, s, len, nl);
	return i;
}

/* Entry `e` shows graph field `id` of the main graph. */
static void note_field(struct build *b, uint32_t e, uint64_t id)
{
	struct mfs_tree *t = b->t;
	if (b->err || e == NONE)
		return;
	if (t->n_fld == t->fld_cap) {
		uint32_t cap = t->fld_cap ? t->fld_cap * 2 : 16;
		uint32_t *at = realloc(t->fld_at, (size_t)cap * sizeof(*at));
		if (at)
			t->fld_at = at;
		uint64_t *ids = at ? realloc(t->fld_id, (size_t)cap * sizeof(*ids)) : NULL;
		if (!ids) {
			set_err(b, -ENOMEM);
			return;
		}
		t->fld_id = ids;
		t->fld_cap = cap;
	}
	t->fld_at[t->n_fld] = e;
	t->fld_id[t->n_fld++] = id;
}

/*
 * A value of the model as a file shows it (doc/design.md §3.5): the bytes
 * themselves when nothing needs escaping (no copy), else an escaped copy in
 * the pool.  *len gets the text's length.
 */
static const char *escaped(struct build *b, const char *s, size_t n, size_t *len)
{
	*len = n;
	if (mfs_text_plain(s, n))
		return s;
	size_t need = mfs_text_escape(NULL, 0, s, n);
	char *p = b->err ? NULL : pool_alloc(&b->t->pool, need + 1);
	if (!p) {
		set_err(b, -ENOMEM);
		return NULL;
	}
	mfs_text_escape(p, need + 1, s, n);
	*len = need;
	return p;
}

/* A text file holding the string `s` of the model, escaped, and a newline. */
static uint32_t line_fixed(struct build *b, uint32_t parent, const char *name, const char *s,
                           unsigned flags)
{
	size_t len;
	const char *text = escaped(b, s ? s : "", s ? strlen(s) : 0, &len);
	return text ? text_fixed(b, parent, name, text, len, true, flags) : NONE;
}

/* Strings of the model joined as lines, each escaped: "a\nb\n".  One string
 * needs no copy. */
static uint32_t list_fixed(struct build *b, uint32_t parent, const char *name,
                           char *const *strs, size_t n)
{
	if (n == 0)
		return text_fixed(b, parent, name, "", 0, false, 0);
	if (n == 1)
		return line_fixed(b, parent, name, strs[0], 0);
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += (strs[i] ? mfs_text_escape(NULL, 0, strs[i], strlen(strs[i])) : 0) + 1;
	if (total > SIZE_MAX / 2) {
		set_err(b, -EFBIG);
		return NONE;
	}
	char *p = b->err ? NULL : pool_alloc(&b->t->pool, (size_t)total + 1);
	if (!p) {
		set_err(b, -ENOMEM);
		return NONE;
	}
	char *q = p;
	for (size_t i = 0; i < n; i++) {
		const char *str = strs[i] ? strs[i] : "";
		size_t l = mfs_text_escape(q, (size_t)(total + 1 - (uint64_t)(q - p)), str, strlen(str));
		q[l] = '\n';
		q += l + 1;
	}
	return text_fixed(b, parent, name, p, total, false, 0);
}

/* A pool copy of a formatted shape, for a `shape` file (plus '\n'). */
static uint32_t dims_file(struct build *b, uint32_t parent, const int64_t *dims, size_t rank,
                          unsigned flags)
{
	size_t len = mfs_dims_format(NULL, 0, dims, rank);
	char *p = b->err ? NULL : pool_alloc(&b->t->pool, len + 1);
	if (!p) {
		set_err(b, -ENOMEM);
		return NONE;
	}
	mfs_dims_format(p, len + 1, dims, rank);
	return text_fixed(b, parent, "shape", p, len, true, flags);
}

static uint32_t shape_file(struct build *b, uint32_t parent, const struct mfs_shape *shape)
{
	size_t len = mfs_shape_format(NULL, 0, shape);
	char *p = b->err ? NULL : pool_alloc(&b->t->pool, len + 1);
	if (!p) {
		set_err(b, -ENOMEM);
		return NONE;
	}
	mfs_shape_format(p, len + 1, shape);
	return text_fixed(b, parent, "shape", p, len, true, 0);
}

/* The name of an unknown number is a per-thread buffer: copy it. */
static uint32_t dtype_file(struct build *b, uint32_t parent, int32_t dtype, unsigned flags)
{
	const char *s = mfs_desc_dtype_name(b->t->desc, dtype);
	size_t len = strlen(s);
	if (!dtype_static(dtype))
		s = keep(b, s, len);
	return text_fixed(b, parent, "dtype", s, len, true, flags);
}

/* ------------------------------------------------------------ contents */

static void graph_contents(struct build *b, uint32_t dir, const struct mfs_graph *g);

/*
 * data, dtype, shape, name of a tensor, in its directory `dir`: not stored,
 * only counted (own_node() makes them), and listed before what else the
 * directory holds.
 */
static void tensor_contents(struct build *b, uint32_t dir, const struct mfs_tensor *t)
{
	struct mfs_tree *tr = b->t;
	if (b->err || dir == NONE)
		return;
	struct mfs_tnode *d = &tr->nodes[dir];
	d->flags |= MFS_TNF_TENSOR;
	if (!t)
		return;
	if (d->u.dir.own) {
		set_err(b, -EINVAL);    /* a bug here: can_host() keeps tensors apart */
		return;
	}
	for (unsigned k = 0; k < N_OWN; k++) {
		if (find(tr, dir, own_names[k], own_lens[k]) != NONE) {
			set_err(b, -EINVAL);
			return;
		}
	}
	if (total(tr) + N_OWN > max_entries) {
		set_err(b, -EFBIG);
		return;
	}
	if (tr->n_own == tr->own_cap) {
		uint32_t cap = tr->own_cap ? tr->own_cap * 2 : 256;
		uint32_t *dirs = realloc(tr->own_dir, (size_t)cap * sizeof(*dirs));
		if (dirs)
			tr->own_dir = dirs;
		uint32_t *ts = realloc(tr->own_id, (size_t)cap * sizeof(*ts));
		if (ts)
			tr->own_id = ts;
		if (!dirs || !ts) {
			set_err(b, -ENOMEM);
			return;
		}
		tr->own_cap = cap;
	}
	if (d->u.dir.count) {
		if (tr->n_late == tr->late_cap) {
			uint32_t cap = tr->late_cap ? tr->late_cap * 2 : 16;
			struct own_late *l = realloc(tr->late, (size_t)cap * sizeof(*l));
			if (!l) {
				set_err(b, -ENOMEM);
				return;
			}
			tr->late = l;
			tr->late_cap = cap;
		}
		tr->late[tr->n_late++] = (struct own_late){tr->n_own + 1, d->u.dir.count};
		d->flags |= TNF_LATE;
	}
	tr->own_dir[tr->n_own] = dir;
	const struct mfs_desc *desc = b->d;
	if (t->id < desc->n_tensors && t->id < OWN_X && desc->tensors[t->id] == t) {
		tr->own_id[tr->n_own] = (uint32_t)t->id;
	} else {
		if (tr->n_x == tr->x_cap) {
			uint32_t cap = tr->x_cap ? tr->x_cap * 2 : 16;
			struct own_x *x = realloc(tr->own_x, (size_t)cap * sizeof(*x));
			if (!x) {
				set_err(b, -ENOMEM);
				return;
			}
			tr->own_x = x;
			tr->x_cap = cap;
		}
		tr->own_x[tr->n_x++] = (struct own_x){tr->n_own + 1, t};
		tr->own_id[tr->n_own] = OWN_X;
	}
	d->u.dir.own = ++tr->n_own;
}

/* dtype, shape, name, values/, indices/ of a sparse tensor. */
static void sparse_contents(struct build *b, uint32_t dir, const struct mfs_sparse *s)
{
	if (b->err || dir == NONE)
		return;
	b->t->nodes[dir].flags |= MFS_TNF_TENSOR;
	if (!s)
		return;
	dtype_file(b, dir, s->dtype, MFS_TNF_OWN);
	dims_file(b, dir, s->dims, s->rank, MFS_TNF_OWN);
	line_fixed(b, dir, "name", s->name, MFS_TNF_OWN);
	uint32_t v = add_fixed(b, dir, "values", MFS_TN_DIR, MFS_TNF_OWN);
	tensor_contents(b, v, s->values);
	uint32_t x = add_fixed(b, dir, "indices", MFS_TN_DIR, MFS_TNF_OWN);
	tensor_contents(b, x, s->indices);
}

/*
 * inputs/<name>/, outputs/<name>/, values/<name>/: dtype, shape, [doc_string].
 * `dt_kind`, `sh_kind`: the graph fields its dtype and shape are (main graph
 * inputs and outputs), or 0.
 */
static void value_dir(struct build *b, uint32_t parent, const struct mfs_value *v, size_t i,
                      unsigned dt_kind, unsigned sh_kind, unsigned nm_kind)
{
	const char *name = v->name ? v->name : "";
	uint32_t d = add_named(b, parent, name, strlen(name), MFS_TN_DIR, 0);
	if (nm_kind && i <= MFS_FIELD_I_MAX)
		note_field(b, d, MFS_FIELD_ID(nm_kind, i, 0));  /* mv renames the value */
	uint32_t e = line_fixed(b, d, "dtype", v->dtype, 0);
	if (dt_kind && i <= MFS_FIELD_I_MAX)
		note_field(b, e, MFS_FIELD_ID(dt_kind, i, 0));
	e = shape_file(b, d, &v->shape);
	if (sh_kind && i <= MFS_FIELD_I_MAX)
		note_field(b, e, MFS_FIELD_ID(sh_kind, i, 0));
	if (v->doc_string) {
		e = line_fixed(b, d, "doc_string", v->doc_string, 0);
		if (sh_kind && i <= MFS_FIELD_I_MAX)
			note_field(b, e, MFS_FIELD_ID(sh_kind == MFS_FIELD_INPUT_SHAPE ?
			                              MFS_FIELD_INPUT_DOC : MFS_FIELD_OUTPUT_DOC, i, 0));
	}
}

static void value_dirs(struct build *b, uint32_t dir, const struct mfs_value *v, size_t n,
                       const bool *skip, unsigned dt_kind, unsigned sh_kind, unsigned nm_kind)
{
	for (size_t i = 0; i < n && !b->err; i++)
		if (!(skip && skip[i]))
			value_dir(b, dir, &v[i], i, dt_kind, sh_kind, nm_kind);
}

/* "0/", "1/", ... for TENSORS, GRAPHS and SPARSE_TENSORS attributes. */
static uint32_t index_dir(struct build *b, uint32_t parent, size_t i)
{
	char buf[32];
	size_t len = (size_t)snprintf(buf, sizeof(buf), "%zu", i);
	const char *name = keep(b, buf, len);
	return name ? add(b, parent, name, len, MFS_TN_DIR, 0) : NONE;
}

static void attr_entry(struct build *b, uint32_t attrs, const struct mfs_attr *a, uint64_t fid)
{
	const char *name = a->name ? a->name : "";
	size_t len = strlen(name);
	uint32_t d;
	switch (a->type) {
	case MFS_ATTR_TENSOR:
		d = add_named(b, attrs, name, len, MFS_TN_DIR, 0);
		tensor_contents(b, d, a->n_tensors ? a->tensors[0] : NULL);
		break;
	case MFS_ATTR_SPARSE_TENSOR:
		d = add_named(b, attrs, name, len, MFS_TN_DIR, 0);
		sparse_contents(b, d, a->n_sparse ? a->sparse[0] : NULL);
		break;
	case MFS_ATTR_GRAPH:
		d = add_named(b, attrs, name, len, MFS_TN_DIR, 0);
		if (a->n_graphs)
			graph_contents(b, d, a->graphs[0]);
		break;
	case MFS_ATTR_TENSORS:
		d = add_named(b, attrs, name, len, MFS_TN_DIR, 0);
		for (size_t k = 0; k < a->n_tensors && !b->err; k++)
			tensor_contents(b, index_dir(b, d, k), a->tensors[k]);
		break;
	case MFS_ATTR_SPARSE_TENSORS:
		d = add_named(b, attrs, name, len, MFS_TN_DIR, 0);
		for (size_t k = 0; k < a->n_sparse && !b->err; k++)
			sparse_contents(b, index_dir(b, d, k), a->sparse[k]);
		break;
	case MFS_ATTR_GRAPHS:
		d = add_named(b, attrs, name, len, MFS_TN_DIR, 0);
		for (size_t k = 0; k < a->n_graphs && !b->err; k++)
			graph_contents(b, index_dir(b, d, k), a->graphs[k]);
		break;
	default:
		d = add_named(b, attrs, name, len, MFS_TN_TEXT, 0);
		set_text(b, d, a->text, a->text_len, false);
		if (fid)
			note_field(b, d, fid);
		break;
	}
}

/* `node`: the main graph's node index the attributes are of, or -1. */
static void attr_entries(struct build *b, uint32_t attrs, const struct mfs_attr *a, size_t n,
                         int64_t node)
{
	for (size_t i = 0; i < n && !b->err; i++) {
		bool field = node >= 0 && (uint64_t)node <= MFS_FIELD_I_MAX && i <= MFS_FIELD_J_MAX;
		attr_entry(b, attrs, &a[i],
		           field ? MFS_FIELD_ID(MFS_FIELD_NODE_ATTR, (uint64_t)node, i) : 0);
	}
}

/* Decimal digits of n (at least 1). */
static int digits(size_t n)
{
	int w = 1;
	while (n >= 10) {
		n /= 10;
		w++;
	}
	return w;
}

/* nodes/<NNNN>-<op_type>/ for a graph or a function. */
static void node_dirs(struct build *b, uint32_t dir, const struct mfs_node *nodes, size_t n)
{
	int width = digits(n) > 4 ? digits(n) : 4;
	for (size_t i = 0; i < n && !b->err; i++) {
		const struct mfs_node *nd = &nodes[i];
		const char *op = nd->op_type ? nd->op_type : "";
		char name[MFS_NAME_MAX + 1];
		int pl = snprintf(name, sizeof(name), "%0*zu-", width, i);
		size_t len = (size_t)pl + mfs_name_encode(name + pl, MFS_NAME_MAX - (size_t)pl, op,
		                                          strlen(op));
		/* Unique by construction: the number is. */
		const char *kept = keep(b, name, len);
		uint32_t d = kept ? add(b, dir, kept, len, MFS_TN_DIR, 0) : NONE;
		bool main = b->d->graph && nodes == b->d->graph->nodes &&
		            (b->d->flags & MFS_DESC_GRAPH) &&
		            i <= MFS_FIELD_I_MAX;
		line_fixed(b, d, "op_type", op, 0);
		line_fixed(b, d, "domain", nd->domain, 0);
		uint32_t e = line_fixed(b, d, "name", nd->name, 0);
		if (main)
			note_field(b, e, MFS_FIELD_ID(MFS_FIELD_NODE_NAME, i, 0));
		if (nd->doc_string) {
			e = line_fixed(b, d, "doc_string", nd->doc_string, 0);
			if (main)
				note_field(b, e, MFS_FIELD_ID(MFS_FIELD_NODE_DOC, i, 0));
		}
		list_fixed(b, d, "inputs", nd->inputs, nd->n_inputs);
		list_fixed(b, d, "outputs", nd->outputs, nd->n_outputs);
		uint32_t attrs = add_fixed(b, d, "attrs", MFS_TN_DIR, 0);
		attr_entries(b, attrs, nd->attrs, nd->n_attrs, main ? (int64_t)i : -1);
	}
}

/* --------------------------------------------------------------- weights */

static const char *const tensor_own[] = {"data", "dtype", "shape", "name", "sha256", "stats",
                                         NULL};
static const char *const sparse_own[] = {"dtype", "shape", "name", "values", "indices", NULL};

/* Can an existing directory become the directory of a tensor with `own` entries? */
static bool can_host(const struct build *b, uint32_t d, const char *const *own)
{
	const struct mfs_tnode *e = &b->t->nodes[d];
	if (e->kind != MFS_TN_DIR || (e->flags & (MFS_TNF_OWN | MFS_TNF_TENSOR)))
		return false;
	for (; *own; own++)
		if (find(b->t, d, *own, strlen(*own)) != NONE)
			return false;
	return true;
}

/*
 * The weights/ directory of tensor `name` (doc/design.md §3.1): its split
 * path, merging with directories other tensors made, with "~N" on a segment
 * that would land on a tensor's own entry (`data` beside data) or on a
 * directory that already holds a tensor.  Returns the directory, which the
 * caller fills.
 */
static uint32_t weight_dir(struct build *b, uint32_t weights, const char *name,
                           const char *const *own)
{
	struct mfs_split s;
	const char *seg, *next_seg;
	size_t seg_len, next_len;
	uint32_t cur = weights;
	size_t depth = 0;
	mfs_split_init(&s, name, strlen(name));
	bool have = mfs_split_next(&s, &seg, &seg_len);
	while (have && !b->err) {
		bool more = mfs_split_next(&s, &next_seg, &next_len);
		/*
		 * A directory on the way (not the tensor's own) is a pure function
		 * of its parent and its segment once it exists: entries are never
		 * removed and never change kind, so the previous path's answer at
		 * this depth stands when both are the same.
		 */
		struct wseg *w = depth < WCACHE_DEPTH ? &b->wcache[depth] : NULL;
		if (more && w && depth < b->wcache_n && w->parent == cur && w->len == seg_len &&
		    !memcmp(w->seg, seg, seg_len)) {
			cur = w->dir;
			depth++;
			seg = next_seg;
			seg_len = next_len;
			have = more;
			continue;
		}
		if (w && depth < b->wcache_n)
			b->wcache_n = depth;
		char buf[MFS_NAME_MAX + 1], cand[MFS_NAME_MAX + 16];
		const char *enc;
		size_t el = encode(&enc, buf, seg, seg_len, MFS_NAME_MAX);
		uint32_t found = NONE;
		for (unsigned n = 0; found == NONE && !b->err; n++) {
			const char *cn = n ? cand : enc;
			size_t cl = n ? spelling(cand, enc, el, n) : el;
			uint32_t c = find(b->t, cur, cn, cl);
			if (own_taken(b->t, cur, cn, cl))
				continue;       /* `data` beside data: never a directory */
			if (c == NONE) {
				const char *kept = (n == 0 && enc == seg) ? seg : keep(b, cn, cl);
				if (kept)
					found = add(b, cur, kept, cl, MFS_TN_DIR, 0);
				break;
			}
			const struct mfs_tnode *e = &b->t->nodes[c];
			if (more ? (e->kind == MFS_TN_DIR && !(e->flags & MFS_TNF_OWN)) : can_host(b, c, own))
				found = c;
		}
		if (more && w && found != NONE) {
			*w = (struct wseg){seg, seg_len, cur, found};
			b->wcache_n = depth + 1;
		}
		depth++;
		cur = found;
		seg = next_seg;
		seg_len = next_len;
		have = more;
	}
	return b->err ? NONE : cur;
}

static void weights_contents(struct build *b, uint32_t dir, const struct mfs_graph *g)
{
	for (size_t i = 0; i < g->n_inits && !b->err; i++) {
		const struct mfs_tensor *t = g->inits[i];
		const char *name = t->name ? t->name : "";
		if (hidden(b, t->id)) {
			/* A deleted tensor: the directories on its way stay (empty
			 * until the commit), so that `rm -r weights/a/` finds the
			 * `a/` it removes after its tensors. */
			size_t n = strlen(name);
			while (n && (name[n - 1] == '.' || name[n - 1] == '/'))
				n--;
			while (n && name[n - 1] != '.' && name[n - 1] != '/')
				n--;
			if (n) {
				char *pre = strndup(name, n);
				if (!pre) {
					set_err(b, -ENOMEM);
					return;
				}
				/* Segments point into the name: keep the copy with the tree. */
				const char *kept = keep(b, pre, n + 1);  /* with its NUL */
				free(pre);
				if (kept)
					weight_dir(b, dir, kept, tensor_own);
			}
			continue;
		}
		uint32_t d = weight_dir(b, dir, name, tensor_own);
		tensor_contents(b, d, t);
	}
	for (size_t i = 0; i < g->n_sparse_inits && !b->err; i++) {
		const struct mfs_sparse *s = g->sparse_inits[i];
		uint32_t d = weight_dir(b, dir, s->name ? s->name : "", sparse_own);
		sparse_contents(b, d, s);
	}
}

/* ---------------------------------------------------------------- graphs */

/* inputs/ outputs/ values/ nodes/ weights/ of a graph, in `dir`. */
static void graph_dirs(struct build *b, uint32_t dir, const struct mfs_graph *g)
{
	bool main = g == b->d->graph && (b->d->flags & MFS_DESC_GRAPH);
	uint32_t d = dir_get(b, dir, "inputs", 6, true);
	value_dirs(b, d, g->inputs, g->n_inputs, g->input_is_init,
	           main ? MFS_FIELD_INPUT_DTYPE : 0, main ? MFS_FIELD_INPUT_SHAPE : 0,
	           main ? MFS_FIELD_INPUT_NAME : 0);
	d = dir_get(b, dir, "outputs", 7, true);
	value_dirs(b, d, g->outputs, g->n_outputs, NULL,
	           main ? MFS_FIELD_OUTPUT_DTYPE : 0, main ? MFS_FIELD_OUTPUT_SHAPE : 0,
	           main ? MFS_FIELD_OUTPUT_NAME : 0);
	d = dir_get(b, dir, "values", 6, true);
	value_dirs(b, d, g->values, g->n_values, NULL, 0, 0, main ? MFS_FIELD_VALUE_NAME : 0);
	d = dir_get(b, dir, "nodes", 5, true);
	node_dirs(b, d, g->nodes, g->n_nodes);
	d = dir_get(b, dir, "weights", 7, true);
	weights_contents(b, d, g);
}

/* A subgraph's directory (GRAPH attributes, training): name, [doc_string], dirs. */
static void graph_contents(struct build *b, uint32_t dir, const struct mfs_graph *g)
{
	if (b->err || dir == NONE || !g)
		return;
	line_fixed(b, dir, "name", g->name, 0);
	if (g->doc_string)
		line_fixed(b, dir, "doc_string", g->doc_string, 0);
	graph_dirs(b, dir, g);
}

/* ------------------------------------------------------------- functions */

static void function_dir(struct build *b, uint32_t functions, const struct mfs_function *f)
{
	char buf[MFS_NAME_MAX + 1];
	const char *enc;
	const char *domain = f->domain ? f->domain : "";
	size_t el = encode(&enc, buf, domain, strlen(domain), MFS_NAME_MAX);
	uint32_t dd = dir_get(b, functions, enc, el, enc == domain);
	const char *name = f->name ? f->name : "";
	uint32_t d = add_named(b, dd, name, strlen(name), MFS_TN_DIR, 0);
	line_fixed(b, d, "name", f->name, 0);
	line_fixed(b, d, "domain", f->domain, 0);
	if (f->doc_string)
		line_fixed(b, d, "doc_string", f->doc_string, 0);
	list_fixed(b, d, "inputs", f->inputs, f->n_inputs);
	list_fixed(b, d, "outputs", f->outputs, f->n_outputs);

	/* Declared attributes, then those that carry a default (IR 9). */
	size_t n = f->n_attributes + f->n_attr_defaults;
	if (f->n_attr_defaults == 0) {
		list_fixed(b, d, "attributes", f->attributes, f->n_attributes);
	} else if (!b->err) {
		char **all = malloc(n * sizeof(*all));
		if (!all) {
			set_err(b, -ENOMEM);
			return;
		}
		for (size_t i = 0; i < f->n_attributes; i++)
			all[i] = f->attributes[i];
		for (size_t i = 0; i < f->n_attr_defaults; i++)
			all[f->n_attributes + i] = f->attr_defaults[i].name ? f->attr_defaults[i].name : "";
		list_fixed(b, d, "attributes", all, n);
		free(all);
	}
	text_fixed(b, d, "opset", f->opset_text, f->opset_len, false, 0);
	uint32_t nodes = add_fixed(b, d, "nodes", MFS_TN_DIR, 0);
	node_dirs(b, nodes, f->nodes, f->n_nodes);
	if (f->n_attr_defaults) {
		uint32_t attrs = add_fixed(b, d, "attrs", MFS_TN_DIR, 0);
		attr_entries(b, attrs, f->attr_defaults, f->n_attr_defaults, -1);
	}
}

/* ------------------------------------------------------------------ root */

/*
 * The model's source files at the root, at their relative paths, so that a
 * loader opening the root model file finds its external data beside it.
 * These are real file names, used as they are; only what no file can be
 * called ("", ".", too long) is skipped or encoded.
 */
static bool is_file_name(const char *p, size_t len)
{
	return len >= 1 && len <= MFS_NAME_MAX && !(len == 1 && p[0] == '.') &&
	       !(len == 2 && p[0] == '.' && p[1] == '.');
}

static void source_file(struct build *b, size_t idx)
{
	const char *p = b->d->files[idx].path ? b->d->files[idx].path : "";
	uint32_t cur = MFS_TREE_ROOT;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (!slash) {
			uint32_t f = is_file_name(p, len)
			                     ? add_unique_enc(b, cur, p, len, true, MFS_TN_SRC, 0)
			                     : add_named(b, cur, p, len, MFS_TN_SRC, 0);
			if (f != NONE)
				b->t->nodes[f].u.src = idx;
			return;
		}
		if (is_file_name(p, len)) {
			cur = dir_get(b, cur, p, len, true);
		} else if (len > MFS_NAME_MAX) {
			char buf[MFS_NAME_MAX + 1];
			const char *enc;
			size_t el = encode(&enc, buf, p, len, MFS_NAME_MAX);
			cur = dir_get(b, cur, enc, el, enc == p);
		}
		/* "" and "." (a//b, ./b) add no level. */
		if (b->err)
			return;
		p = slash + 1;
	}
}

static void root_contents(struct build *b)
{
	const struct mfs_desc *d = b->d;

	/* Source files first: their names are fixed by the model's loader. */
	for (size_t i = 0; i < d->n_files && !b->err; i++)
		source_file(b, i);

	uint32_t meta = dir_get(b, MFS_TREE_ROOT, "meta", 4, true);
	for (size_t i = 0; i < d->n_meta && !b->err; i++) {
		const struct mfs_meta *m = &d->meta[i];
		const char *name = m->name ? m->name : "";
		/* "types/<key>": a file of the folder meta/types/ (GGUF);
		 * "pack/<key>": of meta/pack/ (a pack's place, model.c). */
		uint32_t in = meta;
		if (strncmp(name, "types/", 6) == 0) {
			in = dir_get(b, meta, "types", 5, true);
			name += 6;
		} else if (strncmp(name, "pack/", 5) == 0) {
			in = dir_get(b, meta, "pack", 4, true);
			name += 5;
		}
		uint32_t f = add_named(b, in, name, strlen(name), MFS_TN_TEXT, 0);
		set_text(b, f, m->value, m->len, false);
	}
	/* meta/sha256: the model file's digest, a view computed when read
	 * (fs/entry.c gives it its role; the tree holds no text for it). */
	uint32_t sha = add_unique_enc(b, meta, "sha256", 6, true, MFS_TN_TEXT, 0);
	if (sha != NONE)
		set_text(b, sha, "", 0, false);
	/* The graph drawn (fs/dot.c), for graph formats. */
	if (d->graph && (d->flags & MFS_DESC_GRAPH))
		add_unique_enc(b, meta, "graph.dot", 9, true, MFS_TN_DOT, 0);
	uint32_t props = dir_get(b, meta, "props", 5, true);
	b->t->props_first = b->t->n;
	for (size_t i = 0; i < d->n_props && !b->err; i++) {
		const struct mfs_meta *m = &d->props[i];
		const char *name = m->name ? m->name : "";
		uint32_t f = add_named(b, props, name, strlen(name), MFS_TN_TEXT, 0);
		size_t len = m->value ? m->len : 0;
		const char *text = m->value ? m->value : "";
		if (!(d->flags & MFS_DESC_PROPS_TEXT))
			text = escaped(b, text, len, &len);
		set_text(b, f, text, len, true);
		/* One entry per prop, in a run: mfs_tree_prop() counts on it. */
		if (!b->err && f != b->t->props_first + i)
			set_err(b, -EINVAL);
		b->t->n_props = (uint32_t)(i + 1);
	}

	const struct mfs_graph *g = d->graph;
	if (g && (d->flags & MFS_DESC_GRAPH)) {
		graph_dirs(b, MFS_TREE_ROOT, g);
	} else if (g) {
		/* A flat format (safetensors): tensors only (doc/design.md §3.2). */
		uint32_t w = dir_get(b, MFS_TREE_ROOT, "weights", 7, true);
		weights_contents(b, w, g);
	}

	if (d->n_functions) {
		uint32_t fd = dir_get(b, MFS_TREE_ROOT, "functions", 9, true);
		for (size_t i = 0; i < d->n_functions && !b->err; i++)
			function_dir(b, fd, &d->functions[i]);
	}
	if (d->n_training) {
		uint32_t td = dir_get(b, MFS_TREE_ROOT, "training", 8, true);
		for (size_t i = 0; i < d->n_training && !b->err; i++) {
			uint32_t di = index_dir(b, td, i);
			const struct mfs_training *tr = &d->training[i];
			if (tr->initialization)
				graph_contents(b, add_fixed(b, di, "initialization", MFS_TN_DIR, 0),
				               tr->initialization);
			if (tr->algorithm)
				graph_contents(b, add_fixed(b, di, "algorithm", MFS_TN_DIR, 0),
				               tr->algorithm);
		}
	}
}

/*
 * npy/: beside weights/, the same paths with each tensor directory a file
 * `<name>.npy` (an npy view: its header, then the tensor's bytes), for
 * every tensor of the root weights/ whose dtype numpy has
 * (mfs_npy_descr()).  A separate tree so that `rsync -a weights/` copies
 * every tensor once.  Directory names are the weights/ ones (the same
 * bytes, so nothing is copied); a file name is kept in the pool.  Depth is
 * bounded by NPY_DEPTH (deeper tensors have no view).
 */
#define NPY_DEPTH 256

static void npy_contents(struct build *b)
{
	struct mfs_tree *t = b->t;
	uint32_t w = find(t, MFS_TREE_ROOT, "weights", 7);
	if (b->err || w == NONE || t->nodes[w].kind != MFS_TN_DIR)
		return;
	uint32_t npy = NONE, n_own = t->n_own;
	uint32_t path[NPY_DEPTH];
	for (uint32_t r = 0; r < n_own && !b->err; r++) {
		const struct mfs_tensor *ts = own_tensor(t, r);
		if (!mfs_npy_descr(ts->dtype))
			continue;
		size_t depth = 0;
		uint32_t d = t->own_dir[r];
		while (d != w && d != MFS_TREE_ROOT && depth < NPY_DEPTH) {
			path[depth++] = d;
			d = t->nodes[d].parent;
		}
		if (d != w || depth == 0 || t->nodes[path[0]].name_len + 4u > MFS_NAME_MAX)
			continue;
		if (npy == NONE)
			npy = dir_get(b, MFS_TREE_ROOT, "npy", 3, true);
		uint32_t cur = npy;
		for (size_t k = depth; k-- > 1 && !b->err;) {
			/* Names point into the description or the pool: stable. */
			const char *nm = t->nodes[path[k]].name;
			size_t len = t->nodes[path[k]].name_len;
			cur = dir_get(b, cur, nm, len, true);
		}
		char nm[MFS_NAME_MAX + 1];
		size_t len = t->nodes[path[0]].name_len;
		memcpy(nm, t->nodes[path[0]].name, len);
		memcpy(nm + len, ".npy", 4);
		uint32_t f = add_unique_enc(b, cur, nm, len + 4, false, MFS_TN_NPY, 0);
		if (f != NONE)
			t->nodes[f].u.tensor = ts;
	}
}

/*
 * Flatten the build-time sibling lists into children[] and count each
 * directory's subdirectories.
 */
static int finish(struct build *b)
{
	struct mfs_tree *t = b->t;
	if (t->n < b->cap) {
		struct mfs_tnode *nodes = realloc(t->nodes, (size_t)t->n * sizeof(*nodes));
		if (nodes)
			t->nodes = nodes;
	}
	if (t->n_own < t->own_cap) {
		uint32_t *dirs = realloc(t->own_dir, (size_t)t->n_own * sizeof(*dirs) + 1);
		if (dirs)
			t->own_dir = dirs;
		uint32_t *ts = realloc(t->own_id, (size_t)t->n_own * sizeof(*ts) + 1);
		if (ts)
			t->own_id = ts;
		t->own_cap = t->n_own;
	}
	t->children = malloc((size_t)(t->n > 1 ? t->n - 1 : 1) * sizeof(*t->children));
	if (!t->children)
		return -ENOMEM;
	uint32_t pos = 0;
	for (uint32_t i = 0; i < t->n; i++) {
		struct mfs_tnode *e = &t->nodes[i];
		if (e->kind != MFS_TN_DIR)
			continue;
		uint32_t start = pos, subdirs = 0;
		for (uint32_t c = e->u.dir.count ? e->u.dir.first : NONE; c != NONE; c = b->next[c]) {
			t->children[pos++] = c;
			subdirs += t->nodes[c].kind == MFS_TN_DIR;
		}
		e->u.dir.first = start;
		e->u.dir.n_subdirs = subdirs;
		if (e->u.dir.own)
			e->u.dir.count += N_OWN;
	}
	free(b->next);
	b->next = NULL;
	return 0;
}

/*
 * May stored tensor directory `e` (own r) be a leaf directory: nothing in it
 * but its own files, no flag but MFS_TNF_TENSOR, its tensor listed at its id
 * and its name the end of the tensor's name (so that nothing of it but the
 * length needs keeping)?
 */
static bool leaf_ok(const struct mfs_tree *t, const struct mfs_tnode *e)
{
	uint32_t r = e->u.dir.own - 1;
	if (e->flags != MFS_TNF_TENSOR || stored_children(e) || t->own_id[r] == OWN_X)
		return false;
	const char *nm = t->desc->tensors[t->own_id[r]]->name;
	size_t len = nm ? strlen(nm) : 0;
	return e->name_len <= len && e->name == nm + len - e->name_len;
}

/*
 * Once children[] is final: take the leaf tensor directories out of
 * nodes[] (see N_OWN for the numbering), renumbering the stored entries
 * that follow them.  The hash table is stale afterwards (slots_build).
 */
static int make_leaves(struct mfs_tree *t)
{
	uint32_t n = t->n, nv = 0, s = 0;
	uint32_t *newown = malloc((t->n_own ? t->n_own : 1) * sizeof(*newown));
	uint32_t *map = malloc((size_t)n * sizeof(*map));
	if (!newown || !map) {
		free(newown);
		free(map);
		return -ENOMEM;
	}
	/* Stored own directories keep their order (own_x, late are sorted by it). */
	for (uint32_t r = 0; r < t->n_own; r++) {
		bool leaf = leaf_ok(t, &t->nodes[t->own_dir[r]]);
		newown[r] = leaf ? 0 : ++s;
		nv += leaf;
	}
	uint32_t kept = n - nv, v = 0, k = 0;
	uint32_t *vp = malloc((nv ? nv : 1) * sizeof(*vp));
	uint32_t *vt = malloc((nv ? nv : 1) * sizeof(*vt));
	uint8_t *vl = malloc(nv ? nv : 1);
	if (!vp || !vt || !vl) {
		free(vp);
		free(vt);
		free(vl);
		free(newown);
		free(map);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct mfs_tnode *e = &t->nodes[i];
		bool leaf = e->kind == MFS_TN_DIR && e->u.dir.own && !newown[e->u.dir.own - 1];
		map[i] = leaf ? kept + v++ : k++;
	}
	v = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct mfs_tnode e = t->nodes[i];
		e.parent = map[e.parent];       /* a parent is stored: leaves hold no entries */
		if (map[i] >= kept) {
			vp[v] = e.parent;
			vt[v] = t->own_id[e.u.dir.own - 1];
			vl[v] = e.name_len;
			v++;
			continue;
		}
		if (e.kind == MFS_TN_DIR && e.u.dir.own)
			e.u.dir.own = newown[e.u.dir.own - 1];
		t->nodes[map[i]] = e;           /* map[i] <= i: in place */
	}
	for (uint32_t c = 0; n > 1 && c < n - 1; c++)
		t->children[c] = map[t->children[c]];
	for (uint32_t r = 0; r < t->n_own; r++) {
		if (newown[r]) {
			t->own_dir[newown[r] - 1] = map[t->own_dir[r]];
			t->own_id[newown[r] - 1] = t->own_id[r];
		}
	}
	for (uint32_t i = 0; i < t->n_x; i++)
		t->own_x[i].own = newown[t->own_x[i].own - 1];
	for (uint32_t i = 0; i < t->n_late; i++)
		t->late[i].own = newown[t->late[i].own - 1];
	if (t->n_props)
		t->props_first = map[t->props_first];
	free(map);
	free(newown);
	t->n = kept;
	t->n_vd = nv;
	t->vd_parent = vp;
	t->vd_tid = vt;
	t->vd_len = vl;
	t->n_own = s;
	struct mfs_tnode *nodes = realloc(t->nodes, (size_t)(kept ? kept : 1) * sizeof(*nodes));
	if (nodes)
		t->nodes = nodes;
	if (s < t->own_cap) {
		uint32_t *dirs = realloc(t->own_dir, (size_t)s * sizeof(*dirs) + 1);
		if (dirs)
			t->own_dir = dirs;
		uint32_t *ids = realloc(t->own_id, (size_t)s * sizeof(*ids) + 1);
		if (ids)
			t->own_id = ids;
		t->own_cap = s;
	}
	return 0;
}

/*
 * Once the numbering is final: a table of only the children of big
 * directories (see SMALL_DIR), stored entries and leaves.
 */
static int slots_build(struct mfs_tree *t)
{
	uint64_t n = 0;
	uint32_t listed = t->n + t->n_vd;
	struct mfs_tnode buf;
	for (uint32_t i = 1; i < listed; i++)
		n += stored_children(&t->nodes[mfs_tree_node(t, i, &buf)->parent]) > SMALL_DIR;
	uint64_t want = n + n / 3 + 1, cap = 64;
	while (cap < want)
		cap *= 2;
	uint32_t *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	free(t->slots);
	t->slots = slots;
	t->mask = (uint32_t)(cap - 1);
	t->scan_small = true;
	for (uint32_t i = 1; i < listed; i++)
		if (stored_children(&t->nodes[mfs_tree_node(t, i, &buf)->parent]) > SMALL_DIR)
			slot_put(t, i);
	return 0;
}

/*
 * About how many entries the tree of `g` will have.  Sizing the arrays and
 * the hash table once up front spares the rehashes of a growing table, which
 * are random memory accesses over the whole table: on a 100,000-node graph
 * they cost more than the rest of the build.
 */
static uint64_t estimate_graph(const struct mfs_graph *g);

static uint64_t estimate_attrs(const struct mfs_attr *a, size_t n)
{
	uint64_t e = n;
	for (size_t i = 0; i < n; i++) {
		e += a[i].n_tensors * 2 + a[i].n_sparse * 10;
		for (size_t k = 0; k < a[i].n_graphs; k++)
			e += 2 + estimate_graph(a[i].graphs[k]);
	}
	return e;
}

static uint64_t estimate_nodes(const struct mfs_node *nodes, size_t n)
{
	uint64_t e = 0;
	for (size_t i = 0; i < n; i++)
		e += 8 + estimate_attrs(nodes[i].attrs, nodes[i].n_attrs);
	return e;
}

static uint64_t estimate_graph(const struct mfs_graph *g)
{
	if (!g)
		return 0;
	return 8 + 4 * ((uint64_t)g->n_inputs + g->n_outputs + g->n_values) +
	       estimate_nodes(g->nodes, g->n_nodes) + 2 * (uint64_t)g->n_inits +
	       10 * (uint64_t)g->n_sparse_inits;
}

static uint64_t estimate(const struct mfs_desc *d)
{
	uint64_t e = 16 + 2 * (uint64_t)d->n_files + d->n_meta + d->n_props + estimate_graph(d->graph);
	for (size_t i = 0; i < d->n_functions; i++)
		e += 12 + estimate_nodes(d->functions[i].nodes, d->functions[i].n_nodes) +
		     estimate_attrs(d->functions[i].attr_defaults, d->functions[i].n_attr_defaults);
	for (size_t i = 0; i < d->n_training; i++)
		e += 3 + estimate_graph(d->training[i].initialization) +
		     estimate_graph(d->training[i].algorithm);
	return e;
}

static uint64_t random_seed(void)
{
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
	}
	return seed;
}

int mfs_tree_build(struct mfs_tree **out, const struct mfs_desc *desc)
{
	return mfs_tree_build_hiding(out, desc, NULL, 0);
}

int mfs_tree_build_hiding(struct mfs_tree **out, const struct mfs_desc *desc,
                          const uint64_t *hidden, size_t n_hidden)
{
	*out = NULL;
	struct build b = {.d = desc, .hidden = hidden, .n_hidden = n_hidden};
	int rc;
	b.t = calloc(1, sizeof(*b.t));
	if (!b.t)
		return -ENOMEM;
	b.t->seed = random_seed();
	b.t->desc = desc;
	/* An estimate from a hostile count must not be one huge allocation up
	 * front: past 64 Mi entries the arrays grow as entries really come. */
	uint64_t est = estimate(desc);
	b.cap = est < 1024 ? 1024 : est > (1u << 26) ? (1u << 26) : (uint32_t)est;
	b.t->nodes = malloc((size_t)b.cap * sizeof(*b.t->nodes));
	b.next = malloc((size_t)b.cap * sizeof(*b.next));
	rc = (!b.t->nodes || !b.next) ? -ENOMEM : slots_reserve(b.t, b.cap);
	if (rc < 0)
		goto out;

	/* The root: empty name, its own parent, never in the hash table. */
	struct mfs_tnode *root = &b.t->nodes[0];
	memset(root, 0, sizeof(*root));
	root->name = "";
	root->kind = MFS_TN_DIR;
	b.next[0] = NONE;
	b.t->n = 1;

	root_contents(&b);
	npy_contents(&b);
	rc = b.err;
	if (rc < 0)
		goto out;
	rc = finish(&b);
	if (rc == 0)
		rc = make_leaves(b.t);
	if (rc == 0)
		rc = slots_build(b.t);
	if (rc < 0)
		goto out;
	*out = b.t;
	b.t = NULL;
out:
	free(b.next);
	mfs_tree_destroy(b.t);
	return rc;
}

void mfs_tree_destroy(struct mfs_tree *t)
{
	if (!t)
		return;
	pool_free(&t->pool);
	free(t->own_dir);
	free(t->own_id);
	free(t->own_x);
	free(t->vd_parent);
	free(t->vd_tid);
	free(t->vd_len);
	free(t->fld_at);
	free(t->fld_id);
	free(t->late);
	free(t->slots);
	free(t->children);
	free(t->nodes);
	free(t);
}

/* ---------------------------------------------------------------- queries */

bool mfs_tree_field(const struct mfs_tree *t, uint32_t idx, uint64_t *out)
{
	uint32_t lo = 0, hi = t->n_fld;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (t->fld_at[mid] < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo >= t->n_fld || t->fld_at[lo] != idx)
		return false;
	*out = t->fld_id[lo];
	return true;
}

bool mfs_tree_prop(const struct mfs_tree *t, uint32_t idx, size_t *out)
{
	if (idx < t->props_first || idx - t->props_first >= t->n_props)
		return false;
	*out = idx - t->props_first;
	return true;
}

uint32_t mfs_tree_count(const struct mfs_tree *t)
{
	return (uint32_t)total(t);     /* <= max_entries: the build checked */
}

const struct mfs_tnode *mfs_tree_node(const struct mfs_tree *t, uint64_t idx,
                                      struct mfs_tnode *buf)
{
	if (idx < t->n)
		return &t->nodes[idx];
	if (idx >= total(t))
		return NULL;
	if (idx < leaf_own_base(t))
		vd_node(t, (uint32_t)(idx - t->n), buf);
	else
		own_node(t, (uint32_t)idx, buf);
	return buf;
}

uint32_t mfs_tree_child(const struct mfs_tree *t, uint32_t dir, uint32_t i)
{
	if (dir >= t->n)        /* a leaf directory: its own files only */
		return leaf_own_base(t) + N_OWN * (dir - t->n) + i;
	const struct mfs_tnode *d = &t->nodes[dir];
	uint32_t own = d->u.dir.own;
	if (own) {
		uint32_t pos = 0;
		if (d->flags & TNF_LATE) {
			uint32_t lo = 0, hi = t->n_late;    /* late[] is sorted by own */
			while (lo < hi) {
				uint32_t mid = lo + (hi - lo) / 2;
				if (t->late[mid].own < own)
					lo = mid + 1;
				else
					hi = mid;
			}
			pos = lo < t->n_late && t->late[lo].own == own ? t->late[lo].pos : 0;
		}
		if (i >= pos && i - pos < N_OWN)
			return stored_own_base(t) + N_OWN * (own - 1) + (i - pos);
		if (i >= pos)
			i -= N_OWN;
	}
	return t->children[d->u.dir.first + i];
}

int mfs_tree_lookup(const struct mfs_tree *t, uint32_t dir, const char *name, size_t len,
                    uint32_t *out)
{
	if (dir >= total(t))
		return -ENOENT;
	bool leaf = dir >= t->n && dir < leaf_own_base(t);
	if (!leaf && (dir >= t->n || t->nodes[dir].kind != MFS_TN_DIR))
		return -ENOTDIR;        /* own entries are files */
	if (len > MFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (len == 0)
		return -ENOENT;
	int k = own_slot(name, len);
	if (leaf) {
		if (k < 0)
			return -ENOENT;
		*out = leaf_own_base(t) + N_OWN * (dir - t->n) + (uint32_t)k;
		return 0;
	}
	uint32_t own = t->nodes[dir].u.dir.own;
	if (own && k >= 0) {
		*out = stored_own_base(t) + N_OWN * (own - 1) + (uint32_t)k;
		return 0;
	}
	uint32_t i = find(t, dir, name, len);
	if (i == NONE)
		return -ENOENT;
	*out = i;
	return 0;
}

int mfs_tree_resolve(const struct mfs_tree *t, const char *path, uint32_t *out)
{
	uint32_t cur = MFS_TREE_ROOT;
	const char *p = path;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			struct mfs_tnode buf;
			cur = mfs_tree_node(t, cur, &buf)->parent;
		} else if (len && !(len == 1 && p[0] == '.')) {
			int rc = mfs_tree_lookup(t, cur, p, len, &cur);
			if (rc < 0)
				return rc;
		}
		if (!slash)
			break;
		p = slash + 1;
	}
	*out = cur;
	return 0;
}

uint64_t mfs_tree_size(const struct mfs_tree *t, uint32_t idx)
{
	struct mfs_tnode buf;
	const struct mfs_tnode *e = mfs_tree_node(t, idx, &buf);
	switch (e->kind) {
	case MFS_TN_DIR:
		return e->u.dir.count;
	case MFS_TN_TEXT:
		return e->u.text.len + ((e->flags & MFS_TNF_NL) != 0);
	case MFS_TN_TENSOR:
		return e->u.tensor->nbytes;
	case MFS_TN_DOT:
		return 0;       /* the daemon measures it (fs/dot.c) */
	case MFS_TN_NPY: {
		char h[MFS_NPY_HEADER_MAX];
		const struct mfs_tensor *ts = e->u.tensor;
		return mfs_npy_header(h, sizeof(h), ts->dtype, ts->dims, ts->rank) + ts->nbytes;
	}
	default:
		/* MFS_TN_SRC: the size the file had when the model was opened. */
		return t->desc->files[e->u.src].size;
	}
}

/* text_slice() of an entry `e` whose bytes are at `text`. */
static size_t slice(const struct mfs_tnode *e, const char *text, uint64_t off, size_t len,
                    const char **p, size_t *n, bool *nl)
{
	uint64_t tlen = e->u.text.len;
	*p = text;
	*n = 0;
	*nl = false;
	if (off < tlen) {
		*p = text + off;
		*n = tlen - off < len ? (size_t)(tlen - off) : len;
	}
	if ((e->flags & MFS_TNF_NL) && off <= tlen && *n < len && off + *n == tlen)
		*nl = true;
	return *n + *nl;
}

size_t mfs_tree_text_slice(const struct mfs_tree *t, uint32_t idx, uint64_t off, size_t len,
                           const char **p, size_t *n, bool *nl)
{
	struct mfs_tnode buf;
	const struct mfs_tnode *e = mfs_tree_node(t, idx, &buf);
	if (e->flags & MFS_TNF_GEN) {
		*p = "";
		*n = 0;
		*nl = false;
		return 0;
	}
	return slice(e, e->u.text.p, off, len, p, n, nl);
}

/*
 * The bytes of text entry `e` (index `idx`): its own when stored, else made
 * in `small` (cap bytes) or in a malloc'd buffer returned in *heap.  NULL
 * when that finds no memory.
 */
static const char *text_of(const struct mfs_tree *t, uint32_t idx, const struct mfs_tnode *e,
                           char *small, size_t cap, char **heap)
{
	*heap = NULL;
	if (!(e->flags & MFS_TNF_GEN))
		return e->u.text.p;
	char *b = small;
	if (e->u.text.len >= cap) {
		b = *heap = malloc((size_t)e->u.text.len + 1);
		if (!b)
			return NULL;
		cap = (size_t)e->u.text.len + 1;
	}
	own_text(t, idx, b, cap);
	return b;
}

size_t mfs_tree_text_read(const struct mfs_tree *t, uint32_t idx, void *buf, size_t len,
                          uint64_t off)
{
	struct mfs_tnode eb;
	const struct mfs_tnode *e = mfs_tree_node(t, idx, &eb);
	char small[4096], *heap;
	const char *text = text_of(t, idx, e, small, sizeof(small), &heap);
	if (!text)
		return 0;
	const char *p;
	size_t n;
	bool nl;
	size_t got = slice(e, text, off, len, &p, &n, &nl);
	memcpy(buf, p, n);
	if (nl)
		((char *)buf)[n] = '\n';
	free(heap);
	return got;
}

bool mfs_tree_text_same(const struct mfs_tree *a, uint32_t ia, const struct mfs_tree *b,
                        uint32_t ib)
{
	struct mfs_tnode ba, bb;
	const struct mfs_tnode *ea = mfs_tree_node(a, ia, &ba), *eb = mfs_tree_node(b, ib, &bb);
	if (ea->u.text.len != eb->u.text.len || (ea->flags & MFS_TNF_NL) != (eb->flags & MFS_TNF_NL))
		return false;
	if (!((ea->flags | eb->flags) & MFS_TNF_GEN))
		return ea->u.text.p == eb->u.text.p || !ea->u.text.len ||
		       !memcmp(ea->u.text.p, eb->u.text.p, ea->u.text.len);
	const struct mfs_tensor *ta, *tb;
	uint32_t da, db;
	if ((ea->flags & eb->flags & MFS_TNF_GEN) && ia >= leaf_own_base(a) &&
	    ib >= leaf_own_base(b) && own_of(a, ia, &ta, &da) == OWN_SHAPE &&
	    own_of(b, ib, &tb, &db) == OWN_SHAPE) {
		/* Two shapes: the same dims make the same text. */
		if (ta->rank == tb->rank &&
		    (!ta->rank || ta->dims == tb->dims ||
		     !memcmp(ta->dims, tb->dims, ta->rank * sizeof(*ta->dims))))
			return true;
	}
	char sa[512], sb[512], *ha, *hb;
	const char *pa = text_of(a, ia, ea, sa, sizeof(sa), &ha);
	const char *pb = text_of(b, ib, eb, sb, sizeof(sb), &hb);
	bool same = pa && pb && !memcmp(pa, pb, ea->u.text.len);
	free(ha);
	free(hb);
	return same;
}

uint64_t mfs_tree_mem(const struct mfs_tree *t)
{
	uint64_t listed = (uint64_t)t->n + t->n_vd;     /* all but the root are in children[] */
	return sizeof(*t) + (uint64_t)t->n * sizeof(*t->nodes) +
	       (listed ? listed - 1 : 0) * sizeof(*t->children) +
	       ((uint64_t)t->mask + 1) * sizeof(*t->slots) + t->pool.bytes +
	       (uint64_t)t->own_cap * (sizeof(*t->own_dir) + sizeof(*t->own_id)) +
	       (uint64_t)t->x_cap * sizeof(*t->own_x) +
	       (uint64_t)t->n_vd * (sizeof(*t->vd_parent) + sizeof(*t->vd_tid) + sizeof(*t->vd_len)) +
	       (uint64_t)t->late_cap * sizeof(*t->late);
}

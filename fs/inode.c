/*
 * fs/inode.c — the owner of inode numbers.
 *
 * The kernel names every file of a FUSE mount by a 64-bit inode number that
 * the daemon hands out in lookup, create and readdirplus replies, and it
 * keeps using a number for as long as it holds the inode: in its dentry
 * cache, behind an open descriptor, in an mmap.  This file decides what each
 * number means, and keeps that meaning steady while the tree changes.
 *
 * INODE NUMBERS
 *
 * Three things share one number space, all counted from one counter that
 * only goes up, so that a number is never given two meanings:
 *
 *   tree entries    the entries of the current tree (tree.h), which is
 *                   immutable and rebuilt whenever the structure the mount
 *                   shows changes: a prop created, removed or renamed, a
 *                   value renamed (mv inputs/x ...), a tensor deleted
 *                   (rm -r weights/...), a commit, an abort.  Format ids never become inode
 *                   numbers; a tensor's `data` file is an entry like any
 *                   other.
 *   control files   .modelfs/ and its files, numbered once at mount.
 *   scratch files   files that tools create beside entries (rsync's
 *                   ".data.XXXXXX"): not in the tree, never in the model
 *                   unless renamed over an entry.
 *
 * The first tree maps as it always did: entry idx is inode idx + 1, the
 * root is 1 (FUSE_ROOT_ID), and the table keeps no arrays at all (a mount
 * that is only read costs nothing here).  A rebuild maps the new tree onto
 * the old numbers BY PATH: an entry keeps the number of the entry at the
 * same (parent inode, name) in the old tree when both are directories or
 * both are files; anything else gets a fresh number.  Since parents are
 * mapped before their children (the tree builder adds a directory before
 * what it holds), "same parent inode" is "same path".  A rename that the
 * kernel has already applied to its dentries is passed in as a move, so
 * that `mv meta/props/a meta/props/b` keeps the inode the kernel moved.
 * A number whose path vanished maps to nothing: the daemon answers ESTALE
 * for it (the VFS then looks the path up again) and the rebuild reports
 * the vanished path so the daemon can drop the kernel's dentry.  Numbers
 * are never reused, so a stale number can never reach the wrong file.
 *
 * After the first rebuild the mapping is two arrays: idx2ino (per entry of
 * the current tree) and ino2idx (per number handed out so far, NONE for
 * numbers that are not tree entries now).  A rebuild that maps every entry
 * back to idx + 1 (a commit that changed no structure) frees them again.
 *
 * Lookup counts: the kernel's forget tells how many references it drops.
 * Tree entries and control files need no count (their numbers stay valid
 * or turn ESTALE, and cost nothing either way).  Scratch files do, because
 * their xnode holds the scratch object id, name and attributes: it is
 * freed when it is neither listed in its directory nor held by the kernel.
 *
 * XNODES
 *
 * Per-inode state lives in xnodes, in a hash table by number, made on first
 * need: attributes set by chmod/chown/utimes (kept in memory only: the model
 * has nowhere to store them), content versions that tell the daemon when
 * the kernel's page cache of a file is stale, and everything about scratch
 * files, which are also on a list for lookup by (parent, name) and for
 * readdir.  There are few: one per scratch file and per touched entry.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "inode.h"
#include "modelfs/htab.h"

#define NONE UINT32_MAX

struct mfs_itab {
	const struct mfs_tree *tree;
	uint32_t n;             /* entries of `tree` */
	uint64_t *idx2ino;      /* n entries, or NULL: ino = idx + 1 */
	uint32_t *ino2idx;      /* cap entries, or NULL: idx = ino - 1 for ino 1 .. n */
	uint64_t cap;
	uint64_t next;          /* the next number to hand out */

	struct mfs_xnode **buckets;
	size_t n_buckets;       /* a power of two */
	size_t n_x;
	struct mfs_xnode *scratch_head, *scratch_tail;
};

int mfs_itab_new(struct mfs_itab **out, const struct mfs_tree *tree)
{
	struct mfs_itab *it = calloc(1, sizeof(*it));
	*out = NULL;
	if (!it)
		return -ENOMEM;
	it->n_buckets = 64;
	it->buckets = calloc(it->n_buckets, sizeof(*it->buckets));
	if (!it->buckets) {
		free(it);
		return -ENOMEM;
	}
	it->tree = tree;
	it->n = mfs_tree_count(tree);
	it->next = (uint64_t)it->n + 1;
	*out = it;
	return 0;
}

static void x_free(struct mfs_xnode *x)
{
	if (x) {
		free(x->name);
		free(x);
	}
}

void mfs_itab_destroy(struct mfs_itab *it)
{
	if (!it)
		return;
	for (size_t b = 0; b < it->n_buckets; b++) {
		struct mfs_xnode *x = it->buckets[b];
		while (x) {
			struct mfs_xnode *nx = x->hnext;
			x_free(x);
			x = nx;
		}
	}
	free(it->buckets);
	free(it->idx2ino);
	free(it->ino2idx);
	free(it);
}

const struct mfs_tree *mfs_itab_tree(const struct mfs_itab *it)
{
	return it->tree;
}

uint64_t mfs_itab_alloc(struct mfs_itab *it)
{
	return it->next++;
}

uint64_t mfs_itab_ino(const struct mfs_itab *it, uint32_t idx)
{
	return it->idx2ino ? it->idx2ino[idx] : (uint64_t)idx + 1;
}

int mfs_itab_index(const struct mfs_itab *it, uint64_t ino, uint32_t *idx)
{
	if (ino == 0 || ino >= it->next)
		return -ENOENT;
	if (!it->ino2idx) {
		if (ino > it->n)
			return -ESTALE;
		*idx = (uint32_t)(ino - 1);
		return 0;
	}
	if (ino >= it->cap || it->ino2idx[ino] == NONE)
		return -ESTALE;
	*idx = it->ino2idx[ino];
	return 0;
}

/* Do two entries of the same kind hold the same bytes (text) or size? */
static bool same_content(const struct mfs_tree *a, uint32_t ia, const struct mfs_tree *b,
                         uint32_t ib)
{
	struct mfs_tnode ba;
	const struct mfs_tnode *ea = mfs_tree_node(a, ia, &ba);
	if (mfs_tree_size(a, ia) != mfs_tree_size(b, ib))
		return false;
	if (ea->kind != MFS_TN_TEXT)
		return true;
	return mfs_tree_text_same(a, ia, b, ib);
}

static bool is_dir(const struct mfs_tnode *e)
{
	return e->kind == MFS_TN_DIR;
}

int mfs_itab_rebuild(struct mfs_itab *it, const struct mfs_tree *tree,
                     const struct mfs_itab_move *move, mfs_itab_event_fn *fn, void *arg)
{
	const struct mfs_tree *old = it->tree;
	uint32_t n = mfs_tree_count(tree);
	uint64_t *idx2ino = malloc((size_t)n * sizeof(*idx2ino));
	uint8_t *used = calloc(it->n ? it->n : 1, 1);
	uint32_t *ino2idx = NULL;
	uint64_t next = it->next;
	int rc = -ENOMEM;
	if (!idx2ino || !used)
		goto out;

	/* Map: the root is always inode 1; then every entry after its parent. */
	idx2ino[0] = 1;
	used[0] = 1;
	for (uint32_t j = 1; j < n; j++) {
		struct mfs_tnode eb, ob;
		const struct mfs_tnode *e = mfs_tree_node(tree, j, &eb);
		uint64_t pino = idx2ino[e->parent];
		const char *look = e->name;
		size_t look_len = e->name_len;
		if (move && pino == move->parent && look_len == move->to_len &&
		    !memcmp(look, move->to, look_len)) {
			look = move->from;
			look_len = move->from_len;
		}
		uint32_t pold, oi;
		uint64_t ino = 0;
		if (mfs_itab_index(it, pino, &pold) == 0 &&
		    mfs_tree_lookup(old, pold, look, look_len, &oi) == 0 && !used[oi] &&
		    is_dir(mfs_tree_node(old, oi, &ob)) == is_dir(e)) {
			used[oi] = 1;
			ino = mfs_itab_ino(it, oi);
			if (fn && !same_content(old, oi, tree, j))
				fn(arg, MFS_IEV_CHANGED, pino, e->name, e->name_len, ino);
		} else {
			ino = next++;
			if (fn)
				fn(arg, MFS_IEV_APPEARED, pino, e->name, e->name_len, ino);
		}
		idx2ino[j] = ino;
	}
	if (fn) {
		for (uint32_t i = 1; i < it->n; i++) {
			if (used[i])
				continue;
			struct mfs_tnode eb;
			const struct mfs_tnode *e = mfs_tree_node(old, i, &eb);
			fn(arg, MFS_IEV_VANISHED, mfs_itab_ino(it, e->parent), e->name, e->name_len,
			   mfs_itab_ino(it, i));
		}
	}

	/* Back to the identity when nothing moved. */
	bool identity = true;
	for (uint32_t j = 0; identity && j < n; j++)
		identity = idx2ino[j] == (uint64_t)j + 1;
	if (!identity) {
		ino2idx = malloc((size_t)next * sizeof(*ino2idx));
		if (!ino2idx)
			goto out;
		memset(ino2idx, 0xff, (size_t)next * sizeof(*ino2idx));
		for (uint32_t j = 0; j < n; j++)
			ino2idx[idx2ino[j]] = j;
	}
	free(it->idx2ino);
	free(it->ino2idx);
	it->idx2ino = identity ? NULL : idx2ino;
	it->ino2idx = ino2idx;
	it->cap = identity ? 0 : next;
	if (identity)
		free(idx2ino);
	idx2ino = NULL;
	it->next = next;
	it->tree = tree;
	it->n = n;
	rc = 0;
out:
	free(idx2ino);
	free(used);
	return rc;
}

/* Give the table its arrays, with room for every number handed out. */
static int materialise(struct mfs_itab *it)
{
	if (!it->idx2ino) {
		uint64_t *m = malloc((size_t)(it->n ? it->n : 1) * sizeof(*m));
		if (!m)
			return -ENOMEM;
		for (uint32_t j = 0; j < it->n; j++)
			m[j] = (uint64_t)j + 1;
		it->idx2ino = m;
	}
	if (!it->ino2idx || it->cap < it->next) {
		uint32_t *r = realloc(it->ino2idx, (size_t)it->next * sizeof(*r));
		if (!r)
			return -ENOMEM;
		bool fresh = !it->ino2idx;
		memset(r + (fresh ? 0 : it->cap), 0xff,
		       (size_t)(it->next - (fresh ? 0 : it->cap)) * sizeof(*r));
		if (fresh)
			for (uint32_t j = 0; j < it->n; j++)
				r[it->idx2ino[j]] = j;
		it->ino2idx = r;
		it->cap = it->next;
	}
	return 0;
}

static size_t bucket_of(const struct mfs_itab *it, uint64_t ino);

static void x_unhash(struct mfs_itab *it, struct mfs_xnode *x)
{
	struct mfs_xnode **pp = &it->buckets[bucket_of(it, x->ino)];
	while (*pp && *pp != x)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = x->hnext;
		it->n_x--;
	}
}

int mfs_itab_take_number(struct mfs_itab *it, uint32_t idx, struct mfs_xnode *x)
{
	if (idx == 0 || idx >= it->n || x->kind != MFS_XN_SCRATCH || x->ino >= it->next)
		return -EINVAL;
	int rc = materialise(it);
	if (rc < 0)
		return rc;
	uint64_t old = it->idx2ino[idx];
	it->idx2ino[idx] = x->ino;
	it->ino2idx[old] = NONE;
	it->ino2idx[x->ino] = idx;
	struct mfs_xnode *ox = mfs_itab_x(it, old);
	if (ox && ox->kind == MFS_XN_STATE) {
		x_unhash(it, ox);
		x_free(ox);
	}
	mfs_itab_scratch_unlist(it, x);
	x->kind = MFS_XN_STATE;
	x->dropped = false;
	x->alias = 0;
	x->scratch = 0;
	x->nlookup = 0;
	return 0;
}

/* --------------------------------------------------------------- xnodes */

static size_t bucket_of(const struct mfs_itab *it, uint64_t ino)
{
	return mfs_htab_slot(ino, it->n_buckets);
}

struct mfs_xnode *mfs_itab_x(const struct mfs_itab *it, uint64_t ino)
{
	for (struct mfs_xnode *x = it->buckets[bucket_of(it, ino)]; x; x = x->hnext)
		if (x->ino == ino)
			return x;
	return NULL;
}

/* Keep chains short: double the buckets at one xnode per bucket (no memory:
 * longer chains, still correct). */
static void grow(struct mfs_itab *it)
{
	if (it->n_x >= it->n_buckets)
		mfs_htab_grow(&it->buckets, &it->n_buckets, offsetof(struct mfs_xnode, hnext),
		              offsetof(struct mfs_xnode, ino));
}

static struct mfs_xnode *x_add(struct mfs_itab *it, uint64_t ino, enum mfs_xkind kind)
{
	struct mfs_xnode *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->ino = ino;
	x->kind = (uint8_t)kind;
	grow(it);
	size_t k = bucket_of(it, ino);
	x->hnext = it->buckets[k];
	it->buckets[k] = x;
	it->n_x++;
	return x;
}

struct mfs_xnode *mfs_itab_x_get(struct mfs_itab *it, uint64_t ino)
{
	struct mfs_xnode *x = mfs_itab_x(it, ino);
	return x ? x : x_add(it, ino, MFS_XN_STATE);
}

static int set_name(struct mfs_xnode *x, uint64_t parent, const char *name, size_t len)
{
	char *s = malloc(len + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, name, len);
	s[len] = '\0';
	free(x->name);
	x->name = s;
	x->name_len = len;
	x->parent = parent;
	return 0;
}

struct mfs_xnode *mfs_itab_scratch_add(struct mfs_itab *it, uint64_t parent, const char *name,
                                       size_t len, uint64_t scratch)
{
	struct mfs_xnode *x = x_add(it, it->next, MFS_XN_SCRATCH);
	if (!x)
		return NULL;
	if (set_name(x, parent, name, len) < 0) {
		/* Unhash again: it is at the head of its chain. */
		it->buckets[bucket_of(it, x->ino)] = x->hnext;
		it->n_x--;
		x_free(x);
		return NULL;
	}
	it->next++;
	x->scratch = scratch;
	x->listed = true;
	x->sprev = it->scratch_tail;
	if (it->scratch_tail)
		it->scratch_tail->snext = x;
	else
		it->scratch_head = x;
	it->scratch_tail = x;
	return x;
}

struct mfs_xnode *mfs_itab_scratch_find(const struct mfs_itab *it, uint64_t parent,
                                        const char *name, size_t len)
{
	for (struct mfs_xnode *x = it->scratch_head; x; x = x->snext)
		if (x->parent == parent && x->name_len == len && !memcmp(x->name, name, len))
			return x;
	return NULL;
}

int mfs_itab_scratch_move(struct mfs_itab *it, struct mfs_xnode *x, uint64_t parent,
                          const char *name, size_t len)
{
	(void)it;
	return set_name(x, parent, name, len);
}

void mfs_itab_scratch_unlist(struct mfs_itab *it, struct mfs_xnode *x)
{
	if (!x->listed)
		return;
	if (x->sprev)
		x->sprev->snext = x->snext;
	else
		it->scratch_head = x->snext;
	if (x->snext)
		x->snext->sprev = x->sprev;
	else
		it->scratch_tail = x->sprev;
	x->snext = x->sprev = NULL;
	x->listed = false;
}

struct mfs_xnode *mfs_itab_scratch_next(const struct mfs_itab *it, const struct mfs_xnode *x)
{
	return x ? x->snext : it->scratch_head;
}

void mfs_itab_x_put(struct mfs_itab *it, struct mfs_xnode *x)
{
	if (!x || x->kind != MFS_XN_SCRATCH || x->listed || x->nlookup)
		return;
	x_unhash(it, x);
	x_free(x);
}

struct mfs_xnode *mfs_itab_x_next(const struct mfs_itab *it, const struct mfs_xnode *x)
{
	size_t b = 0;
	if (x) {
		if (x->hnext)
			return x->hnext;
		b = bucket_of(it, x->ino) + 1;
	}
	for (; b < it->n_buckets; b++)
		if (it->buckets[b])
			return it->buckets[b];
	return NULL;
}

uint64_t mfs_itab_mem(const struct mfs_itab *it)
{
	uint64_t m = sizeof(*it) + it->n_buckets * sizeof(*it->buckets) +
	             it->n_x * sizeof(struct mfs_xnode);
	if (it->idx2ino)
		m += (uint64_t)it->n * sizeof(*it->idx2ino);
	if (it->ino2idx)
		m += it->cap * sizeof(*it->ino2idx);
	return m;
}

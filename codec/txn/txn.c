/*
 * codec/txn/txn.c — transactions: edits staged against a model, shown at
 * once, and committed atomically (include/modelfs/txn.h).
 *
 * The pieces of doc/design.md §5 meet here: the model and its format
 * (format.h: reader and splice writer), the staging store (stage.c) and the
 * commit engine (commit.c).  The FUSE layer sees only txn.h.  Everything in
 * txn/ is format-neutral: what a format allows (which tensors, dtypes, meta
 * files and props may be edited, and how the new file is written) comes
 * from its row in the table of formats and from the tensor flags its
 * reader set.  This file opens and closes a transaction and holds what the
 * others share; the rest is spread over edit.c, plan.c, apply.c and
 * status.c (txn_int.h says which does what).
 *
 * HOW IT WORKS
 *
 * Every edit is an object of the stage, named by a 64-bit key whose top
 * byte says what it is and whose rest is an index that means the same on
 * every open of the same model (tensor ids are walk order, txn.h):
 *
 *     KEY                   OBJECT                     CONTENT
 *     0 << 56 | tensor id   a tensor's data            the bytes (chunked; base =
 *                                                      the tensor as in the file)
 *     1 << 56 | tensor id   its dtype                  the dtype name
 *     2 << 56 | tensor id   its shape                  "d0,d1,..." ("" = scalar)
 *     3 << 56 | meta index  a meta/ value              the text, without '\n'
 *     4 << 56 | prop slot   a metadata property        'S' key NUL value | 'D' |
 *                                                      'T' key NUL type NUL value
 *                                                      (a staged type, GGUF)
 *     5 << 56 | scratch id  a scratch file             the bytes (no base)
 *
 * Prop slots 0 .. n-1 are the model's props in file order; a new key gets
 * the next free slot, so a recovered journal puts every prop back where it
 * was.  Small values are single VALUE records; data is written through to
 * the journal (stage flush) before a write returns, so a daemon killed with
 * edits staged finds all of them in the journal at the next open, where they
 * are replayed and offered again (never applied).
 *
 * A tensor added (`mkdir weights/<path>`) is a graph field TENSOR_ADD
 * (key 6, like every field) whose index is the new tensor's id, the
 * model's count plus the ones added before it; the transaction makes a
 * tensor for it (struct addt: float32, a scalar, no bytes), and its data,
 * dtype and shape are the objects of keys 0-2 of that id.  A replay takes
 * the TENSOR_ADD fields first, so those keys find their tensor.
 *
 * In memory the transaction mirrors the small values (per-tensor dtype and
 * shape, meta, props) so that reads need not decode them, and a flag per
 * tensor says whether its data is staged.  Reads of a staged tensor come
 * from the stage, others straight from the model.
 *
 * A commit first *plans*: each edit is reduced to its effective value (a
 * dtype set back to what it was, or a tensor rewritten with its own bytes,
 * is no edit), validated (data size = dtype × shape), and for same-size data
 * edits the ranges that really differ are found by comparing the staged
 * extents with the base.  The plan either is empty — nothing is written and
 * the staged no-ops are dropped — or goes to the commit engine.  When every
 * edit is a same-size data edit of bytes that lie in the model file
 * (MFS_TENSOR_CONTIGUOUS, source 0), AUTO makes a reflink clone patched and
 * renamed (where the file system can) and INPLACE patches the model through
 * a redo log (with the model's flock exclusive); otherwise, and as AUTO's
 * fallback, a spliced rewrite (apply.c).  After
 * a successful commit the model is opened again (the old one is kept for
 * descriptors and open files), the stage is reset to the new file's identity
 * keeping only scratch objects, and the generation moves on.
 *
 * A versioned commit (mfs_txn_commit_to, or every commit with
 * opts.commit_to) is the spliced rewrite written to a new file beside the
 * model under a name its template gives once the bytes are hashed
 * (version.c; commit.c, V1-V2).  Then the transaction *is* that file's:
 * t->path and t->name name it, the stage moves to its journal (the old
 * file's removed), and the next commit starts from it.  t->orig_name, the
 * file first opened, gives templates their {stem} and {ext}.
 *
 * The root model file is served while edits are staged from the same plan,
 * built lazily without the comparisons (the spliced bytes are the same) and
 * cached until the next edit.
 *
 * INVARIANTS
 *  1. Every edit reaches the journal before the call that makes it returns,
 *     and memory changes only after the journal accepted it; a failed call
 *     leaves both as they were (a data write may be partly applied, as a
 *     short write is).
 *  2. The model file is written only by mfs_txn_commit(), through
 *     commit.c; it is the old or the new version whatever fails.  A
 *     versioned commit never writes it: the version is a new file, whole
 *     or absent.
 *  3. A commit that fails before its commit point leaves every staged edit
 *     staged, in memory and in the journal, and says why in `status`.
 *  4. After a commit that installed a new version, nothing of the old
 *     staging state is used with the new model: the stage is reset to the
 *     new identity, the model reopened, the mirrors rebuilt.  If the reopen
 *     fails, edits are refused (-EIO) until a commit manages to reopen.
 *  5. Descriptions handed out stay valid until mfs_txn_close(): replaced
 *     models are kept, not closed.
 *  6. The lock: commit, abort, and every edit of the model take it
 *     exclusively; reads, and writes of scratch objects (which never reach
 *     the model), share it.  The served view is rebuilt under a mutex by
 *     the first reader after an edit and is immutable while the lock is
 *     shared.
 *  7. Scratch objects never reach the model unless adopted; they are dropped
 *     at open (a dead daemon's), on abort and at close, and survive commits.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "txn/sidefile.h"
#include "txn/txn_int.h"
#include "txn/version.h"

/* ------------------------------------------------------------ helpers */

void txn_set_msg(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

const char *txn_strip_display(const char *msg, const char *display)
{
	size_t n = strlen(display);
	if (strncmp(msg, display, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
		return msg + n + 2;
	return msg;
}

bool txn_utf8_ok(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t k;
		uint32_t cp;
		if ((c & 0xe0) == 0xc0) {
			k = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			unsigned char cc = (unsigned char)s[i + j];
			if ((cc & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (cc & 0x3f);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

int txn_meta_orig(const struct mfs_txn *t, unsigned k, char **out, size_t *len)
{
	const char *text = "";
	size_t n = 0;
	const char *name = t->m->fmt->meta_names[k];
	for (size_t i = 0; i < t->d->n_meta; i++)
		if (strcmp(t->d->meta[i].name, name) == 0) {
			text = t->d->meta[i].value;
			n = txn_chomp(text, t->d->meta[i].len);
		}
	*out = malloc(n + 1);
	if (!*out)
		return -ENOMEM;
	*len = mfs_text_unescape(*out, text, n);
	(*out)[*len] = '\0';
	return 0;
}

size_t txn_chomp(const char *text, size_t len)
{
	return len && text[len - 1] == '\n' ? len - 1 : len;
}

char *txn_memdup0(const void *p, size_t len)
{
	char *s = malloc(len + 1);
	if (s) {
		if (len)
			memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

int txn_parse_shape(const char *text, size_t len, int64_t *dims, size_t *rank)
{
	size_t r = 0, i = 0;
	if (len == 0) {
		*rank = 0;
		return 0;
	}
	for (;;) {
		if (r == MFS_MAX_RANK)
			return -EINVAL;
		uint64_t v = 0;
		size_t digits = 0;
		while (i < len && text[i] >= '0' && text[i] <= '9') {
			if (v > ((uint64_t)INT64_MAX - (uint64_t)(text[i] - '0')) / 10)
				return -EINVAL;
			v = v * 10 + (uint64_t)(text[i] - '0');
			i++;
			digits++;
		}
		if (!digits)
			return -EINVAL;
		dims[r++] = (int64_t)v;
		if (i == len)
			break;
		if (text[i] != ',')
			return -EINVAL;
		i++;
	}
	*rank = r;
	return 0;
}

bool txn_dims_equal(const int64_t *a, size_t ra, const int64_t *b, size_t rb)
{
	if (ra != rb)
		return false;
	for (size_t i = 0; i < ra; i++)
		if (a[i] != b[i])
			return false;
	return true;
}


/* ------------------------------------------------------------ state */

static ssize_t base_read(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct tstate *s = arg;
	return mfs_tensor_read(s->m, s->t, buf, len, off);
}

void txn_flag(struct mfs_txn *t, bool *f, bool v)
{
	if (*f != v)
		t->n_dirty += v ? 1 : (uint64_t)-1;
	*f = v;
}

void txn_clear_state(struct mfs_txn *t)
{
	if (t->ts) {
		for (size_t p = 0; p < t->ts_pages; p++) {
			for (size_t i = 0; t->ts[p] && i < TS_PAGE; i++)
				free(t->ts[p][i].dims);
			free(t->ts[p]);
		}
		free(t->ts);
		t->ts = NULL;
		t->ts_pages = 0;
	}
	free(t->ts_where);
	t->ts_where = NULL;
	for (int k = 0; k < MFS_META_MAX; k++) {
		free(t->meta[k]);
		t->meta[k] = NULL;
		t->meta_staged[k] = false;
	}
	txn_fields_clear(t);
	txn_props_unindex(t);
	for (size_t i = 0; i < t->n_props; i++) {
		free(t->props[i].key);
		free(t->props[i].value);
		free(t->props[i].type);
	}
	free(t->props);
	t->props = NULL;
	t->n_props = t->n_orig_props = 0;
	t->n_dirty = 0;
}

/*
 * Forget what is staged, in memory only, keeping the tensor array (the stage
 * holds pointers into it as base-read arguments) and its bindings.
 */
int txn_reset_state(struct mfs_txn *t)
{
	for (size_t i = 0; i < t->d->n_tensors; i++) {
		struct tstate *s = txn_ts_at(t, i);
		if (!s)
			continue;
		free(s->dims);
		s->dims = NULL;
		s->data = s->has_dtype = s->has_shape = false;
		s->rank = 0;
	}
	for (int k = 0; k < MFS_META_MAX; k++) {
		free(t->meta[k]);
		t->meta[k] = NULL;
		t->meta_staged[k] = false;
	}
	txn_fields_clear(t);
	txn_props_unindex(t);
	for (size_t i = 0; i < t->n_props; i++) {
		free(t->props[i].key);
		free(t->props[i].value);
		free(t->props[i].type);
	}
	t->n_props = t->n_orig_props = 0;
	t->n_dirty = 0;
	const struct mfs_desc *d = t->d;
	for (size_t i = 0; i < d->n_props; i++) {
		struct pslot *p = &t->props[i];
		memset(p, 0, sizeof(*p));
		p->key = strdup(d->props[i].name);
		p->value = txn_memdup0(d->props[i].value, d->props[i].len);
		p->len = d->props[i].len;
		t->n_props = i + 1;
		if (!p->key || !p->value)
			return -ENOMEM;
	}
	t->n_orig_props = d->n_props;
	txn_props_reindex(t);
	return 0;
}

/* The mirrors of the current model, with nothing staged. */
int txn_init_state(struct mfs_txn *t)
{
	const struct mfs_desc *d = t->d;
	t->ts_pages = (size_t)(d->n_tensors / TS_PAGE + (d->n_tensors % TS_PAGE != 0));
	t->ts = calloc(t->ts_pages ? t->ts_pages : 1, sizeof(*t->ts));
	t->ts_where = calloc(d->n_tensors ? d->n_tensors : 1, sizeof(*t->ts_where));
	t->props = calloc(d->n_props ? d->n_props : 1, sizeof(*t->props));
	if (!t->ts || !t->ts_where || !t->props)
		return -ENOMEM;
	const struct mfs_graph *g = d->graph;
	for (size_t i = 0; g && i < g->n_inits; i++)
		t->ts_where[g->inits[i]->id] = W_WEIGHTS;
	for (size_t i = 0; g && i < g->n_sparse_inits; i++) {
		t->ts_where[g->sparse_inits[i]->values->id] = W_SPARSE;
		t->ts_where[g->sparse_inits[i]->indices->id] = W_SPARSE;
	}
	for (size_t i = 0; i < d->n_props; i++) {
		struct pslot *p = &t->props[i];
		p->key = strdup(d->props[i].name);
		p->value = txn_memdup0(d->props[i].value, d->props[i].len);
		p->len = d->props[i].len;
		if (!p->key || !p->value) {
			t->n_props = i + 1;
			return -ENOMEM;
		}
	}
	t->n_props = t->n_orig_props = d->n_props;
	txn_props_reindex(t);
	return 0;
}

void txn_touched(struct mfs_txn *t)
{
	t->edit_seq++;
}

/* ------------------------------------------------------------ added tensors */

struct addt *txn_add_at(const struct mfs_txn *t, uint64_t id)
{
	if (id < t->d->n_tensors || id - t->d->n_tensors >= t->n_adds)
		return NULL;
	struct addt *a = t->adds[id - t->d->n_tensors];
	return a && a->live ? a : NULL;
}

int txn_add_put(struct mfs_txn *t, uint64_t id, const char *text, size_t len)
{
	if (id < t->d->n_tensors || id - t->d->n_tensors >= (1u << 20))
		return -EINVAL;         /* a bound on what one session adds */
	size_t k = (size_t)(id - t->d->n_tensors);
	if (k < t->n_adds && t->adds[k] && t->adds[k]->live)
		return 0;
	if (k >= t->n_adds) {
		struct addt **na = reallocarray(t->adds, k + 1, sizeof(*na));
		if (!na)
			return -ENOMEM;
		memset(na + t->n_adds, 0, (k + 1 - t->n_adds) * sizeof(*na));
		t->adds = na;
		t->n_adds = k + 1;
	}
	struct addt *a = calloc(1, sizeof(*a));
	char *name = malloc(len + 1);
	if (!a || !name) {
		free(a);
		free(name);
		return -ENOMEM;
	}
	name[mfs_text_unescape(name, text, len)] = '\0';
	a->x.id = id;
	a->x.name = name;
	a->x.dtype = MFS_DT_FLOAT;     /* defaults: float32, a scalar, no bytes */
	a->x.flags = MFS_TENSOR_EDITABLE | MFS_TENSOR_ADDED;
	a->s.m = t->m;
	a->s.t = &a->x;
	a->s.where = W_WEIGHTS;
	a->live = true;
	if (t->adds[k]) {               /* the slot's earlier tensor, unstaged */
		t->adds[k]->next_dead = t->adds_dead;
		t->adds_dead = t->adds[k];
	}
	t->adds[k] = a;
	return 0;
}

void txn_add_kill(struct mfs_txn *t, struct addt *a)
{
	if (!a || !a->live)
		return;
	txn_flag(t, &a->s.data, false);
	txn_flag(t, &a->s.has_dtype, false);
	txn_flag(t, &a->s.has_shape, false);
	a->s.bound = false;
	a->live = false;
}

void txn_adds_clear(struct mfs_txn *t)
{
	for (size_t k = 0; k < t->n_adds; k++) {
		struct addt *a = t->adds[k];
		if (!a)
			continue;
		txn_add_kill(t, a);
		a->next_dead = t->adds_dead;
		t->adds_dead = a;
	}
	free(t->adds);
	t->adds = NULL;
	t->n_adds = 0;
}

static void adds_free(struct mfs_txn *t)
{
	txn_adds_clear(t);
	for (struct addt *a = t->adds_dead, *next; a; a = next) {
		next = a->next_dead;
		free(a->s.dims);
		free(a->x.name);
		free(a);
	}
	t->adds_dead = NULL;
}

/* The current model's tensor for `x` (of this or an older description). */
/* A state with nothing staged for tensor `id`. */
static void ts_clean(const struct mfs_txn *t, size_t id, struct tstate *s)
{
	memset(s, 0, sizeof(*s));
	s->m = t->m;
	s->t = t->d->tensors[id];
	s->where = t->ts_where[id];
}

/*
 * The current description's id of tensor `x`, which may be of an older
 * description (a handler that resolved its entry before a commit swapped
 * the tree): the same id unless the last commit deleted tensors, which
 * moves the later ones down.  False for a tensor that commit deleted.
 */
static bool txn_cur_id(const struct mfs_txn *t, const struct mfs_tensor *x, size_t *out)
{
	uint64_t id = x->id;
	if (x->flags & MFS_TENSOR_ADDED) {
		/* An added tensor is itself only while staged: after the commit
		 * that wrote it (or an abort) its id may be another tensor's. */
		const struct addt *a = txn_add_at(t, id);
		if (!a || &a->x != x)
			return false;
		*out = (size_t)id;
		return true;
	}
	const struct mfs_desc *od = t->n_gone && t->old ? mfs_model_desc(t->old->m) : NULL;
	/* Only a tensor of the model before the last commit moves (a copy the
	 * daemon made of a current tensor, to show a staged name, does not). */
	if (od && id < od->n_tensors && od->tensors[id] == x) {
		size_t below = 0;
		for (; below < t->n_gone && t->gone[below] <= x->id; below++)
			if (t->gone[below] == x->id)
				return false;
		id -= below;
	}
	if (id >= t->d->n_tensors && !txn_add_at(t, id))
		return false;
	*out = (size_t)id;
	return true;
}

struct tstate *txn_ts_at(const struct mfs_txn *t, size_t i)
{
	if (i >= t->d->n_tensors) {
		struct addt *a = txn_add_at(t, i);
		return a ? &a->s : NULL;
	}
	struct tstate *page = t->ts ? t->ts[i / TS_PAGE] : NULL;
	return page ? &page[i % TS_PAGE] : NULL;
}

struct tstate *txn_tensor_state(struct mfs_txn *t, const struct mfs_tensor *x, int *rc)
{
	*rc = -ENOENT;
	size_t id;
	if (!x || !t->ts || !txn_cur_id(t, x, &id))
		return NULL;
	*rc = 0;
	if (id >= t->d->n_tensors)
		return txn_ts_at(t, id);        /* an added tensor's own */
	struct tstate **page = &t->ts[id / TS_PAGE];
	if (!*page) {
		size_t first = (id / TS_PAGE) * TS_PAGE;
		size_t n = t->d->n_tensors - first < TS_PAGE ? t->d->n_tensors - first : TS_PAGE;
		struct tstate *p = malloc(TS_PAGE * sizeof(*p));
		if (!p) {
			*rc = -ENOMEM;
			return NULL;
		}
		for (size_t i = 0; i < TS_PAGE; i++) {
			if (i < n)
				ts_clean(t, first + i, &p[i]);
			else
				memset(&p[i], 0, sizeof(p[i]));
		}
		*page = p;
	}
	*rc = 0;
	return &(*page)[id % TS_PAGE];
}

const struct tstate *txn_tensor_peek(struct mfs_txn *t, const struct mfs_tensor *x,
                                     struct tstate *tmp)
{
	size_t id;
	if (!x || !t->ts || !txn_cur_id(t, x, &id))
		return NULL;
	struct tstate *s = txn_ts_at(t, id);
	if (s)
		return s;
	ts_clean(t, id, tmp);
	return tmp;
}

/* May tensor `x` be edited?  0, or the errno a write gets. */
int txn_editable(const struct mfs_txn *t, const struct mfs_tensor *x)
{
	if (t->opts.read_only)
		return -EROFS;
	if (t->broken)
		return -EIO;
	return x->flags & MFS_TENSOR_EDITABLE ? 0 : -EACCES;
}

int txn_bind_tensor(struct mfs_txn *t, struct tstate *s)
{
	if (s->bound)
		return 0;
	int rc = mfs_stage_bind(t->st, key_of(K_DATA, s->t->id), s->t->nbytes, base_read, s);
	if (rc == 0)
		s->bound = true;
	return rc;
}

int32_t txn_eff_dtype(const struct tstate *s)
{
	return s->has_dtype ? s->dtype : s->t->dtype;
}

const int64_t *txn_eff_dims(const struct tstate *s, size_t *rank)
{
	*rank = s->has_shape ? s->rank : s->t->rank;
	return s->has_shape ? s->dims : s->t->dims;
}

unsigned txn_meta_count(const struct mfs_txn *t)
{
	const char *const *names = t->m->fmt->meta_names;
	unsigned n = 0;
	while (names && names[n])
		n++;
	return n;
}

int txn_meta_index(const struct mfs_txn *t, const char *name)
{
	const char *const *names = t->m->fmt->meta_names;
	for (int k = 0; names && names[k]; k++)
		if (strcmp(name, names[k]) == 0)
			return k;
	return -1;
}

/* ------------------------------------------------------------ journal values */

/* Stage small value `key` as one journal record. */
int txn_put_value(struct mfs_txn *t, uint64_t key, const void *buf, size_t len)
{
	if (len > MFS_STAGE_MAX_VALUE)
		return -EFBIG;
	return mfs_stage_set_value(t->st, key, buf, len);
}

int txn_drop_key(struct mfs_txn *t, uint64_t key)
{
	int rc = mfs_stage_drop(t->st, key);
	return rc == -ENOENT ? 0 : rc;
}

/* The whole of small object `key`, NUL-terminated, malloc'd. */
static int get_value(struct mfs_txn *t, uint64_t key, char **out, size_t *len)
{
	uint64_t size;
	int rc = mfs_stage_size(&size, t->st, key);
	if (rc < 0)
		return rc;
	if (size > MFS_STAGE_MAX_VALUE)
		return -EUCLEAN;
	char *buf = malloc((size_t)size + 1);
	if (!buf)
		return -ENOMEM;
	ssize_t n = size ? mfs_stage_read(t->st, key, buf, (size_t)size, 0) : 0;
	if (n < 0 || (uint64_t)n != size) {
		free(buf);
		return n < 0 ? (int)n : -EIO;
	}
	buf[size] = '\0';
	*out = buf;
	*len = (size_t)size;
	return 0;
}

/* 'S' key NUL value; 'T' key NUL type NUL value (a staged type); or 'D'. */
int txn_put_prop_record(struct mfs_txn *t, size_t slot, const char *key, const char *type,
                        const char *value, size_t len)
{
	if (!key)
		return txn_put_value(t, key_of(K_PROP, slot), "D", 1);
	size_t klen = strlen(key), tlen = type ? strlen(type) + 1 : 0;
	if (klen + tlen + len + 2 > MFS_STAGE_MAX_VALUE)
		return -EFBIG;
	char *rec = malloc(klen + tlen + len + 2);
	if (!rec)
		return -ENOMEM;
	rec[0] = type ? 'T' : 'S';
	memcpy(rec + 1, key, klen + 1);
	if (type)
		memcpy(rec + klen + 2, type, tlen);
	memcpy(rec + klen + 2 + tlen, value, len);
	int rc = txn_put_value(t, key_of(K_PROP, slot), rec, klen + tlen + len + 2);
	free(rec);
	return rc;
}

/* ------------------------------------------------------------ open, close */

/* Make room for prop slots up to n (new ones empty). */
static int grow_props(struct mfs_txn *t, size_t n)
{
	struct pslot *np = reallocarray(t->props, n, sizeof(*np));
	if (!np)
		return -ENOMEM;
	memset(np + t->n_props, 0, (n - t->n_props) * sizeof(*np));
	t->props = np;
	t->n_props = n;
	return 0;
}

/* A 'T' prop record holds two NUL-terminated strings after its tag. */
static bool prop_type_record_ok(const char *v, size_t len)
{
	const char *k_end = memchr(v + 1, 0, len - 1);
	return k_end && (size_t)(k_end + 1 - v) < len &&
	       memchr(k_end + 1, 0, len - (size_t)(k_end + 1 - v));
}

/* Bring the mirrors in line with a recovered journal; see the key table. */
static int replay_state(struct mfs_txn *t, uint64_t *n_offered, char *note, size_t notelen)
{
	size_t n = mfs_stage_list(NULL, 0, t->st);
	uint64_t *keys = malloc((n ? n : 1) * sizeof(*keys));
	uint64_t dropped = 0;
	int rc = 0;
	if (!keys)
		return -ENOMEM;
	n = mfs_stage_list(keys, n, t->st);
	/* Added tensors first (TENSOR_ADD fields), so that the data, dtype
	 * and shape staged for them find their states below. */
	for (size_t i = 0; i < n; i++) {
		uint64_t idx = KEY_IDX(keys[i]);
		char *v = NULL;
		size_t len = 0;
		if (KEY_KIND(keys[i]) != K_FIELD || MFS_FIELD_KIND(idx) != MFS_FIELD_TENSOR_ADD)
			continue;
		if (t->m->fmt->field_writable && t->m->fmt->field_check &&
		    t->m->fmt->field_writable(t->m, idx) &&
		    get_value(t, keys[i], &v, &len) == 0 &&
		    t->m->fmt->field_check(t->m, idx, v, len, NULL, 0) == 0 &&
		    txn_field_put(t, idx, v, len) == 0) {
			(*n_offered)++;
			keys[i] = UINT64_MAX;   /* taken */
			continue;
		}
		free(v);
	}
	for (size_t i = 0; i < n; i++) {
		if (keys[i] == UINT64_MAX)
			continue;
		uint64_t key = keys[i], idx = KEY_IDX(key);
		unsigned kind = KEY_KIND(key);
		char *v = NULL;
		size_t len = 0;
		bool keep = false;
		int src;
		bool per_tensor = kind == K_DATA || kind == K_DTYPE || kind == K_SHAPE;
		struct tstate *s = per_tensor && idx < t->d->n_tensors ?
		                   txn_tensor_state(t, t->d->tensors[idx], &src) :
		                   per_tensor ? txn_ts_at(t, idx) : NULL;
		switch (kind) {
		case K_DATA:
			if (s && txn_editable(t, s->t) == 0 && txn_bind_tensor(t, s) == 0) {
				txn_flag(t, &s->data, true);
				keep = true;
			}
			break;
		case K_DTYPE:
			if (s && txn_editable(t, s->t) == 0 && get_value(t, key, &v, &len) == 0) {
				int32_t dt = mfs_desc_dtype_from_name(t->d, v);
				if (dt > 0 && mfs_dtype_bits(dt)) {
					s->dtype = dt;
					txn_flag(t, &s->has_dtype, true);
					keep = true;
				}
			}
			break;
		case K_SHAPE:
			if (s && txn_editable(t, s->t) == 0 && get_value(t, key, &v, &len) == 0) {
				int64_t dims[MFS_MAX_RANK];
				size_t rank;
				s->dims = malloc(MFS_MAX_RANK * sizeof(int64_t));
				if (s->dims && txn_parse_shape(v, len, dims, &rank) == 0) {
					memcpy(s->dims, dims, rank * sizeof(int64_t));
					s->rank = rank;
					txn_flag(t, &s->has_shape, true);
					keep = true;
				} else {
					free(s->dims);
					s->dims = NULL;
				}
			}
			break;
		case K_META:
			if (idx < txn_meta_count(t) &&
			    get_value(t, key, &v, &len) == 0) {
				t->meta[idx] = v;
				t->meta_len[idx] = len;
				v = NULL;
				txn_flag(t, &t->meta_staged[idx], true);
				keep = true;
			}
			break;
		case K_FIELD:
			/* A field this model has and may take, with a value its
			 * format still accepts; anything else is dropped (and said). */
			if (t->m->fmt->field_writable && t->m->fmt->field_check &&
			    t->m->fmt->field_writable(t->m, idx) &&
			    get_value(t, key, &v, &len) == 0 &&
			    t->m->fmt->field_check(t->m, idx, v, len, NULL, 0) == 0 &&
			    txn_field_put(t, idx, v, len) == 0) {
				v = NULL;
				keep = true;
			}
			break;
		case K_PROP:
			if (idx < (1u << 24) && get_value(t, key, &v, &len) == 0 && len &&
			    (v[0] == 'D' || (v[0] == 'S' && memchr(v + 1, 0, len - 1)) ||
			     (v[0] == 'T' && t->m->fmt->prop_type_check &&
			      prop_type_record_ok(v, len)))) {
				if (idx >= t->n_props && grow_props(t, idx + 1) < 0)
					break;
				struct pslot *ps = &t->props[idx];
				free(ps->key);
				free(ps->value);
				free(ps->type);
				ps->key = ps->value = ps->type = NULL;
				ps->len = 0;
				if (v[0] != 'D') {
					size_t kl = strlen(v + 1), tl = 0;
					if (v[0] == 'T') {
						tl = strlen(v + kl + 2) + 1;
						ps->type = strdup(v + kl + 2);
					}
					ps->key = strdup(v + 1);
					ps->value = txn_memdup0(v + kl + 2 + tl, len - kl - 2 - tl);
					ps->len = len - kl - 2 - tl;
				}
				txn_flag(t, &ps->staged, true);
				keep = true;
			}
			break;
		default:
			break;
		}
		free(v);
		if (keep) {
			(*n_offered)++;
			continue;
		}
		/* Scratch of a dead session, or something this model cannot take:
		 * dropped, and said so when it was an edit. */
		if (kind != K_SCRATCH)
			dropped++;
		if ((rc = mfs_stage_drop(t->st, key)) < 0)
			break;
	}
	if (dropped)
		txn_set_msg(note, notelen, "; %" PRIu64 " staged object%s did not fit the model and "
		            "%s dropped", dropped, dropped == 1 ? "" : "s",
		            dropped == 1 ? "was" : "were");
	txn_props_reindex(t);   /* the slots took the journal's keys */
	free(keys);
	return rc;
}

int txn_model_identity(struct mfs_txn *t)
{
	/* What a commit replaces: the model file, or the place's own file
	 * that holds it (a pack, place.h). */
	struct mfs_place *pl = t->m->place;
	int rc = pl && pl->ops->identity ? pl->ops->identity(pl, &t->id) :
	         mfs_source_identity(t->m->srcs[0], &t->id);
	t->id.layout = mfs_model_layout(t->m);
	return rc;
}

/*
 * Every transaction holds a shared flock on its model file for as long as
 * it has it open, and an in-place commit needs it exclusive (apply.c): so a
 * model another mount is reading is never patched under it (that commit
 * rewrites instead), and a mount never starts reading while another one is
 * patching.  The latter is waited for, a little.
 */
int txn_lock_model(const mfs_model *m, int how)
{
	int fd = mfs_source_fd(m->srcs[0]);
	if (fd < 0)
		return 0;       /* not a local file: nobody patches it in place */
	for (int tries = 0;; tries++) {
		if (mfs_io->flock(fd, how == LOCK_UN ? how : how | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK)
			return -errno;
		if (how == LOCK_EX) {
			/* Linux converts a flock by dropping the old lock first, and a
			 * conversion that fails leaves none: take the shared one back,
			 * or a later in-place commit elsewhere could patch under us. */
			txn_lock_model(m, LOCK_SH);
			return -EBUSY;
		}
		if (tries >= 50)
			return -EBUSY;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* ------------------------------------------------------------ failure notes */

/*
 * A commit that failed with nobody to tell (the one at unmount) leaves a
 * note beside the model, ".<model>.modelfs-failed": one line, the time and
 * the message.  The next open reports it (status, `modelfs recover`),
 * `modelfs unmount` reads it to exit non-zero, and a successful commit or
 * an abort removes it.  Written by temp + rename, so it is whole or absent.
 */
#define FAILED_SUFFIX ".modelfs-failed"

int mfs_txn_note_failure(mfs_txn *t, const char *msg)
{
	char name[NAME_MAX + 1], tmp[NAME_MAX + 1], line[768];
	if (mfs_sidefile_name(name, sizeof(name), t->name, FAILED_SUFFIX) < 0 ||
	    mfs_sidefile_name(tmp, sizeof(tmp), t->name, FAILED_SUFFIX "-new") < 0)
		return -ENAMETOOLONG;
	int n = snprintf(line, sizeof(line), "%lld %s\n", (long long)time(NULL), msg);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1, line[n - 1] = '\n';
	int fd = mfs_io->openat(t->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
	                        O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = mfs_pwrite_full(fd, line, (size_t)n, 0);
	if (rc == 0 && mfs_io->fsync(fd) < 0)
		rc = -errno;
	mfs_io->close(fd);
	if (rc == 0 && mfs_io->renameat(t->dirfd, tmp, t->dirfd, name) < 0)
		rc = -errno;
	if (rc < 0)
		mfs_io->unlinkat(t->dirfd, tmp, 0);
	else
		mfs_fsync_dir(t->dirfd);
	return rc;
}

void txn_clear_failure(struct mfs_txn *t)
{
	char name[NAME_MAX + 1];
	if (mfs_sidefile_name(name, sizeof(name), t->name, FAILED_SUFFIX) == 0 &&
	    mfs_io->unlinkat(t->dirfd, name, 0) == 0)
		mfs_fsync_dir(t->dirfd);
}

/* The note of a failed commit, as "<time> <message>", into buf; false if none. */
static bool read_failure_at(int dirfd, const char *model, char *buf, size_t len)
{
	char name[NAME_MAX + 1];
	if (mfs_sidefile_name(name, sizeof(name), model, FAILED_SUFFIX) < 0)
		return false;
	int fd = mfs_io->openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
	if (fd < 0)
		return false;
	ssize_t n = mfs_io->pread(fd, buf, len - 1, 0);
	mfs_io->close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return true;
}

static bool read_failure(struct mfs_txn *t, char *buf, size_t len)
{
	return t->dirfd >= 0 && read_failure_at(t->dirfd, t->name, buf, len);
}

int mfs_txn_failure_note(const char *model_path, char *msg, size_t len, int64_t *when)
{
	char dir[PATH_MAX], note[768];
	const char *slash = strrchr(model_path, '/');
	const char *name = slash ? slash + 1 : model_path;
	if (slash) {
		size_t dl = slash == model_path ? 1 : (size_t)(slash - model_path);
		if (dl >= sizeof(dir))
			return -ENAMETOOLONG;
		memcpy(dir, model_path, dl);
		dir[dl] = '\0';
	} else {
		strcpy(dir, ".");
	}
	int dirfd = mfs_io->openat(AT_FDCWD, dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (dirfd < 0)
		return -errno;
	bool found = read_failure_at(dirfd, name, note, sizeof(note));
	mfs_io->close(dirfd);
	if (!found)
		return -ENOENT;
	char *sp = strchr(note, ' ');
	if (when)
		*when = strtoll(note, NULL, 10);
	if (len)
		snprintf(msg, len, "%s", sp ? sp + 1 : note);
	return 0;
}

/* Append "; <text>" (or just <text>) to a recovery message. */
static void rec_add(struct mfs_txn_recovery *rec, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void rec_add(struct mfs_txn_recovery *rec, const char *fmt, ...)
{
	size_t l = strlen(rec->msg);
	if (l && l + 2 < sizeof(rec->msg)) {
		memcpy(rec->msg + l, "; ", 3);
		l += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rec->msg + l, sizeof(rec->msg) - l, fmt, ap);
	va_end(ap);
}

/*
 * Recovery, before the model is read for good: an interrupted in-place
 * commit is finished (or a never-started one removed) and dead temps go.
 * A read-only transaction never writes: a committing redo log (the model
 * may be half patched) makes it refuse, naming `modelfs recover`.
 * *journal gets the id of the journal whose commit a finished log
 * completed (0 if none).
 */
static int recover(struct mfs_txn *t, struct mfs_txn_recovery *rec, uint64_t *journal,
                   const char *path, char *err, size_t errlen)
{
	char msg[512];
	bool committing;
	*journal = 0;
	int rc = mfs_commit_pending(t->dirfd, t->name, &committing);
	if (rc < 0)
		return mfs_errf(err, errlen, rc, path, "cannot check for an interrupted commit: %s",
		                strerror(-rc));
	if (rc == 1 && t->opts.read_only) {
		if (committing)
			return mfs_errf(err, errlen, -EBUSY, path, "an in-place commit was interrupted "
			                "and the model may be half patched; run 'modelfs recover %s' "
			                "(or mount it read-write) first", path);
	} else if (rc == 1) {
		/* The model's layout, for recovery to check the log is its own. */
		struct mfs_identity now = {0};
		mfs_model *m = NULL;
		if (mfs_model_open(&m, t->path, NULL, msg, sizeof(msg)) == 0) {
			now.layout = mfs_model_layout(m);
			mfs_model_close(m);
		}
		struct mfs_commit_report rep;
		struct mfs_commit_hooks hooks = {.done = t->opts.recover_done,
		                                 .total = t->opts.recover_total};
		rc = mfs_commit_recover_hooked(t->dirfd, t->name, &now, &hooks, &rep, msg,
		                               sizeof(msg));
		if (rc < 0)
			return mfs_errf(err, errlen, rc, path, "%s", txn_strip_display(msg, t->name));
		if (rep.recovered || rep.discarded) {
			rec->redo_replayed = rep.recovered;
			rec_add(rec, "%s", txn_strip_display(msg, t->name));
		}
		if (rep.recovered)
			*journal = rep.journal_id;
	}
	if (!t->opts.read_only) {
		int n = mfs_commit_gc(t->dirfd, t->name);
		if (n > 0)
			rec_add(rec, "removed %d temp file%s of a dead commit", n, n == 1 ? "" : "s");
	}
	char note[512];
	if (read_failure(t, note, sizeof(note))) {
		char *sp = strchr(note, ' ');
		time_t when = (time_t)strtoll(note, NULL, 10);
		char stamp[32] = "";
		struct tm tm;
		if (localtime_r(&when, &tm))
			strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
		rec_add(rec, "a commit failed at %s with nobody to tell (at unmount): %s", stamp,
		        sp ? sp + 1 : note);
	}
	return 0;
}

int mfs_txn_open(mfs_txn **out, const char *path, const struct mfs_txn_opts *opts,
                 struct mfs_txn_recovery *rec, char *err, size_t errlen)
{
	static const struct mfs_txn_opts defaults;
	struct mfs_txn *t = NULL;
	struct mfs_txn_recovery dummy;
	char abs[PATH_MAX], msg[512];
	int rc;

	*out = NULL;
	if (!rec)
		rec = &dummy;
	memset(rec, 0, sizeof(*rec));
	if (err && errlen)
		err[0] = '\0';
	/* A remote model has no directory: no journal, no commit, no
	 * recovery; it can only be read. */
	bool remote = mfs_path_is_remote(path);
	uint64_t committed_journal = 0;
	if (remote && !(opts && opts->read_only))
		return mfs_errf(err, errlen, -EROFS, path, "a remote model is read-only");
	if (remote) {
		if (snprintf(abs, sizeof(abs), "%s", path) >= (int)sizeof(abs))
			return mfs_errf(err, errlen, -ENAMETOOLONG, path, "URL too long");
	} else if (!realpath(path, abs)) {
		return mfs_errf(err, errlen, -errno, path, "%s", strerror(errno));
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
	/* Writer-preferring: a steady stream of FUSE reads must not starve a
	 * commit (glibc's default prefers readers).  No function here takes
	 * the lock recursively, which this kind would deadlock. */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&t->lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&t->view_lock, NULL);
	t->dirfd = -1;
	t->opts = opts ? *opts : defaults;
	t->generation = 1;
	snprintf(t->last, sizeof(t->last), "last commit: none");
	pthread_mutex_init(&t->sha_lock, NULL);
	t->path = strdup(abs);
	char *slash = strrchr(abs, '/');
	t->name = strdup(slash + 1);
	t->orig_name = strdup(slash + 1);
	if (t->opts.commit_to && t->opts.commit_to[0])
		t->commit_to = strdup(t->opts.commit_to);
	t->opts.commit_to = NULL;
	if (!t->path || !t->name || !t->orig_name ||
	    (opts && opts->commit_to && opts->commit_to[0] && !t->commit_to)) {
		rc = mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
		goto out;
	}
	if (t->commit_to) {
		if ((rc = mfs_version_check(t->commit_to, msg, sizeof(msg))) < 0) {
			rc = mfs_errf(err, errlen, rc, path, "commit_to: %s", msg);
			goto out;
		}
		if (remote || t->opts.read_only) {
			rc = mfs_errf(err, errlen, -EROFS, path, "commit_to: a read-only mount "
			              "writes no versions");
			goto out;
		}
		/* The kind of file the name opens as, checked now so that a
		 * template a commit could never use fails the mount. */
		char name[256];
		if ((rc = mfs_version_name(name, sizeof(name), t->commit_to, t->orig_name, NULL, -1,
		                           msg, sizeof(msg))) < 0 ||
		    (rc = mfs_version_kind(name, mfs_model_path_rewrites(t->path), msg,
		                           sizeof(msg))) < 0) {
			rc = mfs_errf(err, errlen, rc, path, "commit_to: %s", msg);
			goto out;
		}
	}
	if (remote)
		goto open_model;
	if (slash == abs)
		slash[1] = '\0';
	else
		*slash = '\0';
	t->dirfd = mfs_io->openat(AT_FDCWD, abs, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (t->dirfd < 0) {
		rc = mfs_errf(err, errlen, -errno, path, "cannot open its directory: %s",
		              strerror(errno));
		goto out;
	}

	if ((rc = recover(t, rec, &committed_journal, path, err, errlen)) < 0)
		goto out;

open_model:
	rc = mfs_model_open(&t->m, t->path, NULL, err, errlen);
	if (rc < 0)
		goto out;
	t->d = mfs_model_desc(t->m);
	t->props_ok = t->m->fmt->props_writable && t->m->fmt->props_writable(t->m);
	if ((rc = txn_lock_model(t->m, LOCK_SH)) < 0) {
		rc = mfs_errf(err, errlen, rc, path, rc == -EBUSY ? "another modelfs process is "
		              "patching the model in place; try again when its commit is done" :
		              "cannot lock the model: %s", strerror(-rc));
		goto out;
	}
	if ((rc = txn_model_identity(t)) < 0) {
		rc = mfs_errf(err, errlen, rc, path, "cannot stat the model: %s", strerror(-rc));
		goto out;
	}
	if ((rc = txn_init_state(t)) < 0) {
		rc = mfs_errf(err, errlen, rc, path, "out of memory");
		goto out;
	}
	if (!t->opts.read_only) {
		struct mfs_stage_recovery srec;
		struct mfs_stage_opts sopts = {.committed_journal = committed_journal};
		rc = mfs_stage_open(&t->st, t->dirfd, t->name, &t->id, &sopts, &srec, msg,
		                    sizeof(msg));
		if (rc < 0) {
			rc = mfs_errf(err, errlen, rc, path, "%s", txn_strip_display(msg, t->name));
			goto out;
		}
		char note[160] = "";
		uint64_t offered = 0;
		if (srec.found && (rc = replay_state(t, &offered, note, sizeof(note))) < 0) {
			rc = mfs_errf(err, errlen, rc, path, "replaying the journal: %s",
			              strerror(-rc));
			goto out;
		}
		rec->n_recovered = offered;
		rec->journal_found = offered > 0;
		if (srec.found && srec.msg[0])
			rec_add(rec, "%s%s%s", srec.msg, note, offered ? " (staged again, not "
			        "applied: commit or abort them)" : "");
	}
	t->rec = *rec;
	*out = t;
	return 0;
out:
	mfs_txn_close(t);
	return rc;
}

void mfs_txn_close(mfs_txn *t)
{
	if (!t)
		return;
	if (t->st) {
		/* Scratch objects do not outlive the session (invariant 7). */
		for (size_t i = 0; i < t->n_scratch; i++)
			if (t->scratch[i])
				mfs_stage_drop(t->st, key_of(K_SCRATCH, i));
		mfs_stage_close(t->st);
	}
	txn_view_drop(&t->view);
	if (t->d)
		txn_clear_state(t);
	free(t->scratch);
	mfs_model_close(t->m);
	while (t->old) {
		struct old_model *o = t->old;
		t->old = o->next;
		mfs_model_close(o->m);
		free(o);
	}
	if (t->dirfd >= 0)
		mfs_io->close(t->dirfd);
	free(t->path);
	free(t->name);
	free(t->orig_name);
	free(t->commit_to);
	pthread_mutex_destroy(&t->sha_lock);
	pthread_mutex_destroy(&t->view_lock);
	pthread_rwlock_destroy(&t->lock);
	free(t->gone);
	adds_free(t);
	free(t);
}

const mfs_model *mfs_txn_model(mfs_txn *t)
{
	pthread_rwlock_rdlock(&t->lock);
	const mfs_model *m = t->m;
	pthread_rwlock_unlock(&t->lock);
	return m;
}

const struct mfs_desc *mfs_txn_desc(mfs_txn *t)
{
	pthread_rwlock_rdlock(&t->lock);
	const struct mfs_desc *d = t->d;
	pthread_rwlock_unlock(&t->lock);
	return d;
}

void mfs_txn_release_old(mfs_txn *t, const mfs_model *keep)
{
	pthread_rwlock_wrlock(&t->lock);
	struct old_model **pp = &t->old;
	while (*pp) {
		struct old_model *o = *pp;
		if (o->m == keep) {
			pp = &o->next;
			continue;
		}
		*pp = o->next;
		mfs_model_close(o->m);
		free(o);
	}
	pthread_rwlock_unlock(&t->lock);
}

uint64_t mfs_txn_generation(mfs_txn *t)
{
	pthread_rwlock_rdlock(&t->lock);
	uint64_t g = t->generation;
	pthread_rwlock_unlock(&t->lock);
	return g;
}

bool mfs_txn_dirty(mfs_txn *t)
{
	pthread_rwlock_rdlock(&t->lock);
	bool dirty = t->n_dirty > 0;
	pthread_rwlock_unlock(&t->lock);
	return dirty;
}

int mfs_txn_sync(mfs_txn *t)
{
	pthread_rwlock_rdlock(&t->lock);
	int rc = t->st ? mfs_stage_sync(t->st) : 0;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_statvfs(struct statvfs *out, mfs_txn *t)
{
	if (t->dirfd < 0) {
		/* A remote model: no local file system under it. */
		memset(out, 0, sizeof(*out));
		out->f_bsize = out->f_frsize = 4096;
		out->f_namemax = 255;
		out->f_flag = ST_RDONLY;
		return 0;
	}
	return fstatvfs(t->dirfd, out) < 0 ? -errno : 0;
}

/*
 * codec/txn.c — transactions: edits staged against a model, shown at once,
 * and committed atomically (include/modelfs/txn.h).
 *
 * This is where the pieces of DESIGN §5 meet: the model readers (onnx.c,
 * safetensors.c), the staging store (stage.c), the splice writers
 * (splice_onnx.c, splice_st.c) and the commit engine (commit.c).  The FUSE
 * layer sees only txn.h; everything here is format-neutral except the
 * choice of splice writer.
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
 *     4 << 56 | prop slot   a metadata property        'S' key NUL value | 'D'
 *     5 << 56 | scratch id  a scratch file             the bytes (no base)
 *
 * Prop slots 0 .. n-1 are the model's props in file order; a new key gets
 * the next free slot, so a recovered journal puts every prop back where it
 * was.  Small values are single VALUE records; data is written through to
 * the journal (stage flush) before a write returns, so a daemon killed with
 * edits staged finds all of them in the journal at the next open, where they
 * are replayed and offered again (never applied).
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
 * the staged no-ops are dropped — or goes to the commit engine: in place
 * (redo log) when every edit is a same-size data edit of bytes that lie in
 * the model file and the mode allows it (AUTO: a model of at least
 * inplace_min bytes, and patches of at most half of it, since an in-place
 * commit writes them twice), else as a spliced rewrite.  After
 * a successful commit the model is opened again (the old one is kept for
 * descriptors and open files), the stage is reset to the new file's identity
 * keeping only scratch objects, and the generation moves on.
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
 *     commit.c; it is the old or the new version whatever fails.
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
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "modelfs/txn.h"

#include "commit.h"
#include "internal.h"
#include "splice.h"
#include "stage.h"

#define KIND_SHIFT      56
#define KEY_IDX(k)      ((k) & ((1ull << KIND_SHIFT) - 1))
#define KEY_KIND(k)     ((unsigned)((k) >> KIND_SHIFT))
#define DEFAULT_INPLACE_MIN (64ull << 20)
#define CMP_BUF         (256u << 10)   /* compare buffer: one stage chunk; see REDO_BUF */
#define RUN_GAP         64      /* differing runs closer than this are merged */

enum key_kind { K_DATA = 0, K_DTYPE = 1, K_SHAPE = 2, K_META = 3, K_PROP = 4, K_SCRATCH = 5 };

static uint64_t key_of(enum key_kind kind, uint64_t idx)
{
	return (uint64_t)kind << KIND_SHIFT | idx;
}

static const char *const meta_names[MFS_META_N] = {
	[MFS_META_PRODUCER_NAME] = "producer_name",
	[MFS_META_PRODUCER_VERSION] = "producer_version",
	[MFS_META_DOMAIN] = "domain",
	[MFS_META_MODEL_VERSION] = "model_version",
	[MFS_META_DOC_STRING] = "doc_string",
	[MFS_META_GRAPH_NAME] = "graph_name",
};

/* Where a tensor shows in the tree, for status lines. */
enum where { W_TENSOR, W_WEIGHTS, W_SPARSE };
static const char *const where_name[] = {"tensor", "weights", "sparse"};

/* What is staged for one tensor of the current model. */
struct tstate {
	const mfs_model *m;
	const struct mfs_tensor *t;
	uint8_t where;
	bool bound;             /* its data key is bound in the stage */
	bool data;              /* its data is staged */
	bool has_dtype, has_shape;
	int32_t dtype;
	size_t rank;
	int64_t *dims;          /* malloc'd, when has_shape */
};

/* A metadata property slot (see the key table). */
struct pslot {
	char *key;              /* NULL: no property here (removed, or a free slot) */
	char *value;
	size_t len;
	bool staged;
};

struct old_model {
	mfs_model *m;
	struct old_model *next;
};

/* Reads an edited tensor's bytes from the stage, for piece lists. */
struct rd {
	struct mfs_stage *st;
	uint64_t key;
};

/* The effective edits, ready for a splice writer. */
struct plan {
	struct mfs_tensor_edit *te;
	size_t n_te;
	struct mfs_run **runs;  /* per te, malloc'd */
	struct rd *rds;         /* per te */
	struct mfs_prop_edit *props;
	struct mfs_edit_set set;
	uint64_t bytes_edited;
	bool layout_kept;       /* only same-size data edits of bytes in the model file */
	bool empty;
};

/* The root model file as it would be committed now. */
struct view {
	bool valid;
	uint64_t seq;
	int rc;
	struct plan plan;
	struct mfs_splice sp;
	uint64_t *starts;       /* each piece's offset in the file */
};

struct mfs_txn {
	pthread_rwlock_t lock;
	pthread_mutex_t view_lock;
	char *path;             /* the model, absolute */
	char *name;             /* its file name */
	int dirfd;              /* O_PATH descriptor of its directory */
	struct mfs_txn_opts opts;

	mfs_model *m;
	const struct mfs_desc *d;
	struct old_model *old;
	struct mfs_identity id;
	bool broken;            /* invariant 4 */
	char broken_msg[512];

	struct mfs_stage *st;   /* NULL when read-only */
	struct tstate *ts;      /* d->n_tensors */
	char *meta[MFS_META_N];
	size_t meta_len[MFS_META_N];
	bool meta_staged[MFS_META_N];
	struct pslot *props;
	size_t n_props, n_orig_props;
	uint8_t *scratch;       /* 1 = live, by scratch id */
	size_t n_scratch;

	uint64_t n_dirty;       /* staged edits of the model (scratch not counted) */
	uint64_t generation;
	uint64_t edit_seq;
	struct view view;

	char last[640];         /* "last commit: ..." */
	struct mfs_txn_recovery rec;
	char journal_note[256];
};

/* ------------------------------------------------------------ helpers */

static void set_msg(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_msg(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* One line: strip a "<file>: " prefix that mfs_errf() put there. */
static const char *strip_display(const char *msg, const char *display)
{
	size_t n = strlen(display);
	if (strncmp(msg, display, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
		return msg + n + 2;
	return msg;
}

static bool utf8_ok(const char *s, size_t n)
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

/* Text as a file held it: one trailing '\n' does not count. */
static size_t chomp(const char *text, size_t len)
{
	return len && text[len - 1] == '\n' ? len - 1 : len;
}

static char *memdup0(const void *p, size_t len)
{
	char *s = malloc(len + 1);
	if (s) {
		if (len)
			memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

/* "1,10" -> dims.  Empty is a scalar.  Non-negative decimals only. */
static int parse_shape(const char *text, size_t len, int64_t *dims, size_t *rank)
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

static bool dims_equal(const int64_t *a, size_t ra, const int64_t *b, size_t rb)
{
	if (ra != rb)
		return false;
	for (size_t i = 0; i < ra; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

/* Model-provided text in a status line: controls and '%' as %XX. */
static void put_escaped(char **p, size_t *n, size_t *cap, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char tmp[4];
		size_t k = 1;
		if (c < 0x20 || c == 0x7f || c == '%')
			k = (size_t)snprintf(tmp, sizeof(tmp), "%%%02X", c);
		else
			tmp[0] = (char)c;
		if (*n + k + 1 > *cap) {
			size_t nc = *cap ? *cap * 2 : 1024;
			while (nc < *n + k + 1)
				nc *= 2;
			char *np = realloc(*p, nc);
			if (!np)
				return;
			*p = np;
			*cap = nc;
		}
		memcpy(*p + *n, tmp, k);
		*n += k;
		(*p)[*n] = '\0';
	}
}

static void put_text(char **p, size_t *n, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void put_text(char **p, size_t *n, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	if (*n + (size_t)k + 1 > *cap) {
		size_t nc = *cap ? *cap * 2 : 1024;
		while (nc < *n + (size_t)k + 1)
			nc *= 2;
		char *np = realloc(*p, nc);
		if (!np)
			return;
		*p = np;
		*cap = nc;
	}
	va_start(ap, fmt);
	vsnprintf(*p + *n, (size_t)k + 1, fmt, ap);
	va_end(ap);
	*n += (size_t)k;
}

/* ------------------------------------------------------------ state */

static ssize_t base_read(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct tstate *s = arg;
	return mfs_tensor_read(s->m, s->t, buf, len, off);
}

static ssize_t rd_fn(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct rd *r = arg;
	return mfs_stage_read(r->st, r->key, buf, len, off);
}

/* Count staged edits (dirty) as flags flip. */
static void flag(struct mfs_txn *t, bool *f, bool v)
{
	if (*f != v)
		t->n_dirty += v ? 1 : (uint64_t)-1;
	*f = v;
}

static void clear_state(struct mfs_txn *t)
{
	if (t->ts) {
		for (size_t i = 0; i < t->d->n_tensors; i++)
			free(t->ts[i].dims);
		free(t->ts);
		t->ts = NULL;
	}
	for (int k = 0; k < MFS_META_N; k++) {
		free(t->meta[k]);
		t->meta[k] = NULL;
		t->meta_staged[k] = false;
	}
	for (size_t i = 0; i < t->n_props; i++) {
		free(t->props[i].key);
		free(t->props[i].value);
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
static int reset_state(struct mfs_txn *t)
{
	for (size_t i = 0; i < t->d->n_tensors; i++) {
		struct tstate *s = &t->ts[i];
		free(s->dims);
		s->dims = NULL;
		s->data = s->has_dtype = s->has_shape = false;
		s->rank = 0;
	}
	for (int k = 0; k < MFS_META_N; k++) {
		free(t->meta[k]);
		t->meta[k] = NULL;
		t->meta_staged[k] = false;
	}
	for (size_t i = 0; i < t->n_props; i++) {
		free(t->props[i].key);
		free(t->props[i].value);
	}
	t->n_props = t->n_orig_props = 0;
	t->n_dirty = 0;
	const struct mfs_desc *d = t->d;
	for (size_t i = 0; i < d->n_props; i++) {
		struct pslot *p = &t->props[i];
		memset(p, 0, sizeof(*p));
		p->key = strdup(d->props[i].name);
		p->value = memdup0(d->props[i].value, d->props[i].len);
		p->len = d->props[i].len;
		t->n_props = i + 1;
		if (!p->key || !p->value)
			return -ENOMEM;
	}
	t->n_orig_props = d->n_props;
	return 0;
}

/* The mirrors of the current model, with nothing staged. */
static int init_state(struct mfs_txn *t)
{
	const struct mfs_desc *d = t->d;
	t->ts = calloc(d->n_tensors ? d->n_tensors : 1, sizeof(*t->ts));
	t->props = calloc(d->n_props ? d->n_props : 1, sizeof(*t->props));
	if (!t->ts || !t->props)
		return -ENOMEM;
	for (size_t i = 0; i < d->n_tensors; i++) {
		t->ts[i].m = t->m;
		t->ts[i].t = d->tensors[i];
	}
	const struct mfs_graph *g = d->graph;
	for (size_t i = 0; g && i < g->n_inits; i++)
		t->ts[g->inits[i]->id].where = W_WEIGHTS;
	for (size_t i = 0; g && i < g->n_sparse_inits; i++) {
		t->ts[g->sparse_inits[i]->values->id].where = W_SPARSE;
		t->ts[g->sparse_inits[i]->indices->id].where = W_SPARSE;
	}
	for (size_t i = 0; i < d->n_props; i++) {
		struct pslot *p = &t->props[i];
		p->key = strdup(d->props[i].name);
		p->value = memdup0(d->props[i].value, d->props[i].len);
		p->len = d->props[i].len;
		if (!p->key || !p->value) {
			t->n_props = i + 1;
			return -ENOMEM;
		}
	}
	t->n_props = t->n_orig_props = d->n_props;
	return 0;
}

static void view_drop(struct view *v);

/* Something visible changed: the served view is stale. */
static void touched(struct mfs_txn *t)
{
	t->edit_seq++;
}

/* The current model's tensor for `x` (of this or an older description). */
static struct tstate *tensor_state(struct mfs_txn *t, const struct mfs_tensor *x)
{
	if (!x || x->id >= t->d->n_tensors)
		return NULL;
	return &t->ts[x->id];
}

static enum mfs_onnx_storage storage_of(const struct mfs_txn *t, const struct mfs_tensor *x)
{
	if (t->m->onnx)
		return (enum mfs_onnx_storage)t->m->onnx->tspans[x->id].storage;
	return MFS_ONNX_RAW;    /* safetensors: always bytes in the file */
}

/* May tensor `x` be edited?  0, or the errno a write gets. */
static int editable(const struct mfs_txn *t, const struct mfs_tensor *x)
{
	if (t->opts.read_only)
		return -EROFS;
	if (t->broken)
		return -EIO;
	if (t->d->format == MFS_FORMAT_SAFETENSORS)
		return t->m->st_data_off ? 0 : -EACCES;
	enum mfs_onnx_storage s = storage_of(t, x);
	return s == MFS_ONNX_EXTERNAL || s == MFS_ONNX_STRING ? -EACCES : 0;
}

static int bind_tensor(struct mfs_txn *t, struct tstate *s)
{
	if (s->bound)
		return 0;
	int rc = mfs_stage_bind(t->st, key_of(K_DATA, s->t->id), s->t->nbytes, base_read, s);
	if (rc == 0)
		s->bound = true;
	return rc;
}

static int32_t eff_dtype(const struct tstate *s)
{
	return s->has_dtype ? s->dtype : s->t->dtype;
}

static const int64_t *eff_dims(const struct tstate *s, size_t *rank)
{
	*rank = s->has_shape ? s->rank : s->t->rank;
	return s->has_shape ? s->dims : s->t->dims;
}

/* ------------------------------------------------------------ plan */

static void plan_free(struct plan *p)
{
	for (size_t i = 0; i < p->n_te; i++)
		free(p->runs ? p->runs[i] : NULL);
	free(p->runs);
	free(p->rds);
	free(p->te);
	free(p->props);
	memset(p, 0, sizeof(*p));
}

/*
 * Bytes [at, at + len) differ, and `at` lies at or past the end of the last
 * run: extend that run if the gap between them is at most RUN_GAP, else
 * start a new one.  Adding a range is the same as adding each of its bytes
 * in turn, since the bytes of a range are adjacent (no gap at all).
 */
static int add_run(struct mfs_run **runs, size_t *n, size_t *cap, uint64_t at, uint64_t len)
{
	struct mfs_run *last = *n ? &(*runs)[*n - 1] : NULL;
	if (last && at - (last->off + last->len) <= RUN_GAP) {
		last->len = at + len - last->off;
		return 0;
	}
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct mfs_run *nr = reallocarray(*runs, nc, sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		*runs = nr;
		*cap = nc;
	}
	(*runs)[(*n)++] = (struct mfs_run){at, len};
	return 0;
}

/*
 * Which bytes of a[0..64) and b[0..64) differ, as a 64-bit mask: bit i for
 * byte i.
 *
 * HOW IT WORKS: with SSE2 (every x86-64), four 16-byte compares and their
 * byte masks.  Elsewhere, eight bytes at a time: in the XOR of two words a
 * byte is nonzero exactly where they differ; folding each byte's bits onto
 * its lowest bit and multiplying by 0x0102040810204080 gathers those
 * eight bits into the top byte, one per byte of memory (little-endian
 * loads, so byte i of memory is bits 8i..8i+7).
 */
#ifdef __SSE2__
static inline uint64_t block_mask(const uint8_t *a, const uint8_t *b)
{
	uint64_t m = 0;
	for (int k = 0; k < 4; k++) {
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)(a + 16 * k));
		__m128i y = _mm_loadu_si128((const __m128i *)(const void *)(b + 16 * k));
		unsigned eq = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, y));
		m |= (uint64_t)(~eq & 0xffffu) << (16 * k);
	}
	return m;
}
#else
static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline uint64_t block_mask(const uint8_t *a, const uint8_t *b)
{
	uint64_t m = 0;
	for (int j = 0; j < 64; j += 8) {
		uint64_t x = load_le64(a + j) ^ load_le64(b + j);
		x |= x >> 4;
		x |= x >> 2;
		x |= x >> 1;
		x &= 0x0101010101010101ull;     /* bit 8i: byte i differs */
		m |= ((x * 0x0102040810204080ull) >> 56) << j;
	}
	return m;
}
#endif

static inline unsigned popcount64(uint64_t x)
{
	/* No popcnt instruction is assumed: the classic bit-slicing sum. */
	x = x - ((x >> 1) & 0x5555555555555555ull);
	x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
	return (unsigned)((x * 0x0101010101010101ull) >> 56);
}

/*
 * The differing bytes of a[0..len) and b[0..len) (len <= DIFF_BLOCK), which
 * lie at `pos` in the tensor, added as runs; *diff counts them.
 *
 * A block's mask of differing bytes gives their count (its popcount), the
 * first (trailing zeros) and the last (leading zeros).  Two differing bytes
 * of one block are at most DIFF_BLOCK - 2 bytes apart, which is within
 * RUN_GAP, so byte by byte they would all have joined one run: the block
 * adds the single range from its first to its last differing byte.
 */
#define DIFF_BLOCK      64
_Static_assert(DIFF_BLOCK - 2 <= RUN_GAP, "a block's differing bytes must form one run");

static int diff_block(struct mfs_run **runs, size_t *n, size_t *cap, uint64_t *diff,
                      const uint8_t *a, const uint8_t *b, size_t len, uint64_t pos)
{
	uint64_t m = 0;
	if (len == DIFF_BLOCK) {
		m = block_mask(a, b);
	} else {
		for (size_t j = 0; j < len; j++)        /* the tensor's last bytes */
			m |= (uint64_t)(a[j] != b[j]) << j;
	}
	if (!m)
		return 0;
	unsigned first = (unsigned)__builtin_ctzll(m), last = 63u - (unsigned)__builtin_clzll(m);
	*diff += popcount64(m);
	return add_run(runs, n, cap, pos + first, last + 1 - first);
}

/*
 * The ranges of tensor `s`'s staged data that differ from its base (same
 * size): the staged extents compared block by block.  *changed gets the
 * number of differing bytes.
 */
static int diff_runs(struct mfs_txn *t, struct tstate *s, struct mfs_run **out, size_t *n_out,
                     uint64_t *changed, uint8_t *b1, uint8_t *b2)
{
	uint64_t key = key_of(K_DATA, s->t->id);
	struct mfs_stage_extent *ext = NULL;
	struct mfs_run *runs = NULL;
	size_t n_ext = 0, n = 0, cap = 0;
	uint64_t diff = 0;
	int rc = mfs_stage_extents(t->st, key, NULL, 0, &n_ext);
	if (rc < 0)
		return rc;
	ext = malloc((n_ext ? n_ext : 1) * sizeof(*ext));
	if (!ext)
		return -ENOMEM;
	if ((rc = mfs_stage_extents(t->st, key, ext, n_ext, &n_ext)) < 0)
		goto out;
	for (size_t e = 0; e < n_ext; e++) {
		uint64_t end = ext[e].off + ext[e].len;
		if (end > s->t->nbytes)
			end = s->t->nbytes;
		for (uint64_t pos = ext[e].off; pos < end;) {
			size_t k = end - pos > CMP_BUF ? CMP_BUF : (size_t)(end - pos);
			ssize_t a = mfs_stage_read(t->st, key, b1, k, pos);
			ssize_t b = mfs_tensor_read(s->m, s->t, b2, k, pos);
			if (a < 0 || b < 0) {
				rc = (int)(a < 0 ? a : b);
				goto out;
			}
			if ((size_t)a != k || (size_t)b != k) {
				rc = -EIO;
				goto out;
			}
			for (size_t i = 0; i < k; i += DIFF_BLOCK) {
				size_t blk = k - i < DIFF_BLOCK ? k - i : DIFF_BLOCK;
				if ((rc = diff_block(&runs, &n, &cap, &diff, b1 + i, b2 + i, blk,
				                     pos + i)) < 0)
					goto out;
			}
			pos += k;
		}
	}
	*out = runs;
	*n_out = n;
	*changed = diff;
	runs = NULL;
out:
	free(runs);
	free(ext);
	return rc;
}

/* Commit-time checks of one tensor's effective type and size. */
static int validate(const struct mfs_txn *t, const struct mfs_tensor_edit *te, char *msg,
                    size_t msglen)
{
	const struct mfs_tensor *x = te->t;
	const char *dt = mfs_dtype_name(te->dtype);
	uint64_t want = 0;
	bool plain = !te->dtype_changed && !te->dims_changed && te->size == x->nbytes;
	int rc = mfs_tensor_nbytes(&want, te->dtype, te->dims, te->rank);
	if (rc < 0 && !plain) {
		set_msg(msg, msglen, "tensor '%.200s': %s has no fixed element size", x->name, dt);
		return -EINVAL;
	}
	if (rc == 0 && te->size != want) {
		char dims[256];
		mfs_dims_format(dims, sizeof(dims), te->dims, te->rank);
		set_msg(msg, msglen, "tensor '%.200s': data is %" PRIu64 " bytes but %s[%s] needs %"
		        PRIu64, x->name, te->size, dt, dims, want);
		return -EINVAL;
	}
	if (t->d->format == MFS_FORMAT_SAFETENSORS && rc == 0) {
		/* safetensors has no padding: sub-byte tensors fill whole bytes. */
		uint64_t nelem = 1;
		for (size_t k = 0; k < te->rank; k++)
			nelem *= (uint64_t)te->dims[k];
		if (nelem * mfs_dtype_bits(te->dtype) % 8) {
			set_msg(msg, msglen, "tensor '%.200s': %" PRIu64 " %s elements are not a whole "
			        "number of bytes", x->name, nelem, dt);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * Reduce what is staged to its effective edits.  `commit`: validate, and
 * compare same-size data with the base (runs, bytes_edited, no-op
 * detection); otherwise (the served view) only typed storage is compared,
 * which decides whether it must be converted.  Errors leave one line in
 * `msg`.
 */
static int plan_build(struct mfs_txn *t, struct plan *p, bool commit, char *msg, size_t msglen)
{
	const struct mfs_desc *d = t->d;
	uint8_t *b1 = NULL, *b2 = NULL;
	int rc = 0;
	memset(p, 0, sizeof(*p));
	p->layout_kept = true;

	size_t n = 0;
	for (size_t i = 0; i < d->n_tensors; i++) {
		const struct tstate *s = &t->ts[i];
		n += s->data || s->has_dtype || s->has_shape;
	}
	p->te = calloc(n ? n : 1, sizeof(*p->te));
	p->runs = calloc(n ? n : 1, sizeof(*p->runs));
	p->rds = calloc(n ? n : 1, sizeof(*p->rds));
	b1 = malloc(CMP_BUF);
	b2 = malloc(CMP_BUF);
	if (!p->te || !p->runs || !p->rds || !b1 || !b2) {
		rc = -ENOMEM;
		set_msg(msg, msglen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < d->n_tensors; i++) {
		struct tstate *s = &t->ts[i];
		if (!s->data && !s->has_dtype && !s->has_shape)
			continue;
		const struct mfs_tensor *x = s->t;
		struct mfs_tensor_edit *te = &p->te[p->n_te];
		memset(te, 0, sizeof(*te));     /* the slot of a skipped no-op is reused */
		te->t = x;
		te->dtype = eff_dtype(s);
		te->dims = eff_dims(s, &te->rank);
		te->dtype_changed = te->dtype != x->dtype;
		te->dims_changed = !dims_equal(te->dims, te->rank, x->dims, x->rank);
		te->size = x->nbytes;
		if (s->data && (rc = mfs_stage_size(&te->size, t->st, key_of(K_DATA, i))) < 0) {
			set_msg(msg, msglen, "tensor '%.200s': %s", x->name, strerror(-rc));
			goto out;
		}
		if (commit && (rc = validate(t, te, msg, msglen)) < 0)
			goto out;
		enum mfs_onnx_storage sto = storage_of(t, x);
		bool in_file = sto == MFS_ONNX_RAW || sto == MFS_ONNX_PACKED;
		if (s->data) {
			p->rds[p->n_te] = (struct rd){t->st, key_of(K_DATA, i)};
			te->read = rd_fn;
			te->arg = &p->rds[p->n_te];
			if (te->size != x->nbytes) {
				te->data_changed = true;
			} else if (commit || !in_file || te->dtype_changed || te->dims_changed) {
				/* The view skips this for plain data edits of bytes in the
				 * file (the spliced bytes are the same either way); where it
				 * decides how the tensor is re-encoded, it compares too, so
				 * that the view is exactly what a commit writes. */
				uint64_t changed = 0;
				struct mfs_run **runs = &p->runs[p->n_te];
				rc = diff_runs(t, s, runs, &te->n_runs, &changed, b1, b2);
				if (rc < 0) {
					set_msg(msg, msglen, "tensor '%.200s': reading staged data: "
					        "%s", x->name, strerror(-rc));
					goto out;
				}
				te->runs = p->runs[p->n_te];
				te->data_changed = te->n_runs > 0;
				p->bytes_edited += changed;
			} else {
				te->data_changed = true;        /* the view: same bytes anyway */
			}
			if (te->data_changed && te->size != x->nbytes)
				p->bytes_edited += te->size;
		}
		if (!te->dtype_changed && !te->dims_changed && !te->data_changed)
			continue;
		if (te->dtype_changed || te->dims_changed || te->size != x->nbytes || !in_file)
			p->layout_kept = false;
		p->n_te++;
	}

	/* meta/ values that differ from what the model says. */
	for (int k = 0; k < MFS_META_N; k++) {
		if (!t->meta_staged[k])
			continue;
		ssize_t cur = 0;
		const char *orig = "";
		for (size_t i = 0; i < d->n_meta; i++)
			if (strcmp(d->meta[i].name, meta_names[k]) == 0) {
				orig = d->meta[i].value;
				cur = (ssize_t)chomp(d->meta[i].value, d->meta[i].len);
			}
		if ((size_t)cur == t->meta_len[k] && memcmp(orig, t->meta[k], (size_t)cur) == 0)
			continue;
		p->set.meta[k] = t->meta[k];
		p->set.meta_len[k] = t->meta_len[k];
		p->bytes_edited += t->meta_len[k];
		p->layout_kept = false;
	}

	/* The effective props, and whether they differ at all. */
	size_t n_live = 0;
	for (size_t i = 0; i < t->n_props; i++)
		n_live += t->props[i].key != NULL;
	p->props = calloc(n_live ? n_live : 1, sizeof(*p->props));
	if (!p->props) {
		rc = -ENOMEM;
		set_msg(msg, msglen, "out of memory");
		goto out;
	}
	bool props_changed = n_live != d->n_props;
	size_t k = 0;
	for (size_t i = 0; i < t->n_props; i++) {
		const struct pslot *ps = &t->props[i];
		if (!ps->key)
			continue;
		struct mfs_prop_edit *pe = &p->props[k++];
		pe->orig = i < t->n_orig_props ? (int64_t)i : -1;
		pe->key = ps->key;
		pe->value = ps->value;
		pe->len = ps->len;
		pe->changed = pe->orig < 0 || strcmp(ps->key, d->props[i].name) != 0 ||
		              ps->len != d->props[i].len ||
		              memcmp(ps->value, d->props[i].value, ps->len) != 0;
		props_changed |= pe->changed || pe->orig != (int64_t)(k - 1);
		if (pe->changed)
			p->bytes_edited += strlen(ps->key) + ps->len;
	}
	if (props_changed) {
		p->set.props_changed = true;
		p->set.props = p->props;
		p->set.n_props = n_live;
		p->layout_kept = false;
	}
	p->set.tensors = p->te;
	p->set.n_tensors = p->n_te;
	p->empty = !p->n_te && !p->set.props_changed;
	for (int j = 0; j < MFS_META_N; j++)
		p->empty &= !p->set.meta[j];
out:
	free(b1);
	free(b2);
	if (rc < 0)
		plan_free(p);
	return rc;
}

static int build_splice(struct mfs_txn *t, const struct plan *p, struct mfs_splice *sp,
                        char *msg, size_t msglen)
{
	if (t->d->format == MFS_FORMAT_ONNX)
		return mfs_splice_onnx(sp, t->m, &p->set, msg, msglen);
	return mfs_splice_st(sp, t->m, &p->set, msg, msglen);
}

/* ------------------------------------------------------------ the view */

static void view_drop(struct view *v)
{
	plan_free(&v->plan);
	mfs_splice_free(&v->sp);
	free(v->starts);
	v->starts = NULL;
	v->valid = false;
}

/* The current view, built if stale.  Call with the lock shared or held. */
static struct view *view_get(struct mfs_txn *t)
{
	struct view *v = &t->view;
	pthread_mutex_lock(&t->view_lock);
	if (!v->valid || v->seq != t->edit_seq) {
		char msg[512];
		view_drop(v);
		v->seq = t->edit_seq;
		v->valid = true;
		v->rc = plan_build(t, &v->plan, false, msg, sizeof(msg));
		if (v->rc == 0)
			v->rc = build_splice(t, &v->plan, &v->sp, msg, sizeof(msg));
		if (v->rc == 0) {
			v->starts = malloc((v->sp.n ? v->sp.n : 1) * sizeof(*v->starts));
			if (!v->starts)
				v->rc = -ENOMEM;
			uint64_t pos = 0;
			for (size_t i = 0; v->starts && i < v->sp.n; i++) {
				v->starts[i] = pos;
				pos += v->sp.p[i].len;
			}
		}
	}
	pthread_mutex_unlock(&t->view_lock);
	return v;
}

static ssize_t view_read(struct view *v, void *buf, size_t len, uint64_t off)
{
	if (off >= v->sp.total)
		return 0;
	if (len > v->sp.total - off)
		len = (size_t)(v->sp.total - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	size_t lo = 0, hi = v->sp.n;
	while (hi - lo > 1) {           /* the last piece starting at or before off */
		size_t mid = lo + (hi - lo) / 2;
		if (v->starts[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	uint8_t *dst = buf;
	size_t done = 0;
	for (size_t i = lo; i < v->sp.n && done < len; i++) {
		const struct mfs_piece *p = &v->sp.p[i];
		uint64_t in = off + done - v->starts[i];
		size_t k = p->len - in < len - done ? (size_t)(p->len - in) : len - done;
		while (k) {
			ssize_t r;
			if (p->kind == MFS_PIECE_BYTES) {
				memcpy(dst + done, (const uint8_t *)p->buf + in, k);
				r = (ssize_t)k;
			} else if (p->kind == MFS_PIECE_COPY) {
				int rc = mfs_pread_full(p->fd, dst + done, k, p->off + in);
				r = rc < 0 ? rc : (ssize_t)k;
			} else {
				r = p->fn(p->arg, dst + done, k, in);
				if (r == 0)
					r = -EIO;
			}
			if (r < 0)
				return done ? (ssize_t)done : r;
			done += (size_t)r;
			in += (uint64_t)r;
			k -= (size_t)r;
		}
	}
	return (ssize_t)done;
}

/* ------------------------------------------------------------ journal values */

/* Stage small value `key` as one journal record. */
static int put_value(struct mfs_txn *t, uint64_t key, const void *buf, size_t len)
{
	if (len > MFS_STAGE_MAX_VALUE)
		return -EFBIG;
	return mfs_stage_set_value(t->st, key, buf, len);
}

static int drop_key(struct mfs_txn *t, uint64_t key)
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

/* 'S' key NUL value, or 'D'. */
static int put_prop_record(struct mfs_txn *t, size_t slot, const char *key, const char *value,
                           size_t len)
{
	if (!key)
		return put_value(t, key_of(K_PROP, slot), "D", 1);
	size_t klen = strlen(key);
	if (klen + len + 2 > MFS_STAGE_MAX_VALUE)
		return -EFBIG;
	char *rec = malloc(klen + len + 2);
	if (!rec)
		return -ENOMEM;
	rec[0] = 'S';
	memcpy(rec + 1, key, klen + 1);
	memcpy(rec + klen + 2, value, len);
	int rc = put_value(t, key_of(K_PROP, slot), rec, klen + len + 2);
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
	for (size_t i = 0; i < n; i++) {
		uint64_t key = keys[i], idx = KEY_IDX(key);
		unsigned kind = KEY_KIND(key);
		char *v = NULL;
		size_t len = 0;
		bool keep = false;
		struct tstate *s = idx < t->d->n_tensors ? &t->ts[idx] : NULL;
		switch (kind) {
		case K_DATA:
			if (s && editable(t, s->t) == 0 && bind_tensor(t, s) == 0) {
				flag(t, &s->data, true);
				keep = true;
			}
			break;
		case K_DTYPE:
			if (s && editable(t, s->t) == 0 && get_value(t, key, &v, &len) == 0) {
				int32_t dt = mfs_dtype_from_name(v);
				if (dt > 0 && mfs_dtype_bits(dt)) {
					s->dtype = dt;
					flag(t, &s->has_dtype, true);
					keep = true;
				}
			}
			break;
		case K_SHAPE:
			if (s && editable(t, s->t) == 0 && get_value(t, key, &v, &len) == 0) {
				int64_t dims[MFS_MAX_RANK];
				size_t rank;
				s->dims = malloc(MFS_MAX_RANK * sizeof(int64_t));
				if (s->dims && parse_shape(v, len, dims, &rank) == 0) {
					memcpy(s->dims, dims, rank * sizeof(int64_t));
					s->rank = rank;
					flag(t, &s->has_shape, true);
					keep = true;
				} else {
					free(s->dims);
					s->dims = NULL;
				}
			}
			break;
		case K_META:
			if (t->d->format == MFS_FORMAT_ONNX && idx < MFS_META_N &&
			    get_value(t, key, &v, &len) == 0) {
				t->meta[idx] = v;
				t->meta_len[idx] = len;
				v = NULL;
				flag(t, &t->meta_staged[idx], true);
				keep = true;
			}
			break;
		case K_PROP:
			if (idx < (1u << 24) && get_value(t, key, &v, &len) == 0 && len &&
			    (v[0] == 'D' || (v[0] == 'S' && memchr(v + 1, 0, len - 1)))) {
				if (idx >= t->n_props && grow_props(t, idx + 1) < 0)
					break;
				struct pslot *ps = &t->props[idx];
				free(ps->key);
				free(ps->value);
				ps->key = ps->value = NULL;
				ps->len = 0;
				if (v[0] == 'S') {
					size_t kl = strlen(v + 1);
					ps->key = strdup(v + 1);
					ps->value = memdup0(v + kl + 2, len - kl - 2);
					ps->len = len - kl - 2;
				}
				flag(t, &ps->staged, true);
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
		set_msg(note, notelen, "; %" PRIu64 " staged object%s did not fit the model and "
		        "%s dropped", dropped, dropped == 1 ? "" : "s",
		        dropped == 1 ? "was" : "were");
	free(keys);
	return rc;
}

static int model_identity(struct mfs_txn *t)
{
	struct stat sb;
	if (mfs_io->fstat(t->m->fds[0], &sb) < 0)
		return -errno;
	mfs_identity_from_stat(&t->id, &sb);
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
	if (!realpath(path, abs))
		return mfs_errf(err, errlen, -errno, path, "%s", strerror(errno));
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
	if (!t->opts.inplace_min)
		t->opts.inplace_min = DEFAULT_INPLACE_MIN;
	t->generation = 1;
	snprintf(t->last, sizeof(t->last), "last commit: none");
	t->path = strdup(abs);
	char *slash = strrchr(abs, '/');
	t->name = strdup(slash + 1);
	if (!t->path || !t->name) {
		rc = mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
		goto out;
	}
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

	/* Recovery, before the model is read: an interrupted in-place commit
	 * is finished (or a never-started one removed), dead temps go. */
	struct mfs_commit_report rep;
	rc = mfs_commit_recover(t->dirfd, t->name, &rep, msg, sizeof(msg));
	if (rc < 0) {
		rc = mfs_errf(err, errlen, rc, path, "%s", strip_display(msg, t->name));
		goto out;
	}
	if (rep.recovered || rep.discarded) {
		rec->redo_replayed = rep.recovered;
		set_msg(rec->msg, sizeof(rec->msg), "%s", strip_display(msg, t->name));
	}
	if (!t->opts.read_only) {
		int n = mfs_commit_gc(t->dirfd, t->name);
		if (n > 0) {
			size_t l = strlen(rec->msg);
			snprintf(rec->msg + l, sizeof(rec->msg) - l, "%sremoved %d temp file%s of a "
			         "dead commit", l ? "; " : "", n, n == 1 ? "" : "s");
		}
	}

	rc = mfs_model_open(&t->m, t->path, NULL, err, errlen);
	if (rc < 0)
		goto out;
	t->d = mfs_model_desc(t->m);
	if ((rc = model_identity(t)) < 0) {
		rc = mfs_errf(err, errlen, rc, path, "cannot stat the model: %s", strerror(-rc));
		goto out;
	}
	if ((rc = init_state(t)) < 0) {
		rc = mfs_errf(err, errlen, rc, path, "out of memory");
		goto out;
	}
	if (!t->opts.read_only) {
		struct mfs_stage_recovery srec;
		rc = mfs_stage_open(&t->st, t->dirfd, t->name, &t->id, NULL, &srec, msg,
		                    sizeof(msg));
		if (rc < 0) {
			rc = mfs_errf(err, errlen, rc, path, "%s", strip_display(msg, t->name));
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
		if (srec.found && srec.msg[0]) {
			size_t l = strlen(rec->msg);
			snprintf(rec->msg + l, sizeof(rec->msg) - l, "%s%s%s%s", l ? "; " : "",
			         srec.msg, note, offered ? " (staged again, not applied: commit or "
			         "abort them)" : "");
		}
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
	view_drop(&t->view);
	if (t->d)
		clear_state(t);
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
	pthread_mutex_destroy(&t->view_lock);
	pthread_rwlock_destroy(&t->lock);
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

/* ------------------------------------------------------------ tensors */

bool mfs_txn_tensor_staged(mfs_txn *t, const struct mfs_tensor *x)
{
	pthread_rwlock_rdlock(&t->lock);
	const struct tstate *s = tensor_state(t, x);
	bool staged = s && (s->data || s->has_dtype || s->has_shape);
	pthread_rwlock_unlock(&t->lock);
	return staged;
}

int mfs_txn_tensor_size(mfs_txn *t, const struct mfs_tensor *x, uint64_t *out)
{
	int rc = 0;
	pthread_rwlock_rdlock(&t->lock);
	struct tstate *s = tensor_state(t, x);
	if (!s)
		rc = -ENOENT;
	else if (s->data)
		rc = mfs_stage_size(out, t->st, key_of(K_DATA, s->t->id));
	else
		*out = s->t->nbytes;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

ssize_t mfs_txn_tensor_read(mfs_txn *t, const struct mfs_tensor *x, void *buf, size_t len,
                            uint64_t off)
{
	ssize_t rc;
	pthread_rwlock_rdlock(&t->lock);
	struct tstate *s = tensor_state(t, x);
	if (!s)
		rc = -ENOENT;
	else if (s->data)
		rc = mfs_stage_read(t->st, key_of(K_DATA, s->t->id), buf, len, off);
	else
		rc = mfs_tensor_read(t->m, s->t, buf, len, off);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* Take the lock for an edit of tensor `x`; *s gets its state. */
static int edit_begin(struct mfs_txn *t, const struct mfs_tensor *x, struct tstate **s)
{
	pthread_rwlock_wrlock(&t->lock);
	*s = tensor_state(t, x);
	if (!*s)
		return -ENOENT;
	return editable(t, (*s)->t);
}

ssize_t mfs_txn_tensor_write(mfs_txn *t, const struct mfs_tensor *x, const void *buf, size_t len,
                             uint64_t off)
{
	struct tstate *s;
	ssize_t rc = edit_begin(t, x, &s);
	if (rc == 0)
		rc = bind_tensor(t, s);
	if (rc == 0) {
		uint64_t key = key_of(K_DATA, s->t->id);
		rc = mfs_stage_write(t->st, key, buf, len, off);
		if (rc >= 0) {
			/* Invariant 1: the bytes are in the journal file before we
			 * say they were written. */
			int frc = mfs_stage_flush(t->st);
			if (frc < 0)
				rc = frc;
		}
		flag(t, &s->data, mfs_stage_is_staged(t->st, key));
		touched(t);
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_tensor_truncate(mfs_txn *t, const struct mfs_tensor *x, uint64_t size)
{
	struct tstate *s;
	int rc = edit_begin(t, x, &s);
	if (rc == 0)
		rc = bind_tensor(t, s);
	if (rc == 0) {
		uint64_t key = key_of(K_DATA, s->t->id);
		rc = mfs_stage_truncate(t->st, key, size);
		flag(t, &s->data, mfs_stage_is_staged(t->st, key));
		touched(t);
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_tensor_type(mfs_txn *t, const struct mfs_tensor *x, int32_t *dtype, int64_t *dims,
                        size_t cap, size_t *rank)
{
	int rc = 0;
	pthread_rwlock_rdlock(&t->lock);
	struct tstate *s = tensor_state(t, x);
	if (!s) {
		rc = -ENOENT;
	} else {
		size_t r;
		const int64_t *d = eff_dims(s, &r);
		if (dtype)
			*dtype = eff_dtype(s);
		if (dims)
			memcpy(dims, d, (r < cap ? r : cap) * sizeof(*dims));
		if (rank)
			*rank = r;
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_set_dtype(mfs_txn *t, const struct mfs_tensor *x, const char *text, size_t len)
{
	char name[32];
	struct tstate *s;
	int rc = edit_begin(t, x, &s);
	if (rc < 0)
		goto out;
	len = chomp(text, len);
	if (len >= sizeof(name)) {
		rc = -EINVAL;
		goto out;
	}
	memcpy(name, text, len);
	name[len] = '\0';
	int32_t dt = mfs_dtype_from_name(name);
	if (dt <= 0 || !mfs_dtype_bits(dt) ||
	    (t->d->format == MFS_FORMAT_ONNX && dt >= MFS_DT_EXT_FIRST_) ||
	    (t->d->format == MFS_FORMAT_SAFETENSORS && !mfs_st_dtype_name(dt))) {
		rc = -EINVAL;
		goto out;
	}
	uint64_t key = key_of(K_DTYPE, s->t->id);
	if (dt == s->t->dtype) {
		if ((rc = drop_key(t, key)) == 0)
			flag(t, &s->has_dtype, false);
	} else if ((rc = put_value(t, key, name, len)) == 0) {
		s->dtype = dt;
		flag(t, &s->has_dtype, true);
	}
	touched(t);
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_set_shape(mfs_txn *t, const struct mfs_tensor *x, const char *text, size_t len)
{
	int64_t dims[MFS_MAX_RANK];
	size_t rank;
	struct tstate *s;
	int rc = edit_begin(t, x, &s);
	if (rc < 0)
		goto out;
	len = chomp(text, len);
	if ((rc = parse_shape(text, len, dims, &rank)) < 0)
		goto out;
	uint64_t key = key_of(K_SHAPE, s->t->id);
	if (dims_equal(dims, rank, s->t->dims, s->t->rank)) {
		if ((rc = drop_key(t, key)) == 0)
			flag(t, &s->has_shape, false);
		touched(t);
		goto out;
	}
	/* Canonical text, so the journal says what the shape file will. */
	char buf[MFS_MAX_RANK * 21 + 1];
	size_t n = mfs_dims_format(buf, sizeof(buf), dims, rank);
	if (!s->dims && !(s->dims = malloc(MFS_MAX_RANK * sizeof(int64_t)))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = put_value(t, key, buf, n)) == 0) {
		memcpy(s->dims, dims, rank * sizeof(int64_t));
		s->rank = rank;
		flag(t, &s->has_shape, true);
	}
	touched(t);
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* ------------------------------------------------------------ meta and props */

static int meta_index(const char *name)
{
	for (int k = 0; k < MFS_META_N; k++)
		if (strcmp(name, meta_names[k]) == 0)
			return k;
	return -1;
}

bool mfs_txn_meta_writable(mfs_txn *t, const char *name)
{
	pthread_rwlock_rdlock(&t->lock);
	bool ok = !t->opts.read_only && t->d->format == MFS_FORMAT_ONNX && meta_index(name) >= 0;
	pthread_rwlock_unlock(&t->lock);
	return ok;
}

ssize_t mfs_txn_meta_get(mfs_txn *t, const char *name, char *buf, size_t cap)
{
	ssize_t rc = -ENOENT;
	pthread_rwlock_rdlock(&t->lock);
	int k = t->d->format == MFS_FORMAT_ONNX ? meta_index(name) : -1;
	if (k >= 0 && t->meta_staged[k]) {
		size_t len = t->meta_len[k];
		if (cap)
			memcpy(buf, t->meta[k], len < cap ? len : cap);
		if (len < cap)
			buf[len] = '\n';
		rc = (ssize_t)(len + 1);
	} else {
		for (size_t i = 0; i < t->d->n_meta; i++) {
			const struct mfs_meta *m = &t->d->meta[i];
			if (strcmp(m->name, name) != 0)
				continue;
			memcpy(buf, m->value, m->len < cap ? m->len : cap);
			rc = (ssize_t)m->len;
			break;
		}
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_meta_set(mfs_txn *t, const char *name, const char *text, size_t len)
{
	int rc = 0;
	char *copy = NULL;
	pthread_rwlock_wrlock(&t->lock);
	int k = meta_index(name);
	if (t->opts.read_only) {
		rc = -EROFS;
		goto out;
	}
	if (t->broken) {
		rc = -EIO;
		goto out;
	}
	if (k < 0 || t->d->format != MFS_FORMAT_ONNX) {
		rc = -EACCES;
		goto out;
	}
	len = chomp(text, len);
	if (!utf8_ok(text, len)) {
		rc = -EINVAL;
		goto out;
	}
	if (k == MFS_META_MODEL_VERSION && len) {
		/* A decimal int64, as the meta file shows it. */
		char num[32];
		char *end;
		if (len >= sizeof(num)) {
			rc = -EINVAL;
			goto out;
		}
		memcpy(num, text, len);
		num[len] = '\0';
		errno = 0;
		if (strtoll(num, &end, 10) == 0 && errno == 0 && end == num)
			errno = EINVAL;
		if (errno || *end || !(num[0] == '-' || (num[0] >= '0' && num[0] <= '9'))) {
			rc = -EINVAL;
			goto out;
		}
	}
	/* Back to what the model says: nothing staged. */
	for (size_t i = 0; i < t->d->n_meta; i++) {
		const struct mfs_meta *m = &t->d->meta[i];
		if (strcmp(m->name, name) != 0 || chomp(m->value, m->len) != len ||
		    memcmp(m->value, text, len) != 0)
			continue;
		if ((rc = drop_key(t, key_of(K_META, (uint64_t)k))) == 0) {
			free(t->meta[k]);
			t->meta[k] = NULL;
			flag(t, &t->meta_staged[k], false);
			touched(t);
		}
		goto out;
	}
	if (!(copy = memdup0(text, len))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = put_value(t, key_of(K_META, (uint64_t)k), text, len)) < 0)
		goto out;
	free(t->meta[k]);
	t->meta[k] = copy;
	t->meta_len[k] = len;
	copy = NULL;
	flag(t, &t->meta_staged[k], true);
	touched(t);
out:
	free(copy);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* The live slot holding `key`, or -1. */
static ssize_t prop_find(const struct mfs_txn *t, const char *key)
{
	for (size_t i = 0; i < t->n_props; i++)
		if (t->props[i].key && strcmp(t->props[i].key, key) == 0)
			return (ssize_t)i;
	return -1;
}

/*
 * Give slot `i` key `key` (NULL: remove it) and `value`: journal first, then
 * memory (invariant 1).  A slot that comes back to what the model has is
 * unstaged instead; a new slot that is removed is simply dropped.
 */
static int prop_put(struct mfs_txn *t, size_t i, const char *key, const char *value, size_t len)
{
	struct pslot *ps = &t->props[i];
	bool orig = i < t->n_orig_props;
	const struct mfs_meta *o = orig ? &t->d->props[i] : NULL;
	char *k = NULL, *v = NULL;
	int rc;
	if (key && (!(k = strdup(key)) || !(v = memdup0(value, len)))) {
		free(k);
		return -ENOMEM;
	}
	if ((o && key && !strcmp(o->name, key) && o->len == len && !memcmp(o->value, value, len)) ||
	    (!orig && !key))
		rc = drop_key(t, key_of(K_PROP, i));
	else
		rc = put_prop_record(t, i, key, value, len);
	if (rc < 0) {
		free(k);
		free(v);
		return rc;
	}
	free(ps->key);
	free(ps->value);
	ps->key = k;
	ps->value = v;
	ps->len = key ? len : 0;
	flag(t, &ps->staged, mfs_stage_is_staged(t->st, key_of(K_PROP, i)));
	touched(t);
	return 0;
}

static int prop_begin(struct mfs_txn *t)
{
	pthread_rwlock_wrlock(&t->lock);
	if (t->opts.read_only)
		return -EROFS;
	if (t->broken)
		return -EIO;
	if (t->d->format == MFS_FORMAT_SAFETENSORS && !t->m->st_data_off)
		return -EACCES;
	return 0;
}

static bool prop_key_ok(const char *key)
{
	size_t n = strlen(key);
	return n && n <= MFS_MAX_NAME && utf8_ok(key, n);
}

int mfs_txn_props(mfs_txn *t, struct mfs_meta **out, size_t *n)
{
	int rc = 0;
	pthread_rwlock_rdlock(&t->lock);
	size_t k = 0;
	struct mfs_meta *v = calloc(t->n_props ? t->n_props : 1, sizeof(*v));
	if (!v) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->n_props; i++) {
		const struct pslot *ps = &t->props[i];
		if (!ps->key)
			continue;
		v[k].name = strdup(ps->key);
		v[k].value = memdup0(ps->value, ps->len);
		v[k].len = ps->len;
		k++;
		if (!v[k - 1].name || !v[k - 1].value) {
			mfs_txn_props_free(v, k);
			v = NULL;
			k = 0;
			rc = -ENOMEM;
			goto out;
		}
	}
out:
	pthread_rwlock_unlock(&t->lock);
	*out = v;
	*n = k;
	return rc;
}

void mfs_txn_props_free(struct mfs_meta *props, size_t n)
{
	for (size_t i = 0; props && i < n; i++) {
		free(props[i].name);
		free(props[i].value);
	}
	free(props);
}

int mfs_txn_prop_set(mfs_txn *t, const char *key, const char *value, size_t len)
{
	int rc = prop_begin(t);
	if (rc < 0)
		goto out;
	len = chomp(value, len);
	if (!prop_key_ok(key) || !utf8_ok(value, len)) {
		rc = -EINVAL;
		goto out;
	}
	ssize_t i = prop_find(t, key);
	if (i >= 0) {
		const struct pslot *ps = &t->props[i];
		if (ps->len != len || memcmp(ps->value, value, len) != 0)
			rc = prop_put(t, (size_t)i, key, value, len);
		goto out;
	}
	/* A new key takes a new slot (slots are never reused: the journal
	 * names them). */
	struct pslot *np = reallocarray(t->props, t->n_props + 1, sizeof(*np));
	if (!np) {
		rc = -ENOMEM;
		goto out;
	}
	t->props = np;
	memset(&np[t->n_props], 0, sizeof(*np));
	t->n_props++;
	rc = prop_put(t, t->n_props - 1, key, value, len);
	if (rc < 0)
		t->n_props--;
	else
		t->generation++;
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_prop_unlink(mfs_txn *t, const char *key)
{
	int rc = prop_begin(t);
	if (rc < 0)
		goto out;
	ssize_t i = prop_find(t, key);
	if (i < 0) {
		rc = -ENOENT;
		goto out;
	}
	if ((rc = prop_put(t, (size_t)i, NULL, NULL, 0)) == 0)
		t->generation++;
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_prop_rename(mfs_txn *t, const char *from, const char *to)
{
	char *value = NULL;
	int rc = prop_begin(t);
	if (rc < 0)
		goto out;
	ssize_t i = prop_find(t, from), j = prop_find(t, to);
	if (i < 0) {
		rc = -ENOENT;
		goto out;
	}
	if (!prop_key_ok(to)) {
		rc = -EINVAL;
		goto out;
	}
	if (i == j)
		goto out;
	size_t len = t->props[i].len;
	if (!(value = memdup0(t->props[i].value, len))) {
		rc = -ENOMEM;
		goto out;
	}
	if (j >= 0) {
		/* Over an existing key, as rename(2) replaces its target: the
		 * target keeps its place and takes the value. */
		if ((rc = prop_put(t, (size_t)j, to, value, len)) == 0)
			rc = prop_put(t, (size_t)i, NULL, NULL, 0);
	} else {
		rc = prop_put(t, (size_t)i, to, value, len);
	}
	if (rc == 0)
		t->generation++;
out:
	free(value);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* ------------------------------------------------------------ scratch */

static bool scratch_live(const struct mfs_txn *t, uint64_t id)
{
	return id < t->n_scratch && t->scratch[id];
}

/* A new empty scratch object (t->lock held for writing). */
static int scratch_alloc(struct mfs_txn *t, uint64_t *id)
{
	if (t->opts.read_only)
		return -EROFS;
	uint8_t *ns = realloc(t->scratch, t->n_scratch + 1);
	if (!ns)
		return -ENOMEM;
	t->scratch = ns;
	int rc = mfs_stage_bind(t->st, key_of(K_SCRATCH, t->n_scratch), 0, NULL, NULL);
	if (rc < 0)
		return rc;
	t->scratch[t->n_scratch] = 1;
	*id = t->n_scratch++;
	return 0;
}

int mfs_txn_scratch_new(mfs_txn *t, uint64_t *id)
{
	pthread_rwlock_wrlock(&t->lock);
	int rc = scratch_alloc(t, id);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_tensor_snapshot(mfs_txn *t, const struct mfs_tensor *x, uint64_t *id)
{
	enum { STEP = MFS_STAGE_CHUNK };
	char *buf = malloc(STEP);
	if (!buf)
		return -ENOMEM;
	pthread_rwlock_wrlock(&t->lock);
	struct tstate *s = tensor_state(t, x);
	uint64_t key = s ? key_of(K_DATA, s->t->id) : 0, size = 0;
	int rc = s ? 0 : -ENOENT;
	if (rc == 0 && s->data)
		rc = mfs_stage_size(&size, t->st, key);
	else if (rc == 0)
		size = s->t->nbytes;
	if (rc == 0)
		rc = scratch_alloc(t, id);
	if (rc < 0)
		goto out;
	uint64_t skey = key_of(K_SCRATCH, *id);
	for (uint64_t off = 0; off < size && rc == 0;) {
		size_t want = size - off < STEP ? (size_t)(size - off) : STEP;
		ssize_t n = s->data ? mfs_stage_read(t->st, key, buf, want, off) :
		            mfs_tensor_read(t->m, s->t, buf, want, off);
		if (n == 0)
			n = -EIO;       /* shorter than its size */
		if (n > 0)
			n = mfs_stage_write(t->st, skey, buf, (size_t)n, off);
		if (n < 0)
			rc = (int)n;
		else
			off += (uint64_t)n;
	}
	if (rc == 0)
		rc = mfs_stage_truncate(t->st, skey, size);     /* an empty tensor too */
	if (rc < 0) {
		mfs_stage_drop(t->st, skey);
		mfs_stage_unbind(t->st, skey);
		t->scratch[*id] = 0;
	}
out:
	pthread_rwlock_unlock(&t->lock);
	free(buf);
	return rc;
}

int mfs_txn_scratch_size(mfs_txn *t, uint64_t id, uint64_t *out)
{
	pthread_rwlock_rdlock(&t->lock);
	int rc = scratch_live(t, id) ? mfs_stage_size(out, t->st, key_of(K_SCRATCH, id)) : -ENOENT;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

ssize_t mfs_txn_scratch_read(mfs_txn *t, uint64_t id, void *buf, size_t len, uint64_t off)
{
	pthread_rwlock_rdlock(&t->lock);
	ssize_t rc = scratch_live(t, id) ?
	             mfs_stage_read(t->st, key_of(K_SCRATCH, id), buf, len, off) : -ENOENT;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

ssize_t mfs_txn_scratch_write(mfs_txn *t, uint64_t id, const void *buf, size_t len, uint64_t off)
{
	ssize_t rc = -ENOENT;
	pthread_rwlock_rdlock(&t->lock);
	if (scratch_live(t, id)) {
		rc = mfs_stage_write(t->st, key_of(K_SCRATCH, id), buf, len, off);
		int frc = rc >= 0 ? mfs_stage_flush(t->st) : 0;
		if (frc < 0)
			rc = frc;
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_scratch_truncate(mfs_txn *t, uint64_t id, uint64_t size)
{
	pthread_rwlock_rdlock(&t->lock);
	int rc = scratch_live(t, id) ? mfs_stage_truncate(t->st, key_of(K_SCRATCH, id), size) :
	         -ENOENT;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_scratch_adopt(mfs_txn *t, uint64_t id, const struct mfs_tensor *x)
{
	struct tstate *s;
	int rc = edit_begin(t, x, &s);
	if (rc == 0 && !scratch_live(t, id))
		rc = -ENOENT;
	if (rc == 0)
		rc = bind_tensor(t, s);
	if (rc == 0)
		rc = mfs_stage_move(t->st, key_of(K_SCRATCH, id), key_of(K_DATA, s->t->id));
	if (rc == 0) {
		mfs_stage_unbind(t->st, key_of(K_SCRATCH, id));
		t->scratch[id] = 0;
		flag(t, &s->data, true);
		touched(t);
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_scratch_drop(mfs_txn *t, uint64_t id)
{
	int rc = -ENOENT;
	pthread_rwlock_wrlock(&t->lock);
	if (scratch_live(t, id)) {
		rc = mfs_stage_drop(t->st, key_of(K_SCRATCH, id));
		if (rc == 0) {
			mfs_stage_unbind(t->st, key_of(K_SCRATCH, id));
			t->scratch[id] = 0;
		}
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* ------------------------------------------------------------ root files */

int mfs_txn_file_size(mfs_txn *t, size_t idx, uint64_t *out)
{
	int rc = 0;
	pthread_rwlock_rdlock(&t->lock);
	if (idx >= t->d->n_files) {
		rc = -ENOENT;
	} else if (idx == 0 && t->n_dirty) {
		struct view *v = view_get(t);
		rc = v->rc;
		if (rc == 0)
			*out = v->sp.total;
	} else {
		*out = t->d->files[idx].size;
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

ssize_t mfs_txn_file_read(mfs_txn *t, size_t idx, void *buf, size_t len, uint64_t off)
{
	ssize_t rc;
	pthread_rwlock_rdlock(&t->lock);
	if (idx >= t->d->n_files) {
		rc = -ENOENT;
	} else if (idx == 0 && t->n_dirty) {
		struct view *v = view_get(t);
		rc = v->rc < 0 ? v->rc : view_read(v, buf, len, off);
	} else {
		rc = mfs_file_read(t->m, idx, buf, len, off);
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* ------------------------------------------------------------ commit */

static bool keep_scratch(uint64_t key, void *arg)
{
	(void)arg;
	return KEY_KIND(key) == K_SCRATCH;
}

/* Forget every staged edit of the model (not scratch), in the stage too. */
static int drop_edits(struct mfs_txn *t)
{
	size_t n = mfs_stage_list(NULL, 0, t->st);
	uint64_t *keys = malloc((n ? n : 1) * sizeof(*keys));
	int rc = 0;
	if (!keys)
		return -ENOMEM;
	n = mfs_stage_list(keys, n, t->st);
	for (size_t i = 0; i < n && rc == 0; i++)
		if (KEY_KIND(keys[i]) != K_SCRATCH)
			rc = mfs_stage_drop(t->st, keys[i]);
	free(keys);
	return rc;
}

/*
 * After the new version is installed (invariant 4): stage reset to its
 * identity (scratch kept), model reopened, mirrors rebuilt.  The old model
 * is kept (invariant 5).
 */
static int after_install(struct mfs_txn *t, const struct mfs_identity *new_id, char *msg,
                         size_t msglen)
{
	char err[512];
	mfs_model *nm = NULL;
	int rc;
	bool have_id = new_id && (new_id->ino || new_id->dev);
	struct mfs_identity id;
	if (have_id)
		id = *new_id;
	else if (mfs_identity_at(&id, t->dirfd, t->name) < 0)
		memset(&id, 0, sizeof(id));
	mfs_stage_reset_keep(t->st, &id, keep_scratch, NULL);
	t->journal_note[0] = '\0';
	view_drop(&t->view);
	clear_state(t);
	t->generation++;
	touched(t);

	rc = mfs_model_open(&nm, t->path, NULL, err, sizeof(err));
	if (rc == 0 && mfs_model_desc(nm)->n_tensors != t->d->n_tensors) {
		mfs_model_close(nm);
		rc = -EIO;
		snprintf(err, sizeof(err), "the committed model has another structure");
	}
	if (rc < 0) {
		t->broken = true;
		set_msg(t->broken_msg, sizeof(t->broken_msg), "committed, but reopening the model "
		        "failed: %s", strip_display(err, t->path));
		set_msg(msg, msglen, "%s", t->broken_msg);
		init_state(t);          /* of the old model: shown until a reopen works */
		return rc;
	}
	struct old_model *o = malloc(sizeof(*o));
	if (!o) {
		mfs_model_close(nm);
		t->broken = true;
		set_msg(msg, msglen, "committed, but out of memory");
		init_state(t);
		return -ENOMEM;
	}
	o->m = t->m;
	o->next = t->old;
	t->old = o;
	t->m = nm;
	t->d = mfs_model_desc(nm);
	t->broken = false;
	if ((rc = model_identity(t)) < 0)
		t->id = id;
	if ((rc = init_state(t)) < 0) {
		t->broken = true;
		set_msg(msg, msglen, "committed, but out of memory");
		return rc;
	}
	/* A stage reset to a guessed identity is re-stamped now. */
	if (!mfs_identity_equal(&t->id, &id))
		mfs_stage_reset_keep(t->st, &t->id, keep_scratch, NULL);
	return 0;
}

static void result_fail(struct mfs_txn *t, struct mfs_txn_result *res, int rc, const char *msg)
{
	res->rc = rc;
	set_msg(res->msg, sizeof(res->msg), "%s", msg[0] ? msg : strerror(-rc));
	set_msg(t->last, sizeof(t->last), "last commit: failed: %s", res->msg);
}

int mfs_txn_commit(mfs_txn *t, struct mfs_txn_result *res)
{
	struct mfs_txn_result dummy;
	struct plan p = {0};
	struct mfs_splice sp = {0}, patch_sp = {0};
	struct mfs_patch *patches = NULL;
	struct mfs_commit_report rep;
	char msg[512] = "";
	int rc = 0;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	res->path = "none";
	pthread_rwlock_wrlock(&t->lock);
	if (t->broken) {
		/* Try the reopen that failed after the last commit. */
		rc = after_install(t, NULL, msg, sizeof(msg));
		if (rc < 0) {
			result_fail(t, res, rc, msg);
			goto out;
		}
	}
	if (!t->n_dirty) {
		set_msg(res->msg, sizeof(res->msg), "nothing staged");
		set_msg(t->last, sizeof(t->last), "last commit: ok none (nothing staged)");
		goto out;
	}
	/* The journal holds every edit durably before the model is touched,
	 * so a crash anywhere below loses nothing (a failed sync is noted in
	 * status and does not stop the commit: the edits are in memory). */
	int jrc = mfs_stage_sync(t->st);
	set_msg(t->journal_note, sizeof(t->journal_note), "%s",
	        jrc < 0 ? "syncing the journal failed; staged edits may not survive a power cut" :
	        "");

	/* A model changed on disk under us would make the plan compare and
	 * splice the wrong bytes: say so first (commit.c checks it again
	 * before it writes and right before its commit point). */
	struct mfs_identity now;
	rc = mfs_identity_at(&now, t->dirfd, t->name);
	if (rc == 0 && !mfs_identity_equal(&now, &t->id))
		rc = -ESTALE;
	if (rc < 0) {
		if (rc == -ENOENT || rc == -EINVAL)
			rc = -ESTALE;
		result_fail(t, res, rc, rc == -ESTALE ? "commit refused: the model changed on disk "
		            "since it was mounted" : strerror(-rc));
		goto out;
	}
	if ((rc = plan_build(t, &p, true, msg, sizeof(msg))) < 0) {
		result_fail(t, res, rc, msg);
		goto out;
	}
	if (p.empty) {
		/* Every staged edit gives back what the model has. */
		drop_edits(t);
		reset_state(t);
		t->generation++;
		touched(t);
		set_msg(res->msg, sizeof(res->msg), "no effective change; staged edits dropped");
		set_msg(t->last, sizeof(t->last), "last commit: ok none (no effective change)");
		goto out;
	}
	res->bytes_edited = p.bytes_edited;

	/* AUTO also wants the patches to be less than half the file: an
	 * in-place commit writes them twice (log, then model), a rewrite
	 * writes the file once. */
	uint64_t patched = 0;
	for (size_t i = 0; i < p.n_te; i++)
		for (size_t r = 0; r < p.te[i].n_runs; r++)
			patched += p.te[i].runs[r].len;
	uint64_t fsize = t->d->files[0].size;
	bool inplace = p.layout_kept && t->opts.mode != MFS_COMMIT_REWRITE &&
	               (t->opts.mode == MFS_COMMIT_INPLACE ||
	                (fsize >= t->opts.inplace_min && patched <= fsize / 2));
	if (inplace) {
		size_t n = 0;
		for (size_t i = 0; i < p.n_te; i++)
			n += p.te[i].n_runs;
		patches = calloc(n ? n : 1, sizeof(*patches));
		if (!patches) {
			rc = -ENOMEM;
			result_fail(t, res, rc, "out of memory");
			goto out;
		}
		size_t k = 0;
		for (size_t i = 0; i < p.n_te; i++) {
			const struct mfs_tensor_edit *te = &p.te[i];
			for (size_t r = 0; r < te->n_runs; r++) {
				mfs_splice_fn(&patch_sp, te->read, te->arg, te->runs[r].off,
				              te->runs[r].len);
				if (patch_sp.err)
					break;
				patches[k].off = te->t->off + te->runs[r].off;
				patches[k].piece = patch_sp.p[patch_sp.n - 1];
				k++;
			}
		}
		if (patch_sp.err) {
			rc = patch_sp.err;
			result_fail(t, res, rc, "out of memory");
			goto out;
		}
		rc = mfs_commit_inplace(t->dirfd, t->name, &t->id, patches, k, &rep, msg,
		                        sizeof(msg));
	} else {
		if ((rc = build_splice(t, &p, &sp, msg, sizeof(msg))) < 0) {
			result_fail(t, res, rc, strip_display(msg, t->d->files[0].path));
			goto out;
		}
		rc = mfs_commit_replace(t->dirfd, t->name, &t->id, sp.p, sp.n, &rep, msg,
		                        sizeof(msg));
	}
	res->path = rep.path;
	res->bytes_written = rep.bytes_written + rep.journal_bytes;
	if (rc < 0 && rep.redo_pending) {
		/* Past the commit point of an in-place commit: recovery finishes
		 * it now (the redo log is complete and synced), and then the
		 * commit has succeeded after all. */
		char rmsg[512];
		struct mfs_commit_report rrep;
		if (mfs_commit_recover(t->dirfd, t->name, &rrep, rmsg, sizeof(rmsg)) == 0 &&
		    rrep.recovered) {
			rep.installed = true;
			rep.new_id = rrep.new_id;
			res->bytes_written += rrep.bytes_written;
			rc = 0;
		}
	}
	if (rc < 0 && !rep.installed) {
		/* Invariant 3: nothing happened to the model; edits stay. */
		result_fail(t, res, rc, strip_display(msg, t->name));
		goto out;
	}
	int rc2 = after_install(t, &rep.new_id, msg, sizeof(msg));
	if (rc < 0 || rc2 < 0) {
		/* Installed, but something after the commit point failed: the
		 * model is the new version; say so. */
		res->rc = rc < 0 ? rc : rc2;
		set_msg(res->msg, sizeof(res->msg), "committed (%s, %" PRIu64 " bytes written), "
		        "but: %s", res->path, res->bytes_written,
		        rc2 < 0 ? msg : strip_display(msg, t->name));
		set_msg(t->last, sizeof(t->last), "last commit: ok %s %" PRIu64 " bytes written; "
		        "then failed: %s", res->path, res->bytes_written,
		        rc2 < 0 ? msg : strip_display(msg, t->name));
		rc = res->rc;
		goto out;
	}
	set_msg(res->msg, sizeof(res->msg), "%s: %" PRIu64 " bytes written, %" PRIu64 " bytes "
	        "edited", res->path, res->bytes_written, res->bytes_edited);
	set_msg(t->last, sizeof(t->last), "last commit: ok %s %" PRIu64 " bytes written",
	        res->path, res->bytes_written);
out:
	mfs_splice_free(&patch_sp);
	free(patches);
	mfs_splice_free(&sp);
	plan_free(&p);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_abort(mfs_txn *t)
{
	int rc = 0;
	pthread_rwlock_wrlock(&t->lock);
	if (t->st) {
		rc = mfs_stage_drop_all(t->st);
		for (size_t i = 0; i < t->n_scratch; i++)
			if (t->scratch[i]) {
				mfs_stage_unbind(t->st, key_of(K_SCRATCH, i));
				t->scratch[i] = 0;
			}
		/* Tensor bindings survive drop_all and stay valid. */
		reset_state(t);
	}
	view_drop(&t->view);
	t->generation++;
	touched(t);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* ------------------------------------------------------------ status */

size_t mfs_txn_status(mfs_txn *t, char *buf, size_t len)
{
	char *p = NULL;
	size_t n = 0, cap = 0;
	pthread_rwlock_rdlock(&t->lock);
	const struct mfs_desc *d = t->d;
	for (size_t i = 0; t->ts && i < d->n_tensors; i++) {
		const struct tstate *s = &t->ts[i];
		const char *w = where_name[s->where];
		if (s->data) {
			uint64_t size = 0;
			mfs_stage_size(&size, t->st, key_of(K_DATA, i));
			put_text(&p, &n, &cap, "staged tensor %s ", w);
			put_escaped(&p, &n, &cap, s->t->name);
			put_text(&p, &n, &cap, " data %" PRIu64 " bytes\n", size);
		}
		if (s->has_dtype) {
			put_text(&p, &n, &cap, "staged tensor %s ", w);
			put_escaped(&p, &n, &cap, s->t->name);
			put_text(&p, &n, &cap, " dtype %s\n", mfs_dtype_name(s->dtype));
		}
		if (s->has_shape) {
			char dims[MFS_MAX_RANK * 21 + 1];
			mfs_dims_format(dims, sizeof(dims), s->dims, s->rank);
			put_text(&p, &n, &cap, "staged tensor %s ", w);
			put_escaped(&p, &n, &cap, s->t->name);
			put_text(&p, &n, &cap, " shape %s\n", dims);
		}
	}
	for (int k = 0; k < MFS_META_N; k++)
		if (t->meta_staged[k])
			put_text(&p, &n, &cap, "staged meta %s\n", meta_names[k]);
	for (size_t i = 0; i < t->n_props; i++) {
		const struct pslot *ps = &t->props[i];
		if (!ps->staged)
			continue;
		put_text(&p, &n, &cap, "staged prop ");
		if (ps->key) {
			put_escaped(&p, &n, &cap, ps->key);
			if (i >= t->n_orig_props)
				put_text(&p, &n, &cap, " (new)");
			else if (strcmp(ps->key, d->props[i].name) != 0) {
				put_text(&p, &n, &cap, " (renamed from ");
				put_escaped(&p, &n, &cap, d->props[i].name);
				put_text(&p, &n, &cap, ")");
			}
		} else {
			put_escaped(&p, &n, &cap, d->props[i].name);
			put_text(&p, &n, &cap, " (removed)");
		}
		put_text(&p, &n, &cap, "\n");
	}
	size_t n_scratch = 0;
	for (size_t i = 0; i < t->n_scratch; i++)
		n_scratch += t->scratch[i];
	if (n_scratch)
		put_text(&p, &n, &cap, "scratch files: %zu (not part of the model)\n", n_scratch);
	put_text(&p, &n, &cap, "%s\n", t->last);
	if (t->broken)
		put_text(&p, &n, &cap, "degraded: %s\n", t->broken_msg);
	if (t->st) {
		struct mfs_stage_stat ss;
		mfs_stage_stat(&ss, t->st);
		char jname[NAME_MAX + 1] = "";
		mfs_side_name(jname, sizeof(jname), t->name, ".modelfs-journal");
		if (ss.journal_bytes)
			put_text(&p, &n, &cap, "journal: %s/%s %" PRIu64 "\n",
			         strcmp(t->m->dir, "/") ? t->m->dir : "", jname, ss.journal_bytes);
		else
			put_text(&p, &n, &cap, "journal: none\n");
		if (ss.failed)
			put_text(&p, &n, &cap, "journal: an fsync failed; staged edits may not "
			         "survive a power cut (commit or abort)\n");
	} else {
		put_text(&p, &n, &cap, "journal: none (read-only)\n");
	}
	if (t->journal_note[0])
		put_text(&p, &n, &cap, "journal: %s\n", t->journal_note);
	if (t->rec.msg[0])
		put_text(&p, &n, &cap, "recovery: %s\n", t->rec.msg);
	pthread_rwlock_unlock(&t->lock);
	if (len) {
		size_t k = n < len - 1 ? n : len - 1;
		if (k)
			memcpy(buf, p, k);
		buf[k] = '\0';
	}
	free(p);
	return n;
}

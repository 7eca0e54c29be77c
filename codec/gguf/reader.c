/*
 * codec/gguf/reader.c — the GGUF reader: single files and split models.
 *
 * Layout (ggml docs/gguf.md; ../shared/reference/formats.md §4), all
 * little-endian:
 *
 *   "GGUF"  u32 version (2 or 3)  u64 n_tensors  u64 n_kv
 *   n_kv × { string key, u32 type, value }        string = u64 len + bytes
 *   n_tensors × { string name, u32 n_dims, u64 dims[n_dims], u32 ggml type,
 *                 u64 offset }
 *   zero padding to the alignment (general.alignment, a u32 power of 2;
 *   32 when absent), then the data section: tensor i at offset_i, where
 *   offset_i is the sum of the earlier tensors' sizes each rounded up to
 *   the alignment.
 *
 * What is refused, each with one line naming the file and the rule: a bad
 * magic; versions 0, 1 and past 3; a big-endian file (its version reads
 * byte-swapped); every count, length and size past the bytes that are left
 * in the file or past a named limit (gguf.h) before anything is allocated
 * for it; empty, NUL-holding and duplicate keys and tensor names; unknown
 * value types; arrays nested deeper than GGUF_MAX_DEPTH; a bad
 * general.alignment; tensors of more than 4 dims, negative dims, a dims
 * product that overflows, an unknown or removed ggml type, an innermost dim
 * that is not a whole number of blocks; an offset other than the one the
 * layout rule gives (gaps, overlaps, reordering and misalignment all break
 * it, as in ggml's gguf reader) and data past the end of the file.
 *
 * Memory follows what the file really holds: arrays grow as entries are
 * read, never from a count the file states.
 *
 * A split model (llama.cpp gguf-split: `name-00001-of-00003.gguf`, keys
 * split.no, split.count, split.tensors.count) is opened from its first file:
 * the other files are found by name beside it, each must say it is shard k
 * of the same count, and the tensors of all of them make one tree.  Its
 * props are those of the first file.  A split model is read-only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

#define WIN (1u << 20)  /* the read window over the header */

/* ------------------------------------------------------------ the cursor */

struct cur {
	struct mfs_source *src;
	uint64_t size, pos;
	uint8_t *buf;
	uint64_t bstart;
	size_t blen;
	const char *display;
	char *err;
	size_t errlen;
};

static int past_end(struct cur *c, uint64_t n, const char *what)
{
	return mfs_errf(c->err, c->errlen, -EUCLEAN, c->display,
	                "%s at byte %" PRIu64 " needs %" PRIu64 " bytes, %" PRIu64
	                " are left in the file", what, c->pos, n, c->size - c->pos);
}

/* The next `n` bytes (n <= WIN), in the window. */
static int need(struct cur *c, uint64_t n, const uint8_t **p, const char *what)
{
	if (n > c->size - c->pos)
		return past_end(c, n, what);
	if (c->pos < c->bstart || c->pos + n > c->bstart + c->blen) {
		uint64_t want = c->size - c->pos < WIN ? c->size - c->pos : WIN;
		int rc = mfs_source_read(c->src, c->buf, (size_t)want, c->pos);
		if (rc < 0)
			return mfs_errf(c->err, c->errlen, rc, c->display, "cannot read: %s",
			                strerror(-rc));
		c->bstart = c->pos;
		c->blen = (size_t)want;
	}
	*p = c->buf + (c->pos - c->bstart);
	c->pos += n;
	return 0;
}

static int get_u32(struct cur *c, uint32_t *v, const char *what)
{
	const uint8_t *p;
	*v = 0;
	int rc = need(c, 4, &p, what);
	if (rc == 0)
		*v = mfs_get_le32(p);
	return rc;
}

static int get_u64(struct cur *c, uint64_t *v, const char *what)
{
	const uint8_t *p;
	*v = 0;
	int rc = need(c, 8, &p, what);
	if (rc == 0)
		*v = mfs_get_le64(p);
	return rc;
}

/*
 * A string: its length checked against `max` and the file, its bytes into
 * `b` (raw) when b is not NULL, else skipped.  *len gets the length.
 */
static int get_str(struct cur *c, struct mfs_buf *b, uint64_t max, uint64_t *len,
                   const char *what)
{
	uint64_t n;
	*len = 0;
	int rc = get_u64(c, &n, what);
	if (rc < 0)
		return rc;
	if (n > max)
		return mfs_errf(c->err, c->errlen, n > GGUF_MAX_STRING ? -EFBIG : -EUCLEAN,
		                c->display, "%s at byte %" PRIu64 " is %" PRIu64
		                " bytes long, over the limit of %" PRIu64, what, c->pos - 8, n, max);
	if (n > c->size - c->pos)
		return past_end(c, n, what);
	*len = n;
	if (n <= WIN) {
		const uint8_t *p;
		if ((rc = need(c, n, &p, what)) < 0)
			return rc;
		if (b)
			mfs_buf_add(b, p, (size_t)n);
		return 0;
	}
	if (b) {
		/* A long string: straight from the file into the buffer. */
		size_t at = b->len;
		if (b->oom || b->len + n + 1 > b->cap) {
			size_t cap = b->len + (size_t)n + 1;
			char *np = b->oom ? NULL : realloc(b->p, cap);
			if (!np)
				return mfs_errf(c->err, c->errlen, -ENOMEM, c->display, "out of memory");
			b->p = np;
			b->cap = cap;
		}
		if ((rc = mfs_source_read(c->src, b->p + at, (size_t)n, c->pos)) < 0)
			return mfs_errf(c->err, c->errlen, rc, c->display, "cannot read: %s",
			                strerror(-rc));
		b->len += (size_t)n;
		b->p[b->len] = '\0';
	}
	c->pos += n;
	return 0;
}

/* ------------------------------------------------------------ values */

/* The least bytes one element of type `t` takes (for bounding counts). */
static uint64_t min_size(uint32_t t)
{
	if (t == GV_STRING)
		return 8;
	if (t == GV_ARRAY)
		return 12;
	return mfs_gguf_vtype_size(t);
}

/*
 * One value of type `t` at the cursor, its text appended to `b` (NULL: only
 * checked).  `depth` counts the arrays around it; `key` names it in errors.
 * For a top-level array, *elem gets its element type.
 */
static int value(struct cur *c, struct mfs_buf *b, uint32_t t, unsigned depth, const char *key,
                 uint32_t *elem, uint64_t limit)
{
	int rc;
	if (t >= GV_COUNT_)
		return mfs_errf(c->err, c->errlen, -EUCLEAN, c->display,
		                "key '%.200s' has unknown value type %" PRIu32, key, t);
	if (t == GV_STRING) {
		size_t at = b ? b->len : 0;
		uint64_t n = 0;
		struct mfs_buf raw = {0};
		/* Its text is at least as long as it is: the text budget bounds it too. */
		uint64_t max = b && limit - b->len < GGUF_MAX_STRING ? limit - b->len : GGUF_MAX_STRING;
		rc = get_str(c, b ? &raw : NULL, max, &n, "a string");
		if (rc == 0 && b) {
			if (raw.oom)
				rc = mfs_errf(c->err, c->errlen, -ENOMEM, c->display, "out of memory");
			else
				mfs_gguf_scalar_text(b, GV_STRING, (const uint8_t *)(raw.p ? raw.p : ""),
				                     raw.len);
		}
		free(raw.p);
		(void)at;
		return rc;
	}
	if (t != GV_ARRAY) {
		const uint8_t *p;
		unsigned sz = mfs_gguf_vtype_size(t);
		if ((rc = need(c, sz, &p, "a value")) < 0)
			return rc;
		if (b)
			mfs_gguf_scalar_text(b, t, p, 0);
		return 0;
	}
	uint32_t et;
	uint64_t count;
	if ((rc = get_u32(c, &et, "an array's type")) < 0 ||
	    (rc = get_u64(c, &count, "an array's length")) < 0)
		return rc;
	if (et >= GV_COUNT_)
		return mfs_errf(c->err, c->errlen, -EUCLEAN, c->display,
		                "key '%.200s' has an array of unknown type %" PRIu32, key, et);
	if (et == GV_ARRAY && depth + 1 >= GGUF_MAX_DEPTH)
		return mfs_errf(c->err, c->errlen, -EUCLEAN, c->display,
		                "key '%.200s' nests arrays deeper than %d levels", key,
		                GGUF_MAX_DEPTH);
	if (count > GGUF_MAX_ARRAY)
		return mfs_errf(c->err, c->errlen, -EFBIG, c->display, "key '%.200s' has an array "
		                "of %" PRIu64 " elements, over the limit of %llu", key, count,
		                GGUF_MAX_ARRAY);
	if (count > (c->size - c->pos) / min_size(et))
		return mfs_errf(c->err, c->errlen, -EUCLEAN, c->display, "key '%.200s' has an "
		                "array of %" PRIu64 " %s elements, more than the %" PRIu64
		                " bytes left in the file hold", key, count, mfs_gguf_vtype_name(et),
		                c->size - c->pos);
	if (elem)
		*elem = et;
	if (depth && b)
		mfs_buf_add(b, "[", 1);
	for (uint64_t i = 0; i < count; i++) {
		if (i && b)
			mfs_buf_add(b, depth ? ", " : "\n", depth ? 2 : 1);
		if ((rc = value(c, b, et, depth + 1, key, NULL, limit)) < 0)
			return rc;
		if (b && (b->oom || b->len > limit))
			return mfs_errf(c->err, c->errlen, b->oom ? -ENOMEM : -EFBIG, c->display,
			                b->oom ? "out of memory reading key '%.200s'"
			                       : "key '%.200s': the text of the metadata values is "
			                         "over the limit of %llu bytes", key, GGUF_MAX_TEXT);
	}
	if (depth && b)
		mfs_buf_add(b, "]", 1);
	return 0;
}

/* ------------------------------------------------------------ one file */

struct gtensor {
	char *name;
	int32_t dtype;
	size_t rank;
	int64_t dims[GGUF_MAX_DIMS];    /* row-major (ggml's reversed) */
	uint64_t off;                   /* relative to the data section */
	uint64_t nbytes;
};

struct gprop {
	char *key;
	struct gguf_kv kv;
	char *text;
	size_t len;
	char *type_text;
};

struct gfile {
	uint32_t version, alignment;
	struct gprop *props;
	size_t n_props, cap_props;
	struct gtensor *ts;
	size_t n_ts, cap_ts;
	uint64_t info_off, info_end, data_off;
	bool has_split;
	uint64_t split_no, split_count, split_tensors;
};

static void gfile_free(struct gfile *g)
{
	for (size_t i = 0; i < g->n_props; i++) {
		free(g->props[i].key);
		free(g->props[i].text);
		free(g->props[i].type_text);
	}
	for (size_t i = 0; i < g->n_ts; i++)
		free(g->ts[i].name);
	free(g->props);
	free(g->ts);
	memset(g, 0, sizeof(*g));
}

static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return true;
	size_t nc = *cap ? *cap * 2 : 16;
	void *p = realloc(*v, nc * size);
	if (!p)
		return false;
	*v = p;
	*cap = nc;
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first name that occurs twice among `n`, or NULL. */
static const char *duplicate(char **names, size_t n, int *rc)
{
	*rc = 0;
	if (n < 2)
		return NULL;
	char **v = malloc(n * sizeof(*v));
	if (!v) {
		*rc = -ENOMEM;
		return NULL;
	}
	memcpy(v, names, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_str);
	const char *dup = NULL;
	for (size_t i = 1; i < n && !dup; i++)
		if (strcmp(v[i - 1], v[i]) == 0)
			dup = v[i];
	free(v);
	return dup;
}

/* Is the value of a key an unsigned integer?  Its value in *out. */
static bool uint_value(const struct gprop *p, uint64_t *out)
{
	switch (p->kv.type) {
	case GV_UINT8: case GV_UINT16: case GV_UINT32: case GV_UINT64:
	case GV_INT8: case GV_INT16: case GV_INT32: case GV_INT64: {
		if (p->text[0] == '-')
			return false;
		char *end;
		*out = strtoull(p->text, &end, 10);
		return *end == '\0';
	}
	default:
		return false;
	}
}

/* The ggml type `id` as an mfs dtype, or -1 when unknown or removed. */
static int32_t ggml_dtype(uint32_t id)
{
	switch (id) {
	case 0: return MFS_DT_FLOAT;
	case 1: return MFS_DT_FLOAT16;
	case 24: return MFS_DT_INT8;
	case 25: return MFS_DT_INT16;
	case 26: return MFS_DT_INT32;
	case 27: return MFS_DT_INT64;
	case 28: return MFS_DT_DOUBLE;
	case 30: return MFS_DT_BFLOAT16;
	default: {
		unsigned e, b;
		if (id < 64 && mfs_dtype_block(MFS_DT_GGML((int32_t)id), &e, &b))
			return MFS_DT_GGML((int32_t)id);
		return -1;
	}
	}
}

static int read_file(struct gfile *g, struct mfs_source *src, const char *display, char *err,
                     size_t errlen)
{
	struct cur c = {.src = src, .size = src->size, .display = display, .err = err,
	                .errlen = errlen};
	int rc;
	const uint8_t *p;
	struct mfs_buf tb = {0};
	char msg[256];
	if (!(c.buf = malloc(WIN)))
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	if ((rc = need(&c, 4, &p, "the GGUF magic")) < 0)
		goto out;
	if (memcmp(p, "GGUF", 4) != 0) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "not a GGUF file (bad magic)");
		goto out;
	}
	uint32_t version;
	if ((rc = get_u32(&c, &version, "the GGUF version")) < 0)
		goto out;
	if (version && (version & 0xffff) == 0) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "a big-endian GGUF file "
		              "(version %" PRIu32 " byte-swapped) is not supported",
		              __builtin_bswap32(version));
		goto out;
	}
	if (version < 2 || version > 3) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "GGUF version %" PRIu32
		              " is not supported (2 and 3 are)", version);
		goto out;
	}
	g->version = version;
	uint64_t n_tensors, n_kv;
	if ((rc = get_u64(&c, &n_tensors, "the tensor count")) < 0 ||
	    (rc = get_u64(&c, &n_kv, "the key count")) < 0)
		goto out;
	/* A pair takes at least 8 + 1 + 4 + 1 bytes, a tensor info 8 + 1 + 4 + 4 + 8. */
	if (n_kv > (c.size - c.pos) / 14) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "the key count %" PRIu64 " is more "
		              "than the %" PRIu64 " bytes left in the file can hold", n_kv,
		              c.size - c.pos);
		goto out;
	}
	if (n_tensors > (c.size - c.pos) / 25) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "the tensor count %" PRIu64 " is more "
		              "than the %" PRIu64 " bytes left in the file can hold", n_tensors,
		              c.size - c.pos);
		goto out;
	}

	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	uint64_t total_text = 0;
	for (uint64_t i = 0; i < n_kv; i++) {
		uint64_t start = c.pos, klen;
		struct mfs_buf kb = {0};
		if ((rc = get_str(&c, &kb, GGUF_MAX_KEY, &klen, "a key")) < 0) {
			free(kb.p);
			goto out;
		}
		if (kb.oom || !grow((void **)&g->props, &g->cap_props, g->n_props, sizeof(*g->props))) {
			free(kb.p);
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		struct gprop *gp = &g->props[g->n_props++];
		memset(gp, 0, sizeof(*gp));
		gp->key = kb.p ? kb.p : strdup("");
		if (!gp->key) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		if (klen == 0 || memchr(gp->key, '\0', (size_t)klen)) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "key %" PRIu64 " at byte %" PRIu64
			              " is %s", i, start, klen ? "holding a NUL byte" : "empty");
			goto out;
		}
		uint32_t t;
		if ((rc = get_u32(&c, &t, "a value type")) < 0)
			goto out;
		uint32_t elem = 0;
		if ((rc = value(&c, &tb, t, 0, gp->key, &elem, GGUF_MAX_TEXT - total_text)) < 0)
			goto out;
		if (tb.oom) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		total_text += tb.len;
		if (total_text > GGUF_MAX_TEXT) {
			rc = mfs_errf(err, errlen, -EFBIG, display, "the text of the metadata values "
			              "is over the limit of %llu bytes (at key '%.200s')", GGUF_MAX_TEXT,
			              gp->key);
			goto out;
		}
		/* The buffer becomes the value's text (no copy). */
		gp->text = tb.p ? tb.p : strdup("");
		gp->len = tb.len;
		memset(&tb, 0, sizeof(tb));
		if (!gp->text) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		gp->kv.type = t;
		gp->kv.elem = elem;
		gp->kv.off = start;
		gp->kv.len = c.pos - start;
		gp->kv.nested = t == GV_ARRAY && elem == GV_ARRAY;
		if (t == GV_ARRAY) {
			/* "array[uint32]", "array[array]" for nested ones. */
			snprintf(msg, sizeof(msg), "array[%s]\n", mfs_gguf_vtype_name(elem));
			gp->type_text = strdup(msg);
		} else {
			snprintf(msg, sizeof(msg), "%s\n", mfs_gguf_vtype_name(t));
			gp->type_text = strdup(msg);
		}
		if (!gp->type_text) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		if (strcmp(gp->key, "general.alignment") == 0) {
			uint64_t a = 0;
			if (t != GV_UINT32 || !uint_value(gp, &a) || a == 0 || (a & (a - 1))) {
				rc = mfs_errf(err, errlen, -EUCLEAN, display, "general.alignment must be "
				              "a uint32 power of 2, not %s %.40s", mfs_gguf_vtype_name(t),
				              gp->text);
				goto out;
			}
			g->alignment = (uint32_t)a;
		} else if (strncmp(gp->key, "split.", 6) == 0) {
			uint64_t v;
			bool ok = uint_value(gp, &v);
			if (!strcmp(gp->key, "split.no") || !strcmp(gp->key, "split.count") ||
			    !strcmp(gp->key, "split.tensors.count")) {
				if (!ok) {
					rc = mfs_errf(err, errlen, -EUCLEAN, display, "%s must be a "
					              "non-negative integer, not %s", gp->key,
					              mfs_gguf_vtype_name(t));
					goto out;
				}
				g->has_split = true;
				if (!strcmp(gp->key, "split.no"))
					g->split_no = v;
				else if (!strcmp(gp->key, "split.count"))
					g->split_count = v;
				else
					g->split_tensors = v;
			}
		}
	}
	{
		char **keys = malloc((g->n_props ? g->n_props : 1) * sizeof(*keys));
		if (!keys) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < g->n_props; i++)
			keys[i] = g->props[i].key;
		const char *dup = duplicate(keys, g->n_props, &rc);
		if (dup)
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "key '%.200s' occurs twice", dup);
		else if (rc < 0)
			rc = mfs_errf(err, errlen, rc, display, "out of memory");
		free(keys);
		if (rc < 0)
			goto out;
	}

	g->info_off = c.pos;
	uint64_t expect = 0;
	for (uint64_t i = 0; i < n_tensors; i++) {
		uint64_t start = c.pos, nlen;
		struct mfs_buf nb = {0};
		if ((rc = get_str(&c, &nb, GGUF_MAX_TNAME, &nlen, "a tensor name")) < 0) {
			free(nb.p);
			goto out;
		}
		if (nb.oom || !grow((void **)&g->ts, &g->cap_ts, g->n_ts, sizeof(*g->ts))) {
			free(nb.p);
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		struct gtensor *gt = &g->ts[g->n_ts++];
		memset(gt, 0, sizeof(*gt));
		gt->name = nb.p ? nb.p : strdup("");
		if (!gt->name) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		if (nlen == 0 || memchr(gt->name, '\0', (size_t)nlen)) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor %" PRIu64 " at byte %"
			              PRIu64 " has %s name", i, start, nlen ? "a NUL byte in its" : "an empty");
			goto out;
		}
		uint32_t nd, type;
		if ((rc = get_u32(&c, &nd, "a tensor's dim count")) < 0)
			goto out;
		if (nd > GGUF_MAX_DIMS) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor '%s' has %" PRIu32
			              " dims, more than %d", gt->name, nd, GGUF_MAX_DIMS);
			goto out;
		}
		int64_t ne[GGUF_MAX_DIMS];
		int64_t prod = 1;
		for (uint32_t k = 0; k < nd; k++) {
			uint64_t d;
			if ((rc = get_u64(&c, &d, "a tensor dim")) < 0)
				goto out;
			if (d > INT64_MAX || __builtin_mul_overflow(prod, (int64_t)d, &prod)) {
				rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor '%s': its dims "
				              "overflow a 64-bit element count (dim %" PRIu32 " is %"
				              PRIu64 ")", gt->name, k, d);
				goto out;
			}
			ne[k] = (int64_t)d;
		}
		if ((rc = get_u32(&c, &type, "a tensor's type")) < 0 ||
		    (rc = get_u64(&c, &gt->off, "a tensor's offset")) < 0)
			goto out;
		gt->dtype = ggml_dtype(type);
		if (gt->dtype < 0) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor '%s' has unknown ggml "
			              "type %" PRIu32, gt->name, type);
			goto out;
		}
		gt->rank = nd;
		for (uint32_t k = 0; k < nd; k++)
			gt->dims[k] = ne[nd - 1 - k];
		unsigned be, bb;
		if (mfs_dtype_block(gt->dtype, &be, &bb) && (nd == 0 || ne[0] % be)) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor '%s': a %s row of %" PRId64
			              " elements is not a whole number of %u-element blocks", gt->name,
			              mfs_dtype_name(gt->dtype), nd ? ne[0] : 1, be);
			goto out;
		}
		if ((rc = mfs_tensor_nbytes(&gt->nbytes, gt->dtype, gt->dims, gt->rank)) < 0) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor '%s': its byte size "
			              "overflows", gt->name);
			goto out;
		}
		if (gt->off != expect) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor '%s' is at offset %" PRIu64
			              " of the data section, not %" PRIu64 " (tensors follow each "
			              "other in order, each padded to %" PRIu32 " bytes)", gt->name,
			              gt->off, expect, g->alignment);
			goto out;
		}
		uint64_t padded = gt->nbytes + (g->alignment - gt->nbytes % g->alignment) %
		                                       g->alignment;
		if (padded < gt->nbytes || __builtin_add_overflow(expect, padded, &expect) ||
		    expect > c.size) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor '%s': %" PRIu64 " bytes "
			              "at offset %" PRIu64 " of the data section are past the end of "
			              "the file", gt->name, gt->nbytes, gt->off);
			goto out;
		}
	}
	g->info_end = c.pos;
	{
		char **names = malloc((g->n_ts ? g->n_ts : 1) * sizeof(*names));
		if (!names) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < g->n_ts; i++)
			names[i] = g->ts[i].name;
		const char *dup = duplicate(names, g->n_ts, &rc);
		if (dup)
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor '%.200s' occurs twice",
			              dup);
		else if (rc < 0)
			rc = mfs_errf(err, errlen, rc, display, "out of memory");
		free(names);
		if (rc < 0)
			goto out;
	}
	uint64_t a = g->alignment;
	g->data_off = c.pos + (a - c.pos % a) % a;
	if (!g->n_ts && g->data_off > c.size)
		g->data_off = c.size;   /* no tensors: the padding may be cut short */
	if (g->n_ts) {
		const struct gtensor *last = &g->ts[g->n_ts - 1];
		if (g->data_off > c.size || last->off + last->nbytes > c.size - g->data_off) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor '%s': %" PRIu64 " bytes "
			              "at offset %" PRIu64 " of the data section (byte %" PRIu64
			              ") are past the end of the file (%" PRIu64 " bytes)", last->name,
			              last->nbytes, last->off, g->data_off, c.size);
			goto out;
		}
	}
	rc = 0;
out:
	free(c.buf);
	free(tb.p);
	return rc;
}

/* ------------------------------------------------------------ the model */

/* Is `base` a first shard's name, "<prefix>-00001-of-<NNNNN>.gguf"?  *count gets N. */
static bool split_name(const char *base, size_t *prefix, unsigned *count)
{
	size_t n = strlen(base);
	const char *tail = "-00001-of-00000.gguf";
	size_t tl = strlen(tail);
	if (n < tl)
		return false;
	const char *t = base + n - tl;
	if (memcmp(t, "-00001-of-", 10) != 0 || strcmp(t + 15, ".gguf") != 0)
		return false;
	unsigned v = 0;
	for (int i = 10; i < 15; i++) {
		if (t[i] < '0' || t[i] > '9')
			return false;
		v = v * 10 + (unsigned)(t[i] - '0');
	}
	*prefix = n - tl;
	*count = v;
	return true;
}

static struct mfs_tensor *make_tensor(struct mfs_arena *a, const struct gtensor *gt, unsigned src,
                                      uint64_t data_off, bool editable)
{
	struct mfs_tensor *t = mfs_arena_alloc(a, sizeof(*t));
	if (!t)
		return NULL;
	t->name = mfs_arena_strdup(a, gt->name);
	t->dims = mfs_arena_array(a, gt->rank ? gt->rank : 1, sizeof(*t->dims));
	if (!t->name || !t->dims)
		return NULL;
	t->dtype = gt->dtype;
	t->rank = gt->rank;
	memcpy(t->dims, gt->dims, gt->rank * sizeof(*t->dims));
	t->nbytes = gt->nbytes;
	t->flags = MFS_TENSOR_CONTIGUOUS | (editable ? MFS_TENSOR_EDITABLE : 0);
	t->src = src;
	t->off = data_off + gt->off;
	return t;
}

int mfs_gguf_open(struct mfs_model *m, const char *display, char *err, size_t errlen)
{
	struct gfile g = {0}, sh = {0};
	struct mfs_tensor **tv = NULL;
	size_t n_tv = 0, cap_tv = 0;
	char *sdisplay = NULL, *sname = NULL;
	struct mfs_arena *a = m->arena;
	int rc = read_file(&g, m->srcs[0], display, err, errlen);
	if (rc < 0)
		goto out;

	unsigned count = 1;
	if (g.has_split && g.split_count > 1) {
		size_t prefix;
		unsigned ncount;
		const char *base = m->desc.files[0].path;
		if (g.split_no != 0) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "is file %" PRIu64 " of %" PRIu64
			              " of a split model: mount the first one", g.split_no + 1,
			              g.split_count);
			goto out;
		}
		if (g.split_count > GGUF_MAX_SHARDS) {
			rc = mfs_errf(err, errlen, -EFBIG, display, "split.count %" PRIu64 " is over "
			              "the limit of %d files", g.split_count, GGUF_MAX_SHARDS);
			goto out;
		}
		if (!split_name(base, &prefix, &ncount) || ncount != g.split_count) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "says it is the first of %" PRIu64
			              " files of a split model, but is not named "
			              "<name>-00001-of-%05" PRIu64 ".gguf", g.split_count, g.split_count);
			goto out;
		}
		count = (unsigned)g.split_count;
		sname = malloc(strlen(base) + 1);
		if (!sname) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		memcpy(sname, base, prefix);
		for (unsigned k = 1; k < count; k++) {
			snprintf(sname + prefix, strlen(base) + 1 - prefix, "-%05u-of-%05u.gguf", k + 1,
			         count);
			char oerr[1024];
			struct mfs_source *s;
			int fd = mfs_model_open_beneath(m, &s, sname, oerr, sizeof(oerr),
			                                 display);
			if (fd < 0) {
				rc = mfs_errf(err, errlen, fd, display, fd == -ENOENT
				              ? "file %u of the split model, '%s', is missing"
				              : "cannot open file %u of the split model, '%s'", k + 1, sname);
				goto out;
			}
			int src = mfs_model_add_file(m, sname, s);
			if (src < 0) {
				rc = mfs_errf(err, errlen, src, display, "cannot add '%s': %s", sname,
				              strerror(-src));
				goto out;
			}
		}
	}

	/* The tensors, file by file. */
	for (unsigned k = 0; k < count; k++) {
		struct gfile *f = k ? &sh : &g;
		if (k) {
			free(sdisplay);
			if (asprintf(&sdisplay, "%s: %s", display, m->desc.files[k].path) < 0) {
				sdisplay = NULL;
				rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
				goto out;
			}
			gfile_free(&sh);
			if ((rc = read_file(&sh, m->srcs[k], sdisplay, err, errlen)) < 0)
				goto out;
			if (!sh.has_split || sh.split_no != k || sh.split_count != count) {
				rc = mfs_errf(err, errlen, -EUCLEAN, sdisplay, "does not say it is file %u "
				              "of %u of the split model (split.no %" PRIu64 ", split.count %"
				              PRIu64 ")", k + 1, count, sh.split_no + 1, sh.split_count);
				goto out;
			}
		}
		for (size_t i = 0; i < f->n_ts; i++) {
			if (!grow((void **)&tv, &cap_tv, n_tv, sizeof(*tv)) ||
			    !(tv[n_tv] = make_tensor(a, &f->ts[i], k, f->data_off, count == 1))) {
				rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
				goto out;
			}
			n_tv++;
		}
	}
	if (count > 1) {
		if (g.split_tensors && g.split_tensors != n_tv) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "split.tensors.count says %" PRIu64
			              " tensors, the %u files hold %zu", g.split_tensors, count, n_tv);
			goto out;
		}
		char **names = malloc(n_tv * sizeof(*names));
		if (!names) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < n_tv; i++)
			names[i] = tv[i]->name;
		const char *dup = duplicate(names, n_tv, &rc);
		if (dup)
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "tensor '%.200s' occurs in two "
			              "files of the split model", dup);
		else if (rc < 0)
			rc = mfs_errf(err, errlen, rc, display, "out of memory");
		free(names);
		if (rc < 0)
			goto out;
	}

	/* The description. */
	struct mfs_desc *d = &m->desc;
	struct mfs_graph *gr = mfs_arena_alloc(a, sizeof(*gr));
	struct gguf_state *st = mfs_arena_alloc(a, sizeof(*st));
	size_t n_meta = 3 + g.n_props + (count > 1);
	d->meta = mfs_arena_array(a, n_meta, sizeof(*d->meta));
	d->props = mfs_arena_array(a, g.n_props ? g.n_props : 1, sizeof(*d->props));
	d->tensors = mfs_arena_array(a, n_tv ? n_tv : 1, sizeof(*d->tensors));
	st->kvs = st ? mfs_arena_array(a, g.n_props ? g.n_props : 1, sizeof(*st->kvs)) : NULL;
	if (!gr || !st || !d->meta || !d->props || !d->tensors || !st->kvs ||
	    !(gr->name = mfs_arena_strdup(a, "")))
		goto oom;
	d->meta[0].name = mfs_arena_strdup(a, "format");
	d->meta[0].value = mfs_arena_strdup(a, "gguf\n");
	d->meta[0].len = 5;
	d->meta[1].name = mfs_arena_strdup(a, "gguf_version");
	d->meta[1].value = mfs_arena_printf(a, "%" PRIu32 "\n", g.version);
	d->meta[2].name = mfs_arena_strdup(a, "alignment");
	d->meta[2].value = mfs_arena_printf(a, "%" PRIu32 "\n", g.alignment);
	if (!d->meta[0].name || !d->meta[0].value || !d->meta[1].name || !d->meta[2].name ||
	    !d->meta[1].value || !d->meta[2].value)
		goto oom;
	d->meta[1].len = strlen(d->meta[1].value);
	d->meta[2].len = strlen(d->meta[2].value);
	for (size_t i = 0; i < g.n_props; i++) {
		struct gprop *gp = &g.props[i];
		struct mfs_meta *mt = &d->meta[3 + i];
		mt->name = mfs_arena_printf(a, "types/%s", gp->key);
		mt->value = mfs_arena_strdup(a, gp->type_text);
		d->props[i].name = mfs_arena_strdup(a, gp->key);
		d->props[i].value = mfs_arena_strndup(a, gp->text, gp->len);
		if (!mt->name || !mt->value || !d->props[i].name || !d->props[i].value)
			goto oom;
		mt->len = strlen(mt->value);
		d->props[i].len = gp->len;
		st->kvs[i] = gp->kv;
		st->kvs[i].key = d->props[i].name;
	}
	if (count > 1) {
		/* meta/shards: the files of a split model, one per line, escaped. */
		struct mfs_buf sb = {0};
		for (unsigned k = 0; k < count; k++) {
			mfs_gguf_scalar_text(&sb, GV_STRING, (const uint8_t *)m->desc.files[k].path,
			                     strlen(m->desc.files[k].path));
			mfs_buf_add(&sb, "\n", 1);
		}
		struct mfs_meta *mt = &d->meta[n_meta - 1];
		mt->name = mfs_arena_strdup(a, "shards");
		mt->value = sb.oom ? NULL : mfs_arena_strndup(a, sb.p, sb.len);
		mt->len = sb.len;
		free(sb.p);
		if (!mt->name || !mt->value)
			goto oom;
	}
	if (n_tv)
		memcpy(d->tensors, tv, n_tv * sizeof(*tv));
	for (size_t i = 0; i < n_tv; i++)
		tv[i]->id = i;
	gr->inits = d->tensors;
	gr->n_inits = n_tv;
	d->graph = gr;
	d->n_tensors = n_tv;
	d->n_meta = n_meta;
	d->n_props = g.n_props;
	st->version = g.version;
	st->alignment = g.alignment;
	st->split = count > 1;
	st->n_kv = g.n_props;
	st->info_off = g.info_off;
	st->info_end = g.info_end;
	st->data_off = g.data_off;
	st->n_tensors = g.n_ts;
	m->priv = st;
	rc = 0;
	goto out;
oom:
	rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
out:
	gfile_free(&g);
	gfile_free(&sh);
	free(tv);
	free(sdisplay);
	free(sname);
	return rc;
}

int mfs_gguf_sniff(const uint8_t *head, size_t len, uint64_t size)
{
	return len >= 4 && memcmp(head, "GGUF", 4) == 0 ? MFS_SNIFF_YES : MFS_SNIFF_NO;
}

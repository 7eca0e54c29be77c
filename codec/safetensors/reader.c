/*
 * codec/safetensors/reader.c — the safetensors reader: single files and sharded
 * checkpoints named by a `*.safetensors.index.json`.
 *
 * A safetensors file is a JSON header followed by one flat byte buffer, and
 * every tensor is a slice of that buffer.  Opening one reads the eight-byte
 * length and the header (never the buffer), reads the header in one pass
 * of a JSON scanner that builds no document tree (scan.c), checks it
 * exactly as the reference reader does (doc/formats.md §2.2) and describes
 * each tensor as a byte range of the file, so mounting a 100 GB checkpoint
 * costs what its header costs.  A header outside the scanner's subset of
 * JSON (a syntax error, a duplicate key, a real number, deep nesting) is
 * parsed by jansson instead, and its tree walked into the same checks: the
 * reference path, which gives every such file the verdict and the message
 * it always had.  A sharded checkpoint is an index
 * mapping tensor names to shard files; each shard is opened beneath the
 * index's directory and read as above, and all tensors become one list,
 * each still read from its own shard.  A tensor's id (desc.tensors) is its
 * place in that list: offset order, shard by shard.  For a single file the
 * splice writer (writer.c) also gets where the data buffer starts.
 *
 * FILE LAYOUT
 *
 *     OFFSET     SIZE   MEANING
 *     0          8      N, u64 little-endian: header length in bytes
 *     8          N      UTF-8 JSON object: {"__metadata__": {str: str},
 *                       "<name>": {"dtype": "F32", "shape": [2, 3],
 *                       "data_offsets": [begin, end]}, ...}
 *     8+N        rest   the data buffer; tensor bytes are [8+N+begin, 8+N+end)
 *
 * INVARIANTS a file must satisfy to open (each failure is one line naming
 * the problem and, where there is one, the tensor; -EUCLEAN):
 *
 *   1. the file has at least 8 bytes; 2 <= N <= 100,000,000; 8+N <= size;
 *   2. the header, after optional JSON whitespace, starts with '{', is valid
 *      UTF-8 and valid JSON, and is an object with no duplicate key at any
 *      level (jansson: JSON_REJECT_DUPLICATES), nested at most 2048 deep
 *      (jansson's own bound, so a 10^6-deep header cannot overflow the stack)
 *      — the scanner accepts a subset of this and leaves the rest, with its
 *      messages, to jansson;
 *   3. "__metadata__", if present, is an object of string values;
 *   4. every other entry is an object with a known "dtype" string, a
 *      "shape" array of non-negative JSON integers (not 1.0, not -1) and
 *      "data_offsets" of two non-negative JSON integers; other keys are
 *      ignored, as the reference reader ignores them;
 *   5. sorted by (begin, end) the tensors tile [0, buffer length): the
 *      first begins at 0, each begins where the previous ended, none ends
 *      before it begins — no holes, no overlaps;
 *   6. prod(shape) x bits is computed without overflow, is a multiple of 8
 *      (sub-byte types must fill whole bytes) and equals end - begin;
 *   7. 8 + N + the last end is exactly the file size: no trailing bytes.
 *
 * modelfs's own limits come on top: a name of at most MFS_MAX_NAME bytes and
 * a rank of at most MFS_MAX_RANK (-EFBIG).  A name containing NUL (JSON
 * "\u0000") is refused, because a name is a C string everywhere else.
 * Names are otherwise taken verbatim ("", "..", "a/b", control bytes): the
 * tree encodes them into safe path components.
 *
 * Cost: the header is read once into a buffer, scanned, and freed before
 * open returns; what stays is the description (about 180 bytes per tensor,
 * a header spends about 110 on one).  Measured on 300,000 tensors (a 35 MB
 * header): `modelfs info` takes 0.45 s and 103 MB at its peak, where it
 * took 2.1 s and 379 MB with jansson's tree (bench/run --only many gives
 * the mounted figures).  FIXME: the reference path
 * still costs jansson's 13-20 bytes of memory per header byte and ~0.1 s
 * per MB, so a hostile header at the 100,000,000-byte limit that the
 * scanner hands over (a duplicate, say, or a real number at its very end)
 * needs ~1.3-2 GB and ~10 s.  The index of a sharded checkpoint is always
 * parsed by jansson (it is a plain JSON document with no layout to check).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "safetensors/st.h"
#define ST_JSON_FLAGS   (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

/* ------------------------------------------------------------ dtypes */

/* safetensors dtype names (exact, case-sensitive) and what they map to. */
static const struct {
	const char *name;
	int32_t dtype;
	unsigned bits;
} st_dtypes[] = {
	{"BOOL", MFS_DT_BOOL, 8},
	{"F4", MFS_DT_FLOAT4E2M1, 4},
	{"F6_E2M3", MFS_DT_FLOAT6E2M3, 6},
	{"F6_E3M2", MFS_DT_FLOAT6E3M2, 6},
	{"U8", MFS_DT_UINT8, 8},
	{"I8", MFS_DT_INT8, 8},
	{"F8_E5M2", MFS_DT_FLOAT8E5M2, 8},
	{"F8_E4M3", MFS_DT_FLOAT8E4M3FN, 8},
	{"F8_E8M0", MFS_DT_FLOAT8E8M0, 8},
	{"F8_E4M3FNUZ", MFS_DT_FLOAT8E4M3FNUZ, 8},
	{"F8_E5M2FNUZ", MFS_DT_FLOAT8E5M2FNUZ, 8},
	{"I16", MFS_DT_INT16, 16},
	{"U16", MFS_DT_UINT16, 16},
	{"F16", MFS_DT_FLOAT16, 16},
	{"BF16", MFS_DT_BFLOAT16, 16},
	{"I32", MFS_DT_INT32, 32},
	{"U32", MFS_DT_UINT32, 32},
	{"F32", MFS_DT_FLOAT, 32},
	{"C64", MFS_DT_COMPLEX64, 64},
	{"F64", MFS_DT_DOUBLE, 64},
	{"I64", MFS_DT_INT64, 64},
	{"U64", MFS_DT_UINT64, 64},
};

/* Index into st_dtypes of a name given with its length (it may hold NUL). */
static int st_dtype_find(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++)
		if (strlen(st_dtypes[i].name) == len && memcmp(st_dtypes[i].name, s, len) == 0)
			return (int)i;
	return -1;
}

const char *mfs_st_dtype_name(int32_t dtype)
{
	for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++)
		if (st_dtypes[i].dtype == dtype)
			return st_dtypes[i].name;
	return NULL;
}

/* ------------------------------------------------------------ helpers */

static bool is_json_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Make a model-provided string safe for an error message: at most 64 bytes
 * of it, printable ASCII kept, everything else as \xNN, "..." when cut, so a
 * hostile name can neither break the one-line message nor drown it.  With
 * `quoted` it is put in single quotes (and quotes inside are escaped).
 * Each byte takes at most 4 characters and the tail 5, hence the bound.
 */
static const char *sanitize(char *buf, size_t len, const char *s, size_t n, bool quoted)
{
	size_t o = 0, i;
	if (quoted)
		buf[o++] = '\'';
	for (i = 0; i < n && i < 64 && o + 4 + 5 <= len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && !(quoted && (c == '\'' || c == '\\')))
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
	}
	if (quoted)
		buf[o++] = '\'';
	if (i < n) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

static const char *quote(char *buf, size_t len, const char *s, size_t n)
{
	return sanitize(buf, len, s, n, true);
}

#define QBUF 300        /* room for sanitize() of any string: 2 + 64 * 4 + 3 + 1 */

/* A growing array of tensor pointers, malloc'd; copied into the arena at the end. */
struct tvec {
	struct mfs_tensor **v;
	size_t n, cap;
};

static int tvec_push(struct tvec *tv, struct mfs_tensor *t)
{
	if (tv->n == tv->cap) {
		size_t cap = tv->cap ? tv->cap * 2 : 64;
		struct mfs_tensor **v = realloc(tv->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		tv->v = v;
		tv->cap = cap;
	}
	tv->v[tv->n++] = t;
	return 0;
}

/* A growing array of meta/props entries, malloc'd; copied into the arena at the end. */
struct mvec {
	struct mfs_meta *v;
	size_t n, cap;
};

static int mvec_pushn(struct mvec *mv, struct mfs_arena *a, const char *name, size_t nlen,
                      const char *value, size_t len)
{
	if (mv->n == mv->cap) {
		size_t cap = mv->cap ? mv->cap * 2 : 8;
		struct mfs_meta *v = realloc(mv->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		mv->v = v;
		mv->cap = cap;
	}
	struct mfs_meta *e = &mv->v[mv->n];
	e->name = mfs_arena_strndup(a, name, nlen);
	e->value = mfs_arena_strndup(a, value, len);
	e->len = len;
	if (!e->name || !e->value)
		return -ENOMEM;
	mv->n++;
	return 0;
}

static int mvec_push(struct mvec *mv, struct mfs_arena *a, const char *name, const char *value,
                     size_t len)
{
	return mvec_pushn(mv, a, name, strlen(name), value, len);
}

static void *arena_copy(struct mfs_arena *a, const void *src, size_t n, size_t size)
{
	void *p = mfs_arena_array(a, n, size);
	if (p && n)
		memcpy(p, src, n * size);
	return p;
}

/* The description every safetensors model shares: one graph of tensors. */
static int st_finish(struct mfs_model *m, struct tvec *tv, struct mvec *meta, struct mvec *props)
{
	struct mfs_desc *d = &m->desc;
	struct mfs_graph *g = mfs_arena_alloc(m->arena, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->name = mfs_arena_strdup(m->arena, "");
	g->inits = arena_copy(m->arena, tv->v, tv->n, sizeof(*tv->v));
	d->tensors = g->inits;  /* the same list, in the same order: one copy */
	d->meta = arena_copy(m->arena, meta->v, meta->n, sizeof(*meta->v));
	d->props = arena_copy(m->arena, props->v, props->n, sizeof(*props->v));
	if (!g->name || !g->inits || !d->tensors || !d->meta || !d->props)
		return -ENOMEM;
	for (size_t i = 0; i < tv->n; i++)
		tv->v[i]->id = i;
	g->n_inits = tv->n;
	d->n_meta = meta->n;
	d->n_props = props->n;
	d->graph = g;
	d->n_tensors = tv->n;
	return 0;
}

/* ------------------------------------------------------------ JSON */

/*
 * Parse `len` bytes of JSON text into *out, turning jansson's error into one
 * line that says which rule was broken.  `what` names the text ("safetensors
 * header", "safetensors index").
 */
static int st_parse_json(json_t **out, const char *buf, size_t len, const char *what,
                         const char *display, char *err, size_t errlen)
{
	json_error_t je;
	*out = json_loadb(buf, len, ST_JSON_FLAGS, &je);
	if (*out)
		return 0;
	char text[QBUF];
	sanitize(text, sizeof(text), je.text, strlen(je.text), false);
	switch (json_error_code(&je)) {
	case json_error_out_of_memory:
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory parsing %s", what);
	case json_error_invalid_utf8:
		return mfs_errf(err, errlen, -EUCLEAN, display, "%s is not valid UTF-8 at byte %d: %s",
		                what, je.position, text);
	case json_error_stack_overflow:
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "%s nests deeper than %d levels at byte %d", what,
		                JSON_PARSER_MAX_DEPTH, je.position);
	case json_error_duplicate_key:
		return mfs_errf(err, errlen, -EUCLEAN, display, "%s has a duplicate key at byte %d: %s",
		                what, je.position, text);
	case json_error_null_byte_in_key:
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "%s has a name containing a NUL byte (not supported) at byte %d: %s",
		                what, je.position, text);
	case json_error_numeric_overflow:
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "%s has an integer out of range at byte %d: %s", what, je.position, text);
	default:
		return mfs_errf(err, errlen, -EUCLEAN, display, "%s is not valid JSON at byte %d: %s",
		                what, je.position, text);
	}
}

/*
 * A value as a non-negative integer.  A real (1.0, 1e3) or a negative
 * number is refused, as serde refuses it for a u64 field.
 */
static const char *as_uint(int kind, uint64_t u, uint64_t *out)
{
	if (kind == ST_V_REAL)
		return "is not an integer";
	if (kind != ST_V_UINT && kind != ST_V_NEG)
		return "is not a number";
	if (kind == ST_V_NEG)
		return "is negative";
	*out = u;
	return NULL;
}

/* ------------------------------------------------------------ one file */

/* One tensor while its file is being checked. */
struct st_entry {
	struct mfs_tensor *t;
	uint64_t begin, end;
	size_t idx;             /* position in the header: a stable tie-break */
	unsigned bits;
	const char *st_dtype;
};

static int entry_cmp(const void *pa, const void *pb)
{
	const struct st_entry *a = pa, *b = pb;
	if (a->begin != b->begin)
		return a->begin < b->begin ? -1 : 1;
	if (a->end != b->end)
		return a->end < b->end ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/*
 * Read the header of source file `src`: invariant 1, and the first byte of
 * invariant 2.  On success *buf is the header's N bytes (yours to free) and
 * *hlen is N.
 */
static int st_read_header(struct mfs_model *m, unsigned src, const char *display, char **out,
                          uint64_t *hlen, char *err, size_t errlen)
{
	uint64_t size = m->desc.files[src].size;
	struct mfs_source *fs = m->srcs[src];
	char *buf = NULL;
	int rc;
	*out = NULL;

	if (size < 8)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "file of %" PRIu64 " bytes is too small for a safetensors header", size);
	uint8_t lenb[8];
	rc = mfs_source_read(fs, lenb, sizeof(lenb), 0);
	if (rc < 0)
		return mfs_errf(err, errlen, rc, display, "cannot read safetensors header length: %s",
		                strerror(-rc));
	uint64_t n = mfs_get_le64(lenb);
	if (n > UINT64_MAX - 8)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors header length %" PRIu64 " overflows the file offset", n);
	if (n > ST_MAX_HEADER)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors header length %" PRIu64 " exceeds the limit of %llu bytes",
		                n, ST_MAX_HEADER);
	if (n < ST_MIN_HEADER)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors header length %" PRIu64 " is below the minimum of %llu", n,
		                ST_MIN_HEADER);
	if (8 + n > size)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors header length %" PRIu64 " runs past the end of the file "
		                "(%" PRIu64 " bytes)", n, size);

	buf = malloc((size_t)n);
	if (!buf)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory for the header");
	rc = mfs_source_read(fs, buf, (size_t)n, 8);
	if (rc < 0) {
		rc = mfs_errf(err, errlen, rc, display, "cannot read safetensors header: %s",
		              strerror(-rc));
		goto out;
	}
	size_t i = 0;
	while (i < n && is_json_ws((uint8_t)buf[i]))
		i++;
	if (i == n || buf[i] != '{') {
		if (i == n)
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "safetensors header is blank, not a JSON object");
		else
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "safetensors header does not start with '{' (byte 0x%02x at offset "
			              "%zu)", (unsigned char)buf[i], 8 + i);
		goto out;
	}
	*out = buf;
	buf = NULL;
	*hlen = n;
	rc = 0;
out:
	free(buf);
	return rc;
}

/*
 * What reading one file collects, whichever parser delivers its entries
 * (mfs_st_scan, or st_walk_tree over jansson's tree): the tensors with
 * their offsets, the "__metadata__" pairs, and the first broken entry's
 * error (invariants 3 and 4, checked below in the same order for both).
 */
struct load {
	struct mfs_model *m;
	unsigned src;
	const char *display;
	char *err;
	size_t errlen;
	struct st_entry *ents;
	size_t n, cap;
	struct mvec *md;        /* the pairs, appended */
	int rc;                 /* 0, or the first broken entry's error (in err) */
};

static const char *ld_name(void *arg, const char *key, size_t len)
{
	struct load *ld = arg;
	return mfs_arena_strndup(ld->m->arena, key, len);
}

/* Invariant 3, one pair at a time: "__metadata__" is an object of strings. */
static int ld_metadata(void *arg, const char *key, size_t len, const struct st_val *v)
{
	struct load *ld = arg;
	char q[QBUF];
	if (!key)
		ld->rc = mfs_errf(ld->err, ld->errlen, -EUCLEAN, ld->display,
		                  "safetensors __metadata__ is not an object");
	else if (v->kind != ST_V_STRING)
		ld->rc = mfs_errf(ld->err, ld->errlen, -EUCLEAN, ld->display,
		                  "safetensors __metadata__ value of %s is not a string",
		                  quote(q, sizeof(q), key, len));
	if (ld->rc)
		return ST_SCAN_STOP;
	if (mvec_pushn(ld->md, ld->m->arena, key, len, v->s, v->len) < 0)
		return mfs_errf(ld->err, ld->errlen, -ENOMEM, ld->display, "out of memory");
	return 0;
}

/* Invariant 4 for one entry: fill `e` (and a new tensor) from it. */
static int st_take_tensor(struct load *ld, const char *name, size_t klen,
                          const struct st_rawent *re, struct st_entry *e)
{
	const char *display = ld->display;
	char *err = ld->err;
	size_t errlen = ld->errlen;
	char q[QBUF];
#define Q() quote(q, sizeof(q), name, klen)
	if (klen > MFS_MAX_NAME)
		return mfs_errf(err, errlen, -EFBIG, display,
		                "safetensors tensor name of %zu bytes exceeds the limit of %d: %s",
		                klen, MFS_MAX_NAME, Q());
	if (re->kind != ST_V_OBJECT)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors tensor %s: entry is not an object", Q());
	const struct st_val *jd = &re->dtype, *js = &re->shape, *jo = &re->offsets;
	if (!jd->kind || !js->kind || !jo->kind)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors tensor %s: missing \"%s\"", Q(),
		                !jd->kind ? "dtype" : !js->kind ? "shape" : "data_offsets");
	if (jd->kind != ST_V_STRING)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors tensor %s: dtype is not a string", Q());
	int di = st_dtype_find(jd->s, jd->len);
	if (di < 0) {
		char qd[QBUF];
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors tensor %s: unknown dtype %s", Q(),
		                quote(qd, sizeof(qd), jd->s, jd->len));
	}
	if (js->kind != ST_V_ARRAY)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors tensor %s: shape is not an array", Q());
	size_t rank = js->len;
	if (rank > MFS_MAX_RANK)
		return mfs_errf(err, errlen, -EFBIG, display,
		                "safetensors tensor %s: rank %zu exceeds the limit of %d", Q(), rank,
		                MFS_MAX_RANK);
	if (jo->kind != ST_V_ARRAY || jo->len != 2)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors tensor %s: data_offsets is not a [begin, end] pair", Q());
	const char *why;
	for (size_t i = 0; i < 2; i++) {
		uint64_t *dst = i ? &e->end : &e->begin;
		why = as_uint(jo->el[i].kind, jo->el[i].u, dst);
		if (why)
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "safetensors tensor %s: data_offsets %s %s", Q(),
			                i ? "end" : "begin", why);
	}

	struct mfs_tensor *t = mfs_arena_alloc(ld->m->arena, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->name = (char *)name;         /* the arena copy ld_name made */
	t->dims = mfs_arena_array(ld->m->arena, rank, sizeof(*t->dims));
	if (!t->dims)
		return -ENOMEM;
	for (size_t i = 0; i < rank; i++) {
		uint64_t d;
		why = as_uint(js->el[i].kind, js->el[i].u, &d);
		if (why)
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "safetensors tensor %s: shape[%zu] %s", Q(), i, why);
		t->dims[i] = (int64_t)d;        /* integers fit int64 */
	}
#undef Q
	t->rank = rank;
	t->dtype = st_dtypes[di].dtype;
	t->src = ld->src;
	t->flags = MFS_TENSOR_CONTIGUOUS;      /* editable in a single file: mfs_st_open */
	e->t = t;
	e->bits = st_dtypes[di].bits;
	e->st_dtype = st_dtypes[di].name;
	return 0;
}

static int ld_tensor(void *arg, const char *name, size_t len, const struct st_rawent *re)
{
	struct load *ld = arg;
	if (ld->n == ld->cap) {
		size_t cap = ld->cap ? ld->cap * 2 : 64;
		struct st_entry *v = realloc(ld->ents, cap * sizeof(*v));
		if (!v)
			return mfs_errf(ld->err, ld->errlen, -ENOMEM, ld->display, "out of memory");
		ld->ents = v;
		ld->cap = cap;
	}
	struct st_entry *e = &ld->ents[ld->n];
	memset(e, 0, sizeof(*e));
	e->idx = ld->n++;
	int rc = st_take_tensor(ld, name, len, re, e);
	if (rc == -ENOMEM)
		return mfs_errf(ld->err, ld->errlen, rc, ld->display, "out of memory");
	if (rc < 0) {
		ld->rc = rc;
		return ST_SCAN_STOP;
	}
	return 0;
}

static const struct st_scan_ops ld_ops = {
	.name = ld_name, .tensor = ld_tensor, .metadata = ld_metadata,
};

/* ------------------------------------------------------------ the reference path */

/* Set by tests (mfs_st_test_reference): every header takes this path. */
static bool reference_only;

void mfs_st_test_reference(bool on)
{
	reference_only = on;
}

static void val_of_json(struct st_val *out, const json_t *v)
{
	memset(out, 0, offsetof(struct st_val, el));
	if (!v) {
		out->kind = ST_V_NONE;
	} else if (json_is_real(v)) {
		out->kind = ST_V_REAL;
	} else if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		out->kind = i < 0 ? ST_V_NEG : ST_V_UINT;
		out->u = i < 0 ? 0 : (uint64_t)i;
	} else if (json_is_string(v)) {
		out->kind = ST_V_STRING;
		out->s = json_string_value(v);
		out->len = json_string_length(v);
	} else if (json_is_array(v)) {
		out->kind = ST_V_ARRAY;
		out->len = json_array_size(v);
		for (size_t i = 0; i < out->len && i < ST_VAL_ELEMS; i++) {
			struct st_val el;
			val_of_json(&el, json_array_get(v, i));
			out->el[i].kind = el.kind;
			out->el[i].u = el.u;
		}
	} else {
		out->kind = json_is_object(v) ? ST_V_OBJECT : ST_V_OTHER;
	}
}

/*
 * The reference path: jansson parses the whole header (invariant 2, with
 * jansson's own messages) and its tree is walked in jansson's order, which
 * is the file's, into the same checks the scanner feeds.  Taken for every
 * header outside the scanner's subset (scan.c).
 */
static int st_walk_tree(struct load *ld, const char *buf, size_t len)
{
	json_t *root = NULL;
	int rc = st_parse_json(&root, buf, len, "safetensors header", ld->display, ld->err,
	                       ld->errlen);
	if (rc < 0)
		return rc;
	if (!json_is_object(root)) {
		/* Unreachable after the '{' check; kept so the rule is local. */
		json_decref(root);
		return mfs_errf(ld->err, ld->errlen, -EUCLEAN, ld->display,
		                "safetensors header is not a JSON object");
	}
	const char *key;
	size_t klen;
	json_t *v;
	json_object_keylen_foreach(root, key, klen, v) {
		if (klen == 12 && memcmp(key, "__metadata__", 12) == 0) {
			if (!json_is_object(v)) {
				rc = ld_metadata(ld, NULL, 0, NULL);
			} else {
				const char *k;
				size_t kl;
				json_t *mv;
				json_object_keylen_foreach(v, k, kl, mv) {
					struct st_val sv;
					val_of_json(&sv, mv);
					if ((rc = ld_metadata(ld, k, kl, &sv)) != 0)
						break;
				}
			}
		} else {
			struct st_rawent re;
			re.kind = json_is_object(v) ? ST_V_OBJECT : ST_V_OTHER;
			val_of_json(&re.dtype, re.kind == ST_V_OBJECT ? json_object_get(v, "dtype") : NULL);
			val_of_json(&re.shape, re.kind == ST_V_OBJECT ? json_object_get(v, "shape") : NULL);
			val_of_json(&re.offsets, re.kind == ST_V_OBJECT ?
			            json_object_get(v, "data_offsets") : NULL);
			const char *name = ld_name(ld, key, klen);
			rc = name ? ld_tensor(ld, name, klen, &re) :
			     mfs_errf(ld->err, ld->errlen, -ENOMEM, ld->display, "out of memory");
		}
		if (rc != 0)
			break;
	}
	json_decref(root);
	return rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------ layout */

/*
 * Invariants 5-7 over the entries sorted by offsets; sets each tensor's
 * file offset and size.
 */
static int st_check_layout(struct st_entry *ents, size_t n, uint64_t hlen, uint64_t size,
                           const char *display, char *err, size_t errlen)
{
	char q[QBUF], qp[QBUF];
	uint64_t prev_end = 0;
	const struct mfs_tensor *prev = NULL;
	for (size_t i = 0; i < n; i++) {
		struct st_entry *e = &ents[i];
		struct mfs_tensor *t = e->t;
#define Q() quote(q, sizeof(q), t->name, strlen(t->name))
		if (e->end < e->begin)
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "safetensors tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] "
			                "begin after end", Q(), e->begin, e->end);
		if (e->begin < prev_end)
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "safetensors tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] "
			                "overlap tensor %s ending at %" PRIu64, Q(), e->begin, e->end,
			                quote(qp, sizeof(qp), prev->name, strlen(prev->name)), prev_end);
		if (e->begin > prev_end)
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "safetensors tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] "
			                "leave a hole of %" PRIu64 " bytes after offset %" PRIu64, Q(),
			                e->begin, e->end, e->begin - prev_end, prev_end);
		uint64_t nelem = 1, bits;
		for (size_t k = 0; k < t->rank; k++)
			if (__builtin_mul_overflow(nelem, (uint64_t)t->dims[k], &nelem))
				return mfs_errf(err, errlen, -EUCLEAN, display,
				                "safetensors tensor %s: element count of its shape "
				                "overflows", Q());
		if (__builtin_mul_overflow(nelem, (uint64_t)e->bits, &bits))
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "safetensors tensor %s: size of %" PRIu64 " %s elements overflows",
			                Q(), nelem, e->st_dtype);
		if (bits % 8)
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "safetensors tensor %s: %" PRIu64 " %s elements are not a whole "
			                "number of bytes (misaligned)", Q(), nelem, e->st_dtype);
		if (e->end - e->begin != bits / 8)
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "safetensors tensor %s: data_offsets span %" PRIu64 " bytes but "
			                "%" PRIu64 " %s elements need %" PRIu64, Q(), e->end - e->begin,
			                nelem, e->st_dtype, bits / 8);
#undef Q
		t->off = 8 + hlen + e->begin;   /* no overflow: hlen <= 1e8, begin < 2^63 */
		t->nbytes = bits / 8;
		prev_end = e->end;
		prev = t;
	}
	uint64_t data_end = 8 + hlen + prev_end;
	if (data_end < size)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors data ends at byte %" PRIu64 " but the file has %" PRIu64
		                " bytes (%" PRIu64 " trailing bytes)", data_end, size, size - data_end);
	if (data_end > size)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "safetensors tensor %s ends at byte %" PRIu64 ", past the end of the "
		                "file (%" PRIu64 " bytes)",
		                quote(q, sizeof(q), prev->name, strlen(prev->name)), data_end, size);
	return 0;
}

/*
 * Open one safetensors file, source `src` of the model: check invariants
 * 1-7, append its tensors, in offset order, to `tv` and its "__metadata__"
 * pairs, in file order, to `md`.  The header is read by the scanner when it
 * can, by jansson otherwise (scan.c says which); either way the checks and
 * their messages are the same.
 */
static int st_load(struct mfs_model *m, unsigned src, const char *display, struct tvec *tv,
                   struct mvec *md, uint64_t *hlen_out, char *err, size_t errlen)
{
	char *buf = NULL;
	uint64_t hlen = 0;
	int rc = st_read_header(m, src, display, &buf, &hlen, err, errlen);
	if (rc < 0)
		return rc;
	size_t md0 = md->n;
	struct load ld = {
		.m = m, .src = src, .display = display, .err = err, .errlen = errlen, .md = md,
	};
	rc = reference_only ? ST_SCAN_REFERENCE : mfs_st_scan(buf, (size_t)hlen, &ld_ops, &ld);
	if (rc == ST_SCAN_REFERENCE) {
		/* Forget what the pass collected: jansson has the last word. */
		ld.n = 0;
		ld.rc = 0;
		md->n = md0;
		rc = st_walk_tree(&ld, buf, (size_t)hlen);
	}
	free(buf);              /* before the sort: the peak is the header or the entries */
	if (rc == -ENOMEM)
		rc = mfs_errf(err, errlen, rc, display, "out of memory");
	if (rc == 0)
		rc = ld.rc;
	if (rc < 0)
		goto out;
	if (ld.n)
		qsort(ld.ents, ld.n, sizeof(*ld.ents), entry_cmp);
	rc = st_check_layout(ld.ents, ld.n, hlen, m->desc.files[src].size, display, err, errlen);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < ld.n; i++) {
		rc = tvec_push(tv, ld.ents[i].t);
		if (rc < 0) {
			rc = mfs_errf(err, errlen, rc, display, "out of memory");
			goto out;
		}
	}
	if (hlen_out)
		*hlen_out = hlen;
	rc = 0;
out:
	free(ld.ents);
	if (rc < 0)
		md->n = md0;
	return rc;
}

/*
 * Looks like safetensors, for format detection.  Two ways to qualify:
 *   - the length prefix is plausible (2 <= N <= 100,000,000, 8+N <= size),
 *     whatever follows it — a header that then fails to be JSON gets a
 *     safetensors error, not an ONNX one; no ONNX file can start this way
 *     (bytes 4-7 would all be zero);
 *   - or byte 8, after JSON whitespace, is '{' while byte 0 is not: the
 *     shape of a safetensors file whose length prefix is broken (0, 1,
 *     huge, past the end), so that it too gets a safetensors error.  A JSON
 *     document (an index) starts with '{' itself and is left alone.
 */
bool mfs_st_sniff_file(const uint8_t *head, size_t len, uint64_t file_size)
{
	if (len < 9 || file_size < 9)
		return false;
	uint64_t n = mfs_get_le64(head);
	if (n >= ST_MIN_HEADER && n <= ST_MAX_HEADER && n <= file_size - 8)
		return true;
	size_t i = 8;
	while (i < len && is_json_ws(head[i]))
		i++;
	return head[0] != '{' && i < len && head[i] == '{';
}

static int st_open_file(struct mfs_model *m, const char *display, char *err, size_t errlen)
{
	struct tvec tv = {0};
	struct mvec meta = {0}, props = {0};
	uint64_t hlen = 0;
	int rc = st_load(m, 0, display, &tv, &props, &hlen, err, errlen);
	if (rc < 0)
		goto out;
	rc = mvec_push(&meta, m->arena, "format", "safetensors\n", 12);
	if (rc == 0)
		rc = st_finish(m, &tv, &meta, &props);
	struct mfs_st_state *state = rc == 0 ? mfs_arena_alloc(m->arena, sizeof(*state)) : NULL;
	if (rc == 0 && !state)
		rc = -ENOMEM;
	if (rc < 0) {
		rc = mfs_errf(err, errlen, rc, display, "out of memory");
	} else {
		state->data_off = 8 + hlen;
		m->priv = state;
		for (size_t i = 0; i < m->desc.n_tensors; i++)
			m->desc.tensors[i]->flags |= MFS_TENSOR_EDITABLE;
	}
out:
	free(tv.v);
	free(meta.v);
	free(props.v);
	return rc;
}

/* ------------------------------------------------------------ sharded */

/*
 * A shard name must be a plain relative path below the index's directory:
 * not empty, not absolute, no empty, "." or ".." component, no control
 * character (it is one line of meta/shards).  No symlink on the way is
 * enforced when it is opened, by mfs_model_open_beneath().
 */
static bool shard_name_ok(const char *s)
{
	if (!s[0] || s[0] == '/' || strlen(s) >= PATH_MAX)
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	for (const char *p = s;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (!e)
			return true;
		p = e + 1;
	}
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * A metadata value of the index as the text of a props file: a string as
 * it is, an integer in decimal, a real with %.17g, true/false/null as
 * written, an array or object as compact JSON.  malloc'd.
 */
static char *render_value(const json_t *v, size_t *len)
{
	char *s = NULL;
	if (json_is_string(v)) {
		*len = json_string_length(v);
		s = malloc(*len + 1);
		if (s)
			memcpy(s, json_string_value(v), *len + 1);
		return s;
	}
	if (json_is_integer(v)) {
		if (asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
			s = NULL;
	} else if (json_is_real(v)) {
		if (asprintf(&s, "%.17g", json_real_value(v)) < 0)
			s = NULL;
	} else {
		s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	}
	if (s)
		*len = strlen(s);
	return s;
}

/* Read the whole index file (source 0) and parse it. */
static int index_load(struct mfs_model *m, const char *display, json_t **root, char *err,
                      size_t errlen)
{
	uint64_t size = m->desc.files[0].size;
	char *buf = NULL;
	int rc;
	*root = NULL;
	if (size > ST_MAX_HEADER)
		return mfs_errf(err, errlen, -EFBIG, display,
		                "safetensors index of %" PRIu64 " bytes exceeds the limit of %llu",
		                size, ST_MAX_HEADER);
	buf = malloc(size ? (size_t)size : 1);
	if (!buf)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	rc = mfs_source_read(m->srcs[0], buf, (size_t)size, 0);
	if (rc < 0) {
		rc = mfs_errf(err, errlen, rc, display, "cannot read: %s", strerror(-rc));
		goto out;
	}
	rc = st_parse_json(root, buf, (size_t)size, "safetensors index", display, err, errlen);
	if (rc < 0)
		goto out;
	if (!json_is_object(*root)) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display,
		              "safetensors index is not a JSON object");
		goto out;
	}
out:
	free(buf);
	if (rc < 0) {
		json_decref(*root);
		*root = NULL;
	}
	return rc;
}

/*
 * Check one loaded shard against the index: every tensor it holds must be
 * mapped to it, and every name mapped to it must be in it.  `first` is
 * where its tensors start in `tv`; `expected` how many names map to it.
 *
 * A tensor the index does not name (or names in another shard) is an error,
 * not ignored: it would otherwise be invisible, or shadow a tensor of the
 * same name elsewhere, and the two cannot both be right.
 */
static int shard_match(const json_t *weight_map, const char *shard, const struct tvec *tv,
                       size_t first, size_t expected, const char *display, char *err,
                       size_t errlen)
{
	char q[QBUF], qs[QBUF], qo[QBUF];
	quote(qs, sizeof(qs), shard, strlen(shard));
	for (size_t i = first; i < tv->n; i++) {
		const char *name = tv->v[i]->name;
		const json_t *v = json_object_get(weight_map, name);
		if (!v)
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "shard %s has tensor %s that the index does not name", qs,
			                quote(q, sizeof(q), name, strlen(name)));
		if (strcmp(json_string_value(v), shard) != 0)
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "shard %s has tensor %s that the index maps to shard %s", qs,
			                quote(q, sizeof(q), name, strlen(name)),
			                quote(qo, sizeof(qo), json_string_value(v),
			                      strlen(json_string_value(v))));
	}
	if (tv->n - first == expected)
		return 0;
	/* Fewer tensors than names: find a name the shard lacks (its names
	 * sorted, so that a big shard is searched in log time). */
	size_t n = tv->n - first;
	const char **names = malloc((n ? n : 1) * sizeof(*names));
	if (!names)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	for (size_t i = 0; i < n; i++)
		names[i] = tv->v[first + i]->name;
	qsort(names, n, sizeof(*names), strp_cmp);
	const char *key;
	size_t klen;
	json_t *v;
	int rc = 0;
	json_object_keylen_foreach((json_t *)weight_map, key, klen, v) {
		if (strcmp(json_string_value(v), shard) != 0)
			continue;
		if (strcmp(key, "__metadata__") == 0 ||
		    !bsearch(&key, names, n, sizeof(*names), strp_cmp)) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "tensor %s is named by the index but missing from shard %s",
			              quote(q, sizeof(q), key, klen), qs);
			break;
		}
	}
	free(names);
	if (rc < 0)
		return rc;
	return mfs_errf(err, errlen, -EUCLEAN, display, "shard %s does not match the index", qs);
}

/*
 * A sharded checkpoint: the index (files[0]) maps each tensor name to a
 * shard file.  Every shard is opened beneath the index's directory (files[1]
 * on, sorted by name), read as a single file would be, and checked against
 * the map in both directions (see shard_match()).  The tensors of all
 * shards form one list, shard by shard, each in offset order.
 *
 * meta: format ("safetensors"), shards (one shard file per line, sorted).
 *
 * props rule: first the index's "metadata" entries (rendered by
 * render_value(), so total_size reads as decimal), then each shard's
 * "__metadata__" entries in shard order, skipping any key already present
 * — the index wins, then the first shard that has the key.
 */
static int st_open_index(struct mfs_model *m, const char *display, char *err, size_t errlen)
{
	struct tvec tv = {0};
	struct mvec meta = {0}, props = {0}, smd = {0};
	json_t *root = NULL, *seen = NULL;
	const char **shards = NULL;
	size_t *expected = NULL;
	unsigned *srcs = NULL;
	char *shard_list = NULL, *sdisplay = NULL;
	size_t list_len = 0;
	char q[QBUF];
	const char *key;
	size_t klen;
	json_t *v;

	int rc = index_load(m, display, &root, err, errlen);
	if (rc < 0)
		goto out;
	const json_t *wm = json_object_get(root, "weight_map");
	if (!json_is_object(wm)) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display,
		              "safetensors index has no \"weight_map\" object");
		goto out;
	}
	const json_t *md = json_object_get(root, "metadata");
	if (md && !json_is_object(md) && !json_is_null(md)) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display,
		              "safetensors index \"metadata\" is not an object");
		goto out;
	}

	/* Every value of weight_map is a plain relative shard name. */
	size_t n_names = json_object_size(wm);
	shards = calloc(n_names ? n_names : 1, sizeof(*shards));
	seen = json_object();
	if (!shards || !seen) {
		rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
		goto out;
	}
	size_t n = 0;
	json_object_keylen_foreach((json_t *)wm, key, klen, v) {
		quote(q, sizeof(q), key, klen);
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "safetensors index: shard of tensor %s is not a file name", q);
			goto out;
		}
		const char *s = json_string_value(v);
		if (!shard_name_ok(s)) {
			char qs[QBUF];
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "safetensors index: shard %s of tensor %s is not a plain relative "
			              "path inside the index's directory",
			              quote(qs, sizeof(qs), s, strlen(s)), q);
			goto out;
		}
		shards[n++] = s;
	}
	qsort(shards, n, sizeof(*shards), strp_cmp);

	/* Index metadata first (see the props rule above). */
	if (json_is_object(md)) {
		json_object_keylen_foreach((json_t *)md, key, klen, v) {
			size_t len = 0;
			char *text = render_value(v, &len);
			rc = text ? mvec_push(&props, m->arena, key, text, len) : -ENOMEM;
			free(text);
			if (rc == 0 && json_object_set_new(seen, key, json_true()) < 0)
				rc = -ENOMEM;
			if (rc < 0) {
				rc = mfs_errf(err, errlen, rc, display, "out of memory");
				goto out;
			}
		}
	}

	/* The distinct shards, in sorted order; a run of equal names in
	 * `shards` is how many tensors the index puts in that shard.  All are
	 * opened before any is read, so a missing shard is reported as such
	 * whatever the others contain. */
	size_t n_shards = 0;
	expected = calloc(n ? n : 1, sizeof(*expected));
	srcs = calloc(n ? n : 1, sizeof(*srcs));
	if (!expected || !srcs) {
		rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && strcmp(shards[j], shards[i]) == 0)
			j++;
		shards[n_shards] = shards[i];
		expected[n_shards++] = j - i;
		i = j;
	}
	for (size_t k = 0; k < n_shards; k++) {
		const char *s = shards[k];
		char qs[QBUF];
		quote(qs, sizeof(qs), s, strlen(s));
		char oerr[1024];
		struct mfs_source *shard;
		int fd = mfs_model_open_beneath(m, &shard, s, oerr, sizeof(oerr), display);
		if (fd < 0) {
			const char *why = oerr;
			size_t dl = strlen(display);
			if (strncmp(why, display, dl) == 0 && strncmp(why + dl, ": ", 2) == 0)
				why += dl + 2;
			if (fd == -ENOENT)
				rc = mfs_errf(err, errlen, -ENOENT, display,
				              "safetensors shard %s is missing", qs);
			else
				rc = mfs_errf(err, errlen, fd, display,
				              "cannot open safetensors shard %s: %s", qs, why);
			goto out;
		}
		int src = mfs_model_add_file(m, s, shard);
		if (src < 0) {
			rc = mfs_errf(err, errlen, src, display, "cannot add safetensors shard %s: %s",
			              qs, src == -EFBIG ? "too many shards" : strerror(-src));
			goto out;
		}
		srcs[k] = (unsigned)src;
	}

	for (size_t k = 0; k < n_shards; k++) {
		const char *s = shards[k];
		unsigned src = srcs[k];
		char qs[QBUF];
		quote(qs, sizeof(qs), s, strlen(s));
		free(sdisplay);
		if (asprintf(&sdisplay, "%s: shard %s", display, qs) < 0) {
			sdisplay = NULL;
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}

		/* Content decides: a shard that is not safetensors at all says so. */
		const struct mfs_file *f = &m->desc.files[src];
		uint8_t head[16] = {0};
		size_t hl = f->size < sizeof(head) ? (size_t)f->size : sizeof(head);
		rc = hl ? mfs_source_read(m->srcs[src], head, hl, 0) : 0;
		if (rc < 0) {
			rc = mfs_errf(err, errlen, rc, sdisplay, "cannot read: %s", strerror(-rc));
			goto out;
		}
		if (!mfs_st_sniff_file(head, hl, f->size)) {
			/* The first shard not safetensors: an index of another
			 * format's shards, which its row may read (format.h). */
			rc = mfs_errf(err, errlen, k == 0 ? -ENOEXEC : -EUCLEAN, sdisplay,
			              "not a safetensors file");
			goto out;
		}

		size_t first = tv.n;
		smd.n = 0;
		rc = st_load(m, src, sdisplay, &tv, &smd, NULL, err, errlen);
		if (rc < 0)
			goto out;
		rc = shard_match(wm, s, &tv, first, expected[k], display, err, errlen);
		if (rc < 0)
			goto out;

		/* meta/shards line (escaped: a name may hold '%'), and the shard's
		 * __metadata__ (props rule). */
		size_t sl = mfs_text_escape(NULL, 0, s, strlen(s));
		char *nl = realloc(shard_list, list_len + sl + 2);
		if (!nl) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		shard_list = nl;
		mfs_text_escape(shard_list + list_len, sl + 1, s, strlen(s));
		list_len += sl;
		shard_list[list_len++] = '\n';
		shard_list[list_len] = '\0';
		for (size_t i = 0; i < smd.n; i++) {
			const struct mfs_meta *e = &smd.v[i];
			if (json_object_get(seen, e->name))
				continue;
			rc = mvec_pushn(&props, m->arena, e->name, strlen(e->name), e->value, e->len);
			if (rc == 0 && json_object_set_new(seen, e->name, json_true()) < 0)
				rc = -ENOMEM;
			if (rc < 0) {
				rc = mfs_errf(err, errlen, rc, display, "out of memory");
				goto out;
			}
		}
	}

	rc = mvec_push(&meta, m->arena, "format", "safetensors\n", 12);
	if (rc == 0)
		rc = mvec_push(&meta, m->arena, "shards", shard_list ? shard_list : "", list_len);
	if (rc == 0)
		rc = st_finish(m, &tv, &meta, &props);
	if (rc < 0)
		rc = mfs_errf(err, errlen, rc, display, "out of memory");
out:
	json_decref(seen);
	json_decref(root);
	free(shards);
	free(expected);
	free(srcs);
	free(shard_list);
	free(sdisplay);
	free(tv.v);
	free(meta.v);
	free(props.v);
	free(smd.v);
	return rc;
}

/* ------------------------------------------------------------ the format */

/* A JSON document: the first byte after JSON whitespace is '{'. */
static bool looks_like_json(const uint8_t *head, size_t len)
{
	size_t i = 0;
	while (i < len && is_json_ws(head[i]))
		i++;
	return i < len && head[i] == '{';
}

/*
 * A safetensors file, or an index of a sharded checkpoint: both by content
 * (an index is a JSON document, which no safetensors file is: those start
 * with a length).
 */
int mfs_st_sniff(const uint8_t *head, size_t len, uint64_t size)
{
	return mfs_st_sniff_file(head, len, size) || looks_like_json(head, len) ?
	       MFS_SNIFF_YES : MFS_SNIFF_NO;
}

int mfs_st_open(struct mfs_model *m, const char *display, char *err, size_t errlen)
{
	if (mfs_st_sniff_file(m->head, m->head_len, m->desc.files[0].size))
		return st_open_file(m, display, err, errlen);
	return st_open_index(m, display, err, errlen);
}

/*
 * tests/unit/test_wire.c — the protobuf wire layer and the ONNX reader.
 *
 * The first half drives onnx/wire.h directly (varints, keys, field
 * iteration, the schema-driven depth check).  The second half writes small
 * hand-built ModelProto byte strings to a temporary directory and opens them
 * with mfs_model_open(), checking the description (names, dims, offsets,
 * typed-field decoding, strings, attributes, meta) and that every kind of
 * bad input, including the fixtures in tests/data/bad/, is a clean one-line
 * error.  Nothing here mounts.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "onnx/onnx.h"
#include "onnx.pb-c.h"
#include "onnx/wire.h"

/* ------------------------------------------------------------ byte builder */

struct pb {
	uint8_t *p;
	size_t len, cap;
};

static void pb_put(struct pb *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		assert_non_null(b->p);
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void pb_varint(struct pb *b, uint64_t v)
{
	do {
		uint8_t c = v & 0x7f;
		v >>= 7;
		if (v)
			c |= 0x80;
		pb_put(b, &c, 1);
	} while (v);
}

static void pb_key(struct pb *b, uint32_t field, unsigned wt)
{
	pb_varint(b, (uint64_t)field << 3 | wt);
}

static void pb_vint(struct pb *b, uint32_t field, uint64_t v)
{
	pb_key(b, field, 0);
	pb_varint(b, v);
}

static void pb_bytes(struct pb *b, uint32_t field, const void *d, size_t n)
{
	pb_key(b, field, 2);
	pb_varint(b, n);
	pb_put(b, d, n);
}

static void pb_str(struct pb *b, uint32_t field, const char *s)
{
	pb_bytes(b, field, s, strlen(s));
}

/* Append `inner` as a length-delimited field and free it. */
static void pb_sub(struct pb *b, uint32_t field, struct pb *inner)
{
	pb_bytes(b, field, inner->p, inner->len);
	free(inner->p);
	memset(inner, 0, sizeof(*inner));
}

static void pb_f32(struct pb *b, uint32_t field, float v)
{
	pb_key(b, field, 5);
	pb_put(b, &v, 4);
}

static void pb_f64(struct pb *b, uint32_t field, double v)
{
	pb_key(b, field, 1);
	pb_put(b, &v, 8);
}

/* A packed run of varints. */
static void pb_packed(struct pb *b, uint32_t field, const int64_t *v, size_t n)
{
	struct pb run = {0};
	for (size_t i = 0; i < n; i++)
		pb_varint(&run, (uint64_t)v[i]);
	pb_sub(b, field, &run);
}

static struct pb tensor(const char *name, int dtype, const int64_t *dims, size_t rank)
{
	struct pb t = {0};
	for (size_t i = 0; i < rank; i++)
		pb_vint(&t, 1, (uint64_t)dims[i]);
	pb_vint(&t, 2, (uint64_t)dtype);
	pb_str(&t, 8, name);
	return t;
}

static struct pb tensor_type(int elem, const int64_t *dims, size_t rank)
{
	struct pb shape = {0}, tt = {0}, tp = {0};
	for (size_t i = 0; i < rank; i++) {
		struct pb d = {0};
		pb_vint(&d, 1, (uint64_t)dims[i]);
		pb_sub(&shape, 1, &d);
	}
	pb_vint(&tt, 1, (uint64_t)elem);
	pb_sub(&tt, 2, &shape);
	pb_sub(&tp, 1, &tt);
	return tp;
}

static struct pb value_info(const char *name, struct pb *type)
{
	struct pb v = {0};
	pb_str(&v, 1, name);
	if (type)
		pb_sub(&v, 2, type);
	return v;
}

/* ModelProto { ir_version 8, opset ai.onnx 13, graph }.  Frees `graph`. */
static struct pb model(struct pb *graph)
{
	struct pb m = {0}, op = {0};
	pb_vint(&m, 1, 8);
	pb_str(&op, 1, "");
	pb_vint(&op, 2, 13);
	pb_sub(&m, 8, &op);
	pb_sub(&m, 7, graph);
	return m;
}

/* A model whose graph holds just the given initializers (all freed). */
static struct pb model_inits(struct pb *inits, size_t n)
{
	struct pb g = {0};
	pb_str(&g, 2, "g");
	for (size_t i = 0; i < n; i++)
		pb_sub(&g, 5, &inits[i]);
	return model(&g);
}

/* ------------------------------------------------------------ temp files */

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mfs_test_wire.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tpath(const char *name)
{
	static char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
	return p;
}

static void write_file(const char *name, const void *d, size_t n)
{
	FILE *f = fopen(tpath(name), "wb");
	assert_non_null(f);
	if (n)
		assert_int_equal(fwrite(d, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* Write `b` (freed) as tmpdir/name and open it. */
static int open_pb(struct pb *b, const char *name, mfs_model **m, char *err, size_t errlen)
{
	write_file(name, b->p, b->len);
	free(b->p);
	memset(b, 0, sizeof(*b));
	return mfs_model_open(m, tpath(name), NULL, err, errlen);
}

/* Open must fail with `rc` and a one-line message containing `needle`. */
static void expect_fail(struct pb *b, int rc, const char *needle)
{
	mfs_model *m = NULL;
	char err[1024] = "";
	int got = open_pb(b, "bad.onnx", &m, err, sizeof(err));
	if (got != rc || !strstr(err, needle))
		print_error("rc %d (want %d), message: %s (want '%s')\n", got, rc, err, needle);
	assert_int_equal(got, rc);
	assert_null(m);
	assert_non_null(strstr(err, needle));
	assert_null(strchr(err, '\n'));
}

static void read_all(const mfs_model *m, const struct mfs_tensor *t, void *buf)
{
	assert_int_equal(mfs_tensor_read(m, t, buf, (size_t)t->nbytes, 0), (ssize_t)t->nbytes);
}

/* ------------------------------------------------------------ wire layer */

static void varint_edges(void **state)
{
	uint64_t v;
	size_t used;
	static const uint8_t zero[] = {0x00}, b300[] = {0xac, 0x02}, long1[] = {0x81, 0x00};
	assert_int_equal(mfs_wire_varint(&v, &used, zero, 1), MFS_WIRE_OK);
	assert_int_equal(v, 0);
	assert_int_equal(used, 1);
	assert_int_equal(mfs_wire_varint(&v, &used, b300, 2), MFS_WIRE_OK);
	assert_int_equal(v, 300);
	assert_int_equal(used, 2);
	/* Over-long but within 10 bytes is legal protobuf. */
	assert_int_equal(mfs_wire_varint(&v, &used, long1, 2), MFS_WIRE_OK);
	assert_int_equal(v, 1);
	assert_int_equal(used, 2);

	/* UINT64_MAX (and int64 -1) is the longest legal varint: 10 bytes. */
	uint8_t max[10];
	memset(max, 0xff, 9);
	max[9] = 0x01;
	assert_int_equal(mfs_wire_varint(&v, &used, max, 10), MFS_WIRE_OK);
	assert_true(v == UINT64_MAX);
	assert_int_equal(used, 10);

	/* A 10th byte with more than bit 63 overflows. */
	max[9] = 0x02;
	assert_int_equal(mfs_wire_varint(&v, &used, max, 10), MFS_WIRE_VARINT_OVERFLOW);

	/* 11 bytes: ten continuation bytes are never legal. */
	uint8_t eleven[11];
	memset(eleven, 0x80, 10);
	eleven[10] = 0;
	assert_int_equal(mfs_wire_varint(&v, &used, eleven, 11), MFS_WIRE_VARINT_LONG);

	/* Truncated: the buffer ends inside the varint. */
	assert_int_equal(mfs_wire_varint(&v, &used, b300, 1), MFS_WIRE_TRUNCATED);
	assert_int_equal(mfs_wire_varint(&v, &used, b300, 0), MFS_WIRE_TRUNCATED);
}

static void tag_rejection(void **state)
{
	uint32_t f;
	unsigned wt;
	size_t used;
	uint8_t k[5];
	k[0] = 0x0a;    /* field 1, LEN */
	assert_int_equal(mfs_wire_tag(&f, &wt, &used, k, 1), MFS_WIRE_OK);
	assert_int_equal(f, 1);
	assert_int_equal(wt, 2);
	for (unsigned t = 0; t < 8; t++) {
		k[0] = (uint8_t)(1 << 3 | t);
		enum mfs_wire_err want = t == 3 || t == 4 ? MFS_WIRE_GROUP :
		                         t == 6 || t == 7 ? MFS_WIRE_BAD_TYPE : MFS_WIRE_OK;
		assert_int_equal(mfs_wire_tag(&f, &wt, &used, k, 1), want);
	}
	k[0] = 0x02;    /* field 0 */
	assert_int_equal(mfs_wire_tag(&f, &wt, &used, k, 1), MFS_WIRE_FIELD_ZERO);

	/* The largest field number, 2^29-1, and one more. */
	struct pb b = {0};
	pb_key(&b, MFS_WIRE_MAX_FIELD, 0);
	assert_int_equal(mfs_wire_tag(&f, &wt, &used, b.p, b.len), MFS_WIRE_OK);
	assert_int_equal(f, MFS_WIRE_MAX_FIELD);
	b.len = 0;
	pb_varint(&b, (uint64_t)(MFS_WIRE_MAX_FIELD + 1) << 3);
	assert_int_equal(mfs_wire_tag(&f, &wt, &used, b.p, b.len), MFS_WIRE_FIELD_BIG);
	free(b.p);
}

static void length_past_end(void **state)
{
	struct mfs_wire_src s;
	struct mfs_wire_field f;
	static const uint8_t len5[] = {0x0a, 0x05, 'a', 'b'};
	mfs_wire_src_mem(&s, len5, sizeof(len5));
	assert_int_equal(mfs_wire_next(&s, 0, sizeof(len5), &f), MFS_WIRE_LEN_PAST_END);
	/* The same bytes are fine when the enclosing message is longer... */
	static const uint8_t ok[] = {0x0a, 0x02, 'a', 'b', 0x08, 0x01};
	mfs_wire_src_mem(&s, ok, sizeof(ok));
	assert_int_equal(mfs_wire_next(&s, 0, sizeof(ok), &f), MFS_WIRE_OK);
	/* ...but not when the enclosing message ends first. */
	assert_int_equal(mfs_wire_next(&s, 0, 3, &f), MFS_WIRE_LEN_PAST_END);
	static const uint8_t fx32[] = {0x15, 1, 2, 3}, fx64[] = {0x11, 1, 2, 3, 4, 5, 6, 7};
	mfs_wire_src_mem(&s, fx32, sizeof(fx32));
	assert_int_equal(mfs_wire_next(&s, 0, sizeof(fx32), &f), MFS_WIRE_FIXED_PAST_END);
	mfs_wire_src_mem(&s, fx64, sizeof(fx64));
	assert_int_equal(mfs_wire_next(&s, 0, sizeof(fx64), &f), MFS_WIRE_FIXED_PAST_END);
	/* A varint value cut by the end of its message. */
	static const uint8_t vcut[] = {0x08, 0x80};
	mfs_wire_src_mem(&s, vcut, sizeof(vcut));
	assert_int_equal(mfs_wire_next(&s, 0, sizeof(vcut), &f), MFS_WIRE_TRUNCATED);
	/* A length prefix of 2^63 must not wrap around. */
	struct pb b = {0};
	pb_key(&b, 1, 2);
	pb_varint(&b, UINT64_C(1) << 63);
	pb_put(&b, "xx", 2);
	mfs_wire_src_mem(&s, b.p, b.len);
	assert_int_equal(mfs_wire_next(&s, 0, b.len, &f), MFS_WIRE_LEN_PAST_END);
	free(b.p);
}

static void field_iteration(void **state)
{
	struct pb b = {0};
	pb_vint(&b, 1, 150);
	pb_str(&b, 2, "hi");
	pb_f32(&b, 3, 1.5f);
	pb_f64(&b, 4, 2.5);
	pb_vint(&b, 1000, UINT64_MAX);

	struct mfs_wire_iter it;
	struct mfs_wire_field f;
	mfs_wire_iter_init(&it, b.p, b.len);
	assert_int_equal(mfs_wire_iter_next(&it, &f), 1);
	assert_int_equal(f.num, 1);
	assert_int_equal(f.wt, 0);
	assert_int_equal(f.u, 150);
	assert_int_equal(f.start, 0);
	assert_int_equal(f.end, 3);
	assert_int_equal(mfs_wire_iter_next(&it, &f), 1);
	assert_int_equal(f.num, 2);
	assert_int_equal(f.wt, 2);
	assert_int_equal(f.val, 5);
	assert_int_equal(f.len, 2);
	assert_memory_equal(b.p + f.val, "hi", 2);
	assert_int_equal(mfs_wire_iter_next(&it, &f), 1);
	assert_int_equal(f.num, 3);
	assert_int_equal(f.len, 4);
	float fv;
	memcpy(&fv, b.p + f.val, 4);
	assert_true(fv == 1.5f);
	assert_int_equal(mfs_wire_iter_next(&it, &f), 1);
	assert_int_equal(f.num, 4);
	assert_int_equal(f.len, 8);
	assert_int_equal(mfs_wire_iter_next(&it, &f), 1);
	assert_int_equal(f.num, 1000);
	assert_true(f.u == UINT64_MAX);
	assert_int_equal(f.end, b.len);
	assert_int_equal(mfs_wire_iter_next(&it, &f), 0);

	/* An error stops the iteration and says where. */
	static const uint8_t bad[] = {0x08, 0x01, 0x0b};
	mfs_wire_iter_init(&it, bad, sizeof(bad));
	assert_int_equal(mfs_wire_iter_next(&it, &f), 1);
	assert_int_equal(mfs_wire_iter_next(&it, &f), -1);
	assert_int_equal(it.err, MFS_WIRE_GROUP);
	assert_int_equal(it.err_off, 2);
	assert_int_equal(mfs_wire_iter_next(&it, &f), -1);
	free(b.p);
}

static size_t vlen(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/*
 * TypeProto nested `levels` deep as sequence(sequence(...float32...)).
 * Built outside-in from precomputed sizes: nesting with pb_sub() would copy
 * the whole buffer once per level.
 */
static struct pb nested_type(int levels)
{
	int64_t one = 1;
	struct pb leaf = tensor_type(1, &one, 1);
	uint64_t *tp_len = malloc(((size_t)levels + 1) * sizeof(uint64_t));
	uint64_t *seq_len = malloc(((size_t)levels + 1) * sizeof(uint64_t));
	assert_non_null(tp_len);
	assert_non_null(seq_len);
	tp_len[0] = leaf.len;
	for (int i = 1; i <= levels; i++) {
		seq_len[i] = 1 + vlen(tp_len[i - 1]) + tp_len[i - 1];   /* Sequence.elem_type */
		tp_len[i] = 1 + vlen(seq_len[i]) + seq_len[i];          /* TypeProto.sequence_type */
	}
	struct pb b = {0};
	for (int i = levels; i >= 1; i--) {
		pb_key(&b, 4, 2);
		pb_varint(&b, seq_len[i]);
		pb_key(&b, 1, 2);
		pb_varint(&b, tp_len[i - 1]);
	}
	pb_put(&b, leaf.p, leaf.len);
	assert_int_equal(b.len, tp_len[levels]);
	free(leaf.p);
	free(tp_len);
	free(seq_len);
	return b;
}

static void depth_limit(void **state)
{
	uint64_t off;
	/* Each sequence level is two messages (TypeProto, Sequence). */
	struct pb ok = nested_type(20);
	assert_int_equal(mfs_wire_check(ok.p, ok.len, &onnx__type_proto__descriptor, 0, 64, &off),
	                 MFS_WIRE_OK);
	free(ok.p);
	struct pb deep = nested_type(1000);
	assert_int_equal(mfs_wire_check(deep.p, deep.len, &onnx__type_proto__descriptor, 0, 64, &off),
	                 MFS_WIRE_TOO_DEEP);
	/* The same bytes under an unknown field number are opaque, as they
	 * are to protobuf-c, so they are not descended into. */
	struct pb unk = {0};
	pb_bytes(&unk, 99, deep.p, deep.len);
	assert_int_equal(mfs_wire_check(unk.p, unk.len, &onnx__type_proto__descriptor, 0, 64, &off),
	                 MFS_WIRE_OK);
	free(unk.p);
	free(deep.p);
	/* Depth is absolute: a message already at the limit has no room. */
	struct pb two = nested_type(1);
	/* TypeProto, Sequence, TypeProto, Tensor, TensorShape, Dimension:
	 * six levels, so starting at 59 reaches exactly 64. */
	assert_int_equal(mfs_wire_check(two.p, two.len, &onnx__type_proto__descriptor, 59, 64, &off),
	                 MFS_WIRE_OK);
	assert_int_equal(mfs_wire_check(two.p, two.len, &onnx__type_proto__descriptor, 60, 64, &off),
	                 MFS_WIRE_TOO_DEEP);
	assert_int_equal(mfs_wire_check(two.p, two.len, &onnx__type_proto__descriptor, 65, 64, &off),
	                 MFS_WIRE_TOO_DEEP);
	free(two.p);
	/* Bad wire data inside a known sub-message is found too. */
	struct pb vi = {0}, inner = {0};
	pb_put(&inner, "\x0b", 1);
	pb_sub(&vi, 2, &inner);
	assert_int_equal(mfs_wire_check(vi.p, vi.len, &onnx__value_info_proto__descriptor, 0, 64, &off),
	                 MFS_WIRE_GROUP);
	assert_int_equal(off, 2);
	free(vi.p);
}

/* A string field with a NUL is refused (protobuf-c would cut it there);
 * the same bytes as `bytes` or as an unknown field are fine. */
static void strings_with_nul(void **state)
{
	(void)state;
	uint64_t off;
	/* ValueInfoProto: name = 1 (string), doc_string = 3 (string). */
	struct pb ok = {0}, bad = {0}, doc = {0}, unk = {0};
	pb_str(&ok, 1, "plain");
	assert_int_equal(mfs_wire_check(ok.p, ok.len, &onnx__value_info_proto__descriptor, 0, 64, &off),
	                 MFS_WIRE_OK);
	pb_bytes(&bad, 1, "n\0ul", 4);
	assert_int_equal(mfs_wire_check(bad.p, bad.len, &onnx__value_info_proto__descriptor, 0, 64,
	                                &off), MFS_WIRE_STRING_NUL);
	assert_int_equal(off, 0);
	pb_str(&doc, 1, "x");
	pb_bytes(&doc, 3, "tail\0", 5);
	assert_int_equal(mfs_wire_check(doc.p, doc.len, &onnx__value_info_proto__descriptor, 0, 64,
	                                &off), MFS_WIRE_STRING_NUL);
	assert_int_equal(off, 3);       /* the second field */
	pb_bytes(&unk, 99, "n\0ul", 4);
	assert_int_equal(mfs_wire_check(unk.p, unk.len, &onnx__value_info_proto__descriptor, 0, 64,
	                                &off), MFS_WIRE_OK);
	/* TensorProto.raw_data (9) is bytes: NULs are data. */
	struct pb raw = {0};
	pb_bytes(&raw, 9, "\0\0\0\0", 4);
	assert_int_equal(mfs_wire_check(raw.p, raw.len, &onnx__tensor_proto__descriptor, 0, 64, &off),
	                 MFS_WIRE_OK);
	free(ok.p);
	free(bad.p);
	free(doc.p);
	free(unk.p);
	free(raw.p);
}

/* ------------------------------------------------------------ opening models */

static void basic_model(void **state)
{
	const float w[4] = {1.f, 2.f, 3.f, 4.f};
	int64_t dims[2] = {2, 2};
	struct pb g = {0}, node = {0}, t = tensor("fc.weight", MFS_DT_FLOAT, dims, 2);
	pb_bytes(&t, 9, w, sizeof(w));
	pb_str(&node, 1, "X");
	pb_str(&node, 1, "");
	pb_str(&node, 1, "fc.weight");
	pb_str(&node, 2, "Y");
	pb_str(&node, 4, "Gemm");
	pb_str(&node, 3, "gemm0");
	pb_sub(&g, 1, &node);
	pb_str(&g, 2, "main");
	pb_sub(&g, 5, &t);
	int64_t xd[2] = {0, 10};
	struct pb xt = tensor_type(MFS_DT_FLOAT, xd, 2);
	struct pb x = value_info("X", &xt);
	pb_sub(&g, 11, &x);
	struct pb wt = tensor_type(MFS_DT_FLOAT, dims, 2);
	struct pb wv = value_info("fc.weight", &wt);
	pb_sub(&g, 11, &wv);
	struct pb yt = tensor_type(MFS_DT_FLOAT, dims, 2);
	struct pb y = value_info("Y", &yt);
	pb_sub(&g, 12, &y);
	struct pb m = {0}, op = {0}, prop = {0}, prop2 = {0};
	pb_vint(&m, 1, 7);
	pb_str(&m, 2, "unit");
	pb_str(&op, 1, "");
	pb_vint(&op, 2, 12);
	pb_sub(&m, 8, &op);
	pb_str(&op, 1, "com.x");
	pb_vint(&op, 2, 1);
	pb_sub(&m, 8, &op);
	pb_vint(&m, 5, 3);
	pb_str(&m, 6, "two\nlines");
	pb_sub(&m, 7, &g);
	pb_str(&prop, 1, "author");
	pb_str(&prop, 2, "me");
	pb_sub(&m, 14, &prop);
	pb_str(&prop2, 1, "author");
	pb_str(&prop2, 2, "you");
	pb_sub(&m, 14, &prop2);

	/* Remember where the payload is, to check the recorded offset. */
	uint8_t *hay = malloc(m.len);
	memcpy(hay, m.p, m.len);
	size_t hay_len = m.len;
	mfs_model *mm = NULL;
	char err[512];
	assert_int_equal(open_pb(&m, "basic.onnx", &mm, err, sizeof(err)), 0);
	const struct mfs_desc *d = mfs_model_desc(mm);
	assert_string_equal(d->format, "onnx");
	assert_int_equal(d->n_nodes, 1);
	assert_int_equal(d->n_tensors, 1);
	const struct mfs_graph *gr = d->graph;
	assert_string_equal(gr->name, "main");
	assert_int_equal(gr->n_nodes, 1);
	assert_string_equal(gr->nodes[0].op_type, "Gemm");
	assert_string_equal(gr->nodes[0].domain, "");
	assert_string_equal(gr->nodes[0].name, "gemm0");
	assert_int_equal(gr->nodes[0].n_inputs, 3);
	assert_string_equal(gr->nodes[0].inputs[1], "");
	assert_int_equal(gr->n_inputs, 2);
	assert_false(gr->input_is_init[0]);
	assert_true(gr->input_is_init[1]);
	assert_string_equal(gr->inputs[0].dtype, "float32");
	const struct mfs_tensor *t0 = gr->inits[0];
	assert_string_equal(t0->name, "fc.weight");
	assert_int_equal(t0->dtype, MFS_DT_FLOAT);
	assert_int_equal(t0->rank, 2);
	assert_int_equal(t0->dims[0], 2);
	assert_int_equal(t0->nbytes, 16);
	assert_null(t0->mem);
	assert_int_equal(t0->src, 0);
	const uint8_t *at = memmem(hay, hay_len, w, sizeof(w));
	assert_non_null(at);
	assert_int_equal(t0->off, (uint64_t)(at - hay));
	float back[4];
	read_all(mm, t0, back);
	assert_memory_equal(back, w, sizeof(w));
	/* Partial reads past the end are clipped. */
	assert_int_equal(mfs_tensor_read(mm, t0, back, 16, 12), 4);
	assert_int_equal(mfs_tensor_read(mm, t0, back, 16, 16), 0);

	static const char *const names[] = {
		"format", "ir_version", "opset", "producer_name", "producer_version", "domain",
		"model_version", "doc_string", "graph_name", "input_shape", "output_shape",
	};
	static const char *const values[] = {
		"onnx\n", "7\n", "ai.onnx 12\ncom.x 1\n", "unit\n", "\n", "\n", "3\n",
		"two%0Alines\n", "main\n", "0,10\n", "2,2\n",   /* escaped: one line */
	};
	assert_int_equal(d->n_meta, 11);
	for (size_t i = 0; i < 11; i++) {
		assert_string_equal(d->meta[i].name, names[i]);
		assert_int_equal(d->meta[i].len, strlen(values[i]));
		assert_memory_equal(d->meta[i].value, values[i], d->meta[i].len);
	}
	assert_int_equal(d->n_props, 2);
	assert_string_equal(d->props[0].name, "author");
	assert_string_equal(d->props[0].value, "me");
	assert_string_equal(d->props[1].value, "you");
	assert_int_equal(d->props[1].len, 3);
	assert_int_equal(d->n_files, 1);
	assert_string_equal(d->files[0].path, "basic.onnx");
	mfs_model_close(mm);
	free(hay);
}

/* Open `t` (freed) as the only initializer and return the model. */
static mfs_model *open_tensor(struct pb *t)
{
	struct pb m = model_inits(t, 1);
	mfs_model *mm = NULL;
	char err[512] = "";
	int rc = open_pb(&m, "t.onnx", &mm, err, sizeof(err));
	if (rc)
		print_error("open: %s\n", err);
	assert_int_equal(rc, 0);
	return mm;
}

static const struct mfs_tensor *first(mfs_model *mm)
{
	return mfs_model_desc(mm)->graph->inits[0];
}

static void expect_bytes(struct pb *t, const void *want, size_t n, bool in_mem)
{
	mfs_model *mm = open_tensor(t);
	const struct mfs_tensor *x = first(mm);
	assert_int_equal(x->nbytes, n);
	assert_int_equal(x->mem != NULL, in_mem);
	uint8_t buf[256];
	read_all(mm, x, buf);
	assert_memory_equal(buf, want, n);
	mfs_model_close(mm);
}

static void typed_int_fields(void **state)
{
	int64_t d3[1] = {3}, d2[1] = {2}, d1[1] = {1};
	{       /* INT8 in packed int32_data: negatives are 10-byte varints */
		struct pb t = tensor("i8", MFS_DT_INT8, d3, 1);
		int64_t v[3] = {-128, -1, 5};
		pb_packed(&t, 5, v, 3);
		static const uint8_t want[] = {0x80, 0xff, 0x05};
		expect_bytes(&t, want, 3, true);
	}
	{       /* INT16 unpacked (one key per value) */
		struct pb t = tensor("i16", MFS_DT_INT16, d2, 1);
		pb_vint(&t, 5, (uint64_t)(int64_t)-2);
		pb_vint(&t, 5, 300);
		static const uint8_t want[] = {0xfe, 0xff, 0x2c, 0x01};
		expect_bytes(&t, want, 4, true);
	}
	{       /* INT32 */
		struct pb t = tensor("i32", MFS_DT_INT32, d2, 1);
		int64_t v[2] = {-1, 0x12345678};
		pb_packed(&t, 5, v, 2);
		static const uint8_t want[] = {0xff, 0xff, 0xff, 0xff, 0x78, 0x56, 0x34, 0x12};
		expect_bytes(&t, want, 8, true);
	}
	{       /* INT64 */
		struct pb t = tensor("i64", MFS_DT_INT64, d1, 1);
		int64_t v[1] = {-5};
		pb_packed(&t, 7, v, 1);
		int64_t want = -5;
		expect_bytes(&t, &want, 8, true);
	}
	{       /* UINT32 narrowed from uint64_data */
		struct pb t = tensor("u32", MFS_DT_UINT32, d2, 1);
		int64_t v[2] = {0xffffffff, 7};
		pb_packed(&t, 11, v, 2);
		static const uint8_t want[] = {0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0};
		expect_bytes(&t, want, 8, true);
	}
	{       /* UINT64 */
		struct pb t = tensor("u64", MFS_DT_UINT64, d1, 1);
		pb_vint(&t, 11, UINT64_MAX);
		static const uint8_t want[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
		expect_bytes(&t, want, 8, true);
	}
	{       /* FLOAT16: the bit pattern, one per entry */
		struct pb t = tensor("f16", MFS_DT_FLOAT16, d2, 1);
		int64_t v[2] = {0x3c00, 0xc000};
		pb_packed(&t, 5, v, 2);
		static const uint8_t want[] = {0x00, 0x3c, 0x00, 0xc0};
		expect_bytes(&t, want, 4, true);
	}
	{       /* BFLOAT16 */
		struct pb t = tensor("bf16", MFS_DT_BFLOAT16, d1, 1);
		int64_t v[1] = {0x3f80};
		pb_packed(&t, 5, v, 1);
		static const uint8_t want[] = {0x80, 0x3f};
		expect_bytes(&t, want, 2, true);
	}
	{       /* BOOL */
		struct pb t = tensor("b", MFS_DT_BOOL, d3, 1);
		int64_t v[3] = {1, 0, 1};
		pb_packed(&t, 5, v, 3);
		static const uint8_t want[] = {1, 0, 1};
		expect_bytes(&t, want, 3, true);
	}
	{       /* INT4: two elements per entry, odd count leaves a high nibble */
		struct pb t = tensor("i4", MFS_DT_INT4, d3, 1);
		int64_t v[2] = {0x21, 0x03};
		pb_packed(&t, 5, v, 2);
		static const uint8_t want[] = {0x21, 0x03};
		expect_bytes(&t, want, 2, true);
	}
}

static void typed_float_fields(void **state)
{
	int64_t d2[1] = {2}, d3[1] = {3};
	const float fv[3] = {1.5f, -2.f, 3.25f};
	{       /* one packed run: served from the file */
		struct pb t = tensor("one", MFS_DT_FLOAT, d3, 1);
		pb_bytes(&t, 4, fv, sizeof(fv));
		expect_bytes(&t, fv, sizeof(fv), false);
	}
	{       /* unpacked (wire type 5): decoded */
		struct pb t = tensor("unpacked", MFS_DT_FLOAT, d3, 1);
		for (int i = 0; i < 3; i++)
			pb_f32(&t, 4, fv[i]);
		expect_bytes(&t, fv, sizeof(fv), true);
	}
	{       /* two packed runs concatenate */
		struct pb t = tensor("runs", MFS_DT_FLOAT, d3, 1);
		pb_bytes(&t, 4, fv, 4);
		pb_bytes(&t, 4, fv + 1, 8);
		expect_bytes(&t, fv, sizeof(fv), true);
	}
	{       /* double_data unpacked (wire type 1) */
		const double dv[2] = {1.0 / 3, -1e300};
		struct pb t = tensor("dbl", MFS_DT_DOUBLE, d2, 1);
		pb_f64(&t, 10, dv[0]);
		pb_f64(&t, 10, dv[1]);
		expect_bytes(&t, dv, sizeof(dv), true);
	}
	{       /* COMPLEX64 in float_data: (re, im) pairs */
		const float cv[4] = {1, 2, 3, 4};
		struct pb t = tensor("c64", MFS_DT_COMPLEX64, d2, 1);
		pb_bytes(&t, 4, cv, sizeof(cv));
		expect_bytes(&t, cv, sizeof(cv), false);
	}
	{       /* raw_data: the last occurrence wins */
		struct pb t = tensor("raw", MFS_DT_FLOAT, d2, 1);
		pb_bytes(&t, 9, "AAAAAAAA", 8);
		pb_bytes(&t, 9, "BBBBCCCC", 8);
		expect_bytes(&t, "BBBBCCCC", 8, false);
	}
	{       /* dims written packed (a proto3-style writer) */
		struct pb t = {0};
		int64_t dims[2] = {1, 2};
		pb_packed(&t, 1, dims, 2);
		pb_vint(&t, 2, MFS_DT_FLOAT);
		pb_str(&t, 8, "packed_dims");
		pb_bytes(&t, 9, fv, 8);
		mfs_model *mm = open_tensor(&t);
		assert_int_equal(first(mm)->rank, 2);
		assert_int_equal(first(mm)->dims[1], 2);
		mfs_model_close(mm);
	}
}

static void string_and_empty_tensors(void **state)
{
	int64_t d3[1] = {3}, d0[2] = {0, 5};
	{
		/* One element per line, each escaped (doc/design.md §3.5): an
		 * element holding a newline is still one line, so shape 4 reads
		 * as 4 lines. */
		int64_t d4[1] = {4};
		struct pb t = tensor("s", MFS_DT_STRING, d4, 1);
		pb_str(&t, 6, "ab");
		pb_str(&t, 6, "");
		pb_str(&t, 6, "c\nd");
		pb_str(&t, 6, "5%\x7f\t");
		expect_bytes(&t, "ab\n\nc%0Ad\n5%25%7F%09\n", 21, true);
	}
	{       /* zero elements, no data */
		struct pb t = tensor("none", MFS_DT_FLOAT, d0, 2);
		mfs_model *mm = open_tensor(&t);
		assert_int_equal(first(mm)->nbytes, 0);
		mfs_model_close(mm);
	}
	{       /* zero elements with an empty raw_data is accepted */
		struct pb t = tensor("empty_raw", MFS_DT_FLOAT, d0, 2);
		pb_bytes(&t, 9, "", 0);
		mfs_model *mm = open_tensor(&t);
		assert_int_equal(first(mm)->nbytes, 0);
		mfs_model_close(mm);
	}
	{       /* an unknown (newer) dtype with raw_data is kept as is */
		struct pb t = tensor("future", 99, d3, 1);
		pb_bytes(&t, 9, "xyz", 3);
		mfs_model *mm = open_tensor(&t);
		assert_int_equal(first(mm)->dtype, 99);
		assert_int_equal(first(mm)->nbytes, 3);
		assert_string_equal(mfs_dtype_name(first(mm)->dtype), "dtype99");
		mfs_model_close(mm);
	}
}

static void tensor_errors(void **state)
{
	int64_t d3[1] = {3}, d0[1] = {0};
	{
		/* Two one-byte entries cannot be three: refused before decoding. */
		struct pb t = tensor("short", MFS_DT_INT8, d3, 1);
		int64_t v[2] = {1, 2};
		pb_packed(&t, 5, v, 2);
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EUCLEAN, "int32_data holds at most 2 entries, dims need 3");
	}
	{       /* Two two-byte entries could be three: found while decoding. */
		struct pb t = tensor("short2", MFS_DT_INT16, d3, 1);
		int64_t v[2] = {300, 300};
		pb_packed(&t, 5, v, 2);
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EUCLEAN, "int32_data has 2 entries, dims need 3");
	}
	{
		struct pb t = tensor("long", MFS_DT_INT8, d3, 1);
		int64_t v[4] = {1, 2, 3, 4};
		pb_packed(&t, 5, v, 4);
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EUCLEAN, "more than the 3 entries");
	}
	{
		struct pb t = tensor("wrong", MFS_DT_INT64, d3, 1);
		pb_bytes(&t, 4, "123456789012", 12);
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EUCLEAN, "float_data cannot hold int64 elements");
	}
	{
		struct pb t = tensor("two", MFS_DT_INT8, d3, 1);
		pb_bytes(&t, 9, "abc", 3);
		int64_t v[3] = {1, 2, 3};
		pb_packed(&t, 5, v, 3);
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EUCLEAN, "has both raw_data and int32_data");
	}
	{
		struct pb t = tensor("nodata", MFS_DT_FLOAT, d3, 1);
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EUCLEAN, "has no data");
	}
	{
		struct pb t = tensor("zero_with_data", MFS_DT_FLOAT, d0, 1);
		pb_f32(&t, 4, 1.f);
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EUCLEAN, "no elements but has float_data");
	}
	{       /* a huge dims product with a tiny typed field: no huge allocation */
		int64_t big[2] = {1 << 30, 1 << 20};
		struct pb t = tensor("huge", MFS_DT_INT64, big, 2);
		pb_vint(&t, 7, 1);
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EUCLEAN, "holds at most 1 entries");
	}
	{       /* a string tensor with the wrong count */
		struct pb t = tensor("s", MFS_DT_STRING, d3, 1);
		pb_str(&t, 6, "x");
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EUCLEAN, "string_data has 1 entries, dims need 3");
	}
	{       /* raw_data with the wrong wire type */
		struct pb t = tensor("wt", MFS_DT_FLOAT, d3, 1);
		pb_vint(&t, 9, 1);
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EUCLEAN, "raw_data with wire type 0");
	}
	{       /* too many dims */
		int64_t dims[65];
		for (int i = 0; i < 65; i++)
			dims[i] = 1;
		struct pb t = tensor("rank", MFS_DT_FLOAT, dims, 65);
		pb_bytes(&t, 9, "abcd", 4);
		struct pb m = model_inits(&t, 1);
		expect_fail(&m, -EFBIG, "65 dims (limit 64)");
	}
}

/* A tensor stored in `location` at offset/length (NULL = key absent). */
static struct pb ext_tensor(const char *name, const char *location, const char *off,
                            const char *len, int64_t n_floats)
{
	struct pb t = tensor(name, MFS_DT_FLOAT, &n_floats, 1);
	const char *keys[3] = {"location", "offset", "length"};
	const char *vals[3] = {location, off, len};
	for (int i = 0; i < 3; i++) {
		if (!vals[i])
			continue;
		struct pb kv = {0};
		pb_str(&kv, 1, keys[i]);
		pb_str(&kv, 2, vals[i]);
		pb_sub(&t, 13, &kv);
	}
	pb_vint(&t, 14, 1);
	return t;
}

static void external_data_good(void **state)
{
	float data[8];
	for (int i = 0; i < 8; i++)
		data[i] = (float)i * 1.5f;
	assert_int_equal(mkdir(tpath("sub"), 0755), 0);
	write_file("sub/w.bin", data, sizeof(data));
	write_file("w2.bin", data, sizeof(data));
	struct pb ts[4];
	ts[0] = ext_tensor("a", "sub/w.bin", "0", "16", 4);
	ts[1] = ext_tensor("b", "./sub//w.bin", "16", NULL, 4);  /* to EOF, same file */
	ts[2] = ext_tensor("c", "w2.bin", "4", "8", 2);
	ts[3] = ext_tensor("d", "./w2.bin", "32", "0", 0);      /* empty, at EOF */
	struct pb m = model_inits(ts, 4);
	mfs_model *mm = NULL;
	char err[512] = "";
	int rc = open_pb(&m, "ext.onnx", &mm, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	const struct mfs_desc *d = mfs_model_desc(mm);
	assert_int_equal(d->n_files, 3);
	assert_string_equal(d->files[1].path, "sub/w.bin");
	assert_string_equal(d->files[2].path, "w2.bin");
	assert_int_equal(d->files[1].size, sizeof(data));
	const struct mfs_graph *g = d->graph;
	assert_int_equal(g->inits[0]->src, 1);
	assert_int_equal(g->inits[1]->src, 1);
	assert_int_equal(g->inits[2]->src, 2);
	assert_int_equal(g->inits[3]->src, 2);
	assert_int_equal(g->inits[1]->off, 16);
	assert_int_equal(g->inits[1]->nbytes, 16);
	float buf[4];
	read_all(mm, g->inits[0], buf);
	assert_memory_equal(buf, data, 16);
	read_all(mm, g->inits[1], buf);
	assert_memory_equal(buf, data + 4, 16);
	read_all(mm, g->inits[2], buf);
	assert_memory_equal(buf, data + 1, 8);
	assert_int_equal(g->inits[3]->nbytes, 0);
	mfs_model_close(mm);
}

static void external_data_bad(void **state)
{
	float data[4] = {1, 2, 3, 4};
	write_file("ok.bin", data, sizeof(data));
	struct pb t;
	struct pb m;

	t = ext_tensor("abs", "/etc/passwd", NULL, NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "is absolute");

	t = ext_tensor("up", "../ok.bin", NULL, NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "contains '..'");

	t = ext_tensor("up2", "a/../../ok.bin", NULL, NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "contains '..'");

	assert_int_equal(symlink("ok.bin", tpath("link.bin")), 0);
	t = ext_tensor("sym", "link.bin", NULL, NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "is a symlink");

	assert_int_equal(mkdir(tpath("real"), 0755), 0);
	write_file("real/x.bin", data, sizeof(data));
	assert_int_equal(symlink("real", tpath("linkdir")), 0);
	t = ext_tensor("symdir", "linkdir/x.bin", NULL, NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "through a symlink");

	write_file("hard.bin", data, sizeof(data));
	char hard[PATH_MAX + 64];
	snprintf(hard, sizeof(hard), "%s", tpath("hard.bin"));
	assert_int_equal(link(hard, tpath("hard2.bin")), 0);
	t = ext_tensor("hard", "hard.bin", NULL, NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "hard links");

	assert_int_equal(mkfifo(tpath("fifo.bin"), 0644), 0);
	t = ext_tensor("fifo", "fifo.bin", NULL, NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "not a regular file");

	t = ext_tensor("missing", "nope.bin", NULL, NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -ENOENT, "nope.bin");

	t = ext_tensor("len", "ok.bin", "0", "12", 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "external data length 12 but float32 dims need 16");

	t = ext_tensor("past", "ok.bin", "8", "16", 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "is past the end of 'ok.bin'");

	t = ext_tensor("wrap", "ok.bin", "8", "18446744073709551615", 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "is past the end of 'ok.bin'");

	t = ext_tensor("dir", "ok.bin/", NULL, NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -ENOTDIR, "'ok.bin/': Not a directory");

	t = ext_tensor("offpast", "ok.bin", "17", NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "offset 17 is past the end");

	t = ext_tensor("notnum", "ok.bin", "-1", NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "offset '-1' is not a decimal number");

	/* A number too big for a uint64 is a number: out of range (issue 11). */
	t = ext_tensor("huge", "ok.bin", "99999999999999999999", NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "offset '99999999999999999999' is out of range");

	t = ext_tensor("hugelen", "ok.bin", "0", "18446744073709551616", 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "length '18446744073709551616' is out of range");

	t = ext_tensor("hugex", "ok.bin", "99999999999999999999x", NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "is not a decimal number");

	t = ext_tensor("noloc", NULL, "0", NULL, 4);
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "has external data but no location");

	t = ext_tensor("both", "ok.bin", NULL, NULL, 4);
	pb_bytes(&t, 9, data, sizeof(data));
	m = model_inits(&t, 1);
	expect_fail(&m, -EUCLEAN, "is external but also has raw_data");
}

static struct pb attr_int(const char *name, int64_t v, bool typed)
{
	struct pb a = {0};
	pb_str(&a, 1, name);
	pb_vint(&a, 3, (uint64_t)v);
	if (typed)
		pb_vint(&a, 20, MFS_ATTR_INT);
	return a;
}

static void attributes_and_subgraphs(void **state)
{
	struct pb node = {0}, a;
	pb_str(&node, 1, "cond");
	pb_str(&node, 2, "y");
	pb_str(&node, 4, "If");
	a = attr_int("axis", -3, true);
	pb_sub(&node, 5, &a);
	a = attr_int("old", 7, false);          /* no type: inferred */
	pb_sub(&node, 5, &a);
	pb_str(&a, 1, "alpha");
	pb_f32(&a, 2, 0.1f);
	pb_vint(&a, 20, MFS_ATTR_FLOAT);
	pb_sub(&node, 5, &a);
	pb_str(&a, 1, "mode");
	pb_bytes(&a, 4, "a\0b", 3);
	pb_vint(&a, 20, MFS_ATTR_STRING);
	pb_sub(&node, 5, &a);
	pb_str(&a, 1, "pads");
	pb_vint(&a, 8, 1);
	pb_vint(&a, 8, (uint64_t)(int64_t)-2);
	pb_vint(&a, 20, MFS_ATTR_INTS);
	pb_sub(&node, 5, &a);
	pb_str(&a, 1, "scales");
	pb_f32(&a, 7, 0.5f);
	pb_f32(&a, 7, 2.f);
	pb_vint(&a, 20, MFS_ATTR_FLOATS);
	pb_sub(&node, 5, &a);
	pb_str(&a, 1, "names");
	pb_str(&a, 9, "x");
	pb_str(&a, 9, "yz");
	pb_vint(&a, 20, MFS_ATTR_STRINGS);
	pb_sub(&node, 5, &a);
	pb_str(&a, 1, "empty");
	pb_vint(&a, 20, MFS_ATTR_INTS);
	pb_sub(&node, 5, &a);
	{       /* TENSOR */
		int64_t d1 = 1;
		struct pb t = tensor("", MFS_DT_INT64, &d1, 1);
		pb_vint(&t, 7, 42);
		pb_str(&a, 1, "value");
		pb_sub(&a, 5, &t);
		pb_vint(&a, 20, MFS_ATTR_TENSOR);
		pb_sub(&node, 5, &a);
	}
	{       /* GRAPH with a node holding a constant */
		struct pb sub = {0}, sn = {0}, sa = {0};
		int64_t d1 = 1;
		struct pb t = tensor("inner", MFS_DT_FLOAT, &d1, 1);
		pb_f32(&t, 4, 9.f);
		pb_str(&sa, 1, "value");
		pb_sub(&sa, 5, &t);
		pb_vint(&sa, 20, MFS_ATTR_TENSOR);
		pb_str(&sn, 2, "c");
		pb_str(&sn, 4, "Constant");
		pb_sub(&sn, 5, &sa);
		pb_sub(&sub, 1, &sn);
		pb_str(&sub, 2, "then");
		pb_str(&a, 1, "then_branch");
		pb_sub(&a, 6, &sub);
		pb_vint(&a, 20, MFS_ATTR_GRAPH);
		pb_sub(&node, 5, &a);
	}
	{       /* TYPE_PROTO */
		int64_t dims[2] = {2, 3};
		struct pb tp = tensor_type(MFS_DT_FLOAT16, dims, 2);
		pb_str(&a, 1, "type");
		pb_sub(&a, 14, &tp);
		pb_vint(&a, 20, MFS_ATTR_TYPE_PROTO);
		pb_sub(&node, 5, &a);
	}
	struct pb g = {0};
	pb_sub(&g, 1, &node);
	pb_str(&g, 2, "g");
	struct pb m = model(&g);
	mfs_model *mm = NULL;
	char err[512] = "";
	int rc = open_pb(&m, "attrs.onnx", &mm, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	const struct mfs_desc *d = mfs_model_desc(mm);
	assert_int_equal(d->n_nodes, 2);
	assert_int_equal(d->n_tensors, 2);
	const struct mfs_node *nd = &d->graph->nodes[0];
	assert_int_equal(nd->n_attrs, 11);
	static const struct {
		const char *name;
		int type;
		const char *text;
		size_t len;
	} want[] = {
		{"axis", MFS_ATTR_INT, "-3\n", 3},
		{"old", MFS_ATTR_INT, "7\n", 2},
		{"alpha", MFS_ATTR_FLOAT, "0.100000001\n", 12},
		{"mode", MFS_ATTR_STRING, "a%00b\n", 6},        /* escaped (§3.5) */
		{"pads", MFS_ATTR_INTS, "1\n-2\n", 5},
		{"scales", MFS_ATTR_FLOATS, "0.5\n2\n", 6},
		{"names", MFS_ATTR_STRINGS, "x\nyz\n", 5},
		{"empty", MFS_ATTR_INTS, "", 0},
		{"value", MFS_ATTR_TENSOR, "", 0},
		{"then_branch", MFS_ATTR_GRAPH, "", 0},
		{"type", MFS_ATTR_TYPE_PROTO, "float16 2,3\n", 12},
	};
	for (size_t i = 0; i < 11; i++) {
		assert_string_equal(nd->attrs[i].name, want[i].name);
		assert_int_equal(nd->attrs[i].type, want[i].type);
		assert_int_equal(nd->attrs[i].text_len, want[i].len);
		assert_memory_equal(nd->attrs[i].text, want[i].text, want[i].len);
	}
	const struct mfs_attr *val = &nd->attrs[8];
	assert_int_equal(val->n_tensors, 1);
	assert_string_equal(val->tensors[0]->name, "");
	int64_t i64;
	read_all(mm, val->tensors[0], &i64);
	assert_int_equal(i64, 42);
	const struct mfs_attr *br = &nd->attrs[9];
	assert_int_equal(br->n_graphs, 1);
	assert_string_equal(br->graphs[0]->name, "then");
	assert_string_equal(br->graphs[0]->nodes[0].op_type, "Constant");
	assert_int_equal(br->graphs[0]->nodes[0].attrs[0].n_tensors, 1);
	mfs_model_close(mm);

	/* An attribute whose type does not match the value it holds. */
	struct pb n2 = {0}, a2 = {0}, g2 = {0};
	int64_t d1 = 1;
	struct pb t2 = tensor("x", MFS_DT_INT64, &d1, 1);
	pb_vint(&t2, 7, 1);
	pb_str(&a2, 1, "value");
	pb_sub(&a2, 5, &t2);
	pb_vint(&a2, 20, MFS_ATTR_INT);
	pb_str(&n2, 4, "Constant");
	pb_sub(&n2, 5, &a2);
	pb_sub(&g2, 1, &n2);
	struct pb m2 = model(&g2);
	expect_fail(&m2, -EUCLEAN, "does not hold exactly the value its type names");
}

static void value_types(void **state)
{
	struct pb g = {0};
	pb_str(&g, 2, "g");
	int64_t d1 = 4;
	{       /* sequence(float32) */
		struct pb el = tensor_type(MFS_DT_FLOAT, &d1, 1), seq = {0}, tp = {0};
		pb_sub(&seq, 1, &el);
		pb_sub(&tp, 4, &seq);
		struct pb v = value_info("seq", &tp);
		pb_sub(&g, 11, &v);
	}
	{       /* map(int64,optional(float32)) */
		struct pb el = tensor_type(MFS_DT_FLOAT, &d1, 1), opt = {0}, otp = {0};
		struct pb map = {0}, tp = {0};
		pb_sub(&opt, 1, &el);
		pb_sub(&otp, 9, &opt);
		pb_vint(&map, 1, MFS_DT_INT64);
		pb_sub(&map, 2, &otp);
		pb_sub(&tp, 5, &map);
		struct pb v = value_info("map", &tp);
		pb_sub(&g, 11, &v);
	}
	{       /* sparse(float32) with a shape */
		struct pb shape = {0}, dim = {0}, st = {0}, tp = {0};
		pb_vint(&dim, 1, 7);
		pb_sub(&shape, 1, &dim);
		pb_vint(&st, 1, MFS_DT_FLOAT);
		pb_sub(&st, 2, &shape);
		pb_sub(&tp, 8, &st);
		struct pb v = value_info("sparse", &tp);
		pb_sub(&g, 11, &v);
	}
	{       /* float32 without a shape: unknown rank */
		struct pb tt = {0}, tp = {0};
		pb_vint(&tt, 1, MFS_DT_FLOAT);
		pb_sub(&tp, 1, &tt);
		struct pb v = value_info("norank", &tp);
		pb_sub(&g, 11, &v);
	}
	{       /* dims: symbolic, empty dim_param, no value, scalar */
		struct pb shape = {0}, dim = {0}, tt = {0}, tp = {0};
		pb_str(&dim, 2, "batch");
		pb_sub(&shape, 1, &dim);
		pb_str(&dim, 2, "");
		pb_sub(&shape, 1, &dim);
		pb_sub(&shape, 1, &dim);        /* empty Dimension */
		pb_vint(&dim, 1, 3);
		pb_sub(&shape, 1, &dim);
		pb_vint(&tt, 1, MFS_DT_INT8);
		pb_sub(&tt, 2, &shape);
		pb_sub(&tp, 1, &tt);
		struct pb v = value_info("sym", &tp);
		pb_sub(&g, 12, &v);
	}
	{       /* untyped, and an opaque type (field 7, ML schema only) */
		struct pb v = value_info("untyped", NULL);
		pb_sub(&g, 13, &v);
		struct pb opq = {0}, tp = {0};
		pb_str(&opq, 1, "dom");
		pb_sub(&tp, 7, &opq);
		struct pb v2 = value_info("opaque", &tp);
		pb_sub(&g, 13, &v2);
	}
	struct pb m = model(&g);
	mfs_model *mm = NULL;
	char err[512] = "";
	int rc = open_pb(&m, "types.onnx", &mm, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	const struct mfs_graph *gr = mfs_model_desc(mm)->graph;
	assert_int_equal(gr->n_inputs, 4);
	assert_string_equal(gr->inputs[0].dtype, "sequence(float32)");
	assert_false(gr->inputs[0].shape.known);
	assert_string_equal(gr->inputs[1].dtype, "map(int64,optional(float32))");
	assert_string_equal(gr->inputs[2].dtype, "sparse(float32)");
	assert_true(gr->inputs[2].shape.known);
	assert_int_equal(gr->inputs[2].shape.dims[0].value, 7);
	assert_string_equal(gr->inputs[3].dtype, "float32");
	assert_false(gr->inputs[3].shape.known);
	char buf[64];
	mfs_shape_format(buf, sizeof(buf), &gr->inputs[3].shape);
	assert_string_equal(buf, "*");
	mfs_shape_format(buf, sizeof(buf), &gr->outputs[0].shape);
	assert_string_equal(buf, "batch,?,?,3");
	assert_string_equal(gr->outputs[0].dtype, "int8");
	assert_string_equal(gr->values[0].dtype, "");
	assert_string_equal(gr->values[1].dtype, "opaque");
	/* meta/input_shape: the first input is a sequence, which has no shape */
	const struct mfs_desc *d = mfs_model_desc(mm);
	assert_string_equal(d->meta[9].name, "input_shape");
	assert_memory_equal(d->meta[9].value, "*\n", 2);
	assert_memory_equal(d->meta[10].value, "batch,?,?,3\n", 12);
	mfs_model_close(mm);
}

static void sparse_functions_training(void **state)
{
	int64_t d2 = 2, dense[2] = {3, 4};
	struct pb vals = tensor("sp", MFS_DT_FLOAT, &d2, 1);
	const float fv[2] = {5, 6};
	pb_bytes(&vals, 4, fv, sizeof(fv));
	struct pb idx = tensor("", MFS_DT_INT64, &d2, 1);
	int64_t iv[2] = {1, 7};
	pb_packed(&idx, 7, iv, 2);
	struct pb sp = {0};
	pb_sub(&sp, 1, &vals);
	pb_sub(&sp, 2, &idx);
	pb_vint(&sp, 3, (uint64_t)dense[0]);
	pb_vint(&sp, 3, (uint64_t)dense[1]);
	struct pb g = {0};
	pb_str(&g, 2, "g");
	pb_sub(&g, 15, &sp);
	struct pb in = value_info("sp", NULL);
	pb_sub(&g, 11, &in);

	struct pb fn = {0}, fnode = {0}, fop = {0}, fdef = {0};
	pb_str(&fn, 1, "MyFn");
	pb_str(&fn, 4, "a");
	pb_str(&fn, 5, "b");
	pb_str(&fn, 6, "alpha");
	pb_str(&fnode, 1, "a");
	pb_str(&fnode, 2, "b");
	pb_str(&fnode, 4, "Relu");
	pb_sub(&fn, 7, &fnode);
	pb_str(&fop, 1, "");
	pb_vint(&fop, 2, 18);
	pb_sub(&fn, 9, &fop);
	pb_str(&fn, 10, "local");
	fdef = attr_int("alpha", 2, true);
	pb_sub(&fn, 11, &fdef);

	struct pb tr = {0}, alg = {0}, bind = {0};
	int64_t d1 = 1;
	struct pb at = tensor("lr", MFS_DT_DOUBLE, &d1, 1);
	pb_f64(&at, 10, 0.01);
	pb_str(&alg, 2, "alg");
	pb_sub(&alg, 5, &at);
	pb_sub(&tr, 2, &alg);
	pb_str(&bind, 1, "k");
	pb_str(&bind, 2, "v");
	pb_sub(&tr, 4, &bind);

	struct pb m = model(&g);
	pb_sub(&m, 20, &tr);
	pb_sub(&m, 25, &fn);
	mfs_model *mm = NULL;
	char err[512] = "";
	int rc = open_pb(&m, "sft.onnx", &mm, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	const struct mfs_desc *d = mfs_model_desc(mm);
	assert_int_equal(d->graph->n_sparse_inits, 1);
	const struct mfs_sparse *s = d->graph->sparse_inits[0];
	assert_string_equal(s->name, "sp");
	assert_int_equal(s->dtype, MFS_DT_FLOAT);
	assert_int_equal(s->rank, 2);
	assert_int_equal(s->dims[1], 4);
	assert_int_equal(s->values->nbytes, 8);
	assert_int_equal(s->indices->nbytes, 16);
	assert_true(d->graph->input_is_init[0]);        /* sparse initializers count */
	assert_int_equal(d->n_functions, 1);
	const struct mfs_function *f = &d->functions[0];
	assert_string_equal(f->name, "MyFn");
	assert_string_equal(f->domain, "local");
	assert_int_equal(f->n_nodes, 1);
	assert_string_equal(f->nodes[0].op_type, "Relu");
	assert_int_equal(f->n_attributes, 1);
	assert_string_equal(f->attributes[0], "alpha");
	assert_int_equal(f->n_attr_defaults, 1);
	assert_memory_equal(f->attr_defaults[0].text, "2\n", 2);
	assert_int_equal(f->opset_len, strlen("ai.onnx 18\n"));
	assert_memory_equal(f->opset_text, "ai.onnx 18\n", f->opset_len);
	assert_int_equal(d->n_training, 1);
	assert_null(d->training[0].initialization);
	assert_non_null(d->training[0].algorithm);
	assert_string_equal(d->training[0].algorithm->inits[0]->name, "lr");
	assert_int_equal(d->n_tensors, 3);      /* values + indices + lr */
	assert_int_equal(d->n_nodes, 1);        /* the function's node */
	mfs_model_close(mm);
}

static void graph_nesting_limit(void **state)
{
	/* If -> then_branch -> If -> ...: each level is graph, node and
	 * attribute, so 30 levels are ~90 messages deep. */
	struct pb g = {0};
	pb_str(&g, 2, "leaf");
	for (int i = 0; i < 30; i++) {
		struct pb a = {0}, n = {0}, outer = {0};
		pb_str(&a, 1, "then_branch");
		pb_sub(&a, 6, &g);
		pb_vint(&a, 20, MFS_ATTR_GRAPH);
		pb_str(&n, 4, "If");
		pb_sub(&n, 5, &a);
		pb_sub(&outer, 1, &n);
		g = outer;
	}
	struct pb m = model(&g);
	expect_fail(&m, -EFBIG, "nested deeper than 64");

	/* 10 levels are fine. */
	struct pb g2 = {0};
	pb_str(&g2, 2, "leaf");
	for (int i = 0; i < 10; i++) {
		struct pb a = {0}, n = {0}, outer = {0};
		pb_str(&a, 1, "then_branch");
		pb_sub(&a, 6, &g2);
		pb_vint(&a, 20, MFS_ATTR_GRAPH);
		pb_str(&n, 4, "If");
		pb_sub(&n, 5, &a);
		pb_sub(&outer, 1, &n);
		g2 = outer;
	}
	struct pb m2 = model(&g2);
	mfs_model *mm = NULL;
	char err[512];
	assert_int_equal(open_pb(&m2, "nest10.onnx", &mm, err, sizeof(err)), 0);
	assert_int_equal(mfs_model_desc(mm)->n_nodes, 10);
	mfs_model_close(mm);

	/* A TypeProto nested 100000 deep in a graph input. */
	struct pb tp = nested_type(100000);
	struct pb v = value_info("x", &tp);
	struct pb g3 = {0};
	pb_sub(&g3, 11, &v);
	struct pb m3 = model(&g3);
	expect_fail(&m3, -EFBIG, "nested deeper than 64");
}

static void model_level_errors(void **state)
{
	struct pb m = {0};
	pb_put(&m, "hello, I am a text file\n", 24);
	expect_fail(&m, -EUCLEAN, "not a model of any known format (read as ONNX: field 13 with "
	            "wire type 0 at offset 0 is not a ModelProto field)");
	/* A text whose first byte is a plausible ModelProto tag ('r': field 14,
	 * metadata_props) fails deeper in; still not a model first (issue 11). */
	static const char passwd[] =
		"root:x:0:0:root:/root:/bin/bash\n"
		"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
		"bin:x:2:2:bin:/bin:/usr/sbin/nologin\n"
		"sys:x:3:3:sys:/dev:/usr/sbin/nologin\n";
	struct pb pw = {0};
	pb_put(&pw, passwd, sizeof(passwd) - 1);
	expect_fail(&pw, -EUCLEAN, "not a model of any known format (read as ONNX: bad protobuf "
	            "tag: wire type 6/7 does not exist at offset 113)");

	pb_vint(&m, 1, 8);      /* ir_version only */
	expect_fail(&m, -EUCLEAN, "no graph");

	/* After the ir_version it is an ONNX file, broken: the detail alone. */
	pb_vint(&m, 1, 8);
	pb_key(&m, 7, 2);
	pb_varint(&m, 100);
	mfs_model *mm = NULL;
	char err[1024];
	assert_int_equal(open_pb(&m, "cut.onnx", &mm, err, sizeof(err)), -EUCLEAN);
	assert_non_null(strstr(err, "cut.onnx: length prefix past end of file (truncated file)"));
	assert_null(strstr(err, "known format"));

	pb_vint(&m, 1, 8);      /* graph with the wrong wire type */
	pb_vint(&m, 7, 1);
	expect_fail(&m, -EUCLEAN, "field graph (7) has wire type 0");

	struct pb g = {0}, n = {0};
	pb_str(&n, 4, "Relu");
	pb_vint(&n, 4, 1);      /* op_type as a varint: protobuf-c rejects it */
	pb_sub(&g, 1, &n);
	m = model(&g);
	expect_fail(&m, -EUCLEAN, "cannot decode the fields of NodeProto");

	/* Paths in messages: the third node's second attribute. */
	struct pb g2 = {0};
	for (int i = 0; i < 3; i++) {
		struct pb nn = {0}, a = attr_int("k", 1, true);
		pb_str(&nn, 4, "Add");
		pb_sub(&nn, 5, &a);
		if (i == 2) {
			pb_key(&nn, 5, 2);
			pb_varint(&nn, 100);    /* runs past the node */
		}
		pb_sub(&g2, 1, &nn);
	}
	m = model(&g2);
	expect_fail(&m, -EUCLEAN, "length prefix past end of message at offset");
	struct pb g3 = {0};
	for (int i = 0; i < 3; i++) {
		struct pb nn = {0}, a = attr_int("k", 1, true), a2 = {0};
		pb_str(&nn, 4, "Add");
		pb_sub(&nn, 5, &a);
		if (i == 2) {
			pb_str(&a2, 1, "bad");
			pb_put(&a2, "\x07", 1);         /* field 0, wire type 7 */
		} else {
			a2 = attr_int("j", 2, true);
		}
		pb_sub(&nn, 5, &a2);
		pb_sub(&g3, 1, &nn);
	}
	m = model(&g3);
	expect_fail(&m, -EUCLEAN, "(graph.node[2].attribute[1])");
}

static void limits(void **state)
{
	/* Typed fields decoding to more than MFS_MAX_DECODED: 2^25 + 1 int64
	 * entries of one byte each are 32 MiB on disk but 256 MiB + 8 decoded. */
	uint64_t n = (MFS_MAX_DECODED / 8) + 1;
	int64_t dims = (int64_t)n;
	struct pb t = tensor("big", MFS_DT_INT64, &dims, 1);
	pb_key(&t, 7, 2);
	pb_varint(&t, n);
	size_t at = t.len;
	t.p = realloc(t.p, at + n);
	assert_non_null(t.p);
	memset(t.p + at, 0, n);
	t.len = t.cap = at + n;
	struct pb m = model_inits(&t, 1);
	expect_fail(&m, -EFBIG, "would exceed the limit of 256 MiB");

	/* An ONNX file of 2 GiB or more (sparse, so it costs nothing). */
	/* (A realistic first field, so no other format's sniffer claims it.) */
	write_file("huge.onnx", "\x08\x08\x12\x07pytorch", 11);
	assert_int_equal(truncate(tpath("huge.onnx"), (off_t)MFS_MAX_ONNX_FILE + 1), 0);
	mfs_model *mm = NULL;
	char err[512] = "";
	assert_int_equal(mfs_model_open(&mm, tpath("huge.onnx"), NULL, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "over protobuf's limit of 2 GiB - 1"));
	unlink(tpath("huge.onnx"));

	/* A name over MFS_MAX_NAME. */
	char *name = malloc(MFS_MAX_NAME + 2);
	assert_non_null(name);
	memset(name, 'n', MFS_MAX_NAME + 1);
	name[MFS_MAX_NAME + 1] = '\0';
	int64_t one = 1;
	struct pb t2 = tensor(name, MFS_DT_FLOAT, &one, 1);
	free(name);
	pb_bytes(&t2, 9, "abcd", 4);
	m = model_inits(&t2, 1);
	expect_fail(&m, -EFBIG, "tensor name is 65537 bytes long (limit 65536)");
}

/* Every file in tests/data/bad/ must fail cleanly. */
static void bad_fixtures(void **state)
{
	static const char *const names[] = {
		"empty.onnx", "garbage.onnx", "truncated.onnx", "length_past_end.onnx",
		"dims_overflow.onnx", "deep_nesting.onnx", "negative_dim.onnx",
		"raw_size_mismatch.onnx", "overlong_varint.onnx", "field_zero.onnx",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/bad/%s", MFS_TEST_DATA, names[i]);
		mfs_model *m = NULL;
		char err[1024] = "";
		int rc = mfs_model_open(&m, path, NULL, err, sizeof(err));
		print_message("%s -> %d %s\n", names[i], rc, err);
		assert_true(rc == -EUCLEAN || rc == -EFBIG);
		assert_null(m);
		assert_true(strlen(err) > strlen(path) + 2);
		assert_null(strchr(err, '\n'));
	}
}

/* ------------------------------------------------------------ I/O accounting */

static uint64_t io_bytes;
static long io_calls, io_fail_at;

static ssize_t counting_pread(int fd, void *buf, size_t len, off_t off)
{
	if (io_fail_at && ++io_calls == io_fail_at) {
		errno = EIO;
		return -1;
	}
	ssize_t n = pread(fd, buf, len, off);
	if (n > 0)
		io_bytes += (uint64_t)n;
	return n;
}

static int sys_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return openat(dirfd, path, flags, mode);
}

static const struct mfs_io counting_io = {
	.openat = sys_openat,
	.close = close,
	.pread = counting_pread,
	.fstat = fstat,
	.fstatat = fstatat,
};

/* A model with 8 tensors of 1 MiB each: open must read < 1% of it. */
static struct pb big_model(void)
{
	struct pb g = {0};
	pb_str(&g, 2, "big");
	size_t n = 256 * 1024;
	float *w = calloc(n, sizeof(float));
	assert_non_null(w);
	for (int i = 0; i < 8; i++) {
		char name[32];
		int64_t dims[2] = {512, 512};
		snprintf(name, sizeof(name), "layer%d.weight", i);
		struct pb t = tensor(name, MFS_DT_FLOAT, dims, 2);
		w[0] = (float)i;
		pb_bytes(&t, i % 2 ? 9 : 4, w, n * sizeof(float));
		pb_sub(&g, 5, &t);
	}
	free(w);
	return model(&g);
}

static void open_reads_metadata_only(void **state)
{
	struct pb m = big_model();
	size_t size = m.len;
	write_file("big.onnx", m.p, m.len);
	free(m.p);
	io_bytes = 0;
	io_fail_at = 0;
	mfs_io_set(&counting_io);
	mfs_model *mm = NULL;
	char err[512];
	int rc = mfs_model_open(&mm, tpath("big.onnx"), NULL, err, sizeof(err));
	mfs_io_set(NULL);
	assert_int_equal(rc, 0);
	print_message("read %llu of %zu bytes while opening\n", (unsigned long long)io_bytes, size);
	assert_true(io_bytes * 100 < size);
	assert_int_equal(mfs_model_desc(mm)->n_tensors, 8);
	float x;
	assert_int_equal(mfs_tensor_read(mm, mfs_model_desc(mm)->graph->inits[5], &x, 4, 0), 4);
	assert_true(x == 5.f);
	mfs_model_close(mm);
}

/* Failing each read in turn gives a clean error, never a crash or leak. */
static void every_read_failure_is_clean(void **state)
{
	int64_t d3 = 3;
	struct pb ts[3];
	ts[0] = tensor("a", MFS_DT_INT8, &d3, 1);
	int64_t v[3] = {-1, 2, 3};
	pb_packed(&ts[0], 5, v, 3);
	ts[1] = tensor("s", MFS_DT_STRING, &d3, 1);
	pb_str(&ts[1], 6, "x");
	pb_str(&ts[1], 6, "y");
	pb_str(&ts[1], 6, "z");
	ts[2] = tensor("f", MFS_DT_FLOAT, &d3, 1);
	for (int i = 0; i < 3; i++)
		pb_f32(&ts[2], 4, 1.f);
	struct pb m = model_inits(ts, 3);
	write_file("fail.onnx", m.p, m.len);
	free(m.p);
	for (long n = 1;; n++) {
		io_calls = 0;
		io_fail_at = n;
		mfs_io_set(&counting_io);
		mfs_model *mm = NULL;
		char err[512] = "";
		int rc = mfs_model_open(&mm, tpath("fail.onnx"), NULL, err, sizeof(err));
		mfs_io_set(NULL);
		if (rc == 0) {
			assert_true(io_calls < n);      /* fewer reads than the failing one */
			mfs_model_close(mm);
			break;
		}
		assert_int_equal(rc, -EIO);
		assert_null(mm);
		assert_true(err[0] != '\0');
		assert_true(n < 100);
	}
	io_fail_at = 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(varint_edges),
		cmocka_unit_test(tag_rejection),
		cmocka_unit_test(length_past_end),
		cmocka_unit_test(field_iteration),
		cmocka_unit_test(depth_limit),
		cmocka_unit_test(strings_with_nul),
		cmocka_unit_test(basic_model),
		cmocka_unit_test(typed_int_fields),
		cmocka_unit_test(typed_float_fields),
		cmocka_unit_test(string_and_empty_tensors),
		cmocka_unit_test(tensor_errors),
		cmocka_unit_test(external_data_good),
		cmocka_unit_test(external_data_bad),
		cmocka_unit_test(attributes_and_subgraphs),
		cmocka_unit_test(value_types),
		cmocka_unit_test(sparse_functions_training),
		cmocka_unit_test(graph_nesting_limit),
		cmocka_unit_test(model_level_errors),
		cmocka_unit_test(limits),
		cmocka_unit_test(bad_fixtures),
		cmocka_unit_test(open_reads_metadata_only),
		cmocka_unit_test(every_read_failure_is_clean),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

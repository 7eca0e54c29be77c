/*
 * tests/unit/test_safetensors.c — the safetensors reader, without a mount.
 *
 * Good files are written by the test itself (a tiny writer below: length
 * prefix, JSON text, buffer) and opened through mfs_model_open(), so format
 * detection is covered too; the description and every tensor's bytes (via
 * mfs_tensor_read) are checked.  Every hostile fixture in tests/data/bad/
 * st_* must fail with -EUCLEAN and a one-line message naming the problem;
 * the table below says which words, and a fixture missing from it fails the
 * test.  Sharded checkpoints are built in a temporary directory.  A counting
 * I/O table proves that opening reads the header and nothing else, and a
 * failing one that every I/O error path unwinds cleanly.  The header
 * scanner is checked against the reference path (jansson) on every case,
 * and shown to build no document tree for a well-formed header.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "safetensors/st.h"
#include "modelfs/model.h"

static char tmpdir[256];
static char errbuf[1024];

/* ------------------------------------------------------------ writer */

static char *tpath(const char *name)
{
	static char p[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", tmpdir, name);
	return p[k];
}

/* Write a safetensors file: u64le length, header (space-padded to 8), buffer. */
static void write_raw(const char *path, const char *header, size_t hlen, const void *buf,
                      size_t blen, int pad)
{
	size_t padded = pad ? (hlen + 7) / 8 * 8 : hlen;
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	uint8_t n[8];
	for (int i = 0; i < 8; i++)
		n[i] = (uint8_t)((uint64_t)padded >> (8 * i));
	assert_int_equal(fwrite(n, 1, 8, f), 8);
	assert_int_equal(fwrite(header, 1, hlen, f), hlen);
	for (size_t i = hlen; i < padded; i++)
		fputc(' ', f);
	if (blen)
		assert_int_equal(fwrite(buf, 1, blen, f), blen);
	assert_int_equal(fclose(f), 0);
}

static void write_st(const char *path, const char *header, const void *buf, size_t blen)
{
	write_raw(path, header, strlen(header), buf, blen, 1);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int open_model(mfs_model **m, const char *path)
{
	errbuf[0] = '\0';
	int rc = mfs_model_open(m, path, NULL, errbuf, sizeof(errbuf));
	if (rc < 0)
		assert_null(*m);
	return rc;
}

static const struct mfs_tensor *find_tensor(const struct mfs_desc *d, const char *name)
{
	for (size_t i = 0; i < d->graph->n_inits; i++)
		if (strcmp(d->graph->inits[i]->name, name) == 0)
			return d->graph->inits[i];
	return NULL;
}

static const struct mfs_meta *find_meta(const struct mfs_meta *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

static void check_bytes(const mfs_model *m, const struct mfs_tensor *t, const uint8_t *want,
                        size_t len)
{
	assert_int_equal(t->nbytes, len);
	uint8_t *got = malloc(len + 16);
	assert_non_null(got);
	assert_int_equal(mfs_tensor_read(m, t, got, len + 16, 0), (ssize_t)len);
	assert_memory_equal(got, want, len);
	if (len > 1) {
		/* A sub-range read, as FUSE does it. */
		assert_int_equal(mfs_tensor_read(m, t, got, len, 1), (ssize_t)(len - 1));
		assert_memory_equal(got, want + 1, len - 1);
	}
	assert_int_equal(mfs_tensor_read(m, t, got, 4, len), 0);
	free(got);
}

/* Build a model of `n` tensors, tensor i with dtype[i], dims as text, nbytes[i]. */
struct spec {
	const char *st;         /* safetensors dtype */
	int32_t dtype;
	const char *name;       /* dtype file text */
	const char *shape;      /* JSON array text */
	size_t rank;
	int64_t dims[3];
	size_t nbytes;
};

static const struct spec all_dtypes[] = {
	{"BOOL", MFS_DT_BOOL, "bool", "[2,3]", 2, {2, 3}, 6},
	{"F4", MFS_DT_FLOAT4E2M1, "float4e2m1", "[2,3]", 2, {2, 3}, 3},
	{"F6_E2M3", MFS_DT_FLOAT6E2M3, "float6e2m3", "[4]", 1, {4}, 3},
	{"F6_E3M2", MFS_DT_FLOAT6E3M2, "float6e3m2", "[2,4]", 2, {2, 4}, 6},
	{"U8", MFS_DT_UINT8, "uint8", "[2,3]", 2, {2, 3}, 6},
	{"I8", MFS_DT_INT8, "int8", "[2,3]", 2, {2, 3}, 6},
	{"F8_E5M2", MFS_DT_FLOAT8E5M2, "float8e5m2", "[2,3]", 2, {2, 3}, 6},
	{"F8_E4M3", MFS_DT_FLOAT8E4M3FN, "float8e4m3fn", "[2,3]", 2, {2, 3}, 6},
	{"F8_E8M0", MFS_DT_FLOAT8E8M0, "float8e8m0", "[2,3]", 2, {2, 3}, 6},
	{"F8_E4M3FNUZ", MFS_DT_FLOAT8E4M3FNUZ, "float8e4m3fnuz", "[2,3]", 2, {2, 3}, 6},
	{"F8_E5M2FNUZ", MFS_DT_FLOAT8E5M2FNUZ, "float8e5m2fnuz", "[2,3]", 2, {2, 3}, 6},
	{"I16", MFS_DT_INT16, "int16", "[2,3]", 2, {2, 3}, 12},
	{"U16", MFS_DT_UINT16, "uint16", "[2,3]", 2, {2, 3}, 12},
	{"F16", MFS_DT_FLOAT16, "float16", "[2,3]", 2, {2, 3}, 12},
	{"BF16", MFS_DT_BFLOAT16, "bfloat16", "[2,3]", 2, {2, 3}, 12},
	{"I32", MFS_DT_INT32, "int32", "[2,3]", 2, {2, 3}, 24},
	{"U32", MFS_DT_UINT32, "uint32", "[2,3]", 2, {2, 3}, 24},
	{"F32", MFS_DT_FLOAT, "float32", "[2,3]", 2, {2, 3}, 24},
	{"C64", MFS_DT_COMPLEX64, "complex64", "[2,3]", 2, {2, 3}, 48},
	{"F64", MFS_DT_DOUBLE, "float64", "[2,3]", 2, {2, 3}, 48},
	{"I64", MFS_DT_INT64, "int64", "[2,3]", 2, {2, 3}, 48},
	{"U64", MFS_DT_UINT64, "uint64", "[1,2,3]", 3, {1, 2, 3}, 48},
};
#define N_DTYPES (sizeof(all_dtypes) / sizeof(all_dtypes[0]))

/* ------------------------------------------------------------ good files */

static void every_dtype_opens_with_its_bytes(void **state)
{
	(void)state;
	char header[8192];
	size_t pos = 0, off = 0;
	uint8_t buf[1024];
	pos += (size_t)snprintf(header + pos, sizeof(header) - pos, "{");
	for (size_t i = 0; i < N_DTYPES; i++) {
		const struct spec *s = &all_dtypes[i];
		pos += (size_t)snprintf(header + pos, sizeof(header) - pos,
		                        "%s\"t.%s\":{\"dtype\":\"%s\",\"shape\":%s,"
		                        "\"data_offsets\":[%zu,%zu]}",
		                        i ? "," : "", s->st, s->st, s->shape, off, off + s->nbytes);
		for (size_t k = 0; k < s->nbytes; k++)
			buf[off + k] = (uint8_t)(i * 16 + k + 1);
		off += s->nbytes;
	}
	snprintf(header + pos, sizeof(header) - pos, "}");
	write_st(tpath("dtypes.safetensors"), header, buf, off);

	mfs_model *m = NULL;
	assert_int_equal(open_model(&m, tpath("dtypes.safetensors")), 0);
	const struct mfs_desc *d = mfs_model_desc(m);
	assert_string_equal(d->format, "safetensors");
	assert_int_equal(d->n_tensors, N_DTYPES);
	assert_int_equal(d->graph->n_inits, N_DTYPES);
	assert_int_equal(d->graph->n_nodes, 0);
	assert_int_equal(d->n_files, 1);
	assert_string_equal(d->files[0].path, "dtypes.safetensors");
	assert_int_equal(d->n_meta, 1);
	assert_string_equal(d->meta[0].name, "format");
	assert_int_equal(d->meta[0].len, 12);
	assert_memory_equal(d->meta[0].value, "safetensors\n", 12);
	assert_int_equal(d->n_props, 0);
	uint64_t hlen = (pos + 1 + 7) / 8 * 8;
	off = 0;
	for (size_t i = 0; i < N_DTYPES; i++) {
		const struct spec *s = &all_dtypes[i];
		const struct mfs_tensor *t = d->graph->inits[i];   /* offset order */
		char name[64];
		snprintf(name, sizeof(name), "t.%s", s->st);
		assert_string_equal(t->name, name);
		assert_int_equal(t->dtype, s->dtype);
		assert_string_equal(mfs_dtype_name(t->dtype), s->name);
		assert_int_equal(mfs_dtype_from_name(s->name), s->dtype);
		assert_int_equal(t->rank, s->rank);
		for (size_t k = 0; k < s->rank; k++)
			assert_int_equal(t->dims[k], s->dims[k]);
		assert_int_equal(t->src, 0);
		assert_null(t->mem);
		assert_int_equal(t->off, 8 + hlen + off);
		check_bytes(m, t, buf + off, s->nbytes);
		off += s->nbytes;
	}
	mfs_model_close(m);
}

static void scalar_empty_names_and_metadata(void **state)
{
	(void)state;
	/* Keys in reverse offset order, whitespace around the header, a 0-d
	 * tensor, three empty tensors sharing one offset, names with . and /. */
	const char *header =
		"\n\t {\"__metadata__\":{\"format\":\"pt\",\"note\":\"a\\nb\",\"\":\"empty key\"},"
		"\"model/layer.0.w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
		"\"empty.b\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
		"\"empty.a\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[4,4],\"x\":1},"
		"\"scalar\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]},"
		"\"empty.c\":{\"dtype\":\"U8\",\"shape\":[0,0,0],\"data_offsets\":[12,12]}}  ";
	uint8_t buf[12] = {7, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40};
	write_st(tpath("mixed.safetensors"), header, buf, sizeof(buf));
	mfs_model *m = NULL;
	assert_int_equal(open_model(&m, tpath("mixed.safetensors")), 0);
	const struct mfs_desc *d = mfs_model_desc(m);
	assert_int_equal(d->n_tensors, 5);
	const char *order[] = {"scalar", "empty.b", "empty.a", "model/layer.0.w", "empty.c"};
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(d->graph->inits[i]->name, order[i]);
	const struct mfs_tensor *t = find_tensor(d, "scalar");
	assert_int_equal(t->rank, 0);
	check_bytes(m, t, buf, 4);
	t = find_tensor(d, "model/layer.0.w");
	assert_int_equal(t->rank, 1);
	assert_int_equal(t->dims[0], 2);
	check_bytes(m, t, buf + 4, 8);
	t = find_tensor(d, "empty.b");
	assert_int_equal(t->nbytes, 0);
	assert_int_equal(t->rank, 2);
	assert_int_equal(t->dims[1], 0);
	uint8_t x;
	assert_int_equal(mfs_tensor_read(m, t, &x, 1, 0), 0);
	assert_int_equal(find_tensor(d, "empty.c")->rank, 3);

	assert_int_equal(d->n_props, 3);
	const struct mfs_meta *p = find_meta(d->props, d->n_props, "format");
	assert_non_null(p);
	assert_int_equal(p->len, 2);
	assert_memory_equal(p->value, "pt", 2);
	p = find_meta(d->props, d->n_props, "note");
	assert_int_equal(p->len, 3);
	assert_memory_equal(p->value, "a\nb", 3);
	p = find_meta(d->props, d->n_props, "");
	assert_non_null(p);
	assert_string_equal(p->value, "empty key");
	mfs_model_close(m);
}

static void empty_header_and_leading_brace_length(void **state)
{
	(void)state;
	/* The smallest file: "{}" padded, no tensors. */
	write_st(tpath("empty.safetensors"), "{}", NULL, 0);
	mfs_model *m = NULL;
	assert_int_equal(open_model(&m, tpath("empty.safetensors")), 0);
	assert_int_equal(mfs_model_desc(m)->n_tensors, 0);
	assert_int_equal(mfs_model_desc(m)->graph->n_inits, 0);
	mfs_model_close(m);

	/* N = 123: byte 0 is '{', yet the content is safetensors. */
	char header[124];
	memset(header, ' ', 123);
	memcpy(header, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 53);
	header[123] = '\0';
	write_raw(tpath("brace.safetensors"), header, 123, "z", 1, 0);
	assert_int_equal(open_model(&m, tpath("brace.safetensors")), 0);
	assert_int_equal(mfs_model_desc(m)->n_tensors, 1);
	assert_int_equal(mfs_model_desc(m)->graph->inits[0]->off, 8 + 123);
	mfs_model_close(m);

	/* Unpadded, odd-length header with NUL inside a metadata value. */
	const char *h = "{\"__metadata__\":{\"k\":\"a\\u0000b\"}}";
	write_raw(tpath("nul.safetensors"), h, strlen(h), NULL, 0, 0);
	assert_int_equal(open_model(&m, tpath("nul.safetensors")), 0);
	assert_int_equal(mfs_model_desc(m)->n_props, 1);
	assert_int_equal(mfs_model_desc(m)->props[0].len, 3);
	assert_memory_equal(mfs_model_desc(m)->props[0].value, "a\0b", 3);
	mfs_model_close(m);
}

static void hostile_names_open(void **state)
{
	(void)state;
	mfs_model *m = NULL;
	int rc = open_model(&m, MFS_TEST_DATA "/good/st_hostile_names.safetensors");
	assert_string_equal(errbuf, "");
	assert_int_equal(rc, 0);
	const struct mfs_desc *d = mfs_model_desc(m);
	assert_int_equal(d->n_tensors, 15);
	const char *names[] = {"", ".", "..", "a/b", "a.b", "a%2Fb", "../x", "/abs", "a//b",
	                       "ctl\x01\x1f\x7f", "tab\tnl\nname"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct mfs_tensor *t = d->graph->inits[i];
		assert_string_equal(t->name, names[i]);
		uint8_t b = 0xff;
		assert_int_equal(mfs_tensor_read(m, t, &b, 1, 0), 1);
		assert_int_equal(b, i);
	}
	assert_int_equal(strlen(d->graph->inits[11]->name), 10240);
	assert_string_equal(d->graph->inits[12]->name, "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80");
	mfs_model_close(m);
}

/* ------------------------------------------------------------ bad files */

/* Every tests/data/bad/st_* fixture and words its message must contain. */
static const struct {
	const char *file;
	const char *words;
} bad[] = {
	{"st_hlen_past_eof", "header length 1000 runs past the end of the file"},
	{"st_hlen_zero", "header length 0 is below the minimum"},
	{"st_hlen_one", "header length 1 is below the minimum"},
	{"st_hlen_too_large", "header length 200000000 exceeds the limit of 100000000"},
	{"st_hlen_overflow", "overflows the file offset"},
	{"st_not_object", "does not start with '{'"},
	{"st_blank_header", "header is blank"},
	{"st_invalid_utf8", "not valid UTF-8"},
	{"st_name_invalid_utf8", "not valid UTF-8"},
	{"st_name_lone_surrogate", "invalid Unicode"},
	{"st_name_nul", "NUL byte"},
	{"st_invalid_json", "not valid JSON"},
	{"st_json_garbage_after", "not valid JSON"},
	{"st_deep_nesting", "nests deeper than 2048 levels"},
	{"st_dup_tensor", "duplicate key at byte 63: duplicate object key near '\"a\"'"},
	{"st_dup_metadata", "duplicate key at byte 40: duplicate object key near '\"__metadata__\"'"},
	{"st_dup_metadata_key", "duplicate key"},
	{"st_dup_field", "duplicate key"},
	{"st_begin_after_end", "tensor 'a': data_offsets [4, 0] begin after end"},
	{"st_overlap", "tensor 'b': data_offsets [4, 12] overlap tensor 'a'"},
	{"st_same_range", "tensor 'b': data_offsets [0, 4] overlap tensor 'a'"},
	{"st_hole", "tensor 'b': data_offsets [8, 12] leave a hole of 4 bytes"},
	{"st_hole_at_start", "tensor 'a': data_offsets [4, 8] leave a hole of 4 bytes after offset 0"},
	{"st_past_eof", "tensor 'a' ends at byte 72, past the end of the file"},
	{"st_trailing_bytes", "22 trailing bytes"},
	{"st_trailing_bytes_empty", "1 trailing bytes"},
	{"st_offset_float", "tensor 'a': data_offsets end is not an integer"},
	{"st_offset_exponent", "tensor 'a': data_offsets end is not an integer"},
	{"st_offset_negative", "tensor 'a': data_offsets begin is negative"},
	{"st_offset_string", "tensor 'a': data_offsets begin is not a number"},
	{"st_offset_huge", "integer out of range"},
	{"st_offsets_not_pair", "tensor 'a': data_offsets is not a [begin, end] pair"},
	{"st_shape_overflow", "tensor 'a': element count of its shape overflows"},
	{"st_bytes_overflow", "tensor 'a': size of 4611686018427387904 F32 elements overflows"},
	{"st_size_mismatch", "tensor 'a': data_offsets span 20 bytes but 6 F32 elements need 24"},
	{"st_shape_float", "tensor 'a': shape[0] is not an integer"},
	{"st_shape_negative", "tensor 'a': shape[0] is negative"},
	{"st_shape_not_array", "tensor 'a': shape is not an array"},
	{"st_unknown_dtype", "tensor 'a': unknown dtype 'F7'"},
	{"st_dtype_lowercase", "tensor 'a': unknown dtype 'f32'"},
	{"st_dtype_nul", "tensor 'a': unknown dtype 'F32\\x00'"},
	{"st_dtype_not_string", "tensor 'a': dtype is not a string"},
	{"st_subbyte_misaligned", "tensor 'a': 3 F4 elements are not a whole number of bytes"},
	{"st_f6_misaligned", "tensor 'a': 1 F6_E2M3 elements are not a whole number of bytes"},
	{"st_entry_not_object", "tensor 'a': entry is not an object"},
	{"st_missing_shape", "tensor 'a': missing \"shape\""},
	{"st_metadata_not_string", "__metadata__ value of 'n' is not a string"},
	{"st_metadata_nested", "__metadata__ value of 'k' is not a string"},
	{"st_metadata_not_object", "__metadata__ is not an object"},
};
#define N_BAD (sizeof(bad) / sizeof(bad[0]))

static void check_fails(const char *path, int want_rc, const char *words)
{
	mfs_model *m = NULL;
	int rc = open_model(&m, path);
	if (rc != want_rc || !strstr(errbuf, words) || strchr(errbuf, '\n'))
		print_error("%s: rc %d (want %d), message: %s\n  expected words: %s\n", path, rc,
		            want_rc, errbuf, words);
	assert_int_equal(rc, want_rc);
	assert_non_null(strstr(errbuf, words));
	assert_null(strchr(errbuf, '\n'));
	assert_null(m);
}

static void bad_fixtures_fail_with_their_reason(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_BAD; i++) {
		char path[512];
		snprintf(path, sizeof(path), MFS_TEST_DATA "/bad/%s.safetensors", bad[i].file);
		check_fails(path, -EUCLEAN, bad[i].words);
		/* Every message says it is about safetensors. */
		assert_non_null(strstr(errbuf, "safetensors"));
	}
}

static void every_bad_fixture_is_listed(void **state)
{
	(void)state;
	DIR *dir = opendir(MFS_TEST_DATA "/bad");
	assert_non_null(dir);
	struct dirent *de;
	size_t seen = 0;
	while ((de = readdir(dir))) {
		if (strncmp(de->d_name, "st_", 3) != 0)
			continue;
		size_t i;
		for (i = 0; i < N_BAD; i++) {
			size_t n = strlen(bad[i].file);
			if (strncmp(de->d_name, bad[i].file, n) == 0 &&
			    strcmp(de->d_name + n, ".safetensors") == 0)
				break;
		}
		if (i == N_BAD)
			print_error("fixture %s has no expected message\n", de->d_name);
		assert_true(i < N_BAD);
		seen++;
	}
	closedir(dir);
	assert_int_equal(seen, N_BAD);
}

static void million_deep_header_fails_cleanly(void **state)
{
	(void)state;
	size_t depth = 1000000;
	size_t len = 5 + 2 * depth + 1;
	char *h = malloc(len + 1);
	assert_non_null(h);
	memcpy(h, "{\"a\":", 5);
	memset(h + 5, '[', depth);
	memset(h + 5 + depth, ']', depth);
	h[len - 1] = '}';
	h[len] = '\0';
	write_raw(tpath("deep.safetensors"), h, len, NULL, 0, 1);
	free(h);
	check_fails(tpath("deep.safetensors"), -EUCLEAN, "nests deeper than 2048 levels");

	/* Objects nest the same way. */
	h = malloc(len + 1);
	assert_non_null(h);
	size_t o = 0;
	for (size_t i = 0; i < depth / 5; i++) {
		memcpy(h + o, "{\"a\":", 5);
		o += 5;
	}
	write_raw(tpath("deep2.safetensors"), h, o, NULL, 0, 1);
	free(h);
	check_fails(tpath("deep2.safetensors"), -EUCLEAN, "nests deeper than 2048 levels");
}

static void limits_are_efbig(void **state)
{
	(void)state;
	char header[2048];
	size_t pos = (size_t)snprintf(header, sizeof(header),
	                              "{\"r\":{\"dtype\":\"U8\",\"data_offsets\":[0,1],\"shape\":[");
	for (int i = 0; i < MFS_MAX_RANK + 1; i++)
		pos += (size_t)snprintf(header + pos, sizeof(header) - pos, "%s1", i ? "," : "");
	snprintf(header + pos, sizeof(header) - pos, "]}}");
	write_st(tpath("rank.safetensors"), header, "x", 1);
	check_fails(tpath("rank.safetensors"), -EFBIG, "rank 65 exceeds the limit of 64");

	/* A rank at the limit is fine. */
	pos = (size_t)snprintf(header, sizeof(header),
	                       "{\"r\":{\"dtype\":\"U8\",\"data_offsets\":[0,1],\"shape\":[");
	for (int i = 0; i < MFS_MAX_RANK; i++)
		pos += (size_t)snprintf(header + pos, sizeof(header) - pos, "%s1", i ? "," : "");
	snprintf(header + pos, sizeof(header) - pos, "]}}");
	write_st(tpath("rank64.safetensors"), header, "x", 1);
	mfs_model *m = NULL;
	assert_int_equal(open_model(&m, tpath("rank64.safetensors")), 0);
	assert_int_equal(mfs_model_desc(m)->graph->inits[0]->rank, MFS_MAX_RANK);
	mfs_model_close(m);
}

static void neither_format_is_an_error(void **state)
{
	(void)state;
	write_text(tpath("junk.bin"), "this is not a model at all, just some text\n");
	mfs_model *m = NULL;
	assert_true(open_model(&m, tpath("junk.bin")) < 0);
	assert_null(strchr(errbuf, '\n'));
	assert_true(strlen(errbuf) > 0);
	/* A JSON file that is no index. */
	write_text(tpath("config.json"), "{\"hidden_size\": 4096}\n");
	check_fails(tpath("config.json"), -EUCLEAN, "has no \"weight_map\" object");
}

/* ------------------------------------------------------------ sharded */

/* Three shards in a subdirectory of tmpdir: tensors w0..w5, two per shard. */
static void make_sharded(const char *dir)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", tmpdir, dir);
	mkdir(p, 0755);
	for (int s = 0; s < 3; s++) {
		char h[512], name[128];
		snprintf(h, sizeof(h),
		         "{\"__metadata__\":{\"format\":\"pt\",\"shard\":\"%d\"},"
		         "\"w%d\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		         "\"layers.%d.b\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[8,11]}}",
		         s, s, s);
		uint8_t buf[11];
		for (int k = 0; k < 11; k++)
			buf[k] = (uint8_t)(s * 32 + k);
		snprintf(name, sizeof(name), "%s/model-%05d-of-00003.safetensors", dir, s + 1);
		write_st(tpath(name), h, buf, sizeof(buf));
	}
}

static void write_index(const char *dir, const char *extra_meta, const char *const *map)
{
	char text[4096];
	size_t pos = (size_t)snprintf(text, sizeof(text),
	                              "{\"metadata\":{\"total_size\":57%s},\"weight_map\":{",
	                              extra_meta);
	for (size_t i = 0; map[i]; i += 2)
		pos += (size_t)snprintf(text + pos, sizeof(text) - pos, "%s\"%s\":\"%s\"",
		                        i ? "," : "", map[i], map[i + 1]);
	snprintf(text + pos, sizeof(text) - pos, "}}\n");
	char name[256];
	snprintf(name, sizeof(name), "%s/model.safetensors.index.json", dir);
	write_text(tpath(name), text);
}

#define S1 "model-00001-of-00003.safetensors"
#define S2 "model-00002-of-00003.safetensors"
#define S3 "model-00003-of-00003.safetensors"

static const char *const good_map[] = {
	"layers.2.b", S3, "layers.0.b", S1, "layers.1.b", S2,
	"w0", S1, "w1", S2, "w2", S3, NULL};

static void sharded_index_is_one_model(void **state)
{
	(void)state;
	make_sharded("sh");
	write_index("sh", ",\"note\":\"hi\",\"list\":[1,2],\"f\":0.5,\"t\":true,\"format\":\"x\"",
	            good_map);
	mfs_model *m = NULL;
	int rc = open_model(&m, tpath("sh/model.safetensors.index.json"));
	assert_string_equal(errbuf, "");
	assert_int_equal(rc, 0);
	const struct mfs_desc *d = mfs_model_desc(m);
	assert_string_equal(d->format, "safetensors");
	assert_int_equal(d->n_files, 4);
	assert_string_equal(d->files[0].path, "model.safetensors.index.json");
	assert_string_equal(d->files[1].path, S1);
	assert_string_equal(d->files[2].path, S2);
	assert_string_equal(d->files[3].path, S3);
	assert_int_equal(d->n_tensors, 6);
	const struct mfs_meta *shards = find_meta(d->meta, d->n_meta, "shards");
	assert_non_null(shards);
	const char *want = S1 "\n" S2 "\n" S3 "\n";
	assert_int_equal(shards->len, strlen(want));
	assert_memory_equal(shards->value, want, strlen(want));
	assert_string_equal(d->meta[0].name, "format");

	/* props: the index metadata, then shard __metadata__ keys not yet seen. */
	const char *pk[] = {"total_size", "note", "list", "f", "t", "format", "shard"};
	const char *pv[] = {"57", "hi", "[1,2]", "0.5", "true", "x", "0"};
	assert_int_equal(d->n_props, 7);
	for (size_t i = 0; i < 7; i++) {
		assert_string_equal(d->props[i].name, pk[i]);
		assert_int_equal(d->props[i].len, strlen(pv[i]));
		assert_memory_equal(d->props[i].value, pv[i], strlen(pv[i]));
	}

	/* Each tensor reads from its own shard. */
	for (int s = 0; s < 3; s++) {
		char name[32];
		uint8_t buf[11];
		for (int k = 0; k < 11; k++)
			buf[k] = (uint8_t)(s * 32 + k);
		snprintf(name, sizeof(name), "w%d", s);
		const struct mfs_tensor *t = find_tensor(d, name);
		assert_non_null(t);
		assert_int_equal(t->src, s + 1);
		check_bytes(m, t, buf, 8);
		snprintf(name, sizeof(name), "layers.%d.b", s);
		t = find_tensor(d, name);
		assert_int_equal(t->src, s + 1);
		assert_int_equal(t->dtype, MFS_DT_INT8);
		check_bytes(m, t, buf + 8, 3);
	}
	/* The index itself reads back byte-identical. */
	char raw[4096];
	ssize_t n = mfs_file_read(m, 0, raw, sizeof(raw), 0);
	assert_true(n > 0);
	assert_int_equal((uint64_t)n, d->files[0].size);
	assert_memory_equal(raw, "{\"metadata\"", 11);
	mfs_model_close(m);
}

static void sharded_errors(void **state)
{
	(void)state;
	make_sharded("shx");
	mfs_model *m = NULL;

	/* A shard that is not there. */
	const char *const missing[] = {"w0", S1, "w9", "model-00009-of-00009.safetensors", NULL};
	write_index("shx", "", missing);
	check_fails(tpath("shx/model.safetensors.index.json"), -ENOENT,
	            "safetensors shard 'model-00009-of-00009.safetensors' is missing");

	/* Names outside the directory. */
	const char *const up[] = {"w0", "../shx/" S1, NULL};
	write_index("shx", "", up);
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN,
	            "shard '../shx/" S1 "' of tensor 'w0' is not a plain relative path");
	const char *const abs_[] = {"w0", "/etc/passwd", NULL};
	write_index("shx", "", abs_);
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN,
	            "shard '/etc/passwd' of tensor 'w0' is not a plain relative path");
	const char *const dot[] = {"w0", "./" S1, NULL};
	write_index("shx", "", dot);
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN, "not a plain relative path");

	/* A symlinked shard. */
	assert_int_equal(symlink(S1, tpath("shx/link.safetensors")), 0);
	const char *const link[] = {"w0", "link.safetensors", NULL};
	write_index("shx", "", link);
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN, "symlink");

	/* A tensor the index names that its shard lacks (all others right). */
	const char *const lacks[] = {
		"layers.2.b", S3, "layers.0.b", S1, "layers.1.b", S2,
		"w0", S1, "w1", S2, "w2", S3, "w7", S2, NULL};
	write_index("shx", "", lacks);
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN,
	            "tensor 'w7' is named by the index but missing from shard '" S2 "'");

	/* A shard tensor the index does not name, or names elsewhere. */
	const char *const extra[] = {
		"layers.2.b", S3, "layers.0.b", S1, "layers.1.b", S2, "w0", S1, "w1", S2, NULL};
	write_index("shx", "", extra);
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN,
	            "shard '" S3 "' has tensor 'w2' that the index does not name");
	const char *const moved[] = {
		"layers.2.b", S3, "layers.0.b", S1, "layers.1.b", S2,
		"w0", S1, "w1", S1, "w2", S3, NULL};
	write_index("shx", "", moved);
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN,
	            "tensor 'w1' is named by the index but missing from shard '" S1 "'");
	const char *const moved2[] = {
		"layers.2.b", S3, "layers.0.b", S1, "layers.1.b", S2,
		"w0", S1, "w1", S3, "w2", S3, NULL};
	write_index("shx", "", moved2);
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN,
	            "shard '" S2 "' has tensor 'w1' that the index maps to shard '" S3 "'");

	/* A shard that is not safetensors, and one that is broken. */
	write_text(tpath("shx/notst.safetensors"), "PK\x03\x04 this is a zip, honest");
	const char *const zip[] = {"w0", "notst.safetensors", NULL};
	write_index("shx", "", zip);
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN,
	            "shard 'notst.safetensors': not a safetensors file");
	write_st(tpath("shx/broken.safetensors"),
	         "{\"w0\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4);
	const char *const broken[] = {"w0", "broken.safetensors", NULL};
	write_index("shx", "", broken);
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN,
	            "shard 'broken.safetensors': safetensors tensor 'w0': unknown dtype 'F7'");

	/* Index structure. */
	write_text(tpath("shx/model.safetensors.index.json"), "{\"weight_map\":[]}");
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN, "no \"weight_map\" object");
	write_text(tpath("shx/model.safetensors.index.json"), "{\"weight_map\":{\"a\":1}}");
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN,
	            "shard of tensor 'a' is not a file name");
	write_text(tpath("shx/model.safetensors.index.json"),
	           "{\"weight_map\":{\"a\":\"" S1 "\",\"a\":\"" S2 "\"}}");
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN, "duplicate key");
	write_text(tpath("shx/model.safetensors.index.json"), "{\"weight_map\":{\"a\":");
	check_fails(tpath("shx/model.safetensors.index.json"), -EUCLEAN,
	            "safetensors index is not valid JSON");

	/* An empty weight_map is an empty model. */
	write_text(tpath("shx/model.safetensors.index.json"), "{\"weight_map\":{}}");
	assert_int_equal(open_model(&m, tpath("shx/model.safetensors.index.json")), 0);
	assert_int_equal(mfs_model_desc(m)->n_tensors, 0);
	mfs_model_close(m);
}

/* ------------------------------------------------------------ scanner */

/*
 * The header scanner (scan.c) and the reference path (jansson) must give
 * every file the same verdict, the same message and the same description.
 * Each case is opened both ways and compared; the cases cover the edges of
 * the scanner's subset from both sides (what it reads itself, what it hands
 * to jansson) and the precedence of a syntax error or a duplicate over an
 * earlier broken entry.
 */
struct opened {
	int rc;
	char err[1024];
	mfs_model *m;
};

static void open_both(const char *path, struct opened *scan, struct opened *ref)
{
	mfs_st_test_reference(false);
	scan->m = NULL;
	scan->rc = open_model(&scan->m, path);
	snprintf(scan->err, sizeof(scan->err), "%s", errbuf);
	mfs_st_test_reference(true);
	ref->m = NULL;
	ref->rc = open_model(&ref->m, path);
	snprintf(ref->err, sizeof(ref->err), "%s", errbuf);
	mfs_st_test_reference(false);
}

static void assert_same_models(const char *what, const struct opened *a, const struct opened *b)
{
	if (a->rc != b->rc || strcmp(a->err, b->err) != 0)
		print_error("%s:\n  scanner:   rc %d %s\n  reference: rc %d %s\n", what, a->rc, a->err,
		            b->rc, b->err);
	assert_int_equal(a->rc, b->rc);
	assert_string_equal(a->err, b->err);
	if (a->rc < 0)
		return;
	const struct mfs_desc *x = mfs_model_desc(a->m), *y = mfs_model_desc(b->m);
	assert_int_equal(x->n_tensors, y->n_tensors);
	for (uint64_t i = 0; i < x->n_tensors; i++) {
		const struct mfs_tensor *s = x->tensors[i], *t = y->tensors[i];
		assert_string_equal(s->name, t->name);
		assert_int_equal(s->id, t->id);
		assert_int_equal(s->dtype, t->dtype);
		assert_int_equal(s->rank, t->rank);
		for (size_t k = 0; k < s->rank; k++)
			assert_int_equal(s->dims[k], t->dims[k]);
		assert_int_equal(s->off, t->off);
		assert_int_equal(s->nbytes, t->nbytes);
		assert_int_equal(s->flags, t->flags);
		assert_int_equal(s->src, t->src);
	}
	assert_int_equal(x->n_props, y->n_props);
	for (size_t i = 0; i < x->n_props; i++) {
		assert_string_equal(x->props[i].name, y->props[i].name);
		assert_int_equal(x->props[i].len, y->props[i].len);
		assert_memory_equal(x->props[i].value, y->props[i].value, x->props[i].len);
	}
	assert_int_equal(x->n_meta, y->n_meta);
	for (size_t i = 0; i < x->n_meta; i++) {
		assert_string_equal(x->meta[i].name, y->meta[i].name);
		assert_int_equal(x->meta[i].len, y->meta[i].len);
		assert_memory_equal(x->meta[i].value, y->meta[i].value, x->meta[i].len);
	}
}

static void check_agree(const char *what, const char *path)
{
	struct opened a, b;
	open_both(path, &a, &b);
	assert_same_models(what, &a, &b);
	mfs_model_close(a.m);
	mfs_model_close(b.m);
}

#define ONE "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]"

static const struct {
	const char *header;
	size_t blen;            /* bytes of data after the header */
} agree[] = {
	{"{}", 0},
	{"{" ONE "}}", 1},
	{"{\"a\":{\"data_offsets\":[-0,4],\"shape\":[1],\"dtype\":\"F32\"}}", 4},
	{"{\"\\u00e9\\ud83d\\ude00\\n\\\"\\/\\\\\\b\\f\\r\\t\":{\"dtype\":\"U8\",\"shape\":[1],"
	 "\"data_offsets\":[0,1]}}", 1},
	{"{\"a\":{\"dtype\":\"\\u0046\\u0033\\u0032\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
	{"{\"a\":{\"dtype\":\"\\u0046\\u0033\\u0033\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
	{"{\"__metadata__\":{\"k\\u0041\":\"v\\u0000w\",\"x\":\"\",\"\\u00e9\":\"\\u00e9\"}," ONE "}}", 1},
	{"{" ONE ",\"x\":{\"y\":[1,{\"z\":null}],\"w\":true,\"v\":false,\"u\":[]}}}", 1},
	{"{" ONE ",\"x\":1.5}}", 1},
	{"{" ONE ",\"x\":-0.0}}", 1},
	{"{" ONE ",\"x\":1e400}}", 1},
	{"{" ONE ",\"x\":{\"k\":1,\"k\":2}}}", 1},
	{"{" ONE ",\"x\":9223372036854775807}}", 1},
	{"{" ONE ",\"x\":9223372036854775808}}", 1},
	{"{" ONE ",\"x\":-9223372036854775808}}", 1},
	{"{" ONE ",\"x\":-9223372036854775809}}", 1},
	{"{" ONE ",\"x\":18446744073709551616}}", 1},
	{"{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":1}", 1},
	{"{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,1]},\"b\":", 1},
	{"{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,1]},\"b\":1.5}", 1},
	{"{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,1]},\"b\":{},\"b\":{}}", 1},
	{"{" ONE "}} x", 1},
	{"{" ONE "}}\r\n\t ", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,],\"data_offsets\":[0,1]}}", 1},
	{"{" ONE "},}", 1},
	{"{" ONE "}", 1},
	{"{" ONE, 1},
	{"{\"a\"  :  { \"dtype\" : \"U8\" , \"shape\" : [ 1 ] , \"data_offsets\" : [ 0 , 1 ] } }",
	 1},
	{"{" ONE ",\"t\":tru}}", 1},
	{"{" ONE ",\"t\":nulll}}", 1},
	{"{" ONE ",\"t\":-}}", 1},
	{"{" ONE ",\"t\":+1}}", 1},
	{"{" ONE ",\"t\":.5}}", 1},
	{"{" ONE ",\"t\":'x'}}", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"shape\":[[1]],\"data_offsets\":[0,1]}}", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1e0]}}", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,-1]}}", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,true]}}", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"shape\":{},\"data_offsets\":[0,1]}}", 1},
	{"{\"a\":{\"dtype\":8,\"shape\":[1],\"data_offsets\":[0,1]}}", 1},
	{"{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1},
	{"{\"a\":[]}", 1},
	{"{\"a\":\"x\"}", 1},
	{"{" ONE "},\"__metadata__\":{\"k\":1}}", 1},
	{"{\"__metadata__\":{\"k\":\"v\",\"n\":[\"x\"]}," ONE "}}", 1},
	{"{\"__metadata__\":[]," ONE "}}", 1},
	{"{\"__metadata__\":null}", 0},
	{"{\"__metadata__\":{\"k\":\"v\"},\"__metadata__\":{}}", 0},
	{"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0},
	{"{\"\\u005f_metadata__\":{\"k\":\"v\"}}", 0},
	{"{" ONE ",\"s\":\"\\ud800\"}}", 1},
	{"{" ONE ",\"s\":\"\\udc00\"}}", 1},
	{"{" ONE ",\"s\":\"\\ud800\\u0041\"}}", 1},
	{"{" ONE ",\"s\":\"\\ud800x\"}}", 1},
	{"{" ONE ",\"s\":\"\\x\"}}", 1},
	{"{" ONE ",\"s\":\"\\u12\"}}", 1},
	{"{" ONE ",\"s\":\"\\u12G4\"}}", 1},
	{"{" ONE ",\"s\":\"\\u00E9\\u00e9\"}}", 1},
	{"{\"a\\u0000\":{}}", 0},
	{"{" ONE ",\"\\u0000\":1}}", 1},
	{"{" ONE ",\"s\":\"\xc0\x80\"}}", 1},
	{"{" ONE ",\"s\":\"\xc1\xbf\"}}", 1},
	{"{" ONE ",\"s\":\"\xe0\x80\xaf\"}}", 1},
	{"{" ONE ",\"s\":\"\xed\xa0\x80\"}}", 1},
	{"{" ONE ",\"s\":\"\xf4\x90\x80\x80\"}}", 1},
	{"{" ONE ",\"s\":\"\xf5\x80\x80\x80\"}}", 1},
	{"{" ONE ",\"s\":\"\xf0\x9f\x98\x80\xe2\x82\xac\xc3\xa9\x7f\"}}", 1},
	{"{" ONE ",\"s\":\"\xe2\x82\"}}", 1},
	{"{" ONE ",\"s\":\"\x80\"}}", 1},
	{"{" ONE ",\"s\":\"a\tb\"}}", 1},
	{"{" ONE ",\"s\":\"a\x1f\"}}", 1},
	{"{" ONE "}\xc3\xa9}", 1},
	{"{" ONE "},\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2},
	{"{\"a\":{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"dtype\":\"U8\",\"k5\":5,\"k6\":6,"
	 "\"shape\":[1],\"k7\":7,\"data_offsets\":[0,1],\"k8\":8}}", 1},
	{"{\"a\":{\"dtype\":\"U8\",\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,"
	 "\"shape\":[1],\"k7\":7,\"data_offsets\":[0,1],\"dtype\":\"U8\"}}", 1},
	{"{" ONE ",\"x\":{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,"
	 "\"j\":10,\"\\u0061\":11}}}", 1},
	{"{" ONE ",\"x\":{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,"
	 "\"j\":10,\"k\":11}}}", 1},
	{"{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\",\"d\":\"4\",\"e\":\"5\",\"f\":\"6\","
	 "\"g\":\"7\",\"h\":\"8\",\"i\":\"9\",\"j\":\"10\"}}", 0},
	{"{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\",\"d\":\"4\",\"e\":\"5\",\"f\":\"6\","
	 "\"g\":\"7\",\"h\":\"8\",\"i\":\"9\",\"\\u0061\":\"10\"}}", 0},
};

static void write_case(const char *path, const char *header, size_t blen)
{
	uint8_t buf[64];
	memset(buf, 0x5a, sizeof(buf));
	assert_true(blen <= sizeof(buf));
	write_raw(path, header, strlen(header), buf, blen, 1);
}

static void scanner_and_reference_agree(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(agree) / sizeof(agree[0]); i++) {
		write_case(tpath("agree.safetensors"), agree[i].header, agree[i].blen);
		check_agree(agree[i].header, tpath("agree.safetensors"));
	}
	/* The whole hostile corpus, and the good fixture of hostile names. */
	for (size_t i = 0; i < N_BAD; i++) {
		char path[512];
		snprintf(path, sizeof(path), MFS_TEST_DATA "/bad/%s.safetensors", bad[i].file);
		check_agree(path, path);
	}
	check_agree("st_hostile_names", MFS_TEST_DATA "/good/st_hostile_names.safetensors");

	/* Nesting on both sides of the scanner's depth, inside an ignored field. */
	for (size_t depth = 60; depth <= 70; depth += 5) {
		char h[512];
		size_t o = (size_t)snprintf(h, sizeof(h), "{" ONE ",\"x\":");
		memset(h + o, '[', depth);
		memset(h + o + depth, ']', depth);
		snprintf(h + o + 2 * depth, sizeof(h) - o - 2 * depth, "}}");
		write_case(tpath("agree.safetensors"), h, 1);
		check_agree("nested arrays", tpath("agree.safetensors"));
	}

	/* A big header: 5,000 tensors, then the same with a duplicate at the end
	 * and with a broken entry in the middle. */
	size_t n = 5000, cap = n * 96 + 256;
	char *h = malloc(cap);
	assert_non_null(h);
	for (int variant = 0; variant < 3; variant++) {
		size_t o = (size_t)snprintf(h, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
		for (size_t k = 0; k < n; k++)
			o += (size_t)snprintf(h + o, cap - o,
			                      ",\"m.layers.%zu.w\":{\"dtype\":\"%s\",\"shape\":[2],"
			                      "\"data_offsets\":[%zu,%zu]}", k,
			                      variant == 2 && k == n / 2 ? "F7" : "U8", 2 * k,
			                      2 * k + 2);
		if (variant == 1)
			o += (size_t)snprintf(h + o, cap - o, ",\"m.layers.17.w\":1");
		snprintf(h + o, cap - o, "}");
		write_raw(tpath("agree.safetensors"), h, strlen(h), NULL, 0, 1);
		/* the data: 2 bytes a tensor */
		struct stat st;
		assert_int_equal(stat(tpath("agree.safetensors"), &st), 0);
		assert_int_equal(truncate(tpath("agree.safetensors"), st.st_size + (off_t)(2 * n)), 0);
		check_agree("5,000 tensors", tpath("agree.safetensors"));
	}
	free(h);
}

/* How many allocations jansson made (json_set_alloc_funcs). */
static size_t jansson_allocs;

static void *counting_malloc(size_t n)
{
	jansson_allocs++;
	return malloc(n);
}

/*
 * A well-formed header is read without a document tree: jansson is not
 * called at all (it held eleven times a header in memory, and took seconds
 * for a 30 MB one), and only a header outside the scanner's subset goes to
 * it.
 */
static void well_formed_headers_build_no_tree(void **state)
{
	(void)state;
	json_set_alloc_funcs(counting_malloc, free);
	const char *good[] = {
		"{}",
		"{\"__metadata__\":{\"format\":\"pt\",\"k\\u00e9\":\"a\\nb\"}," ONE "}}",
		"{\"\\u00e9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":[{}]}}",
	};
	mfs_model *m = NULL;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		write_case(tpath("tree.safetensors"), good[i], i ? 1 : 0);
		jansson_allocs = 0;
		assert_int_equal(open_model(&m, tpath("tree.safetensors")), 0);
		mfs_model_close(m);
		if (jansson_allocs)
			print_error("%s: %zu jansson allocations\n", good[i], jansson_allocs);
		assert_int_equal(jansson_allocs, 0);
	}
	jansson_allocs = 0;
	assert_int_equal(open_model(&m, MFS_TEST_DATA "/good/st_hostile_names.safetensors"), 0);
	mfs_model_close(m);
	assert_int_equal(jansson_allocs, 0);

	/* Outside the subset (a real in an ignored field): jansson reads it. */
	write_case(tpath("tree.safetensors"), "{" ONE ",\"x\":0.5}}", 1);
	jansson_allocs = 0;
	assert_int_equal(open_model(&m, tpath("tree.safetensors")), 0);
	mfs_model_close(m);
	assert_true(jansson_allocs > 0);
	json_set_alloc_funcs(malloc, free);
}

/* ------------------------------------------------------------ I/O */

static uint64_t bytes_read;
static long calls, fail_at;

static ssize_t counting_pread(int fd, void *buf, size_t len, off_t off)
{
	ssize_t n = pread(fd, buf, len, off);
	if (n > 0)
		bytes_read += (uint64_t)n;
	return n;
}

static const struct mfs_io counting_io = {
	.openat = NULL, .close = close, .pread = counting_pread, .fstat = fstat,
	.fstatat = fstatat,
};

static int plain_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return openat(dirfd, path, flags, mode);
}

static void open_reads_only_the_header(void **state)
{
	(void)state;
	/* 256 MiB of tensors, sparse on disk: the header is all we may read. */
	const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
	                "\"big\":{\"dtype\":\"F32\",\"shape\":[65536,1024],"
	                "\"data_offsets\":[0,268435456]}}";
	write_st(tpath("big.safetensors"), h, NULL, 0);
	uint64_t hlen = (strlen(h) + 7) / 8 * 8;
	assert_int_equal(truncate(tpath("big.safetensors"), (off_t)(8 + hlen + 268435456ull)), 0);

	struct mfs_io io = counting_io;
	io.openat = plain_openat;
	bytes_read = 0;
	mfs_io_set(&io);
	mfs_model *m = NULL;
	int rc = open_model(&m, tpath("big.safetensors"));
	mfs_io_set(NULL);
	assert_int_equal(rc, 0);
	/* 16 bytes to sniff, 8 of length, the header. */
	assert_true(bytes_read <= 16 + 8 + hlen);
	assert_int_equal(mfs_model_desc(m)->graph->inits[0]->nbytes, 268435456ull);
	mfs_model_close(m);
}

static ssize_t failing_pread(int fd, void *buf, size_t len, off_t off)
{
	if (++calls == fail_at) {
		errno = EIO;
		return -1;
	}
	return pread(fd, buf, len, off);
}

static int failing_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	if (++calls == fail_at) {
		errno = EMFILE;
		return -1;
	}
	return openat(dirfd, path, flags, mode);
}

/* Fail the 1st, 2nd, ... I/O call until open succeeds; each failure is clean. */
static void every_io_failure_unwinds(void **state)
{
	(void)state;
	make_sharded("shio");
	write_index("shio", "", good_map);
	const struct mfs_io io = {
		.openat = failing_openat, .close = close, .pread = failing_pread, .fstat = fstat,
		.fstatat = fstatat,
	};
	int failures = 0;
	for (fail_at = 1;; fail_at++) {
		calls = 0;
		mfs_io_set(&io);
		mfs_model *m = NULL;
		int rc = open_model(&m, tpath("shio/model.safetensors.index.json"));
		mfs_io_set(NULL);
		if (rc == 0) {
			assert_int_equal(mfs_model_desc(m)->n_tensors, 6);
			mfs_model_close(m);
			break;
		}
		assert_true(rc == -EIO || rc == -EMFILE);
		assert_null(strchr(errbuf, '\n'));
		failures++;
		assert_true(fail_at < 1000);
	}
	assert_true(failures >= 8);
}

/* ------------------------------------------------------------ sniffing */

static void sniff_rules(void **state)
{
	(void)state;
	uint8_t h[16] = {16, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
	assert_true(mfs_st_sniff_file(h, 16, 24));
	assert_true(mfs_st_sniff_file(h, 16, 16 + 8));
	/* N past the end, but the header shape is there: still safetensors. */
	assert_true(mfs_st_sniff_file(h, 16, 20));
	/* Plausible length, not JSON: safetensors (and its error says so). */
	h[8] = 'x';
	assert_true(mfs_st_sniff_file(h, 16, 24));
	assert_false(mfs_st_sniff_file(h, 16, 20));
	/* Whitespace before the brace. */
	memcpy(h, "\xff\xff\xff\xff\xff\xff\xff\xff \n\t{", 12);
	assert_true(mfs_st_sniff_file(h, 16, 20));
	/* A JSON document is not safetensors. */
	memcpy(h, "{\"abc\":  {\"a\":1}", 16);
	assert_false(mfs_st_sniff_file(h, 16, 100));
	/* ONNX-like bytes. */
	memcpy(h, "\x08\x07\x12\x07pytorch\x1a\x04" "2.0", 16);
	assert_false(mfs_st_sniff_file(h, 16, 1000));
	assert_false(mfs_st_sniff_file(h, 8, 1000));
}

/* ------------------------------------------------------------ main */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/mfs-st-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_dtype_opens_with_its_bytes),
		cmocka_unit_test(scalar_empty_names_and_metadata),
		cmocka_unit_test(empty_header_and_leading_brace_length),
		cmocka_unit_test(hostile_names_open),
		cmocka_unit_test(bad_fixtures_fail_with_their_reason),
		cmocka_unit_test(every_bad_fixture_is_listed),
		cmocka_unit_test(million_deep_header_fails_cleanly),
		cmocka_unit_test(limits_are_efbig),
		cmocka_unit_test(neither_format_is_an_error),
		cmocka_unit_test(sharded_index_is_one_model),
		cmocka_unit_test(sharded_errors),
		cmocka_unit_test(open_reads_only_the_header),
		cmocka_unit_test(every_io_failure_unwinds),
		cmocka_unit_test(sniff_rules),
		cmocka_unit_test(scanner_and_reference_agree),
		cmocka_unit_test(well_formed_headers_build_no_tree),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

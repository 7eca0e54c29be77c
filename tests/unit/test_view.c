/*
 * tests/unit/test_view.c — codec/core/elems.c and view.c: elements decoded
 * to float64, running statistics, the streamed SHA-256 and the npy header,
 * checked against values worked out by hand (and FIPS 180's test vector).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "modelfs/model.h"
#include "modelfs/view.h"

static void half_and_bfloat16_decode_by_their_bit_layout(void **state)
{
	(void)state;
	/* float16: 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), inf, nan, -0 */
	const uint8_t h[] = {0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00,
	                     0x00, 0x7c, 0x01, 0x7e, 0x00, 0x80};
	double v[7];
	mfs_elems_decode(v, MFS_DT_FLOAT16, h, 7);
	assert_true(v[0] == 1.0 && v[1] == -2.0 && v[2] == 65504.0);
	assert_true(v[3] == ldexp(1.0, -24));
	assert_true(isinf(v[4]) && v[4] > 0 && isnan(v[5]));
	assert_true(v[6] == 0.0 && signbit(v[6]));
	/* bfloat16: the top half of float32 1.5 (0x3fc00000) and -0.25 (0xbe800000). */
	const uint8_t b[] = {0xc0, 0x3f, 0x80, 0xbe};
	mfs_elems_decode(v, MFS_DT_BFLOAT16, b, 2);
	assert_true(v[0] == 1.5 && v[1] == -0.25);
	const uint8_t i[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	mfs_elems_decode(v, MFS_DT_INT64, i, 1);
	assert_true(v[0] == -1.0);
	mfs_elems_decode(v, MFS_DT_UINT16, i, 1);
	assert_true(v[0] == 65535.0);
	assert_int_equal(mfs_elems_width(MFS_DT_FLOAT8E4M3FN), 0);
	assert_int_equal(mfs_elems_width(MFS_DT_BOOL), 1);
}

/* `s` with every run of spaces made one space (the values are right-aligned). */
static const char *squeeze(char *s)
{
	char *w = s;
	for (const char *r = s; *r; r++)
		if (*r != ' ' || w == s || w[-1] != ' ')
			*w++ = *r;
	*w = '\0';
	return s;
}

static void stats_skip_nan_and_inf_but_count_them(void **state)
{
	(void)state;
	const double v[] = {1, 2, NAN, 3, INFINITY, 4, -INFINITY};
	struct mfs_stats s;
	mfs_stats_init(&s);
	mfs_stats_add(&s, v, 3);
	mfs_stats_add(&s, v + 3, 4);    /* in two calls, as chunks come */
	char buf[256];
	assert_int_equal(mfs_stats_format(buf, sizeof(buf), &s), MFS_STATS_TEXT_LEN);
	assert_string_equal(squeeze(buf), "count 7\nmin 1\nmax 4\nmean 2.5\n"
	                    "std 1.1180339887498949\nnan 1\ninf 2\n");
	mfs_stats_init(&s);
	assert_int_equal(mfs_stats_format(buf, sizeof(buf), &s), MFS_STATS_TEXT_LEN);
	assert_string_equal(squeeze(buf), "count 0\nmin nan\nmax nan\nmean nan\nstd nan\nnan 0\n"
	                    "inf 0\n");
}

/* Every stats text has the same length, so a stat need not compute it. */
static void stats_text_has_one_length(void **state)
{
	(void)state;
	const double v[] = {-2.2250738585072014e-308, -1.7976931348623157e308, 1e-300, -0.1};
	struct mfs_stats s;
	mfs_stats_init(&s);
	mfs_stats_add(&s, v, 4);
	s.count = UINT64_MAX;
	s.n_nan = UINT64_MAX;
	s.n_inf = UINT64_MAX;
	char buf[256];
	assert_int_equal(mfs_stats_format(buf, sizeof(buf), &s), MFS_STATS_TEXT_LEN);
	assert_int_equal(strlen(buf), MFS_STATS_TEXT_LEN);
}

struct mem {
	const char *p;
	size_t len;
	unsigned calls;
};

static ssize_t mem_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct mem *m = arg;
	m->calls++;
	if (off >= m->len)
		return 0;
	size_t n = m->len - off < len ? m->len - off : len;
	if (n > 7)
		n = 7;          /* short reads: the caller must loop */
	memcpy(buf, m->p + off, n);
	return (ssize_t)n;
}

static void sha256_streams_through_short_reads(void **state)
{
	(void)state;
	struct mem m = {"abc", 3, 0};
	char hex[65];
	assert_int_equal(mfs_view_sha256(hex, 3, mem_read, &m), 0);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *q = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	m = (struct mem){q, strlen(q), 0};
	assert_int_equal(mfs_view_sha256(hex, strlen(q), mem_read, &m), 0);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	assert_true(m.calls >= 8);
	m = (struct mem){"ab", 2, 0};
	assert_int_equal(mfs_view_sha256(hex, 3, mem_read, &m), -EUCLEAN);   /* ends early */
}

static void stats_stream_refuses_partial_elements(void **state)
{
	(void)state;
	const float f[] = {1.0f, 3.0f};
	struct mem m = {(const char *)f, sizeof(f), 0};
	struct mfs_stats s;
	assert_int_equal(mfs_view_stats(&s, MFS_DT_FLOAT, sizeof(f), mem_read, &m), 0);
	assert_true(s.count == 2 && s.min == 1.0 && s.max == 3.0 && s.mean == 2.0);
	m.calls = 0;
	assert_int_equal(mfs_view_stats(&s, MFS_DT_FLOAT, 6, mem_read, &m), -EUCLEAN);
	assert_int_equal(mfs_view_stats(&s, MFS_DT_INT4, 1, mem_read, &m), -EOPNOTSUPP);
}

static void npy_headers_are_numpys(void **state)
{
	(void)state;
	char h[MFS_NPY_HEADER_MAX];
	int64_t d[] = {2, 3};
	size_t n = mfs_npy_header(h, sizeof(h), MFS_DT_FLOAT, d, 2);
	assert_int_equal(n, 128);
	assert_memory_equal(h, "\x93NUMPY\x01\x00\x76\x00", 10);
	const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
	assert_memory_equal(h + 10, dict, strlen(dict));
	assert_true(h[127] == '\n' && h[126] == ' ');
	n = mfs_npy_header(h, sizeof(h), MFS_DT_INT64, d, 1);
	assert_int_equal(n, 128);
	assert_non_null(memmem(h, n, "'shape': (2,), }", 16));
	n = mfs_npy_header(h, sizeof(h), MFS_DT_BOOL, NULL, 0);
	assert_non_null(memmem(h, n, "'descr': '|b1'", 14));
	assert_non_null(memmem(h, n, "'shape': (), }", 14));
	assert_int_equal(mfs_npy_header(h, sizeof(h), MFS_DT_BFLOAT16, d, 2), 0);
	assert_null(mfs_npy_descr(MFS_DT_BFLOAT16));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(half_and_bfloat16_decode_by_their_bit_layout),
		cmocka_unit_test(stats_skip_nan_and_inf_but_count_them),
		cmocka_unit_test(stats_text_has_one_length),
		cmocka_unit_test(sha256_streams_through_short_reads),
		cmocka_unit_test(stats_stream_refuses_partial_elements),
		cmocka_unit_test(npy_headers_are_numpys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

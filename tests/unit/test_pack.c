/*
 * tests/unit/test_pack.c — the byte planes of packs (codec/pack/read.c):
 * grouping and ungrouping are inverses for every arrangement and length
 * (the vector loop and its scalar tail both), the sign really moves out of
 * the exponent's byte, and sizes parse as the options take them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "modelfs/model.h"
#include "pack/pack.h"

static void round_trip(void **state)
{
	(void)state;
	const unsigned ts[] = {PK_T_RAW, PK_T_G2, PK_T_BF16, PK_T_F32};
	const size_t lens[] = {0, 4, 60, 64, 68, 128, 4096, 4100, 262144, 262148};
	uint8_t *src = malloc(262148), *mid = malloc(262148), *back = malloc(262148 + 1);
	assert_non_null(src);
	assert_non_null(mid);
	assert_non_null(back);
	uint32_t x = 12345;
	for (size_t i = 0; i < 262148; i++) {
		x = x * 1103515245u + 12345u;
		src[i] = (uint8_t)(x >> 16);
	}
	for (size_t a = 0; a < 4; a++)
		for (size_t b = 0; b < sizeof(lens) / sizeof(lens[0]); b++) {
			size_t n = lens[b] - lens[b] % pk_elem(ts[a]);
			pk_group(mid, src, n, ts[a]);
			/* Unaligned output too: the mount copies into any buffer. */
			pk_ungroup(back + 1, mid, n, ts[a]);
			if (n)
				assert_memory_equal(back + 1, src, n);
		}
	free(src);
	free(mid);
	free(back);
}

static void exponent_plane(void **state)
{
	(void)state;
	/* -1.0f = 0xBF800000: exponent 0x7F, sign 1.  Rotated left: 0x7F000001. */
	uint8_t in[64], out[64];
	for (int i = 0; i < 16; i++) {
		in[4 * i] = 0x00;
		in[4 * i + 1] = 0x00;
		in[4 * i + 2] = 0x80;
		in[4 * i + 3] = 0xBF;
	}
	pk_group(out, in, 64, PK_T_F32);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(out[i], 0x01);         /* sign in bit 0 */
		assert_int_equal(out[48 + i], 0x7F);    /* the exponent alone */
	}
	/* bf16 -1.0 = 0xBF80 -> 0x7F01 */
	uint8_t b16[4] = {0x80, 0xBF, 0x80, 0x3F}, g[4];
	pk_group(g, b16, 4, PK_T_BF16);
	assert_int_equal(g[0], 0x01);
	assert_int_equal(g[1], 0x00);
	assert_int_equal(g[2], 0x7F);
	assert_int_equal(g[3], 0x7F);
}

static void sizes(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(mfs_parse_size("256K", &v), 0);
	assert_int_equal(v, 262144);
	assert_int_equal(mfs_parse_size("64MiB", &v), 0);
	assert_int_equal(v, 64u << 20);
	assert_int_equal(mfs_parse_size("1G", &v), 0);
	assert_int_equal(v, 1u << 30);
	assert_int_equal(mfs_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(mfs_parse_size("", &v), -1);
	assert_int_equal(mfs_parse_size("-1", &v), -1);
	assert_int_equal(mfs_parse_size("12Q", &v), -1);
	assert_int_equal(mfs_parse_size("99999999999999999999", &v), -1);
	assert_int_equal(mfs_parse_size("99999999999G", &v), -1);
	assert_true(mfs_pack_path("model.onnx.mfs"));
	assert_false(mfs_pack_path("model.onnx"));
	assert_false(mfs_pack_path(".mfs"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(exponent_plane),
		cmocka_unit_test(sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

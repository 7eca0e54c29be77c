/*
 * tests/unit/test_crc32.c — CRC-32 (codec/crc32.c).
 *
 * What is proved: mfs_crc32() gives the standard CRC-32 (the zlib/PNG
 * values: known vectors, and a bit-at-a-time reference written out here),
 * and its fast way (carry-less multiplication, where the CPU has it) gives
 * exactly the values of the table way, mfs_crc32_table(), on random buffers
 * of random lengths at random alignments, continued from random CRCs, and
 * split at random points.  Journals and redo logs written before the fast
 * way existed must keep reading back, so this is bit for bit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32.h"

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

/* The definition, a bit at a time. */
static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
	}
	return ~crc;
}

static void known_vectors(void **state)
{
	(void)state;
	assert_int_equal(mfs_crc32(0, "", 0), 0);
	assert_int_equal(mfs_crc32(0, "123456789", 9), 0xCBF43926u);
	assert_int_equal(mfs_crc32_table(0, "123456789", 9), 0xCBF43926u);
	const char *fox = "The quick brown fox jumps over the lazy dog";
	assert_int_equal(mfs_crc32(0, fox, strlen(fox)), 0x414FA339u);
	/* 64 bytes and more: the folding way, where there is one. */
	uint8_t zeros[4096] = {0}, ff[4096];
	memset(ff, 0xff, sizeof(ff));
	for (size_t len = 0; len <= sizeof(zeros); len = len ? len * 2 + 1 : 1) {
		assert_int_equal(mfs_crc32(0, zeros, len), crc_bitwise(0, zeros, len));
		assert_int_equal(mfs_crc32(0, ff, len), crc_bitwise(0, ff, len));
	}
}

static void fast_equals_table(void **state)
{
	(void)state;
	const size_t max = 1 << 16;
	uint8_t *buf = malloc(max + 64);
	for (size_t i = 0; i < max + 64; i++)
		buf[i] = (uint8_t)(rnd() >> 56);
	unsigned n = 0;
	for (int round = 0; round < 20000; round++) {
		/* Mostly short and odd lengths, where the edges are; some long. */
		size_t len = round % 10 == 0 ? rnd() % max : rnd() % 300;
		size_t align = rnd() % 64;
		uint32_t init = round % 3 == 0 ? 0 : (uint32_t)rnd();
		const uint8_t *p = buf + align;
		uint32_t want = mfs_crc32_table(init, p, len);
		assert_int_equal(mfs_crc32(init, p, len), want);
		if (len < 2048)
			assert_int_equal(crc_bitwise(init, p, len), want);
		/* Continued across a split: the same as all at once. */
		size_t cut = len ? rnd() % (len + 1) : 0;
		assert_int_equal(mfs_crc32(mfs_crc32(init, p, cut), p + cut, len - cut), want);
		n++;
	}
	/* Every length around the folding thresholds, at every alignment. */
	for (size_t len = 0; len < 200; len++)
		for (size_t align = 0; align < 16; align++) {
			uint32_t init = (uint32_t)rnd();
			assert_int_equal(mfs_crc32(init, buf + align, len),
			                 crc_bitwise(init, buf + align, len));
			n++;
		}
	/* A 4 MiB patch, as a commit checks them. */
	size_t big = 4u << 20;
	uint8_t *b = malloc(big);
	for (size_t i = 0; i < big; i += 8) {
		uint64_t v = rnd();
		memcpy(b + i, &v, 8);
	}
	assert_int_equal(mfs_crc32(0, b, big), mfs_crc32_table(0, b, big));
	printf("%u random buffers: the fast and the table CRC agree\n", n + 1);
	free(b);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(known_vectors),
		cmocka_unit_test(fast_equals_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

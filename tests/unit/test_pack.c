/*
 * tests/unit/test_pack.c — the byte planes of packs (codec/pack/read.c):
 * grouping and ungrouping are inverses for every arrangement and length
 * (the vector loop and its scalar tail both), the sign really moves out of
 * the exponent's byte, and sizes parse as the options take them.  The
 * reader takes any byte source (a remote pack is one): a pack served from
 * memory opens, reads only the frames a read touches, and refused cut short.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "modelfs/model.h"
#include "modelfs/pack.h"
#include "pack/pack.h"
#include "source/place.h"
#include "tmpdir.h"

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

/* ------------------------------------------------------------ any source */

/* A pack's bytes from memory, counting what the reader asks for. */
struct mem_source {
	struct mfs_source base;
	const uint8_t *buf;
	uint64_t asked;
};

static ssize_t mem_pread(struct mfs_source *s, void *buf, size_t len, uint64_t off)
{
	struct mem_source *m = (struct mem_source *)s;
	if (off >= s->size)
		return 0;
	if (len > s->size - off)
		len = (size_t)(s->size - off);
	memcpy(buf, m->buf + off, len);
	m->asked += len;
	return (ssize_t)len;
}

static int mem_fd(const struct mfs_source *s)
{
	return -1;
}

static int mem_stat(const struct mfs_source *s, struct stat *out)
{
	memset(out, 0, sizeof(*out));
	out->st_mode = S_IFREG | 0444;
	out->st_size = (off_t)s->size;
	out->st_nlink = 1;
	return 0;
}

static void mem_advise(struct mfs_source *s, bool random)
{
}

static void mem_close(struct mfs_source *s)
{
	free(s);
}

static const struct mfs_source_ops mem_ops = {
	.kind = "memory",
	.pread = mem_pread,
	.fd = mem_fd,
	.stat = mem_stat,
	.advise_random = mem_advise,
	.close = mem_close,
};

static struct mem_source *mem_new(const uint8_t *buf, uint64_t size)
{
	struct mem_source *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	m->base.ops = &mem_ops;
	m->base.size = size;
	m->buf = buf;
	return m;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	uint8_t *b = malloc((size_t)n);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* A safetensors model of one 256 KiB uint8 tensor of varied bytes. */
static const char *write_model(uint8_t **raw, size_t *rawlen)
{
	static const char hdr[] = "{\"t\":{\"dtype\":\"U8\",\"shape\":[262144],"
	                          "\"data_offsets\":[0,262144]}}";
	size_t hl = sizeof(hdr) - 1, pad = (8 - hl % 8) % 8, n = 8 + hl + pad + 262144;
	uint8_t *b = malloc(n);
	assert_non_null(b);
	uint64_t h = hl + pad;
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(h >> (8 * i));
	memcpy(b + 8, hdr, hl);
	memset(b + 8 + hl, ' ', pad);
	uint32_t x = 12345;
	for (size_t i = 8 + hl + pad; i < n; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = (uint8_t)(x >> 24);
	}
	const char *path = tmp_path("m.safetensors");
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
	*raw = b;
	*rawlen = n;
	return path;
}

static void any_source(void **state)
{
	uint8_t *raw;
	size_t rawlen, plen;
	char model[512], packp[520], err[512];
	snprintf(model, sizeof(model), "%s", write_model(&raw, &rawlen));
	snprintf(packp, sizeof(packp), "%s.mfs", model);
	struct mfs_pack_opts o = {.chunk_size = PK_MIN_CHUNK, .threads = 1};
	struct mfs_pack_result res;
	assert_int_equal(mfs_pack_create(model, packp, &o, &res, err, sizeof(err)), 0);
	uint8_t *pb = slurp(packp, &plen);

	struct mem_source *m = mem_new(pb, plen);
	struct mfs_pack *pk;
	assert_int_equal(pk_open(&pk, &m->base, "mem.mfs", err, sizeof(err)), 0);
	assert_int_equal(pk->n_files, 1);
	assert_int_equal(pk->files[0].size, rawlen);
	assert_true(pk->n_chunks >= 64);
	uint64_t at_open = m->asked;
	/* 16 bytes in the middle: one chunk's frame, not the pack. */
	uint8_t got[16];
	uint64_t off = rawlen / 2 + 3;
	assert_int_equal(pk_pread(pk, 0, got, sizeof(got), off), (ssize_t)sizeof(got));
	assert_memory_equal(got, raw + off, sizeof(got));
	uint64_t one = m->asked - at_open;
	assert_true(one > 0 && one <= 2 * PK_MIN_CHUNK);
	assert_true(at_open < plen / 2);
	pk_unref(pk);       /* closes the source */

	/* Cut short: refused with one line saying so, nothing leaked. */
	m = mem_new(pb, plen - 100);
	err[0] = '\0';
	assert_true(pk_open(&pk, &m->base, "cut.mfs", err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "cut.mfs"));
	assert_non_null(strstr(err, "truncated"));
	assert_null(strchr(err, '\n'));

	/* mfs_place_open_file(): the pack's own bytes, the layer left aside. */
	struct mfs_source *s;
	assert_int_equal(mfs_place_open_file(&s, packp, err, sizeof(err)), 0);
	assert_int_equal(s->size, plen);
	mfs_source_close(s);
	assert_true(mfs_place_claimed_read_only(packp));
	assert_true(mfs_place_claimed_read_only("http://127.0.0.1:1/x/model.onnx.mfs"));
	assert_false(mfs_place_claimed_read_only(model));
	free(pb);
	free(raw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(exponent_plane),
		cmocka_unit_test(sizes),
		cmocka_unit_test_setup_teardown(any_source, tmp_setup, tmp_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

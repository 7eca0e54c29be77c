/*
 * codec/pack/read.c — opening a pack: the tail, the seek table and the
 * manifest, each checked before anything is allocated from it; the chunk
 * reader and its bounded cache (pack.h, doc/pack.md).
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PK_AVX2 1
#endif

#include "core/core.h"
#include "core/crc32.h"
#include "pack/pack.h"
#include "source/place.h"

static size_t cache_bytes = MFS_PACK_CACHE_DEFAULT;

/* The fuzz build skips the CRCs, so that mutations reach the parsers
 * behind them; every check after them stands on its own anyway. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
static const bool skip_crc = true;
#else
static const bool skip_crc = false;
#endif

void mfs_pack_set_cache_size(size_t bytes)
{
	cache_bytes = bytes;
}

size_t pk_cache_size(void)
{
	return cache_bytes;
}

bool mfs_pack_path(const char *path)
{
	size_t n = strlen(path);
	return n > 4 && !strcmp(path + n - 4, ".mfs");
}

/* ------------------------------------------------------------ transforms */

unsigned pk_elem(unsigned t)
{
	switch (t) {
	case PK_T_G2:
	case PK_T_BF16:
		return 2;
	case PK_T_F32:
		return 4;
	default:
		return 1;
	}
}

/*
 * The sign bit moves to bit 0 so that the exponent fills the top byte
 * (bf16: 1+8+7 bits, fp32: 1+8+23): the exponent plane then holds one
 * field alone, which is what makes it compress (ZipNN's observation).
 */
void pk_group(uint8_t *dst, const uint8_t *src, size_t n, unsigned t)
{
	unsigned e = pk_elem(t);
	size_t k = n / e, i = 0;
	if (e == 1) {
		memcpy(dst, src, n);
		return;
	}
	if (e == 2) {
		bool rot = t == PK_T_BF16;
#ifdef __SSE2__
		/* 16 elements a step: rotate the 16-bit lanes, split each lane's
		 * low and high byte, pack them back to bytes. */
		const __m128i ff = _mm_set1_epi16(0xFF);
		for (; i + 16 <= k; i += 16) {
			__m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i));
			__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i + 16));
			if (rot) {
				a = _mm_or_si128(_mm_slli_epi16(a, 1), _mm_srli_epi16(a, 15));
				b = _mm_or_si128(_mm_slli_epi16(b, 1), _mm_srli_epi16(b, 15));
			}
			_mm_storeu_si128((__m128i *)(void *)(dst + i),
			                 _mm_packus_epi16(_mm_and_si128(a, ff), _mm_and_si128(b, ff)));
			_mm_storeu_si128((__m128i *)(void *)(dst + k + i),
			                 _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8)));
		}
#endif
		for (; i < k; i++) {
			uint16_t v = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
			if (rot)
				v = (uint16_t)(v << 1 | v >> 15);
			dst[i] = (uint8_t)v;
			dst[k + i] = (uint8_t)(v >> 8);
		}
		return;
	}
#ifdef __SSE2__
	/* 16 elements a step: rotate the 32-bit lanes, then for each plane
	 * shift its byte down, mask, and pack 32 -> 16 -> 8 bits (the values
	 * are below 256, so the saturating packs keep them). */
	const __m128i ff = _mm_set1_epi32(0xFF);
	for (; i + 16 <= k; i += 16) {
		__m128i v[4];
		for (int j = 0; j < 4; j++) {
			__m128i x = _mm_loadu_si128((const __m128i *)(const void *)(src + 4 * i + 16 * j));
			v[j] = _mm_or_si128(_mm_slli_epi32(x, 1), _mm_srli_epi32(x, 31));
		}
		for (int p = 0; p < 4; p++) {
			__m128i q[4];
			for (int j = 0; j < 4; j++)
				q[j] = _mm_and_si128(p == 0 ? v[j] : _mm_srli_epi32(v[j], 8 * p), ff);
			__m128i lo = _mm_packs_epi32(q[0], q[1]), hi = _mm_packs_epi32(q[2], q[3]);
			_mm_storeu_si128((__m128i *)(void *)(dst + (size_t)p * k + i),
			                 _mm_packus_epi16(lo, hi));
		}
	}
#endif
	for (; i < k; i++) {
		uint32_t v = mfs_get_le32(src + 4 * i);
		v = v << 1 | v >> 31;
		dst[i] = (uint8_t)v;
		dst[k + i] = (uint8_t)(v >> 8);
		dst[2 * k + i] = (uint8_t)(v >> 16);
		dst[3 * k + i] = (uint8_t)(v >> 24);
	}
}

/*
 * The inverse, on the read path of every grouped chunk.  AVX2 (checked at
 * run time) interleaves 32 elements a step, SSE2 (every x86-64) 16: unpack
 * the planes' bytes into lanes, then rotate the sign back; the scalar loop
 * does the rest and every other machine.  AVX2's unpacks work within each
 * 128-bit half, so its results are put back in order with a permute of the
 * halves.  Each step returns how many elements it did.
 */
#ifdef PK_AVX2
static bool have_avx2(void)
{
	static int v = -1;
	if (v < 0)
		v = __builtin_cpu_supports("avx2") ? 1 : 0;
	return v;
}

__attribute__((target("avx2")))
static size_t ungroup2_avx2(uint8_t *dst, const uint8_t *lo, const uint8_t *hi, size_t k,
                            bool rot)
{
	size_t i = 0;
	for (; i + 32 <= k; i += 32) {
		__m256i l = _mm256_loadu_si256((const __m256i *)(const void *)(lo + i));
		__m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(hi + i));
		__m256i a = _mm256_unpacklo_epi8(l, h), b = _mm256_unpackhi_epi8(l, h);
		if (rot) {
			a = _mm256_or_si256(_mm256_srli_epi16(a, 1), _mm256_slli_epi16(a, 15));
			b = _mm256_or_si256(_mm256_srli_epi16(b, 1), _mm256_slli_epi16(b, 15));
		}
		_mm256_storeu_si256((__m256i *)(void *)(dst + 2 * i),
		                    _mm256_permute2x128_si256(a, b, 0x20));
		_mm256_storeu_si256((__m256i *)(void *)(dst + 2 * i + 32),
		                    _mm256_permute2x128_si256(a, b, 0x31));
	}
	return i;
}

__attribute__((target("avx2")))
static __m256i rot32_avx2(__m256i v)
{
	return _mm256_or_si256(_mm256_srli_epi32(v, 1), _mm256_slli_epi32(v, 31));
}

__attribute__((target("avx2")))
static size_t ungroup4_avx2(uint8_t *dst, const uint8_t *p0, const uint8_t *p1,
                            const uint8_t *p2, const uint8_t *p3, size_t k)
{
	size_t i = 0;
	for (; i + 32 <= k; i += 32) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(p0 + i));
		__m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(p1 + i));
		__m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(p2 + i));
		__m256i d = _mm256_loadu_si256((const __m256i *)(const void *)(p3 + i));
		__m256i ab_lo = _mm256_unpacklo_epi8(a, b), ab_hi = _mm256_unpackhi_epi8(a, b);
		__m256i cd_lo = _mm256_unpacklo_epi8(c, d), cd_hi = _mm256_unpackhi_epi8(c, d);
		/* q0: elements 0-3 | 16-19, q1: 4-7 | 20-23, q2: 8-11 | 24-27,
		 * q3: 12-15 | 28-31 */
		__m256i q0 = rot32_avx2(_mm256_unpacklo_epi16(ab_lo, cd_lo));
		__m256i q1 = rot32_avx2(_mm256_unpackhi_epi16(ab_lo, cd_lo));
		__m256i q2 = rot32_avx2(_mm256_unpacklo_epi16(ab_hi, cd_hi));
		__m256i q3 = rot32_avx2(_mm256_unpackhi_epi16(ab_hi, cd_hi));
		uint8_t *o = dst + 4 * i;
		_mm256_storeu_si256((__m256i *)(void *)o, _mm256_permute2x128_si256(q0, q1, 0x20));
		_mm256_storeu_si256((__m256i *)(void *)(o + 32), _mm256_permute2x128_si256(q2, q3, 0x20));
		_mm256_storeu_si256((__m256i *)(void *)(o + 64), _mm256_permute2x128_si256(q0, q1, 0x31));
		_mm256_storeu_si256((__m256i *)(void *)(o + 96), _mm256_permute2x128_si256(q2, q3, 0x31));
	}
	return i;
}
#endif

static void ungroup2(uint8_t *dst, const uint8_t *lo, const uint8_t *hi, size_t k, bool rot)
{
	size_t i = 0;
#ifdef PK_AVX2
	if (have_avx2())
		i = ungroup2_avx2(dst, lo, hi, k, rot);
#endif
#ifdef __SSE2__
	for (; i + 16 <= k; i += 16) {
		__m128i l = _mm_loadu_si128((const __m128i *)(const void *)(lo + i));
		__m128i h = _mm_loadu_si128((const __m128i *)(const void *)(hi + i));
		__m128i a = _mm_unpacklo_epi8(l, h), b = _mm_unpackhi_epi8(l, h);
		if (rot) {
			a = _mm_or_si128(_mm_srli_epi16(a, 1), _mm_slli_epi16(a, 15));
			b = _mm_or_si128(_mm_srli_epi16(b, 1), _mm_slli_epi16(b, 15));
		}
		_mm_storeu_si128((__m128i *)(void *)(dst + 2 * i), a);
		_mm_storeu_si128((__m128i *)(void *)(dst + 2 * i + 16), b);
	}
#endif
	for (; i < k; i++) {
		uint16_t v = (uint16_t)(lo[i] | hi[i] << 8);
		if (rot)
			v = (uint16_t)(v >> 1 | v << 15);
		dst[2 * i] = (uint8_t)v;
		dst[2 * i + 1] = (uint8_t)(v >> 8);
	}
}

#ifdef __SSE2__
static __m128i rot32(__m128i v)
{
	return _mm_or_si128(_mm_srli_epi32(v, 1), _mm_slli_epi32(v, 31));
}
#endif

static void ungroup4(uint8_t *dst, const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                     const uint8_t *p3, size_t k)
{
	size_t i = 0;
#ifdef PK_AVX2
	if (have_avx2())
		i = ungroup4_avx2(dst, p0, p1, p2, p3, k);
#endif
#ifdef __SSE2__
	for (; i + 16 <= k; i += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(const void *)(p0 + i));
		__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p1 + i));
		__m128i c = _mm_loadu_si128((const __m128i *)(const void *)(p2 + i));
		__m128i d = _mm_loadu_si128((const __m128i *)(const void *)(p3 + i));
		__m128i ab_lo = _mm_unpacklo_epi8(a, b), ab_hi = _mm_unpackhi_epi8(a, b);
		__m128i cd_lo = _mm_unpacklo_epi8(c, d), cd_hi = _mm_unpackhi_epi8(c, d);
		uint8_t *o = dst + 4 * i;
		_mm_storeu_si128((__m128i *)(void *)o, rot32(_mm_unpacklo_epi16(ab_lo, cd_lo)));
		_mm_storeu_si128((__m128i *)(void *)(o + 16), rot32(_mm_unpackhi_epi16(ab_lo, cd_lo)));
		_mm_storeu_si128((__m128i *)(void *)(o + 32), rot32(_mm_unpacklo_epi16(ab_hi, cd_hi)));
		_mm_storeu_si128((__m128i *)(void *)(o + 48), rot32(_mm_unpackhi_epi16(ab_hi, cd_hi)));
	}
#endif
	for (; i < k; i++) {
		uint32_t v = (uint32_t)p0[i] | (uint32_t)p1[i] << 8 | (uint32_t)p2[i] << 16 |
		             (uint32_t)p3[i] << 24;
		mfs_put_le32(dst + 4 * i, v >> 1 | v << 31);
	}
}

void pk_ungroup(uint8_t *dst, const uint8_t *src, size_t n, unsigned t)
{
	unsigned e = pk_elem(t);
	size_t k = n / e;
	if (e == 1)
		memcpy(dst, src, n);
	else if (e == 2)
		ungroup2(dst, src, src + k, k, t == PK_T_BF16);
	else
		ungroup4(dst, src, src + k, src + 2 * k, src + 3 * k, k);
}

static bool unhex(uint8_t sha[32], const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (int i = 0; i < 64; i++) {
		int c = s[i], v;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else
			return false;
		if (i & 1)
			sha[i / 2] |= (uint8_t)v;
		else
			sha[i / 2] = (uint8_t)(v << 4);
	}
	return true;
}

/* ------------------------------------------------------------ opening */

static void scratch_free(struct pk_scratch *sc);

/* A skippable frame at `off` with magic `magic`: its payload, malloc'd. */
static int read_frame(struct mfs_pack *pk, uint64_t off, uint32_t magic, const char *what,
                      uint8_t **out, uint32_t *len, char *err, size_t errlen)
{
	uint8_t h[8];
	*out = NULL;
	if (off > pk->size || pk->size - off < 8)
		return mfs_errf(err, errlen, -EUCLEAN, pk->display, "the %s lies outside the pack "
		                "(offset %llu of %llu bytes)", what, (unsigned long long)off,
		                (unsigned long long)pk->size);
	int rc = mfs_source_read(pk->src, h, 8, off);
	if (rc < 0)
		return mfs_errf(err, errlen, rc, pk->display, "cannot read the %s: %s", what,
		                strerror(-rc));
	if (mfs_get_le32(h) != magic)
		return mfs_errf(err, errlen, -EUCLEAN, pk->display, "no %s at offset %llu (bad "
		                "magic)", what, (unsigned long long)off);
	uint32_t n = mfs_get_le32(h + 4);
	if (n > PK_MAX_INDEX || n > pk->size - off - 8)
		return mfs_errf(err, errlen, -EUCLEAN, pk->display, "the %s's length %u runs past "
		                "the end of the pack", what, n);
	uint8_t *p = malloc(n ? n : 1);
	if (!p)
		return mfs_errf(err, errlen, -ENOMEM, pk->display, "out of memory");
	if (n && (rc = mfs_source_read(pk->src, p, n, off + 8)) < 0) {
		free(p);
		return mfs_errf(err, errlen, rc, pk->display, "cannot read the %s: %s", what,
		                strerror(-rc));
	}
	*out = p;
	*len = n;
	return 0;
}

static int parse_seek(struct mfs_pack *pk, const uint8_t *p, uint32_t len, char *err,
                      size_t errlen)
{
	if (len < PK_SEEK_HDR || memcmp(p, "MFSSEEK\0", 8))
		return mfs_errf(err, errlen, -EUCLEAN, pk->display, "bad seek table header");
	uint32_t nf = mfs_get_le32(p + 8), nc = mfs_get_le32(p + 12);
	if (nf == 0 || nf > PK_MAX_FILES)
		return mfs_errf(err, errlen, -EUCLEAN, pk->display, "seek table: %u files (1 to %u "
		                "allowed)", nf, PK_MAX_FILES);
	if ((uint64_t)PK_SEEK_HDR + (uint64_t)nf * PK_SEEK_FILE + (uint64_t)nc * PK_SEEK_CHUNK != len)
		return mfs_errf(err, errlen, -EUCLEAN, pk->display, "seek table: %u files and %u "
		                "chunks do not fill its %u bytes", nf, nc, len);
	pk->files = calloc(nf, sizeof(*pk->files));
	pk->chunks = calloc(nc ? nc : 1, sizeof(*pk->chunks));
	if (!pk->files || !pk->chunks)
		return mfs_errf(err, errlen, -ENOMEM, pk->display, "out of memory");
	pk->n_files = nf;
	pk->n_chunks = nc;
	const uint8_t *c = p + PK_SEEK_HDR + (size_t)nf * PK_SEEK_FILE;
	for (uint32_t i = 0; i < nc; i++, c += PK_SEEK_CHUNK) {
		struct pk_chunk *k = &pk->chunks[i];
		k->frame_off = mfs_get_le64(c);
		k->frame_len = mfs_get_le32(c + 8);
		k->raw_len = mfs_get_le32(c + 12);
		k->transform = c[16];
		uint64_t lo = 8 + PK_HEAD_LEN;
		if (k->frame_off < lo || k->frame_off > pk->data_end ||
		    k->frame_len > pk->data_end - k->frame_off || k->frame_len == 0)
			return mfs_errf(err, errlen, -EUCLEAN, pk->display, "seek table: chunk %u's "
			                "frame (%llu + %u) lies outside the pack's frames", i,
			                (unsigned long long)k->frame_off, k->frame_len);
		if (k->raw_len == 0 || k->raw_len > PK_MAX_CHUNK)
			return mfs_errf(err, errlen, -EUCLEAN, pk->display, "seek table: chunk %u "
			                "declares %u bytes (1 to %u allowed)", i, k->raw_len, PK_MAX_CHUNK);
		if (k->transform > PK_T_MAX || k->raw_len % pk_elem(k->transform))
			return mfs_errf(err, errlen, -EUCLEAN, pk->display, "seek table: chunk %u has "
			                "an unknown arrangement %u", i, k->transform);
		/* A frame never needs more than zstd's bound of its content plus a
		 * frame header per plane: anything bigger is not ours. */
		if (k->frame_len > ZSTD_compressBound(k->raw_len) + 1024)
			return mfs_errf(err, errlen, -EUCLEAN, pk->display, "seek table: chunk %u's "
			                "frame is bigger than its content could need", i);
	}
	const uint8_t *f = p + PK_SEEK_HDR;
	uint64_t next = 0;
	for (uint32_t i = 0; i < nf; i++, f += PK_SEEK_FILE) {
		struct pk_file *pf = &pk->files[i];
		pf->size = mfs_get_le64(f);
		pf->first = mfs_get_le32(f + 8);
		pf->n = mfs_get_le32(f + 12);
		/* Files own consecutive runs of chunks, in order. */
		if (pf->first != next || pf->n > nc - pf->first)
			return mfs_errf(err, errlen, -EUCLEAN, pk->display, "seek table: file %u's "
			                "chunks %u + %u are not the next in the table", i, pf->first, pf->n);
		next = (uint64_t)pf->first + pf->n;
		uint64_t off = 0;
		for (uint32_t j = pf->first; j < pf->first + pf->n; j++) {
			pk->chunks[j].orig_off = off;
			off += pk->chunks[j].raw_len;
		}
		if (off != pf->size)
			return mfs_errf(err, errlen, -EUCLEAN, pk->display, "seek table: file %u's "
			                "chunks hold %llu bytes, not its %llu", i, (unsigned long long)off,
			                (unsigned long long)pf->size);
		pk->orig_total += pf->size;
	}
	if (next != nc)
		return mfs_errf(err, errlen, -EUCLEAN, pk->display, "seek table: %llu chunks "
		                "belong to no file", (unsigned long long)(nc - next));
	return 0;
}

/* A path as the manifest may name a file: relative, no "..", ".", or
 * empty component, no NUL, bounded. */
static bool path_ok(const char *s, size_t n)
{
	return n > 0 && n < 4096 && strlen(s) == n && !mfs_place_path_fault(s);
}

static char *dupn(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int parse_manifest(struct mfs_pack *pk, const uint8_t *p, uint32_t len, char *err,
                          size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &je);
	if (!root || !json_is_object(root)) {
		json_decref(root);
		return mfs_errf(err, errlen, -EUCLEAN, pk->display, "manifest: not a JSON object "
		                "(%s)", je.text);
	}
	int rc = -EUCLEAN;
	const char *why = NULL;
	json_t *files = json_object_get(root, "files");
	json_t *tens = json_object_get(root, "tensors");
	json_t *opt = json_object_get(root, "options");
	const char *fmt = json_string_value(json_object_get(root, "format"));
	if (!fmt || !json_is_array(files) || !json_is_object(opt)) {
		why = "no format, files or options";
		goto out;
	}
	if (json_array_size(files) != pk->n_files) {
		why = "its files are not the seek table's";
		goto out;
	}
	pk->format = strdup(fmt);
	pk->level = (int)json_integer_value(json_object_get(opt, "level"));
	json_int_t cs = json_integer_value(json_object_get(opt, "chunk_size"));
	pk->chunk_size = cs > 0 && cs <= PK_MAX_CHUNK ? (uint32_t)cs : 0;
	pk->plain = json_is_true(json_object_get(opt, "plain"));
	for (uint32_t i = 0; i < pk->n_files; i++) {
		json_t *f = json_array_get(files, i);
		json_t *jp = json_object_get(f, "path");
		const char *path = json_string_value(jp);
		struct pk_file *pf = &pk->files[i];
		if (!path || !path_ok(path, json_string_length(jp))) {
			why = "a file's path is missing or not a plain relative path";
			goto out;
		}
		if ((uint64_t)json_integer_value(json_object_get(f, "size")) != pf->size) {
			why = "a file's size is not the seek table's";
			goto out;
		}
		/* null (since 1.1): an appending commit changed the file and
		 * hashed only what it wrote (doc/pack.md, "Appending"). */
		json_t *fs = json_object_get(f, "sha256");
		pf->sha_known = !json_is_null(fs);
		if (pf->sha_known && !unhex(pf->sha256, json_string_value(fs))) {
			why = "a file's sha256 is not 64 hex digits or null";
			goto out;
		}
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(pk->files[j].path, path)) {
				why = "two files have the same path";
				goto out;
			}
		pf->path = strdup(path);
		pf->mode = (uint32_t)json_integer_value(json_object_get(f, "mode")) & 07777;
		pf->mtime_sec = json_integer_value(json_object_get(f, "mtime_sec"));
		json_int_t ns = json_integer_value(json_object_get(f, "mtime_nsec"));
		pf->mtime_nsec = ns >= 0 && ns < 1000000000 ? (long)ns : 0;
		if (!pf->path || !pk->format) {
			rc = -ENOMEM;
			why = "out of memory";
			goto out;
		}
	}
	size_t nt = json_is_array(tens) ? json_array_size(tens) : 0;
	pk->tensors = calloc(nt ? nt : 1, sizeof(*pk->tensors));
	if (!pk->tensors) {
		rc = -ENOMEM;
		why = "out of memory";
		goto out;
	}
	for (size_t i = 0; i < nt; i++) {
		json_t *t = json_array_get(tens, i);
		struct pk_tensor *pt = &pk->tensors[i];
		const char *name = json_string_value(json_object_get(t, "name"));
		if (!name || !unhex(pt->sha256, json_string_value(json_object_get(t, "sha256")))) {
			why = "a tensor has no name or no sha256";
			goto out;
		}
		pt->name = dupn(name);
		pk->n_tensors = (uint32_t)(i + 1);
		if (!pt->name) {
			rc = -ENOMEM;
			why = "out of memory";
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(root);
	if (rc < 0)
		return mfs_errf(err, errlen, rc, pk->display, "manifest: %s", why);
	return 0;
}

static int cache_init(struct mfs_pack *pk)
{
	uint32_t biggest = 0;
	for (uint32_t i = 0; i < pk->n_chunks; i++)
		if (pk->chunks[i].raw_len > biggest)
			biggest = pk->chunks[i].raw_len;
	size_t n = biggest ? pk_cache_size() / biggest : 0;
	if (n < 2)
		n = 2;          /* a read across a chunk boundary */
	if (n > pk->n_chunks)
		n = pk->n_chunks ? pk->n_chunks : 1;
	pk->slots = calloc(n, sizeof(*pk->slots));
	if (!pk->slots)
		return -ENOMEM;
	pk->n_slots = n;
	for (size_t i = 0; i < n; i++)
		pk->slots[i].chunk = UINT32_MAX;
	return pthread_mutex_init(&pk->lock, NULL) ? -ENOMEM : 0;
}

int pk_open(struct mfs_pack **out, struct mfs_source *src, const char *display, char *err,
            size_t errlen)
{
	*out = NULL;
	struct mfs_pack *pk = calloc(1, sizeof(*pk));
	if (!pk) {
		mfs_source_close(src);
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	}
	pk->src = src;
	pk->refs = 1;
	pk->display = strdup(display);
	uint8_t *seek = NULL, *mani = NULL, *tail = NULL, *head = NULL;
	uint32_t seek_len, mani_len, tail_len, head_len;
	int rc;
	if (!pk->display) {
		rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
		goto fail;
	}
	/* The size as the source was opened: a remote pack's is the server's
	 * word, a local one's the file's; every offset below is checked
	 * against it, and a read past the real end fails with -EIO. */
	pk->size = src->size;
	pk->data_end = pk->size;
	if (pk->size < 2 * 8 + PK_HEAD_LEN + PK_TAIL_LEN) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "too short for a pack (%llu bytes; "
		              "truncated?)", (unsigned long long)pk->size);
		goto fail;
	}
	if ((rc = read_frame(pk, 0, PK_MAGIC_HEAD, "pack header", &head, &head_len, err,
	                     errlen)) < 0)
		goto fail;
	if (head_len != PK_HEAD_LEN || memcmp(head, "MFSPACK\0", 8)) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "not a modelfs pack (bad header)");
		goto fail;
	}
	pk->major = mfs_get_le16(head + 8);
	pk->minor = mfs_get_le16(head + 10);
	if (pk->major > MFS_PACK_MAJOR) {
		rc = mfs_errf(err, errlen, -EPROTONOSUPPORT, display, "pack format version %u.%u "
		              "is newer than this modelfs reads (%u.x): upgrade modelfs", pk->major,
		              pk->minor, MFS_PACK_MAJOR);
		goto fail;
	}
	if ((rc = read_frame(pk, pk->size - 8 - PK_TAIL_LEN, PK_MAGIC_TAIL, "pack tail", &tail,
	                     &tail_len, err, errlen)) < 0) {
		mfs_errf(err, errlen, rc, display, "no pack tail at its end (truncated?)");
		goto fail;
	}
	if (tail_len != PK_TAIL_LEN || memcmp(tail, "MFSTAIL\0", 8)) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "bad pack tail (truncated?)");
		goto fail;
	}
	uint64_t seek_off = mfs_get_le64(tail + 16), mani_off = mfs_get_le64(tail + 24);
	uint32_t seek_crc = mfs_get_le32(tail + 32), mani_crc = mfs_get_le32(tail + 36);
	if (seek_off < 8 + PK_HEAD_LEN || seek_off > mani_off ||
	    mani_off > pk->size - 8 - PK_TAIL_LEN) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "the tail's seek table and manifest "
		              "offsets are out of order or outside the pack");
		goto fail;
	}
	pk->data_end = seek_off;
	if ((rc = read_frame(pk, seek_off, PK_MAGIC_SEEK, "seek table", &seek, &seek_len, err,
	                     errlen)) < 0)
		goto fail;
	if (!skip_crc && mfs_crc32(0, seek, seek_len) != seek_crc) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "the seek table's CRC does not match");
		goto fail;
	}
	if ((rc = read_frame(pk, mani_off, PK_MAGIC_MANI, "manifest", &mani, &mani_len, err,
	                     errlen)) < 0)
		goto fail;
	if (!skip_crc && mfs_crc32(0, mani, mani_len) != mani_crc) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "the manifest's CRC does not match");
		goto fail;
	}
	if ((rc = parse_seek(pk, seek, seek_len, err, errlen)) < 0)
		goto fail;
	if ((rc = parse_manifest(pk, mani, mani_len, err, errlen)) < 0)
		goto fail;
	if ((rc = cache_init(pk)) < 0) {
		mfs_errf(err, errlen, rc, display, "out of memory");
		goto fail;
	}
	free(head);
	free(tail);
	free(seek);
	free(mani);
	*out = pk;
	return 0;
fail:
	free(head);
	free(tail);
	free(seek);
	free(mani);
	pk_unref(pk);
	return rc;
}

void pk_ref(struct mfs_pack *pk)
{
	__atomic_add_fetch(&pk->refs, 1, __ATOMIC_RELAXED);
}

void pk_unref(struct mfs_pack *pk)
{
	if (!pk || __atomic_sub_fetch(&pk->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	while (pk->spare) {
		struct pk_scratch *sc = pk->spare;
		pk->spare = sc->next;
		scratch_free(sc);
	}
	if (pk->slots) {
		for (size_t i = 0; i < pk->n_slots; i++)
			free(pk->slots[i].buf);
		free(pk->slots);
		pthread_mutex_destroy(&pk->lock);
	}
	for (uint32_t i = 0; pk->files && i < pk->n_files; i++)
		free(pk->files[i].path);
	for (uint32_t i = 0; i < pk->n_tensors; i++)
		free(pk->tensors[i].name);
	free(pk->tensors);
	free(pk->files);
	free(pk->chunks);
	free(pk->format);
	free(pk->display);
	mfs_source_close(pk->src);
	free(pk);
}

int pk_find(const struct mfs_pack *pk, const char *path)
{
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	for (uint32_t i = 0; i < pk->n_files; i++)
		if (!strcmp(pk->files[i].path, path))
			return (int)i;
	return -1;
}

/* ------------------------------------------------------------ chunks */

/* Grow *buf to at least n bytes (n is bounded by the checks of pk_open). */
static int grow(uint8_t **buf, size_t *cap, size_t n)
{
	if (*cap >= n)
		return 0;
	uint8_t *p = malloc(n);
	if (!p)
		return -ENOMEM;
	free(*buf);
	*buf = p;
	*cap = n;
	return 0;
}

static void scratch_free(struct pk_scratch *sc)
{
	if (!sc)
		return;
	ZSTD_freeDCtx(sc->dctx);
	free(sc->frame);
	free(sc->tmp);
	free(sc->out);
	free(sc);
}

static struct pk_scratch *scratch_get(struct mfs_pack *pk)
{
	pthread_mutex_lock(&pk->lock);
	struct pk_scratch *sc = pk->spare;
	if (sc) {
		pk->spare = sc->next;
		pk->n_spare--;
	}
	pthread_mutex_unlock(&pk->lock);
	if (sc)
		return sc;
	sc = calloc(1, sizeof(*sc));
	if (sc && !(sc->dctx = ZSTD_createDCtx())) {
		free(sc);
		sc = NULL;
	}
	return sc;
}

/* Called with pk->lock held. */
static void scratch_put_locked(struct mfs_pack *pk, struct pk_scratch *sc)
{
	if (pk->n_spare >= 16) {
		scratch_free(sc);
		return;
	}
	sc->next = pk->spare;
	pk->spare = sc;
	pk->n_spare++;
}

int pk_chunk_read_with(struct mfs_pack *pk, struct pk_scratch *sc, uint32_t i, uint8_t *out,
                       char *err, size_t errlen)
{
	const struct pk_chunk *k = &pk->chunks[i];
	if (grow(&sc->frame, &sc->frame_cap, k->frame_len) < 0 ||
	    (k->transform != PK_T_RAW && grow(&sc->tmp, &sc->tmp_cap, k->raw_len) < 0))
		return mfs_errf(err, errlen, -ENOMEM, pk->display, "out of memory");
	uint8_t *tmp = k->transform == PK_T_RAW ? out : sc->tmp;
	int rc = mfs_source_read(pk->src, sc->frame, k->frame_len, k->frame_off);
	if (rc < 0)
		return mfs_errf(err, errlen, rc, pk->display, "chunk %u: cannot read its frame: %s",
		                i, strerror(-rc));
	/* The output is the declared size and no more: a frame that would
	 * decompress to more fails here instead of growing anything. */
	size_t n = ZSTD_decompressDCtx(sc->dctx, tmp, k->raw_len, sc->frame, k->frame_len);
	if (ZSTD_isError(n))
		return mfs_errf(err, errlen, -EIO, pk->display, "chunk %u: %s%s", i,
		                ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ?
		                "decompresses to more than its declared size: " : "",
		                ZSTD_getErrorName(n));
	if (n != k->raw_len)
		return mfs_errf(err, errlen, -EIO, pk->display, "chunk %u: decompresses to %zu "
		                "bytes, not its declared %u", i, n, k->raw_len);
	if (tmp != out)
		pk_ungroup(out, tmp, k->raw_len, k->transform);
	return 0;
}

int pk_chunk_read(struct mfs_pack *pk, uint32_t i, uint8_t *out, char *err, size_t errlen)
{
	struct pk_scratch *sc = scratch_get(pk);
	if (!sc)
		return mfs_errf(err, errlen, -ENOMEM, pk->display, "out of memory");
	int rc = pk_chunk_read_with(pk, sc, i, out, err, errlen);
	pthread_mutex_lock(&pk->lock);
	scratch_put_locked(pk, sc);
	pthread_mutex_unlock(&pk->lock);
	return rc;
}

/* The chunk of file `f` holding byte `off` (< its size). */
static uint32_t chunk_at(const struct mfs_pack *pk, const struct pk_file *pf, uint64_t off)
{
	uint32_t lo = pf->first, hi = pf->first + pf->n - 1;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo + 1) / 2;
		if (pk->chunks[mid].orig_off <= off)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* Copy from chunk `c` through the cache; 0 or -errno. */
static int cached_copy(struct mfs_pack *pk, uint32_t c, void *dst, size_t len, uint32_t at)
{
	pthread_mutex_lock(&pk->lock);
	for (size_t s = 0; s < pk->n_slots; s++)
		if (pk->slots[s].chunk == c) {
			pk->slots[s].used = ++pk->tick;
			memcpy(dst, pk->slots[s].buf + at, len);
			pthread_mutex_unlock(&pk->lock);
			return 0;
		}
	pthread_mutex_unlock(&pk->lock);

	/* A miss decompresses outside the lock, so that readers of other
	 * chunks go on in parallel; two readers of one chunk may both
	 * decompress it, which costs time but no memory beyond theirs.  The
	 * buffers come from the scratch and go back to it (the victim's), so
	 * that the steady state allocates nothing. */
	const struct pk_chunk *k = &pk->chunks[c];
	struct pk_scratch *sc = scratch_get(pk);
	char err[512];
	if (!sc)
		return -ENOMEM;
	/* A read of the whole chunk (unpack, verify, a mount's 1 MiB reads of
	 * a tensor: tensors start chunks) decompresses straight into the
	 * reader's buffer and leaves the cache alone: nobody reads those bytes
	 * again through it (the kernel keeps a mount's pages), so caching
	 * them would only cost a copy and evict chunks that partial reads
	 * share. */
	bool whole = at == 0 && len == k->raw_len;
	int rc = whole ? 0 : grow(&sc->out, &sc->out_cap, k->raw_len);
	if (rc == 0)
		rc = pk_chunk_read_with(pk, sc, c, whole ? dst : sc->out, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "%s: out of memory", pk->display);
	pthread_mutex_lock(&pk->lock);
	if (rc == 0 && whole) {
		pk->decompressed++;
		scratch_put_locked(pk, sc);
		pthread_mutex_unlock(&pk->lock);
		return 0;
	}
	if (rc < 0) {
		/* The reader above sees EIO; the why is kept for whoever reports
		 * it (verify, unpack: pk_last_error). */
		snprintf(pk->last_err, sizeof(pk->last_err), "%s", err);
		scratch_put_locked(pk, sc);
		pthread_mutex_unlock(&pk->lock);
		return -EIO;
	}
	memcpy(dst, sc->out + at, len);
	pk->decompressed++;
	size_t victim = 0;
	bool present = false;
	for (size_t s = 0; s < pk->n_slots; s++) {
		if (pk->slots[s].chunk == c)
			present = true;
		if (pk->slots[s].used < pk->slots[victim].used)
			victim = s;
	}
	if (!present) {
		struct pk_slot *v = &pk->slots[victim];
		uint8_t *old = v->buf;
		size_t old_cap = v->cap;
		v->buf = sc->out;
		v->cap = sc->out_cap;
		v->chunk = c;
		v->used = ++pk->tick;
		sc->out = old;
		sc->out_cap = old ? old_cap : 0;
	}
	scratch_put_locked(pk, sc);
	pthread_mutex_unlock(&pk->lock);
	return 0;
}

void pk_last_error(struct mfs_pack *pk, char *out, size_t len)
{
	pthread_mutex_lock(&pk->lock);
	snprintf(out, len, "%s", pk->last_err);
	pthread_mutex_unlock(&pk->lock);
}

ssize_t pk_pread(struct mfs_pack *pk, uint32_t f, void *buf, size_t len, uint64_t off)
{
	const struct pk_file *pf = &pk->files[f];
	if (off >= pf->size)
		return 0;
	if (len > pf->size - off)
		len = (size_t)(pf->size - off);
	size_t done = 0;
	uint32_t c = chunk_at(pk, pf, off);
	while (done < len) {
		const struct pk_chunk *k = &pk->chunks[c];
		uint64_t at = off + done - k->orig_off;
		size_t n = k->raw_len - (size_t)at;
		if (n > len - done)
			n = len - done;
		int rc = cached_copy(pk, c, (uint8_t *)buf + done, n, (uint32_t)at);
		if (rc < 0)
			return done ? (ssize_t)done : rc;
		done += n;
		c++;
	}
	return (ssize_t)done;
}

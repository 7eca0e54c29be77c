/*
 * codec/core/crc32.c — CRC-32: carry-less multiplication where the CPU has it,
 * else a table, slicing by 8.
 *
 * Every journal record and redo-log patch carries a CRC-32 of its bytes, and
 * a staged chunk is checked each time it is paged back in, so the checksum
 * runs over every staged byte at least twice, and over a commit's patches
 * twice more (written, read back).  A byte-at-a-time table does ~0.5 GB/s;
 * slicing by 8 (eight 256-entry tables, 8 KiB, built once) ~2 GB/s; folding
 * with PCLMULQDQ, which x86-64 CPUs have had since 2010, several times that,
 * so that the CRC of a 4 MiB patch costs a fraction of a millisecond.  Our
 * own code rather than zlib's so the codec needs no further library.  The
 * two ways give the same values bit for bit (tests/unit/test_crc32.c checks
 * them against each other, a bitwise reference and known vectors).
 *
 * HOW IT WORKS (table): table[0] is the classic reflected table for
 * 0xEDB88320.  table[k][b] is the CRC of byte b followed by k zero bytes, so
 * eight input bytes can be folded in with eight independent lookups XORed
 * together.
 *
 * HOW IT WORKS (folding; Gopal et al., "Fast CRC Computation for Generic
 * Polynomials Using PCLMULQDQ Instruction", Intel, 2009): a CRC is the
 * remainder of the message polynomial modulo P.  Four 128-bit accumulators
 * take the first 64 bytes (the running CRC XORed into the first four bytes,
 * as a table update would); each further 64 bytes, an accumulator's two 64-bit
 * halves are carry-less multiplied by x^(512+32) and x^(512-32) mod P (K1,
 * K2: moved 512 bits on, reduced) and the next 16 input bytes are XORed in.
 * The four are then folded into one by 128-bit steps (K3, K4), as are any
 * further whole 16-byte blocks.  The 16 bytes left in the accumulator have
 * the same remainder as everything folded so far, so the table finishes:
 * those 16 bytes from a zero register, then the tail of under 16 bytes.
 * In the bit-reflected domain every constant is reflect32(x^n mod P) << 1;
 * they are spelled out below, each recomputed from that definition.
 */
#include <pthread.h>
#include <string.h>

#include "core/crc32.h"

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int k = 1; k < 8; k++)
			table[k][i] = (table[k - 1][i] >> 8) ^ table[0][table[k - 1][i] & 0xff];
}

/* Continue the raw register `crc` (not inverted) over `len` bytes. */
static uint32_t crc_table(uint32_t crc, const unsigned char *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		/* Little-endian load; the journal is only written on such hosts,
		 * and memcpy keeps this free of alignment assumptions anyway. */
		uint32_t lo, hi;
		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		lo = __builtin_bswap32(lo);
		hi = __builtin_bswap32(hi);
#endif
		lo ^= crc;
		crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^
		      table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
		      table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
		      table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define HAVE_CLMUL 1
#include <immintrin.h>

/* Folding moves bits on by 512 (K1, K2) or 128 (K3, K4); see the top. */
#define K1 0x154442bd4ull       /* reflect32(x^(512+32) mod P) << 1 */
#define K2 0x1c6e41596ull       /* reflect32(x^(512-32) mod P) << 1 */
#define K3 0x1751997d0ull       /* reflect32(x^(128+32) mod P) << 1 */
#define K4 0x0ccaa009eull       /* reflect32(x^(128-32) mod P) << 1 */

/* x moved on past the next 128 (k = K3K4) or 512 (K1K2) bits, plus `next`. */
__attribute__((target("pclmul,sse2")))
static inline __m128i fold(__m128i x, __m128i k, __m128i next)
{
	__m128i lo = _mm_clmulepi64_si128(x, k, 0x00);  /* x.lo * k.lo */
	__m128i hi = _mm_clmulepi64_si128(x, k, 0x11);  /* x.hi * k.hi */
	return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

/* The raw register after `len` bytes (len >= 64), folding. */
__attribute__((target("pclmul,sse2")))
static uint32_t crc_clmul(uint32_t crc, const unsigned char *p, size_t len)
{
	const __m128i k12 = _mm_set_epi64x((long long)K2, (long long)K1);
	const __m128i k34 = _mm_set_epi64x((long long)K4, (long long)K3);
	__m128i x0 = _mm_loadu_si128((const __m128i *)(const void *)p);
	__m128i x1 = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
	__m128i x2 = _mm_loadu_si128((const __m128i *)(const void *)(p + 32));
	__m128i x3 = _mm_loadu_si128((const __m128i *)(const void *)(p + 48));
	x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)crc));
	p += 64;
	len -= 64;
	while (len >= 64) {
		x0 = fold(x0, k12, _mm_loadu_si128((const __m128i *)(const void *)p));
		x1 = fold(x1, k12, _mm_loadu_si128((const __m128i *)(const void *)(p + 16)));
		x2 = fold(x2, k12, _mm_loadu_si128((const __m128i *)(const void *)(p + 32)));
		x3 = fold(x3, k12, _mm_loadu_si128((const __m128i *)(const void *)(p + 48)));
		p += 64;
		len -= 64;
	}
	x0 = fold(x0, k34, x1);
	x0 = fold(x0, k34, x2);
	x0 = fold(x0, k34, x3);
	while (len >= 16) {
		x0 = fold(x0, k34, _mm_loadu_si128((const __m128i *)(const void *)p));
		p += 16;
		len -= 16;
	}
	unsigned char rest[16];
	_mm_storeu_si128((__m128i *)(void *)rest, x0);
	return crc_table(crc_table(0, rest, 16), p, len);
}
#endif

static uint32_t (*crc_fast)(uint32_t, const unsigned char *, size_t);

static void init(void)
{
	table_init();
#ifdef HAVE_CLMUL
	__builtin_cpu_init();
	if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse2"))
		crc_fast = crc_clmul;
#endif
}

uint32_t mfs_crc32(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&table_once, init);
	const unsigned char *p = buf;
	crc = ~crc;
	if (len >= 64 && crc_fast)
		crc = crc_fast(crc, p, len);
	else
		crc = crc_table(crc, p, len);
	return ~crc;
}

uint32_t mfs_crc32_table(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&table_once, init);
	return ~crc_table(~crc, buf, len);
}

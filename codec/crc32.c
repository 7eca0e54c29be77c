/*
 * codec/crc32.c — table-driven CRC-32, slicing by 8.
 *
 * Every journal record and redo-log patch carries a CRC-32 of its bytes, and
 * a staged chunk is checked each time it is paged back in, so the checksum
 * runs over every staged byte at least twice.  A byte-at-a-time table does
 * ~0.5 GB/s; slicing by 8 (eight 256-entry tables, 8 KiB, built once) does
 * several GB/s, which keeps the CRC well below zstd's cost.  Our own code
 * rather than zlib's so the codec needs no further library.
 *
 * HOW IT WORKS: table[0] is the classic reflected table for 0xEDB88320.
 * table[k][b] is the CRC of byte b followed by k zero bytes, so eight input
 * bytes can be folded in with eight independent lookups XORed together.
 */
#include <pthread.h>
#include <string.h>

#include "crc32.h"

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

uint32_t mfs_crc32(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&table_once, table_init);
	const unsigned char *p = buf;
	crc = ~crc;
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
	return ~crc;
}

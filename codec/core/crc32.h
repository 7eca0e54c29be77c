/*
 * codec/core/crc32.h — CRC-32 (IEEE 802.3, the zlib/PNG polynomial) for the
 * self-checking records of the staging journal and the redo log.
 */
#ifndef MODELFS_CODEC_CRC32_H
#define MODELFS_CODEC_CRC32_H

#include <stddef.h>
#include <stdint.h>

/*
 * mfs_crc32() - continue a CRC-32 over `len` bytes at `buf`.  Start with
 * crc = 0; mfs_crc32(mfs_crc32(0, a, n), b, m) equals the CRC of a then b,
 * and the values equal zlib's crc32().  Thread-safe.
 */
uint32_t mfs_crc32(uint32_t crc, const void *buf, size_t len);

/*
 * mfs_crc32_table() - the same, always by table (slicing by 8), whatever the
 * CPU offers: the reference mfs_crc32()'s faster way is tested against.
 */
uint32_t mfs_crc32_table(uint32_t crc, const void *buf, size_t len);

#endif /* MODELFS_CODEC_CRC32_H */

/*
 * modelfs/view.h — numbers computed over a tensor's bytes: elements decoded
 * to float64, summary statistics, SHA-256 digests, npy headers.
 *
 * These are the typed views of a mount (weights/<path>/sha256 and stats,
 * npy/<path>.npy) and what `modelfs diff` compares, so both the daemon and
 * the command share one definition.  Nothing here holds a whole tensor in
 * memory: the streaming functions read through a callback in bounded
 * chunks (MFS_VIEW_CHUNK).  No FUSE, thread-safe (no shared state).
 */
#ifndef MODELFS_VIEW_H
#define MODELFS_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bytes read per call by the streaming functions below. */
#define MFS_VIEW_CHUNK (1u << 20)

/*
 * Reads up to `len` bytes at `off` of whatever is streamed (a tensor's data,
 * staged or not).  Returns the bytes read (0 at the end) or a negative errno.
 */
typedef ssize_t mfs_view_read_fn(void *arg, void *buf, size_t len, uint64_t off);

/*
 * mfs_elems_width() - bytes per element when elements of `dtype` can be
 * decoded to float64 (float16, bfloat16, float32, float64, bool, signed
 * and unsigned integers of 8 to 64 bits), else 0.
 */
unsigned mfs_elems_width(int32_t dtype);

/* mfs_elems_float() - is `dtype` a floating type (NaN and Inf possible)? */
bool mfs_elems_float(int32_t dtype);

/*
 * mfs_elems_decode() - decode `n` little-endian elements of `dtype` at
 * `src` into out[0 .. n).  The caller has checked mfs_elems_width() != 0.
 * int64/uint64 values past 2^53 are rounded to the nearest double.
 */
void mfs_elems_decode(double *out, int32_t dtype, const void *src, size_t n);

/*
 * Running statistics.  min, max, mean and std are over the finite
 * elements (NaN and Inf are counted apart); std is the population standard
 * deviation (numpy's default, ddof=0), accumulated with Welford's update in
 * float64 so one pass suffices.
 */
struct mfs_stats {
	uint64_t count;         /* elements seen */
	uint64_t n_nan, n_inf;
	uint64_t n_finite;
	double min, max, mean, m2;
};

void mfs_stats_init(struct mfs_stats *s);
void mfs_stats_add(struct mfs_stats *s, const double *v, size_t n);

/*
 * mfs_stats_format() - the text of a `stats` file: one `key value` line
 * each for count, min, max, mean, std, nan, inf (values %.17g; "nan" when
 * there is no finite element), right-aligned in fixed widths so that every
 * stats file has the same length, MFS_STATS_TEXT_LEN.  snprintf's contract: returns the length it
 * needs, writes at most `cap` bytes with the NUL.
 */
size_t mfs_stats_format(char *buf, size_t cap, const struct mfs_stats *s);
#define MFS_STATS_TEXT_LEN (6 + 20 + 4 + 24 + 4 + 24 + 5 + 24 + 4 + 24 + 4 + 20 + 4 + 20 + 7)

/*
 * mfs_view_stats() - the statistics of `size` bytes of `dtype` elements read
 * through `rd`.  Returns 0, -EOPNOTSUPP for a dtype mfs_elems_width() does
 * not decode, -EUCLEAN when `size` is not a whole number of elements or the
 * reader ends early, -ENOMEM, or the reader's error.
 */
int mfs_view_stats(struct mfs_stats *out, int32_t dtype, uint64_t size, mfs_view_read_fn *rd,
                   void *arg);

/*
 * mfs_view_sha256() - the SHA-256 of `size` bytes read through `rd`, as 64
 * lower-case hex digits and a NUL in `out`.  Returns 0, -EUCLEAN when the
 * reader ends early, -ENOMEM, -EIO (libcrypto failed), or the reader's error.
 */
int mfs_view_sha256(char out[65], uint64_t size, mfs_view_read_fn *rd, void *arg);

/* mfs_sha256() - the same digest as 32 bytes in `md` (for packs' manifests). */
int mfs_sha256(uint8_t md[32], uint64_t size, mfs_view_read_fn *rd, void *arg);

/*
 * A SHA-256 computed as bytes go by (a versioned commit hashes the new file
 * while it writes it): begin, update any number of times, final (the
 * digest in `md`), free (accepts NULL).  0, -ENOMEM or -EIO (libcrypto
 * failed).  One context is used by one thread at a time.
 */
struct mfs_sha256_ctx;
int mfs_sha256_begin(struct mfs_sha256_ctx **out);
int mfs_sha256_update(struct mfs_sha256_ctx *c, const void *buf, size_t len);
int mfs_sha256_final(struct mfs_sha256_ctx *c, uint8_t md[32]);
void mfs_sha256_free(struct mfs_sha256_ctx *c);

/* mfs_hex() - `n` bytes as 2n lower-case hex digits and a NUL in `out`. */
void mfs_hex(char *out, const uint8_t *b, size_t n);

/*
 * mfs_npy_descr() - numpy's type string of `dtype` ("<f4", "|u1", "|b1"),
 * or NULL when numpy has no such type (bfloat16, float8, int4, block
 * types...).
 */
const char *mfs_npy_descr(int32_t dtype);

/* The npy header's size: a multiple of 64 bytes, at most this much. */
#define MFS_NPY_HEADER_MAX 4096u

/*
 * mfs_npy_header() - the npy format 1.0 header of a C-order array of
 * `dtype` and dims[0 .. rank) into `buf` (cap >= MFS_NPY_HEADER_MAX): magic,
 * version, header length, the dict, spaces and '\n' to a multiple of 64
 * bytes.  Returns its length, or 0 when numpy has no such dtype or the
 * header would not fit.
 */
size_t mfs_npy_header(char *buf, size_t cap, int32_t dtype, const int64_t *dims, size_t rank);

#endif /* MODELFS_VIEW_H */

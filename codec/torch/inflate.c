/*
 * codec/torch/inflate.c — deflated (method 8) zip members, which
 * torch.jit.save writes for the code/ files and their *.debug_pkl.
 *
 * A member is inflated with zlib (raw deflate) in 64 KiB pieces: the whole
 * stream once at open, into nothing, to check it (tz_inflate_check), and
 * again into a buffer of its size when it is first read (tz_inflate).  What
 * a member must satisfy, each failure one line at open:
 *
 *   - it inflates to at most TZ_MAX_INFLATE bytes, and one of more than
 *     TZ_RATIO_FREE bytes to at most TZ_MAX_RATIO times its compressed
 *     size (a zip bomb is refused before anything is inflated);
 *   - its deflate stream ends exactly where its compressed size says, and
 *     inflates to exactly the uncompressed size its directory entry says;
 *   - the CRC-32 of what it inflates to is the one its entry says.
 *
 * Memory is bounded by the two 64 KiB pieces and, when read, the member's
 * own size (at most TZ_MAX_INFLATE).  A file that changes under a mounted
 * model and no longer inflates gives EIO on read.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "core/crc32.h"
#include "torch/torch.h"

#define PIECE (64u << 10)

/*
 * Inflate member `e` of `src`: into out[0 .. e->usize) when `out` is not
 * NULL, else only checked.  0, or a negative errno with the reason in *why
 * (-EUCLEAN: the member is wrong; another errno: reading or memory).
 */
static int run(struct mfs_source *src, const struct tz_entry *e, uint8_t *out, const char **why)
{
	uint8_t *in = malloc(PIECE), *piece = malloc(PIECE);
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	int rc = 0;
	*why = "out of memory";
	if (!in || !piece || inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
		free(in);
		free(piece);
		return -ENOMEM;
	}
	uint64_t fed = 0, made = 0;
	uint32_t crc = 0;
	for (;;) {
		if (zs.avail_in == 0) {
			if (fed == e->csize) {
				*why = "its deflate stream is truncated";
				rc = -EUCLEAN;
				break;
			}
			size_t n = e->csize - fed < PIECE ? (size_t)(e->csize - fed) : PIECE;
			if ((rc = mfs_source_read(src, in, n, e->data_off + fed)) < 0) {
				*why = "it cannot be read";
				break;
			}
			fed += n;
			zs.next_in = in;
			zs.avail_in = (uInt)n;
		}
		zs.next_out = piece;
		zs.avail_out = PIECE;
		int zr = inflate(&zs, Z_NO_FLUSH);
		size_t got = PIECE - zs.avail_out;
		if (zr == Z_MEM_ERROR) {
			rc = -ENOMEM;
			break;
		}
		if (zr != Z_OK && zr != Z_STREAM_END && !(zr == Z_BUF_ERROR && zs.avail_in == 0)) {
			*why = "its deflate data is corrupt";
			rc = -EUCLEAN;
			break;
		}
		if (got > e->usize - made) {
			*why = "it inflates to more bytes than its directory entry says";
			rc = -EUCLEAN;
			break;
		}
		if (out)
			memcpy(out + made, piece, got);
		crc = mfs_crc32(crc, piece, got);
		made += got;
		if (zr == Z_STREAM_END) {
			if (zs.avail_in != 0 || fed != e->csize) {
				*why = "its deflate stream ends before its compressed size";
				rc = -EUCLEAN;
			} else if (made != e->usize) {
				*why = "it inflates to fewer bytes than its directory entry says";
				rc = -EUCLEAN;
			} else if (crc != e->crc) {
				*why = "the CRC-32 of its inflated bytes is not the one its entry says";
				rc = -EUCLEAN;
			}
			break;
		}
	}
	inflateEnd(&zs);
	free(in);
	free(piece);
	return rc;
}

int tz_inflate_check(struct mfs_source *src, const struct tz_entry *e, uint64_t *budget,
                     const char *display, char *err, size_t errlen)
{
	if (e->usize > TZ_MAX_INFLATE)
		return mfs_errf(err, errlen, -EFBIG, display, "member '%.200s' inflates to %" PRIu64
		                " bytes, more than the limit of %llu", e->name, e->usize,
		                (unsigned long long)TZ_MAX_INFLATE);
	if (e->usize > TZ_RATIO_FREE && e->usize / TZ_MAX_RATIO > e->csize)
		return mfs_errf(err, errlen, -EUCLEAN, display, "member '%.200s' claims to inflate "
		                "%" PRIu64 " bytes to %" PRIu64 ", more than %u times: refused as a "
		                "zip bomb", e->name, e->csize, e->usize, TZ_MAX_RATIO);
	if (e->usize > *budget)
		return mfs_errf(err, errlen, -EFBIG, display, "the compressed members inflate to "
		                "more than the limit of %llu bytes in all (at member '%.200s')",
		                (unsigned long long)TZ_MAX_INFLATE_ALL, e->name);
	*budget -= e->usize;
	const char *why;
	int rc = run(src, e, NULL, &why);
	if (rc < 0)
		return mfs_errf(err, errlen, rc, display, "compressed member '%.200s': %s", e->name,
		                why);
	return 0;
}

int tz_inflate(struct mfs_source *src, const struct tz_entry *e, uint8_t *out)
{
	const char *why;
	int rc = run(src, e, out, &why);
	return rc == -EUCLEAN ? -EIO : rc;
}

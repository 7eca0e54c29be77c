/*
 * codec/txn/sidefile.c — names and headers of the files beside a model
 * (sidefile.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core/crc32.h"
#include "txn/sidefile.h"

void mfs_sidefile_hdr_put(uint8_t out[MFS_SIDEFILE_HDR], const struct mfs_sidefile_hdr *h)
{
	memset(out, 0, MFS_SIDEFILE_HDR);
	memcpy(out, h->magic, 8);
	mfs_put_le32(out + 8, h->version);
	mfs_put_le32(out + 12, h->param);
	mfs_put_le64(out + 16, h->id.dev);
	mfs_put_le64(out + 24, h->id.ino);
	mfs_put_le64(out + 32, h->id.size);
	mfs_put_le64(out + 40, (uint64_t)h->id.mtime_sec);
	mfs_put_le64(out + 48, (uint64_t)h->id.mtime_nsec);
	mfs_put_le32(out + 60, mfs_crc32(0, out, 60));
}

bool mfs_sidefile_hdr_get(struct mfs_sidefile_hdr *out, const uint8_t in[MFS_SIDEFILE_HDR],
                          const char magic[8])
{
	if (memcmp(in, magic, 8) != 0 || mfs_get_le32(in + 60) != mfs_crc32(0, in, 60))
		return false;
	memcpy(out->magic, in, 8);
	out->version = mfs_get_le32(in + 8);
	out->param = mfs_get_le32(in + 12);
	out->id = (struct mfs_identity){
		mfs_get_le64(in + 16), mfs_get_le64(in + 24), mfs_get_le64(in + 32),
		(int64_t)mfs_get_le64(in + 40), (int64_t)mfs_get_le64(in + 48)
	};
	return true;
}

/* FNV-1a: only has to spread long names, not resist anyone. */
static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

int mfs_sidefile_name(char *out, size_t outlen, const char *model, const char *suffix)
{
	size_t mlen = strlen(model), slen = strlen(suffix);
	if (slen > MFS_SIDEFILE_SUFFIX_MAX)
		return -ENAMETOOLONG;
	/* The cut depends on the model name only, never on the suffix, so all
	 * side files of one model share one prefix. */
	const size_t keep = NAME_MAX - 1 - MFS_SIDEFILE_SUFFIX_MAX - 17;
	int n;
	if (1 + mlen + MFS_SIDEFILE_SUFFIX_MAX <= NAME_MAX)
		n = snprintf(out, outlen, ".%s%s", model, suffix);
	else
		n = snprintf(out, outlen, ".%.*s~%016llx%s", (int)keep, model,
		             (unsigned long long)fnv1a(model), suffix);
	if (n < 0 || (size_t)n >= outlen)
		return -ENAMETOOLONG;
	return 0;
}

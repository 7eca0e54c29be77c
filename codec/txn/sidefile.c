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
	mfs_put_le32(out + 8, 2);
	mfs_put_le32(out + 12, h->param);
	mfs_put_le64(out + 16, h->id.dev);
	mfs_put_le64(out + 24, h->id.ino);
	mfs_put_le64(out + 32, h->id.size);
	mfs_put_le64(out + 40, (uint64_t)h->id.mtime_sec);
	mfs_put_le64(out + 48, (uint64_t)h->id.mtime_nsec);
	mfs_put_le64(out + 56, (uint64_t)h->id.ctime_sec);
	mfs_put_le64(out + 64, (uint64_t)h->id.ctime_nsec);
	mfs_put_le64(out + 72, h->id.layout);
	mfs_put_le64(out + 80, h->journal_id);
	mfs_put_le32(out + 92, mfs_crc32(0, out, 92));
}

size_t mfs_sidefile_hdr_get(struct mfs_sidefile_hdr *out, const uint8_t *in, size_t len,
                            const char magic[8])
{
	if (len < MFS_SIDEFILE_HDR_V1 || memcmp(in, magic, 8) != 0)
		return 0;
	uint32_t version = mfs_get_le32(in + 8);
	size_t hl = version == 1 ? MFS_SIDEFILE_HDR_V1 : version == 2 ? MFS_SIDEFILE_HDR : 0;
	if (!hl || len < hl || mfs_get_le32(in + hl - 4) != mfs_crc32(0, in, hl - 4))
		return 0;
	memset(out, 0, sizeof(*out));
	memcpy(out->magic, in, 8);
	out->version = version;
	out->param = mfs_get_le32(in + 12);
	out->id.dev = mfs_get_le64(in + 16);
	out->id.ino = mfs_get_le64(in + 24);
	out->id.size = mfs_get_le64(in + 32);
	out->id.mtime_sec = (int64_t)mfs_get_le64(in + 40);
	out->id.mtime_nsec = (int64_t)mfs_get_le64(in + 48);
	if (version == 2) {
		out->id.ctime_sec = (int64_t)mfs_get_le64(in + 56);
		out->id.ctime_nsec = (int64_t)mfs_get_le64(in + 64);
		out->id.layout = mfs_get_le64(in + 72);
		out->journal_id = mfs_get_le64(in + 80);
	}
	return hl;
}

bool mfs_sidefile_id_matches(const struct mfs_sidefile_hdr *h, const struct mfs_identity *now)
{
	return h->version == 1 ? mfs_identity_same_file(&h->id, now) :
	       mfs_identity_same_version(&h->id, now);
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

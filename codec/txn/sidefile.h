/*
 * codec/txn/sidefile.h — the files modelfs keeps beside a model: their
 * names and the header they share.
 *
 * A model `m.onnx` may have a staging journal `.m.onnx.modelfs-journal`
 * (stage.c), a redo log `.m.onnx.modelfs-redo` (commit.c), and for a moment
 * a commit's temp file.  The journal and the redo log both begin with the
 * same header, which says what the file is and which version of the model
 * it was written for.  Version 2 (written now):
 *
 *   OFFSET  SIZE  MEANING
 *        0     8  magic ("MFSJRNL\0" journal, "MFSREDO\0" redo log)
 *        8     4  version, 2
 *       12     4  the file's own parameter (journal: chunk size; redo log:
 *                 number of patches)
 *       16     8  model st_dev
 *       24     8  model st_ino
 *       32     8  model size
 *       40     8  model mtime, seconds
 *       48     8  model mtime, nanoseconds
 *       56     8  model ctime, seconds
 *       64     8  model ctime, nanoseconds
 *       72     8  the model's layout fingerprint (core.h, struct
 *                 mfs_identity.layout; 0 = not known)
 *       80     8  journal id: a random number a journal gets when it is
 *                 created; a redo log carries the id of the journal whose
 *                 edits it commits
 *       88     4  reserved, 0
 *       92     4  CRC-32 of bytes 0..91
 *
 * Version 1 (modelfs before the layout fingerprint) is 64 bytes: the same
 * up to offset 56, then 4 reserved bytes and at 60 the CRC-32 of bytes
 * 0..59.  It is still read, with no ctime, layout or journal id.
 * Integers little-endian.
 */
#ifndef MODELFS_CODEC_SIDEFILE_H
#define MODELFS_CODEC_SIDEFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define MFS_SIDEFILE_HDR        96      /* version 2 */
#define MFS_SIDEFILE_HDR_V1     64

/* The fields of a side-file header. */
struct mfs_sidefile_hdr {
	char magic[8];
	uint32_t version;       /* 1 or 2 */
	uint32_t param;
	struct mfs_identity id; /* version 1: ctime and layout 0 */
	uint64_t journal_id;    /* version 1: 0 */
};

/* mfs_sidefile_hdr_put() - encode `h` as a version 2 header, CRC included. */
void mfs_sidefile_hdr_put(uint8_t out[MFS_SIDEFILE_HDR], const struct mfs_sidefile_hdr *h);

/*
 * mfs_sidefile_hdr_get() - decode the first `len` bytes of a side file into
 * *out.  Returns the header's length (MFS_SIDEFILE_HDR_V1 or
 * MFS_SIDEFILE_HDR), or 0 when it is not a valid header with magic `magic`
 * (short, wrong magic, unknown version, bad CRC).  The param is for the
 * caller to check.
 */
size_t mfs_sidefile_hdr_get(struct mfs_sidefile_hdr *out, const uint8_t *in, size_t len,
                            const char magic[8]);

/*
 * mfs_sidefile_id_matches() - does a header read from disk name version
 * `now` of the model?  Version 2: the same version (core.h,
 * mfs_identity_same_version); version 1, which has no ctime: the same file.
 */
bool mfs_sidefile_id_matches(const struct mfs_sidefile_hdr *h, const struct mfs_identity *now);

/*
 * mfs_sidefile_name() - the name of a file modelfs keeps beside model
 * `model`: "." + model + suffix (suffix up to MFS_SIDEFILE_SUFFIX_MAX
 * bytes), e.g. ".resnet.onnx.modelfs-journal".  A model name too long to
 * leave room is cut and given a hash, the same way for every suffix, so a
 * prefix match finds all of a model's side files.  Returns 0 or
 * -ENAMETOOLONG.
 */
#define MFS_SIDEFILE_SUFFIX_MAX 64
int mfs_sidefile_name(char *out, size_t outlen, const char *model, const char *suffix);

#endif /* MODELFS_CODEC_SIDEFILE_H */

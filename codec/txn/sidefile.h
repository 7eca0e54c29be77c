/*
 * codec/txn/sidefile.h — the files modelfs keeps beside a model: their
 * names and the header they share.
 *
 * A model `m.onnx` may have a staging journal `.m.onnx.modelfs-journal`
 * (stage.c), a redo log `.m.onnx.modelfs-redo` (commit.c), and for a moment
 * a commit's temp file.  The journal and the redo log both begin with the
 * same 64-byte header, which says what the file is and which version of
 * the model it was written for:
 *
 *   OFFSET  SIZE  MEANING
 *        0     8  magic ("MFSJRNL\0" journal, "MFSREDO\0" redo log)
 *        8     4  version, 1
 *       12     4  the file's own parameter (journal: chunk size; redo log:
 *                 number of patches)
 *       16     8  model st_dev
 *       24     8  model st_ino
 *       32     8  model size
 *       40     8  model mtime, seconds
 *       48     8  model mtime, nanoseconds
 *       56     4  reserved, 0
 *       60     4  CRC-32 of bytes 0..59
 *
 * Integers little-endian.
 */
#ifndef MODELFS_CODEC_SIDEFILE_H
#define MODELFS_CODEC_SIDEFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define MFS_SIDEFILE_HDR 64

/* The fields of a side-file header. */
struct mfs_sidefile_hdr {
	char magic[8];
	uint32_t version;
	uint32_t param;
	struct mfs_identity id;
};

/* mfs_sidefile_hdr_put() - encode `h` into `out`, CRC included. */
void mfs_sidefile_hdr_put(uint8_t out[MFS_SIDEFILE_HDR], const struct mfs_sidefile_hdr *h);

/*
 * mfs_sidefile_hdr_get() - decode `in` into *out.  false when the magic is
 * not `magic` or the CRC does not match (version and param are for the
 * caller to check).
 */
bool mfs_sidefile_hdr_get(struct mfs_sidefile_hdr *out, const uint8_t in[MFS_SIDEFILE_HDR],
                          const char magic[8]);

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

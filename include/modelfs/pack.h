/*
 * include/modelfs/pack.h — packs: a model's files as one compressed,
 * content-hashed archive that mounts lazily (doc/pack.md).
 *
 * `modelfs pack` makes one (mfs_pack_create), `modelfs unpack` restores the
 * original files (mfs_pack_unpack), `modelfs verify` recomputes every
 * SHA-256 (mfs_pack_verify).  Opening a path that ends in ".mfs" with
 * mfs_model_open() opens the model inside the pack: the pack is a place
 * (codec/source/place.h) whose files decompress on demand.
 */
#ifndef MODELFS_PACK_H
#define MODELFS_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MFS_PACK_MAJOR 1
#define MFS_PACK_MINOR 1
#define MFS_PACK_CHUNK_DEFAULT (256u << 10)
#define MFS_PACK_CACHE_DEFAULT (32u << 20)

struct mfs_pack_opts {
	int level;              /* zstd level for raw chunks; 0: 3 */
	uint32_t chunk_size;    /* 0: MFS_PACK_CHUNK_DEFAULT */
	bool plain;             /* one file, no grouping, no dedupe: zstd -d gives it */
	unsigned threads;       /* 0: every online core */
	/* Progress, called from the calling thread now and then; may be NULL. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *arg;
};

struct mfs_pack_result {
	uint64_t orig_bytes;    /* the model's files */
	uint64_t pack_bytes;    /* the pack */
	uint64_t chunks, deduped;
	char sha256[65];        /* of the pack file, hex */
};

/*
 * mfs_pack_create() - pack the model at `model` (any format modelfs reads,
 * with every file it names) into `out`, written to a temporary file beside
 * it and renamed into place.  Returns 0 or -errno with one line in err.
 */
int mfs_pack_create(const char *model, const char *out, const struct mfs_pack_opts *o,
                    struct mfs_pack_result *res, char *err, size_t errlen);

/*
 * mfs_pack_unpack() - write the pack's files into directory `dir` (made if
 * missing) with their names, modes and mtimes; each file's SHA-256 is
 * checked against the manifest.  Existing files are not overwritten.
 */
int mfs_pack_unpack(const char *pack, const char *dir, char *err, size_t errlen);

/*
 * mfs_pack_verify() - recompute the SHA-256 of every file and tensor: of a
 * pack, compared with its manifest (one line per difference on `out`,
 * -EBADMSG if any); of a plain model, printed.
 */
int mfs_pack_verify(const char *path, FILE *out, char *err, size_t errlen);

/* Is `path` a pack by its name (ends in ".mfs")? */
bool mfs_pack_path(const char *path);

/* Bytes of decompressed chunks each pack opened from now on may keep. */
void mfs_pack_set_cache_size(size_t bytes);

#endif /* MODELFS_PACK_H */

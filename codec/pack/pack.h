/*
 * codec/pack/pack.h — packs inside the codec: the on-disk layout's
 * constants, the parsed seek table and manifest, and the chunk reader
 * (doc/pack.md has the layout as a table).
 *
 * A pack is opened once (read.c) into an immutable `struct mfs_pack` that
 * any thread may read; its chunk cache is the only mutable part and has its
 * own lock.  The place (place.c) serves each original file of the pack as
 * a byte source; write.c makes packs and check.c unpacks and verifies.
 */
#ifndef MODELFS_CODEC_PACK_H
#define MODELFS_CODEC_PACK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "modelfs/pack.h"
#include "modelfs/view.h"
#include "source/source.h"

/* zstd skippable frames: magic 0x184D2A5? + u32 payload length. */
#define PK_MAGIC_HEAD   0x184D2A50u     /* first frame: "MFSPACK\0", version */
#define PK_MAGIC_SEEK   0x184D2A51u     /* seek table */
#define PK_MAGIC_MANI   0x184D2A52u     /* manifest (JSON) */
#define PK_MAGIC_TAIL   0x184D2A53u     /* last frame: where the two above are */

#define PK_HEAD_LEN     16u             /* payload bytes of the head frame */
#define PK_TAIL_LEN     40u             /* payload bytes of the tail frame */
#define PK_SEEK_HDR     16u             /* "MFSSEEK\0" u32 files u32 chunks */
#define PK_SEEK_FILE    16u             /* u64 size, u32 first chunk, u32 chunks */
#define PK_SEEK_CHUNK   24u             /* u64 frame off, u32 len, u32 raw, u8 t, pad */

/* Limits every reader checks before it allocates. */
#define PK_MAX_CHUNK    (16u << 20)     /* decompressed bytes of one chunk */
#define PK_MIN_CHUNK    4096u
#define PK_MAX_FILES    4097u           /* the model file and MFS_MAX_EXT_FILES */
/* --level at which float chunks' exponent planes use zstd's optimal parser. */
#define PK_LEVEL_OPT    16
#define PK_MAX_INDEX    (256u << 20)    /* bytes of the seek table or the manifest */
/* An appending commit hashes a changed file whole only up to this size. */
#define PK_APPEND_HASH_MAX (64ull << 20)

/* How a chunk's bytes were arranged before compression. */
enum pk_transform {
	PK_T_RAW = 0,           /* as they are: one zstd frame */
	PK_T_G2 = 1,            /* 2-byte elements (fp16) split into 2 planes */
	PK_T_BF16 = 2,          /* bf16: sign rotated to bit 0, then 2 planes */
	PK_T_F32 = 3,           /* fp32: sign rotated to bit 0, then 4 planes */
	PK_T_MAX = 3,
};

/* Bytes per element of a transform (1 for raw). */
unsigned pk_elem(unsigned transform);

/* Arrange n bytes (a multiple of pk_elem()) into planes, and back. */
void pk_group(uint8_t *dst, const uint8_t *src, size_t n, unsigned transform);
void pk_ungroup(uint8_t *dst, const uint8_t *src, size_t n, unsigned transform);

struct pk_chunk {
	uint64_t frame_off;     /* in the pack */
	uint64_t orig_off;      /* in its original file (computed) */
	uint32_t frame_len;
	uint32_t raw_len;
	uint8_t transform;
};

struct pk_file {
	char *path;             /* relative, '/'-separated, checked */
	uint64_t size;
	uint32_t mode;
	int64_t mtime_sec;
	long mtime_nsec;
	uint8_t sha256[32];
	bool sha_known;         /* false: the manifest has null (an appending commit
	                         * changed the file and did not hash all of it) */
	uint32_t first, n;      /* its chunks */
};

struct pk_tensor {
	char *name;
	uint8_t sha256[32];
};

struct pk_slot {
	uint32_t chunk;         /* UINT32_MAX: empty */
	uint64_t used;          /* LRU tick */
	uint8_t *buf;
	size_t cap;
};

/* What one chunk read needs besides the cache, kept for the next read so
 * that a miss allocates nothing in the steady state. */
struct pk_scratch {
	void *dctx;             /* ZSTD_DCtx */
	uint8_t *frame, *tmp, *out;     /* each PK_MAX_CHUNK-bounded, grown on need */
	size_t frame_cap, tmp_cap, out_cap;
	struct pk_scratch *next;
};

struct mfs_pack {
	/* The pack file's bytes: a local file, or a remote object (any
	 * source: the pack layer does not care where they come from). */
	struct mfs_source *src;
	char *display;          /* the pack as the user named it */
	uint64_t size;          /* of the pack file */
	uint64_t data_end;      /* frames lie in [PK_HEAD_LEN + 8, data_end) */
	unsigned major, minor;
	struct pk_file *files;
	uint32_t n_files;
	struct pk_chunk *chunks;
	uint32_t n_chunks;
	struct pk_tensor *tensors;
	uint32_t n_tensors;
	char *format;           /* the model's format, from the manifest */
	int level;
	uint32_t chunk_size;
	bool plain;
	uint64_t orig_total;    /* sum of the files' sizes */
	uint8_t sha256[32];     /* of the pack file, when known (else zero) */

	/* The chunk cache: fixed slots, LRU, under `lock`. */
	pthread_mutex_t lock;
	struct pk_slot *slots;
	size_t n_slots;
	uint64_t tick;
	uint64_t decompressed;  /* chunks decompressed so far (for tests, meta) */
	char last_err[512];     /* why the last chunk failed, "" if none */
	struct pk_scratch *spare;       /* free scratch, under `lock` */
	unsigned n_spare;
	int refs;
};

/*
 * pk_open() - parse the pack whose bytes `src` serves (taken: closed on
 * failure too).  Every offset, size and count is checked against the
 * source's size and the limits above before use; a read reads only the
 * frames it touches.  Returns 0 or -errno with one line naming `display`.
 */
int pk_open(struct mfs_pack **out, struct mfs_source *src, const char *display, char *err,
            size_t errlen);
void pk_ref(struct mfs_pack *pk);
void pk_unref(struct mfs_pack *pk);

/*
 * pk_chunk_read() - decompress chunk `i` into `out` (raw_len bytes) using
 * the scratch `tmp` (raw_len bytes, for ungrouping) and the frame buffer
 * `frame` (frame_len bytes).  Returns 0 or -EIO with a line in err.
 */
int pk_chunk_read(struct mfs_pack *pk, uint32_t i, uint8_t *out, char *err, size_t errlen);
int pk_chunk_read_with(struct mfs_pack *pk, struct pk_scratch *sc, uint32_t i, uint8_t *out,
                       char *err, size_t errlen);

/* pk_pread() - original file `f`'s bytes through the cache; like pread. */
ssize_t pk_pread(struct mfs_pack *pk, uint32_t f, void *buf, size_t len, uint64_t off);

/* pk_last_error() - why the last chunk read failed ("" if none). */
void pk_last_error(struct mfs_pack *pk, char *out, size_t len);

/* pk_source() - original file `f` as a byte source (holds a ref). */
int pk_source(struct mfs_source **out, struct mfs_pack *pk, uint32_t f);

/* pk_find() - the index of the file named `path`, or -1. */
int pk_find(const struct mfs_pack *pk, const char *path);

/* ------------------------------------------------------------ writing (write.c) */

struct ZSTD_CCtx_s;

/* The arrangement a tensor of `dtype` gets (PK_T_RAW for a non-float). */
unsigned pk_transform_of(int32_t dtype);

/*
 * pk_compress() - one chunk's frame(s): `len` bytes at `raw` arranged by
 * `t` (through `tmp`, len bytes) and compressed by `cc` (a ZSTD_CCtx) into
 * `out` (cap bytes; ZSTD_compressBound(len) + 64 is enough), with zstd's
 * content checksum; raw chunks at `level`.  Returns 0 or -EIO.
 */
int pk_compress(struct ZSTD_CCtx_s *cc, uint8_t *out, size_t cap, size_t *out_len,
                const uint8_t *raw, uint8_t *tmp, size_t len, unsigned t, int level);

/* One file's entry of a manifest. */
struct pk_mfile {
	const char *path;
	uint64_t size;
	uint32_t mode;
	int64_t mtime_sec;
	long mtime_nsec;
	const uint8_t *sha256;  /* 32 bytes, or NULL: not known (written as null) */
};

/* mfs_pack_tensor_sha() - SHA-256 of a tensor's bytes (-EIO if they end early). */
int mfs_pack_tensor_sha(const mfs_model *m, const struct mfs_tensor *t, uint8_t out[32]);

/* pk_manifest() - the manifest's JSON (malloc'd), or NULL out of memory. */
char *pk_manifest(const char *format, int level, uint32_t chunk_size, bool plain,
                  const struct pk_mfile *files, size_t n_files, const char *const *tnames,
                  uint8_t (*tsha)[32], size_t n_tensors);

/*
 * pk_index() - append to `out` the end of a pack whose frames end at `at`
 * (out->len bytes of `out` are already there, past `at`): the seek table
 * frame (its header, `seek_files`, `seek_chunks`), the manifest frame
 * (`js`) and the tail.  Returns 0, -EFBIG (an index past PK_MAX_INDEX) or
 * -ENOMEM.
 */
int pk_index(struct mfs_buf *out, uint64_t at, uint32_t n_files, const struct mfs_buf *seek_files,
             uint32_t n_chunks, const struct mfs_buf *seek_chunks, const char *js);

/* ------------------------------------------------------------ commits (commit.c) */

struct mfs_place_change;

/*
 * pk_commit() - the new version of pack `pk` after a commit of the model
 * `c->m` opened from it, as pieces for the commit engine: the frames of
 * every chunk whose bytes did not change are the old pack's (in-kernel
 * copies), the rest is compressed anew under the pack's own options, and
 * the seek table, the manifest (hashes of the changed files and tensors)
 * and the tail are new.  Returns 0 or -errno with one line in `err`.
 */
int pk_commit(struct mfs_pack *pk, struct mfs_splice *out, const struct mfs_place_change *c,
              char *err, size_t errlen);

/* The cache size packs opened from now on get (mfs_pack_set_cache_size). */
size_t pk_cache_size(void);

#endif /* MODELFS_CODEC_PACK_H */

/*
 * codec/internal.h — what the codec's files share and nobody else sees.
 *
 * The model object, the arena every description is allocated from, the
 * one I/O interface all codec file access goes through (so tests can make
 * the n-th call fail), the error-message helper, and the entry points of
 * each format reader.  Nothing here is installed or included by fs/.
 */
#ifndef MODELFS_CODEC_INTERNAL_H
#define MODELFS_CODEC_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "modelfs/model.h"

/* ------------------------------------------------------------- limits */

/*
 * Fixed limits.  Every count, length and depth taken from a model is checked
 * against these (and against the file size) before it is used to allocate.
 * The man page (mount.modelfs.8, LIMITS) lists them with the error a user
 * sees; keep the two in step.
 */
#define MFS_MAX_DEPTH           64              /* nested messages (protobuf), graphs */
#define MFS_MAX_RANK            64              /* dims of one tensor or shape */
#define MFS_MAX_NAME            65536           /* bytes of one name or small string */
#define MFS_MAX_SMALL_MSG       (64u << 20)     /* bytes of metadata fields of one message */
#define MFS_MAX_DECODED         (256ull << 20)  /* bytes decoded from ONNX typed fields, total */
#define MFS_MAX_EXT_FILES       4096            /* distinct external data files */
#define MFS_MAX_ONNX_FILE       ((1ull << 31) - 1) /* protobuf's 2 GiB limit */

/* ------------------------------------------------------------- byte order */

/* Little-endian loads and stores for on-disk formats (journal, redo log,
 * safetensors length prefix); byte by byte, so any alignment is fine. */
static inline void mfs_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void mfs_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t mfs_get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t mfs_get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ------------------------------------------------------------- buffers */

/*
 * A growable byte buffer (malloc'd), always NUL-terminated.  A failed
 * allocation or a size overflow sets `oom` and makes later adds no-ops, so
 * callers check once at the end.  Free `p` with free().
 */
struct mfs_buf {
	char *p;
	size_t len, cap;
	bool oom;
};
void mfs_buf_add(struct mfs_buf *b, const void *s, size_t n);

/* ------------------------------------------------------------- arena */

/*
 * A bump allocator: every piece of a model description is carved from it
 * and freed at once by mfs_arena_destroy().  Allocation failure returns NULL
 * (callers turn it into -ENOMEM).  Not thread-safe; used only while opening.
 */
struct mfs_arena;
struct mfs_arena *mfs_arena_create(void);
void mfs_arena_destroy(struct mfs_arena *a);
void *mfs_arena_alloc(struct mfs_arena *a, size_t size);         /* zeroed, 16-aligned */
void *mfs_arena_array(struct mfs_arena *a, size_t n, size_t size); /* overflow-checked */
char *mfs_arena_strndup(struct mfs_arena *a, const char *s, size_t len); /* NUL-terminated */
char *mfs_arena_strdup(struct mfs_arena *a, const char *s);
char *mfs_arena_printf(struct mfs_arena *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
uint64_t mfs_arena_bytes(const struct mfs_arena *a);            /* total allocated */

/* ------------------------------------------------------------- I/O */

/*
 * The I/O choke point.  All file access of the codec goes through mfs_io;
 * the default table forwards to the system.  Tests install their own table
 * (mfs_io_set) to fail a chosen call.  Each function returns what the system
 * call returns, with errno set on failure.
 */
struct mfs_io {
	int (*openat)(int dirfd, const char *path, int flags, mode_t mode);
	int (*close)(int fd);
	ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
	int (*fstat)(int fd, struct stat *st);
	int (*fstatat)(int dirfd, const char *path, struct stat *st, int flags);

	/*
	 * The write side, used by the staging journal and the commit engine
	 * (codec/stage.c, codec/commit.c).  Same convention: what the system
	 * call returns, errno set.  `fallocate` allocates and extends like
	 * posix_fallocate() but fails with EOPNOTSUPP instead of emulating
	 * (callers skip it on EOPNOTSUPP, EINVAL or ENOSYS).  Temporary files
	 * are made with openat(O_CREAT | O_EXCL), not mkstemp().
	 */
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
	int (*fsync)(int fd);
	int (*fdatasync)(int fd);
	int (*ftruncate)(int fd, off_t len);
	int (*fallocate)(int fd, off_t off, off_t len);
	int (*renameat)(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
	int (*unlinkat)(int dirfd, const char *path, int flags);
	int (*fchmod)(int fd, mode_t mode);
	int (*fchown)(int fd, uid_t uid, gid_t gid);
	int (*flock)(int fd, int op);
	ssize_t (*copy_file_range)(int fd_in, off_t *off_in, int fd_out, off_t *off_out,
	                           size_t len, unsigned flags);
};
extern const struct mfs_io *mfs_io;
/*
 * Install `io` (NULL restores the default).  The table is copied, and any
 * NULL member is filled from the default, so a test names only the calls it
 * wants to intercept.  Not thread-safe: install before starting work.
 */
void mfs_io_set(const struct mfs_io *io);

/* mfs_pwrite_full() - write all `len` bytes at `off`, looping over short
 * writes and EINTR.  Returns 0 or -errno (-EIO if the system wrote nothing). */
int mfs_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* mfs_fsync_dir() - make the names in directory `dirfd` durable (dirfd may be
 * O_PATH; a fresh descriptor is opened for the fsync).  A file system that
 * cannot fsync directories (EINVAL) counts as success.  Returns 0 or -errno. */
int mfs_fsync_dir(int dirfd);

/*
 * The identity of a model file: what must not have changed for a staged
 * edit or a commit to still apply to it.  ctime is left out on purpose: a
 * chmod changes it without changing a byte, and rename(2) changes it on the
 * file we install.
 */
struct mfs_identity {
	uint64_t dev;
	uint64_t ino;
	uint64_t size;
	int64_t mtime_sec;
	int64_t mtime_nsec;
};
void mfs_identity_from_stat(struct mfs_identity *out, const struct stat *st);
bool mfs_identity_equal(const struct mfs_identity *a, const struct mfs_identity *b);
/* Identity of `name` in `dirfd` (not following a symlink); -errno on failure,
 * -EINVAL when it is not a regular file. */
int mfs_identity_at(struct mfs_identity *out, int dirfd, const char *name);

/*
 * mfs_side_name() - the name of a file modelfs keeps beside model `model`:
 * "." + model + suffix (suffix up to MFS_SIDE_SUFFIX_MAX bytes), e.g.
 * ".resnet.onnx.modelfs-journal".  A model name too long to leave room is
 * cut and given a hash, the same way for every suffix, so a prefix match
 * finds all of a model's side files.  Returns 0 or -ENAMETOOLONG.
 */
#define MFS_SIDE_SUFFIX_MAX 64
int mfs_side_name(char *out, size_t outlen, const char *model, const char *suffix);

/*
 * mfs_pread_full() - read exactly `len` bytes at `off`, looping over short
 * reads and EINTR.  Returns 0, -EIO if the file ended early, or -errno.
 */
int mfs_pread_full(int fd, void *buf, size_t len, uint64_t off);

/* ------------------------------------------------------------- errors */

/* Fill `err` with "<display>: <message>" (one line).  Returns `rc`. */
int mfs_errf(char *err, size_t errlen, int rc, const char *display, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* ------------------------------------------------------------- model */

struct mfs_onnx_layout;

struct mfs_model {
	struct mfs_desc desc;
	struct mfs_arena *arena;
	int *fds;               /* desc.n_files descriptors, parallel to desc.files */
	char *dir;              /* the model's directory (absolute) */
	int dirfd;              /* O_PATH descriptor of that directory, or -1 */
	struct mfs_onnx_layout *onnx;   /* ONNX: spans for the splice writer (splice.h),
	                                 * in the arena */
	uint64_t st_data_off;   /* single-file safetensors: where the data buffer starts
	                         * (8 + header length); 0 for any other model */
};

/*
 * Add a source file to the model: record its relative path and an open
 * descriptor (ownership passes to the model, even on failure).  Returns its
 * index in desc.files, or a negative errno.
 */
int mfs_model_add_file(struct mfs_model *m, const char *relpath, int fd);

/*
 * Format readers.  Each fills m->desc from the already-opened model file
 * (m->fds[0], m->desc.files[0]) and may add further source files.  `display`
 * is the name to put in error messages.
 */
int mfs_onnx_open(struct mfs_model *m, const char *display, char *err, size_t errlen);
int mfs_safetensors_open(struct mfs_model *m, const char *display, char *err, size_t errlen);
int mfs_safetensors_index_open(struct mfs_model *m, const char *display, char *err, size_t errlen);

/* Format sniffers: true when the first bytes look like that format. */
bool mfs_safetensors_sniff(const uint8_t *head, size_t len, uint64_t file_size);

/*
 * External data: open `location` relative to the model directory under the
 * rules of DESIGN §7 (relative, no "..", no symlink anywhere on the path,
 * regular file, one link, inside the directory).  Returns an fd or -errno
 * with a reason in `err`.
 */
int mfs_open_beneath(struct mfs_model *m, const char *location, char *err, size_t errlen,
                     const char *display);

#endif /* MODELFS_CODEC_INTERNAL_H */

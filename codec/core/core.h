/*
 * codec/core/core.h — what every part of the codec shares and nobody
 * outside codec/ sees.
 *
 * The fixed limits every reader checks, little-endian helpers, a growable
 * buffer, the arena every description is allocated from, the one I/O
 * interface all codec file access goes through (so tests can make the n-th
 * call fail), file identities, and the error-message helper.  This is the
 * bottom of the codec: it includes nothing of the codec's own, and the
 * other folders (source/, onnx/, safetensors/, txn/) build on it.  Nothing
 * here is installed or included by fs/ (meson gives fs/ only include/).
 */
#ifndef MODELFS_CODEC_CORE_H
#define MODELFS_CODEC_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "modelfs/model.h"

/* ------------------------------------------------------------- limits */

/*
 * Fixed limits shared by every format.  Every count, length and depth taken
 * from a model is checked against these (and against the file size) before
 * it is used to allocate; a format adds its own in its folder's header
 * (onnx/onnx.h, safetensors/st.h).  The man page (mount.modelfs.8, LIMITS)
 * lists them all with the error a user sees; keep the two in step.
 */
#define MFS_MAX_DEPTH           64              /* nested messages (protobuf), graphs */
#define MFS_MAX_RANK            64              /* dims of one tensor or shape */
#define MFS_MAX_NAME            65536           /* bytes of one name or small string */
#define MFS_MAX_EXT_FILES       4096            /* source files of one model beside the
                                                 * model file (external data, shards) */

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

static inline uint16_t mfs_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
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
void *mfs_arena_array(struct mfs_arena *a, size_t n, size_t size); /* overflow-checked, zeroed;
                                                                    * aligned as `size` allows */
char *mfs_arena_strndup(struct mfs_arena *a, const char *s, size_t len); /* NUL-terminated,
                                                                          * unaligned */
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
	 * (codec/txn/stage.c, codec/txn/commit.c).  Same convention: what the system
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
	/*
	 * renameat() that never replaces: fails with EEXIST when `newpath`
	 * exists (renameat2 RENAME_NOREPLACE; where the file system refuses
	 * that flag, linkat + unlinkat, which is as exclusive).  For versioned
	 * commits, which must not overwrite a file (codec/txn/commit.c).
	 */
	int (*rename_noreplace)(int olddirfd, const char *oldpath, int newdirfd,
	                        const char *newpath);
	int (*unlinkat)(int dirfd, const char *path, int flags);
	int (*fchmod)(int fd, mode_t mode);
	int (*fchown)(int fd, uid_t uid, gid_t gid);
	int (*flock)(int fd, int op);
	ssize_t (*copy_file_range)(int fd_in, off_t *off_in, int fd_out, off_t *off_out,
	                           size_t len, unsigned flags);
	/* ioctl(dst, FICLONE, src): dst shares src's blocks (a reflink copy). */
	int (*ficlone)(int dst, int src);
	/* Extended attributes (ACLs are some of them), for a rewrite to keep. */
	ssize_t (*flistxattr)(int fd, char *list, size_t size);
	ssize_t (*fgetxattr)(int fd, const char *name, void *value, size_t size);
	int (*fsetxattr)(int fd, const char *name, const void *value, size_t size, int flags);
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
 * edit or a commit to still apply to it.  Device, inode, size and mtime say
 * which file and which version; ctime catches every change a user can make
 * without modelfs that keeps those (a file copied over the model in place
 * and its mtime set back, say): every write, chmod, chown or touch moves it.
 * A change of ctime alone is not always a change of content (chmod), so
 * `layout`, a fingerprint of what the model's description says (model.c,
 * mfs_model_layout), lets callers tell the two apart by reading the model's
 * metadata again.  rename(2) moves ctime too: a commit takes the identity
 * of the file it installed after the rename.
 */
struct mfs_identity {
	uint64_t dev;
	uint64_t ino;
	uint64_t size;
	int64_t mtime_sec;
	int64_t mtime_nsec;
	int64_t ctime_sec;
	int64_t ctime_nsec;
	uint64_t layout;        /* 0 = not known; never set from a stat */
};
void mfs_identity_from_stat(struct mfs_identity *out, const struct stat *st);
/* Device, inode, size, mtime and ctime all equal (`layout` is not compared). */
bool mfs_identity_equal(const struct mfs_identity *a, const struct mfs_identity *b);
/* The same file, not changed by a write: device, inode, size and mtime. */
bool mfs_identity_same_file(const struct mfs_identity *a, const struct mfs_identity *b);
/*
 * The same version: the same file, and either the same ctime or (ctime
 * moved, as by a chmod) the same known layout.
 */
bool mfs_identity_same_version(const struct mfs_identity *a, const struct mfs_identity *b);
/* Identity of `name` in `dirfd` (not following a symlink); -errno on failure,
 * -EINVAL when it is not a regular file. */
int mfs_identity_at(struct mfs_identity *out, int dirfd, const char *name);

/*
 * mfs_pread_full() - read exactly `len` bytes at `off`, looping over short
 * reads and EINTR.  Returns 0, -EIO if the file ended early, or -errno.
 */
int mfs_pread_full(int fd, void *buf, size_t len, uint64_t off);

/* ------------------------------------------------------------- errors */

/* Fill `err` with "<display>: <message>" (one line).  Returns `rc`. */
int mfs_errf(char *err, size_t errlen, int rc, const char *display, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

#endif /* MODELFS_CODEC_CORE_H */

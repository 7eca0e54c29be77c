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
};
extern const struct mfs_io *mfs_io;
void mfs_io_set(const struct mfs_io *io);       /* NULL restores the default */

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

struct mfs_model {
	struct mfs_desc desc;
	struct mfs_arena *arena;
	int *fds;               /* desc.n_files descriptors, parallel to desc.files */
	char *dir;              /* the model's directory (absolute) */
	int dirfd;              /* O_PATH descriptor of that directory, or -1 */
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

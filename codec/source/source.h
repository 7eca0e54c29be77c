/*
 * codec/source/source.h — byte sources: where a model's bytes come from.
 *
 * The codec never reads a model through a descriptor of its own: every
 * source file of a model (the model file, its external data files, the
 * shards of a checkpoint) is a `struct mfs_source`, and readers, writers
 * and the daemon ask the source for bytes.  A source is a flat run of bytes
 * as it was when opened (offsets 0 .. size); how they are fetched is the
 * source's business.  The local file (file.c) is the first implementation:
 * reads are pread(2) through the codec's I/O table, and it can hand out its
 * descriptor so that the daemon splices replies and the commit engine
 * copies ranges in the kernel.  A source that cannot (a compressed pack, a
 * remote object) answers -1 from `fd`, and everything above falls back to
 * `pread` without knowing why.
 *
 * Sources are created while a model opens, owned by the model, and
 * immutable afterwards: every function may be called from any thread.
 */
#ifndef MODELFS_CODEC_SOURCE_H
#define MODELFS_CODEC_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "core/core.h"
#include "core/splice.h"

struct mfs_source;

/* What a kind of source implements.  Every member is required. */
struct mfs_source_ops {
	const char *kind;       /* "file": for messages */
	/*
	 * Copy up to `len` bytes at `off` into `buf`.  Returns the count read
	 * (short only at the end of the source), 0 at or past the end, or
	 * -errno (-EIO when the bytes are gone: a file that shrank).
	 */
	ssize_t (*pread)(struct mfs_source *s, void *buf, size_t len, uint64_t off);
	/*
	 * A descriptor from which the source's byte at offset o is read at
	 * offset o, for zero-copy replies and in-kernel copies; borrowed, it
	 * lives with the source.  -1 when there is none.
	 */
	int (*fd)(const struct mfs_source *s);
	/*
	 * What the source says of itself: st_size, st_mtim, st_uid, st_gid and
	 * st_mode at least; a local file also the device and inode that make
	 * its identity.  Returns 0 or -errno.
	 */
	int (*stat)(const struct mfs_source *s, struct stat *out);
	/* Access pattern ahead: true for scattered small reads (while a reader
	 * walks metadata), false to go back to normal.  Advice only. */
	void (*advise_random)(struct mfs_source *s, bool random);
	void (*close)(struct mfs_source *s);
};

struct mfs_source {
	const struct mfs_source_ops *ops;
	uint64_t size;          /* bytes, as when opened */
	int64_t mtime_sec;      /* modification time when opened */
	long mtime_nsec;
};

/* ------------------------------------------------------------ calls */

/*
 * mfs_source_read() - read exactly `len` bytes at `off` (looping over short
 * reads).  Returns 0, -EIO when the source ends first, or -errno.
 */
int mfs_source_read(struct mfs_source *s, void *buf, size_t len, uint64_t off);

/* mfs_source_fd() - the source's descriptor for zero-copy, or -1. */
int mfs_source_fd(const struct mfs_source *s);

/* mfs_source_stat() - see struct mfs_source_ops.stat. */
int mfs_source_stat(const struct mfs_source *s, struct stat *out);

/* mfs_source_identity() - what a commit checks has not changed (core.h). */
int mfs_source_identity(const struct mfs_source *s, struct mfs_identity *out);

void mfs_source_advise_random(struct mfs_source *s, bool random);

/* mfs_source_close() - release it; accepts NULL. */
void mfs_source_close(struct mfs_source *s);

/*
 * mfs_source_splice() - append bytes [off, off + len) of `s` to a piece
 * list: an in-kernel copy from its descriptor when it has one, else pieces
 * that read it.  `s` must outlive the list.
 */
void mfs_source_splice(struct mfs_splice *sp, struct mfs_source *s, uint64_t off, uint64_t len);

/*
 * mfs_source_piece() - is piece `p` (appended by mfs_source_splice) bytes of
 * `s`?  Then *off is where in `s` its first byte is.  A writer that knows
 * an old file's bytes by their place in it (a pack's frames) asks this of
 * the pieces of the new file.
 */
bool mfs_source_piece(const struct mfs_piece *p, const struct mfs_source *s, uint64_t *off);

/* ------------------------------------------------------------ local files */

/*
 * mfs_source_file_open() - the regular file `name` in directory `dirfd`
 * (may be O_PATH) as a source.  The open cannot hang on a FIFO; anything
 * but a regular file is refused (-EINVAL).  Returns 0 or -errno; *out is
 * yours to close.
 */
int mfs_source_file_open(struct mfs_source **out, int dirfd, const char *name);

/*
 * mfs_source_file_beneath() - open `location`, a relative path beneath
 * directory `dirfd`, under the rules for files a model names
 * (doc/design.md §7): relative, no "..", no symlink anywhere on the path
 * (each component is opened with O_NOFOLLOW), a regular file with one
 * link.  Returns 0, or -errno with one line in `err` that starts with
 * `display` (-EUCLEAN for a location the rules refuse).
 */
int mfs_source_file_beneath(struct mfs_source **out, int dirfd, const char *location,
                            char *err, size_t errlen, const char *display);

#endif /* MODELFS_CODEC_SOURCE_H */

/*
 * codec/core/splice.h — piece lists: a file described, not written.
 *
 * A new version of a model file is described as a list of pieces laid end
 * to end: ranges copied from an existing file, byte buffers, and callbacks
 * that produce bytes (staged tensor data).  A format's splice writer builds
 * one (format.h, `splice`), the commit engine writes one (txn/commit.h),
 * and the transaction serves reads of the root model file from one while
 * edits are staged (txn/plan.c).  Nothing here knows a format.
 *
 * Appending never fails loudly: an allocation failure is kept in `err`
 * (sticky) and makes later appends no-ops, so a writer appends freely and
 * checks once at the end.
 */
#ifndef MODELFS_CODEC_SPLICE_H
#define MODELFS_CODEC_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum mfs_piece_kind {
	MFS_PIECE_COPY = 1,     /* `len` bytes of `fd` from `off` */
	MFS_PIECE_BYTES,        /* `len` bytes at `buf` */
	MFS_PIECE_FN,           /* `len` bytes produced by `fn` */
};

/*
 * Produces bytes [off, off + len) of a piece (off counts from the piece's
 * start) into `buf`.  Returns the count produced (> 0; short is fine, it is
 * called again for the rest) or -errno.
 */
typedef ssize_t (*mfs_piece_fn)(void *arg, void *buf, size_t len, uint64_t off);

/* One stretch of the new file.  Pieces are laid end to end. */
struct mfs_piece {
	enum mfs_piece_kind kind;
	uint64_t len;
	int fd;                 /* COPY: source descriptor (borrowed) */
	uint64_t off;           /* COPY: source offset */
	const void *buf;        /* BYTES */
	mfs_piece_fn fn;        /* FN */
	void *arg;              /* FN */
};

/*
 * A piece list under construction, and the memory its pieces point to
 * (re-encoded bytes, callback arguments), which it owns.
 */
struct mfs_splice {
	struct mfs_piece *p;
	size_t n, cap;
	void **own;
	size_t n_own, cap_own;
	uint64_t total;         /* sum of the pieces' lengths */
	int err;                /* first allocation failure, sticky */
};

void mfs_splice_free(struct mfs_splice *s);
/* Append `len` bytes of `fd` at `off`; merges with a preceding adjacent copy. */
void mfs_splice_copy(struct mfs_splice *s, int fd, uint64_t off, uint64_t len);
/* Append `len` bytes at `buf`, which the splice takes over (free()d with it). */
void mfs_splice_take(struct mfs_splice *s, void *buf, size_t len);
/* Append `len` bytes at `buf`, borrowed: it must outlive the splice. */
void mfs_splice_ref(struct mfs_splice *s, const void *buf, size_t len);
/* Append a copy of `len` bytes at `buf`. */
void mfs_splice_bytes(struct mfs_splice *s, const void *buf, size_t len);
/* Append bytes [off, off + len) of what `fn(arg, ...)` produces. */
void mfs_splice_fn(struct mfs_splice *s, mfs_piece_fn fn, void *arg, uint64_t off, uint64_t len);
/* Append every piece of `from` and take over what it owns; `from` is emptied. */
void mfs_splice_append(struct mfs_splice *s, struct mfs_splice *from);

/*
 * mfs_piece_origin() - where an FN piece's bytes come from: they are bytes
 * [*off, *off + len) of what `*fn(*arg, ...)` produces (a piece appended
 * with an offset is a wrapper; this looks through it).  For a writer that
 * recognises its own sources among the pieces (a pack reusing the frames of
 * bytes that did not change, pack/commit.c).
 */
void mfs_piece_origin(const struct mfs_piece *p, mfs_piece_fn *fn, void **arg, uint64_t *off);

/*
 * mfs_splice_read() - read the described file: up to `len` bytes at `off`
 * into `buf`, given each piece's start offset (`starts`, ascending, one per
 * piece).  Returns the bytes read (short only at the end) or -errno.
 */
ssize_t mfs_splice_read(const struct mfs_splice *s, const uint64_t *starts, void *buf,
                        size_t len, uint64_t off);

#endif /* MODELFS_CODEC_SPLICE_H */

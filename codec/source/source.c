/*
 * codec/source/source.c — what every byte source gets for free (source.h).
 *
 * The calls that readers and writers use, built on the few operations a
 * source implements: exact reads, identities, and appending a range of a
 * source to a piece list (a copy from its descriptor when it has one, so
 * the commit engine can move those bytes with copy_file_range, else a
 * callback that reads it).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "source/source.h"

int mfs_source_read(struct mfs_source *s, void *buf, size_t len, uint64_t off)
{
	unsigned char *p = buf;
	while (len) {
		ssize_t n = s->ops->pread(s, p, len, off);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int mfs_source_fd(const struct mfs_source *s)
{
	return s ? s->ops->fd(s) : -1;
}

int mfs_source_stat(const struct mfs_source *s, struct stat *out)
{
	return s->ops->stat(s, out);
}

int mfs_source_identity(const struct mfs_source *s, struct mfs_identity *out)
{
	struct stat st;
	int rc = s->ops->stat(s, &st);
	if (rc == 0)
		mfs_identity_from_stat(out, &st);
	return rc;
}

void mfs_source_advise_random(struct mfs_source *s, bool random)
{
	s->ops->advise_random(s, random);
}

void mfs_source_close(struct mfs_source *s)
{
	if (s)
		s->ops->close(s);
}

static ssize_t splice_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct mfs_source *s = arg;
	ssize_t n = s->ops->pread(s, buf, len, off);
	return n == 0 ? -EIO : n;
}

void mfs_source_splice(struct mfs_splice *sp, struct mfs_source *s, uint64_t off, uint64_t len)
{
	int fd = s->ops->fd(s);
	if (fd >= 0)
		mfs_splice_copy(sp, fd, off, len);
	else
		mfs_splice_fn(sp, splice_read, s, off, len);
}

bool mfs_source_piece(const struct mfs_piece *p, const struct mfs_source *s, uint64_t *off)
{
	if (p->kind == MFS_PIECE_COPY) {
		int fd = s->ops->fd(s);
		*off = p->off;
		return fd >= 0 && p->fd == fd;
	}
	if (p->kind != MFS_PIECE_FN)
		return false;
	mfs_piece_fn fn;
	void *arg;
	mfs_piece_origin(p, &fn, &arg, off);
	return fn == splice_read && arg == s;
}

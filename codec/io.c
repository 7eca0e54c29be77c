/*
 * codec/io.c — the one door through which the codec touches files.
 *
 * Every open, read and stat of the codec goes through the `mfs_io` table, the
 * way SQLite routes system calls through its VFS: a test swaps the table to
 * fail the n-th call and proves that each failure path leaves things clean.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "internal.h"

static int sys_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return openat(dirfd, path, flags, mode);
}

static const struct mfs_io default_io = {
	.openat = sys_openat,
	.close = close,
	.pread = pread,
	.fstat = fstat,
	.fstatat = fstatat,
};

const struct mfs_io *mfs_io = &default_io;

void mfs_io_set(const struct mfs_io *io)
{
	mfs_io = io ? io : &default_io;
}

int mfs_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	unsigned char *p = buf;
	while (len) {
		if (off > (uint64_t)INT64_MAX)
			return -EOVERFLOW;
		ssize_t n = mfs_io->pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int mfs_errf(char *err, size_t errlen, int rc, const char *display, const char *fmt, ...)
{
	if (!err || !errlen)
		return rc;
	int n = snprintf(err, errlen, "%s: ", display ? display : "model");
	if (n < 0)
		n = 0;
	if ((size_t)n < errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	/* One line, whatever a model-provided name contained. */
	for (char *p = err; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return rc;
}

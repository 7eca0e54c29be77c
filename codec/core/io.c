/*
 * codec/core/io.c — the one door through which the codec touches files.
 *
 * Every open, read, write, sync and rename of the codec goes through the
 * `mfs_io` table, the way SQLite routes system calls through its VFS: a test
 * swaps the table to fail the n-th call and proves that each failure path
 * leaves things clean.  The helpers below (full reads and writes, directory
 * fsync, file identity, error lines) are shared by the whole codec.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/core.h"

static int sys_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return openat(dirfd, path, flags, mode);
}

/* fallocate(2) mode 0 rather than posix_fallocate(3): glibc's emulation
 * writes a byte per block where the file system lacks the call, which is
 * slow on a big model and buys nothing the commit's own writes don't. */
static int sys_fallocate(int fd, off_t off, off_t len)
{
	return fallocate(fd, 0, off, len);
}

static ssize_t sys_copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out,
                                   size_t len, unsigned flags)
{
	return copy_file_range(fd_in, off_in, fd_out, off_out, len, flags);
}

static int sys_ficlone(int dst, int src)
{
	return ioctl(dst, FICLONE, src);
}

static int sys_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd,
                                const char *newpath)
{
	if (renameat2(olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
		return -1;
	/* No RENAME_NOREPLACE here: a hard link is created only if the name is
	 * free, and then the old name goes. */
	if (linkat(olddirfd, oldpath, newdirfd, newpath, 0) < 0)
		return -1;
	if (unlinkat(olddirfd, oldpath, 0) < 0) {
		int e = errno;
		unlinkat(newdirfd, newpath, 0);
		errno = e;
		return -1;
	}
	return 0;
}

static const struct mfs_io default_io = {
	.openat = sys_openat,
	.close = close,
	.pread = pread,
	.fstat = fstat,
	.fstatat = fstatat,
	.pwrite = pwrite,
	.fsync = fsync,
	.fdatasync = fdatasync,
	.ftruncate = ftruncate,
	.fallocate = sys_fallocate,
	.renameat = renameat,
	.rename_noreplace = sys_rename_noreplace,
	.unlinkat = unlinkat,
	.fchmod = fchmod,
	.fchown = fchown,
	.flock = flock,
	.copy_file_range = sys_copy_file_range,
	.ficlone = sys_ficlone,
	.flistxattr = flistxattr,
	.fgetxattr = fgetxattr,
	.fsetxattr = fsetxattr,
};

/* The installed copy of a test's table, completed from the default. */
static struct mfs_io installed_io;

const struct mfs_io *mfs_io = &default_io;

void mfs_io_set(const struct mfs_io *io)
{
	if (!io) {
		mfs_io = &default_io;
		return;
	}
	installed_io = *io;
#define FILL(f) do { if (!installed_io.f) installed_io.f = default_io.f; } while (0)
	FILL(openat); FILL(close); FILL(pread); FILL(fstat); FILL(fstatat);
	FILL(pwrite); FILL(fsync); FILL(fdatasync); FILL(ftruncate); FILL(fallocate);
	FILL(renameat); FILL(rename_noreplace); FILL(unlinkat); FILL(fchmod); FILL(fchown); FILL(flock);
	FILL(copy_file_range); FILL(ficlone); FILL(flistxattr); FILL(fgetxattr); FILL(fsetxattr);
#undef FILL
	mfs_io = &installed_io;
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

int mfs_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const unsigned char *p = buf;
	while (len) {
		if (off > (uint64_t)INT64_MAX - len)
			return -EFBIG;
		ssize_t n = mfs_io->pwrite(fd, p, len, (off_t)off);
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

int mfs_fsync_dir(int dirfd)
{
	int fd = mfs_io->openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = 0;
	/* PostgreSQL's durable_rename() precedent: some file systems refuse to
	 * fsync a directory, and there is nothing better to do there. */
	if (mfs_io->fsync(fd) < 0 && errno != EINVAL)
		rc = -errno;
	mfs_io->close(fd);
	return rc;
}

void mfs_identity_from_stat(struct mfs_identity *out, const struct stat *st)
{
	out->dev = (uint64_t)st->st_dev;
	out->ino = (uint64_t)st->st_ino;
	out->size = (uint64_t)st->st_size;
	out->mtime_sec = (int64_t)st->st_mtim.tv_sec;
	out->mtime_nsec = (int64_t)st->st_mtim.tv_nsec;
	out->ctime_sec = (int64_t)st->st_ctim.tv_sec;
	out->ctime_nsec = (int64_t)st->st_ctim.tv_nsec;
	out->layout = 0;
}

bool mfs_identity_same_file(const struct mfs_identity *a, const struct mfs_identity *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec;
}

bool mfs_identity_equal(const struct mfs_identity *a, const struct mfs_identity *b)
{
	return mfs_identity_same_file(a, b) && a->ctime_sec == b->ctime_sec &&
	       a->ctime_nsec == b->ctime_nsec;
}

bool mfs_identity_same_version(const struct mfs_identity *a, const struct mfs_identity *b)
{
	return mfs_identity_same_file(a, b) &&
	       ((a->ctime_sec == b->ctime_sec && a->ctime_nsec == b->ctime_nsec) ||
	        (a->layout && a->layout == b->layout));
}

int mfs_identity_at(struct mfs_identity *out, int dirfd, const char *name)
{
	struct stat st;
	if (mfs_io->fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	mfs_identity_from_stat(out, &st);
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

/*
 * codec/source/file.c — the local file as a byte source (source.h).
 *
 * Reads are pread(2) through the codec's I/O table (core/core.h), so tests
 * can fail them; the descriptor is handed out for zero-copy.  The two ways
 * in differ in what they trust: mfs_source_file_open() takes the path the
 * user named, mfs_source_file_beneath() a path the model names (external
 * data, shards), which must stay inside the model's directory.
 *
 * Every open is O_NONBLOCK so that a FIFO planted where a file should be
 * cannot hang the daemon, and the file is checked to be a regular file
 * before the flag is cleared and a byte of it is used.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "source/source.h"

struct file_source {
	struct mfs_source base;
	int fd;
};

static ssize_t file_pread(struct mfs_source *s, void *buf, size_t len, uint64_t off)
{
	struct file_source *f = (struct file_source *)s;
	if (off >= s->size)
		return 0;
	if (len > s->size - off)
		len = (size_t)(s->size - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	int rc = mfs_pread_full(f->fd, buf, len, off);
	return rc < 0 ? rc : (ssize_t)len;
}

static int file_fd(const struct mfs_source *s)
{
	return ((const struct file_source *)s)->fd;
}

static int file_stat(const struct mfs_source *s, struct stat *out)
{
	return mfs_io->fstat(((const struct file_source *)s)->fd, out) < 0 ? -errno : 0;
}

static void file_advise(struct mfs_source *s, bool random)
{
	posix_fadvise(((struct file_source *)s)->fd, 0, 0,
	              random ? POSIX_FADV_RANDOM : POSIX_FADV_NORMAL);
}

static void file_close(struct mfs_source *s)
{
	struct file_source *f = (struct file_source *)s;
	if (f->fd >= 0)
		mfs_io->close(f->fd);
	free(f);
}

static const struct mfs_source_ops file_ops = {
	.kind = "file",
	.pread = file_pread,
	.fd = file_fd,
	.stat = file_stat,
	.advise_random = file_advise,
	.close = file_close,
};

/* Wrap open descriptor `fd` (taken over, closed on failure) whose stat is `st`. */
static int wrap(struct mfs_source **out, int fd, const struct stat *st)
{
	struct file_source *f = calloc(1, sizeof(*f));
	if (!f) {
		mfs_io->close(fd);
		return -ENOMEM;
	}
	/* Opened O_NONBLOCK only so that a FIFO could not hang us. */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	f->base.ops = &file_ops;
	f->base.size = (uint64_t)st->st_size;
	f->base.mtime_sec = st->st_mtim.tv_sec;
	f->base.mtime_nsec = st->st_mtim.tv_nsec;
	f->fd = fd;
	*out = &f->base;
	return 0;
}

int mfs_source_file_open(struct mfs_source **out, int dirfd, const char *name)
{
	*out = NULL;
	int fd = mfs_io->openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (mfs_io->fstat(fd, &st) < 0) {
		int rc = -errno;
		mfs_io->close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		mfs_io->close(fd);
		return -EINVAL;
	}
	return wrap(out, fd, &st);
}

/*
 * Open `location` beneath `dirfd` one component at a time with O_NOFOLLOW,
 * so that no symlink anywhere on the path is followed and no component can
 * climb out; anything but a regular file with one link is refused before
 * its bytes are used.
 */
int mfs_source_file_beneath(struct mfs_source **out, int dirfd, const char *location,
                            char *err, size_t errlen, const char *display)
{
	*out = NULL;
	if (!location[0])
		return mfs_errf(err, errlen, -EUCLEAN, display, "external data location is empty");
	if (location[0] == '/')
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "external data location '%s' is absolute", location);
	if (strlen(location) >= PATH_MAX)
		return mfs_errf(err, errlen, -EUCLEAN, display, "external data location too long");

	char comp[PATH_MAX];
	const char *p = location;
	int dfd = dirfd;
	int rc = 0;
	for (;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (n == 2 && comp[0] == '.' && comp[1] == '.') {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "external data location '%s' contains '..'", location);
			break;
		}
		if (!e) {
			if (n == 0 || (n == 1 && comp[0] == '.')) {
				rc = mfs_errf(err, errlen, -EUCLEAN, display,
				              "external data location '%s' names a directory", location);
				break;
			}
			int fd = mfs_io->openat(dfd, comp,
			                        O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0);
			if (fd < 0) {
				int e2 = errno;
				if (e2 == ELOOP)
					rc = mfs_errf(err, errlen, -EUCLEAN, display,
					              "external data location '%s' is a symlink", location);
				else
					rc = mfs_errf(err, errlen, -e2, display,
					              "external data file '%s': %s", location, strerror(e2));
				break;
			}
			struct stat st;
			if (mfs_io->fstat(fd, &st) < 0) {
				rc = mfs_errf(err, errlen, -errno, display,
				              "external data file '%s': %s", location, strerror(errno));
				mfs_io->close(fd);
				break;
			}
			if (!S_ISREG(st.st_mode)) {
				rc = mfs_errf(err, errlen, -EUCLEAN, display,
				              "external data file '%s' is not a regular file", location);
				mfs_io->close(fd);
				break;
			}
			if (st.st_nlink != 1) {
				rc = mfs_errf(err, errlen, -EUCLEAN, display,
				              "external data file '%s' has %lu hard links (must be 1)",
				              location, (unsigned long)st.st_nlink);
				mfs_io->close(fd);
				break;
			}
			rc = wrap(out, fd, &st);
			if (rc < 0)
				rc = mfs_errf(err, errlen, rc, display, "out of memory");
			break;
		}
		if (n && !(n == 1 && comp[0] == '.')) {
			int nd = mfs_io->openat(dfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
			if (nd < 0) {
				int e2 = errno;
				/* O_PATH|O_NOFOLLOW on a symlink opens the link itself;
				 * O_DIRECTORY then fails with ENOTDIR. */
				struct stat lst;
				if (mfs_io->fstatat(dfd, comp, &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
				    S_ISLNK(lst.st_mode))
					rc = mfs_errf(err, errlen, -EUCLEAN, display,
					              "external data location '%s' goes through a symlink",
					              location);
				else
					rc = mfs_errf(err, errlen, -e2, display,
					              "external data location '%s': %s", location, strerror(e2));
				break;
			}
			if (dfd != dirfd)
				mfs_io->close(dfd);
			dfd = nd;
		}
		p = e + 1;
	}
	if (dfd != dirfd)
		mfs_io->close(dfd);
	return rc;
}

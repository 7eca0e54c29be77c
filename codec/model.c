/*
 * codec/model.c — opening a model: format detection, source files, reads.
 *
 * mfs_model_open() resolves the path, opens the model file, sniffs its
 * format from its first bytes (never from its name alone) and hands it to
 * the format's reader, which fills the description.  Afterwards the model is
 * immutable, and tensor reads are plain preads on descriptors opened here,
 * so any number of threads may read at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int mfs_model_add_file(struct mfs_model *m, const char *relpath, int fd)
{
	struct mfs_desc *d = &m->desc;
	if (d->n_files >= MFS_MAX_EXT_FILES + 1) {
		mfs_io->close(fd);
		return -EFBIG;
	}
	struct stat st;
	if (mfs_io->fstat(fd, &st) < 0) {
		int rc = -errno;
		mfs_io->close(fd);
		return rc;
	}
	/* Grow both arrays by doubling; the arena keeps old copies, which is
	 * fine for the small number of files a model has. */
	size_t n = d->n_files;
	if ((n & (n - 1)) == 0) {
		size_t cap = n ? n * 2 : 1;
		struct mfs_file *files = mfs_arena_array(m->arena, cap, sizeof(*files));
		int *fds = realloc(m->fds, cap * sizeof(int));
		if (!files || !fds) {
			if (fds)
				m->fds = fds;
			mfs_io->close(fd);
			return -ENOMEM;
		}
		if (n)
			memcpy(files, d->files, n * sizeof(*files));
		d->files = files;
		m->fds = fds;
	}
	struct mfs_file *f = &d->files[n];
	f->path = mfs_arena_strdup(m->arena, relpath);
	if (!f->path) {
		mfs_io->close(fd);
		return -ENOMEM;
	}
	f->size = (uint64_t)st.st_size;
	f->mtime_sec = st.st_mtim.tv_sec;
	f->mtime_nsec = st.st_mtim.tv_nsec;
	m->fds[n] = fd;
	d->n_files = n + 1;
	return (int)n;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

int mfs_model_open(mfs_model **out, const char *path, const struct mfs_open_opts *opts,
                   char *err, size_t errlen)
{
	(void)opts;
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	struct mfs_model *m = calloc(1, sizeof(*m));
	if (!m)
		return mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
	m->dirfd = -1;
	int rc;
	m->arena = mfs_arena_create();
	if (!m->arena) {
		rc = mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
		goto out;
	}

	char abs[PATH_MAX];
	if (!realpath(path, abs)) {
		rc = mfs_errf(err, errlen, -errno, path, "%s", strerror(errno));
		goto out;
	}
	char *slash = strrchr(abs, '/');
	const char *base = slash + 1;
	m->dir = mfs_arena_strndup(m->arena, abs, slash == abs ? 1 : (size_t)(slash - abs));
	if (!m->dir) {
		rc = mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
		goto out;
	}
	m->dirfd = mfs_io->openat(AT_FDCWD, m->dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (m->dirfd < 0) {
		rc = mfs_errf(err, errlen, -errno, path, "cannot open its directory: %s",
		              strerror(errno));
		goto out;
	}
	int fd = mfs_io->openat(m->dirfd, base, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
	if (fd < 0) {
		rc = mfs_errf(err, errlen, -errno, path, "%s", strerror(errno));
		goto out;
	}
	struct stat st;
	if (mfs_io->fstat(fd, &st) < 0) {
		rc = mfs_errf(err, errlen, -errno, path, "%s", strerror(errno));
		mfs_io->close(fd);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		mfs_io->close(fd);
		rc = mfs_errf(err, errlen, -EINVAL, path, "not a regular file");
		goto out;
	}
	/* The model was opened O_NONBLOCK only so a FIFO could not hang us. */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	rc = mfs_model_add_file(m, base, fd);
	if (rc < 0) {
		rc = mfs_errf(err, errlen, rc, path, "%s", strerror(-rc));
		goto out;
	}

	uint8_t head[16] = {0};
	size_t head_len = st.st_size < (off_t)sizeof(head) ? (size_t)st.st_size : sizeof(head);
	if (head_len && mfs_pread_full(fd, head, head_len, 0) < 0) {
		rc = mfs_errf(err, errlen, -EIO, path, "cannot read: %s", strerror(errno));
		goto out;
	}
	if (st.st_size == 0) {
		rc = mfs_errf(err, errlen, -EUCLEAN, path, "empty file, not a model");
		goto out;
	}
	/* Content first: a safetensors file whose header length happens to
	 * start with byte 0x7b ('{') is still a safetensors file. */
	if (mfs_safetensors_sniff(head, head_len, (uint64_t)st.st_size)) {
		rc = mfs_safetensors_open(m, path, err, errlen);
	} else if (ends_with(base, ".index.json") || head[0] == '{') {
		rc = mfs_safetensors_index_open(m, path, err, errlen);
	} else {
		rc = mfs_onnx_open(m, path, err, errlen);
	}
	if (rc < 0)
		goto out;
	*out = m;
	return 0;
out:
	mfs_model_close(m);
	return rc;
}

void mfs_model_close(mfs_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->desc.n_files; i++)
		if (m->fds[i] >= 0)
			mfs_io->close(m->fds[i]);
	free(m->fds);
	if (m->dirfd >= 0)
		mfs_io->close(m->dirfd);
	mfs_arena_destroy(m->arena);
	free(m);
}

const struct mfs_desc *mfs_model_desc(const mfs_model *m)
{
	return &m->desc;
}

ssize_t mfs_tensor_read(const mfs_model *m, const struct mfs_tensor *t, void *buf, size_t len,
                        uint64_t off)
{
	if (off >= t->nbytes)
		return 0;
	if (len > t->nbytes - off)
		len = (size_t)(t->nbytes - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	if (t->mem) {
		memcpy(buf, t->mem + off, len);
		return (ssize_t)len;
	}
	if (t->src >= m->desc.n_files)
		return -EIO;
	int rc = mfs_pread_full(m->fds[t->src], buf, len, t->off + off);
	return rc < 0 ? rc : (ssize_t)len;
}

ssize_t mfs_file_read(const mfs_model *m, size_t idx, void *buf, size_t len, uint64_t off)
{
	if (idx >= m->desc.n_files)
		return -EINVAL;
	uint64_t size = m->desc.files[idx].size;
	if (off >= size)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	int rc = mfs_pread_full(m->fds[idx], buf, len, off);
	return rc < 0 ? rc : (ssize_t)len;
}

int mfs_file_fd(const mfs_model *m, size_t idx)
{
	return idx < m->desc.n_files ? m->fds[idx] : -1;
}

/*
 * Open `location` beneath the model directory one component at a time with
 * O_NOFOLLOW, so that no symlink anywhere on the path is followed and no
 * component can climb out.  The final open is O_NONBLOCK so that a FIFO
 * cannot hang the daemon; anything but a regular file with one link is
 * refused before its bytes are used.
 */
int mfs_open_beneath(struct mfs_model *m, const char *location, char *err, size_t errlen,
                     const char *display)
{
	if (!location[0])
		return mfs_errf(err, errlen, -EUCLEAN, display, "external data location is empty");
	if (location[0] == '/')
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "external data location '%s' is absolute", location);
	if (strlen(location) >= PATH_MAX)
		return mfs_errf(err, errlen, -EUCLEAN, display, "external data location too long");

	char comp[PATH_MAX];
	const char *p = location;
	int dfd = m->dirfd;
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
			int fl = fcntl(fd, F_GETFL);
			if (fl >= 0)
				fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
			rc = fd;
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
			if (dfd != m->dirfd)
				mfs_io->close(dfd);
			dfd = nd;
		}
		p = e + 1;
	}
	if (dfd != m->dirfd)
		mfs_io->close(dfd);
	return rc;
}

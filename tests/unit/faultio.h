/*
 * tests/unit/faultio.h — a counting, failing, logging mfs_io table for unit
 * tests (the SQLite I/O-error-loop pattern, doc/reliability.md §2.1, C6).
 *
 * Install it with fio_install(); every codec system call is then counted
 * (per kind and in total), logged with its arguments and result, and failed
 * when a rule says so:
 *   fio_fail_nth(kind, n, err)   the n-th call of `kind` fails with err, once;
 *   fio_fail_from(kind, n, err)  the n-th call of `kind` and every later one
 *                                of that kind fail (a dead disk, a full one);
 *   fio_crash_at(kind, n)        the n-th call of `kind` and every later call
 *                                of any kind fail with EIO: nothing after it
 *                                reaches the file system, as if the process
 *                                had died there (descriptors are still
 *                                closed, as the kernel would on exit).
 * kind FIO_ANY counts calls of every kind together.
 *
 * fio_fake_clone(true) makes ficlone succeed by copying the whole file
 * (on file systems without reflinks), so that the clone path of a commit
 * runs, and fails, like any other.
 *
 * Header-only (static functions) because tests/meson.build builds one .c per
 * test.  Not thread-safe beyond a mutex around the counters.
 */
#ifndef MODELFS_TESTS_FAULTIO_H
#define MODELFS_TESTS_FAULTIO_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"

enum fio_kind {
	FIO_OPENAT, FIO_CLOSE, FIO_PREAD, FIO_FSTAT, FIO_FSTATAT, FIO_PWRITE, FIO_FSYNC,
	FIO_FDATASYNC, FIO_FTRUNCATE, FIO_FALLOCATE, FIO_RENAMEAT, FIO_UNLINKAT, FIO_FCHMOD,
	FIO_FCHOWN, FIO_FLOCK, FIO_COPY_FILE_RANGE, FIO_FICLONE, FIO_FLISTXATTR, FIO_FGETXATTR,
	FIO_FSETXATTR, FIO_RENAME_NOREPLACE,
	FIO_N_KINDS,
	FIO_ANY = FIO_N_KINDS
};

static const char *const fio_kind_name[FIO_N_KINDS + 1] = {
	"openat", "close", "pread", "fstat", "fstatat", "pwrite", "fsync", "fdatasync",
	"ftruncate", "fallocate", "renameat", "unlinkat", "fchmod", "fchown", "flock",
	"copy_file_range", "ficlone", "flistxattr", "fgetxattr", "fsetxattr", "rename_noreplace", "any"
};

enum fio_mode { FIO_NONE, FIO_ONCE, FIO_FROM, FIO_CRASH };

#define FIO_LOG_MAX     8192
#define FIO_NAME_MAX    128
#define FIO_FD_MAX      1024

struct fio_call {
	enum fio_kind kind;
	int fd;                 /* the descriptor argument (source for copy_file_range) */
	int fd2;                /* copy_file_range's destination, or -1 */
	char name[FIO_NAME_MAX];/* path argument, or the name `fd` was opened by */
	int flags;              /* openat flags */
	uint64_t off, len;
	long ret;
	int err;                /* errno when ret < 0 */
	bool injected;
};

static struct {
	pthread_mutex_t lock;
	unsigned long total, count[FIO_N_KINDS];
	enum fio_mode mode;
	enum fio_kind rule_kind;
	unsigned long rule_n;
	int rule_err;
	bool crashed;
	bool fake_clone;
	unsigned long n_injected;
	struct fio_call log[FIO_LOG_MAX];
	size_t n_log;
	char fdname[FIO_FD_MAX][FIO_NAME_MAX];
} fio = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Count a call and decide whether it fails; *err receives the errno. */
static bool fio_decide(enum fio_kind kind, int *err)
{
	fio.total++;
	fio.count[kind]++;
	if (fio.crashed) {
		*err = EIO;
		return true;
	}
	if (fio.mode == FIO_NONE)
		return false;
	unsigned long idx;
	if (fio.rule_kind == FIO_ANY)
		idx = fio.total;
	else if (fio.rule_kind == kind)
		idx = fio.count[kind];
	else
		return false;
	bool hit = fio.mode == FIO_ONCE ? idx == fio.rule_n : idx >= fio.rule_n;
	if (hit && fio.mode == FIO_CRASH)
		fio.crashed = true;
	*err = fio.rule_err;
	return hit;
}

static struct fio_call *fio_begin(enum fio_kind kind, int fd, const char *name, bool *fail,
                                  int *err)
{
	pthread_mutex_lock(&fio.lock);
	*fail = fio_decide(kind, err);
	struct fio_call *c = NULL;
	if (fio.n_log < FIO_LOG_MAX) {
		c = &fio.log[fio.n_log++];
		memset(c, 0, sizeof(*c));
		c->kind = kind;
		c->fd = fd;
		c->fd2 = -1;
		if (name)
			snprintf(c->name, sizeof(c->name), "%s", name);
		else if (fd >= 0 && fd < FIO_FD_MAX)
			memcpy(c->name, fio.fdname[fd], sizeof(c->name));
		c->injected = *fail;
	}
	if (*fail)
		fio.n_injected++;
	pthread_mutex_unlock(&fio.lock);
	return c;
}

static long fio_end(struct fio_call *c, long ret, bool fail, int err)
{
	if (fail) {
		ret = -1;
		errno = err;
	}
	if (c) {
		c->ret = ret;
		c->err = ret < 0 ? errno : 0;
	}
	return ret;
}

static int fio_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_OPENAT, dirfd, path, &fail, &err);
	if (c)
		c->flags = flags;
	int fd = fail ? -1 : openat(dirfd, path, flags, mode);
	if (fd >= 0 && fd < FIO_FD_MAX)
		snprintf(fio.fdname[fd], FIO_NAME_MAX, "%s", path);
	return (int)fio_end(c, fd, fail, err);
}

static int fio_close(int fd)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_CLOSE, fd, NULL, &fail, &err);
	/* Linux frees the descriptor even when close fails, and a dying
	 * process closes everything: always really close. */
	int rc = close(fd);
	if (fd >= 0 && fd < FIO_FD_MAX)
		fio.fdname[fd][0] = '\0';
	return (int)fio_end(c, rc, fail, err);
}

static ssize_t fio_pread(int fd, void *buf, size_t len, off_t off)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_PREAD, fd, NULL, &fail, &err);
	if (c) {
		c->off = (uint64_t)off;
		c->len = len;
	}
	return fio_end(c, fail ? -1 : pread(fd, buf, len, off), fail, err);
}

static int fio_fstat(int fd, struct stat *st)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FSTAT, fd, NULL, &fail, &err);
	return (int)fio_end(c, fail ? -1 : fstat(fd, st), fail, err);
}

static int fio_fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FSTATAT, dirfd, path, &fail, &err);
	return (int)fio_end(c, fail ? -1 : fstatat(dirfd, path, st, flags), fail, err);
}

static ssize_t fio_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_PWRITE, fd, NULL, &fail, &err);
	if (c) {
		c->off = (uint64_t)off;
		c->len = len;
	}
	return fio_end(c, fail ? -1 : pwrite(fd, buf, len, off), fail, err);
}

static int fio_fsync(int fd)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FSYNC, fd, NULL, &fail, &err);
	return (int)fio_end(c, fail ? -1 : fsync(fd), fail, err);
}

static int fio_fdatasync(int fd)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FDATASYNC, fd, NULL, &fail, &err);
	return (int)fio_end(c, fail ? -1 : fdatasync(fd), fail, err);
}

static int fio_ftruncate(int fd, off_t len)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FTRUNCATE, fd, NULL, &fail, &err);
	if (c)
		c->len = (uint64_t)len;
	return (int)fio_end(c, fail ? -1 : ftruncate(fd, len), fail, err);
}

static int fio_fallocate(int fd, off_t off, off_t len)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FALLOCATE, fd, NULL, &fail, &err);
	if (c) {
		c->off = (uint64_t)off;
		c->len = (uint64_t)len;
	}
	return (int)fio_end(c, fail ? -1 : fallocate(fd, 0, off, len), fail, err);
}

static int fio_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
	bool fail;
	int err;
	char both[FIO_NAME_MAX];
	snprintf(both, sizeof(both), "%s>%s", oldpath, newpath);
	struct fio_call *c = fio_begin(FIO_RENAMEAT, olddirfd, both, &fail, &err);
	return (int)fio_end(c, fail ? -1 : renameat(olddirfd, oldpath, newdirfd, newpath), fail,
	                    err);
}

static int fio_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd,
                                const char *newpath)
{
	bool fail;
	int err;
	char both[FIO_NAME_MAX];
	snprintf(both, sizeof(both), "%s>%s", oldpath, newpath);
	struct fio_call *c = fio_begin(FIO_RENAME_NOREPLACE, olddirfd, both, &fail, &err);
	return (int)fio_end(c, fail ? -1 : renameat2(olddirfd, oldpath, newdirfd, newpath,
	                                              RENAME_NOREPLACE), fail, err);
}

static int fio_unlinkat(int dirfd, const char *path, int flags)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_UNLINKAT, dirfd, path, &fail, &err);
	return (int)fio_end(c, fail ? -1 : unlinkat(dirfd, path, flags), fail, err);
}

static int fio_fchmod(int fd, mode_t mode)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FCHMOD, fd, NULL, &fail, &err);
	return (int)fio_end(c, fail ? -1 : fchmod(fd, mode), fail, err);
}

static int fio_fchown(int fd, uid_t uid, gid_t gid)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FCHOWN, fd, NULL, &fail, &err);
	return (int)fio_end(c, fail ? -1 : fchown(fd, uid, gid), fail, err);
}

static int fio_flock(int fd, int op)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FLOCK, fd, NULL, &fail, &err);
	return (int)fio_end(c, fail ? -1 : flock(fd, op), fail, err);
}

static ssize_t fio_copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out,
                                   size_t len, unsigned flags)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_COPY_FILE_RANGE, fd_out, NULL, &fail, &err);
	if (c) {
		c->fd2 = fd_in;
		c->off = off_out ? (uint64_t)*off_out : 0;
		c->len = len;
	}
	return fio_end(c, fail ? -1 : copy_file_range(fd_in, off_in, fd_out, off_out, len, flags),
	               fail, err);
}

static int fake_ficlone(int dst, int src)
{
	struct stat st;
	if (fstat(src, &st) < 0 || ftruncate(dst, 0) < 0)
		return -1;
	off_t in = 0, out = 0;
	while (in < st.st_size) {
		ssize_t n = copy_file_range(src, &in, dst, &out, (size_t)(st.st_size - in), 0);
		if (n <= 0)
			return n < 0 ? -1 : (errno = EIO, -1);
	}
	return 0;
}

static int fio_ficlone(int dst, int src)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FICLONE, dst, NULL, &fail, &err);
	if (c)
		c->fd2 = src;
	int r = fail ? -1 : fio.fake_clone ? fake_ficlone(dst, src) : ioctl(dst, FICLONE, src);
	return (int)fio_end(c, r, fail, err);
}

static ssize_t fio_flistxattr(int fd, char *list, size_t size)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FLISTXATTR, fd, NULL, &fail, &err);
	return fio_end(c, fail ? -1 : flistxattr(fd, list, size), fail, err);
}

static ssize_t fio_fgetxattr(int fd, const char *name, void *value, size_t size)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FGETXATTR, fd, name, &fail, &err);
	return fio_end(c, fail ? -1 : fgetxattr(fd, name, value, size), fail,
	               err);
}

static int fio_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)
{
	bool fail;
	int err;
	struct fio_call *c = fio_begin(FIO_FSETXATTR, fd, name, &fail, &err);
	return (int)fio_end(c, fail ? -1 : fsetxattr(fd, name, value, size, flags), fail, err);
}

static const struct mfs_io fio_table = {
	.openat = fio_openat, .close = fio_close, .pread = fio_pread, .fstat = fio_fstat,
	.fstatat = fio_fstatat, .pwrite = fio_pwrite, .fsync = fio_fsync,
	.fdatasync = fio_fdatasync, .ftruncate = fio_ftruncate, .fallocate = fio_fallocate,
	.renameat = fio_renameat, .unlinkat = fio_unlinkat, .fchmod = fio_fchmod,
	.fchown = fio_fchown, .flock = fio_flock, .copy_file_range = fio_copy_file_range,
	.ficlone = fio_ficlone, .flistxattr = fio_flistxattr, .fgetxattr = fio_fgetxattr,
	.fsetxattr = fio_fsetxattr, .rename_noreplace = fio_rename_noreplace,
};

static inline void fio_fake_clone(bool on)
{
	fio.fake_clone = on;
}

/* Forget counts, log and rule; keep the fd names (descriptors stay open). */
static inline void fio_reset(void)
{
	pthread_mutex_lock(&fio.lock);
	fio.total = 0;
	memset(fio.count, 0, sizeof(fio.count));
	fio.mode = FIO_NONE;
	fio.crashed = false;
	fio.n_injected = 0;
	fio.n_log = 0;
	pthread_mutex_unlock(&fio.lock);
}

static inline void fio_install(void)
{
	fio_reset();
	mfs_io_set(&fio_table);
}

static inline void fio_uninstall(void)
{
	mfs_io_set(NULL);
}

static inline void fio_rule(enum fio_mode mode, enum fio_kind kind, unsigned long n, int err)
{
	pthread_mutex_lock(&fio.lock);
	fio.mode = mode;
	fio.rule_kind = kind;
	fio.rule_n = n;
	fio.rule_err = err;
	pthread_mutex_unlock(&fio.lock);
}

static inline void fio_fail_nth(enum fio_kind kind, unsigned long n, int err)
{
	fio_rule(FIO_ONCE, kind, n, err);
}

static inline void fio_fail_from(enum fio_kind kind, unsigned long n, int err)
{
	fio_rule(FIO_FROM, kind, n, err);
}

static inline void fio_crash_at(enum fio_kind kind, unsigned long n)
{
	fio_rule(FIO_CRASH, kind, n, EIO);
}

static inline unsigned long fio_total(void)
{
	return fio.total;
}

static inline unsigned long fio_count(enum fio_kind kind)
{
	return fio.count[kind];
}

static inline unsigned long fio_injected(void)
{
	return fio.n_injected;
}

static inline size_t fio_log_len(void)
{
	return fio.n_log;
}

static inline const struct fio_call *fio_log_at(size_t i)
{
	return i < fio.n_log ? &fio.log[i] : NULL;
}

static inline void fio_dump(FILE *f)
{
	for (size_t i = 0; i < fio.n_log; i++) {
		const struct fio_call *c = &fio.log[i];
		fprintf(f, "%4zu %-15s fd=%-3d %-40s off=%llu len=%llu -> %ld%s%s\n", i + 1,
		        fio_kind_name[c->kind], c->fd, c->name, (unsigned long long)c->off,
		        (unsigned long long)c->len, c->ret, c->ret < 0 ? " " : "",
		        c->ret < 0 ? strerror(c->err) : "");
	}
}

#endif /* MODELFS_TESTS_FAULTIO_H */

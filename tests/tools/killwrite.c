/*
 * tests/tools/killwrite.c — an LD_PRELOAD shim for crash tests: the process
 * dies by SIGKILL at the Nth pwrite() to a file whose name ends in
 * $MFS_KILL_SUFFIX (N = $MFS_KILL_AT, from 1), after writing the first half of
 * that call's bytes, as a crash in the middle of a write would leave it.
 * Build: cc -shared -fPIC -o killwrite.so killwrite.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static int seen;

static int matches(int fd)
{
	const char *suffix = getenv("MFS_KILL_SUFFIX");
	char link[64], path[4096];
	if (!suffix)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		return 0;
	path[n] = '\0';
	size_t l = strlen(suffix);
	return (size_t)n >= l && !strcmp(path + n - l, suffix);
}

static ssize_t shim(int fd, const void *buf, size_t len, off_t off)
{
	if (!real_pwrite)
		real_pwrite = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
	const char *at = getenv("MFS_KILL_AT");
	if (at && matches(fd) && __atomic_add_fetch(&seen, 1, __ATOMIC_SEQ_CST) == atoi(at)) {
		real_pwrite(fd, buf, len / 2, off);
		kill(getpid(), SIGKILL);
	}
	return real_pwrite(fd, buf, len, off);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return shim(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	return shim(fd, buf, len, off);
}

/*
 * fuzz/fuzz_location.c — libFuzzer target: an ONNX external-data location
 * string resolved by mfs_source_file_beneath() against a hostile directory.
 *
 * The base directory holds three acceptable files (ok, sub/inner,
 * sub/deeper/file: regular, one link each) and traps: symlinks to a file
 * inside, to a file outside, to "..", to an absolute path and to a
 * subdirectory; a hard-linked pair; a FIFO; an empty directory.  A file
 * "outside" sits next to the base.  Whatever the string, an fd returned
 * must be one of the three acceptable files — checked by identity (dev,
 * inode), so no spelling of a path can fool the oracle — and no descriptor
 * may leak, on success or failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "source/source.h"

static int base_dirfd = -1;
static bool ready;
static struct stat allowed[3];

static void put(const char *name)
{
	fz_write(fz_path(name), name, strlen(name));
}

static void setup_once(void)
{
	if (ready)
		return;
	ready = true;
	FZ_CHECK(mkdir(fz_path("base"), 0755) == 0);
	FZ_CHECK(mkdir(fz_path("base/sub"), 0755) == 0);
	FZ_CHECK(mkdir(fz_path("base/sub/deeper"), 0755) == 0);
	FZ_CHECK(mkdir(fz_path("base/emptydir"), 0755) == 0);
	put("outside");
	put("base/ok");
	put("base/sub/inner");
	put("base/sub/deeper/file");
	put("base/hard");
	char a[512];
	snprintf(a, sizeof(a), "%s", fz_path("base/hard"));
	FZ_CHECK(link(a, fz_path("base/hard2")) == 0);
	FZ_CHECK(mkfifo(fz_path("base/fifo"), 0644) == 0);
	FZ_CHECK(symlink("ok", fz_path("base/lnk")) == 0);
	FZ_CHECK(symlink("../outside", fz_path("base/out")) == 0);
	FZ_CHECK(symlink("..", fz_path("base/up")) == 0);
	FZ_CHECK(symlink("/etc/hostname", fz_path("base/abs")) == 0);
	FZ_CHECK(symlink("sub", fz_path("base/subl")) == 0);
	FZ_CHECK(symlink("../ok", fz_path("base/sub/back")) == 0);
	FZ_CHECK(symlink("../../outside", fz_path("base/sub/out")) == 0);
	FZ_CHECK(stat(fz_path("base/ok"), &allowed[0]) == 0);
	FZ_CHECK(stat(fz_path("base/sub/inner"), &allowed[1]) == 0);
	FZ_CHECK(stat(fz_path("base/sub/deeper/file"), &allowed[2]) == 0);
	base_dirfd = open(fz_path("base"), O_PATH | O_DIRECTORY | O_CLOEXEC);
	FZ_CHECK(base_dirfd >= 0);
}

/* The lowest free descriptor: equal before and after a call iff nothing leaked
 * (the call closes what it opens, and we close what it returns). */
static int lowest_free_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	FZ_CHECK(fd >= 0);
	close(fd);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup_once();
	char loc[8192];
	size_t n = size < sizeof(loc) - 1 ? size : sizeof(loc) - 1;
	memcpy(loc, data, n);
	loc[n] = '\0';              /* the location ends at its first NUL, as a C string does */

	int before = lowest_free_fd();
	char err[512] = "";
	struct mfs_source *src = NULL;
	int rc = mfs_source_file_beneath(&src, base_dirfd, loc, err, sizeof(err), "fuzz.onnx");
	int fd = rc == 0 ? mfs_source_fd(src) : -1;
	FZ_CHECK(rc < 0 || fd >= 0);
	if (rc == 0) {
		struct stat st;
		FZ_CHECK(fstat(fd, &st) == 0);
		FZ_CHECK(S_ISREG(st.st_mode));
		FZ_CHECK(st.st_nlink == 1);
		bool ok = false;
		for (int i = 0; i < 3; i++)
			ok |= st.st_dev == allowed[i].st_dev && st.st_ino == allowed[i].st_ino;
		FZ_CHECK(ok);
		int fl = fcntl(fd, F_GETFL);
		FZ_CHECK(fl >= 0 && (fl & O_ACCMODE) == O_RDONLY && !(fl & O_NONBLOCK));
		mfs_source_close(src);
	} else {
		FZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
	}
	FZ_CHECK(lowest_free_fd() == before);
	return 0;
}

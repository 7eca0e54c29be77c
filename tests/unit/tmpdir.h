/*
 * tests/unit/tmpdir.h — a scratch directory per test case and small file
 * helpers, for the unit tests that need real files (model, format, entry).
 * Header-only: each test file is its own program.
 */
#ifndef MODELFS_TESTS_TMPDIR_H
#define MODELFS_TESTS_TMPDIR_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_dir[128];

/* tmp_dir/name, in a static buffer (one at a time). */
static inline const char *tmp_path(const char *name)
{
	static char p[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", tmp_dir, name);
	return p[k];
}

static inline int tmp_setup(void **state)
{
	(void)state;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/mfs-unit-XXXXXX", base);
	return mkdtemp(tmp_dir) ? 0 : -1;
}

/* Remove everything in dir (one level of subdirectories is enough here). */
static inline void tmp_rm(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			char sub[1024];
			if (snprintf(sub, sizeof(sub), "%s/%.255s", dir, de->d_name) >= (int)sizeof(sub))
				continue;
			tmp_rm(sub);
		}
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static inline int tmp_teardown(void **state)
{
	(void)state;
	tmp_rm(tmp_dir);
	return 0;
}

static inline void tmp_write(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len) {
		fprintf(stderr, "cannot write %s\n", path);
		abort();
	}
	close(fd);
}

/* The whole file, malloc'd (NUL-terminated beyond *len); NULL if unreadable. */
static inline unsigned char *tmp_read(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	unsigned char *p = malloc((size_t)st.st_size + 1);
	size_t done = 0;
	while (p && done < (size_t)st.st_size) {
		ssize_t n = pread(fd, p + done, (size_t)st.st_size - done, (off_t)done);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	if (p)
		p[done] = 0;
	*len = done;
	return p;
}

static inline void tmp_copy(const char *from, const char *to)
{
	size_t len;
	unsigned char *p = tmp_read(from, &len);
	if (!p) {
		fprintf(stderr, "cannot read %s\n", from);
		abort();
	}
	tmp_write(to, p, len);
	free(p);
}

/* A safetensors file of one tensor "w" (F32 [2]) with __metadata__ {"k": "v"}. */
static inline void tmp_write_safetensors(const char *path)
{
	static const char hdr[] =
		"{\"__metadata__\":{\"k\":\"v\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
		"\"data_offsets\":[0,8]}}";
	unsigned char buf[8 + sizeof(hdr) - 1 + 8];
	uint64_t n = sizeof(hdr) - 1;
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(n >> (8 * i));
	memcpy(buf + 8, hdr, n);
	float v[2] = {1.5f, -2.0f};
	memcpy(buf + 8 + n, v, 8);
	tmp_write(path, buf, sizeof(buf));
}

#endif /* MODELFS_TESTS_TMPDIR_H */

/*
 * codec/source/cache.c — the on-disk cache of remote bytes (cache.h).
 *
 * Layout under the cache directory:
 *   .lock                        flock: eviction and resets are exclusive
 *   <h>/meta                     "modelfs-cache 1\n" url \n size \n etag \n lastmod \n
 *   <h>/<v>.<off>-<len>[.z]      bytes [off, off+len) of version v
 * where h is a hash of the URL and v a hash of (size, ETag, Last-Modified).
 * A range file is written to a temporary name and renamed into place, so a
 * reader sees it whole or not at all; ".z" ones are zstd frames (kept only
 * when that saves a tenth).  A reader of version v only ever opens v's
 * files, so a reset by another process (a new version) can at worst make
 * it miss.  Eviction deletes the least recently used range files (their
 * mtime is touched on every hit) until the total is under the bound.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "core/core.h"
#include "source/cache.h"

#define CACHE_DEFAULT_CAP (10ULL << 30)
#define CACHE_MAX_RANGES 65536          /* remembered per object */
#define CACHE_Z_MAX (16u << 20)         /* larger ranges are stored raw */
#define CACHE_SAMPLE 16384              /* bytes tried before compressing a range */

struct range {
	uint64_t off, len;
	bool z;
};

struct mfs_cache_obj {
	char dir[PATH_MAX];     /* the cache directory */
	char sub[PATH_MAX];     /* <dir>/<h> */
	char url[8192];
	uint64_t cap;
	uint64_t vtag;          /* 0: no version yet (nothing is stored) */
	pthread_mutex_t lock;
	struct range *r;
	size_t n, alloc;
	uint64_t put_since_scan;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

static uint64_t version_tag(const struct mfs_cache_meta *m)
{
	uint64_t h = fnv(1469598103934665603ULL, &m->size, sizeof(m->size));
	h = fnv(h, m->etag, strlen(m->etag) + 1);
	h = fnv(h, m->lastmod, strlen(m->lastmod) + 1);
	return h ? h : 1;
}

static int mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* flock the cache directory's .lock; returns the descriptor or -1. */
static int lock_cache(const struct mfs_cache_obj *c, int how)
{
	char p[PATH_MAX + 8];
	snprintf(p, sizeof(p), "%s/.lock", c->dir);
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	if (flock(fd, how) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void unlock_cache(int fd)
{
	if (fd >= 0)
		close(fd);
}

static int read_meta(const struct mfs_cache_obj *c, struct mfs_cache_meta *m)
{
	char p[PATH_MAX + 8], buf[8192 + 512], url[8192];
	snprintf(p, sizeof(p), "%s/meta", c->sub);
	memset(m, 0, sizeof(*m));
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	char *line[5];
	char *s = buf;
	for (int i = 0; i < 5; i++) {
		char *nl = strchr(s, '\n');
		if (!nl)
			return -EIO;
		*nl = '\0';
		line[i] = s;
		s = nl + 1;
	}
	if (strcmp(line[0], "modelfs-cache 1"))
		return -EIO;
	snprintf(url, sizeof(url), "%s", line[1]);
	if (strcmp(url, c->url))
		return -ENOENT;         /* a hash collision: not ours */
	char *end;
	m->size = strtoull(line[2], &end, 10);
	if (*end)
		return -EIO;
	snprintf(m->etag, sizeof(m->etag), "%s", line[3]);
	snprintf(m->lastmod, sizeof(m->lastmod), "%s", line[4]);
	return 0;
}

static int write_file(const char *dir, const char *name, const void *buf, size_t len)
{
	char tmp[PATH_MAX + 64], dst[PATH_MAX + 64];
	snprintf(tmp, sizeof(tmp), "%s/.tmp.%d.%lx.%s", dir, (int)getpid(),
	         (unsigned long)pthread_self(), name);
	snprintf(dst, sizeof(dst), "%s/%s", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	const uint8_t *p = buf;
	size_t left = len;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int rc = w < 0 ? -errno : -EIO;
			close(fd);
			unlink(tmp);
			return rc;
		}
		p += w;
		left -= (size_t)w;
	}
	if (close(fd) < 0 || rename(tmp, dst) < 0) {
		int rc = -errno;
		unlink(tmp);
		return rc;
	}
	return 0;
}

static void add_range(struct mfs_cache_obj *c, uint64_t off, uint64_t len, bool z)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->r[i].off == off && c->r[i].len == len)
			return;
	if (c->n == c->alloc) {
		if (c->alloc >= CACHE_MAX_RANGES)
			return;
		size_t na = c->alloc ? c->alloc * 2 : 64;
		struct range *nr = realloc(c->r, na * sizeof(*nr));
		if (!nr)
			return;
		c->r = nr;
		c->alloc = na;
	}
	c->r[c->n++] = (struct range){off, len, z};
}

/* The ranges of version vtag already on disk (from this or any process). */
static void scan_ranges(struct mfs_cache_obj *c)
{
	DIR *d = opendir(c->sub);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		uint64_t v, off, len;
		int end = 0;
		if (sscanf(e->d_name, "%16" SCNx64 ".%16" SCNx64 "-%16" SCNx64 "%n", &v, &off, &len,
		           &end) != 3 || v != c->vtag || !len)
			continue;
		bool z = !strcmp(e->d_name + end, ".z");
		if (e->d_name[end] && !z)
			continue;
		add_range(c, off, len, z);
	}
	closedir(d);
}

int mfs_cache_open(struct mfs_cache_obj **out, const char *dir, uint64_t cap, const char *url,
                   struct mfs_cache_meta *known)
{
	*out = NULL;
	memset(known, 0, sizeof(*known));
	struct mfs_cache_obj *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	int rc = -ENAMETOOLONG;
	if (snprintf(c->dir, sizeof(c->dir), "%s", dir) >= (int)sizeof(c->dir) ||
	    snprintf(c->url, sizeof(c->url), "%s", url) >= (int)sizeof(c->url))
		goto fail;
	uint64_t h = fnv(1469598103934665603ULL, url, strlen(url));
	if (snprintf(c->sub, sizeof(c->sub), "%s/%016" PRIx64, dir, h) >= (int)sizeof(c->sub))
		goto fail;
	if ((rc = mkdir_p(c->sub)) < 0)
		goto fail;
	c->cap = cap ? cap : CACHE_DEFAULT_CAP;
	pthread_mutex_init(&c->lock, NULL);
	if (read_meta(c, known) == 0) {
		c->vtag = version_tag(known);
		scan_ranges(c);
	} else {
		memset(known, 0, sizeof(*known));
	}
	*out = c;
	return 0;
fail:
	free(c);
	return rc;
}

static bool meta_equal(const struct mfs_cache_meta *a, const struct mfs_cache_meta *b)
{
	return a->size == b->size && !strcmp(a->etag, b->etag) && !strcmp(a->lastmod, b->lastmod);
}

/* Delete every range file not of version keep (0: all). */
static void drop_ranges(struct mfs_cache_obj *c, uint64_t keep)
{
	DIR *d = opendir(c->sub);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		uint64_t v;
		if (sscanf(e->d_name, "%16" SCNx64 ".", &v) == 1 && strchr(e->d_name, '-') &&
		    v != keep)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

int mfs_cache_reset(struct mfs_cache_obj *c, const struct mfs_cache_meta *m)
{
	pthread_mutex_lock(&c->lock);
	uint64_t v = version_tag(m);
	int rc = 0;
	if (v != c->vtag) {
		int lk = lock_cache(c, LOCK_EX);
		struct mfs_cache_meta now;
		if (!(read_meta(c, &now) == 0 && meta_equal(&now, m))) {
			char buf[8192 + 512];
			int n = snprintf(buf, sizeof(buf), "modelfs-cache 1\n%s\n%" PRIu64 "\n%s\n%s\n",
			                 c->url, m->size, m->etag, m->lastmod);
			rc = n > 0 && (size_t)n < sizeof(buf) ? write_file(c->sub, "meta", buf,
			                                                    (size_t)n) : -ENAMETOOLONG;
		}
		/* The old version's ranges can only mislead nobody (they are named
		 * after it) but they take room: drop them. */
		drop_ranges(c, v);
		unlock_cache(lk);
		c->vtag = rc == 0 ? v : 0;
		c->n = 0;
		if (c->vtag)
			scan_ranges(c);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static void range_name(char *out, size_t cap, uint64_t v, uint64_t off, uint64_t len, bool z)
{
	snprintf(out, cap, "%016" PRIx64 ".%016" PRIx64 "-%016" PRIx64 "%s", v, off, len,
	         z ? ".z" : "");
}

/* Read range file r (of c->vtag) at offset off - r.off; 0 or -errno. */
static int read_range(struct mfs_cache_obj *c, uint64_t v, struct range r, void *buf,
                      uint64_t off, size_t len)
{
	char name[80], p[PATH_MAX + 96];
	range_name(name, sizeof(name), v, r.off, r.len, r.z);
	snprintf(p, sizeof(p), "%s/%s", c->sub, name);
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = fstat(fd, &st) < 0 ? -errno : 0;
	if (rc == 0 && !r.z) {
		if ((uint64_t)st.st_size != r.len)
			rc = -EIO;
		else
			rc = mfs_pread_full(fd, buf, len, off - r.off);
	} else if (rc == 0) {
		/* A compressed range is read whole: at most CACHE_Z_MAX bytes. */
		uint8_t *zb = NULL, *raw = NULL;
		if (st.st_size <= 0 || (uint64_t)st.st_size > CACHE_Z_MAX || r.len > CACHE_Z_MAX)
			rc = -EIO;
		if (rc == 0 && (!(zb = malloc((size_t)st.st_size)) || !(raw = malloc(r.len))))
			rc = -ENOMEM;
		if (rc == 0)
			rc = mfs_pread_full(fd, zb, (size_t)st.st_size, 0);
		if (rc == 0) {
			size_t got = ZSTD_decompress(raw, r.len, zb, (size_t)st.st_size);
			if (ZSTD_isError(got) || got != r.len)
				rc = -EIO;
			else
				memcpy(buf, raw + (off - r.off), len);
		}
		free(zb);
		free(raw);
	}
	if (rc == 0)
		futimens(fd, NULL);     /* recently used: evicted last */
	close(fd);
	return rc;
}

int mfs_cache_get(struct mfs_cache_obj *c, void *buf, uint64_t off, size_t len)
{
	pthread_mutex_lock(&c->lock);
	uint64_t v = c->vtag;
	struct range hit = {0};
	bool found = false;
	for (size_t i = 0; v && i < c->n && !found; i++)
		if (c->r[i].off <= off && off + len <= c->r[i].off + c->r[i].len) {
			hit = c->r[i];
			found = true;
		}
	pthread_mutex_unlock(&c->lock);
	if (!v)
		return -ENOENT;
	if (!found) {
		/* Another mount may have fetched this very range since we looked. */
		char name[80], p[PATH_MAX + 96];
		for (int z = 0; z < 2 && !found; z++) {
			range_name(name, sizeof(name), v, off, len, z);
			snprintf(p, sizeof(p), "%s/%s", c->sub, name);
			if (access(p, F_OK) == 0) {
				hit = (struct range){off, len, z};
				found = true;
			}
		}
		if (!found)
			return -ENOENT;
	}
	int rc = read_range(c, v, hit, buf, off, len);
	if (rc < 0) {
		/* Evicted (or damaged): forget it, and it is fetched again. */
		pthread_mutex_lock(&c->lock);
		for (size_t i = 0; i < c->n; i++)
			if (c->r[i].off == hit.off && c->r[i].len == hit.len) {
				c->r[i] = c->r[--c->n];
				break;
			}
		pthread_mutex_unlock(&c->lock);
		return -ENOENT;
	}
	return 0;
}

struct victim {
	char path[PATH_MAX + 320];
	uint64_t size;
	struct timespec mtime;
};

static int by_mtime(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;
	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	return (x->mtime.tv_nsec > y->mtime.tv_nsec) - (x->mtime.tv_nsec < y->mtime.tv_nsec);
}

/* Keep the whole cache under c->cap: least recently used ranges go first. */
static void evict(struct mfs_cache_obj *c)
{
	int lk = lock_cache(c, LOCK_EX);
	if (lk < 0)
		return;
	struct victim *vs = NULL;
	size_t n = 0, alloc = 0;
	uint64_t total = 0;
	DIR *top = opendir(c->dir);
	struct dirent *e;
	while (top && (e = readdir(top))) {
		if (e->d_name[0] == '.' || strlen(e->d_name) != 16)
			continue;
		char sub[PATH_MAX + 32];
		if (strlen(c->dir) + 18 >= sizeof(sub))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", c->dir, e->d_name);
		DIR *d = opendir(sub);
		struct dirent *f;
		while (d && (f = readdir(d))) {
			if (f->d_name[0] == '.' || !strchr(f->d_name, '-'))
				continue;
			struct stat st;
			if (fstatat(dirfd(d), f->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			total += (uint64_t)st.st_size;
			if (n == alloc) {
				size_t na = alloc ? alloc * 2 : 256;
				struct victim *nv = realloc(vs, na * sizeof(*nv));
				if (!nv)
					break;
				vs = nv;
				alloc = na;
			}
			snprintf(vs[n].path, sizeof(vs[n].path), "%s/%s", sub, f->d_name);
			vs[n].size = (uint64_t)st.st_size;
			vs[n].mtime = st.st_mtim;
			n++;
		}
		if (d)
			closedir(d);
	}
	if (top)
		closedir(top);
	if (total > c->cap) {
		qsort(vs, n, sizeof(*vs), by_mtime);
		for (size_t i = 0; i < n && total > c->cap; i++)
			if (unlink(vs[i].path) == 0)
				total -= vs[i].size;
	}
	free(vs);
	unlock_cache(lk);
}

/* Does a sample of the range shrink by a tenth?  Tensors of random-looking
 * floats do not, and compressing all of them would cost more than the disk
 * it saves. */
static bool compressible(const void *buf, size_t len)
{
	size_t n = len < CACHE_SAMPLE ? len : CACHE_SAMPLE;
	uint8_t out[CACHE_SAMPLE + CACHE_SAMPLE / 8 + 512];
	size_t z = ZSTD_compress(out, sizeof(out), buf, n, 1);
	return !ZSTD_isError(z) && z <= n - n / 10;
}

void mfs_cache_put(struct mfs_cache_obj *c, const void *buf, uint64_t off, size_t len)
{
	pthread_mutex_lock(&c->lock);
	uint64_t v = c->vtag;
	pthread_mutex_unlock(&c->lock);
	if (!v || !len || len > c->cap)
		return;
	void *zb = NULL;
	size_t zlen = 0;
	if (len <= CACHE_Z_MAX && compressible(buf, len)) {
		size_t bound = ZSTD_compressBound(len);
		zb = malloc(bound);
		if (zb) {
			zlen = ZSTD_compress(zb, bound, buf, len, 1);
			if (ZSTD_isError(zlen) || zlen > len - len / 10)
				zlen = 0;       /* does not pay: stored raw */
		}
	}
	bool z = zlen > 0;
	char name[80];
	range_name(name, sizeof(name), v, off, len, z);
	int rc = write_file(c->sub, name, z ? zb : buf, z ? zlen : len);
	free(zb);
	if (rc < 0)
		return;
	pthread_mutex_lock(&c->lock);
	add_range(c, off, len, z);
	c->put_since_scan += z ? zlen : len;
	bool scan = c->put_since_scan >= c->cap / 16 || c->put_since_scan >= (64u << 20);
	if (scan)
		c->put_since_scan = 0;
	pthread_mutex_unlock(&c->lock);
	if (scan)
		evict(c);
}

void mfs_cache_close(struct mfs_cache_obj *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c->r);
	free(c);
}

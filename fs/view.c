/*
 * fs/view.c — the computed files of a tensor directory: `sha256` (the hex
 * SHA-256 of `data`) and `stats` (count, min, max, mean, std, NaN and Inf
 * counts), without FUSE.
 *
 * Both are made on first read by streaming the tensor's bytes as the
 * transaction shows them (staged or not) through codec/core/view.c, one
 * chunk at a time, and kept for the life of the mount in a table keyed by
 * the tensor's name.  Only the digest of bytes nobody has staged is kept:
 * a staged tensor's is computed on each read (its bytes can change with
 * every write), and a commit forgets them all, since the committed model
 * may hold other bytes under the same names.  A view's size is known
 * without computing it (mfs_view_size: a digest is 65 bytes, a stats file
 * has fixed widths), so that a stat — ls -l, du, find, rsync's file list —
 * never reads a tensor; both are opened direct_io (ll.c), so the kernel
 * never holds a stale copy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "modelfs/htab.h"
#include "modelfs/view.h"

struct vcache {
	struct vcache *next;
	uint64_t key;           /* mfs_name_hash of the name */
	char *name;
	char sha[66];           /* hex digits and '\n'; "" until computed */
	char *stats;            /* NULL until computed */
};

struct mfs_views {
	pthread_mutex_t lock;
	struct vcache **buckets;
	size_t n_buckets, n;
};

int mfs_views_new(struct mfs_views **out)
{
	struct mfs_views *v = calloc(1, sizeof(*v));
	*out = NULL;
	if (!v)
		return -ENOMEM;
	v->n_buckets = 256;
	v->buckets = calloc(v->n_buckets, sizeof(*v->buckets));
	if (!v->buckets) {
		free(v);
		return -ENOMEM;
	}
	pthread_mutex_init(&v->lock, NULL);
	*out = v;
	return 0;
}

static void clear(struct mfs_views *v)
{
	for (size_t i = 0; i < v->n_buckets; i++) {
		struct vcache *c = v->buckets[i], *nx;
		for (; c; c = nx) {
			nx = c->next;
			free(c->name);
			free(c->stats);
			free(c);
		}
		v->buckets[i] = NULL;
	}
	v->n = 0;
}

void mfs_views_destroy(struct mfs_views *v)
{
	if (!v)
		return;
	clear(v);
	free(v->buckets);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

void mfs_views_forget(struct mfs_views *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	clear(v);
	pthread_mutex_unlock(&v->lock);
}

/* The entry of `name` (v->lock held), made when `make`; NULL if none or no memory. */
static struct vcache *slot(struct mfs_views *v, const char *name, bool make)
{
	size_t len = strlen(name);
	uint64_t key = mfs_name_hash(name, len, 0x5eed);
	struct vcache *c = v->buckets[mfs_htab_slot(key, v->n_buckets)];
	for (; c; c = c->next)
		if (c->key == key && !strcmp(c->name, name))
			return c;
	if (!make)
		return NULL;
	if (v->n >= v->n_buckets)
		(void)mfs_htab_grow(&v->buckets, &v->n_buckets, offsetof(struct vcache, next),
		                    offsetof(struct vcache, key));  /* else longer chains */
	c = calloc(1, sizeof(*c));
	if (!c || !(c->name = strdup(name))) {
		free(c);
		return NULL;
	}
	c->key = key;
	size_t k = mfs_htab_slot(key, v->n_buckets);
	c->next = v->buckets[k];
	v->buckets[k] = c;
	v->n++;
	return c;
}

struct vread {
	struct mfs_fs *fs;
	const struct mfs_tensor *t;
};

static ssize_t txn_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct vread *r = arg;
	return mfs_txn_tensor_read(r->fs->txn, r->t, buf, len, off);
}

/* The text of a stats file of a dtype without element statistics. */
static size_t no_stats_line(char *buf, size_t cap, int32_t dtype)
{
	int n = snprintf(buf, cap, "dtype %s: no element statistics\n", mfs_dtype_name(dtype));
	return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

int mfs_view_size(struct mfs_fs *fs, const struct mfs_tensor *t, enum mfs_view which,
                  uint64_t *out)
{
	if (which == MFS_VIEW_SHA256 || which == MFS_VIEW_MODEL) {
		*out = 65;
		return 0;
	}
	int32_t dtype;
	size_t rank;
	int rc = mfs_txn_tensor_type(fs->txn, t, &dtype, NULL, 0, &rank);
	if (rc < 0)
		return rc;
	if (mfs_elems_width(dtype)) {
		*out = MFS_STATS_TEXT_LEN;
	} else {
		char line[128];
		*out = no_stats_line(line, sizeof(line), dtype);
	}
	return 0;
}

/* Compute view `which` of tensor `t` now into a malloc'd text. */
static int compute(struct mfs_fs *fs, const struct mfs_tensor *t, enum mfs_view which,
                   char **out, size_t *len)
{
	struct vread r = {fs, t};
	uint64_t size;
	int rc = mfs_txn_tensor_size(&size, fs->txn, t);
	if (rc < 0)
		return rc;
	if (which == MFS_VIEW_SHA256) {
		char hex[65];
		if ((rc = mfs_view_sha256(hex, size, txn_read, &r)) < 0)
			return rc;
		if (!(*out = malloc(66)))
			return -ENOMEM;
		*len = (size_t)snprintf(*out, 66, "%s\n", hex);
		return 0;
	}
	int32_t dtype;
	size_t rank;
	if ((rc = mfs_txn_tensor_type(fs->txn, t, &dtype, NULL, 0, &rank)) < 0)
		return rc;
	struct mfs_stats st;
	rc = mfs_view_stats(&st, dtype, size, txn_read, &r);
	if (rc == -EOPNOTSUPP) {
		/* Still a file to read: say why there are no numbers. */
		char line[128];
		size_t n = no_stats_line(line, sizeof(line), dtype);
		*out = strdup(line);
		*len = n;
		return *out ? 0 : -ENOMEM;
	}
	if (rc < 0)
		return rc;
	size_t need = mfs_stats_format(NULL, 0, &st);
	if (!(*out = malloc(need + 1)))
		return -ENOMEM;
	*len = mfs_stats_format(*out, need + 1, &st);
	return 0;
}

int mfs_view_text(struct mfs_fs *fs, const struct mfs_tensor *t, enum mfs_view which, char **out,
                  size_t *len)
{
	struct mfs_views *v = fs->views;
	if (which == MFS_VIEW_MODEL) {
		char hex[65];
		int rc = mfs_txn_sha256(fs->txn, hex);
		*out = NULL;
		*len = 0;
		if (rc < 0)
			return rc;
		if (!(*out = malloc(66)))
			return -ENOMEM;
		*len = (size_t)snprintf(*out, 66, "%s\n", hex);
		return 0;
	}
	const char *name = t->name ? t->name : "";
	bool keep = v && !mfs_txn_tensor_staged(fs->txn, t);
	*out = NULL;
	*len = 0;
	if (keep) {
		pthread_mutex_lock(&v->lock);
		struct vcache *c = slot(v, name, false);
		const char *s = !c ? NULL : which == MFS_VIEW_SHA256 ? (c->sha[0] ? c->sha : NULL) :
		                c->stats;
		if (s) {
			*out = strdup(s);
			*len = *out ? strlen(*out) : 0;
		}
		pthread_mutex_unlock(&v->lock);
		if (*out)
			return 0;
	}
	/* Computed without the lock: two first readers may both compute it. */
	int rc = compute(fs, t, which, out, len);
	if (rc < 0 || !keep)
		return rc;
	pthread_mutex_lock(&v->lock);
	struct vcache *c = slot(v, name, true);
	if (c && which == MFS_VIEW_SHA256 && *len == 65 && !c->sha[0])
		memcpy(c->sha, *out, 66);
	else if (c && which == MFS_VIEW_STATS && !c->stats)
		c->stats = strdup(*out);        /* no memory: computed again next time */
	pthread_mutex_unlock(&v->lock);
	return 0;
}

/* The npy header of `t` now into `h` (MFS_NPY_HEADER_MAX bytes): its length or an error. */
static ssize_t npy_header(struct mfs_fs *fs, const struct mfs_tensor *t, char *h)
{
	int32_t dtype;
	size_t rank = 0, r2 = 0;
	int rc = mfs_txn_tensor_type(fs->txn, t, &dtype, NULL, 0, &rank);
	if (rc < 0)
		return rc;
	int64_t *dims = malloc((rank + 1) * sizeof(*dims));
	if (!dims)
		return -ENOMEM;
	rc = mfs_txn_tensor_type(fs->txn, t, &dtype, dims, rank, &r2);
	size_t n = rc < 0 ? 0 : mfs_npy_header(h, MFS_NPY_HEADER_MAX, dtype, dims,
	                                       r2 < rank ? r2 : rank);
	free(dims);
	if (rc < 0)
		return rc;
	return n ? (ssize_t)n : -EOPNOTSUPP;
}

int mfs_npy_size(struct mfs_fs *fs, const struct mfs_tensor *t, uint64_t *out)
{
	char h[MFS_NPY_HEADER_MAX];
	uint64_t size;
	*out = 0;
	ssize_t hl = npy_header(fs, t, h);
	if (hl < 0)
		return (int)hl;
	int rc = mfs_txn_tensor_size(&size, fs->txn, t);
	if (rc == 0)
		*out = (uint64_t)hl + size;
	return rc;
}

ssize_t mfs_npy_read(struct mfs_fs *fs, const struct mfs_tensor *t, void *buf, size_t len,
                     uint64_t off)
{
	char h[MFS_NPY_HEADER_MAX];
	ssize_t hl = npy_header(fs, t, h);
	if (hl < 0)
		return hl;
	size_t got = 0;
	if (off < (uint64_t)hl) {
		got = (size_t)hl - (size_t)off < len ? (size_t)hl - (size_t)off : len;
		memcpy(buf, h + off, got);
	}
	while (got < len) {
		uint64_t toff = off + got - (uint64_t)hl;
		ssize_t n = mfs_txn_tensor_read(fs->txn, t, (char *)buf + got, len - got, toff);
		if (n < 0)
			return got ? (ssize_t)got : n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

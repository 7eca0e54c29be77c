/*
 * codec/source/cache.h — the on-disk cache of remote bytes (cache.c).
 *
 * One directory per URL, holding what that URL was (size and validator)
 * and the byte ranges fetched from it, exactly as fetched.  Ranges are
 * named after the version they belong to, so a changed object never mixes
 * with chunks of the old one, even for another process still serving the
 * old version.  Shared by any number of mounts and processes: files appear
 * by atomic rename, and eviction (least recently used first, to stay under
 * the size bound) runs under an flock of the cache directory.
 */
#ifndef MODELFS_CODEC_CACHE_H
#define MODELFS_CODEC_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct mfs_cache_obj;

struct mfs_cache_meta {
	uint64_t size;          /* 0: nothing known */
	char etag[256];
	char lastmod[64];
};

/*
 * mfs_cache_open() - the cache entry of `url` under `dir` (made if
 * missing), bounded to `cap` bytes in all (0: a default).  *known gets the
 * version the cache holds (size 0 when none).  Returns 0 or -errno.
 */
int mfs_cache_open(struct mfs_cache_obj **out, const char *dir, uint64_t cap, const char *url,
                   struct mfs_cache_meta *known);

/* mfs_cache_reset() - the object is at version `m` now: unless that is the
 * version cached, forget the old ranges.  Returns 0 or -errno. */
int mfs_cache_reset(struct mfs_cache_obj *c, const struct mfs_cache_meta *m);

/* mfs_cache_get() - bytes [off, off + len) if one cached range holds them:
 * 0, or -ENOENT (a miss) / -errno. */
int mfs_cache_get(struct mfs_cache_obj *c, void *buf, uint64_t off, size_t len);

/* mfs_cache_put() - keep bytes [off, off + len); failures are quiet (a
 * cache that cannot store is only slower). */
void mfs_cache_put(struct mfs_cache_obj *c, const void *buf, uint64_t off, size_t len);

/* mfs_cache_close() - accepts NULL. */
void mfs_cache_close(struct mfs_cache_obj *c);

#endif /* MODELFS_CODEC_CACHE_H */

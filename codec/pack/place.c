/*
 * codec/pack/place.c — a pack as a place: the model's files are the pack's
 * original files, each served as a byte source that decompresses the
 * chunks a read touches (pack.h).  The model's own format then opens them
 * as it would the files on disk.  A commit of the model writes a new pack:
 * the place's `rewrite` hands the format's pieces of the new files to
 * commit.c and the commit engine installs its result over the pack file,
 * whose identity (not the original file's) is what the commit checks.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "pack/pack.h"
#include "source/place.h"

/* ------------------------------------------------------------ sources */

struct pk_source {
	struct mfs_source base;
	struct mfs_pack *pk;
	uint32_t file;
};

static ssize_t src_pread(struct mfs_source *s, void *buf, size_t len, uint64_t off)
{
	struct pk_source *p = (struct pk_source *)s;
	return pk_pread(p->pk, p->file, buf, len, off);
}

static int src_fd(const struct mfs_source *s)
{
	(void)s;
	return -1;      /* compressed: no descriptor gives the original bytes */
}

static int src_stat(const struct mfs_source *s, struct stat *out)
{
	const struct pk_source *p = (const struct pk_source *)s;
	const struct pk_file *pf = &p->pk->files[p->file];
	struct stat st;
	int rc = mfs_source_stat(p->pk->src, &st);
	if (rc < 0)
		return rc;
	/* The pack's identity, the original file's size, mode and mtime. */
	*out = st;
	out->st_size = (off_t)pf->size;
	out->st_mode = S_IFREG | (pf->mode & 07777);
	out->st_mtim.tv_sec = pf->mtime_sec;
	out->st_mtim.tv_nsec = pf->mtime_nsec;
	out->st_nlink = 1;
	return 0;
}

static void src_advise(struct mfs_source *s, bool random)
{
	(void)s;
	(void)random;
}

static void src_close(struct mfs_source *s)
{
	struct pk_source *p = (struct pk_source *)s;
	pk_unref(p->pk);
	free(p);
}

static const struct mfs_source_ops src_ops = {
	.kind = "pack",
	.pread = src_pread,
	.fd = src_fd,
	.stat = src_stat,
	.advise_random = src_advise,
	.close = src_close,
};

int pk_source(struct mfs_source **out, struct mfs_pack *pk, uint32_t f)
{
	struct pk_source *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->base.ops = &src_ops;
	p->base.size = pk->files[f].size;
	p->base.mtime_sec = pk->files[f].mtime_sec;
	p->base.mtime_nsec = pk->files[f].mtime_nsec;
	p->pk = pk;
	p->file = f;
	pk_ref(pk);
	*out = &p->base;
	return 0;
}

/* ------------------------------------------------------------ the place */

struct pk_place {
	struct mfs_place base;
	struct mfs_pack *pk;
	/* The place the pack file is in (a local directory, a URL prefix):
	 * its directory descriptor and name are the pack place's too. */
	struct mfs_place *under;
};

static int place_beneath(struct mfs_place *p, struct mfs_source **out, const char *location,
                         char *err, size_t errlen, const char *display)
{
	struct pk_place *pp = (struct pk_place *)p;
	int f = pk_find(pp->pk, location);
	if (f < 0)
		return mfs_errf(err, errlen, -ENOENT, display, "%s is not in the pack %s", location,
		                pp->pk->display);
	int rc = pk_source(out, pp->pk, (uint32_t)f);
	if (rc < 0)
		return mfs_errf(err, errlen, rc, display, "out of memory");
	return 0;
}

static void place_close(struct mfs_place *p)
{
	struct pk_place *pp = (struct pk_place *)p;
	pk_unref(pp->pk);
	mfs_place_close(pp->under);
	free(pp);
}

static size_t place_meta(struct mfs_place *p, size_t i, const char **name, char *buf,
                         size_t len)
{
	const struct mfs_pack *pk = ((struct pk_place *)p)->pk;
	char hex[65];
	switch (i) {
	case 0:
		*name = "ratio";
		return (size_t)snprintf(buf, len, "%.4f", pk->size ? (double)pk->orig_total /
		                        (double)pk->size : 0.0);
	case 1:
		*name = "chunk_size";
		return (size_t)snprintf(buf, len, "%u", pk->chunk_size);
	case 2:
		*name = "level";
		return (size_t)snprintf(buf, len, "%d", pk->level);
	case 3:
		*name = "sha256";
		if (!pk->files[0].sha_known)    /* since an appending commit */
			return (size_t)snprintf(buf, len, "unknown");
		mfs_hex(hex, pk->files[0].sha256, 32);
		return (size_t)snprintf(buf, len, "%s", hex);
	case 4:
		*name = "version";
		return (size_t)snprintf(buf, len, "%u.%u", pk->major, pk->minor);
	case 5:
		*name = "bytes";
		return (size_t)snprintf(buf, len, "%llu", (unsigned long long)pk->size);
	case 6:
		*name = "original_bytes";
		return (size_t)snprintf(buf, len, "%llu", (unsigned long long)pk->orig_total);
	case 7:
		*name = "plain";
		return (size_t)snprintf(buf, len, "%d", pk->plain ? 1 : 0);
	default:
		return 0;
	}
}

static int place_rewrite(struct mfs_place *p, struct mfs_splice *out,
                         const struct mfs_place_change *c, char *err, size_t errlen)
{
	return pk_commit(((struct pk_place *)p)->pk, out, c, err, errlen);
}

static int place_identity(struct mfs_place *p, struct mfs_identity *out)
{
	return mfs_source_identity(((struct pk_place *)p)->pk->src, out);
}

static const struct mfs_place_ops place_ops = {
	.kind = "pack",
	.rewrite = place_rewrite,
	.identity = place_identity,
	.meta_dir = "pack",
	.meta = place_meta,
	.open_beneath = place_beneath,
	.close = place_close,
};

static bool pack_claims(const char *path)
{
	return mfs_pack_path(path);
}

/*
 * The pack file `file` of place `under` becomes a place: the pack is read
 * through the source alone, so a local pack and one behind a URL are the
 * same code, and a read fetches only the frames it touches.
 */
static int pack_open_in(struct mfs_place **place, struct mfs_source **root, const char **base,
                        struct mfs_place *under, struct mfs_source *file, const char *path,
                        char *err, size_t errlen)
{
	struct pk_place *pp = calloc(1, sizeof(*pp));
	if (!pp) {
		mfs_source_close(file);
		mfs_place_close(under);
		return mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
	}
	pp->base.ops = &place_ops;
	pp->under = under;
	/* The journal named after the pack, and a commit's new pack, go in
	 * the pack's directory; a remote place has none (-1). */
	pp->base.dirfd = under->dirfd;
	pp->base.name = under->name;
	int rc = pk_open(&pp->pk, file, path, err, errlen);
	if (rc < 0) {
		place_close(&pp->base);
		return rc;
	}
	if ((rc = pk_source(root, pp->pk, 0)) < 0) {
		place_close(&pp->base);
		return mfs_errf(err, errlen, rc, path, "out of memory");
	}
	*place = &pp->base;
	*base = pp->pk->files[0].path;
	return 0;
}

const struct mfs_place_kind mfs_place_pack = {
	.name = "pack",
	.claims = pack_claims,
	.open_in = pack_open_in,
	.rewrites = true,
};

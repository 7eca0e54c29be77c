/*
 * codec/source/place.c — the table of place kinds, and the local
 * directory, the place every model had before there were others (place.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "source/http.h"
#include "source/place.h"

/* Kinds chosen by the form of a path, tried in order; the local directory
 * is the fallback and is not listed.  Layers (open_in) are looked for
 * apart: a URL ending in .mfs is the http kind's file and the pack layer's
 * place. */
static const struct mfs_place_kind *const kinds[] = {
	&mfs_place_http,
	&mfs_place_pack,
	NULL,
};

/* The first kind of the sort asked for (a layer or not) that claims
 * `path`: the local directory when no other place does, NULL when no
 * layer does. */
static const struct mfs_place_kind *claimer(const char *path, bool layer)
{
	for (size_t i = 0; kinds[i]; i++)
		if ((kinds[i]->open_in != NULL) == layer && kinds[i]->claims &&
		    kinds[i]->claims(path))
			return kinds[i];
	return layer ? NULL : &mfs_place_dir;
}

bool mfs_place_claimed_rewrites(const char *path)
{
	const struct mfs_place_kind *l = claimer(path, true);
	return (l && l->rewrites) || claimer(path, false)->rewrites;
}

int mfs_place_open(struct mfs_place **place, struct mfs_source **root, const char **base,
                   const char *path, char *err, size_t errlen)
{
	*place = NULL;
	*root = NULL;
	*base = NULL;
	const struct mfs_place_kind *k = claimer(path, false), *l = claimer(path, true);
	int rc = k->open(place, root, base, path, err, errlen);
	if (rc < 0 || !l)
		return rc;
	struct mfs_place *under = *place;
	struct mfs_source *file = *root;
	*place = NULL;
	*root = NULL;
	*base = NULL;
	return l->open_in(place, root, base, under, file, path, err, errlen);
}

int mfs_place_open_file(struct mfs_source **out, const char *path, char *err, size_t errlen)
{
	struct mfs_place *p;
	const char *base;
	*out = NULL;
	int rc = claimer(path, false)->open(&p, out, &base, path, err, errlen);
	if (rc < 0)
		return rc;
	/* A source lives on its own: it holds what it reads from (a
	 * descriptor, a URL), not its place. */
	mfs_place_close(p);
	return 0;
}

int mfs_place_open_beneath(struct mfs_place *p, struct mfs_source **out, const char *location,
                           char *err, size_t errlen, const char *display)
{
	return p->ops->open_beneath(p, out, location, err, errlen, display);
}

void mfs_place_close(struct mfs_place *p)
{
	if (p)
		p->ops->close(p);
}

const char *mfs_place_path_fault(const char *path)
{
	if (!path[0])
		return "is empty";
	if (path[0] == '/')
		return "is absolute";
	for (const char *p = path;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return "contains '..'";
		if (n == 0 || (n == 1 && p[0] == '.'))
			return "has an empty or '.' component";
		if (!e)
			return NULL;
		p = e + 1;
	}
}

/* ------------------------------------------------------------ local directory */

struct dir_place {
	struct mfs_place base;
	char path[];            /* the directory, then NUL, then the model file's name */
};

static int dir_beneath(struct mfs_place *p, struct mfs_source **out, const char *location,
                       char *err, size_t errlen, const char *display)
{
	return mfs_source_file_beneath(out, p->dirfd, location, err, errlen, display);
}

static void dir_close(struct mfs_place *p)
{
	if (p->dirfd >= 0)
		mfs_io->close(p->dirfd);
	free(p);
}

static const struct mfs_place_ops dir_ops = {
	.kind = "dir",
	.open_beneath = dir_beneath,
	.close = dir_close,
};

static int dir_open(struct mfs_place **place, struct mfs_source **root, const char **base,
                    const char *path, char *err, size_t errlen)
{
	char abs[PATH_MAX];
	if (!realpath(path, abs))
		return mfs_errf(err, errlen, -errno, path, "%s", strerror(errno));
	char *slash = strrchr(abs, '/');
	size_t dlen = slash == abs ? 1 : (size_t)(slash - abs);
	size_t blen = strlen(slash + 1);
	struct dir_place *d = malloc(sizeof(*d) + dlen + 1 + blen + 1);
	if (!d)
		return mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
	memcpy(d->path, abs, dlen);
	d->path[dlen] = '\0';
	memcpy(d->path + dlen + 1, slash + 1, blen + 1);
	d->base.ops = &dir_ops;
	d->base.name = d->path;
	d->base.dirfd = mfs_io->openat(AT_FDCWD, d->path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (d->base.dirfd < 0) {
		int rc = mfs_errf(err, errlen, -errno, path, "cannot open its directory: %s",
		                  strerror(errno));
		free(d);
		return rc;
	}
	const char *name = d->path + dlen + 1;
	int rc = mfs_source_file_open(root, d->base.dirfd, name);
	if (rc < 0) {
		if (rc == -EINVAL)
			mfs_errf(err, errlen, rc, path, "not a regular file");
		else
			mfs_errf(err, errlen, rc, path, "%s", strerror(-rc));
		dir_close(&d->base);
		return rc;
	}
	*place = &d->base;
	*base = name;
	return 0;
}

const struct mfs_place_kind mfs_place_dir = {
	.name = "dir",
	.claims = NULL,
	.open = dir_open,
};

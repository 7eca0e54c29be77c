/*
 * codec/source/place.h — places: where a model's files are.
 *
 * A model is one file the user names plus the files it names itself
 * (external data, shards, split parts), found relative to the first.  A
 * place is what holds them: a local directory today; a pack or a URL
 * prefix are other kinds.  Formats never open a file themselves: they ask
 * the model's place for `location` (mfs_model_open_beneath() in format.h),
 * and the place applies the rules for files a model names (doc/design.md
 * §7: relative, no "..", no symlink, one link for a local file) in its own
 * terms.
 *
 * The kind of place is chosen by the form of the path the user named (a
 * URL scheme, say), in the table of place.c; the local directory is the
 * fallback.  A place is created while a model opens, owned by the model
 * and immutable afterwards.
 */
#ifndef MODELFS_CODEC_PLACE_H
#define MODELFS_CODEC_PLACE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/splice.h"
#include "source/source.h"

struct mfs_place;
struct mfs_model;

/* A tensor whose bytes a commit changes (for a place's rewrite). */
struct mfs_place_tensor {
	uint64_t index;         /* in the model's description */
	int32_t dtype;          /* its element type after the commit */
	uint64_t size;          /* its byte count after the commit */
	mfs_piece_fn read;      /* its bytes after the commit */
	void *arg;
};

/*
 * What a commit changes, for a place that holds a model's files inside one
 * file of its own (a pack): the new content of each changed file as the
 * format's splice writer described it (pieces that read the old file's
 * bytes through the model's sources, buffers, staged data), and the
 * tensors whose bytes change, and what each tensor is called after it.
 */
struct mfs_place_change {
	const struct mfs_model *m;              /* the model, open from this place */
	const struct mfs_splice *const *files;  /* per file of m: new content, NULL: unchanged */
	const struct mfs_place_tensor *tensors; /* whose bytes change, ascending index */
	size_t n_tensors;
	/* Per tensor of m: its name after the commit (renamed, or as it is),
	 * NULL when the commit deletes it; `names` NULL: no tensor is renamed
	 * or deleted. */
	const char *const *names;
	/* Tensors the commit adds (index unused), after the model's in the
	 * new file, and their names. */
	const struct mfs_place_tensor *added;
	const char *const *added_names;
	size_t n_added;
	/* Progress while the new file is prepared, or NULL: *done grows to
	 * *total (atomic stores; the commit engine then counts its writes). */
	uint64_t *done, *total;
	/* Non-NULL: the place may describe the new file as its old bytes
	 * followed by more (an appending commit, txn/commit.h
	 * mfs_commit_append): then the first piece of `out` is a copy of the
	 * old file's [0, *append_at) and *append_at is set; else it stays 0. */
	uint64_t *append_at;
};

struct mfs_place_ops {
	const char *kind;       /* "dir": for messages */
	/*
	 * A place whose files are inside one file of its own (a pack): the
	 * new version of that file as pieces, which the commit engine
	 * (txn/commit.h) writes and renames over it, like a model file.
	 * NULL: a commit replaces the model file itself.  Returns 0 or -errno
	 * with one line in `err`.
	 */
	int (*rewrite)(struct mfs_place *p, struct mfs_splice *out, const struct mfs_place_change *c,
	               char *err, size_t errlen);
	/* The identity of the file a commit replaces, when it is not the model
	 * file's (a pack's own file).  NULL: the model file's. */
	int (*identity)(struct mfs_place *p, struct mfs_identity *out);
	/*
	 * Facts about the place shown as meta/<meta_dir>/<name> (NULL: none):
	 * `meta` writes entry i's text into buf and its name into *name, and
	 * returns the text's length, or 0 past the last entry.
	 */
	const char *meta_dir;
	size_t (*meta)(struct mfs_place *p, size_t i, const char **name, char *buf, size_t len);
	/*
	 * Open `location`, a path the model names relative to its own file,
	 * as a source under the rules above.  Returns 0, or -errno with one
	 * line in `err` that starts with `display` (-EUCLEAN for a location
	 * the rules refuse).
	 */
	int (*open_beneath)(struct mfs_place *p, struct mfs_source **out, const char *location,
	                    char *err, size_t errlen, const char *display);
	void (*close)(struct mfs_place *p);
};

struct mfs_place {
	const struct mfs_place_ops *ops;
	/* A local directory's O_PATH descriptor (for the commit and the
	 * journal beside the model), or -1 for a place that is not one. */
	int dirfd;
	/* The place as the user would name it (an absolute directory, a URL
	 * prefix), NUL-terminated, owned by the place. */
	char *name;
};

/* A kind of place, a row of the table in place.c. */
struct mfs_place_kind {
	const char *name;
	/* Is `path` one of mine, by its form alone?  NULL: the fallback. */
	bool (*claims)(const char *path);
	/*
	 * Open the place that holds `path` and `path` itself as a source.
	 * On success *place and *root are the caller's, and *base (owned by
	 * the place) is the model file's name within it.  Returns 0 or -errno
	 * with one line in `err` naming `path`.  NULL for a layer.
	 */
	int (*open)(struct mfs_place **place, struct mfs_source **root, const char **base,
	            const char *path, char *err, size_t errlen);
	/*
	 * A layer instead (a pack): a place that is one file of another place.
	 * The kind that would claim `path` without the layer (a URL, else the
	 * local directory) opens it first, as `under` and its source `file`;
	 * open_in makes the place that the file is, with the results of
	 * `open`.  `under` and `file` are taken, closed on failure too.  NULL
	 * for a kind that is not a layer.
	 */
	int (*open_in)(struct mfs_place **place, struct mfs_source **root, const char **base,
	               struct mfs_place *under, struct mfs_source *file, const char *path,
	               char *err, size_t errlen);
	bool rewrites;          /* its places commit by rewriting their own file
	                         * (place_ops.rewrite): no in-place commits */
};

/*
 * mfs_place_open() - the first kind that claims `path` (else the local
 * directory) opens it, and then the layer that claims it, if one does,
 * takes it over: see struct mfs_place_kind.open and .open_in.
 */
int mfs_place_open(struct mfs_place **place, struct mfs_source **root, const char **base,
                   const char *path, char *err, size_t errlen);

/*
 * mfs_place_open_file() - `path` itself as a source, as the kind that
 * claims it with layers left aside opens it: a pack's own bytes rather
 * than the model inside (modelfs verify, unpack), from a local file or a
 * URL alike.  Returns 0 or -errno with one line in `err` naming `path`.
 */
int mfs_place_open_file(struct mfs_source **out, const char *path, char *err, size_t errlen);

/* mfs_place_open_beneath() - see struct mfs_place_ops.open_beneath. */
int mfs_place_open_beneath(struct mfs_place *p, struct mfs_source **out, const char *location,
                           char *err, size_t errlen, const char *display);

/*
 * mfs_place_path_fault() - why `path` is not a relative path of plain
 * components — "is empty", "is absolute", "contains '..'" or "has an empty
 * or '.' component" — or NULL when it is one.  The rule places that are
 * not a local directory apply to the files a model or a pack names (the
 * local directory walks the path itself, component by component).
 */
const char *mfs_place_path_fault(const char *path);

/* mfs_place_close() - release it; accepts NULL. */
void mfs_place_close(struct mfs_place *p);

/* mfs_place_claimed_rewrites() - does the kind that claims `path` commit
 * by rewriting a file of its own (a pack), so that in-place commits do not
 * apply?  By the path's form alone, before anything opens. */
bool mfs_place_claimed_rewrites(const char *path);

/* The local directory (place.c): the fallback kind. */
extern const struct mfs_place_kind mfs_place_dir;
/* A pack (codec/pack/place.c): a layer, a path ending in ".mfs" (local or
 * remote alike). */
extern const struct mfs_place_kind mfs_place_pack;

#endif /* MODELFS_CODEC_PLACE_H */

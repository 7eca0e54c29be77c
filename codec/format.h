/*
 * codec/format.h — one kind of model file: the interface every format
 * implements, and the model object they fill in.
 *
 * A format is one folder of codec/ (onnx/, safetensors/) that defines one
 * `const struct mfs_format` and one row in the table of codec/format.c.
 * Everything else — model.c, the transaction (txn/), the daemon (fs/) and
 * the `modelfs` command — is format-neutral: it goes through this table or
 * through what a format leaves in the description, never through a check of
 * which format a model is.
 *
 * What a format provides, and when it is used:
 *
 *   sniff          at open: does this content look like me?  By content
 *                  only, never by name.  The highest answer wins; on a tie
 *                  the earlier row.
 *   open           fill m->desc (and m->priv, its own state) from the
 *                  model file, adding source files it names (external
 *                  data, shards) with mfs_model_add_file().  Each tensor
 *                  gets its flags (model.h: MFS_TENSOR_CONTIGUOUS,
 *                  MFS_TENSOR_EDITABLE), which decide zero-copy reads,
 *                  whether it may be edited and whether a commit may patch
 *                  it in place.
 *   close          free m->priv if the arena does not hold it.
 *   tensor_read    the bytes of a tensor that is neither in memory nor one
 *                  contiguous range of one source (a strided view, say).
 *   edits          which dtypes a tensor may take, a commit-time check of
 *                  one tensor edit, a check of a dtype edit against the
 *                  types the model's graph declares, the meta/ files that
 *                  may be written and how a value is checked, whether
 *                  props may be edited.
 *   splice         the commit writer: the new file as a piece list.
 *
 * A format that cannot be edited leaves `splice` NULL and marks no tensor
 * editable; a format whose tree is a graph (nodes, inputs, outputs) sets
 * MFS_DESC_GRAPH in `flags`, otherwise the tree shows its tensors only.
 */
#ifndef MODELFS_CODEC_FORMAT_H
#define MODELFS_CODEC_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelfs/model.h"

#include "core/core.h"
#include "core/splice.h"
#include "source/place.h"
#include "source/source.h"

struct mfs_format;

/* ------------------------------------------------------------ the model */

struct mfs_model {
	struct mfs_desc desc;
	struct mfs_arena *arena;
	const struct mfs_format *fmt;
	struct mfs_source **srcs;       /* desc.n_files sources, parallel to desc.files */
	struct mfs_place *place;        /* where its files are (source/place.h) */
	void *priv;             /* the format's own state (usually in the arena) */
	uint64_t layout;        /* fingerprint of the description (mfs_model_layout) */
	/* While the format's open runs: the first bytes of the model file, as
	 * its sniffer saw them (so that they are not read twice). */
	const uint8_t *head;
	size_t head_len;
};

/*
 * mfs_model_add_file() - add a source file to the model: record its path
 * (relative to the model's directory, '/'-separated) and its source, which
 * the model takes over, even on failure.  Returns its index in desc.files,
 * or a negative errno (-EFBIG past MFS_MAX_EXT_FILES).
 */
int mfs_model_add_file(struct mfs_model *m, const char *relpath, struct mfs_source *src);

/*
 * mfs_model_open_beneath() - open `location`, a file the model names
 * relative to its own file (external data, a shard), from the model's
 * place under the rules for such files (source/place.h).  A format opens
 * every further file through this, never by itself.  Returns 0, or -errno
 * with one line in `err` that starts with `display`.
 */
int mfs_model_open_beneath(struct mfs_model *m, struct mfs_source **out, const char *location,
                           char *err, size_t errlen, const char *display);

/*
 * mfs_model_layout() - a fingerprint of what the model's description says:
 * its format, its source files' names and sizes, every tensor's name, type,
 * shape, flags and place, its meta/ values and props.  Two opens of the same
 * bytes give the same value; a file whose structure differs gives another
 * (with the odds of a 64-bit hash).  Tensor payloads do not take part, so an
 * in-place commit keeps it.  Computed at open; never 0.
 */
uint64_t mfs_model_layout(const struct mfs_model *m);

/* ------------------------------------------------------------ edits */

/* A byte range of a tensor's data. */
struct mfs_run {
	uint64_t off, len;
};

/* The effective state of one edited tensor. */
struct mfs_tensor_edit {
	const struct mfs_tensor *t;
	int32_t dtype;          /* effective dtype */
	size_t rank;
	const int64_t *dims;    /* effective dims */
	bool dtype_changed;
	bool dims_changed;
	bool data_changed;      /* the bytes differ from t's (size or content) */
	bool added;             /* a new tensor (field TENSOR_ADD, t->id >= n_tensors, made
	                         * by the txn): the writer appends it, bytes from `read`
	                         * (none when size is 0) */
	uint64_t size;          /* effective byte count */
	mfs_piece_fn read;      /* effective bytes, when data_changed */
	void *arg;
	/*
	 * For a same-size data edit: the ranges that differ, ascending and
	 * disjoint.  NULL means "not computed": the whole payload is taken
	 * from `read`, which gives the same bytes.
	 */
	const struct mfs_run *runs;
	size_t n_runs;
};

/* One entry of the effective props list. */
struct mfs_prop_edit {
	int64_t orig;           /* index in desc.props, -1 for a new key */
	const char *key;
	const char *value;
	size_t len;
	const char *type;       /* a new type (prop_type_check took it), NULL: the key's own */
	bool changed;           /* key, value or type differ from desc.props[orig] */
};

/* A staged graph field (model.h, MFS_FIELD_ID): its text as the file
 * shows it (escaped, one value per line), without the last '\n'. */
struct mfs_field_edit {
	uint64_t id;
	const char *text;
	size_t len;
};

/* The most meta/ files a format may make writable. */
#define MFS_META_MAX 16

/*
 * What a commit changes, every edit already reduced to its effective value
 * (a dtype set back to the original is no edit), built by the transaction
 * from its stage.  meta[k] is the new value of the format's writable meta
 * file k (struct mfs_format.meta_names[k]), NULL when unchanged.
 */
struct mfs_edit_set {
	const struct mfs_tensor_edit *tensors;  /* ascending id */
	size_t n_tensors;
	const char *meta[MFS_META_MAX];
	size_t meta_len[MFS_META_MAX];
	bool props_changed;
	const struct mfs_prop_edit *props;      /* the whole effective list, when changed:
	                                         * existing keys in file order, then new */
	size_t n_props;
	const struct mfs_field_edit *fields;    /* ascending id, each differing */
	size_t n_fields;
};

/* ------------------------------------------------------------ the interface */

/* Answers of `sniff`. */
enum mfs_sniff {
	MFS_SNIFF_NO = 0,       /* not this format */
	MFS_SNIFF_MAYBE = 1,    /* could be: the format to try when nothing says YES
	                         * (its reader then says what is wrong) */
	MFS_SNIFF_YES = 2,      /* this format's signature */
};

/*
 * How many leading bytes `sniff` is shown (fewer when the file is shorter):
 * enough for a protobuf key, a safetensors length and the first bytes of
 * JSON, and few enough that opening a model reads little beyond its header.
 */
#define MFS_SNIFF_LEN 16

/* Answers of `type_check`. */
enum mfs_type_verdict {
	MFS_TYPE_OK = 0,
	MFS_TYPE_DECLARED = 1,  /* the graph declares another dtype for the tensor: the
	                         * model would be invalid; a commit refuses the edit
	                         * unless forced (mfs_txn_opts.force_types) */
	MFS_TYPE_PEER = 2,      /* a node reads the tensor beside an input of the
	                         * tensor's old dtype: the edit may break the node's
	                         * type constraint; a warning, never a refusal */
};

/* A dtype under a format's own name (struct mfs_format.dtype_names). */
struct mfs_dtype_alias {
	int32_t dtype;
	const char *name;
};

struct mfs_format {
	const char *name;       /* "onnx", "safetensors": desc.format and meta/format */
	unsigned flags;         /* desc.flags of its models (MFS_DESC_GRAPH) */
	/*
	 * The names its `dtype` files show where they differ from the generic
	 * ones (mfs_dtype_name): GGUF's "f32", "bf16", "i8", as ggml names them.
	 * Ended by a NULL name; NULL for none.  A dtype in the table has that
	 * name only (its generic name is not accepted in a write), every other
	 * dtype keeps its generic name.  Used through mfs_desc_dtype_name() and
	 * mfs_desc_dtype_from_name() (model.h).
	 */
	const struct mfs_dtype_alias *dtype_names;

	/* The first `len` bytes of a file of `size` bytes: enum mfs_sniff. */
	int (*sniff)(const uint8_t *head, size_t len, uint64_t size);

	/*
	 * Describe the model: m->desc.files[0] and m->srcs[0] are the model
	 * file, open.  Fill m->desc (from m->arena), may set m->priv and add
	 * sources.  `display` names the model in messages.  Returns 0 or
	 * -errno with one line in `err` (model.h, mfs_model_open).
	 * -ENOEXEC says "not mine after all": the file, read further than
	 * sniff could, belongs to another format (a JSON index whose shards
	 * are another format's files).  model.c then undoes what open did
	 * (sources added, m->priv after `close`) and tries the next row that
	 * sniffed the file as this one did (mfs_format_sniff_next); when none
	 * opens it, the first such line is the one reported, with -EUCLEAN.
	 */
	int (*open)(struct mfs_model *m, const char *display, char *err, size_t errlen);
	/* Free what open kept outside the arena (may be NULL). */
	void (*close)(struct mfs_model *m);

	/*
	 * Bytes of a tensor with neither `mem` nor MFS_TENSOR_CONTIGUOUS (may
	 * be NULL when the format has none): mfs_tensor_read()'s contract.
	 */
	ssize_t (*tensor_read)(const struct mfs_model *m, const struct mfs_tensor *t, void *buf,
	                       size_t len, uint64_t off);

	/* ---- edits; all may be NULL when the format takes no edits ---- */

	/* May an editable tensor take `dtype` (known, fixed width)? */
	bool (*dtype_ok)(int32_t dtype);
	/*
	 * Commit-time check of one tensor edit beyond "data size = dtype ×
	 * shape", which the transaction makes itself.  0, or -EINVAL with one
	 * line in `msg`.
	 */
	int (*tensor_check)(const struct mfs_tensor_edit *te, char *msg, size_t msglen);
	/*
	 * What the model's graph says of the dtype edit e->tensors[i] (one whose
	 * dtype_changed): enum mfs_type_verdict, with one line in `msg` naming
	 * the tensor, its new dtype and what contradicts it.  The other edits of
	 * `e` count (a peer edited to the same dtype is no conflict).  NULL for
	 * a format whose models declare no types.
	 */
	int (*type_check)(const struct mfs_model *m, const struct mfs_edit_set *e, size_t i,
	                  char *msg, size_t msglen);
	/*
	 * The meta/ files that may be written, NULL-terminated, at most
	 * MFS_META_MAX; the index of a name is its slot in mfs_edit_set.meta
	 * and in the journal, so a format appends names and never reorders.
	 */
	const char *const *meta_names;
	/* Check a value (one trailing '\n' already dropped, valid UTF-8): 0 or -EINVAL. */
	int (*meta_check)(unsigned k, const char *text, size_t len);
	/* May props (meta/props/) be created, changed and removed? */
	bool (*props_writable)(const struct mfs_model *m);
	/*
	 * Check a prop's new value when it is staged (one trailing '\n'
	 * dropped, valid UTF-8): `key` is its key, `orig` its index in
	 * desc.props (renames
	 * keep it), -1 for a new key.  0, or -EINVAL (a value of the wrong
	 * type, or a prop that cannot take a new value), and the write fails
	 * with that errno.  `type`: the type staged for the key (one that
	 * prop_type_check took), NULL for its own.  NULL: any value (the
	 * splice may still refuse one at commit).
	 */
	int (*prop_check)(const struct mfs_model *m, const char *key, int64_t orig,
	                  const char *type, const char *value, size_t len);
	/*
	 * Check a new type for prop `key` (orig as for prop_check; -1 for a
	 * new key) whose value is value[0 .. len): `type` is its text, one
	 * trailing '\n' dropped (GGUF: "uint32", "array[string]", what
	 * meta/types/<key> shows).  1: it is the key's own type in the model
	 * (no edit); 0: it may be set, the value fits it; -EINVAL otherwise.
	 * NULL: prop types cannot be written.
	 */
	int (*prop_type_check)(const struct mfs_model *m, const char *key, int64_t orig,
	                       const char *type, const char *value, size_t len);
	/*
	 * Graph fields (model.h): may field `id` of this model be written, and
	 * is `text` (as the file shows it, escaped, without its last '\n') a
	 * value it can take — 0, or -EINVAL with one line in `msg`.  The check
	 * is of the value alone (its syntax and range); what the whole model
	 * says of it (the graph checker's rules) is the splice's to refuse
	 * at commit.  NULL: no graph field is writable.
	 */
	bool (*field_writable)(const struct mfs_model *m, uint64_t id);
	int (*field_check)(const struct mfs_model *m, uint64_t id, const char *text, size_t len,
	                   char *msg, size_t msglen);
	/*
	 * The commit writer: fill `out` (empty on entry) with the new model
	 * file for edits `e`, writing nothing.  Returns 0, or -errno with one
	 * line in `err`: -EFBIG past a format limit, -EACCES for an edit the
	 * format cannot express, -ENOMEM, -EIO.
	 */
	int (*splice)(struct mfs_splice *out, const struct mfs_model *m,
	              const struct mfs_edit_set *e, char *err, size_t errlen);
	/*
	 * Same-size data edits change bytes beyond the edited tensors' (a
	 * checksum of the container: torch's zip CRC-32s).  A commit that
	 * patches the file (in place, or a clone) then takes its patches from
	 * `splice` — every piece that is not the old file's bytes at their
	 * own offset — instead of from the edited runs alone.
	 */
	bool splice_patches;
};

/* The formats (format.c), in sniffing order. */
size_t mfs_format_count(void);
const struct mfs_format *mfs_format_at(size_t i);

/*
 * mfs_format_sniff() - the format of a file whose first bytes are `head`
 * (`len` of them, at most MFS_SNIFF_LEN) and whose size is `size`: the
 * row answering YES first, else the first answering MAYBE, else NULL.
 */
const struct mfs_format *mfs_format_sniff(const uint8_t *head, size_t len, uint64_t size);

/*
 * mfs_format_sniff_next() - the row to try after `prev` (whose open
 * returned -ENOEXEC) for the same file: the next row in table order that
 * answers what `prev` answered (a YES row that declines hands over to
 * another YES row, never to the MAYBE fallback); NULL when there is none.
 * `prev` NULL gives mfs_format_sniff()'s answer.
 */
const struct mfs_format *mfs_format_sniff_next(const uint8_t *head, size_t len, uint64_t size,
                                               const struct mfs_format *prev);

/*
 * mfs_format_register() - add a format after the built-in rows, for tests
 * that bring a format of their own (one file and this one call).  Not
 * thread-safe: call it before any model is opened.  -ENOSPC when full.
 */
int mfs_format_register(const struct mfs_format *f);

#endif /* MODELFS_CODEC_FORMAT_H */

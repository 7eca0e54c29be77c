/*
 * codec/splice.h — splice writers: the new bytes of a model as a piece list.
 *
 * Internal to codec/.  A splice writer describes the file a commit would
 * write — untouched byte ranges of the old file, re-encoded small parts,
 * staged tensor bytes — as a list of struct mfs_piece (commit.h), without
 * writing anything.  txn.c hands the list to the commit engine, or serves
 * reads of the root model file from it while edits are staged.
 *
 * The writers know formats and nothing of the staging store: what changed is
 * given to them as a struct mfs_edit_set, built by txn.c from the stage, in
 * which every edit is already reduced to its effective value (a dtype set
 * back to the original is no edit).
 *
 * Also here: the spans the ONNX reader records for the ONNX writer
 * (struct mfs_onnx_layout), hung off struct mfs_model.
 */
#ifndef MODELFS_CODEC_SPLICE_H
#define MODELFS_CODEC_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "commit.h"
#include "internal.h"

/* ------------------------------------------------------------ ONNX layout */

/*
 * One length-delimited message field of an ONNX file on a path from the
 * ModelProto to a tensor (a graph, node, attribute, sparse tensor, training
 * info, function or the tensor itself).  The ModelProto, which is the whole
 * file and has no prefix, is "message -1".
 *
 *     [tag, len)   the field's key          [len, val)  its length prefix
 *     [val, end)   the embedded message
 */
struct mfs_onnx_msg {
	uint64_t tag, len, val, end;
	int32_t parent;         /* index of the enclosing message; -1 = the ModelProto */
	uint32_t depth;         /* 1 for a field of the ModelProto */
};

/* Where a tensor's elements are stored (formats.md §1.3). */
enum mfs_onnx_storage {
	MFS_ONNX_EMPTY = 0,     /* no elements (and no data, or an empty field) */
	MFS_ONNX_RAW,           /* raw_data: the last field 9 (t->off, t->nbytes) */
	MFS_ONNX_PACKED,        /* one packed float_data/double_data run (t->off) */
	MFS_ONNX_TYPED,         /* varint fields, or several or unpacked fixed runs:
	                         * decoded into t->mem */
	MFS_ONNX_STRING,        /* string_data */
	MFS_ONNX_EXTERNAL,      /* data_location = EXTERNAL */
};

struct mfs_onnx_tspan {
	uint32_t msg;           /* the tensor's own message (index into msgs) */
	uint8_t storage;        /* enum mfs_onnx_storage */
	uint8_t packed_field;   /* MFS_ONNX_PACKED: 4 (float_data) or 10 (double_data) */
};

/* A field of the ModelProto itself: [tag, end) holds key, prefix and value. */
struct mfs_onnx_field {
	uint32_t num;
	uint64_t tag, end;
};

struct mfs_onnx_layout {
	struct mfs_onnx_msg *msgs;
	size_t n_msgs;
	struct mfs_onnx_tspan *tspans;  /* desc.n_tensors entries, by tensor id */
	struct mfs_onnx_field *top;     /* every ModelProto field, in file order */
	size_t n_top;
	int32_t graph_msg;      /* the main graph (ModelProto.graph) */
	bool has_gname;         /* the main graph has a name field (2) */
	uint64_t gname_tag, gname_end;  /* its last one */
	uint64_t gname_ins;     /* where a name field would go: the first field of the
	                         * graph numbered above 2, or the graph's end */
};

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

/* meta/ names that can be edited (ONNX). */
enum mfs_meta_key {
	MFS_META_PRODUCER_NAME,
	MFS_META_PRODUCER_VERSION,
	MFS_META_DOMAIN,
	MFS_META_MODEL_VERSION,
	MFS_META_DOC_STRING,
	MFS_META_GRAPH_NAME,
	MFS_META_N
};

/* One entry of the effective props list. */
struct mfs_prop_edit {
	int64_t orig;           /* index in desc.props, -1 for a new key */
	const char *key;
	const char *value;
	size_t len;
	bool changed;           /* key or value differ from desc.props[orig] */
};

struct mfs_edit_set {
	const struct mfs_tensor_edit *tensors;  /* ascending id */
	size_t n_tensors;
	const char *meta[MFS_META_N];           /* new value; NULL = unchanged */
	size_t meta_len[MFS_META_N];
	bool props_changed;
	const struct mfs_prop_edit *props;      /* the whole effective list, when changed:
	                                         * existing keys in file order, then new */
	size_t n_props;
};

/* ------------------------------------------------------------ piece lists */

/*
 * A piece list under construction, and the memory its pieces point to
 * (re-encoded bytes, callback arguments), which it owns.
 */
struct mfs_splice {
	struct mfs_piece *p;
	size_t n, cap;
	void **own;
	size_t n_own, cap_own;
	uint64_t total;         /* sum of the pieces' lengths */
	int err;                /* first allocation failure, sticky */
};

void mfs_splice_free(struct mfs_splice *s);
/* Append `len` bytes of `fd` at `off`; merges with a preceding adjacent copy. */
void mfs_splice_copy(struct mfs_splice *s, int fd, uint64_t off, uint64_t len);
/* Append `len` bytes at `buf`, which the splice takes over (free()d with it). */
void mfs_splice_take(struct mfs_splice *s, void *buf, size_t len);
/* Append `len` bytes at `buf`, borrowed: it must outlive the splice. */
void mfs_splice_ref(struct mfs_splice *s, const void *buf, size_t len);
/* Append a copy of `len` bytes at `buf`. */
void mfs_splice_bytes(struct mfs_splice *s, const void *buf, size_t len);
/* Append bytes [off, off + len) of what `fn(arg, ...)` produces. */
void mfs_splice_fn(struct mfs_splice *s, mfs_piece_fn fn, void *arg, uint64_t off, uint64_t len);
/* Append every piece of `from` and take over what it owns; `from` is emptied. */
void mfs_splice_append(struct mfs_splice *s, struct mfs_splice *from);

/* A protobuf varint into `out` (10 bytes of room); returns its length. */
size_t mfs_varint_put(uint8_t *out, uint64_t v);

/*
 * The writers.  Each fills `out` (empty on entry) with the new file for model
 * `m` and edits `e`.  Returns 0, or -errno with one line in `err`: -EFBIG
 * when the result would pass a format limit (ONNX: 2 GiB; safetensors: the
 * 100,000,000-byte header), -EACCES for an edit the format cannot express,
 * -ENOMEM, -EIO.
 */
int mfs_splice_onnx(struct mfs_splice *out, const struct mfs_model *m,
                    const struct mfs_edit_set *e, char *err, size_t errlen);
int mfs_splice_st(struct mfs_splice *out, const struct mfs_model *m,
                  const struct mfs_edit_set *e, char *err, size_t errlen);

/* safetensors dtype name of `dtype`, or NULL when safetensors has none. */
const char *mfs_st_dtype_name(int32_t dtype);

#endif /* MODELFS_CODEC_SPLICE_H */

/*
 * codec/onnx/onnx.h — what the ONNX reader, writer and format row share.
 *
 * Internal to onnx/.  The reader (reader.c) walks the protobuf wire format
 * (wire.c) and, besides the description, records the spans the writer
 * (writer.c) needs to edit the file without re-encoding it: struct
 * mfs_onnx_layout, kept as the model's private state (m->priv).  The format
 * row (format.c) ties both to the table of formats.
 */
#ifndef MODELFS_CODEC_ONNX_H
#define MODELFS_CODEC_ONNX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

/* ONNX's own limits (the shared ones are in core/core.h). */
#define MFS_MAX_SMALL_MSG       (64u << 20)     /* bytes of metadata fields of one message */
#define MFS_MAX_DECODED         (256ull << 20)  /* bytes decoded from typed fields, total */
#define MFS_MAX_ONNX_FILE       ((1ull << 31) - 1) /* protobuf's 2 GiB limit */

/* ------------------------------------------------------------ layout */

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

/* Where a tensor's elements are stored (doc/formats.md §1.3). */
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

/* The layout the reader left in an ONNX model. */
static inline const struct mfs_onnx_layout *mfs_onnx_layout(const struct mfs_model *m)
{
	return m->priv;
}

/* ------------------------------------------------------------ meta */

/* The writable meta/ files, in the order of mfs_format_onnx.meta_names. */
enum mfs_onnx_meta {
	MFS_ONNX_META_PRODUCER_NAME,
	MFS_ONNX_META_PRODUCER_VERSION,
	MFS_ONNX_META_DOMAIN,
	MFS_ONNX_META_MODEL_VERSION,
	MFS_ONNX_META_DOC_STRING,
	MFS_ONNX_META_GRAPH_NAME,
	MFS_ONNX_META_N
};

/* ------------------------------------------------------------ entry points */

/* ONNX's row in the table of formats (format.c). */
extern const struct mfs_format mfs_format_onnx;

/* The sniffer and the reader (reader.c): format.h's `sniff` and `open`. */
int mfs_onnx_sniff(const uint8_t *head, size_t len, uint64_t size);
int mfs_onnx_open(struct mfs_model *m, const char *display, char *err, size_t errlen);

/* The writer (writer.c): format.h's `splice`. */
/* format.h's `type_check` (types.c). */
int mfs_onnx_type_check(const struct mfs_model *m, const struct mfs_edit_set *e, size_t i,
                        char *msg, size_t msglen);

/* Graph fields (fields.c): format.h's field_writable and field_check, and
 * the encodings the writer uses.  mfs_onnx_attr_encode() appends the value
 * fields of attribute `at` for `text` to `out` (NULL: check only);
 * mfs_onnx_type_encode() a ValueInfoProto.type field for `v` with the
 * staged dtype and/or shape texts (NULL: the value's own). */
bool mfs_onnx_field_writable(const struct mfs_model *m, uint64_t id);
int mfs_onnx_field_check(const struct mfs_model *m, uint64_t id, const char *text, size_t len,
                         char *msg, size_t msglen);
const struct mfs_attr *mfs_onnx_field_attr(const struct mfs_model *m, uint64_t id);
/* Does a subgraph under `g` (If/Loop/Scan bodies, at any depth) define
 * `name`: as its input, initializer or a node's output? */
bool mfs_onnx_subgraph_defines(const struct mfs_graph *g, const char *name);
/*
 * The graph rules renames and deletions can break (ssa.c): with `e` (may be
 * NULL) the names `from[i]` read as `to[i]`, NULL for a deleted one.
 * Returns 0, -EINVAL with the first violation in msg, or -ENOMEM.
 */
struct mfs_onnx_edit_names {
	const char **from;
	const char **to;
	size_t n;
};
int mfs_onnx_ssa_check(const struct mfs_graph *g, const struct mfs_onnx_edit_names *e,
                       char *msg, size_t msglen);
/* 0 when no node under `g` (subgraphs included) reads `name` and no graph
 * output of `g` is it; else -EBUSY and a line naming the first user. */
int mfs_onnx_unused(const struct mfs_graph *g, const char *name, char *msg, size_t msglen);
/* The main-graph initializer a TENSOR_NAME or TENSOR_DELETE field is about, or NULL. */
const struct mfs_tensor *mfs_onnx_field_init(const struct mfs_model *m, uint64_t id);
int mfs_onnx_attr_encode(const struct mfs_attr *at, const char *text, size_t len,
                         struct mfs_buf *out, char *msg, size_t msglen);
int mfs_onnx_type_encode(const struct mfs_value *v, const char *dtype, size_t dtype_len,
                         const char *shape, size_t shape_len, struct mfs_buf *out,
                         char *msg, size_t msglen);

int mfs_onnx_splice(struct mfs_splice *out, const struct mfs_model *m,
                    const struct mfs_edit_set *e, char *err, size_t errlen);

#endif /* MODELFS_CODEC_ONNX_H */

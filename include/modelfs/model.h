/*
 * modelfs/model.h — the format-neutral model API.
 *
 * A model file (ONNX, safetensors, ...) is opened once with mfs_model_open().
 * The codec validates it, walks its metadata and returns an immutable
 * description (struct mfs_desc) made of plain C structs: graphs, nodes,
 * attributes, values and tensors.  Tensor payloads are never loaded: a tensor
 * records where its bytes live (a byte range of one of the model's source
 * files), and mfs_tensor_read() serves any sub-range of it with pread(2).
 *
 * Nothing in this header depends on FUSE or protobuf-c.  The FUSE daemon
 * (fs/) and the `modelfs` command (tools/) are both consumers of it.
 *
 * Conventions (see STYLE.md):
 *   - functions return 0 (or a byte count) on success and a negative errno on
 *     failure; a corrupt or hostile input is -EUCLEAN;
 *   - functions that can fail with a user-visible reason take a caller buffer
 *     `err`/`errlen` and fill it with one line (no trailing newline) naming the
 *     file and what is wrong;
 *   - everything reachable from mfs_model_desc() is owned by the model and
 *     lives until mfs_model_close(); callers must not modify it;
 *   - after mfs_model_open() returns, the model is read-only and all of its
 *     functions are safe to call from any number of threads at once.
 */
#ifndef MODELFS_MODEL_H
#define MODELFS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- dtypes */

/*
 * Element types.  The numbers are ONNX's TensorProto.DataType values, so an
 * ONNX data_type maps 1:1; other formats map their names onto these, and
 * types ONNX has no number for get one from 1000 up.  A value outside this
 * list (a newer ONNX type) is kept as the raw number.
 */
enum mfs_dtype {
	MFS_DT_UNDEFINED = 0,
	MFS_DT_FLOAT = 1,
	MFS_DT_UINT8 = 2,
	MFS_DT_INT8 = 3,
	MFS_DT_UINT16 = 4,
	MFS_DT_INT16 = 5,
	MFS_DT_INT32 = 6,
	MFS_DT_INT64 = 7,
	MFS_DT_STRING = 8,
	MFS_DT_BOOL = 9,
	MFS_DT_FLOAT16 = 10,
	MFS_DT_DOUBLE = 11,
	MFS_DT_UINT32 = 12,
	MFS_DT_UINT64 = 13,
	MFS_DT_COMPLEX64 = 14,
	MFS_DT_COMPLEX128 = 15,
	MFS_DT_BFLOAT16 = 16,
	MFS_DT_FLOAT8E4M3FN = 17,
	MFS_DT_FLOAT8E4M3FNUZ = 18,
	MFS_DT_FLOAT8E5M2 = 19,
	MFS_DT_FLOAT8E5M2FNUZ = 20,
	MFS_DT_UINT4 = 21,
	MFS_DT_INT4 = 22,
	MFS_DT_FLOAT4E2M1 = 23,
	MFS_DT_FLOAT8E8M0 = 24,
	MFS_DT_UINT2 = 25,
	MFS_DT_INT2 = 26,
	MFS_DT_COUNT_ = 27,

	/*
	 * Types other formats have and ONNX does not number.  They live at
	 * 1000 and above so they can never collide with a future ONNX value.
	 */
	MFS_DT_EXT_FIRST_ = 1000,
	MFS_DT_FLOAT6E2M3 = 1000,       /* safetensors F6_E2M3 (6 bits) */
	MFS_DT_FLOAT6E3M2 = 1001,       /* safetensors F6_E3M2 (6 bits) */
	/*
	 * ggml's block-quantized types (GGUF): a row of the innermost dim is
	 * cut into blocks of mfs_dtype_block() elements, each stored in a fixed
	 * number of bytes.  Numbered 1002 + 32 + the ggml type id; named by
	 * ggml's lower-cased name ("q8_0", "q4_k", "iq2_xxs").
	 */
	MFS_DT_GGML_FIRST_ = 1034,
	MFS_DT_GGML_END_ = 1034 + 64,
	MFS_DT_EXT_END_ = 1034 + 64
};

/* The mfs dtype of ggml block type `id` (0 <= id < 64). */
#define MFS_DT_GGML(id) (MFS_DT_GGML_FIRST_ + (id))

/*
 * mfs_dtype_name() - the name shown in `dtype` files.
 * numpy's name where numpy has one ("float32", "int64", "bool", "string"),
 * else ONNX's lower-cased name ("float8e4m3fn", "int4").  An unknown number
 * gives "dtype<N>" written into a static per-thread buffer.
 * Never returns NULL.
 */
const char *mfs_dtype_name(int32_t dtype);

/*
 * mfs_dtype_from_name() - the inverse of mfs_dtype_name() for known types.
 * Returns the dtype, or -1 when `name` is not a known dtype name.
 */
int32_t mfs_dtype_from_name(const char *name);

/*
 * mfs_dtype_bits() - bits per element: 32 for float32, 4 for int4, 1*8 for
 * bool.  0 for STRING, UNDEFINED and unknown numbers (no fixed width).
 */
unsigned mfs_dtype_bits(int32_t dtype);

/*
 * mfs_dtype_block() - for a block-quantized type (MFS_DT_GGML): elements
 * per block and bytes per block; returns false (both 0) for every other
 * type, whose width mfs_dtype_bits() gives.
 */
bool mfs_dtype_block(int32_t dtype, unsigned *elems, unsigned *bytes);

/*
 * mfs_tensor_nbytes() - bytes of a dense tensor of `dtype` with `rank` dims.
 * Sub-byte types round the total up to whole bytes, as ONNX packs them.
 * A block-quantized type needs its innermost (last) dim to be a multiple of
 * its block (-EINVAL otherwise) and takes whole blocks.
 * Returns 0 and sets *out, or -EOVERFLOW if the product overflows uint64,
 * -EINVAL for a negative dim or a dtype without fixed width.
 */
int mfs_tensor_nbytes(uint64_t *out, int32_t dtype, const int64_t *dims, size_t rank);

/* ---------------------------------------------------------------- shapes */

/* One dimension of a value's declared shape. */
struct mfs_dim {
	int64_t value;          /* >= 0 when known, -1 otherwise */
	char *param;            /* symbolic name ("batch_size"), or NULL */
};

/*
 * A declared shape (graph inputs, outputs, value_info).  `known` is false
 * when the type carries no shape at all (unknown rank); a known shape of
 * rank 0 is a scalar.
 */
struct mfs_shape {
	bool known;
	size_t rank;
	struct mfs_dim *dims;
};

/*
 * mfs_shape_format() - the text of a `shape` file, without the newline:
 * dims joined by ',', a symbolic dim by its name (escaped as text values
 * are, see mfs_text_escape), an unknown dim as '?',
 * a scalar as "", an unknown rank as "*".  Writes at most `len` bytes
 * including the NUL into `buf`; returns the length the full text needs
 * (like snprintf), so callers can size a buffer.
 */
size_t mfs_shape_format(char *buf, size_t len, const struct mfs_shape *shape);

/*
 * mfs_dims_format() - the same for a concrete tensor shape (no symbolic or
 * unknown dims).
 */
size_t mfs_dims_format(char *buf, size_t len, const int64_t *dims, size_t rank);

/* ------------------------------------------------------------------ text */

/*
 * Text values (doc/design.md §3.5).  Every text a mount shows that comes
 * from the model — metadata and props values, names, lists, attribute
 * strings, the elements of a string tensor — and every value and name
 * `modelfs info` and .modelfs/status print, is escaped by one rule: '%',
 * the bytes below 0x20 and 0x7f are written as '%' and two upper-case
 * hexadecimal digits ("%25", "%0A", "%09", "%7F"); every other byte, UTF-8
 * included, is itself.  An escaped value never holds a line break, so a
 * file holds one value per line.
 */

/*
 * mfs_text_escape() - escape `s[0 .. n)` into `buf`: at most `len` bytes,
 * NUL included, never cutting an escape.  Returns the length the whole
 * escaped text needs (like snprintf), so a caller can size a buffer with
 * mfs_text_escape(NULL, 0, s, n).
 */
size_t mfs_text_escape(char *buf, size_t len, const char *s, size_t n);

/* mfs_text_plain() - true when escaping leaves `s[0 .. n)` unchanged. */
bool mfs_text_plain(const char *s, size_t n);

/*
 * mfs_parse_size() - a size as users write it: "4096", "64K", "500MiB",
 * "5GB" (K, M, G, T and KiB... are powers of 1024; KB, MB, GB, TB of 1000).
 * Returns 0, or -1 for a malformed, zero or too large size.
 */
int mfs_parse_size(const char *s, uint64_t *out);

/*
 * mfs_text_unescape() - the inverse, for values written to a file: "%XX"
 * (two hexadecimal digits, either case) is that byte, and every other byte,
 * a '%' that starts no such escape included, stands for itself.  `out`
 * needs `n` bytes (the result is never longer) and may be `s` itself.
 * Returns the length of the result.  mfs_text_unescape() of an escaped
 * text gives back the original bytes.
 */
size_t mfs_text_unescape(char *out, const char *s, size_t n);

/* --------------------------------------------------------------- tensors */

/*
 * Tensor flags, set by the format when the model is opened.
 *
 * MFS_TENSOR_CONTIGUOUS  the bytes are exactly the range [off, off + nbytes)
 *                        of source file `src` (0 = the model file itself;
 *                        see struct mfs_file): they can be read zero-copy
 *                        (mfs_tensor_span) and, in the model file, patched
 *                        in place by a commit.
 * MFS_TENSOR_EDITABLE    the format can commit edits of its data, dtype and
 *                        shape (not external data, not a string tensor, not
 *                        a shard of a sharded checkpoint, ...).
 * MFS_TENSOR_DATA_ONLY   with EDITABLE: only the data may be edited, at its
 *                        size; the dtype and shape files are read-only
 *                        (EACCES), as the format cannot re-describe the
 *                        tensor (a torch checkpoint, whose shapes are in
 *                        its pickle).  A commit of another size is refused.
 * MFS_TENSOR_ADDED       set by the transaction, not a format: a tensor
 *                        staged as new (mfs_txn_tensor_add), no model's.
 */
#define MFS_TENSOR_CONTIGUOUS   0x1u
#define MFS_TENSOR_EDITABLE     0x2u
#define MFS_TENSOR_DATA_ONLY    0x4u
#define MFS_TENSOR_ADDED        0x8u

/*
 * A tensor whose bytes can be read.  `nbytes` is exactly the size of its
 * `data` file.  The bytes come from one of three places:
 *   - mem != NULL: `mem[0 .. nbytes)`, decoded at open time (ONNX typed
 *     varint fields, string tensors shown one element per line);
 *   - MFS_TENSOR_CONTIGUOUS: the range [off, off + nbytes) of source `src`;
 *   - otherwise the format computes them (mfs_tensor_read does it).
 * Data is little-endian, row-major, as numpy's tobytes() gives it.  Read
 * it with mfs_tensor_read() or mfs_tensor_span(), not from src/off.
 */
struct mfs_tensor {
	uint64_t id;            /* index in mfs_desc.tensors: the tensor's identity, the
	                         * same on every open of a model of the same structure */
	char *name;             /* full original name; "" when unnamed */
	int32_t dtype;          /* enum mfs_dtype (or an unknown number) */
	size_t rank;
	int64_t *dims;          /* rank entries, each >= 0 */
	uint64_t nbytes;
	unsigned flags;         /* MFS_TENSOR_* */
	unsigned src;
	uint64_t off;
	uint8_t *mem;
	char *doc_string;       /* NULL when absent */
};

/* A sparse tensor (ONNX SparseTensorProto): dense shape plus two tensors. */
struct mfs_sparse {
	char *name;             /* values' name, which names the sparse tensor */
	int32_t dtype;          /* values' dtype */
	size_t rank;
	int64_t *dims;          /* dense shape */
	struct mfs_tensor *values;
	struct mfs_tensor *indices;
};

/* -------------------------------------------------------------- graphs */

/* A graph input, output or value_info entry. */
struct mfs_value {
	char *name;
	char *dtype;            /* "float32", "sequence(float32)", "map(int64,float32)",
	                         * "optional(...)", "sparse(float32)"; "" if untyped */
	struct mfs_shape shape; /* of the tensor type, when it has one */
	char *doc_string;       /* NULL when absent */
};

/* AttributeProto.type values (ONNX numbering). */
enum mfs_attr_type {
	MFS_ATTR_UNDEFINED = 0,
	MFS_ATTR_FLOAT = 1,
	MFS_ATTR_INT = 2,
	MFS_ATTR_STRING = 3,
	MFS_ATTR_TENSOR = 4,
	MFS_ATTR_GRAPH = 5,
	MFS_ATTR_FLOATS = 6,
	MFS_ATTR_INTS = 7,
	MFS_ATTR_STRINGS = 8,
	MFS_ATTR_TENSORS = 9,
	MFS_ATTR_GRAPHS = 10,
	MFS_ATTR_SPARSE_TENSOR = 11,
	MFS_ATTR_SPARSE_TENSORS = 12,
	MFS_ATTR_TYPE_PROTO = 13,
	MFS_ATTR_TYPE_PROTOS = 14
};

struct mfs_graph;

/*
 * A node attribute.  Scalar and list kinds (FLOAT, INT, STRING, FLOATS, INTS,
 * STRINGS, TYPE_PROTO(S), UNDEFINED) are shown as one file whose whole
 * content is `text[0 .. text_len)` (already formatted, one value per line,
 * ending in '\n').  TENSOR(S), SPARSE_TENSOR(S) and GRAPH(S) are shown as
 * directories built from the arrays below (a single TENSOR/GRAPH has
 * exactly one element).
 */
struct mfs_attr {
	char *name;
	int type;               /* enum mfs_attr_type */
	char *text;
	size_t text_len;
	struct mfs_tensor **tensors;
	size_t n_tensors;
	struct mfs_sparse **sparse;
	size_t n_sparse;
	struct mfs_graph **graphs;
	size_t n_graphs;
	char *ref_attr_name;    /* inside functions; NULL when absent */
	char *doc_string;       /* NULL when absent */
};

struct mfs_node {
	char *op_type;
	char *domain;           /* "" when absent */
	char *name;             /* "" when absent */
	char *doc_string;       /* NULL when absent */
	char **inputs;          /* "" for an omitted optional input */
	size_t n_inputs;
	char **outputs;
	size_t n_outputs;
	struct mfs_attr *attrs;
	size_t n_attrs;
};

struct mfs_graph {
	char *name;
	char *doc_string;       /* NULL when absent */
	struct mfs_value *inputs;       /* every graph input, initializers included */
	size_t n_inputs;
	bool *input_is_init;    /* n_inputs flags: the input names an initializer */
	struct mfs_value *outputs;
	size_t n_outputs;
	struct mfs_value *values;       /* value_info */
	size_t n_values;
	struct mfs_node *nodes;
	size_t n_nodes;
	struct mfs_tensor **inits;      /* initializers, in file order */
	size_t n_inits;
	struct mfs_sparse **sparse_inits;
	size_t n_sparse_inits;
};

/* A model-local function (ONNX FunctionProto). */
struct mfs_function {
	char *name;
	char *domain;
	char *doc_string;       /* NULL when absent */
	char **inputs;
	size_t n_inputs;
	char **outputs;
	size_t n_outputs;
	char **attributes;      /* declared attribute names */
	size_t n_attributes;
	struct mfs_attr *attr_defaults; /* attribute_proto (IR 9) */
	size_t n_attr_defaults;
	struct mfs_node *nodes;
	size_t n_nodes;
	char *opset_text;       /* "<domain> <version>\n" lines */
	size_t opset_len;
};

/* ONNX TrainingInfoProto: two optional graphs. */
struct mfs_training {
	struct mfs_graph *initialization;       /* NULL when absent */
	struct mfs_graph *algorithm;            /* NULL when absent */
};

/*
 * Graph fields: the one-value files of the main graph that a format may
 * make writable (doc/design.md §5.1), named by a number that means the same
 * file on every open of a model of the same structure (the transaction
 * journals edits under it).  `i` is an index into graph->inputs, outputs or
 * nodes; `j` an attribute's index in its node.  The tree records which
 * entry shows which field (fs/tree.c); the format says whether it may be
 * written and checks and writes the value (format.h, field_*).
 */
enum mfs_field_kind {
	MFS_FIELD_INPUT_SHAPE = 1,
	MFS_FIELD_OUTPUT_SHAPE,
	MFS_FIELD_INPUT_DTYPE,
	MFS_FIELD_OUTPUT_DTYPE,
	MFS_FIELD_NODE_NAME,
	MFS_FIELD_NODE_ATTR,
	MFS_FIELD_NODE_DOC,             /* a node's doc_string (shown when it has one) */
	MFS_FIELD_INPUT_DOC,
	MFS_FIELD_OUTPUT_DOC,
	MFS_FIELD_TENSOR_NAME,          /* i: a tensor's id; its `name` file (a rename) */
	MFS_FIELD_INPUT_NAME,           /* i: graph input; `mv inputs/<x>` (a value rename) */
	MFS_FIELD_OUTPUT_NAME,          /* i: graph output; `mv outputs/<y>` */
	MFS_FIELD_VALUE_NAME,           /* i: value_info entry; `mv values/<v>` */
	MFS_FIELD_TENSOR_DELETE,        /* i: a tensor's id; `rm -r weights/<path>` (text "1") */
	MFS_FIELD_TENSOR_ADD,           /* i: a new tensor's id (n_tensors + k); `mkdir
	                                 * weights/<path>` (text: its name, escaped) */
	MFS_FIELD_KIND_N_
};
#define MFS_FIELD_I_MAX         0xffffffffull   /* largest i */
#define MFS_FIELD_J_MAX         0xfffffull      /* largest j */
#define MFS_FIELD_ID(kind, i, j) \
	((uint64_t)(kind) << 52 | (uint64_t)(i) << 20 | (uint64_t)(j))
#define MFS_FIELD_KIND(id)      ((unsigned)((id) >> 52))
#define MFS_FIELD_I(id)         (((id) >> 20) & MFS_FIELD_I_MAX)
#define MFS_FIELD_J(id)         ((id) & MFS_FIELD_J_MAX)

/*
 * Value renames.  A *_NAME field (TENSOR_NAME, INPUT_NAME, OUTPUT_NAME,
 * VALUE_NAME) renames one value of the main graph, wherever the name is
 * used; its text is the new name, escaped as text files are (§3.5).
 *
 * mfs_field_is_name() - is `id` of one of those kinds?
 * mfs_desc_field_name() - the name field `id` renames in `d` (the
 *   description's string), or NULL when `id` names no value of `d`.
 * mfs_desc_name_field() - the one field that renames the value `id` names:
 *   a name can show in several directories (an output that is also a
 *   value_info entry), and all of them are one rename, staged under the
 *   first of: the graph input that is no initializer, the initializer
 *   (TENSOR_NAME), the graph output, the value_info entry.  `id` itself
 *   when it names no value.
 */
struct mfs_desc;
bool mfs_field_is_name(uint64_t id);
const char *mfs_desc_field_name(const struct mfs_desc *d, uint64_t id);
uint64_t mfs_desc_name_field(const struct mfs_desc *d, uint64_t id);

/* --------------------------------------------------------------- model */

/*
 * One entry of meta/: a file named `name` whose whole content is
 * `value[0 .. len)` (formatted, ending in '\n').
 */
struct mfs_meta {
	char *name;
	char *value;
	size_t len;
};

/* A source file of the model, shown at the mount root. */
struct mfs_file {
	char *path;             /* relative to the model's directory, '/'-separated;
	                         * [0] is the model file's base name */
	uint64_t size;
	int64_t mtime_sec;
	long mtime_nsec;
};

/*
 * Description flags, set by the format.
 *
 * MFS_DESC_GRAPH   the model is a graph: the tree shows its nodes, inputs,
 *                  outputs, values and weights (doc/design.md §3.1).
 *                  Without it `graph` holds only `inits` (the tensors),
 *                  and the tree shows meta/ and weights/ (§3.2).
 */
#define MFS_DESC_GRAPH          0x1u
/*
 * MFS_DESC_PROPS_TEXT  props values are already the text their files show,
 *                  escaped by the format (GGUF: an array one escaped
 *                  element per line): the tree and reads show them as
 *                  they are, and a write stages the file's text as it is
 *                  (one trailing '\n' dropped), which the format's splice
 *                  decodes.  Without it values are bytes, escaped on show
 *                  and unescaped on write (doc/design.md §3.5).
 */
#define MFS_DESC_PROPS_TEXT     0x2u

/* The description of a model. */
struct mfs_desc {
	const char *format;             /* the format's name: "onnx", "safetensors" */
	unsigned flags;                 /* MFS_DESC_* */
	struct mfs_meta *meta;          /* meta/<name> files, in display order */
	size_t n_meta;
	struct mfs_meta *props;         /* meta/props/<key> files (value without '\n') */
	size_t n_props;
	struct mfs_graph *graph;        /* the main graph; never NULL */
	struct mfs_function *functions;
	size_t n_functions;
	struct mfs_training *training;
	size_t n_training;
	struct mfs_file *files;         /* [0] is the model file */
	size_t n_files;
	struct mfs_tensor **tensors;    /* every readable tensor, everywhere, in a fixed walk
	                                 * order that the format defines (ONNX: file order,
	                                 * sparse values and indices included; safetensors:
	                                 * offset order, shard by shard); tensors[i]->id == i */
	uint64_t n_tensors;             /* entries of `tensors` */
	uint64_t n_nodes;               /* every node, subgraphs and functions included */
};

/*
 * mfs_desc_dtype_name() - the name a `dtype` file of a model described by
 * `d` shows: its format's own name for the dtype where it has one (GGUF:
 * ggml's "f32", "f16", "bf16", "i32"), else mfs_dtype_name()'s.  The string
 * lives forever, except mfs_dtype_name()'s "dtype<N>" of an unknown number.
 */
const char *mfs_desc_dtype_name(const struct mfs_desc *d, int32_t dtype);

/*
 * mfs_desc_dtype_from_name() - its inverse: the dtype `name` stands for in
 * such a model, -1 when none (a generic name of a dtype its format names
 * otherwise included: GGUF's f32 is "f32", never "float32").
 */
int32_t mfs_desc_dtype_from_name(const struct mfs_desc *d, const char *name);

/*
 * mfs_dtype_known() - does `dtype` have a name of its own (not "dtype<N>")?
 * Such names live forever.
 */
bool mfs_dtype_known(int32_t dtype);

typedef struct mfs_model mfs_model;

/*
 * Remote models (http://, https://, s3://bucket/key): settings for every
 * remote model opened afterwards in this process.  Zero fields take the
 * defaults: the cache under $XDG_CACHE_HOME/modelfs (or ~/.cache/modelfs),
 * 10 GiB, AWS's own S3 endpoint, a 30 s stall timeout; retries is taken
 * as given (without a call: 3).
 * cache_dir "none" turns the cache off.  Call before opening; not
 * thread-safe against opens running.  Returns 0 or -errno.
 */
struct mfs_remote_opts {
	const char *cache_dir;
	uint64_t cache_size;    /* bytes */
	const char *s3_endpoint; /* "http://127.0.0.1:9000": path-style S3 */
	unsigned timeout;       /* seconds without a byte before a try fails */
	unsigned retries;       /* more tries after a 5xx or a dropped connection */
	const char *ca_file;    /* PEM bundle to trust for https (default: the system's) */
};
int mfs_remote_configure(const struct mfs_remote_opts *o);

/* mfs_path_is_remote() - does `path` name a remote model (by its form)? */
bool mfs_path_is_remote(const char *path);

/* Options for mfs_model_open(); zero-initialise for the defaults. */
struct mfs_open_opts {
	unsigned reserved;
};

/*
 * mfs_model_open() - open, validate and describe a model file.
 * @out:    receives the model; yours to free with mfs_model_close().
 * @path:   the model file (ONNX, or safetensors, or a *.safetensors.index.json);
 *          relative paths are resolved against the current directory.
 * @opts:   NULL for defaults.
 * @err:    receives a one-line reason on failure ("model.onnx: ...").
 * Reads metadata only: tensor payloads are located, never read (except
 * ONNX typed varint fields, which are decoded).
 * Returns 0, or -ENOENT/-EACCES/... from the system, -EUCLEAN for a corrupt
 * or hostile file, -EFBIG past a documented limit, -ENOMEM.
 */
int mfs_model_open(mfs_model **out, const char *path, const struct mfs_open_opts *opts,
                   char *err, size_t errlen);

/* mfs_model_close() - release everything; accepts NULL. */
void mfs_model_close(mfs_model *m);

/*
 * mfs_model_path_rewrites() - is `path`, by its form alone, in a place
 * whose commits rewrite one file holding the whole model (a pack,
 * "*.mfs")?  Then commit=inplace does not apply.
 */
bool mfs_model_path_rewrites(const char *path);

/* mfs_model_desc() - the model's description; borrowed, lives with `m`. */
const struct mfs_desc *mfs_model_desc(const mfs_model *m);

/*
 * mfs_tensor_read() - copy up to `len` bytes of tensor `t`'s data starting at
 * `off` into `buf`.  Returns the number of bytes copied (0 at or past the
 * end), or a negative errno (-EIO when a source file shrank under us).
 * Thread-safe.
 */
ssize_t mfs_tensor_read(const mfs_model *m, const struct mfs_tensor *t, void *buf, size_t len,
                        uint64_t off);

/*
 * Where bytes can be had without a copy: either in memory (`mem`) or in an
 * open descriptor (`fd` >= 0, from offset `off`), whichever is set.
 */
struct mfs_span {
	const void *mem;
	int fd;                 /* borrowed: lives with the model */
	uint64_t off;
};

/*
 * mfs_tensor_span() - where tensor `t`'s bytes from `off` to its end can be
 * had zero-copy (a FUSE reply spliced from a descriptor, say).  Returns 0
 * and fills *out, or -EOPNOTSUPP when they can only be read with
 * mfs_tensor_read() (a compressed or remote source, a strided view).
 */
int mfs_tensor_span(struct mfs_span *out, const mfs_model *m, const struct mfs_tensor *t,
                    uint64_t off);

/*
 * mfs_file_read() - read from source file `idx` (struct mfs_desc.files) as
 * it was at open time.  Same return convention as mfs_tensor_read().
 */
ssize_t mfs_file_read(const mfs_model *m, size_t idx, void *buf, size_t len, uint64_t off);

/*
 * mfs_file_span() - mfs_tensor_span() for bytes from `off` of source file
 * `idx`.  -EINVAL for an index out of range.
 */
int mfs_file_span(struct mfs_span *out, const mfs_model *m, size_t idx, uint64_t off);

/*
 * mfs_file_stat() - what the source file `idx` says of itself (owner, mode,
 * size, times; a local file's fstat).  Returns 0 or -errno.
 */
int mfs_file_stat(struct stat *out, const mfs_model *m, size_t idx);

#ifdef __cplusplus
}
#endif

#endif /* MODELFS_MODEL_H */

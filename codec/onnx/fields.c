/*
 * codec/onnx/fields.c — the graph fields of an ONNX model that may be
 * written (format.h field_writable / field_check), and the protobuf
 * encoding of their new values for the writer (writer.c).
 *
 * Writable, in the main graph only (model.h, MFS_FIELD_ID):
 *   - a node attribute of a scalar or list kind (FLOAT INT STRING FLOATS
 *     INTS STRINGS), which keeps its kind: the file's text is parsed as
 *     that kind (numbers one per line, or comma-separated);
 *   - a node's name (any one-line text), and the doc_string of a node or
 *     of a graph input or output that has one (free text);
 *   - the dtype and the shape of a graph input (one that is not an
 *     initializer: those take their type from the tensor's bytes) or
 *     output whose type is a tensor type.  A shape is dims joined by ','
 *     (the file's syntax): a decimal, a symbolic name, '?' for an unknown
 *     dim; "*" for an unknown rank, empty for a scalar.
 *   - the name of a value of the main graph: a graph input that is no
 *     initializer, a graph output, a value_info entry (`mv inputs/x
 *     inputs/images` on the mount) or an initializer (`mv` of its
 *     directory; its `name` file stays read-only): a rename,
 *     which the writer carries to every use of the name, subgraphs
 *     included.  A new name that a subgraph defines itself (its input,
 *     initializer or a node output) is refused: the subgraph's references
 *     to the outer value would be captured by its own.  A name already in
 *     use in the main graph is the transaction's to refuse (EEXIST).
 *   - the deletion of an initializer of the main graph (`rm -r` of its
 *     directory): refused with EBUSY while a node reads it (in the main
 *     graph or, by outer-scope reference, in a subgraph) or it is a graph
 *     output; the writer drops the TensorProto and a graph input or
 *     value_info entry of its name (IR < 4 lists initializers as inputs).
 * Values are checked here at write; the writer re-encodes the attribute's
 * value fields, the name field, or the ValueInfoProto's type field.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx.h"

/* A one-line message into msg (which may be NULL): -EINVAL. */
static int bad(char *msg, size_t msglen, const char *fmt, const char *what, const char *arg)
{
	if (msg && msglen)
		snprintf(msg, msglen, fmt, what, arg);
	return -EINVAL;
}

/* The value (graph input or output) field `id` is about, or NULL. */
static const struct mfs_value *field_value(const struct mfs_model *m, uint64_t id)
{
	const struct mfs_graph *g = m->desc.graph;
	uint64_t i = MFS_FIELD_I(id);
	if (!g || MFS_FIELD_J(id))
		return NULL;
	switch (MFS_FIELD_KIND(id)) {
	case MFS_FIELD_INPUT_SHAPE:
	case MFS_FIELD_INPUT_DTYPE:
	case MFS_FIELD_INPUT_DOC:
		if (i >= g->n_inputs || (g->input_is_init && g->input_is_init[i]))
			return NULL;
		return &g->inputs[i];
	case MFS_FIELD_OUTPUT_SHAPE:
	case MFS_FIELD_OUTPUT_DTYPE:
	case MFS_FIELD_OUTPUT_DOC:
		return i < g->n_outputs ? &g->outputs[i] : NULL;
	default:
		return NULL;
	}
}

const struct mfs_attr *mfs_onnx_field_attr(const struct mfs_model *m, uint64_t id)
{
	const struct mfs_graph *g = m->desc.graph;
	uint64_t i = MFS_FIELD_I(id), j = MFS_FIELD_J(id);
	if (!g || MFS_FIELD_KIND(id) != MFS_FIELD_NODE_ATTR || i >= g->n_nodes ||
	    j >= g->nodes[i].n_attrs)
		return NULL;
	const struct mfs_attr *a = &g->nodes[i].attrs[j];
	switch (a->type) {
	case MFS_ATTR_FLOAT: case MFS_ATTR_INT: case MFS_ATTR_STRING:
	case MFS_ATTR_FLOATS: case MFS_ATTR_INTS: case MFS_ATTR_STRINGS:
		/* Attributes that refer to a function's attribute have no value
		 * of their own (they are only in functions, but be sure). */
		return a->ref_attr_name ? NULL : a;
	default:
		return NULL;
	}
}

bool mfs_onnx_subgraph_defines(const struct mfs_graph *g, const char *name)
{
	for (size_t i = 0; i < g->n_nodes; i++) {
		const struct mfs_node *nd = &g->nodes[i];
		for (size_t a = 0; a < nd->n_attrs; a++) {
			for (size_t k = 0; k < nd->attrs[a].n_graphs; k++) {
				const struct mfs_graph *s = nd->attrs[a].graphs[k];
				if (!s)
					continue;
				for (size_t j = 0; j < s->n_inputs; j++)
					if (s->inputs[j].name && !strcmp(s->inputs[j].name, name))
						return true;
				for (size_t j = 0; j < s->n_inits; j++)
					if (!strcmp(s->inits[j]->name, name))
						return true;
				for (size_t j = 0; j < s->n_nodes; j++)
					for (size_t o = 0; o < s->nodes[j].n_outputs; o++)
						if (!strcmp(s->nodes[j].outputs[o], name))
							return true;
				if (mfs_onnx_subgraph_defines(s, name))
					return true;
			}
		}
	}
	return false;
}

/* The first node under `g` (subgraphs included) that reads `name`, or NULL. */
static const struct mfs_node *first_reader(const struct mfs_graph *g, const char *name)
{
	for (size_t i = 0; i < g->n_nodes; i++) {
		const struct mfs_node *nd = &g->nodes[i];
		for (size_t k = 0; k < nd->n_inputs; k++)
			if (!strcmp(nd->inputs[k], name))
				return nd;
		for (size_t a = 0; a < nd->n_attrs; a++)
			for (size_t k = 0; k < nd->attrs[a].n_graphs; k++) {
				const struct mfs_node *r = nd->attrs[a].graphs[k] ?
				        first_reader(nd->attrs[a].graphs[k], name) : NULL;
				if (r)
					return r;
			}
	}
	return NULL;
}

int mfs_onnx_unused(const struct mfs_graph *g, const char *name, char *msg, size_t msglen)
{
	const struct mfs_node *nd = first_reader(g, name);
	if (nd) {
		if (msg && msglen)
			snprintf(msg, msglen, "tensor '%.200s' is read by node '%.100s' (%.60s): remove "
			         "that use first", name, nd->name && nd->name[0] ? nd->name : "(unnamed)",
			         nd->op_type ? nd->op_type : "?");
		return -EBUSY;
	}
	for (size_t i = 0; i < g->n_outputs; i++)
		if (g->outputs[i].name && !strcmp(g->outputs[i].name, name)) {
			if (msg && msglen)
				snprintf(msg, msglen, "tensor '%.200s' is a graph output", name);
			return -EBUSY;
		}
	return 0;
}

const struct mfs_tensor *mfs_onnx_field_init(const struct mfs_model *m, uint64_t id)
{
	const struct mfs_graph *g = m->desc.graph;
	uint64_t i = MFS_FIELD_I(id);
	if (!g || (MFS_FIELD_KIND(id) != MFS_FIELD_TENSOR_NAME &&
	           MFS_FIELD_KIND(id) != MFS_FIELD_TENSOR_DELETE) || MFS_FIELD_J(id) ||
	    i >= m->desc.n_tensors)
		return NULL;
	/* An initializer of the main graph (its name is a value of that graph). */
	const struct mfs_tensor *t = m->desc.tensors[i];
	for (size_t k = 0; k < g->n_inits; k++)
		if (g->inits[k] == t)
			return t->name && t->name[0] ? t : NULL;
	return NULL;
}

/* The tensor element type a value declares, or 0 when it is no tensor type. */
static int32_t value_elem(const struct mfs_value *v)
{
	if (!v->dtype || !v->dtype[0])
		return 0;
	int32_t dt = mfs_dtype_from_name(v->dtype);
	return dt > 0 && dt < MFS_DT_EXT_FIRST_ ? dt : 0;
}

bool mfs_onnx_field_writable(const struct mfs_model *m, uint64_t id)
{
	switch (MFS_FIELD_KIND(id)) {
	case MFS_FIELD_NODE_NAME:
		return m->desc.graph && MFS_FIELD_I(id) < m->desc.graph->n_nodes &&
		       !MFS_FIELD_J(id);
	case MFS_FIELD_NODE_ATTR:
		return mfs_onnx_field_attr(m, id) != NULL;
	case MFS_FIELD_NODE_DOC:
		/* Only a doc_string the node has: the tree shows no file else. */
		return m->desc.graph && MFS_FIELD_I(id) < m->desc.graph->n_nodes &&
		       !MFS_FIELD_J(id) && m->desc.graph->nodes[MFS_FIELD_I(id)].doc_string;
	case MFS_FIELD_INPUT_DOC:
	case MFS_FIELD_OUTPUT_DOC: {
		const struct mfs_value *v = field_value(m, id);
		return v && v->doc_string;
	}
	case MFS_FIELD_TENSOR_NAME:
		return mfs_onnx_field_init(m, id) != NULL;
	case MFS_FIELD_TENSOR_DELETE:
		return (m->desc.flags & MFS_DESC_GRAPH) && mfs_onnx_field_init(m, id) != NULL;
	case MFS_FIELD_TENSOR_ADD: {
		/* A new initializer of the main graph.  Not where initializers
		 * are listed as graph inputs (IR < 4 requires it of every one):
		 * the writer adds no input. */
		const struct mfs_graph *g = m->desc.graph;
		if (!g || !(m->desc.flags & MFS_DESC_GRAPH) || MFS_FIELD_J(id) ||
		    MFS_FIELD_I(id) < m->desc.n_tensors)
			return false;
		for (size_t k = 0; g->input_is_init && k < g->n_inputs; k++)
			if (g->input_is_init[k])
				return false;
		return true;
	}
	case MFS_FIELD_INPUT_NAME:
	case MFS_FIELD_OUTPUT_NAME:
	case MFS_FIELD_VALUE_NAME: {
		const char *s = mfs_desc_field_name(&m->desc, id);
		const struct mfs_graph *g = m->desc.graph;
		if (!s || !s[0] || !(m->desc.flags & MFS_DESC_GRAPH))
			return false;
		/* An input that names an initializer is renamed as the tensor. */
		return MFS_FIELD_KIND(id) != MFS_FIELD_INPUT_NAME || !g->input_is_init ||
		       !g->input_is_init[MFS_FIELD_I(id)];
	}
	default: {
		const struct mfs_value *v = field_value(m, id);
		return v && value_elem(v);
	}
	}
}

/* ------------------------------------------------------------ parsing */

/*
 * Split `text` into items at '\n' (and at ',' when `comma`), calling
 * fn(item, len, arg) for each; an empty text has no items.  Stops at the
 * first error.
 */
static int each_item(const char *text, size_t len, bool comma,
                     int (*fn)(const char *s, size_t n, void *arg), void *arg)
{
	size_t a = 0;
	if (!len)
		return 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && text[i] != '\n' && !(comma && text[i] == ','))
			continue;
		int rc = fn(text + a, i - a, arg);
		if (rc)
			return rc;
		a = i + 1;
	}
	return 0;
}

/* `s[0 .. n)` without blanks around it, NUL-terminated in `buf`: false when
 * nothing is left or it does not fit. */
static bool trimmed(char *buf, size_t cap, const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (!n || n >= cap)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return true;
}

static bool parse_int(const char *s, size_t n, int64_t *out)
{
	char buf[32];
	if (!trimmed(buf, sizeof(buf), s, n))
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || *end || !(buf[0] == '-' || buf[0] == '+' || (buf[0] >= '0' && buf[0] <= '9')))
		return false;
	*out = v;
	return true;
}

/* A float32 value: decimal or hex float, inf, nan; not one that overflows. */
static bool parse_float(const char *s, size_t n, float *out)
{
	char buf[64];
	if (!trimmed(buf, sizeof(buf), s, n))
		return false;
	char *end;
	errno = 0;
	double d = strtod(buf, &end);
	if (*end || end == buf)
		return false;
	float f = (float)d;
	if (isinf(f) && !isinf(d))
		return false;   /* past float32's range */
	*out = f;
	return true;
}

/* ------------------------------------------------------------ encoding */

static void put_varint(struct mfs_buf *b, uint64_t v)
{
	uint8_t p[10];
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	mfs_buf_add(b, p, n);
}

static void put_key(struct mfs_buf *b, uint32_t num, unsigned wt)
{
	put_varint(b, (uint64_t)num << 3 | wt);
}

static void put_len_field(struct mfs_buf *b, uint32_t num, const void *p, size_t n)
{
	put_key(b, num, 2);
	put_varint(b, n);
	mfs_buf_add(b, p, n);
}

static void put_fixed32(struct mfs_buf *b, uint32_t num, float f)
{
	uint32_t u;
	uint8_t p[4];
	memcpy(&u, &f, 4);
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(u >> (8 * i));
	put_key(b, num, 5);
	mfs_buf_add(b, p, 4);
}

/* An escaped text item (doc/design.md §3.5) as its bytes, as a LEN field. */
static int put_unescaped(struct mfs_buf *b, uint32_t num, const char *s, size_t n)
{
	char *v = malloc(n + 1);
	if (!v)
		return -ENOMEM;
	size_t vl = mfs_text_unescape(v, s, n);
	put_len_field(b, num, v, vl);
	free(v);
	return 0;
}

/* AttributeProto value fields (f 2, i 3, s 4, floats 7, ints 8, strings 9). */
struct attr_enc {
	struct mfs_buf *b;      /* NULL: check only */
	int type;
	size_t n;
};

static int attr_item(const char *s, size_t n, void *arg)
{
	struct attr_enc *a = arg;
	int64_t iv;
	float fv;
	a->n++;
	switch (a->type) {
	case MFS_ATTR_INT:
	case MFS_ATTR_INTS:
		if (!parse_int(s, n, &iv))
			return -EINVAL;
		if (a->b) {
			put_key(a->b, a->type == MFS_ATTR_INT ? 3 : 8, 0);
			put_varint(a->b, (uint64_t)iv);
		}
		return 0;
	case MFS_ATTR_FLOAT:
	case MFS_ATTR_FLOATS:
		if (!parse_float(s, n, &fv))
			return -EINVAL;
		if (a->b)
			put_fixed32(a->b, a->type == MFS_ATTR_FLOAT ? 2 : 7, fv);
		return 0;
	default:        /* STRING, STRINGS */
		return a->b ? put_unescaped(a->b, a->type == MFS_ATTR_STRING ? 4 : 9, s, n) : 0;
	}
}

int mfs_onnx_attr_encode(const struct mfs_attr *at, const char *text, size_t len,
                         struct mfs_buf *out, char *msg, size_t msglen)
{
	const char *name = at->name ? at->name : "";
	bool list = at->type == MFS_ATTR_FLOATS || at->type == MFS_ATTR_INTS ||
	            at->type == MFS_ATTR_STRINGS;
	struct attr_enc a = {out, at->type, 0};
	if (!list) {
		/* One value: a STRING is its whole (escaped, one-line) text. */
		if (memchr(text, '\n', len))
			return bad(msg, msglen, "attribute '%.200s' holds one value, not a list%s",
			           name, "");
		int rc = attr_item(text, len, &a);
		if (rc == -EINVAL)
			return bad(msg, msglen, "attribute '%.200s': not %s", name,
			           at->type == MFS_ATTR_INT ? "an int64 (decimal)" : "a float32");
		return rc;
	}
	int rc = each_item(text, len, at->type != MFS_ATTR_STRINGS, attr_item, &a);
	if (rc == -EINVAL)
		return bad(msg, msglen, "attribute '%.200s': every line must be %s", name,
		           at->type == MFS_ATTR_INTS ? "an int64 (decimal)" : "a float32");
	return rc;
}

/* ------------------------------------------------------------ shapes */

struct shape_enc {
	struct mfs_buf *b;      /* the TensorShapeProto's fields, or NULL */
	size_t rank;
	const char *bad_dim;
};

static int shape_item(const char *s, size_t n, void *arg)
{
	struct shape_enc *e = arg;
	int64_t v;
	if (++e->rank > MFS_MAX_RANK)
		return -E2BIG;
	if (n == 1 && s[0] == '?') {
		if (e->b)
			put_len_field(e->b, 1, "", 0);          /* a Dimension with no value */
		return 0;
	}
	if (n && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) {
		if (!parse_int(s, n, &v) || v < 0) {
			e->bad_dim = s;
			return -EINVAL;
		}
		if (e->b) {
			struct mfs_buf d = {0};
			put_key(&d, 1, 0);
			put_varint(&d, (uint64_t)v);
			put_len_field(e->b, 1, d.p, d.len);
			int oom = d.oom;
			free(d.p);
			if (oom)
				return -ENOMEM;
		}
		return 0;
	}
	if (!n || memchr(s, ' ', n)) {
		e->bad_dim = s;
		return -EINVAL;
	}
	if (e->b) {
		struct mfs_buf d = {0};
		int rc = put_unescaped(&d, 2, s, n);    /* dim_param */
		if (rc == 0)
			put_len_field(e->b, 1, d.p, d.len);
		free(d.p);
		if (rc || d.oom)
			return -ENOMEM;
	}
	return 0;
}

/* Check (out NULL) or encode a shape text as TensorShapeProto fields. */
static int shape_encode(const char *text, size_t len, bool *unknown_rank, struct mfs_buf *out,
                        char *msg, size_t msglen)
{
	*unknown_rank = len == 1 && text[0] == '*';
	if (*unknown_rank)
		return 0;
	if (memchr(text, '\n', len))
		return bad(msg, msglen, "a shape is one line%s%s", "", "");
	struct shape_enc e = {out, 0, NULL};
	int rc = each_item(text, len, true, shape_item, &e);
	if (rc == -E2BIG)
		return bad(msg, msglen, "a shape of more than %s%s dims", "64", "");
	if (rc == -EINVAL)
		return bad(msg, msglen, "shape '%.200s': each dim is a non-negative integer, a "
		           "symbolic name or '?'%s", text, "");
	return rc;
}

int mfs_onnx_field_check(const struct mfs_model *m, uint64_t id, const char *text, size_t len,
                         char *msg, size_t msglen)
{
	bool ur;
	if (!mfs_onnx_field_writable(m, id))
		return bad(msg, msglen, "%s%s: not writable", "field", "");
	switch (MFS_FIELD_KIND(id)) {
	case MFS_FIELD_NODE_NAME:
		return memchr(text, '\n', len) ?
		       bad(msg, msglen, "a node name is one line%s%s", "", "") : 0;
	case MFS_FIELD_NODE_DOC:
	case MFS_FIELD_INPUT_DOC:
	case MFS_FIELD_OUTPUT_DOC:
		return 0;       /* free text (its line breaks come escaped or raw) */
	case MFS_FIELD_TENSOR_NAME:
	case MFS_FIELD_INPUT_NAME:
	case MFS_FIELD_OUTPUT_NAME:
	case MFS_FIELD_VALUE_NAME: {
		if (!len || memchr(text, '\n', len))
			return bad(msg, msglen, "a value name is one line, not empty%s%s", "", "");
		char *raw = malloc(len + 1);
		if (!raw)
			return -ENOMEM;
		size_t rl = mfs_text_unescape(raw, text, len);
		raw[rl] = '\0';
		int rc = 0;
		if (strlen(raw) != rl || !rl)
			rc = bad(msg, msglen, "a value name holds no NUL byte and is not empty%s%s",
			         "", "");
		else if (mfs_onnx_subgraph_defines(m->desc.graph, raw))
			rc = bad(msg, msglen, "'%.200s' is defined inside a subgraph%s: the subgraph's "
			         "uses of the renamed value would refer to its own", raw, "");
		free(raw);
		return rc;      /* names in use are the transaction's to refuse */
	}
	case MFS_FIELD_TENSOR_ADD: {
		if (!len || memchr(text, '\n', len))
			return bad(msg, msglen, "a tensor name is one line, not empty%s%s", "", "");
		char *raw = malloc(len + 1);
		if (!raw)
			return -ENOMEM;
		size_t rl = mfs_text_unescape(raw, text, len);
		raw[rl] = '\0';
		int rc = 0;
		if (strlen(raw) != rl || !rl)
			rc = bad(msg, msglen, "a tensor name holds no NUL byte and is not empty%s%s",
			         "", "");
		else if (mfs_onnx_subgraph_defines(m->desc.graph, raw))
			rc = bad(msg, msglen, "'%.200s' is defined inside a subgraph%s", raw, "");
		free(raw);
		return rc;      /* names in use are the transaction's to refuse */
	}
	case MFS_FIELD_TENSOR_DELETE:
		if (len != 1 || text[0] != '1')
			return bad(msg, msglen, "a deletion is staged as '1'%s%s", "", "");
		return mfs_onnx_unused(m->desc.graph, mfs_onnx_field_init(m, id)->name, msg, msglen);
	case MFS_FIELD_NODE_ATTR:
		return mfs_onnx_attr_encode(mfs_onnx_field_attr(m, id), text, len, NULL, msg, msglen);
	case MFS_FIELD_INPUT_SHAPE:
	case MFS_FIELD_OUTPUT_SHAPE:
		return shape_encode(text, len, &ur, NULL, msg, msglen);
	case MFS_FIELD_INPUT_DTYPE:
	case MFS_FIELD_OUTPUT_DTYPE: {
		char name[32];
		if (!len || len >= sizeof(name))
			return bad(msg, msglen, "'%.40s': not an ONNX tensor dtype%s", "", "");
		memcpy(name, text, len);
		name[len] = '\0';
		int32_t dt = mfs_dtype_from_name(name);
		if (dt <= 0 || dt >= MFS_DT_EXT_FIRST_)
			return bad(msg, msglen, "'%.40s': not an ONNX tensor dtype%s", name, "");
		return 0;
	}
	default:
		return -EINVAL;
	}
}

/*
 * The TypeProto of a graph input or output whose dtype and/or shape are
 * edited: `dtype`/`shape` are the staged texts, or NULL for the value's
 * own.  Only tensor types get here (field_writable); a denotation the old
 * type had is not kept.
 */
int mfs_onnx_type_encode(const struct mfs_value *v, const char *dtype, size_t dtype_len,
                         const char *shape, size_t shape_len, struct mfs_buf *out,
                         char *msg, size_t msglen)
{
	char name[32];
	int32_t dt = value_elem(v);
	if (dtype) {
		if (!dtype_len || dtype_len >= sizeof(name))
			return -EINVAL;
		memcpy(name, dtype, dtype_len);
		name[dtype_len] = '\0';
		dt = mfs_dtype_from_name(name);
	}
	if (dt <= 0)
		return bad(msg, msglen, "value '%.200s': no tensor dtype%s", v->name, "");
	struct mfs_buf sh = {0}, tt = {0};
	bool unknown_rank = false;
	int rc = 0;
	if (shape) {
		rc = shape_encode(shape, shape_len, &unknown_rank, &sh, msg, msglen);
	} else if (!v->shape.known) {
		unknown_rank = true;
	} else {
		for (size_t k = 0; k < v->shape.rank; k++) {
			const struct mfs_dim *d = &v->shape.dims[k];
			struct mfs_buf db = {0};
			if (d->param)
				put_len_field(&db, 2, d->param, strlen(d->param));
			else if (d->value >= 0) {
				put_key(&db, 1, 0);
				put_varint(&db, (uint64_t)d->value);
			}
			put_len_field(&sh, 1, db.p ? (const void *)db.p : "", db.len);
			rc = db.oom ? -ENOMEM : 0;
			free(db.p);
			if (rc)
				break;
		}
	}
	if (rc == 0) {
		/* TypeProto.Tensor { elem_type = 1; shape = 2 } */
		put_key(&tt, 1, 0);
		put_varint(&tt, (uint64_t)dt);
		if (!unknown_rank)
			put_len_field(&tt, 2, sh.p ? (const void *)sh.p : "", sh.len);
		/* TypeProto { tensor_type = 1 } as ValueInfoProto.type = 2 */
		struct mfs_buf tp = {0};
		put_len_field(&tp, 1, tt.p ? (const void *)tt.p : "", tt.len);
		put_len_field(out, 2, tp.p ? (const void *)tp.p : "", tp.len);
		rc = sh.oom || tt.oom || tp.oom || out->oom ? -ENOMEM : 0;
		free(tp.p);
	}
	free(sh.p);
	free(tt.p);
	return rc;
}

/*
 * codec/onnx/reader.c — the ONNX reader: a model file becomes a struct mfs_desc.
 *
 * mfs_onnx_open() is called by mfs_model_open() (model.c) once the file is
 * open and sniffed.  It fills m->desc from the arena and never keeps a
 * protobuf-c object: those live only inside this file, for one message at
 * a time.
 *
 * HOW IT WORKS
 *
 * An ONNX file is one protobuf ModelProto, and almost all of its bytes are
 * tensor payloads.  Handing the file to protobuf-c would copy every payload
 * into memory, so instead the walker (wire.c) steps through the wire
 * format itself, descending only into the messages that can hold tensors or
 * graphs:
 *
 *     Model ─ graph(7) ─────────────── Graph
 *           ─ training_info(20) ────── Training ─ initialization(1), algorithm(2) → Graph
 *           ─ functions(25) ────────── Function ─ node(7) → Node
 *                                               ─ attribute_proto(11) → Attribute
 *     Graph ─ node(1) → Node, initializer(5) → Tensor, sparse_initializer(15) → Sparse
 *     Node  ─ attribute(5) → Attribute
 *     Attribute ─ t(5), tensors(10) → Tensor; g(6), graphs(11) → Graph;
 *                 sparse_tensor(22), sparse_tensors(23) → Sparse
 *     Sparse ─ values(1), indices(2) → Tensor
 *
 * Each arrow is a row of its message kind's table of child fields (section
 * "child fields"), and one loop, walk_fields(), steps through the fields of
 * every kind.  Every other field of such a message is copied, tag and all,
 * into a small scratch buffer, and only the scratch buffer is given to protobuf-c
 * (`onnx__xxx_proto__unpack`).  Protobuf parses a concatenation of fields as
 * a merge, so this yields the message minus the fields we walked: names,
 * dims, types, attribute scalars, opsets.  In a TensorProto the bulk fields
 * (raw_data, float_data, double_data and the varint fields) are not copied
 * either: raw_data and a single packed float/double run are recorded as a
 * (file offset, length) span, and the rest is decoded into memory, up to
 * MFS_MAX_DECODED bytes per model.
 *
 * The walk also leaves what the splice writer (writer.c) needs to edit
 * the file without re-encoding it (struct mfs_onnx_layout, onnx.h): the
 * span of every message it walked into and its parent, so each tensor has
 * its chain of length prefixes up to the ModelProto; each tensor's storage;
 * the ModelProto's own fields; and the main graph's name field.  Tensors get
 * their ids (desc.tensors) in the order their walks finish, which is file
 * order, so the same structure gives the same ids on every open.
 *
 * INVARIANTS
 *   1. Every length is checked against the end of its enclosing message
 *      before it is used (wire.c); no allocation is sized from the file
 *      without a check against the file size or a named limit.
 *   2. Message nesting is bounded by MFS_MAX_DEPTH, counted from the
 *      ModelProto (depth 0).  The walk checks it as it descends, and every
 *      scratch buffer is checked against the protobuf-c schema
 *      (mfs_wire_check) before protobuf-c, which recurses freely, sees it.
 *      So all recursion here is at most MFS_MAX_DEPTH levels deep.
 *   3. Tensor payloads are never read while opening, except the typed
 *      fields that must be decoded.  The file is read through a 4 KiB
 *      window, so opening reads roughly one window per message.
 *   4. A failure is one line naming what is wrong, the file offset, and the
 *      path of the message ("graph.node[3].attribute[0]").
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "onnx.pb-c.h"
#include "onnx/onnx.h"
#include "onnx/wire.h"

/* ------------------------------------------------------------ walker state */

/* A growable array of fixed-size elements, malloc'd while walking and copied
 * into the arena when the message is complete. */
struct vec {
	void *v;
	size_t n, cap;
};

struct ext_slot {
	char *key;              /* normalized location, malloc'd; NULL = empty slot */
	unsigned idx;           /* index in desc.files */
};

struct walker {
	struct mfs_model *m;
	struct mfs_arena *a;
	const char *display;
	char *err;
	size_t errlen;
	struct mfs_wire_src src;
	bool top_ok;            /* a well-formed ModelProto field was seen */
	bool is_onnx;           /* the ModelProto's ir_version was seen: whatever is wrong
	                         * now is wrong with an ONNX file (see mfs_onnx_open) */
	uint64_t decoded;       /* bytes decoded from typed fields so far */
	uint64_t n_tensors;
	uint64_t n_nodes;
	struct ext_slot *ext;   /* external data files by location (hash table) */
	size_t ext_cap;
	size_t ext_n;
	size_t path_len;
	/* For the splice writer (splice.h): every message walked into, the
	 * tensors in walk order with their storage, the ModelProto's fields and
	 * the main graph's name. */
	struct vec msgs;        /* struct mfs_onnx_msg */
	struct vec tensors;     /* struct mfs_tensor *, by id */
	struct vec tspans;      /* struct mfs_onnx_tspan, by id */
	struct vec top;         /* struct mfs_onnx_field */
	int32_t cur_msg;        /* the message being walked; -1 = the ModelProto */
	uint8_t storage;        /* what tensor_data() decided, enum mfs_onnx_storage */
	uint8_t packed_field;
	int32_t graph_msg;
	bool has_gname;
	uint64_t gname_tag, gname_end, gname_ins;
	char path[2048];        /* where we are, for messages: ".graph.node[3]" */
	uint8_t win[MFS_WIRE_WINDOW];
};

/* ------------------------------------------------------------ errors, paths */

static size_t path_push(struct walker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static size_t path_push(struct walker *w, const char *fmt, ...)
{
	size_t mark = w->path_len;
	size_t room = sizeof(w->path) - w->path_len;
	if (room > 1) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(w->path + w->path_len, room, fmt, ap);
		va_end(ap);
		if (n > 0)
			w->path_len += (size_t)n < room ? (size_t)n : room - 1;
	}
	return mark;
}

static void path_pop(struct walker *w, size_t mark)
{
	w->path_len = mark;
	w->path[mark] = '\0';
}

static int fail(struct walker *w, int rc, uint64_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* "<display>: <what> at offset N (path)": what is wrong, where in the file,
 * and which message, so a user can find it with a hex dump or with onnx. */
static int fail(struct walker *w, int rc, uint64_t off, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const char *p = w->path[0] == '.' ? w->path + 1 : w->path;
	if (*p)
		return mfs_errf(w->err, w->errlen, rc, w->display, "%s at offset %" PRIu64 " (%s)",
		                msg, off, p);
	return mfs_errf(w->err, w->errlen, rc, w->display, "%s at offset %" PRIu64, msg, off);
}

static int nomem(struct walker *w)
{
	return mfs_errf(w->err, w->errlen, -ENOMEM, w->display, "out of memory");
}

static int wire_fail(struct walker *w, enum mfs_wire_err e, uint64_t off, bool top)
{
	if (e == MFS_WIRE_IO)
		return fail(w, -EIO, off, "read error: %s", strerror(w->src.io_errno));
	if (top && !w->top_ok)
		return mfs_errf(w->err, w->errlen, -EUCLEAN, w->display, "%s at offset %" PRIu64,
		                mfs_wire_strerror(e), off);
	/* The top-level message is the whole file: running past its end
	 * means the file was cut short. */
	if (top && e == MFS_WIRE_LEN_PAST_END)
		return fail(w, -EUCLEAN, off, "length prefix past end of file (truncated file)");
	if (top && e == MFS_WIRE_FIXED_PAST_END)
		return fail(w, -EUCLEAN, off, "fixed-width value past end of file (truncated file)");
	if (top && e == MFS_WIRE_TRUNCATED)
		return fail(w, -EUCLEAN, off, "varint runs past end of file (truncated file)");
	return fail(w, -EUCLEAN, off, "%s", mfs_wire_strerror(e));
}

static int check_depth(struct walker *w, unsigned depth, uint64_t off)
{
	if (depth > MFS_MAX_DEPTH)
		return fail(w, -EFBIG, off, "messages nested deeper than %d levels", MFS_MAX_DEPTH);
	return 0;
}

/* Field value of a walked field must be length-delimited (a message). */
static int want_len(struct walker *w, const struct mfs_wire_field *f, const char *name)
{
	if (f->wt == MFS_WT_LEN)
		return 0;
	return fail(w, -EUCLEAN, f->start, "field %s (%u) has wire type %u, expected 2", name,
	            (unsigned)f->num, f->wt);
}

/* ------------------------------------------------------------ small helpers */

static int vec_add(struct vec *v, const void *elem, size_t size)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 8;
		void *nv = reallocarray(v->v, cap, size);
		if (!nv)
			return -ENOMEM;
		v->v = nv;
		v->cap = cap;
	}
	memcpy((char *)v->v + v->n * size, elem, size);
	v->n++;
	return 0;
}

static void *vec_finish(struct walker *w, const struct vec *v, size_t size)
{
	void *p = mfs_arena_array(w->a, v->n, size);
	if (p && v->n)
		memcpy(p, v->v, v->n * size);
	return p;
}

/*
 * Check the depth of the message field `f` we are about to walk into (at
 * `depth`), record it for the splice writer, and make it the current
 * message; the caller restores w->cur_msg when it leaves.  The length prefix
 * starts after the key, whose length is read again: a key need not be
 * minimally encoded, and the writer copies it as it is.
 */
static int msg_enter(struct walker *w, const struct mfs_wire_field *f, unsigned depth)
{
	int rc = check_depth(w, depth, f->val);
	if (rc)
		return rc;
	uint64_t key;
	size_t used;
	enum mfs_wire_err e = mfs_wire_varint_at(&w->src, f->start, f->end, &key, &used);
	if (e)
		return wire_fail(w, e, f->start, false);
	struct mfs_onnx_msg m = {
		.tag = f->start, .len = f->start + used, .val = f->val, .end = f->end,
		.parent = w->cur_msg, .depth = depth,
	};
	if (w->msgs.n >= INT32_MAX)
		return fail(w, -EFBIG, f->start, "too many messages");
	if (vec_add(&w->msgs, &m, sizeof(m)) < 0)
		return nomem(w);
	w->cur_msg = (int32_t)(w->msgs.n - 1);
	return 0;
}

/* Attribute values and meta files are built in a struct mfs_buf. */
static void sb_printf(struct mfs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct mfs_buf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		mfs_buf_add(b, tmp, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		b->oom = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	mfs_buf_add(b, big, (size_t)n);
	free(big);
}

/* Append `s[0 .. n)` escaped (doc/design.md §3.5). */
static void sb_escaped(struct mfs_buf *b, const char *s, size_t n)
{
	if (mfs_text_plain(s, n)) {
		mfs_buf_add(b, s, n);
		return;
	}
	size_t need = mfs_text_escape(NULL, 0, s, n);
	char *e = malloc(need + 1);
	if (!e) {
		b->oom = true;
		return;
	}
	mfs_text_escape(e, need + 1, s, n);
	mfs_buf_add(b, e, need);
	free(e);
}

/* Move the text into the arena: *out, *len.  An empty buffer gives "". */
static int sb_finish(struct walker *w, struct mfs_buf *b, char **out, size_t *len)
{
	if (b->oom) {
		free(b->p);
		b->p = NULL;
		return nomem(w);
	}
	*out = mfs_arena_strndup(w->a, b->p ? b->p : "", b->len);
	*len = b->len;
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	return *out ? 0 : nomem(w);
}

static char *adup(struct walker *w, const char *s)
{
	return mfs_arena_strdup(w->a, s ? s : "");
}

/*
 * A name from the model, bounded by MFS_MAX_NAME; NULL (absent) gives "".
 * Returns 0 or a negative errno with the message set.
 */
static int name_dup(struct walker *w, char **out, const char *s, const char *what, uint64_t off)
{
	size_t n = s ? strlen(s) : 0;
	if (n > MFS_MAX_NAME)
		return fail(w, -EFBIG, off, "%s is %zu bytes long (limit %d)", what, n, MFS_MAX_NAME);
	*out = mfs_arena_strndup(w->a, s ? s : "", n);
	return *out ? 0 : nomem(w);
}

/* Optional string: NULL stays NULL. */
static int opt_dup(struct walker *w, char **out, const char *s)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = mfs_arena_strdup(w->a, s);
	return *out ? 0 : nomem(w);
}

static const char *opset_domain(const char *d)
{
	return d && d[0] ? d : "ai.onnx";
}

/* "<domain> <version>" lines, the domain escaped (doc/design.md §3.5). */
static void opset_lines(struct mfs_buf *b, Onnx__OperatorSetIdProto *const *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *d = opset_domain(ops[i]->domain);
		sb_escaped(b, d, strlen(d));
		sb_printf(b, " %lld\n", (long long)ops[i]->version);
	}
}

/* ------------------------------------------------------------ scratch + unpack */

/*
 * The bytes of the small fields of one message, as they appear in the file,
 * with a map from scratch offsets back to file offsets for error messages.
 */
struct seg {
	size_t soff;
	uint64_t foff;
};

struct scratch {
	uint8_t *buf;
	size_t len, cap;
	struct vec segs;        /* struct seg, one per copied field */
};

static void scratch_free(struct scratch *sc)
{
	free(sc->buf);
	free(sc->segs.v);
	memset(sc, 0, sizeof(*sc));
}

static int scratch_add(struct walker *w, struct scratch *sc, const struct mfs_wire_field *f)
{
	uint64_t n = f->end - f->start;
	if (n > MFS_MAX_SMALL_MSG - sc->len)
		return fail(w, -EFBIG, f->start,
		            "metadata fields of one message exceed %u MiB", MFS_MAX_SMALL_MSG >> 20);
	if (sc->len + n > sc->cap) {
		size_t cap = sc->cap ? sc->cap : 256;
		while (cap < sc->len + n)
			cap *= 2;
		uint8_t *nb = realloc(sc->buf, cap);
		if (!nb)
			return nomem(w);
		sc->buf = nb;
		sc->cap = cap;
	}
	int rc = mfs_wire_read(&w->src, sc->buf + sc->len, f->start, (size_t)n);
	if (rc < 0)
		return fail(w, rc, f->start, "read error: %s", strerror(-rc));
	struct seg s = {sc->len, f->start};
	if (vec_add(&sc->segs, &s, sizeof(s)) < 0)
		return nomem(w);
	sc->len += (size_t)n;
	return 0;
}

static uint64_t scratch_file_off(const struct scratch *sc, uint64_t soff, uint64_t dflt)
{
	const struct seg *s = sc->segs.v;
	size_t lo = 0, hi = sc->segs.n;
	while (lo < hi) {       /* last segment starting at or before soff */
		size_t mid = lo + (hi - lo) / 2;
		if (s[mid].soff <= soff)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? s[lo - 1].foff + (soff - s[lo - 1].soff) : dflt;
}

/*
 * Check the scratch buffer against the schema (nesting, lengths), then let
 * protobuf-c decode it.  `depth` is the depth of the message itself.
 */
static int unpack(struct walker *w, const ProtobufCMessageDescriptor *desc, struct scratch *sc,
                  unsigned depth, uint64_t msg_off, bool top, void **out)
{
	static const uint8_t empty;
	*out = NULL;
	uint64_t eo;
	enum mfs_wire_err e = mfs_wire_check(sc->buf, sc->len, desc, depth, MFS_MAX_DEPTH, &eo);
	if (e == MFS_WIRE_TOO_DEEP)
		return fail(w, -EFBIG, scratch_file_off(sc, eo, msg_off),
		            "messages nested deeper than %d levels", MFS_MAX_DEPTH);
	if (e)
		return fail(w, -EUCLEAN, scratch_file_off(sc, eo, msg_off), "%s",
		            mfs_wire_strerror(e));
	ProtobufCMessage *msg =
		protobuf_c_message_unpack(desc, NULL, sc->len, sc->buf ? sc->buf : &empty);
	if (!msg) {
		if (top && !w->top_ok)
			return mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
			                "no valid ModelProto fields");
		return fail(w, -EUCLEAN, msg_off,
		            "cannot decode the fields of %s (a field has the wrong wire type or a "
		            "malformed value)", desc->short_name);
	}
	*out = msg;
	return 0;
}

static void pb_free(void *msg)
{
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
}

/* ------------------------------------------------------------ types and shapes */

static bool has_unknown_field(const ProtobufCMessage *msg, uint32_t num)
{
	for (unsigned i = 0; i < msg->n_unknown_fields; i++)
		if (msg->unknown_fields[i].tag == num)
			return true;
	return false;
}

/* "float32", "sequence(float32)", "map(int64,float32)", ...  Recursion is
 * bounded: the TypeProto passed mfs_wire_check(). */
static char *type_name(struct walker *w, const Onnx__TypeProto *tp)
{
	if (!tp)
		return adup(w, "");
	char *inner;
	switch (tp->value_case) {
	case ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE:
		return adup(w, mfs_dtype_name(tp->tensor_type->has_elem_type ?
		                              tp->tensor_type->elem_type : 0));
	case ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE:
		return mfs_arena_printf(w->a, "sparse(%s)",
		                        mfs_dtype_name(tp->sparse_tensor_type->has_elem_type ?
		                                       tp->sparse_tensor_type->elem_type : 0));
	case ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE:
		inner = type_name(w, tp->sequence_type->elem_type);
		return inner ? mfs_arena_printf(w->a, "sequence(%s)", inner) : NULL;
	case ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE:
		inner = type_name(w, tp->optional_type->elem_type);
		return inner ? mfs_arena_printf(w->a, "optional(%s)", inner) : NULL;
	case ONNX__TYPE_PROTO__VALUE_MAP_TYPE: {
		char key[24];
		snprintf(key, sizeof(key), "%s",
		         mfs_dtype_name(tp->map_type->has_key_type ? tp->map_type->key_type : 0));
		inner = type_name(w, tp->map_type->value_type);
		return inner ? mfs_arena_printf(w->a, "map(%s,%s)", key, inner) : NULL;
	}
	default:
		/* opaque_type (7) exists only in onnx-ml.proto; with the plain
		 * schema it arrives as an unknown field. */
		if ((int)tp->value_case == 7 || has_unknown_field(&tp->base, 7))
			return adup(w, "opaque");
		return adup(w, "");
	}
}

static int conv_shape(struct walker *w, const Onnx__TensorShapeProto *sp, struct mfs_shape *out,
                      uint64_t off)
{
	memset(out, 0, sizeof(*out));
	if (!sp)
		return 0;       /* no shape field: unknown rank */
	if (sp->n_dim > MFS_MAX_RANK)
		return fail(w, -EFBIG, off, "shape has %zu dims (limit %d)", sp->n_dim, MFS_MAX_RANK);
	out->known = true;
	out->rank = sp->n_dim;
	out->dims = mfs_arena_array(w->a, sp->n_dim, sizeof(*out->dims));
	if (!out->dims)
		return nomem(w);
	for (size_t i = 0; i < sp->n_dim; i++) {
		const Onnx__TensorShapeProto__Dimension *d = sp->dim[i];
		struct mfs_dim *o = &out->dims[i];
		o->value = -1;
		if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
			if (d->dim_value >= 0)
				o->value = d->dim_value;
		} else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
		           d->dim_param && d->dim_param[0]) {
			int rc = name_dup(w, &o->param, d->dim_param, "dim_param", off);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* The shape of a value's type, when it is a (sparse) tensor type. */
static int type_shape(struct walker *w, const Onnx__TypeProto *tp, struct mfs_shape *out,
                      uint64_t off)
{
	memset(out, 0, sizeof(*out));
	if (!tp)
		return 0;
	if (tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
		return conv_shape(w, tp->tensor_type->shape, out, off);
	if (tp->value_case == ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE)
		return conv_shape(w, tp->sparse_tensor_type->shape, out, off);
	return 0;
}

static int conv_value(struct walker *w, const Onnx__ValueInfoProto *vi, struct mfs_value *out,
                      uint64_t off)
{
	int rc = name_dup(w, &out->name, vi->name, "value name", off);
	if (rc)
		return rc;
	out->dtype = type_name(w, vi->type);
	if (!out->dtype)
		return nomem(w);
	rc = type_shape(w, vi->type, &out->shape, off);
	if (rc)
		return rc;
	return opt_dup(w, &out->doc_string, vi->doc_string);
}

static int conv_values(struct walker *w, Onnx__ValueInfoProto *const *vis, size_t n,
                       struct mfs_value **out, size_t *n_out, uint64_t off)
{
	*out = mfs_arena_array(w->a, n, sizeof(**out));
	if (!*out)
		return nomem(w);
	*n_out = n;
	for (size_t i = 0; i < n; i++) {
		int rc = conv_value(w, vis[i], &(*out)[i], off);
		if (rc)
			return rc;
	}
	return 0;
}

/* "<dtype> <shape>\n" for TYPE_PROTO(S) attributes. */
static int type_line(struct walker *w, struct mfs_buf *b, const Onnx__TypeProto *tp, uint64_t off)
{
	char *dt = type_name(w, tp);
	if (!dt)
		return nomem(w);
	struct mfs_shape shape;
	int rc = type_shape(w, tp, &shape, off);
	if (rc)
		return rc;
	size_t need = mfs_shape_format(NULL, 0, &shape);
	char *s = mfs_arena_alloc(w->a, need + 1);
	if (!s)
		return nomem(w);
	mfs_shape_format(s, need + 1, &shape);
	sb_printf(b, "%s %s\n", dt, s);
	return 0;
}

/* ------------------------------------------------------------ external data */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;     /* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

static struct ext_slot *ext_find(struct walker *w, const char *key)
{
	if (!w->ext_cap)
		return NULL;
	size_t mask = w->ext_cap - 1;
	for (size_t i = (size_t)hash_str(key) & mask;; i = (i + 1) & mask) {
		if (!w->ext[i].key || strcmp(w->ext[i].key, key) == 0)
			return &w->ext[i];
	}
}

static int ext_insert(struct walker *w, const char *key, unsigned idx)
{
	if (2 * (w->ext_n + 1) > w->ext_cap) {
		size_t cap = w->ext_cap ? w->ext_cap * 2 : 16;
		struct ext_slot *old = w->ext;
		size_t old_cap = w->ext_cap;
		w->ext = calloc(cap, sizeof(*w->ext));
		if (!w->ext) {
			w->ext = old;
			return -ENOMEM;
		}
		w->ext_cap = cap;
		for (size_t i = 0; i < old_cap; i++)
			if (old[i].key)
				*ext_find(w, old[i].key) = old[i];
		free(old);
	}
	char *k = strdup(key);
	if (!k)
		return -ENOMEM;
	struct ext_slot *s = ext_find(w, key);
	s->key = k;
	s->idx = idx;
	w->ext_n++;
	return 0;
}

static void ext_free(struct walker *w)
{
	for (size_t i = 0; i < w->ext_cap; i++)
		free(w->ext[i].key);
	free(w->ext);
	w->ext = NULL;
	w->ext_cap = w->ext_n = 0;
}

/* "./a//b/./c" -> "a/b/c": drop empty and "." components so that one file
 * named two ways is registered once.  ".." is kept for the place (mfs_model_open_beneath())
 * to refuse. */
static char *norm_location(const char *loc)
{
	size_t n = strlen(loc);
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	const char *p = loc;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len && !(len == 1 && p[0] == '.')) {
			if (o)
				out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		if (!e)
			break;
		p = e + 1;
	}
	out[o] = '\0';
	return out;
}

/* The desc.files index of external data file `loc`, opening and
 * registering it on first use.  Negative errno with the message set. */
static int ext_file(struct walker *w, const char *loc)
{
	struct mfs_model *m = w->m;
	/* Absolute, or naming a directory: let the place say why. */
	struct mfs_source *src;
	if (loc[0] == '/' || (loc[0] && loc[strlen(loc) - 1] == '/')) {
		int r = mfs_model_open_beneath(m, &src, loc, w->err, w->errlen, w->display);
		if (r == 0) {   /* cannot happen: such a location is always refused */
			mfs_source_close(src);
			r = -EUCLEAN;
		}
		return r;
	}
	char *key = norm_location(loc);
	if (!key)
		return nomem(w);
	int rc;
	/* Refuse ".." before touching the file system, so the answer does not
	 * depend on which directories happen to exist. */
	for (const char *p = key; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			rc = mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
			              "external data location '%s' contains '..'", loc);
			goto out;
		}
		p += n + (p[n] == '/');
	}
	struct ext_slot *s = ext_find(w, key);
	if (s && s->key) {
		rc = (int)s->idx;
		goto out;
	}
	rc = mfs_model_open_beneath(m, &src, key[0] ? key : loc, w->err, w->errlen,
	                             w->display);
	if (rc < 0)
		goto out;
	if (strcmp(key, m->desc.files[0].path) == 0) {
		/* The model names itself: its bytes are already source 0. */
		mfs_source_close(src);
		rc = 0;
	} else {
		rc = mfs_model_add_file(m, key, src);
		if (rc == -EFBIG) {
			rc = mfs_errf(w->err, w->errlen, rc, w->display,
			              "more than %d external data files", MFS_MAX_EXT_FILES);
			goto out;
		}
		if (rc < 0) {
			rc = mfs_errf(w->err, w->errlen, rc, w->display, "external data file '%s': %s",
			              key, strerror(-rc));
			goto out;
		}
	}
	if (ext_insert(w, key, (unsigned)rc) < 0)
		rc = nomem(w);
out:
	free(key);
	return rc;
}

/* A decimal string from external_data: digits only, fits in uint64. */
/* A decimal uint64: 0, -EINVAL for anything but digits, -ERANGE past 2^64 - 1. */
static int parse_u64(const char *s, uint64_t *out)
{
	if (!s || !*s)
		return -EINVAL;
	uint64_t v = 0;
	int rc = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
			rc = -ERANGE;   /* but a later non-digit still makes it no number */
	}
	*out = v;
	return rc;
}

/* Why an external data offset or length is refused, for parse_u64()'s error. */
static const char *u64_why(int rc)
{
	return rc == -ERANGE ? "is out of range (more than 2^64 - 1)" : "is not a decimal number";
}

/*
 * Resolve an external tensor: the `location`, `offset` and `length` keys of
 * external_data.  `want` is the byte count dims × dtype require, or
 * UINT64_MAX when the dtype has no fixed width we know.
 */
static int tensor_external(struct walker *w, const Onnx__TensorProto *tp, struct mfs_tensor *t,
                           uint64_t want, uint64_t off)
{
	const char *loc = NULL, *soff = NULL, *slen = NULL;
	for (size_t i = 0; i < tp->n_external_data; i++) {
		const Onnx__StringStringEntryProto *kv = tp->external_data[i];
		if (!kv->key)
			continue;
		if (!strcmp(kv->key, "location"))
			loc = kv->value ? kv->value : "";
		else if (!strcmp(kv->key, "offset"))
			soff = kv->value ? kv->value : "";
		else if (!strcmp(kv->key, "length"))
			slen = kv->value ? kv->value : "";
	}
	if (!loc)
		return fail(w, -EUCLEAN, off, "tensor '%.200s' has external data but no location",
		            t->name);
	if (loc[0] == '#')
		return fail(w, -EUCLEAN, off,
		            "tensor '%.200s': external data location '%.200s' is not supported",
		            t->name, loc);
	uint64_t eoff = 0, elen = 0;
	int prc;
	if (soff && (prc = parse_u64(soff, &eoff)) < 0)
		return fail(w, -EUCLEAN, off, "tensor '%.200s': external data offset '%.40s' %s",
		            t->name, soff, u64_why(prc));
	if (slen && (prc = parse_u64(slen, &elen)) < 0)
		return fail(w, -EUCLEAN, off, "tensor '%.200s': external data length '%.40s' %s",
		            t->name, slen, u64_why(prc));
	int idx = ext_file(w, loc);
	if (idx < 0)
		return idx;
	uint64_t fsize = w->m->desc.files[idx].size;
	const char *fname = w->m->desc.files[idx].path;
	if (eoff > fsize)
		return fail(w, -EUCLEAN, off,
		            "tensor '%.200s': external data offset %" PRIu64 " is past the end of "
		            "'%.200s' (%" PRIu64 " bytes)", t->name, eoff, fname, fsize);
	if (!slen)
		elen = fsize - eoff;
	else if (elen > fsize - eoff)
		return fail(w, -EUCLEAN, off,
		            "tensor '%.200s': external data offset %" PRIu64 " + length %" PRIu64
		            " is past the end of '%.200s' (%" PRIu64 " bytes)",
		            t->name, eoff, elen, fname, fsize);
	if (want != UINT64_MAX && elen != want)
		return fail(w, -EUCLEAN, off,
		            "tensor '%.200s': external data length %" PRIu64 " but %s dims need %"
		            PRIu64 " bytes", t->name, elen, mfs_dtype_name(t->dtype), want);
	t->src = (unsigned)idx;
	t->off = eoff;
	t->nbytes = elen;
	return 0;
}

/* ------------------------------------------------------------ child fields */

/*
 * Every message kind the walk descends into has a table of its child
 * fields: the fields holding a message that we walk into ourselves instead of
 * copying it into the scratch buffer (the tree in HOW IT WORKS).  A row says
 * the field's number, its name (in messages and in the path), what it holds
 * and so which walker reads it, whether it is repeated, and where the result
 * goes: a member of the walker's context, at `off`.  A singular field's member
 * is a slot of the child's type; a repeated field's is a struct vec of them.
 *
 * walk_fields() steps through the fields of one message.  A field in the
 * table must be length-delimited; a singular one may appear once; it is
 * walked at depth + 1 under the path ".name", or ".name[i]" where i counts
 * that field's earlier occurrences.  Every other field goes to the scratch
 * buffer.  What really differs from one kind to another is code around the
 * loop: a hook that sees every field first, and the message for a singular
 * field given twice.
 */

/* What a child field holds: which walker reads it, and its result's type. */
enum kid {
	KID_TENSOR,             /* struct mfs_tensor * */
	KID_SPARSE,             /* struct mfs_sparse * */
	KID_GRAPH,              /* struct mfs_graph * */
	KID_MAIN_GRAPH,         /* struct mfs_graph *: ModelProto.graph */
	KID_NODE,               /* struct mfs_node */
	KID_ATTR,               /* struct mfs_attr */
	KID_FUNCTION,           /* struct mfs_function */
	KID_TRAINING,           /* struct mfs_training */
};

/* Room for one result of any kind, and each kind's size in a struct vec. */
union kid_val {
	struct mfs_tensor *tensor;
	struct mfs_sparse *sparse;
	struct mfs_graph *graph;
	struct mfs_node node;
	struct mfs_attr attr;
	struct mfs_function function;
	struct mfs_training training;
};

static const size_t kid_size[] = {
	[KID_TENSOR] = sizeof(struct mfs_tensor *),
	[KID_SPARSE] = sizeof(struct mfs_sparse *),
	[KID_GRAPH] = sizeof(struct mfs_graph *),
	[KID_MAIN_GRAPH] = sizeof(struct mfs_graph *),
	[KID_NODE] = sizeof(struct mfs_node),
	[KID_ATTR] = sizeof(struct mfs_attr),
	[KID_FUNCTION] = sizeof(struct mfs_function),
	[KID_TRAINING] = sizeof(struct mfs_training),
};

struct child {
	uint32_t num;
	const char *name;
	enum kid kid;
	bool many;              /* repeated: a struct vec at `off`; else a slot */
	size_t off;             /* of the member in the walker's context */
};

/* The rows of a table: field `num` called `name` holds a `kid`, which goes
 * to `member` of the context, a struct `ctx`. */
#define ONE(num, name, kid, ctx, member)  {num, name, kid, false, offsetof(ctx, member)}
#define MANY(num, name, kid, ctx, member) {num, name, kid, true, offsetof(ctx, member)}

struct msg_kind {
	const ProtobufCMessageDescriptor *desc;         /* its protobuf-c message */
	const struct child *children;   /* fewer than 32 rows */
	size_t n_children;
	bool top;               /* the ModelProto: wire errors speak of the file */
	/* Sees every field before the table does, with the context: 0 to go
	 * on, 1 when it has taken the field itself, or a negative errno.  May
	 * be NULL. */
	int (*field)(struct walker *w, const struct mfs_wire_field *f, void *ctx);
	/* The error for singular child field `c` found a second time, at f. */
	int (*twice)(struct walker *w, const struct mfs_wire_field *f, const struct child *c);
};

#define KIND_CHILDREN(rows) .children = rows, .n_children = sizeof(rows) / sizeof(rows[0])

/* Walk child message `f` of kind `kid` into `out`, a result of its type
 * (after the walkers, which it calls). */
static int walk_kid(struct walker *w, enum kid kid, const struct mfs_wire_field *f,
                    unsigned depth, void *out);

static const struct child *find_child(const struct msg_kind *k, uint32_t num)
{
	for (size_t i = 0; i < k->n_children; i++)
		if (k->children[i].num == num)
			return &k->children[i];
	return NULL;
}

/* Child field `c` found at `f`; `seen` holds the singular rows already walked. */
static int walk_child(struct walker *w, const struct msg_kind *k, const struct child *c,
                      const struct mfs_wire_field *f, unsigned depth, uint32_t *seen, void *ctx)
{
	int rc = want_len(w, f, c->name);
	if (rc)
		return rc;
	void *dst = (char *)ctx + c->off;
	union kid_val val;
	size_t mark;
	if (c->many) {
		mark = path_push(w, ".%s[%zu]", c->name, ((struct vec *)dst)->n);
	} else {
		uint32_t bit = 1u << (c - k->children);
		if (*seen & bit)
			return k->twice(w, f, c);
		*seen |= bit;
		mark = path_push(w, ".%s", c->name);
	}
	rc = walk_kid(w, c->kid, f, depth + 1, c->many ? (void *)&val : dst);
	path_pop(w, mark);
	if (!rc && c->many && vec_add(dst, &val, kid_size[c->kid]) < 0)
		rc = nomem(w);
	return rc;
}

/*
 * Step through the fields of the message [start, end) of kind `k`, at
 * `depth`: walk the child fields into `ctx`, copy the rest into `sc`.
 */
static int walk_fields(struct walker *w, const struct msg_kind *k, uint64_t start, uint64_t end,
                       unsigned depth, struct scratch *sc, void *ctx)
{
	uint32_t seen = 0;
	for (uint64_t pos = start; pos < end;) {
		struct mfs_wire_field f;
		enum mfs_wire_err e = mfs_wire_next(&w->src, pos, end, &f);
		if (e)
			return wire_fail(w, e, pos, k->top);
		pos = f.end;
		int rc = k->field ? k->field(w, &f, ctx) : 0;
		if (rc > 0)
			continue;
		if (rc == 0) {
			const struct child *c = find_child(k, f.num);
			rc = c ? walk_child(w, k, c, &f, depth, &seen, ctx) : scratch_add(w, sc, &f);
		}
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Walk into the message field `fld` of kind `k` at `depth`: enter it, step
 * through its fields and unpack what they left in `sc` into *pb.  The caller
 * restores w->cur_msg, and frees `sc` and *pb.
 */
static int walk_msg(struct walker *w, const struct msg_kind *k, const struct mfs_wire_field *fld,
                    unsigned depth, struct scratch *sc, void *ctx, void **pb)
{
	int rc = msg_enter(w, fld, depth);
	if (!rc)
		rc = walk_fields(w, k, fld->val, fld->end, depth, sc, ctx);
	if (!rc)
		rc = unpack(w, k->desc, sc, depth, fld->val, false, pb);
	return rc;
}

/* ------------------------------------------------------------ tensors */

/* The fields of TensorProto that carry element data. */
enum kind { K_RAW, K_FLOAT, K_DOUBLE, K_INT32, K_INT64, K_UINT64, K_STRING, K_N };

static const char *const kind_name[K_N] = {
	"raw_data", "float_data", "double_data", "int32_data", "int64_data", "uint64_data",
	"string_data",
};

static const uint32_t kind_field[K_N] = {9, 4, 10, 5, 7, 11, 6};

/* What pass 1 saw of one data field. */
struct kstat {
	uint64_t fields;        /* occurrences */
	uint64_t runs;          /* length-delimited occurrences */
	uint64_t bytes;         /* their payload bytes */
	uint64_t singles;       /* unpacked occurrences (one element each) */
	uint64_t off, len;      /* raw_data: the last one; others: the first run */
};

static int kind_of_field(uint32_t num)
{
	for (int k = 0; k < K_N; k++)
		if (kind_field[k] == num)
			return k;
	return -1;
}

/* The typed field that holds `dtype`'s elements (onnx.proto, TensorProto). */
static int typed_kind(int32_t dtype)
{
	switch (dtype) {
	case MFS_DT_FLOAT:
	case MFS_DT_COMPLEX64:
		return K_FLOAT;
	case MFS_DT_DOUBLE:
	case MFS_DT_COMPLEX128:
		return K_DOUBLE;
	case MFS_DT_INT64:
		return K_INT64;
	case MFS_DT_UINT32:
	case MFS_DT_UINT64:
		return K_UINT64;
	case MFS_DT_STRING:
		return K_STRING;
	case MFS_DT_INT32: case MFS_DT_INT16: case MFS_DT_INT8: case MFS_DT_UINT16:
	case MFS_DT_UINT8: case MFS_DT_BOOL: case MFS_DT_FLOAT16: case MFS_DT_BFLOAT16:
	case MFS_DT_FLOAT8E4M3FN: case MFS_DT_FLOAT8E4M3FNUZ: case MFS_DT_FLOAT8E5M2:
	case MFS_DT_FLOAT8E5M2FNUZ: case MFS_DT_UINT4: case MFS_DT_INT4: case MFS_DT_FLOAT4E2M1:
	case MFS_DT_FLOAT8E8M0: case MFS_DT_UINT2: case MFS_DT_INT2:
		return K_INT32;
	default:
		return -1;
	}
}

static bool wt_ok(int kind, unsigned wt)
{
	switch (kind) {
	case K_RAW:
	case K_STRING:
		return wt == MFS_WT_LEN;
	case K_FLOAT:
		return wt == MFS_WT_LEN || wt == MFS_WT_I32;
	case K_DOUBLE:
		return wt == MFS_WT_LEN || wt == MFS_WT_I64;
	default:
		return wt == MFS_WT_LEN || wt == MFS_WT_VARINT;
	}
}

/* Reserve `n` bytes of the decoded-data budget. */
static int charge(struct walker *w, uint64_t n, const struct mfs_tensor *t, uint64_t off)
{
	if (n > MFS_MAX_DECODED - w->decoded)
		return fail(w, -EFBIG, off,
		            "tensor '%.200s': decoding typed fields would exceed the limit of %llu "
		            "MiB per model", t->name, (unsigned long long)(MFS_MAX_DECODED >> 20));
	w->decoded += n;
	return 0;
}

static void put_le(uint8_t *p, uint64_t v, unsigned width)
{
	for (unsigned i = 0; i < width; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Decode the varint field `kind` of the tensor at [start, end) into t->mem:
 * `entries` values, each narrowed to `width` little-endian bytes.
 */
static int decode_varints(struct walker *w, uint64_t start, uint64_t end, int kind,
                          const struct kstat *ks, uint64_t entries, unsigned width,
                          struct mfs_tensor *t)
{
	/* Each entry is at least one byte of a packed run, or one unpacked
	 * field: bound the count before allocating anything. */
	if (entries > ks->bytes + ks->singles)
		return fail(w, -EUCLEAN, start,
		            "tensor '%.200s': %s holds at most %" PRIu64 " entries, dims need %" PRIu64,
		            t->name, kind_name[kind], ks->bytes + ks->singles, entries);
	uint64_t nbytes = entries * width;      /* <= file size * 8: no overflow */
	int rc = charge(w, nbytes, t, start);
	if (rc)
		return rc;
	uint8_t *mem = mfs_arena_alloc(w->a, nbytes ? (size_t)nbytes : 1);
	if (!mem)
		return nomem(w);
	uint64_t idx = 0;
	uint64_t pos = start;
	while (pos < end) {
		struct mfs_wire_field f;
		enum mfs_wire_err e = mfs_wire_next(&w->src, pos, end, &f);
		if (e)
			return wire_fail(w, e, pos, false);
		pos = f.end;
		if (f.num != kind_field[kind])
			continue;
		if (f.wt == MFS_WT_VARINT) {
			if (idx == entries)
				goto too_many;
			put_le(mem + idx++ * width, f.u, width);
			continue;
		}
		for (uint64_t p = f.val; p < f.end;) {
			uint64_t v;
			size_t used;
			e = mfs_wire_varint_at(&w->src, p, f.end, &v, &used);
			if (e)
				return wire_fail(w, e, p, false);
			if (idx == entries)
				goto too_many;
			put_le(mem + idx++ * width, v, width);
			p += used;
		}
	}
	if (idx != entries)
		return fail(w, -EUCLEAN, start,
		            "tensor '%.200s': %s has %" PRIu64 " entries, dims need %" PRIu64,
		            t->name, kind_name[kind], idx, entries);
	t->mem = mem;
	t->nbytes = nbytes;
	return 0;
too_many:
	return fail(w, -EUCLEAN, start,
	            "tensor '%.200s': %s has more than the %" PRIu64 " entries dims need",
	            t->name, kind_name[kind], entries);
}

/* float_data/double_data in several runs or unpacked: gather into memory. */
static int decode_fixed(struct walker *w, uint64_t start, uint64_t end, int kind,
                        uint64_t nbytes, unsigned esize, struct mfs_tensor *t)
{
	int rc = charge(w, nbytes, t, start);
	if (rc)
		return rc;
	uint8_t *mem = mfs_arena_alloc(w->a, nbytes ? (size_t)nbytes : 1);
	if (!mem)
		return nomem(w);
	uint64_t o = 0;
	uint64_t pos = start;
	while (pos < end) {
		struct mfs_wire_field f;
		enum mfs_wire_err e = mfs_wire_next(&w->src, pos, end, &f);
		if (e)
			return wire_fail(w, e, pos, false);
		pos = f.end;
		if (f.num != kind_field[kind])
			continue;
		if (f.len % esize || f.len > nbytes - o)    /* pass 1 summed exactly nbytes */
			return fail(w, -EUCLEAN, f.start,
			            "tensor '%.200s': packed %s run of %" PRIu64 " bytes is not a "
			            "multiple of %u", t->name, kind_name[kind], f.len, esize);
		rc = mfs_wire_read(&w->src, mem + o, f.val, (size_t)f.len);
		if (rc < 0)
			return fail(w, rc, f.val, "read error: %s", strerror(-rc));
		o += f.len;
	}
	t->mem = mem;
	t->nbytes = nbytes;
	return 0;
}

/*
 * STRING tensors: each element escaped (doc/design.md §3.5) and followed by
 * '\n', so that an element holding a newline is still one line.  The raw
 * elements are read first (the limit charged for them), then the escaped
 * text, charged for what escaping adds.
 */
static int decode_strings(struct walker *w, uint64_t start, uint64_t end, const struct kstat *ks,
                          struct mfs_tensor *t)
{
	int rc = charge(w, ks->bytes + ks->fields, t, start);
	if (rc)
		return rc;
	uint8_t *raw = malloc(ks->bytes ? (size_t)ks->bytes : 1);
	if (!raw)
		return nomem(w);
	uint64_t o = 0, nbytes = ks->fields;
	uint64_t pos = start;
	while (pos < end) {
		struct mfs_wire_field f;
		enum mfs_wire_err e = mfs_wire_next(&w->src, pos, end, &f);
		if (e) {
			rc = wire_fail(w, e, pos, false);
			goto out;
		}
		pos = f.end;
		if (f.num != kind_field[K_STRING])
			continue;
		rc = mfs_wire_read(&w->src, raw + o, f.val, (size_t)f.len);
		if (rc < 0) {
			rc = fail(w, rc, f.val, "read error: %s", strerror(-rc));
			goto out;
		}
		nbytes += mfs_text_escape(NULL, 0, (const char *)raw + o, (size_t)f.len);
		o += f.len;
	}
	if ((rc = charge(w, nbytes - ks->fields - ks->bytes, t, start)))
		goto out;
	uint8_t *mem = mfs_arena_alloc(w->a, nbytes ? (size_t)nbytes + 1 : 1);
	if (!mem) {
		rc = nomem(w);
		goto out;
	}
	uint64_t r = 0, m = 0;
	for (pos = start; pos < end;) {
		struct mfs_wire_field f;
		mfs_wire_next(&w->src, pos, end, &f);   /* walked above without error */
		pos = f.end;
		if (f.num != kind_field[K_STRING])
			continue;
		m += mfs_text_escape((char *)mem + m, (size_t)(nbytes + 1 - m),
		                     (const char *)raw + r, (size_t)f.len);
		r += f.len;
		mem[m++] = '\n';
	}
	t->mem = mem;
	t->nbytes = nbytes;
out:
	free(raw);
	return rc;
}

/*
 * Decide where the tensor's bytes are, given its small fields (tp) and what
 * pass 1 saw of its data fields.  Exactly one storage applies (doc/formats.md
 * §1.3); anything else is corrupt.
 */
static int tensor_data(struct walker *w, uint64_t start, uint64_t end, const Onnx__TensorProto *tp,
                       const struct kstat ks[K_N], struct mfs_tensor *t)
{
	const char *nm = t->name;
	uint64_t nelem = 1;
	w->storage = MFS_ONNX_EMPTY;
	w->packed_field = 0;
	for (size_t i = 0; i < t->rank; i++)
		if (__builtin_mul_overflow(nelem, (uint64_t)t->dims[i], &nelem))
			return fail(w, -EUCLEAN, start, "tensor '%.200s': dims product overflows",
			            nm);
	unsigned bits = mfs_dtype_bits(t->dtype);
	uint64_t want = UINT64_MAX;     /* bytes dims need, when the dtype has a width */
	if (bits) {
		int rc = mfs_tensor_nbytes(&want, t->dtype, t->dims, t->rank);
		if (rc)
			return fail(w, -EUCLEAN, start, "tensor '%.200s': dims product overflows",
			            nm);
	}

	int present = -1, n_present = 0;
	for (int k = 0; k < K_N; k++) {
		if (!ks[k].fields)
			continue;
		if (n_present++ == 0)
			present = k;
		else if (n_present == 2)
			return fail(w, -EUCLEAN, start, "tensor '%.200s' has both %s and %s", nm,
			            kind_name[present], kind_name[k]);
	}

	if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
		if (n_present)
			return fail(w, -EUCLEAN, start,
			            "tensor '%.200s' is external but also has %s", nm, kind_name[present]);
		if (t->dtype == MFS_DT_STRING)
			return fail(w, -EUCLEAN, start,
			            "tensor '%.200s': string tensors cannot be external", nm);
		if (t->dtype == MFS_DT_UNDEFINED)
			return fail(w, -EUCLEAN, start, "tensor '%.200s' has no data_type", nm);
		w->storage = MFS_ONNX_EXTERNAL;
		return tensor_external(w, tp, t, want, start);
	}

	if (nelem == 0) {
		/* Zero elements: no data allowed, but tolerate an empty field
		 * (for raw_data, the last one is the one that counts). */
		for (int k = 0; k < K_N; k++)
			if ((k == K_RAW ? ks[k].len : ks[k].bytes) || ks[k].singles ||
			    (k == K_STRING && ks[k].fields))
				return fail(w, -EUCLEAN, start,
				            "tensor '%.200s' has no elements but has %s", nm,
				            kind_name[k]);
		t->nbytes = 0;
		return 0;
	}
	if (t->dtype == MFS_DT_UNDEFINED)
		return fail(w, -EUCLEAN, start, "tensor '%.200s' has no data_type", nm);
	if (!n_present)
		return fail(w, -EUCLEAN, start, "tensor '%.200s' (%s, %" PRIu64 " elements) has no data",
		            nm, mfs_dtype_name(t->dtype), nelem);

	if (present == K_RAW) {
		if (t->dtype == MFS_DT_STRING)
			return fail(w, -EUCLEAN, start,
			            "tensor '%.200s': string tensors cannot use raw_data", nm);
		if (want != UINT64_MAX && ks[K_RAW].len != want) {
			char dims[256];
			mfs_dims_format(dims, sizeof(dims), t->dims, t->rank);
			return fail(w, -EUCLEAN, ks[K_RAW].off,
			            "tensor '%.200s': raw_data is %" PRIu64 " bytes, %s[%s] needs %" PRIu64,
			            nm, ks[K_RAW].len, mfs_dtype_name(t->dtype), dims, want);
		}
		/* An unknown (newer) dtype: trust raw_data's length. */
		w->storage = MFS_ONNX_RAW;
		t->src = 0;
		t->off = ks[K_RAW].off;
		t->nbytes = ks[K_RAW].len;
		return 0;
	}

	if (typed_kind(t->dtype) != present)
		return fail(w, -EUCLEAN, start, "tensor '%.200s': %s cannot hold %s elements", nm,
		            kind_name[present], mfs_dtype_name(t->dtype));

	const struct kstat *k = &ks[present];
	switch (present) {
	case K_FLOAT:
	case K_DOUBLE: {
		unsigned esize = present == K_FLOAT ? 4 : 8;
		uint64_t total = k->bytes + k->singles * esize;
		if (total != want)
			return fail(w, -EUCLEAN, start,
			            "tensor '%.200s': %s holds %" PRIu64 " bytes, dims need %" PRIu64,
			            nm, kind_name[present], total, want);
		if (k->runs == 1 && k->singles == 0) {
			/* One packed run is exactly the little-endian array. */
			w->storage = MFS_ONNX_PACKED;
			w->packed_field = (uint8_t)kind_field[present];
			t->src = 0;
			t->off = k->off;
			t->nbytes = k->len;
			return 0;
		}
		w->storage = MFS_ONNX_TYPED;
		return decode_fixed(w, start, end, present, want, esize, t);
	}
	case K_STRING:
		w->storage = MFS_ONNX_STRING;
		if (k->fields != nelem)
			return fail(w, -EUCLEAN, start,
			            "tensor '%.200s': string_data has %" PRIu64 " entries, dims need %"
			            PRIu64, nm, k->fields, nelem);
		return decode_strings(w, start, end, k, t);
	case K_INT64:
		w->storage = MFS_ONNX_TYPED;
		return decode_varints(w, start, end, present, k, nelem, 8, t);
	case K_UINT64:
		w->storage = MFS_ONNX_TYPED;
		return decode_varints(w, start, end, present, k, nelem, bits / 8, t);
	default:        /* K_INT32: sub-byte types hold one packed byte per entry */
		w->storage = MFS_ONNX_TYPED;
		if (bits < 8)
			return decode_varints(w, start, end, present, k, want, 1, t);
		return decode_varints(w, start, end, present, k, nelem, bits / 8, t);
	}
}

/* Pass 1 of a tensor: note where the data fields are (ctx: struct kstat[K_N]);
 * the rest go to the scratch buffer.  A TensorProto has no child fields. */
static int tensor_field(struct walker *w, const struct mfs_wire_field *f, void *ctx)
{
	int k = kind_of_field(f->num);
	if (k < 0)
		return 0;
	if (!wt_ok(k, f->wt))
		return fail(w, -EUCLEAN, f->start, "%s with wire type %u", kind_name[k], f->wt);
	struct kstat *s = &((struct kstat *)ctx)[k];
	s->fields++;
	if (f->wt != MFS_WT_LEN) {
		s->singles++;
		return 1;
	}
	if (k == K_RAW || s->runs == 0) {       /* raw_data: the last one wins */
		s->off = f->val;
		s->len = f->len;
	}
	s->runs++;
	s->bytes += f->len;
	return 1;
}

static const struct msg_kind tensor_kind = {
	.desc = &onnx__tensor_proto__descriptor, .field = tensor_field,
};

static int walk_tensor(struct walker *w, const struct mfs_wire_field *fld, unsigned depth,
                       struct mfs_tensor **out)
{
	struct scratch sc = {0};
	Onnx__TensorProto *tp = NULL;
	struct kstat ks[K_N];
	memset(ks, 0, sizeof(ks));
	uint64_t start = fld->val, end = fld->end;
	int32_t saved_msg = w->cur_msg;
	int rc = walk_msg(w, &tensor_kind, fld, depth, &sc, ks, (void **)&tp);
	if (rc)
		goto out;

	struct mfs_tensor *t = mfs_arena_alloc(w->a, sizeof(*t));
	if (!t) {
		rc = nomem(w);
		goto out;
	}
	rc = name_dup(w, &t->name, tp->name, "tensor name", start);
	if (rc)
		goto out;
	t->dtype = tp->has_data_type ? tp->data_type : MFS_DT_UNDEFINED;
	if (tp->n_dims > MFS_MAX_RANK) {
		rc = fail(w, -EFBIG, start, "tensor '%.200s' has %zu dims (limit %d)", t->name,
		          tp->n_dims, MFS_MAX_RANK);
		goto out;
	}
	t->rank = tp->n_dims;
	t->dims = mfs_arena_array(w->a, t->rank, sizeof(*t->dims));
	if (!t->dims) {
		rc = nomem(w);
		goto out;
	}
	for (size_t i = 0; i < t->rank; i++) {
		if (tp->dims[i] < 0) {
			rc = fail(w, -EUCLEAN, start, "tensor '%.200s' has negative dim %lld", t->name,
			          (long long)tp->dims[i]);
			goto out;
		}
		t->dims[i] = tp->dims[i];
	}
	rc = opt_dup(w, &t->doc_string, tp->doc_string);
	if (rc)
		goto out;
	rc = tensor_data(w, start, end, tp, ks, t);
	if (rc)
		goto out;
	struct mfs_onnx_tspan ts = {
		.msg = (uint32_t)w->cur_msg, .storage = w->storage, .packed_field = w->packed_field,
	};
	/* What the storage allows (model.h): raw_data and a packed run are
	 * bytes of the model file, external data bytes of another file; string
	 * tensors and external data cannot be edited. */
	switch (w->storage) {
	case MFS_ONNX_RAW:
	case MFS_ONNX_PACKED:
		t->flags = MFS_TENSOR_CONTIGUOUS | MFS_TENSOR_EDITABLE;
		break;
	case MFS_ONNX_EXTERNAL:
		t->flags = MFS_TENSOR_CONTIGUOUS;
		break;
	case MFS_ONNX_STRING:
		t->flags = 0;
		break;
	default:                /* empty, or decoded into t->mem */
		t->flags = MFS_TENSOR_EDITABLE;
		break;
	}
	t->id = w->n_tensors;
	if (vec_add(&w->tensors, &t, sizeof(t)) < 0 || vec_add(&w->tspans, &ts, sizeof(ts)) < 0) {
		rc = nomem(w);
		goto out;
	}
	w->n_tensors++;
	*out = t;
out:
	w->cur_msg = saved_msg;
	pb_free(tp);
	scratch_free(&sc);
	return rc;
}

struct sparse_kids {
	struct mfs_tensor *values, *indices;
};

static const struct child sparse_children[] = {
	ONE(1, "values", KID_TENSOR, struct sparse_kids, values),
	ONE(2, "indices", KID_TENSOR, struct sparse_kids, indices),
};

static int sparse_twice(struct walker *w, const struct mfs_wire_field *f, const struct child *c)
{
	return fail(w, -EUCLEAN, f->start, "sparse tensor has two %s fields", c->name);
}

static const struct msg_kind sparse_kind = {
	.desc = &onnx__sparse_tensor_proto__descriptor, KIND_CHILDREN(sparse_children),
	.twice = sparse_twice,
};

static int walk_sparse(struct walker *w, const struct mfs_wire_field *fld, unsigned depth,
                       struct mfs_sparse **out)
{
	struct scratch sc = {0};
	Onnx__SparseTensorProto *sp = NULL;
	struct sparse_kids k = {0};
	uint64_t start = fld->val;
	int32_t saved_msg = w->cur_msg;
	int rc = walk_msg(w, &sparse_kind, fld, depth, &sc, &k, (void **)&sp);
	if (rc)
		goto out;
	struct mfs_tensor *values = k.values, *indices = k.indices;
	if (!values || !indices) {
		rc = fail(w, -EUCLEAN, start, "sparse tensor has no %s",
		          values ? "indices" : "values");
		goto out;
	}
	struct mfs_sparse *s = mfs_arena_alloc(w->a, sizeof(*s));
	if (!s) {
		rc = nomem(w);
		goto out;
	}
	if (sp->n_dims > MFS_MAX_RANK) {
		rc = fail(w, -EFBIG, start, "sparse tensor '%.200s' has %zu dims (limit %d)",
		          values->name, sp->n_dims, MFS_MAX_RANK);
		goto out;
	}
	s->name = values->name;
	s->dtype = values->dtype;
	s->values = values;
	s->indices = indices;
	s->rank = sp->n_dims;
	s->dims = mfs_arena_array(w->a, s->rank, sizeof(*s->dims));
	if (!s->dims) {
		rc = nomem(w);
		goto out;
	}
	for (size_t i = 0; i < s->rank; i++) {
		if (sp->dims[i] < 0) {
			rc = fail(w, -EUCLEAN, start, "sparse tensor '%.200s' has negative dim %lld",
			          s->name, (long long)sp->dims[i]);
			goto out;
		}
		s->dims[i] = sp->dims[i];
	}
	*out = s;
out:
	w->cur_msg = saved_msg;
	pb_free(sp);
	scratch_free(&sc);
	return rc;
}

/* ------------------------------------------------------------ graphs, nodes */

/* Which value an attribute holds when its `type` is missing (IR < 2). */
static int infer_attr_type(const Onnx__AttributeProto *ap, bool t, bool g, size_t n_tensors,
                           size_t n_graphs, bool sp, size_t n_sparse)
{
	struct {
		bool set;
		int type;
	} c[] = {
		{ap->has_f, MFS_ATTR_FLOAT},
		{ap->has_i, MFS_ATTR_INT},
		{ap->has_s, MFS_ATTR_STRING},
		{t, MFS_ATTR_TENSOR},
		{g, MFS_ATTR_GRAPH},
		{ap->n_floats > 0, MFS_ATTR_FLOATS},
		{ap->n_ints > 0, MFS_ATTR_INTS},
		{ap->n_strings > 0, MFS_ATTR_STRINGS},
		{n_tensors > 0, MFS_ATTR_TENSORS},
		{n_graphs > 0, MFS_ATTR_GRAPHS},
		{sp, MFS_ATTR_SPARSE_TENSOR},
		{n_sparse > 0, MFS_ATTR_SPARSE_TENSORS},
		{ap->tp != NULL, MFS_ATTR_TYPE_PROTO},
		{ap->n_type_protos > 0, MFS_ATTR_TYPE_PROTOS},
	};
	int type = MFS_ATTR_UNDEFINED;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		if (!c[i].set)
			continue;
		if (type != MFS_ATTR_UNDEFINED)
			return -1;
		type = c[i].type;
	}
	return type;
}

/* The text of a scalar or list attribute, one value per line. */
static int attr_text(struct walker *w, const Onnx__AttributeProto *ap, struct mfs_attr *at,
                     uint64_t off)
{
	struct mfs_buf b = {0};
	int rc = 0;
	switch (at->type) {
	case MFS_ATTR_FLOAT:
		sb_printf(&b, "%.9g\n", (double)ap->f);
		break;
	case MFS_ATTR_INT:
		sb_printf(&b, "%lld\n", (long long)ap->i);
		break;
	case MFS_ATTR_STRING:
		sb_escaped(&b, (const char *)ap->s.data, ap->has_s ? ap->s.len : 0);
		mfs_buf_add(&b, "\n", 1);
		break;
	case MFS_ATTR_FLOATS:
		for (size_t i = 0; i < ap->n_floats; i++)
			sb_printf(&b, "%.9g\n", (double)ap->floats[i]);
		break;
	case MFS_ATTR_INTS:
		for (size_t i = 0; i < ap->n_ints; i++)
			sb_printf(&b, "%lld\n", (long long)ap->ints[i]);
		break;
	case MFS_ATTR_STRINGS:
		for (size_t i = 0; i < ap->n_strings; i++) {
			sb_escaped(&b, (const char *)ap->strings[i].data, ap->strings[i].len);
			mfs_buf_add(&b, "\n", 1);
		}
		break;
	case MFS_ATTR_TYPE_PROTO:
		rc = type_line(w, &b, ap->tp, off);
		break;
	case MFS_ATTR_TYPE_PROTOS:
		for (size_t i = 0; i < ap->n_type_protos && !rc; i++)
			rc = type_line(w, &b, ap->type_protos[i], off);
		break;
	default:
		break;
	}
	if (rc) {
		free(b.p);
		return rc;
	}
	return sb_finish(w, &b, &at->text, &at->text_len);
}

/* An attribute's values.  A singular one (t, g, sparse_tensor) ends up as
 * the one element of the matching list. */
struct attr_kids {
	struct mfs_tensor *t;
	struct mfs_graph *g;
	struct mfs_sparse *sp;
	struct vec tensors, graphs, sparse;
};

static const struct child attr_children[] = {
	ONE(5, "t", KID_TENSOR, struct attr_kids, t),
	ONE(6, "g", KID_GRAPH, struct attr_kids, g),
	MANY(10, "tensors", KID_TENSOR, struct attr_kids, tensors),
	MANY(11, "graphs", KID_GRAPH, struct attr_kids, graphs),
	ONE(22, "sparse_tensor", KID_SPARSE, struct attr_kids, sp),
	MANY(23, "sparse_tensors", KID_SPARSE, struct attr_kids, sparse),
};

static int attr_twice(struct walker *w, const struct mfs_wire_field *f, const struct child *c)
{
	return fail(w, -EUCLEAN, f->start, "attribute has field %u twice", (unsigned)c->num);
}

static const struct msg_kind attr_kind = {
	.desc = &onnx__attribute_proto__descriptor, KIND_CHILDREN(attr_children),
	.twice = attr_twice,
};

static int walk_attr(struct walker *w, const struct mfs_wire_field *fld, unsigned depth,
                     struct mfs_attr *out)
{
	struct scratch sc = {0};
	Onnx__AttributeProto *ap = NULL;
	struct attr_kids k = {0};
	uint64_t start = fld->val;
	int32_t saved_msg = w->cur_msg;
	memset(out, 0, sizeof(*out));
	int rc = walk_msg(w, &attr_kind, fld, depth, &sc, &k, (void **)&ap);
	if (rc)
		goto out;
	rc = name_dup(w, &out->name, ap->name, "attribute name", start);
	if (rc)
		goto out;
	if (ap->has_type) {
		out->type = (int)ap->type;
	} else {
		out->type = infer_attr_type(ap, k.t, k.g, k.tensors.n, k.graphs.n, k.sp,
		                            k.sparse.n);
		if (out->type < 0) {
			rc = fail(w, -EUCLEAN, start,
			          "attribute '%.200s' has no type and more than one value", out->name);
			goto out;
		}
	}

	/* The walked values must be the one the type names, so that what the
	 * tree shows is exactly what the model means. */
	bool ok = true;
	switch (out->type) {
	case MFS_ATTR_TENSOR:
		ok = k.t && !k.g && !k.sp && !k.tensors.n && !k.graphs.n && !k.sparse.n;
		break;
	case MFS_ATTR_GRAPH:
		ok = k.g && !k.t && !k.sp && !k.tensors.n && !k.graphs.n && !k.sparse.n;
		break;
	case MFS_ATTR_SPARSE_TENSOR:
		ok = k.sp && !k.t && !k.g && !k.tensors.n && !k.graphs.n && !k.sparse.n;
		break;
	case MFS_ATTR_TENSORS:
		ok = !k.t && !k.g && !k.sp && !k.graphs.n && !k.sparse.n;
		break;
	case MFS_ATTR_GRAPHS:
		ok = !k.t && !k.g && !k.sp && !k.tensors.n && !k.sparse.n;
		break;
	case MFS_ATTR_SPARSE_TENSORS:
		ok = !k.t && !k.g && !k.sp && !k.tensors.n && !k.graphs.n;
		break;
	default:
		ok = !k.t && !k.g && !k.sp && !k.tensors.n && !k.graphs.n && !k.sparse.n;
		break;
	}
	if (!ok) {
		rc = fail(w, -EUCLEAN, start,
		          "attribute '%.200s' of type %d does not hold exactly the value its type names",
		          out->name, out->type);
		goto out;
	}
	if (k.t) {
		k.tensors.n = 0;
		if (vec_add(&k.tensors, &k.t, sizeof(k.t)) < 0) {
			rc = nomem(w);
			goto out;
		}
	}
	if (k.g) {
		k.graphs.n = 0;
		if (vec_add(&k.graphs, &k.g, sizeof(k.g)) < 0) {
			rc = nomem(w);
			goto out;
		}
	}
	if (k.sp) {
		k.sparse.n = 0;
		if (vec_add(&k.sparse, &k.sp, sizeof(k.sp)) < 0) {
			rc = nomem(w);
			goto out;
		}
	}
	out->tensors = vec_finish(w, &k.tensors, sizeof(struct mfs_tensor *));
	out->n_tensors = k.tensors.n;
	out->graphs = vec_finish(w, &k.graphs, sizeof(struct mfs_graph *));
	out->n_graphs = k.graphs.n;
	out->sparse = vec_finish(w, &k.sparse, sizeof(struct mfs_sparse *));
	out->n_sparse = k.sparse.n;
	if (!out->tensors || !out->graphs || !out->sparse) {
		rc = nomem(w);
		goto out;
	}
	rc = attr_text(w, ap, out, start);
	if (rc)
		goto out;
	rc = opt_dup(w, &out->ref_attr_name, ap->ref_attr_name);
	if (!rc)
		rc = opt_dup(w, &out->doc_string, ap->doc_string);
out:
	w->cur_msg = saved_msg;
	pb_free(ap);
	scratch_free(&sc);
	free(k.tensors.v);
	free(k.graphs.v);
	free(k.sparse.v);
	return rc;
}

static int conv_strings(struct walker *w, char *const *in, size_t n, char ***out, size_t *n_out,
                        const char *what, uint64_t off)
{
	*out = mfs_arena_array(w->a, n, sizeof(char *));
	if (!*out)
		return nomem(w);
	*n_out = n;
	for (size_t i = 0; i < n; i++) {
		int rc = name_dup(w, &(*out)[i], in[i], what, off);
		if (rc)
			return rc;
	}
	return 0;
}

struct node_kids {
	struct vec attrs;
};

static const struct child node_children[] = {
	MANY(5, "attribute", KID_ATTR, struct node_kids, attrs),
};

static const struct msg_kind node_kind = {
	.desc = &onnx__node_proto__descriptor, KIND_CHILDREN(node_children),
};

static int walk_node(struct walker *w, const struct mfs_wire_field *fld, unsigned depth,
                     struct mfs_node *out)
{
	struct scratch sc = {0};
	Onnx__NodeProto *np = NULL;
	struct node_kids k = {0};
	uint64_t start = fld->val;
	int32_t saved_msg = w->cur_msg;
	memset(out, 0, sizeof(*out));
	int rc = walk_msg(w, &node_kind, fld, depth, &sc, &k, (void **)&np);
	if (rc)
		goto out;
	if ((rc = name_dup(w, &out->op_type, np->op_type, "op_type", start)) ||
	    (rc = name_dup(w, &out->domain, np->domain, "node domain", start)) ||
	    (rc = name_dup(w, &out->name, np->name, "node name", start)) ||
	    (rc = opt_dup(w, &out->doc_string, np->doc_string)) ||
	    (rc = conv_strings(w, np->input, np->n_input, &out->inputs, &out->n_inputs,
	                       "node input name", start)) ||
	    (rc = conv_strings(w, np->output, np->n_output, &out->outputs, &out->n_outputs,
	                       "node output name", start)))
		goto out;
	out->attrs = vec_finish(w, &k.attrs, sizeof(struct mfs_attr));
	if (!out->attrs) {
		rc = nomem(w);
		goto out;
	}
	out->n_attrs = k.attrs.n;
	w->n_nodes++;
out:
	w->cur_msg = saved_msg;
	pb_free(np);
	scratch_free(&sc);
	free(k.attrs.v);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* input_is_init[i]: graph input i names an initializer (dense or sparse). */
static int mark_init_inputs(struct walker *w, struct mfs_graph *g)
{
	g->input_is_init = mfs_arena_array(w->a, g->n_inputs, sizeof(bool));
	if (!g->input_is_init)
		return nomem(w);
	size_t n = g->n_inits + g->n_sparse_inits;
	if (!n || !g->n_inputs)
		return 0;
	char **names = malloc(n * sizeof(char *));
	if (!names)
		return nomem(w);
	for (size_t i = 0; i < g->n_inits; i++)
		names[i] = g->inits[i]->name;
	for (size_t i = 0; i < g->n_sparse_inits; i++)
		names[g->n_inits + i] = g->sparse_inits[i]->name;
	qsort(names, n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < g->n_inputs; i++) {
		char *key = g->inputs[i].name;
		g->input_is_init[i] = bsearch(&key, names, n, sizeof(char *), cmp_str) != NULL;
	}
	free(names);
	return 0;
}

struct graph_kids {
	struct vec nodes, inits, sparse;
	bool main_graph;        /* ModelProto.graph: note its name field */
	bool ins_found;
};

static const struct child graph_children[] = {
	MANY(1, "node", KID_NODE, struct graph_kids, nodes),
	MANY(5, "initializer", KID_TENSOR, struct graph_kids, inits),
	MANY(15, "sparse_initializer", KID_SPARSE, struct graph_kids, sparse),
};

/* The main graph's name field, for the splice writer; every field goes on
 * to the table. */
static int graph_field(struct walker *w, const struct mfs_wire_field *f, void *ctx)
{
	struct graph_kids *k = ctx;
	if (k->main_graph && f->num == 2) {
		/* The name the meta/graph_name file edits: the last one
		 * counts, as protobuf parses a repeated singular field. */
		w->has_gname = true;
		w->gname_tag = f->start;
		w->gname_end = f->end;
	} else if (k->main_graph && f->num > 2 && !k->ins_found) {
		w->gname_ins = f->start;
		k->ins_found = true;
	}
	return 0;
}

static const struct msg_kind graph_kind = {
	.desc = &onnx__graph_proto__descriptor, KIND_CHILDREN(graph_children),
	.field = graph_field,
};

static int walk_graph(struct walker *w, const struct mfs_wire_field *fld, unsigned depth,
                      bool main_graph, struct mfs_graph **out)
{
	struct scratch sc = {0};
	Onnx__GraphProto *gp = NULL;
	struct graph_kids k = {.main_graph = main_graph};
	uint64_t start = fld->val;
	int32_t saved_msg = w->cur_msg;
	if (main_graph)
		w->gname_ins = fld->end;        /* until graph_field() finds a field above 2 */
	int rc = walk_msg(w, &graph_kind, fld, depth, &sc, &k, (void **)&gp);
	if (rc)
		goto out;
	if (main_graph)
		w->graph_msg = w->cur_msg;      /* its own: each child restored it */
	struct mfs_graph *g = mfs_arena_alloc(w->a, sizeof(*g));
	if (!g) {
		rc = nomem(w);
		goto out;
	}
	if ((rc = name_dup(w, &g->name, gp->name, "graph name", start)) ||
	    (rc = opt_dup(w, &g->doc_string, gp->doc_string)) ||
	    (rc = conv_values(w, gp->input, gp->n_input, &g->inputs, &g->n_inputs, start)) ||
	    (rc = conv_values(w, gp->output, gp->n_output, &g->outputs, &g->n_outputs, start)) ||
	    (rc = conv_values(w, gp->value_info, gp->n_value_info, &g->values, &g->n_values,
	                      start)))
		goto out;
	g->nodes = vec_finish(w, &k.nodes, sizeof(struct mfs_node));
	g->n_nodes = k.nodes.n;
	g->inits = vec_finish(w, &k.inits, sizeof(struct mfs_tensor *));
	g->n_inits = k.inits.n;
	g->sparse_inits = vec_finish(w, &k.sparse, sizeof(struct mfs_sparse *));
	g->n_sparse_inits = k.sparse.n;
	if (!g->nodes || !g->inits || !g->sparse_inits) {
		rc = nomem(w);
		goto out;
	}
	rc = mark_init_inputs(w, g);
	if (rc)
		goto out;
	*out = g;
out:
	w->cur_msg = saved_msg;
	pb_free(gp);
	scratch_free(&sc);
	free(k.nodes.v);
	free(k.inits.v);
	free(k.sparse.v);
	return rc;
}

/* ------------------------------------------------------------ functions, training */

struct function_kids {
	struct vec nodes, defaults;
};

static const struct child function_children[] = {
	MANY(7, "node", KID_NODE, struct function_kids, nodes),
	/* attribute_proto (IR 9): not in the 1.12 schema, so it must be
	 * walked here or protobuf-c would skip it. */
	MANY(11, "attribute_proto", KID_ATTR, struct function_kids, defaults),
};

static const struct msg_kind function_kind = {
	.desc = &onnx__function_proto__descriptor, KIND_CHILDREN(function_children),
};

static int walk_function(struct walker *w, const struct mfs_wire_field *fld, unsigned depth,
                         struct mfs_function *out)
{
	struct scratch sc = {0};
	Onnx__FunctionProto *fp = NULL;
	struct function_kids k = {0};
	struct mfs_buf b = {0};
	uint64_t start = fld->val;
	int32_t saved_msg = w->cur_msg;
	memset(out, 0, sizeof(*out));
	int rc = walk_msg(w, &function_kind, fld, depth, &sc, &k, (void **)&fp);
	if (rc)
		goto out;
	if ((rc = name_dup(w, &out->name, fp->name, "function name", start)) ||
	    (rc = name_dup(w, &out->domain, fp->domain, "function domain", start)) ||
	    (rc = opt_dup(w, &out->doc_string, fp->doc_string)) ||
	    (rc = conv_strings(w, fp->input, fp->n_input, &out->inputs, &out->n_inputs,
	                       "function input name", start)) ||
	    (rc = conv_strings(w, fp->output, fp->n_output, &out->outputs, &out->n_outputs,
	                       "function output name", start)) ||
	    (rc = conv_strings(w, fp->attribute, fp->n_attribute, &out->attributes,
	                       &out->n_attributes, "function attribute name", start)))
		goto out;
	out->nodes = vec_finish(w, &k.nodes, sizeof(struct mfs_node));
	out->n_nodes = k.nodes.n;
	out->attr_defaults = vec_finish(w, &k.defaults, sizeof(struct mfs_attr));
	out->n_attr_defaults = k.defaults.n;
	if (!out->nodes || !out->attr_defaults) {
		rc = nomem(w);
		goto out;
	}
	opset_lines(&b, fp->opset_import, fp->n_opset_import);
	rc = sb_finish(w, &b, &out->opset_text, &out->opset_len);
out:
	w->cur_msg = saved_msg;
	free(b.p);
	pb_free(fp);
	scratch_free(&sc);
	free(k.nodes.v);
	free(k.defaults.v);
	return rc;
}

/* The graphs go straight to the struct mfs_training. */
static const struct child training_children[] = {
	ONE(1, "initialization", KID_GRAPH, struct mfs_training, initialization),
	ONE(2, "algorithm", KID_GRAPH, struct mfs_training, algorithm),
};

static int training_twice(struct walker *w, const struct mfs_wire_field *f, const struct child *c)
{
	return fail(w, -EUCLEAN, f->start, "training_info has two %s graphs", c->name);
}

static const struct msg_kind training_kind = {
	.desc = &onnx__training_info_proto__descriptor, KIND_CHILDREN(training_children),
	.twice = training_twice,
};

static int walk_training(struct walker *w, const struct mfs_wire_field *fld, unsigned depth,
                         struct mfs_training *out)
{
	struct scratch sc = {0};
	Onnx__TrainingInfoProto *tp = NULL;
	int32_t saved_msg = w->cur_msg;
	memset(out, 0, sizeof(*out));
	/* Only the bindings are left for protobuf-c; decoding them validates
	 * the message. */
	int rc = walk_msg(w, &training_kind, fld, depth, &sc, out, (void **)&tp);
	w->cur_msg = saved_msg;
	pb_free(tp);
	scratch_free(&sc);
	return rc;
}

static int walk_kid(struct walker *w, enum kid kid, const struct mfs_wire_field *f,
                    unsigned depth, void *out)
{
	switch (kid) {
	case KID_TENSOR:
		return walk_tensor(w, f, depth, out);
	case KID_SPARSE:
		return walk_sparse(w, f, depth, out);
	case KID_GRAPH:
		return walk_graph(w, f, depth, false, out);
	case KID_MAIN_GRAPH:
		return walk_graph(w, f, depth, true, out);
	case KID_NODE:
		return walk_node(w, f, depth, out);
	case KID_ATTR:
		return walk_attr(w, f, depth, out);
	case KID_FUNCTION:
		return walk_function(w, f, depth, out);
	case KID_TRAINING:
		return walk_training(w, f, depth, out);
	}
	__builtin_unreachable();
}

/* ------------------------------------------------------------ model */

static int add_meta(struct walker *w, struct vec *meta, const char *name, const char *value,
                    size_t len)
{
	struct mfs_meta mt;
	mt.name = mfs_arena_strdup(w->a, name);
	mt.value = mfs_arena_alloc(w->a, len + 2);
	if (!mt.name || !mt.value)
		return nomem(w);
	memcpy(mt.value, value, len);
	mt.value[len] = '\n';
	mt.len = len + 1;
	return vec_add(meta, &mt, sizeof(mt)) < 0 ? nomem(w) : 0;
}

/* A meta/ file of one string of the model: escaped (doc/design.md §3.5). */
static int add_meta_str(struct walker *w, struct vec *meta, const char *name, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (!s || mfs_text_plain(s, n))
		return add_meta(w, meta, name, s ? s : "", n);
	size_t need = mfs_text_escape(NULL, 0, s, n);
	char *e = malloc(need + 1);
	if (!e)
		return nomem(w);
	mfs_text_escape(e, need + 1, s, n);
	int rc = add_meta(w, meta, name, e, need);
	free(e);
	return rc;
}

static int add_meta_shape(struct walker *w, struct vec *meta, const char *name,
                          const struct mfs_value *v)
{
	if (!v)
		return add_meta(w, meta, name, "", 0);
	size_t need = mfs_shape_format(NULL, 0, &v->shape);
	char *s = malloc(need + 1);
	if (!s)
		return nomem(w);
	mfs_shape_format(s, need + 1, &v->shape);
	int rc = add_meta(w, meta, name, s, need);
	free(s);
	return rc;
}

/* The meta/ files, in display order (doc/design.md §3.1). */
static int build_meta(struct walker *w, const Onnx__ModelProto *mp, const struct mfs_graph *g)
{
	struct mfs_desc *d = &w->m->desc;
	struct vec meta = {0};
	struct mfs_buf b = {0};
	char num[32];
	int rc;
	if ((rc = add_meta_str(w, &meta, "format", "onnx")))
		goto out;
	snprintf(num, sizeof(num), "%lld", (long long)mp->ir_version);
	if ((rc = add_meta_str(w, &meta, "ir_version", mp->has_ir_version ? num : NULL)))
		goto out;
	opset_lines(&b, mp->opset_import, mp->n_opset_import);
	if (b.oom) {
		rc = nomem(w);
		goto out;
	}
	/* add_meta() appends the newline the last line already has. */
	if ((rc = add_meta(w, &meta, "opset", b.p ? b.p : "", b.len ? b.len - 1 : 0)))
		goto out;
	if ((rc = add_meta_str(w, &meta, "producer_name", mp->producer_name)) ||
	    (rc = add_meta_str(w, &meta, "producer_version", mp->producer_version)) ||
	    (rc = add_meta_str(w, &meta, "domain", mp->domain)))
		goto out;
	snprintf(num, sizeof(num), "%lld", (long long)mp->model_version);
	if ((rc = add_meta_str(w, &meta, "model_version", mp->has_model_version ? num : NULL)) ||
	    (rc = add_meta_str(w, &meta, "doc_string", mp->doc_string)) ||
	    (rc = add_meta_str(w, &meta, "graph_name", g->name)))
		goto out;
	const struct mfs_value *in = NULL;
	for (size_t i = 0; i < g->n_inputs && !in; i++)
		if (!g->input_is_init[i])
			in = &g->inputs[i];
	if ((rc = add_meta_shape(w, &meta, "input_shape", in)) ||
	    (rc = add_meta_shape(w, &meta, "output_shape", g->n_outputs ? &g->outputs[0] : NULL)))
		goto out;
	d->meta = vec_finish(w, &meta, sizeof(struct mfs_meta));
	d->n_meta = meta.n;
	if (!d->meta) {
		rc = nomem(w);
		goto out;
	}

	d->props = mfs_arena_array(w->a, mp->n_metadata_props, sizeof(struct mfs_meta));
	if (!d->props) {
		rc = nomem(w);
		goto out;
	}
	for (size_t i = 0; i < mp->n_metadata_props; i++) {
		struct mfs_meta *p = &d->props[i];
		if ((rc = name_dup(w, &p->name, mp->metadata_props[i]->key, "metadata_props key", 0)))
			goto out;
		p->value = adup(w, mp->metadata_props[i]->value);
		if (!p->value) {
			rc = nomem(w);
			goto out;
		}
		p->len = strlen(p->value);
	}
	d->n_props = mp->n_metadata_props;
out:
	free(b.p);
	free(meta.v);
	return rc;
}

/* ModelProto fields and their wire types, to tell a model from garbage. */
static bool model_field_ok(uint32_t num, unsigned wt)
{
	switch (num) {
	case 1:
	case 5:
		return wt == MFS_WT_VARINT;
	case 2: case 3: case 4: case 6: case 7: case 8: case 14: case 20: case 25: case 26:
		return wt == MFS_WT_LEN;
	default:
		return false;
	}
}

struct model_kids {
	struct mfs_graph *graph;
	struct vec training, funcs;
};

static const struct child model_children[] = {
	ONE(7, "graph", KID_MAIN_GRAPH, struct model_kids, graph),
	MANY(20, "training_info", KID_TRAINING, struct model_kids, training),
	MANY(25, "functions", KID_FUNCTION, struct model_kids, funcs),
};

/* Every ModelProto field, for the splice writer; the first one must be a
 * ModelProto field, or the file is very likely not a model at all. */
static int model_field(struct walker *w, const struct mfs_wire_field *f, void *ctx)
{
	(void)ctx;
	if (!w->top_ok && !model_field_ok(f->num, f->wt))
		return mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
		                "field %u with wire type %u at offset %" PRIu64 " is not a "
		                "ModelProto field", f->num, f->wt, f->start);
	w->top_ok = true;
	if (f->num == 1 && f->wt == MFS_WT_VARINT)
		w->is_onnx = true;
	struct mfs_onnx_field tf = {f->num, f->start, f->end};
	return vec_add(&w->top, &tf, sizeof(tf)) < 0 ? nomem(w) : 0;
}

static int model_twice(struct walker *w, const struct mfs_wire_field *f, const struct child *c)
{
	return fail(w, -EUCLEAN, f->start, "model has two %s fields", c->name);
}

static const struct msg_kind model_kind = {
	.desc = &onnx__model_proto__descriptor, KIND_CHILDREN(model_children), .top = true,
	.field = model_field, .twice = model_twice,
};

static int walk_model(struct walker *w)
{
	struct mfs_desc *d = &w->m->desc;
	struct scratch sc = {0};
	Onnx__ModelProto *mp = NULL;
	struct model_kids k = {0};
	/* The ModelProto is the whole file, at depth 0. */
	int rc = walk_fields(w, &model_kind, 0, w->src.size, 0, &sc, &k);
	if (rc)
		goto out;
	rc = unpack(w, model_kind.desc, &sc, 0, 0, true, (void **)&mp);
	if (rc)
		goto out;
	if (!k.graph) {
		rc = mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
		              "not a usable ONNX model: no graph (ModelProto.graph is missing)");
		goto out;
	}
	d->graph = k.graph;
	d->functions = vec_finish(w, &k.funcs, sizeof(struct mfs_function));
	d->n_functions = k.funcs.n;
	d->training = vec_finish(w, &k.training, sizeof(struct mfs_training));
	d->n_training = k.training.n;
	if (!d->functions || !d->training) {
		rc = nomem(w);
		goto out;
	}
	rc = build_meta(w, mp, k.graph);
out:
	pb_free(mp);
	scratch_free(&sc);
	free(k.funcs.v);
	free(k.training.v);
	return rc;
}

/* Move what the walk recorded for the splice writer into the arena. */
static int finish_layout(struct walker *w)
{
	struct mfs_onnx_layout *l = mfs_arena_alloc(w->a, sizeof(*l));
	if (!l)
		return nomem(w);
	l->msgs = vec_finish(w, &w->msgs, sizeof(struct mfs_onnx_msg));
	l->n_msgs = w->msgs.n;
	l->tspans = vec_finish(w, &w->tspans, sizeof(struct mfs_onnx_tspan));
	l->top = vec_finish(w, &w->top, sizeof(struct mfs_onnx_field));
	l->n_top = w->top.n;
	l->graph_msg = w->graph_msg;
	l->has_gname = w->has_gname;
	l->gname_tag = w->gname_tag;
	l->gname_end = w->gname_end;
	l->gname_ins = w->gname_ins;
	struct mfs_tensor **tensors = vec_finish(w, &w->tensors, sizeof(struct mfs_tensor *));
	if (!l->msgs || !l->tspans || !l->top || !tensors)
		return nomem(w);
	w->m->priv = l;
	w->m->desc.tensors = tensors;
	return 0;
}

/*
 * An ONNX file is one ModelProto and has no magic number: it is recognised
 * by its first field being one a ModelProto has, with the right wire type.
 * Anything else may still be meant as ONNX (nothing else claims it), so the
 * answer is MAYBE, and the reader then says what is wrong with it.
 */
int mfs_onnx_sniff(const uint8_t *head, size_t len, uint64_t size)
{
	(void)size;
	struct mfs_wire_src src;
	uint64_t key;
	size_t used;
	mfs_wire_src_mem(&src, head, len);
	if (mfs_wire_varint_at(&src, 0, len, &key, &used) == MFS_WIRE_OK &&
	    model_field_ok((uint32_t)(key >> 3), (unsigned)(key & 7)))
		return MFS_SNIFF_YES;
	return MFS_SNIFF_MAYBE;
}

/*
 * A protobuf has no magic number, so ONNX is the format tried when no other
 * recognises a file (format.c), and its reader is the one that says what is
 * wrong.  Until the walk has seen the ModelProto's ir_version (which every
 * ONNX writer puts first), what it found wrong says more about the file
 * not being ONNX at all (/etc/passwd: "bad protobuf tag ... at offset 113")
 * than about a broken model: say so first, and the detail after.
 */
static void not_a_model(char *err, size_t errlen, const char *display)
{
	if (!err || !errlen)
		return;
	char detail[1024];
	size_t dl = strlen(display);
	const char *d = !strncmp(err, display, dl) && !strncmp(err + dl, ": ", 2) ? err + dl + 2 : err;
	snprintf(detail, sizeof(detail), "%s", d);
	mfs_errf(err, errlen, -EUCLEAN, display, "not a model of any known format (read as ONNX: %s)",
	         detail);
}

int mfs_onnx_open(struct mfs_model *m, const char *display, char *err, size_t errlen)
{
	uint64_t size = m->desc.files[0].size;
	struct mfs_source *src = m->srcs[0];
	if (size > MFS_MAX_ONNX_FILE)
		return mfs_errf(err, errlen, -EFBIG, display,
		                "ONNX model file is %" PRIu64 " bytes, over protobuf's limit of 2 GiB - 1 "
		                "(large models must use external data)", size);
	struct walker *w = calloc(1, sizeof(*w));
	if (!w)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	w->m = m;
	w->a = m->arena;
	w->display = display;
	w->err = err;
	w->errlen = errlen;
	mfs_wire_src_file(&w->src, src, size, w->win);
	w->cur_msg = -1;
	w->graph_msg = -1;

	/* The walk hops from message to message; readahead would pull in the
	 * tensor payloads we are skipping. */
	mfs_source_advise_random(src, true);
	int rc = walk_model(w);
	mfs_source_advise_random(src, false);
	if ((rc == -EUCLEAN || rc == -EFBIG) && !w->is_onnx)
		not_a_model(err, errlen, display);
	if (rc == 0)
		rc = finish_layout(w);
	if (rc == 0) {
		m->desc.n_tensors = w->n_tensors;
		m->desc.n_nodes = w->n_nodes;
	}
	ext_free(w);
	free(w->msgs.v);
	free(w->tensors.v);
	free(w->tspans.v);
	free(w->top.v);
	free(w);
	return rc;
}

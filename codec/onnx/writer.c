/*
 * codec/onnx/writer.c — the ONNX splice writer: a new model file as the old
 * file's bytes with the edited parts re-encoded.
 *
 * Called by the transaction (through format.h) with the effective edits; returns the
 * new file as a piece list and writes nothing.  Protobuf-c never sees a
 * message here: re-encoding the whole model would canonicalize it (field
 * order, packing, varint widths; doc/formats.md §1.8) and copy every payload
 * through memory.  Instead only the fields an edit touches are written anew
 * and everything else is copied as it was, byte for byte.
 *
 * HOW IT WORKS
 *
 * The reader (reader.c) recorded, for every message it walked into, its span
 * (key, length prefix, value) and its parent, so each tensor has a chain of
 * messages up to the ModelProto (struct mfs_onnx_layout).  An edit becomes
 * one or more *ops*: "in message M, replace bytes [a, b) of the old file
 * with these pieces" (a == b inserts, an empty body deletes):
 *
 *   same-size data          the payload bytes that differ (or all of them)
 *   dims / data_type        the first such field replaced by the new
 *                           encoding, later ones deleted; inserted at its
 *                           canonical place when there was none
 *   data re-encoded         raw_data (or the one packed float_data /
 *                           double_data run, when it can hold the new dtype)
 *                           gets a new payload and length; typed storage is
 *                           deleted and raw_data inserted after `name`
 *   meta, graph_name        the last occurrence replaced, or inserted
 *   metadata_props          entries replaced or deleted in place, new ones
 *                           after the last existing entry
 *   value renamed           every string field of the old name (node inputs
 *                           and outputs, graph values, in the main graph and
 *                           its subgraphs; an initializer's name) replaced,
 *                           one walk for all renames of the commit
 *   initializer deleted     its TensorProto, and the graph input and
 *                           value_info entries of its name, deleted whole
 *   initializer added       a TensorProto (dims, data_type, name, raw_data)
 *                           inserted after the graph's last initializer
 *
 * Every message that holds an op, and every ancestor of one, is *dirty*.
 * Ops and dirty messages are sorted by file offset into one list, which is
 * then emitted depth first: a message's value is its old bytes with its
 * ops applied and its dirty children emitted recursively; a dirty child is
 * written as its old key, a new length prefix (its old bytes when the
 * length did not change) and its emitted value.  Lengths are known
 * bottom-up because a child is emitted before its prefix is written.
 *
 * "Canonical place" for a field numbered N: before the first field of the
 * message numbered above N that is kept, else at the message's end, so a
 * canonical file (all 1,072 test models) stays canonical.
 *
 * INVARIANTS
 *  1. Bytes outside every op and every changed length prefix are copied from
 *     the old file unchanged, in order.  With no ops the piece list is one
 *     copy of the whole file: a commit with no effective change is
 *     byte-identical (and txn.c does not even commit it).
 *  2. A length prefix on the path to the root is rewritten only when the
 *     length it states changes, and then minimally; the keys on that path
 *     are copied as they were.  Only fields an edit replaces are encoded
 *     anew (canonically: minimal varints, dims unpacked).
 *  3. Ops never overlap one another or a dirty message's span, except that
 *     an insertion may sit at the edge of one: at one offset, items of a
 *     deeper message come first, then ops, then a child message, then by
 *     field number.  So the sort order is the output order.
 *  4. A tensor's fields other than dims, data_type and its data fields keep
 *     their bytes and their order.
 *  5. The result is at most MFS_MAX_ONNX_FILE bytes (protobuf's 2 GiB), or
 *     the writer fails with -EFBIG and nothing is written.
 *  6. Tensors whose data lives elsewhere (external data) or is not bytes
 *     (strings) are never re-encoded: -EACCES.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx.h"
#include "onnx/wire.h"

/* TensorProto and ModelProto field numbers this file writes. */
#define T_DIMS          1
#define T_DATA_TYPE     2
#define T_RAW_DATA      9
#define M_MODEL_VERSION 5
#define M_PROPS         14
#define G_NAME          2

/* An edit: in message `msg`, the old bytes [a, b) become `body`. */
struct op {
	int32_t msg;            /* -1 = the ModelProto */
	uint32_t level;         /* depth of msg + 1 */
	uint32_t order;         /* field number: orders insertions at one offset */
	bool del;               /* a pure deletion (merged with an adjacent one) */
	uint64_t a, b;
	struct mfs_splice body;
};

/* One element of the emit order: an op, or a dirty message. */
struct item {
	uint64_t pos;
	uint32_t level;
	uint8_t is_msg;
	uint32_t order;
	size_t seq;
	int32_t idx;            /* into ops or layout msgs */
};

struct ctx {
	const struct mfs_model *m;
	const struct mfs_onnx_layout *l;
	struct mfs_source *src;
	uint64_t size;
	struct op *ops;
	size_t n_ops, cap_ops;
	struct item *items;
	size_t n_items;
	char *err;
	size_t errlen;
	uint8_t win[MFS_WIRE_WINDOW];
};

static uint32_t msg_level(const struct ctx *c, int32_t msg)
{
	return msg < 0 ? 1 : c->l->msgs[msg].depth + 1;
}

/* A new op; its body is empty.  NULL when out of memory. */
static struct op *op_new(struct ctx *c, int32_t msg, uint64_t a, uint64_t b, uint32_t order)
{
	if (c->n_ops == c->cap_ops) {
		size_t cap = c->cap_ops ? c->cap_ops * 2 : 16;
		struct op *o = reallocarray(c->ops, cap, sizeof(*o));
		if (!o)
			return NULL;
		c->ops = o;
		c->cap_ops = cap;
	}
	struct op *o = &c->ops[c->n_ops++];
	memset(o, 0, sizeof(*o));
	o->msg = msg;
	o->level = msg_level(c, msg);
	o->order = order;
	o->a = a;
	o->b = b;
	return o;
}

/*
 * Delete [a, b) of message `msg`.  With `merge`, a deletion that ends at a
 * grows instead (thousands of unpacked typed fields make one op); only
 * where no insertion can fall between the two (inside one tensor, whose
 * insertions go before kept fields).
 */
static int op_delete(struct ctx *c, int32_t msg, uint64_t a, uint64_t b, uint32_t order,
                     bool merge)
{
	struct op *last = c->n_ops ? &c->ops[c->n_ops - 1] : NULL;
	if (merge && last && last->del && last->msg == msg && last->b == a) {
		last->b = b;
		return 0;
	}
	struct op *o = op_new(c, msg, a, b, order);
	if (!o)
		return -ENOMEM;
	o->del = true;
	return 0;
}

/* A field's key and length prefix into `buf` (20 bytes); returns the length. */
/* A protobuf varint into `out` (10 bytes of room); returns its length. */
static size_t varint_put(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}


static size_t put_len_key(uint8_t *buf, uint32_t num, uint64_t len)
{
	size_t n = varint_put(buf, (uint64_t)num << 3 | 2);
	return n + varint_put(buf + n, len);
}

/* Append a length-delimited field holding `len` bytes of `s`. */
static void put_bytes_field(struct mfs_splice *s, uint32_t num, const void *p, size_t len)
{
	uint8_t hdr[20];
	mfs_splice_bytes(s, hdr, put_len_key(hdr, num, len));
	mfs_splice_bytes(s, p, len);
}

static void put_varint_field(struct mfs_splice *s, uint32_t num, uint64_t v)
{
	uint8_t buf[20];
	size_t n = varint_put(buf, (uint64_t)num << 3);
	n += varint_put(buf + n, v);
	mfs_splice_bytes(s, buf, n);
}

static int fail(struct ctx *c, int rc, const char *fmt, const char *arg)
{
	return mfs_errf(c->err, c->errlen, rc, c->m->desc.files[0].path, fmt, arg);
}

/* ------------------------------------------------------------ tensors */

enum data_mode {
	DATA_KEEP,              /* data fields untouched */
	DATA_HOLDER,            /* the field holding the bytes gets a new payload */
	DATA_CONVERT,           /* all data fields deleted, raw_data inserted */
	DATA_DROP,              /* all data fields deleted (no elements) */
};

static bool is_data_field(uint32_t num)
{
	return num == 4 || num == 5 || num == 6 || num == 7 || num == 9 || num == 10 || num == 11;
}

/* float_data holds FLOAT and COMPLEX64, double_data DOUBLE and COMPLEX128. */
static bool packed_holds(unsigned field, int32_t dtype)
{
	if (field == 4)
		return dtype == MFS_DT_FLOAT || dtype == MFS_DT_COMPLEX64;
	return dtype == MFS_DT_DOUBLE || dtype == MFS_DT_COMPLEX128;
}

/* The tensor's new bytes, from the stage or else as they are. */
static void put_data(struct ctx *c, struct mfs_splice *s, const struct mfs_tensor_edit *te)
{
	const struct mfs_tensor *t = te->t;
	if (te->data_changed)
		mfs_splice_fn(s, te->read, te->arg, 0, te->size);
	else if (t->mem)
		mfs_splice_ref(s, t->mem, (size_t)t->nbytes);
	else
		mfs_source_splice(s, c->src, t->off, t->nbytes);
}

/* A same-size edit of bytes that lie in the file: patch the payload only. */
static int payload_ops(struct ctx *c, const struct mfs_tensor_edit *te, int32_t msg)
{
	const struct mfs_tensor *t = te->t;
	if (!te->runs) {
		struct op *o = op_new(c, msg, t->off, t->off + t->nbytes, T_RAW_DATA);
		if (!o)
			return -ENOMEM;
		mfs_splice_fn(&o->body, te->read, te->arg, 0, te->size);
		return o->body.err;
	}
	for (size_t i = 0; i < te->n_runs; i++) {
		const struct mfs_run *r = &te->runs[i];
		uint64_t a = t->off + r->off;
		struct op *o = op_new(c, msg, a, a + r->len, T_RAW_DATA);
		if (!o)
			return -ENOMEM;
		mfs_splice_fn(&o->body, te->read, te->arg, r->off, r->len);
		if (o->body.err)
			return o->body.err;
	}
	return 0;
}

static int tensor_ops(struct ctx *c, const struct mfs_tensor_edit *te)
{
	const struct mfs_tensor *t = te->t;
	const struct mfs_onnx_tspan *ts = &c->l->tspans[t->id];
	const struct mfs_onnx_msg *mm = &c->l->msgs[ts->msg];
	int32_t msg = (int32_t)ts->msg;

	if (ts->storage == MFS_ONNX_EXTERNAL || ts->storage == MFS_ONNX_STRING)
		return fail(c, -EACCES, "tensor '%.200s': external and string tensors cannot be "
		            "edited", t->name);
	bool in_file = ts->storage == MFS_ONNX_RAW || ts->storage == MFS_ONNX_PACKED;
	if (!te->dtype_changed && !te->dims_changed && te->size == t->nbytes && in_file)
		return te->data_changed ? payload_ops(c, te, msg) : 0;

	/* The field that holds the bytes can keep them (raw_data always; a
	 * packed run when it can hold the new dtype); typed fields are
	 * rewritten as raw_data when the bytes or their meaning change. */
	bool holds = ts->storage == MFS_ONNX_RAW ||
	             (ts->storage == MFS_ONNX_PACKED && packed_holds(ts->packed_field, te->dtype));
	bool need = te->data_changed ||
	            (te->dtype_changed && (ts->storage == MFS_ONNX_TYPED ||
	                                   (ts->storage == MFS_ONNX_PACKED && !holds)));
	enum data_mode mode = !need ? DATA_KEEP : te->size == 0 ? DATA_DROP :
	                      holds ? DATA_HOLDER : DATA_CONVERT;

	/* One pass over the tensor's fields: replace, delete, and note where
	 * absent fields would go (before the first kept field numbered
	 * above theirs). */
	struct mfs_wire_src src;
	mfs_wire_src_file(&src, c->src, c->size, c->win);
	uint64_t ins_dims = mm->end, ins_type = mm->end, ins_raw = mm->end;
	bool seen_dims = false, seen_type = false, seen_holder = false;
	int rc;
	for (uint64_t pos = mm->val; pos < mm->end;) {
		struct mfs_wire_field f;
		enum mfs_wire_err e = mfs_wire_next(&src, pos, mm->end, &f);
		if (e)
			return mfs_errf(c->err, c->errlen, e == MFS_WIRE_IO ? -EIO : -EUCLEAN,
			                c->m->desc.files[0].path,
			                "tensor '%.200s' changed under us: %s", t->name,
			                mfs_wire_strerror(e));
		pos = f.end;
		bool del = false;
		struct op *o;
		if (f.num == T_DIMS && te->dims_changed) {
			if (seen_dims) {
				del = true;
			} else {
				/* The whole new list where the first dim was. */
				if (!(o = op_new(c, msg, f.start, f.end, T_DIMS)))
					return -ENOMEM;
				for (size_t i = 0; i < te->rank; i++)
					put_varint_field(&o->body, T_DIMS, (uint64_t)te->dims[i]);
				seen_dims = true;
			}
		} else if (f.num == T_DATA_TYPE && te->dtype_changed) {
			if (seen_type) {
				del = true;
			} else {
				if (!(o = op_new(c, msg, f.start, f.end, T_DATA_TYPE)))
					return -ENOMEM;
				put_varint_field(&o->body, T_DATA_TYPE, (uint64_t)te->dtype);
				seen_type = true;
			}
		} else if (is_data_field(f.num) && mode != DATA_KEEP) {
			bool holder = mode == DATA_HOLDER && f.wt == MFS_WT_LEN &&
			              f.val == t->off &&
			              (f.num == T_RAW_DATA ? ts->storage == MFS_ONNX_RAW :
			               f.num == ts->packed_field);
			if (holder) {
				if (!(o = op_new(c, msg, f.start, f.end, f.num)))
					return -ENOMEM;
				uint8_t hdr[20];
				mfs_splice_bytes(&o->body, hdr, put_len_key(hdr, f.num, te->size));
				put_data(c, &o->body, te);
				seen_holder = true;
			} else if (mode != DATA_HOLDER) {
				del = true;
			}
		}
		if (del && (rc = op_delete(c, msg, f.start, f.end, f.num, true)) < 0)
			return rc;
		if (c->n_ops && c->ops[c->n_ops - 1].body.err)
			return c->ops[c->n_ops - 1].body.err;
		if (del)
			continue;
		if (f.num > T_DIMS && ins_dims == mm->end)
			ins_dims = f.start;
		if (f.num > T_DATA_TYPE && ins_type == mm->end)
			ins_type = f.start;
		if (f.num > T_RAW_DATA && ins_raw == mm->end)
			ins_raw = f.start;
	}
	struct op *o;
	if (te->dims_changed && !seen_dims && te->rank) {
		if (!(o = op_new(c, msg, ins_dims, ins_dims, T_DIMS)))
			return -ENOMEM;
		for (size_t i = 0; i < te->rank; i++)
			put_varint_field(&o->body, T_DIMS, (uint64_t)te->dims[i]);
	}
	if (te->dtype_changed && !seen_type) {
		if (!(o = op_new(c, msg, ins_type, ins_type, T_DATA_TYPE)))
			return -ENOMEM;
		put_varint_field(&o->body, T_DATA_TYPE, (uint64_t)te->dtype);
	}
	if (mode == DATA_HOLDER && !seen_holder)
		return fail(c, -EIO, "tensor '%.200s': its data field moved", t->name);
	if (mode == DATA_CONVERT) {
		if (!(o = op_new(c, msg, ins_raw, ins_raw, T_RAW_DATA)))
			return -ENOMEM;
		uint8_t hdr[20];
		mfs_splice_bytes(&o->body, hdr, put_len_key(hdr, T_RAW_DATA, te->size));
		put_data(c, &o->body, te);
	}
	for (size_t i = 0; i < c->n_ops; i++)
		if (c->ops[i].body.err)
			return c->ops[i].body.err;
	return 0;
}

/* ------------------------------------------------------------ ModelProto */

/* Index in top[] of the last field numbered `num`, or -1. */
static ssize_t top_last(const struct mfs_onnx_layout *l, uint32_t num)
{
	for (size_t i = l->n_top; i-- > 0;)
		if (l->top[i].num == num)
			return (ssize_t)i;
	return -1;
}

/* Where a new ModelProto field numbered `num` goes. */
static uint64_t top_ins(const struct ctx *c, uint32_t num)
{
	for (size_t i = 0; i < c->l->n_top; i++)
		if (c->l->top[i].num > num)
			return c->l->top[i].tag;
	return c->size;
}

static bool parse_i64(const char *s, size_t len, int64_t *out)
{
	char buf[32];
	if (!len || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || *end || !(buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9')))
		return false;
	*out = v;
	return true;
}

static int meta_ops(struct ctx *c, const struct mfs_edit_set *e)
{
	static const uint32_t field[MFS_ONNX_META_N] = {
		[MFS_ONNX_META_PRODUCER_NAME] = 2, [MFS_ONNX_META_PRODUCER_VERSION] = 3,
		[MFS_ONNX_META_DOMAIN] = 4, [MFS_ONNX_META_MODEL_VERSION] = M_MODEL_VERSION,
		[MFS_ONNX_META_DOC_STRING] = 6, [MFS_ONNX_META_GRAPH_NAME] = G_NAME,
	};
	const struct mfs_onnx_layout *l = c->l;
	struct op *o;
	int rc;
	for (int k = 0; k < MFS_ONNX_META_N; k++) {
		const char *v = e->meta[k];
		size_t len = e->meta_len[k];
		uint32_t num = field[k];
		if (!v)
			continue;
		if (k == MFS_ONNX_META_GRAPH_NAME) {
			if (l->graph_msg < 0)
				return fail(c, -EIO, "%s", "the model has no graph");
			uint64_t a = l->has_gname ? l->gname_tag : l->gname_ins;
			uint64_t b = l->has_gname ? l->gname_end : l->gname_ins;
			if (!(o = op_new(c, l->graph_msg, a, b, num)))
				return -ENOMEM;
			put_bytes_field(&o->body, num, v, len);
		} else if (k == MFS_ONNX_META_MODEL_VERSION) {
			int64_t mv = 0;
			if (len && !parse_i64(v, len, &mv))
				return fail(c, -EINVAL, "%s",
				            "model_version is not a decimal integer");
			if (!len) {
				/* Empty: the field goes, as an absent one reads empty. */
				for (size_t i = 0; i < l->n_top; i++) {
					const struct mfs_onnx_field *f = &l->top[i];
					if (f->num == num &&
					    (rc = op_delete(c, -1, f->tag, f->end, num, false)) < 0)
						return rc;
				}
				continue;
			}
			ssize_t last = top_last(l, num);
			uint64_t a = last >= 0 ? l->top[last].tag : top_ins(c, num);
			uint64_t b = last >= 0 ? l->top[last].end : a;
			if (!(o = op_new(c, -1, a, b, num)))
				return -ENOMEM;
			put_varint_field(&o->body, num, (uint64_t)mv);
		} else {
			ssize_t last = top_last(l, num);
			uint64_t a = last >= 0 ? l->top[last].tag : top_ins(c, num);
			uint64_t b = last >= 0 ? l->top[last].end : a;
			if (!(o = op_new(c, -1, a, b, num)))
				return -ENOMEM;
			put_bytes_field(&o->body, num, v, len);
		}
		if (o->body.err)
			return o->body.err;
	}
	return 0;
}

/* StringStringEntryProto{key = 1, value = 2} as a ModelProto field 14. */
static void put_prop(struct mfs_splice *s, const struct mfs_prop_edit *p)
{
	size_t klen = strlen(p->key);
	uint8_t kh[20], vh[20], h[20];
	size_t kn = put_len_key(kh, 1, klen), vn = put_len_key(vh, 2, p->len);
	uint64_t body = kn + klen + vn + p->len;
	mfs_splice_bytes(s, h, put_len_key(h, M_PROPS, body));
	mfs_splice_bytes(s, kh, kn);
	mfs_splice_bytes(s, p->key, klen);
	mfs_splice_bytes(s, vh, vn);
	mfs_splice_bytes(s, p->value, p->len);
}

static int prop_ops(struct ctx *c, const struct mfs_edit_set *e)
{
	const struct mfs_onnx_layout *l = c->l;
	size_t n_orig = c->m->desc.n_props;
	ssize_t *by_orig = malloc((n_orig ? n_orig : 1) * sizeof(*by_orig));
	int rc = 0;
	if (!by_orig)
		return -ENOMEM;
	for (size_t i = 0; i < n_orig; i++)
		by_orig[i] = -1;
	for (size_t i = 0; i < e->n_props; i++)
		if (e->props[i].orig >= 0 && (size_t)e->props[i].orig < n_orig)
			by_orig[e->props[i].orig] = (ssize_t)i;

	size_t k = 0;
	uint64_t after_last = 0;
	bool any = false;
	struct op *o;
	for (size_t i = 0; i < l->n_top && k < n_orig; i++) {
		const struct mfs_onnx_field *f = &l->top[i];
		if (f->num != M_PROPS)
			continue;
		ssize_t j = by_orig[k++];
		after_last = f->end;
		any = true;
		if (j < 0) {
			if ((rc = op_delete(c, -1, f->tag, f->end, M_PROPS, false)) < 0)
				goto out;
		} else if (e->props[j].changed) {
			if (!(o = op_new(c, -1, f->tag, f->end, M_PROPS))) {
				rc = -ENOMEM;
				goto out;
			}
			put_prop(&o->body, &e->props[j]);
			if ((rc = o->body.err) < 0)
				goto out;
		}
	}
	uint64_t at = any ? after_last : top_ins(c, M_PROPS);
	o = NULL;
	for (size_t i = 0; i < e->n_props; i++) {
		if (e->props[i].orig >= 0)
			continue;
		if (!o && !(o = op_new(c, -1, at, at, M_PROPS))) {
			rc = -ENOMEM;
			goto out;
		}
		put_prop(&o->body, &e->props[i]);
	}
	if (o)
		rc = o->body.err;
out:
	free(by_orig);
	return rc;
}

/* ------------------------------------------------------------ graph fields */

/*
 * Graph field edits (fields.c says what may be written):
 *   attribute      in the AttributeProto, its value fields (f, i, s, floats,
 *                  ints or strings: the one its type names) are replaced by
 *                  the new ones where the first was, the others deleted;
 *   node name      the last name field replaced, or inserted;
 *   input/output   the whole ValueInfoProto field is re-emitted: its fields
 *   dtype, shape   copied except `type`, which is encoded anew where it was.
 * Attributes and nodes are messages of the layout; a ValueInfoProto is not,
 * so its op is in the graph and carries its own new length prefix.
 */
#define A_TYPE_FIELD 20

static int wire_err(struct ctx *c, enum mfs_wire_err e, const char *what)
{
	return mfs_errf(c->err, c->errlen, e == MFS_WIRE_IO ? -EIO : -EUCLEAN,
	                c->m->desc.files[0].path, "%s changed under us: %s", what,
	                mfs_wire_strerror(e));
}

/* The field number of layout message `k` (its key). */
static int msg_num(struct ctx *c, struct mfs_wire_src *src, int32_t k, uint32_t *num)
{
	const struct mfs_onnx_msg *mm = &c->l->msgs[k];
	uint64_t key;
	size_t used;
	enum mfs_wire_err e = mfs_wire_varint_at(src, mm->tag, mm->len, &key, &used);
	if (e)
		return wire_err(c, e, "the graph");
	*num = (uint32_t)(key >> 3);
	return 0;
}

/* The layout message of main-graph node `i`, found once for all edits. */
static int node_msg(struct ctx *c, int32_t **cache, uint64_t i, int32_t *out)
{
	const struct mfs_onnx_layout *l = c->l;
	const struct mfs_graph *g = c->m->desc.graph;
	if (l->graph_msg < 0 || !g || i >= g->n_nodes)
		return fail(c, -EIO, "%s", "the graph's nodes are not where they were");
	if (!*cache) {
		struct mfs_wire_src src;
		mfs_wire_src_file(&src, c->src, c->size, c->win);
		int32_t *v = malloc((g->n_nodes ? g->n_nodes : 1) * sizeof(*v));
		size_t n = 0;
		if (!v)
			return -ENOMEM;
		const struct mfs_onnx_msg *gm = &l->msgs[l->graph_msg];
		for (size_t k = (size_t)l->graph_msg + 1; k < l->n_msgs && l->msgs[k].tag < gm->end;
		     k++) {
			uint32_t num = 0;
			if (l->msgs[k].parent != l->graph_msg)
				continue;
			int rc = msg_num(c, &src, (int32_t)k, &num);
			if (rc) {
				free(v);
				return rc;
			}
			if (num == 1 && n < g->n_nodes)
				v[n++] = (int32_t)k;
		}
		if (n != g->n_nodes) {
			free(v);
			return fail(c, -EIO, "%s", "the graph's nodes are not where they were");
		}
		*cache = v;
	}
	*out = (*cache)[i];
	return 0;
}

/* The layout message of attribute `j` of node message `nm`. */
static int attr_msg(struct ctx *c, int32_t nm, uint64_t j, int32_t *out)
{
	const struct mfs_onnx_layout *l = c->l;
	uint64_t n = 0;
	for (size_t k = (size_t)nm + 1; k < l->n_msgs && l->msgs[k].tag < l->msgs[nm].end; k++) {
		if (l->msgs[k].parent != nm)
			continue;
		if (n++ == j) {
			*out = (int32_t)k;
			return 0;
		}
	}
	return fail(c, -EIO, "%s", "a node's attributes are not where they were");
}

static uint32_t attr_value_field(int type)
{
	switch (type) {
	case MFS_ATTR_FLOAT: return 2;
	case MFS_ATTR_INT: return 3;
	case MFS_ATTR_STRING: return 4;
	case MFS_ATTR_FLOATS: return 7;
	case MFS_ATTR_INTS: return 8;
	default: return 9;      /* STRINGS */
	}
}

/*
 * In message `msg` ([val, end)), replace the fields numbered `num` by
 * `body` (taken over): where the first was (`last`: the last), the others
 * deleted; inserted before the first field numbered above `num` when there
 * is none.
 */
static int replace_fields(struct ctx *c, int32_t msg, uint64_t val, uint64_t end, uint32_t num,
                          bool last, struct mfs_buf *body)
{
	struct mfs_wire_src src;
	mfs_wire_src_file(&src, c->src, c->size, c->win);
	uint64_t ins = end, at_a = 0, at_b = 0;
	bool found = false, ins_found = false;
	int rc;
	/* First pass: where the new fields go. */
	for (uint64_t pos = val; pos < end;) {
		struct mfs_wire_field f;
		enum mfs_wire_err e = mfs_wire_next(&src, pos, end, &f);
		if (e)
			return wire_err(c, e, "a node");
		pos = f.end;
		if (f.num == num && (!found || last)) {
			at_a = f.start;
			at_b = f.end;
			found = true;
		} else if (f.num > num && !ins_found) {
			ins = f.start;
			ins_found = true;
		}
	}
	if (!found)
		at_a = at_b = ins;
	struct op *o = op_new(c, msg, at_a, at_b, num);
	if (!o)
		return -ENOMEM;
	if (body->len)
		mfs_splice_bytes(&o->body, body->p, body->len);
	if (o->body.err)
		return o->body.err;
	/* Second pass: the other fields of that number go. */
	for (uint64_t pos = val; pos < end;) {
		struct mfs_wire_field f;
		enum mfs_wire_err e = mfs_wire_next(&src, pos, end, &f);
		if (e)
			return wire_err(c, e, "a node");
		pos = f.end;
		if (f.num == num && f.start != at_a &&
		    (rc = op_delete(c, msg, f.start, f.end, num, false)) < 0)
			return rc;
	}
	return 0;
}

/*
 * A node's string field `num` (name 3, doc_string 6) set to the text a user
 * wrote (escaped as the tree shows it), encoded into `body` and put in place
 * of the old one.
 */
static int replace_node_string(struct ctx *c, int32_t nm, uint32_t num, const char *text,
                               size_t len, struct mfs_buf *body)
{
	char *v = malloc(len + 1);
	if (!v)
		return -ENOMEM;
	size_t vl = mfs_text_unescape(v, text, len);
	uint8_t hdr[20];
	mfs_buf_add(body, hdr, put_len_key(hdr, num, vl));
	mfs_buf_add(body, v, vl);
	free(v);
	return body->oom ? -ENOMEM :
	       replace_fields(c, nm, c->l->msgs[nm].val, c->l->msgs[nm].end, num, true, body);
}

/* Staged text of field `id` in `e`, or NULL. */
static const struct mfs_field_edit *find_field(const struct mfs_edit_set *e, uint64_t id)
{
	for (size_t i = 0; i < e->n_fields; i++)
		if (e->fields[i].id == id)
			return &e->fields[i];
	return NULL;
}

/* `text` (a staged shape) without blanks equals `want`? */
static bool same_dims_text(const char *text, size_t len, const char *want)
{
	size_t k = 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == ' ' || text[i] == '\t')
			continue;
		if (want[k] != text[i])
			return false;
		k++;
	}
	return want[k] == '\0';
}

/*
 * A graph output that is an initializer has the type of the tensor's
 * bytes: a staged dtype or shape that says otherwise makes a model the
 * checker refuses, so the commit refuses it (-EINVAL, one line).
 */
static int output_init_check(struct ctx *c, const struct mfs_value *v,
                             const struct mfs_field_edit *dt, const struct mfs_field_edit *sh)
{
	const struct mfs_graph *g = c->m->desc.graph;
	for (size_t k = 0; k < g->n_inits; k++) {
		const struct mfs_tensor *x = g->inits[k];
		if (!v->name || strcmp(x->name, v->name) != 0)
			continue;
		char dims[MFS_MAX_RANK * 21 + 1];
		mfs_dims_format(dims, sizeof(dims), x->dims, x->rank);
		const char *dn = mfs_dtype_name(x->dtype);
		if (sh && !same_dims_text(sh->text, sh->len, dims))
			return mfs_errf(c->err, c->errlen, -EINVAL, c->m->desc.files[0].path,
			                "graph output '%.200s': shape %.*s contradicts the initializer "
			                "of that name, whose bytes are [%s]", v->name,
			                (int)(sh->len > 100 ? 100 : sh->len), sh->text, dims);
		if (dt && (dt->len != strlen(dn) || memcmp(dt->text, dn, dt->len) != 0))
			return mfs_errf(c->err, c->errlen, -EINVAL, c->m->desc.files[0].path,
			                "graph output '%.200s': dtype %.*s contradicts the initializer "
			                "of that name, which is %s", v->name,
			                (int)(dt->len > 40 ? 40 : dt->len), dt->text, dn);
	}
	return 0;
}

/* The decoded new name `e` stages for the value named `old` (malloc'd), or
 * NULL (none, or out of memory: *oom). */
static char *staged_name(const struct ctx *c, const struct mfs_edit_set *e, const char *old,
                         bool *oom)
{
	*oom = false;
	for (size_t i = 0; old && i < e->n_fields; i++) {
		const struct mfs_field_edit *fe = &e->fields[i];
		const char *s = mfs_field_is_name(fe->id) ? mfs_desc_field_name(&c->m->desc, fe->id) :
		                NULL;
		if (!s || strcmp(s, old))
			continue;
		char *nn = malloc(fe->len + 1);
		if (!nn)
			*oom = true;
		else
			nn[mfs_text_unescape(nn, fe->text, fe->len)] = '\0';
		return nn;
	}
	return NULL;
}

/* Does graph input or output `i` (`input`) have a staged type or doc edit? */
static bool has_value_op(const struct mfs_edit_set *e, bool input, uint64_t i)
{
	return find_field(e, MFS_FIELD_ID(input ? MFS_FIELD_INPUT_SHAPE : MFS_FIELD_OUTPUT_SHAPE, i, 0)) ||
	       find_field(e, MFS_FIELD_ID(input ? MFS_FIELD_INPUT_DTYPE : MFS_FIELD_OUTPUT_DTYPE, i, 0)) ||
	       find_field(e, MFS_FIELD_ID(input ? MFS_FIELD_INPUT_DOC : MFS_FIELD_OUTPUT_DOC, i, 0));
}

/* Graph input or output `i` (`input`) with a new type, and its new name
 * when it is renamed too (rename_values leaves this value to us). */
static int value_op(struct ctx *c, const struct mfs_edit_set *e, bool input, uint64_t i)
{
	const struct mfs_graph *g = c->m->desc.graph;
	const struct mfs_onnx_layout *l = c->l;
	const struct mfs_value *v = input ? &g->inputs[i] : &g->outputs[i];
	const struct mfs_field_edit *dt = find_field(e, MFS_FIELD_ID(input ? MFS_FIELD_INPUT_DTYPE :
	                                                           MFS_FIELD_OUTPUT_DTYPE, i, 0));
	const struct mfs_field_edit *sh = find_field(e, MFS_FIELD_ID(input ? MFS_FIELD_INPUT_SHAPE :
	                                                           MFS_FIELD_OUTPUT_SHAPE, i, 0));
	const struct mfs_field_edit *doc = find_field(e, MFS_FIELD_ID(input ? MFS_FIELD_INPUT_DOC :
	                                                            MFS_FIELD_OUTPUT_DOC, i, 0));
	uint32_t want = input ? 11 : 12;
	if (!input && (dt || sh)) {
		int crc = output_init_check(c, v, dt, sh);
		if (crc)
			return crc;
	}
	const struct mfs_onnx_msg *gm = &l->msgs[l->graph_msg];
	struct mfs_wire_src src;
	mfs_wire_src_file(&src, c->src, c->size, c->win);
	struct mfs_wire_field vf = {0};
	uint64_t n = 0;
	bool found = false;
	for (uint64_t pos = gm->val; pos < gm->end && !found;) {
		enum mfs_wire_err er = mfs_wire_next(&src, pos, gm->end, &vf);
		if (er)
			return wire_err(c, er, "the graph");
		pos = vf.end;
		if (vf.num == want && vf.wt == 2 && n++ == i)
			found = true;
	}
	if (!found)
		return fail(c, -EIO, "%s", "a graph input or output is not where it was");
	/* The new type field (when dtype or shape is staged) and doc_string
	 * field (when it is): ValueInfoProto fields 2 and 3. */
	struct mfs_buf nf[2] = {{0}, {0}};
	bool want_f[2] = {dt || sh, doc != NULL}, put[2] = {false, false};
	int rc = 0;
	if (want_f[0])
		rc = mfs_onnx_type_encode(v, dt ? dt->text : NULL, dt ? dt->len : 0,
		                          sh ? sh->text : NULL, sh ? sh->len : 0, &nf[0],
		                          c->err, c->errlen);
	if (rc == 0 && doc) {
		char *s = malloc(doc->len + 1);
		if (!s) {
			rc = -ENOMEM;
		} else {
			size_t sl = mfs_text_unescape(s, doc->text, doc->len);
			uint8_t hdr[20];
			mfs_buf_add(&nf[1], hdr, put_len_key(hdr, 3, sl));
			mfs_buf_add(&nf[1], s, sl);
			free(s);
			rc = nf[1].oom ? -ENOMEM : 0;
		}
	}
	bool oom;
	char *nn = rc == 0 ? staged_name(c, e, v->name, &oom) : NULL;
	if (rc == 0 && oom)
		rc = -ENOMEM;
	/* The ValueInfoProto's fields, each replaced one where its first
	 * occurrence was (or before the first field numbered above it). */
	struct mfs_splice inner = {0};
	for (uint64_t pos = vf.val; pos < vf.end && rc == 0;) {
		struct mfs_wire_field f;
		enum mfs_wire_err er = mfs_wire_next(&src, pos, vf.end, &f);
		if (er) {
			rc = wire_err(c, er, "a graph input or output");
			break;
		}
		pos = f.end;
		if (nn && f.num == 1) {
			uint8_t hdr[20];
			mfs_splice_bytes(&inner, hdr, put_len_key(hdr, 1, strlen(nn)));
			mfs_splice_bytes(&inner, nn, strlen(nn));
			continue;
		}
		bool skip = false;
		for (unsigned k = 0; k < 2; k++) {
			uint32_t num = 2 + k;
			if (!want_f[k] || (f.num != num && (f.num < num || put[k])))
				continue;
			if (!put[k])
				mfs_splice_bytes(&inner, nf[k].p, nf[k].len);
			put[k] = true;
			skip |= f.num == num;
		}
		if (!skip)
			mfs_source_splice(&inner, c->src, f.start, f.end - f.start);
	}
	for (unsigned k = 0; k < 2 && rc == 0; k++)
		if (want_f[k] && !put[k])
			mfs_splice_bytes(&inner, nf[k].p, nf[k].len);
	free(nf[0].p);
	free(nf[1].p);
	free(nn);
	struct op *o = rc == 0 ? op_new(c, l->graph_msg, vf.start, vf.end, want) : NULL;
	if (rc == 0 && !o)
		rc = -ENOMEM;
	if (rc == 0) {
		uint8_t hdr[20];
		mfs_splice_bytes(&o->body, hdr, put_len_key(hdr, want, inner.total));
		mfs_splice_append(&o->body, &inner);
		rc = o->body.err ? o->body.err : inner.err;
	}
	mfs_splice_free(&inner);
	return rc;
}

/* ---- renaming an initializer ---- */

enum mkind { MK_OTHER, MK_GRAPH, MK_NODE, MK_ATTR, MK_TRAIN, MK_FUNC };

/* Is the string field f the bytes of `s` (n of them)? */
static int field_is(struct ctx *c, struct mfs_wire_src *src, const struct mfs_wire_field *f,
                    const char *s, size_t n, bool *out)
{
	*out = false;
	if (f->wt != 2 || f->len != n)
		return 0;
	char buf[256];
	for (uint64_t done = 0; done < n;) {
		size_t k = n - done < sizeof(buf) ? (size_t)(n - done) : sizeof(buf);
		int rc = mfs_wire_read(src, buf, f->val + done, k);
		if (rc < 0)
			return fail(c, rc, "%s", "reading a name");
		if (memcmp(buf, s + done, k))
			return 0;
		done += k;
	}
	*out = true;
	return 0;
}

/* A ValueInfoProto field `vf` of graph message `gm`, its name replaced. */
static int rename_value(struct ctx *c, struct mfs_wire_src *src, int32_t gm,
                        const struct mfs_wire_field *vf, const char *nn, size_t nl)
{
	struct mfs_splice inner = {0};
	uint8_t hdr[20];
	int rc = 0;
	for (uint64_t pos = vf->val; pos < vf->end;) {
		struct mfs_wire_field f;
		enum mfs_wire_err er = mfs_wire_next(src, pos, vf->end, &f);
		if (er) {
			rc = wire_err(c, er, "a graph value");
			break;
		}
		pos = f.end;
		if (f.num == 1) {
			mfs_splice_bytes(&inner, hdr, put_len_key(hdr, 1, nl));
			mfs_splice_bytes(&inner, nn, nl);
		} else {
			mfs_source_splice(&inner, c->src, f.start, f.end - f.start);
		}
	}
	struct op *o = rc == 0 ? op_new(c, gm, vf->start, vf->end, vf->num) : NULL;
	if (rc == 0 && !o)
		rc = -ENOMEM;
	if (rc == 0) {
		mfs_splice_bytes(&o->body, hdr, put_len_key(hdr, vf->num, inner.total));
		mfs_splice_append(&o->body, &inner);
		rc = o->body.err ? o->body.err : inner.err;
	}
	mfs_splice_free(&inner);
	return rc;
}

/* Is `s` a value name of the main graph already? */
static bool name_taken(const struct mfs_graph *g, const char *s)
{
	for (size_t i = 0; i < g->n_inputs; i++)
		if (g->inputs[i].name && !strcmp(g->inputs[i].name, s))
			return true;
	for (size_t i = 0; i < g->n_outputs; i++)
		if (g->outputs[i].name && !strcmp(g->outputs[i].name, s))
			return true;
	for (size_t i = 0; i < g->n_values; i++)
		if (g->values[i].name && !strcmp(g->values[i].name, s))
			return true;
	for (size_t i = 0; i < g->n_inits; i++)
		if (!strcmp(g->inits[i]->name, s))
			return true;
	for (size_t i = 0; i < g->n_nodes; i++) {
		for (size_t k = 0; k < g->nodes[i].n_outputs; k++)
			if (!strcmp(g->nodes[i].outputs[k], s))
				return true;
		for (size_t k = 0; k < g->nodes[i].n_inputs; k++)
			if (!strcmp(g->nodes[i].inputs[k], s))
				return true;
	}
	return mfs_onnx_subgraph_defines(g, s);
}

/* One value rename: the model's name and the decoded new one. */
struct ren {
	const char *old;
	size_t ol;
	char *nn;
	size_t nl;
	const struct mfs_tensor *init;  /* the main-graph initializer of the name, or NULL */
};

/* The staged renames of `e`, checked, into *out (n of them). */
static int renames_collect(struct ctx *c, const struct mfs_edit_set *e, struct ren **out,
                           size_t *n)
{
	const struct mfs_graph *g = c->m->desc.graph;
	const char *file = c->m->desc.files[0].path;
	struct ren *r = calloc(e->n_fields ? e->n_fields : 1, sizeof(*r));
	size_t k = 0;
	int rc = 0;
	*out = r;
	*n = 0;
	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < e->n_fields && rc == 0; i++) {
		const struct mfs_field_edit *fe = &e->fields[i];
		if (!mfs_field_is_name(fe->id))
			continue;
		struct ren *x = &r[k];
		x->old = mfs_desc_field_name(&c->m->desc, fe->id);
		if (!x->old || !(x->nn = malloc(fe->len + 1))) {
			rc = x->old ? -ENOMEM : fail(c, -EACCES, "%s", "a staged rename names no value");
			break;
		}
		k++;
		x->ol = strlen(x->old);
		x->nl = mfs_text_unescape(x->nn, fe->text, fe->len);
		x->nn[x->nl] = '\0';
		if (MFS_FIELD_KIND(fe->id) == MFS_FIELD_TENSOR_NAME)
			x->init = mfs_onnx_field_init(c->m, fe->id);
		for (size_t j = 0; j < g->n_inits && !x->init; j++)
			if (!strcmp(g->inits[j]->name, x->old))
				x->init = g->inits[j];
		if (!x->nl || memchr(x->nn, '\0', x->nl))
			rc = mfs_errf(c->err, c->errlen, -EINVAL, file, "value '%.200s': a new name "
			              "is not empty and holds no NUL byte", x->old);
		else if (name_taken(g, x->nn))
			rc = mfs_errf(c->err, c->errlen, -EINVAL, file, "value '%.200s': the new "
			              "name '%.200s' is already a value of the graph", x->old, x->nn);
		for (size_t j = 0; j + 1 < k && rc == 0; j++) {
			if (!strcmp(r[j].nn, x->nn))
				rc = mfs_errf(c->err, c->errlen, -EINVAL, file,
				              "two values would be named '%.200s'", x->nn);
			else if (!strcmp(r[j].old, x->old))
				rc = mfs_errf(c->err, c->errlen, -EINVAL, file,
				              "value '%.200s' is renamed twice", x->old);
		}
	}
	*n = k;
	return rc;
}

/* Which rename the string field f is the old name of, or -1. */
static int field_ren(struct ctx *c, struct mfs_wire_src *src, const struct mfs_wire_field *f,
                     const struct ren *r, size_t n, int *out)
{
	*out = -1;
	for (size_t i = 0; i < n; i++) {
		bool hit;
		int rc = field_is(c, src, f, r[i].old, r[i].ol, &hit);
		if (rc || hit) {
			*out = hit ? (int)i : -1;
			return rc;
		}
	}
	return 0;
}

/*
 * Rename the values of `r` (n of them) everywhere: every node input and
 * output of an old name in the main graph and the subgraphs under it
 * (which capture outer values by name; a subgraph defining the new name
 * was refused, one defining the old name is renamed with it, which keeps
 * its meaning), every graph input, output and value_info entry of that
 * name, and an initializer's own name field.  Functions have their own
 * scopes and are left alone.  Only the string fields change: each is one
 * op, so only the messages on the path from it to the root are re-encoded.
 */
static int rename_values(struct ctx *c, const struct mfs_edit_set *e, const struct ren *r,
                         size_t n)
{
	const struct mfs_onnx_layout *l = c->l;
	uint8_t *kind = calloc(l->n_msgs ? l->n_msgs : 1, 1);
	if (!kind)
		return -ENOMEM;
	struct mfs_wire_src src;
	mfs_wire_src_file(&src, c->src, c->size, c->win);
	int rc = 0;
	uint8_t hdr[20];
	for (size_t k = 0; k < l->n_msgs && rc == 0; k++) {
		int32_t p = l->msgs[k].parent;
		uint8_t pk = p < 0 ? 0xff : kind[p];
		uint32_t num = 0;
		if ((rc = msg_num(c, &src, (int32_t)k, &num)))
			break;
		kind[k] = pk == 0xff ? (num == 7 ? MK_GRAPH : num == 20 ? MK_TRAIN : num == 25 ?
		                        MK_FUNC : MK_OTHER) :
		          pk == MK_TRAIN ? ((num == 1 || num == 2) ? MK_GRAPH : MK_OTHER) :
		          pk == MK_GRAPH ? (num == 1 ? MK_NODE : MK_OTHER) :
		          pk == MK_NODE ? (num == 5 ? MK_ATTR : MK_OTHER) :
		          pk == MK_ATTR ? ((num == 6 || num == 11) ? MK_GRAPH : MK_OTHER) : MK_OTHER;
		if (kind[k] != MK_NODE && kind[k] != MK_GRAPH)
			continue;
		/* Node inputs (1) and outputs (2); graph inputs, outputs, value_info
		 * (11, 12, 13).  A graph's nodes are messages of their own. */
		const struct mfs_onnx_msg *mm = &l->msgs[k];
		uint64_t n_in = 0, n_out = 0;
		for (uint64_t pos = mm->val; pos < mm->end && rc == 0;) {
			struct mfs_wire_field f;
			enum mfs_wire_err er = mfs_wire_next(&src, pos, mm->end, &f);
			if (er) {
				rc = wire_err(c, er, "the graph");
				break;
			}
			pos = f.end;
			int hit = -1;
			/* A main-graph input or output with a new type is re-encoded
			 * whole, its new name included, by value_op(). */
			if ((int32_t)k == l->graph_msg && f.wt == 2 && f.num == 11 &&
			    has_value_op(e, true, n_in++))
				continue;
			if ((int32_t)k == l->graph_msg && f.wt == 2 && f.num == 12 &&
			    has_value_op(e, false, n_out++))
				continue;
			if (kind[k] == MK_NODE && (f.num == 1 || f.num == 2)) {
				if ((rc = field_ren(c, &src, &f, r, n, &hit)) || hit < 0)
					continue;
				struct op *o = op_new(c, (int32_t)k, f.start, f.end, f.num);
				if (!o) {
					rc = -ENOMEM;
					break;
				}
				mfs_splice_bytes(&o->body, hdr, put_len_key(hdr, f.num, r[hit].nl));
				mfs_splice_bytes(&o->body, r[hit].nn, r[hit].nl);
				rc = o->body.err;
			} else if (kind[k] == MK_GRAPH && f.num >= 11 && f.num <= 13 && f.wt == 2) {
				/* The value's name: its field 1. */
				for (uint64_t q = f.val; q < f.end && rc == 0 && hit < 0;) {
					struct mfs_wire_field nf;
					er = mfs_wire_next(&src, q, f.end, &nf);
					if (er) {
						rc = wire_err(c, er, "a graph value");
						break;
					}
					q = nf.end;
					if (nf.num == 1)
						rc = field_ren(c, &src, &nf, r, n, &hit);
				}
				if (rc == 0 && hit >= 0)
					rc = rename_value(c, &src, (int32_t)k, &f, r[hit].nn, r[hit].nl);
			}
		}
	}
	free(kind);
	/* Each initializer's own name field (8). */
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!r[i].init)
			continue;
		int32_t tm = (int32_t)l->tspans[r[i].init->id].msg;
		struct mfs_buf body = {0};
		mfs_buf_add(&body, hdr, put_len_key(hdr, 8, r[i].nl));
		mfs_buf_add(&body, r[i].nn, r[i].nl);
		rc = body.oom ? -ENOMEM : replace_fields(c, tm, l->msgs[tm].val, l->msgs[tm].end, 8,
		                                         true, &body);
		free(body.p);
	}
	return rc;
}

/* ---- deleting an initializer ---- */

/* Is tensor `t` staged for deletion in `e`? */
static bool deleted(const struct mfs_edit_set *e, const struct mfs_tensor *t)
{
	return find_field(e, MFS_FIELD_ID(MFS_FIELD_TENSOR_DELETE, t->id, 0)) != NULL;
}

/*
 * Delete the initializers `e` stages for deletion: each TensorProto (main
 * graph field 5) goes whole, and so do the graph inputs (11) and value_info
 * entries (13) of its name.  A tensor still read by a node or listed as a
 * graph output is refused (-EBUSY): the check made when it was staged is
 * made again, since other edits of the commit count.
 */
static int delete_ops(struct ctx *c, const struct mfs_edit_set *e)
{
	const struct mfs_onnx_layout *l = c->l;
	const struct mfs_graph *g = c->m->desc.graph;
	const char *file = c->m->desc.files[0].path;
	int rc = 0;
	for (size_t i = 0; i < e->n_fields && rc == 0; i++) {
		const struct mfs_field_edit *fe = &e->fields[i];
		if (MFS_FIELD_KIND(fe->id) != MFS_FIELD_TENSOR_DELETE)
			continue;
		const struct mfs_tensor *t = mfs_onnx_field_init(c->m, fe->id);
		char why[400];
		if (!t)
			return fail(c, -EACCES, "%s", "a staged deletion names no initializer");
		if ((rc = mfs_onnx_unused(g, t->name, why, sizeof(why))) < 0)
			return mfs_errf(c->err, c->errlen, rc, file, "%s", why);
		for (size_t k = 0; k < e->n_fields; k++)
			if (mfs_field_is_name(e->fields[k].id)) {
				const char *old = mfs_desc_field_name(&c->m->desc, e->fields[k].id);
				if (old && !strcmp(old, t->name))
					return mfs_errf(c->err, c->errlen, -EINVAL, file, "tensor '%.200s' "
					                "is both renamed and deleted", t->name);
			}
		int32_t tm = (int32_t)l->tspans[t->id].msg;
		if ((rc = op_delete(c, l->msgs[tm].parent, l->msgs[tm].tag, l->msgs[tm].end, 5,
		                    false)))
			break;
		struct mfs_wire_src src;
		mfs_wire_src_file(&src, c->src, c->size, c->win);
		const struct mfs_onnx_msg *gm = &l->msgs[l->graph_msg];
		for (uint64_t pos = gm->val; pos < gm->end && rc == 0;) {
			struct mfs_wire_field f;
			enum mfs_wire_err er = mfs_wire_next(&src, pos, gm->end, &f);
			if (er) {
				rc = wire_err(c, er, "the graph");
				break;
			}
			pos = f.end;
			if ((f.num != 11 && f.num != 13) || f.wt != 2)
				continue;
			bool hit = false;
			for (uint64_t q = f.val; q < f.end && rc == 0 && !hit;) {
				struct mfs_wire_field nf;
				er = mfs_wire_next(&src, q, f.end, &nf);
				if (er) {
					rc = wire_err(c, er, "a graph value");
					break;
				}
				q = nf.end;
				if (nf.num == 1)
					rc = field_is(c, &src, &nf, t->name, strlen(t->name), &hit);
			}
			if (rc == 0 && hit)
				rc = op_delete(c, l->graph_msg, f.start, f.end, f.num, false);
		}
	}
	return rc;
}

/* ---- adding an initializer ---- */

/*
 * Append the tensors `e` adds (mkdir; their edits are `added`) to the main
 * graph's initializers: each a TensorProto of dims, data_type, name and
 * raw_data (canonical field order, dims unpacked), inserted after the
 * graph's last initializer field, else at the canonical place of field 5
 * (before the first field numbered above it), ascending ids.
 */
static int add_ops(struct ctx *c, const struct mfs_edit_set *e)
{
	const struct mfs_onnx_layout *l = c->l;
	const struct mfs_onnx_msg *gm = &l->msgs[l->graph_msg];
	struct mfs_wire_src src;
	mfs_wire_src_file(&src, c->src, c->size, c->win);
	uint64_t at = gm->end, after_last = 0;
	bool any = false;
	for (size_t i = 0; i < e->n_tensors; i++)
		any |= e->tensors[i].added;
	if (!any)
		return 0;
	for (uint64_t pos = gm->val; pos < gm->end;) {
		struct mfs_wire_field f;
		enum mfs_wire_err er = mfs_wire_next(&src, pos, gm->end, &f);
		if (er)
			return wire_err(c, er, "the graph");
		pos = f.end;
		if (f.num == 5)
			after_last = f.end;
		else if (f.num > 5 && at == gm->end)
			at = f.start;
	}
	if (after_last)
		at = after_last;
	for (size_t i = 0; i < e->n_tensors; i++) {
		const struct mfs_tensor_edit *te = &e->tensors[i];
		if (!te->added)
			continue;
		const char *name = te->t->name;
		size_t nl = strlen(name);
		uint8_t buf[24];
		struct mfs_splice hd = {0};
		for (size_t k = 0; k < te->rank; k++)
			put_varint_field(&hd, T_DIMS, (uint64_t)te->dims[k]);
		put_varint_field(&hd, T_DATA_TYPE, (uint64_t)te->dtype);
		put_bytes_field(&hd, 8, name, nl);
		size_t raw_hdr = put_len_key(buf, T_RAW_DATA, te->size);
		uint64_t body_len = hd.total + raw_hdr + te->size;
		struct op *o = op_new(c, l->graph_msg, at, at, 5);
		if (!o) {
			mfs_splice_free(&hd);
			return -ENOMEM;
		}
		uint8_t key[24];
		mfs_splice_bytes(&o->body, key, put_len_key(key, 5, body_len));
		for (size_t k = 0; k < hd.n; k++)
			mfs_splice_bytes(&o->body, hd.p[k].buf, (size_t)hd.p[k].len);
		mfs_splice_free(&hd);
		mfs_splice_bytes(&o->body, buf, raw_hdr);
		if (te->size && te->read)
			mfs_splice_fn(&o->body, te->read, te->arg, 0, te->size);
		if (o->body.err)
			return o->body.err;
	}
	return 0;
}

/*
 * The edited main graph must keep the rules onnx.checker enforces that
 * renames and deletions can break (ssa.c), when the graph kept them before:
 * -EINVAL with the rule otherwise.
 */
static int graph_rules(struct ctx *c, const struct mfs_edit_set *e)
{
	const struct mfs_graph *g = c->m->desc.graph;
	struct mfs_onnx_edit_names en = {0};
	char why[400] = "";
	size_t k = 0;
	for (size_t i = 0; i < e->n_fields; i++)
		k += mfs_field_is_name(e->fields[i].id) ||
		     MFS_FIELD_KIND(e->fields[i].id) == MFS_FIELD_TENSOR_DELETE;
	if (!k || !g)
		return 0;
	int rc = mfs_onnx_ssa_check(g, NULL, why, sizeof(why));
	if (rc)
		return rc == -ENOMEM ? rc : 0;  /* broken already: the user's */
	en.from = calloc(k, sizeof(*en.from));
	en.to = calloc(k, sizeof(*en.to));
	if (!en.from || !en.to)
		rc = -ENOMEM;
	for (size_t i = 0; i < e->n_fields && rc == 0; i++) {
		const struct mfs_field_edit *fe = &e->fields[i];
		if (MFS_FIELD_KIND(fe->id) == MFS_FIELD_TENSOR_DELETE) {
			const struct mfs_tensor *t = mfs_onnx_field_init(c->m, fe->id);
			if (t)
				en.from[en.n++] = t->name;
		} else if (mfs_field_is_name(fe->id)) {
			const char *old = mfs_desc_field_name(&c->m->desc, fe->id);
			char *nn = old ? malloc(fe->len + 1) : NULL;
			if (old && !nn) {
				rc = -ENOMEM;
				break;
			}
			if (!old)
				continue;
			nn[mfs_text_unescape(nn, fe->text, fe->len)] = '\0';
			en.from[en.n] = old;
			en.to[en.n++] = nn;
		}
	}
	if (rc == 0 && (rc = mfs_onnx_ssa_check(g, &en, why, sizeof(why))) == -EINVAL)
		rc = mfs_errf(c->err, c->errlen, rc, c->m->desc.files[0].path,
		              "the edited graph breaks ONNX's rules: %s", why);
	for (size_t i = 0; en.to && i < en.n; i++)
		free((char *)en.to[i]);
	free(en.from);
	free(en.to);
	return rc;
}

static int rename_ops(struct ctx *c, const struct mfs_edit_set *e)
{
	struct ren *r = NULL;
	size_t n = 0;
	int rc = renames_collect(c, e, &r, &n);
	if (rc == 0 && n)
		rc = rename_values(c, e, r, n);
	for (size_t i = 0; i < n; i++)
		free(r[i].nn);
	free(r);
	return rc;
}

static int field_ops(struct ctx *c, const struct mfs_edit_set *e)
{
	int32_t *nodes = NULL;
	int rc = 0;
	for (size_t k = 0; k < e->n_fields && rc == 0; k++) {
		const struct mfs_field_edit *fe = &e->fields[k];
		uint64_t i = MFS_FIELD_I(fe->id);
		struct mfs_buf body = {0};
		int32_t nm = -1, am = -1;
		if (!mfs_onnx_field_writable(c->m, fe->id)) {
			rc = fail(c, -EACCES, "%s", "a staged graph field is not writable in this model");
			break;
		}
		switch (MFS_FIELD_KIND(fe->id)) {
		case MFS_FIELD_NODE_ATTR: {
			const struct mfs_attr *at = mfs_onnx_field_attr(c->m, fe->id);
			if ((rc = node_msg(c, &nodes, i, &nm)) ||
			    (rc = attr_msg(c, nm, MFS_FIELD_J(fe->id), &am)))
				break;
			rc = mfs_onnx_attr_encode(at, fe->text, fe->len, &body, c->err, c->errlen);
			if (rc == 0 && body.oom)
				rc = -ENOMEM;
			if (rc == 0)
				rc = replace_fields(c, am, c->l->msgs[am].val, c->l->msgs[am].end,
				                    attr_value_field(at->type), false, &body);
			break;
		}
		case MFS_FIELD_NODE_NAME: {
			if ((rc = node_msg(c, &nodes, i, &nm)) == 0)
				rc = replace_node_string(c, nm, 3, fe->text, fe->len, &body);
			break;
		}
		case MFS_FIELD_TENSOR_NAME:
		case MFS_FIELD_INPUT_NAME:
		case MFS_FIELD_OUTPUT_NAME:
		case MFS_FIELD_VALUE_NAME:
			break;          /* all renames at once: rename_ops() */
		case MFS_FIELD_TENSOR_DELETE:
			break;          /* delete_ops() */
		case MFS_FIELD_TENSOR_ADD:
			break;          /* add_ops(), from the tensor edits */
		case MFS_FIELD_NODE_DOC: {
			if ((rc = node_msg(c, &nodes, i, &nm)) == 0)
				rc = replace_node_string(c, nm, 6, fe->text, fe->len, &body);
			break;
		}
		case MFS_FIELD_INPUT_DTYPE:
		case MFS_FIELD_INPUT_SHAPE:
		case MFS_FIELD_INPUT_DOC:
		case MFS_FIELD_OUTPUT_DTYPE:
		case MFS_FIELD_OUTPUT_SHAPE:
		case MFS_FIELD_OUTPUT_DOC: {
			unsigned kind = MFS_FIELD_KIND(fe->id);
			bool input = kind == MFS_FIELD_INPUT_DTYPE || kind == MFS_FIELD_INPUT_SHAPE ||
			             kind == MFS_FIELD_INPUT_DOC;
			/* A value's shape, dtype and doc_string make one op, done
			 * at the first of them staged (ids ascend: shape, dtype,
			 * doc). */
			uint64_t sh = MFS_FIELD_ID(input ? MFS_FIELD_INPUT_SHAPE : MFS_FIELD_OUTPUT_SHAPE,
			                           i, 0);
			uint64_t dt = MFS_FIELD_ID(input ? MFS_FIELD_INPUT_DTYPE : MFS_FIELD_OUTPUT_DTYPE,
			                           i, 0);
			if (fe->id != sh && find_field(e, sh))
				break;
			if (fe->id != sh && fe->id != dt && find_field(e, dt))
				break;
			rc = value_op(c, e, input, i);
			break;
		}
		default:
			rc = fail(c, -EACCES, "%s", "unknown graph field");
			break;
		}
		free(body.p);
	}
	free(nodes);
	return rc;
}

/* ------------------------------------------------------------ emit */

static int item_cmp(const void *pa, const void *pb)
{
	const struct item *a = pa, *b = pb;
	if (a->pos != b->pos)
		return a->pos < b->pos ? -1 : 1;
	if (a->level != b->level)
		return a->level > b->level ? -1 : 1;    /* deeper first */
	if (a->is_msg != b->is_msg)
		return a->is_msg ? 1 : -1;              /* ops before a child */
	if (a->order != b->order)
		return a->order < b->order ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Ops and dirty messages, in output order (invariant 3). */
static int build_items(struct ctx *c)
{
	const struct mfs_onnx_layout *l = c->l;
	bool *dirty = calloc(l->n_msgs ? l->n_msgs : 1, sizeof(bool));
	if (!dirty)
		return -ENOMEM;
	size_t n_dirty = 0;
	for (size_t i = 0; i < c->n_ops; i++)
		for (int32_t m = c->ops[i].msg; m >= 0 && !dirty[m]; m = l->msgs[m].parent) {
			dirty[m] = true;
			n_dirty++;
		}
	c->items = malloc((c->n_ops + n_dirty + 1) * sizeof(*c->items));
	if (!c->items) {
		free(dirty);
		return -ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < c->n_ops; i++) {
		const struct op *o = &c->ops[i];
		c->items[n] = (struct item){o->a, o->level, 0, o->order, n, (int32_t)i};
		n++;
	}
	for (size_t m = 0; m < l->n_msgs; m++) {
		if (!dirty[m])
			continue;
		c->items[n] = (struct item){l->msgs[m].tag, l->msgs[m].depth, 1, 0, n, (int32_t)m};
		n++;
	}
	free(dirty);
	c->n_items = n;
	qsort(c->items, n, sizeof(*c->items), item_cmp);
	return 0;
}

/*
 * The value of message `msg` ([val, end) of the old file) into `out`: old
 * bytes, its ops, and its dirty children, consuming items from *i.
 */
static int emit(struct ctx *c, int32_t msg, uint64_t val, uint64_t end, size_t *i,
                struct mfs_splice *out)
{
	const struct mfs_onnx_layout *l = c->l;
	uint64_t pos = val;
	while (*i < c->n_items) {
		const struct item *it = &c->items[*i];
		if (it->is_msg ? l->msgs[it->idx].parent != msg : c->ops[it->idx].msg != msg)
			break;
		(*i)++;
		if (!it->is_msg) {
			struct op *o = &c->ops[it->idx];
			if (o->a < pos || o->b > end)
				return -EIO;    /* overlapping ops: a bug, never write it */
			mfs_source_splice(out, c->src, pos, o->a - pos);
			mfs_splice_append(out, &o->body);
			pos = o->b;
			continue;
		}
		const struct mfs_onnx_msg *ch = &l->msgs[it->idx];
		if (ch->tag < pos || ch->end > end)
			return -EIO;
		mfs_source_splice(out, c->src, pos, ch->tag - pos);
		struct mfs_splice sub = {0};
		int rc = emit(c, it->idx, ch->val, ch->end, i, &sub);
		if (rc < 0 || sub.err) {
			mfs_splice_free(&sub);
			return rc < 0 ? rc : -ENOMEM;
		}
		mfs_source_splice(out, c->src, ch->tag, ch->len - ch->tag);
		if (sub.total == ch->end - ch->val) {
			mfs_source_splice(out, c->src, ch->len, ch->val - ch->len);
		} else {
			uint8_t pfx[10];
			mfs_splice_bytes(out, pfx, varint_put(pfx, sub.total));
		}
		mfs_splice_append(out, &sub);
		pos = ch->end;
	}
	mfs_source_splice(out, c->src, pos, end - pos);
	return out->err;
}

int mfs_onnx_splice(struct mfs_splice *out, const struct mfs_model *m,
                    const struct mfs_edit_set *e, char *err, size_t errlen)
{
	struct ctx *c = calloc(1, sizeof(*c));
	int rc = 0;
	if (!c)
		return mfs_errf(err, errlen, -ENOMEM, m->desc.files[0].path, "out of memory");
	c->m = m;
	c->l = mfs_onnx_layout(m);
	c->src = m->srcs[0];
	c->size = m->desc.files[0].size;
	c->err = err;
	c->errlen = errlen;
	if (!c->l) {
		rc = mfs_errf(err, errlen, -EINVAL, m->desc.files[0].path, "not an ONNX model");
		goto out;
	}
	/* A tensor that goes needs none of its edits. */
	for (size_t i = 0; i < e->n_tensors && rc == 0; i++)
		if (!e->tensors[i].added && !deleted(e, e->tensors[i].t))
			rc = tensor_ops(c, &e->tensors[i]);
	if (rc == 0)
		rc = meta_ops(c, e);
	if (rc == 0 && e->props_changed)
		rc = prop_ops(c, e);
	if (rc == 0 && e->n_fields)
		rc = field_ops(c, e);
	if (rc == 0 && e->n_fields)
		rc = graph_rules(c, e);
	if (rc == 0 && e->n_fields)
		rc = rename_ops(c, e);
	if (rc == 0 && e->n_fields)
		rc = delete_ops(c, e);
	if (rc == 0 && e->n_fields)
		rc = add_ops(c, e);
	if (rc == 0)
		rc = build_items(c);
	size_t i = 0;
	if (rc == 0)
		rc = emit(c, -1, 0, c->size, &i, out);
	if (rc == 0 && i != c->n_items)
		rc = -EIO;      /* an item outside its message: a bug, never write it */
	if (rc == -ENOMEM)
		rc = mfs_errf(err, errlen, rc, m->desc.files[0].path, "out of memory");
	else if (rc == -EIO && !(err && err[0]))
		rc = mfs_errf(err, errlen, rc, m->desc.files[0].path,
		              "internal error: the edits do not nest in the model's messages");
	if (rc == 0 && out->total > MFS_MAX_ONNX_FILE)
		rc = mfs_errf(err, errlen, -EFBIG, m->desc.files[0].path,
		              "the result would be %" PRIu64 " bytes, over protobuf's 2 GiB limit "
		              "(move tensors to external data)", out->total);
out:
	for (size_t k = 0; k < c->n_ops; k++)
		mfs_splice_free(&c->ops[k].body);
	free(c->ops);
	free(c->items);
	free(c);
	if (rc < 0)
		mfs_splice_free(out);
	return rc;
}

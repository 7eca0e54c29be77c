/*
 * tests/unit/toy_format.c — a third model format, written only as a test:
 * the proof that a format is one file and one row of the table
 * (codec/format.h, "Adding a format" in README.md).
 *
 * A toy file holds one tensor, its type on a text line before its bytes:
 *
 *   OFFSET  SIZE  MEANING
 *        0     8  magic "MFSTOY1\n"
 *        8     N  "<dtype> <dims> <name>\n": a dtype name (model.h), the
 *                 shape as the `shape` file writes it ("2,3"; "" for a
 *                 scalar) and the tensor's name (the rest of the line);
 *                 at most TOY_MAX_HEADER bytes
 *      8+N     …  the tensor's bytes: exactly dtype × shape, to the end
 *
 * The format is flat (meta/ and weights/ only), its tensor is contiguous
 * and editable: data, dtype and shape.  A toy holds real numbers, so its
 * type check calls an integer dtype a contradiction (MFS_TYPE_DECLARED:
 * refused at commit unless types are forced) and bfloat16 a doubt
 * (MFS_TYPE_PEER: a warning).  A commit rewrites the header line
 * when the type changed and copies every byte that did not.  Nothing of
 * codec/, fs/ or tools/ was changed to add it: test_format.c registers
 * this row with mfs_format_register() and mounts it through the tree and
 * the transaction.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"

#define TOY_MAGIC       "MFSTOY1\n"
#define TOY_MAGIC_LEN   8
#define TOY_MAX_HEADER  4096

struct toy_state {
	uint64_t data_off;      /* where the tensor's bytes start */
};

static int toy_sniff(const uint8_t *head, size_t len, uint64_t size)
{
	(void)size;
	return len >= TOY_MAGIC_LEN && memcmp(head, TOY_MAGIC, TOY_MAGIC_LEN) == 0 ?
	       MFS_SNIFF_YES : MFS_SNIFF_NO;
}

/* "2,3" into dims (at most MFS_MAX_RANK); "" is a scalar.  false if malformed. */
static bool parse_dims(const char *s, size_t n, int64_t *dims, size_t *rank)
{
	*rank = 0;
	if (!n)
		return true;
	size_t i = 0;
	while (i <= n) {
		if (*rank == MFS_MAX_RANK || i == n || s[i] < '0' || s[i] > '9')
			return false;
		int64_t v = 0;
		while (i < n && s[i] >= '0' && s[i] <= '9') {
			if (v > (INT64_MAX - 9) / 10)
				return false;
			v = v * 10 + (s[i++] - '0');
		}
		dims[(*rank)++] = v;
		if (i == n)
			return true;
		if (s[i++] != ',')
			return false;
	}
	return false;
}

static int toy_open(struct mfs_model *m, const char *display, char *err, size_t errlen)
{
	uint64_t size = m->desc.files[0].size;
	char line[TOY_MAX_HEADER + 1];
	size_t want = size - TOY_MAGIC_LEN < TOY_MAX_HEADER ? (size_t)(size - TOY_MAGIC_LEN) :
	              TOY_MAX_HEADER;
	if (size < TOY_MAGIC_LEN || mfs_source_read(m->srcs[0], line, want, TOY_MAGIC_LEN) < 0)
		return mfs_errf(err, errlen, -EIO, display, "cannot read the toy header");
	char *nl = memchr(line, '\n', want);
	if (!nl)
		return mfs_errf(err, errlen, -EUCLEAN, display, "toy header has no end of line");
	*nl = '\0';
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp2)
		return mfs_errf(err, errlen, -EUCLEAN, display, "toy header is not 'dtype dims name'");
	*sp1 = '\0';
	int32_t dtype = mfs_dtype_from_name(line);
	int64_t dims[MFS_MAX_RANK];
	size_t rank;
	uint64_t nbytes;
	if (dtype <= 0 || !parse_dims(sp1 + 1, (size_t)(sp2 - sp1 - 1), dims, &rank) ||
	    mfs_tensor_nbytes(&nbytes, dtype, dims, rank) < 0)
		return mfs_errf(err, errlen, -EUCLEAN, display, "toy header has a bad dtype or shape");
	uint64_t data_off = TOY_MAGIC_LEN + (uint64_t)(nl - line) + 1;
	if (size - data_off != nbytes)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "toy tensor needs %" PRIu64 " bytes, the file has %" PRIu64,
		                nbytes, size - data_off);

	struct mfs_arena *a = m->arena;
	struct mfs_tensor *t = mfs_arena_alloc(a, sizeof(*t));
	struct mfs_graph *g = mfs_arena_alloc(a, sizeof(*g));
	struct mfs_meta *meta = mfs_arena_alloc(a, sizeof(*meta));
	struct toy_state *st = mfs_arena_alloc(a, sizeof(*st));
	struct mfs_tensor **list = mfs_arena_array(a, 1, sizeof(*list));
	if (!t || !g || !meta || !st || !list ||
	    !(t->name = mfs_arena_strdup(a, sp2 + 1)) ||
	    !(t->dims = mfs_arena_array(a, rank, sizeof(*t->dims))) ||
	    !(meta->name = mfs_arena_strdup(a, "format")) ||
	    !(meta->value = mfs_arena_strdup(a, "toy\n")) ||
	    !(g->name = mfs_arena_strdup(a, "")))
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	memcpy(t->dims, dims, rank * sizeof(*dims));
	t->rank = rank;
	t->dtype = dtype;
	t->nbytes = nbytes;
	t->off = data_off;
	t->src = 0;
	t->flags = MFS_TENSOR_CONTIGUOUS | MFS_TENSOR_EDITABLE;
	list[0] = t;
	g->inits = list;
	g->n_inits = 1;
	meta->len = 4;
	st->data_off = data_off;
	m->priv = st;
	m->desc.meta = meta;
	m->desc.n_meta = 1;
	m->desc.graph = g;
	m->desc.tensors = list;
	m->desc.n_tensors = 1;
	return 0;
}

static bool toy_dtype_ok(int32_t dtype)
{
	return dtype < MFS_DT_EXT_FIRST_;
}

static const char *const toy_meta[] = {NULL};

static int toy_type_check(const struct mfs_model *m, const struct mfs_edit_set *e, size_t i,
                          char *msg, size_t msglen)
{
	(void)m;
	const struct mfs_tensor_edit *te = &e->tensors[i];
	int32_t d = te->dtype;
	if (d == MFS_DT_BFLOAT16) {
		snprintf(msg, msglen, "tensor '%s': toys rarely hold bfloat16", te->t->name);
		return MFS_TYPE_PEER;
	}
	if (d == MFS_DT_FLOAT16 || d == MFS_DT_FLOAT || d == MFS_DT_DOUBLE)
		return MFS_TYPE_OK;
	snprintf(msg, msglen, "tensor '%s': dtype %s contradicts the toy, which holds real numbers",
	         te->t->name, mfs_dtype_name(d));
	return MFS_TYPE_DECLARED;
}

static int toy_splice(struct mfs_splice *out, const struct mfs_model *m,
                      const struct mfs_edit_set *e, char *err, size_t errlen)
{
	const struct mfs_tensor *t = m->desc.tensors[0];
	const struct mfs_tensor_edit *te = e->n_tensors ? &e->tensors[0] : NULL;
	struct mfs_source *src = m->srcs[0];
	if (te && (te->dtype_changed || te->dims_changed)) {
		char dims[MFS_MAX_RANK * 21 + 1];
		mfs_dims_format(dims, sizeof(dims), te->dims, te->rank);
		char *hdr = NULL;
		int n = asprintf(&hdr, TOY_MAGIC "%s %s %s\n", mfs_dtype_name(te->dtype), dims,
		                 t->name);
		if (n < 0)
			return mfs_errf(err, errlen, -ENOMEM, m->desc.files[0].path, "out of memory");
		mfs_splice_take(out, hdr, (size_t)n);
	} else {
		mfs_source_splice(out, src, 0, t->off);
	}
	if (!te || !te->data_changed)
		mfs_source_splice(out, src, t->off, t->nbytes);
	else
		mfs_splice_fn(out, te->read, te->arg, 0, te->size);
	return out->err;
}

const struct mfs_format toy_format = {
	.name = "toy",
	.flags = 0,
	.sniff = toy_sniff,
	.open = toy_open,
	.dtype_ok = toy_dtype_ok,
	.type_check = toy_type_check,
	.meta_names = toy_meta,
	.splice = toy_splice,
};

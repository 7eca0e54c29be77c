/*
 * codec/safetensors/writer.c — the safetensors splice writer.
 *
 * Called by the transaction (through format.h).  A safetensors file is a
 * JSON header and one data buffer that the tensors tile (doc/formats.md §2.1),
 * so there are two cases:
 *
 *   - only same-size data edits: the header stays, byte for byte, and only
 *     the changed ranges of the buffer are new (so such a commit can also
 *     be done in place);
 *   - a dtype, shape or size change, a rename, a deletion or a
 *     __metadata__ edit: the header is written anew — compact JSON,
 *     "__metadata__" first, the tensors in their old offset order with
 *     offsets recomputed so that they tile the buffer again, padded with
 *     spaces to a multiple of 8 (the reference writer's rules, §2.3) — and
 *     every tensor's bytes follow, copied from the old file or read from
 *     the stage.  Added tensors (field TENSOR_ADD, `mkdir`; their edits
 *     are `added`) come last, in the header and the buffer, ascending
 *     ids.  A deleted tensor (field TENSOR_DELETE, `rm -r`) has no
 *     entry and no bytes: the later tensors move down, leaving no hole;
 *     deleting them all leaves a header of `{}` (or only __metadata__)
 *     and an empty buffer, which the format allows.
 *
 * Only single files: a sharded checkpoint spreads the tensors over several
 * files and an index, which one atomic rename cannot replace (-EACCES).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors/st.h"

static void jb_str(struct mfs_buf *b, const char *s)
{
	mfs_buf_add(b, s, strlen(s));
}

static void jb_u64(struct mfs_buf *b, uint64_t v)
{
	char num[24];
	mfs_buf_add(b, num, (size_t)snprintf(num, sizeof(num), "%" PRIu64, v));
}

/* A JSON string as serde_json writes it: UTF-8 kept, controls escaped. */
static void jb_quote(struct mfs_buf *b, const char *s, size_t n)
{
	mfs_buf_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[8];
		switch (ch) {
		case '"': mfs_buf_add(b, "\\\"", 2); break;
		case '\\': mfs_buf_add(b, "\\\\", 2); break;
		case '\b': mfs_buf_add(b, "\\b", 2); break;
		case '\f': mfs_buf_add(b, "\\f", 2); break;
		case '\n': mfs_buf_add(b, "\\n", 2); break;
		case '\r': mfs_buf_add(b, "\\r", 2); break;
		case '\t': mfs_buf_add(b, "\\t", 2); break;
		default:
			if (ch < 0x20) {
				snprintf(esc, sizeof(esc), "\\u%04x", ch);
				mfs_buf_add(b, esc, 6);
			} else {
				mfs_buf_add(b, &s[i], 1);
			}
		}
	}
	mfs_buf_add(b, "\"", 1);
}

/* Tensor `t`'s new bytes: old ranges copied, changed ones from the stage. */
static void put_tensor(struct mfs_splice *s, struct mfs_source *src, const struct mfs_tensor *t,
                       const struct mfs_tensor_edit *te)
{
	if (!te || !te->data_changed) {
		mfs_source_splice(s, src, t->off, t->nbytes);
		return;
	}
	if (!te->runs || te->size != t->nbytes) {
		mfs_splice_fn(s, te->read, te->arg, 0, te->size);
		return;
	}
	uint64_t pos = 0;
	for (size_t i = 0; i < te->n_runs; i++) {
		const struct mfs_run *r = &te->runs[i];
		mfs_source_splice(s, src, t->off + pos, r->off - pos);
		mfs_splice_fn(s, te->read, te->arg, r->off, r->len);
		pos = r->off + r->len;
	}
	mfs_source_splice(s, src, t->off + pos, t->nbytes - pos);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The effective names (names[i], else the tensor's own) of the tensors
 * kept (not gone[i]) are all different. */
static int st_names_unique(const struct mfs_desc *d, const struct mfs_edit_set *e, char **names,
                           const bool *gone, char *err, size_t errlen, const char *display)
{
	const char **v = malloc((d->n_tensors + e->n_tensors + 1) * sizeof(*v));
	if (!v)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	size_t n = 0;
	for (size_t i = 0; i < d->n_tensors; i++)
		if (!gone[i])
			v[n++] = names[i] ? names[i] : d->tensors[i]->name;
	for (size_t i = 0; i < e->n_tensors; i++)
		if (e->tensors[i].added)
			v[n++] = e->tensors[i].t->name;
	qsort(v, n, sizeof(*v), cmp_name);
	int rc = 0;
	for (size_t i = 1; i < n && rc == 0; i++)
		if (strcmp(v[i - 1], v[i]) == 0)
			rc = mfs_errf(err, errlen, -EINVAL, display, "two tensors would be named "
			              "'%.200s'", v[i]);
	free(v);
	return rc;
}

int mfs_st_splice(struct mfs_splice *out, const struct mfs_model *m,
                  const struct mfs_edit_set *e, char *err, size_t errlen)
{
	const struct mfs_desc *d = &m->desc;
	const char *display = d->files[0].path;
	struct mfs_source *src = m->srcs[0];
	uint64_t size = d->files[0].size;
	struct mfs_buf jb = {0};
	const struct mfs_tensor_edit **by_id = NULL;
	int rc = 0;

	if (!mfs_st_data_off(m))
		return mfs_errf(err, errlen, -EACCES, display,
		                "sharded safetensors checkpoints cannot be edited");
	bool regen = e->props_changed || e->n_fields;  /* renames, deletions */
	/* Renames (graph fields of kind TENSOR_NAME): each tensor's new name,
	 * decoded; no two tensors kept may end with one name.  Deletions
	 * (TENSOR_DELETE): gone[id]. */
	char **names = calloc(d->n_tensors ? d->n_tensors : 1, sizeof(*names));
	bool *gone = calloc(d->n_tensors ? d->n_tensors : 1, sizeof(*gone));
	if (!names || !gone) {
		free(names);
		free(gone);
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	}
	for (size_t i = 0; i < e->n_fields && rc == 0; i++) {
		const struct mfs_field_edit *fe = &e->fields[i];
		uint64_t id = MFS_FIELD_I(fe->id);
		unsigned kind = MFS_FIELD_KIND(fe->id);
		if (kind == MFS_FIELD_TENSOR_ADD && !MFS_FIELD_J(fe->id) && id >= d->n_tensors) {
			regen = true;   /* the tensor comes as an edit, `added` */
			continue;
		}
		if ((kind != MFS_FIELD_TENSOR_NAME && kind != MFS_FIELD_TENSOR_DELETE) ||
		    MFS_FIELD_J(fe->id) || id >= d->n_tensors) {
			rc = mfs_errf(err, errlen, -EACCES, display, "a staged field safetensors "
			              "does not have");
			break;
		}
		if (kind == MFS_FIELD_TENSOR_DELETE) {
			if (fe->len != 1 || fe->text[0] != '1')
				rc = mfs_errf(err, errlen, -EINVAL, display, "tensor '%.200s': a "
				              "deletion is staged as '1'", d->tensors[id]->name);
			gone[id] = true;
			continue;
		}
		char *v = malloc(fe->len + 1);
		if (!v) {
			rc = -ENOMEM;
			break;
		}
		size_t vl = mfs_text_unescape(v, fe->text, fe->len);
		v[vl] = '\0';
		if (vl != strlen(v))
			rc = mfs_errf(err, errlen, -EINVAL, display, "tensor '%.200s': a new name "
			              "holds a NUL byte", d->tensors[id]->name);
		free(names[id]);
		names[id] = v;
	}
	if (rc == 0)
		rc = st_names_unique(d, e, names, gone, err, errlen, display);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < e->n_tensors; i++) {
		const struct mfs_tensor_edit *te = &e->tensors[i];
		if (te->t->id < d->n_tensors && gone[te->t->id])
			continue;       /* data staged, then the tensor deleted */
		if (te->added && te->t->id < d->n_tensors) {
			rc = mfs_errf(err, errlen, -EINVAL, display, "an added tensor with the id "
			              "of one of the file's");
			goto out;
		}
		if (te->added || te->dtype_changed || te->dims_changed || te->size != te->t->nbytes)
			regen = true;
		if ((te->added || te->dtype_changed) && !mfs_st_dtype_name(te->dtype)) {
			rc = mfs_errf(err, errlen, -EINVAL, display, "tensor '%.200s': "
			              "safetensors has no dtype %s", te->t->name,
			              mfs_dtype_name(te->dtype));
			goto out;
		}
	}

	/* Tensor ids are offset order (reader.c), as are the edits. */
	by_id = calloc(d->n_tensors ? d->n_tensors : 1, sizeof(*by_id));
	if (!by_id) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < e->n_tensors; i++)
		if (e->tensors[i].t->id < d->n_tensors && !gone[e->tensors[i].t->id])
			by_id[e->tensors[i].t->id] = &e->tensors[i];

	if (!regen) {
		/* Same layout: the header and untouched ranges are copied. */
		uint64_t pos = 0;
		for (uint64_t id = 0; id < d->n_tensors; id++) {
			const struct mfs_tensor *t = d->tensors[id];
			if (!by_id[id] || !by_id[id]->data_changed)
				continue;
			mfs_source_splice(out, src, pos, t->off - pos);
			put_tensor(out, src, t, by_id[id]);
			pos = t->off + t->nbytes;
		}
		mfs_source_splice(out, src, pos, size - pos);
		rc = out->err;
		goto out;
	}

	const struct mfs_meta *props = d->props;
	size_t n_props = d->n_props;
	mfs_buf_add(&jb, "{", 1);
	bool first = true;
	if (e->props_changed)
		n_props = e->n_props;
	if (n_props) {
		jb_str(&jb, "\"__metadata__\":{");
		for (size_t i = 0; i < n_props; i++) {
			const char *k = e->props_changed ? e->props[i].key : props[i].name;
			const char *v = e->props_changed ? e->props[i].value : props[i].value;
			size_t vl = e->props_changed ? e->props[i].len : props[i].len;
			if (i)
				mfs_buf_add(&jb, ",", 1);
			jb_quote(&jb, k, strlen(k));
			mfs_buf_add(&jb, ":", 1);
			jb_quote(&jb, v, vl);
		}
		mfs_buf_add(&jb, "}", 1);
		first = false;
	}
	uint64_t begin = 0;
	for (uint64_t id = 0; id < d->n_tensors; id++) {
		const struct mfs_tensor *t = d->tensors[id];
		const struct mfs_tensor_edit *te = by_id[id];
		if (gone[id])
			continue;
		int32_t dtype = te ? te->dtype : t->dtype;
		const int64_t *dims = te ? te->dims : t->dims;
		size_t rank = te ? te->rank : t->rank;
		uint64_t n = te ? te->size : t->nbytes;
		const char *sd = mfs_st_dtype_name(dtype);
		if (!sd) {
			rc = mfs_errf(err, errlen, -EINVAL, display, "tensor '%.200s': safetensors "
			              "has no dtype %s", t->name, mfs_dtype_name(dtype));
			goto out;
		}
		if (!first)
			mfs_buf_add(&jb, ",", 1);
		first = false;
		const char *name = names[id] ? names[id] : t->name;
		jb_quote(&jb, name, strlen(name));
		jb_str(&jb, ":{\"dtype\":\"");
		jb_str(&jb, sd);
		jb_str(&jb, "\",\"shape\":[");
		for (size_t k = 0; k < rank; k++) {
			if (k)
				mfs_buf_add(&jb, ",", 1);
			jb_u64(&jb, (uint64_t)dims[k]);
		}
		jb_str(&jb, "],\"data_offsets\":[");
		jb_u64(&jb, begin);
		mfs_buf_add(&jb, ",", 1);
		jb_u64(&jb, begin + n);
		jb_str(&jb, "]}");
		begin += n;
	}
	/* Added tensors (mkdir): appended after the file's, ascending ids. */
	for (size_t i = 0; i < e->n_tensors; i++) {
		const struct mfs_tensor_edit *te = &e->tensors[i];
		if (!te->added)
			continue;
		if (!first)
			mfs_buf_add(&jb, ",", 1);
		first = false;
		jb_quote(&jb, te->t->name, strlen(te->t->name));
		jb_str(&jb, ":{\"dtype\":\"");
		jb_str(&jb, mfs_st_dtype_name(te->dtype));
		jb_str(&jb, "\",\"shape\":[");
		for (size_t k = 0; k < te->rank; k++) {
			if (k)
				mfs_buf_add(&jb, ",", 1);
			jb_u64(&jb, (uint64_t)te->dims[k]);
		}
		jb_str(&jb, "],\"data_offsets\":[");
		jb_u64(&jb, begin);
		mfs_buf_add(&jb, ",", 1);
		jb_u64(&jb, begin + te->size);
		jb_str(&jb, "]}");
		begin += te->size;
	}
	mfs_buf_add(&jb, "}", 1);
	while (jb.len % 8)
		mfs_buf_add(&jb, " ", 1);
	if (jb.oom) {
		rc = -ENOMEM;
		goto out;
	}
	if (jb.len > ST_MAX_HEADER) {
		rc = mfs_errf(err, errlen, -EFBIG, display, "the new safetensors header would be "
		              "%zu bytes, over the limit of %llu", jb.len, ST_MAX_HEADER);
		goto out;
	}
	uint8_t lenb[8];
	for (int i = 0; i < 8; i++)
		lenb[i] = (uint8_t)((uint64_t)jb.len >> (8 * i));
	mfs_splice_bytes(out, lenb, 8);
	mfs_splice_take(out, jb.p, jb.len);
	jb.p = NULL;
	for (uint64_t id = 0; id < d->n_tensors; id++)
		if (!gone[id])
			put_tensor(out, src, d->tensors[id], by_id[id]);
	for (size_t i = 0; i < e->n_tensors; i++)
		if (e->tensors[i].added && e->tensors[i].size && e->tensors[i].read)
			mfs_splice_fn(out, e->tensors[i].read, e->tensors[i].arg, 0,
			              e->tensors[i].size);
	rc = out->err;
out:
	if (rc == -ENOMEM)
		rc = mfs_errf(err, errlen, rc, display, "out of memory");
	free(jb.p);
	free(by_id);
	for (size_t i = 0; names && i < d->n_tensors; i++)
		free(names[i]);
	free(names);
	free(gone);
	if (rc < 0)
		mfs_splice_free(out);
	return rc;
}

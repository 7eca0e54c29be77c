/*
 * codec/model.c — opening a model: its sources, its format, its reads.
 *
 * mfs_model_open() resolves the path, opens the model file as a byte source
 * (source/), asks the table of formats (format.c) which format its first
 * bytes are — never its name — and hands it to that format's reader, which
 * fills the description.  Afterwards the model is immutable, and reads go
 * to the sources the reader recorded, so any number of threads may read at
 * once.  Nothing here knows a format.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"

int mfs_model_add_file(struct mfs_model *m, const char *relpath, struct mfs_source *src)
{
	struct mfs_desc *d = &m->desc;
	if (d->n_files >= MFS_MAX_EXT_FILES + 1) {
		mfs_source_close(src);
		return -EFBIG;
	}
	/* Grow both arrays by doubling; the arena keeps old copies, which is
	 * fine for the small number of files a model has. */
	size_t n = d->n_files;
	if ((n & (n - 1)) == 0) {
		size_t cap = n ? n * 2 : 1;
		struct mfs_file *files = mfs_arena_array(m->arena, cap, sizeof(*files));
		struct mfs_source **srcs = realloc(m->srcs, cap * sizeof(*srcs));
		if (!files || !srcs) {
			if (srcs)
				m->srcs = srcs;
			mfs_source_close(src);
			return -ENOMEM;
		}
		if (n)
			memcpy(files, d->files, n * sizeof(*files));
		d->files = files;
		m->srcs = srcs;
	}
	struct mfs_file *f = &d->files[n];
	f->path = mfs_arena_strdup(m->arena, relpath);
	if (!f->path) {
		mfs_source_close(src);
		return -ENOMEM;
	}
	f->size = src->size;
	f->mtime_sec = src->mtime_sec;
	f->mtime_nsec = src->mtime_nsec;
	m->srcs[n] = src;
	d->n_files = n + 1;
	return (int)n;
}

/* FNV-1a, 64 bits: fast and good enough to tell layouts apart. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
	uint8_t b[8];
	mfs_put_le64(b, v);
	return fnv(h, b, 8);
}

static uint64_t fnv_str(uint64_t h, const char *s, size_t n)
{
	return fnv(fnv_u64(h, n), s, n);
}

static uint64_t fingerprint(const struct mfs_model *m)
{
	const struct mfs_desc *d = &m->desc;
	uint64_t h = 0xcbf29ce484222325ull;
	h = fnv_str(h, d->format, strlen(d->format));
	for (size_t i = 0; i < d->n_files; i++) {
		h = fnv_str(h, d->files[i].path, strlen(d->files[i].path));
		h = fnv_u64(h, d->files[i].size);
	}
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		const struct mfs_tensor *t = d->tensors[i];
		h = fnv_str(h, t->name, strlen(t->name));
		h = fnv_u64(h, (uint64_t)(uint32_t)t->dtype);
		h = fnv_u64(h, t->rank);
		for (size_t k = 0; k < t->rank; k++)
			h = fnv_u64(h, (uint64_t)t->dims[k]);
		h = fnv_u64(h, t->nbytes);
		h = fnv_u64(h, t->flags);
		h = fnv_u64(h, t->src);
		h = fnv_u64(h, t->mem ? UINT64_MAX : t->off);
	}
	for (size_t i = 0; i < d->n_meta; i++) {
		h = fnv_str(h, d->meta[i].name, strlen(d->meta[i].name));
		h = fnv_str(h, d->meta[i].value, d->meta[i].len);
	}
	for (size_t i = 0; i < d->n_props; i++) {
		h = fnv_str(h, d->props[i].name, strlen(d->props[i].name));
		h = fnv_str(h, d->props[i].value, d->props[i].len);
	}
	return h ? h : 1;
}

uint64_t mfs_model_layout(const struct mfs_model *m)
{
	return m->layout;
}

/*
 * The place's facts (a pack's ratio, say) as meta/<dir>/<name> entries after
 * the format's own, so that every view of meta/ shows them: the tree puts
 * a "<dir>/" name in its folder.
 */
static int place_meta(struct mfs_model *m)
{
	const struct mfs_place_ops *ops = m->place->ops;
	if (!ops->meta || !ops->meta_dir)
		return 0;
	char buf[256];
	const char *name;
	size_t n = 0;
	while (n < 64 && ops->meta(m->place, n, &name, buf, sizeof(buf)))
		n++;
	if (!n)
		return 0;
	struct mfs_meta *all = mfs_arena_array(m->arena, m->desc.n_meta + n, sizeof(*all));
	if (!all)
		return -ENOMEM;
	if (m->desc.n_meta)
		memcpy(all, m->desc.meta, m->desc.n_meta * sizeof(*all));
	for (size_t i = 0; i < n; i++) {
		size_t len = ops->meta(m->place, i, &name, buf, sizeof(buf));
		if (len >= sizeof(buf) - 1)
			len = sizeof(buf) - 2;
		buf[len++] = '\n';     /* meta values end in one (model.h) */
		size_t dl = strlen(ops->meta_dir), nl = strlen(name);
		char *full = mfs_arena_alloc(m->arena, dl + 1 + nl + 1);
		char *val = mfs_arena_alloc(m->arena, len + 1);
		if (!full || !val)
			return -ENOMEM;
		memcpy(full, ops->meta_dir, dl);
		full[dl] = '/';
		memcpy(full + dl + 1, name, nl + 1);
		memcpy(val, buf, len);
		all[m->desc.n_meta + i] = (struct mfs_meta){.name = full, .value = val, .len = len};
	}
	m->desc.meta = all;
	m->desc.n_meta += n;
	return 0;
}

bool mfs_model_path_rewrites(const char *path)
{
	return mfs_place_claimed_rewrites(path);
}

int mfs_model_open(mfs_model **out, const char *path, const struct mfs_open_opts *opts,
                   char *err, size_t errlen)
{
	(void)opts;
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	struct mfs_model *m = calloc(1, sizeof(*m));
	if (!m)
		return mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
	int rc;
	uint8_t *head = NULL;
	m->arena = mfs_arena_create();
	if (!m->arena) {
		rc = mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
		goto out;
	}

	struct mfs_source *src;
	const char *base;
	rc = mfs_place_open(&m->place, &src, &base, path, err, errlen);
	if (rc < 0)
		goto out;
	rc = mfs_model_add_file(m, base, src);
	if (rc < 0) {
		rc = mfs_errf(err, errlen, rc, path, "%s", strerror(-rc));
		goto out;
	}

	uint64_t size = src->size;
	size_t head_len = size < MFS_SNIFF_LEN ? (size_t)size : MFS_SNIFF_LEN;
	head = malloc(MFS_SNIFF_LEN);
	if (!head) {
		rc = mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
		goto out;
	}
	if (head_len && (rc = mfs_source_read(src, head, head_len, 0)) < 0) {
		rc = mfs_errf(err, errlen, -EIO, path, "cannot read: %s", strerror(-rc));
		goto out;
	}
	if (size == 0) {
		rc = mfs_errf(err, errlen, -EUCLEAN, path, "empty file, not a model");
		goto out;
	}
	m->fmt = mfs_format_sniff(head, head_len, size);
	if (!m->fmt) {
		rc = mfs_errf(err, errlen, -EUCLEAN, path, "not a model of any known format");
		goto out;
	}
	m->head = head;
	m->head_len = head_len;
	rc = m->fmt->open(m, path, err, errlen);
	/* -ENOEXEC: not that format after all; undo and try the next (format.h). */
	char first_err[1024] = "";
	while (rc == -ENOEXEC) {
		if (!first_err[0] && err && errlen)
			snprintf(first_err, sizeof(first_err), "%s", err);
		if (m->fmt->close)
			m->fmt->close(m);
		m->priv = NULL;
		for (size_t i = 1; i < m->desc.n_files; i++)
			mfs_source_close(m->srcs[i]);
		struct mfs_file *files = m->desc.files;
		memset(&m->desc, 0, sizeof(m->desc));
		m->desc.files = files;
		m->desc.n_files = 1;
		m->fmt = mfs_format_sniff_next(head, head_len, size, m->fmt);
		if (!m->fmt) {
			if (err && errlen)
				snprintf(err, errlen, "%s", first_err);
			rc = -EUCLEAN;
			break;
		}
		if (err && errlen)
			err[0] = '\0';
		rc = m->fmt->open(m, path, err, errlen);
	}
	m->head = NULL;
	m->head_len = 0;
	if (rc < 0)
		goto out;
	m->desc.format = m->fmt->name;
	m->desc.flags = m->fmt->flags;
	if ((rc = place_meta(m)) < 0) {
		rc = mfs_errf(err, errlen, rc, path, "out of memory");
		goto out;
	}
	m->layout = fingerprint(m);
	free(head);
	*out = m;
	return 0;
out:
	free(head);
	mfs_model_close(m);
	return rc;
}

void mfs_model_close(mfs_model *m)
{
	if (!m)
		return;
	if (m->fmt && m->fmt->close)
		m->fmt->close(m);
	for (size_t i = 0; i < m->desc.n_files; i++)
		mfs_source_close(m->srcs[i]);
	free(m->srcs);
	mfs_place_close(m->place);
	mfs_arena_destroy(m->arena);
	free(m);
}

int mfs_model_open_beneath(struct mfs_model *m, struct mfs_source **out, const char *location,
                           char *err, size_t errlen, const char *display)
{
	return mfs_place_open_beneath(m->place, out, location, err, errlen, display);
}

const struct mfs_desc *mfs_model_desc(const mfs_model *m)
{
	return &m->desc;
}

ssize_t mfs_tensor_read(const mfs_model *m, const struct mfs_tensor *t, void *buf, size_t len,
                        uint64_t off)
{
	if (off >= t->nbytes)
		return 0;
	if (len > t->nbytes - off)
		len = (size_t)(t->nbytes - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	if (t->mem) {
		memcpy(buf, t->mem + off, len);
		return (ssize_t)len;
	}
	if (!(t->flags & MFS_TENSOR_CONTIGUOUS))
		return m->fmt->tensor_read ? m->fmt->tensor_read(m, t, buf, len, off) : -EIO;
	if (t->src >= m->desc.n_files)
		return -EIO;
	int rc = mfs_source_read(m->srcs[t->src], buf, len, t->off + off);
	return rc < 0 ? rc : (ssize_t)len;
}

int mfs_tensor_span(struct mfs_span *out, const mfs_model *m, const struct mfs_tensor *t,
                    uint64_t off)
{
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (t->mem) {
		out->mem = t->mem + (off < t->nbytes ? off : t->nbytes);
		return 0;
	}
	if (!(t->flags & MFS_TENSOR_CONTIGUOUS) || t->src >= m->desc.n_files)
		return -EOPNOTSUPP;
	out->fd = mfs_source_fd(m->srcs[t->src]);
	out->off = t->off + off;
	return out->fd >= 0 ? 0 : -EOPNOTSUPP;
}

ssize_t mfs_file_read(const mfs_model *m, size_t idx, void *buf, size_t len, uint64_t off)
{
	if (idx >= m->desc.n_files)
		return -EINVAL;
	uint64_t size = m->desc.files[idx].size;
	if (off >= size)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	int rc = mfs_source_read(m->srcs[idx], buf, len, off);
	return rc < 0 ? rc : (ssize_t)len;
}

int mfs_file_span(struct mfs_span *out, const mfs_model *m, size_t idx, uint64_t off)
{
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (idx >= m->desc.n_files)
		return -EINVAL;
	out->fd = mfs_source_fd(m->srcs[idx]);
	out->off = off;
	return out->fd >= 0 ? 0 : -EOPNOTSUPP;
}

int mfs_file_stat(struct stat *out, const mfs_model *m, size_t idx)
{
	if (idx >= m->desc.n_files)
		return -EINVAL;
	return mfs_source_stat(m->srcs[idx], out);
}

/* ------------------------------------------------------------ value renames */

bool mfs_field_is_name(uint64_t id)
{
	unsigned k = MFS_FIELD_KIND(id);
	return !MFS_FIELD_J(id) && (k == MFS_FIELD_TENSOR_NAME || k == MFS_FIELD_INPUT_NAME ||
	                            k == MFS_FIELD_OUTPUT_NAME || k == MFS_FIELD_VALUE_NAME);
}

const char *mfs_desc_field_name(const struct mfs_desc *d, uint64_t id)
{
	const struct mfs_graph *g = d->graph;
	uint64_t i = MFS_FIELD_I(id);
	if (!mfs_field_is_name(id) || !g)
		return NULL;
	switch (MFS_FIELD_KIND(id)) {
	case MFS_FIELD_TENSOR_NAME:
		return i < d->n_tensors ? d->tensors[i]->name : NULL;
	case MFS_FIELD_INPUT_NAME:
		return i < g->n_inputs ? g->inputs[i].name : NULL;
	case MFS_FIELD_OUTPUT_NAME:
		return i < g->n_outputs ? g->outputs[i].name : NULL;
	default:
		return i < g->n_values ? g->values[i].name : NULL;
	}
}

uint64_t mfs_desc_name_field(const struct mfs_desc *d, uint64_t id)
{
	const struct mfs_graph *g = d->graph;
	const char *s = mfs_desc_field_name(d, id);
	if (!s || !(d->flags & MFS_DESC_GRAPH))
		return id;
	for (size_t i = 0; i < g->n_inputs && i <= MFS_FIELD_I_MAX; i++)
		if (!(g->input_is_init && g->input_is_init[i]) && g->inputs[i].name &&
		    !strcmp(g->inputs[i].name, s))
			return MFS_FIELD_ID(MFS_FIELD_INPUT_NAME, i, 0);
	for (size_t i = 0; i < g->n_inits; i++)
		if (!strcmp(g->inits[i]->name, s) && g->inits[i]->id <= MFS_FIELD_I_MAX)
			return MFS_FIELD_ID(MFS_FIELD_TENSOR_NAME, g->inits[i]->id, 0);
	for (size_t i = 0; i < g->n_outputs && i <= MFS_FIELD_I_MAX; i++)
		if (g->outputs[i].name && !strcmp(g->outputs[i].name, s))
			return MFS_FIELD_ID(MFS_FIELD_OUTPUT_NAME, i, 0);
	for (size_t i = 0; i < g->n_values && i <= MFS_FIELD_I_MAX; i++)
		if (g->values[i].name && !strcmp(g->values[i].name, s))
			return MFS_FIELD_ID(MFS_FIELD_VALUE_NAME, i, 0);
	return id;
}

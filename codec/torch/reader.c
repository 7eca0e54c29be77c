/*
 * codec/torch/reader.c — PyTorch torch.save checkpoints, read without
 * running their pickle.
 *
 * A torch.save file (the zip format, torch >= 1.6) is a zip archive whose
 * members share one top directory <p>/: <p>/data.pkl, the pickled object,
 * and one member <p>/data/<key> per storage, raw little-endian bytes
 * (doc/formats.md §3; zip.c reads the container).  Opening one reads the
 * central directory and data.pkl, never a storage: pickle.c turns data.pkl
 * into values without calling anything, and this file walks them:
 *
 *   - a dict (OrderedDict), list or tuple is a level of names: its keys
 *     (strings as they are, ints in decimal) or indices joined by '.', so
 *     {"model": {"layer1.0.conv1.weight": t}} names the tensor
 *     "model.layer1.0.conv1.weight" (weights/model/layer1/0/conv1/weight/);
 *   - a tensor is a tensor of that name: its storage is the member
 *     data/<key>, its bytes the elements offset + sum(i_k * stride_k).  One
 *     that is C-contiguous is the byte range of the member it covers
 *     (MFS_TENSOR_CONTIGUOUS, zero-copy); another (a transpose, a slice with
 *     a step) is gathered in row-major order by mfs_torch_tensor_read();
 *     two tensors on one storage (tied weights) read the same bytes;
 *   - a number, bool, None, string or bytes is a prop (meta/props/<name>):
 *     ints in decimal, floats in the shortest form that reads back the same
 *     double, True/False/None as Python writes them, strings as they are;
 *     a global used as a value (a dtype) is its "module.name".
 *
 * meta: format ("torch", "torchscript" for a TorchScript archive),
 * pickle_globals (every global the pickle names, one per line, in the order
 * they first appear).  A TorchScript archive (a <p>/constants.pkl member)
 * is not unpickled (its pickles name the classes of its code): its stored
 * members are shown as uint8 tensors named after their paths, read-only,
 * and it has no meta/pickle_globals.  Its deflated members (torch deflates
 * the code/ files and their debug pickles) are shown inflated: checked at
 * open, inflated when first read (inflate.c); members of another method
 * are not shown.
 *
 * RULES beyond those of zip.c and pickle.c (each a line, -EUCLEAN):
 * exactly one <p>/data.pkl, stored, at most PK_MAX_PICKLE bytes; a
 * byteorder member, if present, says "little"; every storage key names a
 * stored member data/<key> of at least numel x element bytes; every
 * tensor's extent, (offset + sum((size_k - 1) x stride_k) + 1) x element
 * size, computed without overflow, lies inside its storage; a dict key is
 * a string, an int, a bool or None; nesting at most PK_MAX_DEPTH; the walk
 * visits at most 4 x the values the pickle made (a value shared many times
 * over cannot blow up).  Not read: the legacy format (torch.save with
 * _use_new_zipfile_serialization=False), refused with a message that
 * names it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "torch/torch.h"

/* A growing array, malloc'd; copied into the arena at the end. */
struct vec {
	void *v;
	size_t n, cap, size;
};

static void *vec_push(struct vec *x)
{
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 16;
		void *v = realloc(x->v, cap * x->size);
		if (!v)
			return NULL;
		x->v = v;
		x->cap = cap;
	}
	return (char *)x->v + x->size * x->n++;
}

struct walk {
	struct mfs_model *m;
	struct tt_state *st;
	const char *prefix;             /* "<p>/" of the archive being read */
	const struct tz_archive *zip;   /* that archive */
	unsigned src;                   /* and its source */
	struct mfs_buf globals;         /* "module.name\n" lines, every archive's */
	struct vec tens;                /* struct mfs_tensor * */
	struct vec infos;               /* struct tt_info */
	struct vec props;               /* struct mfs_meta */
	uint64_t visits, max_visits;
	const char *display;
	char *err;
	size_t errlen;
};

static void *arena_copy(struct mfs_arena *a, const void *src, size_t n, size_t size)
{
	void *p = mfs_arena_array(a, n ? n : 1, size);
	if (p && n)
		memcpy(p, src, n * size);
	return p;
}

/* A double as the shortest text that reads back to it (Python's repr). */
static void fmt_double(char *buf, size_t len, double d)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	if (!strchr(buf, '.') && !strchr(buf, 'e') && !strchr(buf, 'n') && !strchr(buf, 'i'))
		strncat(buf, ".0", len - strlen(buf) - 1);
}

static int add_prop(struct walk *w, const char *name, const char *value, size_t len)
{
	struct mfs_meta *e = vec_push(&w->props);
	if (!e)
		return mfs_errf(w->err, w->errlen, -ENOMEM, w->display, "out of memory");
	e->name = mfs_arena_strdup(w->m->arena, name);
	e->value = mfs_arena_strndup(w->m->arena, value, len);
	e->len = len;
	if (!e->name || !e->value)
		return mfs_errf(w->err, w->errlen, -ENOMEM, w->display, "out of memory");
	return 0;
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

static int add_tensor(struct walk *w, const char *name, const struct pk_tensor *pt)
{
	struct mfs_model *m = w->m;
	const struct pk_storage *sv = pt->storage;
	char mname[TZ_MAX_NAME + 64];
	snprintf(mname, sizeof(mname), "%sdata/%s", w->prefix, sv->key);
	const struct tz_entry *e = tz_find(w->zip, mname);
	if (!e)
		return mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
		                "tensor '%.200s': storage member '%.200s' is missing", name, mname);
	if (e->method != 0)
		return mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
		                "tensor '%.200s': storage member '%.200s' is compressed (method %u); "
		                "only stored members are read", name, mname, e->method);
	unsigned bits = mfs_dtype_bits(pt->dtype);
	unsigned esize = bits / 8;
	if (!esize || bits % 8)
		return mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
		                "tensor '%.200s': dtype %s is not supported", name,
		                mfs_dtype_name(pt->dtype));
	uint64_t sbytes;
	unsigned sesize = sv->dtype == MFS_DT_UNDEFINED ? 1 : mfs_dtype_bits(sv->dtype) / 8;
	if (!mul_ok((uint64_t)sv->numel, sesize, &sbytes) || sbytes > e->usize)
		return mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
		                "tensor '%.200s': storage of %" PRId64 " elements does not fit in "
		                "member '%.200s' of %" PRIu64 " bytes", name, sv->numel, mname,
		                e->usize);
	uint64_t numel = 1, maxidx = 0;
	bool ovf = false, contig = true;
	uint64_t expect = 1;
	for (size_t k = pt->rank; k-- > 0;) {
		uint64_t d = (uint64_t)pt->dims[k], s = (uint64_t)pt->strides[k], t;
		ovf |= !mul_ok(numel, d, &numel);
		if (d) {
			ovf |= !mul_ok(d - 1, s, &t);
			ovf |= __builtin_add_overflow(maxidx, t, &maxidx);
		}
		if (d != 1 && s != expect)
			contig = false;
		ovf |= !mul_ok(expect, d ? d : 1, &expect);
	}
	uint64_t nbytes = 0, end = 0, start = 0;
	ovf |= !mul_ok(numel, esize, &nbytes);
	ovf |= !mul_ok((uint64_t)pt->offset, esize, &start);
	if (numel) {
		uint64_t last;
		ovf |= __builtin_add_overflow((uint64_t)pt->offset, maxidx, &last);
		ovf |= __builtin_add_overflow(last, 1, &last);
		ovf |= !mul_ok(last, esize, &end);
	}
	if (ovf || end > sbytes || (numel == 0 && start > sbytes))
		return mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
		                "tensor '%.200s': its elements run past its storage of %" PRIu64
		                " bytes", name, sbytes);

	/* A view with stride 0 (an expand) can name far more bytes than it has. */
	uint64_t fsize = m->desc.files[w->src].size;
	if (!contig && numel && nbytes / 16 > fsize + (1u << 20))
		return mfs_errf(w->err, w->errlen, -EFBIG, w->display,
		                "tensor '%.200s': a view of %" PRIu64 " bytes, more than 16 times "
		                "its file", name, nbytes);
	struct mfs_tensor *t = mfs_arena_alloc(m->arena, sizeof(*t));
	if (!t)
		return mfs_errf(w->err, w->errlen, -ENOMEM, w->display, "out of memory");
	t->name = mfs_arena_strdup(m->arena, name);
	t->dims = arena_copy(m->arena, pt->dims, pt->rank, sizeof(int64_t));
	if (!t->name || !t->dims)
		return mfs_errf(w->err, w->errlen, -ENOMEM, w->display, "out of memory");
	t->dtype = pt->dtype;
	t->rank = pt->rank;
	t->nbytes = nbytes;
	t->src = w->src;
	t->off = e->data_off + start;
	if (contig || numel == 0)
		t->flags |= MFS_TENSOR_CONTIGUOUS;
	struct mfs_tensor **slot = vec_push(&w->tens);
	struct tt_info *ti = vec_push(&w->infos);
	if (!slot || !ti)
		return mfs_errf(w->err, w->errlen, -ENOMEM, w->display, "out of memory");
	*slot = t;
	memset(ti, 0, sizeof(*ti));
	ti->src = w->src;
	ti->base = e->data_off;
	ti->extent = sbytes;
	ti->lo = e->data_off + start;
	ti->hi = numel ? e->data_off + end : ti->lo;
	ti->offset = pt->offset;
	ti->esize = esize;
	memcpy(ti->strides, pt->strides, pt->rank * sizeof(int64_t));
	ti->member = e;
	return 0;
}

/* The text of a key of a dict, or -1 when it has none. */
static int key_text(const struct pk_val *k, char *buf, size_t len, const char **out, size_t *olen)
{
	switch (k->kind) {
	case PK_STR:
		*out = k->s;
		*olen = k->len;
		return memchr(k->s, 0, k->len) ? -1 : 0;
	case PK_INT:
		snprintf(buf, len, "%" PRId64, k->i);
		break;
	case PK_BOOL:
		snprintf(buf, len, "%s", k->b ? "True" : "False");
		break;
	case PK_NONE:
		snprintf(buf, len, "None");
		break;
	default:
		return -1;
	}
	*out = buf;
	*olen = strlen(buf);
	return 0;
}

static int walk(struct walk *w, const struct pk_val *v, struct mfs_buf *path, unsigned depth)
{
	if (++w->visits > w->max_visits)
		return mfs_errf(w->err, w->errlen, -EFBIG, w->display,
		                "pickle: its values refer to each other more than %" PRIu64 " times",
		                w->max_visits);
	if (depth > PK_MAX_DEPTH)
		return mfs_errf(w->err, w->errlen, -EFBIG, w->display,
		                "pickle: values nested deeper than %u (a cycle?) at '%.200s'",
		                PK_MAX_DEPTH, path->p ? path->p : "");
	if (path->oom)
		return mfs_errf(w->err, w->errlen, -ENOMEM, w->display, "out of memory");
	const char *name = path->len ? path->p : "";
	char num[64];
	int rc = 0;
	switch (v->kind) {
	case PK_DICT:
	case PK_LIST:
	case PK_TUPLE:
	case PK_SET:
		for (size_t i = 0; i < v->n && rc == 0; i++) {
			size_t keep = path->len;
			const char *ks;
			size_t kl;
			if (v->kind == PK_DICT) {
				if (key_text(v->items[i], num, sizeof(num), &ks, &kl) < 0)
					return mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
					                "pickle: a key of dict '%.200s' is not a string, "
					                "an int, a bool or None", name);
			} else {
				snprintf(num, sizeof(num), "%zu", i);
				ks = num;
				kl = strlen(num);
			}
			if (path->len)
				mfs_buf_add(path, ".", 1);
			mfs_buf_add(path, ks, kl);
			rc = walk(w, v->kind == PK_DICT ? v->vals[i] : v->items[i], path, depth + 1);
			path->len = keep;
			if (path->p)
				path->p[keep] = '\0';
		}
		return rc;
	case PK_TENSOR:
		return add_tensor(w, path->len ? name : "tensor", v->t);
	case PK_STORAGE:
		snprintf(num, sizeof(num), "storage %.40s", v->sto->key);
		return add_prop(w, path->len ? name : "value", num, strlen(num));
	case PK_NONE:
		return add_prop(w, path->len ? name : "value", "None", 4);
	case PK_BOOL:
		return add_prop(w, path->len ? name : "value", v->b ? "True" : "False", v->b ? 4 : 5);
	case PK_INT:
		snprintf(num, sizeof(num), "%" PRId64, v->i);
		return add_prop(w, path->len ? name : "value", num, strlen(num));
	case PK_FLOAT:
		fmt_double(num, sizeof(num), v->f);
		return add_prop(w, path->len ? name : "value", num, strlen(num));
	case PK_STR:
	case PK_BYTES:
	case PK_GLOBAL:
		return add_prop(w, path->len ? name : "value", v->s, v->len);
	default:
		return mfs_errf(w->err, w->errlen, -EUCLEAN, w->display,
		                "pickle: a value of kind %u at '%.200s'", v->kind, name);
	}
}

/* ------------------------------------------------------------ open */

static int read_member(struct mfs_model *m, unsigned src, const struct tz_entry *e, uint64_t max,
                       uint8_t **out, const char *display, char *err, size_t errlen)
{
	if (e->method != 0)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "member '%.200s' is compressed (method %u); only stored members are "
		                "read", e->name, e->method);
	if (e->usize > max)
		return mfs_errf(err, errlen, -EFBIG, display,
		                "member '%.200s' of %" PRIu64 " bytes exceeds the limit of %" PRIu64,
		                e->name, e->usize, max);
	uint8_t *buf = malloc(e->usize ? (size_t)e->usize : 1);
	if (!buf)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	int rc = e->usize ? mfs_source_read(m->srcs[src], buf, (size_t)e->usize, e->data_off) : 0;
	if (rc < 0) {
		free(buf);
		return mfs_errf(err, errlen, rc, display, "cannot read: %s", strerror(-rc));
	}
	*out = buf;
	return 0;
}

/* The archive's top directory: the one <p>/ that holds data.pkl. */
static int find_prefix(const struct tz_archive *z, char *prefix, size_t len, bool *torchscript,
                       const char *display, char *err, size_t errlen)
{
	size_t found = 0;
	for (size_t i = 0; i < z->n; i++) {
		const char *s = z->ents[i].name, *sl = strchr(s, '/');
		if (!sl || strcmp(sl + 1, "data.pkl") != 0 || sl == s)
			continue;
		if (found++ == 0)
			snprintf(prefix, len, "%.*s/", (int)(sl - s), s);
	}
	if (found == 0)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "zip archive without a <dir>/data.pkl member: not a torch.save file");
	if (found > 1)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "zip archive with %zu <dir>/data.pkl members", found);
	char cname[TZ_MAX_NAME + 32];
	snprintf(cname, sizeof(cname), "%sconstants.pkl", prefix);
	*torchscript = tz_find(z, cname) != NULL;
	return 0;
}

static int by_lo(const void *a, const void *b, void *arg)
{
	const struct tt_info *infos = arg;
	const struct tt_info *x = &infos[*(const size_t *)a];
	const struct tt_info *y = &infos[*(const size_t *)b];
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/*
 * Editable (data only, writer.c): a contiguous tensor with bytes that no
 * other tensor touches.  Sorted by first byte, a tensor overlaps another
 * when it starts before the furthest end seen so far.
 */
static void mark_editable(struct mfs_tensor **ts, const struct tt_info *ti, size_t n)
{
	size_t *ord = malloc((n ? n : 1) * sizeof(*ord));
	bool *shared = calloc(n ? n : 1, sizeof(*shared));
	if (!ord || !shared) {
		free(ord);
		free(shared);
		return;         /* nothing editable: a safe answer */
	}
	for (size_t i = 0; i < n; i++)
		ord[i] = i;
	qsort_r(ord, n, sizeof(*ord), by_lo, (void *)ti);
	uint64_t reach = 0;
	size_t reach_i = 0;
	for (size_t k = 0; k < n; k++) {
		size_t i = ord[k];
		if (ti[i].hi == ti[i].lo)
			continue;
		if (k && reach > ti[i].lo) {
			shared[i] = true;
			shared[reach_i] = true;
		}
		if (ti[i].hi > reach) {
			reach = ti[i].hi;
			reach_i = i;
		}
	}
	for (size_t i = 0; i < n; i++)
		if ((ts[i]->flags & MFS_TENSOR_CONTIGUOUS) && ts[i]->nbytes && !shared[i])
			ts[i]->flags |= MFS_TENSOR_EDITABLE | MFS_TENSOR_DATA_ONLY;
	free(ord);
	free(shared);
}

static int finish(struct mfs_model *m, struct walk *w, const char *format, const char *shards,
                  size_t slen)
{
	struct mfs_desc *d = &m->desc;
	struct mfs_graph *g = mfs_arena_alloc(m->arena, sizeof(*g));
	struct mfs_meta *meta = mfs_arena_array(m->arena, 3, sizeof(*meta));
	if (!g || !meta || w->globals.oom)
		return -ENOMEM;
	size_t n = w->tens.n, nm = 0;
	g->name = mfs_arena_strdup(m->arena, "");
	g->inits = arena_copy(m->arena, w->tens.v, n, sizeof(struct mfs_tensor *));
	d->tensors = arena_copy(m->arena, w->tens.v, n, sizeof(struct mfs_tensor *));
	d->props = arena_copy(m->arena, w->props.v, w->props.n, sizeof(struct mfs_meta));
	w->st->tens = arena_copy(m->arena, w->infos.v, n, sizeof(struct tt_info));
	if (!g->name || !g->inits || !d->tensors || !d->props || !w->st->tens)
		return -ENOMEM;
	meta[nm].name = "format";
	meta[nm].value = mfs_arena_printf(m->arena, "%s\n", format);
	meta[nm++].len = strlen(format) + 1;
	if (!w->st->torchscript) {      /* TorchScript: nothing unpickled */
		meta[nm].name = "pickle_globals";
		meta[nm].value = mfs_arena_strndup(m->arena, w->globals.p ? w->globals.p : "",
		                                   w->globals.len);
		meta[nm++].len = w->globals.len;
	}
	if (shards) {
		meta[nm].name = "shards";
		meta[nm].value = mfs_arena_strndup(m->arena, shards, slen);
		meta[nm++].len = slen;
	}
	for (size_t i = 0; i < nm; i++)
		if (!meta[i].value)
			return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		d->tensors[i]->id = i;
	if (!w->st->torchscript && !shards)
		mark_editable(d->tensors, w->st->tens, n);
	g->n_inits = n;
	d->n_tensors = n;
	d->n_props = w->props.n;
	d->meta = meta;
	d->n_meta = nm;
	d->graph = g;
	return 0;
}

/* A TorchScript archive: every member a read-only uint8 tensor, nothing unpickled. */
static int open_torchscript(struct mfs_model *m, struct walk *w)
{
	uint64_t budget = TZ_MAX_INFLATE_ALL;
	for (size_t i = 0; i < w->zip->n; i++) {
		const struct tz_entry *e = &w->zip->ents[i];
		bool deflated = e->method == TZ_DEFLATE;
		if (e->method != 0 && !deflated)
			continue;       /* another compression (never written by torch) */
		if (deflated) {
			int rc = tz_inflate_check(m->srcs[w->src], e, &budget, w->display, w->err,
			                          w->errlen);
			if (rc < 0)
				return rc;
		}
		struct mfs_tensor *t = mfs_arena_alloc(m->arena, sizeof(*t));
		int64_t *dims = mfs_arena_alloc(m->arena, sizeof(int64_t));
		struct mfs_tensor **slot = vec_push(&w->tens);
		struct tt_info *ti = vec_push(&w->infos);
		if (!t || !dims || !slot || !ti)
			return -ENOMEM;
		t->name = mfs_arena_strdup(m->arena, e->name);
		if (!t->name)
			return -ENOMEM;
		dims[0] = (int64_t)e->usize;
		t->dims = dims;
		t->rank = 1;
		t->dtype = MFS_DT_UINT8;
		t->nbytes = e->usize;
		t->off = deflated ? 0 : e->data_off;
		t->flags = deflated ? 0 : MFS_TENSOR_CONTIGUOUS;
		*slot = t;
		memset(ti, 0, sizeof(*ti));
		ti->deflated = deflated;
		ti->src = w->src;
		ti->base = e->data_off;
		ti->extent = e->usize;
		ti->esize = 1;
		ti->strides[0] = 1;
		ti->member = e;
	}
	return 0;
}

/*
 * Read one torch.save archive, source `src` (already open in w->m), into
 * `z` and the walk: its directory, its data.pkl unpickled and walked.
 * `torchscript_ok`: a TorchScript archive is shown as its members (a
 * single file), else refused (a shard).  `first_shard`: a container that
 * is no torch.save zip (no readable directory, no data.pkl) is -ENOEXEC,
 * the index handed back to the table (open_index).
 */
static int load_archive(struct walk *w, unsigned src, struct tz_archive *z, bool torchscript_ok,
                        bool first_shard, const char *display)
{
	struct mfs_model *m = w->m;
	char *err = w->err;
	size_t errlen = w->errlen;
	const char *saved = w->display;
	char prefix[TZ_MAX_NAME + 2], name[TZ_MAX_NAME + 32], pdisplay[1024];
	uint8_t *pkl = NULL;
	struct mfs_arena *tmp = NULL;
	struct mfs_buf path = {0};
	bool ts = false;
	mfs_source_advise_random(m->srcs[src], true);
	int rc = tz_open(z, m->srcs[src], display, err, errlen);
	mfs_source_advise_random(m->srcs[src], false);
	if (rc < 0)
		return first_shard && rc == -EUCLEAN ? -ENOEXEC : rc;
	w->zip = z;
	w->src = src;
	w->prefix = prefix;
	w->display = display;
	rc = find_prefix(z, prefix, sizeof(prefix), &ts, display, err, errlen);
	if (rc < 0) {
		if (first_shard)
			rc = -ENOEXEC;
		goto out;
	}
	if (ts) {
		if (!torchscript_ok) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "a TorchScript archive cannot be a shard");
			goto out;
		}
		w->st->torchscript = true;
		rc = open_torchscript(m, w);
		if (rc == -ENOMEM)
			rc = mfs_errf(err, errlen, rc, display, "out of memory");
		goto out;
	}
	snprintf(name, sizeof(name), "%sbyteorder", prefix);
	const struct tz_entry *bo = tz_find(z, name);
	if (bo) {
		uint8_t *b = NULL;
		rc = read_member(m, src, bo, 64, &b, display, err, errlen);
		if (rc < 0)
			goto out;
		bool little = bo->usize == 6 && memcmp(b, "little", 6) == 0;
		free(b);
		if (!little) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "member '%.200s' does not say \"little\": big-endian checkpoints "
			              "are not supported", bo->name);
			goto out;
		}
	}
	snprintf(name, sizeof(name), "%sdata.pkl", prefix);
	const struct tz_entry *pe = tz_find(z, name);
	rc = read_member(m, src, pe, PK_MAX_PICKLE, &pkl, display, err, errlen);
	if (rc < 0)
		goto out;
	tmp = mfs_arena_create();
	if (!tmp) {
		rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
		goto out;
	}
	snprintf(pdisplay, sizeof(pdisplay), "%s: %.200s", display, name);
	struct pk_result res;
	rc = pk_load(&res, tmp, pkl, (size_t)pe->usize, pdisplay, err, errlen);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < res.n_globals; i++) {
		const char *g = res.globals[i];
		size_t gl = strlen(g);
		bool dup = false;
		for (const char *p = w->globals.p; p && *p && !dup; p = strchr(p, '\n') + 1)
			dup = strncmp(p, g, gl) == 0 && p[gl] == '\n';
		if (!dup) {
			mfs_buf_add(&w->globals, g, gl);
			mfs_buf_add(&w->globals, "\n", 1);
		}
	}
	w->visits = 0;
	w->max_visits = 4 * (pe->usize + 16);
	rc = walk(w, res.top, &path, 0);
out:
	w->display = saved;
	w->prefix = NULL;
	free(pkl);
	free(path.p);
	mfs_arena_destroy(tmp);
	return rc;
}

static bool looks_like_json(const uint8_t *head, size_t len)
{
	size_t i = 0;
	while (i < len && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r'))
		i++;
	return i < len && head[i] == '{';
}

/* A shard name: a plain relative path below the index's directory. */
static bool shard_name_ok(const char *s)
{
	if (!s[0] || s[0] == '/' || strlen(s) >= 4096)
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	for (const char *p = s;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (!e)
			return true;
		p = e + 1;
	}
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

#define TT_MAX_INDEX    100000000ull    /* bytes of a *.bin.index.json, as safetensors' */

/*
 * A sharded checkpoint: the index (files[0], JSON {"metadata": {...},
 * "weight_map": {tensor: shard}}) names torch.save shards beside it.  Each
 * shard is opened beneath the index's directory (files[1] on, sorted by
 * name) and read as a single file is; its tensors must be exactly the
 * names the index maps to it.  A first shard that is no torch.save zip
 * hands the index back to the table (-ENOEXEC: another format's index,
 * whose row's message is then the one reported).  Props: the
 * index's metadata (strings as they are, other values as compact JSON),
 * then each shard's plain values.  Nothing of a sharded checkpoint is
 * editable: one commit replaces one file.
 */
static int open_index(struct mfs_model *m, struct walk *w, const char *display)
{
	char *err = w->err;
	size_t errlen = w->errlen;
	struct tt_state *st = w->st;
	uint64_t size = m->desc.files[0].size;
	char *buf = NULL, *list = NULL, sdisplay[1024];
	const char **shards = NULL;
	json_t *root = NULL;
	size_t list_len = 0;
	int rc;
	if (size > TT_MAX_INDEX)
		return mfs_errf(err, errlen, -EFBIG, display, "index of %" PRIu64 " bytes exceeds "
		                "the limit of %llu", size, TT_MAX_INDEX);
	buf = malloc(size ? (size_t)size : 1);
	if (!buf)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	rc = mfs_source_read(m->srcs[0], buf, (size_t)size, 0);
	if (rc < 0) {
		rc = mfs_errf(err, errlen, rc, display, "cannot read: %s", strerror(-rc));
		goto out;
	}
	json_error_t je;
	root = json_loadb(buf, (size_t)size, JSON_REJECT_DUPLICATES, &je);
	const json_t *wm = root ? json_object_get(root, "weight_map") : NULL;
	if (!json_is_object(wm)) {
		rc = mfs_errf(err, errlen, -EUCLEAN, display, "index: %s",
		              root ? "no \"weight_map\" object" : je.text);
		goto out;
	}
	size_t n = json_object_size(wm), n_shards = 0;
	shards = calloc(n ? n : 1, sizeof(*shards));
	if (!shards) {
		rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)wm, key, v) {
		const char *s = json_string_value(v);
		if (!s || !shard_name_ok(s)) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display, "index: shard of tensor '%.200s' "
			              "is not a plain relative path inside the index's directory", key);
			goto out;
		}
		shards[n_shards++] = s;
	}
	qsort(shards, n_shards, sizeof(*shards), strp_cmp);
	size_t u = 0;
	for (size_t i = 0; i < n_shards; i++)
		if (!u || strcmp(shards[u - 1], shards[i]) != 0)
			shards[u++] = shards[i];
	n_shards = u;
	st->shards = calloc(n_shards ? n_shards : 1, sizeof(*st->shards));
	if (!st->shards) {
		rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
		goto out;
	}

	const json_t *md = json_object_get(root, "metadata");
	if (json_is_object(md)) {
		json_object_foreach((json_t *)md, key, v) {
			char *text = json_is_string(v) ? strdup(json_string_value(v)) :
			             json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
			rc = text ? add_prop(w, key, text, strlen(text)) : -ENOMEM;
			free(text);
			if (rc < 0) {
				rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
				goto out;
			}
		}
	}

	for (size_t k = 0; k < n_shards; k++) {
		snprintf(sdisplay, sizeof(sdisplay), "%s: shard '%.200s'", display, shards[k]);
		char oerr[1024];
		struct mfs_source *sh;
		rc = mfs_model_open_beneath(m, &sh, shards[k], oerr, sizeof(oerr), display);
		if (rc < 0) {
			rc = mfs_errf(err, errlen, rc, sdisplay, "%s",
			              rc == -ENOENT ? "missing" : "cannot be opened");
			goto out;
		}
		int src = mfs_model_add_file(m, shards[k], sh);
		if (src < 0) {
			rc = mfs_errf(err, errlen, src, sdisplay, "%s",
			              src == -EFBIG ? "too many shards" : strerror(-src));
			goto out;
		}
		uint8_t head[4] = {0};
		if (m->desc.files[src].size < 4 ||
		    mfs_source_read(m->srcs[src], head, 4, 0) < 0 || memcmp(head, "PK\3\4", 4) != 0) {
			rc = mfs_errf(err, errlen, k == 0 ? -ENOEXEC : -EUCLEAN, sdisplay,
			              "not a torch.save file");
			goto out;
		}
		size_t first = w->tens.n;
		rc = load_archive(w, (unsigned)src, &st->shards[k], false, k == 0, sdisplay);
		st->n_shards = k + 1;
		if (rc < 0)
			goto out;
		size_t expected = 0;
		json_object_foreach((json_t *)wm, key, v)
			expected += strcmp(json_string_value(v), shards[k]) == 0;
		for (size_t i = first; i < w->tens.n; i++) {
			const struct mfs_tensor *t = ((struct mfs_tensor **)w->tens.v)[i];
			const char *to = json_string_value(json_object_get(wm, t->name));
			if (!to || strcmp(to, shards[k]) != 0) {
				rc = mfs_errf(err, errlen, -EUCLEAN, sdisplay,
				              "has tensor '%.200s' that the index %s", t->name,
				              to ? "maps to another shard" : "does not name");
				goto out;
			}
		}
		if (w->tens.n - first != expected) {
			rc = mfs_errf(err, errlen, -EUCLEAN, sdisplay,
			              "has %zu tensors, the index names %zu", w->tens.n - first,
			              expected);
			goto out;
		}
		size_t sl = mfs_text_escape(NULL, 0, shards[k], strlen(shards[k]));
		char *nl = realloc(list, list_len + sl + 2);
		if (!nl) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		list = nl;
		mfs_text_escape(list + list_len, sl + 1, shards[k], strlen(shards[k]));
		list_len += sl;
		list[list_len++] = '\n';
		list[list_len] = '\0';
	}
	rc = finish(m, w, "torch", list ? list : "", list_len);
	if (rc < 0)
		rc = mfs_errf(err, errlen, rc, display, "out of memory");
out:
	json_decref(root);
	free(buf);
	free(shards);
	free(list);
	return rc;
}

int mfs_torch_open(struct mfs_model *m, const char *display, char *err, size_t errlen)
{
	if (m->head_len >= 1 && m->head[0] == 0x80)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "a legacy torch.save file (_use_new_zipfile_serialization=False, a "
		                "pickle stream) is not supported: re-save it with torch.save's "
		                "default zip format");
	struct tt_state *st = mfs_arena_alloc(m->arena, sizeof(*st));
	if (!st)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	m->priv = st;           /* close frees the archives from here on */
	if (pthread_mutex_init(&st->zlock, NULL) != 0)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	st->zlock_init = true;
	struct walk w = {.m = m, .st = st, .display = display, .err = err, .errlen = errlen};
	w.tens.size = sizeof(struct mfs_tensor *);
	w.infos.size = sizeof(struct tt_info);
	w.props.size = sizeof(struct mfs_meta);
	int rc;
	if (looks_like_json(m->head, m->head_len)) {
		rc = open_index(m, &w, display);
	} else {
		rc = load_archive(&w, 0, &st->zip, true, false, display);
		if (rc == 0) {
			rc = finish(m, &w, st->torchscript ? "torchscript" : "torch", NULL, 0);
			if (rc < 0)
				rc = mfs_errf(err, errlen, rc, display, "out of memory");
		}
	}
	free(w.globals.p);
	free(w.tens.v);
	free(w.infos.v);
	free(w.props.v);
	return rc;
}

void mfs_torch_close(struct mfs_model *m)
{
	struct tt_state *st = m->priv;
	if (!st)
		return;
	tz_free(&st->zip);
	for (size_t i = 0; i < st->n_shards; i++)
		tz_free(&st->shards[i]);
	free(st->shards);
	st->shards = NULL;
	st->n_shards = 0;
	for (size_t i = 0; i < TZ_CACHE_SLOTS; i++) {
		free(st->zcache[i].buf);
		st->zcache[i].buf = NULL;
		st->zcache[i].member = NULL;
	}
	if (st->zlock_init)
		pthread_mutex_destroy(&st->zlock);
	st->zlock_init = false;
}

/* Bytes of a deflated TorchScript member: from the one kept inflated. */
static ssize_t inflated_read(const struct mfs_model *m, const struct tt_info *ti, void *buf,
                             size_t len, uint64_t off)
{
	struct tt_state *st = m->priv;
	const struct tz_entry *e = ti->member;
	if (off >= e->usize)
		return 0;
	if (len > e->usize - off)
		len = (size_t)(e->usize - off);
	pthread_mutex_lock(&st->zlock);
	struct tz_cached *c = NULL;
	for (size_t i = 0; i < TZ_CACHE_SLOTS && !c; i++)
		if (st->zcache[i].member == e)
			c = &st->zcache[i];
	if (!c) {
		uint8_t *b = malloc(e->usize ? (size_t)e->usize : 1);
		int rc = b ? tz_inflate(m->srcs[ti->src], e, b) : -ENOMEM;
		if (rc < 0) {
			pthread_mutex_unlock(&st->zlock);
			free(b);
			return rc;
		}
		/* Evict the least recent until the new one fits the budget. */
		for (;;) {
			uint64_t total = e->usize;
			struct tz_cached *old = NULL, *free_slot = NULL;
			for (size_t i = 0; i < TZ_CACHE_SLOTS; i++) {
				struct tz_cached *s = &st->zcache[i];
				if (!s->member) {
					free_slot = s;
					continue;
				}
				total += s->member->usize;
				if (!old || s->used < old->used)
					old = s;
			}
			if (free_slot && (total <= TZ_MAX_INFLATE || !old)) {
				c = free_slot;
				break;
			}
			free(old->buf);         /* old: every slot is taken, or too much */
			old->buf = NULL;
			old->member = NULL;
		}
		c->member = e;
		c->buf = b;
	}
	c->used = ++st->zclock;
	memcpy(buf, c->buf + off, len);
	pthread_mutex_unlock(&st->zlock);
	return (ssize_t)len;
}

/* ------------------------------------------------------------ strided reads */

/*
 * Bytes [off, off + len) of a tensor that is not one range of its storage:
 * element by element in row-major order, each from offset + sum(i_k x
 * stride_k), served from a window of the storage read ahead.
 */
ssize_t mfs_torch_tensor_read(const struct mfs_model *m, const struct mfs_tensor *t, void *buf,
                              size_t len, uint64_t off)
{
	const struct tt_state *st = m->priv;
	const struct tt_info *ti = &st->tens[t->id];
	if (ti->deflated)
		return inflated_read(m, ti, buf, len, off);
	unsigned es = ti->esize;
	uint64_t win_cap = ti->extent < (32u << 20) ? ti->extent : (32u << 20);
	if (win_cap < es)
		win_cap = es;
	uint8_t *win = malloc((size_t)win_cap);
	if (!win)
		return -ENOMEM;
	uint64_t win_lo = 0, win_len = 0;
	uint64_t e = off / es;
	size_t skip = (size_t)(off % es), done = 0;
	int64_t idx[MFS_MAX_RANK];
	uint64_t rem = e;
	for (size_t k = t->rank; k-- > 0;) {
		idx[k] = (int64_t)(rem % (uint64_t)t->dims[k]);
		rem /= (uint64_t)t->dims[k];
	}
	while (done < len) {
		uint64_t lin = (uint64_t)ti->offset;
		for (size_t k = 0; k < t->rank; k++)
			lin += (uint64_t)idx[k] * (uint64_t)ti->strides[k];
		uint64_t so = lin * es;         /* checked at open: inside the extent */
		if (so < win_lo || so + es > win_lo + win_len) {
			win_lo = so;
			win_len = ti->extent - so < win_cap ? ti->extent - so : win_cap;
			int rc = mfs_source_read(m->srcs[ti->src], win, (size_t)win_len, ti->base + win_lo);
			if (rc < 0) {
				free(win);
				return rc;
			}
		}
		size_t n = es - skip;
		if (n > len - done)
			n = len - done;
		memcpy((uint8_t *)buf + done, win + (so - win_lo) + skip, n);
		done += n;
		skip = 0;
		for (size_t k = t->rank; k-- > 0;) {
			if (++idx[k] < t->dims[k])
				break;
			idx[k] = 0;
		}
	}
	free(win);
	return (ssize_t)done;
}

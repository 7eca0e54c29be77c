/*
 * tools/diff.c — `modelfs diff [--tolerance ABS] [--rtol REL] [--json] A B`:
 * what differs between two models, of any formats modelfs reads.
 *
 * Both are opened through the codec's public API and compared by tensor
 * name over their main graph's tensors (every tensor of a flat format, the
 * initializers of an ONNX graph: what `modelfs convert` writes), so an ONNX
 * model and its safetensors conversion compare equal.  Per tensor name:
 * only in A, only in B, a dtype or shape change, or — same dtype and shape
 * — the elements compared in float64 (modelfs/view.h decodes every numeric
 * dtype): the largest absolute and relative error and the number of
 * elements that differ, where equal means |a - b| <= ABS + REL * |b| (both
 * 0 by default: exact; NaN equals NaN).  Dtypes without a decoding compare
 * byte for byte.  Props are compared by key.
 *
 * The bytes are streamed MFS_VIEW_CHUNK at a time from each model, so the
 * memory is a few chunks whatever the models' sizes.
 *
 * Exit status as diff(1): 0 the same, 1 different, 2 trouble (a model that
 * does not open or read, a bad option).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "modelfs/model.h"
#include "modelfs/view.h"

#include "tools.h"

struct named {
	const char *name;
	const struct mfs_tensor *t;
};

struct cmp {
	uint64_t n_diff;        /* elements (or bytes) that differ */
	double max_abs, max_rel;
	bool bytes;             /* compared as bytes: no element decoding */
	int side;               /* after a read error: 0 (A) or 1 (B) */
};

struct opts {
	double atol, rtol;
	bool json;
};

static int named_cmp(const void *a, const void *b)
{
	return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* The main graph's tensors of `d`, sorted by name; NULL with *n 0 if none. */
static struct named *sorted_tensors(const struct mfs_desc *d, size_t *n)
{
	const struct mfs_graph *g = d->graph;
	*n = 0;
	if (!g || !g->n_inits)
		return NULL;
	struct named *v = calloc(g->n_inits, sizeof(*v));
	if (!v)
		return NULL;
	for (size_t i = 0; i < g->n_inits; i++) {
		v[i].t = g->inits[i];
		v[i].name = g->inits[i]->name ? g->inits[i]->name : "";
	}
	qsort(v, g->n_inits, sizeof(*v), named_cmp);
	*n = g->n_inits;
	return v;
}

static bool same_type(const struct mfs_tensor *a, const struct mfs_tensor *b)
{
	return a->dtype == b->dtype && a->rank == b->rank &&
	       (!a->rank || !memcmp(a->dims, b->dims, a->rank * sizeof(*a->dims)));
}

/* Read exactly `len` bytes of `t` at `off`. */
static int read_full(const mfs_model *m, const struct mfs_tensor *t, void *buf, size_t len,
                     uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = mfs_tensor_read(m, t, (char *)buf + got, len - got, off + got);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		got += (size_t)n;
	}
	return 0;
}

/* Compare the elements of two tensors of the same dtype and shape. */
static int compare(struct cmp *c, const mfs_model *ma, const struct mfs_tensor *a,
                   const mfs_model *mb, const struct mfs_tensor *b, const struct opts *o,
                   uint8_t *ba, uint8_t *bb, double *va, double *vb)
{
	unsigned w = mfs_elems_width(a->dtype);
	memset(c, 0, sizeof(*c));
	c->bytes = w == 0;
	if (a->nbytes != b->nbytes)
		return -EIO;    /* same type, other sizes: a reader's bug */
	for (uint64_t off = 0; off < a->nbytes;) {
		size_t len = a->nbytes - off < MFS_VIEW_CHUNK ? (size_t)(a->nbytes - off) :
		             MFS_VIEW_CHUNK;
		int rc = read_full(ma, a, ba, len, off);
		if (rc == 0 && (c->side = 1))
			rc = read_full(mb, b, bb, len, off);
		if (rc < 0)
			return rc;
		c->side = 0;
		off += len;
		if (c->bytes) {
			for (size_t i = 0; i < len; i++)
				c->n_diff += ba[i] != bb[i];
			continue;
		}
		size_t n = len / w;
		mfs_elems_decode(va, a->dtype, ba, n);
		mfs_elems_decode(vb, b->dtype, bb, n);
		for (size_t i = 0; i < n; i++) {
			double x = va[i], y = vb[i];
			if ((isnan(x) && isnan(y)) || x == y)
				continue;
			double err = fabs(x - y);      /* inf or nan for one NaN or Inf */
			if (isnan(err))
				err = INFINITY;
			double rel = y != 0 ? err / fabs(y) : INFINITY;
			if (err > c->max_abs)
				c->max_abs = err;
			if (rel > c->max_rel)
				c->max_rel = rel;
			if (!(err <= o->atol + o->rtol * fabs(y)))
				c->n_diff++;
		}
	}
	return 0;
}

static void shape_text(char *buf, size_t cap, const struct mfs_tensor *t)
{
	mfs_dims_format(buf, cap, t->dims, t->rank);
}

/* --------------------------------------------------------------- report */

struct report {
	const struct opts *o;
	json_t *only_a, *only_b, *changed, *props;
	uint64_t unchanged;
	bool differ;
};

static void r_only(struct report *r, bool in_a, const struct mfs_tensor *t)
{
	char shape[256];
	shape_text(shape, sizeof(shape), t);
	r->differ = true;
	if (r->o->json) {
		json_array_append_new(in_a ? r->only_a : r->only_b,
		                      json_pack("{s:s, s:s, s:s}", "name", t->name ? t->name : "",
		                                "dtype", mfs_dtype_name(t->dtype), "shape", shape));
		return;
	}
	printf("only in %s: %s (%s [%s])\n", in_a ? "A" : "B", t->name ? t->name : "",
	       mfs_dtype_name(t->dtype), shape);
}

static void r_retyped(struct report *r, const struct mfs_tensor *a, const struct mfs_tensor *b)
{
	char sa[256], sb[256], da[64], db[64];
	shape_text(sa, sizeof(sa), a);
	shape_text(sb, sizeof(sb), b);
	snprintf(da, sizeof(da), "%s", mfs_dtype_name(a->dtype));
	snprintf(db, sizeof(db), "%s", mfs_dtype_name(b->dtype));
	r->differ = true;
	if (r->o->json) {
		json_array_append_new(r->changed, json_pack(
			"{s:s, s:s, s:s, s:s, s:s}", "name", a->name ? a->name : "",
			"dtype_a", da, "dtype_b", db, "shape_a", sa, "shape_b", sb));
		return;
	}
	printf("changed: %s: %s [%s] -> %s [%s]\n", a->name ? a->name : "", da, sa, db, sb);
}

static void r_values(struct report *r, const struct mfs_tensor *a, const struct cmp *c)
{
	uint64_t total = c->bytes ? a->nbytes : a->nbytes / mfs_elems_width(a->dtype);
	r->differ = true;
	if (r->o->json) {
		json_t *j = json_pack("{s:s, s:I, s:I, s:s}", "name", a->name ? a->name : "",
		                      "differing", (json_int_t)c->n_diff, "count", (json_int_t)total,
		                      "unit", c->bytes ? "bytes" : "elements");
		if (!c->bytes) {
			/* JSON has no Inf: null stands for it. */
			json_object_set_new(j, "max_abs_error", isfinite(c->max_abs) ?
			                    json_real(c->max_abs) : json_null());
			json_object_set_new(j, "max_rel_error", isfinite(c->max_rel) ?
			                    json_real(c->max_rel) : json_null());
		}
		json_array_append_new(r->changed, j);
		return;
	}
	if (c->bytes)
		printf("changed: %s: %llu of %llu bytes differ\n", a->name ? a->name : "",
		       (unsigned long long)c->n_diff, (unsigned long long)total);
	else
		printf("changed: %s: max abs error %.17g, max rel error %.17g, %llu of %llu "
		       "elements differ\n", a->name ? a->name : "", c->max_abs, c->max_rel,
		       (unsigned long long)c->n_diff, (unsigned long long)total);
}

static int meta_cmp(const void *a, const void *b)
{
	const char *x = ((const struct mfs_meta *)a)->name, *y = ((const struct mfs_meta *)b)->name;
	return strcmp(x ? x : "", y ? y : "");
}

/* Props compared by key: copies of the arrays, sorted. */
static int diff_props(struct report *r, const struct mfs_desc *da, const struct mfs_desc *db)
{
	struct mfs_meta *pa = calloc(da->n_props + 1, sizeof(*pa));
	struct mfs_meta *pb = calloc(db->n_props + 1, sizeof(*pb));
	if (!pa || !pb) {
		free(pa);
		free(pb);
		return -ENOMEM;
	}
	if (da->n_props)
		memcpy(pa, da->props, da->n_props * sizeof(*pa));
	if (db->n_props)
		memcpy(pb, db->props, db->n_props * sizeof(*pb));
	qsort(pa, da->n_props, sizeof(*pa), meta_cmp);
	qsort(pb, db->n_props, sizeof(*pb), meta_cmp);
	size_t i = 0, j = 0;
	while (i < da->n_props || j < db->n_props) {
		int c = i == da->n_props ? 1 : j == db->n_props ? -1 : meta_cmp(&pa[i], &pb[j]);
		const char *what;
		const struct mfs_meta *m = c <= 0 ? &pa[i] : &pb[j];
		if (c == 0 && pa[i].len == pb[j].len &&
		    (!pa[i].len || !memcmp(pa[i].value, pb[j].value, pa[i].len))) {
			i++, j++;
			continue;
		}
		what = c < 0 ? "only in A" : c > 0 ? "only in B" : "changed";
		r->differ = true;
		if (r->o->json)
			json_array_append_new(r->props, json_pack("{s:s, s:s}", "key",
			                                          m->name ? m->name : "", "diff", what));
		else
			printf("prop %s: %s\n", what, m->name ? m->name : "");
		if (c <= 0)
			i++;
		if (c >= 0)
			j++;
	}
	free(pa);
	free(pb);
	return 0;
}

static int parse_num(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

int cmd_diff(int argc, char **argv)
{
	struct opts o = {0};
	const char *path[2] = {NULL, NULL};
	int np = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--json")) {
			o.json = true;
		} else if (!strcmp(a, "--tolerance") || !strcmp(a, "--rtol")) {
			if (i + 1 == argc || parse_num(argv[i + 1], !strcmp(a, "--rtol") ? &o.rtol :
			                               &o.atol) < 0) {
				fprintf(stderr, "modelfs diff: %s needs a non-negative number\n", a);
				return 2;
			}
			i++;
		} else if (np < 2 && (a[0] != '-' || !a[1])) {
			path[np++] = a;
		} else {
			fprintf(stderr, "modelfs diff: unexpected argument '%s'\n"
			        "usage: modelfs diff [--tolerance ABS] [--rtol REL] [--json] A B\n", a);
			return 2;
		}
	}
	if (np != 2) {
		fprintf(stderr, "usage: modelfs diff [--tolerance ABS] [--rtol REL] [--json] A B\n");
		return 2;
	}
	mfs_model *m[2] = {NULL, NULL};
	struct named *v[2] = {NULL, NULL};
	size_t n[2] = {0, 0};
	uint8_t *ba = malloc(MFS_VIEW_CHUNK), *bb = malloc(MFS_VIEW_CHUNK);
	double *va = malloc(MFS_VIEW_CHUNK * sizeof(double)), *vb = malloc(MFS_VIEW_CHUNK *
	                                                                   sizeof(double));
	struct report r = {.o = &o};
	int status = 2;
	char err[512];
	if (!ba || !bb || !va || !vb) {
		fprintf(stderr, "modelfs diff: out of memory\n");
		goto out;
	}
	for (int k = 0; k < 2; k++) {
		if (mfs_model_open(&m[k], path[k], NULL, err, sizeof(err)) < 0) {
			fprintf(stderr, "modelfs diff: %s\n", err);
			goto out;
		}
		const struct mfs_desc *d = mfs_model_desc(m[k]);
		v[k] = sorted_tensors(d, &n[k]);
		if (!v[k] && d->graph && d->graph->n_inits) {
			fprintf(stderr, "modelfs diff: out of memory\n");
			goto out;
		}
	}
	if (o.json) {
		r.only_a = json_array();
		r.only_b = json_array();
		r.changed = json_array();
		r.props = json_array();
	}
	size_t i = 0, j = 0;
	while (i < n[0] || j < n[1]) {
		int c = i == n[0] ? 1 : j == n[1] ? -1 : strcmp(v[0][i].name, v[1][j].name);
		if (c < 0) {
			r_only(&r, true, v[0][i++].t);
			continue;
		}
		if (c > 0) {
			r_only(&r, false, v[1][j++].t);
			continue;
		}
		const struct mfs_tensor *a = v[0][i++].t, *b = v[1][j++].t;
		if (!same_type(a, b)) {
			r_retyped(&r, a, b);
			continue;
		}
		struct cmp cm;
		int rc = compare(&cm, m[0], a, m[1], b, &o, ba, bb, va, vb);
		if (rc < 0) {
			fprintf(stderr, "modelfs diff: %s: tensor '%s' cannot be read: %s\n",
			        path[cm.side], a->name ? a->name : "", strerror(-rc));
			goto out;
		}
		if (cm.n_diff)
			r_values(&r, a, &cm);
		else
			r.unchanged++;
	}
	if (diff_props(&r, mfs_model_desc(m[0]), mfs_model_desc(m[1])) < 0) {
		fprintf(stderr, "modelfs diff: out of memory\n");
		goto out;
	}
	if (o.json) {
		json_t *j2 = json_pack("{s:O, s:O, s:O, s:I, s:O, s:b}", "only_in_a", r.only_a,
		                       "only_in_b", r.only_b, "changed", r.changed, "unchanged",
		                       (json_int_t)r.unchanged, "props", r.props, "same", !r.differ);
		char *s = j2 ? json_dumps(j2, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
		if (s)
			printf("%s\n", s);
		free(s);
		json_decref(j2);
	} else {
		printf("%llu tensors unchanged\n", (unsigned long long)r.unchanged);
	}
	status = r.differ ? 1 : 0;
	if (fflush(stdout) != 0) {
		fprintf(stderr, "modelfs diff: writing the report: %s\n", strerror(errno));
		status = 2;
	}
out:
	json_decref(r.only_a);
	json_decref(r.only_b);
	json_decref(r.changed);
	json_decref(r.props);
	free(v[0]);
	free(v[1]);
	mfs_model_close(m[0]);
	mfs_model_close(m[1]);
	free(ba);
	free(bb);
	free(va);
	free(vb);
	return status;
}

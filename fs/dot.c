/*
 * fs/dot.c — meta/graph.dot: a graph model drawn as Graphviz DOT, made as
 * it is read.
 *
 * HOW IT WORKS
 *
 * The text is a sequence of items: the header, one per graph input (not
 * an initializer), one per node (its declaration, the edges into it, and
 * the clusters of its If/Loop/Scan bodies, which hold their own nodes),
 * one per graph output, and the closing brace.  Item k's text depends only
 * on the description and on an index of the top graph (tensor name ->
 * producing node, and -> its value_info for the edge's shape label), so
 * any item can be made on its own.
 *
 * Nothing is built at mount.  The first stat or read builds the index and
 * runs a counting pass: every item is made once into a scratch buffer and
 * only its length kept, with the offset of every CHECK-th item (a
 * checkpoint).  A read at `off` then starts at the checkpoint before it and
 * makes at most CHECK items before the bytes it wants, so reading the
 * whole file costs about one generation, and memory is the index (a few
 * words per node) plus one checkpoint per CHECK items — never the text.
 *
 * Node ids: top-level nodes "n<i>", graph inputs "i<i>", outputs "o<i>";
 * a body's nodes "<owner>_<attr>_<graph>_n<j>".  Labels are escaped for
 * DOT (quote, backslash) and bytes outside printable ASCII become '?', so
 * any name renders.  Edges from initializers are left out (a weight per
 * edge would drown the picture); a body's edges come from its own nodes,
 * or from the top graph's for names it captures.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "modelfs/htab.h"

#define CHECK 64u

/* Bodies nested deeper than this are drawn as a plain node. */
#define DOT_DEPTH 16

struct dname {
	struct dname *next;
	uint64_t key;
	const char *name;
	long producer;                  /* node index, or -1 - input index, or LONG_MIN */
	const struct mfs_value *value;  /* for the shape; NULL when unknown */
};

struct mfs_dot {
	const struct mfs_graph *g;
	pthread_mutex_t lock;
	bool ready;
	int err;
	struct dname **buckets;
	size_t n_buckets;
	struct dname *names;            /* one array: freed at once */
	size_t n_names;
	uint64_t n_items, size;
	uint64_t *check;                /* offset of item k * CHECK */
};

/* A growable output buffer; `err` keeps the first failure. */
struct out {
	char *p;
	size_t len, cap;
	int err;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->err)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 256;
		while (cap < o->len + n + 1)
			cap *= 2;
		char *p = realloc(o->p, cap);
		if (!p) {
			o->err = -ENOMEM;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void putf(struct out *o, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(o, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* A label's text, escaped for a DOT "..." string. */
static void put_esc(struct out *o, const char *s)
{
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			put(o, e, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			put(o, "?", 1);
		} else {
			put(o, (const char *)&c, 1);
		}
	}
}

/* "float32[1,3,224,224]" of a value, or nothing. */
static void put_type(struct out *o, const struct mfs_value *v)
{
	if (!v)
		return;
	put(o, "\\n", 2);
	put_esc(o, v->dtype);
	if (v->shape.known) {
		size_t n = mfs_shape_format(NULL, 0, &v->shape);
		char *s = malloc(n + 1);
		if (!s) {
			o->err = -ENOMEM;
			return;
		}
		mfs_shape_format(s, n + 1, &v->shape);
		put(o, "[", 1);
		put_esc(o, s);
		put(o, "]", 1);
		free(s);
	}
}

/* ------------------------------------------------------------ index */

static uint64_t key_of(const char *s)
{
	return mfs_name_hash(s, strlen(s), 0xd07);
}

static struct dname *lookup(const struct mfs_dot *d, const char *name)
{
	if (!d->n_buckets || !name || !*name)
		return NULL;
	uint64_t k = key_of(name);
	for (struct dname *e = d->buckets[mfs_htab_slot(k, d->n_buckets)]; e; e = e->next)
		if (e->key == k && !strcmp(e->name, name))
			return e;
	return NULL;
}

/* The entry of `name`, added when missing (the array has room: counted). */
static struct dname *intern(struct mfs_dot *d, const char *name)
{
	struct dname *e = lookup(d, name);
	if (e || !name || !*name)
		return e;
	e = &d->names[d->n_names++];
	e->key = key_of(name);
	e->name = name;
	e->producer = LONG_MIN;
	size_t s = mfs_htab_slot(e->key, d->n_buckets);
	e->next = d->buckets[s];
	d->buckets[s] = e;
	return e;
}

static int index_build(struct mfs_dot *d)
{
	const struct mfs_graph *g = d->g;
	size_t n = g->n_inputs + g->n_outputs + g->n_values;
	for (size_t i = 0; i < g->n_nodes; i++)
		n += g->nodes[i].n_outputs;
	size_t nb = 16;
	while (nb < n * 2 && nb < ((size_t)1 << 40))
		nb *= 2;
	d->buckets = calloc(nb, sizeof(*d->buckets));
	d->names = calloc(n ? n : 1, sizeof(*d->names));
	if (!d->buckets || !d->names)
		return -ENOMEM;
	d->n_buckets = nb;
	for (size_t i = 0; i < g->n_nodes; i++)
		for (size_t k = 0; k < g->nodes[i].n_outputs; k++) {
			struct dname *e = intern(d, g->nodes[i].outputs[k]);
			if (e && e->producer == LONG_MIN)
				e->producer = (long)i;
		}
	for (size_t i = 0; i < g->n_inputs; i++) {
		struct dname *e = intern(d, g->inputs[i].name);
		bool init = g->input_is_init && g->input_is_init[i];
		if (e && !init && e->producer == LONG_MIN)
			e->producer = -1 - (long)i;
		if (e)
			e->value = &g->inputs[i];
	}
	for (size_t i = 0; i < g->n_values; i++) {
		struct dname *e = intern(d, g->values[i].name);
		if (e && !e->value)
			e->value = &g->values[i];
	}
	for (size_t i = 0; i < g->n_outputs; i++) {
		struct dname *e = intern(d, g->outputs[i].name);
		if (e && !e->value)
			e->value = &g->outputs[i];
	}
	return 0;
}

/* ------------------------------------------------------------ items */

static void put_id(struct out *o, const char *prefix, long producer)
{
	if (producer >= 0)
		putf(o, "%sn%ld", prefix, producer);
	else
		putf(o, "%si%ld", prefix, -1 - producer);
}

static void node_item(struct mfs_dot *d, struct out *o, const struct mfs_graph *g,
                      const char *prefix, size_t i, int depth);

/* Edge into node `id` for its input `name` of body `g` (prefix) or the top graph. */
static void edge_in(struct mfs_dot *d, struct out *o, const struct mfs_graph *g,
                    const char *prefix, const char *name, const char *id)
{
	if (!name || !*name)
		return;
	const struct mfs_value *val = NULL;
	long prod = LONG_MIN;
	const char *pp = prefix;
	if (g != d->g) {
		/* A body: its own producers first (a linear scan: bodies are small). */
		for (size_t j = 0; j < g->n_nodes && prod == LONG_MIN; j++)
			for (size_t k = 0; k < g->nodes[j].n_outputs; k++)
				if (!strcmp(g->nodes[j].outputs[k], name)) {
					prod = (long)j;
					break;
				}
		for (size_t j = 0; j < g->n_inputs && prod == LONG_MIN; j++)
			if (!strcmp(g->inputs[j].name, name) &&
			    !(g->input_is_init && g->input_is_init[j]))
				prod = -1 - (long)j, val = &g->inputs[j];
		for (size_t j = 0; j < g->n_values && !val; j++)
			if (!strcmp(g->values[j].name, name))
				val = &g->values[j];
	}
	if (prod == LONG_MIN) {
		struct dname *e = lookup(d, name);
		if (!e || e->producer == LONG_MIN)
			return;         /* an initializer, or nobody makes it */
		prod = e->producer;
		if (!val)
			val = e->value;
		pp = "";
	}
	put(o, "  ", 2);
	put_id(o, pp, prod);
	putf(o, " -> %s [label=\"", id);
	put_esc(o, name);
	put_type(o, val);
	put(o, "\"];\n", 4);
}

/* The cluster of body `sg` (attribute a, graph k) of node `owner`. */
static void body(struct mfs_dot *d, struct out *o, const struct mfs_graph *sg, const char *owner,
                 const char *attr, size_t a, size_t k, int depth)
{
	char prefix[512];
	snprintf(prefix, sizeof(prefix), "%.400s_%zu_%zu_", owner, a, k);
	putf(o, "  subgraph \"cluster_%s\" {\n  label=\"", prefix);
	put_esc(o, attr);
	put(o, ": ", 2);
	put_esc(o, sg->name);
	put(o, "\";\n", 3);
	for (size_t j = 0; j < sg->n_inputs; j++) {
		if (sg->input_is_init && sg->input_is_init[j])
			continue;
		putf(o, "  %si%zu [shape=ellipse, label=\"", prefix, j);
		put_esc(o, sg->inputs[j].name);
		put_type(o, &sg->inputs[j]);
		put(o, "\"];\n", 4);
	}
	for (size_t j = 0; j < sg->n_nodes && !o->err; j++)
		node_item(d, o, sg, prefix, j, depth + 1);
	put(o, "  }\n", 4);
}

static void node_item(struct mfs_dot *d, struct out *o, const struct mfs_graph *g,
                      const char *prefix, size_t i, int depth)
{
	const struct mfs_node *n = &g->nodes[i];
	char id[560];
	snprintf(id, sizeof(id), "%sn%zu", prefix, i);
	putf(o, "  %s [label=\"", id);
	put_esc(o, n->op_type);
	if (n->name && *n->name) {
		put(o, "\\n", 2);
		put_esc(o, n->name);
	}
	put(o, "\"];\n", 4);
	for (size_t k = 0; k < n->n_inputs; k++)
		edge_in(d, o, g, prefix, n->inputs[k], id);
	if (depth >= DOT_DEPTH)
		return;
	for (size_t a = 0; a < n->n_attrs; a++)
		for (size_t k = 0; k < n->attrs[a].n_graphs; k++)
			if (n->attrs[a].graphs[k])
				body(d, o, n->attrs[a].graphs[k], id, n->attrs[a].name, a, k, depth);
}

/* Item `k` appended to `o`. */
static void item(struct mfs_dot *d, struct out *o, uint64_t k)
{
	const struct mfs_graph *g = d->g;
	if (k == 0) {
		put(o, "digraph \"", 9);
		put_esc(o, g->name);
		static const char head[] = "\" {\n  rankdir=TB;\n  node [shape=box, fontsize=10];\n"
		                           "  edge [fontsize=8];\n";
		put(o, head, sizeof(head) - 1);
		return;
	}
	k--;
	if (k < g->n_inputs) {
		if (g->input_is_init && g->input_is_init[k])
			return;
		putf(o, "  i%llu [shape=ellipse, label=\"", (unsigned long long)k);
		put_esc(o, g->inputs[k].name);
		put_type(o, &g->inputs[k]);
		put(o, "\"];\n", 4);
		return;
	}
	k -= g->n_inputs;
	if (k < g->n_nodes) {
		node_item(d, o, g, "", (size_t)k, 0);
		return;
	}
	k -= g->n_nodes;
	if (k < g->n_outputs) {
		char id[32];
		snprintf(id, sizeof(id), "o%llu", (unsigned long long)k);
		putf(o, "  %s [shape=ellipse, label=\"", id);
		put_esc(o, g->outputs[k].name);
		put_type(o, &g->outputs[k]);
		put(o, "\"];\n", 4);
		edge_in(d, o, g, "", g->outputs[k].name, id);
		return;
	}
	put(o, "}\n", 2);
}

/* ------------------------------------------------------------ public */

int mfs_dot_new(struct mfs_dot **out, const struct mfs_graph *g)
{
	*out = NULL;
	struct mfs_dot *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->g = g;
	pthread_mutex_init(&d->lock, NULL);
	*out = d;
	return 0;
}

void mfs_dot_destroy(struct mfs_dot *d)
{
	if (!d)
		return;
	free(d->buckets);
	free(d->names);
	free(d->check);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* The index and the counting pass, once (d->lock held). */
static int prepare(struct mfs_dot *d)
{
	if (d->ready || d->err)
		return d->err;
	const struct mfs_graph *g = d->g;
	int rc = index_build(d);
	d->n_items = 1 + (uint64_t)g->n_inputs + g->n_nodes + g->n_outputs + 1;
	d->check = rc ? NULL : calloc(d->n_items / CHECK + 1, sizeof(*d->check));
	if (!rc && !d->check)
		rc = -ENOMEM;
	struct out o = {0};
	uint64_t off = 0;
	for (uint64_t k = 0; k < d->n_items && !rc; k++) {
		if (k % CHECK == 0)
			d->check[k / CHECK] = off;
		o.len = 0;
		item(d, &o, k);
		rc = o.err;
		off += o.len;
	}
	free(o.p);
	d->size = off;
	d->err = rc;
	d->ready = rc == 0;
	return rc;
}

int mfs_dot_size(struct mfs_dot *d, uint64_t *out)
{
	pthread_mutex_lock(&d->lock);
	int rc = prepare(d);
	*out = rc ? 0 : d->size;
	pthread_mutex_unlock(&d->lock);
	return rc;
}

ssize_t mfs_dot_read(struct mfs_dot *d, void *buf, size_t len, uint64_t off)
{
	pthread_mutex_lock(&d->lock);
	int rc = prepare(d);
	pthread_mutex_unlock(&d->lock);
	if (rc < 0)
		return rc;
	if (off >= d->size || !len)
		return 0;
	/* The last checkpoint at or before `off`. */
	uint64_t lo = 0, hi = (d->n_items - 1) / CHECK;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;
		if (d->check[mid] <= off)
			lo = mid;
		else
			hi = mid - 1;
	}
	uint64_t pos = d->check[lo];
	size_t got = 0;
	struct out o = {0};
	for (uint64_t k = lo * CHECK; k < d->n_items && got < len; k++) {
		o.len = 0;
		item(d, &o, k);
		if (o.err) {
			free(o.p);
			return got ? (ssize_t)got : o.err;
		}
		uint64_t end = pos + o.len;
		if (end > off + got) {
			size_t from = (size_t)(off + got - pos);
			size_t n = o.len - from < len - got ? o.len - from : len - got;
			memcpy((char *)buf + got, o.p + from, n);
			got += n;
		}
		pos = end;
	}
	free(o.p);
	return (ssize_t)got;
}

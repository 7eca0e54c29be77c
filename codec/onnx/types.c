/*
 * codec/onnx/types.c — does a dtype edit contradict the graph?
 *
 * An ONNX graph states the element types of its values in two ways.  It
 * declares them: a graph input, output or value_info entry of the same name
 * as an initializer gives that initializer's type, and a loader (ONNX
 * Runtime: "Data in initializer 'b' has element type tensor(float16) but
 * usage of initializer in graph expects tensor(float)") refuses a model
 * whose initializer says otherwise.  And it implies them: most operators
 * bind their inputs to one type variable (Gemm's A, B and C are all T), so
 * an initializer retyped alone beside inputs that keep its old type breaks
 * the node ("Type parameter (T) of Optype (Gemm) bound to different types").
 *
 * The first is a fact of the file, so a contradiction is MFS_TYPE_DECLARED
 * and a commit refuses it unless forced.  The second needs the operator's
 * schema, which modelfs does not carry (Gather's data and indices, say, are
 * two type variables that often hold the same type), so it is only
 * MFS_TYPE_PEER: a node that reads the tensor also reads another input
 * whose dtype is the tensor's old one and stays so — a warning in status.
 * Peers are initializers of the same graph (their dtype after the edits),
 * and the graph's declared inputs, outputs and value_info.
 *
 * Only the description is read (format-neutral structs), so this costs a
 * walk of the graphs that hold an edited initializer.
 */
#include <stdio.h>
#include <string.h>

#include "onnx/onnx.h"

/* The graph (main, subgraph or training) whose initializer `t` is, or NULL. */
static const struct mfs_graph *graph_of(const struct mfs_graph *g, const struct mfs_tensor *t,
                                        unsigned depth)
{
	if (!g || depth > MFS_MAX_DEPTH)
		return NULL;
	for (size_t i = 0; i < g->n_inits; i++)
		if (g->inits[i] == t)
			return g;
	for (size_t i = 0; i < g->n_nodes; i++)
		for (size_t a = 0; a < g->nodes[i].n_attrs; a++)
			for (size_t k = 0; k < g->nodes[i].attrs[a].n_graphs; k++) {
				const struct mfs_graph *h =
					graph_of(g->nodes[i].attrs[a].graphs[k], t, depth + 1);
				if (h)
					return h;
			}
	return NULL;
}

/* Tensor `x`'s dtype once the edits `e` apply (e->tensors ascend by id). */
static int32_t eff_dtype(const struct mfs_edit_set *e, const struct mfs_tensor *x)
{
	size_t lo = 0, hi = e->n_tensors;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t id = e->tensors[mid].t->id;
		if (id == x->id)
			return e->tensors[mid].dtype;
		if (id < x->id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return x->dtype;
}

/* The dtype a declaration of `name` in `v[0 .. n)` gives, or -1; *at gets it. */
static int32_t declared(const struct mfs_value *v, size_t n, const char *name,
                        const struct mfs_value **at)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].name, name) != 0)
			continue;
		int32_t d = mfs_dtype_from_name(v[i].dtype);
		if (d >= 0) {
			*at = &v[i];
			return d;
		}
	}
	return -1;
}

/* What `g` says is the dtype of value `name` after the edits, or -1. */
static int32_t dtype_of(const struct mfs_graph *g, const struct mfs_edit_set *e, const char *name)
{
	const struct mfs_value *at;
	int32_t d;
	for (size_t i = 0; i < g->n_inits; i++)
		if (strcmp(g->inits[i]->name, name) == 0)
			return eff_dtype(e, g->inits[i]);
	if ((d = declared(g->inputs, g->n_inputs, name, &at)) >= 0 ||
	    (d = declared(g->values, g->n_values, name, &at)) >= 0 ||
	    (d = declared(g->outputs, g->n_outputs, name, &at)) >= 0)
		return d;
	return -1;
}

static int digits(size_t n)
{
	int w = 1;
	while (n >= 10) {
		n /= 10;
		w++;
	}
	return w;
}

int mfs_onnx_type_check(const struct mfs_model *m, const struct mfs_edit_set *e, size_t i,
                        char *msg, size_t msglen)
{
	const struct mfs_tensor_edit *te = &e->tensors[i];
	const struct mfs_tensor *t = te->t;
	const struct mfs_desc *d = &m->desc;
	const struct mfs_graph *g = graph_of(d->graph, t, 0);
	for (size_t k = 0; !g && k < d->n_training; k++) {
		g = graph_of(d->training[k].initialization, t, 0);
		if (!g)
			g = graph_of(d->training[k].algorithm, t, 0);
	}
	if (!g || !te->dtype_changed)
		return MFS_TYPE_OK;
	const char *now = mfs_dtype_name(te->dtype);
	char was[32];
	snprintf(was, sizeof(was), "%s", mfs_dtype_name(t->dtype));

	/* Declared: a graph input, output or value_info of the tensor's name. */
	static const char *const kinds[] = {"graph input", "value_info", "graph output"};
	const struct mfs_value *vs[] = {g->inputs, g->values, g->outputs};
	const size_t ns[] = {g->n_inputs, g->n_values, g->n_outputs};
	for (int k = 0; k < 3; k++) {
		const struct mfs_value *at = NULL;
		int32_t want = declared(vs[k], ns[k], t->name, &at);
		if (want >= 0 && want != te->dtype) {
			snprintf(msg, msglen, "tensor '%.200s': dtype %s contradicts the graph, which "
			         "declares it %s (%s '%.200s')", t->name, now, mfs_dtype_name(want),
			         kinds[k], at->name);
			return MFS_TYPE_DECLARED;
		}
	}

	/* Implied: a node reading it beside an input that keeps its old dtype. */
	int width = digits(g->n_nodes) > 4 ? digits(g->n_nodes) : 4;
	for (size_t n = 0; n < g->n_nodes; n++) {
		const struct mfs_node *nd = &g->nodes[n];
		bool reads = false;
		for (size_t k = 0; k < nd->n_inputs && !reads; k++)
			reads = strcmp(nd->inputs[k], t->name) == 0;
		if (!reads)
			continue;
		for (size_t k = 0; k < nd->n_inputs; k++) {
			const char *p = nd->inputs[k];
			if (!p[0] || strcmp(p, t->name) == 0)
				continue;
			int32_t pd = dtype_of(g, e, p);
			if (pd != t->dtype || pd == te->dtype)
				continue;
			char num[48];
			snprintf(num, sizeof(num), "%0*zu", width & 31, n);
			snprintf(msg, msglen, "tensor '%.200s': dtype %s, but node %s-%.100s%s also "
			         "reads '%.200s' of %s, the tensor's old dtype (a loader may refuse the "
			         "model)", t->name, now, num, nd->op_type,
			         g == d->graph ? "" : " of a subgraph", p, was);
			return MFS_TYPE_PEER;
		}
	}
	return MFS_TYPE_OK;
}

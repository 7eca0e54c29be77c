/*
 * codec/onnx/ssa.c — the part of onnx.checker's graph rules that renaming
 * and deleting values can break, checked on the main graph as a commit
 * would write it (writer.c calls it before it makes any op).
 *
 * The rules (onnx/checker.cc, check_graph): every name is defined once (a
 * graph input, an initializer, a node output; an IR < 4 input may name an
 * initializer); every non-empty node input names a graph input, an
 * initializer or the output of an EARLIER node (static single assignment in
 * topological order); every graph output names something defined.  Names
 * are looked up in a set of the defined names (open addressing, FNV-1a), so
 * the check is linear in the graph.  Subgraphs are not walked: a rename
 * reaches them whole, and a deletion of what they read is refused before
 * (fields.c, mfs_onnx_unused).
 *
 * A model that breaks these rules already is the user's: the check refuses
 * only an edit that makes a graph which passes fail (mfs_onnx_ssa_check is
 * run on the graph as it is, then as edited).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx.h"

struct nset {
	const char **slot;
	size_t cap;             /* a power of two, over twice the names */
};

static uint64_t fnv(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

/* Add `s`: 1 when it was there already, 0 when added. */
static int nset_add(struct nset *n, const char *s)
{
	for (size_t i = fnv(s) & (n->cap - 1);; i = (i + 1) & (n->cap - 1)) {
		if (!n->slot[i]) {
			n->slot[i] = s;
			return 0;
		}
		if (!strcmp(n->slot[i], s))
			return 1;
	}
}

static bool nset_has(const struct nset *n, const char *s)
{
	for (size_t i = fnv(s) & (n->cap - 1); n->slot[i]; i = (i + 1) & (n->cap - 1))
		if (!strcmp(n->slot[i], s))
			return true;
	return false;
}

/* The name `s` shows after the edit: renamed, or NULL when deleted. */
static const char *edited(const struct mfs_onnx_edit_names *e, const char *s)
{
	for (size_t i = 0; e && i < e->n; i++)
		if (!strcmp(e->from[i], s))
			return e->to[i];
	return s;
}

static int say(char *msg, size_t msglen, const char *fmt, const char *a, const char *b)
{
	if (msg && msglen)
		snprintf(msg, msglen, fmt, a, b);
	return -EINVAL;
}

int mfs_onnx_ssa_check(const struct mfs_graph *g, const struct mfs_onnx_edit_names *e,
                       char *msg, size_t msglen)
{
	size_t total = g->n_inputs + g->n_inits + 1;
	for (size_t i = 0; i < g->n_nodes; i++)
		total += g->nodes[i].n_outputs;
	struct nset n = {NULL, 16};
	while (n.cap < 2 * total)
		n.cap *= 2;
	if (!(n.slot = calloc(n.cap, sizeof(*n.slot))))
		return -ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < g->n_inits; i++) {
		const char *s = edited(e, g->inits[i]->name);
		if (s && nset_add(&n, s)) {
			rc = say(msg, msglen, "two initializers are named '%.200s'%s", s, "");
			goto out;
		}
	}
	for (size_t i = 0; i < g->n_inputs; i++) {
		const char *s = g->inputs[i].name ? edited(e, g->inputs[i].name) : NULL;
		bool init = g->input_is_init && g->input_is_init[i];
		if (s && nset_add(&n, s) && !init) {
			rc = say(msg, msglen, "the graph input '%.200s' is defined twice%s", s, "");
			goto out;
		}
	}
	for (size_t i = 0; i < g->n_nodes; i++) {
		const struct mfs_node *nd = &g->nodes[i];
		for (size_t k = 0; k < nd->n_inputs; k++) {
			const char *s = nd->inputs[k][0] ? edited(e, nd->inputs[k]) : "";
			if (!s || (s[0] && !nset_has(&n, s))) {
				rc = say(msg, msglen, "node '%.100s' reads '%.200s', which no graph input, "
				         "initializer or earlier node defines",
				         nd->name && nd->name[0] ? nd->name : nd->op_type ? nd->op_type : "?",
				         s ? s : nd->inputs[k]);
				goto out;
			}
		}
		for (size_t k = 0; k < nd->n_outputs; k++) {
			const char *s = nd->outputs[k][0] ? edited(e, nd->outputs[k]) : "";
			if (s && s[0] && nset_add(&n, s)) {
				rc = say(msg, msglen, "'%.200s' is defined twice (the output of node "
				         "'%.100s')", s, nd->name ? nd->name : "?");
				goto out;
			}
		}
	}
	for (size_t i = 0; i < g->n_outputs; i++) {
		const char *s = g->outputs[i].name ? edited(e, g->outputs[i].name) : NULL;
		if (!s || !nset_has(&n, s)) {
			rc = say(msg, msglen, "the graph output '%.200s' names no value of the graph%s",
			         s ? s : g->outputs[i].name ? g->outputs[i].name : "", "");
			goto out;
		}
	}
out:
	free(n.slot);
	return rc;
}

/*
 * codec/txn/status.c — the text of .modelfs/status (mfs_txn_status).
 *
 * One line per staged change, then the last commit's result, the journal's
 * state and what recovery did at open.  Model-provided names, and the
 * messages and paths that may quote them, are escaped as every text value
 * is (doc/design.md §3.5), so that every line stays one line.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txn/sidefile.h"
#include "txn/txn_int.h"

static const char *const where_name[] = {"tensor", "weights", "sparse"};

/* Model-provided text in a status line: mfs_text_escape(), one byte at a time. */
static void put_escaped(char **p, size_t *n, size_t *cap, const char *s)
{
	for (; *s; s++) {
		char tmp[4];
		size_t k = mfs_text_escape(tmp, sizeof(tmp), s, 1);
		if (*n + k + 1 > *cap) {
			size_t nc = *cap ? *cap * 2 : 1024;
			while (nc < *n + k + 1)
				nc *= 2;
			char *np = realloc(*p, nc);
			if (!np)
				return;
			*p = np;
			*cap = nc;
		}
		memcpy(*p + *n, tmp, k);
		*n += k;
		(*p)[*n] = '\0';
	}
}

static void put_text(char **p, size_t *n, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void put_text(char **p, size_t *n, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	if (*n + (size_t)k + 1 > *cap) {
		size_t nc = *cap ? *cap * 2 : 1024;
		while (nc < *n + (size_t)k + 1)
			nc *= 2;
		char *np = realloc(*p, nc);
		if (!np)
			return;
		*p = np;
		*cap = nc;
	}
	va_start(ap, fmt);
	vsnprintf(*p + *n, (size_t)k + 1, fmt, ap);
	va_end(ap);
	*n += (size_t)k;
}

/*
 * The type check of every staged dtype (the format's, on the effective
 * edits of the served view, all other edits counted): a "type conflict"
 * line for a dtype the graph declares otherwise, which a commit refuses
 * unless types are forced, a "type warning" line for one a node's other
 * inputs may contradict.  Nothing is planned when no dtype is staged.
 */
static void type_lines(struct mfs_txn *t, char **p, size_t *n, size_t *cap)
{
	bool any = false;
	for (size_t i = 0; t->ts && i < t->d->n_tensors && !any; i++) {
		const struct tstate *s = txn_ts_at(t, i);
		any = s && s->has_dtype;
	}
	if (!any || !t->m->fmt->type_check)
		return;
	const struct mfs_edit_set *e = &txn_view_get(t)->plan.set;
	for (size_t i = 0; i < e->n_tensors; i++) {
		if (!e->tensors[i].dtype_changed)
			continue;
		char line[400];
		int v = t->m->fmt->type_check(t->m, e, i, line, sizeof(line));
		if (v == MFS_TYPE_OK)
			continue;
		put_text(p, n, cap, v == MFS_TYPE_DECLARED ? "type conflict: " : "type warning: ");
		put_escaped(p, n, cap, line);
		if (v == MFS_TYPE_DECLARED)
			put_text(p, n, cap, t->opts.force_types ?
			         " (force_types: a commit writes it)\n" :
			         " (a commit refuses it; -o force_types writes it)\n");
		else
			put_text(p, n, cap, "\n");
	}
}

/*
 * "staged graph input 'x' shape N,3,224,224", "staged node 3 (Conv)
 * attribute group: 2": which file of the tree a staged graph field is,
 * from the description (model.h says what the ids mean).  The text is
 * escaped already; its line breaks show as %0A.
 */
static void field_line(const struct mfs_txn *t, const struct fslot *f, char **p, size_t *n,
                       size_t *cap)
{
	const struct mfs_graph *g = t->d->graph;
	uint64_t i = MFS_FIELD_I(f->id), j = MFS_FIELD_J(f->id);
	unsigned kind = MFS_FIELD_KIND(f->id);
	bool input = kind == MFS_FIELD_INPUT_SHAPE || kind == MFS_FIELD_INPUT_DTYPE;
	switch (kind) {
	case MFS_FIELD_INPUT_SHAPE:
	case MFS_FIELD_OUTPUT_SHAPE:
	case MFS_FIELD_INPUT_DTYPE:
	case MFS_FIELD_OUTPUT_DTYPE: {
		const struct mfs_value *v = !g ? NULL : input ?
		        (i < g->n_inputs ? &g->inputs[i] : NULL) :
		        (i < g->n_outputs ? &g->outputs[i] : NULL);
		put_text(p, n, cap, "staged graph %s '", input ? "input" : "output");
		put_escaped(p, n, cap, v && v->name ? v->name : "?");
		put_text(p, n, cap, "' %s ", kind == MFS_FIELD_INPUT_SHAPE ||
		         kind == MFS_FIELD_OUTPUT_SHAPE ? "shape" : "dtype");
		break;
	}
	case MFS_FIELD_INPUT_NAME:
	case MFS_FIELD_OUTPUT_NAME:
	case MFS_FIELD_VALUE_NAME: {
		const char *s = mfs_desc_field_name(t->d, f->id);
		put_text(p, n, cap, "staged %s '", kind == MFS_FIELD_INPUT_NAME ? "graph input" :
		         kind == MFS_FIELD_OUTPUT_NAME ? "graph output" : "value");
		put_escaped(p, n, cap, s ? s : "?");
		put_text(p, n, cap, "' renamed to ");
		break;
	}
	case MFS_FIELD_TENSOR_DELETE:
		put_text(p, n, cap, "staged tensor weights ");
		put_escaped(p, n, cap, i < t->d->n_tensors ? t->d->tensors[i]->name : "?");
		put_text(p, n, cap, " deleted\n");
		return;
	case MFS_FIELD_TENSOR_ADD:
		/* The text is the escaped name, as put_escaped writes it. */
		put_text(p, n, cap, "staged tensor weights ");
		put_text(p, n, cap, "%s", f->text);
		put_text(p, n, cap, " added\n");
		return;
	case MFS_FIELD_TENSOR_NAME:
		put_text(p, n, cap, "staged tensor weights ");
		put_escaped(p, n, cap, i < t->d->n_tensors ? t->d->tensors[i]->name : "?");
		put_text(p, n, cap, " renamed to ");
		break;
	default: {
		const struct mfs_node *nd = g && i < g->n_nodes ? &g->nodes[i] : NULL;
		put_text(p, n, cap, "staged node %" PRIu64 " (", i);
		put_escaped(p, n, cap, nd && nd->op_type ? nd->op_type : "?");
		if (kind == MFS_FIELD_NODE_NAME) {
			put_text(p, n, cap, ") name ");
		} else {
			put_text(p, n, cap, ") attribute ");
			put_escaped(p, n, cap, nd && j < nd->n_attrs && nd->attrs[j].name ?
			            nd->attrs[j].name : "?");
			put_text(p, n, cap, ": ");
		}
		break;
	}
	}
	for (size_t k = 0; k < f->len; k++)
		put_text(p, n, cap, f->text[k] == '\n' ? "%%0A" : "%c", f->text[k]);
	put_text(p, n, cap, "\n");
}

size_t mfs_txn_status(mfs_txn *t, char *buf, size_t len)
{
	char *p = NULL;
	size_t n = 0, cap = 0;
	pthread_rwlock_rdlock(&t->lock);
	const struct mfs_desc *d = t->d;
	/* The model's tensors, then the added ones (their own lines too). */
	for (size_t i = 0; t->ts && i < d->n_tensors + t->n_adds; i++) {
		const struct tstate *s = txn_ts_at(t, i);
		if (!s)
			continue;
		const char *w = where_name[s->where];
		if (s->data) {
			uint64_t size = 0;
			mfs_stage_size(&size, t->st, key_of(K_DATA, i));
			put_text(&p, &n, &cap, "staged tensor %s ", w);
			put_escaped(&p, &n, &cap, s->t->name);
			put_text(&p, &n, &cap, " data %" PRIu64 " bytes\n", size);
		}
		if (s->has_dtype) {
			put_text(&p, &n, &cap, "staged tensor %s ", w);
			put_escaped(&p, &n, &cap, s->t->name);
			put_text(&p, &n, &cap, " dtype %s\n", mfs_desc_dtype_name(t->d, s->dtype));
		}
		if (s->has_shape) {
			char dims[MFS_MAX_RANK * 21 + 1];
			mfs_dims_format(dims, sizeof(dims), s->dims, s->rank);
			put_text(&p, &n, &cap, "staged tensor %s ", w);
			put_escaped(&p, &n, &cap, s->t->name);
			put_text(&p, &n, &cap, " shape [%s]\n", dims);       /* "[]": a scalar */
		}
	}
	for (unsigned k = 0; k < txn_meta_count(t); k++)
		if (t->meta_staged[k])
			put_text(&p, &n, &cap, "staged meta %s\n", t->m->fmt->meta_names[k]);
	for (size_t i = 0; i < t->n_props; i++) {
		const struct pslot *ps = &t->props[i];
		if (!ps->staged)
			continue;
		put_text(&p, &n, &cap, "staged prop ");
		if (ps->key) {
			put_escaped(&p, &n, &cap, ps->key);
			if (i >= t->n_orig_props)
				put_text(&p, &n, &cap, " (new)");
			else if (strcmp(ps->key, d->props[i].name) != 0) {
				put_text(&p, &n, &cap, " (renamed from ");
				put_escaped(&p, &n, &cap, d->props[i].name);
				put_text(&p, &n, &cap, ")");
			}
			if (ps->type) {
				put_text(&p, &n, &cap, " type ");
				put_escaped(&p, &n, &cap, ps->type);
			}
		} else {
			put_escaped(&p, &n, &cap, d->props[i].name);
			put_text(&p, &n, &cap, " (removed)");
		}
		put_text(&p, &n, &cap, "\n");
	}
	for (size_t i = 0; i < t->n_fields; i++)
		field_line(t, &t->fields[i], &p, &n, &cap);
	if (t->field_note[0]) {
		put_text(&p, &n, &cap, "last refused write: ");
		put_escaped(&p, &n, &cap, t->field_note);
		put_text(&p, &n, &cap, "\n");
	}
	size_t n_scratch = 0;
	for (size_t i = 0; i < t->n_scratch; i++)
		n_scratch += t->scratch[i];
	if (n_scratch)
		put_text(&p, &n, &cap, "scratch files: %zu (not part of the model)\n", n_scratch);
	type_lines(t, &p, &n, &cap);
	put_escaped(&p, &n, &cap, t->last);
	put_text(&p, &n, &cap, "\n");
	if (t->type_note[0]) {
		put_text(&p, &n, &cap, "last commit's type warning: ");
		put_escaped(&p, &n, &cap, t->type_note);
		put_text(&p, &n, &cap, "\n");
	}
	if (t->broken) {
		put_text(&p, &n, &cap, "degraded: ");
		put_escaped(&p, &n, &cap, t->broken_msg);
		put_text(&p, &n, &cap, "\n");
	}
	if (t->st) {
		struct mfs_stage_stat ss;
		mfs_stage_stat(&ss, t->st);
		char jname[NAME_MAX + 1] = "";
		mfs_sidefile_name(jname, sizeof(jname), t->name, ".modelfs-journal");
		if (ss.journal_bytes) {
			put_text(&p, &n, &cap, "journal: ");
			put_escaped(&p, &n, &cap, strcmp(t->m->place->name, "/") ? t->m->place->name : "");
			put_text(&p, &n, &cap, "/");
			put_escaped(&p, &n, &cap, jname);
			put_text(&p, &n, &cap, " %" PRIu64 "\n", ss.journal_bytes);
		} else
			put_text(&p, &n, &cap, "journal: none\n");
		if (ss.failed)
			put_text(&p, &n, &cap, "journal: an fsync failed; staged edits may not "
			         "survive a power cut (commit or abort)\n");
	} else {
		put_text(&p, &n, &cap, "journal: none (read-only)\n");
	}
	if (t->journal_note[0]) {
		put_text(&p, &n, &cap, "journal: ");
		put_escaped(&p, &n, &cap, t->journal_note);
		put_text(&p, &n, &cap, "\n");
	}
	if (t->rec.msg[0]) {
		put_text(&p, &n, &cap, "recovery: ");
		put_escaped(&p, &n, &cap, t->rec.msg);
		put_text(&p, &n, &cap, "\n");
	}
	pthread_rwlock_unlock(&t->lock);
	if (len) {
		size_t k = n < len - 1 ? n : len - 1;
		if (k)
			memcpy(buf, p, k);
		buf[k] = '\0';
	}
	free(p);
	return n;
}


/*
 * tests/unit/test_tree.c — the tree builder, from descriptions made by hand.
 *
 * The structs of modelfs/model.h are plain C, so each case builds the
 * description it needs (no codec, no model file, no mount) and checks the
 * tree doc/design.md §3 promises: paths, contents, sizes, lookup, "~N"
 * collisions, reserved names under weights/, node numbering width, subgraph,
 * sparse, function and training directories, and that a 100,000-node graph
 * builds quickly in modest memory.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fs.h"
#include "names.h"
#include "tree.h"

/* ------------------------------------------------ building descriptions */

/* Everything a case allocates, freed by the teardown. */
static void **allocs;
static size_t n_allocs, cap_allocs;

static void *A(size_t size)
{
	if (n_allocs == cap_allocs) {
		cap_allocs = cap_allocs ? cap_allocs * 2 : 256;
		allocs = realloc(allocs, cap_allocs * sizeof(*allocs));
		assert_non_null(allocs);
	}
	void *p = calloc(1, size ? size : 1);
	assert_non_null(p);
	allocs[n_allocs++] = p;
	return p;
}

static char *S(const char *s)
{
	char *p = A(strlen(s) + 1);
	strcpy(p, s);
	return p;
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_allocs; i++)
		free(allocs[i]);
	n_allocs = 0;
	return 0;
}

static struct mfs_tensor *tensor(const char *name, int32_t dtype, size_t rank, ...)
{
	struct mfs_tensor *t = A(sizeof(*t));
	t->name = S(name);
	t->dtype = dtype;
	t->rank = rank;
	t->dims = A(rank * sizeof(int64_t));
	va_list ap;
	va_start(ap, rank);
	for (size_t i = 0; i < rank; i++)
		t->dims[i] = va_arg(ap, int64_t);
	va_end(ap);
	assert_int_equal(mfs_tensor_nbytes(&t->nbytes, dtype, t->dims, rank), 0);
	t->off = 4096;
	return t;
}

static struct mfs_sparse *sparse(const char *name, int64_t d0, int64_t d1, int64_t nnz)
{
	struct mfs_sparse *s = A(sizeof(*s));
	s->name = S(name);
	s->dtype = MFS_DT_FLOAT;
	s->rank = 2;
	s->dims = A(2 * sizeof(int64_t));
	s->dims[0] = d0;
	s->dims[1] = d1;
	s->values = tensor(name, MFS_DT_FLOAT, 1, nnz);
	s->indices = tensor("", MFS_DT_INT64, 2, nnz, (int64_t)2);
	return s;
}

static struct mfs_value value(const char *name, const char *dtype, const char *shape_csv)
{
	struct mfs_value v = {.name = S(name), .dtype = S(dtype)};
	if (!shape_csv)
		return v;
	v.shape.known = true;
	v.shape.dims = A(8 * sizeof(struct mfs_dim));
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", shape_csv);
	for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
		struct mfs_dim *d = &v.shape.dims[v.shape.rank++];
		if (tok[0] >= '0' && tok[0] <= '9')
			d->value = atoll(tok);
		else if (tok[0] == '?')
			d->value = -1;
		else
			d->value = -1, d->param = S(tok);
	}
	return v;
}

static char **strv(size_t n, ...)
{
	char **v = A(n * sizeof(char *));
	va_list ap;
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		v[i] = S(va_arg(ap, const char *));
	va_end(ap);
	return v;
}

static struct mfs_attr text_attr(const char *name, int type, const char *text)
{
	struct mfs_attr a = {.name = S(name), .type = type, .text = S(text)};
	a.text_len = strlen(text);
	return a;
}

static struct mfs_graph *graph(const char *name)
{
	struct mfs_graph *g = A(sizeof(*g));
	g->name = S(name);
	return g;
}

static struct mfs_desc *desc_onnx(struct mfs_graph *g)
{
	struct mfs_desc *d = A(sizeof(*d));
	d->format = "onnx";
	d->flags = MFS_DESC_GRAPH;
	d->graph = g;
	d->files = A(sizeof(struct mfs_file));
	d->files[0].path = S("model.onnx");
	d->files[0].size = 12345;
	d->n_files = 1;
	return d;
}

/* --------------------------------------------------------- tree helpers */

/* mfs_tree_node() with buffers enough for the few entries a test holds. */
static const struct mfs_tnode *node(const struct mfs_tree *t, uint64_t idx)
{
	static struct mfs_tnode ring[16];
	static unsigned next;
	return mfs_tree_node(t, idx, &ring[next++ % 16]);
}

static struct mfs_tree *build(const struct mfs_desc *d)
{
	struct mfs_tree *t = NULL;
	assert_int_equal(mfs_tree_build(&t, d), 0);
	assert_non_null(t);
	return t;
}

static uint32_t at(const struct mfs_tree *t, const char *path)
{
	uint32_t i;
	int rc = mfs_tree_resolve(t, path, &i);
	if (rc < 0)
		fail_msg("no entry at '%s': %s", path, strerror(-rc));
	return i;
}

static void assert_missing(const struct mfs_tree *t, const char *path)
{
	uint32_t i;
	if (mfs_tree_resolve(t, path, &i) == 0)
		fail_msg("unexpected entry at '%s'", path);
}

static const struct mfs_tnode *node_at(const struct mfs_tree *t, const char *path)
{
	return node(t, at(t, path));
}

/* The whole content of a text file, NUL-terminated (static buffer). */
static const char *text(const struct mfs_tree *t, const char *path)
{
	static char buf[1 << 16];
	uint32_t i = at(t, path);
	const struct mfs_tnode *e = node(t, i);
	if (e->kind != MFS_TN_TEXT)
		fail_msg("'%s' is not a text file", path);
	uint64_t size = mfs_tree_size(t, i);
	assert_true(size < sizeof(buf));
	size_t n = mfs_tree_text_read(t, i, buf, sizeof(buf), 0);
	assert_int_equal(n, size);
	buf[n] = '\0';
	return buf;
}

static void assert_text(const struct mfs_tree *t, const char *path, const char *want)
{
	const char *got = text(t, path);
	if (strcmp(got, want))
		fail_msg("%s: got '%s', want '%s'", path, got, want);
}

/* Children names of a directory, in readdir order, joined with ' '. */
static const char *ls(const struct mfs_tree *t, const char *path)
{
	static char buf[1 << 16];
	uint32_t d = at(t, path);
	const struct mfs_tnode *e = node(t, d);
	assert_int_equal(e->kind, MFS_TN_DIR);
	size_t pos = 0;
	buf[0] = '\0';
	for (uint32_t i = 0; i < e->u.dir.count; i++) {
		const struct mfs_tnode *c = node(t, mfs_tree_child(t, d, i));
		pos += (size_t)snprintf(buf + pos, sizeof(buf) - pos, "%s%.*s", i ? " " : "",
		                        (int)c->name_len, c->name);
	}
	return buf;
}

static void assert_ls(const struct mfs_tree *t, const char *path, const char *want)
{
	const char *got = ls(t, path);
	if (strcmp(got, want))
		fail_msg("ls %s: got '%s', want '%s'", path, got, want);
}

/*
 * Invariants of every tree: each entry is found by lookup under its parent,
 * names are safe components, st_size is exactly what a whole read returns,
 * directory counts add up.
 */
static void check_invariants(const struct mfs_tree *t)
{
	uint32_t n = mfs_tree_count(t);
	uint64_t children = 0;
	assert_null(node(t, n));
	assert_null(node(t, mfs_tree_index(0)));
	assert_int_equal(mfs_tree_ino(MFS_TREE_ROOT), 1);
	for (uint32_t i = 0; i < n; i++) {
		const struct mfs_tnode *e = node(t, i);
		assert_int_equal(mfs_tree_index(mfs_tree_ino(i)), i);
		if (e->kind == MFS_TN_DIR) {
			uint32_t subdirs = 0;
			for (uint32_t k = 0; k < e->u.dir.count; k++) {
				uint32_t c = mfs_tree_child(t, i, k);
				assert_int_equal(node(t, c)->parent, i);
				subdirs += node(t, c)->kind == MFS_TN_DIR;
			}
			assert_int_equal(subdirs, e->u.dir.n_subdirs);
			children += e->u.dir.count;
		} else if (e->kind == MFS_TN_TEXT) {
			uint64_t size = mfs_tree_size(t, i);
			char *buf = malloc(size + 2);
			assert_non_null(buf);
			assert_int_equal(mfs_tree_text_read(t, i, buf, size + 2, 0), size);
			/* Text files end with a newline (or are empty). */
			if (size)
				assert_int_equal(buf[size - 1], '\n');
			/* Reads from any offset add up to the same bytes. */
			if (size > 1) {
				char *b2 = malloc(size);
				assert_non_null(b2);
				size_t a = mfs_tree_text_read(t, i, b2, 1, 0);
				size_t c = mfs_tree_text_read(t, i, b2 + a, size, a);
				assert_int_equal(a + c, size);
				assert_memory_equal(buf, b2, size);
				free(b2);
			}
			assert_int_equal(mfs_tree_text_read(t, i, buf, 10, size), 0);
			free(buf);
		} else if (e->kind == MFS_TN_TENSOR) {
			assert_int_equal(mfs_tree_size(t, i), e->u.tensor->nbytes);
		}
		if (i == MFS_TREE_ROOT)
			continue;
		assert_true(e->name_len >= 1);
		assert_null(memchr(e->name, '/', e->name_len));
		assert_null(memchr(e->name, '\0', e->name_len));
		assert_false(e->name_len == 1 && e->name[0] == '.');
		assert_false(e->name_len == 2 && e->name[0] == '.' && e->name[1] == '.');
		uint32_t found;
		assert_int_equal(mfs_tree_lookup(t, e->parent, e->name, e->name_len, &found), 0);
		assert_int_equal(found, i);
	}
	assert_int_equal(children, n - 1);
}

/* -------------------------------------------------------------- cases */

/* The classic Linear(10, 1) + ReLU export of the bundled example. */
static struct mfs_desc *linear_relu(void)
{
	struct mfs_graph *g = graph("main_graph");
	g->n_inputs = 3;
	g->inputs = A(3 * sizeof(struct mfs_value));
	g->inputs[0] = value("input", "float32", "batch_size,10");
	g->inputs[1] = value("fc.weight", "float32", "1,10");
	g->inputs[2] = value("fc.bias", "float32", "1");
	g->input_is_init = A(3 * sizeof(bool));
	g->input_is_init[1] = g->input_is_init[2] = true;
	g->n_outputs = 1;
	g->outputs = A(sizeof(struct mfs_value));
	g->outputs[0] = value("output", "float32", "batch_size,1");
	g->outputs[0].doc_string = S("the answer");
	g->n_values = 1;
	g->values = A(sizeof(struct mfs_value));
	g->values[0] = value("/fc/Gemm_output_0", "float32", "batch_size,?");
	g->n_nodes = 2;
	g->nodes = A(2 * sizeof(struct mfs_node));
	struct mfs_node *n = &g->nodes[0];
	n->op_type = S("Gemm");
	n->domain = S("");
	n->name = S("/fc/Gemm");
	n->inputs = strv(3, "input", "fc.weight", "fc.bias");
	n->n_inputs = 3;
	n->outputs = strv(1, "/fc/Gemm_output_0");
	n->n_outputs = 1;
	n->n_attrs = 3;
	n->attrs = A(3 * sizeof(struct mfs_attr));
	n->attrs[0] = text_attr("alpha", MFS_ATTR_FLOAT, "1\n");
	n->attrs[1] = text_attr("beta", MFS_ATTR_FLOAT, "1\n");
	n->attrs[2] = text_attr("transB", MFS_ATTR_INT, "1\n");
	n = &g->nodes[1];
	n->op_type = S("Relu");
	n->domain = S("");
	n->name = S("/relu/Relu");
	n->doc_string = S("rectify");
	n->inputs = strv(1, "/fc/Gemm_output_0");
	n->n_inputs = 1;
	n->outputs = strv(1, "output");
	n->n_outputs = 1;
	g->n_inits = 2;
	g->inits = A(2 * sizeof(struct mfs_tensor *));
	g->inits[0] = tensor("fc.weight", MFS_DT_FLOAT, 2, (int64_t)1, (int64_t)10);
	g->inits[1] = tensor("fc.bias", MFS_DT_FLOAT, 1, (int64_t)1);

	struct mfs_desc *d = desc_onnx(g);
	d->n_meta = 3;
	d->meta = A(3 * sizeof(struct mfs_meta));
	d->meta[0] = (struct mfs_meta){S("format"), S("onnx\n"), 5};
	d->meta[1] = (struct mfs_meta){S("opset"), S("ai.onnx 12\n"), 11};
	d->meta[2] = (struct mfs_meta){S("input_shape"), S("batch_size,10\n"), 14};
	d->n_props = 2;
	d->props = A(2 * sizeof(struct mfs_meta));
	d->props[0] = (struct mfs_meta){S("author"), S("me"), 2};
	d->props[1] = (struct mfs_meta){S("a/b"), S(""), 0};
	return d;
}

static void builds_the_onnx_layout(void **state)
{
	(void)state;
	struct mfs_tree *t = build(linear_relu());
	check_invariants(t);

	assert_ls(t, "", "model.onnx meta inputs outputs values nodes weights npy");
	const struct mfs_tnode *root_file = node_at(t, "model.onnx");
	assert_int_equal(root_file->kind, MFS_TN_SRC);
	assert_int_equal(root_file->u.src, 0);
	assert_int_equal(mfs_tree_size(t, at(t, "model.onnx")), 12345);

	assert_ls(t, "meta", "format opset input_shape sha256 graph.dot props");
	assert_text(t, "meta/opset", "ai.onnx 12\n");
	assert_text(t, "meta/input_shape", "batch_size,10\n");
	assert_text(t, "meta/props/author", "me\n");
	assert_text(t, "meta/props/a%2Fb", "\n");

	/* Initializers are not graph inputs in the tree. */
	assert_ls(t, "inputs", "input");
	assert_ls(t, "inputs/input", "dtype shape");
	assert_text(t, "inputs/input/dtype", "float32\n");
	assert_text(t, "inputs/input/shape", "batch_size,10\n");
	assert_ls(t, "outputs/output", "dtype shape doc_string");
	assert_text(t, "outputs/output/doc_string", "the answer\n");
	assert_text(t, "values/%2Ffc%2FGemm_output_0/shape", "batch_size,?\n");

	assert_ls(t, "nodes", "0000-Gemm 0001-Relu");
	assert_ls(t, "nodes/0000-Gemm", "op_type domain name inputs outputs attrs");
	assert_ls(t, "nodes/0001-Relu", "op_type domain name doc_string inputs outputs attrs");
	assert_text(t, "nodes/0000-Gemm/op_type", "Gemm\n");
	assert_text(t, "nodes/0000-Gemm/domain", "\n");
	assert_text(t, "nodes/0000-Gemm/name", "/fc/Gemm\n");
	assert_text(t, "nodes/0000-Gemm/inputs", "input\nfc.weight\nfc.bias\n");
	assert_text(t, "nodes/0000-Gemm/outputs", "/fc/Gemm_output_0\n");
	assert_ls(t, "nodes/0000-Gemm/attrs", "alpha beta transB");
	assert_text(t, "nodes/0000-Gemm/attrs/transB", "1\n");
	assert_ls(t, "nodes/0001-Relu/attrs", "");

	assert_ls(t, "weights", "fc");
	assert_ls(t, "weights/fc", "weight bias");
	assert_ls(t, "weights/fc/weight", "data dtype shape name sha256 stats");
	const struct mfs_tnode *data = node_at(t, "weights/fc/weight/data");
	assert_int_equal(data->kind, MFS_TN_TENSOR);
	assert_int_equal(mfs_tree_size(t, at(t, "weights/fc/weight/data")), 40);
	assert_text(t, "weights/fc/weight/dtype", "float32\n");
	assert_text(t, "weights/fc/weight/shape", "1,10\n");
	assert_text(t, "weights/fc/weight/name", "fc.weight\n");
	assert_text(t, "weights/fc/bias/shape", "1\n");
	assert_true(node_at(t, "weights/fc/weight")->flags & MFS_TNF_TENSOR);
	assert_false(node_at(t, "weights/fc")->flags & MFS_TNF_TENSOR);
	/* npy/ mirrors weights/, one file per tensor: its header (10 bytes and
	 * the 61-byte dict of a (1, 10) float32, padded to 128) and its bytes. */
	assert_ls(t, "npy", "fc");
	assert_ls(t, "npy/fc", "weight.npy bias.npy");
	assert_int_equal(node_at(t, "npy/fc/weight.npy")->kind, MFS_TN_NPY);
	assert_int_equal(mfs_tree_size(t, at(t, "npy/fc/weight.npy")), 128 + 40);

	/* st_nlink material: root has seven subdirectories. */
	assert_int_equal(node_at(t, "")->u.dir.n_subdirs, 7);
	assert_true(mfs_tree_mem(t) > 0);
	mfs_tree_destroy(t);
}

static void lookup_answers_like_a_directory(void **state)
{
	(void)state;
	struct mfs_tree *t = build(linear_relu());
	uint32_t meta, i;
	assert_int_equal(mfs_tree_lookup(t, MFS_TREE_ROOT, "meta", 4, &meta), 0);
	assert_int_equal(mfs_tree_lookup(t, meta, "opset", 5, &i), 0);
	assert_int_equal(node(t, i)->parent, meta);
	/* Names are compared by length: "opse" and "opsetx" are not "opset". */
	assert_int_equal(mfs_tree_lookup(t, meta, "opse", 4, &i), -ENOENT);
	assert_int_equal(mfs_tree_lookup(t, meta, "opsetx", 6, &i), -ENOENT);
	assert_int_equal(mfs_tree_lookup(t, meta, "", 0, &i), -ENOENT);
	assert_int_equal(mfs_tree_lookup(t, meta, "x", 300, &i), -ENAMETOOLONG);
	assert_int_equal(mfs_tree_lookup(t, MFS_TREE_ROOT, "model.onnx", 10, &i), 0);
	assert_int_equal(mfs_tree_lookup(t, i, "x", 1, &i), -ENOTDIR);
	assert_int_equal(mfs_tree_lookup(t, mfs_tree_count(t), "x", 1, &i), -ENOENT);
	/* A name in one directory is not found in another. */
	assert_int_equal(mfs_tree_lookup(t, MFS_TREE_ROOT, "opset", 5, &i), -ENOENT);
	assert_int_equal(mfs_tree_resolve(t, "weights/fc/../fc/./weight/data", &i), 0);
	assert_int_equal(i, at(t, "weights/fc/weight/data"));
	assert_int_equal(mfs_tree_resolve(t, "weights/nope", &i), -ENOENT);
	mfs_tree_destroy(t);
}

static struct mfs_desc *with_inits(size_t n, const char *const *names)
{
	struct mfs_graph *g = graph("g");
	g->n_inits = n;
	g->inits = A(n * sizeof(struct mfs_tensor *));
	for (size_t i = 0; i < n; i++)
		g->inits[i] = tensor(names[i], MFS_DT_INT8, 1, (int64_t)(i + 1));
	return desc_onnx(g);
}

static void colliding_tensor_paths_get_suffixes(void **state)
{
	(void)state;
	const char *names[] = {"a.b", "a/b", "a..b", "a.b.c", "dup", "dup", "dup~1"};
	struct mfs_tree *t = build(with_inits(7, names));
	check_invariants(t);
	assert_ls(t, "weights", "a dup dup~1 dup~1~1");
	assert_ls(t, "weights/a", "b b~1 b~2");
	assert_text(t, "weights/a/b/name", "a.b\n");
	assert_text(t, "weights/a/b~1/name", "a/b\n");
	assert_text(t, "weights/a/b~2/name", "a..b\n");
	/* A tensor directory may hold the directories of longer names. */
	assert_ls(t, "weights/a/b", "data dtype shape name sha256 stats c");
	assert_text(t, "weights/a/b/c/name", "a.b.c\n");
	/* The later duplicate gets the suffix; the real "dup~1" comes after it. */
	assert_int_equal(mfs_tree_size(t, at(t, "weights/dup/data")), 5);
	assert_int_equal(mfs_tree_size(t, at(t, "weights/dup~1/data")), 6);
	assert_text(t, "weights/dup~1~1/name", "dup~1\n");
	mfs_tree_destroy(t);
}

/* Tensors staged for deletion (mfs_tree_build_hiding): their directories
 * and npy views are gone, the directories on the way to them stay. */
static void hidden_tensors_keep_the_directories_on_their_way(void **state)
{
	(void)state;
	const char *names[] = {"layer.0.w", "layer.0.b", "top", "head/x"};
	struct mfs_desc *d = with_inits(4, names);
	for (size_t i = 0; i < 4; i++)
		d->graph->inits[i]->id = i;
	const uint64_t hide[] = {0, 2, 3};
	struct mfs_tree *t = NULL;
	assert_int_equal(mfs_tree_build_hiding(&t, d, hide, 3), 0);
	check_invariants(t);
	assert_ls(t, "weights", "layer head");
	assert_ls(t, "weights/layer/0", "b");
	assert_ls(t, "weights/head", "");
	assert_missing(t, "weights/top");
	assert_missing(t, "npy/top.npy");
	assert_missing(t, "npy/layer/0/w.npy");
	assert_text(t, "weights/layer/0/b/name", "layer.0.b\n");
	mfs_tree_destroy(t);
}

static void reserved_names_beside_a_tensor_get_suffixes(void **state)
{
	(void)state;
	/* "t" first: its own files are there when the others arrive. */
	const char *names[] = {"t", "t.data", "t.name", "t.shape.x", "t.dtype.y", "t.ok"};
	struct mfs_tree *t = build(with_inits(6, names));
	check_invariants(t);
	assert_ls(t, "weights/t", "data dtype shape name sha256 stats data~1 name~1 shape~1 dtype~1 ok");
	assert_text(t, "weights/t/data~1/name", "t.data\n");
	assert_text(t, "weights/t/name~1/name", "t.name\n");
	assert_text(t, "weights/t/shape~1/x/name", "t.shape.x\n");
	assert_int_equal(node_at(t, "weights/t/data")->kind, MFS_TN_TENSOR);
	mfs_tree_destroy(t);

	/* "x.data.y" first: x/data is a directory, so "x" cannot live at x/. */
	const char *names2[] = {"x.data.y", "x", "x.z", "p.q", "p"};
	t = build(with_inits(5, names2));
	check_invariants(t);
	assert_ls(t, "weights", "x x~1 p");
	assert_text(t, "weights/x~1/name", "x\n");
	assert_text(t, "weights/x/data/y/name", "x.data.y\n");
	assert_text(t, "weights/x/z/name", "x.z\n");
	/* ... but a plain directory made by a longer name can hold a tensor. */
	assert_ls(t, "weights/p", "q data dtype shape name sha256 stats");
	assert_text(t, "weights/p/name", "p\n");
	mfs_tree_destroy(t);
}

static void dangerous_names_stay_inside(void **state)
{
	(void)state;
	const char *names[] = {"..", ".", "", "/", "../../etc", "a\nb", "%"};
	struct mfs_tree *t = build(with_inits(7, names));
	check_invariants(t);
	assert_ls(t, "weights", "%2E%2E %2E % %2F etc a%0Ab %25");
	assert_text(t, "weights/%2E%2E/name", "..\n");
	assert_text(t, "weights/%/name", "\n");
	assert_text(t, "weights/etc/name", "../../etc\n");
	mfs_tree_destroy(t);

	/* Graph inputs, node op_types, attribute names and props too. */
	struct mfs_graph *g = graph("g");
	g->n_inputs = 3;
	g->inputs = A(3 * sizeof(struct mfs_value));
	g->inputs[0] = value("..", "float32", "");
	g->inputs[1] = value("a/b", "", NULL);
	g->inputs[2] = value("..", "int64", "2");
	g->n_nodes = 1;
	g->nodes = A(sizeof(struct mfs_node));
	g->nodes[0].op_type = S("../x");
	g->nodes[0].n_attrs = 1;
	g->nodes[0].attrs = A(sizeof(struct mfs_attr));
	g->nodes[0].attrs[0] = text_attr(".", MFS_ATTR_STRING, "v\n");
	t = build(desc_onnx(g));
	check_invariants(t);
	assert_ls(t, "inputs", "%2E%2E a%2Fb %2E%2E~1");
	assert_text(t, "inputs/%2E%2E/shape", "\n");        /* a scalar */
	assert_text(t, "inputs/a%2Fb/shape", "*\n");        /* unknown rank */
	assert_text(t, "inputs/a%2Fb/dtype", "\n");
	assert_text(t, "inputs/%2E%2E~1/dtype", "int64\n");
	assert_ls(t, "nodes", "0000-..%2Fx");
	assert_text(t, "nodes/0000-..%2Fx/attrs/%2E", "v\n");
	assert_text(t, "nodes/0000-..%2Fx/domain", "\n");
	mfs_tree_destroy(t);
}

static void long_names_are_cut_and_stay_unique(void **state)
{
	(void)state;
	char long_a[301], long_b[301], exact[256];
	memset(long_a, 'a', 300);
	long_a[300] = '\0';
	memcpy(long_b, long_a, 301);
	long_b[299] = 'b';              /* differs only past the cut */
	memset(exact, 'e', 255);        /* fits exactly; a duplicate needs room for "~1" */
	exact[255] = '\0';
	const char *names[] = {long_a, long_b, exact, exact};
	struct mfs_desc *d = with_inits(4, names);
	d->graph->n_nodes = 1;
	d->graph->nodes = A(sizeof(struct mfs_node));
	d->graph->nodes[0].op_type = S(long_a);
	struct mfs_tree *t = build(d);
	check_invariants(t);

	const struct mfs_tnode *w = node_at(t, "weights");
	assert_int_equal(w->u.dir.count, 4);
	const struct mfs_tnode *c[4];
	for (uint32_t i = 0; i < 4; i++) {
		c[i] = node(t, mfs_tree_child(t, at(t, "weights"), i));
		assert_true(c[i]->name_len <= MFS_NAME_MAX);
	}
	/* The two long names: cut, marked, different. */
	assert_non_null(memmem(c[0]->name, c[0]->name_len, "%~", 2));
	assert_false(c[0]->name_len == c[1]->name_len &&
	             !memcmp(c[0]->name, c[1]->name, c[0]->name_len));
	/* The exact-fit name and its duplicate, cut to make room for "~1". */
	assert_int_equal(c[2]->name_len, 255);
	assert_int_equal(c[3]->name_len, 255);
	assert_memory_equal(c[3]->name + 253, "~1", 2);

	/* The node directory: "0000-" plus the cut op_type, within 255 bytes. */
	const struct mfs_tnode *nd = node(t, mfs_tree_child(t, at(t, "nodes"), 0));
	assert_true(nd->name_len <= MFS_NAME_MAX);
	assert_memory_equal(nd->name, "0000-aaa", 8);
	assert_non_null(memmem(nd->name, nd->name_len, "%~", 2));
	mfs_tree_destroy(t);
}

static struct mfs_desc *many_nodes(size_t n)
{
	struct mfs_graph *g = graph("big");
	g->n_nodes = n;
	g->nodes = A(n * sizeof(struct mfs_node));
	char **ins = strv(2, "x", "w");
	char **outs = strv(1, "y");
	struct mfs_attr *attrs = A(2 * sizeof(struct mfs_attr));
	attrs[0] = text_attr("axis", MFS_ATTR_INT, "1\n");
	attrs[1] = text_attr("perm", MFS_ATTR_INTS, "0\n2\n1\n");
	char *op = S("Relu"), *dom = S("");
	for (size_t i = 0; i < n; i++) {
		struct mfs_node *nd = &g->nodes[i];
		nd->op_type = op;
		nd->domain = dom;
		nd->name = dom;
		nd->inputs = ins;
		nd->n_inputs = 2;
		nd->outputs = outs;
		nd->n_outputs = 1;
		nd->attrs = attrs;
		nd->n_attrs = 2;
	}
	return desc_onnx(g);
}

static void node_directories_are_numbered_to_the_width_of_the_count(void **state)
{
	(void)state;
	struct mfs_tree *t = build(many_nodes(3));
	assert_ls(t, "nodes", "0000-Relu 0001-Relu 0002-Relu");
	mfs_tree_destroy(t);
	t = build(many_nodes(10000));
	at(t, "nodes/00000-Relu");
	at(t, "nodes/09999-Relu");
	assert_missing(t, "nodes/0000-Relu");
	assert_missing(t, "nodes/10000-Relu");
	mfs_tree_destroy(t);
	t = build(many_nodes(9999));
	at(t, "nodes/9998-Relu");
	mfs_tree_destroy(t);
}

/*
 * meta/graph.dot of a 100,000-node chain: nothing made until asked, then
 * the same bytes whether read front to back in small pieces or at random
 * offsets, one edge per link labelled with its tensor, and a body (If's
 * then_branch) drawn as a cluster.
 */
static void a_100k_node_chain_draws_as_dot_in_pieces(void **state)
{
	(void)state;
	enum { N = 100000 };
	struct mfs_graph *g = graph("chain");
	g->n_nodes = N;
	g->nodes = A(N * sizeof(struct mfs_node));
	char buf[32];
	for (size_t i = 0; i < N; i++) {
		struct mfs_node *nd = &g->nodes[i];
		nd->op_type = S(i == 7 ? "If" : "Relu");
		nd->domain = nd->name = S("");
		snprintf(buf, sizeof(buf), "t%zu", i ? i - 1 : 0);
		nd->inputs = strv(1, i ? buf : "x");
		nd->n_inputs = 1;
		snprintf(buf, sizeof(buf), "t%zu", i);
		nd->outputs = strv(1, buf);
		nd->n_outputs = 1;
	}
	struct mfs_graph *body = graph("then\"body");
	body->n_nodes = 1;
	body->nodes = A(sizeof(struct mfs_node));
	body->nodes[0].op_type = S("Identity");
	body->nodes[0].domain = body->nodes[0].name = S("");
	body->nodes[0].inputs = strv(1, "t3");     /* captured from the top graph */
	body->nodes[0].n_inputs = 1;
	body->nodes[0].outputs = strv(1, "r");
	body->nodes[0].n_outputs = 1;
	struct mfs_attr *at = A(sizeof(struct mfs_attr));
	at->name = S("then_branch");
	at->type = MFS_ATTR_GRAPH;
	at->graphs = A(sizeof(struct mfs_graph *));
	at->graphs[0] = body;
	at->n_graphs = 1;
	g->nodes[7].attrs = at;
	g->nodes[7].n_attrs = 1;

	struct mfs_dot *d;
	assert_int_equal(mfs_dot_new(&d, g), 0);
	uint64_t size;
	assert_int_equal(mfs_dot_size(d, &size), 0);
	assert_true(size > N * 20);
	char *seq = malloc(size + 1), *rnd = malloc(size + 1);
	assert_non_null(seq);
	assert_non_null(rnd);
	uint64_t off = 0;
	while (off < size) {
		ssize_t n = mfs_dot_read(d, seq + off, 4093, off);
		assert_true(n > 0);
		off += (uint64_t)n;
	}
	assert_int_equal(mfs_dot_read(d, seq, 10, size), 0);
	seq[size] = rnd[size] = '\0';
	/* Pieces from the end backwards: each starts at a checkpoint. */
	for (uint64_t end = size; end > 0;) {
		uint64_t start = end > 65536 ? end - 65536 : 0;
		assert_int_equal(mfs_dot_read(d, rnd + start, end - start, start), end - start);
		end = start;
	}
	assert_memory_equal(seq, rnd, size);
	assert_true(strncmp(seq, "digraph \"chain\" {", 17) == 0);
	assert_true(size >= 2 && seq[size - 2] == '}' && seq[size - 1] == '\n');
	assert_non_null(strstr(seq, "  n41 -> n42 [label=\"t41\"];\n"));
	assert_non_null(strstr(seq, "subgraph \"cluster_n7_0_0_\""));
	assert_non_null(strstr(seq, "label=\"then_branch: then\\\"body\""));
	assert_non_null(strstr(seq, "  n3 -> n7_0_0_n0 [label=\"t3\"];\n"));
	/* Counted by hand: a strstr() loop is quadratic under ASan, whose
	 * interceptor measures the whole haystack on every call. */
	size_t edges = 0;
	for (uint64_t k = 0; k + 4 <= size; k++)
		edges += seq[k] == ' ' && !memcmp(seq + k, " -> ", 4);
	assert_int_equal(edges, N - 1 + 1);
	free(seq);
	free(rnd);
	mfs_dot_destroy(d);
}

static void a_100k_node_graph_builds_in_modest_memory(void **state)
{
	(void)state;
	enum { N = 100000 };
	struct mfs_desc *d = many_nodes(N);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	struct mfs_tree *t = build(d);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	uint32_t n = mfs_tree_count(t);
	uint64_t mem = mfs_tree_mem(t);
	printf("# 100k nodes: %u entries, %.3f s, %.1f MiB (%.1f bytes/entry)\n", n, secs,
	       (double)mem / (1 << 20), (double)mem / n);
	/* root, model.onnx, meta, props, graph.dot, sha256, 5 graph dirs; 9 entries per node
	 * (dir, 5 files, attrs/ + 2) */
	assert_int_equal(n, 1 + 1 + 4 + 5 + (uint32_t)N * 9);
	assert_int_equal(node_at(t, "nodes")->u.dir.count, N);
	assert_text(t, "nodes/099999-Relu/attrs/perm", "0\n2\n1\n");
	assert_text(t, "nodes/012345-Relu/inputs", "x\nw\n");
	/* Memory is asserted (a generous bound; typical is ~50 bytes/entry), time
	 * only printed: timings belong to bench/, not to the tests. */
	assert_true(mem < (uint64_t)n * 80);
	mfs_tree_destroy(t);
}

static void the_entry_limit_is_enforced(void **state)
{
	(void)state;
	_Static_assert(MFS_TREE_MAX_ENTRIES == UINT32_MAX - 1u, "the documented limit");
	struct mfs_desc *d = many_nodes(100);
	struct mfs_tree *t = build(d);
	uint32_t n = mfs_tree_count(t);
	mfs_tree_destroy(t);
	/* Exactly at the limit: builds; one entry short of room: EFBIG, nothing left. */
	mfs_tree_test_limit(n);
	t = NULL;
	assert_int_equal(mfs_tree_build(&t, d), 0);
	assert_int_equal(mfs_tree_count(t), n);
	mfs_tree_destroy(t);
	mfs_tree_test_limit(n - 1);
	t = NULL;
	assert_int_equal(mfs_tree_build(&t, d), -EFBIG);
	assert_null(t);
	mfs_tree_test_limit(0);
	t = build(d);
	assert_int_equal(mfs_tree_count(t), n);
	mfs_tree_destroy(t);
}

static void subgraphs_are_directories(void **state)
{
	(void)state;
	struct mfs_graph *then_g = graph("then_body");
	then_g->doc_string = S("when true");
	then_g->n_outputs = 1;
	then_g->outputs = A(sizeof(struct mfs_value));
	then_g->outputs[0] = value("y", "float32", "2");
	then_g->n_nodes = 1;
	then_g->nodes = A(sizeof(struct mfs_node));
	then_g->nodes[0].op_type = S("Constant");
	then_g->nodes[0].domain = S("");
	then_g->nodes[0].name = S("");
	then_g->nodes[0].n_attrs = 1;
	then_g->nodes[0].attrs = A(sizeof(struct mfs_attr));
	struct mfs_attr *va = &then_g->nodes[0].attrs[0];
	va->name = S("value");
	va->type = MFS_ATTR_TENSOR;
	va->n_tensors = 1;
	va->tensors = A(sizeof(struct mfs_tensor *));
	va->tensors[0] = tensor("", MFS_DT_FLOAT, 1, (int64_t)2);
	then_g->n_inits = 1;
	then_g->inits = A(sizeof(struct mfs_tensor *));
	then_g->inits[0] = tensor("inner.w", MFS_DT_FLOAT16, 1, (int64_t)3);

	struct mfs_graph *g = graph("main");
	g->n_nodes = 1;
	g->nodes = A(sizeof(struct mfs_node));
	struct mfs_node *n = &g->nodes[0];
	n->op_type = S("If");
	n->domain = S("");
	n->name = S("if0");
	n->n_attrs = 3;
	n->attrs = A(3 * sizeof(struct mfs_attr));
	n->attrs[0].name = S("then_branch");
	n->attrs[0].type = MFS_ATTR_GRAPH;
	n->attrs[0].n_graphs = 1;
	n->attrs[0].graphs = A(sizeof(struct mfs_graph *));
	n->attrs[0].graphs[0] = then_g;
	n->attrs[1].name = S("bodies");
	n->attrs[1].type = MFS_ATTR_GRAPHS;
	n->attrs[1].n_graphs = 2;
	n->attrs[1].graphs = A(2 * sizeof(struct mfs_graph *));
	n->attrs[1].graphs[0] = then_g;
	n->attrs[1].graphs[1] = graph("empty");
	n->attrs[2].name = S("ts");
	n->attrs[2].type = MFS_ATTR_TENSORS;
	n->attrs[2].n_tensors = 2;
	n->attrs[2].tensors = A(2 * sizeof(struct mfs_tensor *));
	n->attrs[2].tensors[0] = tensor("t0", MFS_DT_INT32, 0);
	n->attrs[2].tensors[1] = tensor("t1", MFS_DT_INT64, 2, (int64_t)2, (int64_t)3);

	struct mfs_tree *t = build(desc_onnx(g));
	check_invariants(t);
	const char *sg = "nodes/0000-If/attrs/then_branch";
	assert_ls(t, sg, "name doc_string inputs outputs values nodes weights");
	char p[256];
	snprintf(p, sizeof(p), "%s/name", sg);
	assert_text(t, p, "then_body\n");
	snprintf(p, sizeof(p), "%s/outputs/y/shape", sg);
	assert_text(t, p, "2\n");
	snprintf(p, sizeof(p), "%s/nodes/0000-Constant/attrs/value", sg);
	assert_ls(t, p, "data dtype shape name sha256 stats");
	snprintf(p, sizeof(p), "%s/nodes/0000-Constant/attrs/value/data", sg);
	assert_int_equal(mfs_tree_size(t, at(t, p)), 8);
	snprintf(p, sizeof(p), "%s/nodes/0000-Constant/attrs/value/name", sg);
	assert_text(t, p, "\n");
	snprintf(p, sizeof(p), "%s/weights/inner/w/dtype", sg);
	assert_text(t, p, "float16\n");
	assert_ls(t, "nodes/0000-If/attrs/bodies", "0 1");
	assert_text(t, "nodes/0000-If/attrs/bodies/1/name", "empty\n");
	assert_ls(t, "nodes/0000-If/attrs/bodies/1/nodes", "");
	assert_ls(t, "nodes/0000-If/attrs/ts", "0 1");
	assert_text(t, "nodes/0000-If/attrs/ts/0/shape", "\n");
	assert_text(t, "nodes/0000-If/attrs/ts/1/shape", "2,3\n");
	assert_text(t, "nodes/0000-If/attrs/ts/1/dtype", "int64\n");
	assert_int_equal(mfs_tree_size(t, at(t, "nodes/0000-If/attrs/ts/1/data")), 48);
	mfs_tree_destroy(t);
}

static void sparse_tensors_are_directories(void **state)
{
	(void)state;
	struct mfs_graph *g = graph("g");
	g->n_sparse_inits = 2;
	g->sparse_inits = A(2 * sizeof(struct mfs_sparse *));
	g->sparse_inits[0] = sparse("emb.sp", 100, 8, 5);
	g->sparse_inits[1] = sparse("emb.sp.values", 4, 4, 1);
	g->n_nodes = 1;
	g->nodes = A(sizeof(struct mfs_node));
	g->nodes[0].op_type = S("Constant");
	g->nodes[0].n_attrs = 1;
	g->nodes[0].attrs = A(sizeof(struct mfs_attr));
	g->nodes[0].attrs[0].name = S("sparse_value");
	g->nodes[0].attrs[0].type = MFS_ATTR_SPARSE_TENSOR;
	g->nodes[0].attrs[0].n_sparse = 1;
	g->nodes[0].attrs[0].sparse = A(sizeof(struct mfs_sparse *));
	g->nodes[0].attrs[0].sparse[0] = sparse("c", 3, 3, 2);
	struct mfs_tree *t = build(desc_onnx(g));
	check_invariants(t);
	assert_ls(t, "weights/emb/sp", "dtype shape name values indices values~1");
	assert_text(t, "weights/emb/sp/shape", "100,8\n");
	assert_text(t, "weights/emb/sp/name", "emb.sp\n");
	assert_ls(t, "weights/emb/sp/values", "data dtype shape name sha256 stats");
	assert_int_equal(mfs_tree_size(t, at(t, "weights/emb/sp/values/data")), 20);
	assert_text(t, "weights/emb/sp/indices/shape", "5,2\n");
	assert_text(t, "weights/emb/sp/indices/dtype", "int64\n");
	assert_text(t, "weights/emb/sp/values~1/name", "emb.sp.values\n");
	assert_ls(t, "nodes/0000-Constant/attrs/sparse_value", "dtype shape name values indices");
	mfs_tree_destroy(t);
}

static void functions_and_training_have_directories(void **state)
{
	(void)state;
	struct mfs_graph *g = graph("g");
	struct mfs_desc *d = desc_onnx(g);
	d->n_functions = 3;
	d->functions = A(3 * sizeof(struct mfs_function));
	struct mfs_function *f = &d->functions[0];
	f->name = S("MyRelu");
	f->domain = S("custom");
	f->inputs = strv(1, "X");
	f->n_inputs = 1;
	f->outputs = strv(1, "Y");
	f->n_outputs = 1;
	f->attributes = strv(2, "alpha", "beta");
	f->n_attributes = 2;
	f->opset_text = S("ai.onnx 18\n");
	f->opset_len = 11;
	f->n_nodes = 1;
	f->nodes = A(sizeof(struct mfs_node));
	f->nodes[0].op_type = S("Relu");
	f->nodes[0].domain = S("");
	f->nodes[0].name = S("r");
	f = &d->functions[1];
	f->name = S("NoDomain");
	f->domain = S("");
	f->doc_string = S("doc");
	f->n_attr_defaults = 1;
	f->attr_defaults = A(sizeof(struct mfs_attr));
	f->attr_defaults[0] = text_attr("gamma", MFS_ATTR_FLOAT, "0.5\n");
	f = &d->functions[2];
	f->name = S("MyRelu");
	f->domain = S("custom");

	d->n_training = 1;
	d->training = A(sizeof(struct mfs_training));
	d->training[0].algorithm = graph("algo");

	struct mfs_tree *t = build(d);
	check_invariants(t);
	assert_ls(t, "", "model.onnx meta inputs outputs values nodes weights functions training");
	assert_ls(t, "functions", "custom %");
	assert_ls(t, "functions/custom", "MyRelu MyRelu~1");
	assert_ls(t, "functions/custom/MyRelu",
	          "name domain inputs outputs attributes opset nodes");
	assert_text(t, "functions/custom/MyRelu/attributes", "alpha\nbeta\n");
	assert_text(t, "functions/custom/MyRelu/opset", "ai.onnx 18\n");
	assert_text(t, "functions/custom/MyRelu/nodes/0000-Relu/name", "r\n");
	assert_ls(t, "functions/%/NoDomain",
	          "name domain doc_string inputs outputs attributes opset nodes attrs");
	assert_text(t, "functions/%/NoDomain/domain", "\n");
	assert_text(t, "functions/%/NoDomain/attributes", "gamma\n");
	assert_text(t, "functions/%/NoDomain/attrs/gamma", "0.5\n");
	assert_text(t, "functions/%/NoDomain/opset", "");
	assert_ls(t, "training", "0");
	assert_ls(t, "training/0", "algorithm");
	assert_text(t, "training/0/algorithm/name", "algo\n");
	assert_ls(t, "training/0/algorithm/weights", "");
	mfs_tree_destroy(t);
}

static void source_files_keep_their_paths(void **state)
{
	(void)state;
	struct mfs_desc *d = linear_relu();
	d->files = A(4 * sizeof(struct mfs_file));
	d->files[0] = (struct mfs_file){.path = S("model.onnx"), .size = 100};
	d->files[1] = (struct mfs_file){.path = S("data/part1.bin"), .size = 200};
	d->files[2] = (struct mfs_file){.path = S("./data//part2.bin"), .size = 300};
	d->files[3] = (struct mfs_file){.path = S("meta"), .size = 400};
	d->n_files = 4;
	struct mfs_tree *t = build(d);
	check_invariants(t);
	/* A data file called "meta" keeps its name: the loader needs it. */
	assert_ls(t, "", "model.onnx data meta meta~1 inputs outputs values nodes weights npy");
	assert_ls(t, "data", "part1.bin part2.bin");
	assert_int_equal(node_at(t, "data/part2.bin")->kind, MFS_TN_SRC);
	assert_int_equal(node_at(t, "data/part2.bin")->u.src, 2);
	assert_int_equal(mfs_tree_size(t, at(t, "data/part2.bin")), 300);
	assert_int_equal(node_at(t, "meta")->kind, MFS_TN_SRC);
	assert_text(t, "meta~1/opset", "ai.onnx 12\n");
	mfs_tree_destroy(t);
}

static void safetensors_shows_meta_and_weights_only(void **state)
{
	(void)state;
	const char *names[] = {"model.embed_tokens.weight", "lm_head.weight"};
	struct mfs_desc *d = with_inits(2, names);
	d->format = "safetensors";
	d->flags = 0;
	d->files[0].path = S("model.safetensors");
	d->n_props = 1;
	d->props = A(sizeof(struct mfs_meta));
	d->props[0] = (struct mfs_meta){S("format"), S("pt"), 2};
	struct mfs_tree *t = build(d);
	check_invariants(t);
	assert_ls(t, "", "model.safetensors meta weights npy");
	assert_ls(t, "weights", "model lm_head");
	assert_ls(t, "npy", "model lm_head");
	assert_ls(t, "npy/model/embed_tokens", "weight.npy");
	assert_text(t, "weights/model/embed_tokens/weight/name", "model.embed_tokens.weight\n");
	assert_text(t, "meta/props/format", "pt\n");
	mfs_tree_destroy(t);
}

/*
 * A mixture-of-experts checkpoint: LAYERS x EXPERTS x 3 tensors named
 * model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight, each BF16 [16, 8]
 * (bench/fixtures.py, st-many, at a fifth of its size).
 */
static struct mfs_desc *moe(size_t layers, size_t experts, int64_t d0)
{
	static const char *const proj[] = {"gate_proj", "up_proj", "down_proj"};
	size_t n = layers * experts * 3;
	const char **names = A(n * sizeof(*names));
	char buf[128];
	for (size_t i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "model.layers.%zu.mlp.experts.%zu.%s.weight",
		         i / (experts * 3), i / 3 % experts, proj[i % 3]);
		names[i] = S(buf);
	}
	struct mfs_desc *d = with_inits(n, names);
	for (size_t i = 0; i < n; i++) {
		d->graph->inits[i] = tensor(names[i], MFS_DT_BFLOAT16, 2, d0, (int64_t)8);
		d->graph->inits[i]->id = i;
	}
	d->tensors = d->graph->inits;   /* as the reader lists them: tensors[i]->id == i */
	d->n_tensors = n;
	d->format = "safetensors";
	d->flags = 0;
	d->files[0].path = S("model.safetensors");
	return d;
}

static void many_tensors_cost_little_tree_memory(void **state)
{
	(void)state;
	enum { LAYERS = 20, EXPERTS = 1000, N = LAYERS * EXPERTS * 3 };
	struct mfs_tree *t = build(moe(LAYERS, EXPERTS, 16));
	uint32_t n = mfs_tree_count(t);
	uint64_t mem = mfs_tree_mem(t);
	printf("# %d tensors: %u entries, %.1f MiB (%.1f bytes/tensor)\n", N, n,
	       (double)mem / (1 << 20), (double)mem / N);
	/* Every entry is still there: root, model.safetensors, meta/, meta/sha256,
	 * props/, weights/model/layers/; per layer L/mlp/experts/, per expert E/,
	 * per tensor <proj>/weight/ and its data dtype shape name sha256 stats. */
	assert_int_equal(n, 5 + 3 + LAYERS * 3 + LAYERS * EXPERTS + N * 8);
	check_invariants(t);
	assert_ls(t, "weights/model/layers/7/mlp/experts/123/up_proj/weight",
	          "data dtype shape name sha256 stats");
	assert_text(t, "weights/model/layers/7/mlp/experts/123/up_proj/weight/shape", "16,8\n");
	assert_text(t, "weights/model/layers/7/mlp/experts/123/up_proj/weight/dtype", "bfloat16\n");
	assert_text(t, "weights/model/layers/19/mlp/experts/999/down_proj/weight/name",
	            "model.layers.19.mlp.experts.999.down_proj.weight\n");
	uint32_t i = at(t, "weights/model/layers/0/mlp/experts/0/gate_proj/weight/data");
	const struct mfs_tnode *e = node(t, i);
	assert_int_equal(e->kind, MFS_TN_TENSOR);
	assert_true(e->flags & MFS_TNF_OWN);
	assert_int_equal(mfs_tree_size(t, i), 16 * 8 * 2);
	assert_int_equal(mfs_tree_lookup(t, i, "x", 1, &i), -ENOTDIR);
	assert_missing(t, "weights/model/layers/0/mlp/experts/0/gate_proj/weight/data/x");
	assert_missing(t, "weights/model/layers/0/mlp/experts/0/gate_proj/weight/values");
	/* weight/ holds nothing but its own files: a leaf, not stored, still a
	 * directory like any other. */
	uint32_t w = at(t, "weights/model/layers/3/mlp/experts/5/down_proj/weight");
	e = node(t, w);
	assert_int_equal(e->kind, MFS_TN_DIR);
	assert_true(e->flags & MFS_TNF_TENSOR);
	assert_int_equal(e->u.dir.count, 6);
	assert_int_equal(e->u.dir.n_subdirs, 0);
	assert_int_equal(mfs_tree_size(t, w), 6);
	assert_int_equal(e->parent, at(t, "weights/model/layers/3/mlp/experts/5/down_proj"));
	assert_int_equal(at(t, "weights/model/layers/3/mlp/experts/5/down_proj/weight/data/.."), w);
	assert_int_equal(mfs_tree_child(t, w, 2),
	                 at(t, "weights/model/layers/3/mlp/experts/5/down_proj/weight/shape"));
	assert_int_equal(mfs_tree_lookup(t, w, "weight", 6, &i), -ENOENT);
	assert_int_equal(mfs_tree_lookup(t, w, "", 0, &i), -ENOENT);
	/*
	 * A tensor's own files are made on demand, and so is a tensor
	 * directory that holds nothing else: the tree is about 60 bytes a
	 * tensor (its <proj>/ directory, the leaf's parent, name length and
	 * tensor, their indexes).  Stored, they made it ~270 (six entries of
	 * 32 bytes a tensor, their child index and hash slots, the shape
	 * strings).
	 */
	assert_true(mem < (uint64_t)N * 72);
	mfs_tree_destroy(t);
}

static void made_texts_compare_across_trees(void **state)
{
	(void)state;
	struct mfs_desc *d = moe(1, 2, 16);
	d->graph->inits[0]->name = S("odd%name\x01");   /* escaped: a made text */
	d->graph->inits[1]->dtype = 4242;                /* dtype4242: a made text */
	struct mfs_tree *a = build(d), *b = build(d), *c = build(moe(1, 2, 4));
	check_invariants(a);
	uint32_t i = at(a, "weights/odd%25name%01/name");
	assert_text(a, "weights/odd%25name%01/name", "odd%25name%01\n");
	assert_true(node(a, i)->flags & MFS_TNF_GEN);
	const char *p;
	size_t n;
	bool nl;
	assert_int_equal(mfs_tree_text_slice(a, i, 0, 100, &p, &n, &nl), 0);   /* read, not sliced */
	assert_text(a, "weights/model/layers/0/mlp/experts/0/up_proj/weight/dtype", "dtype4242\n");
	/* Same description, same texts; other dims, other shapes. */
	assert_int_equal(mfs_tree_count(a), mfs_tree_count(b));
	for (uint32_t k = 0; k < mfs_tree_count(a); k++)
		if (node(a, k)->kind == MFS_TN_TEXT)
			assert_true(mfs_tree_text_same(a, k, b, k));
	const char *sh = "weights/model/layers/0/mlp/experts/1/gate_proj/weight/shape";
	assert_true(mfs_tree_text_same(a, at(a, sh), b, at(b, sh)));
	assert_false(mfs_tree_text_same(a, at(a, sh), c, at(c, sh)));
	assert_text(c, sh, "4,8\n");
	mfs_tree_destroy(a);
	mfs_tree_destroy(b);
	mfs_tree_destroy(c);
}

static void text_slices_need_no_copy(void **state)
{
	(void)state;
	struct mfs_tree *t = build(linear_relu());
	uint32_t i = at(t, "nodes/0000-Gemm/op_type");  /* "Gemm" + implicit '\n' */
	const char *p;
	size_t n;
	bool nl;
	assert_int_equal(mfs_tree_text_slice(t, i, 0, 100, &p, &n, &nl), 5);
	assert_int_equal(n, 4);
	assert_true(nl);
	assert_memory_equal(p, "Gemm", 4);
	assert_int_equal(mfs_tree_text_slice(t, i, 1, 2, &p, &n, &nl), 2);
	assert_false(nl);
	assert_memory_equal(p, "em", 2);
	assert_int_equal(mfs_tree_text_slice(t, i, 4, 100, &p, &n, &nl), 1);
	assert_int_equal(n, 0);
	assert_true(nl);
	assert_int_equal(mfs_tree_text_slice(t, i, 5, 100, &p, &n, &nl), 0);
	assert_int_equal(mfs_tree_text_slice(t, i, 99, 100, &p, &n, &nl), 0);
	assert_int_equal(mfs_tree_text_slice(t, i, 0, 0, &p, &n, &nl), 0);
	mfs_tree_destroy(t);
}

static void unknown_dtypes_are_named_by_number(void **state)
{
	(void)state;
	const char *names[] = {"w"};
	struct mfs_desc *d = with_inits(1, names);
	d->graph->inits[0]->dtype = 99;
	struct mfs_tree *t = build(d);
	(void)mfs_dtype_name(1);    /* must not change what the tree shows */
	assert_text(t, "weights/w/dtype", "dtype99\n");
	mfs_tree_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(builds_the_onnx_layout, teardown),
		cmocka_unit_test_teardown(lookup_answers_like_a_directory, teardown),
		cmocka_unit_test_teardown(colliding_tensor_paths_get_suffixes, teardown),
		cmocka_unit_test_teardown(hidden_tensors_keep_the_directories_on_their_way, teardown),
		cmocka_unit_test_teardown(reserved_names_beside_a_tensor_get_suffixes, teardown),
		cmocka_unit_test_teardown(dangerous_names_stay_inside, teardown),
		cmocka_unit_test_teardown(long_names_are_cut_and_stay_unique, teardown),
		cmocka_unit_test_teardown(node_directories_are_numbered_to_the_width_of_the_count,
		                          teardown),
		cmocka_unit_test_teardown(a_100k_node_graph_builds_in_modest_memory, teardown),
		cmocka_unit_test_teardown(a_100k_node_chain_draws_as_dot_in_pieces, teardown),
		cmocka_unit_test_teardown(the_entry_limit_is_enforced, teardown),
		cmocka_unit_test_teardown(subgraphs_are_directories, teardown),
		cmocka_unit_test_teardown(sparse_tensors_are_directories, teardown),
		cmocka_unit_test_teardown(functions_and_training_have_directories, teardown),
		cmocka_unit_test_teardown(source_files_keep_their_paths, teardown),
		cmocka_unit_test_teardown(safetensors_shows_meta_and_weights_only, teardown),
		cmocka_unit_test_teardown(text_slices_need_no_copy, teardown),
		cmocka_unit_test_teardown(unknown_dtypes_are_named_by_number, teardown),
		cmocka_unit_test_teardown(many_tensors_cost_little_tree_memory, teardown),
		cmocka_unit_test_teardown(made_texts_compare_across_trees, teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(allocs);
	return rc;
}

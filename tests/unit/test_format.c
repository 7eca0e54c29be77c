/*
 * tests/unit/test_format.c — the table of formats (codec/format.[ch]).
 *
 * What is proved: the built-in rows are there with what each format allows
 * (graph or flat, dtypes, writable meta files, props, tensor checks); a
 * file's format is decided by its content alone, whatever its name says;
 * and a third format written only here (toy_format.c) becomes a working
 * format through one registration: it opens, reads zero-copy, builds a
 * tree, and takes edits that commit — with nothing changed in codec/, fs/
 * or tools/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/txn.h"

#include "format.h"
#include "tmpdir.h"
#include "tree.h"

#define LINEAR MFS_TEST_DATA "/../../examples/linear.onnx"

extern const struct mfs_format toy_format;

static const struct mfs_format *row(const char *name)
{
	for (size_t i = 0; i < mfs_format_count(); i++)
		if (strcmp(mfs_format_at(i)->name, name) == 0)
			return mfs_format_at(i);
	return NULL;
}

static void builtin_rows(void **state)
{
	(void)state;
	const struct mfs_format *onnx = row("onnx"), *st = row("safetensors");
	assert_non_null(onnx);
	assert_non_null(st);
	assert_null(mfs_format_at(mfs_format_count()));
	assert_true(onnx->flags & MFS_DESC_GRAPH);
	assert_false(st->flags & MFS_DESC_GRAPH);
	/* Every row can sniff and open, and an editable one can write. */
	for (size_t i = 0; i < mfs_format_count(); i++) {
		const struct mfs_format *f = mfs_format_at(i);
		assert_non_null(f->sniff);
		assert_non_null(f->open);
		assert_true(!f->splice || f->dtype_ok);
	}
	/* ONNX numbers no safetensors-only type; safetensors has no string. */
	assert_true(onnx->dtype_ok(MFS_DT_FLOAT));
	assert_true(onnx->dtype_ok(MFS_DT_FLOAT8E4M3FN));
	assert_false(onnx->dtype_ok(MFS_DT_FLOAT6E2M3));
	assert_true(st->dtype_ok(MFS_DT_FLOAT6E2M3));
	assert_true(st->dtype_ok(MFS_DT_BFLOAT16));
	assert_false(st->dtype_ok(MFS_DT_STRING));
	assert_false(st->dtype_ok(MFS_DT_UINT4));
	/* Writable meta files: ONNX's six strings, none in safetensors. */
	const char *want[] = {"producer_name", "producer_version", "domain", "model_version",
	                      "doc_string", "graph_name", NULL};
	for (int k = 0; want[k]; k++)
		assert_string_equal(onnx->meta_names[k], want[k]);
	assert_null(onnx->meta_names[6]);
	assert_null(st->meta_names[0]);
	/* GGUF: first in the table (a magic number), props as text, no dtype edits. */
	const struct mfs_format *gg = row("gguf");
	assert_non_null(gg);
	assert_ptr_equal(mfs_format_at(0), gg);
	assert_true(gg->flags & MFS_DESC_PROPS_TEXT);
	assert_false(gg->flags & MFS_DESC_GRAPH);
	assert_false(gg->dtype_ok(MFS_DT_FLOAT));
	assert_null(gg->meta_names[0]);
	const uint8_t ghead[16] = "GGUF\3\0\0\0{\0\0\0\0\0\0\0";
	assert_ptr_equal(mfs_format_sniff(ghead, sizeof(ghead), 1 << 20), gg);
	assert_int_equal(onnx->meta_check(3, "42", 2), 0);
	assert_int_equal(onnx->meta_check(3, "-7", 2), 0);
	assert_int_equal(onnx->meta_check(3, "4x", 2), -EINVAL);
	assert_int_equal(onnx->meta_check(3, "99999999999999999999", 20), -EINVAL);
	assert_int_equal(onnx->meta_check(0, "4x", 2), 0);      /* producer_name: any text */
	/* safetensors: sub-byte elements must fill whole bytes. */
	struct mfs_tensor t = {.name = "w"};
	int64_t three = 3, four = 4;
	struct mfs_tensor_edit te = {.t = &t, .dtype = MFS_DT_FLOAT4E2M1, .rank = 1, .dims = &three};
	char msg[256] = "";
	assert_int_equal(st->tensor_check(&te, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "not a whole number of bytes"));
	te.dims = &four;
	assert_int_equal(st->tensor_check(&te, msg, sizeof(msg)), 0);
}

static void sniff_by_content(void **state)
{
	(void)state;
	const struct mfs_format *onnx = row("onnx"), *st = row("safetensors");
	/* ir_version = 7 (field 1, varint): a ModelProto field. */
	static const uint8_t pb[] = {0x08, 0x07, 0x12, 0x04, 't', 'o', 'r', 'c'};
	assert_ptr_equal(mfs_format_sniff(pb, sizeof(pb), 100), onnx);
	assert_int_equal(onnx->sniff(pb, sizeof(pb), 100), MFS_SNIFF_YES);
	/* A safetensors length and header start. */
	uint8_t sth[16] = {0x20, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'a', '"', ':', '{', '}', '}'};
	assert_ptr_equal(mfs_format_sniff(sth, sizeof(sth), 40), st);
	/* A JSON document (an index), also after whitespace. */
	static const uint8_t js[] = "  \n{\"weight_map\":";
	assert_ptr_equal(mfs_format_sniff(js, 16, 200), st);
	/* Text no format claims: ONNX's reader is the one to say what is wrong. */
	static const uint8_t txt[] = "this is not a model";
	assert_int_equal(onnx->sniff(txt, 16, 19), MFS_SNIFF_MAYBE);
	assert_int_equal(st->sniff(txt, 16, 19), MFS_SNIFF_NO);
	assert_ptr_equal(mfs_format_sniff(txt, 16, 19), onnx);
}

/* Names mean nothing: each file opens as what it holds. */
static void names_do_not_decide(void **state)
{
	(void)state;
	mfs_model *m;
	char err[512];
	tmp_write_safetensors(tmp_path("looks.onnx"));
	assert_int_equal(mfs_model_open(&m, tmp_path("looks.onnx"), NULL, err, sizeof(err)), 0);
	assert_string_equal(mfs_model_desc(m)->format, "safetensors");
	mfs_model_close(m);
	tmp_copy(LINEAR, tmp_path("looks.safetensors.index.json"));
	assert_int_equal(mfs_model_open(&m, tmp_path("looks.safetensors.index.json"), NULL, err,
	                                sizeof(err)), 0);
	assert_string_equal(mfs_model_desc(m)->format, "onnx");
	assert_true(mfs_model_desc(m)->flags & MFS_DESC_GRAPH);
	mfs_model_close(m);
	/* Garbage named like an index gets the fallback's message, not the index's. */
	tmp_write(tmp_path("junk.safetensors.index.json"), "this is not a model\n", 20);
	assert_int_equal(mfs_model_open(&m, tmp_path("junk.safetensors.index.json"), NULL, err,
	                                sizeof(err)), -EUCLEAN);
	assert_non_null(strstr(err, "not a model of any known format"));
}

/* ------------------------------------------------------------ the toy format */

static void toy_file(const char *path, const char *hdr, const float *v, size_t n)
{
	size_t hl = strlen(hdr);
	unsigned char *buf = malloc(hl + n * sizeof(float));
	memcpy(buf, hdr, hl);
	memcpy(buf + hl, v, n * sizeof(float));
	tmp_write(path, buf, hl + n * sizeof(float));
	free(buf);
}

static const float toy_v[6] = {1, 2, 3, 4, 5, 6};
#define TOY_HDR "MFSTOY1\nfloat32 2,3 layer.0.weight\n"

static void toy_opens_and_reads(void **state)
{
	(void)state;
	const char *p = tmp_path("m.toy");
	toy_file(p, TOY_HDR, toy_v, 6);
	mfs_model *m;
	char err[512] = "";
	/* Before registration nothing knows it (ONNX's reader says so). */
	assert_int_equal(mfs_model_open(&m, p, NULL, err, sizeof(err)), -EUCLEAN);
	assert_null(row("toy"));
	assert_int_equal(mfs_format_register(&toy_format), 0);
	assert_ptr_equal(row("toy"), &toy_format);
	assert_int_equal(mfs_model_open(&m, p, NULL, err, sizeof(err)), 0);
	const struct mfs_desc *d = mfs_model_desc(m);
	assert_string_equal(d->format, "toy");
	assert_false(d->flags & MFS_DESC_GRAPH);
	assert_int_equal(d->n_tensors, 1);
	const struct mfs_tensor *t = d->tensors[0];
	assert_string_equal(t->name, "layer.0.weight");
	assert_int_equal(t->dtype, MFS_DT_FLOAT);
	assert_int_equal(t->rank, 2);
	assert_int_equal(t->nbytes, 24);
	float got[6];
	assert_int_equal(mfs_tensor_read(m, t, got, sizeof(got), 0), 24);
	assert_memory_equal(got, toy_v, 24);
	struct mfs_span sp;
	assert_int_equal(mfs_tensor_span(&sp, m, t, 8), 0);
	assert_true(sp.fd >= 0);
	assert_int_equal(pread(sp.fd, got, 4, (off_t)sp.off), 4);
	assert_true(got[0] == 3.0f);
	mfs_model_close(m);

	/* A broken toy file is refused by the toy's reader, with its message. */
	toy_file(p, "MFSTOY1\nfloat32 2,3 w\n", toy_v, 5);
	assert_int_equal(mfs_model_open(&m, p, NULL, err, sizeof(err)), -EUCLEAN);
	assert_non_null(strstr(err, "toy tensor needs 24 bytes, the file has 20"));
}

/* The toy mounts as a tree: meta/format, the file at the root, weights/<path>/. */
static void toy_builds_a_tree(void **state)
{
	(void)state;
	const char *p = tmp_path("m.toy");
	toy_file(p, TOY_HDR, toy_v, 6);
	mfs_model *m;
	char err[512];
	assert_int_equal(mfs_model_open(&m, p, NULL, err, sizeof(err)), 0);
	struct mfs_tree *tree;
	assert_int_equal(mfs_tree_build(&tree, mfs_model_desc(m)), 0);
	uint32_t i;
	struct mfs_tnode nb;
	assert_int_equal(mfs_tree_resolve(tree, "meta/format", &i), 0);
	char text[16] = "";
	assert_int_equal(mfs_tree_text_read(tree, i, text, sizeof(text) - 1, 0), 4);
	assert_string_equal(text, "toy\n");
	assert_int_equal(mfs_tree_resolve(tree, "m.toy", &i), 0);
	assert_int_equal(mfs_tree_node(tree, i, &nb)->kind, MFS_TN_SRC);
	assert_int_equal(mfs_tree_resolve(tree, "weights/layer/0/weight/data", &i), 0);
	assert_int_equal(mfs_tree_node(tree, i, &nb)->kind, MFS_TN_TENSOR);
	assert_int_equal(mfs_tree_size(tree, i), 24);
	assert_int_equal(mfs_tree_resolve(tree, "weights/layer/0/weight/shape", &i), 0);
	assert_int_equal(mfs_tree_text_read(tree, i, text, sizeof(text) - 1, 0), 4);
	assert_memory_equal(text, "2,3\n", 4);
	/* Flat: no graph directories. */
	assert_int_equal(mfs_tree_resolve(tree, "nodes", &i), -ENOENT);
	mfs_tree_destroy(tree);
	mfs_model_close(m);
}

/* Edits go through the transaction and the toy's writer, and commit. */
static void toy_takes_edits(void **state)
{
	(void)state;
	const char *p = tmp_path("m.toy");
	toy_file(p, TOY_HDR, toy_v, 6);
	mfs_txn *t;
	char err[512];
	assert_int_equal(mfs_txn_open(&t, p, NULL, NULL, err, sizeof(err)), 0);
	const struct mfs_tensor *x = mfs_txn_desc(t)->tensors[0];
	assert_true(mfs_txn_tensor_writable(t, x));
	assert_false(mfs_txn_props_writable(t));
	assert_false(mfs_txn_meta_writable(t, "format"));
	assert_int_equal(mfs_txn_prop_set(t, "k", "v", 1), -EACCES);
	float nine = 9.0f;
	assert_int_equal(mfs_txn_tensor_write(t, x, &nine, 4, 4), 4);
	struct mfs_txn_result res;
	assert_int_equal(mfs_txn_commit(t, &res), 0);
	assert_string_equal(res.path, "rewrite");
	float want[6] = {1, 9, 3, 4, 5, 6};
	size_t len;
	unsigned char *f = tmp_read(p, &len);
	assert_int_equal(len, strlen(TOY_HDR) + 24);
	assert_memory_equal(f, TOY_HDR, strlen(TOY_HDR));
	assert_memory_equal(f + strlen(TOY_HDR), want, 24);
	free(f);

	/* A shape change rewrites the header line; a wrong size is refused. */
	x = mfs_txn_desc(t)->tensors[0];
	assert_int_equal(mfs_txn_set_shape(t, x, "3,2\n", 4), 0);
	assert_int_equal(mfs_txn_commit(t, &res), 0);
	f = tmp_read(p, &len);
	assert_memory_equal(f, "MFSTOY1\nfloat32 3,2 layer.0.weight\n", strlen(TOY_HDR));
	free(f);
	x = mfs_txn_desc(t)->tensors[0];
	assert_int_equal(x->dims[0], 3);
	assert_int_equal(mfs_txn_set_shape(t, x, "4,2", 3), 0);
	assert_int_equal(mfs_txn_commit(t, &res), -EINVAL);
	assert_non_null(strstr(res.msg, "needs 32"));
	mfs_txn_close(t);
}

/*
 * The transaction checks dtype edits through the format's type_check and
 * nothing else: the toy's "declared" contradiction is refused at commit
 * with the format's line, staged as a type conflict in status, and
 * committed under force_types with the warning kept; its "peer" doubt only
 * warns.
 */
static void toy_types_are_the_formats_call(void **state)
{
	(void)state;
	const char *p = tmp_path("types.toy");
	toy_file(p, TOY_HDR, toy_v, 6);
	mfs_txn *t;
	char err[512], st[2048];
	assert_int_equal(mfs_txn_open(&t, p, NULL, NULL, err, sizeof(err)), 0);
	const struct mfs_tensor *x = mfs_txn_desc(t)->tensors[0];
	assert_int_equal(mfs_txn_set_dtype(t, x, "int32\n", 6), 0);
	mfs_txn_status(t, st, sizeof(st));
	assert_non_null(strstr(st, "type conflict: tensor 'layer.0.weight': dtype int32 "
	                           "contradicts the toy"));
	struct mfs_txn_result res;
	assert_int_equal(mfs_txn_commit(t, &res), -EINVAL);
	assert_non_null(strstr(res.msg, "contradicts the toy, which holds real numbers; set it "
	                                "back, or mount with -o force_types"));
	/* bfloat16 (same size): a warning only, and the commit goes through. */
	assert_int_equal(mfs_txn_set_dtype(t, x, "float16", 7), 0);
	assert_int_equal(mfs_txn_set_shape(t, x, "2,6", 3), 0);
	assert_int_equal(mfs_txn_set_dtype(t, x, "bfloat16", 8), 0);
	mfs_txn_status(t, st, sizeof(st));
	assert_non_null(strstr(st, "type warning: tensor 'layer.0.weight': toys rarely"));
	assert_null(strstr(st, "type conflict"));
	assert_int_equal(mfs_txn_commit(t, &res), 0);
	mfs_txn_status(t, st, sizeof(st));
	assert_non_null(strstr(st, "last commit's type warning: tensor 'layer.0.weight'"));
	mfs_txn_close(t);

	/* Forced: the contradiction is committed, and said so. */
	struct mfs_txn_opts o = {.force_types = true};
	assert_int_equal(mfs_txn_open(&t, p, &o, NULL, err, sizeof(err)), 0);
	x = mfs_txn_desc(t)->tensors[0];
	assert_int_equal(mfs_txn_set_dtype(t, x, "int16", 5), 0);
	mfs_txn_status(t, st, sizeof(st));
	assert_non_null(strstr(st, "(force_types: a commit writes it)"));
	assert_int_equal(mfs_txn_commit(t, &res), 0);
	mfs_txn_status(t, st, sizeof(st));
	assert_non_null(strstr(st, "last commit's type warning: forced (force_types): tensor "
	                           "'layer.0.weight': dtype int16"));
	assert_int_equal(mfs_txn_desc(t)->tensors[0]->dtype, MFS_DT_INT16);
	mfs_txn_close(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(builtin_rows),
		cmocka_unit_test(sniff_by_content),
		cmocka_unit_test_setup_teardown(names_do_not_decide, tmp_setup, tmp_teardown),
		/* In this order: the first registers the toy. */
		cmocka_unit_test_setup_teardown(toy_opens_and_reads, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(toy_builds_a_tree, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(toy_takes_edits, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(toy_types_are_the_formats_call, tmp_setup,
		                                tmp_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * tests/unit/test_ssa.c — codec/onnx/ssa.c, the graph rules a commit of
 * renames and deletions keeps (onnx.checker's SSA and output rules), on
 * graphs built in memory: a good graph passes, and each rule an edit can
 * break (a node reading a deleted name, a node reading a name before it is
 * defined, a name defined twice, a graph output naming nothing, two
 * initializers of one name) fails with a line that names it.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "onnx/onnx.h"

/* x, W -> MatMul -> y -> Relu -> z; outputs z. */
static char *mm_in[] = {"x", "W"}, *mm_out[] = {"y"}, *re_in[] = {"y"}, *re_out[] = {"z"};
static struct mfs_node nodes[] = {
	{.op_type = "MatMul", .name = "mm", .inputs = mm_in, .n_inputs = 2, .outputs = mm_out,
	 .n_outputs = 1},
	{.op_type = "Relu", .name = "relu", .inputs = re_in, .n_inputs = 1, .outputs = re_out,
	 .n_outputs = 1},
};
static struct mfs_tensor W = {.name = "W"}, B = {.name = "B"};
static struct mfs_tensor *inits[] = {&W, &B};
static struct mfs_value ins[] = {{.name = "x"}}, outs[] = {{.name = "z"}};

static struct mfs_graph graph(void)
{
	return (struct mfs_graph){.inputs = ins, .n_inputs = 1, .outputs = outs, .n_outputs = 1,
	                          .nodes = nodes, .n_nodes = 2, .inits = inits, .n_inits = 2};
}

static int check(const char **from, const char **to, size_t n, char *msg)
{
	struct mfs_graph g = graph();
	struct mfs_onnx_edit_names e = {from, to, n};
	return mfs_onnx_ssa_check(&g, n ? &e : NULL, msg, 400);
}

static void good_graph_and_consistent_rename_pass(void **state)
{
	(void)state;
	char msg[400] = "";
	assert_int_equal(check(NULL, NULL, 0, msg), 0);
	const char *from[] = {"x", "y", "B"}, *to[] = {"images", "hidden", NULL};
	assert_int_equal(check(from, to, 3, msg), 0);
}

static void deleted_name_still_read_fails(void **state)
{
	(void)state;
	char msg[400] = "";
	const char *from[] = {"W"}, *to[] = {NULL};
	assert_int_equal(check(from, to, 1, msg), -EINVAL);
	assert_non_null(strstr(msg, "node 'mm' reads 'W', which no graph input"));
}

static void rename_onto_a_defined_name_fails(void **state)
{
	(void)state;
	char msg[400] = "";
	/* y renamed to W: the MatMul's output defines W a second time. */
	const char *from[] = {"y"}, *to[] = {"W"};
	assert_int_equal(check(from, to, 1, msg), -EINVAL);
	assert_non_null(strstr(msg, "'W' is defined twice"));
	const char *f2[] = {"B"}, *t2[] = {"W"};
	assert_int_equal(check(f2, t2, 1, msg), -EINVAL);
	assert_non_null(strstr(msg, "two initializers are named 'W'"));
}

static void read_before_defined_fails(void **state)
{
	(void)state;
	char msg[400] = "";
	/* Relu before MatMul: it reads y before anything defines it. */
	struct mfs_node rev[] = {nodes[1], nodes[0]};
	struct mfs_graph g = graph();
	g.nodes = rev;
	assert_int_equal(mfs_onnx_ssa_check(&g, NULL, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "node 'relu' reads 'y', which no graph input, initializer "
	                            "or earlier node defines"));
}

static void output_naming_nothing_fails(void **state)
{
	(void)state;
	char msg[400] = "";
	struct mfs_graph g = graph();
	struct mfs_value o2[] = {{.name = "nowhere"}};
	g.outputs = o2;
	assert_int_equal(mfs_onnx_ssa_check(&g, NULL, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "the graph output 'nowhere' names no value"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_graph_and_consistent_rename_pass),
		cmocka_unit_test(deleted_name_still_read_fails),
		cmocka_unit_test(rename_onto_a_defined_name_fails),
		cmocka_unit_test(read_before_defined_fails),
		cmocka_unit_test(output_naming_nothing_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

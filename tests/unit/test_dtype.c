/*
 * tests/unit/test_dtype.c — dtype names and widths, tensor byte counts, and
 * the text of `shape` files (codec/dtype.c).  These strings are what users
 * see in dtype/shape files and meta/input_shape, so they are pinned here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "modelfs/model.h"

static void dtype_names(void **state)
{
	static const struct {
		int32_t dt;
		const char *name;
	} want[] = {
		{MFS_DT_FLOAT, "float32"}, {MFS_DT_DOUBLE, "float64"}, {MFS_DT_FLOAT16, "float16"},
		{MFS_DT_BFLOAT16, "bfloat16"}, {MFS_DT_INT8, "int8"}, {MFS_DT_UINT8, "uint8"},
		{MFS_DT_INT64, "int64"}, {MFS_DT_UINT64, "uint64"}, {MFS_DT_BOOL, "bool"},
		{MFS_DT_STRING, "string"}, {MFS_DT_COMPLEX64, "complex64"},
		{MFS_DT_COMPLEX128, "complex128"}, {MFS_DT_FLOAT8E4M3FN, "float8e4m3fn"},
		{MFS_DT_FLOAT8E5M2FNUZ, "float8e5m2fnuz"}, {MFS_DT_INT4, "int4"},
		{MFS_DT_UINT4, "uint4"}, {MFS_DT_FLOAT4E2M1, "float4e2m1"},
		{MFS_DT_FLOAT8E8M0, "float8e8m0"}, {MFS_DT_INT2, "int2"}, {MFS_DT_UINT2, "uint2"},
		{MFS_DT_UNDEFINED, "undefined"},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_string_equal(mfs_dtype_name(want[i].dt), want[i].name);
		if (want[i].dt != MFS_DT_UNDEFINED)
			assert_int_equal(mfs_dtype_from_name(want[i].name), want[i].dt);
	}
	/* Unknown numbers are kept and named by number. */
	assert_string_equal(mfs_dtype_name(27), "dtype27");
	assert_string_equal(mfs_dtype_name(-5), "dtype-5");
	assert_string_equal(mfs_dtype_name(INT32_MAX), "dtype2147483647");
	assert_int_equal(mfs_dtype_from_name("float"), -1);
	assert_int_equal(mfs_dtype_from_name("undefined"), -1);
	assert_int_equal(mfs_dtype_from_name(""), -1);
}

static void dtype_bits(void **state)
{
	assert_int_equal(mfs_dtype_bits(MFS_DT_FLOAT), 32);
	assert_int_equal(mfs_dtype_bits(MFS_DT_BOOL), 8);
	assert_int_equal(mfs_dtype_bits(MFS_DT_COMPLEX128), 128);
	assert_int_equal(mfs_dtype_bits(MFS_DT_BFLOAT16), 16);
	assert_int_equal(mfs_dtype_bits(MFS_DT_INT4), 4);
	assert_int_equal(mfs_dtype_bits(MFS_DT_FLOAT4E2M1), 4);
	assert_int_equal(mfs_dtype_bits(MFS_DT_UINT2), 2);
	assert_int_equal(mfs_dtype_bits(MFS_DT_STRING), 0);
	assert_int_equal(mfs_dtype_bits(MFS_DT_UNDEFINED), 0);
	assert_int_equal(mfs_dtype_bits(99), 0);
	assert_int_equal(mfs_dtype_bits(-1), 0);
}

static void tensor_nbytes(void **state)
{
	uint64_t n;
	int64_t d23[2] = {2, 3};
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_FLOAT, d23, 2), 0);
	assert_int_equal(n, 24);
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_FLOAT, NULL, 0), 0);   /* scalar */
	assert_int_equal(n, 4);
	int64_t d0[2] = {0, 7};
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_DOUBLE, d0, 2), 0);
	assert_int_equal(n, 0);

	/* Sub-byte types are packed and round up to whole bytes. */
	int64_t d3[1] = {3}, d5[1] = {5}, d4[1] = {4};
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_INT4, d3, 1), 0);
	assert_int_equal(n, 2);
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_UINT4, d4, 1), 0);
	assert_int_equal(n, 2);
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_INT2, d5, 1), 0);
	assert_int_equal(n, 2);
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_UINT2, d4, 1), 0);
	assert_int_equal(n, 1);

	/* Overflow of the element count, and of count x bits. */
	int64_t huge[3] = {INT64_C(1) << 62, INT64_C(1) << 62, 4};
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_UINT8, huge, 3), -EOVERFLOW);
	int64_t big[1] = {INT64_C(1) << 61};
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_FLOAT, big, 1), -EOVERFLOW);
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_INT4, big, 1), 0);
	assert_true(n == (UINT64_C(1) << 60));
	/* The product is taken in bits, so the largest size is 2^61 - 1 bytes
	 * (far beyond any file). */
	int64_t edge[1] = {(INT64_C(1) << 61) - 1};
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_UINT8, edge, 1), 0);
	assert_true(n == (UINT64_C(1) << 61) - 1);
	edge[0] = INT64_C(1) << 61;
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_UINT8, edge, 1), -EOVERFLOW);
	/* But a zero dim anywhere makes the product 0, with no overflow. */
	int64_t zh[3] = {INT64_MAX, 0, INT64_MAX};
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_COMPLEX128, zh, 3), 0);
	assert_int_equal(n, 0);

	int64_t neg[2] = {2, -1};
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_FLOAT, neg, 2), -EINVAL);
	assert_int_equal(mfs_tensor_nbytes(&n, MFS_DT_STRING, d3, 1), -EINVAL);
	assert_int_equal(mfs_tensor_nbytes(&n, 99, d3, 1), -EINVAL);
}

/* ggml's block types (GGUF): names, no per-element width, whole blocks. */
static void block_types(void **state)
{
	(void)state;
	unsigned e, b;
	int32_t q8 = MFS_DT_GGML(8), q4k = MFS_DT_GGML(12);
	assert_string_equal(mfs_dtype_name(q8), "q8_0");
	assert_string_equal(mfs_dtype_name(q4k), "q4_k");
	assert_string_equal(mfs_dtype_name(MFS_DT_GGML(16)), "iq2_xxs");
	assert_int_equal(mfs_dtype_from_name("q8_0"), q8);
	assert_int_equal(mfs_dtype_from_name("q4_k"), q4k);
	assert_int_equal(mfs_dtype_bits(q8), 0);
	assert_true(mfs_dtype_block(q8, &e, &b));
	assert_int_equal(e, 32);
	assert_int_equal(b, 34);
	assert_false(mfs_dtype_block(MFS_DT_FLOAT, &e, &b));
	assert_int_equal(e, 0);
	/* Removed ggml ids (4, 5, 31) and unquantized ones (0, 1) have no name here. */
	assert_string_equal(mfs_dtype_name(MFS_DT_GGML(4)), "dtype1038");
	assert_string_equal(mfs_dtype_name(MFS_DT_GGML(0)), "dtype1034");
	assert_string_equal(mfs_dtype_name(1002), "dtype1002");
	assert_false(mfs_dtype_block(MFS_DT_GGML(31), &e, &b));
	uint64_t n = 0;
	int64_t d1[] = {3, 64}, d2[] = {3, 31}, d3[] = {2, 512}, d4[] = {(int64_t)1 << 62, 256};
	assert_int_equal(mfs_tensor_nbytes(&n, q8, d1, 2), 0);
	assert_int_equal(n, 3 * 2 * 34);
	assert_int_equal(mfs_tensor_nbytes(&n, q8, d2, 2), -EINVAL);
	assert_int_equal(mfs_tensor_nbytes(&n, q8, d1, 0), -EINVAL);
	assert_int_equal(mfs_tensor_nbytes(&n, q4k, d3, 2), 0);
	assert_int_equal(n, 2 * 2 * 144);
	assert_int_equal(mfs_tensor_nbytes(&n, q4k, d4, 2), -EOVERFLOW);
}

static void shape_text(void **state)
{
	char buf[64];
	struct mfs_dim dims[4] = {
		{.value = -1, .param = "batch_size"},
		{.value = 3},
		{.value = -1},
		{.value = 0},
	};
	struct mfs_shape s = {.known = true, .rank = 4, .dims = dims};
	assert_int_equal(mfs_shape_format(buf, sizeof(buf), &s), strlen("batch_size,3,?,0"));
	assert_string_equal(buf, "batch_size,3,?,0");

	struct mfs_shape scalar = {.known = true, .rank = 0, .dims = NULL};
	assert_int_equal(mfs_shape_format(buf, sizeof(buf), &scalar), 0);
	assert_string_equal(buf, "");

	struct mfs_shape unknown = {.known = false};
	assert_int_equal(mfs_shape_format(buf, sizeof(buf), &unknown), 1);
	assert_string_equal(buf, "*");

	/* Truncation: snprintf semantics, the return is the full length. */
	char small[6];
	memset(small, 'X', sizeof(small));
	assert_int_equal(mfs_shape_format(small, sizeof(small), &s), 16);
	assert_string_equal(small, "batch");
	/* Sizing call with no buffer. */
	assert_int_equal(mfs_shape_format(NULL, 0, &s), 16);
	char one[1] = {'X'};
	assert_int_equal(mfs_shape_format(one, 1, &s), 16);
	assert_int_equal(one[0], '\0');
}

/* A format's own names (GGUF: ggml's), one name per dtype, generic elsewhere. */
static void format_names(void **state)
{
	(void)state;
	struct mfs_desc gg = {.format = "gguf"}, ox = {.format = "onnx"}, none = {0};
	assert_string_equal(mfs_desc_dtype_name(&gg, MFS_DT_FLOAT), "f32");
	assert_string_equal(mfs_desc_dtype_name(&gg, MFS_DT_BFLOAT16), "bf16");
	assert_string_equal(mfs_desc_dtype_name(&gg, MFS_DT_INT64), "i64");
	assert_string_equal(mfs_desc_dtype_name(&gg, MFS_DT_GGML(8)), "q8_0");
	assert_string_equal(mfs_desc_dtype_name(&ox, MFS_DT_FLOAT), "float32");
	assert_string_equal(mfs_desc_dtype_name(&none, MFS_DT_FLOAT16), "float16");
	assert_int_equal(mfs_desc_dtype_from_name(&gg, "f16"), MFS_DT_FLOAT16);
	assert_int_equal(mfs_desc_dtype_from_name(&gg, "q4_k"), MFS_DT_GGML(12));
	assert_int_equal(mfs_desc_dtype_from_name(&gg, "float32"), -1);
	assert_int_equal(mfs_desc_dtype_from_name(&gg, "uint8"), MFS_DT_UINT8);
	assert_int_equal(mfs_desc_dtype_from_name(&ox, "f32"), -1);
	assert_int_equal(mfs_desc_dtype_from_name(&ox, "float32"), MFS_DT_FLOAT);
	assert_true(mfs_dtype_known(MFS_DT_GGML(8)));
	assert_true(mfs_dtype_known(MFS_DT_FLOAT));
	assert_false(mfs_dtype_known(MFS_DT_GGML(4)));
	assert_false(mfs_dtype_known(-1));
}

static void dims_text(void **state)
{
	char buf[64];
	int64_t d[3] = {1, 3, 224};
	assert_int_equal(mfs_dims_format(buf, sizeof(buf), d, 3), 7);
	assert_string_equal(buf, "1,3,224");
	assert_int_equal(mfs_dims_format(buf, sizeof(buf), NULL, 0), 0);
	assert_string_equal(buf, "");
	int64_t big[2] = {INT64_MAX, 0};
	assert_int_equal(mfs_dims_format(buf, sizeof(buf), big, 2), 21);
	assert_string_equal(buf, "9223372036854775807,0");
	char small[4];
	assert_int_equal(mfs_dims_format(small, sizeof(small), d, 3), 7);
	assert_string_equal(small, "1,3");
	assert_int_equal(mfs_dims_format(NULL, 0, d, 3), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dtype_names),
		cmocka_unit_test(dtype_bits),
		cmocka_unit_test(tensor_nbytes),
		cmocka_unit_test(block_types),
		cmocka_unit_test(shape_text),
		cmocka_unit_test(dims_text),
		cmocka_unit_test(format_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * codec/core/dtype.c — element types and shape text, shared by every format.
 *
 * The names are numpy's where numpy has one, else ONNX's lower-cased name,
 * so `dtype` files read the same whatever format the model came from.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

static const struct {
	const char *name;
	unsigned bits;
} dtypes[MFS_DT_COUNT_] = {
	[MFS_DT_UNDEFINED] = {"undefined", 0},
	[MFS_DT_FLOAT] = {"float32", 32},
	[MFS_DT_UINT8] = {"uint8", 8},
	[MFS_DT_INT8] = {"int8", 8},
	[MFS_DT_UINT16] = {"uint16", 16},
	[MFS_DT_INT16] = {"int16", 16},
	[MFS_DT_INT32] = {"int32", 32},
	[MFS_DT_INT64] = {"int64", 64},
	[MFS_DT_STRING] = {"string", 0},
	[MFS_DT_BOOL] = {"bool", 8},
	[MFS_DT_FLOAT16] = {"float16", 16},
	[MFS_DT_DOUBLE] = {"float64", 64},
	[MFS_DT_UINT32] = {"uint32", 32},
	[MFS_DT_UINT64] = {"uint64", 64},
	[MFS_DT_COMPLEX64] = {"complex64", 64},
	[MFS_DT_COMPLEX128] = {"complex128", 128},
	[MFS_DT_BFLOAT16] = {"bfloat16", 16},
	[MFS_DT_FLOAT8E4M3FN] = {"float8e4m3fn", 8},
	[MFS_DT_FLOAT8E4M3FNUZ] = {"float8e4m3fnuz", 8},
	[MFS_DT_FLOAT8E5M2] = {"float8e5m2", 8},
	[MFS_DT_FLOAT8E5M2FNUZ] = {"float8e5m2fnuz", 8},
	[MFS_DT_UINT4] = {"uint4", 4},
	[MFS_DT_INT4] = {"int4", 4},
	[MFS_DT_FLOAT4E2M1] = {"float4e2m1", 4},
	[MFS_DT_FLOAT8E8M0] = {"float8e8m0", 8},
	[MFS_DT_UINT2] = {"uint2", 2},
	[MFS_DT_INT2] = {"int2", 2},
};

/* Types without an ONNX number, indexed from MFS_DT_EXT_FIRST_ (with holes:
 * a number without a name is unknown). */
#define G(id) [MFS_DT_GGML(id) - MFS_DT_EXT_FIRST_]
static const struct {
	const char *name;
	unsigned bits;
	unsigned blck, bsize;   /* block-quantized: elements and bytes per block */
} ext_dtypes[MFS_DT_EXT_END_ - MFS_DT_EXT_FIRST_] = {
	[MFS_DT_FLOAT6E2M3 - MFS_DT_EXT_FIRST_] = {"float6e2m3", 6, 0, 0},
	[MFS_DT_FLOAT6E3M2 - MFS_DT_EXT_FIRST_] = {"float6e3m2", 6, 0, 0},
	/* ggml's block types (ggml-common.h block structs; ggml.c type_traits). */
	G(2) = {"q4_0", 0, 32, 18},      G(3) = {"q4_1", 0, 32, 20},
	G(6) = {"q5_0", 0, 32, 22},      G(7) = {"q5_1", 0, 32, 24},
	G(8) = {"q8_0", 0, 32, 34},      G(9) = {"q8_1", 0, 32, 36},
	G(10) = {"q2_k", 0, 256, 84},    G(11) = {"q3_k", 0, 256, 110},
	G(12) = {"q4_k", 0, 256, 144},   G(13) = {"q5_k", 0, 256, 176},
	G(14) = {"q6_k", 0, 256, 210},   G(15) = {"q8_k", 0, 256, 292},
	G(16) = {"iq2_xxs", 0, 256, 66}, G(17) = {"iq2_xs", 0, 256, 74},
	G(18) = {"iq3_xxs", 0, 256, 98}, G(19) = {"iq1_s", 0, 256, 50},
	G(20) = {"iq4_nl", 0, 32, 18},   G(21) = {"iq3_s", 0, 256, 110},
	G(22) = {"iq2_s", 0, 256, 82},   G(23) = {"iq4_xs", 0, 256, 136},
	G(29) = {"iq1_m", 0, 256, 56},
	G(34) = {"tq1_0", 0, 256, 54},   G(35) = {"tq2_0", 0, 256, 66},
	G(39) = {"mxfp4", 0, 32, 17},    G(40) = {"nvfp4", 0, 64, 36},
	G(41) = {"q1_0", 0, 128, 18},    G(42) = {"q2_0", 0, 64, 18},
};
#undef G

static bool is_ext(int32_t dtype)
{
	return dtype >= MFS_DT_EXT_FIRST_ && dtype < MFS_DT_EXT_END_ &&
	       ext_dtypes[dtype - MFS_DT_EXT_FIRST_].name;
}

const char *mfs_dtype_name(int32_t dtype)
{
	static _Thread_local char buf[24];
	if (dtype >= 0 && dtype < MFS_DT_COUNT_)
		return dtypes[dtype].name;
	if (is_ext(dtype))
		return ext_dtypes[dtype - MFS_DT_EXT_FIRST_].name;
	snprintf(buf, sizeof(buf), "dtype%d", (int)dtype);
	return buf;
}

bool mfs_dtype_known(int32_t dtype)
{
	return (dtype >= 0 && dtype < MFS_DT_COUNT_) || is_ext(dtype);
}

int32_t mfs_dtype_from_name(const char *name)
{
	for (int32_t i = 1; i < MFS_DT_COUNT_; i++)
		if (strcmp(name, dtypes[i].name) == 0)
			return i;
	for (int32_t i = MFS_DT_EXT_FIRST_; i < MFS_DT_EXT_END_; i++)
		if (is_ext(i) && strcmp(name, ext_dtypes[i - MFS_DT_EXT_FIRST_].name) == 0)
			return i;
	return -1;
}

unsigned mfs_dtype_bits(int32_t dtype)
{
	if (is_ext(dtype))
		return ext_dtypes[dtype - MFS_DT_EXT_FIRST_].bits;
	if (dtype < 0 || dtype >= MFS_DT_COUNT_)
		return 0;
	return dtypes[dtype].bits;
}

bool mfs_dtype_block(int32_t dtype, unsigned *elems, unsigned *bytes)
{
	*elems = *bytes = 0;
	if (!is_ext(dtype) || !ext_dtypes[dtype - MFS_DT_EXT_FIRST_].blck)
		return false;
	*elems = ext_dtypes[dtype - MFS_DT_EXT_FIRST_].blck;
	*bytes = ext_dtypes[dtype - MFS_DT_EXT_FIRST_].bsize;
	return true;
}

int mfs_tensor_nbytes(uint64_t *out, int32_t dtype, const int64_t *dims, size_t rank)
{
	unsigned bits = mfs_dtype_bits(dtype);
	unsigned blck, bsize;
	bool block = mfs_dtype_block(dtype, &blck, &bsize);
	if (!bits && !block)
		return -EINVAL;
	if (block && (!rank || dims[rank - 1] < 0 || dims[rank - 1] % blck))
		return -EINVAL;
	uint64_t n = 1;
	for (size_t i = 0; i < rank; i++) {
		if (dims[i] < 0)
			return -EINVAL;
		if (__builtin_mul_overflow(n, (uint64_t)dims[i], &n))
			return -EOVERFLOW;
	}
	if (block) {
		uint64_t bytes;
		if (__builtin_mul_overflow(n / blck, (uint64_t)bsize, &bytes))
			return -EOVERFLOW;
		*out = bytes;
		return 0;
	}
	uint64_t total_bits;
	if (__builtin_mul_overflow(n, (uint64_t)bits, &total_bits))
		return -EOVERFLOW;
	*out = total_bits / 8 + (total_bits % 8 != 0);
	return 0;
}

/* Append with snprintf semantics: `pos` grows past `len` when truncated. */
static void put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#include <stdarg.h>
static void put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *dst = *pos < len ? buf + *pos : NULL;
	size_t room = *pos < len ? len - *pos : 0;
	int n = vsnprintf(dst, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		*pos += (size_t)n;
}

size_t mfs_shape_format(char *buf, size_t len, const struct mfs_shape *shape)
{
	size_t pos = 0;
	if (len)
		buf[0] = '\0';
	if (!shape->known) {
		put(buf, len, &pos, "*");
		return pos;
	}
	for (size_t i = 0; i < shape->rank; i++) {
		const struct mfs_dim *d = &shape->dims[i];
		const char *sep = i ? "," : "";
		if (d->param) {
			/* A name of the model: escaped (doc/design.md §3.5). */
			put(buf, len, &pos, "%s", sep);
			pos += mfs_text_escape(pos < len ? buf + pos : NULL, pos < len ? len - pos : 0,
			                       d->param, strlen(d->param));
		} else if (d->value >= 0)
			put(buf, len, &pos, "%s%lld", sep, (long long)d->value);
		else
			put(buf, len, &pos, "%s?", sep);
	}
	return pos;
}

size_t mfs_dims_format(char *buf, size_t len, const int64_t *dims, size_t rank)
{
	size_t pos = 0;
	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < rank; i++)
		put(buf, len, &pos, "%s%lld", i ? "," : "", (long long)dims[i]);
	return pos;
}

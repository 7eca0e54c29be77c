/*
 * codec/core/elems.c — tensor elements as float64, and running statistics.
 *
 * The `stats` view and `modelfs diff` compare numbers, not bytes, so every
 * numeric dtype is decoded here to double: the half-precision types by
 * their bit layout (IEEE binary16; bfloat16 is the top half of a float32),
 * integers and bool by value.  Data is little-endian (model.h), so bytes
 * are assembled explicitly rather than cast.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "modelfs/view.h"

unsigned mfs_elems_width(int32_t dtype)
{
	switch (dtype) {
	case MFS_DT_BOOL:
	case MFS_DT_UINT8:
	case MFS_DT_INT8:
		return 1;
	case MFS_DT_FLOAT16:
	case MFS_DT_BFLOAT16:
	case MFS_DT_UINT16:
	case MFS_DT_INT16:
		return 2;
	case MFS_DT_FLOAT:
	case MFS_DT_INT32:
	case MFS_DT_UINT32:
		return 4;
	case MFS_DT_DOUBLE:
	case MFS_DT_INT64:
	case MFS_DT_UINT64:
		return 8;
	default:
		return 0;
	}
}

bool mfs_elems_float(int32_t dtype)
{
	return dtype == MFS_DT_FLOAT16 || dtype == MFS_DT_BFLOAT16 || dtype == MFS_DT_FLOAT ||
	       dtype == MFS_DT_DOUBLE;
}

/* IEEE 754 binary16 to double: sign, 5-bit exponent (bias 15), 10-bit fraction. */
static double half_to_double(uint16_t h)
{
	int sign = h >> 15, exp = (h >> 10) & 0x1f;
	unsigned frac = h & 0x3ff;
	double v;
	if (exp == 0)
		v = ldexp((double)frac, -24);           /* zero and subnormals */
	else if (exp == 31)
		v = frac ? NAN : INFINITY;
	else
		v = ldexp((double)(frac | 0x400), exp - 25);
	return sign ? -v : v;
}

static double f32_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

void mfs_elems_decode(double *out, int32_t dtype, const void *src, size_t n)
{
	const uint8_t *p = src;
	for (size_t i = 0; i < n; i++) {
		switch (dtype) {
		case MFS_DT_BOOL:
			out[i] = p[i] != 0;
			break;
		case MFS_DT_UINT8:
			out[i] = p[i];
			break;
		case MFS_DT_INT8:
			out[i] = (int8_t)p[i];
			break;
		case MFS_DT_FLOAT16:
			out[i] = half_to_double(mfs_get_le16(p + 2 * i));
			break;
		case MFS_DT_BFLOAT16:
			out[i] = f32_bits((uint32_t)mfs_get_le16(p + 2 * i) << 16);
			break;
		case MFS_DT_UINT16:
			out[i] = mfs_get_le16(p + 2 * i);
			break;
		case MFS_DT_INT16:
			out[i] = (int16_t)mfs_get_le16(p + 2 * i);
			break;
		case MFS_DT_FLOAT:
			out[i] = f32_bits(mfs_get_le32(p + 4 * i));
			break;
		case MFS_DT_INT32:
			out[i] = (int32_t)mfs_get_le32(p + 4 * i);
			break;
		case MFS_DT_UINT32:
			out[i] = mfs_get_le32(p + 4 * i);
			break;
		case MFS_DT_DOUBLE: {
			uint64_t u = mfs_get_le64(p + 8 * i);
			memcpy(&out[i], &u, sizeof(u));
			break;
		}
		case MFS_DT_INT64:
			out[i] = (double)(int64_t)mfs_get_le64(p + 8 * i);
			break;
		case MFS_DT_UINT64:
			out[i] = (double)mfs_get_le64(p + 8 * i);
			break;
		default:
			out[i] = NAN;
			break;
		}
	}
}

void mfs_stats_init(struct mfs_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->min = INFINITY;
	s->max = -INFINITY;
}

void mfs_stats_add(struct mfs_stats *s, const double *v, size_t n)
{
	s->count += n;
	for (size_t i = 0; i < n; i++) {
		double x = v[i];
		if (isnan(x)) {
			s->n_nan++;
			continue;
		}
		if (isinf(x)) {
			s->n_inf++;
			continue;
		}
		if (x < s->min)
			s->min = x;
		if (x > s->max)
			s->max = x;
		/* Welford: mean and sum of squared deviations in one pass. */
		s->n_finite++;
		double d = x - s->mean;
		s->mean += d / (double)s->n_finite;
		s->m2 += d * (x - s->mean);
	}
}

size_t mfs_stats_format(char *buf, size_t cap, const struct mfs_stats *s)
{
	char mn[32] = "nan", mx[32] = "nan", me[32] = "nan", sd[32] = "nan";
	if (s->n_finite) {
		snprintf(mn, sizeof(mn), "%.17g", s->min);
		snprintf(mx, sizeof(mx), "%.17g", s->max);
		snprintf(me, sizeof(me), "%.17g", s->mean);
		snprintf(sd, sizeof(sd), "%.17g", sqrt(s->m2 / (double)s->n_finite));
	}
	/* Fixed widths (%.17g of a double is at most 24 characters, a count
	 * at most 20 digits): the file's size is known before the tensor is
	 * read, so a stat (ls -l, du, find) does not compute it. */
	int n = snprintf(buf, cap,
	                 "count %20llu\nmin %24s\nmax %24s\nmean %24s\nstd %24s\nnan %20llu\n"
	                 "inf %20llu\n",
	                 (unsigned long long)s->count, mn, mx, me, sd,
	                 (unsigned long long)s->n_nan, (unsigned long long)s->n_inf);
	return n < 0 ? 0 : (size_t)n;
}

const char *mfs_npy_descr(int32_t dtype)
{
	switch (dtype) {
	case MFS_DT_BOOL: return "|b1";
	case MFS_DT_UINT8: return "|u1";
	case MFS_DT_INT8: return "|i1";
	case MFS_DT_FLOAT16: return "<f2";
	case MFS_DT_UINT16: return "<u2";
	case MFS_DT_INT16: return "<i2";
	case MFS_DT_FLOAT: return "<f4";
	case MFS_DT_INT32: return "<i4";
	case MFS_DT_UINT32: return "<u4";
	case MFS_DT_DOUBLE: return "<f8";
	case MFS_DT_INT64: return "<i8";
	case MFS_DT_UINT64: return "<u8";
	case MFS_DT_COMPLEX64: return "<c8";
	case MFS_DT_COMPLEX128: return "<c16";
	default: return NULL;   /* bfloat16, float8, int4 ...: numpy has none */
	}
}

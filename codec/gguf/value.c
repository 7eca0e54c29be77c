/*
 * codec/gguf/value.c — GGUF metadata values as text, and text as values.
 *
 * A meta/props/<key> file of a GGUF model is the value's text: a scalar on
 * one line, an array one element per line.  Integers are decimal, bools
 * "true"/"false", floats the shortest decimal that reads back to the same
 * bits ("nan", "inf", "-inf" too), strings escaped by the one rule of
 * doc/design.md §3.5, so a line never holds a line break and a string reads
 * back to its exact bytes.  Writing a file's text back parses it by the
 * key's type: the round trip of an unchanged file gives the same bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

static const char *const vnames[GV_COUNT_] = {
	"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
	"string", "array", "uint64", "int64", "float64",
};
static const unsigned vsizes[GV_COUNT_] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *mfs_gguf_vtype_name(uint32_t t)
{
	return t < GV_COUNT_ ? vnames[t] : NULL;
}

/* The scalar type named s[0 .. n), or GV_COUNT_ (arrays never). */
static uint32_t scalar_named(const char *s, size_t n)
{
	for (uint32_t t = 0; t < GV_COUNT_; t++)
		if (t != GV_ARRAY && strlen(vnames[t]) == n && memcmp(vnames[t], s, n) == 0)
			return t;
	return GV_COUNT_;
}

int mfs_gguf_type_parse(const char *s, size_t n, uint32_t *type, uint32_t *elem)
{
	*elem = 0;
	if (n > 7 && memcmp(s, "array[", 6) == 0 && s[n - 1] == ']') {
		*type = GV_ARRAY;
		*elem = scalar_named(s + 6, n - 7);
		return *elem == GV_COUNT_ ? -EINVAL : 0;
	}
	*type = scalar_named(s, n);
	return *type == GV_COUNT_ ? -EINVAL : 0;
}

unsigned mfs_gguf_vtype_size(uint32_t t)
{
	return t < GV_COUNT_ ? vsizes[t] : 0;
}

/* Decimal digits without printf: arrays of millions of integers are common. */
static void put_u64(struct mfs_buf *b, uint64_t v, bool neg)
{
	char tmp[24];
	int i = (int)sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	if (neg)
		tmp[--i] = '-';
	mfs_buf_add(b, tmp + i, sizeof(tmp) - (size_t)i);
}

static void put_i64(struct mfs_buf *b, int64_t v)
{
	put_u64(b, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0);
}

static void put_double(struct mfs_buf *b, double v, bool single)
{
	if (isnan(v)) {
		mfs_buf_add(b, "nan", 3);
		return;
	}
	if (isinf(v)) {
		mfs_buf_add(b, v < 0 ? "-inf" : "inf", v < 0 ? 4 : 3);
		return;
	}
	char tmp[40];
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (single ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v)
			break;
	}
	mfs_buf_add(b, tmp, strlen(tmp));
}

void mfs_gguf_scalar_text(struct mfs_buf *b, uint32_t t, const uint8_t *p, size_t n)
{
	uint64_t u = 0;
	unsigned sz = mfs_gguf_vtype_size(t);
	for (unsigned i = sz; i-- > 0;)
		u = u << 8 | p[i];
	switch (t) {
	case GV_UINT8: case GV_UINT16: case GV_UINT32: case GV_UINT64:
		put_u64(b, u, false);
		break;
	case GV_INT8:
		put_i64(b, (int8_t)u);
		break;
	case GV_INT16:
		put_i64(b, (int16_t)u);
		break;
	case GV_INT32:
		put_i64(b, (int32_t)u);
		break;
	case GV_INT64:
		put_i64(b, (int64_t)u);
		break;
	case GV_BOOL:
		if (u)
			mfs_buf_add(b, "true", 4);
		else
			mfs_buf_add(b, "false", 5);
		break;
	case GV_FLOAT32: {
		uint32_t w = (uint32_t)u;
		float f;
		memcpy(&f, &w, 4);
		put_double(b, f, true);
		break;
	}
	case GV_FLOAT64: {
		double d;
		memcpy(&d, &u, 8);
		put_double(b, d, false);
		break;
	}
	case GV_STRING: {
		if (mfs_text_plain((const char *)p, n)) {
			mfs_buf_add(b, p, n);
			break;
		}
		size_t need = mfs_text_escape(NULL, 0, (const char *)p, n);
		char *e = malloc(need + 1);
		if (!e) {
			b->oom = true;
			break;
		}
		mfs_text_escape(e, need + 1, (const char *)p, n);
		mfs_buf_add(b, e, need);
		free(e);
		break;
	}
	default:
		break;
	}
}

/* ------------------------------------------------------------ parsing */

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
	if (!n || n > 20)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[i] - '0', &v))
			return false;
	}
	*out = v;
	return true;
}

static bool parse_i64(const char *s, size_t n, int64_t *out)
{
	bool neg = n && s[0] == '-';
	uint64_t u;
	if (!parse_u64(s + neg, n - neg, &u))
		return false;
	if (neg ? u > (uint64_t)INT64_MAX + 1 : u > (uint64_t)INT64_MAX)
		return false;
	*out = neg ? (int64_t)(0 - u) : (int64_t)u;
	return true;
}

static bool parse_real(const char *s, size_t n, double *out, bool single)
{
	char tmp[64];
	if (!n || n >= sizeof(tmp))
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	/* strtod's own words only: no leading space, no hex floats. */
	if (tmp[0] == ' ' || tmp[0] == '\t' || strchr(tmp, 'x') || strchr(tmp, 'X'))
		return false;
	char *end;
	errno = 0;
	double v = single ? strtof(tmp, &end) : strtod(tmp, &end);
	if (end != tmp + n)
		return false;
	*out = v;
	return true;
}

/* Append one element of scalar type `t` from text `s[0 .. n)`. */
static int encode_scalar(struct mfs_buf *b, uint32_t t, const char *s, size_t n, char *msg,
                         size_t msglen)
{
	uint8_t le[8];
	uint64_t u = 0;
	int64_t i = 0;
	double d = 0;
	unsigned sz = mfs_gguf_vtype_size(t);
	switch (t) {
	case GV_UINT8: case GV_UINT16: case GV_UINT32: case GV_UINT64:
		if (!parse_u64(s, n, &u) || (sz < 8 && u >> (8 * sz)))
			goto bad;
		break;
	case GV_INT8: case GV_INT16: case GV_INT32: case GV_INT64:
		if (!parse_i64(s, n, &i))
			goto bad;
		if (sz < 8) {
			int64_t lim = (int64_t)1 << (8 * sz - 1);
			if (i < -lim || i >= lim)
				goto bad;
		}
		u = (uint64_t)i;
		break;
	case GV_BOOL:
		if (n == 4 && !memcmp(s, "true", 4))
			u = 1;
		else if (n == 5 && !memcmp(s, "false", 5))
			u = 0;
		else
			goto bad;
		break;
	case GV_FLOAT32: {
		if (!parse_real(s, n, &d, true))
			goto bad;
		float f = (float)d;
		uint32_t w;
		memcpy(&w, &f, 4);
		u = w;
		break;
	}
	case GV_FLOAT64:
		if (!parse_real(s, n, &d, false))
			goto bad;
		memcpy(&u, &d, 8);
		break;
	case GV_STRING: {
		char *raw = malloc(n ? n : 1);
		if (!raw) {
			b->oom = true;
			return -ENOMEM;
		}
		size_t rl = mfs_text_unescape(raw, s, n);
		mfs_put_le64(le, rl);
		mfs_buf_add(b, le, 8);
		mfs_buf_add(b, raw, rl);
		free(raw);
		return 0;
	}
	default:
		snprintf(msg, msglen, "values of type %s cannot be written",
		         mfs_gguf_vtype_name(t) ? mfs_gguf_vtype_name(t) : "unknown");
		return -EACCES;
	}
	for (unsigned k = 0; k < sz; k++)
		le[k] = (uint8_t)(u >> (8 * k));
	mfs_buf_add(b, le, sz);
	return 0;
bad:
	snprintf(msg, msglen, "'%.*s' is not a %s", (int)(n > 60 ? 60 : n), s, mfs_gguf_vtype_name(t));
	return -EINVAL;
}

int mfs_gguf_encode(struct mfs_buf *b, uint32_t type, uint32_t elem, const char *s, size_t n,
                    char *msg, size_t msglen)
{
	if (type != GV_ARRAY)
		return encode_scalar(b, type, s, n, msg, msglen);
	if (elem == GV_ARRAY || !mfs_gguf_vtype_name(elem)) {
		snprintf(msg, msglen, "arrays of arrays cannot be written");
		return -EACCES;
	}
	uint8_t hdr[12];
	size_t at = b->len;
	mfs_put_le32(hdr, elem);
	mfs_put_le64(hdr + 4, 0);
	mfs_buf_add(b, hdr, 12);
	uint64_t count = 0;
	int rc;
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t l = nl ? (size_t)(nl - (s + i)) : n - i;
		rc = encode_scalar(b, elem, s + i, l, msg, msglen);
		if (rc < 0) {
			char m2[256];
			snprintf(m2, sizeof(m2), "element %" PRIu64 ": %s", count, msg);
			snprintf(msg, msglen, "%s", m2);
			return rc;
		}
		count++;
		if (!nl)
			break;
		i += l + 1;
		if (i == n) {
			/* "a\n": a last, empty element. */
			if ((rc = encode_scalar(b, elem, s + i, 0, msg, msglen)) < 0)
				return rc;
			count++;
		}
	}
	if (count > GGUF_MAX_ARRAY) {
		snprintf(msg, msglen, "more than %llu elements", GGUF_MAX_ARRAY);
		return -EFBIG;
	}
	if (!b->oom)
		mfs_put_le64((uint8_t *)b->p + at + 4, count);
	return 0;
}

/* The narrowest type of the inference order that the text `s[0 .. n)` fits. */
enum { K_BOOL, K_UINT, K_INT, K_REAL, K_STRING };

static int kind_of(const char *s, size_t n, bool *wide)
{
	uint64_t u;
	int64_t i;
	double d;
	if ((n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5)))
		return K_BOOL;
	if (parse_u64(s, n, &u)) {
		if (u > UINT32_MAX)
			*wide = true;
		return u > INT64_MAX ? K_STRING : K_UINT;
	}
	if (parse_i64(s, n, &i)) {
		if (i < INT32_MIN)
			*wide = true;
		return K_INT;
	}
	if (parse_real(s, n, &d, false))
		return K_REAL;
	return K_STRING;
}

static uint32_t type_of(int k, bool wide)
{
	switch (k) {
	case K_BOOL: return GV_BOOL;
	case K_UINT: return wide ? GV_UINT64 : GV_UINT32;
	case K_INT: return wide ? GV_INT64 : GV_INT32;
	case K_REAL: return GV_FLOAT32;
	default: return GV_STRING;
	}
}

void mfs_gguf_infer(const char *s, size_t n, uint32_t *type, uint32_t *elem)
{
	*elem = 0;
	const char *nl = memchr(s, '\n', n);
	bool wide = false;
	if (!nl) {
		*type = type_of(kind_of(s, n, &wide), wide);
		return;
	}
	int k = -1;
	for (size_t i = 0; i < n;) {
		const char *e = memchr(s + i, '\n', n - i);
		size_t l = e ? (size_t)(e - (s + i)) : n - i;
		int kk = kind_of(s + i, l, &wide);
		if (k < 0)
			k = kk;
		else if (k != kk)
			k = (k == K_BOOL || kk == K_BOOL || k == K_STRING || kk == K_STRING)
			            ? K_STRING : (k > kk ? k : kk);
		i += l + 1;
	}
	*type = GV_ARRAY;
	*elem = type_of(k < 0 ? K_STRING : k, wide);
}

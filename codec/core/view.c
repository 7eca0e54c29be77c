/*
 * codec/core/view.c — the streaming views: SHA-256 and statistics over a
 * tensor's bytes, and the npy header put in front of them.
 *
 * Both passes read MFS_VIEW_CHUNK bytes at a time through the caller's
 * reader, so memory stays at one chunk (plus its decoded doubles for
 * stats) whatever the tensor's size.  The digest is OpenSSL's (EVP), not a
 * hash of our own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/core.h"
#include "modelfs/view.h"

/* Fill buf[0 .. len) from `off`, or fail: a short stream is corrupt. */
static int read_full(mfs_view_read_fn *rd, void *arg, uint8_t *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = rd(arg, buf + got, len - got, off + got);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EUCLEAN;
		got += (size_t)n;
	}
	return 0;
}

int mfs_sha256(uint8_t md[32], uint64_t size, mfs_view_read_fn *rd, void *arg)
{
	uint8_t *buf = malloc(MFS_VIEW_CHUNK);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char full[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int rc = 0;
	if (!buf || !ctx) {
		rc = -ENOMEM;
		goto out;
	}
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		rc = -EIO;
		goto out;
	}
	for (uint64_t off = 0; off < size;) {
		size_t len = size - off < MFS_VIEW_CHUNK ? (size_t)(size - off) : MFS_VIEW_CHUNK;
		if ((rc = read_full(rd, arg, buf, len, off)) < 0)
			goto out;
		if (EVP_DigestUpdate(ctx, buf, len) != 1) {
			rc = -EIO;
			goto out;
		}
		off += len;
	}
	if (EVP_DigestFinal_ex(ctx, full, &mdlen) != 1 || mdlen != 32)
		rc = -EIO;
	else
		memcpy(md, full, 32);
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	return rc;
}

struct mfs_sha256_ctx {
	EVP_MD_CTX *md;
};

int mfs_sha256_begin(struct mfs_sha256_ctx **out)
{
	struct mfs_sha256_ctx *c = calloc(1, sizeof(*c));
	*out = NULL;
	if (!c || !(c->md = EVP_MD_CTX_new())) {
		free(c);
		return -ENOMEM;
	}
	if (EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
		mfs_sha256_free(c);
		return -EIO;
	}
	*out = c;
	return 0;
}

int mfs_sha256_update(struct mfs_sha256_ctx *c, const void *buf, size_t len)
{
	return EVP_DigestUpdate(c->md, buf, len) == 1 ? 0 : -EIO;
}

int mfs_sha256_final(struct mfs_sha256_ctx *c, uint8_t md[32])
{
	unsigned char full[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (EVP_DigestFinal_ex(c->md, full, &mdlen) != 1 || mdlen != 32)
		return -EIO;
	memcpy(md, full, 32);
	return 0;
}

void mfs_sha256_free(struct mfs_sha256_ctx *c)
{
	if (!c)
		return;
	EVP_MD_CTX_free(c->md);
	free(c);
}

void mfs_hex(char *out, const uint8_t *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int mfs_view_sha256(char out[65], uint64_t size, mfs_view_read_fn *rd, void *arg)
{
	uint8_t md[32];
	out[0] = '\0';
	int rc = mfs_sha256(md, size, rd, arg);
	if (rc == 0)
		mfs_hex(out, md, sizeof(md));
	return rc;
}

int mfs_view_stats(struct mfs_stats *out, int32_t dtype, uint64_t size, mfs_view_read_fn *rd,
                   void *arg)
{
	unsigned w = mfs_elems_width(dtype);
	mfs_stats_init(out);
	if (!w)
		return -EOPNOTSUPP;
	if (size % w)
		return -EUCLEAN;
	uint8_t *buf = malloc(MFS_VIEW_CHUNK);
	double *v = malloc((MFS_VIEW_CHUNK / 1) * sizeof(double) / w);
	int rc = 0;
	if (!buf || !v) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint64_t off = 0; off < size;) {
		/* MFS_VIEW_CHUNK is a multiple of every width: chunks hold whole elements. */
		size_t len = size - off < MFS_VIEW_CHUNK ? (size_t)(size - off) : MFS_VIEW_CHUNK;
		if ((rc = read_full(rd, arg, buf, len, off)) < 0)
			goto out;
		mfs_elems_decode(v, dtype, buf, len / w);
		mfs_stats_add(out, v, len / w);
		off += len;
	}
out:
	free(v);
	free(buf);
	return rc;
}

/*
 * The npy format 1.0 (numpy.lib.format): OFFSET SIZE MEANING
 *   0  6  "\x93NUMPY"
 *   6  2  version 1, 0
 *   8  2  header length HLEN, little-endian
 *  10  HLEN  a Python dict literal, padded with spaces and ended by '\n' so
 *            that 10 + HLEN is a multiple of 64 (numpy >= 1.15 aligns so)
 * then the array's bytes, C order.
 */
size_t mfs_npy_header(char *buf, size_t cap, int32_t dtype, const int64_t *dims, size_t rank)
{
	const char *descr = mfs_npy_descr(dtype);
	if (!descr || cap < MFS_NPY_HEADER_MAX)
		return 0;
	/* Python's tuple: "()", "(5,)", "(2, 3)". */
	char shape[MFS_NPY_HEADER_MAX];
	size_t sl = 1;
	shape[0] = '(';
	for (size_t i = 0; i < rank; i++) {
		int n = snprintf(shape + sl, sizeof(shape) - sl, "%s%lld%s", i ? ", " : "",
		                 (long long)dims[i], rank == 1 ? "," : "");
		if (n < 0 || (size_t)n + 2 >= sizeof(shape) - sl)
			return 0;
		sl += (size_t)n;
	}
	shape[sl++] = ')';
	shape[sl] = '\0';
	char *dict = buf + 10;
	int n = snprintf(dict, cap - 10, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
	                 descr, shape);
	if (n < 0 || (size_t)n + 11 > MFS_NPY_HEADER_MAX)
		return 0;
	size_t total = ((size_t)n + 11 + 63) / 64 * 64;
	if (total > MFS_NPY_HEADER_MAX)
		return 0;
	memset(dict + n, ' ', total - 10 - (size_t)n);
	buf[total - 1] = '\n';
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	buf[8] = (char)((total - 10) & 0xff);
	buf[9] = (char)((total - 10) >> 8);
	return total;
}

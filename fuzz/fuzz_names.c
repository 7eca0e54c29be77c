/*
 * fuzz/fuzz_names.c — libFuzzer target: the name encoder and decoder of
 * fs/names.c, which turn any name a model chooses into one path component.
 *
 * Input layout: byte 0 picks `max` (MFS_NAME_MIN_MAX .. MFS_NAME_MAX),
 * byte 1 where the rest is cut into two names a and b.  Oracles, from
 * names.h: a component is 1..max bytes, has no '/' or NUL, is never "." or
 * ".."; an untruncated one (no "%~") decodes back to the name, a truncated
 * one decodes to -ENAMETOOLONG; two different names never share a
 * component unless both were truncated (a 64-bit hash collision, which the
 * tree builder handles); mfs_name_is_plain() agrees with the encoder.  The
 * raw input is also given to the decoder and the path splitter.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "names.h"

static bool truncated(const char *c, size_t n)
{
	return memmem(c, n, "%~", 2) != NULL;
}

static size_t encode_checked(char *out, size_t max, const uint8_t *name, size_t len)
{
	memset(out, 0x55, MFS_NAME_MAX + 2);
	size_t n = mfs_name_encode(out, max, (const char *)name, len);
	FZ_CHECK(n >= 1 && n <= max);
	FZ_CHECK(out[n] == '\0' && strlen(out) == n);
	FZ_CHECK(memchr(out, '/', n) == NULL);
	FZ_CHECK(strcmp(out, ".") != 0 && strcmp(out, "..") != 0);

	bool plain = mfs_name_is_plain((const char *)name, len, max);
	FZ_CHECK(plain == (n == len && memcmp(out, name, len) == 0));

	char dec[MFS_NAME_MAX + 1];
	size_t dlen = 0;
	int rc = mfs_name_decode(dec, &dlen, out, n);
	if (truncated(out, n)) {
		FZ_CHECK(rc == -ENAMETOOLONG);
		FZ_CHECK(len > 0);
	} else {
		FZ_CHECK(rc == 0);
		FZ_CHECK(dlen == len && memcmp(dec, name, len) == 0);
	}
	/* Encoding is a function: the same name gives the same component. */
	char again[MFS_NAME_MAX + 2];
	FZ_CHECK(mfs_name_encode(again, max, (const char *)name, len) == n);
	FZ_CHECK(memcmp(again, out, n) == 0);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max = MFS_NAME_MIN_MAX + data[0] % (MFS_NAME_MAX - MFS_NAME_MIN_MAX + 1);
	const uint8_t *rest = data + 2;
	size_t rlen = size - 2;
	size_t cut = rlen ? data[1] % (rlen + 1) : 0;
	const uint8_t *a = rest, *b = rest + cut;
	size_t alen = cut, blen = rlen - cut;

	char ea[MFS_NAME_MAX + 2], eb[MFS_NAME_MAX + 2];
	size_t na = encode_checked(ea, max, a, alen);
	size_t nb = encode_checked(eb, max, b, blen);
	bool same_name = alen == blen && memcmp(a, b, alen) == 0;
	bool same_comp = na == nb && memcmp(ea, eb, na) == 0;
	if (!same_name && same_comp)
		FZ_CHECK(truncated(ea, na) && truncated(eb, nb));
	if (same_name)
		FZ_CHECK(same_comp);

	/* The decoder on raw bytes: never more output than input, never a crash. */
	char *dec = malloc(rlen + 1);
	FZ_CHECK(dec != NULL);
	size_t dlen = 0;
	if (mfs_name_decode(dec, &dlen, (const char *)rest, rlen) == 0)
		FZ_CHECK(dlen <= rlen);
	free(dec);

	/* The splitter: non-empty segments without '/', and the joined path
	 * has snprintf semantics. */
	struct mfs_split s;
	const char *seg;
	size_t seg_len, nseg = 0;
	mfs_split_init(&s, (const char *)rest, rlen);
	while (mfs_split_next(&s, &seg, &seg_len)) {
		FZ_CHECK(seg >= (const char *)rest && seg + seg_len <= (const char *)rest + rlen);
		FZ_CHECK(seg_len > 0 || rlen == 0);
		nseg++;
		FZ_CHECK(nseg <= rlen + 1);
	}
	FZ_CHECK(nseg >= 1);
	char one[1];
	size_t need = mfs_name_split_path(one, sizeof(one), (const char *)rest, rlen);
	char *joined = malloc(need + 1);
	FZ_CHECK(joined != NULL);
	FZ_CHECK(mfs_name_split_path(joined, need + 1, (const char *)rest, rlen) == need);
	FZ_CHECK(strlen(joined) == need);
	free(joined);
	return 0;
}

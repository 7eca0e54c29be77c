/*
 * fs/names.c — encoding model-provided names into path components.
 *
 * The rules: names.h and doc/design.md §3.3.  This file is pure string work
 * (no FUSE, no allocation) so that the tree builder and the unit tests can
 * call it freely.  The hash is here too because the truncation suffix needs
 * a stable one, and the tree's lookup table can reuse it with a random seed.
 */
#include <errno.h>
#include <string.h>

#include "names.h"

/* "%~" and 16 hex digits mark a cut name. */
#define CUT_SUFFIX_LEN 18

static const char hexdig[] = "0123456789ABCDEF";

/* Bytes the encoder escapes anywhere in a name. */
static bool needs_escape(unsigned char c)
{
	return c < 0x20 || c == 0x7f || c == '%' || c == '/';
}

static bool is_dot_or_dotdot(const char *s, size_t len)
{
	return (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.');
}

/* ------------------------------------------------------------------ hash */

static uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* MurmurHash3's 64-bit finalizer: every input bit affects every output bit. */
static uint64_t fmix64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ull;
	k ^= k >> 33;
	return k;
}

uint64_t mfs_name_hash(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t h = seed ^ (0x9e3779b97f4a7c15ull * (len + 1));
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h ^= fmix64(w + 0x2545f4914f6cdd1dull);
		h = rotl64(h, 27) * 0x9e3779b97f4a7c15ull + 0x52dce729;
		p += 8;
		len -= 8;
	}
	uint64_t w = 0;
	for (size_t i = 0; i < len; i++)
		w |= (uint64_t)p[i] << (8 * i);
	h ^= fmix64(w ^ 0x94d049bb133111ebull);
	return fmix64(h);
}

/* -------------------------------------------------------------- encoding */

static size_t put_byte(char *out, unsigned char c)
{
	if (!needs_escape(c)) {
		out[0] = (char)c;
		return 1;
	}
	out[0] = '%';
	out[1] = hexdig[c >> 4];
	out[2] = hexdig[c & 15];
	return 3;
}

bool mfs_name_is_plain(const char *name, size_t len, size_t max)
{
	if (len == 0 || len > max || is_dot_or_dotdot(name, len))
		return false;
	for (size_t i = 0; i < len; i++)
		if (needs_escape((unsigned char)name[i]))
			return false;
	return true;
}

size_t mfs_name_encode(char *out, size_t max, const char *name, size_t len)
{
	if (max > MFS_NAME_MAX)
		max = MFS_NAME_MAX;
	if (max < MFS_NAME_MIN_MAX)
		max = MFS_NAME_MIN_MAX;     /* callers never pass less; stay safe */

	if (len == 0) {
		memcpy(out, "%", 2);
		return 1;
	}
	if (is_dot_or_dotdot(name, len)) {
		const char *s = len == 1 ? "%2E" : "%2E%2E";
		size_t n = strlen(s);
		memcpy(out, s, n + 1);
		return n;
	}

	size_t full = 0;
	for (size_t i = 0; i < len && full <= max; i++)
		full += needs_escape((unsigned char)name[i]) ? 3 : 1;
	if (full <= max) {
		size_t o = 0;
		for (size_t i = 0; i < len; i++)
			o += put_byte(out + o, (unsigned char)name[i]);
		out[o] = '\0';
		return o;
	}

	/*
	 * Too long: keep as many whole units (a byte or a %XX escape) as fit
	 * before the suffix, backing off to the start of a UTF-8 sequence so the
	 * prefix still displays.  `safe` is the output length before the last
	 * byte that starts a character; if the name is not UTF-8 at all and the
	 * back-off would lose much, cut where the budget ends.
	 */
	size_t budget = max - CUT_SUFFIX_LEN;
	size_t o = 0, safe = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		size_t unit = needs_escape(c) ? 3 : 1;
		if ((c & 0xc0) != 0x80)
			safe = o;
		if (o + unit > budget) {
			if ((c & 0xc0) == 0x80 && safe > budget / 2)
				o = safe;
			break;
		}
		o += put_byte(out + o, c);
	}
	uint64_t h = mfs_name_hash(name, len, 0);
	out[o++] = '%';
	out[o++] = '~';
	for (int shift = 60; shift >= 0; shift -= 4)
		out[o++] = hexdig[(h >> shift) & 15];
	out[o] = '\0';
	return o;
}

/* -------------------------------------------------------------- decoding */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;          /* lower case is never produced, so never accepted */
}

int mfs_name_decode(char *out, size_t *out_len, const char *comp, size_t len)
{
	*out_len = 0;
	if (len == 1 && comp[0] == '%')
		return 0;
	if (len == 0 || is_dot_or_dotdot(comp, len))
		return -EINVAL;
	bool dots = (len == 3 && !memcmp(comp, "%2E", 3)) || (len == 6 && !memcmp(comp, "%2E%2E", 6));
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)comp[i];
		if (c != '%') {
			/* The encoder would have escaped these. */
			if (needs_escape(c) || c == '\0')
				return -EINVAL;
			out[o++] = (char)c;
			continue;
		}
		if (i + 1 < len && comp[i + 1] == '~')
			return -ENAMETOOLONG;
		if (i + 2 >= len)
			return -EINVAL;
		int hi = hexval(comp[i + 1]), lo = hexval(comp[i + 2]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		unsigned char b = (unsigned char)(hi << 4 | lo);
		/* Only canonical escapes: anything else has a second spelling. */
		if (!needs_escape(b) && !(dots && b == '.'))
			return -EINVAL;
		out[o++] = (char)b;
		i += 2;
	}
	*out_len = o;
	return 0;
}

/* ------------------------------------------------------------- splitting */

void mfs_split_init(struct mfs_split *s, const char *name, size_t len)
{
	s->name = name;
	s->len = len;
	s->pos = 0;
	s->any = false;
	s->done = false;
}

bool mfs_split_next(struct mfs_split *s, const char **seg, size_t *seg_len)
{
	if (s->done)
		return false;
	while (s->pos < s->len) {
		size_t start = s->pos;
		while (s->pos < s->len && s->name[s->pos] != '/' && s->name[s->pos] != '.')
			s->pos++;
		size_t end = s->pos;
		if (s->pos < s->len)
			s->pos++;               /* the separator */
		if (end > start) {
			*seg = s->name + start;
			*seg_len = end - start;
			s->any = true;
			return true;
		}
	}
	s->done = true;
	if (s->any)
		return false;
	/* Nothing but separators (or nothing at all): the whole name is the segment. */
	*seg = s->name;
	*seg_len = s->len;
	return true;
}

size_t mfs_name_split_path(char *buf, size_t len, const char *name, size_t name_len)
{
	struct mfs_split s;
	const char *seg;
	size_t seg_len, pos = 0;
	char comp[MFS_NAME_MAX + 1];
	if (len)
		buf[0] = '\0';
	mfs_split_init(&s, name, name_len);
	while (mfs_split_next(&s, &seg, &seg_len)) {
		size_t n = mfs_name_encode(comp, MFS_NAME_MAX, seg, seg_len);
		if (pos) {
			if (pos + 1 < len)
				buf[pos] = '/';
			pos++;
		}
		for (size_t i = 0; i < n; i++, pos++)
			if (pos + 1 < len)
				buf[pos] = comp[i];
	}
	if (len)
		buf[pos < len ? pos : len - 1] = '\0';
	return pos;
}

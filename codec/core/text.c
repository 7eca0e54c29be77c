/*
 * codec/core/text.c — the one escape of text values (doc/design.md §3.5).
 *
 * Every value the tree shows in a text file, every value and name `modelfs
 * info` prints and every name in .modelfs/status goes through
 * mfs_text_escape(): '%', the bytes below 0x20 and 0x7f become "%XX", so a
 * value is always one line and a list always one value per line.  It is the
 * name encoding of fs/names.c (doc/design.md §3.3) without what only a path
 * component needs ('/', ".", "..", "", the cut of long names).  Values
 * written back through the mount are decoded with mfs_text_unescape(), so
 * what a file shows is what may be written to get the same bytes.
 */
#include <string.h>

#include "core/core.h"

static const char hexdig[] = "0123456789ABCDEF";

static bool needs_escape(unsigned char c)
{
	return c < 0x20 || c == 0x7f || c == '%';
}

bool mfs_text_plain(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (needs_escape((unsigned char)s[i]))
			return false;
	return true;
}

size_t mfs_text_escape(char *buf, size_t len, const char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!needs_escape(c)) {
			if (o + 1 < len)
				buf[o] = (char)c;
			o++;
			continue;
		}
		if (o + 3 < len) {
			buf[o] = '%';
			buf[o + 1] = hexdig[c >> 4];
			buf[o + 2] = hexdig[c & 15];
		} else if (o < len) {
			len = o + 1;    /* an escape is never cut: stop here */
		}
		o += 3;
	}
	if (len)
		buf[o < len ? o : len - 1] = '\0';
	return o;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t mfs_text_unescape(char *out, const char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
		    (lo = hexval((unsigned char)s[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	return o;
}

int mfs_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		uint64_t mul;
	} units[] = {
		{"", 1}, {"B", 1}, {"K", 1ull << 10}, {"KiB", 1ull << 10}, {"M", 1ull << 20},
		{"MiB", 1ull << 20}, {"G", 1ull << 30}, {"GiB", 1ull << 30}, {"T", 1ull << 40},
		{"TiB", 1ull << 40}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000},
		{"TB", 1000000000000ull},
	};
	uint64_t v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++)
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v))
			return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].suffix) == 0) {
			if (__builtin_mul_overflow(v, units[i].mul, out) || *out == 0)
				return -1;
			return 0;
		}
	}
	return -1;
}

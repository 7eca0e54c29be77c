/*
 * tests/unit/test_text.c — the escape of text values (codec/core/text.c,
 * doc/design.md §3.5): what it escapes and keeps, that a cut never splits
 * an escape, and that mfs_text_unescape() gives every byte string back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "modelfs/model.h"

static void escape_is(const char *in, size_t n, const char *want)
{
	char buf[256];
	size_t len = mfs_text_escape(buf, sizeof(buf), in, n);
	assert_int_equal(len, strlen(want));
	assert_string_equal(buf, want);
	assert_int_equal(mfs_text_escape(NULL, 0, in, n), len);
	assert_int_equal(mfs_text_plain(in, n), len == n && memcmp(buf, in, n) == 0);
}

static void escapes_percent_controls_and_del_only(void **state)
{
	(void)state;
	const char *plain = "plain text, UTF-8 \xc3\xa9 and / . \\";
	escape_is(plain, strlen(plain), plain);
	escape_is("a\nb", 3, "a%0Ab");
	escape_is("\t\r\x1f\x7f%", 5, "%09%0D%1F%7F%25");
	escape_is("n\0l", 3, "n%00l");
	escape_is("", 0, "");
	escape_is("50% done", 8, "50%25 done");
}

static void a_cut_never_splits_an_escape(void **state)
{
	(void)state;
	char buf[8];
	/* "ab%0Acd": a buffer of 5 holds "ab" and the NUL, never "ab%0". */
	assert_int_equal(mfs_text_escape(buf, 5, "ab\ncd", 5), 7);
	assert_string_equal(buf, "ab");
	assert_int_equal(mfs_text_escape(buf, 6, "ab\ncd", 5), 7);
	assert_string_equal(buf, "ab%0A");
	assert_int_equal(mfs_text_escape(buf, 1, "ab", 2), 2);
	assert_string_equal(buf, "");
	assert_int_equal(mfs_text_escape(buf, 3, "abc", 3), 3);
	assert_string_equal(buf, "ab");
}

static void unescape_inverts_escape_for_every_byte(void **state)
{
	(void)state;
	char raw[512], esc[1600], back[1600];
	for (int i = 0; i < 256; i++) {
		raw[2 * i] = (char)i;
		raw[2 * i + 1] = 'x';
	}
	size_t n = mfs_text_escape(esc, sizeof(esc), raw, sizeof(raw));
	assert_true(n < sizeof(esc));
	assert_null(memchr(esc, '\n', n));
	assert_int_equal(mfs_text_unescape(back, esc, n), sizeof(raw));
	assert_memory_equal(back, raw, sizeof(raw));
	/* In place. */
	assert_int_equal(mfs_text_unescape(esc, esc, n), sizeof(raw));
	assert_memory_equal(esc, raw, sizeof(raw));
}

static void unescape_keeps_what_is_no_escape(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"50% done", "50% done"}, {"%", "%"}, {"%4", "%4"}, {"%zz", "%zz"},
		{"%0a%0A", "\n\n"}, {"%25%32%35", "%25"}, {"100%%41", "100%A"},
		{"tail%", "tail%"}, {"%7f", "\x7f"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64];
		size_t n = mfs_text_unescape(out, cases[i].in, strlen(cases[i].in));
		out[n] = '\0';
		assert_string_equal(out, cases[i].out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(escapes_percent_controls_and_del_only),
		cmocka_unit_test(a_cut_never_splits_an_escape),
		cmocka_unit_test(unescape_inverts_escape_for_every_byte),
		cmocka_unit_test(unescape_keeps_what_is_no_escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * tests/unit/test_names.c — the name encoder and the weights path splitter.
 *
 * Proves: ordinary names are kept, every dangerous name is escaped, the
 * encoder never makes "", ".", "..", a '/' or a NUL, encoding is injective
 * on tricky and random sets, untruncated forms decode back, long names are
 * cut without splitting an escape or a UTF-8 character, and tensor names
 * split into the paths doc/design.md §3.1 shows (encoding: §3.3).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "names.h"

static size_t enc(char *out, const char *name, size_t len)
{
	return mfs_name_encode(out, MFS_NAME_MAX, name, len);
}

static void assert_enc(const char *name, size_t len, const char *want)
{
	char out[MFS_NAME_MAX + 1];
	size_t n = enc(out, name, len);
	assert_int_equal(n, strlen(want));
	assert_string_equal(out, want);
}

/* The properties every encoding has, whatever the input. */
static void assert_safe(const char *out, size_t n, size_t max)
{
	assert_true(n >= 1 && n <= max);
	assert_int_equal(strlen(out), n);        /* no NUL inside */
	assert_null(memchr(out, '/', n));
	assert_false(n == 1 && out[0] == '.');
	assert_false(n == 2 && out[0] == '.' && out[1] == '.');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)out[i];
		assert_true(c >= 0x20 && c != 0x7f);
		/* '%' starts an escape, the cut marker, or is the whole (empty) name */
		if (c == '%' && n > 1) {
			assert_true(i + 1 < n);
			if (out[i + 1] != '~')
				assert_true(i + 2 < n);
		}
	}
}

static void plain_names_are_kept(void **state)
{
	(void)state;
	assert_enc("weight", 6, "weight");
	assert_enc("0000-Conv", 9, "0000-Conv");
	assert_enc("...", 3, "...");
	assert_enc(".hidden", 7, ".hidden");
	assert_enc("a b~c", 5, "a b~c");
	assert_enc("\xc3\xa9t\xc3\xa9", 5, "\xc3\xa9t\xc3\xa9");      /* UTF-8 kept */
	assert_true(mfs_name_is_plain("weight", 6, MFS_NAME_MAX));
	assert_false(mfs_name_is_plain("a/b", 3, MFS_NAME_MAX));
	assert_false(mfs_name_is_plain("", 0, MFS_NAME_MAX));
	assert_false(mfs_name_is_plain(".", 1, MFS_NAME_MAX));
	assert_false(mfs_name_is_plain("..", 2, MFS_NAME_MAX));
	assert_false(mfs_name_is_plain("abc", 3, 2));
}

static void dangerous_names_are_escaped(void **state)
{
	(void)state;
	assert_enc("", 0, "%");
	assert_enc(".", 1, "%2E");
	assert_enc("..", 2, "%2E%2E");
	assert_enc("/", 1, "%2F");
	assert_enc("a/b", 3, "a%2Fb");
	assert_enc("../../etc/passwd", 16, "..%2F..%2Fetc%2Fpasswd");
	assert_enc("%", 1, "%25");
	assert_enc("%2E", 3, "%252E");
	assert_enc("\n", 1, "%0A");
	assert_enc("a\tb", 3, "a%09b");
	assert_enc("\x01\x1f\x7f", 3, "%01%1F%7F");
	assert_enc("a\0b", 3, "a%00b");
}

static const char *const tricky[] = {
	"", ".", "..", "...", "%", "%%", "%25", "%2E", "%2E%2E", "%2F", "/", "//", "a/b",
	"a%2Fb", "a%b", ".a", "a.", "\x01", "%01", "%~", "~", "~1", "a~1", "\n", "%0A",
	"%0a", " ", "\x7f", "%7F", "a/", "/a", "..%2F", "../", "./", "%2e", NULL,
};

static void encoding_is_injective_on_tricky_names(void **state)
{
	(void)state;
	size_t n = 0;
	while (tricky[n])
		n++;
	char (*out)[MFS_NAME_MAX + 1] = calloc(n, sizeof(*out));
	assert_non_null(out);
	for (size_t i = 0; i < n; i++) {
		size_t l = enc(out[i], tricky[i], strlen(tricky[i]));
		assert_safe(out[i], l, MFS_NAME_MAX);
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (!strcmp(out[i], out[j]))
				fail_msg("'%s' and '%s' both encode to '%s'", tricky[i], tricky[j], out[i]);
	free(out);
}

static void decode_round_trips(void **state)
{
	(void)state;
	for (size_t i = 0; tricky[i]; i++) {
		char out[MFS_NAME_MAX + 1], back[MFS_NAME_MAX + 1];
		size_t l = enc(out, tricky[i], strlen(tricky[i])), bl;
		assert_int_equal(mfs_name_decode(back, &bl, out, l), 0);
		assert_int_equal(bl, strlen(tricky[i]));
		assert_memory_equal(back, tricky[i], bl);
	}
	/* A NUL byte survives the round trip too. */
	char out[16], back[16];
	size_t bl, l = enc(out, "a\0b", 3);
	assert_int_equal(mfs_name_decode(back, &bl, out, l), 0);
	assert_int_equal(bl, 3);
	assert_memory_equal(back, "a\0b", 3);
}

static void decode_rejects_what_the_encoder_never_makes(void **state)
{
	(void)state;
	char back[32];
	size_t bl;
	assert_int_equal(mfs_name_decode(back, &bl, "%41", 3), -EINVAL);   /* 'A' needs no escape */
	assert_int_equal(mfs_name_decode(back, &bl, "%2f", 3), -EINVAL);   /* lower-case hex */
	assert_int_equal(mfs_name_decode(back, &bl, "a%2E", 4), -EINVAL);  /* '.' only as "." */
	assert_int_equal(mfs_name_decode(back, &bl, "%2", 2), -EINVAL);
	assert_int_equal(mfs_name_decode(back, &bl, "a%", 2), -EINVAL);
	assert_int_equal(mfs_name_decode(back, &bl, "%ZZ", 3), -EINVAL);
	assert_int_equal(mfs_name_decode(back, &bl, ".", 1), -EINVAL);
	assert_int_equal(mfs_name_decode(back, &bl, "..", 2), -EINVAL);
	assert_int_equal(mfs_name_decode(back, &bl, "", 0), -EINVAL);
	assert_int_equal(mfs_name_decode(back, &bl, "a\nb", 3), -EINVAL);
	assert_int_equal(mfs_name_decode(back, &bl, "abc%~0123", 9), -ENAMETOOLONG);
	assert_int_equal(mfs_name_decode(back, &bl, "%", 1), 0);
	assert_int_equal(bl, 0);
}

static void long_names_are_cut_with_a_hash(void **state)
{
	(void)state;
	char name[1000], out[MFS_NAME_MAX + 1], out2[MFS_NAME_MAX + 1];
	memset(name, 'a', sizeof(name));

	/* 255 bytes still fit; 256 do not. */
	assert_int_equal(enc(out, name, 255), 255);
	assert_null(strstr(out, "%~"));
	size_t n = enc(out, name, 256);
	assert_safe(out, n, MFS_NAME_MAX);
	assert_non_null(strstr(out, "%~"));
	assert_int_equal(strlen(strstr(out, "%~")), 18);

	/* Names that differ only past the cut still differ. */
	name[999] = 'b';
	size_t n2 = enc(out2, name, 1000);
	name[999] = 'c';
	n = enc(out, name, 1000);
	assert_int_equal(n, n2);
	assert_string_not_equal(out, out2);

	/* The same name always gives the same component (stable across mounts). */
	enc(out2, name, 1000);
	assert_string_equal(out, out2);

	/* Decoding a cut name says so. */
	char back[MFS_NAME_MAX + 1];
	size_t bl;
	assert_int_equal(mfs_name_decode(back, &bl, out, n), -ENAMETOOLONG);

	/* A smaller budget (room for a "0042-" prefix) is honoured. */
	n = mfs_name_encode(out, 40, name, 1000);
	assert_true(n <= 40);
	assert_safe(out, n, 40);
}

static void cut_never_splits_an_escape_or_a_character(void **state)
{
	(void)state;
	char name[600], out[MFS_NAME_MAX + 1];
	/* All escapes: the prefix must be whole %XX units. */
	memset(name, '/', 300);
	size_t n = enc(out, name, 300);
	assert_safe(out, n, MFS_NAME_MAX);
	size_t prefix = (size_t)(strstr(out, "%~") - out);
	assert_int_equal(prefix % 3, 0);
	for (size_t i = 0; i < prefix; i += 3)
		assert_memory_equal(out + i, "%2F", 3);

	/* Two-byte UTF-8 characters with an odd lead: the cut lands on a boundary. */
	name[0] = 'x';
	for (size_t i = 1; i + 1 < 600; i += 2) {
		name[i] = (char)0xc3;
		name[i + 1] = (char)0xa9;
	}
	n = enc(out, name, 599);
	prefix = (size_t)(strstr(out, "%~") - out);
	assert_int_equal((prefix - 1) % 2, 0);
	assert_int_equal((unsigned char)out[prefix - 1], 0xa9);
}

/* Random bytes: the safety properties, is_plain agreement, round trip, injectivity. */
static void random_names_keep_every_property(void **state)
{
	(void)state;
	enum { N = 4000 };
	char (*outs)[MFS_NAME_MAX + 1] = calloc(N, sizeof(*outs));
	char (*names)[400] = calloc(N, sizeof(*names));
	size_t *lens = calloc(N, sizeof(*lens));
	assert_non_null(outs);
	assert_non_null(names);
	assert_non_null(lens);
	uint64_t x = 0x1234567887654321ull;
	const char alphabet[] = "ab./%~\n\x7f\x01\xc3\xa9";
	for (size_t i = 0; i < N; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t len = i < N / 2 ? x % 8 : x % 400;    /* many short ones collide if anything does */
		for (size_t k = 0; k < len; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			names[i][k] = alphabet[x % (sizeof(alphabet) - 1)];
		}
		lens[i] = len;
		size_t n = enc(outs[i], names[i], len);
		assert_safe(outs[i], n, MFS_NAME_MAX);
		bool plain = mfs_name_is_plain(names[i], len, MFS_NAME_MAX);
		assert_int_equal(plain, n == len && !memcmp(outs[i], names[i], len));
		char back[MFS_NAME_MAX + 1];
		size_t bl;
		int rc = mfs_name_decode(back, &bl, outs[i], n);
		if (rc == 0) {
			assert_int_equal(bl, len);
			assert_memory_equal(back, names[i], len);
		} else {
			assert_int_equal(rc, -ENAMETOOLONG);
		}
	}
	for (size_t i = 0; i < N; i++)
		for (size_t j = i + 1; j < N; j++)
			if (!strcmp(outs[i], outs[j]))
				assert_true(lens[i] == lens[j] && !memcmp(names[i], names[j], lens[i]));
	free(outs);
	free(names);
	free(lens);
}

static void assert_split(const char *name, const char *want)
{
	char buf[1024];
	size_t n = mfs_name_split_path(buf, sizeof(buf), name, strlen(name));
	assert_string_equal(buf, want);
	assert_int_equal(n, strlen(want));
}

static void tensor_names_split_into_paths(void **state)
{
	(void)state;
	assert_split("layer4.1.conv2.weight", "layer4/1/conv2/weight");
	assert_split("fc.weight", "fc/weight");
	assert_split("model/dense/kernel:0", "model/dense/kernel:0");
	assert_split("a..b", "a/b");
	assert_split("/x/", "x");
	assert_split(".a.", "a");
	assert_split("a/%b", "a/%25b");
	assert_split("a.\n", "a/%0A");
	/* Nothing left after splitting: the whole name, encoded. */
	assert_split("", "%");
	assert_split(".", "%2E");
	assert_split("..", "%2E%2E");
	assert_split("...", "...");
	assert_split("/", "%2F");
	assert_split("./.", ".%2F.");

	/* The iterator hands out raw segments. */
	struct mfs_split s;
	const char *seg;
	size_t len, count = 0;
	mfs_split_init(&s, "a.bb/ccc", 8);
	while (mfs_split_next(&s, &seg, &len))
		assert_int_equal(len, ++count);
	assert_int_equal(count, 3);
	assert_false(mfs_split_next(&s, &seg, &len));

	/* A short buffer truncates like snprintf and still says the length. */
	char small[5];
	assert_int_equal(mfs_name_split_path(small, sizeof(small), "abc.def", 7), 7);
	assert_string_equal(small, "abc/");
}

static void hash_is_seeded(void **state)
{
	(void)state;
	assert_int_equal(mfs_name_hash("abc", 3, 0), mfs_name_hash("abc", 3, 0));
	assert_int_not_equal(mfs_name_hash("abc", 3, 0), mfs_name_hash("abc", 3, 1));
	assert_int_not_equal(mfs_name_hash("abc", 3, 0), mfs_name_hash("abd", 3, 0));
	assert_int_not_equal(mfs_name_hash("", 0, 0), mfs_name_hash("\0", 1, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plain_names_are_kept),
		cmocka_unit_test(dangerous_names_are_escaped),
		cmocka_unit_test(encoding_is_injective_on_tricky_names),
		cmocka_unit_test(decode_round_trips),
		cmocka_unit_test(decode_rejects_what_the_encoder_never_makes),
		cmocka_unit_test(long_names_are_cut_with_a_hash),
		cmocka_unit_test(cut_never_splits_an_escape_or_a_character),
		cmocka_unit_test(random_names_keep_every_property),
		cmocka_unit_test(tensor_names_split_into_paths),
		cmocka_unit_test(hash_is_seeded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

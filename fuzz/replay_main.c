/*
 * fuzz/replay_main.c — run a fuzz target's LLVMFuzzerTestOneInput() on
 * saved inputs, without libFuzzer, as a cmocka test with one case per
 * input file.
 *
 * This is how every input ever kept in tests/fuzz/regress/<target>/ (a
 * crash, a leak, a timeout a fuzzer once found) is replayed by the normal
 * test suite, under gcc and under the ASan pass of tests/run alike.
 * Arguments are files or directories (read one level deep, sorted; names
 * starting with '.' and README files are skipped; a missing directory is
 * empty).  tests/meson.build also passes the fixtures of tests/data/good
 * and tests/data/bad, so a target whose regress directory is still empty
 * runs a smoke check instead of passing vacuously: running no input at
 * all is a failure.  A broken oracle aborts (FZ_CHECK), which fails the
 * whole executable, as it should.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "common.h"

static void replay_one(void **state)
{
	const char *path = *state;
	size_t len;
	uint8_t *data = fz_slurp(path, &len);
	assert_non_null(data);
	/* libFuzzer hands the target a buffer of exactly `len` bytes; a copy of
	 * that size lets ASan catch a read one past the end, as it would there. */
	uint8_t *exact = malloc(len ? len : 1);
	assert_non_null(exact);
	memcpy(exact, data, len);
	free(data);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct list {
	char **v;
	size_t n, cap;
};

static void add(struct list *l, char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			abort();
	}
	l->v[l->n++] = s;
}

static void collect(struct list *l, const char *arg)
{
	struct stat st;
	if (stat(arg, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		add(l, strdup(arg));
		return;
	}
	DIR *d = opendir(arg);
	if (!d)
		return;
	size_t first = l->n;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !strncmp(de->d_name, "README", 6))
			continue;
		char *p = malloc(strlen(arg) + strlen(de->d_name) + 2);
		if (!p)
			abort();
		sprintf(p, "%s/%s", arg, de->d_name);
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
			add(l, p);
		else
			free(p);
	}
	closedir(d);
	if (l->n > first)
		qsort(l->v + first, l->n - first, sizeof(*l->v), cmp_str);
}

int main(int argc, char **argv)
{
	struct list l = { 0 };
	for (int i = 1; i < argc; i++)
		collect(&l, argv[i]);
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	printf("%s: replaying %zu inputs\n", name, l.n);
	if (l.n == 0) {
		fprintf(stderr, "%s: no inputs: refusing to pass vacuously\n", name);
		return 1;
	}
	struct CMUnitTest *tests = calloc(l.n, sizeof(*tests));
	if (!tests)
		return 1;
	for (size_t i = 0; i < l.n; i++) {
		tests[i].name = l.v[i];
		tests[i].test_func = replay_one;
		tests[i].initial_state = l.v[i];
	}
	int rc = _cmocka_run_group_tests(name, tests, l.n, NULL, NULL);
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i]);
	free(l.v);
	free(tests);
	return rc;
}

/*
 * tests/unit/procfd.h — how many descriptors this process holds on files
 * whose path contains a string (leak checks in the unit tests).  Header-only:
 * tests/meson.build builds one .c per test.  Include after <cmocka.h>.
 */
#ifndef MODELFS_TESTS_PROCFD_H
#define MODELFS_TESTS_PROCFD_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Descriptors of this process whose target contains `what` ("" = all). */
static int count_open(const char *what)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;
	assert_non_null(d);
	while ((de = readdir(d))) {
		char link[300], target[512];
		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		ssize_t k = readlink(link, target, sizeof(target) - 1);
		if (k <= 0)
			continue;
		target[k] = '\0';
		n += strstr(target, what) != NULL;
	}
	closedir(d);
	return n;
}

#endif /* MODELFS_TESTS_PROCFD_H */

/*
 * fuzz/common.h — what the fuzz targets share: a per-process scratch
 * directory, small file helpers, the model walker every parsing target runs
 * on an accepted input, and FZ_CHECK, the oracle that turns a broken
 * invariant into a crash libFuzzer (or the replay driver) reports.
 *
 * The same sources build two ways: linked with libFuzzer under clang
 * (fuzz/meson.build, option -Dfuzz=true), and linked with replay_main.c as
 * ordinary cmocka tests that replay tests/fuzz/regress/ (tests/meson.build).
 * Nothing here may depend on which.
 */
#ifndef MODELFS_FUZZ_COMMON_H
#define MODELFS_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelfs/model.h"

/* The libFuzzer entry point each target defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with the failed condition and where: the oracle of every target. */
#define FZ_CHECK(cond) \
	do { \
		if (!(cond)) \
			fz_fail(__FILE__, __LINE__, #cond); \
	} while (0)
__attribute__((noreturn)) void fz_fail(const char *file, int line, const char *what);

/*
 * fz_scratch() - the process's scratch directory (created on first use
 * under /dev/shm or /tmp, removed at exit).  Never NULL: failing to make it
 * aborts, since no target can run without it.
 */
const char *fz_scratch(void);

/* fz_path() - "<scratch>/<name>" in a static buffer (overwritten by the next call). */
const char *fz_path(const char *name);

/* fz_write() - create or replace `path` with `len` bytes; aborts on failure. */
void fz_write(const char *path, const void *buf, size_t len);

/* fz_slurp() - the whole file, malloc'd (yours to free), or NULL. */
uint8_t *fz_slurp(const char *path, size_t *len);

/* fz_clear() - remove everything in directory `dir` except the names in `keep`
 * (a NULL-terminated list, may be NULL); recursive. */
void fz_clear(const char *dir, const char *const *keep);

/*
 * fz_walk_model() - touch every string and array of the description and
 * read every tensor in full through mfs_tensor_read(), checking what the
 * API promises: ids equal indices, reads return exactly nbytes, ranges lie
 * in their source file.
 */
void fz_walk_model(const mfs_model *m);

/* Set by a target whose sources decompress (a pack): a tensor read may
 * then fail with -EIO, and the walker accepts that. */
extern bool fz_reads_may_fail;

/* The source tree (for examples/ and fixtures), set by the build. */
#ifndef MFS_FUZZ_SRC
#define MFS_FUZZ_SRC "."
#endif

#endif /* MODELFS_FUZZ_COMMON_H */

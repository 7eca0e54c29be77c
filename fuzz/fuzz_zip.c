/*
 * fuzz/fuzz_zip.c — libFuzzer target: arbitrary bytes as a torch.save zip.
 *
 * The bytes become "model.pt": first tz_open() reads the central directory
 * alone, then mfs_model_open() the whole checkpoint.  The oracle: no crash
 * or sanitizer report; a refusal says why; an accepted directory has
 * unique names in sorted order, every member's data inside the file and
 * before the central directory, stored members of equal sizes, and no two
 * members overlapping; an accepted model reads every tensor in full
 * (fz_walk_model).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "torch/torch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fz_path("model.pt");
	fz_write(path, data, size);

	struct mfs_source *src;
	FZ_CHECK(mfs_source_file_open(&src, AT_FDCWD, path) == 0);
	struct tz_archive z;
	char err[512] = "";
	int rc = tz_open(&z, src, "fuzz", err, sizeof(err));
	if (rc < 0) {
		FZ_CHECK(err[0] != '\0');
	} else {
		FZ_CHECK(z.cdir_off + z.cdir_size <= size);
		for (size_t i = 0; i < z.n; i++) {
			const struct tz_entry *e = &z.ents[i];
			FZ_CHECK(strlen(e->name) == e->name_len && e->name_len > 0);
			FZ_CHECK(i == 0 || strcmp(z.ents[i - 1].name, e->name) < 0);
			FZ_CHECK(e->local_off + 30 <= e->data_off);
			FZ_CHECK(e->data_off <= z.cdir_off && e->csize <= z.cdir_off - e->data_off);
			FZ_CHECK(e->method != 0 || e->csize == e->usize);
			FZ_CHECK(tz_find(&z, e->name) == e);
			for (size_t k = 0; k < i; k++) {
				const struct tz_entry *o = &z.ents[k];
				FZ_CHECK(o->data_off + o->csize <= e->local_off ||
				         e->data_off + e->csize <= o->local_off);
			}
			if (i > 64)
				break;  /* the pairwise check is quadratic */
		}
		tz_free(&z);
	}
	mfs_source_close(src);

	mfs_model *m = NULL;
	err[0] = '\0';
	rc = mfs_model_open(&m, path, NULL, err, sizeof(err));
	if (rc < 0) {
		FZ_CHECK(err[0] != '\0');
		return 0;
	}
	fz_walk_model(m);
	mfs_model_close(m);
	return 0;
}

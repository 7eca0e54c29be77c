/*
 * fuzz/fuzz_safetensors.c — libFuzzer target: arbitrary bytes as a
 * single-file safetensors checkpoint.
 *
 * The bytes become "model.safetensors" and go through mfs_model_open().  An
 * accepted safetensors model must tile its data buffer exactly, as the
 * format demands and the codec promises to check: in offset order, the
 * first tensor starts at 8 + header length, each starts where the previous
 * one ended, the last ends at the end of the file, and names are unique.
 * Then every tensor is read in full (fz_walk_model).  Inputs the sniffer
 * sends elsewhere (an ONNX-looking or '{' file) are still walked.
 *
 * Every input is opened twice: through the header scanner and through the
 * reference path (jansson; mfs_st_test_reference), and the two must agree
 * on the return code, the message and every tensor (scan.c promises it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "safetensors/st.h"

static int by_name(const void *a, const void *b)
{
	const struct mfs_tensor *x = *(const struct mfs_tensor *const *)a;
	const struct mfs_tensor *y = *(const struct mfs_tensor *const *)b;
	return strcmp(x->name, y->name);
}

static void check_tiling(const mfs_model *m)
{
	const struct mfs_desc *d = mfs_model_desc(m);
	uint64_t pos = mfs_st_data_off(m);
	FZ_CHECK(pos >= 8 && pos <= d->files[0].size);
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		const struct mfs_tensor *t = d->tensors[i];
		FZ_CHECK(t->mem == NULL && t->src == 0);
		FZ_CHECK(t->off == pos);
		pos += t->nbytes;
		FZ_CHECK(pos <= d->files[0].size);
	}
	FZ_CHECK(pos == d->files[0].size);

	if (d->n_tensors > 1) {
		const struct mfs_tensor **v = malloc(d->n_tensors * sizeof(*v));
		FZ_CHECK(v != NULL);
		memcpy(v, d->tensors, d->n_tensors * sizeof(*v));
		qsort(v, d->n_tensors, sizeof(*v), by_name);
		for (uint64_t i = 1; i < d->n_tensors; i++)
			FZ_CHECK(strcmp(v[i - 1]->name, v[i]->name) != 0);
		free(v);
	}
}

/* The scanner and the reference path see the same file the same way. */
static void check_reference(const char *path, int rc, const char *err, const mfs_model *m)
{
	mfs_model *r = NULL;
	char rerr[512] = "";
	mfs_st_test_reference(true);
	int rrc = mfs_model_open(&r, path, NULL, rerr, sizeof(rerr));
	mfs_st_test_reference(false);
	FZ_CHECK(rrc == rc);
	FZ_CHECK(strcmp(rerr, err) == 0);
	if (rc == 0) {
		const struct mfs_desc *a = mfs_model_desc(m), *b = mfs_model_desc(r);
		FZ_CHECK(a->n_tensors == b->n_tensors && a->n_props == b->n_props);
		for (uint64_t i = 0; i < a->n_tensors; i++) {
			const struct mfs_tensor *x = a->tensors[i], *y = b->tensors[i];
			FZ_CHECK(strcmp(x->name, y->name) == 0 && x->dtype == y->dtype &&
			         x->rank == y->rank && x->off == y->off && x->nbytes == y->nbytes);
			FZ_CHECK(memcmp(x->dims, y->dims, x->rank * sizeof(*x->dims)) == 0);
		}
		for (size_t i = 0; i < a->n_props; i++)
			FZ_CHECK(strcmp(a->props[i].name, b->props[i].name) == 0 &&
			         a->props[i].len == b->props[i].len &&
			         memcmp(a->props[i].value, b->props[i].value, a->props[i].len) == 0);
	}
	mfs_model_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fz_path("model.safetensors");
	fz_write(path, data, size);

	mfs_model *m = NULL;
	char err[512] = "";
	int rc = mfs_model_open(&m, path, NULL, err, sizeof(err));
	check_reference(path, rc, err, m);
	if (rc == 0) {
		const struct mfs_desc *d = mfs_model_desc(m);
		if (strcmp(d->format, "safetensors") == 0) {
			FZ_CHECK(d->n_files == 1);
			check_tiling(m);
		}
		fz_walk_model(m);
		mfs_model_close(m);
	} else {
		FZ_CHECK(rc < 0 && m == NULL);
		FZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
	}
	return 0;
}

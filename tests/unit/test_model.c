/*
 * tests/unit/test_model.c — the public model API (include/modelfs/model.h):
 * opening, reads, zero-copy spans, file facts, refusals.
 *
 * Only the public header is used, as the daemon and the `modelfs` command
 * use it.  What is proved: ONNX and safetensors models open with the right
 * format, flags and tensor flags; every tensor of every model under test
 * reads the same bytes through mfs_tensor_read() in one piece, in small
 * pieces at odd offsets, and through mfs_tensor_span() where a span is
 * offered; source files read and stat as they are on disk; bad paths and
 * non-models are refused with one line naming the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "modelfs/model.h"

#include "tmpdir.h"

#define LINEAR MFS_TEST_DATA "/../../examples/linear.onnx"
#define CORPUS "/usr/share/libonnx-testdata/data"

/* Every tensor read whole, in 3-byte pieces, and through its span. */
static void check_reads(const mfs_model *m)
{
	const struct mfs_desc *d = mfs_model_desc(m);
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		const struct mfs_tensor *t = d->tensors[i];
		assert_int_equal(t->id, i);
		unsigned char *a = malloc(t->nbytes + 1), *b = malloc(t->nbytes + 1);
		assert_int_equal(mfs_tensor_read(m, t, a, t->nbytes + 1, 0), (ssize_t)t->nbytes);
		for (uint64_t off = 0; off < t->nbytes; off += 3) {
			ssize_t n = mfs_tensor_read(m, t, b + off, 3, off);
			assert_int_equal(n, t->nbytes - off < 3 ? t->nbytes - off : 3);
		}
		assert_memory_equal(a, b, t->nbytes);
		assert_int_equal(mfs_tensor_read(m, t, b, 1, t->nbytes), 0);
		struct mfs_span sp;
		int rc = mfs_tensor_span(&sp, m, t, 0);
		if (t->mem) {
			assert_int_equal(rc, 0);
			assert_ptr_equal(sp.mem, t->mem);
		} else if (t->flags & MFS_TENSOR_CONTIGUOUS) {
			/* Local files always give a descriptor. */
			assert_int_equal(rc, 0);
			assert_true(sp.fd >= 0);
			if (t->nbytes)
				assert_int_equal(pread(sp.fd, b, t->nbytes, (off_t)sp.off),
				                 (ssize_t)t->nbytes);
			assert_memory_equal(a, b, t->nbytes);
		} else {
			assert_int_equal(rc, -EOPNOTSUPP);
		}
		free(a);
		free(b);
	}
}

static void onnx_model(void **state)
{
	(void)state;
	mfs_model *m;
	char err[512];
	assert_int_equal(mfs_model_open(&m, LINEAR, NULL, err, sizeof(err)), 0);
	const struct mfs_desc *d = mfs_model_desc(m);
	assert_string_equal(d->format, "onnx");
	assert_true(d->flags & MFS_DESC_GRAPH);
	assert_int_equal(d->n_files, 1);
	assert_string_equal(d->files[0].path, "linear.onnx");
	struct stat st, st2;
	assert_int_equal(mfs_file_stat(&st, m, 0), 0);
	assert_int_equal(stat(LINEAR, &st2), 0);
	assert_int_equal(st.st_ino, st2.st_ino);
	assert_int_equal(st.st_size, (off_t)d->files[0].size);
	assert_int_equal(mfs_file_stat(&st, m, 1), -EINVAL);
	/* Raw tensors of the model file: contiguous and editable. */
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		assert_int_equal(d->tensors[i]->flags, MFS_TENSOR_CONTIGUOUS | MFS_TENSOR_EDITABLE);
		assert_int_equal(d->tensors[i]->src, 0);
	}
	check_reads(m);
	/* The file itself, through a read and a span. */
	size_t len;
	unsigned char *disk = tmp_read(LINEAR, &len), *buf = malloc(len + 1);
	assert_int_equal(mfs_file_read(m, 0, buf, len, 0), (ssize_t)len);
	assert_memory_equal(buf, disk, len);
	struct mfs_span sp;
	assert_int_equal(mfs_file_span(&sp, m, 0, 5), 0);
	assert_int_equal(pread(sp.fd, buf, 1, (off_t)sp.off), 1);
	assert_int_equal(buf[0], disk[5]);
	assert_int_equal(mfs_file_span(&sp, m, 1, 0), -EINVAL);
	assert_int_equal(mfs_file_read(m, 0, buf, 10, len), 0);
	free(disk);
	free(buf);
	mfs_model_close(m);
}

static void safetensors_model(void **state)
{
	(void)state;
	mfs_model *m;
	char err[512];
	tmp_write_safetensors(tmp_path("m.safetensors"));
	assert_int_equal(mfs_model_open(&m, tmp_path("m.safetensors"), NULL, err, sizeof(err)), 0);
	const struct mfs_desc *d = mfs_model_desc(m);
	assert_string_equal(d->format, "safetensors");
	assert_false(d->flags & MFS_DESC_GRAPH);
	assert_int_equal(d->n_tensors, 1);
	assert_int_equal(d->tensors[0]->flags, MFS_TENSOR_CONTIGUOUS | MFS_TENSOR_EDITABLE);
	float v[2];
	assert_int_equal(mfs_tensor_read(m, d->tensors[0], v, 8, 0), 8);
	assert_true(v[0] == 1.5f && v[1] == -2.0f);
	check_reads(m);
	mfs_model_close(m);

	/* A sharded checkpoint: the same tensor, read from its shard, not editable. */
	tmp_write_safetensors(tmp_path("s1.safetensors"));
	const char *idx = "{\"metadata\":{},\"weight_map\":{\"w\":\"s1.safetensors\"}}";
	tmp_write(tmp_path("m.safetensors.index.json"), idx, strlen(idx));
	assert_int_equal(mfs_model_open(&m, tmp_path("m.safetensors.index.json"), NULL, err,
	                                sizeof(err)), 0);
	d = mfs_model_desc(m);
	assert_string_equal(d->format, "safetensors");
	assert_int_equal(d->n_files, 2);
	assert_int_equal(d->tensors[0]->src, 1);
	assert_int_equal(d->tensors[0]->flags, MFS_TENSOR_CONTIGUOUS);
	check_reads(m);
	mfs_model_close(m);
}

/* Every model of the ONNX test corpus (data/<group>/<case>/model.onnx, every
 * 5th) reads alike every way. */
static void corpus_reads(void **state)
{
	(void)state;
	DIR *top = opendir(CORPUS);
	if (!top) {
		fail_msg("%s missing: install libonnx-testdata", CORPUS);
		return;
	}
	struct dirent *g, *c;
	int n = 0, k = 0;
	while ((g = readdir(top))) {
		if (g->d_name[0] == '.')
			continue;
		char gdir[512];
		snprintf(gdir, sizeof(gdir), CORPUS "/%s", g->d_name);
		DIR *gd = opendir(gdir);
		while (gd && (c = readdir(gd))) {
			char path[1024];
			snprintf(path, sizeof(path), "%s/%s/model.onnx", gdir, c->d_name);
			if (c->d_name[0] == '.' || access(path, R_OK) || k++ % 5)
				continue;
			mfs_model *m;
			char err[512];
			if (mfs_model_open(&m, path, NULL, err, sizeof(err)) != 0)
				fail_msg("%s", err);
			assert_string_equal(mfs_model_desc(m)->format, "onnx");
			check_reads(m);
			mfs_model_close(m);
			n++;
		}
		if (gd)
			closedir(gd);
	}
	closedir(top);
	assert_true(n > 100);
}

static void refusals(void **state)
{
	(void)state;
	mfs_model *m = (mfs_model *)1;
	char err[512];
	assert_int_equal(mfs_model_open(&m, tmp_path("nope.onnx"), NULL, err, sizeof(err)),
	                 -ENOENT);
	assert_null(m);
	assert_non_null(strstr(err, "nope.onnx: "));
	assert_int_equal(mfs_model_open(&m, tmp_dir, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	tmp_write(tmp_path("empty.onnx"), "", 0);
	assert_int_equal(mfs_model_open(&m, tmp_path("empty.onnx"), NULL, err, sizeof(err)),
	                 -EUCLEAN);
	assert_non_null(strstr(err, "empty.onnx: empty file, not a model"));
	assert_int_equal(mkfifo(tmp_path("fifo.onnx"), 0600), 0);
	assert_int_equal(mfs_model_open(&m, tmp_path("fifo.onnx"), NULL, err, sizeof(err)),
	                 -EINVAL);
	assert_null(strchr(err, '\n'));
	mfs_model_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(onnx_model),
		cmocka_unit_test_setup_teardown(safetensors_model, tmp_setup, tmp_teardown),
		cmocka_unit_test(corpus_reads),
		cmocka_unit_test_setup_teardown(refusals, tmp_setup, tmp_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * tests/unit/test_txn.c — transactions (codec/txn/) and the splice writers
 * (codec/onnx/writer.c, codec/safetensors/writer.c), in-process, no FUSE.
 *
 * What is proved: a commit with no effective change leaves every model of
 * the ONNX test corpus byte-identical, and edits undone by a second commit
 * give the original bytes back; edits of data, dtype, shape, meta and props
 * commit into files that python3-onnx (or, for safetensors, a reader in
 * tests/tools/txn_check.py) and modelfs itself read back as intended; the
 * served root file equals what a commit writes; edits of a dead session come
 * back; every I/O call of a commit can fail and the model is still the old
 * or the new version, with the edits still staged when it is the old one;
 * and a same-size edit of a big model is patched in place.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "modelfs/txn.h"

#include "core/crc32.h"
#include "faultio.h"
#include "txn/commit.h"
#include "format.h"
#include "onnx/onnx.h"

#define PY "/usr/bin/python3"
#define CHECK MFS_TEST_DATA "/../tools/txn_check.py"
#define LINEAR MFS_TEST_DATA "/../../examples/linear.onnx"
#define CORPUS "/usr/share/libonnx-testdata/data"

static char dir[128];
static char model[256];
static char errbuf[1024];
static bool have_python;

/* ------------------------------------------------------------ fixtures */

static uint8_t *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	fstat(fd, &st);
	uint8_t *p = malloc((size_t)st.st_size + 1);
	size_t done = 0;
	while (done < (size_t)st.st_size) {
		ssize_t n = pread(fd, p + done, (size_t)st.st_size - done, (off_t)done);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	*len = done;
	return p;
}

static void spit(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static void copy_file(const char *from, const char *to)
{
	size_t len;
	uint8_t *p = slurp(from, &len);
	assert_non_null(p);
	spit(to, p, len);
	free(p);
}

static bool same_file(const char *path, const uint8_t *bytes, size_t len)
{
	size_t n;
	uint8_t *p = slurp(path, &n);
	bool same = p && n == len && memcmp(p, bytes, len) == 0;
	free(p);
	return same;
}

static int setup(void **state)
{
	(void)state;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/mfs-txn-XXXXXX", base);
	assert_non_null(mkdtemp(dir));
	snprintf(model, sizeof(model), "%s/model.onnx", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")))
			unlinkat(dirfd(d), de->d_name, 0);
	if (d)
		closedir(d);
	rmdir(dir);
	return 0;
}

/* Files in the test directory other than `keep` (side files left behind). */
static int count_others(const char *keep)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, keep))
			n++;
	closedir(d);
	return n;
}

static const struct mfs_tensor *find_tensor(const struct mfs_desc *d, const char *name)
{
	for (size_t i = 0; i < d->n_tensors; i++)
		if (strcmp(d->tensors[i]->name, name) == 0)
			return d->tensors[i];
	return NULL;
}

static mfs_txn *open_txn(const char *path, const struct mfs_txn_opts *opts,
                         struct mfs_txn_recovery *rec)
{
	mfs_txn *t = NULL;
	int rc = mfs_txn_open(&t, path, opts, rec, errbuf, sizeof(errbuf));
	if (rc < 0)
		fprintf(stderr, "mfs_txn_open: %s\n", errbuf);
	assert_int_equal(rc, 0);
	return t;
}

/* The root file as served now. */
static uint8_t *read_view(mfs_txn *t, size_t *len)
{
	uint64_t size;
	assert_int_equal(mfs_txn_file_size(&size, t, 0), 0);
	uint8_t *p = malloc(size + 1);
	size_t done = 0;
	while (done < size) {
		/* Odd read sizes, to cross piece boundaries. */
		size_t want = size - done < 77 ? size - done : 77;
		ssize_t n = mfs_txn_file_read(t, 0, p + done, want, done);
		assert_true(n > 0);
		done += (size_t)n;
	}
	*len = done;
	return p;
}

static int commit(mfs_txn *t, struct mfs_txn_result *res)
{
	int rc = mfs_txn_commit(t, res);
	if (rc < 0 && res)
		fprintf(stderr, "commit: %d %s\n", rc, res->msg);
	return rc;
}

/* Run the python checker; its stdout into out (malloc'd).  Exit status. */
static int run_check(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int run_check(char **out, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(cmd, sizeof(cmd), "%s %s ", PY, CHECK);
	vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	size_t k;
	while ((k = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += k;
		if (cap - len < 4096) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	buf[len] = '\0';
	int st = pclose(f);
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The hex string that follows `"hex": "` after `"name": "<name>"` in JSON. */
static char *json_tensor_hex(const char *json, const char *name)
{
	char pat[256];
	snprintf(pat, sizeof(pat), "\"name\": \"%s\"", name);
	const char *p = strstr(json, pat);
	if (!p)
		return NULL;
	p = strstr(p, "\"hex\": \"");
	if (!p)
		return NULL;
	p += 8;
	const char *e = strchr(p, '"');
	return strndup(p, (size_t)(e - p));
}

static char *to_hex(const void *buf, size_t len)
{
	char *s = malloc(2 * len + 1);
	for (size_t i = 0; i < len; i++)
		sprintf(s + 2 * i, "%02x", ((const uint8_t *)buf)[i]);
	s[2 * len] = '\0';
	return s;
}

static void expect_python_tensor(const char *json, const char *name, const void *bytes,
                                 size_t len)
{
	char *hex = json_tensor_hex(json, name);
	char *want = to_hex(bytes, len);
	assert_non_null(hex);
	if (strcmp(hex, want) != 0)
		fprintf(stderr, "%s: python %s, expected %s\n", name, hex, want);
	assert_string_equal(hex, want);
	free(hex);
	free(want);
}

/* ------------------------------------------------------------ (a) corpus */

static uint8_t storage(mfs_txn *t, const struct mfs_tensor *x)
{
	const struct mfs_model *m = (const struct mfs_model *)mfs_txn_model(t);
	return m->fmt == &mfs_format_onnx ? mfs_onnx_layout(m)->tspans[x->id].storage :
	       MFS_ONNX_RAW;
}

/* A tensor whose data can be written, with at least one byte. */
static const struct mfs_tensor *editable_tensor(mfs_txn *t, bool want_rank)
{
	const struct mfs_desc *d = mfs_txn_desc(t);
	for (size_t i = 0; i < d->n_tensors; i++) {
		const struct mfs_tensor *x = d->tensors[i];
		uint8_t s = storage(t, x);
		if (x->nbytes == 0 || s == MFS_ONNX_EXTERNAL || s == MFS_ONNX_STRING ||
		    !mfs_dtype_bits(x->dtype))
			continue;
		if (want_rank && x->rank == 0)
			continue;
		return x;
	}
	return NULL;
}

static uint8_t *tensor_bytes(mfs_txn *t, const struct mfs_tensor *x, uint64_t *len)
{
	assert_int_equal(mfs_txn_tensor_size(len, t, x), 0);
	uint8_t *p = malloc(*len + 1);
	assert_int_equal(mfs_txn_tensor_read(t, x, p, *len, 0), (ssize_t)*len);
	return p;
}

static void corpus_commits_are_identical(void **state)
{
	(void)state;
	if (access(CORPUS, R_OK) != 0)
		skip();
	FILE *f = popen("find " CORPUS " -name '*.onnx' | sort", "r");
	assert_non_null(f);
	char line[1024];
	size_t n_models = 0, n_none = 0, n_own = 0, n_reshape = 0, n_flip = 0, n_flip_ident = 0;
	struct mfs_txn_opts opts = {.mode = MFS_COMMIT_AUTO};
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		size_t olen;
		uint8_t *orig = slurp(line, &olen);
		assert_non_null(orig);
		spit(model, orig, olen);
		n_models++;

		/* Nothing staged: nothing written. */
		mfs_txn *t = open_txn(model, &opts, NULL);
		struct mfs_txn_result res;
		assert_int_equal(commit(t, &res), 0);
		assert_string_equal(res.path, "none");
		assert_int_equal(res.bytes_written, 0);
		assert_true(same_file(model, orig, olen));
		n_none++;

		const struct mfs_tensor *x = editable_tensor(t, false);
		if (!x) {
			mfs_txn_close(t);
			free(orig);
			continue;
		}
		/* Its own bytes written back: no effective change. */
		uint64_t len;
		uint8_t *bytes = tensor_bytes(t, x, &len);
		assert_int_equal(mfs_txn_tensor_write(t, x, bytes, len, 0), (ssize_t)len);
		assert_true(mfs_txn_dirty(t));
		size_t vlen;
		uint8_t *view = read_view(t, &vlen);
		assert_true(vlen == olen && memcmp(view, orig, olen) == 0);
		free(view);
		assert_int_equal(commit(t, &res), 0);
		assert_string_equal(res.path, "none");
		assert_true(same_file(model, orig, olen));
		assert_false(mfs_txn_dirty(t));
		n_own++;

		/* A shape change and back: the second commit restores every byte. */
		const struct mfs_tensor *y = editable_tensor(t, true);
		if (y) {
			uint64_t nelem = 1;
			for (size_t i = 0; i < y->rank; i++)
				nelem *= (uint64_t)y->dims[i];
			char shape[64], back[1024];
			if (y->rank == 1)
				snprintf(shape, sizeof(shape), "1,%" PRIu64, nelem);
			else
				snprintf(shape, sizeof(shape), "%" PRIu64 "\n", nelem);
			mfs_dims_format(back, sizeof(back), y->dims, y->rank);
			uint64_t id = y->id;
			assert_int_equal(mfs_txn_set_shape(t, y, shape, strlen(shape)), 0);
			view = read_view(t, &vlen);
			assert_int_equal(commit(t, &res), 0);
			assert_string_equal(res.path, "rewrite");
			size_t nlen;
			uint8_t *now = slurp(model, &nlen);
			assert_true(nlen == vlen && memcmp(now, view, vlen) == 0);
			free(now);
			free(view);
			/* modelfs reads it back: same tensors, same bytes. */
			const struct mfs_desc *d = mfs_txn_desc(t);
			const struct mfs_tensor *z = d->tensors[id];
			assert_int_equal(z->rank, y->rank == 1 ? 2 : 1);
			assert_int_equal(z->nbytes, y->nbytes);
			assert_int_equal(mfs_txn_set_shape(t, z, back, strlen(back)), 0);
			assert_int_equal(commit(t, &res), 0);
			if (!same_file(model, orig, olen))
				fprintf(stderr, "reshape round trip differs: %s\n", line);
			assert_true(same_file(model, orig, olen));
			n_reshape++;
		}

		/* A flipped byte and back. */
		x = mfs_txn_desc(t)->tensors[x->id];
		uint8_t s = storage(t, x);
		uint8_t b;
		assert_int_equal(mfs_txn_tensor_read(t, x, &b, 1, 0), 1);
		b ^= 0x5a;
		assert_int_equal(mfs_txn_tensor_write(t, x, &b, 1, 0), 1);
		view = read_view(t, &vlen);
		assert_int_equal(commit(t, &res), 0);
		assert_true(same_file(model, view, vlen));
		free(view);
		x = mfs_txn_desc(t)->tensors[x->id];
		uint8_t got;
		assert_int_equal(mfs_tensor_read(mfs_txn_model(t), x, &got, 1, 0), 1);
		assert_int_equal(got, b);
		b ^= 0x5a;
		assert_int_equal(mfs_txn_tensor_write(t, x, &b, 1, 0), 1);
		assert_int_equal(commit(t, &res), 0);
		n_flip++;
		if (s == MFS_ONNX_RAW || s == MFS_ONNX_PACKED) {
			assert_true(same_file(model, orig, olen));
			n_flip_ident++;
		}
		free(bytes);
		mfs_txn_close(t);
		free(orig);
		assert_int_equal(count_others("model.onnx"), 0);
	}
	pclose(f);
	printf("corpus: %zu models; %zu byte-identical with nothing staged, %zu after rewriting "
	       "a tensor with its own bytes, %zu after a shape change and back, %zu of %zu "
	       "after a byte flip and back (the rest hold typed fields, converted to raw_data)\n",
	       n_models, n_none, n_own, n_reshape, n_flip_ident, n_flip);
	assert_true(n_models >= 1000);
}

/*
 * Every editable tensor of a model edited at once — reshaped, a byte
 * flipped — and a prop added, in one commit; modelfs reads back exactly
 * that; a second commit that undoes it all gives the original bytes back
 * (for tensors whose bytes lie in the file; typed fields are converted to
 * raw_data on the way, checked in a third commit).
 */
struct expect {
	uint64_t id;
	size_t rank;
	int64_t dims[MFS_MAX_RANK];
	uint8_t *bytes;
	uint64_t len;
	uint8_t storage;
	bool reshaped;
};

static void check_expect(mfs_txn *t, const struct expect *e, size_t n)
{
	const struct mfs_desc *d = mfs_txn_desc(t);
	for (size_t i = 0; i < n; i++) {
		const struct mfs_tensor *x = d->tensors[e[i].id];
		assert_int_equal(x->rank, e[i].rank);
		for (size_t k = 0; k < x->rank; k++)
			assert_int_equal(x->dims[k], e[i].dims[k]);
		assert_int_equal(x->nbytes, e[i].len);
		uint8_t *got = malloc(e[i].len + 1);
		assert_int_equal(mfs_tensor_read(mfs_txn_model(t), x, got, e[i].len, 0),
		                 (ssize_t)e[i].len);
		assert_memory_equal(got, e[i].bytes, e[i].len);
		free(got);
	}
}

static void corpus_all_tensors_edited(void **state)
{
	(void)state;
	if (access(CORPUS, R_OK) != 0)
		skip();
	FILE *f = popen("find " CORPUS " -name '*.onnx' | sort", "r");
	assert_non_null(f);
	char line[1024];
	size_t n_models = 0, n_tensors = 0, n_ident = 0, n_typed = 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		size_t olen;
		uint8_t *orig = slurp(line, &olen);
		spit(model, orig, olen);
		mfs_txn *t = open_txn(model, NULL, NULL);
		const struct mfs_desc *d = mfs_txn_desc(t);
		struct expect *e = calloc(d->n_tensors + 1, sizeof(*e));
		size_t n = 0;
		bool typed = false;
		for (size_t i = 0; i < d->n_tensors; i++) {
			const struct mfs_tensor *x = d->tensors[i];
			uint8_t s = storage(t, x);
			if (x->nbytes == 0 || s == MFS_ONNX_EXTERNAL || s == MFS_ONNX_STRING ||
			    !mfs_dtype_bits(x->dtype))
				continue;
			struct expect *ex = &e[n++];
			ex->id = x->id;
			ex->storage = s;
			ex->bytes = tensor_bytes(t, x, &ex->len);
			ex->bytes[ex->len - 1] ^= 0xa5;
			typed |= s == MFS_ONNX_TYPED;
			if (s == MFS_ONNX_TYPED)
				ex->bytes[ex->len - 1] ^= 0xa5;         /* not in this pass */
			else
				assert_int_equal(mfs_txn_tensor_write(t, x, &ex->bytes[ex->len - 1], 1,
				                                      ex->len - 1), 1);
			/* [a, b, ...] -> [1, a, b, ...]: every dims list changes. */
			ex->rank = x->rank;
			memcpy(ex->dims, x->dims, x->rank * sizeof(int64_t));
			if (x->rank == MFS_MAX_RANK)
				continue;
			ex->rank = x->rank + 1;
			ex->dims[0] = 1;
			memcpy(ex->dims + 1, x->dims, x->rank * sizeof(int64_t));
			ex->reshaped = true;
			char shape[MFS_MAX_RANK * 21 + 1];
			mfs_dims_format(shape, sizeof(shape), ex->dims, ex->rank);
			assert_int_equal(mfs_txn_set_shape(t, x, shape, strlen(shape)), 0);
		}
		if (!n) {
			free(e);
			free(orig);
			mfs_txn_close(t);
			continue;
		}
		n_models++;
		n_tensors += n;
		assert_int_equal(mfs_txn_prop_set(t, "modelfs.test", "1", 1), 0);
		size_t vlen;
		uint8_t *view = read_view(t, &vlen);
		struct mfs_txn_result res;
		assert_int_equal(commit(t, &res), 0);
		assert_true(same_file(model, view, vlen));
		free(view);
		check_expect(t, e, n);

		/* Undo it all. */
		d = mfs_txn_desc(t);
		for (size_t i = 0; i < n; i++) {
			const struct mfs_tensor *x = d->tensors[e[i].id];
			char shape[MFS_MAX_RANK * 21 + 1];
			if (e[i].storage != MFS_ONNX_TYPED) {
				e[i].bytes[e[i].len - 1] ^= 0xa5;
				assert_int_equal(mfs_txn_tensor_write(t, x, &e[i].bytes[e[i].len - 1], 1,
				                                      e[i].len - 1), 1);
			}
			if (e[i].reshaped) {
				memmove(e[i].dims, e[i].dims + 1, (e[i].rank - 1) * sizeof(int64_t));
				e[i].rank--;
				mfs_dims_format(shape, sizeof(shape), e[i].dims, e[i].rank);
				assert_int_equal(mfs_txn_set_shape(t, x, shape, strlen(shape)), 0);
			}
		}
		assert_int_equal(mfs_txn_prop_unlink(t, "modelfs.test"), 0);
		assert_int_equal(commit(t, &res), 0);
		if (!same_file(model, orig, olen))
			fprintf(stderr, "undo differs: %s\n", line);
		assert_true(same_file(model, orig, olen));
		n_ident++;

		/* Typed fields: flipped too, so converted to raw_data. */
		if (typed) {
			d = mfs_txn_desc(t);
			for (size_t i = 0; i < n; i++) {
				const struct mfs_tensor *x = d->tensors[e[i].id];
				e[i].bytes[e[i].len - 1] ^= 0x3c;
				assert_int_equal(mfs_txn_tensor_write(t, x, &e[i].bytes[e[i].len - 1], 1,
				                                      e[i].len - 1), 1);
			}
			view = read_view(t, &vlen);
			assert_int_equal(commit(t, &res), 0);
			assert_true(same_file(model, view, vlen));
			free(view);
			check_expect(t, e, n);
			d = mfs_txn_desc(t);
			for (size_t i = 0; i < n; i++)
				assert_int_equal(storage(t, d->tensors[e[i].id]),
				                 e[i].storage == MFS_ONNX_PACKED ? MFS_ONNX_PACKED :
				                 MFS_ONNX_RAW);
			n_typed++;
		}
		for (size_t i = 0; i < n; i++)
			free(e[i].bytes);
		free(e);
		free(orig);
		mfs_txn_close(t);
	}
	pclose(f);
	printf("corpus, all at once: %zu models, %zu tensors reshaped and changed in one commit "
	       "each; %zu byte-identical after undoing it; %zu with typed fields converted\n",
	       n_models, n_tensors, n_ident, n_typed);
}

/* ------------------------------------------------------------ (b) linear */

static void fill_weights(float *w, size_t n, float base)
{
	for (size_t i = 0; i < n; i++)
		w[i] = base + 0.125f * (float)i;
}

static void linear_weights_commit(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	size_t olen;
	uint8_t *orig = slurp(model, &olen);
	mfs_txn *t = open_txn(model, NULL, NULL);
	const struct mfs_desc *d = mfs_txn_desc(t);
	const struct mfs_tensor *w = find_tensor(d, "fc.weight"), *b = find_tensor(d, "fc.bias");
	assert_non_null(w);
	assert_non_null(b);
	float wv[10], bv[1] = {0.75f};
	fill_weights(wv, 10, -1.0f);
	/* Written in two unequal parts, the way a tool might. */
	assert_int_equal(mfs_txn_tensor_write(t, w, wv, 13, 0), 13);
	assert_int_equal(mfs_txn_tensor_write(t, w, (uint8_t *)wv + 13, 27, 13), 27);
	assert_int_equal(mfs_txn_tensor_write(t, b, bv, 4, 0), 4);
	float back[10];
	assert_int_equal(mfs_txn_tensor_read(t, w, back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);

	char status[4096];
	mfs_txn_status(t, status, sizeof(status));
	assert_non_null(strstr(status, "staged tensor weights fc.weight data 40 bytes"));
	assert_non_null(strstr(status, "staged tensor weights fc.bias data 4 bytes"));

	size_t vlen;
	uint8_t *view = read_view(t, &vlen);
	assert_int_equal(vlen, olen);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	assert_string_equal(res.path, "rewrite");
	assert_int_equal(res.bytes_written, olen);
	assert_int_equal(res.bytes_edited > 0, 1);
	assert_true(same_file(model, view, vlen));
	free(view);
	mfs_txn_status(t, status, sizeof(status));
	assert_non_null(strstr(status, "last commit: ok rewrite 349 bytes written"));
	assert_false(mfs_txn_dirty(t));

	/* The transaction shows the new model; a fresh open agrees. */
	d = mfs_txn_desc(t);
	assert_int_equal(mfs_txn_tensor_read(t, find_tensor(d, "fc.weight"), back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);
	mfs_txn_close(t);
	t = open_txn(model, NULL, NULL);
	d = mfs_txn_desc(t);
	assert_int_equal(mfs_txn_tensor_read(t, find_tensor(d, "fc.weight"), back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);
	float bb;
	assert_int_equal(mfs_txn_tensor_read(t, find_tensor(d, "fc.bias"), &bb, 4, 0), 4);
	assert_true(bb == 0.75f);
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 0);
	/* Only the payload bytes differ from the original. */
	size_t nlen;
	uint8_t *now = slurp(model, &nlen);
	size_t diff = 0;
	for (size_t i = 0; i < olen; i++)
		diff += now[i] != orig[i];
	assert_true(diff <= 44);
	free(now);
	free(orig);

	if (!have_python)
		return;
	char *json = NULL;
	assert_int_equal(run_check(&json, "onnx-dump %s", model), 0);
	expect_python_tensor(json, "fc.weight", wv, 40);
	expect_python_tensor(json, "fc.bias", bv, 4);
	free(json);
}

/* rsync's way: a scratch file renamed over the data file. */
static void scratch_adopted_by_rename(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	mfs_txn *t = open_txn(model, NULL, NULL);
	const struct mfs_tensor *w = find_tensor(mfs_txn_desc(t), "fc.weight");
	uint64_t id, other, size;
	assert_int_equal(mfs_txn_scratch_new(&id, t), 0);
	assert_int_equal(mfs_txn_scratch_new(&other, t), 0);
	float wv[10];
	fill_weights(wv, 10, 3.0f);
	assert_int_equal(mfs_txn_scratch_write(t, id, wv, 40, 0), 40);
	assert_int_equal(mfs_txn_scratch_write(t, other, "junk", 4, 0), 4);
	assert_int_equal(mfs_txn_scratch_size(&size, t, id), 0);
	assert_int_equal(size, 40);
	assert_false(mfs_txn_dirty(t));         /* scratch never reaches the model */
	assert_int_equal(mfs_txn_scratch_adopt(t, id, w), 0);
	assert_int_equal(mfs_txn_scratch_size(&size, t, id), -ENOENT);
	assert_true(mfs_txn_dirty(t));
	float back[10];
	assert_int_equal(mfs_txn_tensor_read(t, w, back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	/* The other scratch file survives the commit, and never lands. */
	char junk[4];
	assert_int_equal(mfs_txn_scratch_read(t, other, junk, 4, 0), 4);
	assert_memory_equal(junk, "junk", 4);
	w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_tensor_read(mfs_txn_model(t), w, back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);
	assert_int_equal(mfs_txn_scratch_drop(t, other), 0);
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 0);
}

/* ------------------------------------------------------------ (c) meta, props */

static void meta_and_props_commit(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	char old[300];
	snprintf(old, sizeof(old), "%s/old.onnx", dir);
	copy_file(LINEAR, old);
	mfs_txn *t = open_txn(model, NULL, NULL);
	const char *doc = "A linear classifier, Linear(10, 1) + ReLU, exported from PyTorch; "
	                  "its doc_string was made longer by modelfs.\n";
	assert_true(mfs_txn_meta_writable(t, "doc_string"));
	assert_false(mfs_txn_meta_writable(t, "ir_version"));
	assert_int_equal(mfs_txn_meta_set(t, "doc_string", doc, strlen(doc)), 0);
	assert_int_equal(mfs_txn_meta_set(t, "ir_version", "9\n", 2), -EACCES);
	assert_int_equal(mfs_txn_meta_set(t, "model_version", "x1", 2), -EINVAL);
	uint64_t gen = mfs_txn_generation(t);
	assert_int_equal(mfs_txn_prop_set(t, "author", "modelfs test\n", 13), 0);
	assert_true(mfs_txn_generation(t) > gen);
	char buf[512];
	ssize_t n = mfs_txn_meta_get(t, "doc_string", buf, sizeof(buf));
	assert_int_equal(n, (ssize_t)strlen(doc));
	assert_memory_equal(buf, doc, strlen(doc));
	struct mfs_meta *props;
	size_t n_props;
	assert_int_equal(mfs_txn_props(&props, &n_props, t), 0);
	assert_int_equal(n_props, 1);
	assert_string_equal(props[0].name, "author");
	assert_string_equal(props[0].value, "modelfs test");
	mfs_txn_props_free(props, n_props);

	size_t vlen;
	uint8_t *view = read_view(t, &vlen);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	assert_true(same_file(model, view, vlen));
	free(view);
	n = mfs_txn_meta_get(t, "doc_string", buf, sizeof(buf));
	assert_memory_equal(buf, doc, strlen(doc));
	const struct mfs_desc *d = mfs_txn_desc(t);
	assert_int_equal(d->n_props, 1);
	assert_string_equal(d->props[0].value, "modelfs test");

	if (have_python) {
		char *json = NULL;
		assert_int_equal(run_check(&json, "onnx-same %s %s", old, model), 0);
		free(json);
		assert_int_equal(run_check(&json, "onnx-dump %s", model), 0);
		assert_non_null(strstr(json, "\"doc_string\": \"A linear classifier, Linear(10, 1) + "
		                             "ReLU, exported from PyTorch; its doc_string was made "
		                             "longer by modelfs.\""));
		assert_non_null(strstr(json, "\"props\": [[\"author\", \"modelfs test\"]]"));
		free(json);
	}

	/* More: fields that are absent get inserted in field order, a prop is
	 * renamed and another removed, the graph is renamed. */
	assert_int_equal(mfs_txn_prop_set(t, "license", "MIT", 3), 0);
	assert_int_equal(mfs_txn_prop_set(t, "tmp", "x", 1), 0);
	assert_int_equal(mfs_txn_prop_rename(t, "author", "model_author"), 0);
	assert_int_equal(mfs_txn_prop_unlink(t, "tmp"), 0);
	assert_int_equal(mfs_txn_prop_unlink(t, "tmp"), -ENOENT);
	assert_int_equal(mfs_txn_meta_set(t, "model_version", "7\n", 2), 0);
	assert_int_equal(mfs_txn_meta_set(t, "domain", "org.example", 11), 0);
	assert_int_equal(mfs_txn_meta_set(t, "producer_version", "9.9", 3), 0);
	assert_int_equal(mfs_txn_meta_set(t, "graph_name", "renamed_graph", 13), 0);
	char status[4096];
	mfs_txn_status(t, status, sizeof(status));
	assert_non_null(strstr(status, "staged prop model_author (renamed from author)"));
	assert_non_null(strstr(status, "staged prop license (new)"));
	assert_non_null(strstr(status, "staged meta graph_name"));
	view = read_view(t, &vlen);
	assert_int_equal(commit(t, &res), 0);
	assert_true(same_file(model, view, vlen));
	free(view);
	d = mfs_txn_desc(t);
	assert_int_equal(d->n_props, 2);
	assert_string_equal(d->props[0].name, "model_author");
	assert_string_equal(d->props[1].name, "license");
	n = mfs_txn_meta_get(t, "graph_name", buf, sizeof(buf));
	assert_int_equal(n, 14);
	assert_memory_equal(buf, "renamed_graph\n", 14);
	n = mfs_txn_meta_get(t, "model_version", buf, sizeof(buf));
	assert_memory_equal(buf, "7\n", 2);
	if (have_python) {
		char *json = NULL;
		assert_int_equal(run_check(&json, "onnx-same %s %s", old, model), 0);
		free(json);
		assert_int_equal(run_check(&json, "onnx-dump %s", model), 0);
		assert_non_null(strstr(json, "\"props\": [[\"model_author\", \"modelfs test\"], "
		                             "[\"license\", \"MIT\"]]"));
		assert_non_null(strstr(json, "\"graph_name\": \"renamed_graph\""));
		assert_non_null(strstr(json, "\"model_version\": 7"));
		assert_non_null(strstr(json, "\"domain\": \"org.example\""));
		assert_non_null(strstr(json, "\"producer_version\": \"9.9\""));
		free(json);
	}
	/* Setting a value back to what the model has unstages it. */
	assert_int_equal(mfs_txn_meta_set(t, "domain", "org.example\n", 12), 0);
	assert_false(mfs_txn_dirty(t));
	mfs_txn_close(t);
}

/*
 * The props index (codec/txn/edit.c) against a plain model of it: random
 * creates, rewrites, renames (over existing keys too) and removals, checked
 * key by key with mfs_txn_prop_get(), and again after the bulk changes that
 * rebuild the index: a journal replayed by the next open, a commit, an abort.
 */
#define IDX_KEYS 600

struct ref_props {
	bool live[IDX_KEYS];
	unsigned val[IDX_KEYS];
};

static void idx_key(char *b, size_t n, unsigned k)
{
	snprintf(b, n, "k%u", k);
}

static void check_ref(mfs_txn *t, const struct ref_props *r)
{
	char key[16], want[16];
	size_t n_live = 0;
	for (unsigned k = 0; k < IDX_KEYS; k++) {
		char *v = NULL;
		size_t len;
		idx_key(key, sizeof(key), k);
		int rc = mfs_txn_prop_get(&v, &len, t, key);
		if (!r->live[k]) {
			assert_int_equal(rc, -ENOENT);
			continue;
		}
		n_live++;
		assert_int_equal(rc, 0);
		snprintf(want, sizeof(want), "v%u", r->val[k]);
		assert_int_equal(len, strlen(want));
		assert_string_equal(v, want);
		free(v);
	}
	struct mfs_meta *props;
	size_t n;
	assert_int_equal(mfs_txn_props(&props, &n, t), 0);
	assert_int_equal(n, n_live);
	mfs_txn_props_free(props, n);
}

static void props_index_follows_edits(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	mfs_txn *t = open_txn(model, NULL, NULL);
	struct ref_props r = {0};
	unsigned seed = 11;
	char a[16], b[16], v[16];
	for (int step = 0; step < 6000; step++) {
		seed = seed * 1103515245u + 12345u;
		unsigned op = (seed >> 8) % 4, k = (seed >> 12) % IDX_KEYS, j = (seed >> 3) % IDX_KEYS;
		idx_key(a, sizeof(a), k);
		idx_key(b, sizeof(b), j);
		switch (op) {
		case 0:
		case 1:
			snprintf(v, sizeof(v), "v%d", step);
			assert_int_equal(mfs_txn_prop_set(t, a, v, strlen(v)), 0);
			r.live[k] = true;
			r.val[k] = (unsigned)step;
			break;
		case 2:
			assert_int_equal(mfs_txn_prop_rename(t, a, b), r.live[k] ? 0 : -ENOENT);
			if (r.live[k] && k != j) {
				r.live[j] = true;
				r.val[j] = r.val[k];
				r.live[k] = false;
			}
			break;
		default:
			assert_int_equal(mfs_txn_prop_unlink(t, a), r.live[k] ? 0 : -ENOENT);
			r.live[k] = false;
			break;
		}
		if (step % 1500 == 0)
			check_ref(t, &r);
	}
	check_ref(t, &r);
	/* A dead daemon's journal: the next open replays it into the slots. */
	mfs_txn_close(t);
	struct mfs_txn_recovery rec;
	t = open_txn(model, NULL, &rec);
	assert_true(rec.journal_found);
	check_ref(t, &r);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	check_ref(t, &r);
	/* Edits after the commit, then an abort back to the committed props. */
	struct ref_props committed = r;
	assert_int_equal(mfs_txn_prop_set(t, "k0", "v999999", 7), 0);
	assert_int_equal(mfs_txn_prop_rename(t, "k0", "k1"), 0);
	r.live[0] = false;
	r.live[1] = true;
	r.val[1] = 999999;
	check_ref(t, &r);
	assert_int_equal(mfs_txn_abort(t), 0);
	check_ref(t, &committed);
	mfs_txn_close(t);
}

/* ------------------------------------------------------------ (d) shape, dtype */

static void shape_and_dtype_changes(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	char old[300];
	snprintf(old, sizeof(old), "%s/old.onnx", dir);
	copy_file(LINEAR, old);
	mfs_txn *t = open_txn(model, NULL, NULL);
	const struct mfs_desc *d = mfs_txn_desc(t);
	const struct mfs_tensor *w = find_tensor(d, "fc.weight"), *b = find_tensor(d, "fc.bias");
	float wv[10];
	assert_int_equal(mfs_txn_tensor_read(t, w, wv, 40, 0), 40);

	assert_int_equal(mfs_txn_set_shape(t, w, "10,1\n", 5), 0);
	assert_int_equal(mfs_txn_set_shape(t, w, "10,,1", 5), -EINVAL);
	assert_int_equal(mfs_txn_set_shape(t, w, "-1,10", 5), -EINVAL);
	assert_int_equal(mfs_txn_set_shape(t, w, "1 0", 3), -EINVAL);
	assert_int_equal(mfs_txn_set_dtype(t, w, "float33", 7), -EINVAL);
	assert_int_equal(mfs_txn_set_dtype(t, w, "string", 6), -EINVAL);
	int64_t dims[4];
	size_t rank;
	int32_t dt;
	assert_int_equal(mfs_txn_tensor_type(t, w, &dt, dims, 4, &rank), 0);
	assert_int_equal(rank, 2);
	assert_int_equal(dims[0], 10);
	assert_int_equal(dims[1], 1);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	if (have_python) {
		char *json = NULL;
		assert_int_equal(run_check(&json, "onnx-dump %s", model), 0);
		assert_non_null(strstr(json, "\"name\": \"fc.weight\", \"dtype\": 1, \"dims\": [10, 1]"));
		expect_python_tensor(json, "fc.weight", wv, 40);
		free(json);
	}

	/* float32 -> int32, same size: the bytes are kept and reinterpreted. */
	w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_txn_set_dtype(t, w, "int32\n", 6), 0);
	assert_int_equal(commit(t, &res), 0);
	if (have_python) {
		char *json = NULL;
		assert_int_equal(run_check(&json, "onnx-dump %s", model), 0);
		assert_non_null(strstr(json, "\"name\": \"fc.weight\", \"dtype\": 6, \"dims\": [10, 1]"));
		expect_python_tensor(json, "fc.weight", wv, 40);
		free(json);
	}
	assert_int_equal(mfs_txn_set_dtype(t, find_tensor(mfs_txn_desc(t), "fc.weight"),
	                                   "float32", 7), 0);
	assert_int_equal(mfs_txn_set_shape(t, find_tensor(mfs_txn_desc(t), "fc.weight"),
	                                   "1,10", 4), 0);
	assert_int_equal(commit(t, &res), 0);
	size_t olen;
	uint8_t *orig = slurp(old, &olen);
	assert_true(same_file(model, orig, olen));      /* round trip: the original bytes */

	/* A mismatch fails with EINVAL and stays staged. */
	w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_txn_set_shape(t, w, "3,3", 3), 0);
	assert_int_equal(mfs_txn_commit(t, &res), -EINVAL);
	assert_int_equal(res.rc, -EINVAL);
	assert_non_null(strstr(res.msg, "fc.weight"));
	assert_non_null(strstr(res.msg, "needs 36"));
	assert_true(mfs_txn_dirty(t));
	assert_true(same_file(model, orig, olen));
	char status[4096];
	mfs_txn_status(t, status, sizeof(status));
	assert_non_null(strstr(status, "staged tensor weights fc.weight shape [3,3]"));
	assert_non_null(strstr(status, "last commit: failed: tensor 'fc.weight': data is 40 bytes"));
	/* A scalar is "[]" in status and in the message, as in `modelfs info`. */
	assert_int_equal(mfs_txn_set_shape(t, w, "\n", 1), 0);
	assert_int_equal(mfs_txn_commit(t, &res), -EINVAL);
	assert_non_null(strstr(res.msg, "data is 40 bytes but float32[] needs 4"));
	mfs_txn_status(t, status, sizeof(status));
	assert_non_null(strstr(status, "staged tensor weights fc.weight shape []\n"));
	assert_int_equal(mfs_txn_abort(t), 0);
	assert_false(mfs_txn_dirty(t));

	/* Past protobuf's 2 GiB: EFBIG, nothing written, still staged.  (The
	 * extension is zeros the stage never stores.) */
	w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_txn_tensor_truncate(t, w, 2ull << 30), 0);
	assert_int_equal(mfs_txn_set_shape(t, w, "536870912", 9), 0);
	assert_int_equal(mfs_txn_commit(t, &res), -EFBIG);
	assert_non_null(strstr(res.msg, "2 GiB"));
	assert_true(mfs_txn_dirty(t));
	assert_true(same_file(model, orig, olen));
	assert_int_equal(mfs_txn_abort(t), 0);

	/* A size change: the bias grows to two elements. */
	b = find_tensor(mfs_txn_desc(t), "fc.bias");
	float bv[2] = {1.5f, -2.5f};
	assert_int_equal(mfs_txn_tensor_truncate(t, b, 0), 0);
	assert_int_equal(mfs_txn_tensor_write(t, b, bv, 8, 0), 8);
	assert_int_equal(mfs_txn_set_shape(t, b, "2", 1), 0);
	size_t vlen;
	uint8_t *view = read_view(t, &vlen);
	assert_int_equal(vlen, olen + 4);
	assert_int_equal(commit(t, &res), 0);
	assert_true(same_file(model, view, vlen));
	free(view);
	b = find_tensor(mfs_txn_desc(t), "fc.bias");
	assert_int_equal(b->nbytes, 8);
	if (have_python) {
		char *json = NULL;
		assert_int_equal(run_check(&json, "onnx-dump %s", model), 0);
		expect_python_tensor(json, "fc.bias", bv, 8);
		expect_python_tensor(json, "fc.weight", wv, 40);
		free(json);
	}
	free(orig);
	mfs_txn_close(t);
}

/* Typed fields (int64_data, float_data) are converted to raw_data when edited. */
static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static size_t put_field(uint8_t *p, unsigned num, const void *v, size_t len)
{
	size_t n = put_varint(p, num << 3 | 2);
	n += put_varint(p + n, len);
	memcpy(p + n, v, len);
	return n + len;
}

static size_t typed_model(uint8_t *out)
{
	uint8_t t1[64], t2[64], g[256], op[16];
	size_t n1 = 0, n2 = 0, ng = 0, no = 0;
	/* i: int64 [3] in int64_data, packed */
	t1[n1++] = 0x08; t1[n1++] = 3;              /* dims 3 */
	t1[n1++] = 0x10; t1[n1++] = 7;              /* INT64 */
	uint8_t iv[3] = {1, 2, 3};
	n1 += put_field(t1 + n1, 7, iv, 3);
	n1 += put_field(t1 + n1, 8, "i", 1);
	/* f: float [2] in float_data, unpacked (two fixed32 fields) */
	t2[n2++] = 0x08; t2[n2++] = 2;
	t2[n2++] = 0x10; t2[n2++] = 1;
	float fv[2] = {1.0f, 2.0f};
	for (int i = 0; i < 2; i++) {
		t2[n2++] = 0x25;
		memcpy(t2 + n2, &fv[i], 4);
		n2 += 4;
	}
	n2 += put_field(t2 + n2, 8, "f", 1);
	ng += put_field(g + ng, 2, "typed", 5);
	ng += put_field(g + ng, 5, t1, n1);
	ng += put_field(g + ng, 5, t2, n2);
	op[no++] = 0x10; op[no++] = 13;             /* opset version 13 */
	size_t n = 0;
	out[n++] = 0x08; out[n++] = 8;              /* ir_version 8 */
	n += put_field(out + n, 7, g, ng);
	n += put_field(out + n, 8, op, no);
	return n;
}

static void typed_fields_convert(void **state)
{
	(void)state;
	uint8_t buf[512];
	size_t len = typed_model(buf);
	spit(model, buf, len);
	mfs_txn *t = open_txn(model, NULL, NULL);
	const struct mfs_desc *d = mfs_txn_desc(t);
	const struct mfs_tensor *i = find_tensor(d, "i"), *f = find_tensor(d, "f");
	assert_int_equal(storage(t, i), MFS_ONNX_TYPED);
	assert_int_equal(storage(t, f), MFS_ONNX_TYPED);
	int64_t iv[4] = {-5, 1ll << 40, 7, 8};
	float fv[2] = {0.5f, -4.0f};
	assert_int_equal(mfs_txn_tensor_write(t, i, iv, 32, 0), 32);
	assert_int_equal(mfs_txn_set_shape(t, i, "4", 1), 0);
	assert_int_equal(mfs_txn_tensor_write(t, f, fv, 8, 0), 8);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	d = mfs_txn_desc(t);
	i = find_tensor(d, "i");
	f = find_tensor(d, "f");
	assert_int_equal(storage(t, i), MFS_ONNX_RAW);
	assert_int_equal(storage(t, f), MFS_ONNX_RAW);
	int64_t ib[4];
	assert_int_equal(mfs_tensor_read(mfs_txn_model(t), i, ib, 32, 0), 32);
	assert_memory_equal(ib, iv, 32);
	if (have_python) {
		char *json = NULL;
		assert_int_equal(run_check(&json, "onnx-dump %s", model), 0);
		expect_python_tensor(json, "i", iv, 32);
		expect_python_tensor(json, "f", fv, 8);
		free(json);
	}
	mfs_txn_close(t);
}

/* ------------------------------------------------------------ (e) safetensors */

static size_t st_file(uint8_t *out)
{
	const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
	                "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
	                "\"b\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[24,56]},"
	                "\"c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[56,62]}}";
	size_t hl = strlen(h), pad = (8 - hl % 8) % 8;
	uint64_t n = hl + pad;
	memcpy(out, &n, 8);
	memcpy(out + 8, h, hl);
	memset(out + 8 + hl, ' ', pad);
	for (int i = 0; i < 62; i++)
		out[8 + n + (size_t)i] = (uint8_t)(i * 7 + 1);
	return 8 + n + 62;
}

static void safetensors_edits(void **state)
{
	(void)state;
	char st[300];
	snprintf(st, sizeof(st), "%s/model.safetensors", dir);
	uint8_t buf[1024];
	size_t len = st_file(buf);
	spit(st, buf, len);
	mfs_txn *t = open_txn(st, NULL, NULL);
	const struct mfs_desc *d = mfs_txn_desc(t);
	const struct mfs_tensor *a = find_tensor(d, "a");
	assert_false(mfs_txn_meta_writable(t, "doc_string"));

	/* Same-size data edit: the header is untouched. */
	float av[6] = {1, 2, 3, 4, 5, 6};
	assert_int_equal(mfs_txn_tensor_write(t, a, av, 24, 0), 24);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	size_t nlen;
	uint8_t *now = slurp(st, &nlen);
	assert_int_equal(nlen, len);
	uint64_t hl, hl0;
	memcpy(&hl0, buf, 8);
	hl = hl0;
	assert_memory_equal(now, buf, 8 + hl);
	assert_memory_equal(now + 8 + hl, av, 24);
	assert_memory_equal(now + 8 + hl + 24, buf + 8 + hl + 24, 38);
	free(now);

	/* dtype/shape changes, a size change, and __metadata__ edits. */
	d = mfs_txn_desc(t);
	const struct mfs_tensor *b = find_tensor(d, "b"), *c = find_tensor(d, "c");
	assert_int_equal(mfs_txn_set_dtype(t, b, "int32", 5), 0);
	assert_int_equal(mfs_txn_set_shape(t, b, "2,4", 3), 0);
	assert_int_equal(mfs_txn_set_dtype(t, b, "uint4", 5), -EINVAL);   /* no such st dtype */
	uint16_t cv[5] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500};
	assert_int_equal(mfs_txn_tensor_write(t, c, cv, 10, 0), 10);
	assert_int_equal(mfs_txn_set_shape(t, c, "5", 1), 0);
	assert_int_equal(mfs_txn_prop_set(t, "author", "me", 2), 0);
	assert_int_equal(mfs_txn_prop_unlink(t, "note"), 0);
	size_t vlen;
	uint8_t *view = read_view(t, &vlen);
	assert_int_equal(commit(t, &res), 0);
	assert_true(same_file(st, view, vlen));
	free(view);
	now = slurp(st, &nlen);
	memcpy(&hl, now, 8);
	assert_int_equal(hl % 8, 0);
	assert_int_equal(now[8], '{');
	assert_memory_equal(now + 8, "{\"__metadata__\":{\"format\":\"pt\",\"author\":\"me\"},", 46);
	free(now);

	d = mfs_txn_desc(t);
	b = find_tensor(d, "b");
	c = find_tensor(d, "c");
	assert_int_equal(b->dtype, MFS_DT_INT32);
	assert_int_equal(b->rank, 2);
	assert_int_equal(c->nbytes, 10);
	uint16_t cb[5];
	assert_int_equal(mfs_tensor_read(mfs_txn_model(t), c, cb, 10, 0), 10);
	assert_memory_equal(cb, cv, 10);
	assert_int_equal(d->n_props, 2);
	uint8_t bb[32];
	assert_int_equal(mfs_tensor_read(mfs_txn_model(t), b, bb, 32, 0), 32);
	assert_memory_equal(bb, buf + 8 + hl0 + 24, 32);    /* reinterpreted, not converted */
	if (have_python) {
		char *json = NULL;
		assert_int_equal(run_check(&json, "st-dump %s", st), 0);
		assert_non_null(strstr(json, "\"metadata\": {\"format\": \"pt\", \"author\": \"me\"}"));
		assert_non_null(strstr(json, "\"b\": {\"dtype\": \"I32\", \"shape\": [2, 4]"));
		char *hex = to_hex(av, 24);
		assert_non_null(strstr(json, hex));
		free(hex);
		hex = to_hex(cv, 10);
		assert_non_null(strstr(json, hex));
		free(hex);
		hex = to_hex(bb, 32);
		assert_non_null(strstr(json, hex));
		free(hex);
		free(json);
	}
	mfs_txn_close(t);
}

/* ------------------------------------------------------------ (f) recovery */

static void stage_standard_edits(mfs_txn *t, float *wv)
{
	const struct mfs_desc *d = mfs_txn_desc(t);
	fill_weights(wv, 10, 2.0f);
	assert_int_equal(mfs_txn_tensor_write(t, find_tensor(d, "fc.weight"), wv, 40, 0), 40);
	assert_int_equal(mfs_txn_meta_set(t, "doc_string", "recovered doc", 13), 0);
	assert_int_equal(mfs_txn_prop_set(t, "k", "v", 1), 0);
}

static void dead_daemon_edits_come_back(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	float wv[10];
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		mfs_txn *t = NULL;
		if (mfs_txn_open(&t, model, NULL, NULL, errbuf, sizeof(errbuf)) < 0)
			_exit(1);
		stage_standard_edits(t, wv);
		uint64_t sid, bid;
		mfs_txn_scratch_new(&sid, t);
		mfs_txn_scratch_write(t, sid, "scratch", 7, 0);
		/* A rename over fc.bias/data: one MOVE record in the journal. */
		float bias = -3.25f;
		mfs_txn_scratch_new(&bid, t);
		mfs_txn_scratch_write(t, bid, &bias, 4, 0);
		if (mfs_txn_scratch_adopt(t, bid, find_tensor(mfs_txn_desc(t), "fc.bias")) < 0)
			_exit(2);
		_exit(0);       /* no close: the daemon died */
	}
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fill_weights(wv, 10, 2.0f);

	struct mfs_txn_recovery rec;
	mfs_txn *t = open_txn(model, NULL, &rec);
	assert_true(rec.journal_found);
	assert_int_equal(rec.n_recovered, 4);
	assert_non_null(strstr(rec.msg, "recovered"));
	char status[4096];
	mfs_txn_status(t, status, sizeof(status));
	assert_non_null(strstr(status, "recovery: "));
	assert_non_null(strstr(status, "staged tensor weights fc.weight data 40 bytes"));
	assert_non_null(strstr(status, "staged meta doc_string"));
	assert_non_null(strstr(status, "staged prop k (new)"));
	assert_null(strstr(status, "scratch files"));
	float back[10];
	const struct mfs_tensor *w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_txn_tensor_read(t, w, back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);
	float bias;
	assert_int_equal(mfs_txn_tensor_read(t, find_tensor(mfs_txn_desc(t), "fc.bias"), &bias, 4,
	                                     0), 4);
	assert_true(bias == -3.25f);
	assert_true(mfs_txn_tensor_staged(t, w));
	assert_true(mfs_txn_tensor_staged(t, find_tensor(mfs_txn_desc(t), "fc.bias")));

	/* Closed without a commit: offered again at the next open. */
	mfs_txn_close(t);
	t = open_txn(model, NULL, &rec);
	assert_int_equal(rec.n_recovered, 4);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	/* The commit settled what recovery offered: status stops saying it. */
	mfs_txn_status(t, status, sizeof(status));
	assert_null(strstr(status, "recovery: "));
	w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_tensor_read(mfs_txn_model(t), w, back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);
	assert_int_equal(mfs_tensor_read(mfs_txn_model(t), find_tensor(mfs_txn_desc(t), "fc.bias"),
	                                 &bias, 4, 0), 4);
	assert_true(bias == -3.25f);
	char doc[64];
	assert_int_equal(mfs_txn_meta_get(t, "doc_string", doc, sizeof(doc)), 14);
	assert_memory_equal(doc, "recovered doc\n", 14);
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 0);
	t = open_txn(model, NULL, &rec);
	assert_false(rec.journal_found);
	assert_false(mfs_txn_dirty(t));
	mfs_txn_close(t);
}

/* ------------------------------------------------------------ (g) faults */

struct fault_case {
	const char *name;
	struct mfs_txn_opts opts;
	bool meta;              /* also a doc_string edit (a size change) */
	bool clone;             /* ficlone works (faked by a copy) */
	const char *path;       /* the commit path expected */
};

static void stage_fault_edits(mfs_txn *t, const struct fault_case *fc)
{
	float wv[10];
	fill_weights(wv, 10, 5.0f);
	const struct mfs_desc *d = mfs_txn_desc(t);
	assert_int_equal(mfs_txn_tensor_write(t, find_tensor(d, "fc.weight"), wv, 40, 0), 40);
	if (fc->meta)
		assert_int_equal(mfs_txn_meta_set(t, "doc_string", "faulty", 6), 0);
}

static void check_staged(mfs_txn *t)
{
	float wv[10], back[10];
	fill_weights(wv, 10, 5.0f);
	assert_true(mfs_txn_dirty(t));
	const struct mfs_tensor *w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_txn_tensor_read(t, w, back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);
}

static void fault_loop(const struct fault_case *fc, const uint8_t *old, size_t old_len,
                       size_t *n_calls, size_t *n_old, size_t *n_new, size_t *n_late)
{
	/* The new version, and how many calls a commit makes. */
	spit(model, old, old_len);
	mfs_txn *t = open_txn(model, &fc->opts, NULL);
	stage_fault_edits(t, fc);
	fio_install();
	fio_fake_clone(fc->clone);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	size_t calls = fio_total();
	fio_uninstall();
	assert_string_equal(res.path, fc->path);
	mfs_txn_close(t);
	size_t new_len;
	uint8_t *new_bytes = slurp(model, &new_len);
	*n_calls = calls;

	for (int pass = 0; pass < 3; pass++) {
		for (size_t k = 1; k <= calls; k++) {
			spit(model, old, old_len);
			t = open_txn(model, &fc->opts, NULL);
			stage_fault_edits(t, fc);
			fio_install();
			fio_fake_clone(fc->clone);
			if (pass == 0)
				fio_fail_nth(FIO_ANY, k, EIO);
			else if (pass == 1)
				fio_fail_nth(FIO_ANY, k, ENOSPC);
			else
				fio_crash_at(FIO_ANY, k);
			int rc = mfs_txn_commit(t, &res);
			bool injected = fio_injected() > 0;
			if (pass == 2) {
				/* Dead at call k: nothing more reaches the disk, not
				 * even what closing would do. */
				mfs_txn_close(t);
				fio_uninstall();
				t = NULL;
			} else {
				fio_uninstall();
			}
			bool is_old = same_file(model, old, old_len);
			bool is_new = same_file(model, new_bytes, new_len);
			if (!is_old && !is_new) {
				/* Only an in-place commit interrupted past its
				 * commit point may leave the model half patched, and
				 * recovery must finish it. */
				assert_true(fc->opts.mode == MFS_COMMIT_INPLACE);
			}
			if (t && is_old) {
				assert_true(rc < 0 || !injected);
				if (rc < 0) {
					assert_true(res.msg[0] != '\0');
					check_staged(t);
				}
			}
			if (t && rc == 0)
				assert_true(is_new);
			if (t && rc < 0 && is_new) {
				/* Installed, then something after the commit point
				 * failed (the directory sync, the reopen): the
				 * transaction catches up at the next commit. */
				assert_int_equal(commit(t, &res), 0);
				assert_false(mfs_txn_dirty(t));
				float wv[10], back[10];
				fill_weights(wv, 10, 5.0f);
				const struct mfs_tensor *w = find_tensor(mfs_txn_desc(t), "fc.weight");
				assert_int_equal(mfs_tensor_read(mfs_txn_model(t), w, back, 40, 0), 40);
				assert_memory_equal(back, wv, 40);
				(*n_late)++;
			}
			if (t)
				mfs_txn_close(t);
			/* Recovery: the edits come back if the model is old, and a
			 * commit then produces the new version. */
			struct mfs_txn_recovery rec;
			t = open_txn(model, &fc->opts, &rec);
			is_old = same_file(model, old, old_len);
			is_new = same_file(model, new_bytes, new_len);
			assert_true(is_old || is_new);
			if (is_old) {
				check_staged(t);
				assert_int_equal(commit(t, &res), 0);
				(*n_old)++;
			} else {
				(*n_new)++;
			}
			assert_true(same_file(model, new_bytes, new_len));
			mfs_txn_close(t);
			/* No temp, no redo log, no journal left: a journal whose
			 * edits a crashed commit had installed is known by its
			 * commit mark (or by the redo log's journal id) and
			 * removed, never set aside as another version's. */
			if (count_others("model.onnx") != 0) {
				DIR *d = opendir(dir);
				struct dirent *de;
				while ((de = readdir(d)))
					fprintf(stderr, "left after call %zu (pass %d): %s\n", k, pass,
					        de->d_name);
				closedir(d);
			}
			assert_int_equal(count_others("model.onnx"), 0);
		}
	}
	free(new_bytes);
}

static void every_commit_call_can_fail(void **state)
{
	(void)state;
	size_t old_len;
	uint8_t *old = slurp(LINEAR, &old_len);
	const struct fault_case cases[] = {
		{"rewrite", {.mode = MFS_COMMIT_AUTO}, true, false, "rewrite"},
		{"clone", {.mode = MFS_COMMIT_AUTO}, false, true, "clone"},
		{"inplace", {.mode = MFS_COMMIT_INPLACE}, false, false, "inplace"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t calls = 0, n_old = 0, n_new = 0, n_late = 0;
		fault_loop(&cases[i], old, old_len, &calls, &n_old, &n_new, &n_late);
		printf("faults (%s): %zu I/O calls per commit, each failed with EIO, ENOSPC and as "
		       "a crash: %zu ended old (edits recovered and committed), %zu new (%zu of "
		       "them failed after the commit point)\n", cases[i].name, calls, n_old, n_new,
		       n_late);
	}
	free(old);
}

/* ------------------------------------------------------------ (g') versions */

/* The version files ("v<n>_...") in the test directory: how many, the last name. */
static int versions(char *name, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d)))
		if (de->d_name[0] == 'v') {
			n++;
			snprintf(name, len, "%s", de->d_name);
		}
	closedir(d);
	return n;
}

static void drop_versions(void)
{
	char name[256], path[PATH_MAX];
	while (versions(name, sizeof(name)) > 0) {
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		assert_int_equal(unlink(path), 0);
	}
}

/*
 * A versioned commit, with every I/O call it makes failed in turn (EIO,
 * then as a crash): the model is byte-identical every time; there is no
 * version or one whole one (the bytes of the fault-free run, under the name
 * of their hash); and the next open of the model has the edits staged
 * exactly when no version was installed (a journal whose edits a version
 * took is recognised by its commit mark and removed).
 */
static void versioned_commit_faults_leave_model_and_version_whole(void **state)
{
	(void)state;
	const char *tmpl = "v{n}_{sha256:16}.onnx";
	size_t old_len, new_len;
	uint8_t *old = slurp(LINEAR, &old_len);
	struct fault_case fc = {"version", {.mode = MFS_COMMIT_AUTO}, true, false, "version"};
	struct mfs_txn_result res;
	char name[256], vpath[PATH_MAX];

	spit(model, old, old_len);
	mfs_txn *t = open_txn(model, &fc.opts, NULL);
	stage_fault_edits(t, &fc);
	fio_install();
	assert_int_equal(mfs_txn_commit_to(t, tmpl, &res), 0);
	size_t calls = fio_total();
	fio_uninstall();
	assert_string_equal(res.path, "version");
	assert_int_equal(versions(name, sizeof(name)), 1);
	assert_string_equal(name, res.version);
	assert_int_equal(strncmp(name + 3, res.sha256, 16), 0);
	char want_name[256];
	snprintf(want_name, sizeof(want_name), "%s", name);
	/* The transaction is the version's now. */
	char cur[PATH_MAX];
	mfs_txn_path(t, cur, sizeof(cur));
	snprintf(vpath, sizeof(vpath), "%s/%s", dir, name);
	assert_string_equal(cur, vpath);
	char hex[65];
	assert_int_equal(mfs_txn_sha256(t, hex), 0);
	assert_string_equal(hex, res.sha256);
	assert_false(mfs_txn_dirty(t));
	mfs_txn_close(t);
	assert_true(same_file(model, old, old_len));
	uint8_t *new_bytes = slurp(vpath, &new_len);
	drop_versions();

	size_t n_none = 0, n_version = 0, n_late = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 1; k <= calls; k++) {
			spit(model, old, old_len);
			t = open_txn(model, &fc.opts, NULL);
			stage_fault_edits(t, &fc);
			fio_install();
			if (pass == 0)
				fio_fail_nth(FIO_ANY, k, EIO);
			else
				fio_crash_at(FIO_ANY, k);
			int rc = mfs_txn_commit_to(t, tmpl, &res);
			if (pass == 1) {
				mfs_txn_close(t);
				t = NULL;
			}
			fio_uninstall();
			assert_true(same_file(model, old, old_len));
			int nv = versions(name, sizeof(name));
			assert_true(nv <= 1);
			if (nv) {
				snprintf(vpath, sizeof(vpath), "%s/%s", dir, name);
				assert_string_equal(name, want_name);
				assert_true(same_file(vpath, new_bytes, new_len));
			}
			if (t && rc == 0)
				assert_int_equal(nv, 1);
			if (t && rc < 0 && !nv) {
				assert_true(res.msg[0] != '\0');
				check_staged(t);
			}
			if (t && rc < 0 && nv)
				n_late++;       /* installed, then the directory sync failed */
			if (t)
				mfs_txn_close(t);
			struct mfs_txn_recovery rec;
			t = open_txn(model, &fc.opts, &rec);
			if (nv) {
				assert_false(mfs_txn_dirty(t));
				n_version++;
			} else {
				check_staged(t);
				assert_int_equal(mfs_txn_abort(t), 0);
				n_none++;
			}
			mfs_txn_close(t);
			if (nv) {
				/* The version opens as a model of its own, nothing staged. */
				t = open_txn(vpath, &fc.opts, NULL);
				assert_false(mfs_txn_dirty(t));
				mfs_txn_close(t);
			}
			drop_versions();
			/* No temp and no journal is left beside the model. */
			if (count_others("model.onnx") != 0) {
				DIR *d = opendir(dir);
				struct dirent *de;
				while ((de = readdir(d)))
					fprintf(stderr, "left after call %zu (pass %d): %s\n", k, pass,
					        de->d_name);
				closedir(d);
			}
			assert_int_equal(count_others("model.onnx"), 0);
		}
	}
	printf("versioned commit faults: %zu I/O calls, each failed with EIO and as a crash: "
	       "%zu ended without a version (edits staged again), %zu with the whole version "
	       "(%zu failed after the rename)\n", calls, n_none, n_version, n_late);
	free(new_bytes);
	free(old);
}

/* A scratch file outlives a versioned commit: its journal moves to the version's. */
static void scratch_moves_with_the_version(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	mfs_txn *t = open_txn(model, NULL, NULL);
	uint64_t sid;
	assert_int_equal(mfs_txn_scratch_new(&sid, t), 0);
	assert_int_equal(mfs_txn_scratch_write(t, sid, "scratch!", 8, 0), 8);
	assert_int_equal(mfs_txn_prop_set(t, "k", "v", 1), 0);
	struct mfs_txn_result res;
	assert_int_equal(mfs_txn_commit_to(t, "next{n}.onnx", &res), 0);
	assert_string_equal(res.version, "next1.onnx");
	char buf[16] = "";
	assert_int_equal(mfs_txn_scratch_read(t, sid, buf, sizeof(buf), 0), 8);
	assert_memory_equal(buf, "scratch!", 8);
	char path[PATH_MAX];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/.next1.onnx.modelfs-journal", dir);
	assert_int_equal(stat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/.model.onnx.modelfs-journal", dir);
	assert_int_equal(stat(path, &sb), -1);
	/* Edits go on against the version, and a commit writes the version. */
	assert_int_equal(mfs_txn_prop_set(t, "k", "w", 1), 0);
	assert_int_equal(commit(t, &res), 0);
	assert_string_equal(res.path, "rewrite");
	assert_int_equal(count_others("model.onnx"), 2);     /* next1.onnx, its journal */
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 1);
	snprintf(path, sizeof(path), "%s/next1.onnx", dir);
	t = open_txn(path, NULL, NULL);
	char *v = NULL;
	size_t len;
	assert_int_equal(mfs_txn_prop_get(&v, &len, t, "k"), 0);
	assert_memory_equal(v, "w", 1);
	free(v);
	mfs_txn_close(t);
}

/* Template refusals come before anything is written, and say why. */
static void version_templates_are_checked(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	size_t old_len;
	uint8_t *old = slurp(model, &old_len);
	mfs_txn *t = open_txn(model, NULL, NULL);
	float wv[10];
	stage_standard_edits(t, wv);
	static const struct {
		const char *tmpl, *needle;
		int rc;
	} bad[] = {
		{"a/b{n}", "'/'", -EINVAL},
		{"{sha265}", "unknown placeholder {sha265}", -EINVAL},
		{"x{sha256:3}", "4 to 64", -EINVAL},
		{"x{sha256:65}", "4 to 64", -EINVAL},
		{"x{n", "'{'", -EINVAL},
		{"x}", "'}'", -EINVAL},
		{"x\n{n}", "control character", -EINVAL},
		{"..", "'..'", -EINVAL},
		{".x{n}", "hidden", -EINVAL},
		{"x.modelfs-journal", "hidden", -EINVAL},
		{"model.onnx", "exists", -EEXIST},
	};
	struct mfs_txn_result res;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(mfs_txn_commit_to(t, bad[i].tmpl, &res), bad[i].rc);
		if (!strstr(res.msg, bad[i].needle))
			fail_msg("template '%s': '%s' lacks '%s'", bad[i].tmpl, res.msg, bad[i].needle);
		assert_true(mfs_txn_dirty(t));
		assert_int_equal(count_others("model.onnx"), 1);        /* the journal */
		assert_true(same_file(model, old, old_len));
	}
	/* {n} counts what fits the template; {stem} {ext} are the original's. */
	char name[256];
	assert_int_equal(mfs_txn_commit_to(t, "{stem}_v{n}{ext}", &res), 0);
	assert_string_equal(res.version, "model_v1.onnx");
	assert_int_equal(mfs_txn_prop_set(t, "k", "w", 1), 0);
	assert_int_equal(mfs_txn_commit_to(t, "{stem}_v{n}{ext}", &res), 0);
	assert_string_equal(res.version, "model_v2.onnx");
	assert_int_equal(mfs_txn_prop_set(t, "k", "x", 1), 0);
	assert_int_equal(mfs_txn_commit_to(t, "{stem}_v{n}_{sha256:4}{ext}", &res), 0);
	snprintf(name, sizeof(name), "model_v1_%.4s.onnx", res.sha256);
	assert_string_equal(res.version, name);
	/* Nothing staged: no file. */
	assert_int_equal(mfs_txn_commit_to(t, "{stem}_v{n}{ext}", &res), 0);
	assert_string_equal(res.path, "none");
	assert_int_equal(count_others("model.onnx"), 3);
	assert_true(same_file(model, old, old_len));
	mfs_txn_close(t);
	free(old);
}

/* ------------------------------------------------------------ (h) in place */

/*
 * An ONNX model with one float tensor "big" of `n` bytes (n a multiple of 4,
 * the float element i being (i % 1000) * 0.001) at `path`.
 */
static void write_one_tensor_model(const char *path, uint64_t n)
{
	uint8_t head[128];
	size_t h = 0;
	/* ModelProto: ir_version 8, graph { name, initializer big }, opset 13 */
	uint8_t tensor_hdr[64];
	size_t th = 0;
	tensor_hdr[th++] = 0x08;
	th += put_varint(tensor_hdr + th, n / 4);
	tensor_hdr[th++] = 0x10;
	tensor_hdr[th++] = 1;
	th += put_field(tensor_hdr + th, 8, "big", 3);
	th += put_varint(tensor_hdr + th, 9 << 3 | 2);
	th += put_varint(tensor_hdr + th, n);
	uint64_t tensor_len = th + n;
	uint8_t init_hdr[16];
	size_t ih = put_varint(init_hdr, 5 << 3 | 2);
	ih += put_varint(init_hdr + ih, tensor_len);
	uint8_t gname[16];
	size_t gn = put_field(gname, 2, "g", 1);
	uint64_t graph_len = gn + ih + tensor_len;
	head[h++] = 0x08;
	head[h++] = 8;
	h += put_varint(head + h, 7 << 3 | 2);
	h += put_varint(head + h, graph_len);
	memcpy(head + h, gname, gn);
	h += gn;
	memcpy(head + h, init_hdr, ih);
	h += ih;
	memcpy(head + h, tensor_hdr, th);
	h += th;
	uint8_t tail[8] = {0x42, 2, 0x10, 13};
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, head, h), (ssize_t)h);
	uint8_t *chunk = malloc(1 << 20);
	for (uint64_t off = 0; off < n; off += 1 << 20) {
		size_t k = n - off < 1 << 20 ? (size_t)(n - off) : 1 << 20;
		for (size_t i = 0; i < k; i += 4) {
			float v = (float)((off + i) / 4 % 1000) * 0.001f;
			memcpy(chunk + i, &v, 4);
		}
		assert_int_equal(write(fd, chunk, k), (ssize_t)k);
	}
	assert_int_equal(write(fd, tail, 4), 4);
	close(fd);
	free(chunk);
}

static void big_model_inplace(void **state)
{
	(void)state;
	const uint64_t n = 64ull << 20;
	write_one_tensor_model(model, n);

	struct mfs_txn_opts opts = {.mode = MFS_COMMIT_INPLACE};
	mfs_txn *t = open_txn(model, &opts, NULL);
	const struct mfs_tensor *x = find_tensor(mfs_txn_desc(t), "big");
	assert_non_null(x);
	uint64_t file_size = mfs_txn_desc(t)->files[0].size;
	assert_true(file_size >= 64ull << 20);
	uint8_t edit[4096];
	memset(edit, 0x3f, sizeof(edit));
	const uint64_t at = 20ull << 20;
	assert_int_equal(mfs_txn_tensor_write(t, x, edit, sizeof(edit), at), (ssize_t)sizeof(edit));
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	assert_string_equal(res.path, "inplace");
	assert_true(res.bytes_written < 3 * sizeof(edit));
	printf("in place: %zu-byte edit of a %" PRIu64 "-byte model: %" PRIu64 " bytes written "
	       "(patch and redo log), %" PRIu64 " bytes edited\n", sizeof(edit), file_size,
	       res.bytes_written, res.bytes_edited);
	char status[4096];
	mfs_txn_status(t, status, sizeof(status));
	assert_non_null(strstr(status, "last commit: ok inplace"));
	x = find_tensor(mfs_txn_desc(t), "big");
	uint8_t back[4096 + 8];
	assert_int_equal(mfs_tensor_read(mfs_txn_model(t), x, back, sizeof(back), at - 4),
	                 (ssize_t)sizeof(back));
	assert_memory_equal(back + 4, edit, sizeof(edit));
	float v;
	memcpy(&v, back, 4);
	assert_true(v == (float)((at - 4) / 4 % 1000) * 0.001f);
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 0);
}

/* ------------------------------------------------------------ diff runs */

struct xrun {
	uint64_t off, len;
};

/*
 * What a commit must patch when `now` replaces `old`: every differing byte,
 * and runs merged across gaps of at most 64 equal bytes (txn.c RUN_GAP),
 * worked out a byte at a time, the obvious way.  Returns the run count.
 */
static size_t expected_runs(struct xrun *out, const uint8_t *old, const uint8_t *now, size_t n,
                            uint64_t *diff)
{
	size_t k = 0;
	*diff = 0;
	for (size_t j = 0; j < n; j++) {
		if (old[j] == now[j])
			continue;
		++*diff;
		if (k && j - (out[k - 1].off + out[k - 1].len) <= 64)
			out[k - 1].len = j + 1 - out[k - 1].off;
		else
			out[k++] = (struct xrun){j, 1};
	}
	return k;
}

/* The model's byte ranges an in-place commit patched, from the I/O log:
 * the pwrites to the model, contiguous ones joined (a run longer than the
 * commit's buffer is written in pieces; two runs never touch). */
static size_t patched_runs(struct xrun *out, size_t cap, uint64_t base)
{
	size_t k = 0;
	for (size_t i = 0; i < fio_log_len(); i++) {
		const struct fio_call *c = fio_log_at(i);
		if (c->kind != FIO_PWRITE || strcmp(c->name, "model.onnx") != 0 || c->ret <= 0)
			continue;
		assert_true(c->off >= base);
		uint64_t off = c->off - base, len = (uint64_t)c->ret;
		if (k && out[k - 1].off + out[k - 1].len == off) {
			out[k - 1].len += len;
			continue;
		}
		assert_true(k < cap);
		out[k++] = (struct xrun){off, len};
	}
	return k;
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64*: deterministic, so a failure repeats. */
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545f4914f6cdd1dull;
}

/* Flip one bit of byte p, a different bit each time, so every bit position
 * of a word has to count as a difference. */
static void flip(uint8_t *buf, size_t p)
{
	static unsigned bit;
	buf[p] ^= (uint8_t)(1u << (bit++ % 8));
}

#define DR_ROUNDS 7

/*
 * Round r's edit of `now` (a copy of the tensor's bytes, n of them):
 * isolated bytes at the first and last byte of words, blocks and compare
 * buffers, gaps just under, at and over the merge distance, bursts and a
 * fully different stretch.  *lo, *hi: the span to write through the txn (the
 * rest of the tensor is not written, so only the chunks it touches are
 * compared).
 */
static void diff_round(int r, uint8_t *now, size_t n, size_t *lo, size_t *hi)
{
	static const size_t gaps[] = {64, 65, 63, 0, 1, 6, 7, 8, 9, 56, 57, 62, 66, 127, 128,
	                              129, 64, 64, 65, 65, 0, 0, 200, 63, 64, 65};
	*lo = 0;
	*hi = n;
	switch (r) {
	case 0: {
		/* A walk of single bytes, each `gap` equal bytes after the last. */
		size_t p = 0;
		for (int rep = 0; rep < 40; rep++)
			for (size_t g = 0; g < sizeof(gaps) / sizeof(gaps[0]) && p < n; g++) {
				flip(now, p);
				p += gaps[g] + 1;
			}
		break;
	}
	case 1: {
		/* The edges: first and last byte of the tensor, of 8-byte words,
		 * of 64-byte blocks, of the 1 MiB compare buffers, of 256 KiB
		 * chunks; each alone, far from the others. */
		const size_t at[] = {0, 7 + 4096, 8 + 8192, 63 + 12288, 64 + 16384, 65 + 20480,
		                     (256u << 10) - 1, 256u << 10, (1u << 20) - 1, 1u << 20,
		                     (1u << 20) + 4095, (2u << 20) - 1, (2u << 20) + 64,
		                     n - 65, n - 1};
		for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
			flip(now, at[i]);
		break;
	}
	case 2:
		/* Joined across the compare buffer boundary: gaps of 64 around
		 * it, then 65 (split) around the chunk boundary. */
		flip(now, (1u << 20) - 65);
		flip(now, (1u << 20));
		flip(now, (1u << 20) + 65);
		flip(now, (768u << 10) - 66);
		flip(now, (768u << 10));
		break;
	case 3:
		/* A fully different stretch with ragged ends, then bursts. */
		for (size_t p = 100003; p < 100003 + 300001; p++)
			now[p] = (uint8_t)~now[p];
		for (size_t p = 500000; p < 510000; p += 1 + rnd() % 70)
			for (size_t q = p, e = p + rnd() % 9; q < e; q++)
				flip(now, q);
		break;
	case 4:
		/* Random isolated bytes with gaps near the merge distance (over
		 * 96 KiB: the I/O log holds 8192 calls, three per run). */
		for (size_t p = 700000 + rnd() % 50; p < 700000 + (96u << 10);
		     p += 1 + 60 + rnd() % 9)
			flip(now, p);
		break;
	case 5:
		/* Only two small spans are written: two extents, not the
		 * whole tensor.  The tail block is short (n % 64 = 44). */
		*lo = (1u << 20) - 70;
		*hi = n;
		flip(now, *lo + 3);
		flip(now, *lo + 69);
		flip(now, n - 44);
		flip(now, n - 5);
		flip(now, n - 4);
		break;
	case 6:
		/* Written, but the same bytes: nothing to patch... except one. */
		*lo = 12345;
		*hi = 12345 + 70000;
		flip(now, 12345 + 69999);
		break;
	}
}

/* The runs an in-place commit patches are exactly the differing bytes,
 * merged across gaps of up to 64 (commit planning in txn.c). */
static void diff_runs_exact(void **state)
{
	(void)state;
	/* Over two compare buffers, ending in a short block and a short word. */
	const size_t n = (2u << 20) + 4096 + 44;
	write_one_tensor_model(model, n);
	struct mfs_txn_opts opts = {.mode = MFS_COMMIT_INPLACE};
	uint8_t *old = malloc(n), *now = malloc(n);
	struct xrun *want = malloc(n / 2 * sizeof(*want)), *got = malloc(4096 * sizeof(*got));
	mfs_txn *t = open_txn(model, &opts, NULL);
	const struct mfs_tensor *x = find_tensor(mfs_txn_desc(t), "big");
	assert_non_null(x);
	assert_int_equal(x->nbytes, n);
	assert_int_equal(mfs_tensor_read(mfs_txn_model(t), x, old, n, 0), (ssize_t)n);
	for (int r = 0; r < DR_ROUNDS; r++) {
		size_t lo, hi;
		uint64_t diff;
		memcpy(now, old, n);
		diff_round(r, now, n, &lo, &hi);
		size_t n_want = expected_runs(want, old, now, n, &diff);
		assert_true(n_want > 0);
		assert_int_equal(mfs_txn_tensor_write(t, x, now + lo, hi - lo, lo),
		                 (ssize_t)(hi - lo));
		struct mfs_txn_result res;
		fio_install();
		int rc = commit(t, &res);
		fio_uninstall();
		assert_int_equal(rc, 0);
		assert_string_equal(res.path, "inplace");
		assert_int_equal(res.bytes_edited, diff);
		size_t n_got = patched_runs(got, 4096, x->off);
		if (n_got != n_want)
			fprintf(stderr, "round %d: %zu runs patched, %zu expected\n", r, n_got, n_want);
		assert_int_equal(n_got, n_want);
		for (size_t i = 0; i < n_want; i++) {
			if (got[i].off != want[i].off || got[i].len != want[i].len)
				fprintf(stderr, "round %d run %zu: patched %" PRIu64 "+%" PRIu64 ", "
				        "expected %" PRIu64 "+%" PRIu64 "\n", r, i, got[i].off,
				        got[i].len, want[i].off, want[i].len);
			assert_int_equal(got[i].off, want[i].off);
			assert_int_equal(got[i].len, want[i].len);
		}
		/* And the model has the new bytes. */
		x = find_tensor(mfs_txn_desc(t), "big");
		assert_int_equal(mfs_tensor_read(mfs_txn_model(t), x, old, n, 0), (ssize_t)n);
		assert_memory_equal(old, now, n);
	}
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 0);
	free(old);
	free(now);
	free(want);
	free(got);
}

/* Readers on every thread while edits and commits go on (invariant 6). */
struct reader_arg {
	mfs_txn *t;
	_Atomic bool *stop;
	uint64_t reads;
};

static void *reader(void *p)
{
	struct reader_arg *a = p;
	uint8_t buf[512];
	char status[2048];
	while (!*a->stop) {
		const struct mfs_desc *d = mfs_txn_desc(a->t);
		const struct mfs_tensor *w = find_tensor(d, "fc.weight");
		uint64_t size = 0;
		if (mfs_txn_tensor_read(a->t, w, buf, 40, 0) != 40)
			abort();
		if (mfs_txn_file_size(&size, a->t, 0) < 0 || size < 300)
			abort();
		if (mfs_txn_file_read(a->t, 0, buf, sizeof(buf), 0) <= 0)
			abort();
		mfs_txn_status(a->t, status, sizeof(status));
		a->reads++;
	}
	return NULL;
}

static void readers_during_commits(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	mfs_txn *t = open_txn(model, NULL, NULL);
	_Atomic bool stop = false;
	pthread_t th[4];
	struct reader_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct reader_arg){t, &stop, 0};
		assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
	}
	for (int k = 0; k < 40; k++) {
		float wv[10];
		fill_weights(wv, 10, (float)k);
		const struct mfs_tensor *w = find_tensor(mfs_txn_desc(t), "fc.weight");
		assert_int_equal(mfs_txn_tensor_write(t, w, wv, 40, 0), 40);
		char doc[32];
		int n = snprintf(doc, sizeof(doc), "round %d", k);
		assert_int_equal(mfs_txn_meta_set(t, "doc_string", doc, (size_t)n), 0);
		struct mfs_txn_result res;
		assert_int_equal(commit(t, &res), 0);
	}
	stop = true;
	uint64_t reads = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		reads += args[i].reads;
	}
	assert_true(reads > 0);
	mfs_txn_close(t);
}

/* The model replaced behind our back: ESTALE, nothing written, still staged. */
static void changed_model_is_not_overwritten(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	mfs_txn *t = open_txn(model, NULL, NULL);
	float wv[10];
	stage_standard_edits(t, wv);
	char other[300];
	snprintf(other, sizeof(other), "%s/other.onnx", dir);
	size_t len;
	uint8_t *bytes = slurp(LINEAR, &len);
	bytes[len - 1] ^= 1;            /* some other version of the file */
	spit(other, bytes, len);
	assert_int_equal(rename(other, model), 0);
	struct mfs_txn_result res;
	assert_int_equal(mfs_txn_commit(t, &res), -ESTALE);
	assert_non_null(strstr(res.msg, "changed on disk"));
	assert_true(same_file(model, bytes, len));
	assert_true(mfs_txn_dirty(t));
	mfs_txn_close(t);
	/* The journal belongs to the version that is gone: set aside, not
	 * applied to this one. */
	struct mfs_txn_recovery rec;
	t = open_txn(model, NULL, &rec);
	assert_false(rec.journal_found);
	assert_non_null(strstr(rec.msg, "another version"));
	assert_false(mfs_txn_dirty(t));
	mfs_txn_close(t);
	free(bytes);
}

/* ------------------------------------------------------------ (i) identity */

/* linear.onnx with every "fc.weight" spelt "fc.weighX": same size, other layout. */
static uint8_t *other_layout(size_t *len)
{
	uint8_t *b = slurp(LINEAR, len);
	int n = 0;
	for (size_t i = 0; i + 9 <= *len; i++)
		if (!memcmp(b + i, "fc.weight", 9)) {
			b[i + 8] = 'X';
			n++;
		}
	assert_true(n >= 2);
	return b;
}

static void set_mtime(const char *path, time_t sec)
{
	struct timespec ts[2] = {{sec, 0}, {sec, 0}};
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* Rewrite the file in place (same inode), as `cp` over it does. */
static void overwrite(const char *path, const uint8_t *bytes, size_t len)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, len), (ssize_t)len);
	close(fd);
}

static bool journal_exists(void)
{
	char j[300];
	snprintf(j, sizeof(j), "%s/.model.onnx.modelfs-journal", dir);
	return access(j, F_OK) == 0;
}

/*
 * Issue 11.1: another file of the same size copied over the model in place,
 * its mtime put back: ctime gives it away, the layout proves it, and the
 * commit is refused with the model, the edits and the journal untouched.
 */
static void same_size_and_mtime_other_layout(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	set_mtime(model, 1577836800);
	struct stat before;
	assert_int_equal(stat(model, &before), 0);
	mfs_txn *t = open_txn(model, NULL, NULL);
	float wv[10];
	stage_standard_edits(t, wv);
	size_t len, orig_len;
	uint8_t *c = other_layout(&len);
	uint8_t *orig = slurp(LINEAR, &orig_len);
	assert_int_equal(len, orig_len);
	struct timespec pause = {0, 20 * 1000 * 1000};
	nanosleep(&pause, NULL);        /* a ctime that differs at any granularity */
	overwrite(model, c, len);
	set_mtime(model, 1577836800);
	struct stat after;
	assert_int_equal(stat(model, &after), 0);
	assert_true(after.st_ino == before.st_ino && after.st_size == before.st_size &&
	            after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
	            after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
	for (int round = 0; round < 2; round++) {
		/* Twice: a refusal changes nothing, not even what it checks against. */
		struct mfs_txn_result res;
		assert_int_equal(mfs_txn_commit(t, &res), -ESTALE);
		assert_non_null(strstr(res.msg, "changed on disk"));
		assert_true(same_file(model, c, len));
		assert_true(mfs_txn_dirty(t));
		assert_true(journal_exists());
	}
	mfs_txn_close(t);
	assert_true(journal_exists());
	/* The journal is for the other version: set aside, never applied. */
	struct mfs_txn_recovery rec;
	t = open_txn(model, NULL, &rec);
	assert_false(rec.journal_found);
	assert_non_null(strstr(rec.msg, "another version"));
	assert_true(same_file(model, c, len));
	mfs_txn_close(t);
	free(c);
	free(orig);
}

/* A chmod changes only ctime: the same version, the commit goes ahead. */
static void mode_change_is_the_same_version(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	mfs_txn *t = open_txn(model, NULL, NULL);
	float wv[10], back[10];
	stage_standard_edits(t, wv);
	struct timespec pause = {0, 20 * 1000 * 1000};
	nanosleep(&pause, NULL);
	assert_int_equal(chmod(model, 0600), 0);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	struct stat st;
	assert_int_equal(stat(model, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	const struct mfs_tensor *w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_tensor_read(mfs_txn_model(t), w, back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 0);
}

/* A journal of an older modelfs (header version 1, 64 bytes) still replays. */
static void version1_journal_replays(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		mfs_txn *t = NULL;
		float wv[10];
		if (mfs_txn_open(&t, model, NULL, NULL, errbuf, sizeof(errbuf)) < 0)
			_exit(1);
		stage_standard_edits(t, wv);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char j[300];
	snprintf(j, sizeof(j), "%s/.model.onnx.modelfs-journal", dir);
	size_t len;
	uint8_t *b = slurp(j, &len);
	assert_non_null(b);
	assert_true(len > 96);
	assert_int_equal(b[8], 2);
	/* Version 1: the first 56 bytes, 4 reserved, the CRC; then the records. */
	uint8_t *v1 = malloc(len - 32);
	memcpy(v1, b, 56);
	v1[8] = 1;
	memset(v1 + 56, 0, 4);
	uint32_t crc = mfs_crc32(0, v1, 60);
	for (int i = 0; i < 4; i++)
		v1[60 + i] = (uint8_t)(crc >> (8 * i));
	memcpy(v1 + 64, b + 96, len - 96);
	spit(j, v1, len - 32);
	free(b);
	free(v1);

	struct mfs_txn_recovery rec;
	mfs_txn *t = open_txn(model, NULL, &rec);
	assert_true(rec.journal_found);
	assert_int_equal(rec.n_recovered, 3);
	float wv[10], back[10];
	fill_weights(wv, 10, 2.0f);
	const struct mfs_tensor *w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_txn_tensor_read(t, w, back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_tensor_read(mfs_txn_model(t), w, back, 40, 0), 40);
	assert_memory_equal(back, wv, 40);
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 0);
}

/* Two edits 1 MiB apart in the 4 MiB tensor of write_one_tensor_model(). */
static void stage_two_patches(mfs_txn *t)
{
	const struct mfs_tensor *x = find_tensor(mfs_txn_desc(t), "big");
	uint8_t edit[4096];
	memset(edit, 0x3f, sizeof(edit));
	assert_int_equal(mfs_txn_tensor_write(t, x, edit, sizeof(edit), 1 << 20), 4096);
	assert_int_equal(mfs_txn_tensor_write(t, x, edit, sizeof(edit), 2 << 20), 4096);
}

/*
 * An in-place commit of two patches killed at the first I/O call that
 * leaves the model neither old nor new (the redo log committed, one patch
 * written).  Returns the new model's bytes (malloc'd); the model is left
 * half patched.
 */
static uint8_t *torn_inplace(size_t *new_len)
{
	write_one_tensor_model(model, 4u << 20);
	size_t old_len;
	uint8_t *old = slurp(model, &old_len);
	struct mfs_txn_opts opts = {.mode = MFS_COMMIT_INPLACE};
	mfs_txn *t = open_txn(model, &opts, NULL);
	stage_two_patches(t);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	assert_string_equal(res.path, "inplace");
	mfs_txn_close(t);
	uint8_t *new_bytes = slurp(model, new_len);
	for (unsigned long k = 1; k < 200; k++) {
		spit(model, old, old_len);
		t = open_txn(model, &opts, NULL);
		stage_two_patches(t);
		fio_install();
		fio_crash_at(FIO_ANY, k);
		mfs_txn_commit(t, &res);
		mfs_txn_close(t);
		fio_uninstall();
		bool committing = false;
		int dfd = open(dir, O_PATH | O_DIRECTORY);
		int rc = mfs_commit_pending(dfd, "model.onnx", &committing);
		close(dfd);
		if (rc == 1 && committing && !same_file(model, old, old_len) &&
		    !same_file(model, new_bytes, *new_len)) {
			free(old);
			return new_bytes;
		}
		/* Not there yet: recover as a read-write open does, and
		 * drop the edits it brings back. */
		t = open_txn(model, &opts, NULL);
		mfs_txn_abort(t);
		mfs_txn_close(t);
	}
	fail_msg("no crash point left the model half patched");
	return NULL;
}

/* Issue 11.3: a read-only open never writes, and refuses a half-patched model. */
static void read_only_refuses_a_torn_model(void **state)
{
	(void)state;
	size_t new_len;
	uint8_t *new_bytes = torn_inplace(&new_len);
	size_t torn_len;
	uint8_t *torn = slurp(model, &torn_len);
	struct mfs_txn_opts ro = {.read_only = true};
	mfs_txn *t = NULL;
	assert_int_equal(mfs_txn_open(&t, model, &ro, NULL, errbuf, sizeof(errbuf)), -EBUSY);
	assert_non_null(strstr(errbuf, "modelfs recover"));
	assert_true(same_file(model, torn, torn_len));
	/* Read-write recovery finishes it. */
	struct mfs_txn_recovery rec;
	t = open_txn(model, NULL, &rec);
	assert_true(rec.redo_replayed);
	assert_true(same_file(model, new_bytes, new_len));
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 0);
	free(torn);
	free(new_bytes);
}

/* Recovery applies a redo log only to the layout it was written for. */
static void recovery_checks_the_layout(void **state)
{
	(void)state;
	size_t new_len, len;
	uint8_t *new_bytes = torn_inplace(&new_len);
	/* The same inode and size, another model: the tensor renamed. */
	uint8_t *c = slurp(model, &len);
	uint8_t *at = memmem(c, 64, "big", 3);
	assert_non_null(at);
	at[2] = 'x';
	overwrite(model, c, len);
	mfs_txn *t = NULL;
	assert_true(mfs_txn_open(&t, model, NULL, NULL, errbuf, sizeof(errbuf)) < 0);
	assert_non_null(strstr(errbuf, "another layout"));
	assert_true(same_file(model, c, len));
	char redo[300];
	snprintf(redo, sizeof(redo), "%s/.model.onnx.modelfs-redo", dir);
	assert_int_equal(access(redo, F_OK), 0);                /* kept */
	/* A read-only open refuses too, and writes nothing. */
	struct mfs_txn_opts ro = {.read_only = true};
	assert_int_equal(mfs_txn_open(&t, model, &ro, NULL, errbuf, sizeof(errbuf)), -EBUSY);
	assert_true(same_file(model, c, len));
	free(c);
	free(new_bytes);
}

/*
 * Issue 11.4: while another open has the model (a read-only mount), an
 * in-place commit is not allowed to patch under it: the commit rewrites,
 * and the reader keeps seeing one whole version.
 */
static void a_second_reader_forces_a_rewrite(void **state)
{
	(void)state;
	const uint64_t n = 4ull << 20;
	write_one_tensor_model(model, n);
	struct mfs_txn_opts ro = {.read_only = true}, ip = {.mode = MFS_COMMIT_INPLACE};
	mfs_txn *r = open_txn(model, &ro, NULL);
	mfs_txn *t = open_txn(model, &ip, NULL);
	const struct mfs_tensor *x = find_tensor(mfs_txn_desc(t), "big");
	uint8_t edit[4096], back[4096], want[4096];
	memset(edit, 0x3f, sizeof(edit));
	const struct mfs_tensor *rx = find_tensor(mfs_txn_desc(r), "big");
	assert_int_equal(mfs_txn_tensor_read(r, rx, want, sizeof(want), 8192), 4096);
	assert_int_equal(mfs_txn_tensor_write(t, x, edit, sizeof(edit), 8192), 4096);
	struct mfs_txn_result res;
	/* A failed attempt first: the shared lock outlives the refused
	 * upgrade (Linux drops a flock being converted), so nothing else can
	 * take the file exclusively while this mount still reads it. */
	fio_install();
	fio_fail_nth(FIO_RENAMEAT, 1, EIO);
	assert_true(mfs_txn_commit(t, &res) < 0);
	fio_uninstall();
	assert_true(mfs_txn_dirty(t));
	int probe = open(model, O_RDONLY);
	assert_true(probe >= 0);
	assert_int_equal(flock(probe, LOCK_EX | LOCK_NB), -1);
	assert_int_equal(errno, EWOULDBLOCK);
	mfs_txn_close(r);
	assert_int_equal(flock(probe, LOCK_EX | LOCK_NB), -1);  /* t's, still */
	close(probe);
	r = open_txn(model, &ro, NULL);
	rx = find_tensor(mfs_txn_desc(r), "big");
	assert_int_equal(commit(t, &res), 0);
	assert_string_equal(res.path, "rewrite");
	/* The reader still has the old inode: the old bytes. */
	assert_int_equal(mfs_txn_tensor_read(r, rx, back, sizeof(back), 8192), 4096);
	assert_memory_equal(back, want, sizeof(back));
	mfs_txn_close(r);
	/* Alone now, the next commit patches in place. */
	memset(edit, 0x40, sizeof(edit));
	x = find_tensor(mfs_txn_desc(t), "big");
	assert_int_equal(mfs_txn_tensor_write(t, x, edit, sizeof(edit), 8192), 4096);
	assert_int_equal(commit(t, &res), 0);
	assert_string_equal(res.path, "inplace");
	mfs_txn_close(t);
	/* And an open during an in-place commit's patching waits or is told so;
	 * the lock is held by the commit only, so a later open goes through. */
	r = open_txn(model, &ro, NULL);
	mfs_txn_close(r);
	assert_int_equal(count_others("model.onnx"), 0);
}

/* Issue 11.6: a commit that failed with nobody to tell leaves a note. */
static void failure_note_lifecycle(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	mfs_txn *t = open_txn(model, NULL, NULL);
	float wv[10];
	stage_standard_edits(t, wv);
	char msg[256];
	int64_t when = 0;
	assert_int_equal(mfs_txn_failure_note(model, msg, sizeof(msg), &when), -ENOENT);
	assert_int_equal(mfs_txn_note_failure(t, "commit refused: disk full"), 0);
	mfs_txn_close(t);
	assert_int_equal(mfs_txn_failure_note(model, msg, sizeof(msg), &when), 0);
	assert_string_equal(msg, "commit refused: disk full");
	assert_true(when > 0 && llabs((long long)(when - time(NULL))) < 60);
	/* The next open says so, and the status keeps saying it. */
	struct mfs_txn_recovery rec;
	t = open_txn(model, NULL, &rec);
	assert_non_null(strstr(rec.msg, "commit refused: disk full"));
	assert_true(rec.journal_found);
	char status[4096];
	mfs_txn_status(t, status, sizeof(status));
	assert_non_null(strstr(status, "disk full"));
	/* A successful commit removes it, and the status forgets it. */
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	assert_int_equal(mfs_txn_failure_note(model, msg, sizeof(msg), &when), -ENOENT);
	mfs_txn_status(t, status, sizeof(status));
	assert_null(strstr(status, "disk full"));
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 0);
	/* So does an abort. */
	t = open_txn(model, NULL, NULL);
	assert_int_equal(mfs_txn_note_failure(t, "x"), 0);
	assert_int_equal(mfs_txn_abort(t), 0);
	assert_int_equal(mfs_txn_failure_note(model, msg, sizeof(msg), NULL), -ENOENT);
	mfs_txn_close(t);
}

/* Edits of tensors that cannot be edited say so, never ENOSYS or EIO. */
static void refusals(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	struct mfs_txn_opts ro = {.read_only = true};
	mfs_txn *t = open_txn(model, &ro, NULL);
	const struct mfs_tensor *w = find_tensor(mfs_txn_desc(t), "fc.weight");
	assert_int_equal(mfs_txn_tensor_write(t, w, "x", 1, 0), -EROFS);
	assert_int_equal(mfs_txn_prop_set(t, "a", "b", 1), -EROFS);
	struct mfs_txn_result res;
	assert_int_equal(mfs_txn_commit(t, &res), 0);
	assert_string_equal(res.path, "none");
	mfs_txn_close(t);
	assert_int_equal(count_others("model.onnx"), 0);
}

/*
 * Graph fields (txn.h field_*): an attribute, a node name and an input
 * shape of examples/linear.onnx staged, checked at write, kept across a
 * close without commit (the journal replays them), set back to unstage,
 * committed, and the committed model re-read with the new values; the
 * served view before the commit is the committed file.
 */
static void graph_fields_commit(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	mfs_txn *t = open_txn(model, NULL, NULL);
	const struct mfs_graph *g = mfs_txn_desc(t)->graph;
	assert_non_null(g);
	assert_int_equal(g->n_nodes, 2);
	assert_string_equal(g->nodes[0].op_type, "Gemm");
	size_t ja = 0, jt = 0;
	for (size_t j = 0; j < g->nodes[0].n_attrs; j++) {
		if (!strcmp(g->nodes[0].attrs[j].name, "alpha"))
			ja = j;
		if (!strcmp(g->nodes[0].attrs[j].name, "transB"))
			jt = j;
	}
	uint64_t alpha = MFS_FIELD_ID(MFS_FIELD_NODE_ATTR, 0, ja);
	uint64_t transb = MFS_FIELD_ID(MFS_FIELD_NODE_ATTR, 0, jt);
	uint64_t name = MFS_FIELD_ID(MFS_FIELD_NODE_NAME, 1, 0);
	uint64_t shape = MFS_FIELD_ID(MFS_FIELD_INPUT_SHAPE, 0, 0);
	assert_true(mfs_txn_field_writable(t, alpha));
	assert_true(mfs_txn_field_writable(t, name));
	assert_true(mfs_txn_field_writable(t, shape));
	assert_false(mfs_txn_field_writable(t, MFS_FIELD_ID(MFS_FIELD_NODE_ATTR, 1, 0)));
	assert_false(mfs_txn_field_writable(t, MFS_FIELD_ID(MFS_FIELD_NODE_NAME, 2, 0)));
	assert_false(mfs_txn_field_writable(t, MFS_FIELD_ID(MFS_FIELD_INPUT_SHAPE, 0, 1)));
	assert_false(mfs_txn_field_writable(t, MFS_FIELD_ID(MFS_FIELD_NODE_DOC, 0, 0)));
	assert_false(mfs_txn_field_writable(t, 0));
	assert_false(mfs_txn_field_writable(t, UINT64_MAX));

	/* Values checked at write. */
	assert_int_equal(mfs_txn_field_set(t, transb, "1\n", 2, "x\n", 2), -EINVAL);
	assert_int_equal(mfs_txn_field_set(t, transb, "1\n", 2, "9223372036854775808\n", 20),
	                 -EINVAL);
	assert_int_equal(mfs_txn_field_set(t, alpha, "1\n", 2, "3.5e38\n", 7), -EINVAL);
	assert_int_equal(mfs_txn_field_set(t, alpha, "1\n", 2, "nan\n2\n", 6), -EINVAL);
	assert_int_equal(mfs_txn_field_set(t, shape, "", 0, "1,-1", 4), -EINVAL);
	assert_int_equal(mfs_txn_field_set(t, name, "", 0, "a\nb", 3), -EINVAL);
	assert_int_equal(mfs_txn_field_set(t, UINT64_MAX, "", 0, "1", 1), -EACCES);
	char *txt;
	size_t len;
	assert_int_equal(mfs_txn_field_get(t, alpha, &txt, &len), 0);
	assert_null(txt);

	assert_int_equal(mfs_txn_field_set(t, alpha, "1\n", 2, " 0x1p-2 \n", 9), 0);
	assert_int_equal(mfs_txn_field_set(t, name, "/relu/Relu\n", 11, "act%0A\n", 7), 0);
	assert_int_equal(mfs_txn_field_set(t, shape, "batch_size,10\n", 14, "?,10\n", 5), 0);
	assert_int_equal(mfs_txn_field_get(t, alpha, &txt, &len), 1);
	assert_int_equal(len, 9);
	assert_memory_equal(txt, " 0x1p-2 \n", 9);
	free(txt);
	mfs_txn_close(t);

	/* Reopened: the journal offers them again. */
	struct mfs_txn_recovery rec;
	t = open_txn(model, NULL, &rec);
	assert_int_equal(mfs_txn_field_get(t, shape, &txt, &len), 1);
	assert_memory_equal(txt, "?,10\n", 5);
	free(txt);
	/* Set back to the model's text: unstaged. */
	assert_int_equal(mfs_txn_field_set(t, shape, "batch_size,10\n", 14, "batch_size,10", 13), 0);
	assert_int_equal(mfs_txn_field_get(t, shape, &txt, &len), 0);
	assert_int_equal(mfs_txn_field_set(t, shape, "batch_size,10\n", 14, "N,10\n", 5), 0);

	size_t vlen;
	uint8_t *view = read_view(t, &vlen);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);
	assert_true(same_file(model, view, vlen));
	free(view);
	g = mfs_txn_desc(t)->graph;
	assert_memory_equal(g->nodes[0].attrs[ja].text, "0.25\n", 5);
	assert_string_equal(g->nodes[1].name, "act\n");
	assert_int_equal(g->inputs[0].shape.rank, 2);
	assert_string_equal(g->inputs[0].shape.dims[0].param, "N");
	assert_int_equal(g->inputs[0].shape.dims[1].value, 10);
	assert_int_equal(mfs_txn_field_get(t, alpha, &txt, &len), 0);
	mfs_txn_close(t);
}

/*
 * Tensor renames (field kind TENSOR_NAME; on the mount `mv` of a weights/
 * directory, a `name` file staying read-only: rsync -a copies them): the
 * initializer and the node input that reads it are renamed; a name the
 * graph uses already is refused when staged (EEXIST) and the model stays
 * byte-identical.
 */
static void onnx_initializer_rename(void **state)
{
	(void)state;
	copy_file(LINEAR, model);
	mfs_txn *t = open_txn(model, NULL, NULL);
	const struct mfs_desc *d = mfs_txn_desc(t);
	const struct mfs_tensor *w = find_tensor(d, "fc.weight");
	assert_non_null(w);
	uint64_t id = MFS_FIELD_ID(MFS_FIELD_TENSOR_NAME, w->id, 0);
	assert_true(mfs_txn_field_writable(t, id));
	assert_int_equal(mfs_txn_field_set(t, id, "fc.weight\n", 10, "\n", 1), -EINVAL);
	size_t len0;
	uint8_t *before = slurp(model, &len0);
	assert_int_equal(mfs_txn_field_set(t, id, "fc.weight\n", 10, "input\n", 6), -EEXIST);
	struct mfs_txn_result res;
	assert_true(same_file(model, before, len0));
	free(before);
	assert_int_equal(mfs_txn_field_set(t, id, "fc.weight\n", 10, "head.w\n", 7), 0);
	assert_int_equal(commit(t, &res), 0);
	d = mfs_txn_desc(t);
	assert_non_null(find_tensor(d, "head.w"));
	assert_null(find_tensor(d, "fc.weight"));
	const struct mfs_node *gemm = &d->graph->nodes[0];
	bool seen = false;
	for (size_t k = 0; k < gemm->n_inputs; k++)
		seen |= strcmp(gemm->inputs[k], "head.w") == 0;
	assert_true(seen);
	mfs_txn_close(t);
}

/* A safetensors tensor renamed through the txn (TENSOR_NAME): the header
 * is rewritten with the new name and the bytes kept; the name of another
 * tensor is refused when staged (EEXIST). */
static void safetensors_rename(void **state)
{
	(void)state;
	char st[300];
	snprintf(st, sizeof(st), "%s/model.safetensors", dir);
	uint8_t buf[1024];
	size_t len = st_file(buf);
	spit(st, buf, len);
	mfs_txn *t = open_txn(st, NULL, NULL);
	const struct mfs_desc *d = mfs_txn_desc(t);
	const struct mfs_tensor *b = find_tensor(d, "b");
	uint64_t id = MFS_FIELD_ID(MFS_FIELD_TENSOR_NAME, b->id, 0);
	assert_true(mfs_txn_field_writable(t, id));
	assert_int_equal(mfs_txn_field_set(t, id, "b\n", 2, "__metadata__", 12), -EINVAL);
	assert_int_equal(mfs_txn_field_set(t, id, "b\n", 2, "c\n", 2), -EEXIST);
	struct mfs_txn_result res;
	assert_true(same_file(st, buf, len));
	assert_int_equal(mfs_txn_field_set(t, id, "b\n", 2, "layer.b\n", 8), 0);
	assert_int_equal(commit(t, &res), 0);
	d = mfs_txn_desc(t);
	b = find_tensor(d, "layer.b");
	assert_non_null(b);
	assert_null(find_tensor(d, "b"));
	uint64_t n = 0;
	uint8_t got[32];
	assert_int_equal(mfs_txn_tensor_size(&n, t, b), 0);
	assert_int_equal(n, 32);
	assert_int_equal(mfs_txn_tensor_read(t, b, got, 32, 0), 32);
	uint64_t hl0;
	memcpy(&hl0, buf, 8);
	assert_memory_equal(got, buf + 8 + hl0 + 24, 32);
	mfs_txn_close(t);
}

/* safetensors deletions through the txn (TENSOR_DELETE, `rm -r` on the
 * mount): data staged for a tensor that is then deleted is dropped, the
 * later tensor moves down to offset 0, __metadata__ is kept, the header is
 * padded to 8; the reopened model has one tensor, read from its new place.
 * Then the last one goes: the file is the 8-byte length and the metadata. */
static void safetensors_delete(void **state)
{
	(void)state;
	char st[300];
	snprintf(st, sizeof(st), "%s/model.safetensors", dir);
	uint8_t buf[1024];
	size_t len = st_file(buf);
	spit(st, buf, len);
	uint64_t hl0;
	memcpy(&hl0, buf, 8);
	mfs_txn *t = open_txn(st, NULL, NULL);
	const struct mfs_desc *d = mfs_txn_desc(t);
	const struct mfs_tensor *a = find_tensor(d, "a"), *b = find_tensor(d, "b");
	uint64_t ida = MFS_FIELD_ID(MFS_FIELD_TENSOR_DELETE, a->id, 0);
	uint64_t idb = MFS_FIELD_ID(MFS_FIELD_TENSOR_DELETE, b->id, 0);
	assert_true(mfs_txn_field_writable(t, ida));
	assert_int_equal(mfs_txn_field_set(t, ida, "", 0, "2", 1), -EINVAL);
	float av[6] = {1, 2, 3, 4, 5, 6};
	assert_int_equal(mfs_txn_tensor_write(t, a, av, 24, 0), 24);
	assert_int_equal(mfs_txn_field_set(t, ida, "", 0, "1", 1), 0);
	assert_int_equal(mfs_txn_field_set(t, idb, "", 0, "1", 1), 0);
	struct mfs_txn_result res;
	assert_int_equal(commit(t, &res), 0);

	const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
	                "\"c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}";
	size_t hl = strlen(h), pad = (8 - hl % 8) % 8, nlen;
	uint8_t *now = slurp(st, &nlen);
	assert_int_equal(nlen, 8 + hl + pad + 6);
	uint64_t n;
	memcpy(&n, now, 8);
	assert_int_equal(n, hl + pad);
	assert_memory_equal(now + 8, h, hl);
	for (size_t i = 0; i < pad; i++)
		assert_int_equal(now[8 + hl + i], ' ');
	assert_memory_equal(now + 8 + n, buf + 8 + hl0 + 56, 6);
	free(now);

	d = mfs_txn_desc(t);
	assert_int_equal(d->n_tensors, 1);
	const struct mfs_tensor *c = find_tensor(d, "c");
	assert_non_null(c);
	uint8_t got[6];
	assert_int_equal(mfs_txn_tensor_read(t, c, got, 6, 0), 6);
	assert_memory_equal(got, buf + 8 + hl0 + 56, 6);

	assert_int_equal(mfs_txn_field_set(t, MFS_FIELD_ID(MFS_FIELD_TENSOR_DELETE, c->id, 0),
	                                   "", 0, "1", 1), 0);
	assert_int_equal(commit(t, &res), 0);
	assert_int_equal(mfs_txn_desc(t)->n_tensors, 0);
	const char *h2 = "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"}}";
	hl = strlen(h2);
	pad = (8 - hl % 8) % 8;
	now = slurp(st, &nlen);
	assert_int_equal(nlen, 8 + hl + pad);
	assert_memory_equal(now + 8, h2, hl);
	free(now);
	mfs_txn_close(t);
}

/* safetensors additions through the txn (TENSOR_ADD, `mkdir` on the
 * mount): a taken name is EEXIST, the new tensor starts float32 scalar and
 * empty, a commit is refused until data = dtype x shape (the model
 * untouched), then it is appended and the reopened model has it; an added
 * tensor unstaged leaves nothing to commit. */
static void safetensors_add(void **state)
{
	(void)state;
	char st[300];
	snprintf(st, sizeof(st), "%s/model.safetensors", dir);
	uint8_t buf[1024];
	size_t len = st_file(buf);
	spit(st, buf, len);
	mfs_txn *t = open_txn(st, NULL, NULL);
	size_t n0 = mfs_txn_desc(t)->n_tensors;
	uint64_t id = 0;
	assert_int_equal(mfs_txn_tensor_add(t, "a", &id), -EEXIST);
	assert_int_equal(mfs_txn_tensor_add(t, "z", &id), 0);
	assert_int_equal(id, n0);
	assert_int_equal(mfs_txn_tensor_add(t, "z", &id), -EEXIST);
	const struct mfs_tensor **add = NULL;
	size_t n_add = 0;
	assert_int_equal(mfs_txn_added(&add, &n_add, t), 0);
	assert_int_equal(n_add, 1);
	const struct mfs_tensor *z = add[0];
	free(add);
	assert_true(mfs_txn_tensor_is_added(t, z));
	uint64_t size = 1;
	assert_int_equal(mfs_txn_tensor_size(&size, t, z), 0);
	assert_int_equal(size, 0);
	int32_t zv[2] = {7, -7};
	assert_int_equal(mfs_txn_set_dtype(t, z, "int32", 5), 0);
	assert_int_equal(mfs_txn_set_shape(t, z, "3", 1), 0);
	assert_int_equal(mfs_txn_tensor_write(t, z, zv, 8, 0), 8);
	struct mfs_txn_result res;
	assert_int_not_equal(commit(t, &res), 0);       /* 8 bytes, int32[3] needs 12 */
	size_t nlen;
	uint8_t *now = slurp(st, &nlen);
	assert_int_equal(nlen, len);
	assert_memory_equal(now, buf, len);
	free(now);
	assert_int_equal(mfs_txn_set_shape(t, z, "2", 1), 0);
	assert_int_equal(commit(t, &res), 0);
	const struct mfs_desc *d = mfs_txn_desc(t);
	assert_int_equal(d->n_tensors, n0 + 1);
	const struct mfs_tensor *z2 = find_tensor(d, "z");
	assert_non_null(z2);
	assert_int_equal(z2->id, n0);   /* appended: the last offsets */
	assert_int_equal(z2->dtype, MFS_DT_INT32);
	int32_t got[2];
	assert_int_equal(mfs_txn_tensor_read(t, z2, got, 8, 0), 8);
	assert_memory_equal(got, zv, 8);
	assert_false(mfs_txn_tensor_is_added(t, z));

	/* Added, then unstaged: nothing to commit, the file as it was. */
	now = slurp(st, &len);
	assert_int_equal(mfs_txn_tensor_add(t, "y", &id), 0);
	assert_int_equal(mfs_txn_added(&add, &n_add, t), 0);
	assert_int_equal(n_add, 1);
	assert_int_equal(mfs_txn_tensor_write(t, add[0], zv, 4, 0), 4);
	assert_int_equal(mfs_txn_tensor_unadd(t, add[0]), 0);
	assert_int_equal(mfs_txn_tensor_unadd(t, add[0]), -ENOENT);
	free(add);
	assert_false(mfs_txn_dirty(t));
	assert_int_equal(commit(t, &res), 0);
	uint8_t *after = slurp(st, &nlen);
	assert_int_equal(nlen, len);
	assert_memory_equal(after, now, len);
	free(after);
	free(now);
	mfs_txn_close(t);
}

int main(void)
{
	have_python = access(PY, X_OK) == 0 &&
	              system(PY " -c 'import onnx, numpy' >/dev/null 2>&1") == 0;
	if (!have_python)
		printf("python3-onnx not found: the independent checks are skipped\n");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(linear_weights_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(scratch_adopted_by_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(meta_and_props_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(props_index_follows_edits, setup, teardown),
		cmocka_unit_test_setup_teardown(shape_and_dtype_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(typed_fields_convert, setup, teardown),
		cmocka_unit_test_setup_teardown(safetensors_edits, setup, teardown),
		cmocka_unit_test_setup_teardown(dead_daemon_edits_come_back, setup, teardown),
		cmocka_unit_test_setup_teardown(every_commit_call_can_fail, setup, teardown),
		cmocka_unit_test_setup_teardown(versioned_commit_faults_leave_model_and_version_whole,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(version_templates_are_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(scratch_moves_with_the_version, setup, teardown),
		cmocka_unit_test_setup_teardown(big_model_inplace, setup, teardown),
		cmocka_unit_test_setup_teardown(diff_runs_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(changed_model_is_not_overwritten, setup, teardown),
		cmocka_unit_test_setup_teardown(readers_during_commits, setup, teardown),
		cmocka_unit_test_setup_teardown(same_size_and_mtime_other_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(mode_change_is_the_same_version, setup, teardown),
		cmocka_unit_test_setup_teardown(version1_journal_replays, setup, teardown),
		cmocka_unit_test_setup_teardown(read_only_refuses_a_torn_model, setup, teardown),
		cmocka_unit_test_setup_teardown(recovery_checks_the_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(a_second_reader_forces_a_rewrite, setup, teardown),
		cmocka_unit_test_setup_teardown(failure_note_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(graph_fields_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(onnx_initializer_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(safetensors_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(safetensors_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(safetensors_add, setup, teardown),
		cmocka_unit_test_setup_teardown(corpus_commits_are_identical, setup, teardown),
		cmocka_unit_test_setup_teardown(corpus_all_tensors_edited, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

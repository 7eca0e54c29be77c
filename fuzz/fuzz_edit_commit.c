/*
 * fuzz/fuzz_edit_commit.c — stateful libFuzzer target: the input is a
 * program of edits applied through mfs_txn_* to a copy of
 * examples/linear.onnx, with commits and aborts among them, checked
 * against an in-memory model of what the file should hold.
 *
 * Input layout: byte 0 picks the commit mode (auto, rewrite or in place,
 * commit=inplace reaches the in-place path on any model);
 * then each op is one byte (op % 10) and its operands:
 *
 *   0 write     tensor, off (2 bytes, < 4096), len (1 byte, < 64), bytes
 *   1 truncate  tensor, size (2 bytes, < 4200)
 *   2 dtype     tensor, name index, newline flag
 *   3 shape     tensor, rank (< 4), dims (< 12 each), or a malformed text
 *   4 prop set  key index, value length, value bytes (mapped to printable)
 *   5 prop del  key index
 *   6 prop mv   key index, key index
 *   7 commit
 *   8 abort
 *   9 fix size  tensor: truncate to exactly dtype × shape
 *
 * and a final commit.  Oracles: every call succeeds or fails as its
 * contract says and a failed call changes nothing; reads through the
 * transaction always equal the expectation (read-your-writes); a commit
 * either succeeds, and then the file re-opened from disk by a fresh
 * mfs_model_open() holds exactly the expected tensors (dtype, shape,
 * bytes) and props, or fails, and then the file is byte-identical to what
 * it was before the commit and the edits are still staged.  A commit of
 * edits whose sizes all match dtype × shape must succeed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "modelfs/txn.h"

#define MAX_T   4
#define MAX_LEN 8192
#define MAX_P   8

struct exp_tensor {
	uint8_t bytes[MAX_LEN];
	size_t len;
	int32_t dtype;
	int64_t dims[8];
	size_t rank;
};

struct exp_prop {
	char key[16];
	char value[64];
	size_t len;
};

struct expect {
	struct exp_tensor t[MAX_T];
	size_t nt;
	struct exp_prop p[MAX_P];
	size_t np;
};

static struct expect cur, committed;
static uint8_t *linear;
static size_t linear_len;

struct cursor {
	const uint8_t *p;
	size_t n;
};

static unsigned get8(struct cursor *c)
{
	if (!c->n)
		return 0;
	c->n--;
	return *c->p++;
}

static unsigned get16(struct cursor *c)
{
	unsigned a = get8(c);
	return a | get8(c) << 8;
}

static const char *const dtypes[] = {
	"float32", "float16", "bfloat16", "int8", "uint8", "int16", "int32", "int64",
	"uint64", "double", "bool", "int4", "uint4", "float8e4m3fn", "string", "nope", "",
	"complex64",
};
static const char *const keys[] = { "a", "b", "k\xc3\xa9y", "x y" };

/* ------------------------------------------------------------ expectation */

static int find_prop(const struct expect *e, const char *key)
{
	for (size_t i = 0; i < e->np; i++)
		if (!strcmp(e->p[i].key, key))
			return (int)i;
	return -1;
}

static void remove_prop(struct expect *e, int i)
{
	memmove(&e->p[i], &e->p[i + 1], (e->np - (size_t)i - 1) * sizeof(e->p[0]));
	e->np--;
}

static bool size_matches(const struct exp_tensor *x)
{
	uint64_t want;
	return mfs_tensor_nbytes(&want, x->dtype, x->dims, x->rank) == 0 && want == x->len;
}

/* The transaction's view equals `cur`. */
static void check_view(mfs_txn *t)
{
	static uint8_t buf[MAX_LEN + 16];
	const struct mfs_desc *d = mfs_txn_desc(t);
	FZ_CHECK(d->n_tensors == cur.nt);
	for (size_t i = 0; i < cur.nt; i++) {
		const struct mfs_tensor *x = d->tensors[i];
		uint64_t size;
		FZ_CHECK(mfs_txn_tensor_size(&size, t, x) == 0);
		if (size != cur.t[i].len)
			fprintf(stderr, "tensor %zu: size %llu, expected %zu\n", i,
			        (unsigned long long)size, cur.t[i].len);
		FZ_CHECK(size == cur.t[i].len);
		ssize_t n = mfs_txn_tensor_read(t, x, buf, sizeof(buf), 0);
		FZ_CHECK(n == (ssize_t)cur.t[i].len);
		FZ_CHECK(memcmp(buf, cur.t[i].bytes, cur.t[i].len) == 0);
		int32_t dtype;
		int64_t dims[64];
		size_t rank;
		FZ_CHECK(mfs_txn_tensor_type(t, x, &dtype, dims, 64, &rank) == 0);
		FZ_CHECK(dtype == cur.t[i].dtype && rank == cur.t[i].rank);
		FZ_CHECK(memcmp(dims, cur.t[i].dims, rank * sizeof(dims[0])) == 0);
	}
	struct mfs_meta *props = NULL;
	size_t np = 0;
	FZ_CHECK(mfs_txn_props(&props, &np, t) == 0);
	FZ_CHECK(np == cur.np);
	for (size_t i = 0; i < np; i++) {
		int k = find_prop(&cur, props[i].name);
		FZ_CHECK(k >= 0);
		FZ_CHECK(props[i].len == cur.p[k].len);
		FZ_CHECK(memcmp(props[i].value, cur.p[k].value, cur.p[k].len) == 0);
	}
	mfs_txn_props_free(props, np);
}

/* The file on disk, opened afresh, equals `cur`. */
static void check_disk(const char *path)
{
	static uint8_t buf[MAX_LEN + 16];
	mfs_model *m = NULL;
	char err[512];
	int rc = mfs_model_open(&m, path, NULL, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "re-open after commit: %s\n", err);
	FZ_CHECK(rc == 0);
	const struct mfs_desc *d = mfs_model_desc(m);
	FZ_CHECK(d->n_tensors == cur.nt);
	for (size_t i = 0; i < cur.nt; i++) {
		const struct mfs_tensor *x = d->tensors[i];
		FZ_CHECK(x->dtype == cur.t[i].dtype && x->rank == cur.t[i].rank);
		FZ_CHECK(memcmp(x->dims, cur.t[i].dims, x->rank * sizeof(x->dims[0])) == 0);
		FZ_CHECK(x->nbytes == cur.t[i].len);
		FZ_CHECK(mfs_tensor_read(m, x, buf, sizeof(buf), 0) == (ssize_t)cur.t[i].len);
		FZ_CHECK(memcmp(buf, cur.t[i].bytes, cur.t[i].len) == 0);
	}
	FZ_CHECK(d->n_props == cur.np);
	for (size_t i = 0; i < d->n_props; i++) {
		int k = find_prop(&cur, d->props[i].name);
		FZ_CHECK(k >= 0);
		FZ_CHECK(d->props[i].len == cur.p[k].len);
		FZ_CHECK(memcmp(d->props[i].value, cur.p[k].value, cur.p[k].len) == 0);
	}
	mfs_model_close(m);
}

static void load_expectation(mfs_txn *t)
{
	memset(&cur, 0, sizeof(cur));
	const struct mfs_desc *d = mfs_txn_desc(t);
	FZ_CHECK(d->n_tensors <= MAX_T);
	cur.nt = d->n_tensors;
	for (size_t i = 0; i < cur.nt; i++) {
		const struct mfs_tensor *x = d->tensors[i];
		FZ_CHECK(x->nbytes <= MAX_LEN && x->rank <= 8);
		cur.t[i].len = x->nbytes;
		FZ_CHECK(mfs_tensor_read(mfs_txn_model(t), x, cur.t[i].bytes, MAX_LEN, 0) ==
		         (ssize_t)x->nbytes);
		cur.t[i].dtype = x->dtype;
		cur.t[i].rank = x->rank;
		memcpy(cur.t[i].dims, x->dims, x->rank * sizeof(x->dims[0]));
	}
	FZ_CHECK(d->n_props == 0);      /* linear.onnx has none; the key table relies on it */
	committed = cur;
}

/* ------------------------------------------------------------ operations */

static void do_commit(mfs_txn *t, const char *path)
{
	size_t before_len;
	uint8_t *before = fz_slurp(path, &before_len);
	FZ_CHECK(before != NULL);
	bool valid = true;
	for (size_t i = 0; i < cur.nt; i++)
		valid &= size_matches(&cur.t[i]);

	struct mfs_txn_result res;
	memset(&res, 0, sizeof(res));
	int rc = mfs_txn_commit(t, &res);
	if (rc == 0) {
		FZ_CHECK(valid);
		check_disk(path);
		committed = cur;
	} else {
		if (valid)
			fprintf(stderr, "commit of a valid edit set failed: %s\n", res.msg);
		FZ_CHECK(!valid);
		FZ_CHECK(res.msg[0] != '\0');
		size_t after_len;
		uint8_t *after = fz_slurp(path, &after_len);
		FZ_CHECK(after != NULL);
		FZ_CHECK(after_len == before_len && memcmp(after, before, before_len) == 0);
		free(after);
	}
	free(before);
	check_view(t);
}

static void run_op(mfs_txn *t, struct cursor *c, const char *path)
{
	unsigned op = get8(c) % 10;
	size_t ti = get8(c) % cur.nt;
	if (getenv("MFS_FUZZ_TRACE"))
		fprintf(stderr, "op %u tensor %zu (len %zu)\n", op, ti, cur.t[ti].len);
	const struct mfs_tensor *x = mfs_txn_desc(t)->tensors[ti];
	struct exp_tensor *e = &cur.t[ti];
	int rc;

	switch (op) {
	case 0: {
		size_t off = get16(c) % 4096, len = get8(c) % 64;
		uint8_t data[64];
		for (size_t i = 0; i < len; i++)
			data[i] = (uint8_t)get8(c);
		ssize_t n = mfs_txn_tensor_write(t, x, data, len, off);
		if (getenv("MFS_FUZZ_TRACE"))
			fprintf(stderr, "  write off %zu len %zu -> %zd\n", off, len, n);
		FZ_CHECK(n == (ssize_t)len);
		if (len && off + len > e->len) {      /* a write of 0 bytes extends nothing */
			if (off > e->len)
				memset(e->bytes + e->len, 0, off - e->len);
			e->len = off + len;
		}
		memcpy(e->bytes + off, data, len);
		break;
	}
	case 1: {
		size_t size = get16(c) % 4200;
		FZ_CHECK(mfs_txn_tensor_truncate(t, x, size) == 0);
		if (size > e->len)
			memset(e->bytes + e->len, 0, size - e->len);
		e->len = size;
		break;
	}
	case 2: {
		const char *name = dtypes[get8(c) % (sizeof(dtypes) / sizeof(dtypes[0]))];
		char text[32];
		int len = snprintf(text, sizeof(text), "%s%s", name, get8(c) & 1 ? "\n" : "");
		rc = mfs_txn_set_dtype(t, x, text, (size_t)len);
		int32_t dt = mfs_dtype_from_name(name);
		bool ok = dt >= 0 && mfs_dtype_bits(dt) != 0;
		FZ_CHECK(ok ? rc == 0 : rc == -EINVAL);
		if (ok)
			e->dtype = dt;
		break;
	}
	case 3: {
		char text[64];
		unsigned r = get8(c);
		if (r >= 0xf0) {
			static const char *const bad[] = { "-1", "1,,2", "x", "1,", ",", "1 2", "99999999999999999999999", "3,-0" };
			snprintf(text, sizeof(text), "%s", bad[r % 8]);
			rc = mfs_txn_set_shape(t, x, text, strlen(text));
			/* "3,-0" and friends: whatever the verdict, a refusal changes nothing. */
			if (rc == 0) {
				int32_t dtype;
				FZ_CHECK(mfs_txn_tensor_type(t, x, &dtype, e->dims, 8, &e->rank) == 0);
			}
			break;
		}
		size_t rank = r % 4, pos = 0;
		int64_t dims[4];
		text[0] = '\0';
		for (size_t i = 0; i < rank; i++) {
			dims[i] = get8(c) % 12;
			pos += (size_t)snprintf(text + pos, sizeof(text) - pos, "%s%lld", i ? "," : "",
			                        (long long)dims[i]);
		}
		if (get8(c) & 1)
			pos += (size_t)snprintf(text + pos, sizeof(text) - pos, "\n");
		FZ_CHECK(mfs_txn_set_shape(t, x, text, pos) == 0);
		e->rank = rank;
		memcpy(e->dims, dims, rank * sizeof(dims[0]));
		break;
	}
	case 4: {
		const char *key = keys[get8(c) % 4];
		char value[64];
		size_t len = get8(c) % 40;
		for (size_t i = 0; i < len; i++)
			value[i] = (char)(' ' + get8(c) % 95);
		bool nl = get8(c) & 1;
		if (nl)
			value[len] = '\n';
		FZ_CHECK(mfs_txn_prop_set(t, key, value, len + nl) == 0);
		int k = find_prop(&cur, key);
		if (k < 0) {
			FZ_CHECK(cur.np < MAX_P);
			k = (int)cur.np++;
			snprintf(cur.p[k].key, sizeof(cur.p[k].key), "%s", key);
		}
		memcpy(cur.p[k].value, value, len);
		cur.p[k].len = len;
		break;
	}
	case 5: {
		const char *key = keys[get8(c) % 4];
		int k = find_prop(&cur, key);
		rc = mfs_txn_prop_unlink(t, key);
		FZ_CHECK(k >= 0 ? rc == 0 : rc == -ENOENT);
		if (k >= 0)
			remove_prop(&cur, k);
		break;
	}
	case 6: {
		const char *from = keys[get8(c) % 4], *to = keys[get8(c) % 4];
		if (from == to)
			break;
		int kf = find_prop(&cur, from), kt = find_prop(&cur, to);
		rc = mfs_txn_prop_rename(t, from, to);
		FZ_CHECK(kf >= 0 ? rc == 0 : rc == -ENOENT);
		if (kf < 0)
			break;
		if (kt >= 0) {
			memcpy(cur.p[kt].value, cur.p[kf].value, cur.p[kf].len);
			cur.p[kt].len = cur.p[kf].len;
			remove_prop(&cur, kf);
		} else {
			snprintf(cur.p[kf].key, sizeof(cur.p[kf].key), "%s", to);
		}
		break;
	}
	case 7:
		do_commit(t, path);
		break;
	case 8:
		FZ_CHECK(mfs_txn_abort(t) == 0);
		cur = committed;
		check_view(t);
		break;
	case 9: {
		uint64_t want;
		if (mfs_tensor_nbytes(&want, e->dtype, e->dims, e->rank) == 0 && want <= 4096) {
			FZ_CHECK(mfs_txn_tensor_truncate(t, x, want) == 0);
			if (want > e->len)
				memset(e->bytes + e->len, 0, want - e->len);
			e->len = want;
		}
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!linear) {
		linear = fz_slurp(MFS_FUZZ_SRC "/examples/linear.onnx", &linear_len);
		FZ_CHECK(linear != NULL);
	}
	if (size < 1)
		return 0;
	fz_clear(fz_scratch(), NULL);
	const char *p = fz_path("m.onnx");
	char path[512];
	snprintf(path, sizeof(path), "%s", p);
	fz_write(path, linear, linear_len);

	struct cursor c = { data + 1, size - 1 };
	struct mfs_txn_opts opts;
	memset(&opts, 0, sizeof(opts));
	opts.mode = data[0] % 3 == 0 ? MFS_COMMIT_AUTO :
	            data[0] % 3 == 1 ? MFS_COMMIT_REWRITE : MFS_COMMIT_INPLACE;

	mfs_txn *t = NULL;
	struct mfs_txn_recovery rec;
	char err[512];
	FZ_CHECK(mfs_txn_open(&t, path, &opts, &rec, err, sizeof(err)) == 0);
	load_expectation(t);
	for (int i = 0; i < 64 && c.n; i++)
		run_op(t, &c, path);
	check_view(t);
	do_commit(t, path);
	mfs_txn_close(t);
	return 0;
}

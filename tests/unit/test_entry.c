/*
 * tests/unit/test_entry.c — the daemon's filesystem semantics without FUSE
 * (fs/entry.c, fs/namespace.c, fs/gen.c, fs/handle.c).
 *
 * A real transaction on a real model, and the daemon's state built on it
 * exactly as mount.modelfs builds it, but no mount: paths are resolved the
 * way lookups resolve them, and what a handler would reply (role, whether
 * it may be written, mode, size, text, timeouts) is checked directly.  What
 * is proved: each kind of entry is classified as the man page says, for
 * ONNX and safetensors, read-write and read-only, single and sharded; text
 * entries read and stage values with the same errors as through the mount;
 * props are created and removed; a scratch file renamed over `data` becomes
 * its content.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "tmpdir.h"

#define LINEAR MFS_TEST_DATA "/../../examples/linear.onnx"

struct mount {
	mfs_txn *txn;
	struct mfs_fs fs;
};

static void mount_open(struct mount *mt, const char *path, bool ro)
{
	char err[512];
	memset(mt, 0, sizeof(*mt));
	struct mfs_txn_opts opts = {.read_only = ro};
	assert_int_equal(mfs_txn_open(&mt->txn, path, &opts, NULL, err, sizeof(err)), 0);
	mt->fs.txn = mt->txn;
	mt->fs.read_only = ro;
	mt->fs.uid = 1234;
	mt->fs.gid = 5678;
	mt->fs.max_read = MFS_MAX_READ;
	assert_int_equal(mfs_fs_init(&mt->fs), 0);
}

static void mount_close(struct mount *mt)
{
	mfs_fs_fini(&mt->fs);
	mfs_txn_close(mt->txn);
}

/* Resolve `path` from the root the way lookups do; 0 or the first error. */
static int walk(struct mount *mt, const char *path, struct mfs_ent *out)
{
	struct mfs_fs *fs = &mt->fs;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_resolve(fs, MFS_ROOT_INO, out);
	const char *p = path;
	while (rc == 0 && *p) {
		size_t n = strcspn(p, "/");
		uint64_t ino;
		struct mfs_ent dir = *out;
		rc = mfs_ent_child(fs, &dir, p, n, &ino);
		if (rc == 0)
			rc = mfs_ent_resolve(fs, ino, out);
		p += n + (p[n] == '/');
	}
	pthread_rwlock_unlock(&fs->lock);
	return rc;
}

static struct mfs_ent at(struct mount *mt, const char *path)
{
	struct mfs_ent en;
	int rc = walk(mt, path, &en);
	if (rc != 0)
		fail_msg("%s: %s", path, strerror(-rc));
	return en;
}

static mode_t mode_of(struct mount *mt, const char *path)
{
	struct mfs_ent en = at(mt, path);
	struct stat st;
	pthread_rwlock_rdlock(&mt->fs.lock);
	assert_int_equal(mfs_ent_stat(&mt->fs, &en, &st), 0);
	pthread_rwlock_unlock(&mt->fs.lock);
	assert_int_equal(st.st_uid, 1234);
	assert_int_equal(st.st_gid, 5678);
	return st.st_mode;
}

/* The text of `path` now, malloc'd. */
static char *text(struct mount *mt, const char *path)
{
	struct mfs_ent en = at(mt, path);
	char *b = NULL;
	size_t n;
	pthread_rwlock_rdlock(&mt->fs.lock);
	assert_int_equal(mfs_ent_text_get(&mt->fs, &en, &b, &n), 0);
	pthread_rwlock_unlock(&mt->fs.lock);
	assert_int_equal(strlen(b), n);
	return b;
}

static int apply(struct mount *mt, const char *path, const char *value)
{
	struct mfs_ent en = at(mt, path);
	pthread_rwlock_rdlock(&mt->fs.lock);
	int rc = mfs_ent_text_apply(&mt->fs, &en, value, strlen(value));
	pthread_rwlock_unlock(&mt->fs.lock);
	return rc;
}

static void onnx_entries(void **state)
{
	(void)state;
	struct mount mt;
	tmp_copy(LINEAR, tmp_path("linear.onnx"));
	mount_open(&mt, tmp_path("linear.onnx"), false);
	struct {
		const char *path;
		enum mfs_role role;
		bool writable;
		mode_t mode;
	} want[] = {
		{"", R_DIR, false, S_IFDIR | 0555},
		{"linear.onnx", R_ROOT, false, S_IFREG | 0444},
		{"meta", R_DIR, false, S_IFDIR | 0555},
		{"meta/format", R_META, false, S_IFREG | 0444},
		{"meta/opset", R_META, false, S_IFREG | 0444},
		{"meta/producer_name", R_META, true, S_IFREG | 0644},
		{"meta/graph_name", R_META, true, S_IFREG | 0644},
		{"meta/props", R_DIR, false, S_IFDIR | 0755},
		{"nodes/0000-Gemm/op_type", R_TEXT, false, S_IFREG | 0444},
		{"weights/fc/weight", R_DIR, false, S_IFDIR | 0755},
		{"weights/fc/weight/data", R_DATA, true, S_IFREG | 0644},
		{"weights/fc/weight/dtype", R_DTYPE, true, S_IFREG | 0644},
		{"weights/fc/weight/shape", R_SHAPE, true, S_IFREG | 0644},
		{"weights/fc/weight/name", R_TEXT, false, S_IFREG | 0444},
		{".modelfs", R_CTL_DIR, false, S_IFDIR | 0555},
		{".modelfs/status", R_STATUS, false, S_IFREG | 0444},
		{".modelfs/commit", R_COMMIT, true, S_IFREG | 0200},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct mfs_ent en = at(&mt, want[i].path);
		if (en.role != want[i].role || en.writable != want[i].writable)
			fail_msg("%s: role %d writable %d", want[i].path, en.role, en.writable);
		assert_int_equal(mode_of(&mt, want[i].path), want[i].mode);
	}
	assert_true(at(&mt, "meta/props").creatable);
	assert_true(at(&mt, "meta/props").props);
	assert_false(at(&mt, "nodes").creatable);
	struct mfs_ent en;
	assert_int_equal(walk(&mt, "weights/nope", &en), -ENOENT);
	assert_int_equal(walk(&mt, "meta/format/x", &en), -ENOTDIR);
	/* Caching: the served root file and writable values are never trusted. */
	assert_true(mfs_ent_attr_timeout(&(struct mfs_ent){.role = R_ROOT}) == 0.0);
	en = at(&mt, "weights/fc/weight/dtype");
	assert_true(mfs_ent_attr_timeout(&en) == 0.0);
	en = at(&mt, "nodes/0000-Gemm/op_type");
	assert_true(mfs_ent_attr_timeout(&en) == MFS_CACHE_TIMEOUT);
	mount_close(&mt);
}

static blksize_t blksize_of(struct mount *mt, const char *path)
{
	struct mfs_ent en = at(mt, path);
	struct stat st;
	pthread_rwlock_rdlock(&mt->fs.lock);
	assert_int_equal(mfs_ent_stat(&mt->fs, &en, &st), 0);
	pthread_rwlock_unlock(&mt->fs.lock);
	return st.st_blksize;
}

/*
 * Directories advertise a small st_blksize (opendir sizes its getdents
 * buffer from it, and the kernel allocates that much per READDIRPLUS);
 * files keep the big one that sizes reads of tensors.
 */
static void directories_ask_for_small_listing_buffers(void **state)
{
	(void)state;
	struct mount mt;
	tmp_copy(LINEAR, tmp_path("linear.onnx"));
	mount_open(&mt, tmp_path("linear.onnx"), true);
	const char *dirs[] = {"", "meta", "weights/fc/weight", "nodes/0000-Gemm", ".modelfs"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		assert_int_equal(blksize_of(&mt, dirs[i]), MFS_DIR_BLKSIZE);
	assert_int_equal(blksize_of(&mt, "weights/fc/weight/data"), MFS_IO_SIZE);
	assert_int_equal(blksize_of(&mt, "linear.onnx"), MFS_IO_SIZE);
	assert_int_equal(blksize_of(&mt, "meta/format"), MFS_IO_SIZE);
	mount_close(&mt);
}

static void text_values(void **state)
{
	(void)state;
	struct mount mt;
	tmp_copy(LINEAR, tmp_path("linear.onnx"));
	mount_open(&mt, tmp_path("linear.onnx"), false);
	char *s = text(&mt, "weights/fc/weight/dtype");
	assert_string_equal(s, "float32\n");
	free(s);
	const struct mfs_tensor *w = at(&mt, "weights/fc/weight/data").t;
	char dims[64];
	mfs_dims_format(dims, sizeof(dims), w->dims, w->rank);
	strcat(dims, "\n");
	s = text(&mt, "weights/fc/weight/shape");
	assert_string_equal(s, dims);
	free(s);
	s = text(&mt, "meta/format");
	assert_string_equal(s, "onnx\n");
	free(s);

	/* Staged values read back at once; bad ones are refused. */
	assert_int_equal(apply(&mt, "weights/fc/weight/dtype", "float16\n"), 0);
	s = text(&mt, "weights/fc/weight/dtype");
	assert_string_equal(s, "float16\n");
	free(s);
	assert_int_equal(apply(&mt, "weights/fc/weight/dtype", "float6e2m3\n"), -EINVAL);
	assert_int_equal(apply(&mt, "weights/fc/weight/shape", "a,b\n"), -EINVAL);
	assert_int_equal(apply(&mt, "meta/producer_name", "me\n"), 0);
	s = text(&mt, "meta/producer_name");
	assert_string_equal(s, "me\n");
	free(s);
	assert_int_equal(apply(&mt, "meta/model_version", "x1\n"), -EINVAL);
	assert_int_equal(apply(&mt, "meta/format", "pb\n"), -EACCES);
	assert_int_equal(apply(&mt, "nodes/0000-Gemm/op_type", "Relu\n"), -EACCES);
	assert_true(mfs_txn_dirty(mt.txn));

	/* The data file's size and bytes come from the transaction. */
	struct mfs_ent d = at(&mt, "weights/fc/weight/data");
	uint64_t size;
	pthread_rwlock_rdlock(&mt.fs.lock);
	assert_int_equal(mfs_ent_size(&mt.fs, &d, &size), 0);
	assert_int_equal(size, w->nbytes);
	assert_int_equal(mfs_txn_tensor_write(mt.txn, w, "\1\2\3\4", 4, 0), 4);
	unsigned char b[4];
	assert_int_equal(mfs_ent_read(&mt.fs, &d, b, 4, 0), 4);
	assert_memory_equal(b, "\1\2\3\4", 4);
	pthread_rwlock_unlock(&mt.fs.lock);
	mount_close(&mt);
}

static void read_only_and_flat(void **state)
{
	(void)state;
	struct mount mt;
	tmp_copy(LINEAR, tmp_path("linear.onnx"));
	mount_open(&mt, tmp_path("linear.onnx"), true);
	assert_false(at(&mt, "weights/fc/weight/data").writable);
	assert_false(at(&mt, "weights/fc/weight").creatable);
	assert_false(at(&mt, "meta/producer_name").writable);
	assert_false(at(&mt, "meta/props").creatable);
	assert_false(at(&mt, ".modelfs/commit").writable);
	assert_int_equal(mode_of(&mt, "weights/fc/weight/data"), S_IFREG | 0444);
	mount_close(&mt);

	/* safetensors: a flat tree; a single file takes props, a shard set not. */
	tmp_write_safetensors(tmp_path("m.safetensors"));
	mount_open(&mt, tmp_path("m.safetensors"), false);
	assert_int_equal(at(&mt, "weights/w/data").role, R_DATA);
	assert_true(at(&mt, "weights/w/data").writable);
	assert_true(at(&mt, "meta/props").creatable);
	assert_true(at(&mt, "meta/props/k").writable);
	struct mfs_ent en;
	assert_int_equal(walk(&mt, "nodes", &en), -ENOENT);
	mount_close(&mt);
	tmp_write_safetensors(tmp_path("s1.safetensors"));
	const char *idx = "{\"weight_map\":{\"w\":\"s1.safetensors\"}}";
	tmp_write(tmp_path("m.safetensors.index.json"), idx, strlen(idx));
	mount_open(&mt, tmp_path("m.safetensors.index.json"), false);
	assert_int_equal(at(&mt, "s1.safetensors").role, R_SRC);
	assert_false(at(&mt, "weights/w/data").writable);
	assert_false(at(&mt, "weights/w/dtype").writable);
	assert_false(at(&mt, "meta/props").creatable);
	assert_false(at(&mt, "meta/props/k").writable);
	mount_close(&mt);
}

static void props_and_rename_over_data(void **state)
{
	(void)state;
	struct mount mt;
	tmp_copy(LINEAR, tmp_path("linear.onnx"));
	mount_open(&mt, tmp_path("linear.onnx"), false);
	struct mfs_fs *fs = &mt.fs;

	/* A new prop, its value, and its removal. */
	struct mfs_ent en, props = at(&mt, "meta/props");
	pthread_mutex_lock(&fs->slock);
	assert_int_equal(mfs_ns_make_file(fs, props.ino, "note", 0644, &en), 0);
	pthread_mutex_unlock(&fs->slock);
	assert_int_equal(en.role, R_PROP);
	assert_int_equal(apply(&mt, "meta/props/note", "hello\n"), 0);
	char *s = text(&mt, "meta/props/note");
	assert_string_equal(s, "hello\n");
	free(s);
	pthread_mutex_lock(&fs->slock);
	assert_int_equal(mfs_ns_make_file(fs, props.ino, "note", 0644, &en), -EEXIST);
	pthread_mutex_unlock(&fs->slock);
	assert_int_equal(mfs_ns_rename(fs, props.ino, "note", props.ino, "memo", 0), 0);
	assert_int_equal(walk(&mt, "meta/props/note", &en), -ENOENT);
	s = text(&mt, "meta/props/memo");
	assert_string_equal(s, "hello\n");
	free(s);
	assert_int_equal(mfs_ns_unlink(fs, props.ino, "memo"), 0);
	assert_int_equal(walk(&mt, "meta/props/memo", &en), -ENOENT);
	/* The model's own entries stay where they are. */
	struct mfs_ent meta = at(&mt, "meta");
	assert_int_equal(mfs_ns_unlink(fs, meta.ino, "format"), -EPERM);
	assert_int_equal(mfs_ns_rename(fs, meta.ino, "format", meta.ino, "fmt", 0), -EPERM);

	/* rsync's way: a scratch file beside `data`, renamed over it. */
	struct mfs_ent dir = at(&mt, "weights/fc/bias"), scratch;
	const struct mfs_tensor *b = at(&mt, "weights/fc/bias/data").t;
	pthread_mutex_lock(&fs->slock);
	assert_int_equal(mfs_ns_make_file(fs, dir.ino, ".data.XyZ", 0600, &scratch), 0);
	pthread_mutex_unlock(&fs->slock);
	assert_int_equal(scratch.role, R_SCRATCH);
	unsigned char *bytes = malloc(b->nbytes);
	memset(bytes, 0x5a, b->nbytes);
	assert_int_equal(mfs_txn_scratch_write(mt.txn, scratch.scratch, bytes, b->nbytes, 0),
	                 (ssize_t)b->nbytes);
	assert_int_equal(mfs_ns_rename(fs, dir.ino, ".data.XyZ", dir.ino, "data", 0), 0);
	struct mfs_ent d = at(&mt, "weights/fc/bias/data");
	unsigned char *got = malloc(b->nbytes);
	pthread_rwlock_rdlock(&fs->lock);
	assert_int_equal(mfs_ent_read(fs, &d, got, b->nbytes, 0), (ssize_t)b->nbytes);
	pthread_rwlock_unlock(&fs->lock);
	assert_memory_equal(got, bytes, b->nbytes);
	assert_int_equal(walk(&mt, "weights/fc/bias/.data.XyZ", &en), -ENOENT);
	/* And it commits. */
	struct mfs_txn_result res;
	assert_int_equal(mfs_fs_commit(fs, &res), 0);
	assert_false(mfs_txn_dirty(mt.txn));
	free(bytes);
	free(got);
	mount_close(&mt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(onnx_entries, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(text_values, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(directories_ask_for_small_listing_buffers, tmp_setup,
		                                tmp_teardown),
		cmocka_unit_test_setup_teardown(read_only_and_flat, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(props_and_rename_over_data, tmp_setup, tmp_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

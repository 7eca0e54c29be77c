/*
 * tests/unit/test_inval.c — what an edit tells the kernel about the root
 * model file's cached pages (fs/gen.c "The root model file", fs/inval.c),
 * without FUSE.
 *
 * The daemon's state is built on a real transaction as mount.modelfs builds
 * it, the invalidation threads are started with a notify function that
 * records what it is asked to send, and edits are made the way the handlers
 * make them (the txn call, then mfs_ent_wrote or mfs_ent_edited, then
 * mfs_inval_settle).  What is proved: nothing is sent while no handle of the
 * root file is open (the content version moves instead); a same-size write
 * of a tensor in the model file invalidates exactly its range of the file,
 * and has been sent when settle returns; any other edit invalidates the
 * whole file, and so does every later write until an abort or a commit;
 * scratch files change nothing; with -s every invalidation is whole;
 * adjacent ranges queued in a burst are sent as one.
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
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "tmpdir.h"

#define LINEAR MFS_TEST_DATA "/../../examples/linear.onnx"

/* What the fake notify was asked to send. */
struct sent {
	uint64_t ino, off, len;
	size_t name_len;
};
static pthread_mutex_t sent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sent sent[256];
static size_t n_sent;

static void fake_notify(void *session, uint64_t ino, const char *name, size_t name_len,
                        uint64_t off, uint64_t len)
{
	(void)session, (void)name;
	pthread_mutex_lock(&sent_lock);
	if (n_sent < sizeof(sent) / sizeof(sent[0]))
		sent[n_sent++] = (struct sent){ino, off, len, name_len};
	pthread_mutex_unlock(&sent_lock);
}

/* The root-file invalidations sent since the last call, into out[] (at most 16). */
static size_t root_sent(uint64_t root, struct sent *out)
{
	size_t k = 0;
	pthread_mutex_lock(&sent_lock);
	for (size_t i = 0; i < n_sent; i++)
		if (sent[i].ino == root && !sent[i].name_len && k < 16)
			out[k++] = sent[i];
	n_sent = 0;
	pthread_mutex_unlock(&sent_lock);
	return k;
}

struct mount {
	mfs_txn *txn;
	struct mfs_fs fs;
	uint64_t root;
	const struct mfs_tensor *w, *b;         /* fc.weight (40 bytes), fc.bias */
	struct mfs_ent wd;                      /* weights/fc/weight/data */
};

static struct mfs_ent at(struct mount *mt, const char *path)
{
	struct mfs_fs *fs = &mt->fs;
	struct mfs_ent en;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_resolve(fs, MFS_ROOT_INO, &en);
	for (const char *p = path; rc == 0 && *p;) {
		size_t n = strcspn(p, "/");
		uint64_t ino;
		struct mfs_ent dir = en;
		rc = mfs_ent_child(fs, &dir, p, n, &ino);
		if (rc == 0)
			rc = mfs_ent_resolve(fs, ino, &en);
		p += n + (p[n] == '/');
	}
	pthread_rwlock_unlock(&fs->lock);
	if (rc != 0)
		fail_msg("%s: %s", path, strerror(-rc));
	return en;
}

static void mount_open(struct mount *mt, bool single, bool start)
{
	char err[512];
	memset(mt, 0, sizeof(*mt));
	tmp_copy(LINEAR, tmp_path("linear.onnx"));
	struct mfs_txn_opts opts = {0};
	assert_int_equal(mfs_txn_open(&mt->txn, tmp_path("linear.onnx"), &opts, NULL, err,
	                              sizeof(err)), 0);
	mt->fs.txn = mt->txn;
	mt->fs.single_thread = single;
	mt->fs.max_read = MFS_MAX_READ;
	mt->fs.se = mt;                 /* anything but NULL: the fake ignores it */
	mt->fs.notify = fake_notify;
	assert_int_equal(mfs_fs_init(&mt->fs), 0);
	if (start)
		assert_true(mfs_inval_start(&mt->fs));
	mt->root = mfs_fs_root_ino(&mt->fs);
	assert_int_not_equal(mt->root, 0);
	mt->wd = at(mt, "weights/fc/weight/data");
	mt->w = mt->wd.t;
	mt->b = at(mt, "weights/fc/bias/data").t;
	assert_int_equal(mt->w->nbytes, 40);
	assert_true((mt->w->flags & MFS_TENSOR_CONTIGUOUS) && mt->w->src == 0);
	struct sent drop[16];
	root_sent(mt->root, drop);
}

static void mount_close(struct mount *mt)
{
	mfs_fs_fini(&mt->fs);
	mfs_txn_close(mt->txn);
}

/* Open the root file as ll_open does (an FH_ROOT handle on the list). */
static struct mfs_fh *root_open(struct mount *mt)
{
	struct mfs_fh *h = mfs_fh_new(FH_ROOT);
	assert_non_null(h);
	mfs_fh_list(&mt->fs, h, NO_TENSOR, mt->root);
	return h;
}

/* A write to weights/fc/weight/data as ll_write makes it. */
static void write_w(struct mount *mt, uint64_t off, size_t len)
{
	struct mfs_fs *fs = &mt->fs;
	unsigned char buf[64];
	memset(buf, 0x42, sizeof(buf));
	pthread_rwlock_rdlock(&fs->lock);
	assert_int_equal(mfs_txn_tensor_write(fs->txn, mt->w, buf, len, off), (ssize_t)len);
	mfs_ent_wrote(fs, &mt->wd, off, len);
	pthread_rwlock_unlock(&fs->lock);
	mfs_inval_settle(fs);
}

static void expect_range(struct mount *mt, uint64_t off, uint64_t len)
{
	struct sent s[16];
	size_t n = root_sent(mt->root, s);
	assert_int_equal(n, 1);
	assert_int_equal(s[0].off, off);
	assert_int_equal(s[0].len, len);
}

/* The whole file (a rebuild may send that once more, from the other lane). */
static void expect_whole(struct mount *mt)
{
	struct sent s[16];
	size_t n = root_sent(mt->root, s);
	assert_true(n >= 1);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(s[i].off, 0);
		assert_int_equal(s[i].len, 0);
	}
}

/* Nothing open: nothing is sent, and the next open drops the cache. */
static void closed_root_sends_nothing(void **state)
{
	(void)state;
	struct mount mt;
	mount_open(&mt, false, true);
	struct timespec before = mt.fs.last_edit;
	write_w(&mt, 0, 4);
	struct sent s[16];
	assert_int_equal(root_sent(mt.root, s), 0);
	pthread_mutex_lock(&mt.fs.xlock);
	const struct mfs_xnode *x = mfs_itab_x(mt.fs.itab, mt.root);
	assert_non_null(x);
	assert_true(x->ver != x->seen);
	assert_true(mt.fs.last_edit.tv_sec > before.tv_sec ||
	            (mt.fs.last_edit.tv_sec == before.tv_sec &&
	             mt.fs.last_edit.tv_nsec > before.tv_nsec));
	pthread_mutex_unlock(&mt.fs.xlock);
	/* A handle opened and released: closed again. */
	mfs_fh_release(&mt.fs, root_open(&mt));
	write_w(&mt, 8, 4);
	assert_int_equal(root_sent(mt.root, s), 0);
	mount_close(&mt);
}

/* A same-size write: exactly its bytes of the file, sent when settle returns. */
static void same_size_write_is_precise(void **state)
{
	(void)state;
	struct mount mt;
	mount_open(&mt, false, true);
	struct mfs_fh *h = root_open(&mt);
	write_w(&mt, 4, 8);
	expect_range(&mt, mt.w->off + 4, 8);
	write_w(&mt, 36, 4);
	expect_range(&mt, mt.w->off + 36, 4);
	/* Every write gives the file a new mtime, however close together. */
	struct timespec a = mt.fs.last_edit;
	write_w(&mt, 0, 1);
	struct timespec b = mt.fs.last_edit;
	assert_true(b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec > a.tv_nsec));
	expect_range(&mt, mt.w->off, 1);
	/* A write past the end grows the tensor: the layout moves. */
	write_w(&mt, 38, 4);
	expect_whole(&mt);
	mfs_fh_release(&mt.fs, h);
	mount_close(&mt);
}

/* A shape edit moves the layout: whole-file invalidations until an abort. */
static void layout_edit_is_whole_until_abort(void **state)
{
	(void)state;
	struct mount mt;
	mount_open(&mt, false, true);
	struct mfs_fs *fs = &mt.fs;
	struct mfs_fh *h = root_open(&mt);
	struct mfs_ent shape = at(&mt, "weights/fc/weight/shape");
	pthread_rwlock_rdlock(&fs->lock);
	assert_int_equal(mfs_ent_text_apply(fs, &shape, "2,5\n", 4), 0);
	mfs_ent_edited(fs, &shape, true);
	pthread_rwlock_unlock(&fs->lock);
	mfs_inval_settle(fs);
	expect_whole(&mt);
	write_w(&mt, 4, 8);
	expect_whole(&mt);
	assert_int_equal(mfs_fs_abort(fs), 0);
	expect_whole(&mt);
	write_w(&mt, 4, 8);
	expect_range(&mt, mt.w->off + 4, 8);
	/* A commit too leaves the layout the file's (and drops the whole file). */
	pthread_rwlock_rdlock(&fs->lock);
	assert_int_equal(mfs_ent_text_apply(fs, &shape, "5,2\n", 4), 0);
	mfs_ent_edited(fs, &shape, true);
	pthread_rwlock_unlock(&fs->lock);
	mfs_inval_settle(fs);
	expect_whole(&mt);
	struct mfs_txn_result res;
	assert_int_equal(mfs_fs_commit(fs, &res), 0);
	mfs_inval_wait(fs, 5000);       /* a commit changes no byte: it does not wait */
	expect_whole(&mt);
	mt.wd = at(&mt, "weights/fc/weight/data");    /* the new model's tensor */
	mt.w = mt.wd.t;
	write_w(&mt, 4, 8);
	expect_range(&mt, mt.w->off + 4, 8);
	mfs_fh_release(fs, h);
	mount_close(&mt);
}

/* Props removed or renamed change the file; scratch files do not. */
static void props_and_scratch(void **state)
{
	(void)state;
	struct mount mt;
	mount_open(&mt, false, true);
	struct mfs_fs *fs = &mt.fs;
	struct mfs_fh *h = root_open(&mt);
	struct mfs_ent en, props = at(&mt, "meta/props"), dir = at(&mt, "weights/fc/bias");
	pthread_mutex_lock(&fs->slock);
	assert_int_equal(mfs_ns_make_file(fs, props.ino, "note", 0644, &en), 0);
	pthread_mutex_unlock(&fs->slock);
	mfs_inval_settle(fs);
	expect_whole(&mt);
	assert_int_equal(mfs_ns_rename(fs, props.ino, "note", props.ino, "memo", 0), 0);
	mfs_inval_settle(fs);
	expect_whole(&mt);
	assert_int_equal(mfs_ns_unlink(fs, props.ino, "memo"), 0);
	mfs_inval_settle(fs);
	expect_whole(&mt);
	pthread_mutex_lock(&fs->slock);
	assert_int_equal(mfs_ns_make_file(fs, dir.ino, ".data.Xy", 0600, &en), 0);
	pthread_mutex_unlock(&fs->slock);
	assert_int_equal(en.role, R_SCRATCH);
	pthread_rwlock_rdlock(&fs->lock);
	assert_int_equal(mfs_txn_scratch_write(fs->txn, en.scratch, "abcd", 4, 0), 4);
	mfs_ent_wrote(fs, &en, 0, 4);
	pthread_rwlock_unlock(&fs->lock);
	mfs_inval_settle(fs);
	struct sent s[16];
	assert_int_equal(root_sent(mt.root, s), 0);
	/* Renamed over `data`: the tensor's new content. */
	assert_int_equal(mfs_ns_rename(fs, dir.ino, ".data.Xy", dir.ino, "data", 0), 0);
	mfs_inval_settle(fs);
	expect_whole(&mt);
	mfs_fh_release(fs, h);
	mount_close(&mt);
}

/* -s: whole-file invalidations, and no one waits for them. */
static void single_thread_is_whole(void **state)
{
	(void)state;
	struct mount mt;
	mount_open(&mt, true, true);
	struct mfs_fh *h = root_open(&mt);
	write_w(&mt, 4, 8);
	struct sent s[16];
	size_t n = 0;
	for (int i = 0; i < 2000 && !n; i++) {
		usleep(1000);
		n = root_sent(mt.root, s);
	}
	assert_int_equal(n, 1);
	assert_int_equal(s[0].off, 0);
	assert_int_equal(s[0].len, 0);
	mfs_fh_release(&mt.fs, h);
	mount_close(&mt);
}

/* Queued in a burst: adjacent and overlapping ranges go as one, others apart. */
static void burst_is_merged(void **state)
{
	(void)state;
	struct mount mt;
	mount_open(&mt, false, false);   /* nothing is sent while queuing */
	struct mfs_fs *fs = &mt.fs;
	mfs_inval_root(fs, mt.root, 8192, 4096);
	mfs_inval_root(fs, mt.root, 12288, 100);
	mfs_inval_root(fs, mt.root, 4096, 10);
	mfs_inval_root(fs, mt.root, 1 << 20, 10);
	mfs_inval_root(fs, mt.root, (1 << 20) + 5, 0);
	mfs_inval_inode(fs, 77);
	mfs_inval_inode(fs, 77);
	assert_true(mfs_inval_start(fs));
	mfs_inval_wait(fs, 5000);
	struct sent s[16];
	pthread_mutex_lock(&sent_lock);
	size_t n77 = 0;
	for (size_t i = 0; i < n_sent; i++)
		n77 += sent[i].ino == 77;
	pthread_mutex_unlock(&sent_lock);
	assert_int_equal(n77, 1);
	assert_int_equal(root_sent(mt.root, s), 2);
	assert_int_equal(s[0].off, 4096);
	assert_int_equal(s[0].len, 12288 + 100 - 4096);
	assert_int_equal(s[1].off, 1 << 20);
	assert_int_equal(s[1].len, 0);
	mount_close(&mt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(closed_root_sends_nothing, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(same_size_write_is_precise, tmp_setup,
		                                tmp_teardown),
		cmocka_unit_test_setup_teardown(layout_edit_is_whole_until_abort, tmp_setup,
		                                tmp_teardown),
		cmocka_unit_test_setup_teardown(props_and_scratch, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(single_thread_is_whole, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(burst_is_merged, tmp_setup, tmp_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

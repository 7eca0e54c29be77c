/*
 * fs/gen.c — tree generations: the tree the handlers answer from, rebuilt
 * when the transaction's structure moves (a prop created, renamed or
 * removed; a commit; an abort), and the invalidations a rebuild implies.
 *
 * A rebuild makes a whole new generation (tree + the description it was
 * built from), renumbers it through the inode table so that every path
 * keeps its inode (inode.c), and swaps it in under the tree lock.  Commit
 * and abort live here too: both end in a rebuild and in invalidations of
 * what the kernel cached from the staged state.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"

static void gen_free(struct mfs_gen *g)
{
	if (!g)
		return;
	mfs_tree_destroy(g->tree);
	mfs_txn_props_free(g->props, g->desc.n_props);
	free(g);
}

/* A tree of the txn's current state: its description with the staged props. */
static int gen_build(struct mfs_fs *fs, struct mfs_gen **out)
{
	struct mfs_gen *g = calloc(1, sizeof(*g));
	int rc;
	*out = NULL;
	if (!g)
		return -ENOMEM;
	g->txn_gen = mfs_txn_generation(fs->txn);
	g->desc = *mfs_txn_desc(fs->txn);
	g->model = mfs_txn_model(fs->txn);
	size_t n = 0;
	rc = mfs_txn_props(&g->props, &n, fs->txn);
	if (rc < 0) {
		g->desc.n_props = 0;
		goto out;
	}
	g->desc.props = g->props;
	g->desc.n_props = n;
	rc = mfs_tree_build(&g->tree, &g->desc);
	if (rc < 0)
		goto out;
	g->meta_dir = g->props_dir = NONE;
	uint32_t i;
	if (mfs_tree_lookup(g->tree, MFS_TREE_ROOT, "meta", 4, &i) == 0) {
		g->meta_dir = i;
		if (mfs_tree_lookup(g->tree, i, "props", 5, &i) == 0)
			g->props_dir = i;
	}
	*out = g;
	g = NULL;
out:
	gen_free(g);
	return rc;
}

uint64_t mfs_fs_root_ino(const struct mfs_fs *fs)
{
	const struct mfs_tree *t = fs->gen->tree;
	const struct mfs_tnode *r = mfs_tree_node(t, MFS_TREE_ROOT);
	for (uint32_t i = 0; i < r->u.dir.count; i++) {
		uint32_t c = mfs_tree_child(t, MFS_TREE_ROOT, i);
		const struct mfs_tnode *e = mfs_tree_node(t, c);
		if (e->kind == MFS_TN_SRC && e->u.src == 0)
			return mfs_itab_ino(fs->itab, c);
	}
	return 0;
}

struct rebuild_ctx {
	struct mfs_fs *fs;
	const struct mfs_skip *skip;
};

static bool skipped(const struct mfs_skip *s, uint64_t parent, const char *name, size_t len)
{
	return s && s->parent == parent &&
	       ((s->a && s->a_len == len && !memcmp(s->a, name, len)) ||
	        (s->b && s->b_len == len && !memcmp(s->b, name, len)));
}

static void on_event(void *arg, enum mfs_itab_event ev, uint64_t parent, const char *name,
                     size_t len, uint64_t ino)
{
	struct rebuild_ctx *c = arg;
	if (ev == MFS_IEV_CHANGED) {
		mfs_inval_inode(c->fs, ino);
		return;
	}
	/* A path appeared (a negative dentry may hide it) or vanished (a
	 * dentry may still name its dead inode); either way the directory's
	 * listing changed. */
	if (!skipped(c->skip, parent, name, len)) {
		mfs_inval_entry(c->fs, parent, name, len);
		mfs_inval_inode(c->fs, parent);
	}
}

/*
 * Rebuild the tree if the txn's generation moved (caller holds slock).
 * `move` is a rename the kernel has already applied; `skip` the names of
 * the current request, whose dentries the kernel maintains itself.  A
 * failure (ENOMEM) keeps the old tree, which stays usable.
 */
int mfs_fs_sync_tree(struct mfs_fs *fs, const struct mfs_itab_move *move,
                     const struct mfs_skip *skip)
{
	if (mfs_txn_generation(fs->txn) == fs->gen->txn_gen)
		return 0;
	struct mfs_gen *ng = NULL;
	int rc = gen_build(fs, &ng);
	if (rc < 0)
		return rc;
	struct rebuild_ctx ctx = {fs, skip};
	pthread_rwlock_wrlock(&fs->lock);
	rc = mfs_itab_rebuild(fs->itab, ng->tree, move, on_event, &ctx);
	struct mfs_gen *old = ng;
	if (rc == 0) {
		old = fs->gen;
		fs->gen = ng;
		/* No handler holds the tree lock now, and the new tree refers only
		 * to ng->model: the models that commits replaced can go (their
		 * descriptors would otherwise pile up, two per commit). */
		mfs_txn_release_old(fs->txn, ng->model);
	}
	pthread_rwlock_unlock(&fs->lock);
	gen_free(old);
	return rc;
}

int mfs_fs_init(struct mfs_fs *fs)
{
	pthread_mutex_init(&fs->slock, NULL);
	pthread_rwlock_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->xlock, NULL);
	pthread_mutex_init(&fs->qlock, NULL);
	pthread_cond_init(&fs->qcond, NULL);
	pthread_cond_init(&fs->qidle, NULL);
	int rc = gen_build(fs, &fs->gen);
	if (rc < 0)
		return rc;
	rc = mfs_itab_new(&fs->itab, fs->gen->tree);
	if (rc < 0)
		return rc;
	fs->ctl_dir = mfs_itab_alloc(fs->itab);
	fs->ctl_status = mfs_itab_alloc(fs->itab);
	fs->ctl_commit = mfs_itab_alloc(fs->itab);
	fs->ctl_abort = mfs_itab_alloc(fs->itab);
	fs->ctl_progress = mfs_itab_alloc(fs->itab);
	fs->last_edit = fs->mtime;
	return 0;
}

void mfs_fs_fini(struct mfs_fs *fs)
{
	mfs_inval_stop(fs);
	mfs_fh_free_all(fs);
	mfs_itab_destroy(fs->itab);
	fs->itab = NULL;
	gen_free(fs->gen);
	fs->gen = NULL;
	pthread_cond_destroy(&fs->qidle);
	pthread_cond_destroy(&fs->qcond);
	pthread_mutex_destroy(&fs->qlock);
	pthread_mutex_destroy(&fs->xlock);
	pthread_rwlock_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->slock);
}

/* Commit (slock not held).  Returns 0 or the commit's negative errno. */
int mfs_fs_commit(struct mfs_fs *fs, struct mfs_txn_result *res)
{
	pthread_mutex_lock(&fs->slock);
	pthread_rwlock_wrlock(&fs->lock);
	fs->committing = true;
	pthread_rwlock_unlock(&fs->lock);
	int rc = mfs_txn_commit(fs->txn, res);
	mfs_fs_sync_tree(fs, NULL, NULL);
	pthread_rwlock_wrlock(&fs->lock);
	fs->committing = false;
	uint64_t root = mfs_fs_root_ino(fs);
	pthread_mutex_lock(&fs->xlock);
	if (rc == 0) {
		/*
		 * The committed model holds what the edited files showed, but
		 * their pages were cached from the staging store: drop them, so
		 * that nothing read before the commit outlives it.
		 */
		for (struct mfs_xnode *x = mfs_itab_x_next(fs->itab, NULL); x;
		     x = mfs_itab_x_next(fs->itab, x)) {
			if (!x->touched)
				continue;
			x->touched = false;
			x->ver++;
			mfs_inval_inode(fs, x->ino);
		}
	}
	struct mfs_xnode *x = root ? mfs_itab_x_get(fs->itab, root) : NULL;
	if (x)
		x->ver++;
	pthread_mutex_unlock(&fs->xlock);
	pthread_rwlock_unlock(&fs->lock);
	if (root)
		mfs_inval_inode(fs, root);
	pthread_mutex_unlock(&fs->slock);
	return rc;
}

/* Abort (slock not held): drop every staged edit and scratch file. */
int mfs_fs_abort(struct mfs_fs *fs)
{
	pthread_mutex_lock(&fs->slock);
	int rc = mfs_txn_abort(fs->txn);
	pthread_rwlock_wrlock(&fs->lock);
	uint64_t root = mfs_fs_root_ino(fs);
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x, *nx;
	for (x = mfs_itab_scratch_next(fs->itab, NULL); x; x = nx) {
		nx = mfs_itab_scratch_next(fs->itab, x);
		mfs_inval_entry(fs, x->parent, x->name, x->name_len);
		mfs_inval_inode(fs, x->parent);
		mfs_itab_scratch_unlist(fs->itab, x);
		x->dropped = true;
		mfs_itab_x_put(fs->itab, x);
	}
	for (x = mfs_itab_x_next(fs->itab, NULL); x; x = mfs_itab_x_next(fs->itab, x)) {
		if (x->kind == MFS_XN_SCRATCH)
			x->dropped = true;     /* adopted or unlinked ones still held */
		if (x->touched || x->ino == root) {
			x->ver++;
			x->touched = false;
			mfs_inval_inode(fs, x->ino);
		}
	}
	pthread_mutex_unlock(&fs->xlock);
	if (fs->recovered) {
		/*
		 * Edits replayed from a journal at mount were never seen here:
		 * which files they touched is unknown, so every file's cached
		 * pages go (once; later edits are tracked).
		 */
		const struct mfs_tree *t = fs->gen->tree;
		for (uint32_t i = 0; i < mfs_tree_count(t); i++)
			if (mfs_tree_node(t, i)->kind != MFS_TN_DIR)
				mfs_inval_inode(fs, mfs_itab_ino(fs->itab, i));
		fs->recovered = false;
	}
	pthread_rwlock_unlock(&fs->lock);
	mfs_fs_sync_tree(fs, NULL, NULL);
	pthread_mutex_unlock(&fs->slock);
	mfs_inval_wait(fs, MFS_INVAL_WAIT_MS);
	return rc;
}

/*
 * fs/ll.c — the FUSE low-level operations: the only file that replies to FUSE.
 *
 * Handlers answer from the current tree generation (struct mfs_gen: a tree
 * built from the transaction's description, with the staged props), map
 * inode numbers through inode.c (which explains how they stay stable while
 * the tree is rebuilt), and read and edit the model through the transaction
 * (modelfs/txn.h): what a file shows is always the staged state
 * (read-your-writes), and nothing here touches the model file.
 *
 * ENTRIES AND WHAT THEY ACCEPT (DESIGN §5)
 *
 *   data                      write at any offset, O_TRUNC, truncate: staged
 *                             in the txn at once; adopting a scratch file
 *                             renamed over it
 *   dtype, shape (tensors)    text buffered per open handle, staged when a
 *   meta/<writable>           write completes a line (dtype, shape) and on
 *   meta/props/<key>          flush; a bad value fails that write or the close
 *                             with EINVAL.  Props are also created, renamed
 *                             and unlinked.
 *   scratch files             created by anyone in a tensor directory, and
 *                             under a name starting with '.' in meta/props/
 *                             (rsync's ".data.XXXXXX"); bytes staged as
 *                             scratch objects that reach the model only when
 *                             renamed over an entry
 *   .modelfs/status, commit, abort    the control files
 *   everything else           read-only: EACCES for writing or creating,
 *                             EPERM for chmod/chown/utimes, unlink, rename,
 *                             mkdir, symlink, link.  Directories take
 *                             chmod/chown/utimes (kept in memory) so that
 *                             `rsync -a` can finish.
 *
 * A commit runs on a write to .modelfs/commit, on fsync(2) or fsyncdir of
 * anything, and on unmount (destroy).  Attributes set by chmod, chown and
 * utimes live in memory for the life of the mount (the model has nowhere
 * to keep them); an edit sets the entry's mtime to the time of the edit.
 *
 * CACHING
 *
 * The kernel keeps entries, attributes and pages for MFS_CACHE_TIMEOUT, and
 * data files are opened with keep_cache (DESIGN §4).  That stays correct
 * because every change is one of:
 *   - made through the kernel on the inode the kernel caches (a write to
 *     `data`, a truncate, a create, unlink or rename): the kernel updates
 *     its own caches;
 *   - made behind its back (a value staged from a buffer in another
 *     form than written, an abort, a rebuild that adds or removes paths):
 *     the inode's content version goes up (open then drops the cached
 *     pages: no keep_cache) and an invalidation is queued.  A commit does the same for every file
 *     edited since the last one, although they show the same bytes.
 * A scratch file renamed over `data` is the third kind: its inode takes
 * the entry's place, and descriptors of the replaced inode read a snapshot
 * of what it held (data_over), so the pages the kernel kept stay true.
 * Invalidations (fuse_lowlevel_notify_inval_inode/_entry) are sent by a
 * helper thread, never by a handler: libfuse forbids sending them from the
 * execution path of a related request, and a handler may hold the locks
 * such a request needs.  Writes to .modelfs/abort wait (up to a bound) for
 * the queue to drain, so the next command sees the aborted state.
 * Two files change too often for that: the root model file (the spliced
 * view changes with every edit) and .modelfs/status.  They bypass the page
 * cache (direct_io; the root file only in a read-write mount, where mmap
 * of it is limited to MAP_PRIVATE) and have zero attribute timeouts.
 * Small writable text files (dtype, shape, meta, props) have zero attribute
 * timeouts too: their size can change when a value is staged in another
 * form than it was written.
 *
 * LOCKING
 *
 * Three locks, always taken in this order, plus the queue's leaf lock:
 *   slock   serialises what changes structure: create, unlink, rename,
 *           mknod, commit, abort, and the rebuild they trigger;
 *   lock    (rwlock) the generation and the inode map: handlers hold it
 *           shared while they use an entry, a rebuild exclusively while it
 *           swaps the tree;
 *   xlock   the xnodes (inode.h): attribute overrides, content versions,
 *           scratch files.  Never held across a txn call.
 * A commit holds slock but not `lock` while the txn commits (it can take a
 * while); handlers then wait inside the txn, which serialises itself.  While
 * it runs (fs->committing), tensor bytes are read only through the txn, since
 * the generation's model may be the one being replaced.
 *
 * Every handler documents its valid replies.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <syslog.h>

#include "ll.h"
#include "names.h"

_Static_assert(FUSE_ROOT_ID == 1, "the root's inode must be FUSE_ROOT_ID");

#define NONE UINT32_MAX
#define NO_TENSOR UINT64_MAX

/* The largest value a text file (dtype, shape, meta, prop) takes. */
#define MFS_TEXT_MAX (16u << 20)

/* How long a write to .modelfs/abort waits for invalidations to be sent. */
#define MFS_INVAL_WAIT_MS 2000

static struct mfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct timespec now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

/* ------------------------------------------------------- invalidation */

struct mfs_inval {
	struct mfs_inval *next;
	uint64_t ino;           /* inode, or the parent of `name` */
	size_t len;             /* 0: invalidate the inode; else the entry `name` */
	char name[];
};

/*
 * Queue an invalidation.  One identical to the last one queued is merged (a
 * burst of edits of one file); looking further back would make a flood (the
 * whole tree after an abort of recovered edits) quadratic.
 */
static void inval_push(struct mfs_fs *fs, uint64_t ino, const char *name, size_t len)
{
	pthread_mutex_lock(&fs->qlock);
	const struct mfs_inval *last = fs->qtail;
	if (last && last->ino == ino && last->len == len && (!len || !memcmp(last->name, name, len))) {
		pthread_mutex_unlock(&fs->qlock);
		return;
	}
	struct mfs_inval *q = malloc(sizeof(*q) + len + 1);
	if (q) {
		q->next = NULL;
		q->ino = ino;
		q->len = len;
		memcpy(q->name, name, len);
		q->name[len] = '\0';
		if (fs->qtail)
			fs->qtail->next = q;
		else
			fs->qhead = q;
		fs->qtail = q;
		pthread_cond_signal(&fs->qcond);
	}
	/* Out of memory: the kernel's cache stays stale until it expires. */
	pthread_mutex_unlock(&fs->qlock);
}

static void inval_inode(struct mfs_fs *fs, uint64_t ino)
{
	inval_push(fs, ino, NULL, 0);
}

static void inval_entry(struct mfs_fs *fs, uint64_t parent, const char *name, size_t len)
{
	if (len)
		inval_push(fs, parent, name, len);
}

/*
 * The invalidation thread: sends what handlers queued.  -ENOENT means the
 * kernel holds nothing for that inode or name, which is the goal anyway.
 */
static void *inval_thread(void *arg)
{
	struct mfs_fs *fs = arg;
	pthread_mutex_lock(&fs->qlock);
	for (;;) {
		while (!fs->qhead && !fs->qstop)
			pthread_cond_wait(&fs->qcond, &fs->qlock);
		if (fs->qstop)
			break;
		struct mfs_inval *q = fs->qhead;
		fs->qhead = q->next;
		if (!fs->qhead)
			fs->qtail = NULL;
		fs->qbusy = true;
		pthread_mutex_unlock(&fs->qlock);
		if (q->len)
			fuse_lowlevel_notify_inval_entry(fs->se, q->ino, q->name, q->len);
		else
			fuse_lowlevel_notify_inval_inode(fs->se, q->ino, 0, 0);
		free(q);
		pthread_mutex_lock(&fs->qlock);
		fs->qbusy = false;
		if (!fs->qhead)
			pthread_cond_broadcast(&fs->qidle);
	}
	pthread_mutex_unlock(&fs->qlock);
	return NULL;
}

/*
 * Wait until everything queued has been sent, for at most `ms`.  Called
 * with no lock held, and never on the single-threaded loop: an
 * invalidation can wait for a request that only this thread could answer.
 */
static void inval_wait(struct mfs_fs *fs, unsigned ms)
{
	if (fs->single_thread || !fs->qstarted)
		return;
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&fs->qlock);
	while ((fs->qhead || fs->qbusy) && !fs->qstop)
		if (pthread_cond_timedwait(&fs->qidle, &fs->qlock, &dl) != 0)
			break;
	pthread_mutex_unlock(&fs->qlock);
}

static void inval_stop(struct mfs_fs *fs)
{
	pthread_mutex_lock(&fs->qlock);
	fs->qstop = true;
	pthread_cond_broadcast(&fs->qcond);
	pthread_cond_broadcast(&fs->qidle);
	pthread_mutex_unlock(&fs->qlock);
	if (fs->qstarted)
		pthread_join(fs->qthread, NULL);
	fs->qstarted = false;
	while (fs->qhead) {
		struct mfs_inval *q = fs->qhead;
		fs->qhead = q->next;
		free(q);
	}
	fs->qtail = NULL;
}

/* ------------------------------------------------------- generations */

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
	rc = mfs_txn_props(fs->txn, &g->props, &n);
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

/* The inode of the root model file (source file 0) in the current generation. */
static uint64_t root_file_ino(const struct mfs_fs *fs)
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

/* Names the current request's kernel operation takes care of itself. */
struct skip {
	uint64_t parent;
	const char *a, *b;
	size_t a_len, b_len;
};

struct rebuild_ctx {
	struct mfs_fs *fs;
	const struct skip *skip;
};

static bool skipped(const struct skip *s, uint64_t parent, const char *name, size_t len)
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
		inval_inode(c->fs, ino);
		return;
	}
	/* A path appeared (a negative dentry may hide it) or vanished (a
	 * dentry may still name its dead inode); either way the directory's
	 * listing changed. */
	if (!skipped(c->skip, parent, name, len)) {
		inval_entry(c->fs, parent, name, len);
		inval_inode(c->fs, parent);
	}
}

/*
 * Rebuild the tree if the txn's generation moved (caller holds slock).
 * `move` is a rename the kernel has already applied; `skip` the names of
 * the current request, whose dentries the kernel maintains itself.  A
 * failure (ENOMEM) keeps the old tree, which stays usable.
 */
static int sync_tree(struct mfs_fs *fs, const struct mfs_itab_move *move, const struct skip *skip)
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

static void fh_free_all(struct mfs_fs *fs);

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
	fs->last_edit = fs->mtime;
	return 0;
}

void mfs_fs_fini(struct mfs_fs *fs)
{
	inval_stop(fs);
	fh_free_all(fs);
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

/* ------------------------------------------------------- entries */

/* What an inode is, for the handlers. */
enum role {
	R_DIR = 1,
	R_TEXT,         /* read-only text of the tree */
	R_SRC,          /* a source file other than the model (external data) */
	R_ROOT,         /* the root model file: the spliced view */
	R_DATA,         /* a tensor's data */
	R_DTYPE,        /* a tensor's dtype */
	R_SHAPE,        /* a tensor's shape */
	R_META,         /* meta/<name> */
	R_PROP,         /* meta/props/<key> */
	R_SCRATCH,
	R_CTL_DIR,
	R_STATUS,
	R_COMMIT,
	R_ABORT,
};

/*
 * An inode resolved under fs->lock (shared); the pointers are valid while
 * it is held.  For a scratch file renamed over an entry (an alias), `ino`
 * is the entry's and `asked` the scratch file's.
 */
struct ent {
	uint64_t ino;
	uint64_t asked;
	enum role role;
	uint32_t idx;                   /* tree entries */
	const struct mfs_tnode *e;      /* tree entries */
	const struct mfs_tensor *t;     /* R_DATA, R_DTYPE, R_SHAPE */
	uint64_t scratch;               /* R_SCRATCH */
	bool writable;                  /* files: content may be written */
	bool creatable;                 /* directories: files may be created in it */
	bool props;                     /* R_DIR: meta/props/ */
	char name[MFS_NAME_MAX + 1];    /* R_META, R_PROP: the component */
};

/*
 * May tensor `t`'s bytes, dtype and shape be edited?  The txn decides
 * (-EACCES); this mirrors its rule for st_mode and for refusing early:
 * not in a read-only mount, not a string tensor, and bytes that live in
 * the model file (not external data, not a shard of a sharded safetensors).
 * FIXME: ask the txn once it has a predicate for this.
 */
static bool tensor_writable(const struct mfs_fs *fs, const struct mfs_tensor *t)
{
	return !fs->read_only && t && t->dtype != MFS_DT_STRING && (t->mem || t->src == 0);
}

/* May props be created, written, renamed, removed (same FIXME)? */
static bool props_writable(const struct mfs_fs *fs)
{
	const struct mfs_desc *d = &fs->gen->desc;
	return !fs->read_only && (d->format == MFS_FORMAT_ONNX || d->n_files == 1);
}

/* The tensor whose directory is `dir`, or NULL. */
static const struct mfs_tensor *dir_tensor(const struct mfs_fs *fs, uint32_t dir)
{
	uint32_t d;
	if (mfs_tree_lookup(fs->gen->tree, dir, "data", 4, &d) < 0)
		return NULL;
	const struct mfs_tnode *e = mfs_tree_node(fs->gen->tree, d);
	return e->kind == MFS_TN_TENSOR && (e->flags & MFS_TNF_OWN) ? e->u.tensor : NULL;
}

static bool name_is(const struct mfs_tnode *e, const char *s)
{
	size_t l = strlen(s);
	return e->name_len == l && !memcmp(e->name, s, l);
}

/* Classify tree entry `idx` (fs->lock held). */
static void classify(struct mfs_fs *fs, uint32_t idx, struct ent *en)
{
	const struct mfs_gen *g = fs->gen;
	const struct mfs_tnode *e = mfs_tree_node(g->tree, idx);
	en->idx = idx;
	en->e = e;
	switch (e->kind) {
	case MFS_TN_DIR:
		en->role = R_DIR;
		if (idx == g->props_dir) {
			en->props = true;
			en->creatable = props_writable(fs);
		} else if (e->flags & MFS_TNF_TENSOR) {
			en->creatable = tensor_writable(fs, dir_tensor(fs, idx));
		}
		return;
	case MFS_TN_TENSOR:
		en->role = R_DATA;
		en->t = e->u.tensor;
		en->writable = tensor_writable(fs, en->t);
		return;
	case MFS_TN_SRC:
		en->role = e->u.src == 0 ? R_ROOT : R_SRC;
		return;
	default:
		break;
	}
	en->role = R_TEXT;
	if (e->parent == g->props_dir && g->props_dir != NONE) {
		en->role = R_PROP;
		en->writable = props_writable(fs);
	} else if (e->parent == g->meta_dir && g->meta_dir != NONE) {
		en->role = R_META;
		memcpy(en->name, e->name, e->name_len);
		en->name[e->name_len] = '\0';
		en->writable = !fs->read_only && mfs_txn_meta_writable(fs->txn, en->name);
		return;
	} else if ((e->flags & MFS_TNF_OWN) && (name_is(e, "dtype") || name_is(e, "shape"))) {
		const struct mfs_tensor *t = dir_tensor(fs, e->parent);
		if (t) {
			en->role = name_is(e, "dtype") ? R_DTYPE : R_SHAPE;
			en->t = t;
			en->writable = tensor_writable(fs, t);
		}
		return;
	}
	if (en->role == R_PROP) {
		memcpy(en->name, e->name, e->name_len);
		en->name[e->name_len] = '\0';
	}
}

/*
 * What inode `ino` is now (fs->lock held shared).  Returns 0, -ENOENT (a
 * number never handed out), or -ESTALE (its path vanished, or a scratch
 * file whose object is gone).
 */
static int resolve(struct mfs_fs *fs, uint64_t ino, struct ent *en)
{
	memset(en, 0, sizeof(*en));
	en->asked = ino;
	en->idx = NONE;
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x = mfs_itab_x(fs->itab, ino);
	if (x && x->alias)
		ino = x->alias;
	else if (x && x->kind == MFS_XN_SCRATCH) {
		bool gone = x->dropped;
		en->scratch = x->scratch;
		pthread_mutex_unlock(&fs->xlock);
		if (gone)
			return -ESTALE;
		en->ino = ino;
		en->role = R_SCRATCH;
		en->writable = !fs->read_only;
		return 0;
	}
	pthread_mutex_unlock(&fs->xlock);
	en->ino = ino;
	if (ino == fs->ctl_dir) {
		en->role = R_CTL_DIR;
		return 0;
	}
	if (ino == fs->ctl_status || ino == fs->ctl_commit || ino == fs->ctl_abort) {
		en->role = ino == fs->ctl_status ? R_STATUS : ino == fs->ctl_commit ? R_COMMIT : R_ABORT;
		en->writable = en->role != R_STATUS && !fs->read_only;
		return 0;
	}
	uint32_t idx;
	int rc = mfs_itab_index(fs->itab, ino, &idx);
	if (rc < 0)
		return rc;
	classify(fs, idx, en);
	return 0;
}

/* ------------------------------------------------------- content */

/*
 * The key of the prop shown as component `comp`: an existing key whose
 * encoding is `comp`, else the decoded component (a new key).  *out is
 * malloc'd.  -EINVAL for a component no key encodes to.
 */
static int prop_key(struct mfs_fs *fs, const char *comp, size_t len, char **out)
{
	struct mfs_meta *p = NULL;
	size_t n = 0;
	int rc = mfs_txn_props(fs->txn, &p, &n);
	*out = NULL;
	if (rc < 0)
		return rc;
	char enc[MFS_NAME_MAX + 1];
	for (size_t i = 0; i < n; i++) {
		size_t el = mfs_name_encode(enc, MFS_NAME_MAX, p[i].name, strlen(p[i].name));
		if (el == len && !memcmp(enc, comp, len)) {
			*out = strdup(p[i].name);
			mfs_txn_props_free(p, n);
			return *out ? 0 : -ENOMEM;
		}
	}
	mfs_txn_props_free(p, n);
	char *k = malloc(len + 1);
	size_t kl;
	if (!k)
		return -ENOMEM;
	rc = mfs_name_decode(k, &kl, comp, len);
	if (rc < 0 || memchr(k, '\0', kl)) {
		free(k);
		return -EINVAL;
	}
	k[kl] = '\0';
	*out = k;
	return 0;
}

/* Append to a growing buffer. */
static int put(char **buf, size_t *len, const void *p, size_t n)
{
	char *b = realloc(*buf, *len + n + 1);
	if (!b)
		return -ENOMEM;
	memcpy(b + *len, p, n);
	*len += n;
	b[*len] = '\0';
	*buf = b;
	return 0;
}

/*
 * The bytes of a text entry as they are now (staged or not): *out is
 * malloc'd (NUL-terminated, which is not part of the content).
 */
static int text_get(struct mfs_fs *fs, const struct ent *en, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	int rc = 0;
	switch (en->role) {
	case R_DTYPE: {
		int32_t dt;
		size_t rank;
		rc = mfs_txn_tensor_type(fs->txn, en->t, &dt, NULL, 0, &rank);
		if (rc == 0) {
			const char *s = mfs_dtype_name(dt);
			rc = put(out, len, s, strlen(s));
		}
		break;
	}
	case R_SHAPE: {
		size_t rank = 0, r2 = 0;
		rc = mfs_txn_tensor_type(fs->txn, en->t, NULL, NULL, 0, &rank);
		int64_t *dims = rc == 0 ? malloc((rank + 1) * sizeof(*dims)) : NULL;
		if (rc == 0 && !dims)
			rc = -ENOMEM;
		if (rc == 0)
			rc = mfs_txn_tensor_type(fs->txn, en->t, NULL, dims, rank, &r2);
		if (rc == 0) {
			size_t r = r2 < rank ? r2 : rank;
			size_t need = mfs_dims_format(NULL, 0, dims, r);
			char *s = malloc(need + 1);
			if (!s) {
				rc = -ENOMEM;
			} else {
				mfs_dims_format(s, need + 1, dims, r);
				rc = put(out, len, s, need);
				free(s);
			}
		}
		free(dims);
		break;
	}
	case R_META: {
		ssize_t n = mfs_txn_meta_get(fs->txn, en->name, NULL, 0);
		if (n < 0)
			return (int)n;
		char *b = malloc((size_t)n + 1);
		if (!b)
			return -ENOMEM;
		ssize_t m = mfs_txn_meta_get(fs->txn, en->name, b, (size_t)n);
		if (m < 0) {
			free(b);
			return (int)m;
		}
		*len = (size_t)(m < n ? m : n);
		b[*len] = '\0';
		*out = b;
		return 0;
	}
	case R_PROP: {
		char *key = NULL;
		struct mfs_meta *p = NULL;
		size_t n = 0;
		rc = prop_key(fs, en->name, strlen(en->name), &key);
		if (rc == 0)
			rc = mfs_txn_props(fs->txn, &p, &n);
		for (size_t i = 0; rc == 0 && i < n; i++) {
			if (strcmp(p[i].name, key) != 0)
				continue;
			rc = put(out, len, p[i].value, p[i].len);
			free(key);
			mfs_txn_props_free(p, n);
			return rc == 0 ? put(out, len, "\n", 1) : rc;
		}
		free(key);
		mfs_txn_props_free(p, n);
		if (rc == 0)
			rc = -ESTALE;   /* gone since the tree was built */
		break;
	}
	default: {
		/* R_TEXT: the tree's bytes. */
		uint64_t size = mfs_tree_size(fs->gen->tree, en->idx);
		char *b = malloc((size_t)size + 1);
		if (!b)
			return -ENOMEM;
		*len = mfs_tree_text_read(fs->gen->tree, en->idx, b, (size_t)size, 0);
		b[*len] = '\0';
		*out = b;
		return 0;
	}
	}
	if (rc == 0 && (en->role == R_DTYPE || en->role == R_SHAPE))
		rc = put(out, len, "\n", 1);
	if (rc < 0) {
		free(*out);
		*out = NULL;
		*len = 0;
	}
	return rc;
}

/* Stage a text value for entry `en`. */
static int text_apply(struct mfs_fs *fs, const struct ent *en, const char *text, size_t len)
{
	switch (en->role) {
	case R_DTYPE:
		return mfs_txn_set_dtype(fs->txn, en->t, text, len);
	case R_SHAPE:
		return mfs_txn_set_shape(fs->txn, en->t, text, len);
	case R_META:
		return mfs_txn_meta_set(fs->txn, en->name, text, len);
	case R_PROP: {
		char *key = NULL;
		int rc = prop_key(fs, en->name, strlen(en->name), &key);
		if (rc == 0)
			rc = mfs_txn_prop_set(fs->txn, key, text, len);
		free(key);
		return rc;
	}
	default:
		return -EACCES;
	}
}

static bool is_text_role(enum role r)
{
	return r == R_DTYPE || r == R_SHAPE || r == R_META || r == R_PROP || r == R_TEXT;
}

/* st_size of `en` (fs->lock held). */
static int size_of(struct mfs_fs *fs, const struct ent *en, uint64_t *out)
{
	*out = 0;
	switch (en->role) {
	case R_DIR:
	case R_TEXT:
		*out = mfs_tree_size(fs->gen->tree, en->idx);
		return 0;
	case R_SRC:
		*out = fs->gen->desc.files[en->e->u.src].size;
		return 0;
	case R_ROOT:
		return mfs_txn_file_size(fs->txn, 0, out);
	case R_DATA:
		return mfs_txn_tensor_size(fs->txn, en->t, out);
	case R_SCRATCH:
		return mfs_txn_scratch_size(fs->txn, en->scratch, out);
	case R_DTYPE:
	case R_SHAPE:
	case R_META:
	case R_PROP: {
		char *b;
		size_t n;
		int rc = text_get(fs, en, &b, &n);
		free(b);
		*out = n;
		return rc;
	}
	case R_STATUS:
		*out = mfs_txn_status(fs->txn, NULL, 0);
		return 0;
	case R_CTL_DIR:
		*out = 3;
		return 0;
	default:
		return 0;
	}
}

/* ------------------------------------------------------- attributes */

/* Bookkeeping after the content of `en` changed. `oob`: behind the kernel's cache. */
static void edited(struct mfs_fs *fs, const struct ent *en, bool oob)
{
	struct timespec t = now();
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x = mfs_itab_x_get(fs->itab, en->ino);
	if (x) {
		x->mtime = x->ctime = t;
		x->set |= MFS_XA_MTIME | MFS_XA_CTIME;
		x->touched = true;
		if (oob)
			x->ver++;
	}
	if (en->asked != en->ino && (x = mfs_itab_x(fs->itab, en->asked)))
		x->ver++;
	fs->last_edit = t;
	uint64_t root = root_file_ino(fs);
	if (root && (x = mfs_itab_x_get(fs->itab, root)))
		x->ver++;
	pthread_mutex_unlock(&fs->xlock);
	if (oob || en->asked != en->ino)
		inval_inode(fs, en->ino);
	if (en->asked != en->ino)
		inval_inode(fs, en->asked);
}

static uint32_t dir_subdirs(const struct ent *en)
{
	return en->role == R_DIR ? en->e->u.dir.n_subdirs : 0;
}

/* Scratch files listed in directory `ino` (xlock held). */
static uint32_t scratch_count(const struct mfs_fs *fs, uint64_t ino)
{
	uint32_t n = 0;
	for (struct mfs_xnode *x = mfs_itab_scratch_next(fs->itab, NULL); x;
	     x = mfs_itab_scratch_next(fs->itab, x))
		n += x->parent == ino;
	return n;
}

static int fill_stat(struct mfs_fs *fs, const struct ent *en, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	uint64_t size;
	int rc = size_of(fs, en, &size);
	if (rc < 0)
		return rc;
	st->st_ino = en->asked;
	st->st_nlink = 1;
	switch (en->role) {
	case R_DIR:
		st->st_mode = S_IFDIR | (en->creatable ? 0755 : 0555);
		st->st_nlink = 2 + dir_subdirs(en);
		break;
	case R_CTL_DIR:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		break;
	case R_COMMIT:
	case R_ABORT:
		st->st_mode = S_IFREG | (en->writable ? 0200 : 0);
		break;
	default:
		st->st_mode = S_IFREG | (en->writable ? 0644 : 0444);
		break;
	}
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	st->st_blksize = MFS_IO_SIZE;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	struct timespec t = fs->mtime;
	if (en->role == R_ROOT) {
		if (mfs_txn_dirty(fs->txn)) {
			pthread_mutex_lock(&fs->xlock);
			t = fs->last_edit;
			pthread_mutex_unlock(&fs->xlock);
		} else {
			const struct mfs_desc *d = mfs_txn_desc(fs->txn);
			t.tv_sec = d->files[0].mtime_sec;
			t.tv_nsec = d->files[0].mtime_nsec;
		}
	}
	st->st_atim = st->st_mtim = st->st_ctim = t;
	pthread_mutex_lock(&fs->xlock);
	const struct mfs_xnode *x = mfs_itab_x(fs->itab, en->ino);
	if (x) {
		if (x->set & MFS_XA_MODE)
			st->st_mode = (st->st_mode & S_IFMT) | (x->mode & 07777);
		if (x->set & MFS_XA_UID)
			st->st_uid = x->uid;
		if (x->set & MFS_XA_GID)
			st->st_gid = x->gid;
		if (x->set & MFS_XA_ATIME)
			st->st_atim = x->atime;
		if (x->set & MFS_XA_MTIME)
			st->st_mtim = x->mtime;
		if (x->set & MFS_XA_CTIME)
			st->st_ctim = x->ctime;
	}
	if (en->role == R_DIR || en->role == R_CTL_DIR)
		st->st_size += scratch_count(fs, en->ino) + (en->ino == FUSE_ROOT_ID);
	pthread_mutex_unlock(&fs->xlock);
	return 0;
}

/* How long the kernel may trust the attributes of `en` (see CACHING). */
static double attr_timeout(const struct ent *en)
{
	switch (en->role) {
	case R_ROOT:
	case R_STATUS:
		return 0.0;
	case R_DTYPE:
	case R_SHAPE:
	case R_META:
	case R_PROP:
		return en->writable ? 0.0 : MFS_CACHE_TIMEOUT;
	default:
		return MFS_CACHE_TIMEOUT;
	}
}

/* A scratch file handed to the kernel once more (lookup, create, readdirplus). */
static void ref_scratch(struct mfs_fs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x = mfs_itab_x(fs->itab, ino);
	if (x && x->kind == MFS_XN_SCRATCH)
		x->nlookup++;
	pthread_mutex_unlock(&fs->xlock);
}

static int fill_entry(struct mfs_fs *fs, const struct ent *en, struct fuse_entry_param *ep)
{
	memset(ep, 0, sizeof(*ep));
	int rc = fill_stat(fs, en, &ep->attr);
	if (rc < 0)
		return rc;
	ep->ino = en->asked;
	ep->generation = 1;
	ep->attr_timeout = attr_timeout(en);
	ep->entry_timeout = MFS_CACHE_TIMEOUT;
	return 0;
}

/* ------------------------------------------------------- names */

/*
 * Look `name` up in directory `dir` (fs->lock held shared).  Returns 0 and
 * the child's inode number, or -ENOENT, -ENOTDIR, -ESTALE.
 */
static int child_of(struct mfs_fs *fs, const struct ent *dir, const char *name, size_t len,
                    uint64_t *out)
{
	if (dir->role == R_CTL_DIR) {
		if (len == 6 && !memcmp(name, "status", 6))
			*out = fs->ctl_status;
		else if (len == 6 && !memcmp(name, "commit", 6))
			*out = fs->ctl_commit;
		else if (len == 5 && !memcmp(name, "abort", 5))
			*out = fs->ctl_abort;
		else
			return -ENOENT;
		return 0;
	}
	if (dir->role != R_DIR)
		return -ENOTDIR;
	if (dir->ino == FUSE_ROOT_ID && len == 8 && !memcmp(name, ".modelfs", 8)) {
		*out = fs->ctl_dir;
		return 0;
	}
	uint32_t idx;
	int rc = mfs_tree_lookup(fs->gen->tree, dir->idx, name, len, &idx);
	if (rc == 0) {
		*out = mfs_itab_ino(fs->itab, idx);
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x = mfs_itab_scratch_find(fs->itab, dir->ino, name, len);
	if (x)
		*out = x->ino;
	pthread_mutex_unlock(&fs->xlock);
	return x ? 0 : -ENOENT;
}

/* Resolve a directory for a namespace operation. */
static int dir_resolve(struct mfs_fs *fs, uint64_t ino, struct ent *en)
{
	int rc = resolve(fs, ino, en);
	if (rc < 0)
		return rc;
	return en->role == R_DIR || en->role == R_CTL_DIR ? 0 : -ENOTDIR;
}

/* ------------------------------------------------------- init, destroy */

/*
 * init - the kernel's INIT: big reads and writes, splice for replies,
 * O_TRUNC inside open (so a truncating open is one request on a handle),
 * write-through (a write's error reaches write(2)), and the invalidation
 * thread.
 * SPLICE_WRITE lets fuse_reply_data pass file pages to the kernel through
 * a pipe, without copying them through this process (only when a reply
 * fits in a pipe: see MFS_MAX_READ).  Not SPLICE_MOVE: moving would take
 * the pages out of the model file's page cache (for the order-0 pages it
 * can move at all), and measured no faster.  Capabilities are requested
 * only where the kernel offers them (asking for more aborts the mount).
 */
static void ll_init(void *userdata, struct fuse_conn_info *conn)
{
	struct mfs_fs *fs = userdata;
	conn->max_read = fs->max_read;
	conn->max_readahead = MFS_IO_SIZE;
	conn->max_write = MFS_IO_SIZE;
	conn->want |= conn->capable & (FUSE_CAP_SPLICE_WRITE | FUSE_CAP_ATOMIC_O_TRUNC |
	                               FUSE_CAP_AUTO_INVAL_DATA);
	/*
	 * No OPENDIR/RELEASEDIR round trips: nothing is kept per open
	 * directory, and the kernel still caches listings.  Measured on the
	 * 100,000-node graph (bench/run metadata rows): half the requests of a
	 * first `find`, and a second `find` of a read-only mount at the speed
	 * of the same tree on disk.
	 */
	if (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) {
		conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
		fs->no_opendir = true;
	}
	/*
	 * Always readdirplus, not the kernel's "auto" heuristic (plus for the
	 * first chunk only, unless lookups follow): attributes here cost nothing
	 * to produce, while every LOOKUP the heuristic leaves for `ls -l`,
	 * `find` or rsync is a round trip.  Measured on a 100,000-node graph:
	 * the first `ls -l nodes/` went from 94,000 lookups to none.
	 */
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	/* Write-through: every write is staged (and fails) when it is made. */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (!fs->qstarted && fs->se &&
	    pthread_create(&fs->qthread, NULL, inval_thread, fs) == 0)
		fs->qstarted = true;
}

/*
 * destroy - the session ends (unmount, or a signal): commit what is staged
 * (DESIGN §5).  If the commit fails the edits stay in the journal and are
 * offered again at the next mount; say so on stderr and in the log.
 */
static void ll_destroy(void *userdata)
{
	struct mfs_fs *fs = userdata;
	inval_stop(fs);
	if (fs->read_only)
		return;
	struct mfs_txn_result res;
	pthread_mutex_lock(&fs->slock);
	int rc = mfs_txn_commit(fs->txn, &res);
	pthread_mutex_unlock(&fs->slock);
	fs->unmount_rc = rc;
	if (rc < 0) {
		fprintf(stderr, "mount.modelfs: commit at unmount failed: %s; the staged edits "
		        "stay in the journal for the next mount\n", res.msg);
		syslog(LOG_WARNING, "modelfs: commit at unmount failed: %s; the staged edits stay "
		       "in the journal for the next mount", res.msg);
	}
}

/* ------------------------------------------------------- lookups */

/*
 * lookup - find `name` in directory `parent`.
 * Valid replies: fuse_reply_entry, fuse_reply_err.
 * A name that is not there is a negative entry (ino 0) cached as long as a
 * positive one: a name the daemon makes appear behind the kernel's back
 * is invalidated when it does (see CACHING).
 */
static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mfs_fs *fs = fs_of(req);
	struct ent dir, en;
	struct fuse_entry_param ep;
	uint64_t ino;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = dir_resolve(fs, parent, &dir);
	if (rc == 0)
		rc = child_of(fs, &dir, name, strlen(name), &ino);
	if (rc == -ENOENT) {
		pthread_rwlock_unlock(&fs->lock);
		memset(&ep, 0, sizeof(ep));
		ep.entry_timeout = MFS_CACHE_TIMEOUT;
		fuse_reply_entry(req, &ep);
		return;
	}
	if (rc == 0)
		rc = resolve(fs, ino, &en);
	if (rc == 0)
		rc = fill_entry(fs, &en, &ep);
	if (rc == 0 && en.role == R_SCRATCH)
		ref_scratch(fs, ino);
	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &ep);
}

/* Drop `n` kernel references to `ino`; a scratch file nobody reaches goes. */
static void forget_one(struct mfs_fs *fs, uint64_t ino, uint64_t n)
{
	uint64_t drop = UINT64_MAX;
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x = mfs_itab_x(fs->itab, ino);
	if (x && x->kind == MFS_XN_SCRATCH) {
		x->nlookup = x->nlookup > n ? x->nlookup - n : 0;
		if (!x->nlookup && !x->listed) {
			if (!x->dropped)
				drop = x->scratch;
			mfs_itab_x_put(fs->itab, x);
		}
	}
	pthread_mutex_unlock(&fs->xlock);
	if (drop != UINT64_MAX)
		mfs_txn_scratch_drop(fs->txn, drop);
}

/*
 * forget, forget_multi - the kernel dropped references.  Only scratch
 * files count them (inode.c, "Lookup counts").
 * Valid replies: fuse_reply_none.
 */
static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		forget_one(fs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ------------------------------------------------------- attributes */

/*
 * Per-open state (fi->fh), on the fs->fhs list while open (so that a rename
 * finds the descriptors of the data file it replaces, and so that the
 * daemon frees what the kernel never released when it exits).  Every open
 * of a data file has one; read-only opens of other tree entries have none.
 */
enum fh_kind { FH_PLAIN = 1, FH_TEXT, FH_STATUS };

/*
 * The content a rename over `data` took away from the descriptors open on
 * it: a scratch object shared by those handles, dropped with the last.
 */
struct snap {
	uint64_t scratch;       /* scratch object id (txn.h) */
	unsigned refs;          /* handles reading it (fs->xlock) */
	struct stat st;         /* the file's attributes when it was replaced */
};

struct fh {
	int kind;
	pthread_mutex_t lock;
	char *buf;              /* FH_TEXT: the value being written; FH_STATUS: the text */
	size_t len, cap;
	bool dirty;             /* FH_TEXT: buf holds a value not staged yet */
	bool failed;            /* FH_TEXT: a write was refused; the close says so too */
	bool wrote;             /* something was staged: sync the journal on flush */

	/* on fs->fhs (under fs->xlock) */
	bool listed;
	uint64_t tid;           /* data files: the tensor's id (struct mfs_tensor.id),
	                         * else NO_TENSOR */
	uint64_t ino;           /* the inode opened */
	struct snap *snap;      /* set once, when a rename replaced the file */
	struct fh *next, *prev;
};

static struct fh *fh_of(const struct fuse_file_info *fi)
{
	return fi ? (struct fh *)(uintptr_t)fi->fh : NULL;
}

static struct fh *fh_new(int kind)
{
	struct fh *h = calloc(1, sizeof(*h));
	if (h) {
		h->kind = kind;
		pthread_mutex_init(&h->lock, NULL);
	}
	return h;
}

static void fh_free(struct fh *h)
{
	if (!h)
		return;
	assert(!h->listed);
	pthread_mutex_destroy(&h->lock);
	free(h->buf);
	free(h);
}

/* Make the buffer `len` bytes long, zero-filling what grows (h->lock held). */
static int fh_resize(struct fh *h, size_t len)
{
	if (len > MFS_TEXT_MAX)
		return -EFBIG;
	if (len + 1 > h->cap) {
		size_t cap = h->cap ? h->cap : 64;
		while (cap < len + 1)
			cap *= 2;
		char *b = realloc(h->buf, cap);
		if (!b)
			return -ENOMEM;
		h->buf = b;
		h->cap = cap;
	}
	if (len > h->len)
		memset(h->buf + h->len, 0, len - h->len);
	h->len = len;
	h->buf[len] = '\0';
	return 0;
}

/* Put a handle at the head of fs->fhs (xlock held). */
static void fh_link_locked(struct mfs_fs *fs, struct fh *h, uint64_t tid, uint64_t ino)
{
	h->tid = tid;
	h->ino = ino;
	h->next = fs->fhs;
	h->prev = NULL;
	if (fs->fhs)
		fs->fhs->prev = h;
	fs->fhs = h;
	h->listed = true;
}

/* Put a handle on fs->fhs; `tid` is its tensor's id, NO_TENSOR for other files. */
static void fh_list(struct mfs_fs *fs, struct fh *h, uint64_t tid, uint64_t ino)
{
	if (!h)
		return;
	pthread_mutex_lock(&fs->xlock);
	fh_link_locked(fs, h, tid, ino);
	pthread_mutex_unlock(&fs->xlock);
}

/* A snapshot nobody reads any more: its scratch object and itself go. */
static void snap_free(struct mfs_fs *fs, struct snap *sn)
{
	if (sn) {
		mfs_txn_scratch_drop(fs->txn, sn->scratch);
		free(sn);
	}
}

/* Take a handle off fs->fhs (xlock held); returns the snapshot to drop, or NULL. */
static struct snap *fh_unlist_locked(struct mfs_fs *fs, struct fh *h)
{
	if (!h->listed)
		return NULL;
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->fhs = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->listed = false;
	struct snap *sn = h->snap;
	h->snap = NULL;
	return sn && --sn->refs == 0 ? sn : NULL;
}

/* Release a handle: off the list, and its snapshot goes with the last user. */
static void fh_release(struct mfs_fs *fs, struct fh *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&fs->xlock);
	struct snap *sn = fh_unlist_locked(fs, h);
	pthread_mutex_unlock(&fs->xlock);
	snap_free(fs, sn);
	fh_free(h);
}

/* At exit: the handles the kernel never released (the daemon was told to exit). */
static void fh_free_all(struct mfs_fs *fs)
{
	while (fs->fhs) {
		struct fh *h = fs->fhs;
		free(fh_unlist_locked(fs, h));  /* its scratch object goes with the txn */
		fh_free(h);
	}
}

/* The handle's snapshot, if a rename replaced its file (see data_over). */
static struct snap *fh_snap(const struct fh *h)
{
	return h ? __atomic_load_n(&h->snap, __ATOMIC_ACQUIRE) : NULL;
}

/*
 * A new handle on inode `ino`, a data file that a rename replaced, sharing
 * the snapshot of a descriptor still open on it; NULL when there is none.
 */
static struct fh *open_replaced(struct mfs_fs *fs, uint64_t ino)
{
	struct fh *h = fh_new(FH_PLAIN);
	if (!h)
		return NULL;
	pthread_mutex_lock(&fs->xlock);
	struct fh *o = fs->fhs;
	while (o && !(o->ino == ino && o->snap))
		o = o->next;
	if (o) {
		h->snap = o->snap;
		h->snap->refs++;
		fh_link_locked(fs, h, o->tid, ino);
	}
	pthread_mutex_unlock(&fs->xlock);
	if (!o) {
		fh_free(h);
		return NULL;
	}
	return h;
}

/* Stage a text handle's value (h->lock held, fs->lock held shared). */
static int fh_apply(struct mfs_fs *fs, const struct ent *en, struct fh *h)
{
	if (!h->dirty)
		return h->failed ? -EINVAL : 0;
	int rc = text_apply(fs, en, h->buf ? h->buf : "", h->len);
	h->dirty = false;
	if (rc < 0) {
		h->failed = rc == -EINVAL;
		return rc;
	}
	h->wrote = true;
	/* Staged in its canonical form, which other opens may not have cached. */
	edited(fs, en, true);
	return 0;
}

/* Is `attr` the attributes' change allowed on `en`? */
static bool attrs_settable(const struct ent *en)
{
	return en->writable || en->role == R_DIR || en->role == R_SCRATCH;
}

/*
 * setattr - truncate (writable files), chmod, chown, utimes.
 * Times, mode and owner are kept in memory on writable files, scratch
 * files and directories; on read-only files they are EPERM, and a truncate
 * of one is EACCES.  A truncate of a text entry is staged like a write
 * (through the handle when there is one).
 * Valid replies: fuse_reply_attr, fuse_reply_err.
 */
static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	struct mfs_fs *fs = fs_of(req);
	const int meta = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
	                 FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
	                 FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
	struct ent en;
	struct stat st;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = resolve(fs, ino, &en);
	if (rc == 0 && (to_set & meta) && !attrs_settable(&en))
		rc = -EPERM;
	if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
		uint64_t size = (uint64_t)attr->st_size;
		struct fh *h = fh_of(fi);
		switch (en.role) {
		case R_DATA:
			rc = en.writable ? mfs_txn_tensor_truncate(fs->txn, en.t, size) : -EACCES;
			if (rc == 0)
				edited(fs, &en, false);
			break;
		case R_SCRATCH:
			rc = mfs_txn_scratch_truncate(fs->txn, en.scratch, size);
			if (rc == 0)
				edited(fs, &en, false);
			break;
		case R_DTYPE:
		case R_SHAPE:
		case R_META:
		case R_PROP:
			if (!en.writable) {
				rc = -EACCES;
			} else if (h && h->kind == FH_TEXT) {
				pthread_mutex_lock(&h->lock);
				rc = fh_resize(h, size);
				if (rc == 0)
					h->dirty = true;
				pthread_mutex_unlock(&h->lock);
			} else {
				char *b = NULL;
				size_t n;
				rc = size > MFS_TEXT_MAX ? -EFBIG : text_get(fs, &en, &b, &n);
				char *nb = rc == 0 ? realloc(b, (size_t)size + 1) : NULL;
				if (rc == 0 && !nb)
					rc = -ENOMEM;
				if (rc == 0) {
					b = nb;
					if (size > n)
						memset(b + n, 0, (size_t)size - n);
					rc = text_apply(fs, &en, b, (size_t)size);
				}
				free(b);
				if (rc == 0)
					edited(fs, &en, true);
			}
			break;
		case R_COMMIT:
		case R_ABORT:
			break;  /* `echo > commit` may truncate first: nothing to do */
		case R_DIR:
		case R_CTL_DIR:
			rc = -EISDIR;
			break;
		default:
			rc = -EACCES;
			break;
		}
	}
	if (rc == 0 && (to_set & meta)) {
		struct timespec t = now();
		pthread_mutex_lock(&fs->xlock);
		struct mfs_xnode *x = mfs_itab_x_get(fs->itab, en.ino);
		if (!x) {
			rc = -ENOMEM;
		} else {
			if (to_set & FUSE_SET_ATTR_MODE) {
				x->mode = attr->st_mode & 07777;
				x->set |= MFS_XA_MODE;
			}
			if (to_set & FUSE_SET_ATTR_UID) {
				x->uid = attr->st_uid;
				x->set |= MFS_XA_UID;
			}
			if (to_set & FUSE_SET_ATTR_GID) {
				x->gid = attr->st_gid;
				x->set |= MFS_XA_GID;
			}
			if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
				x->atime = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? t : attr->st_atim;
				x->set |= MFS_XA_ATIME;
			}
			if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
				x->mtime = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? t : attr->st_mtim;
				x->set |= MFS_XA_MTIME;
			}
			x->ctime = (to_set & FUSE_SET_ATTR_CTIME) ? attr->st_ctim : t;
			x->set |= MFS_XA_CTIME;
		}
		pthread_mutex_unlock(&fs->xlock);
	}
	if (rc == 0)
		rc = fill_stat(fs, &en, &st);
	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, attr_timeout(&en));
}

/*
 * getattr - the attributes of `ino` (of the handle, for .modelfs/status).
 * Valid replies: fuse_reply_attr, fuse_reply_err.
 */
/*
 * Attributes of a data file that a rename replaced, asked through one of its
 * descriptors (fstat, or the kernel before a read near the end): a file
 * with no name left, the size of the content it kept.
 */
static void snap_stat(fuse_req_t req, struct mfs_fs *fs, fuse_ino_t ino, const struct snap *sn)
{
	struct stat st = sn->st;
	uint64_t size;
	int rc = mfs_txn_scratch_size(fs->txn, sn->scratch, &size);
	if (rc < 0) {
		fuse_reply_err(req, rc == -ENOENT ? ESTALE : -rc);
		return;
	}
	st.st_ino = ino;
	st.st_nlink = 0;
	st.st_size = (off_t)size;
	st.st_blocks = (blkcnt_t)((size + 511) / 512);
	fuse_reply_attr(req, &st, MFS_CACHE_TIMEOUT);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mfs_fs *fs = fs_of(req);
	struct ent en;
	struct stat st;
	struct snap *sn = fh_snap(fh_of(fi));
	if (sn) {
		snap_stat(req, fs, ino, sn);
		return;
	}
	pthread_rwlock_rdlock(&fs->lock);
	int rc = resolve(fs, ino, &en);
	if (rc == 0)
		rc = fill_stat(fs, &en, &st);
	/* An open status handle's size is that of its text (served from it). */
	struct fh *h = fh_of(fi);
	if (rc == 0 && h && h->kind == FH_STATUS) {
		st.st_size = (off_t)h->len;
		st.st_blocks = (blkcnt_t)((h->len + 511) / 512);
	}

	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, attr_timeout(&en));
}

/* ------------------------------------------------------- directories */

/*
 * opendir - open a directory for readdir: ENOSYS when the kernel can do
 * without (ll_init), else an open with nothing kept.  The kernel may cache
 * listings (cache_readdir) and keep them between opens: it drops them
 * itself on create, unlink and rename, and the daemon invalidates what
 * changes otherwise.
 * Valid replies: fuse_reply_open, fuse_reply_err.
 */
static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mfs_fs *fs = fs_of(req);
	if (fs->no_opendir) {
		fuse_reply_err(req, ENOSYS);    /* no opendir needed (see ll_init) */
		return;
	}
	struct ent en;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = resolve(fs, ino, &en);
	pthread_rwlock_unlock(&fs->lock);
	if (rc == 0 && en.role != R_DIR && en.role != R_CTL_DIR)
		rc = -ENOTDIR;
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/*
 * readdir, readdirplus - list directory `ino` from position `off`.
 * Positions: 0 is ".", 1 is "..", then the tree's children in display
 * order, then scratch files, then (at the root) ".modelfs"; each entry
 * carries the position of the next one.  readdirplus also hands out each
 * child's attributes, sparing `ls -l` one lookup per entry.
 * Valid replies: fuse_reply_buf, fuse_reply_err.
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct mfs_fs *fs = fs_of(req);
	struct ent dir;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = dir_resolve(fs, ino, &dir);
	char *buf = rc == 0 ? malloc(size ? size : 1) : NULL;
	if (rc == 0 && !buf)
		rc = -ENOMEM;
	if (rc < 0) {
		pthread_rwlock_unlock(&fs->lock);
		fuse_reply_err(req, -rc);
		return;
	}
	const struct mfs_tree *tree = fs->gen->tree;
	uint64_t n_tree = dir.role == R_DIR ? dir.e->u.dir.count : 0;
	static const char *const ctl[] = {"status", "commit", "abort"};
	size_t pos = 0;
	for (uint64_t i = off < 0 ? 0 : (uint64_t)off;; i++) {
		char name[MFS_NAME_MAX + 1];
		uint64_t c;
		if (i == 0) {
			c = dir.asked;
			strcpy(name, ".");
		} else if (i == 1) {
			c = dir.role == R_CTL_DIR ? FUSE_ROOT_ID : mfs_itab_ino(fs->itab, dir.e->parent);
			strcpy(name, "..");
		} else if (dir.role == R_CTL_DIR) {
			if (i - 2 >= 3)
				break;
			child_of(fs, &dir, ctl[i - 2], strlen(ctl[i - 2]), &c);
			strcpy(name, ctl[i - 2]);
		} else if (i - 2 < n_tree) {
			uint32_t ci = mfs_tree_child(tree, dir.idx, (uint32_t)(i - 2));
			const struct mfs_tnode *ce = mfs_tree_node(tree, ci);
			c = mfs_itab_ino(fs->itab, ci);
			memcpy(name, ce->name, ce->name_len);
			name[ce->name_len] = '\0';
		} else {
			/* Scratch files, then .modelfs at the root. */
			uint64_t k = i - 2 - n_tree, j = 0;
			struct mfs_xnode *x;
			c = 0;
			pthread_mutex_lock(&fs->xlock);
			for (x = mfs_itab_scratch_next(fs->itab, NULL); x;
			     x = mfs_itab_scratch_next(fs->itab, x)) {
				if (x->parent != dir.ino)
					continue;
				if (j++ == k) {
					c = x->ino;
					memcpy(name, x->name, x->name_len + 1);
					break;
				}
			}
			pthread_mutex_unlock(&fs->xlock);
			if (!c) {
				if (dir.ino != FUSE_ROOT_ID || k != j)
					break;
				c = fs->ctl_dir;
				strcpy(name, ".modelfs");
			}
		}
		size_t n;
		struct ent ce;
		if (plus) {
			struct fuse_entry_param ep;
			if (resolve(fs, c, &ce) < 0 || fill_entry(fs, &ce, &ep) < 0)
				continue;       /* gone meanwhile */
			n = fuse_add_direntry_plus(req, buf + pos, size - pos, name, &ep, (off_t)(i + 1));
			if (n <= size - pos && i >= 2 && ce.role == R_SCRATCH)
				ref_scratch(fs, c);
		} else {
			int kind = S_IFREG;
			if (i < 2 || c == fs->ctl_dir)
				kind = S_IFDIR;
			else if (dir.role == R_DIR && i - 2 < n_tree)
				kind = mfs_tree_node(tree, mfs_tree_child(tree, dir.idx, (uint32_t)(i - 2)))
				               ->kind == MFS_TN_DIR ? S_IFDIR : S_IFREG;
			struct stat st = {.st_ino = c, .st_mode = (mode_t)kind};
			n = fuse_add_direntry(req, buf + pos, size - pos, name, &st, (off_t)(i + 1));
		}
		if (n > size - pos)
			break;
		pos += n;
	}
	pthread_rwlock_unlock(&fs->lock);
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

/*
 * releasedir - nothing is held per open directory.
 * Valid replies: fuse_reply_err (0).
 */
static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino, (void)fi;
	fuse_reply_err(req, 0);
}

/* ------------------------------------------------------- transactions */

/* Commit (slock not held).  Returns 0 or the commit's negative errno. */
static int do_commit(struct mfs_fs *fs, struct mfs_txn_result *res)
{
	pthread_mutex_lock(&fs->slock);
	pthread_rwlock_wrlock(&fs->lock);
	fs->committing = true;
	pthread_rwlock_unlock(&fs->lock);
	int rc = mfs_txn_commit(fs->txn, res);
	sync_tree(fs, NULL, NULL);
	pthread_rwlock_wrlock(&fs->lock);
	fs->committing = false;
	uint64_t root = root_file_ino(fs);
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
			inval_inode(fs, x->ino);
		}
	}
	struct mfs_xnode *x = root ? mfs_itab_x_get(fs->itab, root) : NULL;
	if (x)
		x->ver++;
	pthread_mutex_unlock(&fs->xlock);
	pthread_rwlock_unlock(&fs->lock);
	if (root)
		inval_inode(fs, root);
	pthread_mutex_unlock(&fs->slock);
	return rc;
}

/* Abort (slock not held): drop every staged edit and scratch file. */
static int do_abort(struct mfs_fs *fs)
{
	pthread_mutex_lock(&fs->slock);
	int rc = mfs_txn_abort(fs->txn);
	pthread_rwlock_wrlock(&fs->lock);
	uint64_t root = root_file_ino(fs);
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x, *nx;
	for (x = mfs_itab_scratch_next(fs->itab, NULL); x; x = nx) {
		nx = mfs_itab_scratch_next(fs->itab, x);
		inval_entry(fs, x->parent, x->name, x->name_len);
		inval_inode(fs, x->parent);
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
			inval_inode(fs, x->ino);
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
				inval_inode(fs, mfs_itab_ino(fs->itab, i));
		fs->recovered = false;
	}
	pthread_rwlock_unlock(&fs->lock);
	sync_tree(fs, NULL, NULL);
	pthread_mutex_unlock(&fs->slock);
	inval_wait(fs, MFS_INVAL_WAIT_MS);
	return rc;
}

/* ------------------------------------------------------- files */

/*
 * open - open a file.  Writing needs a writable entry (else EACCES); O_TRUNC
 * of `data` or a scratch file truncates at once; text entries opened for
 * writing get a buffer (direct_io: the kernel caches nothing of a value
 * being written).  Read-only opens keep the kernel's cached pages unless
 * the content changed behind them (see CACHING), and skip FLUSH.
 * Valid replies: fuse_reply_open, fuse_reply_err.
 */
static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mfs_fs *fs = fs_of(req);
	struct ent en;
	struct fh *h = NULL;
	bool wr = (fi->flags & O_ACCMODE) != O_RDONLY;
	bool trunc = wr && (fi->flags & O_TRUNC);
	pthread_rwlock_rdlock(&fs->lock);
	int rc = resolve(fs, ino, &en);
	if (rc == -ESTALE && (h = open_replaced(fs, ino))) {
		/* /proc/PID/fd/N of a data file a rename replaced. */
		pthread_rwlock_unlock(&fs->lock);
		fi->keep_cache = 1;
		fi->direct_io = 0;
		fi->noflush = 1;
		fi->fh = (uintptr_t)h;
		if (fuse_reply_open(req, fi) != 0)
			fh_release(fs, h);
		return;
	}
	if (rc < 0)
		goto out;
	if (en.role == R_DIR || en.role == R_CTL_DIR) {
		rc = -EISDIR;
		goto out;
	}
	if (wr && !en.writable) {
		rc = -EACCES;
		goto out;
	}
	fi->keep_cache = 1;
	fi->direct_io = 0;
	fi->noflush = !wr;
	switch (en.role) {
	case R_STATUS: {
		h = fh_new(FH_STATUS);
		size_t n = mfs_txn_status(fs->txn, NULL, 0);
		h = h && (h->buf = malloc(n + 1)) ? h : (fh_free(h), NULL);
		if (!h) {
			rc = -ENOMEM;
			goto out;
		}
		h->len = mfs_txn_status(fs->txn, h->buf, n + 1);
		if (h->len > n)
			h->len = n;
		fi->direct_io = 1;
		fi->keep_cache = 0;
		break;
	}
	case R_COMMIT:
	case R_ABORT:
		fi->direct_io = 1;
		fi->keep_cache = 0;
		break;
	case R_ROOT:
		/*
		 * What would be committed now: it changes with every edit, and
		 * every descriptor must see it change (a loader reading the root
		 * file sees the edits), so the page cache is bypassed.  In a
		 * read-only mount it never changes and is cached like any file.
		 */
		if (!fs->read_only) {
			fi->direct_io = 1;
			fi->keep_cache = 0;
		}
		break;
	case R_DATA:
	case R_SCRATCH:
		/* Every data handle, to find those a rename replaces (data_over). */
		if ((wr || en.role == R_DATA) && !(h = fh_new(FH_PLAIN))) {
			rc = -ENOMEM;
			goto out;
		}
		if (trunc) {
			rc = en.role == R_DATA ? mfs_txn_tensor_truncate(fs->txn, en.t, 0) :
			     mfs_txn_scratch_truncate(fs->txn, en.scratch, 0);
			if (rc < 0)
				goto out;
			h->wrote = true;
			edited(fs, &en, false);
		}
		break;
	case R_DTYPE:
	case R_SHAPE:
	case R_META:
	case R_PROP:
		if (!wr)
			break;
		if (!(h = fh_new(FH_TEXT))) {
			rc = -ENOMEM;
			goto out;
		}
		if (trunc) {
			/* Empty, but not a value yet: a shell's `>` closes a
			 * duplicate (FLUSH) before it writes, so only a write or
			 * a truncate of the handle stages something. */
			rc = fh_resize(h, 0);
		} else {
			char *b;
			size_t n;
			rc = text_get(fs, &en, &b, &n);
			if (rc == 0) {
				h->buf = b;
				h->len = n;
				h->cap = n + 1;
			}
		}
		if (rc < 0)
			goto out;
		fi->direct_io = 1;
		fi->keep_cache = 0;
		break;
	default:
		break;
	}
	if (fi->keep_cache) {
		/* Content changed behind the kernel's back since the last open? */
		pthread_mutex_lock(&fs->xlock);
		struct mfs_xnode *x = mfs_itab_x(fs->itab, en.asked);
		if (x && x->ver != x->seen) {
			fi->keep_cache = 0;
			x->seen = x->ver;
		}
		pthread_mutex_unlock(&fs->xlock);
	}
	if (rc == 0)
		fh_list(fs, h, en.role == R_DATA ? en.t->id : NO_TENSOR, en.asked);
out:
	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0) {
		fh_free(h);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)h;
	if (fuse_reply_open(req, fi) != 0)
		fh_release(fs, h);      /* the open was interrupted: no release will come */
}

/* Reply with `len` bytes of descriptor `fd` at `pos`, spliced when possible. */
static void reply_fd(fuse_req_t req, int fd, uint64_t pos, size_t len)
{
	if (fd < 0) {
		fuse_reply_err(req, EIO);
		return;
	}
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = fd;
	bv.buf[0].pos = (off_t)pos;
	fuse_reply_data(req, &bv, 0);
}

/* Reply with bytes [off, off + size) of an in-memory text. */
static void reply_slice(fuse_req_t req, const char *p, size_t len, uint64_t off, size_t size)
{
	if (off >= len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	size_t n = len - off < size ? (size_t)(len - off) : size;
	fuse_reply_buf(req, p + off, n);
}

/* Reply with what `rd` reads into a buffer of `size` bytes. */
typedef ssize_t read_fn(void *arg, void *buf, size_t len, uint64_t off);

struct rd_arg {
	struct mfs_fs *fs;
	const struct ent *en;
	const struct snap *sn;
};

static ssize_t rd_staged(void *arg, void *buf, size_t len, uint64_t off)
{
	struct rd_arg *a = arg;
	switch (a->en->role) {
	case R_DATA:
		return mfs_txn_tensor_read(a->fs->txn, a->en->t, buf, len, off);
	case R_SCRATCH:
		return mfs_txn_scratch_read(a->fs->txn, a->en->scratch, buf, len, off);
	default:
		return mfs_txn_file_read(a->fs->txn, 0, buf, len, off);
	}
}

static ssize_t rd_snap(void *arg, void *buf, size_t len, uint64_t off)
{
	struct rd_arg *a = arg;
	ssize_t n = mfs_txn_scratch_read(a->fs->txn, a->sn->scratch, buf, len, off);
	return n == -ENOENT ? -ESTALE : n;      /* gone with an abort */
}

static void reply_read(fuse_req_t req, read_fn *fn, void *arg, size_t size, uint64_t off)
{
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = fn(arg, buf + got, size - got, off + got);
		if (n < 0) {
			free(buf);
			fuse_reply_err(req, (int)-n);
			return;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	fuse_reply_buf(req, buf, got);
	free(buf);
}

/*
 * read - up to `size` bytes of `ino` from `off`; fewer only at the end.
 * Bytes nobody edited come straight from the model's files (spliced when
 * the kernel can); staged bytes and the spliced root file through the txn;
 * text from the tree, the txn, or the handle's buffer.
 * Valid replies: fuse_reply_buf, fuse_reply_iov, fuse_reply_data,
 * fuse_reply_err.
 */
static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct mfs_fs *fs = fs_of(req);
	struct ent en;
	struct fh *h = fh_of(fi);
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	uint64_t o = (uint64_t)off;
	if (h && (h->kind == FH_STATUS || h->kind == FH_TEXT)) {
		/* Copied out under the lock and replied after it: once the reply
		 * is sent, a release on another thread may free the handle. */
		pthread_mutex_lock(&h->lock);
		size_t n = o < h->len ? (h->len - o < size ? (size_t)(h->len - o) : size) : 0;
		char *b = n ? malloc(n) : NULL;
		if (b)
			memcpy(b, h->buf + o, n);
		pthread_mutex_unlock(&h->lock);
		if (n && !b)
			fuse_reply_err(req, ENOMEM);
		else
			fuse_reply_buf(req, b, n);
		free(b);
		return;
	}
	struct snap *sn = fh_snap(h);
	if (sn) {
		/* A descriptor of a data file that a rename replaced. */
		struct rd_arg sa = {.fs = fs, .sn = sn};
		reply_read(req, rd_snap, &sa, size, o);
		return;
	}
	pthread_rwlock_rdlock(&fs->lock);
	int rc = resolve(fs, ino, &en);
	if (rc < 0) {
		pthread_rwlock_unlock(&fs->lock);
		fuse_reply_err(req, -rc);
		return;
	}
	struct rd_arg ra = {.fs = fs, .en = &en};
	switch (en.role) {
	case R_TEXT: {
		const char *p;
		size_t n;
		bool nl;
		mfs_tree_text_slice(fs->gen->tree, en.idx, o, size, &p, &n, &nl);
		struct iovec iov[2] = {{(void *)p, n}, {(void *)"\n", 1}};
		fuse_reply_iov(req, iov, nl ? 2 : 1);
		break;
	}
	case R_DTYPE:
	case R_SHAPE:
	case R_META:
	case R_PROP: {
		char *b;
		size_t n;
		rc = text_get(fs, &en, &b, &n);
		if (rc < 0)
			fuse_reply_err(req, -rc);
		else
			reply_slice(req, b, n, o, size);
		free(b);
		break;
	}
	case R_DATA: {
		const struct mfs_tensor *t = en.t;
		if (fs->committing || mfs_txn_dirty(fs->txn)) {
			uint64_t tsize;
			rc = mfs_txn_tensor_size(fs->txn, t, &tsize);
			if (rc < 0)
				fuse_reply_err(req, -rc);
			else if (o >= tsize)
				fuse_reply_buf(req, NULL, 0);
			else
				reply_read(req, rd_staged, &ra, tsize - o < size ? tsize - o : size, o);
			break;
		}
		if (o >= t->nbytes) {
			fuse_reply_buf(req, NULL, 0);
			break;
		}
		size_t n = t->nbytes - o < size ? (size_t)(t->nbytes - o) : size;
		if (t->mem)
			fuse_reply_buf(req, (const char *)t->mem + o, n);
		else
			reply_fd(req, mfs_file_fd(fs->gen->model, t->src), t->off + o, n);
		break;
	}
	case R_SCRATCH:
		reply_read(req, rd_staged, &ra, size, o);
		break;
	case R_ROOT: {
		uint64_t fsize;
		rc = mfs_txn_file_size(fs->txn, 0, &fsize);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			break;
		}
		if (o >= fsize) {
			fuse_reply_buf(req, NULL, 0);
			break;
		}
		size_t n = fsize - o < size ? (size_t)(fsize - o) : size;
		if (mfs_txn_dirty(fs->txn) || fs->committing)
			reply_read(req, rd_staged, &ra, n, o);
		else
			reply_fd(req, mfs_file_fd(mfs_txn_model(fs->txn), 0), o, n);
		break;
	}
	case R_SRC: {
		uint64_t fsize = fs->gen->desc.files[en.e->u.src].size;
		if (o >= fsize) {
			fuse_reply_buf(req, NULL, 0);
			break;
		}
		size_t n = fsize - o < size ? (size_t)(fsize - o) : size;
		reply_fd(req, mfs_file_fd(fs->gen->model, en.e->u.src), o, n);
		break;
	}
	case R_STATUS: {
		/* Opened without a handle (cannot happen): generate it now. */
		size_t n = mfs_txn_status(fs->txn, NULL, 0);
		char *b = malloc(n + 1);
		if (!b) {
			fuse_reply_err(req, ENOMEM);
			break;
		}
		mfs_txn_status(fs->txn, b, n + 1);
		reply_slice(req, b, n, o, size);
		free(b);
		break;
	}
	case R_COMMIT:
	case R_ABORT:
		fuse_reply_buf(req, NULL, 0);
		break;
	default:
		fuse_reply_err(req, EISDIR);
		break;
	}
	pthread_rwlock_unlock(&fs->lock);
}

/* Does the buffer hold one complete line (a value that can be checked now)? */
static bool complete_line(const struct fh *h)
{
	return h->len && h->buf[h->len - 1] == '\n' && !memchr(h->buf, '\n', h->len - 1);
}

/*
 * write - `size` bytes at `off`.  data and scratch files: staged at once
 * (the txn's errno on failure: EACCES for tensors it cannot edit).  Text
 * entries: into the handle's buffer; a dtype or shape that forms one whole
 * line is checked and staged now, so `echo bad > shape` fails in write(2)
 * with EINVAL.  .modelfs/commit and abort: any write commits or aborts and
 * fails with that operation's errno.
 * Valid replies: fuse_reply_write, fuse_reply_err.
 */
static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	struct mfs_fs *fs = fs_of(req);
	struct ent en;
	struct fh *h = fh_of(fi);
	ssize_t rc;
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	struct snap *sn = fh_snap(h);
	if (sn) {
		/* Into the replaced file's content: seen by its descriptors only. */
		rc = mfs_txn_scratch_write(fs->txn, sn->scratch, buf, size, (uint64_t)off);
		if (rc < 0)
			fuse_reply_err(req, rc == -ENOENT ? ESTALE : (int)-rc);
		else
			fuse_reply_write(req, (size_t)rc);
		return;
	}
	pthread_rwlock_rdlock(&fs->lock);
	rc = resolve(fs, ino, &en);
	if (rc == 0 && !en.writable)
		rc = -EACCES;
	if (rc < 0)
		goto out;
	switch (en.role) {
	case R_DATA:
		rc = mfs_txn_tensor_write(fs->txn, en.t, buf, size, (uint64_t)off);
		break;
	case R_SCRATCH:
		rc = mfs_txn_scratch_write(fs->txn, en.scratch, buf, size, (uint64_t)off);
		break;
	case R_DTYPE:
	case R_SHAPE:
	case R_META:
	case R_PROP: {
		if (!h || h->kind != FH_TEXT) {
			rc = -EBADF;
			break;
		}
		pthread_mutex_lock(&h->lock);
		size_t end = (size_t)off + size;
		char *old = NULL;
		size_t old_len = h->len;
		bool check = en.role == R_DTYPE || en.role == R_SHAPE;
		if (check && !(old = malloc(h->len + 1)))
			rc = -ENOMEM;
		if (rc == 0 && old)
			memcpy(old, h->buf ? h->buf : "", h->len + 1);
		if (rc == 0 && (uint64_t)off + size > MFS_TEXT_MAX)
			rc = -EFBIG;
		if (rc == 0 && end > h->len)
			rc = fh_resize(h, end);
		if (rc == 0) {
			memcpy(h->buf + off, buf, size);
			h->dirty = true;
			h->failed = false;
			rc = (ssize_t)size;
		}
		if (rc >= 0 && check && complete_line(h)) {
			int arc = fh_apply(fs, &en, h);
			if (arc < 0) {
				/* Refused: the buffer goes back to what it was, and the
				 * close will report the refusal again. */
				memcpy(h->buf, old, old_len + 1);
				h->len = old_len;
				h->dirty = false;
				h->failed = true;
				rc = arc;
			}
		}
		free(old);
		pthread_mutex_unlock(&h->lock);
		if (rc >= 0)
			goto out;       /* fh_apply did the bookkeeping */
		break;
	}
	case R_COMMIT: {
		pthread_rwlock_unlock(&fs->lock);
		struct mfs_txn_result res;
		int crc = do_commit(fs, &res);
		if (crc < 0)
			fuse_reply_err(req, -crc);
		else
			fuse_reply_write(req, size);
		return;
	}
	case R_ABORT: {
		pthread_rwlock_unlock(&fs->lock);
		int arc = do_abort(fs);
		if (arc < 0)
			fuse_reply_err(req, -arc);
		else
			fuse_reply_write(req, size);
		return;
	}
	default:
		rc = -EACCES;
		break;
	}
	if (rc >= 0) {
		if (h)
			h->wrote = true;
		edited(fs, &en, false);
	}
out:
	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0)
		fuse_reply_err(req, (int)-rc);
	else
		fuse_reply_write(req, (size_t)rc);
}

/*
 * A text handle's value staged before flush, release or fsync (fs->lock
 * and h->lock taken here).  0 for handles of other kinds.
 */
static int fh_stage_text(struct mfs_fs *fs, fuse_ino_t ino, struct fh *h)
{
	if (!h || h->kind != FH_TEXT)
		return 0;
	struct ent en;
	pthread_rwlock_rdlock(&fs->lock);
	pthread_mutex_lock(&h->lock);
	int rc = resolve(fs, ino, &en);
	if (rc == 0)
		rc = fh_apply(fs, &en, h);
	pthread_mutex_unlock(&h->lock);
	pthread_rwlock_unlock(&fs->lock);
	return rc;
}

/*
 * flush - close(2) of a descriptor (each one): stage a text handle's value
 * (its error, EINVAL for a bad value, is close's), and make what this
 * handle staged durable (mfs_txn_sync: EIO if the journal cannot be
 * synced).  Read-only opens set noflush and never get here.
 * Valid replies: fuse_reply_err.
 */
static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mfs_fs *fs = fs_of(req);
	struct fh *h = fh_of(fi);
	int rc = fh_stage_text(fs, ino, h);
	if (rc == 0 && h && h->wrote) {
		rc = mfs_txn_sync(fs->txn);
		if (rc == 0)
			h->wrote = false;
	}
	fuse_reply_err(req, -rc);
}

/*
 * release - the last descriptor of an open is gone: a value still
 * buffered is staged (its error has no one to go to; flush reported it).
 * Valid replies: fuse_reply_err (0).
 */
static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mfs_fs *fs = fs_of(req);
	struct fh *h = fh_of(fi);
	if (h && h->dirty)
		fh_stage_text(fs, ino, h);      /* no one to report an error to */
	fh_release(fs, h);
	fuse_reply_err(req, 0);
}

/*
 * fsync, fsyncdir - commit (DESIGN §5: fsync of any file in the mount
 * commits), after staging a value the handle still buffers.  The reply is
 * the commit's errno: EINVAL (validation), EFBIG, ESTALE (the model changed
 * on disk), ENOSPC, EIO; the edits stay staged when it fails.
 * Valid replies: fuse_reply_err.
 */
static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	struct mfs_fs *fs = fs_of(req);
	struct fh *h = fh_of(fi);
	int rc = fh_stage_text(fs, ino, h);
	if (rc == 0 && !fs->read_only) {
		struct mfs_txn_result res;
		rc = do_commit(fs, &res);
	}
	fuse_reply_err(req, -rc);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
                        struct fuse_file_info *fi)
{
	(void)fi;
	ll_fsync(req, ino, datasync, NULL);
}

/* ------------------------------------------------------- namespace */

/* A prop is created (not a scratch file) in meta/props/ for names not starting with '.'. */
static bool names_prop(const struct ent *dir, const char *name)
{
	return dir->props && name[0] != '.';
}

/*
 * Make file `name` in directory `parent` (slock held): a new prop in
 * meta/props/, else a scratch file.  On success *out is the new entry.
 */
static int make_file(struct mfs_fs *fs, fuse_ino_t parent, const char *name, mode_t mode,
                     struct ent *out)
{
	struct ent dir;
	uint64_t ino;
	size_t len = strlen(name);
	pthread_rwlock_rdlock(&fs->lock);
	int rc = dir_resolve(fs, parent, &dir);
	if (rc == 0 && !(dir.role == R_DIR && dir.creatable))
		rc = -EACCES;
	if (rc == 0 && len > MFS_NAME_MAX)
		rc = -ENAMETOOLONG;
	if (rc == 0 && child_of(fs, &dir, name, len, &ino) == 0)
		rc = -EEXIST;
	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0)
		return rc;

	if (names_prop(&dir, name)) {
		char *key = NULL;
		pthread_rwlock_rdlock(&fs->lock);
		rc = prop_key(fs, name, len, &key);
		pthread_rwlock_unlock(&fs->lock);
		if (rc == 0)
			rc = mfs_txn_prop_set(fs->txn, key, "", 0);
		free(key);
		struct skip sk = {.parent = dir.ino, .a = name, .a_len = len};
		if (rc == 0)
			rc = sync_tree(fs, NULL, &sk);
		pthread_rwlock_rdlock(&fs->lock);
		if (rc == 0)
			rc = child_of(fs, &dir, name, len, &ino);
		if (rc == 0)
			rc = resolve(fs, ino, out);
		if (rc == 0)
			edited(fs, out, false);
		pthread_rwlock_unlock(&fs->lock);
		return rc;
	}

	uint64_t id;
	rc = mfs_txn_scratch_new(fs->txn, &id);
	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&fs->lock);
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x = mfs_itab_scratch_add(fs->itab, dir.ino, name, len, id);
	if (x) {
		x->create_mode = mode & 07777;
		x->mode = mode & 07777;
		x->mtime = x->ctime = x->atime = now();
		x->set = MFS_XA_MODE | MFS_XA_MTIME | MFS_XA_CTIME | MFS_XA_ATIME;
		ino = x->ino;
	}
	pthread_mutex_unlock(&fs->xlock);
	rc = x ? resolve(fs, ino, out) : -ENOMEM;
	pthread_rwlock_unlock(&fs->lock);
	if (!x)
		mfs_txn_scratch_drop(fs->txn, id);
	return rc;
}

/*
 * create - create and open a file: a prop (meta/props/<key>, staged with an
 * empty value and a buffer for the one being written), or a scratch file
 * (tensor directories; names starting with '.' in meta/props/).  Elsewhere
 * EACCES.
 * Valid replies: fuse_reply_create, fuse_reply_err.
 */
static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	struct mfs_fs *fs = fs_of(req);
	struct ent en;
	struct fuse_entry_param ep;
	struct fh *h = NULL;
	pthread_mutex_lock(&fs->slock);
	int rc = make_file(fs, parent, name, mode, &en);
	if (rc == 0) {
		h = fh_new(en.role == R_PROP ? FH_TEXT : FH_PLAIN);
		if (!h)
			rc = -ENOMEM;
		else if (en.role == R_PROP && fh_resize(h, 0) < 0)
			rc = -ENOMEM;   /* staged as "" already; the writes make the value */
	}
	pthread_rwlock_rdlock(&fs->lock);
	if (rc == 0)
		rc = fill_entry(fs, &en, &ep);
	if (rc == 0 && en.role == R_SCRATCH)
		ref_scratch(fs, en.ino);
	pthread_rwlock_unlock(&fs->lock);
	pthread_mutex_unlock(&fs->slock);
	if (rc < 0) {
		fh_free(h);
		fuse_reply_err(req, -rc);
		return;
	}
	fh_list(fs, h, NO_TENSOR, en.ino);
	fi->fh = (uintptr_t)h;
	fi->keep_cache = 1;
	fi->direct_io = en.role == R_PROP;
	fi->noflush = 0;
	if (fuse_reply_create(req, &ep, fi) != 0)
		fh_release(fs, h);
}

/*
 * mknod - a regular file, as create without an open; other file types
 * cannot live here (EPERM).
 * Valid replies: fuse_reply_entry, fuse_reply_err.
 */
static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev)
{
	(void)rdev;
	struct mfs_fs *fs = fs_of(req);
	struct ent en;
	struct fuse_entry_param ep;
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	pthread_mutex_lock(&fs->slock);
	int rc = make_file(fs, parent, name, mode, &en);
	pthread_rwlock_rdlock(&fs->lock);
	if (rc == 0)
		rc = fill_entry(fs, &en, &ep);
	if (rc == 0 && en.role == R_SCRATCH)
		ref_scratch(fs, en.ino);
	pthread_rwlock_unlock(&fs->lock);
	pthread_mutex_unlock(&fs->slock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &ep);
}

/* Forget a scratch file's name; its object goes now or when the kernel lets go. */
static void scratch_unlink(struct mfs_fs *fs, uint64_t ino, bool consumed)
{
	uint64_t drop = UINT64_MAX;
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x = mfs_itab_x(fs->itab, ino);
	if (x && x->kind == MFS_XN_SCRATCH) {
		mfs_itab_scratch_unlist(fs->itab, x);
		if (consumed)
			x->dropped = true;
		if (!x->nlookup) {
			if (!x->dropped)
				drop = x->scratch;
			mfs_itab_x_put(fs->itab, x);
		}
	}
	pthread_mutex_unlock(&fs->xlock);
	if (drop != UINT64_MAX)
		mfs_txn_scratch_drop(fs->txn, drop);
}

/*
 * unlink - a prop (unstaged or removed) or a scratch file (gone with its
 * last reference: an open descriptor keeps reading and writing it).  Entries
 * of the model cannot be removed: EPERM.
 * Valid replies: fuse_reply_err.
 */
static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mfs_fs *fs = fs_of(req);
	struct ent dir, en;
	uint64_t ino;
	size_t len = strlen(name);
	char *key = NULL;
	pthread_mutex_lock(&fs->slock);
	pthread_rwlock_rdlock(&fs->lock);
	int rc = dir_resolve(fs, parent, &dir);
	if (rc == 0)
		rc = child_of(fs, &dir, name, len, &ino);
	if (rc == 0)
		rc = resolve(fs, ino, &en);
	if (rc == 0 && en.role == R_PROP && en.writable)
		rc = prop_key(fs, name, len, &key);
	else if (rc == 0 && en.role != R_SCRATCH)
		rc = en.role == R_DIR || en.role == R_CTL_DIR ? -EISDIR : -EPERM;
	pthread_rwlock_unlock(&fs->lock);
	if (rc == 0 && en.role == R_SCRATCH) {
		scratch_unlink(fs, ino, false);
	} else if (rc == 0) {
		rc = mfs_txn_prop_unlink(fs->txn, key);
		struct skip sk = {.parent = dir.ino, .a = name, .a_len = len};
		if (rc == 0)
			sync_tree(fs, NULL, &sk);
	}
	pthread_mutex_unlock(&fs->slock);
	free(key);
	fuse_reply_err(req, -rc);
}

/*
 * rmdir, mkdir, symlink, link - the model's directories are its structure:
 * none can be made or removed, and there are no links.
 * Valid replies: fuse_reply_err (EPERM).
 */
static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	fuse_reply_err(req, EPERM);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EPERM);
}

/* A scratch file's whole content, for a value (at most MFS_TEXT_MAX). */
static int scratch_text(struct mfs_fs *fs, uint64_t id, char **out, size_t *len)
{
	uint64_t size;
	*out = NULL;
	*len = 0;
	int rc = mfs_txn_scratch_size(fs->txn, id, &size);
	if (rc < 0)
		return rc;
	if (size > MFS_TEXT_MAX)
		return -EFBIG;
	char *b = malloc((size_t)size + 1);
	if (!b)
		return -ENOMEM;
	size_t got = 0;
	while (got < size) {
		ssize_t n = mfs_txn_scratch_read(fs->txn, id, b + got, (size_t)size - got, got);
		if (n < 0) {
			free(b);
			return (int)n;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	b[got] = '\0';
	*out = b;
	*len = got;
	return 0;
}

/* Does read-only entry `en` hold exactly `p[0 .. len)`? */
static bool same_bytes(struct mfs_fs *fs, const struct ent *en, const char *p, size_t len)
{
	uint64_t size;
	if (size_of(fs, en, &size) < 0 || size != len)
		return false;
	char *b = NULL;
	size_t n = 0;
	if (en->role == R_TEXT || is_text_role(en->role)) {
		if (text_get(fs, en, &b, &n) < 0)
			return false;
	} else {
		struct rd_arg ra = {fs, en};
		b = malloc(len + 1);
		if (!b)
			return false;
		while (n < len) {
			ssize_t r = en->role == R_SRC ?
			            mfs_file_read(fs->gen->model, en->e->u.src, b + n, len - n, n) :
			            rd_staged(&ra, b + n, len - n, n);
			if (r <= 0)
				break;
			n += (size_t)r;
		}
	}
	bool same = n == len && !memcmp(b, p, len);
	free(b);
	return same;
}

/*
 * Scratch file `sino` was renamed over entry `dino`: the kernel now shows
 * the scratch inode under the entry's name, so it becomes an alias of the
 * entry, and what rsync set on its temporary file holds for the entry: all
 * of it when the entry was written (`all`), the times only for an unchanged
 * read-only one (so that the next rsync's quick check skips it).
 */
static void take_over(struct mfs_fs *fs, uint64_t sino, uint64_t dino, bool all)
{
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *sx = mfs_itab_x(fs->itab, sino);
	struct mfs_xnode *dx = mfs_itab_x_get(fs->itab, dino);
	if (sx && dx) {
		unsigned keep = sx->set & (MFS_XA_ATIME | MFS_XA_MTIME);
		if (all)
			keep |= sx->set & (MFS_XA_MODE | MFS_XA_UID | MFS_XA_GID);
		if (keep & MFS_XA_MODE)
			dx->mode = sx->mode;
		if (keep & MFS_XA_UID)
			dx->uid = sx->uid;
		if (keep & MFS_XA_GID)
			dx->gid = sx->gid;
		if (keep & MFS_XA_ATIME)
			dx->atime = sx->atime;
		if (keep & MFS_XA_MTIME)
			dx->mtime = sx->mtime;
		dx->set |= keep;
	}
	if (sx)
		sx->alias = dino;
	pthread_mutex_unlock(&fs->xlock);
}

/*
 * Scratch file `src` renamed over `data` (slock held, fs->lock shared): the
 * tensor adopts the scratch object, and, as on a disk file system, the
 * name now shows the renamed inode (it takes the entry's place in the inode
 * table), while descriptors still open on the file it replaced keep reading
 * that file's content: a snapshot, copied only when there are such
 * descriptors, shared by them and dropped with the last.  Without this, one
 * read(2) on such a descriptor could return old and new bytes (pages the
 * kernel kept and pages it asks for after the adoption).  Returns 1 (the
 * scratch object was consumed) or -errno (nothing changed).
 */
static int data_over(struct mfs_fs *fs, const struct ent *src, const struct ent *dst)
{
	struct snap *sn = NULL;
	unsigned n = 0;
	pthread_mutex_lock(&fs->xlock);
	for (struct fh *h = fs->fhs; h; h = h->next)
		n += h->tid == dst->t->id && !h->snap;
	pthread_mutex_unlock(&fs->xlock);
	if (n) {
		int rc = (sn = calloc(1, sizeof(*sn))) ? 0 : -ENOMEM;
		if (rc == 0)
			rc = fill_stat(fs, dst, &sn->st);
		if (rc == 0)
			rc = mfs_txn_tensor_snapshot(fs->txn, dst->t, &sn->scratch);
		if (rc < 0) {
			free(sn);
			return rc;
		}
		/* From here on those descriptors read the snapshot (the same
		 * bytes as the tensor, until the adoption below).  One reference
		 * is ours until the end, since they may close meanwhile. */
		pthread_mutex_lock(&fs->xlock);
		sn->refs = 1;
		for (struct fh *h = fs->fhs; h; h = h->next) {
			if (h->tid == dst->t->id && !h->snap) {
				sn->refs++;
				__atomic_store_n(&h->snap, sn, __ATOMIC_RELEASE);
			}
		}
		pthread_mutex_unlock(&fs->xlock);
	}
	/*
	 * If this fails, the descriptors keep the snapshot (a read may be
	 * using it now): they show the file as it was, without later edits.
	 */
	int rc = mfs_txn_scratch_adopt(fs->txn, src->scratch, dst->t);
	struct snap *drop = NULL;
	pthread_mutex_lock(&fs->xlock);
	if (sn && --sn->refs == 0)
		drop = sn;      /* every such descriptor was closed meanwhile */
	struct mfs_xnode *sx = rc == 0 ? mfs_itab_x(fs->itab, src->asked) : NULL;
	bool took = sx && mfs_itab_take_number(fs->itab, dst->idx, sx) == 0;
	if (took) {
		/* The entry's state is the renamed inode's: what rsync set on
		 * its temporary file stays, and it was edited now. */
		struct timespec t = now();
		sx->ctime = t;
		if (!(sx->set & MFS_XA_MTIME))
			sx->mtime = t;
		sx->set |= MFS_XA_MTIME | MFS_XA_CTIME;
		sx->touched = true;
		fs->last_edit = t;
		/* Descriptors of the scratch file are now of `data`. */
		for (struct fh *h = fs->fhs; h; h = h->next)
			if (h->ino == src->asked)
				h->tid = dst->t->id;
		uint64_t root = root_file_ino(fs);
		struct mfs_xnode *rx = root ? mfs_itab_x_get(fs->itab, root) : NULL;
		if (rx)
			rx->ver++;
	}
	pthread_mutex_unlock(&fs->xlock);
	snap_free(fs, drop);
	if (rc < 0)
		return rc;
	if (!took) {
		/* No memory for the table: the scratch inode becomes an alias. */
		edited(fs, dst, true);
		take_over(fs, src->asked, dst->ino, true);
	}
	return 1;
}

/*
 * Scratch file `src` renamed onto existing entry `dst` (slock held, fs->lock
 * shared).  data adopts the scratch object; a text entry takes its content
 * as the value; a read-only entry accepts it only when nothing would change
 * (so that `rsync -a` of an unchanged `name` file succeeds).  The scratch
 * inode becomes an alias of the entry.
 */
static int scratch_over(struct mfs_fs *fs, const struct ent *src, const struct ent *dst)
{
	int rc;
	char *b = NULL;
	size_t n = 0;
	bool consumed = false;
	switch (dst->role) {
	case R_DIR:
	case R_CTL_DIR:
		return -EISDIR;
	case R_SCRATCH:
		return -EEXIST;         /* handled by the caller */
	case R_STATUS:
	case R_COMMIT:
	case R_ABORT:
		return -EACCES;
	case R_DATA:
		if (!dst->writable)
			return -EACCES;
		return data_over(fs, src, dst);
	case R_DTYPE:
	case R_SHAPE:
	case R_META:
	case R_PROP:
		if (dst->writable) {
			rc = scratch_text(fs, src->scratch, &b, &n);
			if (rc == 0)
				rc = text_apply(fs, dst, b, n);
			break;
		}
		/* A read-only value: as any read-only entry. */
		/* fall through */
	default:
		rc = scratch_text(fs, src->scratch, &b, &n);
		if (rc == 0 && !same_bytes(fs, dst, b, n))
			rc = -EACCES;
		if (rc == -EFBIG)
			rc = -EACCES;
		break;
	}
	free(b);
	if (rc < 0)
		return rc;
	bool changed = dst->writable;
	if (changed)
		edited(fs, dst, true);
	take_over(fs, src->asked, dst->ino, changed);
	return consumed ? 1 : 0;
}

/*
 * rename - within what the model allows:
 *   a scratch file onto `data`, dtype, shape, a writable meta file or a
 *   prop: staged as that entry's content; onto an unchanged read-only
 *   entry: accepted, nothing changes; onto another scratch file or a new
 *   name in a writable directory: renamed; onto a new name in meta/props/
 *   not starting with '.': a new prop;
 *   a prop onto another name in meta/props/: the prop is renamed.
 * Anything else is EPERM (the model's entries stay where they are) or
 * EACCES (a read-only target).  RENAME_EXCHANGE is EINVAL.
 * Valid replies: fuse_reply_err.
 */
static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	struct mfs_fs *fs = fs_of(req);
	struct ent pd, qd, src, dst;
	uint64_t sino, dino = 0;
	size_t len = strlen(name), nlen = strlen(newname);
	bool have_dst = false;
	char *from = NULL, *to = NULL, *b = NULL;
	size_t bl = 0;
	int rc = 0;
	if (flags & RENAME_EXCHANGE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pthread_mutex_lock(&fs->slock);
	pthread_rwlock_rdlock(&fs->lock);
	if (nlen > MFS_NAME_MAX)
		rc = -ENAMETOOLONG;
	if (rc == 0)
		rc = dir_resolve(fs, parent, &pd);
	if (rc == 0)
		rc = dir_resolve(fs, newparent, &qd);
	if (rc == 0)
		rc = child_of(fs, &pd, name, len, &sino);
	if (rc == 0)
		rc = resolve(fs, sino, &src);
	if (rc == 0 && child_of(fs, &qd, newname, nlen, &dino) == 0) {
		rc = resolve(fs, dino, &dst);
		have_dst = rc == 0;
	}
	if (rc == 0 && have_dst && (flags & RENAME_NOREPLACE))
		rc = -EEXIST;
	if (rc == 0 && have_dst && dino == sino)
		goto out_locked;        /* the same file: nothing to do */
	if (rc < 0)
		goto out_locked;

	if (src.role == R_SCRATCH) {
		if (have_dst && dst.role == R_SCRATCH) {
			/* Over another scratch file: it goes, this one takes its name. */
			pthread_rwlock_unlock(&fs->lock);
			scratch_unlink(fs, dino, false);
			pthread_rwlock_rdlock(&fs->lock);
			have_dst = false;
		}
		if (have_dst) {
			int r = scratch_over(fs, &src, &dst);
			pthread_rwlock_unlock(&fs->lock);
			if (r < 0) {
				rc = r;
				goto out;
			}
			/* Consumed (adopted) or copied: the scratch object goes. */
			scratch_unlink(fs, sino, r == 1);
			inval_entry(fs, qd.ino, newname, nlen);
			goto out;
		}
		if (names_prop(&qd, newname) && qd.creatable) {
			/* A new prop from the scratch file's content. */
			rc = prop_key(fs, newname, nlen, &to);
			if (rc == 0)
				rc = scratch_text(fs, src.scratch, &b, &bl);
			pthread_rwlock_unlock(&fs->lock);
			if (rc == 0)
				rc = mfs_txn_prop_set(fs->txn, to, b, bl);
			if (rc < 0)
				goto out;
			struct skip sk = {.parent = qd.ino, .a = newname, .a_len = nlen};
			sync_tree(fs, NULL, &sk);
			pthread_rwlock_rdlock(&fs->lock);
			if (child_of(fs, &qd, newname, nlen, &dino) == 0 && resolve(fs, dino, &dst) == 0) {
				edited(fs, &dst, false);
				take_over(fs, sino, dino, true);
			}
			pthread_rwlock_unlock(&fs->lock);
			scratch_unlink(fs, sino, false);
			inval_entry(fs, qd.ino, newname, nlen);
			goto out;
		}
		if (!(qd.role == R_DIR && qd.creatable)) {
			rc = -EACCES;
			goto out_locked;
		}
		pthread_mutex_lock(&fs->xlock);
		struct mfs_xnode *sx = mfs_itab_x(fs->itab, sino);
		rc = sx ? mfs_itab_scratch_move(fs->itab, sx, qd.ino, newname, nlen) : -ESTALE;
		pthread_mutex_unlock(&fs->xlock);
		goto out_locked;
	}

	if (src.role != R_PROP || !src.writable) {
		rc = -EPERM;
		goto out_locked;
	}
	if (!qd.props) {
		rc = -EPERM;
		goto out_locked;
	}
	if (have_dst && dst.role != R_PROP && dst.role != R_SCRATCH) {
		rc = -EPERM;
		goto out_locked;
	}
	rc = prop_key(fs, name, len, &from);
	if (rc == 0)
		rc = prop_key(fs, newname, nlen, &to);
	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0)
		goto out;
	if (have_dst && dst.role == R_SCRATCH)
		scratch_unlink(fs, dino, false);
	rc = mfs_txn_prop_rename(fs->txn, from, to);
	if (rc == 0) {
		struct mfs_itab_move mv = {qd.ino, name, len, newname, nlen};
		struct skip sk = {.parent = qd.ino, .a = name, .a_len = len, .b = newname,
		                  .b_len = nlen};
		sync_tree(fs, &mv, &sk);
	}
	goto out;

out_locked:
	pthread_rwlock_unlock(&fs->lock);
out:
	pthread_mutex_unlock(&fs->slock);
	free(from);
	free(to);
	free(b);
	fuse_reply_err(req, -rc);
}

/* ------------------------------------------------------- the rest */

/*
 * statfs - blocks: the model file system's, where staged edits and commits
 * go (so tools that check free space see the truth); files: the tree's
 * entries.
 * Valid replies: fuse_reply_statfs, fuse_reply_err.
 */
static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct mfs_fs *fs = fs_of(req);
	struct statvfs sv, host;
	memset(&sv, 0, sizeof(sv));
	pthread_rwlock_rdlock(&fs->lock);
	uint64_t total = 0;
	for (size_t i = 0; i < fs->gen->desc.n_files; i++)
		total += fs->gen->desc.files[i].size;
	sv.f_bsize = MFS_IO_SIZE;
	sv.f_frsize = 4096;
	sv.f_blocks = (fsblkcnt_t)((total + 4095) / 4096);
	sv.f_files = mfs_tree_count(fs->gen->tree);
	sv.f_namemax = MFS_NAME_MAX;
	if (!fs->read_only && fstatvfs(mfs_file_fd(fs->gen->model, 0), &host) == 0) {
		uint64_t fr = host.f_frsize ? host.f_frsize : host.f_bsize;
		sv.f_bfree = (fsblkcnt_t)((uint64_t)host.f_bfree * fr / 4096);
		sv.f_bavail = (fsblkcnt_t)((uint64_t)host.f_bavail * fr / 4096);
		sv.f_blocks += sv.f_bfree;
	}
	pthread_rwlock_unlock(&fs->lock);
	fuse_reply_statfs(req, &sv);
}

/*
 * getxattr, listxattr - entries have no extended attributes.  The answer is
 * ENOSYS on purpose: the kernel then remembers that this filesystem has no
 * xattrs and answers EOPNOTSUPP itself from then on.  `ls -l` asks for two
 * or three xattrs per file (ACLs, security labels, capabilities); answering
 * ENODATA instead costs a round trip each, which made `ls -l nodes/` of a
 * 100,000-node graph take 8 s instead of well under one.
 * Valid replies: fuse_reply_err (ENOSYS).
 */
static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	(void)ino, (void)name, (void)size;
	fuse_reply_err(req, ENOSYS);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	(void)ino, (void)size;
	fuse_reply_err(req, ENOSYS);
}

/*
 * setxattr, removexattr - there is nowhere to keep them.
 * Valid replies: fuse_reply_err (ENOTSUP).
 */
static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	fuse_reply_err(req, ENOTSUP);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	fuse_reply_err(req, ENOTSUP);
}

/*
 * Not implemented on purpose: fallocate (the kernel answers EOPNOTSUPP and
 * posix_fallocate(3) falls back to writing) and copy_file_range (the kernel
 * falls back to reads and writes).
 */
const struct fuse_lowlevel_ops mfs_ll_ops = {
	.init = ll_init,
	.destroy = ll_destroy,
	.lookup = ll_lookup,
	.forget = ll_forget,
	.forget_multi = ll_forget_multi,
	.getattr = ll_getattr,
	.setattr = ll_setattr,
	.opendir = ll_opendir,
	.readdir = ll_readdir,
	.readdirplus = ll_readdirplus,
	.releasedir = ll_releasedir,
	.fsyncdir = ll_fsyncdir,
	.open = ll_open,
	.read = ll_read,
	.write = ll_write,
	.flush = ll_flush,
	.release = ll_release,
	.fsync = ll_fsync,
	.statfs = ll_statfs,
	.getxattr = ll_getxattr,
	.listxattr = ll_listxattr,
	.setxattr = ll_setxattr,
	.removexattr = ll_removexattr,
	.create = ll_create,
	.mknod = ll_mknod,
	.mkdir = ll_mkdir,
	.unlink = ll_unlink,
	.rmdir = ll_rmdir,
	.symlink = ll_symlink,
	.rename = ll_rename,
	.link = ll_link,
};

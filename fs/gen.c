/*
 * fs/gen.c — tree generations: the tree the handlers answer from, rebuilt
 * when the transaction's structure moves (a prop created, renamed or
 * removed; a value renamed; a tensor deleted; a commit; an abort), and the
 * invalidations a rebuild implies.
 *
 * A rebuild makes a whole new generation (tree + the description it was
 * built from), renumbers it through the inode table so that every path
 * keeps its inode (inode.c), and swaps it in under the tree lock.  Commit
 * and abort live here too: both end in a rebuild and in invalidations of
 * what the kernel cached from the staged state.  So does what keeps the
 * kernel's pages of the root model file true while edits change it ("The
 * root model file" below).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <syslog.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "fs.h"

/*
 * Staged value renames (`mv inputs/x inputs/images`): the generation's
 * description is the txn's with the main graph replaced by a copy in which
 * every use of a renamed name shows the new one (graph inputs, outputs,
 * value_info, node inputs and outputs, and the subgraphs under it, which
 * refer to outer values by name), so the tree, the node `inputs` files and
 * graph.dot show the staged names at once.  Only the arrays that hold
 * names are copied; strings are the txn's, and so are tensors but for the
 * renamed ones (tensors_renamed).  Those staged for deletion (`rm -r`) are
 * left out of the tree; those staged as new (`mkdir`) are appended to the
 * initializers (tensors_added).
 */
static void *gen_alloc(struct mfs_gen *g, size_t n, size_t size)
{
	if (g->n_blocks == g->cap_blocks) {
		size_t cap = g->cap_blocks ? g->cap_blocks * 2 : 16;
		void **b = reallocarray(g->blocks, cap, sizeof(*b));
		if (!b)
			return NULL;
		g->blocks = b;
		g->cap_blocks = cap;
	}
	void *p = calloc(n ? n : 1, size);
	if (p)
		g->blocks[g->n_blocks++] = p;
	return p;
}

static char *ren_map(const struct mfs_gen *g, char *s)
{
	for (size_t i = 0; s && i < g->n_ren; i++)
		if (g->ren[i].to && !strcmp(g->ren[i].from, s))
			return g->ren[i].to;
	return s;
}

static struct mfs_value *values_copy(struct mfs_gen *g, const struct mfs_value *v, size_t n)
{
	struct mfs_value *c = gen_alloc(g, n, sizeof(*c));
	for (size_t i = 0; c && i < n; i++) {
		c[i] = v[i];
		c[i].name = ren_map(g, v[i].name);
	}
	return c;
}

static char **names_copy(struct mfs_gen *g, char *const *s, size_t n)
{
	char **c = gen_alloc(g, n, sizeof(*c));
	for (size_t i = 0; c && i < n; i++)
		c[i] = ren_map(g, s[i]);
	return c;
}

static struct mfs_graph *graph_copy(struct mfs_gen *g, const struct mfs_graph *src)
{
	struct mfs_graph *c = gen_alloc(g, 1, sizeof(*c));
	if (!c)
		return NULL;
	*c = *src;
	c->inputs = values_copy(g, src->inputs, src->n_inputs);
	c->outputs = values_copy(g, src->outputs, src->n_outputs);
	c->values = values_copy(g, src->values, src->n_values);
	c->nodes = gen_alloc(g, src->n_nodes, sizeof(*c->nodes));
	if (!c->inputs || !c->outputs || !c->values || !c->nodes)
		return NULL;
	for (size_t i = 0; i < src->n_nodes; i++) {
		struct mfs_node *nd = &c->nodes[i];
		*nd = src->nodes[i];
		nd->inputs = names_copy(g, nd->inputs, nd->n_inputs);
		nd->outputs = names_copy(g, nd->outputs, nd->n_outputs);
		if (!nd->inputs || !nd->outputs)
			return NULL;
		bool sub = false;
		for (size_t a = 0; a < nd->n_attrs; a++)
			sub |= nd->attrs[a].n_graphs != 0;
		if (!sub)
			continue;
		struct mfs_attr *at = gen_alloc(g, nd->n_attrs, sizeof(*at));
		if (!at)
			return NULL;
		for (size_t a = 0; a < nd->n_attrs; a++) {
			at[a] = nd->attrs[a];
			if (!at[a].n_graphs)
				continue;
			at[a].graphs = gen_alloc(g, at[a].n_graphs, sizeof(*at[a].graphs));
			if (!at[a].graphs)
				return NULL;
			for (size_t k = 0; k < at[a].n_graphs; k++) {
				const struct mfs_graph *s = nd->attrs[a].graphs[k];
				if (s && !(at[a].graphs[k] = graph_copy(g, s)))
					return NULL;
			}
		}
		nd->attrs = at;
	}
	return c;
}

/*
 * Renamed initializers (TENSOR_NAME: mv of a directory in weights/): a copy
 * of the tensor with the new name takes its place in the description's
 * tensors and the graph's initializers, so the tree puts it at its new
 * path and its `name` file shows the new name.  The copy keeps the id, so
 * the txn reads and edits it as the tensor itself.
 */
static int tensors_renamed(struct mfs_gen *g)
{
	struct mfs_graph *gr = g->desc.graph;
	size_t n = 0;
	for (size_t i = 0; i < g->n_ren; i++)
		n += g->ren[i].to && MFS_FIELD_KIND(g->ren[i].id) == MFS_FIELD_TENSOR_NAME &&
		     MFS_FIELD_I(g->ren[i].id) < g->desc.n_tensors;
	if (!n || !gr)
		return 0;
	struct mfs_tensor **ts = gen_alloc(g, g->desc.n_tensors, sizeof(*ts));
	struct mfs_tensor **in = gen_alloc(g, gr->n_inits, sizeof(*in));
	if (!ts || !in)
		return -ENOMEM;
	memcpy(ts, g->desc.tensors, g->desc.n_tensors * sizeof(*ts));
	memcpy(in, gr->inits, gr->n_inits * sizeof(*in));
	for (size_t i = 0; i < g->n_ren; i++) {
		uint64_t id = MFS_FIELD_I(g->ren[i].id);
		if (!g->ren[i].to || MFS_FIELD_KIND(g->ren[i].id) != MFS_FIELD_TENSOR_NAME ||
		    id >= g->desc.n_tensors)
			continue;
		struct mfs_tensor *cp = gen_alloc(g, 1, sizeof(*cp));
		if (!cp)
			return -ENOMEM;
		*cp = *ts[id];
		cp->name = g->ren[i].to;
		for (size_t k = 0; k < gr->n_inits; k++)
			if (in[k] == ts[id])
				in[k] = cp;
		ts[id] = cp;
	}
	g->desc.tensors = ts;
	gr->inits = in;
	return 0;
}

/*
 * Tensors staged as new (`mkdir weights/<path>`): appended to the graph's
 * initializers, so the tree makes their directories in weights/ with the
 * own files of any tensor.  They are the txn's (mfs_txn_added), not in
 * desc.tensors, whose index is the model's id.
 */
static int tensors_added(struct mfs_fs *fs, struct mfs_gen *g)
{
	const struct mfs_tensor **add = NULL;
	size_t n = 0;
	int rc = mfs_txn_added(&add, &n, fs->txn);
	if (rc < 0 || !n || !g->desc.graph) {
		free(add);
		return rc;
	}
	if (!g->n_ren && !(g->desc.graph = graph_copy(g, g->desc.graph))) {
		free(add);
		return -ENOMEM;
	}
	struct mfs_graph *gr = g->desc.graph;
	struct mfs_tensor **in = gen_alloc(g, gr->n_inits + n, sizeof(*in));
	if (!in) {
		free(add);
		return -ENOMEM;
	}
	memcpy(in, gr->inits, gr->n_inits * sizeof(*in));
	for (size_t i = 0; i < n; i++)
		in[gr->n_inits + i] = (struct mfs_tensor *)add[i];      /* read only */
	gr->inits = in;
	gr->n_inits += n;
	free(add);
	return 0;
}

static void gen_free(struct mfs_gen *g)
{
	if (!g)
		return;
	mfs_tree_destroy(g->tree);
	mfs_dot_destroy(g->dot);
	for (size_t i = 0; i < g->n_blocks; i++)
		free(g->blocks[i]);
	free(g->blocks);
	mfs_txn_renames_free(g->ren, g->n_ren);
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
	if ((rc = mfs_txn_renames(&g->ren, &g->n_ren, fs->txn)) < 0)
		goto out;
	/* A flat format's graph (tensors only) is copied too: tensors_renamed
	 * replaces its initializer list, which must stay the model's. */
	if (g->n_ren && g->desc.graph && !(g->desc.graph = graph_copy(g, g->desc.graph))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = tensors_renamed(g)) < 0 || (rc = tensors_added(fs, g)) < 0)
		goto out;
	/* Tensors staged for deletion (`to` NULL), ascending ids as the
	 * renames come (ascending field ids, one kind). */
	uint64_t *hide = gen_alloc(g, g->n_ren, sizeof(*hide));
	size_t n_hide = 0;
	if (!hide) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < g->n_ren; i++)
		if (!g->ren[i].to)
			hide[n_hide++] = MFS_FIELD_I(g->ren[i].id);
	rc = mfs_tree_build_hiding(&g->tree, &g->desc, hide, n_hide);
	if (rc < 0)
		goto out;
	if (g->desc.graph && (g->desc.flags & MFS_DESC_GRAPH) &&
	    (rc = mfs_dot_new(&g->dot, g->desc.graph)) < 0)
		goto out;
#ifdef __GLIBC__
	/*
	 * Opening the model and building the tree grow arrays by doubling and
	 * drop build-only ones; glibc keeps the pages of those freed blocks
	 * resident (past its mmap threshold, which rises with the first big
	 * free).  Hand them back: on a 300,000-tensor model that is 20 MiB of
	 * a daemon's RSS (bench/RESULTS.md, "many tensors").
	 */
	malloc_trim(0);
#endif
	g->meta_dir = g->props_dir = g->types_dir = g->weights_dir = NONE;
	uint32_t i;
	if (g->desc.graph && mfs_tree_lookup(g->tree, MFS_TREE_ROOT, "weights", 7, &i) == 0)
		g->weights_dir = i;
	if (mfs_tree_lookup(g->tree, MFS_TREE_ROOT, "meta", 4, &i) == 0) {
		g->meta_dir = i;
		if (mfs_tree_lookup(g->tree, g->meta_dir, "props", 5, &i) == 0)
			g->props_dir = i;
		if (mfs_tree_lookup(g->tree, g->meta_dir, "types", 5, &i) == 0)
			g->types_dir = i;
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
	struct mfs_tnode rb, eb;
	const struct mfs_tnode *r = mfs_tree_node(t, MFS_TREE_ROOT, &rb);
	for (uint32_t i = 0; i < r->u.dir.count; i++) {
		uint32_t c = mfs_tree_child(t, MFS_TREE_ROOT, i);
		const struct mfs_tnode *e = mfs_tree_node(t, c, &eb);
		if (e->kind == MFS_TN_SRC && e->u.src == 0)
			return mfs_itab_ino(fs->itab, c);
	}
	return 0;
}

/*
 * The root model file
 *
 * The root file shows the spliced view (modelfs/txn.h): what a commit would
 * write now.  It is served through the page cache in every mount, so that
 * it can be mapped MAP_SHARED, and every edit of the view goes through
 * mfs_fs_root_changed(), which keeps the kernel's pages true:
 *
 *   1. The content version goes up: the next open drops the file's cached
 *      pages (no keep_cache).  Nothing can read those pages without an open
 *      handle (a mapping holds one), so while none is open (fs->root_open
 *      is 0) nothing else is needed and nothing is sent.  The count and the
 *      version are read and changed under xlock, in one critical section
 *      on each side (ll_open), so an open racing an edit is caught by one
 *      rule or the other.
 *   2. While a handle is open, the changed pages are invalidated on the
 *      root lane (inval.c), and the handler waits for that before it
 *      replies (mfs_inval_settle): when the call that made an edit returns,
 *      no cached page and no mapping shows what the edit replaced.  A
 *      same-size write of a tensor stored in the model file (contiguous,
 *      source 0) changes exactly [t->off + off, len) of the view as long as
 *      every edit staged is of that kind; any other edit (dtype, shape,
 *      size, meta, props, an adopted scratch file, edits recovered from a
 *      journal) may move bytes from near the start (ONNX: the graph's
 *      length prefix; safetensors: the JSON header), so it drops the whole
 *      file and marks the layout moved (fs->root_moved) until a commit or
 *      an abort leaves nothing staged.
 *   3. The mtime goes up, strictly (fs->last_edit), and the kernel asks for
 *      the root file's attributes on every read(2) and stat (attribute
 *      timeout 0): with FUSE_CAP_AUTO_INVAL_DATA it drops all the file's
 *      pages when it sees a new mtime, on the reader's own path.
 *
 * Waiting is safe because what the root lane sends waits, in the kernel,
 * only for reads of the root file in flight, which other loop threads
 * answer and which never wait for a handler; it is bounded
 * (MFS_INVAL_WAIT_MS) all the same: with every worker waiting, a read could
 * find no thread.  A handler whose wait timed out replies anyway, and a
 * mapping may then show the old bytes until the invalidation arrives.
 *
 * With -s (or max_threads=1) nobody waits: the only thread must stay free
 * to answer the reads an invalidation waits for.  Every invalidation is then
 * of the whole file, because one that reaches the kernel while a read(2)'s
 * question for the attributes is out makes it discard the answer (it cannot
 * tell which is newer) and with it rule 3: only a whole-file invalidation,
 * which came after the edits the reader must see, leaves no stale page
 * behind.  read(2) and stat stay fresh (rule 3, or that invalidation), and
 * mappings see an edit shortly after the call returns.  A kernel without
 * AUTO_INVAL_DATA gets the page cache bypassed on the root file with -s
 * (ll_open).
 *
 * While an edit that moves the layout is in flight (not returned), a read
 * may mix pages of both layouts; once it returns (and, with -s, once its
 * invalidation was sent), none of the old is left.
 */
void mfs_fs_root_changed(struct mfs_fs *fs, const struct mfs_tensor *t, uint64_t off,
                         uint64_t len)
{
	if (fs->read_only)
		return;
	/* In place only on a tree of the current model: a write that waited for
	 * a commit landed in the new model, where the tensor may lie elsewhere. */
	bool moved = !t || !(t->flags & MFS_TENSOR_CONTIGUOUS) || t->src != 0 ||
	             off > t->nbytes || len > t->nbytes - off || fs->committing ||
	             mfs_txn_generation(fs->txn) != fs->gen->txn_gen;
	struct timespec now = mfs_now();
	pthread_mutex_lock(&fs->xlock);
	uint64_t root = mfs_fs_root_ino(fs);
	struct mfs_xnode *x = root ? mfs_itab_x_get(fs->itab, root) : NULL;
	if (x)
		x->ver++;
	/* A new mtime for every edit, however close: the kernel compares them. */
	if (now.tv_sec < fs->last_edit.tv_sec ||
	    (now.tv_sec == fs->last_edit.tv_sec && now.tv_nsec <= fs->last_edit.tv_nsec)) {
		now = fs->last_edit;
		if (++now.tv_nsec == 1000000000L) {
			now.tv_sec++;
			now.tv_nsec = 0;
		}
	}
	fs->last_edit = now;
	fs->root_edits++;
	if (moved)
		fs->root_moved = true;
	moved |= fs->root_moved;
	bool send = root && (fs->root_open > 0 || !x);     /* no version: tell the kernel */
	pthread_mutex_unlock(&fs->xlock);
	if (!send)
		return;
	if (moved || fs->single_thread)
		mfs_inval_root(fs, root, 0, 0);
	else if (len)
		mfs_inval_root(fs, root, t->off + off, len);
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
	mfs_inval_init(fs);
	/* Edits replayed from a journal: their kind is unknown here. */
	fs->root_moved = fs->recovered;
	int rc = gen_build(fs, &fs->gen);
	if (rc < 0)
		return rc;
	rc = mfs_itab_new(&fs->itab, fs->gen->tree);
	if (rc < 0)
		return rc;
	rc = mfs_views_new(&fs->views);
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
	mfs_views_destroy(fs->views);
	fs->views = NULL;
	gen_free(fs->gen);
	fs->gen = NULL;
	mfs_inval_fini(fs);
	pthread_mutex_destroy(&fs->xlock);
	pthread_rwlock_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->slock);
}

/* The edits of the view so far (xlock taken here). */
static uint64_t root_edits(struct mfs_fs *fs)
{
	pthread_mutex_lock(&fs->xlock);
	uint64_t n = fs->root_edits;
	pthread_mutex_unlock(&fs->xlock);
	return n;
}

/*
 * After a commit or an abort that left nothing staged, the view is the model
 * file again: its layout has not moved, unless an edit came meanwhile (xlock
 * held; `n` was root_edits before).
 */
static void root_settled(struct mfs_fs *fs, uint64_t n)
{
	if (fs->root_edits == n)
		fs->root_moved = false;
}

/* Commit (slock not held).  Returns 0 or the commit's negative errno. */
int mfs_fs_commit(struct mfs_fs *fs, struct mfs_txn_result *res)
{
	return mfs_fs_commit_to(fs, NULL, res);
}

void mfs_fs_log_version(const struct mfs_txn_result *res)
{
	if (res->rc || strcmp(res->path, "version"))
		return;
	/* The daemon's log names every version it writes (and so does the
	 * status, and `modelfs commit --to` on its standard output). */
	syslog(LOG_INFO, "modelfs: committed version %s (sha256 %s)", res->version, res->sha256);
	fprintf(stderr, "mount.modelfs: committed version %s (sha256 %s)\n", res->version,
	        res->sha256);
}

int mfs_fs_commit_to(struct mfs_fs *fs, const char *tmpl, struct mfs_txn_result *res)
{
	pthread_mutex_lock(&fs->slock);
	pthread_rwlock_wrlock(&fs->lock);
	fs->committing = true;
	pthread_rwlock_unlock(&fs->lock);
	uint64_t n = root_edits(fs);
	int rc = tmpl ? mfs_txn_commit_to(fs->txn, tmpl, res) : mfs_txn_commit(fs->txn, res);
	mfs_fs_log_version(res);
	/* The model now holds other bytes under the same names, maybe. */
	mfs_views_forget(fs->views);
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
	if (rc == 0)
		root_settled(fs, n);
	pthread_mutex_unlock(&fs->xlock);
	pthread_rwlock_unlock(&fs->lock);
	/* The same bytes, now from the new model file: dropped all the same. */
	if (root)
		mfs_inval_root(fs, root, 0, 0);
	pthread_mutex_unlock(&fs->slock);
	return rc;
}

/* Abort (slock not held): drop every staged edit and scratch file. */
int mfs_fs_abort(struct mfs_fs *fs)
{
	pthread_mutex_lock(&fs->slock);
	uint64_t n = root_edits(fs);
	int rc = mfs_txn_abort(fs->txn);
	pthread_rwlock_wrlock(&fs->lock);
	uint64_t root = mfs_fs_root_ino(fs);
	pthread_mutex_lock(&fs->xlock);
	if (rc == 0)
		root_settled(fs, n);
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
		if (x->touched && x->ino != root) {
			x->ver++;
			x->touched = false;
			mfs_inval_inode(fs, x->ino);
		}
	}
	/* The root file is the model file again, in its layout: on the root lane. */
	if ((x = root ? mfs_itab_x_get(fs->itab, root) : NULL))
		x->ver++;
	if (root)
		mfs_inval_root(fs, root, 0, 0);
	pthread_mutex_unlock(&fs->xlock);
	if (fs->recovered) {
		/*
		 * Edits replayed from a journal at mount were never seen here:
		 * which files they touched is unknown, so every file's cached
		 * pages go (once; later edits are tracked).
		 */
		const struct mfs_tree *t = fs->gen->tree;
		struct mfs_tnode eb;
		for (uint32_t i = 0; i < mfs_tree_count(t); i++)
			if (mfs_tree_node(t, i, &eb)->kind != MFS_TN_DIR)
				mfs_inval_inode(fs, mfs_itab_ino(fs->itab, i));
		fs->recovered = false;
	}
	pthread_rwlock_unlock(&fs->lock);
	mfs_fs_sync_tree(fs, NULL, NULL);
	pthread_mutex_unlock(&fs->slock);
	mfs_inval_wait(fs, MFS_INVAL_WAIT_MS);
	return rc;
}

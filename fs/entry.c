/*
 * fs/entry.c — what an inode is and what it holds, without FUSE: the
 * filesystem's semantics, which the handlers in ll.c reply with.
 *
 * An inode resolves (under the tree lock) to an entry of the current tree
 * generation, a scratch file, or a control file, with a role (fs.h) and
 * whether it may be written; text entries have their current content
 * (staged or not) and can be given a new value; every entry has a size
 * and attributes.  Scratch files' lifetimes (kernel references, names) are
 * kept here too.  tests/unit/test_entry.c drives all of it on real models
 * without mounting.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"

struct timespec mfs_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

static const struct mfs_tensor *dir_tensor(const struct mfs_fs *fs, uint32_t dir);

/* Can `rm -r` delete tensors of weights/ (the format takes deletions)? */
static bool deletes_ok(struct mfs_fs *fs)
{
	const struct mfs_graph *g = fs->gen->desc.graph;
	return g && g->n_inits && g->inits[0]->id <= MFS_FIELD_I_MAX &&
	       mfs_txn_field_writable(fs->txn, MFS_FIELD_ID(MFS_FIELD_TENSOR_DELETE,
	                                                    g->inits[0]->id, 0));
}

/* Is tree entry `idx` weights/ (of the main graph, or a flat format's) or a
 * directory in it? */
static bool in_weights(const struct mfs_fs *fs, uint32_t idx)
{
	const struct mfs_gen *g = fs->gen;
	struct mfs_tnode eb;
	for (unsigned depth = 0; g->weights_dir != NONE && depth < 4096; depth++) {
		if (idx == g->weights_dir)
			return true;
		if (idx == MFS_TREE_ROOT)
			return false;
		idx = mfs_tree_node(g->tree, idx, &eb)->parent;
	}
	return false;
}

bool mfs_ent_in_weights(const struct mfs_fs *fs, uint32_t idx)
{
	return in_weights(fs, idx);
}

const struct mfs_tensor *mfs_ent_dir_tensor(const struct mfs_fs *fs, uint32_t dir)
{
	return dir_tensor(fs, dir);
}

/* The tensor whose directory is `dir`, or NULL. */
static const struct mfs_tensor *dir_tensor(const struct mfs_fs *fs, uint32_t dir)
{
	uint32_t d;
	if (mfs_tree_lookup(fs->gen->tree, dir, "data", 4, &d) < 0)
		return NULL;
	struct mfs_tnode eb;
	const struct mfs_tnode *e = mfs_tree_node(fs->gen->tree, d, &eb);
	return e->kind == MFS_TN_TENSOR && (e->flags & MFS_TNF_OWN) ? e->u.tensor : NULL;
}

static bool name_is(const struct mfs_tnode *e, const char *s)
{
	size_t l = strlen(s);
	return e->name_len == l && !memcmp(e->name, s, l);
}

/*
 * May scratch files be created in meta/?  When one of its files can be
 * written: `sed -i` and editors write a temporary file beside the one they
 * edit and rename it over it, as in a tensor directory or meta/props/.
 */
static bool meta_creatable(struct mfs_fs *fs, uint32_t dir)
{
	const struct mfs_tree *t = fs->gen->tree;
	struct mfs_tnode db, eb;
	const struct mfs_tnode *d = mfs_tree_node(t, dir, &db);
	char name[MFS_NAME_MAX + 1];
	if (fs->read_only)
		return false;
	for (uint32_t i = 0; i < d->u.dir.count; i++) {
		const struct mfs_tnode *e = mfs_tree_node(t, mfs_tree_child(t, dir, i), &eb);
		if (e->kind != MFS_TN_TEXT)
			continue;
		memcpy(name, e->name, e->name_len);
		name[e->name_len] = '\0';
		if (mfs_txn_meta_writable(fs->txn, name))
			return true;
	}
	return false;
}

/* Classify tree entry `idx` (fs->lock held). */
static void classify(struct mfs_fs *fs, uint32_t idx, struct mfs_ent *en)
{
	const struct mfs_gen *g = fs->gen;
	const struct mfs_tnode *e = mfs_tree_node(g->tree, idx, &en->ebuf);
	en->idx = idx;
	en->e = e;
	switch (e->kind) {
	case MFS_TN_DIR:
		en->role = R_DIR;
		if (idx == g->props_dir) {
			en->props = true;
			en->creatable = mfs_txn_props_writable(fs->txn);
		} else if (idx == g->meta_dir) {
			en->creatable = meta_creatable(fs, idx);
		} else if (e->flags & MFS_TNF_TENSOR) {
			en->creatable = mfs_txn_tensor_writable(fs->txn, dir_tensor(fs, idx));
			en->renames = !fs->read_only && in_weights(fs, idx) && deletes_ok(fs);
		} else if (!fs->read_only && in_weights(fs, idx)) {
			en->renames = deletes_ok(fs);   /* rmdir of the tensors in it */
		} else if (e->u.dir.count && !fs->read_only) {
			/* inputs/, outputs/, values/ of the main graph: mv renames. */
			struct mfs_tnode cb;
			uint32_t c = mfs_tree_child(g->tree, idx, 0);
			uint64_t fid;
			en->renames = mfs_tree_node(g->tree, c, &cb)->kind == MFS_TN_DIR &&
			              mfs_tree_field(g->tree, c, &fid) && mfs_field_is_name(fid) &&
			              mfs_txn_field_writable(fs->txn, fid);
		}
		return;
	case MFS_TN_TENSOR:
		en->role = R_DATA;
		en->t = e->u.tensor;
		en->writable = mfs_txn_tensor_writable(fs->txn, en->t);
		return;
	case MFS_TN_SRC:
		en->role = e->u.src == 0 ? R_ROOT : R_SRC;
		return;
	case MFS_TN_NPY:
		en->role = R_NPY;
		en->t = e->u.tensor;
		return;
	case MFS_TN_DOT:
		en->role = R_DOT;
		return;
	default:
		break;
	}
	en->role = R_TEXT;
	uint64_t fid;
	if (mfs_tree_field(g->tree, idx, &fid) && mfs_txn_field_writable(fs->txn, fid)) {
		/* A graph field the format lets be written (read-only ones stay
		 * R_TEXT, which the tree serves as it is). */
		en->role = R_FIELD;
		en->field = fid;
		en->writable = !fs->read_only;
		return;
	}
	if (e->parent == g->props_dir && g->props_dir != NONE) {
		en->role = R_PROP;
		en->writable = mfs_txn_props_writable(fs->txn);
	} else if (e->parent == g->types_dir && g->types_dir != NONE) {
		en->role = R_PTYPE;
		memcpy(en->name, e->name, e->name_len);
		en->name[e->name_len] = '\0';
		en->writable = mfs_txn_prop_types_writable(fs->txn);
		return;
	} else if (e->parent == g->meta_dir && g->meta_dir != NONE && name_is(e, "sha256") &&
	           !mfs_txn_meta_writable(fs->txn, "sha256")) {
		en->role = R_VIEW;
		en->view = MFS_VIEW_MODEL;
		en->t = NULL;
		return;
	} else if (e->parent == g->meta_dir && g->meta_dir != NONE) {
		en->role = R_META;
		memcpy(en->name, e->name, e->name_len);
		en->name[e->name_len] = '\0';
		en->writable = !fs->read_only && mfs_txn_meta_writable(fs->txn, en->name);
		return;
	} else if ((e->flags & MFS_TNF_OWN) && (name_is(e, "sha256") || name_is(e, "stats"))) {
		const struct mfs_tensor *t = dir_tensor(fs, e->parent);
		if (t) {
			en->role = R_VIEW;
			en->view = name_is(e, "sha256") ? MFS_VIEW_SHA256 : MFS_VIEW_STATS;
			en->t = t;
		}
		return;
	} else if ((e->flags & MFS_TNF_OWN) && (name_is(e, "dtype") || name_is(e, "shape"))) {
		const struct mfs_tensor *t = dir_tensor(fs, e->parent);
		if (t) {
			en->role = name_is(e, "dtype") ? R_DTYPE : R_SHAPE;
			en->t = t;
			en->writable = mfs_txn_tensor_writable(fs->txn, t) &&
			               !(t->flags & MFS_TENSOR_DATA_ONLY);
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
int mfs_ent_resolve(struct mfs_fs *fs, uint64_t ino, struct mfs_ent *en)
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
	if (ino == fs->ctl_status || ino == fs->ctl_progress) {
		en->role = ino == fs->ctl_status ? R_STATUS : R_PROGRESS;
		return 0;
	}
	if (ino == fs->ctl_commit || ino == fs->ctl_abort) {
		en->role = ino == fs->ctl_commit ? R_COMMIT : R_ABORT;
		en->writable = !fs->read_only;
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
 *
 * O(1): the tree's hash table finds the entry named `comp` in meta/props/,
 * and the tree says which prop of the generation it shows.  Only when that
 * prop's encoding is not `comp` itself (the entry took a "~N" suffix: keys
 * that encode alike) are the keys scanned, as a key may encode to a name
 * that an earlier entry took with its suffix.
 */
static int prop_key_scan(struct mfs_fs *fs, const char *comp, size_t len, char **out)
{
	struct mfs_meta *p = NULL;
	size_t n = 0;
	int rc = mfs_txn_props(&p, &n, fs->txn);
	if (rc < 0)
		return rc;
	char enc[MFS_NAME_MAX + 1];
	rc = 1;
	for (size_t i = 0; rc == 1 && i < n; i++) {
		size_t el = mfs_name_encode(enc, MFS_NAME_MAX, p[i].name, strlen(p[i].name));
		if (el == len && !memcmp(enc, comp, len))
			rc = (*out = strdup(p[i].name)) ? 0 : -ENOMEM;
	}
	mfs_txn_props_free(p, n);
	return rc;      /* 1: no key encodes to `comp` */
}

int mfs_ent_prop_key(struct mfs_fs *fs, const char *comp, size_t len, char **out)
{
	const struct mfs_gen *g = fs->gen;
	uint32_t idx;
	size_t i;
	int rc;
	*out = NULL;
	if (g->props_dir != NONE && mfs_tree_lookup(g->tree, g->props_dir, comp, len, &idx) == 0 &&
	    mfs_tree_prop(g->tree, idx, &i) && i < g->desc.n_props) {
		const char *key = g->desc.props[i].name;
		char enc[MFS_NAME_MAX + 1];
		size_t el = mfs_name_encode(enc, MFS_NAME_MAX, key, strlen(key));
		if (el == len && !memcmp(enc, comp, len))
			return (*out = strdup(key)) ? 0 : -ENOMEM;
		if ((rc = prop_key_scan(fs, comp, len, out)) <= 0)
			return rc;
	}
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
int mfs_ent_text_get(struct mfs_fs *fs, const struct mfs_ent *en, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	int rc = 0;
	switch (en->role) {
	case R_VIEW:
		return mfs_view_text(fs, en->t, (enum mfs_view)en->view, out, len);
	case R_DTYPE: {
		int32_t dt;
		size_t rank;
		rc = mfs_txn_tensor_type(fs->txn, en->t, &dt, NULL, 0, &rank);
		if (rc == 0) {
			const char *s = mfs_desc_dtype_name(&fs->gen->desc, dt);
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
	case R_FIELD: {
		rc = mfs_txn_field_get(fs->txn, en->field, out, len);
		if (rc != 0)
			return rc < 0 ? rc : 0;
		/* Nothing staged: the tree's text. */
		size_t n = (size_t)mfs_tree_size(fs->gen->tree, en->idx);
		char *b = malloc(n + 1);
		if (!b)
			return -ENOMEM;
		size_t got = mfs_tree_text_read(fs->gen->tree, en->idx, b, n, 0);
		b[got] = '\0';
		*out = b;
		*len = (size_t)got;
		return 0;
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
	case R_PTYPE: {
		/* A staged type, else the model's, as the tree shows it. */
		char *key = NULL;
		rc = mfs_ent_prop_key(fs, en->name, strlen(en->name), &key);
		if (rc == 0)
			rc = mfs_txn_prop_type_get(out, fs->txn, key);
		free(key);
		if (rc == 0) {
			*len = strlen(*out);
			rc = put(out, len, "\n", 1);
			break;
		}
		if (rc != 1 && rc != -ENOENT)
			break;
		rc = 0;
		uint64_t size = mfs_tree_size(fs->gen->tree, en->idx);
		char *b = malloc((size_t)size + 1);
		if (!b)
			return -ENOMEM;
		*len = mfs_tree_text_read(fs->gen->tree, en->idx, b, (size_t)size, 0);
		b[*len] = '\0';
		*out = b;
		return 0;
	}
	case R_PROP: {
		char *key = NULL;
		rc = mfs_ent_prop_key(fs, en->name, strlen(en->name), &key);
		if (rc == 0)
			rc = mfs_txn_prop_get(out, len, fs->txn, key);
		if (rc == 0 && !(fs->gen->desc.flags & MFS_DESC_PROPS_TEXT)) {
			/* The value escaped (doc/design.md §3.5), as the tree shows it. */
			size_t el = mfs_text_escape(NULL, 0, *out, *len);
			char *e = malloc(el + 1);
			if (e)
				mfs_text_escape(e, el + 1, *out, *len);
			free(*out);
			*out = e;
			*len = e ? el : 0;
			rc = e ? 0 : -ENOMEM;
		}
		free(key);
		if (rc == -ENOENT)
			rc = -ESTALE;   /* gone since the tree was built */
		if (rc == 0)
			rc = put(out, len, "\n", 1);
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

/*
 * Stage the content `text` of a props file as prop `key`'s value: decoded
 * by the rule that escaped it (doc/design.md §3.5), so that what a read
 * shows, written back, stages the same bytes.
 */
int mfs_ent_prop_write(struct mfs_fs *fs, const char *key, const char *text, size_t len)
{
	char *v = malloc(len + 2);
	if (!v)
		return -ENOMEM;
	/* The file's own '\n' goes before decoding (a "%0A" is the value's);
	 * the txn drops one trailing '\n', so the decoded value gets one. */
	if (len && text[len - 1] == '\n')
		len--;
	size_t n = len;
	if (fs->gen->desc.flags & MFS_DESC_PROPS_TEXT)
		memcpy(v, text, len);   /* the format decodes it */
	else
		n = mfs_text_unescape(v, text, len);
	v[n++] = '\n';
	int rc = mfs_txn_prop_set(fs->txn, key, v, n);
	free(v);
	return rc;
}

/* Stage a text value for entry `en`. */
int mfs_ent_text_apply(struct mfs_fs *fs, const struct mfs_ent *en, const char *text, size_t len)
{
	switch (en->role) {
	case R_DTYPE:
		return mfs_txn_set_dtype(fs->txn, en->t, text, len);
	case R_SHAPE:
		return mfs_txn_set_shape(fs->txn, en->t, text, len);
	case R_META:
		return mfs_txn_meta_set(fs->txn, en->name, text, len);
	case R_FIELD: {
		size_t n = (size_t)mfs_tree_size(fs->gen->tree, en->idx);
		char *orig = malloc(n + 1);
		if (!orig)
			return -ENOMEM;
		size_t got = mfs_tree_text_read(fs->gen->tree, en->idx, orig, n, 0);
		int rc = mfs_txn_field_set(fs->txn, en->field, orig, got, text, len);
		free(orig);
		return rc;
	}
	case R_PROP: {
		char *key = NULL;
		int rc = mfs_ent_prop_key(fs, en->name, strlen(en->name), &key);
		if (rc == 0)
			rc = mfs_ent_prop_write(fs, key, text, len);
		free(key);
		return rc;
	}
	case R_PTYPE: {
		char *key = NULL;
		int rc = mfs_ent_prop_key(fs, en->name, strlen(en->name), &key);
		if (rc == 0)
			rc = mfs_txn_prop_type_set(fs->txn, key, text, len);
		free(key);
		return rc;
	}
	default:
		return -EACCES;
	}
}

bool mfs_ent_is_text(enum mfs_role r)
{
	return r == R_DTYPE || r == R_SHAPE || r == R_META || r == R_PROP || r == R_PTYPE ||
	       r == R_TEXT || r == R_VIEW || r == R_FIELD;
}

/* st_size of `en` (fs->lock held). */
int mfs_ent_size(struct mfs_fs *fs, const struct mfs_ent *en, uint64_t *out)
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
		return mfs_txn_file_size(out, fs->txn, 0);
	case R_DATA:
		return mfs_txn_tensor_size(out, fs->txn, en->t);
	case R_NPY:
		return mfs_npy_size(fs, en->t, out);
	case R_DOT:
		return fs->gen->dot ? mfs_dot_size(fs->gen->dot, out) : 0;
	case R_SCRATCH:
		return mfs_txn_scratch_size(out, fs->txn, en->scratch);
	case R_VIEW:
		return mfs_view_size(fs, en->t, (enum mfs_view)en->view, out);
	case R_DTYPE:
	case R_SHAPE:
	case R_META:
	case R_PROP:
	case R_PTYPE:
	case R_FIELD: {
		char *b;
		size_t n;
		int rc = mfs_ent_text_get(fs, en, &b, &n);
		free(b);
		*out = n;
		return rc;
	}
	case R_STATUS:
	case R_PROGRESS: {
		char *b;
		size_t n;
		int rc = mfs_ent_ctl_text(fs, en->role, &b, &n);
		free(b);
		*out = n;
		return rc;
	}
	case R_CTL_DIR:
		*out = 4;
		return 0;
	default:
		return 0;
	}
}

/* ------------------------------------------------------- attributes */

/* Bookkeeping of `en` itself after its content changed. `oob`: behind the kernel's cache. */
static void edited(struct mfs_fs *fs, const struct mfs_ent *en, bool oob)
{
	struct timespec t = mfs_now();
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
	pthread_mutex_unlock(&fs->xlock);
	if (oob || en->asked != en->ino)
		mfs_inval_inode(fs, en->ino);
	if (en->asked != en->ino)
		mfs_inval_inode(fs, en->asked);
}

void mfs_ent_edited(struct mfs_fs *fs, const struct mfs_ent *en, bool oob)
{
	edited(fs, en, oob);
	if (en->role != R_SCRATCH)      /* scratch bytes are in no model file */
		mfs_fs_root_changed(fs, NULL, 0, 0);
}

void mfs_ent_wrote(struct mfs_fs *fs, const struct mfs_ent *en, uint64_t off, uint64_t len)
{
	edited(fs, en, false);
	if (en->role == R_DATA)
		mfs_fs_root_changed(fs, en->t, off, len);
}

static uint32_t dir_subdirs(const struct mfs_ent *en)
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

int mfs_ent_stat(struct mfs_fs *fs, const struct mfs_ent *en, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	uint64_t size;
	int rc = mfs_ent_size(fs, en, &size);
	if (rc < 0)
		return rc;
	st->st_ino = en->asked;
	st->st_nlink = 1;
	switch (en->role) {
	case R_DIR:
		st->st_mode = S_IFDIR | (en->creatable || en->renames ? 0755 : 0555);
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
	st->st_blksize = en->role == R_DIR || en->role == R_CTL_DIR ? MFS_DIR_BLKSIZE : MFS_IO_SIZE;
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
		st->st_size += scratch_count(fs, en->ino) + (en->ino == MFS_ROOT_INO);
	pthread_mutex_unlock(&fs->xlock);
	return 0;
}

/* How long the kernel may trust the attributes of `en` (see CACHING). */
double mfs_ent_attr_timeout(const struct mfs_ent *en)
{
	switch (en->role) {
	case R_ROOT:
	case R_STATUS:
	case R_PROGRESS:
	case R_VIEW:            /* a staged edit changes it, and its size */
	case R_NPY:
	case R_DOT:             /* a commit of graph edits changes it */
		return 0.0;
	case R_DTYPE:
	case R_SHAPE:
	case R_META:
	case R_PROP:
	case R_PTYPE:
	case R_FIELD:
		return en->writable ? 0.0 : MFS_CACHE_TIMEOUT;
	default:
		return MFS_CACHE_TIMEOUT;
	}
}

/* A scratch file handed to the kernel once more (lookup, create, readdirplus). */
void mfs_scratch_ref(struct mfs_fs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x = mfs_itab_x(fs->itab, ino);
	if (x && x->kind == MFS_XN_SCRATCH)
		x->nlookup++;
	pthread_mutex_unlock(&fs->xlock);
}

/* ------------------------------------------------------- names */

/*
 * Look `name` up in directory `dir` (fs->lock held shared).  Returns 0 and
 * the child's inode number, or -ENOENT, -ENOTDIR, -ESTALE.
 */
int mfs_ent_child(struct mfs_fs *fs, const struct mfs_ent *dir, const char *name, size_t len,
                  uint64_t *out)
{
	if (dir->role == R_CTL_DIR) {
		if (len == 6 && !memcmp(name, "status", 6))
			*out = fs->ctl_status;
		else if (len == 6 && !memcmp(name, "commit", 6))
			*out = fs->ctl_commit;
		else if (len == 5 && !memcmp(name, "abort", 5))
			*out = fs->ctl_abort;
		else if (len == 8 && !memcmp(name, "progress", 8))
			*out = fs->ctl_progress;
		else
			return -ENOENT;
		return 0;
	}
	if (dir->role != R_DIR)
		return -ENOTDIR;
	if (dir->ino == MFS_ROOT_INO && len == 8 && !memcmp(name, ".modelfs", 8)) {
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
int mfs_ent_dir_resolve(struct mfs_fs *fs, uint64_t ino, struct mfs_ent *en)
{
	int rc = mfs_ent_resolve(fs, ino, en);
	if (rc < 0)
		return rc;
	return en->role == R_DIR || en->role == R_CTL_DIR ? 0 : -ENOTDIR;
}


/* Drop `n` kernel references to `ino`; a scratch file nobody reaches goes. */
void mfs_scratch_forget(struct mfs_fs *fs, uint64_t ino, uint64_t n)
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

/* Forget a scratch file's name; its object goes now or when the kernel lets go. */
void mfs_scratch_unlink(struct mfs_fs *fs, uint64_t ino, bool consumed)
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

ssize_t mfs_ent_read(struct mfs_fs *fs, const struct mfs_ent *en, void *buf, size_t len,
                     uint64_t off)
{
	switch (en->role) {
	case R_DATA:
		return mfs_txn_tensor_read(fs->txn, en->t, buf, len, off);
	case R_NPY:
		return mfs_npy_read(fs, en->t, buf, len, off);
	case R_DOT:
		return fs->gen->dot ? mfs_dot_read(fs->gen->dot, buf, len, off) : 0;
	case R_SCRATCH:
		return mfs_txn_scratch_read(fs->txn, en->scratch, buf, len, off);
	default:
		return mfs_txn_file_read(fs->txn, 0, buf, len, off);
	}
}

int mfs_ent_ctl_text(struct mfs_fs *fs, enum mfs_role role, char **out, size_t *len)
{
	char line[128];
	*out = NULL;
	*len = 0;
	if (role == R_PROGRESS) {
		uint64_t done, total;
		bool committing;
		mfs_txn_progress(fs->txn, &done, &total, &committing);
		int n = committing ? snprintf(line, sizeof(line), "commit %llu %llu\n",
		                              (unsigned long long)done, (unsigned long long)total) :
		        snprintf(line, sizeof(line), "idle\n");
		*out = strdup(line);
		*len = (size_t)n;
		return *out ? 0 : -ENOMEM;
	}
	size_t n = mfs_txn_status(fs->txn, NULL, 0);
	int k = snprintf(line, sizeof(line), "daemon: pid %ld\n", (long)getpid());
	/* The file mounted now: a versioned commit switches it. */
	char cur[PATH_MAX];
	const char *mp = fs->model_path ? fs->model_path : "";
	if (mfs_txn_path(fs->txn, cur, sizeof(cur)) < sizeof(cur) && cur[0] == '/')
		mp = cur;
	size_t extra = (size_t)k + strlen("model: \n") + strlen(mp);
	char *b = malloc(n + extra + 1);
	if (!b)
		return -ENOMEM;
	size_t got = mfs_txn_status(fs->txn, b, n + 1);
	if (got > n)
		got = n;
	got += (size_t)sprintf(b + got, "%smodel: %s\n", line, mp);
	*out = b;
	*len = got;
	return 0;
}

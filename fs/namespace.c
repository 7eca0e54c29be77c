/*
 * fs/namespace.c — create, unlink and rename: what they mean in a tree that
 * is a model.
 *
 * The model's entries stay where they are.  What tools create is either a
 * prop (a name in meta/props/) or a scratch file (rsync's temporary file,
 * an editor's swap file), whose bytes are staged but reach the model only
 * when renamed over an entry.  A rename over an entry is the interesting
 * case: over `data` the tensor adopts the scratch object and, as on a disk
 * file system, descriptors still open on the replaced file keep reading
 * what it held (a snapshot, data_over); over a text entry the content
 * becomes its value; over an unchanged read-only entry nothing happens, so
 * that `rsync -a` of an unchanged tree succeeds.
 *
 * Three edits of a graph are namespace operations too (doc/design.md
 * §5.1.1): a value's directory renamed in its directory renames the value
 * (a graph field the txn stages; the tree is rebuilt with the kernel's
 * move), rmdir of an initializer's directory deletes it (the unlinks
 * rm -r makes first only ask whether it may go), and mkdir in weights/
 * adds a tensor where the format can (safetensors), which rmdir unstages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "names.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* A prop is created (not a scratch file) in meta/props/ for names not starting with '.'. */
static bool names_prop(const struct mfs_ent *dir, const char *name)
{
	return dir->props && name[0] != '.';
}

/*
 * Make file `name` in directory `parent` (slock held): a new prop in
 * meta/props/, else a scratch file.  On success *out is the new entry.
 */
int mfs_ns_make_file(struct mfs_fs *fs, uint64_t parent, const char *name, mode_t mode,
                     struct mfs_ent *out)
{
	struct mfs_ent dir;
	uint64_t ino;
	size_t len = strlen(name);
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_dir_resolve(fs, parent, &dir);
	if (rc == 0 && !(dir.role == R_DIR && dir.creatable))
		rc = -EACCES;
	if (rc == 0 && len > MFS_NAME_MAX)
		rc = -ENAMETOOLONG;
	if (rc == 0 && mfs_ent_child(fs, &dir, name, len, &ino) == 0)
		rc = -EEXIST;
	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0)
		return rc;

	if (names_prop(&dir, name)) {
		char *key = NULL;
		pthread_rwlock_rdlock(&fs->lock);
		rc = mfs_ent_prop_key(fs, name, len, &key);
		pthread_rwlock_unlock(&fs->lock);
		if (rc == 0)
			rc = mfs_txn_prop_set(fs->txn, key, "", 0);
		free(key);
		struct mfs_skip sk = {.parent = dir.ino, .a = name, .a_len = len};
		if (rc == 0)
			rc = mfs_fs_sync_tree(fs, NULL, &sk);
		pthread_rwlock_rdlock(&fs->lock);
		if (rc == 0)
			rc = mfs_ent_child(fs, &dir, name, len, &ino);
		if (rc == 0)
			rc = mfs_ent_resolve(fs, ino, out);
		if (rc == 0)
			mfs_ent_edited(fs, out, false);
		pthread_rwlock_unlock(&fs->lock);
		return rc;
	}

	uint64_t id;
	rc = mfs_txn_scratch_new(&id, fs->txn);
	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&fs->lock);
	pthread_mutex_lock(&fs->xlock);
	struct mfs_xnode *x = mfs_itab_scratch_add(fs->itab, dir.ino, name, len, id);
	if (x) {
		x->create_mode = mode & 07777;
		x->mode = mode & 07777;
		x->mtime = x->ctime = x->atime = mfs_now();
		x->set = MFS_XA_MODE | MFS_XA_MTIME | MFS_XA_CTIME | MFS_XA_ATIME;
		ino = x->ino;
	}
	pthread_mutex_unlock(&fs->xlock);
	rc = x ? mfs_ent_resolve(fs, ino, out) : -ENOMEM;
	pthread_rwlock_unlock(&fs->lock);
	if (!x)
		mfs_txn_scratch_drop(fs->txn, id);
	return rc;
}

/* Is the tensor of directory `dir` one the format lets rmdir delete (or
 * one staged as new, which rmdir unstages)? */
static bool tensor_deletable(struct mfs_fs *fs, uint32_t dir)
{
	const struct mfs_tensor *t = mfs_ent_dir_tensor(fs, dir);
	return t && t->id <= MFS_FIELD_I_MAX &&
	       (mfs_txn_tensor_is_added(fs->txn, t) ||
	        mfs_txn_field_writable(fs->txn, MFS_FIELD_ID(MFS_FIELD_TENSOR_DELETE, t->id, 0)));
}

/*
 * mkdir - in weights/ or a directory in it: stages a new tensor
 * (mfs_txn_tensor_add) named by the directory's path below weights/, its
 * components joined with '.' as the tree splits names (weights/a/b is
 * tensor "a.b").  The rebuilt tree shows it with the own files of a
 * tensor: dtype float32, shape a scalar, data empty until written; a
 * commit refuses it until data = dtype x shape.  A component holding '.'
 * is EINVAL (the tree would split it), a name taken EEXIST, a format that
 * cannot add tensors (or a directory elsewhere) EPERM.
 */
int mfs_ns_mkdir(struct mfs_fs *fs, uint64_t parent, const char *name, struct mfs_ent *out)
{
	struct mfs_ent dir;
	uint64_t ino, id;
	size_t len = strlen(name);
	char *tname = NULL;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_dir_resolve(fs, parent, &dir);
	if (rc == 0 && (dir.role != R_DIR || !dir.e || !mfs_ent_in_weights(fs, dir.idx)))
		rc = -EPERM;
	else if (rc == 0 && fs->read_only)
		rc = -EROFS;
	else if (rc == 0 && len > MFS_NAME_MAX)
		rc = -ENAMETOOLONG;
	else if (rc == 0 && mfs_ent_child(fs, &dir, name, len, &ino) == 0)
		rc = -EEXIST;
	else if (rc == 0 && (!len || memchr(name, '.', len)))
		rc = -EINVAL;
	/* The path below weights/, from the new name up. */
	size_t n = len;
	if (rc == 0 && !(tname = strdup(name)))
		rc = -ENOMEM;
	const struct mfs_tree *tr = fs->gen->tree;
	struct mfs_tnode eb;
	uint32_t idx = dir.idx;
	for (unsigned depth = 0; rc == 0 && idx != fs->gen->weights_dir; depth++) {
		const struct mfs_tnode *e = mfs_tree_node(tr, idx, &eb);
		char *nt = depth < 4096 ? malloc(e->name_len + 1u + n + 1) : NULL;
		if (!nt) {
			rc = depth < 4096 ? -ENOMEM : -ELOOP;
			break;
		}
		memcpy(nt, e->name, e->name_len);
		nt[e->name_len] = '.';
		memcpy(nt + e->name_len + 1, tname, n + 1);
		free(tname);
		tname = nt;
		n += e->name_len + 1u;
		idx = e->parent;
	}
	pthread_rwlock_unlock(&fs->lock);
	/* Components are encoded (doc/design.md §3.3) and hold no '.': decode
	 * each; one whose name holds '.', '/' or NUL would split otherwise. */
	char *dec = rc == 0 ? malloc(n + 1) : NULL;
	size_t dn = 0;
	if (rc == 0 && !dec)
		rc = -ENOMEM;
	for (size_t a = 0; rc == 0 && a <= n;) {
		size_t b = a;
		while (b < n && tname[b] != '.')
			b++;
		size_t cl = 0;
		if (dn)
			dec[dn++] = '.';
		if ((rc = mfs_name_decode(dec + dn, &cl, tname + a, b - a)) == 0 &&
		    (!cl || memchr(dec + dn, '.', cl) || memchr(dec + dn, '/', cl) ||
		     memchr(dec + dn, '\0', cl)))
			rc = -EINVAL;
		dn += cl;
		a = b + 1;
	}
	if (rc == 0) {
		dec[dn] = '\0';
		rc = mfs_txn_tensor_add(fs->txn, dec, &id);
	}
	free(dec);
	free(tname);
	if (rc < 0)
		return rc;
	struct mfs_skip sk = {.parent = dir.ino, .a = name, .a_len = len};
	rc = mfs_fs_sync_tree(fs, NULL, &sk);
	mfs_fs_root_changed(fs, NULL, 0, 0);    /* slock held */
	pthread_rwlock_rdlock(&fs->lock);
	if (rc == 0)
		rc = mfs_ent_dir_resolve(fs, parent, &dir);
	if (rc == 0)
		rc = mfs_ent_child(fs, &dir, name, len, &ino);
	if (rc == 0)
		rc = mfs_ent_resolve(fs, ino, out);
	pthread_rwlock_unlock(&fs->lock);
	return rc;
}

/*
 * rmdir - of a tensor's directory (weights/<path>/, main graph): stages the
 * tensor's deletion (the format refuses one a node reads or a graph output
 * with EBUSY, the reason in status), and the rebuilt tree no longer shows
 * it, nor its npy/ view; the directories on its way stay until the commit,
 * and rmdir of such an empty one succeeds without staging anything.  A
 * directory with entries is ENOTEMPTY; the model's other directories EPERM.
 */
int mfs_ns_rmdir(struct mfs_fs *fs, uint64_t parent, const char *name)
{
	struct mfs_ent dir, en;
	uint64_t ino;
	size_t len = strlen(name);
	pthread_mutex_lock(&fs->slock);
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_dir_resolve(fs, parent, &dir);
	if (rc == 0)
		rc = mfs_ent_child(fs, &dir, name, len, &ino);
	if (rc == 0)
		rc = mfs_ent_resolve(fs, ino, &en);
	if (rc == 0 && (en.role != R_DIR || !en.e))
		rc = en.role == R_CTL_DIR ? -EPERM : -ENOTDIR;
	const struct mfs_tensor *t = NULL;
	if (rc == 0 && (en.e->flags & MFS_TNF_TENSOR)) {
		t = mfs_ent_dir_tensor(fs, en.idx);
		if (fs->read_only)
			rc = -EROFS;
		else if (!en.renames || !tensor_deletable(fs, en.idx))
			rc = -EPERM;
	} else if (rc == 0) {
		/* A directory on the way to deleted tensors, emptied: it goes
		 * at the commit. */
		rc = !en.renames ? -EPERM : en.e->u.dir.count ? -ENOTEMPTY : 0;
	}
	pthread_rwlock_unlock(&fs->lock);
	if (rc == 0 && t) {
		/* A tensor staged as new is unstaged; the model's are deleted. */
		rc = mfs_txn_tensor_is_added(fs->txn, t) ? mfs_txn_tensor_unadd(fs->txn, t) :
		     mfs_txn_field_set(fs->txn, MFS_FIELD_ID(MFS_FIELD_TENSOR_DELETE, t->id, 0),
		                       "", 0, "1", 1);
		struct mfs_skip sk = {.parent = dir.ino, .a = name, .a_len = len};
		if (rc == 0) {
			mfs_fs_sync_tree(fs, NULL, &sk);
			mfs_fs_root_changed(fs, NULL, 0, 0);    /* slock held */
		}
	}
	pthread_mutex_unlock(&fs->slock);
	return rc;
}

/*
 * unlink - a prop (unstaged or removed) or a scratch file (gone with its
 * last reference: an open descriptor keeps reading and writing it).  Entries
 * of the model cannot be removed: EPERM.
 */
int mfs_ns_unlink(struct mfs_fs *fs, uint64_t parent, const char *name)
{
	struct mfs_ent dir, en;
	uint64_t ino;
	size_t len = strlen(name);
	char *key = NULL;
	pthread_mutex_lock(&fs->slock);
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_dir_resolve(fs, parent, &dir);
	if (rc == 0)
		rc = mfs_ent_child(fs, &dir, name, len, &ino);
	if (rc == 0)
		rc = mfs_ent_resolve(fs, ino, &en);
	if (rc == 0 && en.role == R_PROP && en.writable) {
		rc = mfs_ent_prop_key(fs, name, len, &key);
	} else if (rc == 0 && en.role != R_SCRATCH && dir.e && en.e &&
	           (dir.e->flags & MFS_TNF_TENSOR) && (en.e->flags & MFS_TNF_OWN) &&
	           tensor_deletable(fs, dir.idx)) {
		/* `rm -r` of a tensor directory unlinks its own files first: that
		 * succeeds, staging nothing, when the tensor could be deleted (the
		 * rmdir deletes it), and fails as that rmdir would (EBUSY while a
		 * node reads it, the reason in status). */
		const struct mfs_tensor *t = mfs_ent_dir_tensor(fs, dir.idx);
		pthread_rwlock_unlock(&fs->lock);
		rc = mfs_txn_tensor_is_added(fs->txn, t) ? 0 : mfs_txn_field_check(fs->txn, MFS_FIELD_ID(MFS_FIELD_TENSOR_DELETE, t->id, 0),
		                         "1", 1);
		pthread_mutex_unlock(&fs->slock);
		return rc;
	} else if (rc == 0 && en.role != R_SCRATCH)
		rc = en.role == R_DIR || en.role == R_CTL_DIR ? -EISDIR : -EPERM;
	pthread_rwlock_unlock(&fs->lock);
	if (rc == 0 && en.role == R_SCRATCH) {
		mfs_scratch_unlink(fs, ino, false);
	} else if (rc == 0) {
		rc = mfs_txn_prop_unlink(fs->txn, key);
		struct mfs_skip sk = {.parent = dir.ino, .a = name, .a_len = len};
		if (rc == 0) {
			mfs_fs_sync_tree(fs, NULL, &sk);
			mfs_fs_root_changed(fs, NULL, 0, 0);    /* slock held */
		}
	}
	pthread_mutex_unlock(&fs->slock);
	free(key);
	return rc;
}

/* A scratch file's whole content, for a value (at most MFS_TEXT_MAX). */
static int scratch_text(struct mfs_fs *fs, uint64_t id, char **out, size_t *len)
{
	uint64_t size;
	*out = NULL;
	*len = 0;
	int rc = mfs_txn_scratch_size(&size, fs->txn, id);
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
static bool same_bytes(struct mfs_fs *fs, const struct mfs_ent *en, const char *p, size_t len)
{
	uint64_t size;
	if (mfs_ent_size(fs, en, &size) < 0 || size != len)
		return false;
	char *b = NULL;
	size_t n = 0;
	if (en->role == R_TEXT || mfs_ent_is_text(en->role)) {
		if (mfs_ent_text_get(fs, en, &b, &n) < 0)
			return false;
	} else {
		b = malloc(len + 1);
		if (!b)
			return false;
		while (n < len) {
			ssize_t r = en->role == R_SRC ?
			            mfs_file_read(fs->gen->model, en->e->u.src, b + n, len - n, n) :
			            mfs_ent_read(fs, en, b + n, len - n, n);
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
static int data_over(struct mfs_fs *fs, const struct mfs_ent *src, const struct mfs_ent *dst)
{
	struct mfs_snap *sn = NULL;
	unsigned n = 0;
	pthread_mutex_lock(&fs->xlock);
	for (struct mfs_fh *h = fs->fhs; h; h = h->next)
		n += h->tid == dst->t->id && !h->snap;
	pthread_mutex_unlock(&fs->xlock);
	if (n) {
		int rc = (sn = calloc(1, sizeof(*sn))) ? 0 : -ENOMEM;
		if (rc == 0)
			rc = mfs_ent_stat(fs, dst, &sn->st);
		if (rc == 0)
			rc = mfs_txn_tensor_snapshot(&sn->scratch, fs->txn, dst->t);
		if (rc < 0) {
			free(sn);
			return rc;
		}
		/* From here on those descriptors read the snapshot (the same
		 * bytes as the tensor, until the adoption below).  One reference
		 * is ours until the end, since they may close meanwhile. */
		pthread_mutex_lock(&fs->xlock);
		sn->refs = 1;
		for (struct mfs_fh *h = fs->fhs; h; h = h->next) {
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
	struct mfs_snap *drop = NULL;
	pthread_mutex_lock(&fs->xlock);
	if (sn && --sn->refs == 0)
		drop = sn;      /* every such descriptor was closed meanwhile */
	struct mfs_xnode *sx = rc == 0 ? mfs_itab_x(fs->itab, src->asked) : NULL;
	bool took = sx && mfs_itab_take_number(fs->itab, dst->idx, sx) == 0;
	if (took) {
		/* The entry's state is the renamed inode's: what rsync set on
		 * its temporary file stays, and it was edited now. */
		struct timespec t = mfs_now();
		sx->ctime = t;
		if (!(sx->set & MFS_XA_MTIME))
			sx->mtime = t;
		sx->set |= MFS_XA_MTIME | MFS_XA_CTIME;
		sx->touched = true;
		/* Descriptors of the scratch file are now of `data`. */
		for (struct mfs_fh *h = fs->fhs; h; h = h->next)
			if (h->ino == src->asked)
				h->tid = dst->t->id;
	}
	pthread_mutex_unlock(&fs->xlock);
	mfs_snap_free(fs, drop);
	if (took)
		mfs_fs_root_changed(fs, NULL, 0, 0);
	if (rc < 0)
		return rc;
	if (!took) {
		/* No memory for the table: the scratch inode becomes an alias. */
		mfs_ent_edited(fs, dst, true);
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
static int scratch_over(struct mfs_fs *fs, const struct mfs_ent *src, const struct mfs_ent *dst)
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
	case R_PROGRESS:
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
	case R_PTYPE:
	case R_FIELD:
		if (dst->writable) {
			rc = scratch_text(fs, src->scratch, &b, &n);
			if (rc == 0)
				rc = mfs_ent_text_apply(fs, dst, b, n);
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
		mfs_ent_edited(fs, dst, true);
	take_over(fs, src->asked, dst->ino, changed);
	return consumed ? 1 : 0;
}

/*
 * A value's directory (inputs/<x>, outputs/<y>, values/<v> of the main
 * graph: a *_NAME field in the tree) renamed within its directory: the
 * value is renamed (staged in the txn, which refuses a name in use with
 * EEXIST and a name the format cannot take with EINVAL, the reason in
 * status), and the rebuilt tree shows the new name everywhere it is used.
 * slock held, fs->lock shared on entry and released here.
 */
static int value_rename(struct mfs_fs *fs, const struct mfs_ent *pd, const struct mfs_ent *qd,
                        uint64_t fid, const char *name, size_t len, const char *newname,
                        size_t nlen, bool have_dst)
{
	char raw[MFS_NAME_MAX + 1];
	size_t rl = 0;
	char *text = NULL, *orig = NULL;
	int rc = 0;
	const char *from = mfs_desc_field_name(mfs_txn_desc(fs->txn), fid);
	if (fs->read_only)
		rc = -EROFS;
	else if (qd->ino != pd->ino || !from)
		rc = -EPERM;            /* a value stays in its own directory */
	else if (have_dst)
		rc = -EEXIST;
	else if (!mfs_txn_field_writable(fs->txn, fid))
		rc = -EPERM;
	else if (mfs_name_decode(raw, &rl, newname, nlen) < 0 || !rl)
		rc = -EINVAL;           /* no name the tree could show (or a cut one) */
	size_t tl = rc ? 0 : mfs_text_escape(NULL, 0, raw, rl);
	size_t ol = rc ? 0 : mfs_text_escape(NULL, 0, from, strlen(from));
	if (rc == 0 && (!(text = malloc(tl + 1)) || !(orig = malloc(ol + 1))))
		rc = -ENOMEM;
	if (rc == 0) {
		mfs_text_escape(text, tl + 1, raw, rl);
		mfs_text_escape(orig, ol + 1, from, strlen(from));
	}
	pthread_rwlock_unlock(&fs->lock);
	if (rc == 0)
		rc = mfs_txn_field_set(fs->txn, fid, orig, ol, text, tl);
	if (rc == 0) {
		struct mfs_itab_move mv = {qd->ino, name, len, newname, nlen};
		struct mfs_skip sk = {.parent = qd->ino, .a = name, .a_len = len, .b = newname,
		                      .b_len = nlen};
		mfs_fs_sync_tree(fs, &mv, &sk);
		mfs_fs_root_changed(fs, NULL, 0, 0);    /* slock held */
	}
	free(text);
	free(orig);
	return rc;
}

/*
 * An initializer's directory (weights/<path>/, main graph) renamed within
 * its directory: the tensor's name is its path (doc/design.md §3.1), so the
 * new name is the old one with its last segment replaced by the new
 * component, which must be one segment (no '.' or '/', which the tree
 * would split: EINVAL).  Staged as the tensor's TENSOR_NAME field, which
 * renames the value everywhere it is used.  slock held, fs->lock shared on
 * entry and released here.
 */
static int tensor_rename(struct mfs_fs *fs, const struct mfs_ent *pd, const struct mfs_ent *qd,
                         const struct mfs_ent *src, const char *name, size_t len,
                         const char *newname, size_t nlen, bool have_dst)
{
	char raw[MFS_NAME_MAX + 1];
	size_t rl = 0;
	char *text = NULL, *orig = NULL, *nn = NULL;
	int rc = 0;
	const struct mfs_tensor *t = mfs_ent_dir_tensor(fs, src->idx);
	uint64_t fid = t ? MFS_FIELD_ID(MFS_FIELD_TENSOR_NAME, t->id, 0) : 0;
	const char *from = t ? mfs_desc_field_name(mfs_txn_desc(fs->txn), fid) : NULL;
	if (fs->read_only)
		rc = -EROFS;
	else if (qd->ino != pd->ino || !from || !mfs_txn_field_writable(fs->txn, fid))
		rc = -EPERM;
	else if (have_dst)
		rc = -EEXIST;
	else if (mfs_name_decode(raw, &rl, newname, nlen) < 0 || !rl || memchr(raw, '.', rl) ||
	         memchr(raw, '/', rl))
		rc = -EINVAL;
	/* The shown (maybe staged) name less its last segment, then the new one. */
	size_t keep = rc ? 0 : strlen(t->name);
	while (keep && (t->name[keep - 1] == '.' || t->name[keep - 1] == '/'))
		keep--;
	while (keep && t->name[keep - 1] != '.' && t->name[keep - 1] != '/')
		keep--;
	if (rc == 0 && !(nn = malloc(keep + rl + 1)))
		rc = -ENOMEM;
	size_t nl = keep + rl, tl = 0, ol = 0;
	if (rc == 0) {
		memcpy(nn, t->name, keep);
		memcpy(nn + keep, raw, rl);
		nn[nl] = '\0';
		tl = mfs_text_escape(NULL, 0, nn, nl);
		ol = mfs_text_escape(NULL, 0, from, strlen(from));
		if (!(text = malloc(tl + 1)) || !(orig = malloc(ol + 1)))
			rc = -ENOMEM;
	}
	if (rc == 0) {
		mfs_text_escape(text, tl + 1, nn, nl);
		mfs_text_escape(orig, ol + 1, from, strlen(from));
	}
	pthread_rwlock_unlock(&fs->lock);
	if (rc == 0)
		rc = mfs_txn_field_set(fs->txn, fid, orig, ol, text, tl);
	if (rc == 0) {
		struct mfs_itab_move mv = {qd->ino, name, len, newname, nlen};
		struct mfs_skip sk = {.parent = qd->ino, .a = name, .a_len = len, .b = newname,
		                      .b_len = nlen};
		mfs_fs_sync_tree(fs, &mv, &sk);
		mfs_fs_root_changed(fs, NULL, 0, 0);    /* slock held */
	}
	free(nn);
	free(text);
	free(orig);
	return rc;
}

/*
 * rename - within what the model allows:
 *   a scratch file onto `data`, dtype, shape, a writable meta file or a
 *   prop: staged as that entry's content; onto an unchanged read-only
 *   entry: accepted, nothing changes; onto another scratch file or a new
 *   name in a writable directory: renamed; onto a new name in meta/props/
 *   not starting with '.': a new prop;
 *   a prop onto another name in meta/props/: the prop is renamed;
 *   a value's directory (inputs/, outputs/, values/) or an initializer's
 *   (weights/) onto a new name in the same directory: the value is renamed
 *   wherever it is used.
 * Anything else is EPERM (the model's entries stay where they are) or
 * EACCES (a read-only target).  RENAME_EXCHANGE is EINVAL.
 */
int mfs_ns_rename(struct mfs_fs *fs, uint64_t parent, const char *name, uint64_t newparent,
                  const char *newname, unsigned flags)
{
	struct mfs_ent pd, qd, src, dst;
	uint64_t sino, dino = 0;
	size_t len = strlen(name), nlen = strlen(newname);
	bool have_dst = false;
	char *from = NULL, *to = NULL, *b = NULL;
	size_t bl = 0;
	int rc = 0;
	if (flags & RENAME_EXCHANGE)
		return -EINVAL;
	pthread_mutex_lock(&fs->slock);
	pthread_rwlock_rdlock(&fs->lock);
	if (nlen > MFS_NAME_MAX)
		rc = -ENAMETOOLONG;
	if (rc == 0)
		rc = mfs_ent_dir_resolve(fs, parent, &pd);
	if (rc == 0)
		rc = mfs_ent_dir_resolve(fs, newparent, &qd);
	if (rc == 0)
		rc = mfs_ent_child(fs, &pd, name, len, &sino);
	if (rc == 0)
		rc = mfs_ent_resolve(fs, sino, &src);
	if (rc == 0 && mfs_ent_child(fs, &qd, newname, nlen, &dino) == 0) {
		rc = mfs_ent_resolve(fs, dino, &dst);
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
			mfs_scratch_unlink(fs, dino, false);
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
			mfs_scratch_unlink(fs, sino, r == 1);
			mfs_inval_entry(fs, qd.ino, newname, nlen);
			goto out;
		}
		if (names_prop(&qd, newname) && qd.creatable) {
			/* A new prop from the scratch file's content. */
			rc = mfs_ent_prop_key(fs, newname, nlen, &to);
			if (rc == 0)
				rc = scratch_text(fs, src.scratch, &b, &bl);
			pthread_rwlock_unlock(&fs->lock);
			if (rc == 0)
				rc = mfs_ent_prop_write(fs, to, b, bl);
			if (rc < 0)
				goto out;
			struct mfs_skip sk = {.parent = qd.ino, .a = newname, .a_len = nlen};
			mfs_fs_sync_tree(fs, NULL, &sk);
			pthread_rwlock_rdlock(&fs->lock);
			if (mfs_ent_child(fs, &qd, newname, nlen, &dino) == 0 &&
			    mfs_ent_resolve(fs, dino, &dst) == 0) {
				mfs_ent_edited(fs, &dst, false);
				take_over(fs, sino, dino, true);
			}
			pthread_rwlock_unlock(&fs->lock);
			mfs_scratch_unlink(fs, sino, false);
			mfs_inval_entry(fs, qd.ino, newname, nlen);
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

	uint64_t fid;
	if (src.role == R_DIR && mfs_tree_field(fs->gen->tree, src.idx, &fid) &&
	    mfs_field_is_name(fid)) {
		rc = value_rename(fs, &pd, &qd, fid, name, len, newname, nlen, have_dst);
		goto out;
	}
	if (src.role == R_DIR && src.e && (src.e->flags & MFS_TNF_TENSOR) && src.renames) {
		rc = tensor_rename(fs, &pd, &qd, &src, name, len, newname, nlen, have_dst);
		goto out;
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
	rc = mfs_ent_prop_key(fs, name, len, &from);
	if (rc == 0)
		rc = mfs_ent_prop_key(fs, newname, nlen, &to);
	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0)
		goto out;
	if (have_dst && dst.role == R_SCRATCH)
		mfs_scratch_unlink(fs, dino, false);
	rc = mfs_txn_prop_rename(fs->txn, from, to);
	if (rc == 0) {
		struct mfs_itab_move mv = {qd.ino, name, len, newname, nlen};
		struct mfs_skip sk = {.parent = qd.ino, .a = name, .a_len = len, .b = newname,
		                      .b_len = nlen};
		mfs_fs_sync_tree(fs, &mv, &sk);
		mfs_fs_root_changed(fs, NULL, 0, 0);    /* slock held */
	}
	goto out;

out_locked:
	pthread_rwlock_unlock(&fs->lock);
out:
	pthread_mutex_unlock(&fs->slock);
	free(from);
	free(to);
	free(b);
	return rc;
}

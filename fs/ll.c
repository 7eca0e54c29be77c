/*
 * fs/ll.c — the FUSE low-level operations: the only file that replies to FUSE.
 *
 * Each handler resolves its inodes (entry.c), asks the transaction or the
 * FUSE-free parts of the daemon (fs.h lists them) what to do, and replies.
 * The semantics — which entries take which edits, how the kernel's caches
 * stay true, the order of the locks — are described once, atop fs.h; this
 * file adds what is FUSE's: the capabilities asked for at INIT, open flags
 * (keep_cache, direct_io, noflush), zero-copy replies (splice from a byte
 * source's descriptor where the codec can hand one out, mfs_tensor_span),
 * and the valid replies of every handler, documented with it.
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

_Static_assert(FUSE_ROOT_ID == MFS_ROOT_INO, "the root's inode must be FUSE_ROOT_ID");

static struct mfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* The invalidation threads' way to the kernel (inval.c).  -ENOENT means
 * the kernel holds nothing for that inode or name, which is the goal anyway.
 * An inode's pages from `off` for `len` bytes (0: to the end). */
static void notify(void *session, uint64_t ino, const char *name, size_t name_len, uint64_t off,
                   uint64_t len)
{
	if (name_len)
		fuse_lowlevel_notify_inval_entry(session, ino, name, name_len);
	else
		fuse_lowlevel_notify_inval_inode(session, ino,
		                                 off > INT64_MAX ? INT64_MAX : (off_t)off,
		                                 len > INT64_MAX ? 0 : (off_t)len);
}

static int fill_entry(struct mfs_fs *fs, const struct mfs_ent *en, struct fuse_entry_param *ep)
{
	memset(ep, 0, sizeof(*ep));
	int rc = mfs_ent_stat(fs, en, &ep->attr);
	if (rc < 0)
		return rc;
	ep->ino = en->asked;
	ep->generation = 1;
	ep->attr_timeout = mfs_ent_attr_timeout(en);
	ep->entry_timeout = MFS_CACHE_TIMEOUT;
	return 0;
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
	conn->max_readahead = MFS_READAHEAD;
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
	/* The root model file's read(2) relies on it with -s (gen.c). */
	fs->auto_inval = conn->want & FUSE_CAP_AUTO_INVAL_DATA;
	fs->notify = notify;
	mfs_inval_start(fs);
}

/*
 * destroy - the session ends (unmount, or a signal): commit what is staged
 * (doc/design.md §5.3).  If the commit fails the edits stay in the journal
 * and are offered again at the next mount; say so on stderr and in the log.
 */
static void ll_destroy(void *userdata)
{
	struct mfs_fs *fs = userdata;
	mfs_inval_stop(fs);
	if (fs->read_only)
		return;
	struct mfs_txn_result res;
	pthread_mutex_lock(&fs->slock);
	int rc = mfs_txn_commit(fs->txn, &res);
	pthread_mutex_unlock(&fs->slock);
	mfs_fs_log_version(&res);
	fs->unmount_rc = rc;
	if (rc < 0) {
		/* Nobody may read stderr or the log (a detached daemon): the note
		 * beside the model is what the next mount, `modelfs status` and
		 * `modelfs unmount` see. */
		mfs_txn_note_failure(fs->txn, res.msg);
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
	struct mfs_ent dir, en;
	struct fuse_entry_param ep;
	uint64_t ino;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_dir_resolve(fs, parent, &dir);
	if (rc == 0)
		rc = mfs_ent_child(fs, &dir, name, strlen(name), &ino);
	if (rc == -ENOENT) {
		pthread_rwlock_unlock(&fs->lock);
		memset(&ep, 0, sizeof(ep));
		ep.entry_timeout = MFS_CACHE_TIMEOUT;
		fuse_reply_entry(req, &ep);
		return;
	}
	if (rc == 0)
		rc = mfs_ent_resolve(fs, ino, &en);
	if (rc == 0)
		rc = fill_entry(fs, &en, &ep);
	if (rc == 0 && en.role == R_SCRATCH)
		mfs_scratch_ref(fs, ino);
	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &ep);
}

/*
 * forget, forget_multi - the kernel dropped references.  Only scratch
 * files count them (inode.c, "Lookup counts").
 * Valid replies: fuse_reply_none.
 */
static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	mfs_scratch_forget(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		mfs_scratch_forget(fs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ------------------------------------------------------- attributes */

/* The handle of an open file (handle.c), NULL for opens that have none. */
static struct mfs_fh *fh_of(const struct fuse_file_info *fi)
{
	return fi ? (struct mfs_fh *)(uintptr_t)fi->fh : NULL;
}

/* Is `attr` the attributes' change allowed on `en`? */
static bool attrs_settable(const struct mfs_ent *en)
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
	struct mfs_ent en;
	struct stat st;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_resolve(fs, ino, &en);
	if (rc == 0 && (to_set & meta) && !attrs_settable(&en))
		rc = -EPERM;
	if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
		uint64_t size = (uint64_t)attr->st_size;
		struct mfs_fh *h = fh_of(fi);
		switch (en.role) {
		case R_DATA:
			rc = en.writable ? mfs_txn_tensor_truncate(fs->txn, en.t, size) : -EACCES;
			if (rc == 0)
				mfs_ent_edited(fs, &en, false);
			break;
		case R_SCRATCH:
			rc = mfs_txn_scratch_truncate(fs->txn, en.scratch, size);
			if (rc == 0)
				mfs_ent_edited(fs, &en, false);
			break;
		case R_DTYPE:
		case R_SHAPE:
		case R_META:
		case R_PROP:
		case R_PTYPE:
		case R_FIELD:
			if (!en.writable) {
				rc = -EACCES;
			} else if (h && h->kind == FH_TEXT) {
				pthread_mutex_lock(&h->lock);
				rc = mfs_fh_resize(h, size);
				if (rc == 0)
					h->dirty = true;
				pthread_mutex_unlock(&h->lock);
			} else {
				char *b = NULL;
				size_t n;
				rc = size > MFS_TEXT_MAX ? -EFBIG : mfs_ent_text_get(fs, &en, &b, &n);
				char *nb = rc == 0 ? realloc(b, (size_t)size + 1) : NULL;
				if (rc == 0 && !nb)
					rc = -ENOMEM;
				if (rc == 0) {
					b = nb;
					if (size > n)
						memset(b + n, 0, (size_t)size - n);
					rc = mfs_ent_text_apply(fs, &en, b, (size_t)size);
				}
				free(b);
				if (rc == 0)
					mfs_ent_edited(fs, &en, true);
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
		struct timespec t = mfs_now();
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
		rc = mfs_ent_stat(fs, &en, &st);
	pthread_rwlock_unlock(&fs->lock);
	mfs_inval_settle(fs);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, mfs_ent_attr_timeout(&en));
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
static void snap_stat(fuse_req_t req, struct mfs_fs *fs, fuse_ino_t ino, const struct mfs_snap *sn)
{
	struct stat st = sn->st;
	uint64_t size;
	int rc = mfs_txn_scratch_size(&size, fs->txn, sn->scratch);
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
	struct mfs_ent en;
	struct stat st;
	struct mfs_snap *sn = mfs_fh_snap(fh_of(fi));
	if (sn) {
		snap_stat(req, fs, ino, sn);
		return;
	}
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_resolve(fs, ino, &en);
	if (rc == 0)
		rc = mfs_ent_stat(fs, &en, &st);
	/* An open status handle's size is that of its text (served from it). */
	struct mfs_fh *h = fh_of(fi);
	if (rc == 0 && h && h->kind == FH_STATUS) {
		st.st_size = (off_t)h->len;
		st.st_blocks = (blkcnt_t)((h->len + 511) / 512);
	}

	pthread_rwlock_unlock(&fs->lock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, mfs_ent_attr_timeout(&en));
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
	struct mfs_ent en;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_resolve(fs, ino, &en);
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
	struct mfs_ent dir;
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_dir_resolve(fs, ino, &dir);
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
	static const char *const ctl[] = {"status", "commit", "abort", "progress"};
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
			if (i - 2 >= 4)
				break;
			mfs_ent_child(fs, &dir, ctl[i - 2], strlen(ctl[i - 2]), &c);
			strcpy(name, ctl[i - 2]);
		} else if (i - 2 < n_tree) {
			uint32_t ci = mfs_tree_child(tree, dir.idx, (uint32_t)(i - 2));
			struct mfs_tnode cb;
			const struct mfs_tnode *ce = mfs_tree_node(tree, ci, &cb);
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
		struct mfs_ent ce;
		if (plus) {
			struct fuse_entry_param ep;
			if (mfs_ent_resolve(fs, c, &ce) < 0 || fill_entry(fs, &ce, &ep) < 0)
				continue;       /* gone meanwhile */
			n = fuse_add_direntry_plus(req, buf + pos, size - pos, name, &ep, (off_t)(i + 1));
			if (n <= size - pos && i >= 2 && ce.role == R_SCRATCH)
				mfs_scratch_ref(fs, c);
		} else {
			int kind = S_IFREG;
			if (i < 2 || c == fs->ctl_dir)
				kind = S_IFDIR;
			else if (dir.role == R_DIR && i - 2 < n_tree) {
				struct mfs_tnode cb;
				kind = mfs_tree_node(tree, mfs_tree_child(tree, dir.idx, (uint32_t)(i - 2)),
				                     &cb)->kind == MFS_TN_DIR ? S_IFDIR : S_IFREG;
			}
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
	struct mfs_ent en;
	struct mfs_fh *h = NULL;
	bool wr = (fi->flags & O_ACCMODE) != O_RDONLY;
	bool trunc = wr && (fi->flags & O_TRUNC);
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_resolve(fs, ino, &en);
	if (rc == -ESTALE && (h = mfs_fh_open_replaced(fs, ino))) {
		/* /proc/PID/fd/N of a data file a rename replaced. */
		pthread_rwlock_unlock(&fs->lock);
		fi->keep_cache = 1;
		fi->direct_io = 0;
		fi->noflush = 1;
		fi->fh = (uintptr_t)h;
		if (fuse_reply_open(req, fi) != 0)
			mfs_fh_release(fs, h);
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
	case R_STATUS:
	case R_PROGRESS: {
		/* A snapshot of the text at open, served from the handle. */
		h = mfs_fh_new(FH_STATUS);
		if (!h || mfs_ent_ctl_text(fs, en.role, &h->buf, &h->len) < 0) {
			mfs_fh_free(h);
			h = NULL;
			rc = -ENOMEM;
			goto out;
		}
		fi->direct_io = 1;
		fi->keep_cache = 0;
		break;
	}
	case R_COMMIT:
	case R_ABORT:
	case R_VIEW:    /* computed: a staged edit changes it under the kernel's cache */
		fi->direct_io = 1;
		fi->keep_cache = 0;
		break;
	case R_ROOT:
		/*
		 * What would be committed now: it changes with every edit, and
		 * every descriptor and mapping must see it change (a loader
		 * reading the root file sees the edits).  Cached all the same, so
		 * that it can be mapped MAP_SHARED: the handle counts the opens
		 * that may be showing the kernel's pages, which every edit
		 * invalidates while there are any (gen.c, "The root model file").
		 * With -s that relies on the kernel dropping the pages when the
		 * mtime moves; a kernel that cannot gets the page cache bypassed.
		 * In a read-only mount it never changes and needs no handle.
		 */
		if (fs->read_only)
			break;
		if (!(h = mfs_fh_new(FH_ROOT))) {
			rc = -ENOMEM;
			goto out;
		}
		if (fs->single_thread && !fs->auto_inval) {
			fi->direct_io = 1;
			fi->keep_cache = 0;
		}
		break;
	case R_DATA:
	case R_SCRATCH:
		/* Every data handle, to find those a rename replaces (data_over). */
		if ((wr || en.role == R_DATA) && !(h = mfs_fh_new(FH_PLAIN))) {
			rc = -ENOMEM;
			goto out;
		}
		if (trunc) {
			rc = en.role == R_DATA ? mfs_txn_tensor_truncate(fs->txn, en.t, 0) :
			     mfs_txn_scratch_truncate(fs->txn, en.scratch, 0);
			if (rc < 0)
				goto out;
			h->wrote = true;
			mfs_ent_edited(fs, &en, false);
		}
		break;
	case R_DTYPE:
	case R_SHAPE:
	case R_META:
	case R_PROP:
	case R_PTYPE:
	case R_FIELD:
		if (!wr)
			break;
		if (!(h = mfs_fh_new(FH_TEXT))) {
			rc = -ENOMEM;
			goto out;
		}
		if (trunc) {
			/* Empty, but not a value yet: a shell's `>` closes a
			 * duplicate (FLUSH) before it writes, so only a write or
			 * a truncate of the handle stages something. */
			rc = mfs_fh_resize(h, 0);
		} else {
			char *b;
			size_t n;
			rc = mfs_ent_text_get(fs, &en, &b, &n);
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
	case R_DOT:
	case R_NPY:
		/*
		 * Page-cached while open (so it can be mapped), dropped at each
		 * open: its header and bytes follow staged edits and aborts,
		 * which queue no invalidation for it.
		 */
		fi->keep_cache = 0;
		break;
	default:
		break;
	}
	/*
	 * Listed, and the content version looked at, in one critical section:
	 * an edit of the root file either sees this handle open (and
	 * invalidates the pages) or moved the version first (and this open
	 * drops them).
	 */
	pthread_mutex_lock(&fs->xlock);
	if (h)
		mfs_fh_link_locked(fs, h, en.role == R_DATA ? en.t->id : NO_TENSOR, en.asked);
	if (fi->keep_cache) {
		/* Content changed behind the kernel's back since the last open? */
		struct mfs_xnode *x = mfs_itab_x(fs->itab, en.asked);
		if (x && x->ver != x->seen) {
			fi->keep_cache = 0;
			x->seen = x->ver;
		}
	}
	pthread_mutex_unlock(&fs->xlock);
out:
	pthread_rwlock_unlock(&fs->lock);
	mfs_inval_settle(fs);   /* O_TRUNC of `data` */
	if (rc < 0) {
		mfs_fh_free(h);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)h;
	if (fuse_reply_open(req, fi) != 0)
		mfs_fh_release(fs, h);      /* the open was interrupted: no release will come */
}

/*
 * Reply with `len` bytes where the codec said they lie (mfs_tensor_span,
 * mfs_file_span): from memory, or from a descriptor, spliced when the
 * kernel can.
 */
static void reply_span(fuse_req_t req, const struct mfs_span *sp, size_t len)
{
	if (sp->mem) {
		fuse_reply_buf(req, sp->mem, len);
		return;
	}
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = sp->fd;
	bv.buf[0].pos = (off_t)sp->off;
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
	const struct mfs_ent *en;
	const struct mfs_snap *sn;
};

static ssize_t rd_staged(void *arg, void *buf, size_t len, uint64_t off)
{
	struct rd_arg *a = arg;
	return mfs_ent_read(a->fs, a->en, buf, len, off);
}

/* Bytes of the generation's model, unedited: a tensor, or source file `src`. */
struct model_rd {
	const mfs_model *m;
	const struct mfs_tensor *t;
	size_t src;
};

static ssize_t rd_model(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct model_rd *a = arg;
	return a->t ? mfs_tensor_read(a->m, a->t, buf, len, off) :
	       mfs_file_read(a->m, a->src, buf, len, off);
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
	struct mfs_ent en;
	struct mfs_fh *h = fh_of(fi);
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
	struct mfs_snap *sn = mfs_fh_snap(h);
	if (sn) {
		/* A descriptor of a data file that a rename replaced. */
		struct rd_arg sa = {.fs = fs, .sn = sn};
		reply_read(req, rd_snap, &sa, size, o);
		return;
	}
	pthread_rwlock_rdlock(&fs->lock);
	int rc = mfs_ent_resolve(fs, ino, &en);
	if (rc < 0) {
		pthread_rwlock_unlock(&fs->lock);
		fuse_reply_err(req, -rc);
		return;
	}
	struct rd_arg ra = {.fs = fs, .en = &en};
	switch (en.role) {
	case R_TEXT:
		if (!(en.e->flags & MFS_TNF_GEN)) {
			const char *p;
			size_t n;
			bool nl;
			mfs_tree_text_slice(fs->gen->tree, en.idx, o, size, &p, &n, &nl);
			struct iovec iov[2] = {{(void *)p, n}, {(void *)"\n", 1}};
			fuse_reply_iov(req, iov, nl ? 2 : 1);
			break;
		}
		/* A text the tree makes on each read (a tensor's escaped name). */
		/* fall through */
	case R_VIEW:
	case R_DTYPE:
	case R_SHAPE:
	case R_META:
	case R_PROP:
	case R_PTYPE:
	case R_FIELD: {
		char *b;
		size_t n;
		rc = mfs_ent_text_get(fs, &en, &b, &n);
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
			rc = mfs_txn_tensor_size(&tsize, fs->txn, t);
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
		struct mfs_span sp;
		struct model_rd mr = {fs->gen->model, t, 0};
		if (mfs_tensor_span(&sp, fs->gen->model, t, o) == 0)
			reply_span(req, &sp, n);
		else
			reply_read(req, rd_model, &mr, n, o);
		break;
	}
	case R_SCRATCH:
		reply_read(req, rd_staged, &ra, size, o);
		break;
	case R_DOT:
	case R_NPY: {
		/* Made as read: dot.c, or the npy header and the tensor (view.c). */
		uint64_t vsize;
		rc = mfs_ent_size(fs, &en, &vsize);
		if (rc < 0)
			fuse_reply_err(req, -rc);
		else if (o >= vsize)
			fuse_reply_buf(req, NULL, 0);
		else
			reply_read(req, rd_staged, &ra, vsize - o < size ? vsize - o : size, o);
		break;
	}
	case R_ROOT: {
		uint64_t fsize;
		rc = mfs_txn_file_size(&fsize, fs->txn, 0);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			break;
		}
		if (o >= fsize) {
			fuse_reply_buf(req, NULL, 0);
			break;
		}
		size_t n = fsize - o < size ? (size_t)(fsize - o) : size;
		const mfs_model *m = mfs_txn_model(fs->txn);
		struct mfs_span sp;
		if (mfs_txn_dirty(fs->txn) || fs->committing)
			reply_read(req, rd_staged, &ra, n, o);
		else if (mfs_file_span(&sp, m, 0, o) == 0)
			reply_span(req, &sp, n);
		else
			reply_read(req, rd_model, &(struct model_rd){m, NULL, 0}, n, o);
		break;
	}
	case R_SRC: {
		uint64_t fsize = fs->gen->desc.files[en.e->u.src].size;
		if (o >= fsize) {
			fuse_reply_buf(req, NULL, 0);
			break;
		}
		size_t n = fsize - o < size ? (size_t)(fsize - o) : size;
		struct mfs_span sp;
		struct model_rd mr = {fs->gen->model, NULL, en.e->u.src};
		if (mfs_file_span(&sp, fs->gen->model, en.e->u.src, o) == 0)
			reply_span(req, &sp, n);
		else
			reply_read(req, rd_model, &mr, n, o);
		break;
	}
	case R_STATUS:
	case R_PROGRESS: {
		/* Opened without a handle (cannot happen): generate it now. */
		char *b;
		size_t n;
		rc = mfs_ent_ctl_text(fs, en.role, &b, &n);
		if (rc < 0)
			fuse_reply_err(req, -rc);
		else
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

/*
 * write - `size` bytes at `off`.  data and scratch files: staged at once
 * (the txn's errno on failure: EACCES for tensors it cannot edit).  Text
 * entries: into the handle's buffer (mfs_fh_text_write); a write whose
 * bytes end a line checks and stages the value now, so `echo bad > shape`
 * fails in write(2) with EINVAL, and so does a write with O_APPEND (`>>`).
 * .modelfs/commit and abort: any write commits or aborts and fails with
 * that operation's errno.
 * Valid replies: fuse_reply_write, fuse_reply_err.
 */
static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	struct mfs_fs *fs = fs_of(req);
	struct mfs_ent en;
	struct mfs_fh *h = fh_of(fi);
	ssize_t rc;
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	struct mfs_snap *sn = mfs_fh_snap(h);
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
	rc = mfs_ent_resolve(fs, ino, &en);
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
	case R_PROP:
	case R_PTYPE:
	case R_FIELD: {
		if (!h || h->kind != FH_TEXT) {
			rc = -EBADF;
			break;
		}
		pthread_mutex_lock(&h->lock);
		rc = mfs_fh_text_write(fs, &en, h, buf, size, (uint64_t)off,
		                       (fi->flags & O_APPEND) != 0);
		pthread_mutex_unlock(&h->lock);
		if (rc >= 0)
			goto out;       /* fh_apply did the bookkeeping */
		break;
	}
	case R_COMMIT: {
		pthread_rwlock_unlock(&fs->lock);
		struct mfs_txn_result res;
		/* "to TEMPLATE\n" (modelfs commit --to): a versioned commit;
		 * anything else, a plain one. */
		char tmpl[1024];
		bool to = size > 3 && size < sizeof(tmpl) + 3 && !memcmp(buf, "to ", 3);
		if (to) {
			size_t tl = size - 3;
			memcpy(tmpl, buf + 3, tl);
			if (tl && tmpl[tl - 1] == '\n')
				tl--;
			tmpl[tl] = '\0';
			to = tl > 0 && memchr(tmpl, '\0', tl) == NULL;
			if (!to) {
				fuse_reply_err(req, EINVAL);
				return;
			}
		}
		int crc = mfs_fs_commit_to(fs, to ? tmpl : NULL, &res);
		if (crc < 0)
			fuse_reply_err(req, -crc);
		else
			fuse_reply_write(req, size);
		return;
	}
	case R_ABORT: {
		pthread_rwlock_unlock(&fs->lock);
		int arc = mfs_fs_abort(fs);
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
		mfs_ent_wrote(fs, &en, (uint64_t)off, (uint64_t)rc);
	}
out:
	pthread_rwlock_unlock(&fs->lock);
	mfs_inval_settle(fs);
	if (rc < 0)
		fuse_reply_err(req, (int)-rc);
	else
		fuse_reply_write(req, (size_t)rc);
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
	struct mfs_fh *h = fh_of(fi);
	int rc = mfs_fh_stage_text(fs, ino, h);
	mfs_inval_settle(fs);
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
	struct mfs_fh *h = fh_of(fi);
	if (h && h->dirty) {
		mfs_fh_stage_text(fs, ino, h);      /* no one to report an error to */
		mfs_inval_settle(fs);
	}
	mfs_fh_release(fs, h);
	fuse_reply_err(req, 0);
}

/*
 * fsync, fsyncdir - commit (doc/design.md §5.3: fsync of any file in the
 * mount commits), after staging a value the handle still buffers.  The
 * reply is the commit's errno: EINVAL (validation), EFBIG, ESTALE (the
 * model changed on disk), ENOSPC, EIO; the edits stay staged when it fails.
 * Valid replies: fuse_reply_err.
 */
static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	struct mfs_fs *fs = fs_of(req);
	struct mfs_fh *h = fh_of(fi);
	int rc = mfs_fh_stage_text(fs, ino, h);
	mfs_inval_settle(fs);
	if (rc == 0 && !fs->read_only) {
		struct mfs_txn_result res;
		rc = mfs_fs_commit(fs, &res);
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
	struct mfs_ent en;
	struct fuse_entry_param ep;
	struct mfs_fh *h = NULL;
	pthread_mutex_lock(&fs->slock);
	int rc = mfs_ns_make_file(fs, parent, name, mode, &en);
	if (rc == 0) {
		h = mfs_fh_new(en.role == R_PROP ? FH_TEXT : FH_PLAIN);
		if (!h)
			rc = -ENOMEM;
		else if (en.role == R_PROP && mfs_fh_resize(h, 0) < 0)
			rc = -ENOMEM;   /* staged as "" already; the writes make the value */
	}
	pthread_rwlock_rdlock(&fs->lock);
	if (rc == 0)
		rc = fill_entry(fs, &en, &ep);
	if (rc == 0 && en.role == R_SCRATCH)
		mfs_scratch_ref(fs, en.ino);
	pthread_rwlock_unlock(&fs->lock);
	pthread_mutex_unlock(&fs->slock);
	mfs_inval_settle(fs);   /* a new prop */
	if (rc < 0) {
		mfs_fh_free(h);
		fuse_reply_err(req, -rc);
		return;
	}
	mfs_fh_list(fs, h, NO_TENSOR, en.ino);
	fi->fh = (uintptr_t)h;
	fi->keep_cache = 1;
	fi->direct_io = en.role == R_PROP;
	fi->noflush = 0;
	if (fuse_reply_create(req, &ep, fi) != 0)
		mfs_fh_release(fs, h);
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
	struct mfs_ent en;
	struct fuse_entry_param ep;
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	pthread_mutex_lock(&fs->slock);
	int rc = mfs_ns_make_file(fs, parent, name, mode, &en);
	pthread_rwlock_rdlock(&fs->lock);
	if (rc == 0)
		rc = fill_entry(fs, &en, &ep);
	if (rc == 0 && en.role == R_SCRATCH)
		mfs_scratch_ref(fs, en.ino);
	pthread_rwlock_unlock(&fs->lock);
	pthread_mutex_unlock(&fs->slock);
	mfs_inval_settle(fs);   /* a new prop */
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &ep);
}

/*
 * unlink - a prop (unstaged or removed) or a scratch file (gone with its
 * last reference: an open descriptor keeps reading and writing it).  Entries
 * of the model cannot be removed: EPERM.
 * Valid replies: fuse_reply_err.
 */
static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int rc = mfs_ns_unlink(fs_of(req), parent, name);
	mfs_inval_settle(fs_of(req));   /* a prop removed */
	fuse_reply_err(req, -rc);
}

/*
 * rmdir - a tensor's directory: the tensor's deletion is staged
 * (mfs_ns_rmdir); the model's other directories are its structure (EPERM).
 * Valid replies: fuse_reply_err.
 */
static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int rc = mfs_ns_rmdir(fs_of(req), parent, name);
	mfs_inval_settle(fs_of(req));   /* a tensor's paths removed */
	fuse_reply_err(req, -rc);
}

/*
 * mkdir - in weights/: stages a new tensor (mfs_ns_mkdir) where the format
 * can add one; elsewhere, and for formats that cannot, EPERM.
 * Valid replies: fuse_reply_entry, fuse_reply_err.
 */
static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)mode;
	struct mfs_fs *fs = fs_of(req);
	struct mfs_ent en;
	struct fuse_entry_param ep;
	pthread_mutex_lock(&fs->slock);
	int rc = mfs_ns_mkdir(fs, parent, name, &en);
	pthread_rwlock_rdlock(&fs->lock);
	if (rc == 0)
		rc = fill_entry(fs, &en, &ep);
	pthread_rwlock_unlock(&fs->lock);
	pthread_mutex_unlock(&fs->slock);
	mfs_inval_settle(fs);   /* a tensor's paths added */
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &ep);
}

/*
 * symlink, link - there are no links.
 * Valid replies: fuse_reply_err (EPERM).
 */
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
	int rc = mfs_ns_rename(fs_of(req), parent, name, newparent, newname, flags);
	mfs_inval_settle(fs_of(req));   /* a value adopted, a prop renamed */
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
	if (!fs->read_only && mfs_txn_statvfs(&host, fs->txn) == 0) {
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


/*
 * fs/ll.c — the FUSE low-level operations: the only file that replies to FUSE.
 *
 * Every handler answers from the immutable tree built at mount (tree.c,
 * which also explains how inode numbers map to entries: ino = index + 1) and
 * from the model's source files.  Nothing here allocates per inode or keeps
 * per-open state, so the multi-threaded loop needs no locks and `forget` is
 * a no-op.
 *
 * Reading, per entry kind:
 *   text    a span of the tree or of the description, plus the implicit
 *           '\n' of MFS_TNF_NL entries: fuse_reply_iov, no copy;
 *   tensor  bytes decoded at open time (t->mem): fuse_reply_buf, no copy;
 *           bytes in a source file: fuse_reply_data from the file's
 *           descriptor at the tensor's offset, clamped to the tensor's end,
 *           which libfuse splices into /dev/fuse when the kernel can;
 *   source  the model file (and external data files) at the root: the same,
 *           from offset 0.
 *
 * Caching (DESIGN §4): files are opened with keep_cache and never
 * direct_io, so the page cache keeps tensor pages and mmap works; entries,
 * attributes and negative lookups are valid for MFS_CACHE_TIMEOUT.  When
 * writes arrive these answers must be invalidated on commit
 * (fuse_lowlevel_notify_inval_inode / _entry).
 *
 * The mount is read-only for now: every operation that would change
 * something replies EROFS (the kernel already says so for an `ro` mount;
 * these answers cover a mount without `ro`).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "ll.h"
#include "names.h"

_Static_assert(FUSE_ROOT_ID == 1, "the root's inode must be FUSE_ROOT_ID");

static const struct mfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* The entry of inode `ino`, or NULL (an inode we never handed out). */
static const struct mfs_tnode *entry(const struct mfs_fs *fs, fuse_ino_t ino, uint32_t *idx)
{
	uint64_t i = mfs_tree_index(ino);
	const struct mfs_tnode *e = mfs_tree_node(fs->tree, i);
	if (e)
		*idx = (uint32_t)i;
	return e;
}

static void fill_stat(const struct mfs_fs *fs, uint32_t idx, const struct mfs_tnode *e,
                      struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = mfs_tree_ino(idx);
	if (e->kind == MFS_TN_DIR) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2 + e->u.dir.n_subdirs;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
	}
	uint64_t size = mfs_tree_size(fs->tree, idx);
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	st->st_blksize = MFS_IO_SIZE;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_atim = fs->mtime;
	st->st_mtim = fs->mtime;
	st->st_ctim = fs->mtime;
}

static void fill_entry(const struct mfs_fs *fs, uint32_t idx, const struct mfs_tnode *e,
                       struct fuse_entry_param *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->ino = mfs_tree_ino(idx);
	ep->generation = 1;
	ep->attr_timeout = MFS_CACHE_TIMEOUT;
	ep->entry_timeout = MFS_CACHE_TIMEOUT;
	fill_stat(fs, idx, e, &ep->attr);
}

/*
 * init - the kernel's INIT: ask for big reads and for splice.
 * SPLICE_WRITE/MOVE let fuse_reply_data move file pages into the reply
 * without copying them through this process; they are requested only where
 * the kernel offers them (asking for more aborts the mount).
 * max_readahead is a ceiling: the kernel keeps the smaller of it and the
 * bdi's read_ahead_kb.
 */
static void ll_init(void *userdata, struct fuse_conn_info *conn)
{
	const struct mfs_fs *fs = userdata;
	conn->max_read = fs->max_read;
	conn->max_readahead = MFS_IO_SIZE;
	conn->want |= conn->capable & (FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	/*
	 * Always readdirplus, not the kernel's "auto" heuristic (plus for the
	 * first chunk only, unless lookups follow): attributes here cost nothing
	 * to produce and never change, while every LOOKUP the heuristic leaves
	 * for `ls -l`, `find` or rsync is a round trip.  Measured on a
	 * 100,000-node graph: the first `ls -l nodes/` went from 94,000 lookups
	 * to none.
	 */
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	/* No writes: nothing to cache on the way back. */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

/*
 * lookup - find `name` in directory `parent`.
 * Valid replies: fuse_reply_entry, fuse_reply_err.
 * A name that is not there is answered with a negative entry (ino 0) that
 * the kernel may cache as long as a positive one, since nothing can create
 * it while mounted.
 */
static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	const struct mfs_fs *fs = fs_of(req);
	uint32_t pidx, idx;
	if (!entry(fs, parent, &pidx)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct fuse_entry_param ep;
	int rc = mfs_tree_lookup(fs->tree, pidx, name, strlen(name), &idx);
	if (rc == -ENOENT) {
		memset(&ep, 0, sizeof(ep));
		ep.entry_timeout = MFS_CACHE_TIMEOUT;
		fuse_reply_entry(req, &ep);
		return;
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fill_entry(fs, idx, mfs_tree_node(fs->tree, idx), &ep);
	fuse_reply_entry(req, &ep);
}

/*
 * forget, forget_multi - the kernel dropped lookups.  Entries live as long
 * as the mount, so there is no count to keep.
 * Valid replies: fuse_reply_none.
 */
static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

/*
 * getattr - the attributes of `ino`.
 * Valid replies: fuse_reply_attr, fuse_reply_err.
 */
static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	const struct mfs_fs *fs = fs_of(req);
	uint32_t idx;
	const struct mfs_tnode *e = entry(fs, ino, &idx);
	if (!e) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct stat st;
	fill_stat(fs, idx, e, &st);
	fuse_reply_attr(req, &st, MFS_CACHE_TIMEOUT);
}

/*
 * setattr - chmod, chown, truncate, utimes.  Read-only: anything that
 * would change an attribute is EROFS; an empty request reads them.
 * Valid replies: fuse_reply_attr, fuse_reply_err.
 */
static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	(void)attr;
	const int changes = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
	                    FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	                    FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
	if (to_set & changes) {
		fuse_reply_err(req, EROFS);
		return;
	}
	ll_getattr(req, ino, fi);
}

/*
 * opendir - open a directory for readdir.  The listing never changes, so the
 * kernel may cache it (cache_readdir) and keep it between opens.
 * Valid replies: fuse_reply_open, fuse_reply_err.
 */
static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint32_t idx;
	const struct mfs_tnode *e = entry(fs_of(req), ino, &idx);
	if (!e) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (e->kind != MFS_TN_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/*
 * readdir, readdirplus - list directory `ino` from position `off`.
 * Positions: 0 is ".", 1 is "..", 2 + i is child i in display order; each
 * entry carries the position of the next one, so a listing resumes exactly
 * where the kernel's buffer filled up.  readdirplus also hands out each
 * child's attributes, sparing `ls -l` one lookup per entry.
 * Valid replies: fuse_reply_buf, fuse_reply_err.
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	const struct mfs_fs *fs = fs_of(req);
	uint32_t idx;
	const struct mfs_tnode *e = entry(fs, ino, &idx);
	if (!e) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (e->kind != MFS_TN_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t pos = 0;
	uint64_t end = (uint64_t)e->u.dir.count + 2;
	for (uint64_t i = off < 0 ? 0 : (uint64_t)off; i < end; i++) {
		char name[MFS_NAME_MAX + 1];
		uint32_t c;
		if (i == 0) {
			c = idx;
			strcpy(name, ".");
		} else if (i == 1) {
			c = e->parent;
			strcpy(name, "..");
		} else {
			c = mfs_tree_child(fs->tree, idx, (uint32_t)(i - 2));
			const struct mfs_tnode *child = mfs_tree_node(fs->tree, c);
			memcpy(name, child->name, child->name_len);
			name[child->name_len] = '\0';
		}
		const struct mfs_tnode *ce = mfs_tree_node(fs->tree, c);
		size_t n;
		if (plus) {
			struct fuse_entry_param ep;
			fill_entry(fs, c, ce, &ep);
			n = fuse_add_direntry_plus(req, buf + pos, size - pos, name, &ep, (off_t)(i + 1));
		} else {
			struct stat st = {.st_ino = mfs_tree_ino(c),
			                  .st_mode = ce->kind == MFS_TN_DIR ? S_IFDIR : S_IFREG};
			n = fuse_add_direntry(req, buf + pos, size - pos, name, &st, (off_t)(i + 1));
		}
		if (n > size - pos)
			break;
		pos += n;
	}
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
 * release, releasedir, flush, fsync, fsyncdir - nothing is held per open
 * and nothing is ever dirty.
 * Valid replies: fuse_reply_err (0).
 */
static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

/*
 * open - open a file for reading.  Writing is EROFS.  keep_cache keeps the
 * pages of earlier opens (the bytes cannot have changed); noflush spares a
 * FLUSH round trip on every close.
 * Valid replies: fuse_reply_open, fuse_reply_err.
 */
static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint32_t idx;
	const struct mfs_tnode *e = entry(fs_of(req), ino, &idx);
	if (!e) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (e->kind == MFS_TN_DIR) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fi->direct_io = 0;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
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
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

/*
 * read - up to `size` bytes of `ino` from `off`; fewer only at the end.
 * Valid replies: fuse_reply_buf, fuse_reply_iov, fuse_reply_data,
 * fuse_reply_err.
 */
static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	(void)fi;
	const struct mfs_fs *fs = fs_of(req);
	uint32_t idx;
	const struct mfs_tnode *e = entry(fs, ino, &idx);
	if (!e) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	uint64_t o = (uint64_t)off;
	switch (e->kind) {
	case MFS_TN_TEXT: {
		const char *p;
		size_t n;
		bool nl;
		mfs_tree_text_slice(fs->tree, idx, o, size, &p, &n, &nl);
		struct iovec iov[2] = {{(void *)p, n}, {(void *)"\n", 1}};
		fuse_reply_iov(req, iov, nl ? 2 : 1);
		return;
	}
	case MFS_TN_TENSOR: {
		const struct mfs_tensor *t = e->u.tensor;
		if (o >= t->nbytes) {
			fuse_reply_buf(req, NULL, 0);
			return;
		}
		size_t n = t->nbytes - o < size ? (size_t)(t->nbytes - o) : size;
		if (t->mem)
			fuse_reply_buf(req, (const char *)t->mem + o, n);
		else
			reply_fd(req, mfs_file_fd(fs->model, t->src), t->off + o, n);
		return;
	}
	case MFS_TN_SRC: {
		uint64_t fsize = fs->desc->files[e->u.src].size;
		if (o >= fsize) {
			fuse_reply_buf(req, NULL, 0);
			return;
		}
		size_t n = fsize - o < size ? (size_t)(fsize - o) : size;
		reply_fd(req, mfs_file_fd(fs->model, e->u.src), o, n);
		return;
	}
	default:
		fuse_reply_err(req, EISDIR);
		return;
	}
}

/*
 * statfs - sizes of the mounted model: blocks are the source files' bytes,
 * files the tree's entries, nothing free.
 * Valid replies: fuse_reply_statfs, fuse_reply_err.
 */
static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	const struct mfs_fs *fs = fs_of(req);
	struct statvfs sv;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = MFS_IO_SIZE;
	sv.f_frsize = 4096;
	sv.f_blocks = (fsblkcnt_t)((fs->total_bytes + 4095) / 4096);
	sv.f_files = mfs_tree_count(fs->tree);
	sv.f_namemax = MFS_NAME_MAX;
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
 * Everything that would change the tree.
 * Valid replies: fuse_reply_err (EROFS).
 */
static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	fuse_reply_err(req, EROFS);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	fuse_reply_err(req, EROFS);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	fuse_reply_err(req, EROFS);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EROFS);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	fuse_reply_err(req, EROFS);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EROFS);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	(void)ino, (void)buf, (void)size, (void)off, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	fuse_reply_err(req, EROFS);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	fuse_reply_err(req, EROFS);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
	(void)ino, (void)mode, (void)offset, (void)length, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void ll_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                               struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                               struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)ino_in, (void)off_in, (void)fi_in, (void)ino_out, (void)off_out, (void)fi_out;
	(void)len, (void)flags;
	fuse_reply_err(req, EROFS);
}

const struct fuse_lowlevel_ops mfs_ll_ops = {
	.init = ll_init,
	.lookup = ll_lookup,
	.forget = ll_forget,
	.forget_multi = ll_forget_multi,
	.getattr = ll_getattr,
	.setattr = ll_setattr,
	.opendir = ll_opendir,
	.readdir = ll_readdir,
	.readdirplus = ll_readdirplus,
	.releasedir = ll_release,
	.fsyncdir = ll_fsync,
	.open = ll_open,
	.read = ll_read,
	.flush = ll_flush,
	.release = ll_release,
	.fsync = ll_fsync,
	.statfs = ll_statfs,
	.getxattr = ll_getxattr,
	.listxattr = ll_listxattr,
	.mknod = ll_mknod,
	.mkdir = ll_mkdir,
	.unlink = ll_unlink,
	.rmdir = ll_unlink,
	.symlink = ll_symlink,
	.rename = ll_rename,
	.link = ll_link,
	.write = ll_write,
	.create = ll_create,
	.setxattr = ll_setxattr,
	.removexattr = ll_removexattr,
	.fallocate = ll_fallocate,
	.copy_file_range = ll_copy_file_range,
};

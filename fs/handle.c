/*
 * fs/handle.c — per-open state: handles, the list of open handles, and the
 * snapshots a rename over `data` leaves to the descriptors it replaced.
 *
 * Every open of a data file, of the root model file of a read-write mount,
 * and every open for writing gets a handle (struct mfs_fh, fs.h), linked on
 * fs->fhs while open: a rename over a `data` file finds there the
 * descriptors still open on the file it replaces (namespace.c), an edit
 * learns whether the kernel may be showing the root file's pages
 * (fs->root_open), and at exit the daemon frees what the kernel never
 * released.  Text entries opened for writing buffer their value in
 * the handle and stage it when a line completes or on flush.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"

struct mfs_fh *mfs_fh_new(int kind)
{
	struct mfs_fh *h = calloc(1, sizeof(*h));
	if (h) {
		h->kind = kind;
		pthread_mutex_init(&h->lock, NULL);
	}
	return h;
}

void mfs_fh_free(struct mfs_fh *h)
{
	if (!h)
		return;
	assert(!h->listed);
	pthread_mutex_destroy(&h->lock);
	free(h->buf);
	free(h->undo);
	free(h);
}

/* Make the buffer `len` bytes long, zero-filling what grows (h->lock held). */
int mfs_fh_resize(struct mfs_fh *h, size_t len)
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
void mfs_fh_link_locked(struct mfs_fs *fs, struct mfs_fh *h, uint64_t tid, uint64_t ino)
{
	h->tid = tid;
	h->ino = ino;
	h->next = fs->fhs;
	h->prev = NULL;
	if (fs->fhs)
		fs->fhs->prev = h;
	fs->fhs = h;
	h->listed = true;
	if (h->kind == FH_ROOT)
		fs->root_open++;
}

/* Put a handle on fs->fhs; `tid` is its tensor's id, NO_TENSOR for other files. */
void mfs_fh_list(struct mfs_fs *fs, struct mfs_fh *h, uint64_t tid, uint64_t ino)
{
	if (!h)
		return;
	pthread_mutex_lock(&fs->xlock);
	mfs_fh_link_locked(fs, h, tid, ino);
	pthread_mutex_unlock(&fs->xlock);
}

/* A snapshot nobody reads any more: its scratch object and itself go. */
void mfs_snap_free(struct mfs_fs *fs, struct mfs_snap *sn)
{
	if (sn) {
		mfs_txn_scratch_drop(fs->txn, sn->scratch);
		free(sn);
	}
}

/* Take a handle off fs->fhs (xlock held); returns the snapshot to drop, or NULL. */
static struct mfs_snap *fh_unlist_locked(struct mfs_fs *fs, struct mfs_fh *h)
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
	if (h->kind == FH_ROOT)
		fs->root_open--;
	struct mfs_snap *sn = h->snap;
	h->snap = NULL;
	return sn && --sn->refs == 0 ? sn : NULL;
}

/* Release a handle: off the list, and its snapshot goes with the last user. */
void mfs_fh_release(struct mfs_fs *fs, struct mfs_fh *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&fs->xlock);
	struct mfs_snap *sn = fh_unlist_locked(fs, h);
	pthread_mutex_unlock(&fs->xlock);
	mfs_snap_free(fs, sn);
	mfs_fh_free(h);
}

/* At exit: the handles the kernel never released (the daemon was told to exit). */
void mfs_fh_free_all(struct mfs_fs *fs)
{
	while (fs->fhs) {
		struct mfs_fh *h = fs->fhs;
		free(fh_unlist_locked(fs, h));  /* its scratch object goes with the txn */
		mfs_fh_free(h);
	}
}

/* The handle's snapshot, if a rename replaced its file (see data_over). */
struct mfs_snap *mfs_fh_snap(const struct mfs_fh *h)
{
	return h ? __atomic_load_n(&h->snap, __ATOMIC_ACQUIRE) : NULL;
}

/*
 * A new handle on inode `ino`, a data file that a rename replaced, sharing
 * the snapshot of a descriptor still open on it; NULL when there is none.
 */
struct mfs_fh *mfs_fh_open_replaced(struct mfs_fs *fs, uint64_t ino)
{
	struct mfs_fh *h = mfs_fh_new(FH_PLAIN);
	if (!h)
		return NULL;
	pthread_mutex_lock(&fs->xlock);
	struct mfs_fh *o = fs->fhs;
	while (o && !(o->ino == ino && o->snap))
		o = o->next;
	if (o) {
		h->snap = o->snap;
		h->snap->refs++;
		mfs_fh_link_locked(fs, h, o->tid, ino);
	}
	pthread_mutex_unlock(&fs->xlock);
	if (!o) {
		mfs_fh_free(h);
		return NULL;
	}
	return h;
}

/* Stage a text handle's value (h->lock held, fs->lock held shared); see fs.h. */
int mfs_fh_apply(struct mfs_fs *fs, const struct mfs_ent *en, struct mfs_fh *h)
{
	if (!h->dirty)
		return h->failed ? -EINVAL : 0;
	int rc;
	if (!h->staged && !h->undo) {
		rc = mfs_ent_text_get(fs, en, &h->undo, &h->undo_len);
		if (rc < 0)
			return rc;
	}
	rc = mfs_ent_text_apply(fs, en, h->buf ? h->buf : "", h->len);
	h->dirty = false;
	if (rc < 0) {
		h->failed = rc == -EINVAL;
		if (h->staged && mfs_ent_text_apply(fs, en, h->undo, h->undo_len) == 0) {
			h->staged = false;
			mfs_ent_edited(fs, en, true);
		}
		return rc;
	}
	h->staged = true;
	h->wrote = true;
	/* Staged in its canonical form, which other opens may not have cached. */
	mfs_ent_edited(fs, en, true);
	return 0;
}

/*
 * A write(2) into a text handle (h->lock and fs->lock, shared, held).  A
 * one-value file holds one value, replaced whole (doc/design.md §5.1): the
 * handle's buffer is what the file will hold, and a write whose bytes end a
 * line checks and stages all of it at once, so that `echo bad > shape`
 * fails in write(2), where a shell sees it, and not only in close(2),
 * whose error shells drop.  A value is the whole buffer less one trailing
 * newline: `8\nabc\n` is no shape, no dtype and no model_version, and
 * fails; the free-text values (the string meta files, props) may hold
 * newlines, as their models' strings may.  A refused write leaves the
 * entry and the buffer as the file was before it (before this open, when
 * an earlier write of it was staged: mfs_fh_apply), and fails the close
 * too.  Appending (O_APPEND: `>>`) would make the old value and the new one
 * a single text: EINVAL.
 */
ssize_t mfs_fh_text_write(struct mfs_fs *fs, const struct mfs_ent *en, struct mfs_fh *h,
                          const char *buf, size_t size, uint64_t off, bool append)
{
	if (append) {
		h->failed = true;
		return -EINVAL;
	}
	if (off + size > MFS_TEXT_MAX)
		return -EFBIG;
	size_t end = (size_t)off + size, old_len = h->len;
	char *old = malloc(h->len + 1);
	if (!old)
		return -ENOMEM;
	memcpy(old, h->buf ? h->buf : "", h->len);
	old[old_len] = '\0';
	ssize_t rc = end > h->len ? mfs_fh_resize(h, end) : 0;
	if (rc == 0) {
		memcpy(h->buf + off, buf, size);
		h->dirty = true;
		h->failed = false;
		rc = (ssize_t)size;
	}
	if (rc > 0 && buf[size - 1] == '\n') {
		bool had = h->staged;
		int arc = mfs_fh_apply(fs, en, h);
		if (arc < 0) {
			/* Refused: the buffer goes back to what the file holds (the
			 * text before this handle staged anything, if it did), and
			 * the close will report the refusal again. */
			if (had && !h->staged && h->undo_len <= MFS_TEXT_MAX &&
			    mfs_fh_resize(h, h->undo_len) == 0) {
				memcpy(h->buf, h->undo, h->undo_len);
			} else {
				memcpy(h->buf, old, old_len + 1);
				h->len = old_len;
			}
			h->dirty = false;
			h->failed = true;
			rc = arc;
		}
	}
	free(old);
	return rc;
}

/*
 * A text handle's value staged before flush, release or fsync (fs->lock
 * and h->lock taken here).  0 for handles of other kinds.
 */
int mfs_fh_stage_text(struct mfs_fs *fs, uint64_t ino, struct mfs_fh *h)
{
	if (!h || h->kind != FH_TEXT)
		return 0;
	struct mfs_ent en;
	pthread_rwlock_rdlock(&fs->lock);
	pthread_mutex_lock(&h->lock);
	int rc = mfs_ent_resolve(fs, ino, &en);
	if (rc == 0)
		rc = mfs_fh_apply(fs, &en, h);
	pthread_mutex_unlock(&h->lock);
	pthread_rwlock_unlock(&fs->lock);
	return rc;
}

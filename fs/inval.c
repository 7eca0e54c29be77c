/*
 * fs/inval.c — kernel cache invalidations, queued by handlers and sent by
 * threads of their own (fs.h, CACHING).
 *
 * libfuse forbids notifying the kernel from the execution path of a request
 * the notification concerns, and a handler may hold locks that such a
 * request needs: so handlers only queue (under a leaf lock), and a thread
 * sends, through the notify function ll.c installs.  Nothing here includes
 * FUSE.
 *
 * There are two lanes, each a FIFO with its own thread:
 *   qgen    entries, directories and whole files: what rebuilds, commits,
 *           aborts and values staged in another form leave stale;
 *   qroot   the root model file's pages, which every edit changes.
 * Handlers that changed the root file wait for qroot before they reply
 * (mfs_inval_settle), which is why it is a lane of its own: the kernel
 * carries out an invalidation only once it holds the locks of what it
 * drops, and on qgen those can be held by the very request that waits — the
 * pages of a data file being written (a commit queues that file while a
 * write to it waits in the txn), a directory's lock during a create.  What
 * qroot sends waits only for reads of the root file in flight (their pages
 * are locked until answered), and a read never waits for a handler's
 * invalidations.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs.h"

struct mfs_inval {
	struct mfs_inval *next;
	uint64_t seq;           /* the lane's number for it (a merge takes the newer) */
	uint64_t ino;           /* inode, or the parent of `name` */
	uint64_t off, len;      /* an inode's pages: [off, off + len), len 0 to the end */
	size_t name_len;        /* 0: invalidate the inode; else the entry `name` */
	char name[];
};

/* The kernel drops whole pages: ranges this close cover the same or adjacent ones. */
#define MERGE_GAP 4096u

/* End of a range (UINT64_MAX: to the end of the file). */
static uint64_t range_end(uint64_t off, uint64_t len)
{
	return len == 0 || len > UINT64_MAX - off ? UINT64_MAX : off + len;
}

/*
 * Fold invalidation (ino, name, off, len) into `q` if it covers the same
 * thing: the same entry, or pages of the same inode in or next to q's
 * range (their union, which is no more than the kernel would drop for
 * both).  A burst of writes to one tensor then costs one invalidation.
 */
static bool merge(struct mfs_inval *q, uint64_t ino, const char *name, size_t name_len,
                  uint64_t off, uint64_t len)
{
	if (q->ino != ino || q->name_len != name_len)
		return false;
	if (name_len)
		return !memcmp(q->name, name, name_len);
	uint64_t qe = range_end(q->off, q->len), e = range_end(off, len);
	bool apart = (qe != UINT64_MAX && qe + MERGE_GAP < off) ||
	             (e != UINT64_MAX && e + MERGE_GAP < q->off);
	if (apart)
		return false;
	uint64_t lo = q->off < off ? q->off : off, hi = qe > e ? qe : e;
	q->off = lo;
	q->len = hi == UINT64_MAX ? 0 : hi - lo;
	return true;
}

/*
 * Queue an invalidation.  One that the last one queued covers is merged
 * into it (a burst of edits of one file); looking further back would make
 * a flood (the whole tree after an abort of recovered edits) quadratic.
 */
static void push(struct mfs_inval_lane *l, uint64_t ino, const char *name, size_t name_len,
                 uint64_t off, uint64_t len)
{
	pthread_mutex_lock(&l->lock);
	if (l->tail && merge(l->tail, ino, name, name_len, off, len)) {
		l->tail->seq = ++l->seq;
		pthread_mutex_unlock(&l->lock);
		return;
	}
	struct mfs_inval *q = malloc(sizeof(*q) + name_len + 1);
	if (q) {
		q->next = NULL;
		q->seq = ++l->seq;
		q->ino = ino;
		q->off = off;
		q->len = len;
		q->name_len = name_len;
		memcpy(q->name, name ? name : "", name_len);
		q->name[name_len] = '\0';
		if (l->tail)
			l->tail->next = q;
		else
			l->head = q;
		l->tail = q;
		pthread_cond_signal(&l->cond);
	}
	/* Out of memory: the kernel's cache stays stale until it expires. */
	pthread_mutex_unlock(&l->lock);
}

void mfs_inval_inode(struct mfs_fs *fs, uint64_t ino)
{
	push(&fs->qgen, ino, NULL, 0, 0, 0);
}

void mfs_inval_entry(struct mfs_fs *fs, uint64_t parent, const char *name, size_t len)
{
	if (len)
		push(&fs->qgen, parent, name, len, 0, 0);
}

void mfs_inval_root(struct mfs_fs *fs, uint64_t ino, uint64_t off, uint64_t len)
{
	push(&fs->qroot, ino, NULL, 0, off, len);
}

/*
 * A lane's thread: sends what handlers queued, in order.  -ENOENT means the
 * kernel holds nothing for that inode or name, which is the goal anyway.
 */
static void *lane_thread(void *arg)
{
	struct mfs_inval_lane *l = arg;
	struct mfs_fs *fs = l->fs;
	pthread_mutex_lock(&l->lock);
	for (;;) {
		while (!l->head && !l->stop)
			pthread_cond_wait(&l->cond, &l->lock);
		if (l->stop)
			break;
		struct mfs_inval *q = l->head;
		l->head = q->next;
		if (!l->head)
			l->tail = NULL;
		pthread_mutex_unlock(&l->lock);
		fs->notify(fs->se, q->ino, q->name, q->name_len, q->off, q->len);
		pthread_mutex_lock(&l->lock);
		l->sent = q->seq;
		free(q);
		pthread_cond_broadcast(&l->idle);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

static void lane_init(struct mfs_fs *fs, struct mfs_inval_lane *l)
{
	memset(l, 0, sizeof(*l));
	l->fs = fs;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	pthread_cond_init(&l->idle, NULL);
}

void mfs_inval_init(struct mfs_fs *fs)
{
	lane_init(fs, &fs->qgen);
	lane_init(fs, &fs->qroot);
}

static void lane_stop(struct mfs_inval_lane *l)
{
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_broadcast(&l->cond);
	pthread_cond_broadcast(&l->idle);
	pthread_mutex_unlock(&l->lock);
	if (l->started)
		pthread_join(l->thread, NULL);
	l->started = false;
	while (l->head) {
		struct mfs_inval *q = l->head;
		l->head = q->next;
		free(q);
	}
	l->tail = NULL;
}

void mfs_inval_stop(struct mfs_fs *fs)
{
	lane_stop(&fs->qroot);
	lane_stop(&fs->qgen);
}

void mfs_inval_fini(struct mfs_fs *fs)
{
	mfs_inval_stop(fs);
	struct mfs_inval_lane *ls[] = {&fs->qgen, &fs->qroot};
	for (size_t i = 0; i < 2; i++) {
		pthread_cond_destroy(&ls[i]->idle);
		pthread_cond_destroy(&ls[i]->cond);
		pthread_mutex_destroy(&ls[i]->lock);
	}
}

bool mfs_inval_start(struct mfs_fs *fs)
{
	if (!fs->se || !fs->notify)
		return false;
	struct mfs_inval_lane *ls[] = {&fs->qgen, &fs->qroot};
	for (size_t i = 0; i < 2; i++) {
		struct mfs_inval_lane *l = ls[i];
		if (!l->started && pthread_create(&l->thread, NULL, lane_thread, l) == 0)
			l->started = true;
	}
	return fs->qgen.started && fs->qroot.started;
}

/* The wall clock `ms` from now, for pthread_cond_timedwait. */
static struct timespec deadline(unsigned ms)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	return dl;
}

/* Wait until what lane `l` had queued when called was sent, or until `dl`. */
static void lane_wait(struct mfs_inval_lane *l, const struct timespec *dl)
{
	pthread_mutex_lock(&l->lock);
	uint64_t want = l->seq;
	while (l->sent < want && l->started && !l->stop)
		if (pthread_cond_timedwait(&l->idle, &l->lock, dl) != 0)
			break;
	pthread_mutex_unlock(&l->lock);
}

/*
 * Wait until everything queued has been sent, for at most `ms`.  Called
 * with no lock held, and never on the single-threaded loop: an
 * invalidation can wait for a request that only this thread could answer.
 */
void mfs_inval_wait(struct mfs_fs *fs, unsigned ms)
{
	if (fs->single_thread)
		return;
	struct timespec dl = deadline(ms);
	lane_wait(&fs->qroot, &dl);
	lane_wait(&fs->qgen, &dl);
}

void mfs_inval_settle(struct mfs_fs *fs)
{
	struct mfs_inval_lane *l = &fs->qroot;
	if (fs->single_thread)
		return;
	pthread_mutex_lock(&l->lock);
	bool pending = l->sent < l->seq && l->started;
	pthread_mutex_unlock(&l->lock);
	if (pending) {
		struct timespec dl = deadline(MFS_INVAL_WAIT_MS);
		lane_wait(l, &dl);
	}
}

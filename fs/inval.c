/*
 * fs/inval.c — kernel cache invalidations, queued by handlers and sent by a
 * thread of their own (fs.h, CACHING).
 *
 * libfuse forbids notifying the kernel from the execution path of a request
 * the notification concerns, and a handler may hold locks that such a
 * request needs: so handlers only queue (under a leaf lock), and one thread
 * sends, through the notify function ll.c installs.  Nothing here includes
 * FUSE.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs.h"

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

void mfs_inval_inode(struct mfs_fs *fs, uint64_t ino)
{
	inval_push(fs, ino, NULL, 0);
}

void mfs_inval_entry(struct mfs_fs *fs, uint64_t parent, const char *name, size_t len)
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
		fs->notify(fs->se, q->ino, q->name, q->len);
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
void mfs_inval_wait(struct mfs_fs *fs, unsigned ms)
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

void mfs_inval_stop(struct mfs_fs *fs)
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

bool mfs_inval_start(struct mfs_fs *fs)
{
	if (!fs->qstarted && fs->se && fs->notify &&
	    pthread_create(&fs->qthread, NULL, inval_thread, fs) == 0)
		fs->qstarted = true;
	return fs->qstarted;
}

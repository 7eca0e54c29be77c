/*
 * fs/ll.h — what main.c needs from ll.c: the low-level operations and the
 * state they serve from.
 *
 * ll.c is the only file that replies to FUSE.  It answers from a tree
 * (tree.h) rebuilt when the transaction's structure changes, maps inode
 * numbers through inode.h, and reads and edits the model through the
 * transaction API (modelfs/txn.h).
 */
#ifndef MODELFS_FS_LL_H
#define MODELFS_FS_LL_H

/* fuse_loop_cfg_*() and the 3.12 loop API; Debian bookworm ships 3.14. */
#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "inode.h"
#include "modelfs/model.h"
#include "modelfs/txn.h"
#include "tree.h"

/* Reads, writes, readahead and st_blksize: big requests for big tensors. */
#define MFS_IO_SIZE (1u << 20)

/*
 * The default max_read: 1 MiB less 16 KiB, so that a reply (its header and
 * data from an unaligned file offset) fits in a pipe of the default
 * pipe-max-size (1 MiB, 256 pages) and libfuse can splice it; a 1 MiB reply
 * cannot, and falls back to pread into a fresh buffer and a copy (measured:
 * first read through the mount 0.8-1.0 GB/s with 1 MiB, 1.9-2.2 GB/s with
 * this).
 */
#define MFS_MAX_READ (MFS_IO_SIZE - (16u << 10))

/*
 * Entries, attributes and pages that only the daemon can change may be
 * cached for a day: every change the daemon makes is either done through
 * the kernel (which updates its own caches) or followed by a precise
 * invalidation (ll.c, "CACHING").
 */
#define MFS_CACHE_TIMEOUT 86400.0

/* One tree generation: the tree and what it was built from. */
struct mfs_gen {
	struct mfs_tree *tree;
	struct mfs_desc desc;           /* the txn's description, with the staged props */
	const mfs_model *model;         /* the model `desc` describes (kept open by the txn) */
	struct mfs_meta *props;         /* desc.props: ours (mfs_txn_props_free) */
	uint32_t meta_dir;              /* tree index of meta/, or UINT32_MAX */
	uint32_t props_dir;             /* tree index of meta/props/, or UINT32_MAX */
	uint64_t txn_gen;               /* mfs_txn_generation() it was built at */
};

/* A queued cache invalidation (ll.c, "CACHING"). */
struct mfs_inval;

/*
 * The state of a mount, passed to fuse_session_new() as userdata.  main.c
 * fills the settings and calls mfs_fs_init(); handlers borrow it.
 */
struct fh;

struct mfs_fs {
	/* settings (main.c) */
	mfs_txn *txn;
	bool read_only;
	bool recovered;                 /* the txn staged edits from a journal at open */
	bool single_thread;             /* -s: never wait for the invalidation thread */
	uid_t uid;                      /* owner of every entry */
	gid_t gid;
	struct timespec mtime;          /* times of every entry not edited (the model's mtime) */
	unsigned max_read;              /* must equal the max_read mount option */
	struct fuse_session *se;        /* for notifications; set before the loop runs */

	/* state (ll.c) */
	pthread_mutex_t slock;          /* structure: namespace edits, commit, abort, rebuild */
	pthread_rwlock_t lock;          /* the generation and the inode map */
	pthread_mutex_t xlock;          /* xnodes (inode.h) and the fields below */
	struct mfs_gen *gen;
	struct mfs_itab *itab;
	bool committing;                /* a commit runs: tensor bytes only through the txn */
	bool no_opendir;                /* the kernel does without OPENDIR (ll_init) */
	int unmount_rc;                 /* the commit at unmount (destroy): 0 or -errno */
	uint64_t ctl_dir, ctl_status, ctl_commit, ctl_abort;    /* .modelfs/ inodes */
	struct timespec last_edit;      /* mtime of the root model file while edits are staged */
	struct fh *fhs;                 /* open handles (ll.c), under xlock */

	/* the invalidation thread */
	pthread_mutex_t qlock;
	pthread_cond_t qcond, qidle;
	struct mfs_inval *qhead, *qtail;
	bool qbusy, qstop, qstarted;
	pthread_t qthread;
};

/*
 * mfs_fs_init() - build the first tree from the transaction and number it.
 * The settings must be filled.  Returns 0 or a negative errno (-ENOMEM, or
 * the tree builder's error).
 */
int mfs_fs_init(struct mfs_fs *fs);

/* mfs_fs_fini() - free what mfs_fs_init() made (not the txn). */
void mfs_fs_fini(struct mfs_fs *fs);

extern const struct fuse_lowlevel_ops mfs_ll_ops;

#endif /* MODELFS_FS_LL_H */

/*
 * fs/ll.h — what main.c needs from ll.c: the low-level operations and the
 * state they serve from.
 *
 * ll.c is the only file that replies to FUSE.  It answers from an immutable
 * tree (tree.h) and reads tensor bytes through the model API (model.h).
 */
#ifndef MODELFS_FS_LL_H
#define MODELFS_FS_LL_H

/* fuse_loop_cfg_*() and the 3.12 loop API; Debian bookworm ships 3.14. */
#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <sys/types.h>
#include <time.h>

#include "modelfs/model.h"
#include "tree.h"

/* Reads, readahead and st_blksize: big requests for big tensors. */
#define MFS_IO_SIZE (1u << 20)

/* Everything is immutable while mounted, so the kernel may cache for a day. */
#define MFS_CACHE_TIMEOUT 86400.0

/*
 * The state of a mount, passed to fuse_session_new() as userdata.  Borrowed
 * by every handler; read-only once the session runs, so no locking.
 */
struct mfs_fs {
	const mfs_model *model;
	const struct mfs_desc *desc;
	const struct mfs_tree *tree;
	uid_t uid;                      /* owner of every entry */
	gid_t gid;
	struct timespec mtime;          /* atime, mtime and ctime of every entry */
	uint64_t total_bytes;           /* sum of the source files, for statfs */
	unsigned max_read;              /* must equal the max_read mount option */
};

extern const struct fuse_lowlevel_ops mfs_ll_ops;

#endif /* MODELFS_FS_LL_H */

/*
 * fs/ll.h — what main.c needs from ll.c: the low-level operations.
 *
 * ll.c is the only file that replies to FUSE; the state it serves from and
 * the FUSE-free parts of the daemon are in fs.h.
 */
#ifndef MODELFS_FS_LL_H
#define MODELFS_FS_LL_H

/* fuse_loop_cfg_*() and the 3.12 loop API; Debian bookworm ships 3.14. */
#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>

#include "fs.h"

extern const struct fuse_lowlevel_ops mfs_ll_ops;

#endif /* MODELFS_FS_LL_H */

/*
 * fs/inode.h — inode numbers of a mount whose tree changes.
 *
 * The tree (tree.h) is immutable and rebuilt when the transaction's
 * structure changes (a prop created, removed or renamed; a commit; an
 * abort).  The kernel, meanwhile, holds inode numbers for as long as it
 * likes.  struct mfs_itab keeps those numbers meaningful: a path keeps its
 * inode number across rebuilds, a path that appears gets a number never
 * used before, a number whose path vanished stays dead.  It also holds the
 * inodes that are not tree entries at all — scratch files that tools create
 * (rsync's ".data.XXXXXX") — and the little per-inode state the daemon keeps
 * (attributes set by chmod/utimes, content versions for the page cache).
 * The essay on how it works is at the top of inode.c.
 *
 * No FUSE here (fs_core): unit-testable without a mount.  Not thread-safe:
 * the daemon (ll.c) serialises access with its own locks.
 */
#ifndef MODELFS_FS_INODE_H
#define MODELFS_FS_INODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "names.h"
#include "tree.h"

struct mfs_itab;

/* What an xnode is. */
enum mfs_xkind {
	MFS_XN_STATE = 1,       /* state of an inode that is a tree entry or a control file */
	MFS_XN_SCRATCH,         /* a scratch file (not in the tree) */
};

/* Which attributes a setattr has overridden (struct mfs_xnode.set). */
#define MFS_XA_MODE     0x01
#define MFS_XA_UID      0x02
#define MFS_XA_GID      0x04
#define MFS_XA_ATIME    0x08
#define MFS_XA_MTIME    0x10
#define MFS_XA_CTIME    0x20

/*
 * The state the daemon keeps for one inode, created on first need: every
 * scratch file has one, a tree entry only once something set its
 * attributes or changed its content.  Fields above `private` are the
 * caller's to read and write (under its lock).
 */
struct mfs_xnode {
	uint64_t ino;
	uint8_t kind;                   /* enum mfs_xkind */

	/* scratch files */
	bool listed;                    /* reachable by (parent, name) */
	bool dropped;                   /* its scratch object is gone (unlink, abort) */
	uint64_t parent;                /* directory inode */
	char *name;                     /* NUL-terminated component */
	size_t name_len;
	uint64_t scratch;               /* scratch object id (txn.h) */
	uint64_t alias;                 /* 0, or the inode it became by a rename over an entry */
	uint64_t nlookup;               /* the kernel's references (lookup, create, forget) */
	mode_t create_mode;             /* permission bits given at create */

	/* attributes set by setattr (MFS_XA_*) or by edits */
	unsigned set;
	mode_t mode;                    /* permission bits only */
	uid_t uid;
	gid_t gid;
	struct timespec atime, mtime, ctime;

	/* caching: content changed behind the kernel's page cache */
	uint64_t ver;                   /* bumped on such a change */
	uint64_t seen;                  /* ver when the last open was answered */
	bool touched;                   /* edited since the last commit or abort */

	/* private */
	struct mfs_xnode *hnext;
	struct mfs_xnode *snext, *sprev;
};

/*
 * mfs_itab_new() - the table for the first tree: entry `idx` is inode
 * idx + 1 (the root is 1, FUSE_ROOT_ID), as it was when the tree never
 * changed.  `tree` is borrowed until the next mfs_itab_rebuild().
 * Returns 0 or -ENOMEM.
 */
int mfs_itab_new(struct mfs_itab **out, const struct mfs_tree *tree);

/* mfs_itab_destroy() - free the table and every xnode; accepts NULL. */
void mfs_itab_destroy(struct mfs_itab *it);

/* mfs_itab_tree() - the tree the numbers currently map to. */
const struct mfs_tree *mfs_itab_tree(const struct mfs_itab *it);

/* mfs_itab_alloc() - an inode number never handed out before. */
uint64_t mfs_itab_alloc(struct mfs_itab *it);

/* mfs_itab_ino() - the inode number of entry `idx` of the current tree. */
uint64_t mfs_itab_ino(const struct mfs_itab *it, uint32_t idx);

/*
 * mfs_itab_index() - the current tree entry of inode `ino`.
 * Returns 0 and sets *idx; -ENOENT for a number never handed out; -ESTALE
 * for one that is not a tree entry now (its path vanished, or it is a
 * scratch file or a control file: see mfs_itab_x()).
 */
int mfs_itab_index(const struct mfs_itab *it, uint64_t ino, uint32_t *idx);

/*
 * A rename the rebuild should follow: the entry named `from` in directory
 * inode `parent` is now named `to` in the same directory, and keeps its
 * inode number (the kernel has already moved its dentry).
 */
struct mfs_itab_move {
	uint64_t parent;
	const char *from;
	size_t from_len;
	const char *to;
	size_t to_len;
};

/* What a rebuild reports, one call per entry concerned. */
enum mfs_itab_event {
	MFS_IEV_APPEARED = 1,   /* a new path, with a new inode number */
	MFS_IEV_VANISHED,       /* a path gone: `ino` is dead from now on */
	MFS_IEV_CHANGED,        /* same path and number, other size or content
	                         * (a text file's bytes, a directory's children) */
};

typedef void mfs_itab_event_fn(void *arg, enum mfs_itab_event ev, uint64_t parent,
                               const char *name, size_t len, uint64_t ino);

/*
 * mfs_itab_rebuild() - map the inode numbers onto `tree`, which replaces
 * the current tree.  An entry keeps the number of the entry at the same
 * path in the old tree when it has the same kind (directory or file),
 * following `move` (may be NULL).  `fn` (may be NULL) hears of every path
 * that appeared, vanished or changed; `name` points into the old tree for
 * VANISHED and into the new one otherwise, and is valid during the call
 * only.  Both trees must be alive during the call; afterwards only `tree`.
 * Returns 0, or -ENOMEM with nothing changed.
 */
int mfs_itab_rebuild(struct mfs_itab *it, const struct mfs_tree *tree,
                     const struct mfs_itab_move *move, mfs_itab_event_fn *fn, void *arg);

/*
 * mfs_itab_take_number() - scratch file `x` was renamed over the file entry
 * `idx` (the kernel has moved its dentry): the entry takes x's inode
 * number, as a name on a disk file system takes the inode renamed onto it,
 * and the entry's old number is dead from now on (ESTALE), as the inode a
 * rename replaces is unlinked.  x is unlisted and becomes the entry's state
 * xnode (the attributes set on it stay); the old number's state xnode is
 * freed.  Returns 0, -EINVAL (not a scratch xnode, or the root), or -ENOMEM
 * with nothing changed.
 */
int mfs_itab_take_number(struct mfs_itab *it, uint32_t idx, struct mfs_xnode *x);

/* --------------------------------------------------------------- xnodes */

/* mfs_itab_x() - the xnode of `ino`, or NULL. */
struct mfs_xnode *mfs_itab_x(const struct mfs_itab *it, uint64_t ino);

/* mfs_itab_x_get() - the xnode of `ino`, made (MFS_XN_STATE) if missing; NULL on ENOMEM. */
struct mfs_xnode *mfs_itab_x_get(struct mfs_itab *it, uint64_t ino);

/*
 * mfs_itab_scratch_add() - a new scratch file `name[0 .. len)` in directory
 * inode `parent`, backed by scratch object `scratch`, with a new inode
 * number.  The caller has checked that the name is free.
 * Returns the xnode (listed, nlookup 0), or NULL on ENOMEM.
 */
struct mfs_xnode *mfs_itab_scratch_add(struct mfs_itab *it, uint64_t parent, const char *name,
                                       size_t len, uint64_t scratch);

/* mfs_itab_scratch_find() - the listed scratch file at (parent, name), or NULL. */
struct mfs_xnode *mfs_itab_scratch_find(const struct mfs_itab *it, uint64_t parent,
                                        const char *name, size_t len);

/* mfs_itab_scratch_move() - rename a listed scratch file.  0 or -ENOMEM. */
int mfs_itab_scratch_move(struct mfs_itab *it, struct mfs_xnode *x, uint64_t parent,
                          const char *name, size_t len);

/*
 * mfs_itab_scratch_unlist() - the scratch file is no longer reachable by
 * name (unlinked, renamed over an entry, dropped).  Its xnode lives on while
 * the kernel holds the inode (nlookup > 0); see mfs_itab_x_put().
 */
void mfs_itab_scratch_unlist(struct mfs_itab *it, struct mfs_xnode *x);

/*
 * mfs_itab_scratch_next() - iterate over the listed scratch files: the one
 * after `x` (NULL: the first), in creation order; NULL at the end.
 */
struct mfs_xnode *mfs_itab_scratch_next(const struct mfs_itab *it, const struct mfs_xnode *x);

/*
 * mfs_itab_x_put() - free a scratch xnode that nothing can reach any more
 * (unlisted and nlookup 0).  Does nothing otherwise.
 */
void mfs_itab_x_put(struct mfs_itab *it, struct mfs_xnode *x);

/*
 * mfs_itab_x_next() - iterate over every xnode (any order); NULL at the
 * end.  The table must not change during the walk.
 */
struct mfs_xnode *mfs_itab_x_next(const struct mfs_itab *it, const struct mfs_xnode *x);

/* mfs_itab_mem() - bytes the table holds (maps and xnodes). */
uint64_t mfs_itab_mem(const struct mfs_itab *it);

#endif /* MODELFS_FS_INODE_H */

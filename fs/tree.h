/*
 * fs/tree.h — the mount's directory tree, built once from a model description.
 *
 * mfs_tree_build() turns a `const struct mfs_desc *` into an immutable array
 * of entries laid out as doc/design.md §3 says (meta/, inputs/, nodes/,
 * weights/ ...).  The tree holds no bytes of tensors: a `data` file points
 * at its struct mfs_tensor, a root model file names its source-file index,
 * and small text files point at strings of the description or at strings the
 * tree formatted itself (lists).  The files every tensor directory has
 * (data, dtype, shape, name) are not stored: mfs_tree_node() makes them on
 * demand, with texts generated from the tensor (MFS_TNF_GEN).  Entry indices are not inode
 * numbers: fs/inode.c maps those onto each tree (see the top of inode.c).
 *
 * No FUSE here (fs_core): the daemon (ll.c) and the unit tests both use it.
 * A built tree is read-only, so any number of threads may use it at once.
 */
#ifndef MODELFS_FS_TREE_H
#define MODELFS_FS_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "modelfs/model.h"

enum mfs_tnode_kind {
	MFS_TN_DIR = 1,
	MFS_TN_TEXT,            /* u.text: bytes in memory (+ '\n' if MFS_TNF_NL) */
	MFS_TN_TENSOR,          /* u.tensor: a tensor's `data` file */
	MFS_TN_SRC,             /* u.src: a source file of the model, at the root */
	MFS_TN_NPY,             /* u.tensor: npy/<path>.npy, an npy header and the
	                         * tensor's bytes (fs/view.c serves it) */
	MFS_TN_DOT,             /* meta/graph.dot (fs/dot.c makes it) */
};

/* Entry flags. */
#define MFS_TNF_NL      0x01    /* text: the content is u.text plus one '\n' */
#define MFS_TNF_TENSOR  0x02    /* dir: a tensor's or sparse tensor's directory */
#define MFS_TNF_OWN     0x04    /* an entry a tensor directory has of its own
                                 * (data, dtype, shape, name, values/, indices/) */
/* (0x80 is private to tree.c.) */
#define MFS_TNF_GEN     0x08    /* text: made on each read (u.text.p is NULL,
                                 * u.text.len right): read it with
                                 * mfs_tree_text_read(), not _slice() */

/*
 * One entry.  `name` is NOT NUL-terminated (it often points into the middle
 * of a tensor name of the description); `name_len` is 1 .. 255.  The root's
 * name is empty and its parent is itself.
 */
struct mfs_tnode {
	const char *name;
	uint32_t parent;
	uint8_t name_len;
	uint8_t kind;           /* enum mfs_tnode_kind */
	uint8_t flags;
	uint8_t pad_;
	union {
		struct {
			uint32_t first;         /* private: where its children are listed */
			uint32_t count;         /* number of children */
			uint32_t n_subdirs;     /* children that are directories (for st_nlink) */
			uint32_t own;           /* private: 0, or which tensor's own files
			                         * (data dtype shape name sha256 stats) it shows */
		} dir;
		struct {
			const char *p;
			uint64_t len;           /* without the implicit '\n' */
		} text;
		const struct mfs_tensor *tensor;
		uint64_t src;                   /* index into desc->files */
	} u;
};

struct mfs_tree;

/* The root's index. */
#define MFS_TREE_ROOT 0u

/*
 * mfs_tree_build() - build the tree of `desc`.
 * @out:  receives the tree; yours to free with mfs_tree_destroy().
 * @desc: borrowed; must outlive the tree (entries point into it).
 * Time and memory grow with the number of entries (graph nodes, attributes,
 * tensors), never with tensor bytes.
 * Returns 0, -ENOMEM, or -EFBIG when the tree would pass 2^32 - 2 entries.
 */
int mfs_tree_build(struct mfs_tree **out, const struct mfs_desc *desc);

/*
 * mfs_tree_build_hiding() - the same without the tensors whose ids are in
 * `hidden` (n_hidden of them, ascending): their directories are not made,
 * the directories on the way to them are (tensors staged for deletion).
 */
int mfs_tree_build_hiding(struct mfs_tree **out, const struct mfs_desc *desc,
                          const uint64_t *hidden, size_t n_hidden);

/*
 * mfs_tree_test_limit() - for tests only: make later builds fail with
 * -EFBIG past `max` entries instead of 2^32 - 2 (0 restores that).  Not
 * thread-safe.
 */
void mfs_tree_test_limit(uint32_t max);

/* The entry limit mount.modelfs(8) documents. */
#define MFS_TREE_MAX_ENTRIES 4294967294u

/* mfs_tree_destroy() - free the tree; accepts NULL. */
void mfs_tree_destroy(struct mfs_tree *t);

/* mfs_tree_count() - number of entries; valid indices are 0 .. count-1. */
uint32_t mfs_tree_count(const struct mfs_tree *t);

/*
 * mfs_tree_node() - entry `idx`, or NULL when out of range.  The files a
 * tensor directory has of its own (data, dtype, shape, name) are not stored
 * as entries: for those the entry is made in `buf` and `buf` is returned, so
 * the result lives as long as the tree or `buf`, whichever ends first.
 */
const struct mfs_tnode *mfs_tree_node(const struct mfs_tree *t, uint64_t idx,
                                      struct mfs_tnode *buf);

/*
 * mfs_tree_child() - the `i`-th child of directory `dir` in display order
 * (the order of the model: graph order for nodes/, file order for weights/),
 * 0 <= i < dir's u.dir.count.  readdir offsets are these positions.
 */
uint32_t mfs_tree_child(const struct mfs_tree *t, uint32_t dir, uint32_t i);

/*
 * mfs_tree_lookup() - the child of directory `dir` named `name[0 .. len)`.
 * Returns 0 and sets *out, -ENOENT, -ENOTDIR when `dir` is not a directory,
 * or -ENAMETOOLONG.  O(1) expected (a hash table over all entries).
 */
int mfs_tree_lookup(const struct mfs_tree *t, uint32_t dir, const char *name, size_t len,
                    uint32_t *out);

/*
 * mfs_tree_resolve() - the entry at a '/'-separated path relative to the
 * root ("weights/fc/weight/data"; "" is the root).  For tests and tools.
 * Returns 0 and sets *out, or the first error of mfs_tree_lookup().
 */
int mfs_tree_resolve(const struct mfs_tree *t, const char *path, uint32_t *out);

/*
 * mfs_tree_size() - st_size of entry `idx`: exactly the bytes a read of the
 * whole file returns (text with its '\n', tensor nbytes, source file size);
 * for a directory, its number of children; for an npy view, its header and
 * the tensor's bytes as the model has them (the daemon asks the txn).
 */
uint64_t mfs_tree_size(const struct mfs_tree *t, uint32_t idx);

/*
 * mfs_tree_text_read() - copy up to `len` bytes of text entry `idx` from
 * `off` into `buf`.  Returns the bytes copied (0 at the end; also 0 when a
 * generated text (MFS_TNF_GEN) longer than 4 KiB finds no memory).  The
 * caller has checked that the entry is MFS_TN_TEXT.
 */
size_t mfs_tree_text_read(const struct mfs_tree *t, uint32_t idx, void *buf, size_t len,
                          uint64_t off);

/*
 * mfs_tree_text_slice() - bytes [off, off + len) of text entry `idx`, without
 * copying: (*p, *n) is the part held in memory, and *nl says whether the
 * implicit '\n' follows it (so a reply is at most two iovecs).  Returns the
 * total, *n + *nl.  A generated text (MFS_TNF_GEN) is held nowhere: it gives
 * 0 here, and mfs_tree_text_read() reads it.
 */
size_t mfs_tree_text_slice(const struct mfs_tree *t, uint32_t idx, uint64_t off, size_t len,
                           const char **p, size_t *n, bool *nl);

/*
 * mfs_tree_text_same() - do text entries `ia` of `a` and `ib` of `b` (two
 * trees, or one) hold the same bytes?  Cheap for generated texts of tensors
 * (a shape compares dims, not strings).
 */
bool mfs_tree_text_same(const struct mfs_tree *a, uint32_t ia, const struct mfs_tree *b,
                        uint32_t ib);

/*
 * mfs_tree_ino() / mfs_tree_index() - the numbering of a first tree, which
 * fs/inode.c starts from: the root is inode 1, which is FUSE_ROOT_ID;
 * mfs_tree_index() returns UINT64_MAX for 0 (never an inode).
 */
static inline uint64_t mfs_tree_ino(uint32_t idx)
{
	return (uint64_t)idx + 1;
}

static inline uint64_t mfs_tree_index(uint64_t ino)
{
	return ino - 1;     /* 0 wraps to UINT64_MAX: out of range for mfs_tree_node() */
}

/*
 * mfs_tree_prop() - when entry `idx` is the file of a prop (meta/props/<key>),
 * its index in the description's props[]: true and *out set.  O(1).
 */
bool mfs_tree_prop(const struct mfs_tree *t, uint32_t idx, size_t *out);

/*
 * mfs_tree_field() - when entry `idx` shows a graph field of the main graph
 * (model.h, MFS_FIELD_ID: an attribute, a node's name, an input's or
 * output's dtype or shape), its id in *out.
 */
bool mfs_tree_field(const struct mfs_tree *t, uint32_t idx, uint64_t *out);

/* mfs_tree_mem() - bytes the tree holds (entries, strings, hash table). */
uint64_t mfs_tree_mem(const struct mfs_tree *t);

#endif /* MODELFS_FS_TREE_H */

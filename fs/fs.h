/*
 * fs/fs.h — the daemon's state and what its files share, without FUSE.
 *
 * mount.modelfs is the FUSE handlers (ll.c, the only file that includes a
 * FUSE header besides main.c) on top of FUSE-free parts that can be tested
 * without a mount:
 *
 *   tree.c, names.c   the tree built from a model description
 *   inode.c           inode numbers, stable across rebuilds; xnodes
 *   gen.c             tree generations: rebuilds after structural edits,
 *                     commits and aborts, and the invalidations they imply
 *   entry.c           what an inode is (classification), the content of
 *                     text entries, sizes and attributes, lookups, scratch
 *                     file lifetimes
 *   handle.c          per-open state: text buffers, the list of open data
 *                     handles, the snapshots a rename over `data` leaves them
 *   namespace.c       create, unlink and rename, and what a rename over an
 *                     entry of the model means
 *   inval.c           the queue of kernel cache invalidations and the thread
 *                     that sends them
 *
 * Handlers answer from the current tree generation (struct mfs_gen: a tree
 * built from the transaction's description, with the staged props), map
 * inode numbers through inode.c, and read and edit the model through the
 * transaction (modelfs/txn.h): what a file shows is always the staged state
 * (read-your-writes), and nothing here touches the model file.
 *
 * ENTRIES AND WHAT THEY ACCEPT (doc/design.md §5.1)
 *
 *   data                      write at any offset, O_TRUNC, truncate: staged
 *                             in the txn at once; adopting a scratch file
 *                             renamed over it
 *   dtype, shape (tensors)    one value, replaced whole: text buffered per
 *   meta/<writable>           open handle, staged when a write's bytes end a
 *   meta/props/<key>          line and on flush; a bad value (`8\nabc` in a
 *                             shape) fails that write or the close with
 *                             EINVAL, and so does any write with O_APPEND.
 *                             Props are also created, renamed and unlinked.
 *   scratch files             created by anyone in a tensor directory or in
 *                             meta/ (when a meta file is writable: sed -i's
 *                             "sedXXXXXX"), and under a name starting with
 *                             '.' in meta/props/ (rsync's ".data.XXXXXX");
 *                             bytes staged as
 *                             scratch objects that reach the model only when
 *                             renamed over an entry
 *   inputs/<x>/, outputs/<y>/,  mv to a new name in the same directory: the
 *   values/<v>/ (ONNX main graph) value is renamed everywhere (namespace.c,
 *                             value_rename; gen.c shows the renamed graph)
 *   weights/<path>/ (ONNX)    mv within its directory: the initializer is
 *                             renamed (namespace.c, tensor_rename);
 *                             rm -r: its files' unlinks stage nothing (EBUSY
 *                             while a node reads the tensor), the rmdir
 *                             stages the initializer's deletion
 *   .modelfs/status, commit, abort    the control files
 *   everything else           read-only: EACCES for writing or creating,
 *                             EPERM for chmod/chown/utimes, unlink, rename,
 *                             mkdir, symlink, link.  Directories take
 *                             chmod/chown/utimes (kept in memory) so that
 *                             `rsync -a` can finish.
 *
 * What may be edited is the transaction's to say (mfs_txn_tensor_writable,
 * mfs_txn_meta_writable, mfs_txn_props_writable), which asks the model's
 * format; the daemon never asks which format a model is.
 *
 * A commit runs on a write to .modelfs/commit, on fsync(2) or fsyncdir of
 * anything, and on unmount (destroy).  "to TEMPLATE" written to
 * .modelfs/commit makes it a versioned commit (mfs_fs_commit_to): the
 * model then is another file, the tree is rebuilt from it and the root's
 * model file has the new name (a new inode; the old name is gone).  Attributes set by chmod, chown and
 * utimes live in memory for the life of the mount (the model has nowhere
 * to keep them); an edit sets the entry's mtime to the time of the edit.
 *
 * CACHING
 *
 * The kernel keeps entries, attributes and pages for MFS_CACHE_TIMEOUT, and
 * data files are opened with keep_cache (doc/design.md §4).  That stays
 * correct because every change is one of:
 *   - made through the kernel on the inode the kernel caches (a write to
 *     `data`, a truncate, a create, unlink or rename): the kernel updates
 *     its own caches;
 *   - made behind its back (a value staged from a buffer in another
 *     form than written, an abort, a rebuild that adds or removes paths):
 *     the inode's content version goes up (open then drops the cached
 *     pages: no keep_cache) and an invalidation is queued.  A commit does
 *     the same for every file edited since the last one, although they
 *     show the same bytes.
 * A scratch file renamed over `data` is the third kind: its inode takes
 * the entry's place, and descriptors of the replaced inode read a snapshot
 * of what it held (namespace.c), so the pages the kernel kept stay true.
 * Invalidations are sent by helper threads (inval.c), never by a handler:
 * libfuse forbids sending them from the execution path of a related
 * request, and a handler may hold the locks such a request needs.  Writes
 * to .modelfs/abort wait (up to a bound) for the queues to drain, so the
 * next command sees the aborted state.
 * The root model file is the fourth kind: every edit changes the spliced
 * view behind the kernel's back, yet it is page-cached in every mount, so
 * that loaders can map it MAP_SHARED.  gen.c ("The root model file") keeps
 * its pages true: an edit moves its content version and mtime, and while
 * a handle of it is open (fs->root_open), queues an invalidation of what
 * changed (the written range of a same-size write of a tensor in the model
 * file while the layout is kept, else the whole file) on a lane of its own,
 * which the handler waits for before it replies (mfs_inval_settle): once
 * the call returns, no cached page and no mapping shows the old bytes.  With
 * -s nobody waits, and read(2) and stat stay fresh because the kernel
 * drops the file's pages itself when it sees the mtime move (attribute
 * timeout 0, FUSE_CAP_AUTO_INVAL_DATA).  .modelfs/status changes too often
 * for any of that: it bypasses the page cache (direct_io), with a zero
 * attribute timeout.  Small writable text files (dtype, shape, meta, props)
 * have zero attribute timeouts too: their size can change when a value is
 * staged in another form than it was written.
 *
 * LOCKING
 *
 * Three locks, always taken in this order, plus the invalidation queues'
 * leaf locks (inval.c):
 *   slock   serialises what changes structure: create, unlink, rename,
 *           mknod, commit, abort, and the rebuild they trigger;
 *   lock    (rwlock) the generation and the inode map: handlers hold it
 *           shared while they use an entry, a rebuild exclusively while it
 *           swaps the tree;
 *   xlock   the xnodes (inode.h): attribute overrides, content versions,
 *           scratch files, the list of open handles.  Never held across a
 *           txn call.
 * A commit holds slock but not `lock` while the txn commits (it can take a
 * while); handlers then wait inside the txn, which serialises itself.  While
 * it runs (fs->committing), tensor bytes are read only through the txn, since
 * the generation's model may be the one being replaced.  A handler waits for
 * the root file's invalidations (mfs_inval_settle) with none of these held.
 */
#ifndef MODELFS_FS_FS_H
#define MODELFS_FS_FS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "inode.h"
#include "modelfs/model.h"
#include "modelfs/txn.h"
#include "names.h"
#include "tree.h"

/* The root directory's inode number (FUSE_ROOT_ID; ll.c checks they agree). */
#define MFS_ROOT_INO 1

#define NONE UINT32_MAX
#define NO_TENSOR UINT64_MAX

/* Reads, writes and st_blksize: big requests for big tensors. */
#define MFS_IO_SIZE (1u << 20)

/*
 * The kernel's readahead for a mount (ll_init, and the bdi's read_ahead_kb
 * when the daemon runs as root): 4 MiB, so that a sequential reader keeps
 * several requests in flight and every worker thread busy.  Measured on 2
 * cores, 1 MiB reads of an 86 MiB bf16 tensor, best of 6 (bench/pack.py's
 * first-read row): plain mount 3.26 GB/s with 1 MiB, 3.56 with 4 MiB; a
 * pack 1.29 / 1.87 GB/s (its chunks decompress on two threads at once),
 * the fp32 pack 1.49 / 2.13.  8 MiB gained nothing more.
 */
#define MFS_READAHEAD (4u << 20)

/*
 * st_blksize of directories: small.  glibc's opendir() sizes its getdents
 * buffer from st_blksize (32 KiB at least, 1 MiB at most), and for every
 * READDIRPLUS request the kernel allocates a buffer of the size getdents
 * asked for (kvmalloc: a 1 MiB one is vmalloc'd page by page and mapped).
 * A directory here has a handful of entries, and each is listed with two
 * requests (the second finds the end), so 1 MiB buffers cost more than the
 * listing itself: measured, `find` over a 1.9-million-entry mount (300,000
 * tensors) spent a third of its time allocating and freeing them.
 */
#define MFS_DIR_BLKSIZE 4096u

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
 * The default max_read when the model's bytes have no descriptor (a pack, a
 * remote model): nothing is spliced, so the pipe's bound does not apply,
 * and whole 1 MiB requests cover whole 256 KiB chunks of a pack instead of
 * cutting one in two at each end (both halves decompressed).
 */
#define MFS_MAX_READ_COPIED MFS_IO_SIZE

/*
 * Entries, attributes and pages that only the daemon can change may be
 * cached for a day: every change the daemon makes is either done through
 * the kernel (which updates its own caches) or followed by a precise
 * invalidation (CACHING above).
 */
#define MFS_CACHE_TIMEOUT 86400.0

/* The largest value a text file (dtype, shape, meta, prop) takes. */
#define MFS_TEXT_MAX (16u << 20)

/*
 * How long a write to .modelfs/abort waits for invalidations to be sent, and
 * a handler that changed the root model file for its invalidations
 * (mfs_inval_settle).
 */
#define MFS_INVAL_WAIT_MS 2000

/* One tree generation: the tree and what it was built from. */
struct mfs_gen {
	struct mfs_tree *tree;
	struct mfs_desc desc;           /* the txn's description, with the staged props */
	const mfs_model *model;         /* the model `desc` describes (kept open by the txn) */
	struct mfs_meta *props;         /* desc.props: ours (mfs_txn_props_free) */
	uint32_t meta_dir;              /* tree index of meta/, or NONE */
	uint32_t props_dir;             /* tree index of meta/props/, or NONE */
	uint32_t types_dir;             /* tree index of meta/types/, or NONE */
	uint32_t weights_dir;           /* tree index of weights/ (main graph, or a flat
	                                 * format's tensors), or NONE */
	uint64_t txn_gen;               /* mfs_txn_generation() it was built at */
	struct mfs_dot *dot;            /* meta/graph.dot of desc.graph, or NULL */
	struct mfs_rename *ren;         /* the staged value renames desc.graph shows */
	size_t n_ren;
	void **blocks;                  /* the renamed copy of the graph (gen.c) */
	size_t n_blocks, cap_blocks;
};

struct mfs_inval;
struct mfs_fh;
struct mfs_fs;

/*
 * Sends one invalidation to the kernel: the entry `name` in directory `ino`
 * when name_len is not 0, else the cached pages [off, off + len) of inode
 * `ino` (len 0: to the end) and its attributes.  Set by ll.c (FUSE's notify
 * calls).
 */
typedef void mfs_notify_fn(void *session, uint64_t ino, const char *name, size_t name_len,
                           uint64_t off, uint64_t len);

/* A queue of invalidations and the thread that sends them (inval.c). */
struct mfs_inval_lane {
	struct mfs_fs *fs;
	pthread_mutex_t lock;           /* a leaf lock */
	pthread_cond_t cond, idle;
	struct mfs_inval *head, *tail;
	uint64_t seq;                   /* the last invalidation queued (numbered from 1) */
	uint64_t sent;                  /* every one up to this has been sent */
	bool stop, started;
	pthread_t thread;
};

/*
 * The state of a mount, passed to fuse_session_new() as userdata.  main.c
 * fills the settings and calls mfs_fs_init(); handlers borrow it.
 */
struct mfs_fs {
	/* settings (main.c) */
	mfs_txn *txn;
	bool read_only;
	bool recovered;                 /* the txn staged edits from a journal at open */
	bool single_thread;             /* -s (or max_threads=1): never wait for the
	                                 * invalidation threads */
	uid_t uid;                      /* owner of every entry */
	gid_t gid;
	struct timespec mtime;          /* times of every entry not edited (the model's mtime) */
	unsigned max_read;              /* must equal the max_read mount option */
	const char *model_path;         /* the model, absolute (status says it) */
	void *se;                       /* the FUSE session, for notifications; set before
	                                 * the loop runs */
	mfs_notify_fn *notify;          /* set by ll.c when the loop starts */

	/* state */
	pthread_mutex_t slock;          /* structure: namespace edits, commit, abort, rebuild */
	pthread_rwlock_t lock;          /* the generation and the inode map */
	pthread_mutex_t xlock;          /* xnodes (inode.h) and the fields below */
	struct mfs_gen *gen;
	struct mfs_itab *itab;
	bool committing;                /* a commit runs: tensor bytes only through the txn */
	bool no_opendir;                /* the kernel does without OPENDIR (ll_init) */
	int unmount_rc;                 /* the commit at unmount (destroy): 0 or -errno */
	uint64_t ctl_dir, ctl_status, ctl_commit, ctl_abort, ctl_progress;  /* .modelfs/ */
	struct timespec last_edit;      /* mtime of the root model file while edits are staged */
	struct mfs_fh *fhs;             /* open handles (handle.c), under xlock */
	struct mfs_views *views;        /* sha256 and stats computed so far (view.c) */

	/* the root model file's pages (gen.c, "The root model file"), under xlock */
	unsigned root_open;             /* its handles (FH_ROOT) now open: mappings hold one */
	bool root_moved;                /* an edit since the last commit or abort may have
	                                 * moved bytes of the served view (not only a
	                                 * same-size write of a tensor in the model file) */
	uint64_t root_edits;            /* edits of the view so far (commit and abort compare) */
	bool auto_inval;                /* the kernel drops a file's pages when its mtime
	                                 * or size changes (FUSE_CAP_AUTO_INVAL_DATA, ll_init) */

	/* the invalidation threads (inval.c) */
	struct mfs_inval_lane qgen;     /* everything but the root file's pages */
	struct mfs_inval_lane qroot;    /* the root model file's pages: handlers wait for it */
};

/* ------------------------------------------------------------ gen.c */

/*
 * mfs_fs_init() - build the first tree from the transaction and number it.
 * The settings must be filled.  Returns 0 or a negative errno (-ENOMEM, or
 * the tree builder's error).
 */
int mfs_fs_init(struct mfs_fs *fs);

/* mfs_fs_fini() - free what mfs_fs_init() made (not the txn). */
void mfs_fs_fini(struct mfs_fs *fs);

/* The inode of the root model file (source file 0) in the current generation, or 0. */
uint64_t mfs_fs_root_ino(const struct mfs_fs *fs);

/*
 * mfs_fs_root_changed() - an edit (already staged) changed the root model
 * file's bytes: its mtime and content version move, and if the kernel may
 * hold its pages (a handle is open) they are invalidated, precisely where
 * the layout is kept, else from the start (gen.c, "The root model file").
 * `t` is the tensor whose data a write changed at [off, off + len) without
 * changing its size; NULL for any other edit.  Called with fs->lock held
 * shared or slock held, xlock not held; the handler then calls
 * mfs_inval_settle() before it replies.
 */
void mfs_fs_root_changed(struct mfs_fs *fs, const struct mfs_tensor *t, uint64_t off,
                         uint64_t len);

/* Names the current request's kernel operation takes care of itself. */
struct mfs_skip {
	uint64_t parent;
	const char *a, *b;
	size_t a_len, b_len;
};

/*
 * mfs_fs_sync_tree() - rebuild the tree if the txn's generation moved
 * (caller holds slock).  `move` is a rename the kernel has already applied;
 * `skip` the names of the current request, whose dentries the kernel
 * maintains itself.  A failure (ENOMEM) keeps the old tree, which stays
 * usable.
 */
int mfs_fs_sync_tree(struct mfs_fs *fs, const struct mfs_itab_move *move,
                     const struct mfs_skip *skip);

/* Commit or abort (slock not held); 0 or the txn's negative errno. */
int mfs_fs_commit(struct mfs_fs *fs, struct mfs_txn_result *res);
/*
 * mfs_fs_commit_to() - the same, versioned when `tmpl` is not NULL
 * (mfs_txn_commit_to: a new file beside the model, which the mount then
 * shows; the tree is rebuilt from it, the root's model file takes the new
 * name).  A version written is logged (mfs_fs_log_version).
 */
int mfs_fs_commit_to(struct mfs_fs *fs, const char *tmpl, struct mfs_txn_result *res);
/* mfs_fs_log_version() - to syslog and stderr: the version `res` wrote, if any. */
void mfs_fs_log_version(const struct mfs_txn_result *res);
int mfs_fs_abort(struct mfs_fs *fs);

/* ------------------------------------------------------------ entry.c */

/* What an inode is, for the handlers. */
enum mfs_role {
	R_DIR = 1,
	R_TEXT,         /* read-only text of the tree */
	R_SRC,          /* a source file other than the model (external data) */
	R_ROOT,         /* the root model file: the spliced view */
	R_DATA,         /* a tensor's data */
	R_DTYPE,        /* a tensor's dtype */
	R_SHAPE,        /* a tensor's shape */
	R_META,         /* meta/<name> */
	R_PROP,         /* meta/props/<key> */
	R_PTYPE,        /* meta/types/<key>: a prop's type (GGUF) */
	R_FIELD,        /* a graph field (model.h, MFS_FIELD_ID): an attribute, a name, ... */
	R_SCRATCH,
	R_CTL_DIR,
	R_STATUS,
	R_PROGRESS,     /* .modelfs/progress: how far the commit running is */
	R_COMMIT,
	R_ABORT,
	R_VIEW,         /* a tensor's sha256 or stats (view.c): computed, read-only */
	R_NPY,          /* npy/<path>.npy (view.c): header + the tensor's bytes, read-only */
	R_DOT,          /* meta/graph.dot (dot.c): made as it is read */
};

/*
 * An inode resolved under fs->lock (shared); the pointers are valid while
 * it is held.  For a scratch file renamed over an entry (an alias), `ino`
 * is the entry's and `asked` the scratch file's.
 */
struct mfs_ent {
	uint64_t ino;
	uint64_t asked;
	enum mfs_role role;
	uint32_t idx;                   /* tree entries */
	const struct mfs_tnode *e;      /* tree entries: the tree's, or &ebuf */
	struct mfs_tnode ebuf;          /* an entry the tree makes (tree.h: mfs_tree_node) */
	const struct mfs_tensor *t;     /* R_DATA, R_DTYPE, R_SHAPE, R_VIEW, R_NPY */
	int view;                       /* R_VIEW: enum mfs_view */
	uint64_t scratch;               /* R_SCRATCH */
	uint64_t field;                 /* R_FIELD: its id */
	bool writable;                  /* files: content may be written */
	bool creatable;                 /* directories: files may be created in it */
	bool renames;                   /* directories: shown writable for what its
	                                 * children allow: mv renames values (inputs/,
	                                 * outputs/, values/), rm -r deletes tensors
	                                 * (weights/ and the directories in it) */
	bool props;                     /* R_DIR: meta/props/ */
	char name[MFS_NAME_MAX + 1];    /* R_META, R_PROP, R_PTYPE: the component */
};

/*
 * mfs_ent_resolve() - what inode `ino` is now (fs->lock held shared).
 * Returns 0, -ENOENT (a number never handed out), or -ESTALE (its path
 * vanished, or a scratch file whose object is gone).
 */
int mfs_ent_resolve(struct mfs_fs *fs, uint64_t ino, struct mfs_ent *en);
/* The same for a directory of a namespace operation: -ENOTDIR otherwise. */
int mfs_ent_dir_resolve(struct mfs_fs *fs, uint64_t ino, struct mfs_ent *en);
/*
 * mfs_ent_child() - look `name` up in directory `dir` (fs->lock held
 * shared).  Returns 0 and the child's inode number, or -ENOENT, -ENOTDIR,
 * -ESTALE.
 */
int mfs_ent_child(struct mfs_fs *fs, const struct mfs_ent *dir, const char *name, size_t len,
                  uint64_t *out);

/*
 * mfs_ent_prop_key() - the key of the prop shown as component `comp`: an
 * existing key whose encoding is `comp`, else the decoded component (a new
 * key).  *out is malloc'd.  -EINVAL for a component no key encodes to.
 */
int mfs_ent_prop_key(struct mfs_fs *fs, const char *comp, size_t len, char **out);
/* Entries whose content is a text value (dtype, shape, meta, props, tree text). */
bool mfs_ent_is_text(enum mfs_role r);
/*
 * mfs_ent_text_get() - the bytes of a text entry as they are now (staged
 * or not): *out is malloc'd (NUL-terminated, which is not part of the
 * content).
 */
int mfs_ent_text_get(struct mfs_fs *fs, const struct mfs_ent *en, char **out, size_t *len);
/* mfs_ent_text_apply() - stage text value `text` for entry `en` (-EACCES for others). */
/*
 * mfs_ent_prop_write() - stage a props file's content `text` (escaped,
 * doc/design.md §3.5; decoded here) as the value of prop `key`.
 */
int mfs_ent_prop_write(struct mfs_fs *fs, const char *key, const char *text, size_t len);
int mfs_ent_text_apply(struct mfs_fs *fs, const struct mfs_ent *en, const char *text, size_t len);
/* mfs_ent_read() - bytes of a data file, scratch file or the root model file, as now. */
ssize_t mfs_ent_read(struct mfs_fs *fs, const struct mfs_ent *en, void *buf, size_t len,
                     uint64_t off);
/* st_size of `en` (fs->lock held). */
int mfs_ent_size(struct mfs_fs *fs, const struct mfs_ent *en, uint64_t *out);
/* The attributes of `en` (fs->lock held). */
int mfs_ent_stat(struct mfs_fs *fs, const struct mfs_ent *en, struct stat *st);
/*
 * mfs_ent_ctl_text() - the text of a generated control file: R_STATUS (the
 * transaction's status, then the daemon's pid and the model's path) or
 * R_PROGRESS ("commit <done> <total>" while a commit runs, else "idle").
 * *out is malloc'd.  R_PROGRESS never waits for a commit.
 */
int mfs_ent_ctl_text(struct mfs_fs *fs, enum mfs_role role, char **out, size_t *len);
/* How long the kernel may trust the attributes of `en` (CACHING). */
double mfs_ent_attr_timeout(const struct mfs_ent *en);
/*
 * mfs_ent_edited() - bookkeeping after the content of `en` changed: times,
 * the content version when `oob` (changed behind the kernel's cache),
 * invalidations, and the root model file (mfs_fs_root_changed) unless `en`
 * is a scratch file.
 */
void mfs_ent_edited(struct mfs_fs *fs, const struct mfs_ent *en, bool oob);
/*
 * mfs_ent_wrote() - the same after a write of `len` bytes at `off` to a data
 * or scratch file, through the kernel: the root model file changes only
 * where the write did if the layout is kept.
 */
void mfs_ent_wrote(struct mfs_fs *fs, const struct mfs_ent *en, uint64_t off, uint64_t len);

/* A scratch file handed to the kernel once more (lookup, create, readdirplus). */
void mfs_scratch_ref(struct mfs_fs *fs, uint64_t ino);
/* Drop `n` kernel references to `ino`; a scratch file nobody reaches goes. */
void mfs_scratch_forget(struct mfs_fs *fs, uint64_t ino, uint64_t n);
/* Forget a scratch file's name; its object goes now (or when the kernel lets go). */
void mfs_scratch_unlink(struct mfs_fs *fs, uint64_t ino, bool consumed);

/* ------------------------------------------------------------ handle.c */

/*
 * Per-open state (fi->fh), on the fs->fhs list while open (so that a rename
 * finds the descriptors of the data file it replaces, and so that the
 * daemon frees what the kernel never released when it exits).  Every open
 * of a data file has one, and every open of the root model file in a
 * read-write mount (FH_ROOT: fs->root_open counts them, since only while
 * one is open can the kernel's pages of the file be read or mapped);
 * read-only opens of other tree entries have none.
 */
enum mfs_fh_kind { FH_PLAIN = 1, FH_TEXT, FH_STATUS, FH_ROOT };

/*
 * The content a rename over `data` took away from the descriptors open on
 * it: a scratch object shared by those handles, dropped with the last.
 */
struct mfs_snap {
	uint64_t scratch;       /* scratch object id (txn.h) */
	unsigned refs;          /* handles reading it (fs->xlock) */
	struct stat st;         /* the file's attributes when it was replaced */
};

struct mfs_fh {
	int kind;
	pthread_mutex_t lock;
	char *buf;              /* FH_TEXT: the value being written; FH_STATUS: the text */
	size_t len, cap;
	bool dirty;             /* FH_TEXT: buf holds a value not staged yet */
	bool failed;            /* FH_TEXT: a write was refused; the close says so too */
	bool staged;            /* FH_TEXT: this handle staged a value */
	char *undo;             /* FH_TEXT: the entry's text before this handle staged
	                         * anything, staged again when a later value is refused */
	size_t undo_len;
	bool wrote;             /* something was staged: sync the journal on flush */

	/* on fs->fhs (under fs->xlock) */
	bool listed;
	uint64_t tid;           /* data files: the tensor's id (struct mfs_tensor.id),
	                         * else NO_TENSOR */
	uint64_t ino;           /* the inode opened */
	struct mfs_snap *snap;  /* set once, when a rename replaced the file */
	struct mfs_fh *next, *prev;
};

struct mfs_fh *mfs_fh_new(int kind);
void mfs_fh_free(struct mfs_fh *h);
/* Make the buffer `len` bytes long, zero-filling what grows (h->lock held). */
int mfs_fh_resize(struct mfs_fh *h, size_t len);
/* Put a handle on fs->fhs; `tid` is its tensor's id, NO_TENSOR for other files. */
void mfs_fh_list(struct mfs_fs *fs, struct mfs_fh *h, uint64_t tid, uint64_t ino);
/* Put a handle at the head of fs->fhs (xlock held). */
void mfs_fh_link_locked(struct mfs_fs *fs, struct mfs_fh *h, uint64_t tid, uint64_t ino);
/* Release a handle: off the list, and its snapshot goes with the last user. */
void mfs_fh_release(struct mfs_fs *fs, struct mfs_fh *h);
/* At exit: the handles the kernel never released. */
void mfs_fh_free_all(struct mfs_fs *fs);
/* The handle's snapshot, if a rename replaced its file. */
struct mfs_snap *mfs_fh_snap(const struct mfs_fh *h);
/*
 * A new handle on inode `ino`, a data file that a rename replaced, sharing
 * the snapshot of a descriptor still open on it; NULL when there is none.
 */
struct mfs_fh *mfs_fh_open_replaced(struct mfs_fs *fs, uint64_t ino);
/*
 * Stage a text handle's value (h->lock held, fs->lock held shared).  When
 * the value is refused after this handle staged another (`echo 8; echo abc`
 * into one descriptor), the entry gets back the text it had before, so
 * that one open never leaves part of what it wrote.
 */
int mfs_fh_apply(struct mfs_fs *fs, const struct mfs_ent *en, struct mfs_fh *h);
/*
 * mfs_fh_text_write() - write(2) of `size` bytes at `off` into text handle
 * `h` of entry `en` (h->lock held, fs->lock held shared); `append`: the
 * descriptor has O_APPEND.  A write whose bytes end a line stages the
 * buffer as the value now.  Returns `size`, or -EINVAL (a bad value, or an
 * append), -EFBIG (past MFS_TEXT_MAX or the value limit), -ENOMEM, or the
 * txn's error; a refused write leaves the entry and the buffer as the file
 * was before it (see mfs_fh_apply).
 */
ssize_t mfs_fh_text_write(struct mfs_fs *fs, const struct mfs_ent *en, struct mfs_fh *h,
                          const char *buf, size_t size, uint64_t off, bool append);
/*
 * A text handle's value staged before flush, release or fsync (fs->lock
 * and h->lock taken here).  0 for handles of other kinds.
 */
int mfs_fh_stage_text(struct mfs_fs *fs, uint64_t ino, struct mfs_fh *h);
/* A snapshot nobody reads any more: its scratch object and itself go. */
void mfs_snap_free(struct mfs_fs *fs, struct mfs_snap *sn);

/* ------------------------------------------------------------ namespace.c */

/*
 * mfs_ns_make_file() - make file `name` in directory `parent` (slock held):
 * a new prop in meta/props/, else a scratch file.  On success *out is the
 * new entry.  -EACCES where nothing may be created, -EEXIST, -ENAMETOOLONG.
 */
int mfs_ns_make_file(struct mfs_fs *fs, uint64_t parent, const char *name, mode_t mode,
                     struct mfs_ent *out);
/* mfs_ns_unlink() - unlink(2): a prop or a scratch file; EPERM for the model's entries
 * (the own files of a tensor directory that rmdir can delete: 0, nothing staged). */
int mfs_ns_unlink(struct mfs_fs *fs, uint64_t parent, const char *name);
/* mfs_ns_rmdir() - rmdir(2): a tensor's directory stages the tensor's deletion. */
int mfs_ns_rmdir(struct mfs_fs *fs, uint64_t parent, const char *name);
/* mfs_ns_mkdir() - mkdir(2) in weights/: stages a new tensor (slock held); *out the entry. */
int mfs_ns_mkdir(struct mfs_fs *fs, uint64_t parent, const char *name, struct mfs_ent *out);
/* mfs_ent_in_weights() - is tree entry `idx` weights/ or a directory in it? */
bool mfs_ent_in_weights(const struct mfs_fs *fs, uint32_t idx);
/* mfs_ent_dir_tensor() - the tensor whose directory is tree entry `dir`, or NULL. */
const struct mfs_tensor *mfs_ent_dir_tensor(const struct mfs_fs *fs, uint32_t dir);
/* mfs_ns_rename() - rename(2) within what the model allows (namespace.c). */
int mfs_ns_rename(struct mfs_fs *fs, uint64_t parent, const char *name, uint64_t newparent,
                  const char *newname, unsigned flags);

/* ------------------------------------------------------------ inval.c */

/* Set up and tear down the queues (mfs_fs_init, mfs_fs_fini). */
void mfs_inval_init(struct mfs_fs *fs);
void mfs_inval_fini(struct mfs_fs *fs);
/* Queue an invalidation of inode `ino`, or of entry `name` in directory `parent`. */
void mfs_inval_inode(struct mfs_fs *fs, uint64_t ino);
void mfs_inval_entry(struct mfs_fs *fs, uint64_t parent, const char *name, size_t len);
/*
 * Queue an invalidation of the root model file's (inode `ino`) cached pages
 * [off, off + len), len 0 meaning to the end, on the lane handlers wait for
 * (mfs_inval_settle).  Only gen.c calls it (mfs_fs_root_changed).
 */
void mfs_inval_root(struct mfs_fs *fs, uint64_t ino, uint64_t off, uint64_t len);
/* Start the sending threads (fs->notify and fs->se set); false if they could not. */
bool mfs_inval_start(struct mfs_fs *fs);
/* Wait until everything queued was sent, for at most `ms` (no lock held). */
void mfs_inval_wait(struct mfs_fs *fs, unsigned ms);
/*
 * mfs_inval_settle() - before a handler that may have changed the root model
 * file replies: wait until the root file's invalidations queued so far were
 * sent (at most MFS_INVAL_WAIT_MS; no lock held), so that no page of the
 * kernel's shows what the edit replaced once the call returns.  Returns at
 * once when nothing is queued, and on the single-threaded loop.
 */
void mfs_inval_settle(struct mfs_fs *fs);
/* Stop the threads and drop what is still queued. */
void mfs_inval_stop(struct mfs_fs *fs);

/* The wall clock, for the times of edited entries. */
struct timespec mfs_now(void);

/* ------------------------------------------------------------ dot.c */

struct mfs_dot;

/*
 * mfs_dot_new() - the DOT text of graph `g` (borrowed; must outlive it),
 * made when read: nothing is computed here.  -ENOMEM.
 */
int mfs_dot_new(struct mfs_dot **out, const struct mfs_graph *g);
/* mfs_dot_destroy() - accepts NULL. */
void mfs_dot_destroy(struct mfs_dot *d);
/*
 * mfs_dot_size() / mfs_dot_read() - its length (the first call indexes the
 * graph and counts the text once), and up to `len` bytes at `off`.
 * Thread-safe.  -ENOMEM.
 */
int mfs_dot_size(struct mfs_dot *d, uint64_t *out);
ssize_t mfs_dot_read(struct mfs_dot *d, void *buf, size_t len, uint64_t off);

/* ------------------------------------------------------------ view.c */

/* MFS_VIEW_MODEL: meta/sha256, the SHA-256 of the model file mounted now
 * (mfs_txn_sha256: known after a versioned commit, else hashed on first
 * read and kept until the next commit); its entry has no tensor. */
enum mfs_view { MFS_VIEW_SHA256 = 1, MFS_VIEW_STATS, MFS_VIEW_MODEL };

struct mfs_views;

/* mfs_views_new() - an empty cache of computed views; -ENOMEM. */
int mfs_views_new(struct mfs_views **out);
/* mfs_views_destroy() - free it; accepts NULL. */
void mfs_views_destroy(struct mfs_views *v);
/* mfs_views_forget() - drop every kept view (after a commit); accepts NULL. */
void mfs_views_forget(struct mfs_views *v);
/* mfs_view_size() - the size of view `which` of `t`, without computing it. */
int mfs_view_size(struct mfs_fs *fs, const struct mfs_tensor *t, enum mfs_view which,
                  uint64_t *out);
/*
 * mfs_view_text() - the text of view `which` of tensor `t` as the
 * transaction shows it now: kept from an earlier read unless `t` is staged,
 * else computed by streaming its bytes.  *out is malloc'd (NUL-terminated).
 * Returns 0, -ENOMEM, -EUCLEAN (the bytes ended early), or a txn error.
 * Called with fs->lock held shared.
 */
int mfs_view_text(struct mfs_fs *fs, const struct mfs_tensor *t, enum mfs_view which, char **out,
                  size_t *len);
/*
 * mfs_npy_size() / mfs_npy_read() - the npy view of tensor `t` as the txn
 * shows it (staged dtype, shape and bytes): its size, and up to `len` bytes
 * at `off` (the header made, the rest read from the tensor, never copied
 * whole).  -EOPNOTSUPP when numpy has no such dtype (any more).
 */
int mfs_npy_size(struct mfs_fs *fs, const struct mfs_tensor *t, uint64_t *out);
ssize_t mfs_npy_read(struct mfs_fs *fs, const struct mfs_tensor *t, void *buf, size_t len,
                     uint64_t off);

#endif /* MODELFS_FS_FS_H */

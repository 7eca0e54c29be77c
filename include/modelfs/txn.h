/*
 * modelfs/txn.h — editing a model: staged changes and atomic commits.
 *
 * A transaction object (mfs_txn) owns an open model and the edits staged
 * against it.  Edits are visible at once through the mfs_txn_* read calls
 * (read-your-writes) and never touch the model file: staged tensor bytes go
 * to the staging store (codec/txn/stage.c: zstd chunks in a journal beside the
 * model), small values to the same journal.  mfs_txn_commit() validates all
 * staged edits and applies them as one transaction (codec/txn/commit.c):
 * a splice rewrite (untouched byte ranges copied, changed messages
 * re-encoded, length prefixes recomputed up to the root) replaced by rename,
 * or, for same-size data edits of a large model, an in-place patch driven by
 * a redo log.  After a commit the transaction holds the newly opened model.
 *
 * Identity of things across commits: a tensor is named by its `id`
 * (struct mfs_tensor.id, its index in mfs_desc.tensors), which is stable as
 * long as the model's structure is unchanged.  Edits that change it are
 * graph fields: a deletion (MFS_FIELD_TENSOR_DELETE) moves the later ids
 * down at its commit, and a tensor added (mfs_txn_tensor_add) gets the id
 * after the model's and the tensors added before it (n_tensors + k), valid
 * until the commit, after which the reopened model numbers it as its
 * reader does.  Meta values are named by their meta/ file name, props by
 * key.
 *
 * Lifetimes: descriptions returned by mfs_txn_desc() stay valid after
 * commits until mfs_txn_release_old() or mfs_txn_close() (old models are
 * kept, with their open descriptors, until the caller says it is done).
 *
 * Thread safety: every function may be called from any thread; a commit
 * excludes all other calls while it runs.
 *
 * Errors: 0 / byte count on success, negative errno on failure.  -EINVAL a
 * bad value (dtype name, shape text), -EACCES something that is not
 * writable, -ENOENT no such tensor/prop/scratch, -EBUSY another process
 * holds the model's journal, plus whatever the I/O returned.
 */
#ifndef MODELFS_TXN_H
#define MODELFS_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "modelfs/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mfs_txn mfs_txn;

/*
 * How a commit writes the model.  AUTO and REWRITE are atomic for every
 * reader of the model file, modelfs or not: the new version appears by
 * rename.  INPLACE is not: until the commit (or recovery after a crash)
 * ends, a program reading the file itself may see it half patched.
 */
enum mfs_commit_mode {
	MFS_COMMIT_AUTO = 0,    /* edits that keep the layout: a reflink clone of the
	                         * model, patched and renamed over it (where the file
	                         * system can clone: btrfs, XFS); else a rewrite */
	MFS_COMMIT_REWRITE = 1, /* always a temp file + rename */
	MFS_COMMIT_INPLACE = 2  /* edits that keep the layout: patched in place through a
	                         * redo log, unless another mount has the model open
	                         * (then, and for other edits, a rewrite) */
};

struct mfs_txn_opts {
	enum mfs_commit_mode mode;
	bool read_only;         /* no journal, every edit fails with -EROFS, and the
	                         * model is never written (not even by recovery) */
	bool force_types;       /* commit dtype edits that contradict the types the
	                         * model's graph declares (refused otherwise, -EINVAL) */
	/*
	 * Where the open counts its progress when it finishes an interrupted
	 * in-place commit: bytes applied to the model (*recover_done) of the
	 * redo log's payload (*recover_total), atomic stores that another
	 * thread may read while mfs_txn_open() runs.  NULL for no count.
	 */
	uint64_t *recover_done, *recover_total;
	/*
	 * A version template (modelfs(1), "Versioned commits"): every commit
	 * with edits, also the one at unmount, writes a new file beside the
	 * model under the name it gives and switches the transaction to it,
	 * never overwriting a file.  NULL or "": commits write the model that
	 * is open.  Copied at open; checked there (-EINVAL).
	 */
	const char *commit_to;
};

/* What happened at open: recovery of a journal or of an interrupted commit. */
struct mfs_txn_recovery {
	bool journal_found;     /* staged edits of an earlier session are offered again */
	uint64_t n_recovered;   /* how many staged objects came back */
	bool redo_replayed;     /* an interrupted in-place commit was finished */
	char msg[512];          /* one line for `status`, "" when nothing happened */
};

/*
 * mfs_txn_open() - open the model at `path` for editing.
 * Runs recovery first: finishes an interrupted in-place commit (redo log),
 * removes stale temp files of dead commits, replays a journal left by a
 * dead daemon (its edits are staged again, never applied silently) or
 * removes it when its commit had installed them, and reports a note that a
 * commit at an earlier unmount failed.  A read-only transaction writes
 * nothing: it refuses (-EBUSY) a model with an interrupted in-place commit
 * (run it read-write, or `modelfs recover`, first).  While open, the
 * transaction holds a shared flock on the model file (-EBUSY if another
 * process is patching it in place).
 * @out: yours to free with mfs_txn_close().
 */
int mfs_txn_open(mfs_txn **out, const char *path, const struct mfs_txn_opts *opts,
                 struct mfs_txn_recovery *rec, char *err, size_t errlen);

/*
 * mfs_txn_close() - release everything.  Staged edits stay in the journal
 * (they are offered again at the next open); accepts NULL.
 */
void mfs_txn_close(mfs_txn *t);

/* The current model and its description (change after a commit). */
const mfs_model *mfs_txn_model(mfs_txn *t);
const struct mfs_desc *mfs_txn_desc(mfs_txn *t);

/*
 * mfs_txn_release_old() - close the models that commits replaced, except
 * `keep` (may be NULL), releasing their descriptors and descriptions.  Call
 * it only when nothing refers to those descriptions any more (the FUSE layer
 * does, under its tree lock, right after it switched to a new tree).
 */
void mfs_txn_release_old(mfs_txn *t, const mfs_model *keep);

/*
 * Generation: increases on every commit and abort and on every staged
 * change of structure visible in the tree (a prop created or removed).
 * The FUSE layer compares it to rebuild its tree.
 */
uint64_t mfs_txn_generation(mfs_txn *t);

/* true when anything is staged. */
bool mfs_txn_dirty(mfs_txn *t);

/*
 * mfs_txn_sync() - make every staged edit durable (fdatasync of the
 * journal).  Edits reach the journal file before the call that makes them
 * returns, so they survive the daemon being killed; this also makes them
 * survive a power cut (call it on FUSE flush/release).  Returns 0, or -EIO
 * once a journal fsync has failed (commit or abort to clear it).
 */
int mfs_txn_sync(mfs_txn *t);

/* ----------------------------------------------------------- tensors */

/*
 * mfs_txn_tensor_staged() - true when tensor `x` has anything staged (data,
 * dtype or shape), also edits recovered from a journal; for the FUSE layer
 * to know which cached pages an abort or a commit makes stale.
 */
bool mfs_txn_tensor_staged(mfs_txn *t, const struct mfs_tensor *x);

/*
 * mfs_txn_tensor_writable() - may tensor `x`'s data, dtype and shape be
 * edited here (not a read-only transaction, and the format marked the tensor
 * MFS_TENSOR_EDITABLE)?  Writes to a tensor for which this is false fail
 * with -EROFS or -EACCES.
 */
bool mfs_txn_tensor_writable(mfs_txn *t, const struct mfs_tensor *x);

/* The effective (staged or committed) view of tensor `x` of the current desc. */
int mfs_txn_tensor_size(uint64_t *out, mfs_txn *t, const struct mfs_tensor *x);
ssize_t mfs_txn_tensor_read(mfs_txn *t, const struct mfs_tensor *x, void *buf, size_t len,
                            uint64_t off);
/*
 * Staged writes: any offset (a write past the end extends with zeros in
 * between), truncate to any size.  The size must match dtype × shape only
 * at commit.  -EACCES for tensors whose data cannot be edited (external
 * data, string tensors, tensors of a sharded safetensors checkpoint) — the
 * man page lists them; -EROFS on a read-only transaction.  Tensors held in
 * ONNX typed fields (int64_data, ...) can be edited: a commit that changes
 * their bytes or dtype writes them as raw_data.
 */
ssize_t mfs_txn_tensor_write(mfs_txn *t, const struct mfs_tensor *x, const void *buf, size_t len,
                             uint64_t off);
int mfs_txn_tensor_truncate(mfs_txn *t, const struct mfs_tensor *x, uint64_t size);

/*
 * Effective dtype and shape.  `dims` receives up to `cap` dims; *rank the
 * real rank.  Set: `text` is the file content (a trailing '\n' is ignored);
 * dtype must be a known name with a fixed width, shape non-negative decimal
 * dims joined by ',' (empty = scalar); -EINVAL otherwise.
 */
int mfs_txn_tensor_type(mfs_txn *t, const struct mfs_tensor *x, int32_t *dtype, int64_t *dims,
                        size_t cap, size_t *rank);
int mfs_txn_set_dtype(mfs_txn *t, const struct mfs_tensor *x, const char *text, size_t len);
int mfs_txn_set_shape(mfs_txn *t, const struct mfs_tensor *x, const char *text, size_t len);

/* ----------------------------------------------------------- meta and props */

/*
 * Writable meta/ names: the format's (ONNX: producer_name producer_version
 * domain doc_string model_version graph_name; safetensors: none).  Get: the
 * file's text is copied into `buf` (up to `cap`), the full length returned:
 * the value escaped as text values are (mfs_text_escape, doc/design.md
 * §3.5) and the trailing '\n', as the meta/ file shows it.  Set: `text` is
 * the file content: one trailing '\n' is dropped and the rest decoded
 * (mfs_text_unescape), so what get returns, set again, stages the same
 * bytes; the value must be valid UTF-8 without NUL, at most 64 KiB
 * (-EFBIG); model_version a decimal integer or empty (the field removed);
 * a value equal to the model's unstages the edit.  -EACCES for other names.
 */
bool mfs_txn_meta_writable(mfs_txn *t, const char *name);
ssize_t mfs_txn_meta_get(mfs_txn *t, const char *name, char *buf, size_t cap);
int mfs_txn_meta_set(mfs_txn *t, const char *name, const char *text, size_t len);

/*
 * Graph fields (model.h, MFS_FIELD_ID): a node attribute, a node's name, a
 * graph input's or output's shape or dtype, where the format allows it.
 * field_writable: may `id` be written (false for a read-only mount).
 * field_get: 1 and a malloc'd copy of the staged text (as the file shows
 * it, with its '\n') in *out, or 0 when nothing is staged (the tree's text
 * is the value).  field_set: `text` is the file content (one trailing '\n'
 * dropped), `orig` what the file shows unstaged; the format checks the
 * syntax (-EINVAL, with the reason in status), a value equal to `orig`
 * unstages the edit.
 */
bool mfs_txn_field_writable(mfs_txn *t, uint64_t id);
int mfs_txn_field_get(mfs_txn *t, uint64_t id, char **out, size_t *len);
int mfs_txn_field_set(mfs_txn *t, uint64_t id, const char *orig, size_t orig_len,
                      const char *text, size_t len);
/* field_check: would field_set accept `text` for `id`?  Stages nothing;
 * a refusal's reason goes to status as for field_set.  0 or -errno. */
int mfs_txn_field_check(mfs_txn *t, uint64_t id, const char *text, size_t len);

/*
 * Tensors added (`mkdir weights/<path>`; the format allows the field
 * MFS_FIELD_TENSOR_ADD, text the escaped name).  mfs_txn_tensor_add()
 * stages tensor `name` (bytes) under the next id (*id), with dtype float32,
 * a scalar shape and no data: its dtype, shape and data are then edited
 * through the mfs_txn_tensor_* calls as any tensor's, and a commit refuses
 * (-EINVAL, status) until data = dtype × shape.  -EPERM: the format cannot
 * add tensors to this model; -EEXIST: a tensor (or a staged rename, or an
 * added tensor) has the name; -EINVAL: a name the format refuses.
 * mfs_txn_added(): the tensors added, ascending ids; *out (an array of
 * borrowed tensors, valid until mfs_txn_close()) is yours to free().
 * mfs_txn_tensor_unadd() unstages an added tensor and what was staged for
 * it (-ENOENT for any other); mfs_txn_tensor_is_added() says which it is.
 */
int mfs_txn_tensor_add(mfs_txn *t, const char *name, uint64_t *id);
int mfs_txn_added(const struct mfs_tensor ***out, size_t *n, mfs_txn *t);
int mfs_txn_tensor_unadd(mfs_txn *t, const struct mfs_tensor *x);
bool mfs_txn_tensor_is_added(mfs_txn *t, const struct mfs_tensor *x);

/*
 * Staged value renames (model.h, mfs_field_is_name): the model's name
 * `from` and the staged `to` (bytes, decoded), field `id`; and staged
 * tensor deletions (MFS_FIELD_TENSOR_DELETE): `from` the tensor's name,
 * `to` NULL.  The tree shows the renamed graph without those tensors.  *out is yours to free with mfs_txn_renames_free().
 * A new name of a rename must be no name of the model's main graph and no
 * other rename's (mfs_txn_field_set fails with -EEXIST).
 */
struct mfs_rename {
	uint64_t id;
	char *from;
	char *to;
};
int mfs_txn_renames(struct mfs_rename **out, size_t *n, mfs_txn *t);
void mfs_txn_renames_free(struct mfs_rename *r, size_t n);

/*
 * Props (ONNX metadata_props, safetensors __metadata__): the effective list,
 * in order (existing keys in file order, new ones appended).  *out is an
 * array of `struct mfs_meta` (name = key, value without '\n') that is yours
 * to free with mfs_txn_props_free().  Values are the bytes of the model,
 * not escaped: a props file shows them escaped (doc/design.md §3.5), and the
 * daemon decodes what is written to one before it calls prop_set.
 * prop_set: one trailing '\n' of `value` is dropped; key and value valid
 * UTF-8 without NUL
 * (-EINVAL), key + value at most 64 KiB (-EFBIG).  prop_rename over an
 * existing key replaces it (the target keeps its place).  With duplicate
 * keys in a model, the first one is the one edited.
 */
int mfs_txn_props(struct mfs_meta **out, size_t *n, mfs_txn *t);
void mfs_txn_props_free(struct mfs_meta *props, size_t n);
/*
 * mfs_txn_prop_get() - the effective value of prop `key` (without '\n'):
 * *out is yours to free (NUL-terminated beyond *len).  O(1) expected, however
 * many props there are.  -ENOENT when no prop has that key, -ENOMEM.
 */
int mfs_txn_prop_get(char **out, size_t *len, mfs_txn *t, const char *key);
/* May props be created, changed, renamed and removed (-EACCES otherwise)? */
bool mfs_txn_props_writable(mfs_txn *t);
int mfs_txn_prop_set(mfs_txn *t, const char *key, const char *value, size_t len);
int mfs_txn_prop_unlink(mfs_txn *t, const char *key);
int mfs_txn_prop_rename(mfs_txn *t, const char *from, const char *to);
/*
 * Prop types (GGUF's meta/types/<key>), where the format lets them be
 * written: prop_type_get gives the type staged for `key` (malloc'd text,
 * without '\n') and 0, or 1 when none is (the key keeps its own type, which
 * the description's meta shows), -ENOENT when no prop has that key.
 * prop_type_set stages `text` (one trailing '\n' dropped) as the key's
 * type: the format checks it and that the key's value fits it (-EINVAL);
 * the key's own type again unstages it.  A value staged later must fit the
 * staged type; renames carry it; a commit writes the value in it.
 */
bool mfs_txn_prop_types_writable(mfs_txn *t);
int mfs_txn_prop_type_get(char **out, mfs_txn *t, const char *key);
int mfs_txn_prop_type_set(mfs_txn *t, const char *key, const char *text, size_t len);

/* ----------------------------------------------------------- scratch files */

/*
 * Scratch objects back files that tools create beside entries (rsync's
 * ".data.XXXXXX", an editor's swap file).  Their bytes are staged like
 * tensor bytes (bounded memory) but never reach the model unless adopted:
 * mfs_txn_scratch_adopt() makes a scratch object the new content of tensor
 * `x`'s data (what a rename over `data` means) and consumes it.  Dropped on
 * unlink, abort, and close.
 */
int mfs_txn_scratch_new(uint64_t *id, mfs_txn *t);
int mfs_txn_scratch_size(uint64_t *out, mfs_txn *t, uint64_t id);
ssize_t mfs_txn_scratch_read(mfs_txn *t, uint64_t id, void *buf, size_t len, uint64_t off);
ssize_t mfs_txn_scratch_write(mfs_txn *t, uint64_t id, const void *buf, size_t len, uint64_t off);
int mfs_txn_scratch_truncate(mfs_txn *t, uint64_t id, uint64_t size);
int mfs_txn_scratch_adopt(mfs_txn *t, uint64_t id, const struct mfs_tensor *x);
int mfs_txn_scratch_drop(mfs_txn *t, uint64_t id);

/*
 * mfs_txn_tensor_snapshot() - a new scratch object holding a copy of tensor
 * `x`'s bytes as they read now (staged or not), in one critical section:
 * what descriptors of a `data` file that a rename replaces keep reading,
 * as the old inode of a replaced file keeps its content on a disk file
 * system.  Costs a copy of the tensor into the journal.  Dropped like any
 * scratch object.
 */
int mfs_txn_tensor_snapshot(uint64_t *id, mfs_txn *t, const struct mfs_tensor *x);

/* ----------------------------------------------------------- root files */

/*
 * The model file as it would be committed now: the original bytes when
 * nothing is staged, the spliced result otherwise (so a loader reading the
 * root model file sees the edits).  Other source files (external data) are
 * served as they are.
 */
int mfs_txn_file_size(uint64_t *out, mfs_txn *t, size_t idx);
ssize_t mfs_txn_file_read(mfs_txn *t, size_t idx, void *buf, size_t len, uint64_t off);

/* ----------------------------------------------------------- transaction */

struct mfs_txn_result {
	int rc;                 /* 0 or the negative errno the commit failed with */
	const char *path;       /* "none" (nothing staged), "rewrite", "clone", "inplace",
	                         * "version" */
	char version[256];      /* "version": the new file's name in the model's
	                         * directory; "" otherwise */
	char sha256[65];        /* "version": its SHA-256, hex; "" otherwise */
	uint64_t bytes_written; /* to the model's file system */
	uint64_t bytes_edited;  /* staged bytes that changed */
	char msg[512];          /* one line: what was done, or why it failed */
};

/*
 * mfs_txn_commit() - validate and apply everything staged, atomically.
 * On failure the model is untouched, the edits stay staged, `res->msg` says
 * why (also kept for mfs_txn_status), and the errno is returned: -EINVAL
 * validation (size ≠ dtype × shape, a dtype the graph declares otherwise
 * without force_types, ...), -EFBIG result over the 2 GiB
 * protobuf limit, -ESTALE the model changed on disk since it was opened,
 * -ENOSPC, -EIO.  Nothing staged: succeeds with path "none" and writes nothing.
 */
int mfs_txn_commit(mfs_txn *t, struct mfs_txn_result *res);

/*
 * mfs_txn_commit_to() - a versioned commit: validate everything staged and
 * write the committed model as a NEW file beside the one open, named by
 * template `tmpl` (modelfs(1): {n} {sha256} {sha256:K} {stem} {ext}), with
 * the rewrite protocol (temp file hashed while written, fsync, rename
 * without replacing, directory fsync).  The file open is left
 * byte-identical; on success the transaction switches to the new file
 * (reads, edits, status and later commits are its), its journal moves with
 * it (scratch objects kept) and the old file's journal is removed.
 * res->version and res->sha256 name it.  Fails as mfs_txn_commit(), and with
 * -EINVAL for a bad template or a name it refuses (hidden, empty, '/'),
 * -EEXIST when the name exists (nothing written, or the temp removed),
 * -EROFS on a read-only transaction.  Nothing staged: path "none", no file.
 * mfs_txn_commit() itself is this when opts.commit_to was set.
 */
int mfs_txn_commit_to(mfs_txn *t, const char *tmpl, struct mfs_txn_result *res);

/*
 * mfs_txn_path() - the path of the model file open now (after a versioned
 * commit, the new version's) into `buf` (snprintf semantics).
 */
size_t mfs_txn_path(mfs_txn *t, char *buf, size_t len);

/*
 * mfs_txn_sha256() - the SHA-256 of the model file open now, as it is on
 * disk (not what staged edits would make), 64 hex digits and a NUL.  Known
 * at once after a versioned commit (hashed while written); otherwise
 * computed on the first call, streamed from the file, and kept until the
 * next commit.  Returns 0 or -errno (-EIO, -ENOMEM).  Takes as long as
 * reading the file the first time: call it from a reader's thread.
 */
int mfs_txn_sha256(mfs_txn *t, char out[65]);

/*
 * mfs_txn_statvfs() - the file system the model, its journal and its
 * commits live on (free space for staged edits).  Returns 0 or -errno.
 */
int mfs_txn_statvfs(struct statvfs *out, mfs_txn *t);

/*
 * mfs_txn_note_failure() - record that a commit failed with nobody to tell
 * (the one at unmount): a one-line note beside the model
 * (".<model>.modelfs-failed", "<unix time> <msg>") that the next open
 * reports, and that the next successful commit or abort removes.  Returns
 * 0 or -errno.
 */
int mfs_txn_note_failure(mfs_txn *t, const char *msg);

/*
 * mfs_txn_failure_note() - read that note for the model at `model_path`
 * without opening the model: its message into msg (snprintf semantics) and
 * its unix time into *when (may be NULL).  Returns 0, -ENOENT when there is
 * no note, or -errno.
 */
int mfs_txn_failure_note(const char *model_path, char *msg, size_t len, int64_t *when);

/*
 * mfs_txn_progress() - how far the commit running now is: bytes written of
 * the total it will write (0 of 0 before it knows), and whether one runs.
 * Lock-free: callable while the commit holds everything else.
 */
void mfs_txn_progress(mfs_txn *t, uint64_t *done, uint64_t *total, bool *committing);

/* mfs_txn_abort() - drop every staged edit and scratch object. */
int mfs_txn_abort(mfs_txn *t);

/*
 * mfs_txn_status() - the text of .modelfs/status: staged changes one per
 * line, type conflicts of staged dtypes (the format's check: "type
 * conflict: ..." refused at commit, "type warning: ..." not), the last
 * commit's result and message, journal state, recovery notes.  snprintf
 * semantics (returns the full length).
 */
size_t mfs_txn_status(mfs_txn *t, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* MODELFS_TXN_H */

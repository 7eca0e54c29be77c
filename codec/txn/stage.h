/*
 * codec/txn/stage.h — the staging store: edits to a model, kept beside it until
 * they are committed.
 *
 * A stage holds the staged bytes of many objects (a tensor's `data` file, a
 * small text value), each named by a caller-chosen 64-bit key.  An object
 * has a *base* (its bytes in the model as mounted, read through a callback)
 * and a staged size and content.  Staged bytes live as 256 KiB chunks,
 * zstd-compressed and appended to a journal file beside the model
 * (".<model>.modelfs-journal"), with an in-memory index and a small bounded
 * cache of decompressed chunks, so memory stays bounded however large the
 * edit.  A journal left behind by a dead process is replayed when the stage
 * is opened again.  The on-disk format is documented atop stage.c.
 *
 * Keys must mean the same object on every mount of the same model, or a
 * recovered journal means nothing.  Every function is thread-safe: one mutex
 * guards the whole stage (base callbacks are called with it held, so they
 * must not call back into the stage).
 *
 * Return convention: 0 (or a byte count) on success, negative errno on
 * failure.  Errors common to all calls: -ENOENT for a key that was never
 * bound or staged, -EIO / -ENOSPC / ... from the journal file, -EUCLEAN when
 * a journal chunk fails its checksum or does not decompress to its recorded
 * size, -ENOMEM.
 */
#ifndef MODELFS_CODEC_STAGE_H
#define MODELFS_CODEC_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/core.h"

#define MFS_STAGE_CHUNK         (256u << 10)    /* bytes per chunk (doc/performance.md §1) */
#define MFS_STAGE_MAX_OBJECT    (1ull << 40)    /* largest staged object, 1 TiB */
#define MFS_STAGE_MAX_VALUE     MFS_STAGE_CHUNK /* largest mfs_stage_set_value() (fits cbuf) */

struct mfs_stage;

/*
 * Reads `len` bytes at `off` of an object's base into `buf`; returns the
 * number of bytes read (short only at the end of the base) or -errno.  The
 * stage only asks for ranges inside [0, base_size).
 */
typedef ssize_t (*mfs_stage_read_fn)(void *arg, void *buf, size_t len, uint64_t off);

/* Options for mfs_stage_open(); zero-initialise for the defaults. */
struct mfs_stage_opts {
	int level;              /* zstd level, 1..3; 0 = 1 */
	size_t cache_bytes;     /* decompressed-chunk cache; 0 = 8 MiB, at least 2 chunks */
	uint64_t compact_min;   /* compact only when dead bytes exceed this; 0 = 64 MiB */
	bool keep_stale;        /* a journal of another model version: fail with -ESTALE
	                         * instead of setting it aside */
	uint64_t committed_journal;     /* the journal id of a redo log that recovery
	                                 * has just completed: that journal's edits are
	                                 * in the model (0: none) */
};

/* What mfs_stage_open() found.  `msg` is one line, "" when there was no journal. */
struct mfs_stage_recovery {
	bool found;             /* a journal existed */
	bool stale;             /* it belonged to another version of the model; set aside */
	bool obsolete;          /* its edits had been committed (a commit was cut short
	                         * between installing the model and resetting the
	                         * journal); removed */
	uint64_t journal_id;    /* its id (sidefile.h); 0 for an old journal */
	bool torn;              /* replay stopped at a torn or corrupt record */
	uint64_t n_objects;     /* staged objects recovered */
	uint64_t n_records;     /* records replayed */
	uint64_t torn_off;      /* offset of the first bad record */
	uint64_t dropped_bytes; /* bytes from there to the end, cut off */
	char msg[384];
};

/* Counters for `status` and for tests. */
struct mfs_stage_stat {
	uint64_t n_staged;      /* objects with staged changes */
	uint64_t journal_bytes; /* current journal length */
	uint64_t live_bytes;    /* bytes of it still referenced */
	uint64_t cache_bytes;   /* chunk buffers allocated */
	uint64_t n_flushes;     /* chunk records written */
	uint64_t n_compactions;
	int last_compact_err;   /* 0, or the errno of the last failed compaction */
	bool failed;            /* the journal's fsync failed once; syncs now fail (-EIO) */
};

/*
 * mfs_stage_open() - open the stage of model `model_name` in directory `dirfd`.
 * @out:        receives the stage; free with mfs_stage_close().
 * @dirfd:      the model's directory (may be O_PATH); borrowed, must stay
 *              open as long as the stage.
 * @model_name: the model file's name in that directory.
 * @id:         the model's identity now; recorded in a new journal and
 *              compared with an existing one.
 * @opts:       NULL for defaults.
 * @rec:        receives what was recovered (may be NULL).
 * An existing journal is locked and replayed: its staged objects come back
 * (unbound: call mfs_stage_bind() to give them their base again), replay
 * stops cleanly at the first torn or corrupt record (reported in `rec`, and
 * the bad tail is cut off so appends can continue), and nothing is applied
 * to the model.  A journal for another identity is renamed aside to
 * ".<model>.modelfs-journal.stale-..." and reported (or, with
 * opts.keep_stale, left alone and -ESTALE returned) — unless it is obsolete:
 * its last commit had installed that other identity (see
 * mfs_stage_mark_commit() and opts.committed_journal); then it is removed
 * and reported (rec->obsolete).  No journal is created
 * until the first change is staged.
 * Returns 0, -EBUSY when another process holds the journal, or -errno, with
 * a one-line reason in `err`.
 */
int mfs_stage_open(struct mfs_stage **out, int dirfd, const char *model_name,
                   const struct mfs_identity *id, const struct mfs_stage_opts *opts,
                   struct mfs_stage_recovery *rec, char *err, size_t errlen);

/*
 * mfs_stage_close() - write out dirty chunks, sync, and free the stage.  The
 * journal stays on disk while anything is staged (it is recovered at the
 * next open) and is removed when nothing is.  Accepts NULL.  Returns 0 or
 * the first error of the final flush (the staged changes written before it
 * are still in the journal).
 */
int mfs_stage_close(struct mfs_stage *st);

/*
 * mfs_stage_bind() - declare object `key` and its base: `base_size` bytes
 * read through `base_read(arg, ...)` (NULL with base_size 0 for an object
 * that starts empty, like a new property).  Binding stages nothing.  For an
 * object recovered from the journal, `base_size` must equal the recorded
 * one (else -ESTALE).  Binding again replaces the callback.
 */
int mfs_stage_bind(struct mfs_stage *st, uint64_t key, uint64_t base_size,
                   mfs_stage_read_fn base_read, void *arg);

/*
 * mfs_stage_write() - stage `len` bytes at `off`, extending the object (with
 * zeros in any gap) if it ends before off + len.  Returns `len`, a shorter
 * count when a later chunk failed, or -errno (-EFBIG past
 * MFS_STAGE_MAX_OBJECT).
 */
ssize_t mfs_stage_write(struct mfs_stage *st, uint64_t key, const void *buf, size_t len,
                        uint64_t off);

/*
 * mfs_stage_read() - read the object as staged: up to `len` bytes at `off`.
 * Unstaged ranges come from the base, staged chunks are decompressed on
 * demand.  Returns the byte count (0 at or past the end) or -errno (-ENXIO
 * when a recovered object's base is needed but was never bound).
 */
ssize_t mfs_stage_read(struct mfs_stage *st, uint64_t key, void *buf, size_t len,
                       uint64_t off);

/* mfs_stage_truncate() - stage a new size; extending adds zeros. */
int mfs_stage_truncate(struct mfs_stage *st, uint64_t key, uint64_t size);

/*
 * mfs_stage_set_value() - replace the whole object with `len` bytes (at most
 * MFS_STAGE_MAX_VALUE), journaled as one record.  For small text values;
 * creates the object (empty base) if the key is unknown.
 */
int mfs_stage_set_value(struct mfs_stage *st, uint64_t key, const void *buf, size_t len);

/* mfs_stage_size() - the object's size as staged (its base size if unstaged). */
int mfs_stage_size(uint64_t *out, struct mfs_stage *st, uint64_t key);

/* mfs_stage_is_staged() - true when `key` has staged changes. */
bool mfs_stage_is_staged(struct mfs_stage *st, uint64_t key);

/*
 * mfs_stage_list() - the keys with staged changes, ascending.  Fills at most
 * `cap` keys into `out` and returns how many there are (call with cap 0 to
 * size the array).
 */
size_t mfs_stage_list(uint64_t *out, size_t cap, struct mfs_stage *st);

/* mfs_stage_drop() - forget the staged changes of `key` (it stays bound). */
int mfs_stage_drop(struct mfs_stage *st, uint64_t key);

/*
 * mfs_stage_drop_all() - abort: forget every staged change.  Journals a
 * clear marker, syncs it, then cuts the journal back to its header.
 */
int mfs_stage_drop_all(struct mfs_stage *st);

/*
 * mfs_stage_flush() - write out dirty chunks and size changes without
 * syncing: afterwards a replay of the journal (after a crash of this
 * process, not of the machine) gives exactly what reads give.
 */
int mfs_stage_flush(struct mfs_stage *st);

/*
 * mfs_stage_move() - object `to` takes over the staged content and size of
 * object `from` (both must be bound or recovered), as one journal record;
 * `to` no longer shows its base, and `from` is unstaged.  No staged byte is
 * copied: the chunks change owner.  For a rename of a scratch file over a
 * tensor's data file.  Returns 0, -ENOENT, -EINVAL (from == to), or -errno
 * from the journal (then nothing changed).
 */
int mfs_stage_move(struct mfs_stage *st, uint64_t from, uint64_t to);

/* A byte range of an object. */
struct mfs_stage_extent {
	uint64_t off, len;
};

/*
 * mfs_stage_extents() - the ranges of `key` whose bytes may differ from its
 * base: the staged chunks (journaled or dirty in the cache) and everything
 * at or past the base limit, merged, ascending, chunk-aligned and cut at
 * the staged size.  Bytes outside them read exactly as the base.  Fills at
 * most `cap` into `out` and sets *n to how many there are.  An unstaged
 * object has none.  Returns 0 or -ENOENT.
 */
int mfs_stage_extents(struct mfs_stage *st, uint64_t key, struct mfs_stage_extent *out,
                      size_t cap, size_t *n);

/*
 * mfs_stage_sync() - make everything staged so far durable: write out dirty
 * chunks and size changes, then fdatasync the journal.  After an fsync
 * failure the journal can no longer be trusted to hold what was written
 * (fsyncgate: doc/reliability.md §1.3), so this and every later sync return -EIO
 * until mfs_stage_drop_all() or mfs_stage_reset().  May compact the journal.
 */
int mfs_stage_sync(struct mfs_stage *st);

/*
 * mfs_stage_mark_commit() - record in the journal, durably, that a commit
 * is about to install the model version `new_id` (its device, inode, size
 * and mtime): if the process dies after the new version is installed and
 * before mfs_stage_reset(), the next mfs_stage_open() finds the model is
 * that version and removes the journal as obsolete instead of setting it
 * aside.  A journal that does not exist yet needs no mark.  Returns 0 or
 * -errno (the commit must then not go ahead).
 */
int mfs_stage_mark_commit(struct mfs_stage *st, const struct mfs_identity *new_id);

/*
 * mfs_stage_mark_inplace() - the same for an in-place commit, once it is
 * past its commit point (its redo log is marked committing): whatever
 * happens now, the model will be the new version.
 */
int mfs_stage_mark_inplace(struct mfs_stage *st);

/* mfs_stage_unmark_commit() - the commit marked did not install anything. */
int mfs_stage_unmark_commit(struct mfs_stage *st);

/* mfs_stage_journal_id() - the id of the journal in use (sidefile.h), 0 if none. */
uint64_t mfs_stage_journal_id(struct mfs_stage *st);

/*
 * mfs_stage_reset() - after a commit: forget everything staged, remove the
 * journal and adopt the model's new identity `id`.  Bindings are dropped too
 * (the model's layout may have changed).
 */
int mfs_stage_reset(struct mfs_stage *st, const struct mfs_identity *id);

/*
 * mfs_stage_reset_keep() - mfs_stage_reset(), except that objects for which
 * keep(key, arg) is true survive with their bindings and staged content
 * (scratch files that outlive a commit): they are copied into a fresh
 * journal stamped with the new identity `id`, which replaces the old one by
 * rename.  Returns 0, or -errno when that copy failed; then nothing survives
 * (everything is forgotten, as by mfs_stage_reset()).
 */
int mfs_stage_reset_keep(struct mfs_stage *st, const struct mfs_identity *id,
                         bool (*keep)(uint64_t key, void *arg), void *arg);

/*
 * mfs_stage_reset_keep_as() - mfs_stage_reset_keep() for a commit that
 * installed the edits as another file (a versioned commit): from now on the
 * stage is that of model `model_name` (NULL: the same model), the kept
 * objects go to its journal, and the old model's journal is removed.
 * Returns as mfs_stage_reset_keep(), or -ENAMETOOLONG (nothing changed).
 */
int mfs_stage_reset_keep_as(struct mfs_stage *st, const char *model_name,
                            const struct mfs_identity *id,
                            bool (*keep)(uint64_t key, void *arg), void *arg);

/*
 * mfs_stage_unbind() - forget object `key`, which must have nothing staged
 * (-EBUSY otherwise; -ENOENT when unknown).
 */
int mfs_stage_unbind(struct mfs_stage *st, uint64_t key);

/* mfs_stage_stat() - fill `out` with the counters above. */
void mfs_stage_stat(struct mfs_stage_stat *out, struct mfs_stage *st);

#endif /* MODELFS_CODEC_STAGE_H */

/*
 * codec/txn/commit.h — the commit engine: replace a model file with a new
 * version, atomically, or patch it in place through a redo log.
 *
 * Format-neutral.  A format's splice writer describes the new file as a
 * list of pieces (ranges copied from the old file, buffers, callbacks that
 * produce bytes such as staged tensor data) and the engine writes, syncs and
 * installs it under the protocol documented atop commit.c.  The guarantee:
 * whatever fails, and wherever the process dies, the model file is wholly
 * the old version or wholly the new one, once recovery (mfs_commit_recover()
 * and mfs_commit_gc()) has run.
 *
 * All file access goes through mfs_io (core/core.h).  The functions
 * keep no global state; two commits of different models may run at once,
 * two of one model must not (the caller serializes them).
 */
#ifndef MODELFS_CODEC_COMMIT_H
#define MODELFS_CODEC_COMMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/core.h"
#include "core/splice.h"

/* In-place commit: write `piece`'s bytes at `off` of the model. */
struct mfs_patch {
	uint64_t off;
	struct mfs_piece piece;
};

/* What a commit did.  Zero it (or not: every call fills it) before a call. */
struct mfs_commit_report {
	const char *path;       /* "rewrite", "inplace" or "none"; static */
	uint64_t bytes_written; /* into the new file (rewrite) or the model (in place) */
	uint64_t bytes_copied;  /* of bytes_written, moved in-kernel by copy_file_range */
	uint64_t journal_bytes; /* in place: bytes written to the redo log */
	bool installed;         /* the new version is the model now (even when the call
	                         * failed afterwards, e.g. in the directory fsync) */
	bool redo_pending;      /* in place: the model may be half patched and a committing
	                         * redo log exists; run mfs_commit_recover() before reading */
	bool recovered;         /* mfs_commit_recover() finished a logged commit */
	bool discarded;         /* mfs_commit_recover() removed a log never marked committing */
	struct mfs_identity new_id;     /* the model's identity after the commit; zero
	                                 * when it could not be read */
};

/*
 * mfs_commit_replace() - write a new version of `name` from `pieces` and
 * rename it over the old one.
 * @dirfd:  the model's directory (may be O_PATH); borrowed.
 * @name:   the model's file name in it.
 * @expect: the identity the model had when it was opened; the commit is
 *          refused (-ESTALE) if the file on disk is not that file any more,
 *          both before anything is written and just before the rename.
 * @pieces, @n: the new content.
 * @rep:    filled with what happened (may be NULL).
 * The temp file is ".<name>.modelfs-tmp-<pid>-<random>" in the same
 * directory, with the model's owner and mode.  Open descriptors and mmaps of
 * the old file keep reading the old bytes.
 * Returns 0, or -errno with one line in `err`: -ESTALE (model changed on
 * disk), -EMLINK (the model has other hard links, which a rename would
 * split off), -EBUSY (an unfinished in-place commit awaits recovery),
 * -ENOSPC, -EIO, -EPERM (owner cannot be preserved), -EINVAL (bad pieces),
 * -ENOMEM.  On failure before the rename the model is untouched and the temp
 * is removed (if even that fails, mfs_commit_gc() removes it later); a
 * failure after it (directory fsync) is reported with rep->installed set.
 */
int mfs_commit_replace(int dirfd, const char *name, const struct mfs_identity *expect,
                       const struct mfs_piece *pieces, size_t n,
                       struct mfs_commit_report *rep, char *err, size_t errlen);

/*
 * mfs_commit_inplace() - patch the model in place, crash-safely: all patch
 * bytes go first to the redo log ".<name>.modelfs-redo", which is synced and
 * marked committing, then are written into the model, which is synced, and
 * the log is removed.  The file keeps its inode, size and layout; patches
 * must lie inside it (-EINVAL otherwise).
 * Returns 0 or -errno with one line in `err` (as mfs_commit_replace(), plus
 * -EBUSY when a redo log already exists).  A failure before the log is
 * marked leaves the model untouched and removes the log; a failure after
 * sets rep->redo_pending: the log stays, and mfs_commit_recover() completes
 * the commit.
 */
int mfs_commit_inplace(int dirfd, const char *name, const struct mfs_identity *expect,
                       const struct mfs_patch *patches, size_t n,
                       struct mfs_commit_report *rep, char *err, size_t errlen);

/*
 * mfs_commit_recover() - finish or discard an in-place commit interrupted by
 * a crash: a redo log marked committing (and intact) is applied again
 * (idempotent) and removed; one never marked is removed.  Run it before
 * opening the model.  Returns 0 (nothing to do, or done: see rep->recovered
 * and rep->discarded, and the message in `err`), -EBUSY when a live process
 * holds the log, -ESTALE when the model is no longer the file the log was
 * written for (the log is kept for the user), or -errno.
 */
int mfs_commit_recover(int dirfd, const char *name, struct mfs_commit_report *rep,
                       char *err, size_t errlen);

/*
 * mfs_commit_gc() - remove temp files left by commits of `name` that died:
 * ".<name>.modelfs-tmp-<pid>-<hex>" files that no live process holds locked.
 * Returns how many were removed, or -errno.
 */
int mfs_commit_gc(int dirfd, const char *name);

#endif /* MODELFS_CODEC_COMMIT_H */

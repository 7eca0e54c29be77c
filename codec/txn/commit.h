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
	const char *path;       /* "rewrite", "clone", "inplace", "version" or "none"; static */
	uint64_t bytes_written; /* into the new file (rewrite, clone) or the model (in place) */
	uint64_t bytes_copied;  /* of bytes_written, moved in-kernel by copy_file_range */
	uint64_t journal_bytes; /* in place: bytes written to the redo log */
	bool installed;         /* the new version is the model now (even when the call
	                         * failed afterwards, e.g. in the directory fsync) */
	bool redo_pending;      /* in place: the model may be half patched and a committing
	                         * redo log exists; run mfs_commit_recover() before reading */
	bool recovered;         /* mfs_commit_recover() finished a logged commit */
	bool discarded;         /* mfs_commit_recover() removed a log never marked committing */
	uint64_t journal_id;    /* mfs_commit_recover(): the journal whose edits the finished
	                         * log committed (sidefile.h; 0 when it does not say) */
	struct mfs_identity new_id;     /* the model's identity after the commit (after the
	                                 * rename: rename moves ctime); zero when it could
	                                 * not be read */
};

/*
 * What the caller of a commit may add; zero-initialise, every member is
 * optional.
 */
struct mfs_commit_hooks {
	/*
	 * Called once a rewrite or a clone is complete and synced, right before
	 * its commit point (the rename), with the identity the model will have
	 * (device, inode, size, mtime of the new file): the caller makes durable
	 * what it needs to know, should the process die after the rename (the
	 * journal's commit mark, stage.h).  A negative errno stops the commit
	 * before anything was installed.
	 */
	int (*before_install)(void *arg, const struct mfs_identity *new_id);
	/* In place: called once the redo log is marked committing, before the
	 * model is written (the journal's in-place mark).  Cannot stop it. */
	void (*after_commit_point)(void *arg);
	void *arg;
	/*
	 * Progress for the impatient: *done grows towards *total as the new
	 * file or the redo log is written (atomic stores; read them from any
	 * thread without a lock).
	 */
	uint64_t *done, *total;
	/* In place: the id of the journal whose edits these are, written into
	 * the redo log (sidefile.h) so that recovery can say whose commit it
	 * finished. */
	uint64_t journal_id;
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
 * @hooks:  may be NULL.
 * @rep:    filled with what happened (may be NULL).
 * The temp file is ".<name>.modelfs-tmp-<pid>-<random>" in the same
 * directory, with the model's owner, mode and extended attributes (ACLs
 * included).  Open descriptors and mmaps of the old file keep reading the
 * old bytes.
 * Returns 0, or -errno with one line in `err`: -ESTALE (model changed on
 * disk), -EMLINK (the model has other hard links, which a rename would
 * split off), -EBUSY (an unfinished in-place commit awaits recovery),
 * -ENOSPC, -EIO, -EPERM (owner or an extended attribute cannot be kept),
 * -EINVAL (bad pieces), -ENOMEM, or what before_install returned.  On
 * failure before the rename the model is untouched and the temp is removed
 * (if even that fails, mfs_commit_gc() removes it later); a failure after
 * it (directory fsync) is reported with rep->installed set.
 */
int mfs_commit_replace(int dirfd, const char *name, const struct mfs_identity *expect,
                       const struct mfs_piece *pieces, size_t n,
                       const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                       char *err, size_t errlen);

/*
 * A versioned commit's name and digest.  `name` gives the new file's name
 * from its SHA-256 (64 lower-case hex digits) into `out`: 0, or -errno with
 * one line in `err` (the commit then fails, nothing installed).  Filled by
 * the commit: name_out (the name it was installed under, "" if it was not)
 * and sha256 (the digest, "" until known).
 */
struct mfs_commit_version {
	int (*name)(void *arg, const char *sha_hex, char *out, size_t outlen, char *err,
	            size_t errlen);
	void *arg;
	char name_out[256];
	char sha256[65];
};

/*
 * mfs_commit_version() - write a new version of `name` from `pieces` as a
 * NEW file beside it, never replacing any file: the rewrite protocol with
 * the bytes hashed as they are written, the name chosen from the hash
 * (ver->name) and the temp renamed to it with RENAME_NOREPLACE (atop
 * commit.c, V1-V2).  `name` itself is never written, renamed or removed.
 * rep->new_id is the new file's identity.  Returns as mfs_commit_replace()
 * (no -EMLINK), plus -EEXIST when the name exists (nothing installed) and
 * what ver->name returned.
 */
int mfs_commit_version(int dirfd, const char *name, const struct mfs_identity *expect,
                       const struct mfs_piece *pieces, size_t n, struct mfs_commit_version *ver,
                       const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                       char *err, size_t errlen);

/*
 * mfs_commit_clone() - the rewrite of an edit that keeps the layout,
 * without copying: the temp file is a reflink clone of the model (FICLONE:
 * btrfs, XFS with reflink, ...), the patches are written into it, and it is
 * renamed over the model as by mfs_commit_replace(), with the same checks,
 * hooks and guarantees: every reader sees the old file or the new one,
 * never a mix.  Costs about what the patches cost.
 * Returns as mfs_commit_replace(), or -EOPNOTSUPP when the file system
 * cannot clone the model (nothing was written: do a rewrite instead).
 */
int mfs_commit_clone(int dirfd, const char *name, const struct mfs_identity *expect,
                     const struct mfs_patch *patches, size_t n,
                     const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                     char *err, size_t errlen);

/*
 * mfs_commit_inplace() - patch the model in place, crash-safely: all patch
 * bytes go first to the redo log ".<name>.modelfs-redo", which is synced and
 * marked committing, then are written into the model, which is synced.  The
 * file keeps its inode, size and layout; patches must lie inside it
 * (-EINVAL otherwise).  Until the patches are all written and synced a
 * reader of the file itself (not through modelfs) may see some of them and
 * not others: this path is for a caller who chose it (commit=inplace).
 * The log stays until mfs_commit_finish(), so that the caller can first
 * make its own state say the commit is done (a crash in between replays the
 * log again, which changes nothing).
 * Returns 0 or -errno with one line in `err` (as mfs_commit_replace(), plus
 * -EBUSY when a redo log already exists).  A failure before the log is
 * marked leaves the model untouched and removes the log; a failure after
 * sets rep->redo_pending: the log stays, and mfs_commit_recover() completes
 * the commit.
 */
int mfs_commit_inplace(int dirfd, const char *name, const struct mfs_identity *expect,
                       const struct mfs_patch *patches, size_t n,
                       const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                       char *err, size_t errlen);

/*
 * mfs_commit_append() - mfs_commit_inplace() for a new version that is the
 * model's bytes followed by more (a pack's appending commit): the patches
 * follow each other from the model's end (-EINVAL otherwise) and are
 * logged, synced, marked, then written past the end, as above.  A reader of
 * the file sees its old bytes unchanged throughout, and a longer file only
 * once the redo log is complete; rep->path is "append".  The same redo log,
 * recovery and mfs_commit_finish().
 */
int mfs_commit_append(int dirfd, const char *name, const struct mfs_identity *expect,
                      const struct mfs_patch *patches, size_t n,
                      const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                      char *err, size_t errlen);

/* mfs_commit_finish() - remove the redo log of a completed in-place commit. */
void mfs_commit_finish(int dirfd, const char *name);

/*
 * mfs_commit_pending() - is there a redo log beside `name`, and is it marked
 * committing (the model may be half patched until mfs_commit_recover()
 * runs)?  Reads only.  Returns 1 (a log; *committing says which kind), 0
 * (none), or -errno.
 */
int mfs_commit_pending(int dirfd, const char *name, bool *committing);

/*
 * mfs_commit_recover() - finish or discard an in-place commit interrupted by
 * a crash: a redo log marked committing (and intact) is applied again
 * (idempotent) and removed; one never marked is removed.  Run it before
 * opening the model.  `model` is what the caller knows of the model now
 * (its layout fingerprint, core.h), or NULL: a log written for a model of
 * another layout is not applied.
 * Returns 0 (nothing to do, or done: see rep->recovered and rep->discarded,
 * and the message in `err`), -EBUSY when a live process holds the log,
 * -ESTALE when the model is no longer the file the log was written for (the
 * log is kept for the user), or -errno.
 */
int mfs_commit_recover(int dirfd, const char *name, const struct mfs_identity *model,
                       struct mfs_commit_report *rep, char *err, size_t errlen);

/*
 * mfs_commit_recover_hooked() - the same, counting the bytes it applies to
 * the model in hooks->done of hooks->total (the redo log's payload), for a
 * caller that shows progress; hooks may be NULL.  Only `done` and `total`
 * of the hooks are used.
 */
int mfs_commit_recover_hooked(int dirfd, const char *name, const struct mfs_identity *model,
                              const struct mfs_commit_hooks *hooks,
                              struct mfs_commit_report *rep, char *err, size_t errlen);

/*
 * mfs_commit_gc() - remove temp files left by commits of `name` that died:
 * ".<name>.modelfs-tmp-<pid>-<hex>" files that no live process holds locked.
 * Returns how many were removed, or -errno.
 */
int mfs_commit_gc(int dirfd, const char *name);

#endif /* MODELFS_CODEC_COMMIT_H */

/*
 * codec/txn/commit.c — the commit engine: how a new version of a model reaches
 * the disk without ever leaving a corrupt model behind.
 *
 * Three paths.  REWRITE builds the whole new file beside the model and
 * renames it over the model (doc/reliability.md §1.2); it works for every
 * edit.  CLONE is the same protocol with R4/R5 replaced by a reflink of the
 * model (FICLONE: the new file shares the model's blocks) and pwrites of the
 * patches, for edits that keep every byte where it was, on file systems
 * that can (XFS with reflinks, Btrfs): a 4 MiB edit of a 1 GiB model writes
 * 4 MiB, and every reader still sees only whole versions.  commit=auto
 * takes CLONE when it can and REWRITE otherwise.  IN PLACE (commit=inplace
 * only, since a reader of the file sees it half patched while it runs)
 * writes the changed ranges first to a redo log and then into the model
 * (doc/performance.md §2).  Both are
 * driven by a list of pieces from a format's splice writer; this file knows
 * no format.  Every system call goes through mfs_io, and the tests fail each
 * one in turn (doc/reliability.md §2.2, C1–C12).
 *
 * REWRITE: states, in order.  A failure in R0..R9 goes to FAIL.
 *
 *   R0  CHECK     fstatat(model): same identity as `expect` (else ESTALE), a
 *                 regular file with one link (else EMLINK), and no redo log
 *                 waiting for recovery (else EBUSY).
 *   R1  CREATE    tfd = openat(".<model>.modelfs-tmp-<pid>-<rand>",
 *                 O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW, 0600), retried on EEXIST.
 *   R2  LOCK      lfd = openat(temp, O_RDONLY); flock(lfd, LOCK_EX|LOCK_NB).
 *   R3  OWNER     fstat(tfd); fchown(tfd) to the model's uid/gid if they differ.
 *   R4  ALLOCATE  fallocate(tfd, 0, size): ENOSPC now rather than at 90 %;
 *                 skipped where unsupported (EOPNOTSUPP, EINVAL, ENOSYS).
 *   R5  WRITE     the pieces, end to end: copy_file_range for COPY pieces
 *                 (pread/pwrite where it is refused), pwrite for the rest.
 *   R4' CLONE     (clone path) ioctl(tfd, FICLONE, model): EOPNOTSUPP,
 *                 ENOTTY, EXDEV, EINVAL, ENOSYS, EBADF, EPERM mean "cannot
 *                 here" (-EOPNOTSUPP) and the caller falls back to REWRITE.
 *   R5' PATCH     (clone path) pwrite every patch.
 *   R6  MODE      fchmod(tfd, model's mode), then the model's extended
 *                 attributes (user.*, security.*, trusted.*, the POSIX ACLs)
 *                 copied with flistxattr/fgetxattr/fsetxattr (a refused
 *                 security.* or trusted.* name is skipped: the new file gets
 *                 the label new files get; any other failure fails).  After
 *                 the writes, because an unprivileged write clears
 *                 set-user-ID bits, and because 0600 kept the half-written
 *                 file private until now.
 *   R7  SYNC      fsync(tfd); fstat(tfd) gives the new identity (rename does
 *                 not change mtime).
 *   R8  CLOSE     close(tfd), checked.
 *   R9  RECHECK   fstatat(model): identity still `expect` (else ESTALE).
 *   R9' MARK      hooks->before_install(new identity): the journal records
 *                 which file it is about to install (txn/stage.c, COMMIT
 *                 record), so that after a crash past R10 the journal is
 *                 known to be this commit's, and removed, not mistaken for
 *                 another version's.  Its failure fails the commit.
 *   R10 RENAME    renameat(temp, model).  THE COMMIT POINT.
 *   R11 DIRSYNC   fsync(directory).  Failure: the new file is in place but
 *                 may not survive a power cut; -EIO, rep->installed set.
 *   R12 DONE      close(lfd).
 *
 * VERSION (mfs_commit_version: `modelfs commit --to TEMPLATE`) is REWRITE
 * with three differences.  R5 hashes every byte it writes (SHA-256,
 * streamed: no copy_file_range, since the bytes must pass through memory
 * to be hashed).  Between R9 and R9':
 *   V1  NAME      the digest is final; ver->name() turns it into the new
 *                 file's name (txn/version.c); a bad or taken name fails.
 * and R10 is
 *   V2  RENAME    rename_noreplace(temp, name) (renameat2 RENAME_NOREPLACE,
 *                 or link + unlink): THE COMMIT POINT; EEXIST fails the
 *                 commit, the temp is removed.  The model is never renamed
 *                 over, so it stays byte-identical whatever happens, and
 *                 its hard links (R0's EMLINK) do not matter.
 * A crash before V2 leaves a temp that mfs_commit_gc() removes (never a
 * file under the version's name); after it, the whole, synced version.
 *   FAIL          close(tfd); unlinkat(temp); close(lfd); return the first
 *                 error.  An unlink that fails leaves the temp to
 *                 mfs_commit_gc().
 *
 * IN PLACE: states, in order.  A failure in P0..P5 goes to FAIL; from P6 on
 * the log is committing and a failure leaves it for recovery.
 *
 *   P0  CHECK     fstatat(model): identity `expect`; patches inside it.
 *   P1  CREATE    rfd = openat(".<model>.modelfs-redo", O_RDWR|O_CREAT|
 *                 O_EXCL|O_NOFOLLOW, 0600) (EEXIST: EBUSY); flock(rfd).
 *   P2  LOG       header, then each patch's header and bytes.
 *   P3  SYNC      fdatasync(rfd).
 *   P4  MARK      append the trailer; fdatasync(rfd); fsync(directory).
 *                 THE COMMIT POINT: from here recovery completes the commit.
 *   P5  VERIFY    read the log back and check every CRC (the same code as
 *                 recovery, so the path the crash tests exercise is the one
 *                 that runs every time).
 *   P6  APPLY     open the model O_WRONLY|O_NOFOLLOW; fstat: same file as
 *                 logged (and, live, still `expect`); pwrite every patch
 *                 from the log.
 *   P7  SYNC      fsync(model), fstat for the new identity, close(model).
 *   P8  DROP      mfs_commit_finish(): unlinkat(log); fsync(directory).  The
 *                 caller's, after it has dropped the journal: until then a
 *                 crash leaves the log, whose journal id names the journal
 *                 its edits came from, and recovery removes that journal.
 *   FAIL          unlinkat(log); close(rfd): the model was never touched.
 *
 * INVARIANTS
 *  1. REWRITE never opens the model for writing: until R10 the name is the
 *     old inode, untouched; after it, the new inode, complete and synced
 *     (R7 precedes R10).  Old descriptors and mmaps keep the old inode.
 *  2. The temp lives in the model's directory, so the rename cannot cross a
 *     file system (EXDEV) and is atomic.
 *  3. The temp is created exclusively, without following symlinks, mode 0600
 *     until R6: nothing planted can be written through, and nobody reads a
 *     half-written model.
 *  4. From R2 until the temp is renamed or removed, a descriptor holds an
 *     flock on it, so mfs_commit_gc() in any process skips a live temp; the
 *     kernel drops the lock when its owner dies, which is what makes a temp
 *     stale.
 *  5. An fsync that fails fails the commit and is never retried on that
 *     descriptor: after a failed writeback Linux may report success for data
 *     it dropped (fsyncgate, doc/reliability.md §1.3).
 *  6. The identity is checked before any work and again right before the
 *     commit point; a change in between is refused, never overwritten.  (A
 *     writer that slips in after R9 is not detectable without mandatory
 *     locks; the window is one rename.)
 *  7. On failure the first error is returned and every resource released;
 *     before the commit point the model is untouched.
 *  8. IN PLACE writes the model only after a complete, checksummed log with
 *     a trailer is durable (P4 precedes P6), and removes the log only after
 *     the model's fsync succeeded (P7 precedes P8).
 *  9. Applying a log writes the same bytes at the same offsets every time:
 *     recovery may run it again after any crash, any number of times.
 * 10. A log without a valid trailer was never committing, so the model was
 *     never written: recovery removes it.  A log with a trailer but a bad
 *     record is not applied and not removed (-EUCLEAN): it is evidence.
 * 11. A log is matched to its model by device, inode and size, and by the
 *     layout fingerprint of the model's description (core.h): a partial
 *     apply has already moved mtime and ctime, so those cannot take part,
 *     but it never changes the layout.  A file of the same size but another
 *     layout copied over the model while a log waits is refused (the log
 *     is kept).  One of the same layout (the same model with other
 *     weights) would still be patched; per-block pre-image checksums would
 *     close that, but need care with blocks torn by a power cut.
 * 12. IN PLACE runs only with the model's flock held exclusively (txn.c):
 *     every open of a model holds a shared one, so another mount never
 *     sees patches land under it; when the lock is not free the commit
 *     rewrites instead.
 *
 * REDO LOG FORMAT (".<model>.modelfs-redo"; integers little-endian)
 *
 * Header: the side-file header of txn/sidefile.h, 96 bytes (magic
 * "MFSREDO\0", parameter = number of patches, the model's identity before
 * the commit and its layout, the id of the journal whose edits these are);
 * a version 1 header (64 bytes) is still recovered.
 * Each patch, 32 bytes and its data:
 *        0     4  magic "MFSP"
 *        4     4  CRC-32 of the data
 *        8     8  offset in the model
 *       16     8  length
 *       24     4  flags: 1 = the patch may extend the model past its old
 *                 size (an append: mfs_commit_append), else 0
 *       28     4  CRC-32 of bytes 0..27
 *       32     n  data
 * Trailer, written only after everything before it was synced:
 *        0     4  magic "MFSC"
 *        4     4  number of patches
 *        8     8  total data bytes
 *       16     8  offset of this trailer
 *       24     4  CRC-32 over the header's CRC and each patch's data CRC
 *       28     4  CRC-32 of bytes 0..27
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "modelfs/view.h"

#include "core/crc32.h"
#include "txn/commit.h"
#include "txn/sidefile.h"

#define BUF_LEN         (1u << 20)
/* The redo log's read/write buffer: small, so that the fresh pages a commit
 * touches (a daemon commits rarely; its buffers are new each time) cost
 * little and stay in the CPU's cache between the CRC and the write. */
#define REDO_BUF        (256u << 10)
#define MAX_CFR         (1u << 30)
#define REDO_HDR        MFS_SIDEFILE_HDR
#define PATCH_HDR       32
#define PATCH_GROWS     1u      /* patch flag: may extend the model */
#define TRAILER         32
#define TMP_SUFFIX      ".modelfs-tmp-"
#define REDO_SUFFIX     ".modelfs-redo"

static const char redo_magic[8] = {'M', 'F', 'S', 'R', 'E', 'D', 'O', 0};

/* ------------------------------------------------------------ helpers */

static void report_init(struct mfs_commit_report *rep, const char *path)
{
	memset(rep, 0, sizeof(*rep));
	rep->path = path;
}

static uint64_t random64(void)
{
	static unsigned counter;
	uint64_t r;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
		return r;
	/* Uniqueness, not secrecy, is what matters: O_EXCL catches clashes. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
	       ((uint64_t)getpid() << 40) ^ ++counter;
}

static int check_pieces(uint64_t *total, const struct mfs_piece *pieces, size_t n)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		const struct mfs_piece *p = &pieces[i];
		bool ok = (p->kind == MFS_PIECE_COPY && p->fd >= 0 &&
		           p->off <= (uint64_t)INT64_MAX - p->len) ||
		          (p->kind == MFS_PIECE_BYTES && (p->buf || !p->len)) ||
		          (p->kind == MFS_PIECE_FN && p->fn);
		if (!ok || p->len > (uint64_t)INT64_MAX - sum)
			return -EINVAL;
		sum += p->len;
	}
	*total = sum;
	return 0;
}

/* Bytes [off, off + len) of a piece (off from the piece's start) into buf;
 * returns the count (> 0) or -errno.  A source that ends early is -EIO. */
static ssize_t piece_read(const struct mfs_piece *p, void *buf, size_t len, uint64_t off)
{
	ssize_t n;
	switch (p->kind) {
	case MFS_PIECE_BYTES:
		memcpy(buf, (const uint8_t *)p->buf + off, len);
		return (ssize_t)len;
	case MFS_PIECE_COPY:
		do
			n = mfs_io->pread(p->fd, buf, len, (off_t)(p->off + off));
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return -errno;
		return n == 0 ? -EIO : n;
	case MFS_PIECE_FN:
		n = p->fn(p->arg, buf, len, off);
		if (n == 0 || n > (ssize_t)len)
			return -EIO;
		return n;
	}
	return -EINVAL;
}

static const struct mfs_commit_hooks no_hooks;

/* `n` more bytes of the commit are written (struct mfs_commit_hooks). */
static void progress(const struct mfs_commit_hooks *h, uint64_t n)
{
	if (h->done)
		__atomic_add_fetch(h->done, n, __ATOMIC_RELAXED);
}

static void progress_total(const struct mfs_commit_hooks *h, uint64_t total)
{
	if (h->done)
		__atomic_store_n(h->done, 0, __ATOMIC_RELAXED);
	if (h->total)
		__atomic_store_n(h->total, total, __ATOMIC_RELAXED);
}

/* errno values with which copy_file_range says "not here", not "failed". */
static bool cfr_refused(int e)
{
	return e == EXDEV || e == EINVAL || e == ENOSYS || e == EOPNOTSUPP || e == EBADF ||
	       e == ETXTBSY || e == EPERM;
}

/*
 * R5: write every piece to `fd` from offset 0.  `*use_cfr` turns false for
 * good once copy_file_range is refused.
 */
static int write_pieces(int fd, const struct mfs_piece *pieces, size_t n, uint8_t *buf,
                        bool *use_cfr, struct mfs_sha256_ctx *hash,
                        const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep)
{
	uint64_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		const struct mfs_piece *p = &pieces[i];
		uint64_t done = 0;
		while (p->kind == MFS_PIECE_COPY && *use_cfr && done < p->len) {
			off_t in = (off_t)(p->off + done), out = (off_t)(pos + done);
			size_t want = p->len - done > MAX_CFR ? MAX_CFR : (size_t)(p->len - done);
			ssize_t k = mfs_io->copy_file_range(p->fd, &in, fd, &out, want, 0);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0 && !cfr_refused(errno))
				return -errno;
			if (k <= 0) {
				/* Refused, or 0 (which some file systems return
				 * instead of refusing): the read path below tells a
				 * real end of file from that. */
				*use_cfr = false;
				break;
			}
			done += (uint64_t)k;
			rep->bytes_copied += (uint64_t)k;
			rep->bytes_written += (uint64_t)k;
			progress(hooks, (uint64_t)k);
		}
		while (done < p->len) {
			size_t want = p->len - done > BUF_LEN ? BUF_LEN : (size_t)(p->len - done);
			ssize_t k = piece_read(p, buf, want, done);
			if (k < 0)
				return (int)k;
			int rc = hash ? mfs_sha256_update(hash, buf, (size_t)k) : 0;
			if (rc == 0)
				rc = mfs_pwrite_full(fd, buf, (size_t)k, pos + done);
			if (rc < 0)
				return rc;
			done += (uint64_t)k;
			rep->bytes_written += (uint64_t)k;
			progress(hooks, (uint64_t)k);
		}
		pos += p->len;
	}
	return 0;
}

static const char *describe(int rc)
{
	return rc == -ENOSPC ? "no space left on the device" : strerror(-rc);
}

/* ------------------------------------------------------------ rewrite */

/*
 * Give the temp file `tfd` the extended attributes of the model (`mfd`),
 * ACLs among them.  A file system without them has nothing to copy.
 * security.* and trusted.* names that only a privileged process may set are
 * skipped when refused: the new file gets the label a new file gets there.
 */
static int copy_xattrs(int mfd, int tfd, const char *name, char *err, size_t errlen)
{
	ssize_t n = mfs_io->flistxattr(mfd, NULL, 0);
	if (n < 0)
		return errno == ENOTSUP || errno == ENOSYS ? 0 :
		       mfs_errf(err, errlen, -errno, name, "commit: cannot list the model's extended "
		                "attributes: %s", strerror(errno));
	if (n == 0)
		return 0;
	char *list = malloc((size_t)n + 1), *val = NULL;
	size_t vcap = 0;
	int rc = 0;
	if (!list)
		return mfs_errf(err, errlen, -ENOMEM, name, "commit: out of memory");
	n = mfs_io->flistxattr(mfd, list, (size_t)n);
	if (n < 0) {
		rc = mfs_errf(err, errlen, -errno, name, "commit: cannot list the model's extended "
		              "attributes: %s", strerror(errno));
		goto out;
	}
	list[n] = '\0';
	for (char *a = list; a < list + n && rc == 0; a += strlen(a) + 1) {
		ssize_t vl = mfs_io->fgetxattr(mfd, a, NULL, 0);
		if (vl < 0 && errno == ENODATA)
			continue;       /* gone meanwhile */
		if (vl >= 0 && (size_t)vl > vcap) {
			char *nv = realloc(val, (size_t)vl);
			if (!nv) {
				rc = mfs_errf(err, errlen, -ENOMEM, name, "commit: out of memory");
				break;
			}
			val = nv;
			vcap = (size_t)vl;
		}
		if (vl >= 0)
			vl = mfs_io->fgetxattr(mfd, a, val, (size_t)vl);
		if (vl < 0) {
			rc = mfs_errf(err, errlen, -errno, name, "commit: cannot read the model's "
			              "extended attribute %s: %s", a, strerror(errno));
			break;
		}
		if (mfs_io->fsetxattr(tfd, a, val, (size_t)vl, 0) < 0) {
			bool privileged = !strncmp(a, "security.", 9) || !strncmp(a, "trusted.", 8);
			if (privileged && (errno == EPERM || errno == EACCES || errno == ENOTSUP))
				continue;
			rc = mfs_errf(err, errlen, -errno, name, "commit: cannot give the new file "
			              "the model's extended attribute %s: %s", a, strerror(errno));
		}
	}
out:
	free(list);
	free(val);
	return rc;
}

/* Write each patch's bytes at its offset of `fd` (a clone of the model). */
static int write_patches(int fd, const struct mfs_patch *patches, size_t n, uint8_t *buf,
                         const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep)
{
	for (size_t i = 0; i < n; i++) {
		const struct mfs_piece *p = &patches[i].piece;
		for (uint64_t done = 0; done < p->len;) {
			size_t want = p->len - done > BUF_LEN ? BUF_LEN : (size_t)(p->len - done);
			ssize_t k = piece_read(p, buf, want, done);
			if (k < 0)
				return (int)k;
			int rc = mfs_pwrite_full(fd, buf, (size_t)k, patches[i].off + done);
			if (rc < 0)
				return rc;
			done += (uint64_t)k;
			rep->bytes_written += (uint64_t)k;
			progress(hooks, (uint64_t)k);
		}
	}
	return 0;
}

/* errno values with which FICLONE says "this file system cannot". */
static bool clone_refused(int e)
{
	return e == EOPNOTSUPP || e == ENOTTY || e == EXDEV || e == EINVAL || e == ENOSYS ||
	       e == EBADF || e == EPERM;
}

/*
 * The rewrite protocol (R0..R12 above), for a new file made of `pieces`
 * (rewrite) or, when `patches` is set, of a clone of the model with the
 * patches written into it (clone).
 */
static int install(int dirfd, const char *name, const struct mfs_identity *expect,
                   const struct mfs_piece *pieces, size_t n,
                   const struct mfs_patch *patches, size_t np, struct mfs_commit_version *ver,
                   const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                   char *err, size_t errlen)
{
	struct mfs_sha256_ctx *hash = NULL;
	char final[NAME_MAX + 1] = "";
	char tmp[NAME_MAX + 1] = "", redo[NAME_MAX + 1];
	int tfd = -1, lfd = -1, mfd = -1, rc;
	uint8_t *buf = NULL;
	uint64_t total = 0;
	struct stat st, tst;
	struct mfs_identity now, want;
	bool clone = patches != NULL;
	const char *what = ver ? "version" : clone ? "clone" : "rewrite";

	if (err && errlen)
		err[0] = '\0';
	if (!hooks)
		hooks = &no_hooks;
	if (!expect) {
		report_init(rep, what);
		return mfs_errf(err, errlen, -EINVAL, name, "commit: no identity to check");
	}
	/* Copied before the report is cleared: a caller may well pass
	 * &rep->new_id from its previous commit. */
	want = *expect;
	expect = &want;
	report_init(rep, what);
	if (clone) {
		for (size_t i = 0; i < np; i++) {
			uint64_t len;
			if (check_pieces(&len, &patches[i].piece, 1) < 0 ||
			    patches[i].off > expect->size || len > expect->size - patches[i].off)
				return mfs_errf(err, errlen, -EINVAL, name, "commit: patch %zu does not "
				                "lie inside the model", i);
			total += len;
		}
	} else if (check_pieces(&total, pieces, n) < 0) {
		return mfs_errf(err, errlen, -EINVAL, name, "commit: invalid piece list");
	}
	if ((rc = mfs_sidefile_name(redo, sizeof(redo), name, REDO_SUFFIX)) < 0)
		return mfs_errf(err, errlen, rc, name, "commit: name too long");

	/* R0 CHECK */
	if (mfs_io->fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = -errno;
		return mfs_errf(err, errlen, rc == -ENOENT ? -ESTALE : rc, name,
		                "commit: cannot stat the model: %s", strerror(-rc));
	}
	mfs_identity_from_stat(&now, &st);
	if (!S_ISREG(st.st_mode) || !mfs_identity_equal(&now, expect))
		return mfs_errf(err, errlen, -ESTALE, name,
		                "commit refused: the model changed on disk since it was mounted");
	if (st.st_nlink > 1 && !ver)
		return mfs_errf(err, errlen, -EMLINK, name, "commit refused: the model has %lu "
		                "hard links, and replacing it would split them",
		                (unsigned long)st.st_nlink);
	struct stat rst;
	if (mfs_io->fstatat(dirfd, redo, &rst, AT_SYMLINK_NOFOLLOW) == 0)
		return mfs_errf(err, errlen, -EBUSY, name, "commit refused: an interrupted "
		                "in-place commit (%s) must be recovered first", redo);
	if (errno != ENOENT)
		return mfs_errf(err, errlen, -errno, name, "commit: cannot check for %s: %s",
		                redo, strerror(errno));

	buf = malloc(BUF_LEN);
	if (!buf)
		return mfs_errf(err, errlen, -ENOMEM, name, "commit: out of memory");
	/* The model, read-only: the source of a clone and of the attributes. */
	mfd = mfs_io->openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
	if (mfd < 0) {
		rc = mfs_errf(err, errlen, errno == ENOENT ? -ESTALE : -errno, name, "commit: "
		              "cannot open the model: %s", strerror(errno));
		goto out;
	}

	/* R1 CREATE */
	for (int tries = 0; tfd < 0; tries++) {
		char suffix[MFS_SIDEFILE_SUFFIX_MAX + 1];
		snprintf(suffix, sizeof(suffix), TMP_SUFFIX "%ld-%016llx", (long)getpid(),
		         (unsigned long long)random64());
		if ((rc = mfs_sidefile_name(tmp, sizeof(tmp), name, suffix)) < 0) {
			tmp[0] = '\0';
			rc = mfs_errf(err, errlen, rc, name, "commit: name too long");
			goto out;
		}
		tfd = mfs_io->openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		                     O_CLOEXEC, 0600);
		if (tfd < 0 && (errno != EEXIST || tries >= 16)) {
			rc = -errno;
			tmp[0] = '\0';          /* not ours: never unlink it */
			rc = mfs_errf(err, errlen, rc, name, "commit: cannot create a temporary "
			              "file beside the model: %s", describe(rc));
			goto out;
		}
	}

	/* R2 LOCK */
	lfd = mfs_io->openat(dirfd, tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (lfd < 0 || mfs_io->flock(lfd, LOCK_EX | LOCK_NB) < 0) {
		rc = mfs_errf(err, errlen, -errno, name, "commit: cannot lock %s: %s", tmp,
		              strerror(errno));
		goto out;
	}

	/* R3 OWNER */
	if (mfs_io->fstat(tfd, &tst) < 0) {
		rc = mfs_errf(err, errlen, -errno, name, "commit: cannot stat %s: %s", tmp,
		              strerror(errno));
		goto out;
	}
	if (tst.st_uid != st.st_uid || tst.st_gid != st.st_gid) {
		uid_t uid = tst.st_uid != st.st_uid ? st.st_uid : (uid_t)-1;
		gid_t gid = tst.st_gid != st.st_gid ? st.st_gid : (gid_t)-1;
		if (mfs_io->fchown(tfd, uid, gid) < 0) {
			rc = mfs_errf(err, errlen, -errno, name, "commit: cannot give the new "
			              "file the model's owner %lu:%lu: %s", (unsigned long)st.st_uid,
			              (unsigned long)st.st_gid, strerror(errno));
			goto out;
		}
	}

	progress_total(hooks, total);
	if (clone) {
		/* R4, R5 for a clone: the model's blocks, shared; then the patches. */
		if (mfs_io->ficlone(tfd, mfd) < 0) {
			rc = -errno;
			if (clone_refused(-rc))
				rc = -EOPNOTSUPP;
			rc = mfs_errf(err, errlen, rc, name, "commit: cannot clone the model: %s",
			              strerror(-rc));
			goto out;
		}
		if ((rc = write_patches(tfd, patches, np, buf, hooks, rep)) < 0) {
			rc = mfs_errf(err, errlen, rc, name, "commit: writing the new model: %s",
			              describe(rc));
			goto out;
		}
		total = expect->size;
	} else {
		/* R4 ALLOCATE */
		if (total && mfs_io->fallocate(tfd, 0, (off_t)total) < 0 && errno != EOPNOTSUPP &&
		    errno != EINVAL && errno != ENOSYS) {
			rc = -errno;
			rc = mfs_errf(err, errlen, rc, name, "commit: cannot allocate %llu bytes for "
			              "the new model: %s", (unsigned long long)total, describe(rc));
			goto out;
		}

		/* R5 WRITE; a version is hashed on the way, so every byte goes
		 * through memory (no copy_file_range). */
		bool use_cfr = !ver;
		if (ver && (rc = mfs_sha256_begin(&hash)) < 0) {
			rc = mfs_errf(err, errlen, rc, name, "commit: cannot hash the new version: %s",
			              strerror(-rc));
			goto out;
		}
		if ((rc = write_pieces(tfd, pieces, n, buf, &use_cfr, hash, hooks, rep)) < 0) {
			rc = mfs_errf(err, errlen, rc, name, "commit: writing the new model: %s",
			              describe(rc));
			goto out;
		}
	}

	/* R6 MODE, and the extended attributes (after the mode: an ACL sets the
	 * group bits to its mask, which matches the model's mode). */
	if (mfs_io->fchmod(tfd, st.st_mode & 07777) < 0) {
		rc = mfs_errf(err, errlen, -errno, name, "commit: cannot set the new file's "
		              "mode: %s", strerror(errno));
		goto out;
	}
	if ((rc = copy_xattrs(mfd, tfd, name, err, errlen)) < 0)
		goto out;

	/* R7 SYNC: once, never retried (invariant 5). */
	if (mfs_io->fsync(tfd) < 0) {
		rc = -errno;
		rc = mfs_errf(err, errlen, rc, name, "commit: fsync of the new model failed: %s",
		              describe(rc));
		goto out;
	}
	if (mfs_io->fstat(tfd, &tst) < 0) {
		rc = mfs_errf(err, errlen, -errno, name, "commit: cannot stat %s: %s", tmp,
		              strerror(errno));
		goto out;
	}
	if ((uint64_t)tst.st_size != total) {
		rc = mfs_errf(err, errlen, -EIO, name, "commit: the new file has %llu bytes, "
		              "not %llu", (unsigned long long)tst.st_size,
		              (unsigned long long)total);
		goto out;
	}

	/* R8 CLOSE */
	rc = mfs_io->close(tfd);
	tfd = -1;
	if (rc < 0) {
		rc = -errno;
		rc = mfs_errf(err, errlen, rc, name, "commit: closing the new model failed: %s",
		              describe(rc));
		goto out;
	}

	/* R9 RECHECK */
	rc = mfs_identity_at(&now, dirfd, name);
	if (rc < 0 && rc != -ENOENT && rc != -EINVAL) {
		rc = mfs_errf(err, errlen, rc, name, "commit: cannot stat the model: %s",
		              strerror(-rc));
		goto out;
	}
	if (rc < 0 || !mfs_identity_equal(&now, expect)) {
		rc = mfs_errf(err, errlen, -ESTALE, name, "commit refused: the model changed on "
		              "disk while the commit was being written");
		goto out;
	}
	if (ver) {
		/* V1 NAME: the hash is known; the template gives the name. */
		uint8_t md[32];
		if ((rc = mfs_sha256_final(hash, md)) < 0) {
			rc = mfs_errf(err, errlen, rc, name, "commit: cannot hash the new version: %s",
			              strerror(-rc));
			goto out;
		}
		mfs_hex(ver->sha256, md, 32);
		if ((rc = ver->name(ver->arg, ver->sha256, final, sizeof(final), err, errlen)) < 0)
			goto out;
	}
	struct mfs_identity new_id;
	mfs_identity_from_stat(&new_id, &tst);
	if (hooks->before_install && (rc = hooks->before_install(hooks->arg, &new_id)) < 0) {
		rc = mfs_errf(err, errlen, rc, name, "commit: cannot record it in the journal: %s",
		              describe(rc));
		goto out;
	}

	/* R10 RENAME: the commit point.  A version never replaces a file
	 * (V2: RENAME_NOREPLACE), so a name taken since it was checked is
	 * refused here, atomically. */
	if (ver && mfs_io->rename_noreplace(dirfd, tmp, dirfd, final) < 0) {
		rc = -errno;
		rc = mfs_errf(err, errlen, rc, name, rc == -EEXIST ? "commit refused: %s exists "
		              "already, and a version never overwrites a file" : "commit: cannot "
		              "rename the new version into place (%s): %s", final, strerror(-rc));
		goto out;
	}
	if (!ver && mfs_io->renameat(dirfd, tmp, dirfd, name) < 0) {
		rc = mfs_errf(err, errlen, -errno, name, "commit: cannot rename the new model "
		              "into place: %s", strerror(errno));
		goto out;
	}
	tmp[0] = '\0';
	rep->installed = true;
	if (ver)
		snprintf(ver->name_out, sizeof(ver->name_out), "%s", final);
	/* Its identity as installed: rename moved its ctime. */
	rep->new_id = new_id;
	if (mfs_identity_at(&now, dirfd, ver ? final : name) == 0 && now.dev == new_id.dev &&
	    now.ino == new_id.ino)
		rep->new_id = now;

	/* R11 DIRSYNC */
	rc = mfs_fsync_dir(dirfd);
	if (rc < 0)
		rc = mfs_errf(err, errlen, -EIO, name, "commit: the new model is in place, but "
		              "the directory fsync failed (%s): it may not survive a power cut",
		              strerror(-rc));

	/* R12 DONE, and FAIL */
out:
	if (tfd >= 0)
		mfs_io->close(tfd);
	if (tmp[0])
		mfs_io->unlinkat(dirfd, tmp, 0);
	if (lfd >= 0)
		mfs_io->close(lfd);
	if (mfd >= 0)
		mfs_io->close(mfd);
	mfs_sha256_free(hash);
	free(buf);
	return rc;
}

int mfs_commit_replace(int dirfd, const char *name, const struct mfs_identity *expect,
                       const struct mfs_piece *pieces, size_t n,
                       const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                       char *err, size_t errlen)
{
	struct mfs_commit_report dummy;
	return install(dirfd, name, expect, pieces, n, NULL, 0, NULL, hooks, rep ? rep : &dummy,
	               err, errlen);
}

int mfs_commit_version(int dirfd, const char *name, const struct mfs_identity *expect,
                       const struct mfs_piece *pieces, size_t n, struct mfs_commit_version *ver,
                       const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                       char *err, size_t errlen)
{
	struct mfs_commit_report dummy;
	if (!ver || !ver->name) {
		report_init(rep ? rep : &dummy, "version");
		return mfs_errf(err, errlen, -EINVAL, name, "commit: no version name");
	}
	ver->name_out[0] = ver->sha256[0] = '\0';
	return install(dirfd, name, expect, pieces, n, NULL, 0, ver, hooks, rep ? rep : &dummy,
	               err, errlen);
}

int mfs_commit_clone(int dirfd, const char *name, const struct mfs_identity *expect,
                     const struct mfs_patch *patches, size_t n,
                     const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                     char *err, size_t errlen)
{
	static const struct mfs_patch none;
	struct mfs_commit_report dummy;
	return install(dirfd, name, expect, NULL, 0, patches ? patches : &none, n, NULL, hooks,
	               rep ? rep : &dummy, err, errlen);
}

/* ------------------------------------------------------------ redo log */

struct redo {
	int dirfd;
	const char *name;
	char path[NAME_MAX + 1];
	int rfd;
	uint8_t *buf;
	/* From the header, once verified. */
	uint64_t hdr_len;       /* REDO_HDR, or MFS_SIDEFILE_HDR_V1 for an old log */
	struct mfs_identity id;
	uint64_t journal_id;
	uint32_t n_patches;
	uint64_t data_bytes;
	uint64_t end;           /* bytes before the trailer */
	uint64_t grow;          /* bytes the patches add past the old size (appends) */
	const struct mfs_commit_hooks *hooks;   /* progress of the apply; NULL */
};

static void redo_header(uint8_t h[REDO_HDR], const struct mfs_identity *id, uint32_t n,
                        uint64_t journal_id)
{
	struct mfs_sidefile_hdr sh = {.version = 2, .param = n, .id = *id, .journal_id = journal_id};
	memcpy(sh.magic, redo_magic, 8);
	mfs_sidefile_hdr_put(h, &sh);
}

/*
 * P5 VERIFY: read the log and check it.  Returns 1 when it is committing and
 * intact, 0 when it has no valid trailer (never committing), -EUCLEAN when it
 * has one but a record is damaged, or -errno.
 */
static int redo_verify(struct redo *r)
{
	struct stat sb;
	if (mfs_io->fstat(r->rfd, &sb) < 0)
		return -errno;
	uint64_t fsize = (uint64_t)sb.st_size;
	uint8_t h[REDO_HDR];
	int rc;
	if (fsize < MFS_SIDEFILE_HDR_V1 + TRAILER)
		return 0;
	size_t hl = fsize < REDO_HDR ? (size_t)fsize : REDO_HDR;
	if ((rc = mfs_pread_full(r->rfd, h, hl, 0)) < 0)
		return rc;
	struct mfs_sidefile_hdr sh;
	if (!(hl = mfs_sidefile_hdr_get(&sh, h, hl, redo_magic)) || fsize < hl + TRAILER)
		return 0;
	r->hdr_len = hl;
	r->n_patches = sh.param;
	r->id = sh.id;
	r->journal_id = sh.journal_id;
	uint32_t chain = mfs_crc32(0, h + hl - 4, 4);
	uint64_t pos = hl, total = 0, grow = 0;
	bool damaged = false;
	for (uint32_t i = 0; i < r->n_patches; i++) {
		uint8_t p[PATCH_HDR];
		if (fsize - pos < PATCH_HDR + TRAILER)
			return 0;
		if ((rc = mfs_pread_full(r->rfd, p, PATCH_HDR, pos)) < 0)
			return rc;
		if (memcmp(p, "MFSP", 4) != 0 || mfs_get_le32(p + 28) != mfs_crc32(0, p, 28))
			return 0;
		uint64_t off = mfs_get_le64(p + 8), len = mfs_get_le64(p + 16);
		uint32_t flags = mfs_get_le32(p + 24);
		/* An append patch starts at or before the end the model has
		 * with the earlier ones applied (no holes); others lie inside
		 * the old size. */
		uint64_t lim = r->id.size + ((flags & PATCH_GROWS) ? grow : 0);
		if (len > fsize - pos - PATCH_HDR || (flags & ~PATCH_GROWS) || off > lim ||
		    len > UINT64_MAX - off)
			return 0;
		if (!(flags & PATCH_GROWS) && len > r->id.size - off)
			return 0;
		if (off + len > r->id.size + grow)
			grow = off + len - r->id.size;
		uint32_t crc = 0;
		for (uint64_t done = 0; done < len;) {
			size_t k = len - done > REDO_BUF ? REDO_BUF : (size_t)(len - done);
			if ((rc = mfs_pread_full(r->rfd, r->buf, k, pos + PATCH_HDR + done)) < 0)
				return rc;
			crc = mfs_crc32(crc, r->buf, k);
			done += k;
		}
		damaged |= crc != mfs_get_le32(p + 4);
		chain = mfs_crc32(chain, p + 4, 4);
		total += len;
		pos += PATCH_HDR + len;
	}
	uint8_t t[TRAILER];
	if (fsize - pos < TRAILER)
		return 0;
	if ((rc = mfs_pread_full(r->rfd, t, TRAILER, pos)) < 0)
		return rc;
	if (memcmp(t, "MFSC", 4) != 0 || mfs_get_le32(t + 28) != mfs_crc32(0, t, 28) ||
	    mfs_get_le32(t + 4) != r->n_patches || mfs_get_le64(t + 8) != total || mfs_get_le64(t + 16) != pos ||
	    mfs_get_le32(t + 24) != chain)
		return 0;
	r->data_bytes = total;
	r->end = pos;
	r->grow = grow;
	return damaged ? -EUCLEAN : 1;
}

/*
 * P6 APPLY and P7 SYNC: write every logged patch into the model.  `expect`
 * is the full identity for a live commit; NULL in recovery, where a partial
 * earlier apply may have moved mtime, so only device, inode and size count.
 */
static int redo_apply(struct redo *r, const struct mfs_identity *expect,
                      struct mfs_commit_report *rep, char *err, size_t errlen)
{
	int rc = 0, mfd;
	struct stat sb;
	struct mfs_identity now;
	mfd = mfs_io->openat(r->dirfd, r->name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (mfd < 0)
		return mfs_errf(err, errlen, errno == ENOENT ? -ESTALE : -errno, r->name,
		                "in-place commit: cannot open the model for writing: %s",
		                strerror(errno));
	if (mfs_io->fstat(mfd, &sb) < 0) {
		rc = mfs_errf(err, errlen, -errno, r->name, "in-place commit: cannot stat the "
		              "model: %s", strerror(errno));
		goto out;
	}
	mfs_identity_from_stat(&now, &sb);
	/* An append's earlier, partial apply may have grown the file, by at
	 * most what the log adds. */
	if (!S_ISREG(sb.st_mode) || now.dev != r->id.dev || now.ino != r->id.ino ||
	    now.size < r->id.size || now.size - r->id.size > r->grow ||
	    (expect && !mfs_identity_equal(&now, expect))) {
		rc = mfs_errf(err, errlen, -ESTALE, r->name, "in-place commit: the model is not "
		              "the file the redo log %s was written for", r->path);
		goto out;
	}
	uint64_t pos = r->hdr_len;
	for (uint32_t i = 0; i < r->n_patches; i++) {
		uint8_t p[PATCH_HDR];
		if ((rc = mfs_pread_full(r->rfd, p, PATCH_HDR, pos)) < 0)
			goto io;
		uint64_t off = mfs_get_le64(p + 8), len = mfs_get_le64(p + 16);
		for (uint64_t done = 0; done < len;) {
			size_t k = len - done > REDO_BUF ? REDO_BUF : (size_t)(len - done);
			if ((rc = mfs_pread_full(r->rfd, r->buf, k, pos + PATCH_HDR + done)) < 0 ||
			    (rc = mfs_pwrite_full(mfd, r->buf, k, off + done)) < 0)
				goto io;
			done += k;
			rep->bytes_written += k;
			if (r->hooks)
				progress(r->hooks, k);
		}
		pos += PATCH_HDR + len;
	}
	/* P7: once, never retried on this descriptor (invariant 5). */
	if (mfs_io->fsync(mfd) < 0 || mfs_io->fstat(mfd, &sb) < 0) {
		rc = -errno;
		goto io;
	}
	mfs_identity_from_stat(&rep->new_id, &sb);
	rc = mfs_io->close(mfd);
	mfd = -1;
	if (rc < 0) {
		rc = -errno;
		goto io;
	}
	return 0;
io:
	rc = mfs_errf(err, errlen, rc, r->name, "in-place commit: patching the model failed: "
	              "%s", describe(rc));
out:
	if (mfd >= 0)
		mfs_io->close(mfd);
	return rc;
}

/* P8 DROP: the model is complete and synced; the log may go. */
static void redo_drop(const struct redo *r)
{
	/* If either call fails the log stays, and recovery applies it again:
	 * harmless (invariant 9), so the commit still counts as done. */
	if (mfs_io->unlinkat(r->dirfd, r->path, 0) == 0)
		mfs_fsync_dir(r->dirfd);
}

static int redo_init(struct redo *r, int dirfd, const char *name)
{
	memset(r, 0, sizeof(*r));
	r->dirfd = dirfd;
	r->name = name;
	r->rfd = -1;
	int rc = mfs_sidefile_name(r->path, sizeof(r->path), name, REDO_SUFFIX);
	if (rc < 0)
		return rc;
	r->buf = malloc(REDO_BUF);
	return r->buf ? 0 : -ENOMEM;
}

/* P2 LOG: header and patches; the trailer is written by the caller after
 * a sync.  *chain receives the trailer's CRC, *end its offset. */
static int redo_write(struct redo *r, const struct mfs_identity *id,
                      const struct mfs_patch *patches, size_t n, bool grows,
                      const struct mfs_commit_hooks *hooks, uint32_t *chain, uint64_t *end,
                      uint64_t *data_bytes)
{
	uint8_t h[REDO_HDR];
	redo_header(h, id, (uint32_t)n, hooks->journal_id);
	int rc = mfs_pwrite_full(r->rfd, h, REDO_HDR, 0);
	if (rc < 0)
		return rc;
	*chain = mfs_crc32(0, h + REDO_HDR - 4, 4);
	uint64_t pos = REDO_HDR, total = 0;
	for (size_t i = 0; i < n; i++) {
		const struct mfs_piece *pc = &patches[i].piece;
		uint32_t crc = 0;
		for (uint64_t done = 0; done < pc->len;) {
			size_t want = pc->len - done > REDO_BUF ? REDO_BUF : (size_t)(pc->len - done);
			ssize_t k = piece_read(pc, r->buf, want, done);
			if (k < 0)
				return (int)k;
			crc = mfs_crc32(crc, r->buf, (size_t)k);
			rc = mfs_pwrite_full(r->rfd, r->buf, (size_t)k, pos + PATCH_HDR + done);
			if (rc < 0)
				return rc;
			done += (uint64_t)k;
			progress(hooks, (uint64_t)k);
		}
		uint8_t p[PATCH_HDR] = {'M', 'F', 'S', 'P'};
		mfs_put_le32(p + 4, crc);
		mfs_put_le64(p + 8, patches[i].off);
		mfs_put_le64(p + 16, pc->len);
		mfs_put_le32(p + 24, grows && patches[i].off + pc->len > id->size ? PATCH_GROWS : 0);
		mfs_put_le32(p + 28, mfs_crc32(0, p, 28));
		if ((rc = mfs_pwrite_full(r->rfd, p, PATCH_HDR, pos)) < 0)
			return rc;
		*chain = mfs_crc32(*chain, p + 4, 4);
		pos += PATCH_HDR + pc->len;
		total += pc->len;
	}
	*end = pos;
	*data_bytes = total;
	return 0;
}

/* ------------------------------------------------------------ in place */

static int inplace(int dirfd, const char *name, const struct mfs_identity *expect,
                   const struct mfs_patch *patches, size_t n, bool grows,
                   const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                   char *err, size_t errlen)
{
	const char *path = grows ? "append" : "inplace";
	struct mfs_commit_report dummy;
	struct redo r;
	struct mfs_identity now, want;
	bool marked = false, created = false;
	int rc;

	if (!rep)
		rep = &dummy;
	if (!hooks)
		hooks = &no_hooks;
	if (err && errlen)
		err[0] = '\0';
	if (!expect || n > UINT32_MAX) {
		report_init(rep, path);
		return mfs_errf(err, errlen, -EINVAL, name, "in-place commit: invalid patch list");
	}
	want = *expect;         /* before the report (and maybe *expect) is cleared */
	expect = &want;
	report_init(rep, path);
	/* In place, patches lie inside the model; an append's follow each
	 * other from its end. */
	uint64_t at = expect->size;
	for (size_t i = 0; i < n; i++) {
		uint64_t total;
		bool ok = check_pieces(&total, &patches[i].piece, 1) == 0;
		if (grows)
			ok = ok && patches[i].off == at;
		else
			ok = ok && patches[i].off <= expect->size &&
			     total <= expect->size - patches[i].off;
		if (!ok)
			return mfs_errf(err, errlen, -EINVAL, name, grows ? "append commit: patch "
			                "%zu does not follow the one before" : "in-place commit: "
			                "patch %zu does not lie inside the model", i);
		at += grows ? total : 0;
	}
	if ((rc = redo_init(&r, dirfd, name)) < 0)
		return mfs_errf(err, errlen, rc, name, "in-place commit: %s", strerror(-rc));

	/* P0 CHECK */
	rc = mfs_identity_at(&now, dirfd, name);
	if (rc < 0 && rc != -ENOENT && rc != -EINVAL) {
		rc = mfs_errf(err, errlen, rc, name, "in-place commit: cannot stat the model: %s",
		              strerror(-rc));
		goto out;
	}
	if (rc < 0 || !mfs_identity_equal(&now, expect)) {
		rc = mfs_errf(err, errlen, -ESTALE, name, "commit refused: the model changed on "
		              "disk since it was mounted");
		goto out;
	}

	/* P1 CREATE */
	r.rfd = mfs_io->openat(dirfd, r.path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	                       0600);
	if (r.rfd < 0) {
		rc = errno == EEXIST ? -EBUSY : -errno;
		rc = mfs_errf(err, errlen, rc, name, rc == -EBUSY ? "commit refused: an "
		              "interrupted in-place commit (%s) must be recovered first" :
		              "in-place commit: cannot create %s: %s", r.path, describe(rc));
		goto out;
	}
	created = true;
	if (mfs_io->flock(r.rfd, LOCK_EX | LOCK_NB) < 0) {
		rc = mfs_errf(err, errlen, -errno, name, "in-place commit: cannot lock %s: %s",
		              r.path, strerror(errno));
		goto out;
	}

	/* P2 LOG, P3 SYNC */
	uint32_t chain = 0;
	uint64_t end = 0, data_bytes = 0, total = 0;
	for (size_t i = 0; i < n; i++)
		total += patches[i].piece.len;
	progress_total(hooks, 2 * total);       /* into the log, then into the model */
	r.hooks = hooks;
	rc = redo_write(&r, expect, patches, n, grows, hooks, &chain, &end, &data_bytes);
	if (rc == 0 && mfs_io->fdatasync(r.rfd) < 0)
		rc = -errno;
	if (rc < 0) {
		rc = mfs_errf(err, errlen, rc, name, "in-place commit: writing the redo log %s: "
		              "%s", r.path, describe(rc));
		goto out;
	}

	/* P4 MARK: the commit point. */
	uint8_t t[TRAILER] = {'M', 'F', 'S', 'C'};
	mfs_put_le32(t + 4, (uint32_t)n);
	mfs_put_le64(t + 8, data_bytes);
	mfs_put_le64(t + 16, end);
	mfs_put_le32(t + 24, chain);
	mfs_put_le32(t + 28, mfs_crc32(0, t, 28));
	rc = mfs_pwrite_full(r.rfd, t, TRAILER, end);
	rep->journal_bytes = end + TRAILER;
	if (rc == 0 && mfs_io->fdatasync(r.rfd) < 0)
		rc = -errno;
	if (rc == 0)
		rc = mfs_fsync_dir(dirfd);
	if (rc < 0) {
		/* The trailer may be on disk; if so recovery will finish the
		 * commit, and either way the model has not been touched yet, so
		 * removing the log here is the clean outcome (invariant 10). */
		rc = mfs_errf(err, errlen, rc, name, "in-place commit: marking the redo log %s: "
		              "%s", r.path, describe(rc));
		goto out;
	}
	marked = true;
	if (hooks->after_commit_point)
		hooks->after_commit_point(hooks->arg);

	/* P5 VERIFY, P6 APPLY, P7 SYNC */
	rc = redo_verify(&r);
	if (rc != 1) {
		rc = mfs_errf(err, errlen, rc < 0 ? rc : -EIO, name, "in-place commit: the redo "
		              "log %s did not read back intact", r.path);
		goto out;
	}
	rc = redo_apply(&r, expect, rep, err, errlen);
	if (rc == -ESTALE) {
		/* The model changed after P0 and nothing was written to it: give
		 * the log up rather than overwrite someone else's change. */
		marked = false;
		goto out;
	}
	if (rc < 0)
		goto out;
	rep->installed = true;
	/* P8 DROP is the caller's, with mfs_commit_finish(). */
	created = false;
out:
	if (marked && rc < 0) {
		rep->redo_pending = true;
		created = false;        /* keep it: recovery needs it */
	}
	if (created)
		mfs_io->unlinkat(dirfd, r.path, 0);
	if (r.rfd >= 0)
		mfs_io->close(r.rfd);
	free(r.buf);
	return rc;
}

int mfs_commit_inplace(int dirfd, const char *name, const struct mfs_identity *expect,
                       const struct mfs_patch *patches, size_t n,
                       const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                       char *err, size_t errlen)
{
	return inplace(dirfd, name, expect, patches, n, false, hooks, rep, err, errlen);
}

int mfs_commit_append(int dirfd, const char *name, const struct mfs_identity *expect,
                      const struct mfs_patch *patches, size_t n,
                      const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                      char *err, size_t errlen)
{
	return inplace(dirfd, name, expect, patches, n, true, hooks, rep, err, errlen);
}

void mfs_commit_finish(int dirfd, const char *name)
{
	struct redo r = {.dirfd = dirfd, .name = name};
	if (mfs_sidefile_name(r.path, sizeof(r.path), name, REDO_SUFFIX) == 0)
		redo_drop(&r);
}

int mfs_commit_pending(int dirfd, const char *name, bool *committing)
{
	struct redo r;
	int rc;
	*committing = false;
	if ((rc = redo_init(&r, dirfd, name)) < 0)
		return rc;
	r.rfd = mfs_io->openat(dirfd, r.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (r.rfd < 0) {
		rc = errno == ENOENT ? 0 : -errno;
	} else {
		/* A damaged log with a trailer counts as committing: it may
		 * have been half applied. */
		int v = redo_verify(&r);
		*committing = v != 0;
		rc = v < 0 && v != -EUCLEAN ? v : 1;
		mfs_io->close(r.rfd);
	}
	free(r.buf);
	return rc;
}

int mfs_commit_recover(int dirfd, const char *name, const struct mfs_identity *model,
                       struct mfs_commit_report *rep, char *err, size_t errlen)
{
	return mfs_commit_recover_hooked(dirfd, name, model, NULL, rep, err, errlen);
}

int mfs_commit_recover_hooked(int dirfd, const char *name, const struct mfs_identity *model,
                              const struct mfs_commit_hooks *hooks,
                              struct mfs_commit_report *rep, char *err, size_t errlen)
{
	struct mfs_commit_report dummy;
	struct redo r;
	int rc;

	if (!rep)
		rep = &dummy;
	report_init(rep, "none");
	if (err && errlen)
		err[0] = '\0';
	if ((rc = redo_init(&r, dirfd, name)) < 0)
		return mfs_errf(err, errlen, rc, name, "recovery: %s", strerror(-rc));
	r.rfd = mfs_io->openat(dirfd, r.path, O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
	if (r.rfd < 0) {
		rc = errno == ENOENT ? 0 : mfs_errf(err, errlen, -errno, name, "recovery: cannot "
		                                    "open %s: %s", r.path, strerror(errno));
		goto out;
	}
	if (mfs_io->flock(r.rfd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		rc = mfs_errf(err, errlen, rc, name, "recovery: %s is held by a live process "
		              "(%s)", r.path, strerror(-rc));
		goto out;
	}
	rc = redo_verify(&r);
	if (rc == 0) {
		/* Never marked committing: the model was never written. */
		if (mfs_io->unlinkat(dirfd, r.path, 0) < 0) {
			rc = mfs_errf(err, errlen, -errno, name, "recovery: cannot remove %s: %s",
			              r.path, strerror(errno));
			goto out;
		}
		mfs_fsync_dir(dirfd);
		rep->discarded = true;
		mfs_errf(err, errlen, 0, name, "removed %s, an in-place commit that never "
		         "started patching (the model is the old version)", r.path);
		goto out;
	}
	if (rc < 0) {
		rc = mfs_errf(err, errlen, rc, name, "recovery: %s is damaged (%s); it was not "
		              "applied and is kept", r.path, strerror(-rc));
		goto out;
	}
	/* An append may change the layout (a pack's new index), and a whole
	 * earlier apply shows it: its guard is the size range (redo_apply). */
	if (!r.grow && model && model->layout && r.id.layout && model->layout != r.id.layout) {
		rc = mfs_errf(err, errlen, -ESTALE, name, "recovery: %s was written for a model "
		              "of another layout (the file was replaced); it was not applied and "
		              "is kept: move it away to use the model as it is", r.path);
		goto out;
	}
	rep->path = r.grow ? "append" : "inplace";
	rep->journal_bytes = r.end + TRAILER;
	rep->journal_id = r.journal_id;
	if (hooks) {
		r.hooks = hooks;
		progress_total(hooks, r.data_bytes);
	}
	if ((rc = redo_apply(&r, NULL, rep, err, errlen)) < 0)
		goto out;
	rep->installed = rep->recovered = true;
	redo_drop(&r);
	mfs_errf(err, errlen, 0, name, "finished an interrupted %s commit from %s "
	         "(%llu bytes)", r.grow ? "append" : "in-place", r.path,
	         (unsigned long long)r.data_bytes);
out:
	if (r.rfd >= 0)
		mfs_io->close(r.rfd);
	free(r.buf);
	return rc;
}

/* ------------------------------------------------------------ gc */

/* "<pid>-<hex>", as R1 makes them. */
static bool temp_tail(const char *s)
{
	const char *p = s;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p == s || *p++ != '-' || !*p)
		return false;
	for (; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

int mfs_commit_gc(int dirfd, const char *name)
{
	char prefix[NAME_MAX + 1];
	int rc = mfs_sidefile_name(prefix, sizeof(prefix), name, TMP_SUFFIX);
	if (rc < 0)
		return rc;
	size_t plen = strlen(prefix);
	int dfd = mfs_io->openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		rc = -errno;
		mfs_io->close(dfd);
		return rc;
	}
	int removed = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, plen) != 0 || !temp_tail(de->d_name + plen))
			continue;
		int fd = mfs_io->openat(dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
		                        O_CLOEXEC, 0);
		if (fd < 0)
			continue;       /* gone already, or not ours to judge */
		struct stat sb;
		/* A lock we can take means its owner is gone (invariant 4). */
		if (mfs_io->fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
		    mfs_io->flock(fd, LOCK_EX | LOCK_NB) == 0 &&
		    mfs_io->unlinkat(dirfd, de->d_name, 0) == 0)
			removed++;
		mfs_io->close(fd);
	}
	closedir(d);
	return removed;
}

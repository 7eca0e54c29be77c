/*
 * codec/pack/check.c — unpacking a pack and verifying a pack or a model:
 * every SHA-256 recomputed from the bytes (libcrypto), compared with the
 * manifest's (doc/pack.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "pack/pack.h"
#include "source/place.h"
#include "txn/commit.h"

#define PIECE (1u << 20)

static int open_pack(struct mfs_pack **pk, const char *path, char *err, size_t errlen)
{
	/* Through the place kinds: a pack behind a URL verifies and unpacks
	 * as a local one does. */
	struct mfs_source *src;
	int rc = mfs_place_open_file(&src, path, err, errlen);
	if (rc < 0)
		return rc;
	rc = pk_open(pk, src, path, err, errlen);
	/* An appending commit killed while it wrote leaves the pack's end
	 * torn and its redo log beside it: say what finishes it (these
	 * tools only read). */
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	bool committing = false;
	if (rc < 0 && !strstr(path, "://") &&
	    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path + 1) : 1,
	             slash ? path : ".") < (int)sizeof(dir)) {
		int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0 && mfs_commit_pending(dfd, slash ? slash + 1 : path, &committing) == 1 &&
		    committing)
			rc = mfs_errf(err, errlen, -EBUSY, path, "an interrupted commit is not finished "
			              "(its redo log is beside the pack): run 'modelfs recover %s' or "
			              "mount it read-write first", path);
		if (dfd >= 0)
			close(dfd);
	}
	return rc;
}

/*
 * Stream original file `f` through SHA-256, and to `fd` when >= 0.
 * Returns 0 or -errno with a line in err.
 */
static int stream_file(struct mfs_pack *pk, uint32_t f, int fd, uint8_t sha[32], char *err,
                       size_t errlen)
{
	const struct pk_file *pf = &pk->files[f];
	uint8_t *buf = malloc(PIECE);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int rc = 0;
	if (!buf || !c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		rc = mfs_errf(err, errlen, -ENOMEM, pk->display, "out of memory");
		goto out;
	}
	uint32_t k = pf->first, end = pf->first + pf->n;
	for (uint64_t off = 0; off < pf->size;) {
		/* Pieces end at chunk ends: as many whole chunks as fit in PIECE
		 * bytes, which pk_pread decompresses straight into buf, or else
		 * (a chunk bigger than PIECE) PIECE bytes of the chunk, through
		 * the cache, up to its end. */
		while (k < end && pk->chunks[k].orig_off + pk->chunks[k].raw_len <= off)
			k++;
		size_t n = 0;
		for (uint32_t e = k; e < end && pk->chunks[e].orig_off == off + n &&
		     n + pk->chunks[e].raw_len <= PIECE; e++)
			n += pk->chunks[e].raw_len;
		if (n == 0 && k < end) {
			uint64_t left = pk->chunks[k].orig_off + pk->chunks[k].raw_len - off;
			n = left < PIECE ? (size_t)left : PIECE;
		}
		if (n == 0)
			n = pf->size - off < PIECE ? (size_t)(pf->size - off) : PIECE;
		ssize_t r = pk_pread(pk, f, buf, n, off);
		if (r <= 0) {
			char why[512];
			pk_last_error(pk, why, sizeof(why));
			rc = -EIO;
			if (why[0])
				snprintf(err, errlen, "%s (in %s)", why, pf->path);
			else
				rc = mfs_errf(err, errlen, -EIO, pk->display, "%s: cannot decompress the "
				              "bytes at offset %llu", pf->path, (unsigned long long)off);
			goto out;
		}
		EVP_DigestUpdate(c, buf, (size_t)r);
		for (size_t done = 0; fd >= 0 && done < (size_t)r;) {
			ssize_t w = write(fd, buf + done, (size_t)r - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = mfs_errf(err, errlen, w < 0 ? -errno : -EIO, pf->path, "write: %s",
				              strerror(w < 0 ? errno : EIO));
				goto out;
			}
			done += (size_t)w;
		}
		off += (uint64_t)r;
	}
	unsigned hl = 32;
	EVP_DigestFinal_ex(c, sha, &hl);
out:
	EVP_MD_CTX_free(c);
	free(buf);
	return rc;
}

/* Make the directories above `path` beneath `dirfd`. */
static int make_parents(int dirfd, const char *path)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s", path);
	for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdirat(dirfd, p, 0755) < 0 && errno != EEXIST)
			return -errno;
		struct stat st;
		if (fstatat(dirfd, p, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
		*s = '/';
	}
	return 0;
}

int mfs_pack_unpack(const char *pack, const char *dir, char *err, size_t errlen)
{
	struct mfs_pack *pk;
	int rc = open_pack(&pk, pack, err, errlen);
	if (rc < 0)
		return rc;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = mfs_errf(err, errlen, -errno, dir, "cannot make the directory: %s",
		              strerror(errno));
		pk_unref(pk);
		return rc;
	}
	int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = mfs_errf(err, errlen, -errno, dir, "%s", strerror(errno));
		pk_unref(pk);
		return rc;
	}
	for (uint32_t f = 0; f < pk->n_files && rc == 0; f++) {
		const struct pk_file *pf = &pk->files[f];
		if ((rc = make_parents(dfd, pf->path)) < 0) {
			mfs_errf(err, errlen, rc, pf->path, "cannot make its directory in %s: %s", dir,
			         strerror(-rc));
			break;
		}
		int fd = openat(dfd, pf->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		                0600);
		if (fd < 0) {
			rc = mfs_errf(err, errlen, -errno, pf->path, "cannot create it in %s: %s", dir,
			              strerror(errno));
			break;
		}
		uint8_t sha[32];
		rc = stream_file(pk, f, fd, sha, err, errlen);
		if (rc == 0 && pf->sha_known && memcmp(sha, pf->sha256, 32)) {
			char a[65], b[65];
			mfs_hex(a, sha, 32);
			mfs_hex(b, pf->sha256, 32);
			rc = mfs_errf(err, errlen, -EBADMSG, pack, "%s: SHA-256 %s is not the "
			              "manifest's %s (a damaged pack)", pf->path, a, b);
		}
		struct timespec ts[2] = {{.tv_sec = pf->mtime_sec, .tv_nsec = pf->mtime_nsec},
		                         {.tv_sec = pf->mtime_sec, .tv_nsec = pf->mtime_nsec}};
		if (rc == 0 && (fchmod(fd, pf->mode) < 0 || futimens(fd, ts) < 0 || fsync(fd) < 0))
			rc = mfs_errf(err, errlen, -errno, pf->path, "%s", strerror(errno));
		close(fd);
		if (rc < 0)
			unlinkat(dfd, pf->path, 0);
	}
	close(dfd);
	pk_unref(pk);
	return rc;
}

/* ------------------------------------------------------------ verify */

struct file_src {
	const mfs_model *m;
	size_t i;
};

static ssize_t file_rd(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct file_src *r = arg;
	return mfs_file_read(r->m, r->i, buf, len, off);
}

static int verify_model(const char *path, FILE *out, char *err, size_t errlen)
{
	mfs_model *m;
	int rc = mfs_model_open(&m, path, NULL, err, errlen);
	if (rc < 0)
		return rc;
	const struct mfs_desc *d = mfs_model_desc(m);
	char hex[65];
	for (size_t i = 0; i < d->n_files && rc == 0; i++) {
		struct file_src r = {m, i};
		uint8_t sha[32];
		int e = mfs_sha256(sha, d->files[i].size, file_rd, &r);
		if (e < 0) {
			rc = mfs_errf(err, errlen, e == -EUCLEAN ? -EIO : e, d->files[i].path,
			              "cannot read");
			break;
		}
		mfs_hex(hex, sha, 32);
		fprintf(out, "%s  %s\n", hex, d->files[i].path);
	}
	for (uint64_t i = 0; i < d->n_tensors && rc == 0; i++) {
		uint8_t sha[32];
		if ((rc = mfs_pack_tensor_sha(m, d->tensors[i], sha)) < 0) {
			mfs_errf(err, errlen, rc, path, "tensor %s: cannot read: %s", d->tensors[i]->name,
			         strerror(-rc));
			break;
		}
		mfs_hex(hex, sha, 32);
		fprintf(out, "%s  tensor:%s\n", hex, d->tensors[i]->name);
	}
	mfs_model_close(m);
	return rc;
}

static int verify_pack(const char *path, FILE *out, char *err, size_t errlen)
{
	struct mfs_pack *pk;
	int rc = open_pack(&pk, path, err, errlen);
	if (rc < 0)
		return rc;
	unsigned bad = 0, unknown = 0;
	char a[65], b[65];
	for (uint32_t f = 0; f < pk->n_files; f++) {
		uint8_t sha[32];
		if ((rc = stream_file(pk, f, -1, sha, err, errlen)) < 0) {
			pk_unref(pk);
			return rc;
		}
		if (!pk->files[f].sha_known) {
			/* An appending commit changed it: every chunk's checksum
			 * was checked on the way, and its tensors are below. */
			mfs_hex(a, sha, 32);
			fprintf(out, "%s: %s: SHA-256 %s (the manifest records none since an "
			        "appending commit; a commit=rewrite records it)\n", path,
			        pk->files[f].path, a);
			unknown++;
		} else if (memcmp(sha, pk->files[f].sha256, 32)) {
			mfs_hex(a, sha, 32);
			mfs_hex(b, pk->files[f].sha256, 32);
			fprintf(out, "%s: %s: SHA-256 %s, the manifest says %s\n", path,
			        pk->files[f].path, a, b);
			bad++;
		}
	}
	/* The tensors, as the model's format finds them inside the pack. */
	mfs_model *m;
	if (!bad && (rc = mfs_model_open(&m, path, NULL, err, errlen)) < 0) {
		pk_unref(pk);
		return rc;
	}
	if (!bad) {
		const struct mfs_desc *d = mfs_model_desc(m);
		if (d->n_tensors != pk->n_tensors) {
			fprintf(out, "%s: the model has %llu tensors, the manifest %u\n", path,
			        (unsigned long long)d->n_tensors, pk->n_tensors);
			bad++;
		}
		for (uint64_t i = 0; !bad && i < d->n_tensors; i++) {
			uint8_t sha[32];
			if ((rc = mfs_pack_tensor_sha(m, d->tensors[i], sha)) < 0) {
				mfs_errf(err, errlen, rc, path, "tensor %s: cannot read: %s",
				         d->tensors[i]->name, strerror(-rc));
				break;
			}
			if (strcmp(d->tensors[i]->name, pk->tensors[i].name) ||
			    memcmp(sha, pk->tensors[i].sha256, 32)) {
				mfs_hex(a, sha, 32);
				mfs_hex(b, pk->tensors[i].sha256, 32);
				fprintf(out, "%s: tensor %s: SHA-256 %s, the manifest says %s (for %s)\n",
				        path, d->tensors[i]->name, a, b, pk->tensors[i].name);
				bad++;
			}
		}
		if (rc == 0 && !bad)
			fprintf(out, "%s: ok: %u files and %llu tensors match the manifest\n", path,
			        pk->n_files - unknown, (unsigned long long)d->n_tensors);
		mfs_model_close(m);
	}
	pk_unref(pk);
	if (rc < 0)
		return rc;
	if (bad)
		return mfs_errf(err, errlen, -EBADMSG, path, "%u SHA-256 mismatch%s with the "
		                "manifest", bad, bad == 1 ? "" : "es");
	return 0;
}

int mfs_pack_verify(const char *path, FILE *out, char *err, size_t errlen)
{
	return mfs_pack_path(path) ? verify_pack(path, out, err, errlen)
	                           : verify_model(path, out, err, errlen);
}

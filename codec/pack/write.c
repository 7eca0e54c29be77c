/*
 * codec/pack/write.c — making a pack (doc/pack.md).
 *
 * The model is opened with its own format, which names its files and
 * where its tensors lie.  Each file is cut into chunks of at most
 * chunk_size bytes, with cuts at the boundaries of float tensors, so that
 * a chunk is either all one float tensor (byte-grouped, pack.h) or bytes
 * kept as they are.  Chunks go in batches: workers read, hash and compress
 * the chunks of a batch in parallel while the calling thread writes the
 * frames of the batch before, in order, storing a chunk whose hash it has
 * seen once (struct pipe).  Memory is two batches, whatever the model's
 * size.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "core/core.h"
#include "core/crc32.h"
#include "pack/pack.h"

struct job {
	uint32_t file;
	uint64_t off;
	uint32_t len;
	uint8_t t;
	uint8_t *raw, *tmp, *out;       /* chunk_size, chunk_size, bound */
	size_t out_len;
	uint8_t sha[32];
	int rc;
};

struct batch {
	const mfs_model *m;
	struct job *jobs;
	size_t n;
	size_t next;                    /* atomic: the next job to take */
	int level;
	bool plain;
	ZSTD_CCtx **cctx;               /* one per worker id: 0 the caller, 1.. helpers */
	unsigned helpers;               /* threads started by batch_start */
	pthread_t tid[256];
	struct worker_arg {
		struct batch *b;
		unsigned id;
	} wa[256];
};

struct seg {
	uint64_t off, len;
	uint8_t t;
};

struct dedupe {
	uint8_t sha[32];        /* chunk_hash, arrangement xored in */
	uint64_t frame_off;
	uint32_t frame_len;
	uint32_t file;          /* where its bytes are in the model, to compare */
	uint64_t off;
	uint32_t len;
	uint8_t t;
	bool used;
};

struct writer {
	int fd;
	uint64_t pos;
	EVP_MD_CTX *sha;                /* of the whole pack */
	struct mfs_buf seek_chunks;     /* PK_SEEK_CHUNK entries */
	uint32_t n_chunks;
	struct dedupe *dd;
	size_t dd_cap, dd_n;
	uint64_t deduped;
};

static int buf_add(struct mfs_buf *b, const void *p, size_t n)
{
	mfs_buf_add(b, p, n);
	return b->oom ? -ENOMEM : 0;
}

unsigned pk_transform_of(int32_t dtype)
{
	switch (dtype) {
	case MFS_DT_FLOAT:
		return PK_T_F32;
	case MFS_DT_BFLOAT16:
		return PK_T_BF16;
	case MFS_DT_FLOAT16:
		return PK_T_G2;
	default:
		return PK_T_RAW;
	}
}

static int seg_cmp(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/*
 * The float tensors of file `f` as sorted, non-overlapping segments (a
 * tensor overlapping an earlier one, a view of shared storage, is left to
 * the raw bytes around it).  *out is malloc'd.
 */
static int float_segs(const mfs_model *m, uint32_t f, struct seg **out, size_t *n)
{
	const struct mfs_desc *d = mfs_model_desc(m);
	struct seg *s = NULL;
	size_t k = 0, cap = 0;
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		const struct mfs_tensor *t = d->tensors[i];
		unsigned tr = pk_transform_of(t->dtype);
		if (tr == PK_T_RAW || t->src != f || t->mem || !(t->flags & MFS_TENSOR_CONTIGUOUS) ||
		    t->nbytes < 4096 || t->nbytes % pk_elem(tr) || t->off > d->files[f].size ||
		    t->nbytes > d->files[f].size - t->off)
			continue;
		if (k == cap) {
			cap = cap ? cap * 2 : 64;
			struct seg *ns = realloc(s, cap * sizeof(*s));
			if (!ns) {
				free(s);
				return -ENOMEM;
			}
			s = ns;
		}
		s[k++] = (struct seg){.off = t->off, .len = t->nbytes, .t = (uint8_t)tr};
	}
	if (k)
		qsort(s, k, sizeof(*s), seg_cmp);
	size_t w = 0;
	for (size_t i = 0; i < k; i++)
		if (!w || s[i].off >= s[w - 1].off + s[w - 1].len)
			s[w++] = s[i];
	*out = s;
	*n = w;
	return 0;
}

/* ------------------------------------------------------------ workers */

/*
 * A fast hash that finds candidate duplicate chunks; a candidate is then
 * compared byte for byte with the earlier chunk (same_chunk), so its
 * quality costs time, never correctness.  Two independent 64-bit lanes.
 */
static void chunk_hash(uint8_t out[32], const uint8_t *p, size_t n)
{
	uint64_t a = 0x243F6A8885A308D3ull ^ n, b = 0x13198A2E03707344ull;
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		uint64_t x, y;
		memcpy(&x, p + i, 8);
		memcpy(&y, p + i + 8, 8);
		a = (a ^ x) * 0x9E3779B97F4A7C15ull;
		b = (b ^ y) * 0xC2B2AE3D27D4EB4Full;
		a ^= a >> 29;
		b ^= b >> 31;
	}
	for (; i < n; i++)
		a = (a ^ p[i]) * 0x100000001B3ull;
	memset(out, 0, 32);
	memcpy(out, &a, 8);
	memcpy(out + 8, &b, 8);
}

/* One plane as one zstd frame: the weak fast finder, or (opt) the optimal
 * parser with a small search.  Returns its length or a zstd error code. */
static size_t plane_frame(ZSTD_CCtx *cc, uint8_t *out, size_t cap, const uint8_t *src,
                          size_t len, bool opt)
{
	ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_strategy, opt ? ZSTD_btopt : ZSTD_fast);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_minMatch, opt ? 6 : 7);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_hashLog, opt ? 10 : 6);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_searchLog, 1);
	if (opt) {
		ZSTD_CCtx_setParameter(cc, ZSTD_c_chainLog, 10);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_targetLength, 8);
	}
	ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
	return ZSTD_compress2(cc, out, cap, src, len);
}

int pk_compress(ZSTD_CCtx *cc, uint8_t *out, size_t cap, size_t *out_len, const uint8_t *raw,
                uint8_t *tmp, size_t len, unsigned t, int level)
{
	if (t == PK_T_RAW) {
		ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
		size_t n = ZSTD_compress2(cc, out, cap, raw, len);
		if (ZSTD_isError(n))
			return -EIO;
		*out_len = n;
		return 0;
	}
	/*
	 * One frame per plane, concatenated (zstd decompresses a run of frames
	 * as one).  The exponent plane is a few dozen values with no long
	 * repeats: zstd's match finder only gets in the way, so it is made as
	 * weak as the public parameters allow (ZSTD_fast, minMatch 7, the
	 * smallest hash table, 2^6 entries: fewer matches found, each of which
	 * would cost more than its Huffman-coded literals; measured against
	 * 2^10, real bf16 1.4715x -> 1.4746x, i.i.d. bf16 1.5006x -> 1.5082x,
	 * and faster) and the entropy coder does the work.  A mantissa plane that does not compress is stored in raw
	 * blocks by zstd itself.  Every frame carries zstd's content checksum,
	 * which every decompression checks: a pack changed on disk under a
	 * mount (a flipped byte, another pack of the same size) reads as EIO,
	 * never as other bytes.
	 *
	 * At --level PK_LEVEL_OPT and above, the exponent plane (the last:
	 * the element's high byte) also goes through zstd's optimal parser
	 * with a small search, and the smaller frame is kept: the parser takes
	 * a match only where it costs fewer bits than the Huffman-coded
	 * literals, which brings the plane from above its order-0 entropy to a
	 * little below it, at about a tenth of the speed (measured on real
	 * bf16 weights: 29 vs 435 MB/s of plane on one core).  Readers need
	 * nothing new: it is an ordinary zstd frame.
	 */
	pk_group(tmp, raw, len, t);
	unsigned e = pk_elem(t);
	size_t plane = len / e, pos = 0;
	for (unsigned p = 0; p < e; p++) {
		size_t n = plane_frame(cc, out + pos, cap - pos, tmp + p * plane, plane, false);
		if (ZSTD_isError(n))
			return -EIO;
		if (level >= PK_LEVEL_OPT && p == e - 1) {
			/* The optimal parser's frame where it is the smaller: on
			 * small or noise-like planes its cost model starts from
			 * guesses and the fast frame can win. */
			size_t bound = ZSTD_compressBound(plane);
			uint8_t *alt = malloc(bound);
			size_t m = alt ? plane_frame(cc, alt, bound, tmp + p * plane, plane, true) : 0;
			if (!alt || ZSTD_isError(m)) {
				free(alt);
				return -EIO;
			}
			if (m < n && m <= cap - pos) {
				memcpy(out + pos, alt, m);
				n = m;
			}
			free(alt);
		}
		pos += n;
	}
	*out_len = pos;
	return 0;
}

static int compress_job(struct batch *b, struct job *j, ZSTD_CCtx *cc)
{
	ssize_t r = mfs_file_read(b->m, j->file, j->raw, j->len, j->off);
	if (r < 0)
		return (int)r;
	if ((size_t)r != j->len)
		return -EIO;
	if (!b->plain)
		chunk_hash(j->sha, j->raw, j->len);
	return pk_compress(cc, j->out, ZSTD_compressBound(j->len) + 64, &j->out_len, j->raw,
	                   j->tmp, j->len, j->t, b->level);
}

static void *worker(void *arg)
{
	struct worker_arg *w = arg;
	struct batch *b = w->b;
	for (;;) {
		size_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
		if (i >= b->n)
			break;
		b->jobs[i].rc = compress_job(b, &b->jobs[i], b->cctx[w->id]);
	}
	return NULL;
}

/*
 * Start compressing batch b on `helpers` threads of its own (worker ids 1
 * to helpers) and return at once, so that the caller can write the batch
 * before it meanwhile; batch_finish() joins in and waits.  A helper that
 * cannot be started only means fewer helpers: the caller does the rest.
 */
static void batch_start(struct batch *b, unsigned helpers)
{
	b->next = 0;
	b->helpers = 0;
	for (unsigned t = 1; t <= helpers; t++) {
		b->wa[t] = (struct worker_arg){.b = b, .id = t};
		if (pthread_create(&b->tid[t], NULL, worker, &b->wa[t]) != 0)
			break;
		b->helpers = t;
	}
}

/* Compress what is left of batch b on the calling thread (worker id 0),
 * wait for its helpers; 0 or the first job's error. */
static int batch_finish(struct batch *b)
{
	b->wa[0] = (struct worker_arg){.b = b, .id = 0};
	worker(&b->wa[0]);
	for (unsigned t = 1; t <= b->helpers; t++)
		pthread_join(b->tid[t], NULL);
	b->helpers = 0;
	for (size_t i = 0; i < b->n; i++)
		if (b->jobs[i].rc < 0)
			return b->jobs[i].rc;
	return 0;
}

/* ------------------------------------------------------------ output */

static int out_write(struct writer *w, const void *p, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = mfs_io->pwrite(w->fd, (const uint8_t *)p + done, n - done,
		                           (off_t)(w->pos + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	if (EVP_DigestUpdate(w->sha, p, n) != 1)
		return -EIO;
	w->pos += n;
	return 0;
}

static int out_skippable(struct writer *w, uint32_t magic, const void *p, size_t n)
{
	uint8_t h[8];
	mfs_put_le32(h, magic);
	mfs_put_le32(h + 4, (uint32_t)n);
	int rc = out_write(w, h, 8);
	return rc < 0 ? rc : out_write(w, p, n);
}

static struct dedupe *dd_find(struct writer *w, const uint8_t sha[32])
{
	if (!w->dd_cap)
		return NULL;
	size_t h = mfs_get_le64(sha) & (w->dd_cap - 1);
	while (w->dd[h].used) {
		if (!memcmp(w->dd[h].sha, sha, 32))
			return &w->dd[h];
		h = (h + 1) & (w->dd_cap - 1);
	}
	return &w->dd[h];
}

static int dd_grow(struct writer *w)
{
	if (w->dd_cap && w->dd_n * 2 < w->dd_cap)
		return 0;
	size_t cap = w->dd_cap ? w->dd_cap * 2 : 1024;
	struct dedupe *old = w->dd;
	size_t ocap = w->dd_cap;
	w->dd = calloc(cap, sizeof(*w->dd));
	if (!w->dd) {
		w->dd = old;
		return -ENOMEM;
	}
	w->dd_cap = cap;
	for (size_t i = 0; i < ocap; i++)
		if (old[i].used)
			*dd_find(w, old[i].sha) = old[i];
	free(old);
	return 0;
}

static int add_chunk(struct writer *w, uint64_t off, uint32_t len, uint32_t raw, uint8_t t)
{
	uint8_t e[PK_SEEK_CHUNK] = {0};
	mfs_put_le64(e, off);
	mfs_put_le32(e + 8, len);
	mfs_put_le32(e + 12, raw);
	e[16] = t;
	w->n_chunks++;
	return buf_add(&w->seek_chunks, e, sizeof(e));
}

/* Are the earlier chunk's bytes those of job j?  1, 0, or -errno. */
static int same_chunk(const mfs_model *m, const struct dedupe *d, const struct job *j)
{
	if (d->len != j->len || d->t != j->t)
		return 0;
	uint8_t *buf = malloc(j->len);
	if (!buf)
		return -ENOMEM;
	ssize_t r = mfs_file_read(m, d->file, buf, j->len, d->off);
	int rc = r < 0 ? (int)r : (size_t)r == j->len && !memcmp(buf, j->raw, j->len);
	free(buf);
	return rc;
}

/* Write the batch's frames in order; a chunk seen before is not stored. */
static int flush_batch(struct writer *w, struct batch *b, EVP_MD_CTX *fsha)
{
	for (size_t i = 0; i < b->n; i++) {
		struct job *j = &b->jobs[i];
		if (EVP_DigestUpdate(fsha, j->raw, j->len) != 1)
			return -EIO;
		/* The hash covers the arrangement too: the same bytes grouped
		 * differently are a different frame. */
		j->sha[0] ^= j->t;
		struct dedupe *d = NULL;
		if (!b->plain) {
			if (dd_grow(w) < 0)
				return -ENOMEM;
			d = dd_find(w, j->sha);
			int same = d->used ? same_chunk(b->m, d, j) : 0;
			if (same < 0)
				return same;
			if (d->used && !same)
				d = NULL;       /* a hash collision: store it, share nothing */
			if (d && d->used) {
				w->deduped++;
				int rc = add_chunk(w, d->frame_off, d->frame_len, j->len, j->t);
				if (rc < 0)
					return rc;
				continue;
			}
		}
		uint64_t at = w->pos;
		int rc = out_write(w, j->out, j->out_len);
		if (rc < 0)
			return rc;
		if (d) {
			memcpy(d->sha, j->sha, 32);
			d->frame_off = at;
			d->frame_len = (uint32_t)j->out_len;
			d->file = j->file;
			d->off = j->off;
			d->len = j->len;
			d->t = j->t;
			d->used = true;
			w->dd_n++;
		}
		if ((rc = add_chunk(w, at, (uint32_t)j->out_len, j->len, j->t)) < 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ manifest */

struct tensor_src {
	const mfs_model *m;
	const struct mfs_tensor *t;
};

static ssize_t tensor_rd(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct tensor_src *r = arg;
	return mfs_tensor_read(r->m, r->t, buf, len, off);
}

int mfs_pack_tensor_sha(const mfs_model *m, const struct mfs_tensor *t, uint8_t out[32])
{
	struct tensor_src r = {m, t};
	int rc = mfs_sha256(out, t->nbytes, tensor_rd, &r);
	return rc == -EUCLEAN ? -EIO : rc;      /* a tensor that ends early: a read error */
}

char *pk_manifest(const char *format, int level, uint32_t chunk_size, bool plain,
                  const struct pk_mfile *files, size_t n_files, const char *const *tnames,
                  uint8_t (*tsha)[32], size_t n_tensors)
{
	json_t *root = json_object(), *jf = json_array(), *tens = json_array();
	json_t *opt = json_object();
	char hex[65];
	if (!root || !jf || !tens || !opt) {
		json_decref(jf);
		json_decref(tens);
		json_decref(opt);
		json_decref(root);
		return NULL;
	}
	json_object_set_new(root, "version", json_sprintf("%u.%u", MFS_PACK_MAJOR, MFS_PACK_MINOR));
	json_object_set_new(root, "format", json_string(format));
	json_object_set_new(root, "files", jf);
	json_object_set_new(root, "tensors", tens);
	json_object_set_new(root, "options", opt);
	json_object_set_new(opt, "level", json_integer(level));
	json_object_set_new(opt, "chunk_size", json_integer(chunk_size));
	json_object_set_new(opt, "plain", json_boolean(plain));
	json_object_set_new(opt, "grouping", json_string(plain ? "none" : "float"));
	for (size_t i = 0; i < n_files; i++) {
		json_t *f = json_object();
		json_object_set_new(f, "path", json_string(files[i].path));
		json_object_set_new(f, "size", json_integer((json_int_t)files[i].size));
		json_object_set_new(f, "mode", json_integer(files[i].mode & 07777));
		json_object_set_new(f, "mtime_sec", json_integer(files[i].mtime_sec));
		json_object_set_new(f, "mtime_nsec", json_integer(files[i].mtime_nsec));
		if (files[i].sha256)
			mfs_hex(hex, files[i].sha256, 32);
		json_object_set_new(f, "sha256", files[i].sha256 ? json_string(hex) : json_null());
		json_array_append_new(jf, f);
	}
	for (size_t i = 0; i < n_tensors; i++) {
		mfs_hex(hex, tsha[i], 32);
		json_t *t = json_object();
		json_object_set_new(t, "name", json_string(tnames[i]));
		json_object_set_new(t, "sha256", json_string(hex));
		json_array_append_new(tens, t);
	}
	char *js = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return js;
}

/* The manifest of a pack of model m (pk_manifest); *rc says why not. */
static char *manifest(const mfs_model *m, const struct mfs_pack_opts *o, uint8_t (*fsha)[32],
                      uint8_t (*tsha)[32], int *rc)
{
	const struct mfs_desc *d = mfs_model_desc(m);
	struct pk_mfile *files = calloc(d->n_files ? d->n_files : 1, sizeof(*files));
	const char **names = calloc(d->n_tensors ? d->n_tensors : 1, sizeof(*names));
	char *js = NULL;
	*rc = -ENOMEM;
	if (!files || !names)
		goto out;
	for (size_t i = 0; i < d->n_files; i++) {
		struct stat st;
		int r = mfs_file_stat(&st, m, i);
		if (r < 0) {
			*rc = r;
			goto out;
		}
		files[i] = (struct pk_mfile){.path = d->files[i].path, .size = d->files[i].size,
		                             .mode = st.st_mode & 07777,
		                             .mtime_sec = d->files[i].mtime_sec,
		                             .mtime_nsec = d->files[i].mtime_nsec,
		                             .sha256 = fsha[i]};
	}
	for (uint64_t i = 0; i < d->n_tensors; i++)
		names[i] = d->tensors[i]->name;
	js = pk_manifest(d->format, o->level, o->chunk_size, o->plain, files, d->n_files, names,
	                 tsha, d->n_tensors);
	if (js)
		*rc = 0;
out:
	free(files);
	free(names);
	return js;
}

/*
 * The tensors' hashes are a second read of the model, independent of the
 * chunks: a thread of its own does it while the chunks compress, so that
 * its SHA-256 is off the critical path.
 */
struct tensor_hashes {
	const mfs_model *m;
	uint8_t (*sha)[32];
	int rc;
	uint64_t bad;           /* the tensor that failed */
};

static void *hash_tensors(void *arg)
{
	struct tensor_hashes *th = arg;
	const struct mfs_desc *d = mfs_model_desc(th->m);
	th->rc = 0;
	for (uint64_t i = 0; i < d->n_tensors && th->rc == 0; i++) {
		th->rc = mfs_pack_tensor_sha(th->m, d->tensors[i], th->sha[i]);
		th->bad = i;
	}
	return NULL;
}

/* ------------------------------------------------------------ the pack */

static unsigned cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

/*
 * Two batches, so that writing one overlaps compressing the next: while
 * the calling thread writes batch A's frames (file SHA-256, dedupe, the
 * pack's SHA-256 and the write: serial work), `threads` helpers compress
 * batch B, and the caller joins them when it is done.  With one thread
 * there are no helpers and the caller does both in turn.  A file's last
 * batch is written before the next file starts, so that each file's hash
 * and seek entry close where they did.
 */
struct pipe {
	struct batch b[2];
	unsigned cur;           /* the batch being filled */
	bool busy;              /* the other batch is compressing */
	unsigned helpers;
	uint64_t done;
};

/* Hand the filled batch to the helpers, and write the one before it. */
static int pipe_push(struct pipe *p, struct writer *w, EVP_MD_CTX *fs,
                     const struct mfs_pack_opts *o, struct mfs_pack_result *res)
{
	struct batch *now = &p->b[p->cur], *prev = &p->b[p->cur ^ 1];
	int rc = 0;
	if (p->busy && (rc = batch_finish(prev)) < 0)
		return rc;
	batch_start(now, p->helpers);
	if (p->busy) {
		p->busy = false;
		rc = flush_batch(w, prev, fs);
		for (size_t i = 0; i < prev->n; i++)
			p->done += prev->jobs[i].len;
		prev->n = 0;
		if (rc == 0 && o->progress)
			o->progress(o->arg, p->done, res->orig_bytes);
	}
	p->busy = true;
	p->cur ^= 1;
	return rc;
}

/* Finish and write the batch in flight, if any. */
static int pipe_drain(struct pipe *p, struct writer *w, EVP_MD_CTX *fs,
                      const struct mfs_pack_opts *o, struct mfs_pack_result *res)
{
	if (!p->busy)
		return 0;
	struct batch *prev = &p->b[p->cur ^ 1];
	p->busy = false;
	int rc = batch_finish(prev);
	if (rc == 0)
		rc = flush_batch(w, prev, fs);
	for (size_t i = 0; i < prev->n; i++)
		p->done += prev->jobs[i].len;
	prev->n = 0;
	if (rc == 0 && o->progress)
		o->progress(o->arg, p->done, res->orig_bytes);
	return rc;
}

static int write_chunks(struct writer *w, const mfs_model *m, const struct mfs_pack_opts *o,
                        unsigned threads, uint8_t (*fsha)[32], struct mfs_pack_result *res,
                        struct mfs_buf *seek_files)
{
	const struct mfs_desc *d = mfs_model_desc(m);
	size_t nb = (size_t)threads * 4;
	unsigned helpers = threads > 1 ? threads : 0;
	struct job *jobs = calloc(2 * nb, sizeof(*jobs));
	ZSTD_CCtx **cctx = calloc(helpers + 1, sizeof(*cctx));
	EVP_MD_CTX *fs = EVP_MD_CTX_new();
	struct seg *segs = NULL;
	struct pipe p = {.helpers = helpers};
	int rc = -ENOMEM;
	if (!jobs || !cctx || !fs)
		goto out;
	size_t bound = ZSTD_compressBound(o->chunk_size) + 64 * 4;
	for (size_t i = 0; i < 2 * nb; i++) {
		jobs[i].raw = malloc(o->chunk_size);
		jobs[i].tmp = malloc(o->chunk_size);
		jobs[i].out = malloc(bound);
		if (!jobs[i].raw || !jobs[i].tmp || !jobs[i].out)
			goto out;
	}
	for (unsigned t = 0; t <= helpers; t++)
		if (!(cctx[t] = ZSTD_createCCtx()))
			goto out;
	for (unsigned k = 0; k < 2; k++)
		p.b[k] = (struct batch){.m = m, .jobs = jobs + k * nb, .level = o->level,
		                        .plain = o->plain, .cctx = cctx};
	for (uint32_t f = 0; f < d->n_files; f++) {
		size_t ns = 0;
		free(segs);
		segs = NULL;
		if (!o->plain && (rc = float_segs(m, f, &segs, &ns)) < 0)
			goto out;
		if (EVP_DigestInit_ex(fs, EVP_sha256(), NULL) != 1) {
			rc = -EIO;
			goto out;
		}
		uint32_t first = w->n_chunks;
		uint64_t off = 0, size = d->files[f].size;
		size_t si = 0;
		while (off < size) {
			/* The run this chunk is cut from: a float tensor, or the raw
			 * bytes up to the next one. */
			while (si < ns && segs[si].off + segs[si].len <= off)
				si++;
			uint64_t end = size;
			uint8_t t = PK_T_RAW;
			if (si < ns && segs[si].off <= off) {
				end = segs[si].off + segs[si].len;
				t = segs[si].t;
			} else if (si < ns) {
				end = segs[si].off;
			}
			uint64_t len = end - off < o->chunk_size ? end - off : o->chunk_size;
			struct batch *b = &p.b[p.cur];
			struct job *j = &b->jobs[b->n++];
			j->file = f;
			j->off = off;
			j->len = (uint32_t)len;
			j->t = len % pk_elem(t) ? PK_T_RAW : t;
			off += len;
			if ((b->n == nb || off == size) && (rc = pipe_push(&p, w, fs, o, res)) < 0)
				goto out;
		}
		if ((rc = pipe_drain(&p, w, fs, o, res)) < 0)
			goto out;
		unsigned hl = 32;
		if (EVP_DigestFinal_ex(fs, fsha[f], &hl) != 1) {
			rc = -EIO;
			goto out;
		}
		uint8_t e[PK_SEEK_FILE];
		mfs_put_le64(e, size);
		mfs_put_le32(e + 8, first);
		mfs_put_le32(e + 12, w->n_chunks - first);
		if ((rc = buf_add(seek_files, e, sizeof(e))) < 0)
			goto out;
	}
	rc = 0;
out:
	/* A failure with a batch in flight: let its helpers end before their
	 * buffers go. */
	if (p.busy)
		batch_finish(&p.b[p.cur ^ 1]);
	free(segs);
	EVP_MD_CTX_free(fs);
	for (unsigned t = 0; cctx && t <= helpers; t++)
		ZSTD_freeCCtx(cctx[t]);
	free(cctx);
	for (size_t i = 0; jobs && i < 2 * nb; i++) {
		free(jobs[i].raw);
		free(jobs[i].tmp);
		free(jobs[i].out);
	}
	free(jobs);
	return rc;
}

int pk_index(struct mfs_buf *out, uint64_t at, uint32_t n_files, const struct mfs_buf *seek_files,
             uint32_t n_chunks, const struct mfs_buf *seek_chunks, const char *js)
{
	uint8_t h[8 + PK_SEEK_HDR];
	size_t slen = PK_SEEK_HDR + seek_files->len + seek_chunks->len, jl = strlen(js);
	if (slen > PK_MAX_INDEX || jl > PK_MAX_INDEX)
		return -EFBIG;
	mfs_put_le32(h, PK_MAGIC_SEEK);
	mfs_put_le32(h + 4, (uint32_t)slen);
	memcpy(h + 8, "MFSSEEK\0", 8);
	mfs_put_le32(h + 16, n_files);
	mfs_put_le32(h + 20, n_chunks);
	/* The CRC of the seek table's payload: its header, then the two runs. */
	uint32_t scrc = mfs_crc32(0, h + 8, PK_SEEK_HDR);
	scrc = mfs_crc32(scrc, (const uint8_t *)seek_files->p, seek_files->len);
	scrc = mfs_crc32(scrc, (const uint8_t *)seek_chunks->p, seek_chunks->len);
	uint64_t seek_off = at + out->len;
	mfs_buf_add(out, h, sizeof(h));
	mfs_buf_add(out, seek_files->p, seek_files->len);
	mfs_buf_add(out, seek_chunks->p, seek_chunks->len);
	uint64_t mani_off = at + out->len;
	uint8_t mh[8];
	mfs_put_le32(mh, PK_MAGIC_MANI);
	mfs_put_le32(mh + 4, (uint32_t)jl);
	mfs_buf_add(out, mh, sizeof(mh));
	mfs_buf_add(out, js, jl);
	uint8_t t[8 + PK_TAIL_LEN] = {0};
	mfs_put_le32(t, PK_MAGIC_TAIL);
	mfs_put_le32(t + 4, PK_TAIL_LEN);
	memcpy(t + 8, "MFSTAIL\0", 8);
	t[16] = MFS_PACK_MAJOR;
	t[18] = MFS_PACK_MINOR;
	mfs_put_le64(t + 24, seek_off);
	mfs_put_le64(t + 32, mani_off);
	mfs_put_le32(t + 40, scrc);
	mfs_put_le32(t + 44, mfs_crc32(0, (const uint8_t *)js, jl));
	mfs_buf_add(out, t, sizeof(t));
	return out->oom ? -ENOMEM : 0;
}

static int write_index(struct writer *w, const mfs_model *m, const struct mfs_pack_opts *o,
                       uint8_t (*fsha)[32], uint8_t (*tsha)[32], const struct mfs_buf *seek_files)
{
	const struct mfs_desc *d = mfs_model_desc(m);
	int rc;
	char *js = manifest(m, o, fsha, tsha, &rc);
	if (!js)
		return rc < 0 ? rc : -ENOMEM;
	struct mfs_buf idx = {0};
	rc = pk_index(&idx, w->pos, (uint32_t)d->n_files, seek_files, w->n_chunks, &w->seek_chunks,
	              js);
	if (rc == 0)
		rc = out_write(w, idx.p, idx.len);
	free(idx.p);
	free(js);
	return rc;
}

int mfs_pack_create(const char *model, const char *out, const struct mfs_pack_opts *opts,
                    struct mfs_pack_result *res, char *err, size_t errlen)
{
	struct mfs_pack_opts o = *opts;
	memset(res, 0, sizeof(*res));
	if (o.level == 0)
		o.level = 3;
	if (o.level < 1 || o.level > ZSTD_maxCLevel())
		return mfs_errf(err, errlen, -EINVAL, model, "--level %d: zstd levels are 1 to %d",
		                o.level, ZSTD_maxCLevel());
	if (o.chunk_size == 0)
		o.chunk_size = MFS_PACK_CHUNK_DEFAULT;
	if (o.chunk_size < PK_MIN_CHUNK || o.chunk_size > PK_MAX_CHUNK || o.chunk_size % 4096)
		return mfs_errf(err, errlen, -EINVAL, model, "--chunk %u: a multiple of 4 KiB from "
		                "4 KiB to 16 MiB", o.chunk_size);
	unsigned threads = o.threads ? o.threads : cores();
	if (threads > 256)
		threads = 256;

	mfs_model *m = NULL;
	int rc = mfs_model_open(&m, model, NULL, err, errlen);
	if (rc < 0)
		return rc;
	const struct mfs_desc *d = mfs_model_desc(m);
	if (o.plain && d->n_files != 1) {
		size_t n = d->n_files;
		mfs_model_close(m);
		return mfs_errf(err, errlen, -EINVAL, model, "--plain packs hold one file, and this "
		                "model has %zu (external data or shards): drop --plain", n);
	}
	for (size_t i = 0; i < d->n_files; i++)
		res->orig_bytes += d->files[i].size;

	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-%d", out, (int)getpid()) >= sizeof(tmp)) {
		mfs_model_close(m);
		return mfs_errf(err, errlen, -ENAMETOOLONG, out, "name too long");
	}
	struct writer w = {.fd = -1};
	struct tensor_hashes th = {0};
	pthread_t th_id;
	bool th_started = false;
	uint8_t (*fsha)[32] = calloc(d->n_files, 32);
	uint8_t (*tsha)[32] = calloc(d->n_tensors ? d->n_tensors : 1, 32);
	struct mfs_buf seek_files = {0};
	w.sha = EVP_MD_CTX_new();
	if (!fsha || !tsha || !w.sha || EVP_DigestInit_ex(w.sha, EVP_sha256(), NULL) != 1) {
		rc = mfs_errf(err, errlen, -ENOMEM, model, "out of memory");
		goto out;
	}
	w.fd = mfs_io->openat(AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (w.fd < 0) {
		rc = mfs_errf(err, errlen, -errno, out, "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	uint8_t head[PK_HEAD_LEN] = {0};
	memcpy(head, "MFSPACK\0", 8);
	head[8] = MFS_PACK_MAJOR;
	head[10] = MFS_PACK_MINOR;
	if ((rc = out_skippable(&w, PK_MAGIC_HEAD, head, sizeof(head))) < 0) {
		mfs_errf(err, errlen, rc, out, "cannot write: %s", strerror(-rc));
		goto out;
	}
	th.m = m;
	th.sha = tsha;
	if (pthread_create(&th_id, NULL, hash_tensors, &th) == 0)
		th_started = true;
	else
		hash_tensors(&th);
	rc = write_chunks(&w, m, &o, threads, fsha, res, &seek_files);
	if (th_started)
		pthread_join(th_id, NULL);
	th_started = false;
	if (rc < 0) {
		mfs_errf(err, errlen, rc, model, "cannot pack: %s", strerror(-rc));
		goto out;
	}
	if (th.rc < 0) {
		rc = mfs_errf(err, errlen, th.rc, model, "tensor %s: cannot read: %s",
		              d->tensors[th.bad]->name, strerror(-th.rc));
		goto out;
	}
	if ((rc = write_index(&w, m, &o, fsha, tsha, &seek_files)) < 0) {
		mfs_errf(err, errlen, rc, out, "cannot write the seek table and manifest: %s",
		         strerror(-rc));
		goto out;
	}
	if (mfs_io->fsync(w.fd) < 0) {
		rc = mfs_errf(err, errlen, -errno, out, "fsync: %s", strerror(errno));
		goto out;
	}
	if (mfs_io->renameat(AT_FDCWD, tmp, AT_FDCWD, out) < 0) {
		rc = mfs_errf(err, errlen, -errno, out, "cannot rename %s into place: %s", tmp,
		              strerror(errno));
		goto out;
	}
	uint8_t sha[32];
	unsigned hl = 32;
	EVP_DigestFinal_ex(w.sha, sha, &hl);
	mfs_hex(res->sha256, sha, 32);
	res->pack_bytes = w.pos;
	res->chunks = w.n_chunks;
	res->deduped = w.deduped;
	rc = 0;
out:
	if (w.fd >= 0) {
		mfs_io->close(w.fd);
		if (rc < 0)
			mfs_io->unlinkat(AT_FDCWD, tmp, 0);
	}
	EVP_MD_CTX_free(w.sha);
	free(w.seek_chunks.p);
	free(seek_files.p);
	free(w.dd);
	free(fsha);
	free(tsha);
	mfs_model_close(m);
	return rc;
}

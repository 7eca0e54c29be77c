/*
 * codec/pack/commit.c — how a commit writes a pack (doc/pack.md, "How a
 * commit writes a pack").
 *
 * A commit of a model mounted from a pack ends here: the format's splice
 * writer has described each changed file as pieces (txn/plan.c), and the
 * pack turns "old pack + pieces per file" into the new pack, itself a
 * piece list that the commit engine (txn/commit.c) writes beside the pack,
 * syncs and renames over it under the same identity checks as any model
 * file.  This file knows no format and no protocol.
 *
 * Which frames survive.  A piece that reads the old file's bytes through
 * the model's own source (mfs_source_piece) says "new [pos, pos+len) are
 * old [q, q+len)"; adjacent such pieces with the same shift are one run.
 * Every old chunk wholly inside a run keeps its frame, at its new place in
 * the file: after a same-size edit that is every chunk the edit does not
 * touch, and after a header that grew, the chunks of the tensors behind it
 * (chunk cuts are at float tensor boundaries, so a tensor's chunks move
 * with it).  The bytes between kept chunks are cut again under the rules
 * of `modelfs pack` (at most chunk_size, cuts at the new file's float
 * tensor boundaries, found by mapping each tensor through the runs or to
 * its edited bytes) and compressed with the old pack's level; a new chunk
 * with the position, length and arrangement of an old one is compared
 * with it first and keeps the old frame when its bytes are the same.
 * Files without changes keep every frame.  A frame shared by several
 * chunks in the old pack is written once in the new one.  New chunks are
 * not shared among themselves (they are what an edit touched).  A --plain
 * pack gets raw chunks only and stays one.
 *
 * Hashes.  An unchanged file keeps the manifest's SHA-256; a changed one
 * is hashed over every byte of its new version, in order, as its chunks
 * pass: workers decompress the kept chunks (to hash them, not to
 * recompress them) and compress the new ones in parallel, a batch of four
 * chunks per thread, and the calling thread feeds the hash.  Tensors keep
 * their hashes unless their bytes change; those are hashed from the
 * staged bytes.
 *
 * Memory: a batch, plus the new frames (the compressed size of what the
 * edit touched), which the piece list owns until the engine has written
 * them.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "core/core.h"
#include "format.h"
#include "pack/pack.h"
#include "source/place.h"

#define NONE UINT32_MAX

/* New bytes [pos, pos + len) of a file are old bytes [old, old + len). */
struct run {
	uint64_t pos, old, len;
};

/* One chunk of a file in the new pack. */
struct item {
	uint64_t pos;           /* in the new file */
	uint32_t len;
	uint8_t t;
	uint32_t old;           /* the old chunk whose frame it keeps, or NONE: a new frame */
	uint32_t cand;          /* a new chunk: an old chunk with its place, length and
	                         * arrangement, whose bytes may be the same (or NONE) */
};

struct seg {
	uint64_t off, len;
	uint8_t t;
};

struct job {
	struct item *it;
	uint8_t *raw, *tmp, *out;
	size_t out_len;
	int rc;
};

struct batch {
	struct mfs_pack *pk;
	struct job *jobs;
	size_t n, next;
	bool hash;              /* kept chunks are decompressed for the file's hash */
	ZSTD_CCtx **cctx;
	pthread_mutex_t lock;   /* for err */
	char err[256];
};

/* The state of one pk_commit. */
struct cw {
	struct mfs_pack *pk;
	struct mfs_splice *out;
	uint32_t *canon;        /* old chunk -> the first old chunk naming its frame */
	uint64_t *fmap;         /* canon chunk -> new frame offset + 1 (0: not yet written) */
	struct mfs_buf seek_chunks, seek_files;
	uint32_t n_chunks;
	uint64_t reused, compressed;
	/* Appending: kept frames stay where they are in the old pack, new
	 * ones follow its end; `live` counts the frame bytes the new seek
	 * table names (for the dead-space rule). */
	bool append;
	uint64_t live;
	unsigned threads;
	uint64_t *done;         /* progress (place.h), or NULL */
};

/* ------------------------------------------------------------ workers */

/* A chunk's failure for the message, without the pack's name it starts
 * with (the message names the pack once).  Any worker may set it. */
static void keep_err(struct batch *b, const char *err)
{
	size_t n = strlen(b->pk->display);
	if (!strncmp(err, b->pk->display, n) && !strncmp(err + n, ": ", 2))
		err += n + 2;
	pthread_mutex_lock(&b->lock);
	if (!b->err[0])
		snprintf(b->err, sizeof(b->err), "%s", err);
	pthread_mutex_unlock(&b->lock);
}

static int work(struct batch *b, struct job *j, ZSTD_CCtx *cc)
{
	struct item *it = j->it;
	char err[256];
	if (it->old != NONE) {
		if (!b->hash)
			return 0;
		int rc = pk_chunk_read(b->pk, it->old, j->raw, err, sizeof(err));
		if (rc < 0)
			keep_err(b, err);
		return rc;
	}
	if (it->cand != NONE) {
		/* The bytes of the old chunk in its place: the same bytes keep
		 * the old frame. */
		int rc = pk_chunk_read(b->pk, it->cand, j->tmp, err, sizeof(err));
		if (rc < 0) {
			keep_err(b, err);
			return rc;
		}
		if (!memcmp(j->tmp, j->raw, it->len)) {
			it->old = it->cand;
			return 0;
		}
	}
	return pk_compress(cc, j->out, ZSTD_compressBound(it->len) + 64, &j->out_len, j->raw,
	                   j->tmp, it->len, it->t, b->pk->level);
}

struct warg {
	struct batch *b;
	unsigned id;
};

/* Workers of a batch in flight: started, then joined. */
struct crew {
	pthread_t tid[64];
	struct warg wa[64];
	unsigned started;
};

static void *worker(void *arg)
{
	struct warg *w = arg;
	struct batch *b = w->b;
	for (;;) {
		size_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
		if (i >= b->n)
			break;
		b->jobs[i].rc = work(b, &b->jobs[i], b->cctx[w->id]);
	}
	return NULL;
}

/* Start `threads` workers on batch b (none started: the caller's thread
 * does the batch at the join). */
static void batch_start(struct crew *c, struct batch *b, unsigned threads)
{
	b->next = 0;
	c->started = 0;
	for (unsigned t = 0; t < threads; t++) {
		c->wa[t] = (struct warg){.b = b, .id = t};
		if (pthread_create(&c->tid[t], NULL, worker, &c->wa[t]) != 0)
			break;
		c->started = t + 1;
	}
}

static int batch_join(struct crew *c, struct batch *b)
{
	if (!c->started) {
		c->wa[0] = (struct warg){.b = b, .id = 0};
		worker(&c->wa[0]);
	}
	for (unsigned t = 0; t < c->started; t++)
		pthread_join(c->tid[t], NULL);
	c->started = 0;
	for (size_t i = 0; i < b->n; i++)
		if (b->jobs[i].rc < 0)
			return b->jobs[i].rc;
	return 0;
}

/* ------------------------------------------------------------ output */

static int add_entry(struct cw *w, uint64_t frame_off, uint32_t frame_len, uint32_t raw,
                     uint8_t t)
{
	uint8_t e[PK_SEEK_CHUNK] = {0};
	mfs_put_le64(e, frame_off);
	mfs_put_le32(e + 8, frame_len);
	mfs_put_le32(e + 12, raw);
	e[16] = t;
	w->n_chunks++;
	mfs_buf_add(&w->seek_chunks, e, sizeof(e));
	return w->seek_chunks.oom ? -ENOMEM : 0;
}

/* Old chunk c's frame in the new pack (written at its first use). */
static int keep_chunk(struct cw *w, uint32_t c)
{
	const struct pk_chunk *ch = &w->pk->chunks[c];
	/* A frame several old chunks share is written once: they all map to
	 * where it went. */
	uint64_t at = w->fmap[w->canon[c]];
	if (!at) {
		if (w->append) {
			at = ch->frame_off + 1;
		} else {
			at = w->out->total + 1;
			mfs_source_splice(w->out, w->pk->src, ch->frame_off, ch->frame_len);
			if (w->out->err)
				return w->out->err;
		}
		w->fmap[w->canon[c]] = at;
		w->live += ch->frame_len;
	}
	w->reused++;
	return add_entry(w, at - 1, ch->frame_len, ch->raw_len, ch->transform);
}

static int new_chunk(struct cw *w, const struct job *j)
{
	uint8_t *p = malloc(j->out_len);
	if (!p)
		return -ENOMEM;
	memcpy(p, j->out, j->out_len);
	uint64_t at = w->out->total;
	mfs_splice_take(w->out, p, j->out_len);
	if (w->out->err)
		return w->out->err;
	w->compressed++;
	w->live += j->out_len;
	return add_entry(w, at, (uint32_t)j->out_len, j->it->len, j->it->t);
}

/* ------------------------------------------------------------ the new chunks */

struct plan {
	struct item *it;
	size_t n, cap;
};

static int item_add(struct plan *pl, struct item it)
{
	if (pl->n == pl->cap) {
		size_t nc = pl->cap ? pl->cap * 2 : 256;
		struct item *ni = reallocarray(pl->it, nc, sizeof(*ni));
		if (!ni)
			return -ENOMEM;
		pl->it = ni;
		pl->cap = nc;
	}
	pl->it[pl->n++] = it;
	return 0;
}

/* The first chunk of file pf at or after old offset `off` (pf->first + pf->n: none). */
static uint32_t chunk_at(const struct mfs_pack *pk, const struct pk_file *pf, uint64_t off)
{
	uint32_t lo = pf->first, hi = pf->first + pf->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (pk->chunks[mid].orig_off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Cut new bytes [a, b) into chunks under the packing rules (write.c). */
static int cut_gap(struct plan *pl, const struct mfs_pack *pk, const struct pk_file *pf,
                   const struct seg *segs, size_t ns, uint64_t a, uint64_t b)
{
	size_t si = 0;
	while (si < ns && segs[si].off + segs[si].len <= a)
		si++;
	for (uint64_t off = a; off < b;) {
		while (si < ns && segs[si].off + segs[si].len <= off)
			si++;
		uint64_t end = b;
		uint8_t t = PK_T_RAW;
		if (si < ns && segs[si].off <= off) {
			end = segs[si].off + segs[si].len;
			t = segs[si].t;
		} else if (si < ns && segs[si].off < end) {
			end = segs[si].off;
		}
		if (end > b)
			end = b;
		uint64_t len = end - off < pk->chunk_size ? end - off : pk->chunk_size;
		if (len % pk_elem(t))
			t = PK_T_RAW;
		struct item it = {.pos = off, .len = (uint32_t)len, .t = t, .old = NONE,
		                  .cand = NONE};
		uint32_t c = chunk_at(pk, pf, off);
		if (c < pf->first + pf->n && pk->chunks[c].orig_off == off &&
		    pk->chunks[c].raw_len == len && pk->chunks[c].transform == t)
			it.cand = c;
		int rc = item_add(pl, it);
		if (rc < 0)
			return rc;
		off += len;
	}
	return 0;
}

static int seg_cmp(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

static int run_old_cmp(const void *a, const void *b)
{
	const struct run *x = a, *y = b;
	return x->old < y->old ? -1 : x->old > y->old;
}

/* Where old offset `off` is in the new file, through the runs sorted by old offset. */
static bool map_old(const struct run *byold, size_t n, uint64_t off, uint64_t *pos)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (byold[mid].old + byold[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < n && byold[lo].old <= off) {
		*pos = byold[lo].pos + (off - byold[lo].old);
		return true;
	}
	return false;
}

/* The change of tensor `i` (index in the model's description), or NULL:
 * c->tensors is in ascending index order (place.h), so a binary search. */
static const struct mfs_place_tensor *tensor_change(const struct mfs_place_change *c,
                                                    uint64_t i)
{
	size_t lo = 0, hi = c->n_tensors;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->tensors[mid].index < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->n_tensors && c->tensors[lo].index == i ? &c->tensors[lo] : NULL;
}

/*
 * The float tensors of file f as segments of its new version: each tensor
 * found where its first byte went (through a run, or as the first edited
 * byte of it), with its new type and size when the commit changes them.
 * A wrong guess costs compression, never correctness: a chunk's
 * arrangement is recorded with it.
 */
static int new_segs(const struct mfs_model *m, const struct mfs_place_change *c, uint32_t f,
                    const struct mfs_splice *sp, const uint64_t *starts, const struct run *runs,
                    size_t n_runs, struct seg **out, size_t *n_out)
{
	const struct mfs_desc *d = &m->desc;
	struct run *byold = malloc((n_runs ? n_runs : 1) * sizeof(*byold));
	struct seg *s = NULL;
	size_t k = 0, cap = 0;
	if (!byold)
		return -ENOMEM;
	memcpy(byold, runs, n_runs * sizeof(*runs));
	qsort(byold, n_runs, sizeof(*byold), run_old_cmp);
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		const struct mfs_tensor *t = d->tensors[i];
		if (t->src != f || t->mem || !(t->flags & MFS_TENSOR_CONTIGUOUS))
			continue;
		int32_t dtype = t->dtype;
		uint64_t size = t->nbytes, pos = 0;
		const struct mfs_place_tensor *tc = tensor_change(c, i);
		if (tc) {
			dtype = tc->dtype;
			size = tc->size;
		}
		unsigned tr = pk_transform_of(dtype);
		if (tr == PK_T_RAW || size < 4096 || size % pk_elem(tr))
			continue;
		bool found = false;
		if (tc) {
			/* Its edited bytes: the piece that reads them from the
			 * start, or the first one (a same-size edit in runs). */
			uint64_t best = UINT64_MAX;
			for (size_t p = 0; p < sp->n; p++) {
				mfs_piece_fn fn;
				void *arg;
				uint64_t o;
				if (sp->p[p].kind != MFS_PIECE_FN)
					continue;
				mfs_piece_origin(&sp->p[p], &fn, &arg, &o);
				if (fn == tc->read && arg == tc->arg && o < best && starts[p] >= o) {
					best = o;
					pos = starts[p] - o;
					found = true;
				}
			}
		}
		uint64_t mp;
		if (map_old(byold, n_runs, t->off, &mp) && (!found || mp < pos)) {
			pos = mp;
			found = true;
		}
		if (!found || pos > sp->total || size > sp->total - pos)
			continue;
		if (k == cap) {
			cap = cap ? cap * 2 : 64;
			struct seg *ns = reallocarray(s, cap, sizeof(*s));
			if (!ns) {
				free(s);
				free(byold);
				return -ENOMEM;
			}
			s = ns;
		}
		s[k++] = (struct seg){.off = pos, .len = size, .t = (uint8_t)tr};
	}
	free(byold);
	if (k)
		qsort(s, k, sizeof(*s), seg_cmp);
	size_t w = 0;
	for (size_t i = 0; i < k; i++)
		if (!w || s[i].off >= s[w - 1].off + s[w - 1].len)
			s[w++] = s[i];
	*out = s;
	*n_out = w;
	return 0;
}

/*
 * The chunks of changed file f's new version `sp`: the old chunks that lie
 * wholly in a run, in their new places, and new chunks cut between them.
 */
static int plan_file(struct plan *pl, const struct mfs_pack *pk, const struct mfs_model *m,
                     const struct mfs_place_change *c, uint32_t f, const struct mfs_splice *sp,
                     const uint64_t *starts)
{
	const struct pk_file *pf = &pk->files[f];
	struct run *runs = malloc((sp->n ? sp->n : 1) * sizeof(*runs));
	struct seg *segs = NULL;
	size_t nr = 0, ns = 0;
	int rc = -ENOMEM;
	if (!runs)
		return rc;
	for (size_t i = 0; i < sp->n; i++) {
		uint64_t q;
		if (!mfs_source_piece(&sp->p[i], m->srcs[f], &q) || q > pf->size ||
		    sp->p[i].len > pf->size - q)
			continue;
		struct run *last = nr ? &runs[nr - 1] : NULL;
		if (last && last->pos + last->len == starts[i] && last->old + last->len == q)
			last->len += sp->p[i].len;
		else
			runs[nr++] = (struct run){.pos = starts[i], .old = q, .len = sp->p[i].len};
	}
	/* A --plain pack stays one: raw chunks only, so that zstd -d still
	 * gives the file. */
	if (!pk->plain && (rc = new_segs(m, c, f, sp, starts, runs, nr, &segs, &ns)) < 0)
		goto out;
	uint64_t cur = 0;
	for (size_t r = 0; r < nr; r++) {
		for (uint32_t k = chunk_at(pk, pf, runs[r].old); k < pf->first + pf->n; k++) {
			const struct pk_chunk *ch = &pk->chunks[k];
			if (ch->orig_off + ch->raw_len > runs[r].old + runs[r].len)
				break;
			uint64_t pos = runs[r].pos + (ch->orig_off - runs[r].old);
			if (pos < cur)
				continue;
			if (pos > cur && (rc = cut_gap(pl, pk, pf, segs, ns, cur, pos)) < 0)
				goto out;
			struct item it = {.pos = pos, .len = ch->raw_len, .t = ch->transform, .old = k,
			                  .cand = NONE};
			if ((rc = item_add(pl, it)) < 0)
				goto out;
			cur = pos + ch->raw_len;
		}
	}
	rc = cut_gap(pl, pk, pf, segs, ns, cur, sp->total);
out:
	free(segs);
	free(runs);
	return rc;
}

static void jobs_free(struct job *jobs, size_t n)
{
	for (size_t i = 0; jobs && i < n; i++) {
		free(jobs[i].raw);
		free(jobs[i].tmp);
		free(jobs[i].out);
	}
	free(jobs);
}

static struct job *jobs_new(size_t n, size_t chunk)
{
	struct job *jobs = calloc(n, sizeof(*jobs));
	size_t bound = ZSTD_compressBound(chunk) + 64;
	for (size_t i = 0; jobs && i < n; i++) {
		jobs[i].raw = malloc(chunk);
		jobs[i].tmp = malloc(chunk);
		jobs[i].out = malloc(bound);
		if (!jobs[i].raw || !jobs[i].tmp || !jobs[i].out) {
			jobs_free(jobs, n);
			return NULL;
		}
	}
	return jobs;
}

/* Fill batch b with the next items from *i; new bytes are read here, in
 * order (staged data, the old pack through its cache). */
static int batch_fill(struct batch *b, struct plan *pl, size_t *i, size_t nb,
                      const struct mfs_splice *sp, const uint64_t *starts)
{
	b->n = 0;
	for (; *i < pl->n && b->n < nb; (*i)++) {
		struct job *j = &b->jobs[b->n++];
		j->it = &pl->it[*i];
		j->rc = 0;
		if (j->it->old != NONE)
			continue;
		ssize_t r = mfs_splice_read(sp, starts, j->raw, j->it->len, j->it->pos);
		if (r != (ssize_t)j->it->len)
			return r < 0 ? (int)r : -EIO;
	}
	return 0;
}

/*
 * Write changed file f's chunks.  Two batches alternate: while workers
 * decompress (kept chunks, for the hash) or compare and compress (new
 * ones) the next batch, this thread hashes the last one and lays out its
 * frames in order, so that the SHA-256 runs beside the decompression.
 */
static int write_file(struct cw *w, const struct mfs_splice *sp, const uint64_t *starts,
                      struct plan *pl, bool hash, uint8_t sha[32], char *err, size_t errlen)
{
	struct mfs_pack *pk = w->pk;
	/* Four chunks a thread, but two batches of chunk buffers within
	 * 512 MiB whatever the chunk size and the cores. */
	size_t nb = (size_t)w->threads * 4, most = (256u << 20) / (3 * (size_t)pk->chunk_size);
	if (nb > most)
		nb = most > w->threads ? most : w->threads;
	struct job *jobs[2] = {jobs_new(nb, pk->chunk_size), jobs_new(nb, pk->chunk_size)};
	ZSTD_CCtx **cctx[2] = {calloc(w->threads, sizeof(ZSTD_CCtx *)),
	                       calloc(w->threads, sizeof(ZSTD_CCtx *))};
	EVP_MD_CTX *fs = EVP_MD_CTX_new();
	struct crew crew = {0};
	struct batch b[2] = {{0}};
	struct batch *inflight = NULL;        /* started, not joined */
	size_t next = 0;
	int rc = -ENOMEM, cur = 0;
	const char *what = "out of memory";
	if (!jobs[0] || !jobs[1] || !cctx[0] || !cctx[1] || !fs ||
	    EVP_DigestInit_ex(fs, EVP_sha256(), NULL) != 1)
		goto out;
	for (int k = 0; k < 2; k++) {
		for (unsigned t = 0; t < w->threads; t++)
			if (!(cctx[k][t] = ZSTD_createCCtx()))
				goto out;
		b[k] = (struct batch){.pk = pk, .jobs = jobs[k], .hash = hash, .cctx = cctx[k],
		                      .lock = PTHREAD_MUTEX_INITIALIZER};
	}
	what = "cannot read the new bytes";
	if ((rc = batch_fill(&b[cur], pl, &next, nb, sp, starts)) < 0)
		goto out;
	batch_start(&crew, &b[cur], w->threads);
	inflight = &b[cur];
	while (b[cur].n) {
		/* The next batch's new bytes while this one is worked on. */
		struct batch *now = &b[cur], *later = &b[!cur];
		int frc = batch_fill(later, pl, &next, nb, sp, starts);
		rc = batch_join(&crew, now);
		inflight = NULL;
		if (rc < 0) {
			what = now->err[0] ? now->err : "cannot compress";
			goto out;
		}
		if ((rc = frc) < 0) {
			what = "cannot read the new bytes";
			goto out;
		}
		if (later->n) {
			batch_start(&crew, later, w->threads);
			inflight = later;
		}
		for (size_t k = 0; k < now->n; k++) {
			const struct job *j = &now->jobs[k];
			if (hash && EVP_DigestUpdate(fs, j->raw, j->it->len) != 1) {
				rc = -EIO;
				what = "SHA-256 failed";
				goto out;
			}
			rc = j->it->old != NONE ? keep_chunk(w, j->it->old) : new_chunk(w, j);
			if (rc < 0) {
				what = "out of memory";
				goto out;
			}
		}
		if (w->done)
			for (size_t k = 0; k < now->n; k++)
				__atomic_add_fetch(w->done, now->jobs[k].it->len, __ATOMIC_RELAXED);
		now->n = 0;
		cur = !cur;
	}
	unsigned hl = 32;
	rc = EVP_DigestFinal_ex(fs, sha, &hl) == 1 ? 0 : -EIO;
	what = "SHA-256 failed";
out:
	if (inflight)
		batch_join(&crew, inflight);
	if (rc < 0)
		mfs_errf(err, errlen, rc, pk->display, "cannot write the new pack: %s (%s)", what,
		         strerror(-rc));
	EVP_MD_CTX_free(fs);
	for (int k = 0; k < 2; k++) {
		for (unsigned t = 0; cctx[k] && t < w->threads; t++)
			ZSTD_freeCCtx(cctx[k][t]);
		free(cctx[k]);
		jobs_free(jobs[k], nb);
	}
	return rc;
}

/* ------------------------------------------------------------ the pack */

static int frame_cmp(const void *a, const void *b, void *arg)
{
	const struct mfs_pack *pk = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	uint64_t fx = pk->chunks[x].frame_off, fy = pk->chunks[y].frame_off;
	return fx != fy ? (fx < fy ? -1 : 1) : (x < y ? -1 : x > y);
}

/* canon[c]: the first chunk naming chunk c's frame. */
static int canonical(const struct mfs_pack *pk, uint32_t *canon)
{
	uint32_t *ix = malloc((pk->n_chunks ? pk->n_chunks : 1) * sizeof(*ix));
	if (!ix)
		return -ENOMEM;
	for (uint32_t i = 0; i < pk->n_chunks; i++)
		ix[i] = i;
	qsort_r(ix, pk->n_chunks, sizeof(*ix), frame_cmp, (void *)pk);
	for (uint32_t i = 0; i < pk->n_chunks; i++)
		canon[ix[i]] = i && pk->chunks[ix[i]].frame_off == pk->chunks[ix[i - 1]].frame_off ?
		               canon[ix[i - 1]] : ix[i];
	free(ix);
	return 0;
}

static unsigned cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

static ssize_t tensor_rd(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct mfs_place_tensor *tc = arg;
	return tc->read(tc->arg, buf, len, off);
}

struct pk_rd {
	struct mfs_pack *pk;
	uint32_t f;
};

static ssize_t pack_rd(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct pk_rd *r = arg;
	return pk_pread(r->pk, r->f, buf, len, off);
}

/* The new pack of commit c, appended to the old one's bytes or whole;
 * -EAGAIN (nothing in err): appending would leave too much dead space. */
static int commit_pack(struct mfs_pack *pk, struct mfs_splice *out,
                       const struct mfs_place_change *c, bool append, char *err, size_t errlen)
{
	const struct mfs_model *m = c->m;
	const struct mfs_desc *d = &m->desc;
	if (d->n_files != pk->n_files)
		return mfs_errf(err, errlen, -EINVAL, pk->display, "the model's files are not the "
		                "pack's");
	struct cw w = {.pk = pk, .out = out, .threads = cores(), .done = c->done,
	               .append = append};
	uint8_t (*fsha)[32] = calloc(pk->n_files, 32);
	uint8_t (*tsha)[32] = calloc(d->n_tensors + c->n_added + 1, 32);
	struct pk_mfile *mf = calloc(pk->n_files, sizeof(*mf));
	const char **names = calloc(d->n_tensors + c->n_added + 1, sizeof(*names));
	w.fmap = calloc(pk->n_chunks ? pk->n_chunks : 1, sizeof(*w.fmap));
	w.canon = calloc(pk->n_chunks ? pk->n_chunks : 1, sizeof(*w.canon));
	uint64_t *starts = NULL;
	struct plan pl = {0};
	char *js = NULL;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int rc = -ENOMEM;
	uint64_t total = 0;
	for (uint32_t f = 0; c->files && f < pk->n_files; f++)
		total += c->files[f] ? c->files[f]->total : 0;
	if (c->done)
		__atomic_store_n(c->done, 0, __ATOMIC_RELAXED);
	if (c->total)
		__atomic_store_n(c->total, total, __ATOMIC_RELAXED);
	if (!fsha || !tsha || !mf || !names || !w.fmap || !w.canon || canonical(pk, w.canon) < 0) {
		mfs_errf(err, errlen, rc, pk->display, "out of memory");
		goto out;
	}

	uint8_t head[8 + PK_HEAD_LEN] = {0};
	mfs_put_le32(head, PK_MAGIC_HEAD);
	mfs_put_le32(head + 4, PK_HEAD_LEN);
	memcpy(head + 8, "MFSPACK\0", 8);
	head[16] = MFS_PACK_MAJOR;
	head[18] = MFS_PACK_MINOR;
	if (append)     /* the old pack as it is, head and old index included */
		mfs_source_splice(out, pk->src, 0, pk->size);
	else
		mfs_splice_bytes(out, head, sizeof(head));

	for (uint32_t f = 0; f < pk->n_files; f++) {
		const struct pk_file *pf = &pk->files[f];
		const struct mfs_splice *sp = c->files ? c->files[f] : NULL;
		uint32_t first = w.n_chunks;
		mf[f] = (struct pk_mfile){.path = pf->path, .size = pf->size, .mode = pf->mode,
		                          .mtime_sec = pf->mtime_sec, .mtime_nsec = pf->mtime_nsec,
		                          .sha256 = pf->sha_known ? fsha[f] : NULL};
		if (!sp && !append && !pf->sha_known) {
			/* Rewriting records every file's hash, also one an
			 * earlier append left unknown. */
			struct pk_rd r = {pk, f};
			if ((rc = mfs_sha256(fsha[f], pf->size, pack_rd, &r)) < 0) {
				char why[256];
				pk_last_error(pk, why, sizeof(why));
				mfs_errf(err, errlen, rc, pk->display, "%s: cannot read: %s", pf->path,
				         why[0] ? why : strerror(-rc));
				goto out;
			}
			mf[f].sha256 = fsha[f];
		}
		if (!sp) {
			if (pf->sha_known)
				memcpy(fsha[f], pf->sha256, 32);
			for (uint32_t k = pf->first; k < pf->first + pf->n; k++)
				if ((rc = keep_chunk(&w, k)) < 0) {
					mfs_errf(err, errlen, rc, pk->display, "out of memory");
					goto out;
				}
		} else {
			if (sp->err) {
				rc = mfs_errf(err, errlen, sp->err, pk->display, "out of memory");
				goto out;
			}
			free(starts);
			if (!(starts = malloc((sp->n ? sp->n : 1) * sizeof(*starts)))) {
				rc = mfs_errf(err, errlen, -ENOMEM, pk->display, "out of memory");
				goto out;
			}
			uint64_t pos = 0;
			for (size_t i = 0; i < sp->n; i++) {
				starts[i] = pos;
				pos += sp->p[i].len;
			}
			pl.n = 0;
			if ((rc = plan_file(&pl, pk, m, c, f, sp, starts)) < 0) {
				mfs_errf(err, errlen, rc, pk->display, "out of memory");
				goto out;
			}
			/* Appending, a big file's hash is left unknown rather than
			 * paid for by decompressing all of it; a small one's is
			 * cheap.  A rewrite hashes every changed file. */
			bool hash = !append || sp->total <= PK_APPEND_HASH_MAX;
			if ((rc = write_file(&w, sp, starts, &pl, hash, fsha[f], err, errlen)) < 0)
				goto out;
			mf[f].sha256 = hash ? fsha[f] : NULL;
			mf[f].size = sp->total;
			mf[f].mtime_sec = now.tv_sec;
			mf[f].mtime_nsec = now.tv_nsec;
		}
		uint8_t e[PK_SEEK_FILE];
		mfs_put_le64(e, mf[f].size);
		mfs_put_le32(e + 8, first);
		mfs_put_le32(e + 12, w.n_chunks - first);
		mfs_buf_add(&w.seek_files, e, sizeof(e));
	}

	/* Tensors: the manifest's hashes, but those whose bytes change; under
	 * their names after the commit, less those it deletes, and then those
	 * it adds. */
	bool same_list = pk->n_tensors == d->n_tensors;
	uint64_t n_out = 0;
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		const char *was = d->tensors[i]->name;
		const char *after = c->names ? c->names[i] : was;
		if (!after)
			continue;       /* deleted by the commit */
		uint64_t k = n_out++;
		names[k] = after;
		const struct mfs_place_tensor *tc = tensor_change(c, i);
		if (tc)
			rc = mfs_sha256(tsha[k], tc->size, tensor_rd, (void *)tc);
		else if (same_list && !strcmp(pk->tensors[i].name, was))
			memcpy(tsha[k], pk->tensors[i].sha256, 32), rc = 0;
		else
			rc = mfs_pack_tensor_sha(m, d->tensors[i], tsha[k]);
		if (rc < 0) {
			mfs_errf(err, errlen, rc == -EUCLEAN ? -EIO : rc, pk->display, "tensor %s: "
			         "cannot read: %s", was, strerror(rc == -EUCLEAN ? EIO : -rc));
			rc = rc == -EUCLEAN ? -EIO : rc;
			goto out;
		}
	}
	/* Tensors added (mkdir): after the model's, as the new file has them. */
	for (size_t j = 0; j < c->n_added; j++) {
		const struct mfs_place_tensor *ta = &c->added[j];
		uint64_t k = n_out++;
		names[k] = c->added_names[j];
		rc = mfs_sha256(tsha[k], ta->read ? ta->size : 0, tensor_rd, (void *)ta);
		if (rc < 0) {
			mfs_errf(err, errlen, rc, pk->display, "tensor %s: cannot read its staged "
			         "bytes: %s", names[k], strerror(-rc));
			goto out;
		}
	}
	if (!(js = pk_manifest(pk->format, pk->level, pk->chunk_size, pk->plain, mf, pk->n_files,
	                       names, tsha, n_out)) || w.seek_files.oom) {
		rc = mfs_errf(err, errlen, -ENOMEM, pk->display, "out of memory");
		goto out;
	}
	struct mfs_buf idx = {0};
	if ((rc = pk_index(&idx, out->total, pk->n_files, &w.seek_files, w.n_chunks,
	                   &w.seek_chunks, js)) < 0) {
		free(idx.p);
		mfs_errf(err, errlen, rc, pk->display, rc == -EFBIG ? "the new seek table or "
		         "manifest would be too big" : "out of memory");
		goto out;
	}
	/* Dead space: old frames and old indexes nothing names any more.  Past
	 * a quarter of the file, this commit rewrites the pack instead. */
	uint64_t size = out->total + idx.len, used = sizeof(head) + w.live + idx.len;
	if (append && size - used > size / 4) {
		free(idx.p);
		rc = -EAGAIN;
		goto out;
	}
	if (c->append_at)
		*c->append_at = append ? pk->size : 0;
	mfs_splice_take(out, idx.p, idx.len);
	if ((rc = out->err) < 0)
		mfs_errf(err, errlen, rc, pk->display, "out of memory");
out:
	free(js);
	free(pl.it);
	free(starts);
	free(w.fmap);
	free(w.canon);
	free(w.seek_chunks.p);
	free(w.seek_files.p);
	free(names);
	free(mf);
	free(tsha);
	free(fsha);
	return rc;
}

int pk_commit(struct mfs_pack *pk, struct mfs_splice *out, const struct mfs_place_change *c,
              char *err, size_t errlen)
{
	if (c->append_at)
		*c->append_at = 0;
	/* Appending needs the pack's own file (a local one with one name: a
	 * hard link would see it grow, so that one is left to the rewrite,
	 * which refuses it), and a --plain pack must stay frames in file order
	 * for zstd -d. */
	struct stat sb;
	int fd = mfs_source_fd(pk->src);
	bool append = c->append_at && !pk->plain && fd >= 0 && fstat(fd, &sb) == 0 &&
	              S_ISREG(sb.st_mode) && sb.st_nlink == 1 && (uint64_t)sb.st_size == pk->size;
	int rc = commit_pack(pk, out, c, append, err, errlen);
	if (rc == -EAGAIN && append) {
		mfs_splice_free(out);
		memset(out, 0, sizeof(*out));
		rc = commit_pack(pk, out, c, false, err, errlen);
	}
	return rc;
}

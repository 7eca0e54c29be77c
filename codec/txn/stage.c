/*
 * codec/txn/stage.c — the staging store: staged object bytes as zstd chunks in a
 * journal beside the model, with an in-memory index and a bounded cache.
 *
 * Mount writes never touch the model (doc/design.md §5.2).  They land
 * here: each object (a tensor's data, a small value) is cut into 256 KiB
 * chunks; a chunk that has been written is compressed and appended to the
 * journal ".<model>.modelfs-journal", and the index remembers where.  Reads
 * page chunks back in on demand.  The journal doubles as the crash record:
 * a stage opened on a journal left by a dead process replays it and offers
 * the edits again.  Nothing here knows any model format; callers name
 * objects by 64-bit keys and supply a callback that reads an object's
 * original bytes (its *base*).
 *
 * HOW IT WORKS
 *
 * An object has a base (base_size bytes, read through the callback), a
 * staged `size`, a `base_limit` and a table of chunk references.  Chunk i
 * covers bytes [i*CHUNK, (i+1)*CHUNK).  Byte p of the object is, first match
 * wins:
 *   - from the cache, if chunk p/CHUNK is cached (possibly dirty);
 *   - from the journal, if the chunk has a reference and p - i*CHUNK < ulen;
 *   - from the base, if p < base_limit;
 *   - zero.
 * Truncating never copies: chunks past the new end lose their reference, a
 * reference straddling it has its `ulen` clipped, and `base_limit` drops to
 * the new size, so base bytes that were cut off stay cut off when the object
 * is extended again (the extension reads as zeros, as POSIX requires).
 *
 * Writes go into cached chunk buffers.  A write covering everything a chunk
 * holds skips reading it; a partial write pages the chunk in first.  When the
 * cache is full the least recently used clean buffer is reused, or failing
 * that the least recently used dirty one is compressed and appended.  So a
 * thousand small writes into one chunk cost one journal record, and a 1 GiB
 * rewrite streams through a cache of 8 MiB: memory is the cache, one
 * compression buffer, the zstd contexts and 24 bytes of index per chunk.
 *
 * Records are appended in the order their effects happen, so replaying the
 * journal from the start rebuilds the index: SIZE, VALUE, DROP and CLEAR are
 * written when the call is made, before memory changes; a CHUNK record holds
 * a chunk's whole content as of its flush.  A size that grew through writes
 * is journaled (as SIZE) at sync.  Between syncs a crash leaves each chunk
 * old or new, as a file system without fsync would.
 *
 * When dead bytes (superseded chunks, size records) outnumber live ones and
 * exceed a minimum, the live records are copied to ".<model>.modelfs-journal-
 * new", which is synced and renamed over the journal: the same temp + fsync +
 * rename protocol as a commit, so a crash leaves the old or the new journal.
 *
 * INVARIANTS
 *  1. base_limit <= size, and base_limit <= base_size.  Every chunk
 *     reference has ulen <= dlen <= CHUNK and lies below size: a reference
 *     to chunk i has i*CHUNK + ulen <= size.
 *  2. A cached buffer holds the chunk as the object reads now, with zeros at
 *     and past `size`.  A dirty buffer is newer than the chunk's reference.
 *  3. The journal is appended to and never rewritten in place, except that a
 *     torn tail found at open is cut off, a clear cuts it back to the header,
 *     and compaction replaces the whole file by rename.
 *  4. Replaying records [header, jend) yields the index with every dirty
 *     buffer undone and each object's size as journaled (`jsize`).  After
 *     mfs_stage_sync() nothing is dirty and jsize == size, so replay yields
 *     exactly what reads return, and it is durable.
 *  5. An object's OBJECT record precedes every other record for it, and one
 *     appears again only after a DROP or CLEAR.
 *  6. After an fsync of the journal fails, no later sync reports success
 *     (fsyncgate, doc/reliability.md §1.3): the stage is `failed` until a clear
 *     or reset discards the journal.
 *  7. The journal is flock()ed by its one writer for as long as it is open,
 *     so two daemons never interleave records.
 *
 * JOURNAL FORMAT (all integers little-endian)
 *
 * File header, at offset 0: the side-file header of txn/sidefile.h (magic
 * "MFSJRNL\0", parameter = chunk size 262144, the model's identity and
 * layout fingerprint, and the journal's id), 96 bytes; a version 1 header
 * (64 bytes, no ctime, layout or id) is still replayed.
 *
 * Then records, back to back, each a 48-byte header and a payload:
 *   OFFSET  SIZE  MEANING
 *        0     4  magic "MFSR"
 *        4     1  type (below)
 *        5     1  flags: bit 0 = payload stored raw (not zstd)
 *        6     2  reserved, 0
 *        8     8  key
 *       16     8  arg: OBJECT base size | SIZE new size | CHUNK chunk index
 *       24     4  dlen: bytes the payload decodes to (CHUNK, VALUE)
 *       28     4  ulen: bytes of those that belong to the object (<= dlen)
 *       32     4  payload length
 *       36     4  CRC-32 of the payload
 *       40     4  reserved, 0
 *       44     4  CRC-32 of bytes 0..43
 *       48     n  payload
 *
 *   TYPE        MEANING                                             PAYLOAD
 *   1 OBJECT    key is staged from now on; base size in arg          none
 *   2 SIZE      object's size becomes arg (truncate or extend)      none
 *   3 CHUNK     chunk arg of key is the payload (decoded, dlen      zstd frame
 *               bytes; of those the first ulen count)               or raw bytes
 *   4 VALUE     object is exactly the payload (a small value);      raw bytes
 *               its base no longer shows
 *   5 DROP      key's staged changes are gone                       none
 *   6 CLEAR     every staged change is gone (abort)                 none
 *   7 MOVE      key takes over the content of object arg, which is  none
 *               unstaged; key's base no longer shows (a rename over
 *               a tensor's data file)
 *   8 COMMIT    a commit's mark: arg 1 = a rewrite or clone is about  arg 1: the
 *               to install the model version in the payload, 2 = an  identity
 *               in-place commit is under way (its redo log carries   (dev, ino,
 *               this journal's id), 0 = the last mark is void (the   size, mtime
 *               commit failed before installing anything)           s, ns), 40 B
 *
 * A journal whose identity no longer names the model is another version's
 * and is set aside, unless its last mark says its own commit installed the
 * version on disk: then its edits are in the model and it is removed.  A
 * journal that does name the model but whose last mark names another file
 * that exists beside it (a versioned commit, which writes a new file and
 * leaves the model alone, died before it removed the journal) is removed
 * too: its edits are in that file.
 *
 * Replay stops at the first record that is short, fails a CRC, has an
 * out-of-range field or makes no sense (a CHUNK for a key with no OBJECT),
 * and reports where.  A decoded chunk must decode to exactly dlen bytes, and
 * dlen is checked against the chunk size before anything is decoded: sizes
 * stored in a zstd frame are never trusted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "modelfs/htab.h"

#include "core/crc32.h"
#include "txn/sidefile.h"
#include "txn/stage.h"

#define CHUNK           MFS_STAGE_CHUNK
#define MAX_CHUNKS      (MFS_STAGE_MAX_OBJECT / CHUNK)
#define JHDR            MFS_SIDEFILE_HDR
#define RHDR            48
#define F_RAW           0x01
#define CLEN_RAW        0x80000000u

enum { REC_OBJECT = 1, REC_SIZE, REC_CHUNK, REC_VALUE, REC_DROP, REC_CLEAR, REC_MOVE, REC_COMMIT };

/* REC_COMMIT: arg says what a commit is doing, a rewrite's payload is the
 * identity it is about to install (dev, ino, size, mtime). */
enum { MARK_NONE = 0, MARK_REWRITE = 1, MARK_INPLACE = 2 };
#define COMMIT_PAYLOAD  40

static const char jmagic[8] = {'M', 'F', 'S', 'J', 'R', 'N', 'L', 0};
static const char rmagic[4] = {'M', 'F', 'S', 'R'};

/* A chunk's place in the journal.  joff == 0 means "not in the journal"
 * (offset 0 is the file header, so no payload can start there). */
struct cref {
	uint64_t joff;          /* payload offset */
	uint32_t clen;          /* payload bytes, | CLEN_RAW when stored raw */
	uint32_t dlen;          /* bytes the payload decodes to */
	uint32_t ulen;          /* of those, bytes still in the object */
	uint32_t crc;           /* CRC-32 of the payload, checked at page-in */
};

struct obj {
	struct obj *next;       /* hash chain */
	uint64_t key;
	uint64_t base_size;
	uint64_t base_limit;    /* base bytes below this show through (invariant 1) */
	uint64_t size;          /* size as staged */
	uint64_t jsize;         /* size a replay of the journal gives */
	mfs_stage_read_fn base_read;
	void *base_arg;
	bool bound;
	bool staged;
	struct cref *chunks;
	size_t n_chunks, cap_chunks;
};

struct cent {
	struct obj *o;          /* NULL: free */
	uint64_t idx;
	uint8_t *buf;           /* CHUNK bytes, allocated on first use */
	bool dirty;
	uint64_t used;          /* LRU tick */
};

struct mfs_stage {
	pthread_mutex_t lock;
	int dirfd;
	char jname[NAME_MAX + 1];
	char newname[NAME_MAX + 1];
	struct mfs_identity id;
	uint64_t jid;           /* the journal's id (sidefile.h), new with every fresh journal */
	uint64_t hdr_len;       /* its header's length: MFS_SIDEFILE_HDR, or _V1 for an old one */
	int jfd;                /* -1 until something is staged */
	uint64_t jend;          /* where the next record goes */
	uint64_t live;          /* bytes of the journal still referenced */
	int failed;             /* invariant 6 */

	struct obj **buckets;
	size_t n_buckets, n_objs, n_staged;

	struct cent *cache;
	size_t n_cache;
	uint64_t tick;

	uint8_t *cbuf;          /* RHDR + compressBound(CHUNK): records in and out */
	size_t cbuf_len;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	int level;
	uint64_t compact_min;

	uint64_t n_flushes, n_compactions;
	int last_compact_err;
};

/* ------------------------------------------------------------ helpers */

static uint32_t clen_bytes(const struct cref *c)
{
	return c->clen & ~CLEN_RAW;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* ------------------------------------------------------------ objects */

static size_t bucket_of(const struct mfs_stage *st, uint64_t key)
{
	return mfs_htab_slot(key, st->n_buckets);
}

static struct obj *find(const struct mfs_stage *st, uint64_t key)
{
	for (struct obj *o = st->buckets[bucket_of(st, key)]; o; o = o->next)
		if (o->key == key)
			return o;
	return NULL;
}

static int grow_buckets(struct mfs_stage *st)
{
	return mfs_htab_grow(&st->buckets, &st->n_buckets, offsetof(struct obj, next),
	                     offsetof(struct obj, key));
}

/* A new unstaged object whose content is its base. */
static int obj_new(struct obj **out, struct mfs_stage *st, uint64_t key, uint64_t base_size)
{
	if (st->n_objs >= st->n_buckets) {
		int rc = grow_buckets(st);
		if (rc < 0)
			return rc;
	}
	struct obj *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->key = key;
	o->base_size = o->base_limit = o->size = o->jsize = base_size;
	size_t h = bucket_of(st, key);
	o->next = st->buckets[h];
	st->buckets[h] = o;
	st->n_objs++;
	*out = o;
	return 0;
}

static void obj_free(struct mfs_stage *st, struct obj *o)
{
	struct obj **pp = &st->buckets[bucket_of(st, o->key)];
	while (*pp != o)
		pp = &(*pp)->next;
	*pp = o->next;
	st->n_objs--;
	free(o->chunks);
	free(o);
}

static int chunks_reserve(struct obj *o, uint64_t idx)
{
	if (idx >= MAX_CHUNKS)
		return -EFBIG;
	if (idx < o->cap_chunks)
		return 0;
	size_t cap = o->cap_chunks ? o->cap_chunks : 4;
	while (cap <= idx)
		cap *= 2;
	if (cap > MAX_CHUNKS)
		cap = MAX_CHUNKS;
	struct cref *c = realloc(o->chunks, cap * sizeof(*c));
	if (!c)
		return -ENOMEM;
	memset(c + o->cap_chunks, 0, (cap - o->cap_chunks) * sizeof(*c));
	o->chunks = c;
	o->cap_chunks = cap;
	return 0;
}

static void cref_set(struct mfs_stage *st, struct obj *o, uint64_t idx, const struct cref *c)
{
	struct cref *old = &o->chunks[idx];
	if (old->joff)
		st->live -= RHDR + clen_bytes(old);
	*old = *c;
	if (c->joff)
		st->live += RHDR + clen_bytes(c);
	if (idx >= o->n_chunks)
		o->n_chunks = idx + 1;
}

static void cache_discard(struct mfs_stage *st, struct obj *o, uint64_t from_idx)
{
	for (size_t i = 0; i < st->n_cache; i++)
		if (st->cache[i].o == o && st->cache[i].idx >= from_idx) {
			st->cache[i].o = NULL;
			st->cache[i].dirty = false;
		}
}

/*
 * The in-memory half of a truncate or extend, shared by live calls and by
 * replay (so both reach the same index; invariant 4).
 */
static void obj_set_size(struct mfs_stage *st, struct obj *o, uint64_t size)
{
	if (size < o->size) {
		if (size < o->base_limit)
			o->base_limit = size;
		uint64_t keep = (size + CHUNK - 1) / CHUNK;
		for (uint64_t i = keep; i < o->n_chunks; i++) {
			static const struct cref none;
			cref_set(st, o, i, &none);
		}
		if (o->n_chunks > keep)
			o->n_chunks = (size_t)keep;
		cache_discard(st, o, keep);
		uint32_t rem = (uint32_t)(size % CHUNK);
		uint64_t idx = size / CHUNK;
		if (rem) {
			if (idx < o->n_chunks && o->chunks[idx].joff && o->chunks[idx].ulen > rem)
				o->chunks[idx].ulen = rem;
			for (size_t i = 0; i < st->n_cache; i++)
				if (st->cache[i].o == o && st->cache[i].idx == idx)
					memset(st->cache[i].buf + rem, 0, CHUNK - rem);
		}
	}
	o->size = size;
}

/* Forget an object's staged state; it goes back to its base (invariant 5). */
static void obj_unstage(struct mfs_stage *st, struct obj *o)
{
	cache_discard(st, o, 0);
	for (size_t i = 0; i < o->n_chunks; i++)
		if (o->chunks[i].joff)
			st->live -= RHDR + clen_bytes(&o->chunks[i]);
	free(o->chunks);
	o->chunks = NULL;
	o->n_chunks = o->cap_chunks = 0;
	o->size = o->base_limit = o->jsize = o->base_size;
	if (o->staged) {
		o->staged = false;
		st->n_staged--;
		st->live -= RHDR;
	}
	if (!o->bound)
		obj_free(st, o);
}

/* The in-memory half of VALUE: the object becomes exactly one raw chunk. */
static void obj_set_value(struct mfs_stage *st, struct obj *o, uint64_t poff, uint32_t len,
                          uint32_t crc)
{
	cache_discard(st, o, 0);
	obj_set_size(st, o, 0);
	o->n_chunks = 0;
	if (len) {
		struct cref c = {poff, len | CLEN_RAW, len, len, crc};
		cref_set(st, o, 0, &c);    /* chunks_reserve(o, 0) was done by the caller */
	}
	o->size = o->jsize = len;
}

/*
 * The in-memory half of MOVE, shared by live calls and replay: `to` takes
 * over the chunks and size of `from` and shows no base any more; `from`
 * goes back to unstaged (and is freed when nothing binds it).  Chunk
 * references move with their journal records, so `live` does not change
 * except for `from`'s OBJECT record, which is dead now.
 */
static void obj_move(struct mfs_stage *st, struct obj *from, struct obj *to)
{
	cache_discard(st, to, 0);
	for (size_t i = 0; i < to->n_chunks; i++)
		if (to->chunks[i].joff)
			st->live -= RHDR + clen_bytes(&to->chunks[i]);
	free(to->chunks);
	to->chunks = from->chunks;
	to->n_chunks = from->n_chunks;
	to->cap_chunks = from->cap_chunks;
	to->size = from->size;
	to->jsize = from->jsize;
	to->base_limit = 0;
	/* Clean cached chunks of `from` hold exactly what `to` reads now. */
	for (size_t i = 0; i < st->n_cache; i++)
		if (st->cache[i].o == from)
			st->cache[i].o = to;
	from->chunks = NULL;
	from->n_chunks = from->cap_chunks = 0;
	obj_unstage(st, from);
}

/* ------------------------------------------------------------ journal */

static void jheader(uint8_t h[JHDR], const struct mfs_identity *id, uint64_t jid)
{
	struct mfs_sidefile_hdr sh = {.version = 2, .param = CHUNK, .id = *id, .journal_id = jid};
	memcpy(sh.magic, jmagic, 8);
	mfs_sidefile_hdr_put(h, &sh);
}

/* A journal id: random, never 0 (0 means "none" in a redo log). */
static uint64_t new_jid(void)
{
	uint64_t v = 0;
	while (!v) {
		if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			v = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
		}
	}
	return v;
}

/*
 * Write one record to `fd` at `pos`.  The payload, if any, must already sit
 * at st->cbuf + RHDR, so header and payload go out in one pwrite.
 */
static int write_rec(struct mfs_stage *st, int fd, uint64_t pos, int type, int flags,
                     uint64_t key, uint64_t arg, uint32_t dlen, uint32_t ulen, uint32_t plen,
                     uint32_t *pcrc)
{
	uint8_t *h = st->cbuf;
	uint32_t crc = plen ? mfs_crc32(0, h + RHDR, plen) : 0;
	memset(h, 0, RHDR);
	memcpy(h, rmagic, 4);
	h[4] = (uint8_t)type;
	h[5] = (uint8_t)flags;
	mfs_put_le64(h + 8, key);
	mfs_put_le64(h + 16, arg);
	mfs_put_le32(h + 24, dlen);
	mfs_put_le32(h + 28, ulen);
	mfs_put_le32(h + 32, plen);
	mfs_put_le32(h + 36, crc);
	mfs_put_le32(h + 44, mfs_crc32(0, h, 44));
	if (pcrc)
		*pcrc = crc;
	return mfs_pwrite_full(fd, h, RHDR + (size_t)plen, pos);
}

static int ensure_journal(struct mfs_stage *st)
{
	if (st->jfd >= 0)
		return 0;
	int rc;
	int fd = mfs_io->openat(st->dirfd, st->jname,
	                        O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno == EEXIST ? -EBUSY : -errno;
	if (mfs_io->flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto fail;
	}
	uint8_t h[JHDR];
	st->jid = new_jid();
	st->hdr_len = JHDR;
	jheader(h, &st->id, st->jid);
	rc = mfs_pwrite_full(fd, h, JHDR, 0);
	/* The header and the name must be durable before any record counts on
	 * them; after this, records only need the file's own fdatasync. */
	if (rc == 0 && mfs_io->fdatasync(fd) < 0)
		rc = -errno;
	if (rc == 0)
		rc = mfs_fsync_dir(st->dirfd);
	if (rc < 0)
		goto fail;
	st->jfd = fd;
	st->jend = st->live = JHDR;
	return 0;
fail:
	mfs_io->unlinkat(st->dirfd, st->jname, 0);
	mfs_io->close(fd);
	return rc;
}

/* Append a record at the end of the journal; see write_rec(). */
static int append(struct mfs_stage *st, int type, int flags, uint64_t key, uint64_t arg,
                  uint32_t dlen, uint32_t ulen, uint32_t plen, uint64_t *poff, uint32_t *pcrc)
{
	int rc = ensure_journal(st);
	if (rc < 0)
		return rc;
	rc = write_rec(st, st->jfd, st->jend, type, flags, key, arg, dlen, ulen, plen, pcrc);
	if (rc < 0) {
		/* Leave no half record past the end for a replay to trip over. */
		mfs_io->ftruncate(st->jfd, (off_t)st->jend);
		return rc;
	}
	if (poff)
		*poff = st->jend + RHDR;
	st->jend += RHDR + (uint64_t)plen;
	return 0;
}

/* Journal an object's first change (invariant 5). */
static int stage_obj(struct mfs_stage *st, struct obj *o)
{
	if (o->staged)
		return 0;
	int rc = append(st, REC_OBJECT, 0, o->key, o->base_size, 0, 0, 0, NULL, NULL);
	if (rc < 0)
		return rc;
	o->staged = true;
	st->n_staged++;
	st->live += RHDR;
	return 0;
}

/* ------------------------------------------------------------ chunks */

static int read_base(struct obj *o, uint8_t *buf, uint64_t len, uint64_t off)
{
	if (!o->base_read)
		return -ENXIO;
	while (len) {
		ssize_t n = o->base_read(o->base_arg, buf, (size_t)len, off);
		if (n < 0)
			return (int)n;
		if (n == 0 || (uint64_t)n > len)
			return -EIO;    /* the base is shorter than it said */
		buf += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Read and check a journal payload into st->cbuf + RHDR. */
static int read_payload(struct mfs_stage *st, int fd, const struct cref *c)
{
	uint32_t clen = clen_bytes(c);
	if (clen > st->cbuf_len - RHDR)
		return -EUCLEAN;
	int rc = mfs_pread_full(fd, st->cbuf + RHDR, clen, c->joff);
	if (rc < 0)
		return rc;
	if (mfs_crc32(0, st->cbuf + RHDR, clen) != c->crc)
		return -EUCLEAN;
	return 0;
}

/* Fill `buf` with chunk `idx` as the index (not the cache) has it. */
static int load_chunk(struct mfs_stage *st, struct obj *o, uint64_t idx, uint8_t *buf)
{
	uint64_t cs = idx * CHUNK;
	if (idx < o->n_chunks && o->chunks[idx].joff) {
		const struct cref *c = &o->chunks[idx];
		int rc = read_payload(st, st->jfd, c);
		if (rc < 0)
			return rc;
		if (c->clen & CLEN_RAW) {
			memcpy(buf, st->cbuf + RHDR, c->dlen);
		} else {
			size_t n = ZSTD_decompressDCtx(st->dctx, buf, CHUNK, st->cbuf + RHDR,
			                               clen_bytes(c));
			if (ZSTD_isError(n) || n != c->dlen)
				return -EUCLEAN;
		}
		/* Zero the tail after decoding, not before: zstd (1.5.1 on) may
		 * use the unused end of the output buffer as scratch space for
		 * literals, so it does not survive decompression. */
		memset(buf + c->ulen, 0, CHUNK - c->ulen);
		return 0;
	}
	uint64_t n = cs < o->base_limit ? min64(CHUNK, o->base_limit - cs) : 0;
	memset(buf + n, 0, CHUNK - n);
	return n ? read_base(o, buf, n, cs) : 0;
}

/* Compress and append a dirty cached chunk; afterwards it is clean. */
static int flush_entry(struct mfs_stage *st, struct cent *e)
{
	struct obj *o = e->o;
	uint64_t cs = e->idx * CHUNK;
	uint32_t ulen = o->size > cs ? (uint32_t)min64(CHUNK, o->size - cs) : 0;
	if (ulen == 0) {
		/* Cannot happen while truncate discards such entries; harmless. */
		e->dirty = false;
		return 0;
	}
	int rc = chunks_reserve(o, e->idx);
	if (rc < 0)
		return rc;
	uint8_t *payload = st->cbuf + RHDR;
	size_t clen = ZSTD_compressCCtx(st->cctx, payload, st->cbuf_len - RHDR, e->buf, ulen,
	                                st->level);
	int flags = 0;
	if (ZSTD_isError(clen) || clen >= ulen) {
		/* Incompressible (or empty): raw is smaller and needs no decoding. */
		memcpy(payload, e->buf, ulen);
		clen = ulen;
		flags = F_RAW;
	}
	uint64_t poff;
	uint32_t crc;
	rc = append(st, REC_CHUNK, flags, o->key, e->idx, ulen, ulen, (uint32_t)clen, &poff, &crc);
	if (rc < 0)
		return rc;
	struct cref c = {poff, (uint32_t)clen | (flags ? CLEN_RAW : 0), ulen, ulen, crc};
	cref_set(st, o, e->idx, &c);
	if (cs + ulen > o->jsize)
		o->jsize = cs + ulen;
	e->dirty = false;
	st->n_flushes++;
	return 0;
}

static struct cent *cache_find(struct mfs_stage *st, const struct obj *o, uint64_t idx)
{
	for (size_t i = 0; i < st->n_cache; i++)
		if (st->cache[i].o == o && st->cache[i].idx == idx)
			return &st->cache[i];
	return NULL;
}

/*
 * The cache entry for chunk `idx` of `o`, filled from the index when `load`
 * (else zeroed: the caller overwrites all the chunk holds).  May evict,
 * which may write a record.
 */
static int cache_get(struct cent **out, struct mfs_stage *st, struct obj *o, uint64_t idx,
                     bool load)
{
	struct cent *e = cache_find(st, o, idx);
	if (e) {
		e->used = ++st->tick;
		*out = e;
		return 0;
	}
	struct cent *free_e = NULL, *clean = NULL, *dirty = NULL;
	for (size_t i = 0; i < st->n_cache; i++) {
		struct cent *c = &st->cache[i];
		if (!c->o) {
			free_e = c;
			break;
		}
		if (!c->dirty && (!clean || c->used < clean->used))
			clean = c;
		if (c->dirty && (!dirty || c->used < dirty->used))
			dirty = c;
	}
	e = free_e ? free_e : clean ? clean : dirty;
	if (e->o && e->dirty) {
		int rc = flush_entry(st, e);
		if (rc < 0)
			return rc;
	}
	e->o = NULL;
	if (!e->buf) {
		e->buf = malloc(CHUNK);
		if (!e->buf)
			return -ENOMEM;
	}
	if (load) {
		int rc = load_chunk(st, o, idx, e->buf);
		if (rc < 0)
			return rc;
	} else {
		memset(e->buf, 0, CHUNK);
	}
	e->o = o;
	e->idx = idx;
	e->dirty = false;
	e->used = ++st->tick;
	*out = e;
	return 0;
}

static int flush_all(struct mfs_stage *st)
{
	for (size_t i = 0; i < st->n_cache; i++)
		if (st->cache[i].o && st->cache[i].dirty) {
			int rc = flush_entry(st, &st->cache[i]);
			if (rc < 0)
				return rc;
		}
	return 0;
}

/* ------------------------------------------------------------ compaction */

/*
 * Rewrite the live records into a new journal and rename it into place.
 * On failure the old journal and the index are untouched: compaction only
 * saves space, so its errors are remembered, not returned.
 */
static int compact(struct mfs_stage *st)
{
	int rc = 0, nfd = -1;
	uint64_t *newoff = NULL;
	size_t n_live = 0, k = 0;
	for (size_t b = 0; b < st->n_buckets; b++)
		for (struct obj *o = st->buckets[b]; o; o = o->next)
			for (size_t i = 0; o->staged && i < o->n_chunks; i++)
				n_live += o->chunks[i].joff != 0;
	newoff = malloc((n_live ? n_live : 1) * sizeof(*newoff));
	if (!newoff)
		return -ENOMEM;

	mfs_io->unlinkat(st->dirfd, st->newname, 0);
	nfd = mfs_io->openat(st->dirfd, st->newname,
	                     O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (nfd < 0) {
		rc = -errno;
		goto out;
	}
	if (mfs_io->flock(nfd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		goto out;
	}
	uint8_t h[JHDR];
	jheader(h, &st->id, st->jid);
	rc = mfs_pwrite_full(nfd, h, JHDR, 0);
	uint64_t pos = JHDR, live = JHDR;
	for (size_t b = 0; rc == 0 && b < st->n_buckets; b++) {
		for (struct obj *o = st->buckets[b]; rc == 0 && o; o = o->next) {
			if (!o->staged)
				continue;
			/* Replaying these gives this object's journaled state back. */
			rc = write_rec(st, nfd, pos, REC_OBJECT, 0, o->key, o->base_size, 0, 0, 0,
			               NULL);
			pos += RHDR;
			live += RHDR;
			uint64_t rsize = o->base_size;
			if (rc == 0 && o->base_limit < o->base_size) {
				rc = write_rec(st, nfd, pos, REC_SIZE, 0, o->key, o->base_limit, 0, 0,
				               0, NULL);
				pos += RHDR;
				rsize = o->base_limit;
			}
			for (size_t i = 0; rc == 0 && i < o->n_chunks; i++) {
				const struct cref *c = &o->chunks[i];
				if (!c->joff)
					continue;
				rc = read_payload(st, st->jfd, c);
				if (rc == 0)
					rc = write_rec(st, nfd, pos, REC_CHUNK,
					               (c->clen & CLEN_RAW) ? F_RAW : 0, o->key, i,
					               c->dlen, c->ulen, clen_bytes(c), NULL);
				newoff[k++] = pos + RHDR;
				pos += RHDR + clen_bytes(c);
				live += RHDR + clen_bytes(c);
				if (i * CHUNK + c->ulen > rsize)
					rsize = i * CHUNK + c->ulen;
			}
			if (rc == 0 && rsize != o->jsize) {
				rc = write_rec(st, nfd, pos, REC_SIZE, 0, o->key, o->jsize, 0, 0, 0,
				               NULL);
				pos += RHDR;
			}
		}
	}
	if (rc < 0)
		goto out;
	if (mfs_io->fdatasync(nfd) < 0) {
		rc = -errno;
		goto out;
	}
	if (mfs_io->renameat(st->dirfd, st->newname, st->dirfd, st->jname) < 0) {
		rc = -errno;
		goto out;
	}
	/* The new journal is in place: from here on only it is used, even if
	 * the directory fsync fails (then a crash may bring back the old one,
	 * which replays to the same state). */
	mfs_fsync_dir(st->dirfd);
	mfs_io->close(st->jfd);
	st->jfd = nfd;
	st->hdr_len = JHDR;
	nfd = -1;
	k = 0;
	for (size_t b = 0; b < st->n_buckets; b++)
		for (struct obj *o = st->buckets[b]; o; o = o->next)
			for (size_t i = 0; o->staged && i < o->n_chunks; i++)
				if (o->chunks[i].joff)
					o->chunks[i].joff = newoff[k++];
	st->jend = pos;
	st->live = live;
	st->n_compactions++;
out:
	if (nfd >= 0) {
		mfs_io->unlinkat(st->dirfd, st->newname, 0);
		mfs_io->close(nfd);
	}
	free(newoff);
	return rc;
}

static void maybe_compact(struct mfs_stage *st)
{
	if (st->jfd < 0 || st->failed)
		return;
	uint64_t dead = st->jend > st->live ? st->jend - st->live : 0;
	if (dead > st->live && dead > st->compact_min) {
		int rc = compact(st);
		st->last_compact_err = rc < 0 ? -rc : 0;
	}
}

/* ------------------------------------------------------------ replay */

static void free_all(struct mfs_stage *st);

/* Apply one record read at open.  Returns 0, or -EUCLEAN when the record
 * makes no sense here (replay stops), or -ENOMEM. */
static int replay_rec(struct mfs_stage *st, const uint8_t *h, uint64_t poff)
{
	int type = h[4], flags = h[5];
	uint64_t key = mfs_get_le64(h + 8), arg = mfs_get_le64(h + 16);
	uint32_t dlen = mfs_get_le32(h + 24), ulen = mfs_get_le32(h + 28), plen = mfs_get_le32(h + 32);
	uint32_t crc = mfs_get_le32(h + 36);
	struct obj *o = find(st, key);
	int rc;

	if (type == REC_CLEAR) {
		if (plen)
			return -EUCLEAN;
		for (size_t b = 0; b < st->n_buckets; b++) {
			struct obj *p = st->buckets[b];
			while (p) {
				struct obj *next = p->next;
				obj_unstage(st, p);
				p = next;
			}
		}
		return 0;
	}
	if (type == REC_OBJECT) {
		if (o || plen || arg > MFS_STAGE_MAX_OBJECT)
			return -EUCLEAN;
		rc = obj_new(&o, st, key, arg);
		if (rc < 0)
			return rc;
		o->staged = true;
		st->n_staged++;
		st->live += RHDR;
		return 0;
	}
	if (!o || !o->staged)
		return -EUCLEAN;
	switch (type) {
	case REC_SIZE:
		if (plen || arg > MFS_STAGE_MAX_OBJECT)
			return -EUCLEAN;
		obj_set_size(st, o, arg);
		o->jsize = arg;
		return 0;
	case REC_CHUNK: {
		bool raw = flags & F_RAW;
		if (arg >= MAX_CHUNKS || dlen > CHUNK || ulen > dlen || ulen == 0 ||
		    (raw ? plen != dlen : plen > ZSTD_compressBound(CHUNK)))
			return -EUCLEAN;
		rc = chunks_reserve(o, arg);
		if (rc < 0)
			return rc;
		struct cref c = {poff, plen | (raw ? CLEN_RAW : 0), dlen, ulen, crc};
		cref_set(st, o, arg, &c);
		if (arg * CHUNK + ulen > o->size)
			o->size = arg * CHUNK + ulen;
		o->jsize = o->size;
		return 0;
	}
	case REC_VALUE:
		if (!(flags & F_RAW) || plen != dlen || dlen != ulen || plen > MFS_STAGE_MAX_VALUE)
			return -EUCLEAN;
		rc = chunks_reserve(o, 0);
		if (rc < 0)
			return rc;
		obj_set_value(st, o, poff, plen, crc);
		return 0;
	case REC_DROP:
		if (plen)
			return -EUCLEAN;
		obj_unstage(st, o);
		return 0;
	case REC_MOVE: {
		struct obj *from = find(st, arg);
		if (plen || !from || !from->staged || from == o)
			return -EUCLEAN;
		obj_move(st, from, o);
		return 0;
	}
	default:
		return -EUCLEAN;
	}
}

static const char *rec_name(int type)
{
	static const char *names[] = {"?", "OBJECT", "SIZE", "CHUNK", "VALUE", "DROP", "CLEAR",
	                              "MOVE", "COMMIT"};
	return type > 0 && type <= REC_COMMIT ? names[type] : "unknown";
}

/* Rename a journal we will not use out of the way, keeping it for the user. */
static int set_aside(struct mfs_stage *st, const char *model, const char *why, char *name,
                     size_t namelen)
{
	char suffix[MFS_SIDEFILE_SUFFIX_MAX + 1];
	snprintf(suffix, sizeof(suffix), ".modelfs-journal.%s-%lld", why, (long long)time(NULL));
	int rc = mfs_sidefile_name(name, namelen, model, suffix);
	if (rc < 0)
		return rc;
	if (mfs_io->renameat(st->dirfd, st->jname, st->dirfd, name) < 0)
		return -errno;
	return 0;
}

/*
 * Replay the records of the journal open at `fd` (fsize bytes, header of
 * st->hdr_len) into the index.  *why says where it stopped early (NULL: at
 * the end), *pos where; *mark gets whether the last commit mark stands and
 * the identity it names.  Returns 0 or -errno (a read error, not a bad
 * record) with the message set.
 */
static int replay_records(struct mfs_stage *st, int fd, uint64_t fsize, const char *model,
                          struct mfs_stage_recovery *rec, const char **why, int *bad_type,
                          uint64_t *pos_out, bool *marked, struct mfs_identity *mark,
                          char *err, size_t errlen)
{
	uint64_t pos = st->hdr_len;
	int rc;
	*why = NULL;
	*marked = false;
	st->live = st->hdr_len;
	while (pos < fsize) {
		uint8_t r[RHDR];
		if (fsize - pos < RHDR) {
			*why = "short record header";
			break;
		}
		rc = mfs_pread_full(fd, r, RHDR, pos);
		if (rc < 0)
			return mfs_errf(err, errlen, rc, model, "cannot read %s: %s", st->jname,
			                strerror(-rc));
		if (memcmp(r, rmagic, 4) != 0 || mfs_get_le32(r + 44) != mfs_crc32(0, r, 44)) {
			*why = "bad record header";
			break;
		}
		*bad_type = r[4];
		uint32_t plen = mfs_get_le32(r + 32);
		if (plen > st->cbuf_len - RHDR) {
			*why = "payload length out of range";
			break;
		}
		if (fsize - pos - RHDR < plen) {
			*why = "payload cut short";
			break;
		}
		if (plen) {
			rc = mfs_pread_full(fd, st->cbuf + RHDR, plen, pos + RHDR);
			if (rc < 0)
				return mfs_errf(err, errlen, rc, model, "cannot read %s: %s",
				                st->jname, strerror(-rc));
			if (mfs_crc32(0, st->cbuf + RHDR, plen) != mfs_get_le32(r + 36)) {
				*why = "payload checksum mismatch";
				break;
			}
		}
		if (r[4] == REC_COMMIT) {
			/* Not an edit: what a commit was about to install (or, with
			 * arg 0, that it did not). */
			uint64_t arg = mfs_get_le64(r + 16);
			if (arg > MARK_INPLACE || plen != (arg == MARK_REWRITE ? COMMIT_PAYLOAD : 0)) {
				*why = "record out of place";
				break;
			}
			*marked = arg != MARK_NONE;
			*mark = (struct mfs_identity){0};
			if (arg == MARK_REWRITE) {
				const uint8_t *p = st->cbuf + RHDR;
				*mark = (struct mfs_identity){
					mfs_get_le64(p), mfs_get_le64(p + 8), mfs_get_le64(p + 16),
					(int64_t)mfs_get_le64(p + 24), (int64_t)mfs_get_le64(p + 32), 0, 0, 0
				};
			}
			rec->n_records++;
			pos += RHDR + plen;
			continue;
		}
		rc = replay_rec(st, r, pos + RHDR);
		if (rc == -EUCLEAN) {
			*why = "record out of place";
			break;
		}
		if (rc < 0)
			return mfs_errf(err, errlen, rc, model, "replaying %s: %s", st->jname,
			                strerror(-rc));
		rec->n_records++;
		pos += RHDR + plen;
	}
	*pos_out = pos;
	return 0;
}

/*
 * Is there a file in the directory that is version `mark` (device, inode,
 * size, mtime)?  A commit's temp does not count: a temp of a dead commit is
 * not installed (garbage collection removes it), one of a live commit is
 * not this journal's business.  Reads only.
 */
static bool version_installed(int dirfd, const struct mfs_identity *mark)
{
	int dfd = mfs_io->openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (dfd < 0)
		return false;
	DIR *d = fdopendir(dfd);
	if (!d) {
		mfs_io->close(dfd);
		return false;
	}
	bool found = false;
	struct dirent *de;
	while (!found && (de = readdir(d))) {
		if (de->d_ino != mark->ino || strstr(de->d_name, ".modelfs-"))
			continue;
		struct stat sb;
		struct mfs_identity now;
		if (mfs_io->fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(sb.st_mode)) {
			mfs_identity_from_stat(&now, &sb);
			found = mfs_identity_same_file(&now, mark);
		}
	}
	closedir(d);
	return found;
}

/*
 * Replay the journal open at `fd` (locked).  On success either st->jfd is fd
 * and the index is rebuilt, or fd is closed, st->jfd is -1 and the journal
 * was removed (empty, or obsolete: its edits are in the model already) or
 * set aside.  On failure fd is still the caller's.
 *
 * A journal written for another version of the model is obsolete, not
 * stale, when that version is what its last commit installed: a rewrite
 * whose commit mark names the model's present identity (the process died
 * between the rename and the journal's reset), or an in-place commit whose
 * redo log, naming this journal, recovery has just completed
 * (opts.committed_journal).
 */
static int replay(struct mfs_stage *st, int fd, const char *model,
                  const struct mfs_stage_opts *opts, struct mfs_stage_recovery *rec,
                  char *err, size_t errlen)
{
	struct stat sb;
	if (mfs_io->fstat(fd, &sb) < 0)
		return mfs_errf(err, errlen, -errno, model, "cannot stat %s: %s", st->jname,
		                strerror(errno));
	uint64_t fsize = (uint64_t)sb.st_size;
	uint8_t h[JHDR];
	char aside[NAME_MAX + 1] = "";
	int rc;
	/* A read error is not a bad header: fail, never set a journal aside
	 * because the disk hiccuped. */
	size_t hl = fsize < JHDR ? (size_t)fsize : JHDR;
	if (hl && (rc = mfs_pread_full(fd, h, hl, 0)) < 0)
		return mfs_errf(err, errlen, rc, model, "cannot read %s: %s", st->jname,
		                strerror(-rc));
	struct mfs_sidefile_hdr sh;
	size_t got = hl ? mfs_sidefile_hdr_get(&sh, h, hl, jmagic) : 0;
	bool header_ok = got && sh.param == CHUNK;
	rec->found = true;
	if (!header_ok) {
		/* A header is synced before any record is written, so a short or
		 * torn one means the journal was being created: nothing to lose. */
		if (fsize <= JHDR) {
			if (mfs_io->unlinkat(st->dirfd, st->jname, 0) < 0)
				return mfs_errf(err, errlen, -errno, model, "cannot remove empty "
				                "journal %s: %s", st->jname, strerror(errno));
			mfs_io->close(fd);
			snprintf(rec->msg, sizeof(rec->msg),
			         "removed an empty journal %s (nothing was staged)", st->jname);
			return 0;
		}
		rc = set_aside(st, model, "bad", aside, sizeof(aside));
		if (rc < 0)
			return mfs_errf(err, errlen, rc, model, "journal %s has a bad header and "
			                "cannot be set aside: %s", st->jname, strerror(-rc));
		mfs_io->close(fd);
		rec->stale = true;
		snprintf(rec->msg, sizeof(rec->msg),
		         "journal %s has a bad header; kept as %s, not used", st->jname, aside);
		return 0;
	}
	st->hdr_len = got;
	st->jid = sh.journal_id;
	rec->journal_id = sh.journal_id;

	const char *why;
	int bad_type = 0;
	uint64_t pos = 0;
	bool marked;
	struct mfs_identity mark;
	rc = replay_records(st, fd, fsize, model, rec, &why, &bad_type, &pos, &marked, &mark,
	                    err, errlen);
	if (rc < 0)
		return rc;

	if (!mfs_sidefile_id_matches(&sh, &st->id)) {
		/* An in-place mark is written only past that commit's point of no
		 * return, so the model is (or recovery made it) the new version. */
		bool done = (sh.journal_id && sh.journal_id == opts->committed_journal) ||
		            (marked && (mark.dev == 0 || mfs_identity_same_file(&mark, &st->id)));
		free_all(st);
		st->live = 0;
		rec->n_records = 0;
		if (done) {
			if (mfs_io->unlinkat(st->dirfd, st->jname, 0) < 0)
				return mfs_errf(err, errlen, -errno, model, "cannot remove journal %s: "
				                "%s", st->jname, strerror(errno));
			mfs_fsync_dir(st->dirfd);
			mfs_io->close(fd);
			rec->obsolete = true;
			snprintf(rec->msg, sizeof(rec->msg), "the commit of the edits in %s had "
			         "installed them before the process stopped; the journal was removed",
			         st->jname);
			return 0;
		}
		if (opts->keep_stale) {
			return mfs_errf(err, errlen, -ESTALE, model, "journal %s was written for "
			                "another version of the model (changed on disk since)",
			                st->jname);
		}
		rc = set_aside(st, model, "stale", aside, sizeof(aside));
		if (rc < 0)
			return mfs_errf(err, errlen, rc, model, "journal %s belongs to another "
			                "version of the model and cannot be set aside: %s",
			                st->jname, strerror(-rc));
		mfs_io->close(fd);
		rec->stale = true;
		snprintf(rec->msg, sizeof(rec->msg),
		         "journal %s was written for another version of the model; kept as %s, "
		         "not used", st->jname, aside);
		return 0;
	}

	if (marked && mark.dev && !mfs_identity_same_file(&mark, &st->id) &&
	    version_installed(st->dirfd, &mark)) {
		/* The journal is this model's, and its last mark names another
		 * file that exists beside it: a versioned commit installed these
		 * edits as a new file and died before it removed this journal. */
		free_all(st);
		st->live = 0;
		rec->n_records = 0;
		rec->n_objects = 0;
		if (mfs_io->unlinkat(st->dirfd, st->jname, 0) < 0)
			return mfs_errf(err, errlen, -errno, model, "cannot remove journal %s: %s",
			                st->jname, strerror(errno));
		mfs_fsync_dir(st->dirfd);
		mfs_io->close(fd);
		rec->obsolete = true;
		snprintf(rec->msg, sizeof(rec->msg), "the edits in %s had been committed as a new "
		         "version beside the model before the process stopped; the journal was "
		         "removed", st->jname);
		return 0;
	}

	st->jend = pos;
	rec->n_objects = st->n_staged;
	int n = snprintf(rec->msg, sizeof(rec->msg),
	                 "recovered %llu staged object%s from %s (%llu records)",
	                 (unsigned long long)st->n_staged, st->n_staged == 1 ? "" : "s",
	                 st->jname, (unsigned long long)rec->n_records);
	if (why) {
		rec->torn = true;
		rec->torn_off = pos;
		rec->dropped_bytes = fsize - pos;
		if (n > 0 && (size_t)n < sizeof(rec->msg))
			snprintf(rec->msg + n, sizeof(rec->msg) - (size_t)n,
			         "; stopped at a torn or corrupt %s record at offset %llu (%s), "
			         "%llu bytes after it discarded", rec_name(bad_type),
			         (unsigned long long)pos, why, (unsigned long long)(fsize - pos));
		/* New records go after the last good one (invariant 3). */
		if (mfs_io->ftruncate(fd, (off_t)pos) < 0 || mfs_io->fdatasync(fd) < 0) {
			rc = -errno;
			return mfs_errf(err, errlen, rc, model, "cannot cut the torn tail of %s: %s",
			                st->jname, strerror(-rc));
		}
	}
	st->jfd = fd;
	return 0;
}

/* ------------------------------------------------------------ API */

int mfs_stage_open(struct mfs_stage **out, int dirfd, const char *model_name,
                   const struct mfs_identity *id, const struct mfs_stage_opts *opts,
                   struct mfs_stage_recovery *rec, char *err, size_t errlen)
{
	static const struct mfs_stage_opts defaults;
	struct mfs_stage_recovery dummy;
	int rc, fd = -1;
	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (!rec)
		rec = &dummy;
	memset(rec, 0, sizeof(*rec));
	if (err && errlen)
		err[0] = '\0';
	if (opts->level < 0 || opts->level > 3)
		return mfs_errf(err, errlen, -EINVAL, model_name, "zstd level %d not in 1..3",
		                opts->level);

	struct mfs_stage *st = calloc(1, sizeof(*st));
	if (!st)
		return mfs_errf(err, errlen, -ENOMEM, model_name, "out of memory");
	pthread_mutex_init(&st->lock, NULL);
	st->dirfd = dirfd;
	st->jfd = -1;
	st->id = *id;
	st->level = opts->level ? opts->level : 1;
	st->compact_min = opts->compact_min ? opts->compact_min : (64ull << 20);
	size_t cache_bytes = opts->cache_bytes ? opts->cache_bytes : (8u << 20);
	st->n_cache = cache_bytes / CHUNK < 2 ? 2 : cache_bytes / CHUNK;
	st->n_buckets = 64;
	st->cbuf_len = RHDR + ZSTD_compressBound(CHUNK);
	st->buckets = calloc(st->n_buckets, sizeof(*st->buckets));
	st->cache = calloc(st->n_cache, sizeof(*st->cache));
	st->cbuf = malloc(st->cbuf_len);
	st->cctx = ZSTD_createCCtx();
	st->dctx = ZSTD_createDCtx();
	if (!st->buckets || !st->cache || !st->cbuf || !st->cctx || !st->dctx) {
		rc = mfs_errf(err, errlen, -ENOMEM, model_name, "out of memory");
		goto out;
	}
	/* Chunks are at most 256 KiB, so a frame never needs a larger window;
	 * refusing one bounds what a damaged journal can make us allocate. */
	ZSTD_DCtx_setParameter(st->dctx, ZSTD_d_windowLogMax, 18);
	if ((rc = mfs_sidefile_name(st->jname, sizeof(st->jname), model_name, ".modelfs-journal")) < 0 ||
	    (rc = mfs_sidefile_name(st->newname, sizeof(st->newname), model_name,
	                            ".modelfs-journal-new")) < 0) {
		rc = mfs_errf(err, errlen, rc, model_name, "name too long for a journal");
		goto out;
	}

	fd = mfs_io->openat(dirfd, st->jname, O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0 && errno != ENOENT) {
		rc = mfs_errf(err, errlen, -errno, model_name, "cannot open journal %s: %s",
		              st->jname, strerror(errno));
		goto out;
	}
	if (fd >= 0) {
		if (mfs_io->flock(fd, LOCK_EX | LOCK_NB) < 0) {
			rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
			mfs_io->close(fd);
			rc = mfs_errf(err, errlen, rc, model_name, rc == -EBUSY ?
			              "journal %s is in use by another modelfs process" :
			              "cannot lock journal %s: %s", st->jname, strerror(-rc));
			goto out;
		}
		/* Holding the lock, a leftover compaction file is ours to remove. */
		mfs_io->unlinkat(dirfd, st->newname, 0);
		rc = replay(st, fd, model_name, opts, rec, err, errlen);
		if (rc < 0) {
			mfs_io->close(fd);
			goto out;
		}
	}
	*out = st;
	return 0;
out:
	st->jfd = -1;
	mfs_stage_close(st);
	return rc;
}

static void free_all(struct mfs_stage *st)
{
	for (size_t b = 0; b < st->n_buckets; b++) {
		struct obj *o = st->buckets[b];
		while (o) {
			struct obj *next = o->next;
			free(o->chunks);
			free(o);
			o = next;
		}
		st->buckets[b] = NULL;
	}
	st->n_objs = st->n_staged = 0;
	for (size_t i = 0; st->cache && i < st->n_cache; i++) {
		st->cache[i].o = NULL;
		st->cache[i].dirty = false;
	}
}

/* Write out dirty chunks and sizes: replay now gives what reads give. */
static int flush_locked(struct mfs_stage *st)
{
	int rc = flush_all(st);
	for (size_t b = 0; rc == 0 && b < st->n_buckets; b++)
		for (struct obj *o = st->buckets[b]; rc == 0 && o; o = o->next)
			if (o->staged && o->jsize != o->size) {
				rc = append(st, REC_SIZE, 0, o->key, o->size, 0, 0, 0, NULL, NULL);
				if (rc == 0)
					o->jsize = o->size;
			}
	return rc;
}

static int sync_locked(struct mfs_stage *st)
{
	if (st->jfd < 0)
		return 0;
	if (st->failed)
		return -EIO;
	int rc = flush_locked(st);
	if (rc < 0)
		return rc;
	if (mfs_io->fdatasync(st->jfd) < 0) {
		rc = -errno;
		st->failed = 1;
		return rc;
	}
	maybe_compact(st);
	return 0;
}

int mfs_stage_close(struct mfs_stage *st)
{
	if (!st)
		return 0;
	int rc = 0;
	if (st->jfd >= 0) {
		pthread_mutex_lock(&st->lock);
		bool dirty = false;
		for (size_t i = 0; i < st->n_cache; i++)
			dirty |= st->cache[i].o && st->cache[i].dirty;
		if (st->n_staged == 0 && !dirty)
			mfs_io->unlinkat(st->dirfd, st->jname, 0);
		else
			rc = sync_locked(st);
		mfs_io->close(st->jfd);
		pthread_mutex_unlock(&st->lock);
	}
	if (st->buckets)
		free_all(st);
	for (size_t i = 0; st->cache && i < st->n_cache; i++)
		free(st->cache[i].buf);
	free(st->cache);
	free(st->buckets);
	free(st->cbuf);
	ZSTD_freeCCtx(st->cctx);
	ZSTD_freeDCtx(st->dctx);
	pthread_mutex_destroy(&st->lock);
	free(st);
	return rc;
}

int mfs_stage_bind(struct mfs_stage *st, uint64_t key, uint64_t base_size,
                   mfs_stage_read_fn base_read, void *arg)
{
	if (base_size > MFS_STAGE_MAX_OBJECT)
		return -EFBIG;
	if (base_size && !base_read)
		return -EINVAL;
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	struct obj *o = find(st, key);
	if (o && o->base_size != base_size) {
		rc = -ESTALE;
		goto out;
	}
	if (!o && (rc = obj_new(&o, st, key, base_size)) < 0)
		goto out;
	o->base_read = base_read;
	o->base_arg = arg;
	o->bound = true;
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

ssize_t mfs_stage_write(struct mfs_stage *st, uint64_t key, const void *buf, size_t len,
                        uint64_t off)
{
	const uint8_t *src = buf;
	size_t done = 0;
	int rc = 0;
	if (len > MFS_STAGE_MAX_OBJECT || off > MFS_STAGE_MAX_OBJECT - len)
		return -EFBIG;
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	pthread_mutex_lock(&st->lock);
	struct obj *o = find(st, key);
	if (!o) {
		rc = -ENOENT;
		goto out;
	}
	if (len == 0)
		goto out;
	if ((rc = stage_obj(st, o)) < 0)
		goto out;
	while (done < len) {
		uint64_t pos = off + done, idx = pos / CHUNK, cs = idx * CHUNK;
		size_t a = (size_t)(pos - cs);
		size_t n = (size_t)min64(CHUNK - a, len - done);
		uint64_t holds = o->size > cs ? min64(CHUNK, o->size - cs) : 0;
		bool whole = a == 0 && n >= holds;
		struct cent *e;
		if ((rc = cache_get(&e, st, o, idx, !whole)) < 0)
			break;
		memcpy(e->buf + a, src + done, n);
		e->dirty = true;
		if (pos + n > o->size)
			o->size = pos + n;
		done += n;
	}
	maybe_compact(st);
out:
	pthread_mutex_unlock(&st->lock);
	return done ? (ssize_t)done : rc;
}

ssize_t mfs_stage_read(struct mfs_stage *st, uint64_t key, void *buf, size_t len,
                       uint64_t off)
{
	uint8_t *dst = buf;
	size_t done = 0;
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	struct obj *o = find(st, key);
	if (!o) {
		rc = -ENOENT;
		goto out;
	}
	if (off >= o->size)
		goto out;
	len = (size_t)min64(len, o->size - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	while (done < len) {
		uint64_t pos = off + done, idx = pos / CHUNK;
		size_t a = (size_t)(pos - idx * CHUNK);
		size_t n = (size_t)min64(CHUNK - a, len - done);
		struct cent *e = cache_find(st, o, idx);
		if (!e && idx < o->n_chunks && o->chunks[idx].joff &&
		    (rc = cache_get(&e, st, o, idx, true)) < 0)
			break;
		if (e) {
			e->used = ++st->tick;
			memcpy(dst + done, e->buf + a, n);
		} else {
			/* Never staged: straight from the base, no cache needed. */
			size_t m = pos < o->base_limit ? (size_t)min64(n, o->base_limit - pos) : 0;
			if (m && (rc = read_base(o, dst + done, m, pos)) < 0)
				break;
			memset(dst + done + m, 0, n - m);
		}
		done += n;
	}
out:
	pthread_mutex_unlock(&st->lock);
	return done ? (ssize_t)done : rc;
}

int mfs_stage_truncate(struct mfs_stage *st, uint64_t key, uint64_t size)
{
	if (size > MFS_STAGE_MAX_OBJECT)
		return -EFBIG;
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	struct obj *o = find(st, key);
	if (!o) {
		rc = -ENOENT;
		goto out;
	}
	if (size == o->size)
		goto out;
	if ((rc = stage_obj(st, o)) < 0)
		goto out;
	/* Journal first: if the record cannot be written nothing changes. */
	if ((rc = append(st, REC_SIZE, 0, key, size, 0, 0, 0, NULL, NULL)) < 0)
		goto out;
	obj_set_size(st, o, size);
	o->jsize = size;
	maybe_compact(st);
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int mfs_stage_set_value(struct mfs_stage *st, uint64_t key, const void *buf, size_t len)
{
	if (len > MFS_STAGE_MAX_VALUE)
		return -EFBIG;
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	struct obj *o = find(st, key);
	if (!o) {
		if ((rc = obj_new(&o, st, key, 0)) < 0)
			goto out;
		o->bound = true;
	}
	if ((rc = chunks_reserve(o, 0)) < 0 || (rc = stage_obj(st, o)) < 0)
		goto out;
	if (len)
		memcpy(st->cbuf + RHDR, buf, len);
	uint64_t poff;
	uint32_t crc;
	rc = append(st, REC_VALUE, F_RAW, key, 0, (uint32_t)len, (uint32_t)len, (uint32_t)len,
	            &poff, &crc);
	if (rc < 0)
		goto out;
	obj_set_value(st, o, poff, (uint32_t)len, crc);
	maybe_compact(st);
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int mfs_stage_size(uint64_t *out, struct mfs_stage *st, uint64_t key)
{
	pthread_mutex_lock(&st->lock);
	struct obj *o = find(st, key);
	if (o)
		*out = o->size;
	pthread_mutex_unlock(&st->lock);
	return o ? 0 : -ENOENT;
}

bool mfs_stage_is_staged(struct mfs_stage *st, uint64_t key)
{
	pthread_mutex_lock(&st->lock);
	struct obj *o = find(st, key);
	bool staged = o && o->staged;
	pthread_mutex_unlock(&st->lock);
	return staged;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

size_t mfs_stage_list(uint64_t *out, size_t cap, struct mfs_stage *st)
{
	pthread_mutex_lock(&st->lock);
	size_t n = st->n_staged;
	uint64_t *all = n ? malloc(n * sizeof(*all)) : NULL;
	size_t k = 0;
	for (size_t b = 0; b < st->n_buckets; b++)
		for (struct obj *o = st->buckets[b]; o; o = o->next)
			if (o->staged) {
				if (all)
					all[k] = o->key;
				else if (k < cap)
					out[k] = o->key;   /* no memory to sort: unsorted */
				k++;
			}
	pthread_mutex_unlock(&st->lock);
	if (all) {
		qsort(all, n, sizeof(*all), cmp_u64);
		if (cap)
			memcpy(out, all, (n < cap ? n : cap) * sizeof(*all));
		free(all);
	}
	return n;
}

int mfs_stage_drop(struct mfs_stage *st, uint64_t key)
{
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	struct obj *o = find(st, key);
	if (!o) {
		rc = -ENOENT;
		goto out;
	}
	if (!o->staged)
		goto out;
	if ((rc = append(st, REC_DROP, 0, key, 0, 0, 0, 0, NULL, NULL)) < 0)
		goto out;
	obj_unstage(st, o);
	maybe_compact(st);
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* Forget every staged change in memory; bindings stay. */
static void unstage_all(struct mfs_stage *st)
{
	for (size_t b = 0; b < st->n_buckets; b++) {
		struct obj *o = st->buckets[b];
		while (o) {
			struct obj *next = o->next;
			obj_unstage(st, o);
			o = next;
		}
	}
}

/* Close and remove the journal; the next change starts a fresh one. */
static void forget_journal(struct mfs_stage *st)
{
	if (st->jfd < 0)
		return;
	mfs_io->unlinkat(st->dirfd, st->jname, 0);
	mfs_io->close(st->jfd);
	st->jfd = -1;
	st->jend = st->live = 0;
	st->failed = 0;
}

int mfs_stage_drop_all(struct mfs_stage *st)
{
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	if (st->jfd >= 0 && st->failed) {
		/* The journal is untrustworthy anyway (invariant 6): start over. */
		forget_journal(st);
	} else if (st->jfd >= 0) {
		rc = append(st, REC_CLEAR, 0, 0, 0, 0, 0, 0, NULL, NULL);
		if (rc == 0 && mfs_io->fdatasync(st->jfd) < 0)
			rc = -errno;
		if (rc == 0) {
			/* The synced CLEAR already makes a replay come back empty;
			 * cutting the file back only reclaims its space. */
			if (mfs_io->ftruncate(st->jfd, (off_t)st->hdr_len) == 0)
				st->jend = st->hdr_len;
		} else {
			/* Memory is about to forget everything, so the journal must
			 * too, or a replay would bring back edits the user dropped
			 * and later records would contradict them.  Unlinking is
			 * atomic; if even that fails, creating a new journal fails
			 * with EBUSY (O_EXCL) and nothing more can be staged. */
			if (mfs_io->unlinkat(st->dirfd, st->jname, 0) == 0)
				rc = 0;
			mfs_io->close(st->jfd);
			st->jfd = -1;
			st->failed = 0;
		}
	}
	unstage_all(st);
	st->live = st->jfd >= 0 ? st->hdr_len : 0;
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int mfs_stage_flush(struct mfs_stage *st)
{
	pthread_mutex_lock(&st->lock);
	int rc = flush_locked(st);
	if (rc == 0)
		maybe_compact(st);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int mfs_stage_move(struct mfs_stage *st, uint64_t from, uint64_t to)
{
	int rc = 0;
	if (from == to)
		return -EINVAL;
	pthread_mutex_lock(&st->lock);
	struct obj *of = find(st, from), *ot = find(st, to);
	if (!of || !ot) {
		rc = -ENOENT;
		goto out;
	}
	/* Everything `from` holds must be in the journal before the record
	 * that hands it over, or a replay would hand over less. */
	if ((rc = stage_obj(st, of)) < 0)
		goto out;
	for (size_t i = 0; i < st->n_cache; i++)
		if (st->cache[i].o == of && st->cache[i].dirty &&
		    (rc = flush_entry(st, &st->cache[i])) < 0)
			goto out;
	if (of->jsize != of->size) {
		if ((rc = append(st, REC_SIZE, 0, from, of->size, 0, 0, 0, NULL, NULL)) < 0)
			goto out;
		of->jsize = of->size;
	}
	if ((rc = stage_obj(st, ot)) < 0 ||
	    (rc = append(st, REC_MOVE, 0, to, from, 0, 0, 0, NULL, NULL)) < 0)
		goto out;
	obj_move(st, of, ot);
	maybe_compact(st);
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int mfs_stage_extents(struct mfs_stage *st, uint64_t key, struct mfs_stage_extent *out,
                      size_t cap, size_t *n)
{
	int rc = 0;
	size_t k = 0;
	pthread_mutex_lock(&st->lock);
	struct obj *o = find(st, key);
	if (!o) {
		rc = -ENOENT;
		goto out;
	}
	if (!o->staged)
		goto out;
	uint64_t n_idx = (o->size + CHUNK - 1) / CHUNK;
	bool open = false;
	for (uint64_t idx = 0; idx < n_idx; idx++) {
		uint64_t cs = idx * CHUNK, ce = min64(cs + CHUNK, o->size);
		/* Bytes at and past base_limit read as zeros, not as the base. */
		bool touched = ce > o->base_limit ||
		               (idx < o->n_chunks && o->chunks[idx].joff);
		for (size_t i = 0; !touched && i < st->n_cache; i++)
			touched = st->cache[i].o == o && st->cache[i].idx == idx &&
			          st->cache[i].dirty;
		if (!touched) {
			open = false;
			continue;
		}
		if (open) {
			if (k - 1 < cap)
				out[k - 1].len = ce - out[k - 1].off;
			continue;
		}
		if (k < cap)
			out[k] = (struct mfs_stage_extent){cs, ce - cs};
		k++;
		open = true;
	}
out:
	pthread_mutex_unlock(&st->lock);
	*n = k;
	return rc;
}

int mfs_stage_sync(struct mfs_stage *st)
{
	pthread_mutex_lock(&st->lock);
	int rc = sync_locked(st);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int mfs_stage_reset(struct mfs_stage *st, const struct mfs_identity *id)
{
	pthread_mutex_lock(&st->lock);
	forget_journal(st);
	free_all(st);
	st->id = *id;
	pthread_mutex_unlock(&st->lock);
	return 0;
}

int mfs_stage_reset_keep(struct mfs_stage *st, const struct mfs_identity *id,
                         bool (*keep)(uint64_t key, void *arg), void *arg)
{
	return mfs_stage_reset_keep_as(st, NULL, id, keep, arg);
}

int mfs_stage_reset_keep_as(struct mfs_stage *st, const char *model_name,
                            const struct mfs_identity *id,
                            bool (*keep)(uint64_t key, void *arg), void *arg)
{
	int rc = 0;
	char jname[NAME_MAX + 1], newname[NAME_MAX + 1], old[NAME_MAX + 1];
	if (model_name &&
	    (mfs_sidefile_name(jname, sizeof(jname), model_name, ".modelfs-journal") < 0 ||
	     mfs_sidefile_name(newname, sizeof(newname), model_name, ".modelfs-journal-new") < 0))
		return -ENAMETOOLONG;
	pthread_mutex_lock(&st->lock);
	if (model_name) {
		/* From here the journal is the new model's: kept objects are
		 * compacted into its name, and the old model's goes below. */
		memcpy(old, st->jname, sizeof(old));
		memcpy(st->jname, jname, sizeof(jname));
		memcpy(st->newname, newname, sizeof(newname));
	}
	/* Kept objects must be whole in the old journal before it is copied. */
	if (st->jfd >= 0)
		rc = flush_locked(st);
	size_t kept = 0;
	for (size_t b = 0; b < st->n_buckets; b++) {
		struct obj *o = st->buckets[b];
		while (o) {
			struct obj *next = o->next;
			if (rc == 0 && keep(o->key, arg)) {
				kept += o->staged;
			} else {
				o->bound = false;
				obj_unstage(st, o);     /* frees it */
			}
			o = next;
		}
	}
	st->id = *id;
	if (kept) {
		/* The copy gets a header with the new identity, and a new id: it is
		 * not the journal whose edits the commit installed. */
		st->jid = new_jid();
		rc = compact(st);
		if (rc < 0) {
			/* Kept content is lost: better than a journal that the
			 * next open would set aside as another model's. */
			free_all(st);
		}
	}
	if (!kept || rc < 0) {
		forget_journal(st);
	} else {
		/* A fresh file: an fsync failure of the old one is not its. */
		st->failed = 0;
		st->last_compact_err = 0;
	}
	if (model_name) {
		/* The old model's journal: its edits are in the new version (a
		 * crash before this unlink is caught at the next open by its
		 * commit mark, version_installed()). */
		if (mfs_io->unlinkat(st->dirfd, old, 0) == 0)
			mfs_fsync_dir(st->dirfd);
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int mfs_stage_unbind(struct mfs_stage *st, uint64_t key)
{
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	struct obj *o = find(st, key);
	if (!o)
		rc = -ENOENT;
	else if (o->staged)
		rc = -EBUSY;
	else
		obj_free(st, o);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

void mfs_stage_stat(struct mfs_stage_stat *out, struct mfs_stage *st)
{
	pthread_mutex_lock(&st->lock);
	memset(out, 0, sizeof(*out));
	out->n_staged = st->n_staged;
	out->journal_bytes = st->jfd >= 0 ? st->jend : 0;
	out->live_bytes = st->jfd >= 0 ? st->live : 0;
	for (size_t i = 0; i < st->n_cache; i++)
		if (st->cache[i].buf)
			out->cache_bytes += CHUNK;
	out->n_flushes = st->n_flushes;
	out->n_compactions = st->n_compactions;
	out->last_compact_err = st->last_compact_err;
	out->failed = st->failed != 0;
	pthread_mutex_unlock(&st->lock);
}

int mfs_stage_mark_commit(struct mfs_stage *st, const struct mfs_identity *new_id)
{
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	if (st->jfd >= 0) {
		uint8_t *p = st->cbuf + RHDR;
		mfs_put_le64(p, new_id->dev);
		mfs_put_le64(p + 8, new_id->ino);
		mfs_put_le64(p + 16, new_id->size);
		mfs_put_le64(p + 24, (uint64_t)new_id->mtime_sec);
		mfs_put_le64(p + 32, (uint64_t)new_id->mtime_nsec);
		rc = append(st, REC_COMMIT, F_RAW, 0, MARK_REWRITE, COMMIT_PAYLOAD, COMMIT_PAYLOAD,
		            COMMIT_PAYLOAD, NULL, NULL);
		if (rc == 0 && mfs_io->fdatasync(st->jfd) < 0)
			rc = -errno;
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int mfs_stage_mark_inplace(struct mfs_stage *st)
{
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	if (st->jfd >= 0) {
		rc = append(st, REC_COMMIT, 0, 0, MARK_INPLACE, 0, 0, 0, NULL, NULL);
		if (rc == 0 && mfs_io->fdatasync(st->jfd) < 0)
			rc = -errno;
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int mfs_stage_unmark_commit(struct mfs_stage *st)
{
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	if (st->jfd >= 0)
		rc = append(st, REC_COMMIT, 0, 0, MARK_NONE, 0, 0, 0, NULL, NULL);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

uint64_t mfs_stage_journal_id(struct mfs_stage *st)
{
	pthread_mutex_lock(&st->lock);
	uint64_t id = st->jfd >= 0 ? st->jid : 0;
	pthread_mutex_unlock(&st->lock);
	return id;
}

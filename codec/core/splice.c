/*
 * codec/core/splice.c — building and reading piece lists (splice.h).
 *
 * A piece list (struct mfs_splice) is a file as a sequence of ranges copied
 * from another file, byte buffers and callbacks.  The format writers build
 * one per commit, and the transaction keeps one to serve reads of the root
 * model file while edits are staged.  This file has the appending helpers
 * they share (allocation failures are sticky in `err`, so a writer appends
 * freely and checks once at the end) and the reader of a finished list.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/splice.h"

/* An FN piece that starts `base` bytes into what another callback makes. */
struct sub_fn {
	mfs_piece_fn fn;
	void *arg;
	uint64_t base;
};

static ssize_t sub_read(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct sub_fn *s = arg;
	return s->fn(s->arg, buf, len, s->base + off);
}

void mfs_splice_free(struct mfs_splice *s)
{
	for (size_t i = 0; i < s->n_own; i++)
		free(s->own[i]);
	free(s->own);
	free(s->p);
	memset(s, 0, sizeof(*s));
}

static struct mfs_piece *add(struct mfs_splice *s)
{
	if (s->err)
		return NULL;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct mfs_piece *p = reallocarray(s->p, cap, sizeof(*p));
		if (!p) {
			s->err = -ENOMEM;
			return NULL;
		}
		s->p = p;
		s->cap = cap;
	}
	struct mfs_piece *p = &s->p[s->n++];
	memset(p, 0, sizeof(*p));
	p->fd = -1;
	return p;
}

/* Make `buf` the splice's to free; on failure it is freed at once. */
static bool own(struct mfs_splice *s, void *buf)
{
	if (!s->err && s->n_own == s->cap_own) {
		size_t cap = s->cap_own ? s->cap_own * 2 : 16;
		void **o = reallocarray(s->own, cap, sizeof(*o));
		if (!o)
			s->err = -ENOMEM;
		else {
			s->own = o;
			s->cap_own = cap;
		}
	}
	if (s->err) {
		free(buf);
		return false;
	}
	s->own[s->n_own++] = buf;
	return true;
}

void mfs_splice_copy(struct mfs_splice *s, int fd, uint64_t off, uint64_t len)
{
	if (!len || s->err)
		return;
	struct mfs_piece *last = s->n ? &s->p[s->n - 1] : NULL;
	if (last && last->kind == MFS_PIECE_COPY && last->fd == fd && last->off + last->len == off) {
		last->len += len;
		s->total += len;
		return;
	}
	struct mfs_piece *p = add(s);
	if (!p)
		return;
	p->kind = MFS_PIECE_COPY;
	p->fd = fd;
	p->off = off;
	p->len = len;
	s->total += len;
}

void mfs_splice_take(struct mfs_splice *s, void *buf, size_t len)
{
	if (!buf && len) {
		s->err = s->err ? s->err : -ENOMEM;
		return;
	}
	if (!own(s, buf) || !len)
		return;
	struct mfs_piece *p = add(s);
	if (!p)
		return;
	p->kind = MFS_PIECE_BYTES;
	p->buf = buf;
	p->len = len;
	s->total += len;
}

void mfs_splice_ref(struct mfs_splice *s, const void *buf, size_t len)
{
	if (!len || s->err)
		return;
	struct mfs_piece *p = add(s);
	if (!p)
		return;
	p->kind = MFS_PIECE_BYTES;
	p->buf = buf;
	p->len = len;
	s->total += len;
}

void mfs_splice_bytes(struct mfs_splice *s, const void *buf, size_t len)
{
	if (!len || s->err)
		return;
	void *copy = malloc(len);
	if (copy)
		memcpy(copy, buf, len);
	mfs_splice_take(s, copy, len);
}

void mfs_splice_fn(struct mfs_splice *s, mfs_piece_fn fn, void *arg, uint64_t off, uint64_t len)
{
	if (!len || s->err)
		return;
	if (off) {
		struct sub_fn *sf = malloc(sizeof(*sf));
		if (!sf) {
			s->err = -ENOMEM;
			return;
		}
		*sf = (struct sub_fn){fn, arg, off};
		if (!own(s, sf))
			return;
		fn = sub_read;
		arg = sf;
	}
	struct mfs_piece *p = add(s);
	if (!p)
		return;
	p->kind = MFS_PIECE_FN;
	p->fn = fn;
	p->arg = arg;
	p->len = len;
	s->total += len;
}

void mfs_piece_origin(const struct mfs_piece *p, mfs_piece_fn *fn, void **arg, uint64_t *off)
{
	*fn = p->fn;
	*arg = p->arg;
	*off = 0;
	if (p->fn == sub_read) {
		const struct sub_fn *sf = p->arg;
		*fn = sf->fn;
		*arg = sf->arg;
		*off = sf->base;
	}
}

void mfs_splice_append(struct mfs_splice *s, struct mfs_splice *from)
{
	if (from->err && !s->err)
		s->err = from->err;
	for (size_t i = 0; i < from->n_own; i++) {
		if (!own(s, from->own[i]))
			continue;
		from->own[i] = NULL;
	}
	for (size_t i = 0; i < from->n && !s->err; i++) {
		const struct mfs_piece *q = &from->p[i];
		if (q->kind == MFS_PIECE_COPY) {
			mfs_splice_copy(s, q->fd, q->off, q->len);
			continue;
		}
		struct mfs_piece *p = add(s);
		if (!p)
			break;
		*p = *q;
		s->total += q->len;
	}
	/* Everything it owned is s's now (or freed); only the arrays go. */
	from->n_own = 0;
	mfs_splice_free(from);
}

ssize_t mfs_splice_read(const struct mfs_splice *s, const uint64_t *starts, void *buf,
                        size_t len, uint64_t off)
{
	if (off >= s->total)
		return 0;
	if (len > s->total - off)
		len = (size_t)(s->total - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	size_t lo = 0, hi = s->n;
	while (hi - lo > 1) {           /* the last piece starting at or before off */
		size_t mid = lo + (hi - lo) / 2;
		if (starts[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	uint8_t *dst = buf;
	size_t done = 0;
	for (size_t i = lo; i < s->n && done < len; i++) {
		const struct mfs_piece *p = &s->p[i];
		uint64_t in = off + done - starts[i];
		size_t k = p->len - in < len - done ? (size_t)(p->len - in) : len - done;
		while (k) {
			ssize_t r;
			if (p->kind == MFS_PIECE_BYTES) {
				memcpy(dst + done, (const uint8_t *)p->buf + in, k);
				r = (ssize_t)k;
			} else if (p->kind == MFS_PIECE_COPY) {
				int rc = mfs_pread_full(p->fd, dst + done, k, p->off + in);
				r = rc < 0 ? rc : (ssize_t)k;
			} else {
				r = p->fn(p->arg, dst + done, k, in);
				if (r == 0)
					r = -EIO;
			}
			if (r < 0)
				return done ? (ssize_t)done : r;
			done += (size_t)r;
			in += (uint64_t)r;
			k -= (size_t)r;
		}
	}
	return (ssize_t)done;
}

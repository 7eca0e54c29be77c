/*
 * codec/torch/writer.c — the torch splice writer: same-size edits of
 * tensor data.
 *
 * A torch.save file keeps each tensor's shape, stride and dtype in its
 * pickle, so an edit that changes them would mean writing a new pickle:
 * those are refused (-EACCES; the reader marks every editable tensor
 * MFS_TENSOR_DATA_ONLY, so the dtype and shape files are read-only).  A
 * same-size data edit leaves every byte of the file in place but the
 * edited ranges of the storage members and each changed member's CRC-32,
 * which the zip holds in its central directory record, in its local
 * header and, when the member has one (flag bit 3), in its data
 * descriptor; torch's writer leaves the local header's field 0 beside a
 * descriptor, and a 0 there stays 0.  The new CRC is computed here, over
 * the member's bytes with the edits laid
 * over them: the only reading this writer does.  The new file is the old
 * one with those ranges replaced, so a commit may patch it in place.
 *
 * Editable tensors (reader.c): contiguous, not empty, and alone on their
 * bytes: a tensor that shares bytes with another (tied weights, views) is
 * read-only, so an edit cannot show one value under one name and another
 * under the other.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32.h"
#include "torch/torch.h"

/* One replaced range of the file: staged bytes or a 4-byte CRC. */
struct patch {
	uint64_t off, len;
	const struct mfs_tensor_edit *te;       /* NULL: `crc` */
	uint64_t te_off;
	uint8_t crc[4];
};

static int patch_cmp(const void *a, const void *b)
{
	const struct patch *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Read all of [off, off + len) of an edit's new bytes. */
static int read_edit(const struct mfs_tensor_edit *te, uint8_t *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = te->read(te->arg, buf, len, off);
		if (n <= 0)
			return n < 0 ? (int)n : -EIO;
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* The CRC-32 of member `me` with the edits of `e` that fall in it laid over. */
static int member_crc(uint32_t *out, const struct mfs_model *m, const struct tz_entry *me,
                      const struct mfs_edit_set *e)
{
	enum { CHUNK = 1 << 20 };
	uint8_t *buf = malloc(CHUNK);
	if (!buf)
		return -ENOMEM;
	uint32_t crc = 0;
	int rc = 0;
	for (uint64_t pos = 0; pos < me->usize && rc == 0;) {
		size_t n = me->usize - pos < CHUNK ? (size_t)(me->usize - pos) : CHUNK;
		uint64_t lo = me->data_off + pos, hi = lo + n;
		rc = mfs_source_read(m->srcs[0], buf, n, lo);
		for (size_t i = 0; i < e->n_tensors && rc == 0; i++) {
			const struct mfs_tensor_edit *te = &e->tensors[i];
			const struct mfs_tensor *t = te->t;
			if (!te->data_changed || t->off >= hi || t->off + t->nbytes <= lo)
				continue;
			uint64_t a = t->off > lo ? t->off : lo;
			uint64_t b = t->off + t->nbytes < hi ? t->off + t->nbytes : hi;
			rc = read_edit(te, buf + (a - lo), (size_t)(b - a), a - t->off);
		}
		if (rc == 0)
			crc = mfs_crc32(crc, buf, n);
		pos += n;
	}
	free(buf);
	*out = crc;
	return rc;
}

int mfs_torch_splice(struct mfs_splice *out, const struct mfs_model *m,
                     const struct mfs_edit_set *e, char *err, size_t errlen)
{
	const struct mfs_desc *d = &m->desc;
	const struct tt_state *st = m->priv;
	const char *display = d->files[0].path;
	struct mfs_source *src = m->srcs[0];
	struct patch *ps = NULL;
	const struct tz_entry **members = NULL;
	size_t n_ps = 0, n_members = 0, cap = 0;
	int rc = 0;

	if (e->props_changed)
		return mfs_errf(err, errlen, -EACCES, display, "torch props cannot be edited");
	for (size_t i = 0; i < e->n_tensors; i++) {
		const struct mfs_tensor_edit *te = &e->tensors[i];
		if (te->dtype_changed || te->dims_changed || te->size != te->t->nbytes)
			return mfs_errf(err, errlen, -EACCES, display,
			                "tensor '%.200s': a torch tensor's dtype, shape and size are "
			                "fixed by its pickle; only its data can be edited, at %" PRIu64
			                " bytes", te->t->name, te->t->nbytes);
		if (te->data_changed && !(te->t->flags & MFS_TENSOR_EDITABLE))
			return mfs_errf(err, errlen, -EACCES, display,
			                "tensor '%.200s' cannot be edited", te->t->name);
	}
	members = calloc(e->n_tensors ? e->n_tensors : 1, sizeof(*members));
	if (!members) {
		rc = -ENOMEM;
		goto out;
	}

	/* The data runs, and the members they change. */
	for (size_t i = 0; i < e->n_tensors; i++) {
		const struct mfs_tensor_edit *te = &e->tensors[i];
		if (!te->data_changed)
			continue;
		const struct tz_entry *me = st->tens[te->t->id].member;
		bool seen = false;
		for (size_t k = 0; k < n_members; k++)
			seen |= members[k] == me;
		if (!seen)
			members[n_members++] = me;
		size_t runs = te->runs ? te->n_runs : 1;
		for (size_t r = 0; r < runs; r++) {
			if (n_ps == cap) {
				cap = cap ? cap * 2 : 64;
				struct patch *np = realloc(ps, cap * sizeof(*np));
				if (!np) {
					rc = -ENOMEM;
					goto out;
				}
				ps = np;
			}
			struct patch *p = &ps[n_ps++];
			memset(p, 0, sizeof(*p));
			p->te = te;
			p->te_off = te->runs ? te->runs[r].off : 0;
			p->len = te->runs ? te->runs[r].len : te->t->nbytes;
			p->off = te->t->off + p->te_off;
		}
	}

	/* Three CRC fields per changed member (two without a data descriptor). */
	for (size_t k = 0; k < n_members; k++) {
		const struct tz_entry *me = members[k];
		uint32_t crc;
		rc = member_crc(&crc, m, me, e);
		if (rc < 0) {
			rc = mfs_errf(err, errlen, rc, display, "cannot read member '%.200s': %s",
			              me->name, strerror(-rc));
			goto out;
		}
		/* With a data descriptor (flag bit 3) the local header may say 0
		 * (torch's writer does): then it stays 0, as the format has it. */
		uint64_t where[3] = {me->cdir_off + 16, 0, 0};
		size_t nw = 1;
		uint8_t lcrc[4];
		if (mfs_source_read(src, lcrc, 4, me->local_off + 14) < 0) {
			rc = mfs_errf(err, errlen, -EIO, display, "cannot read member '%.200s'",
			              me->name);
			goto out;
		}
		if (!(me->flags & 8) || mfs_get_le32(lcrc) != 0)
			where[nw++] = me->local_off + 14;
		if (me->flags & 8) {
			uint64_t dd = me->data_off + me->csize;
			uint8_t sig[4];
			if (dd + 12 > st->zip.cdir_off || mfs_source_read(src, sig, 4, dd) < 0) {
				rc = mfs_errf(err, errlen, -EUCLEAN, display,
				              "member '%.200s': no room for its data descriptor", me->name);
				goto out;
			}
			where[nw++] = mfs_get_le32(sig) == 0x08074b50u ? dd + 4 : dd;
		}
		if (n_ps + nw > cap) {
			cap = (cap + nw) * 2;
			struct patch *np = realloc(ps, cap * sizeof(*np));
			if (!np) {
				rc = -ENOMEM;
				goto out;
			}
			ps = np;
		}
		for (size_t w = 0; w < nw; w++) {
			struct patch *p = &ps[n_ps++];
			memset(p, 0, sizeof(*p));
			p->off = where[w];
			p->len = 4;
			mfs_put_le32(p->crc, crc);
		}
	}

	qsort(ps, n_ps, sizeof(*ps), patch_cmp);
	uint64_t pos = 0;
	for (size_t i = 0; i < n_ps; i++) {
		const struct patch *p = &ps[i];
		if (p->off < pos) {
			rc = mfs_errf(err, errlen, -EIO, display, "overlapping edits at %" PRIu64,
			              p->off);
			goto out;
		}
		mfs_source_splice(out, src, pos, p->off - pos);
		if (p->te)
			mfs_splice_fn(out, p->te->read, p->te->arg, p->te_off, p->len);
		else
			mfs_splice_bytes(out, p->crc, 4);
		pos = p->off + p->len;
	}
	mfs_source_splice(out, src, pos, d->files[0].size - pos);
	rc = out->err;
out:
	if (rc == -ENOMEM)
		rc = mfs_errf(err, errlen, rc, display, "out of memory");
	free(ps);
	free(members);
	if (rc < 0)
		mfs_splice_free(out);
	return rc;
}

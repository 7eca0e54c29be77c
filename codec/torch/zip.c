/*
 * codec/torch/zip.c — the zip container torch.save writes, read by its
 * central directory.
 *
 * torch.save (PyTorchStreamWriter, on miniz) writes a plain zip: one member
 * per record, stored (method 0), each member's data 64-byte aligned by a
 * padding extra field in its *local* header only, ZIP64 records when a size
 * or offset needs them.  This reader takes the end-of-central-directory
 * record (and its ZIP64 form when the locator is there), reads the whole
 * central directory once, and for each member reads its local header for
 * where the data starts (local offset + 30 + local name + local extra, as
 * torch's own reader computes it).  Nothing is decompressed here: a
 * compressed member is listed (its method kept); the reader refuses it, or
 * for a TorchScript archive's deflated members has inflate.c inflate it.
 *
 * RULES a file must satisfy (each failure is one line, -EUCLEAN):
 *
 *   1. an end-of-central-directory record within the last 65,557 bytes,
 *      its comment ending exactly at the end of the file; one disk only;
 *   2. with a ZIP64 locator just before it, a ZIP64 end record where the
 *      locator says, before the locator;
 *   3. the central directory lies inside the file before the end records,
 *      is at most TZ_MAX_CDIR bytes, holds exactly the count of records the
 *      end record gives (at most TZ_MAX_ENTRIES), each one whole inside it;
 *   4. a ZIP64 extra field is present for every 32-bit field that says
 *      0xFFFFFFFF, and holds the 64-bit values;
 *   5. a name is 1..TZ_MAX_NAME bytes without NUL, no two members share one;
 *   6. no member is encrypted (flag bit 0);
 *   7. every local header lies before the central directory, has the local
 *      signature and the same name; its data [data_off, data_off + csize)
 *      ends before the central directory; stored members have
 *      csize == usize;
 *   8. no two members' extents (local header to end of data) overlap.
 *
 * CRC-32 values are kept, not checked: torch writes them but may leave
 * them unset (compute_crc32=False), and torch.load does not check them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "torch/torch.h"

#define SIG_LOCAL       0x04034b50u
#define SIG_CDIR        0x02014b50u
#define SIG_EOCD        0x06054b50u
#define SIG_EOCD64      0x06064b50u
#define SIG_LOC64       0x07064b50u

static int ent_name_cmp(const void *a, const void *b)
{
	const struct tz_entry *x = a, *y = b;
	return strcmp(x->name, y->name);
}

static int ent_off_cmp(const void *a, const void *b)
{
	const struct tz_entry *x = *(const struct tz_entry *const *)a;
	const struct tz_entry *y = *(const struct tz_entry *const *)b;
	return x->local_off < y->local_off ? -1 : x->local_off > y->local_off;
}

void tz_free(struct tz_archive *z)
{
	if (!z->ents)
		return;
	for (size_t i = 0; i < z->n; i++)
		free(z->ents[i].name);
	free(z->ents);
	z->ents = NULL;
	z->n = 0;
}

const struct tz_entry *tz_find(const struct tz_archive *z, const char *name)
{
	struct tz_entry key = {.name = (char *)name};
	return bsearch(&key, z->ents, z->n, sizeof(*z->ents), ent_name_cmp);
}

/* The end records: where the central directory is and how many entries it has. */
static int find_end(struct mfs_source *src, uint64_t size, uint64_t *cd_off, uint64_t *cd_size,
                    uint64_t *count, uint64_t *limit, const char *display, char *err,
                    size_t errlen)
{
	if (size < 22)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "zip: %" PRIu64 " bytes is too short for an end record", size);
	size_t tail = size < 22 + 65535 ? (size_t)size : 22 + 65535;
	uint8_t *buf = malloc(tail);
	if (!buf)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	uint64_t base = size - tail;
	int rc = mfs_source_read(src, buf, tail, base);
	if (rc < 0) {
		free(buf);
		return mfs_errf(err, errlen, rc, display, "cannot read: %s", strerror(-rc));
	}
	ssize_t at = -1;
	for (ssize_t i = (ssize_t)tail - 22; i >= 0; i--) {
		if (mfs_get_le32(buf + i) == SIG_EOCD &&
		    (size_t)i + 22 + mfs_get_le16(buf + i + 20) == tail) {
			at = i;
			break;
		}
	}
	if (at < 0) {
		free(buf);
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "zip: no end-of-central-directory record");
	}
	const uint8_t *e = buf + at;
	uint64_t eocd = base + (uint64_t)at;
	if (mfs_get_le16(e + 4) != 0 || mfs_get_le16(e + 6) != 0 || mfs_get_le16(e + 8) != mfs_get_le16(e + 10)) {
		free(buf);
		return mfs_errf(err, errlen, -EUCLEAN, display, "zip: multi-disk archives are not supported");
	}
	*count = mfs_get_le16(e + 10);
	*cd_size = mfs_get_le32(e + 12);
	*cd_off = mfs_get_le32(e + 16);
	*limit = eocd;
	free(buf);

	if (eocd >= 20) {
		uint8_t loc[20];
		rc = mfs_source_read(src, loc, 20, eocd - 20);
		if (rc < 0)
			return mfs_errf(err, errlen, rc, display, "cannot read: %s", strerror(-rc));
		if (mfs_get_le32(loc) == SIG_LOC64) {
			uint64_t off64 = mfs_get_le64(loc + 8);
			if (mfs_get_le32(loc + 4) != 0 || mfs_get_le32(loc + 16) > 1)
				return mfs_errf(err, errlen, -EUCLEAN, display,
				                "zip: multi-disk archives are not supported");
			if (off64 > eocd - 20 || eocd - 20 - off64 < 56)
				return mfs_errf(err, errlen, -EUCLEAN, display,
				                "zip: ZIP64 end record at %" PRIu64 " is out of range",
				                off64);
			uint8_t r[56];
			rc = mfs_source_read(src, r, 56, off64);
			if (rc < 0)
				return mfs_errf(err, errlen, rc, display, "cannot read: %s",
				                strerror(-rc));
			if (mfs_get_le32(r) != SIG_EOCD64)
				return mfs_errf(err, errlen, -EUCLEAN, display,
				                "zip: no ZIP64 end record at %" PRIu64, off64);
			if (mfs_get_le32(r + 16) != 0 || mfs_get_le32(r + 20) != 0 ||
			    mfs_get_le64(r + 24) != mfs_get_le64(r + 32))
				return mfs_errf(err, errlen, -EUCLEAN, display,
				                "zip: multi-disk archives are not supported");
			*count = mfs_get_le64(r + 32);
			*cd_size = mfs_get_le64(r + 40);
			*cd_off = mfs_get_le64(r + 48);
			*limit = off64;
		}
	}
	if (*cd_off > *limit || *cd_size > *limit - *cd_off)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "zip: central directory [%" PRIu64 ", +%" PRIu64 ") is out of range",
		                *cd_off, *cd_size);
	if (*cd_size > TZ_MAX_CDIR)
		return mfs_errf(err, errlen, -EFBIG, display,
		                "zip: central directory of %" PRIu64 " bytes exceeds the limit of %llu",
		                *cd_size, TZ_MAX_CDIR);
	if (*count > TZ_MAX_ENTRIES)
		return mfs_errf(err, errlen, -EFBIG, display,
		                "zip: %" PRIu64 " members exceed the limit of %u", *count,
		                TZ_MAX_ENTRIES);
	if (*count > *cd_size / 46)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "zip: %" PRIu64 " members cannot fit in a central directory of %"
		                PRIu64 " bytes", *count, *cd_size);
	return 0;
}

/* The ZIP64 extra field of a central record: the 64-bit values of the
 * 32-bit fields that are 0xFFFFFFFF, in the order the format gives. */
static int zip64_extra(struct tz_entry *e, const uint8_t *x, size_t xlen, bool need_u, bool need_c,
                       bool need_o)
{
	while (xlen >= 4) {
		uint16_t id = mfs_get_le16(x), n = mfs_get_le16(x + 2);
		if ((size_t)n > xlen - 4)
			return -1;
		if (id == 1) {
			const uint8_t *p = x + 4;
			size_t left = n;
			if (need_u) {
				if (left < 8)
					return -1;
				e->usize = mfs_get_le64(p);
				p += 8;
				left -= 8;
			}
			if (need_c) {
				if (left < 8)
					return -1;
				e->csize = mfs_get_le64(p);
				p += 8;
				left -= 8;
			}
			if (need_o) {
				if (left < 8)
					return -1;
				e->local_off = mfs_get_le64(p);
			}
			return 0;
		}
		x += 4 + n;
		xlen -= 4 + (size_t)n;
	}
	return need_u || need_c || need_o ? -1 : 0;
}

int tz_open(struct tz_archive *z, struct mfs_source *src, const char *display, char *err,
            size_t errlen)
{
	memset(z, 0, sizeof(*z));
	uint64_t size = src->size, cd_off = 0, cd_size = 0, count = 0, limit = 0;
	int rc = find_end(src, size, &cd_off, &cd_size, &count, &limit, display, err, errlen);
	if (rc < 0)
		return rc;
	uint8_t *cd = malloc(cd_size ? (size_t)cd_size : 1);
	struct tz_entry **byoff = NULL;
	z->ents = calloc(count ? (size_t)count : 1, sizeof(*z->ents));
	if (!cd || !z->ents) {
		rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
		goto out;
	}
	rc = cd_size ? mfs_source_read(src, cd, (size_t)cd_size, cd_off) : 0;
	if (rc < 0) {
		rc = mfs_errf(err, errlen, rc, display, "cannot read: %s", strerror(-rc));
		goto out;
	}
	z->cdir_off = cd_off;
	z->cdir_size = cd_size;
	size_t pos = 0;
	for (uint64_t i = 0; i < count; i++) {
		struct tz_entry *e = &z->ents[i];
		if (cd_size - pos < 46 || mfs_get_le32(cd + pos) != SIG_CDIR) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: central directory record %" PRIu64 " at %" PRIu64
			              " is broken", i, cd_off + pos);
			goto out;
		}
		const uint8_t *r = cd + pos;
		size_t nlen = mfs_get_le16(r + 28), xlen = mfs_get_le16(r + 30), clen = mfs_get_le16(r + 32);
		if (cd_size - pos - 46 < nlen + xlen + clen) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: central directory record %" PRIu64 " runs past the directory",
			              i);
			goto out;
		}
		e->flags = mfs_get_le16(r + 8);
		e->method = mfs_get_le16(r + 10);
		e->crc = mfs_get_le32(r + 16);
		e->csize = mfs_get_le32(r + 20);
		e->usize = mfs_get_le32(r + 24);
		e->local_off = mfs_get_le32(r + 42);
		e->cdir_off = cd_off + pos;
		if (nlen == 0 || nlen > TZ_MAX_NAME || memchr(r + 46, 0, nlen)) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: member %" PRIu64 " has a name of %zu bytes that is empty, too "
			              "long or holds NUL", i, nlen);
			goto out;
		}
		e->name = malloc(nlen + 1);
		if (!e->name) {
			rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
			goto out;
		}
		z->n = (size_t)i + 1;
		memcpy(e->name, r + 46, nlen);
		e->name[nlen] = '\0';
		e->name_len = nlen;
		if (mfs_get_le16(r + 34) != 0) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: member '%.200s' is on another disk", e->name);
			goto out;
		}
		if (zip64_extra(e, r + 46 + nlen, xlen, e->usize == 0xFFFFFFFFu,
		                e->csize == 0xFFFFFFFFu, e->local_off == 0xFFFFFFFFu) < 0) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: member '%.200s' has a broken ZIP64 extra field", e->name);
			goto out;
		}
		if (e->flags & 1) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: member '%.200s' is encrypted", e->name);
			goto out;
		}
		pos += 46 + nlen + xlen + clen;
	}

	/* Local headers: where each member's data starts. */
	for (size_t i = 0; i < z->n; i++) {
		struct tz_entry *e = &z->ents[i];
		uint8_t lh[30];
		if (e->local_off > cd_off || cd_off - e->local_off < 30) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: local header of '%.200s' at %" PRIu64 " is out of range",
			              e->name, e->local_off);
			goto out;
		}
		rc = mfs_source_read(src, lh, 30, e->local_off);
		if (rc < 0) {
			rc = mfs_errf(err, errlen, rc, display, "cannot read: %s", strerror(-rc));
			goto out;
		}
		uint64_t lnlen = mfs_get_le16(lh + 26), lxlen = mfs_get_le16(lh + 28);
		if (mfs_get_le32(lh) != SIG_LOCAL || lnlen != e->name_len ||
		    cd_off - e->local_off - 30 < lnlen + lxlen) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: local header of '%.200s' at %" PRIu64 " is broken", e->name,
			              e->local_off);
			goto out;
		}
		char lname[TZ_MAX_NAME];
		rc = mfs_source_read(src, lname, (size_t)lnlen, e->local_off + 30);
		if (rc < 0) {
			rc = mfs_errf(err, errlen, rc, display, "cannot read: %s", strerror(-rc));
			goto out;
		}
		if (memcmp(lname, e->name, (size_t)lnlen) != 0) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: local header of '%.200s' names another member", e->name);
			goto out;
		}
		e->data_off = e->local_off + 30 + lnlen + lxlen;
		if (e->csize > cd_off - e->data_off) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: data of '%.200s' (%" PRIu64 " bytes at %" PRIu64
			              ") runs into the central directory", e->name, e->csize,
			              e->data_off);
			goto out;
		}
		if (e->method == 0 && e->csize != e->usize) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: stored member '%.200s' has sizes %" PRIu64 " and %" PRIu64,
			              e->name, e->csize, e->usize);
			goto out;
		}
	}

	/* No two extents overlap. */
	byoff = malloc((z->n ? z->n : 1) * sizeof(*byoff));
	if (!byoff) {
		rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < z->n; i++)
		byoff[i] = &z->ents[i];
	qsort(byoff, z->n, sizeof(*byoff), ent_off_cmp);
	for (size_t i = 1; i < z->n; i++) {
		const struct tz_entry *p = byoff[i - 1];
		if (p->data_off + p->csize > byoff[i]->local_off) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: members '%.200s' and '%.200s' overlap", p->name,
			              byoff[i]->name);
			goto out;
		}
	}
	qsort(z->ents, z->n, sizeof(*z->ents), ent_name_cmp);
	for (size_t i = 1; i < z->n; i++) {
		if (strcmp(z->ents[i - 1].name, z->ents[i].name) == 0) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "zip: two members are named '%.200s'", z->ents[i].name);
			goto out;
		}
	}
	rc = 0;
out:
	free(cd);
	free(byoff);
	if (rc < 0)
		tz_free(z);
	return rc;
}

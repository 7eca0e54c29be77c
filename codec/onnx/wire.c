/*
 * codec/onnx/wire.c — protobuf wire decoding for the ONNX reader.
 *
 * The ONNX reader (reader.c) walks a model file field by field through this
 * layer: it never maps or slurps the file, it asks for the field at an offset
 * and gets back where the field's value lives.  The bytes come through a
 * 4 KiB window, refilled with one source read per miss, so stepping over a tensor
 * payload costs nothing and mounting a large model reads only its metadata.
 *
 * The same decoder serves in-memory buffers (the scratch copies of small
 * fields that are later handed to protobuf-c), and mfs_wire_check() walks
 * such a buffer with the protobuf-c schema to bound nesting before
 * protobuf-c, which recurses without limit, ever sees it.
 */
#include <errno.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "onnx/wire.h"
#include "source/source.h"

const char *mfs_wire_strerror(enum mfs_wire_err e)
{
	switch (e) {
	case MFS_WIRE_OK: return "no error";
	case MFS_WIRE_TRUNCATED: return "varint runs past end of message";
	case MFS_WIRE_VARINT_LONG: return "varint longer than 10 bytes";
	case MFS_WIRE_VARINT_OVERFLOW: return "varint overflows 64 bits";
	case MFS_WIRE_FIELD_ZERO: return "bad protobuf tag: field number 0";
	case MFS_WIRE_FIELD_BIG: return "bad protobuf tag: field number above 2^29-1";
	case MFS_WIRE_GROUP: return "bad protobuf tag: wire type 3/4 (groups are not used by ONNX)";
	case MFS_WIRE_BAD_TYPE: return "bad protobuf tag: wire type 6/7 does not exist";
	case MFS_WIRE_LEN_PAST_END: return "length prefix past end of message";
	case MFS_WIRE_FIXED_PAST_END: return "fixed-width value past end of message";
	case MFS_WIRE_TOO_DEEP: return "messages nested deeper than the limit";
	case MFS_WIRE_STRING_NUL: return "string field holds a NUL byte (not supported)";
	case MFS_WIRE_IO: return "read error";
	}
	return "unknown wire error";
}

enum mfs_wire_err mfs_wire_varint(uint64_t *out, size_t *used, const uint8_t *p, size_t avail)
{
	uint64_t v = 0;
	for (size_t i = 0; i < 10; i++) {
		if (i >= avail)
			return MFS_WIRE_TRUNCATED;
		uint8_t b = p[i];
		if (i == 9) {
			/* The 10th byte holds bit 63 only; anything else is
			 * either a continuation (too long) or lost bits. */
			if (b & 0x80)
				return MFS_WIRE_VARINT_LONG;
			if (b > 1)
				return MFS_WIRE_VARINT_OVERFLOW;
		}
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*out = v;
			*used = i + 1;
			return MFS_WIRE_OK;
		}
	}
	return MFS_WIRE_VARINT_LONG;    /* not reached */
}

enum mfs_wire_err mfs_wire_tag(uint32_t *field, unsigned *wt, size_t *used, const uint8_t *p,
                               size_t avail)
{
	uint64_t key;
	enum mfs_wire_err e = mfs_wire_varint(&key, used, p, avail);
	if (e)
		return e;
	unsigned t = (unsigned)(key & 7);
	uint64_t num = key >> 3;
	if (num == 0)
		return MFS_WIRE_FIELD_ZERO;
	if (num > MFS_WIRE_MAX_FIELD)
		return MFS_WIRE_FIELD_BIG;
	if (t == 3 || t == 4)
		return MFS_WIRE_GROUP;
	if (t == 6 || t == 7)
		return MFS_WIRE_BAD_TYPE;
	*field = (uint32_t)num;
	*wt = t;
	return MFS_WIRE_OK;
}

void mfs_wire_src_mem(struct mfs_wire_src *s, const uint8_t *buf, size_t len)
{
	static const uint8_t none;
	s->mem = buf ? buf : &none;     /* non-NULL marks a memory source */
	s->win = NULL;
	s->size = len;
	s->file = NULL;
	s->win_off = 0;
	s->win_len = 0;
	s->bytes_read = 0;
	s->io_errno = 0;
}

void mfs_wire_src_file(struct mfs_wire_src *s, struct mfs_source *file, uint64_t size,
                       uint8_t *win)
{
	s->mem = NULL;
	s->win = win;
	s->size = size;
	s->file = file;
	s->win_off = 0;
	s->win_len = 0;
	s->bytes_read = 0;
	s->io_errno = 0;
}

/*
 * Make up to `want` bytes at `pos` addressable and return a pointer to them;
 * *avail gets how many (fewer near the end of the source).  A file source
 * refills its window starting at `pos` when the bytes are not all in it.
 * Returns NULL on a read error (s->io_errno set).
 */
static const uint8_t *peek(struct mfs_wire_src *s, uint64_t pos, size_t want, size_t *avail)
{
	if (pos >= s->size) {
		*avail = 0;
		return s->mem ? s->mem + s->size : s->win;      /* nothing to read there */
	}
	uint64_t left = s->size - pos;
	if (want > left)
		want = (size_t)left;
	if (s->mem) {
		*avail = want;
		return s->mem + pos;
	}
	if (want > MFS_WIRE_WINDOW)
		want = MFS_WIRE_WINDOW;
	if (pos < s->win_off || pos + want > s->win_off + s->win_len) {
		size_t n = left < MFS_WIRE_WINDOW ? (size_t)left : MFS_WIRE_WINDOW;
		int rc = mfs_source_read(s->file, s->win, n, pos);
		if (rc < 0) {
			s->win_len = 0;
			s->io_errno = -rc;
			return NULL;
		}
		s->bytes_read += n;
		s->win_off = pos;
		s->win_len = n;
	}
	*avail = want;
	return s->win + (pos - s->win_off);
}

enum mfs_wire_err mfs_wire_varint_at(struct mfs_wire_src *s, uint64_t pos, uint64_t end,
                                     uint64_t *out, size_t *used)
{
	if (pos >= end)
		return MFS_WIRE_TRUNCATED;
	uint64_t lim = end - pos;
	size_t avail;
	const uint8_t *p = peek(s, pos, lim < 10 ? (size_t)lim : 10, &avail);
	if (!p)
		return MFS_WIRE_IO;
	return mfs_wire_varint(out, used, p, avail);
}

enum mfs_wire_err mfs_wire_next(struct mfs_wire_src *s, uint64_t pos, uint64_t end,
                                struct mfs_wire_field *f)
{
	if (end > s->size)
		end = s->size;
	if (pos >= end)
		return MFS_WIRE_TRUNCATED;
	/* A key and a length prefix are at most 20 bytes together. */
	uint64_t lim = end - pos;
	size_t avail;
	const uint8_t *p = peek(s, pos, lim < 20 ? (size_t)lim : 20, &avail);
	if (!p)
		return MFS_WIRE_IO;
	size_t used;
	enum mfs_wire_err e = mfs_wire_tag(&f->num, &f->wt, &used, p, avail);
	if (e)
		return e;
	f->start = pos;
	f->u = 0;
	uint64_t vpos = pos + used;
	uint64_t room = end - vpos;
	switch (f->wt) {
	case MFS_WT_VARINT: {
		size_t vused;
		e = mfs_wire_varint(&f->u, &vused, p + used, avail - used);
		if (e)
			return e;
		f->val = vpos;
		f->len = vused;
		break;
	}
	case MFS_WT_I64:
	case MFS_WT_I32: {
		uint64_t n = f->wt == MFS_WT_I64 ? 8 : 4;
		if (n > room)
			return MFS_WIRE_FIXED_PAST_END;
		f->val = vpos;
		f->len = n;
		break;
	}
	default: {      /* MFS_WT_LEN: mfs_wire_tag() let nothing else through */
		uint64_t len;
		size_t lused;
		e = mfs_wire_varint(&len, &lused, p + used, avail - used);
		if (e)
			return e;
		if (len > room - lused)
			return MFS_WIRE_LEN_PAST_END;
		f->val = vpos + lused;
		f->len = len;
		break;
	}
	}
	f->end = f->val + f->len;
	return MFS_WIRE_OK;
}

int mfs_wire_read(struct mfs_wire_src *s, void *dst, uint64_t off, size_t len)
{
	if (off > s->size || len > s->size - off)
		return -EIO;
	if (!len)
		return 0;
	if (s->mem) {
		memcpy(dst, s->mem + off, len);
		return 0;
	}
	if (off >= s->win_off && off + len <= s->win_off + s->win_len) {
		memcpy(dst, s->win + (off - s->win_off), len);
		return 0;
	}
	if (len >= MFS_WIRE_WINDOW) {
		int rc = mfs_source_read(s->file, dst, len, off);
		if (rc == 0)
			s->bytes_read += len;
		return rc;
	}
	size_t avail;
	const uint8_t *p = peek(s, off, len, &avail);
	if (!p)
		return -s->io_errno;
	memcpy(dst, p, len);
	return 0;
}

void mfs_wire_iter_init(struct mfs_wire_iter *it, const uint8_t *buf, size_t len)
{
	mfs_wire_src_mem(&it->src, buf, len);
	it->pos = 0;
	it->err = MFS_WIRE_OK;
	it->err_off = 0;
}

int mfs_wire_iter_next(struct mfs_wire_iter *it, struct mfs_wire_field *f)
{
	if (it->err)
		return -1;
	if (it->pos >= it->src.size)
		return 0;
	enum mfs_wire_err e = mfs_wire_next(&it->src, it->pos, it->src.size, f);
	if (e) {
		it->err = e;
		it->err_off = it->pos;
		return -1;
	}
	it->pos = f->end;
	return 1;
}

/*
 * Recursive, but each level is one message deeper and the depth is capped,
 * so the C stack use is bounded by max_depth small frames of this function.
 */
static enum mfs_wire_err check_msg(struct mfs_wire_src *src, uint64_t start, uint64_t end,
                                   const ProtobufCMessageDescriptor *desc, unsigned depth,
                                   unsigned max_depth, uint64_t *err_off)
{
	uint64_t pos = start;
	while (pos < end) {
		struct mfs_wire_field f;
		enum mfs_wire_err e = mfs_wire_next(src, pos, end, &f);
		if (e) {
			*err_off = pos;
			return e;
		}
		if (f.wt == MFS_WT_LEN && desc) {
			const ProtobufCFieldDescriptor *fd =
				protobuf_c_message_descriptor_get_field(desc, f.num);
			/* A memory source: the payload is addressable as is. */
			if (fd && fd->type == PROTOBUF_C_TYPE_STRING &&
			    memchr(src->mem + f.val, 0, (size_t)f.len)) {
				*err_off = pos;
				return MFS_WIRE_STRING_NUL;
			}
			if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
				if (depth + 1 > max_depth) {
					*err_off = pos;
					return MFS_WIRE_TOO_DEEP;
				}
				e = check_msg(src, f.val, f.end, fd->descriptor, depth + 1, max_depth,
				              err_off);
				if (e)
					return e;
			}
		}
		pos = f.end;
	}
	return MFS_WIRE_OK;
}

enum mfs_wire_err mfs_wire_check(const uint8_t *buf, size_t len,
                                 const struct ProtobufCMessageDescriptor *desc, unsigned depth,
                                 unsigned max_depth, uint64_t *err_off)
{
	*err_off = 0;
	if (depth > max_depth)
		return MFS_WIRE_TOO_DEEP;
	struct mfs_wire_src src;
	mfs_wire_src_mem(&src, buf, len);
	return check_msg(&src, 0, len, desc, depth, max_depth, err_off);
}

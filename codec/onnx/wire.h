/*
 * codec/onnx/wire.h — the protobuf wire layer under the ONNX reader.
 *
 * Internal to onnx/ (reader.c, writer.c and the unit tests).  It knows the protobuf
 * wire format and nothing about ONNX: decoding varints and field keys,
 * stepping over one field of a message while checking every length against
 * the end of the enclosing message, reading a file through a small window so
 * that walking a model never reads tensor payloads, and a schema-driven depth
 * check that bounds message nesting before protobuf-c is given a buffer.
 *
 * Wire rules enforced everywhere (doc/formats.md §1.7):
 *   - a varint has at most 10 bytes, and the 10th may only carry bit 63;
 *   - a field number is 1 .. 2^29-1; wire types 3 and 4 (groups) and 6, 7
 *     (undefined) are rejected;
 *   - a length-delimited value, a fixed32 and a fixed64 must end at or
 *     before the end of the message that contains them.
 */
#ifndef MODELFS_CODEC_ONNX_WIRE_H
#define MODELFS_CODEC_ONNX_WIRE_H

#include <stddef.h>
#include <stdint.h>

struct mfs_source;

/* Bytes read per window refill when walking a file. */
#define MFS_WIRE_WINDOW 4096

/* The largest field number protobuf allows. */
#define MFS_WIRE_MAX_FIELD ((1u << 29) - 1)

enum mfs_wire_type {
	MFS_WT_VARINT = 0,
	MFS_WT_I64 = 1,
	MFS_WT_LEN = 2,
	MFS_WT_I32 = 5
};

/* Why a wire-level decode failed; mfs_wire_strerror() gives the text. */
enum mfs_wire_err {
	MFS_WIRE_OK = 0,
	MFS_WIRE_TRUNCATED,             /* a varint runs past the end of its message */
	MFS_WIRE_VARINT_LONG,           /* more than 10 bytes */
	MFS_WIRE_VARINT_OVERFLOW,       /* 10 bytes but more than 64 bits */
	MFS_WIRE_FIELD_ZERO,
	MFS_WIRE_FIELD_BIG,             /* field number above 2^29-1 */
	MFS_WIRE_GROUP,                 /* wire type 3 or 4 */
	MFS_WIRE_BAD_TYPE,              /* wire type 6 or 7 */
	MFS_WIRE_LEN_PAST_END,          /* length prefix past the end of the message */
	MFS_WIRE_FIXED_PAST_END,        /* fixed32/fixed64 past the end of the message */
	MFS_WIRE_TOO_DEEP,              /* nesting deeper than the limit */
	MFS_WIRE_STRING_NUL,            /* a string field holds a NUL byte */
	MFS_WIRE_IO                     /* the file could not be read (src->io_errno) */
};

/* One line of text for `e` (no trailing newline); never NULL. */
const char *mfs_wire_strerror(enum mfs_wire_err e);

/*
 * mfs_wire_varint() - decode the varint at p[0 .. avail).
 * On success sets *out and *used (1..10).  MFS_WIRE_TRUNCATED when `avail`
 * ends before the last byte, MFS_WIRE_VARINT_LONG when 10 bytes all have the
 * continuation bit, MFS_WIRE_VARINT_OVERFLOW when the 10th byte holds more
 * than bit 63.
 */
enum mfs_wire_err mfs_wire_varint(uint64_t *out, size_t *used, const uint8_t *p, size_t avail);

/*
 * mfs_wire_tag() - decode a field key at p[0 .. avail) into field number and
 * wire type, rejecting field 0, numbers above 2^29-1 and wire types 3, 4, 6, 7.
 */
enum mfs_wire_err mfs_wire_tag(uint32_t *field, unsigned *wt, size_t *used, const uint8_t *p,
                               size_t avail);

/* One decoded field.  All offsets are absolute within the source. */
struct mfs_wire_field {
	uint32_t num;
	unsigned wt;
	uint64_t start;         /* the first byte of the key */
	uint64_t val;           /* the value (after the length prefix for wire type 2) */
	uint64_t len;           /* value bytes: payload for LEN, 4, 8, or the varint's length */
	uint64_t u;             /* the varint's value (wire type 0), else 0 */
	uint64_t end;           /* just past the field */
};

/*
 * What the walker reads: an in-memory buffer, or a byte source (a model's
 * source file, source/source.h) read through a window of MFS_WIRE_WINDOW
 * bytes.  `bytes_read` counts what was read from the source so tests can
 * bound it.
 */
struct mfs_wire_src {
	const uint8_t *mem;     /* memory source when non-NULL */
	uint64_t size;          /* bytes in the source */
	struct mfs_source *file;        /* byte source, when mem is NULL */
	uint64_t win_off;
	size_t win_len;
	uint64_t bytes_read;
	int io_errno;           /* set when MFS_WIRE_IO is returned */
	uint8_t *win;           /* MFS_WIRE_WINDOW bytes, the caller's (file sources) */
};

void mfs_wire_src_mem(struct mfs_wire_src *s, const uint8_t *buf, size_t len);
/* `win` is MFS_WIRE_WINDOW bytes of caller storage that outlives `s`. */
void mfs_wire_src_file(struct mfs_wire_src *s, struct mfs_source *file, uint64_t size,
                       uint8_t *win);

/*
 * mfs_wire_next() - decode the field that starts at `pos` of a message that
 * ends at `end` (end <= s->size).  Fills *f; the next field starts at f->end.
 */
enum mfs_wire_err mfs_wire_next(struct mfs_wire_src *s, uint64_t pos, uint64_t end,
                                struct mfs_wire_field *f);

/* mfs_wire_varint_at() - decode a varint at `pos` of a message ending at `end`. */
enum mfs_wire_err mfs_wire_varint_at(struct mfs_wire_src *s, uint64_t pos, uint64_t end,
                                     uint64_t *out, size_t *used);

/*
 * mfs_wire_read() - copy [off, off + len) of the source into `dst`.
 * Small reads go through the window; reads of a window or more go straight
 * to the file.  Returns 0 or a negative errno (-EIO past the end).
 */
int mfs_wire_read(struct mfs_wire_src *s, void *dst, uint64_t off, size_t len);

/*
 * Iteration over an in-memory message.  mfs_wire_iter_next() returns 1 with
 * the next field in *f, 0 at the end of the buffer, or -1 on a wire error
 * (reason in it->err, offset of the failing field in it->err_off).
 */
struct mfs_wire_iter {
	struct mfs_wire_src src;
	uint64_t pos;
	enum mfs_wire_err err;
	uint64_t err_off;
};
void mfs_wire_iter_init(struct mfs_wire_iter *it, const uint8_t *buf, size_t len);
int mfs_wire_iter_next(struct mfs_wire_iter *it, struct mfs_wire_field *f);

/*
 * mfs_wire_check() - validate a message held in memory before protobuf-c
 * sees it: every key and length is checked, and every field the schema
 * (`desc`, a protobuf-c message descriptor) declares as a message is
 * descended into, so nesting is bounded by `max_depth` whatever the input.
 * `depth` is the depth of `buf` itself; a sub-message at depth > max_depth
 * fails with MFS_WIRE_TOO_DEEP.  A field the schema declares as a string
 * fails with MFS_WIRE_STRING_NUL if it holds a NUL byte: protobuf-c would
 * hand it over as a C string cut at the NUL, so two names could become one
 * and a location could lose its tail.  Unknown fields are opaque bytes,
 * exactly as protobuf-c treats them.  The recursion is bounded by max_depth.
 * On failure *err_off is the offset within `buf` of the field at fault.
 */
struct ProtobufCMessageDescriptor;
enum mfs_wire_err mfs_wire_check(const uint8_t *buf, size_t len,
                                 const struct ProtobufCMessageDescriptor *desc, unsigned depth,
                                 unsigned max_depth, uint64_t *err_off);

#endif /* MODELFS_CODEC_ONNX_WIRE_H */

/*
 * codec/gguf/gguf.h — what the GGUF reader, writer and format row share.
 *
 * Internal to gguf/.  The reader (reader.c) describes single files and
 * split models (`name-00001-of-00003.gguf`, the split.* keys); the writer
 * (writer.c) rewrites single files; the value text (value.c) is how a
 * metadata value reads in meta/props/ and how a written text becomes a
 * value again.  File layout and the rules a file must satisfy are at the
 * top of reader.c and in doc/design.md §3.6.
 */
#ifndef MODELFS_CODEC_GGUF_H
#define MODELFS_CODEC_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

/* Named limits (mount.modelfs.8, LIMITS). */
#define GGUF_MAX_STRING         (1ull << 30)    /* bytes of one string (GGUF_MAX_STRING_LENGTH) */
#define GGUF_MAX_ARRAY          (1ull << 30)    /* elements of one array */
#define GGUF_MAX_DEPTH          8               /* arrays nested in arrays */
#define GGUF_MAX_KEY            65535           /* bytes of one key */
#define GGUF_MAX_TNAME          63              /* bytes of a tensor name (GGML_MAX_NAME - 1) */
#define GGUF_MAX_DIMS           4               /* GGML_MAX_DIMS */
#define GGUF_MAX_TEXT           (64ull << 20)   /* bytes of the values' text in meta/props/
                                                 * (one value's, and all of them together) */
#define GGUF_MAX_SHARDS         999             /* files of a split model */
#define GGUF_DEFAULT_ALIGNMENT  32

/* Metadata value types (gguf.h enum gguf_type). */
enum gguf_vtype {
	GV_UINT8 = 0, GV_INT8 = 1, GV_UINT16 = 2, GV_INT16 = 3, GV_UINT32 = 4, GV_INT32 = 5,
	GV_FLOAT32 = 6, GV_BOOL = 7, GV_STRING = 8, GV_ARRAY = 9, GV_UINT64 = 10, GV_INT64 = 11,
	GV_FLOAT64 = 12, GV_COUNT_ = 13
};

/* One key-value pair of the file (the first file, for a split model). */
struct gguf_kv {
	const char *key;
	uint32_t type;          /* enum gguf_vtype */
	uint32_t elem;          /* for an array: the element type (GV_ARRAY when nested) */
	bool nested;            /* an array of arrays (shown, not editable) */
	uint64_t off, len;      /* the whole pair (key, type, value) in the file */
};

/* The model's private state (m->priv, in the arena). */
struct gguf_state {
	uint32_t version;
	uint32_t alignment;
	bool split;             /* more than one file: read-only */
	struct gguf_kv *kvs;    /* n_kv, in file order; desc.props[i] is kvs[i] */
	size_t n_kv;
	uint64_t info_off;      /* the tensor infos of the first file */
	uint64_t info_end;
	uint64_t data_off;      /* the data section of the first file */
	uint64_t n_tensors;     /* tensors of the first file */
};

extern const struct mfs_format mfs_format_gguf;

int mfs_gguf_sniff(const uint8_t *head, size_t len, uint64_t size);
int mfs_gguf_open(struct mfs_model *m, const char *display, char *err, size_t errlen);
int mfs_gguf_splice(struct mfs_splice *out, const struct mfs_model *m,
                    const struct mfs_edit_set *e, char *err, size_t errlen);

/* The name of value type `t` ("uint32", "string"), NULL when unknown. */
const char *mfs_gguf_vtype_name(uint32_t t);
/*
 * The type that a type text names ("uint32", "array[string]", as
 * meta/types/ shows them; s[0 .. n)): 0, or -EINVAL for anything else
 * ("array[array]" and "array" included: a nested array cannot be written).
 */
int mfs_gguf_type_parse(const char *s, size_t n, uint32_t *type, uint32_t *elem);
/* Bytes of one scalar of type `t`, 0 for string, array and unknown types. */
unsigned mfs_gguf_vtype_size(uint32_t t);

/*
 * Append the text of one scalar of type `t` at `p` (mfs_gguf_vtype_size(t)
 * bytes; for a string, `n` bytes of it) to `b`: decimal integers, "true" /
 * "false", the shortest decimal that reads back to the same float, a
 * string escaped (doc/design.md §3.5).
 */
void mfs_gguf_scalar_text(struct mfs_buf *b, uint32_t t, const uint8_t *p, size_t n);

/*
 * Encode the text `s[0 .. n)` of a meta/props/ file as a GGUF value of type
 * `type` (element type `elem` for an array: one element per line; an empty
 * text is an empty array), appending the value's bytes (without the type)
 * to `b`.  0, or -EINVAL with one line in `msg` saying what is wrong.
 */
int mfs_gguf_encode(struct mfs_buf *b, uint32_t type, uint32_t elem, const char *s, size_t n,
                    char *msg, size_t msglen);

/*
 * The type a new key takes from its first value's text: an array when it has
 * more than one line, of the element type every line fits; "true"/"false" a
 * bool, an integer uint32 (int32 when negative; 64 bits when it does not fit),
 * a decimal number float32, anything else a string.
 */
void mfs_gguf_infer(const char *s, size_t n, uint32_t *type, uint32_t *elem);

#endif /* MODELFS_CODEC_GGUF_H */

/*
 * codec/safetensors/st.h — what the safetensors reader, writer and format
 * row share.
 *
 * Internal to safetensors/.  The reader (reader.c) describes single files
 * and sharded checkpoints; the writer (writer.c) rewrites single files; the
 * format row (format.c) ties both to the table of formats.  File layout and
 * the rules a file must satisfy are at the top of reader.c and in
 * doc/formats.md §2.
 */
#ifndef MODELFS_CODEC_ST_H
#define MODELFS_CODEC_ST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

#define ST_MAX_HEADER   100000000ull    /* reference MAX_HEADER_SIZE, also the index size cap */
#define ST_MIN_HEADER   2ull            /* "{}" */

/*
 * The model's private state (m->priv, in the arena): where a single file's
 * data buffer starts (8 + header length).  NULL for a sharded checkpoint,
 * which can be read but not edited.
 */
struct mfs_st_state {
	uint64_t data_off;
};

static inline uint64_t mfs_st_data_off(const struct mfs_model *m)
{
	const struct mfs_st_state *s = m->priv;
	return s ? s->data_off : 0;
}

/* safetensors' row in the table of formats (format.c). */
extern const struct mfs_format mfs_format_safetensors;

/* safetensors dtype name of `dtype`, or NULL when safetensors has none. */
const char *mfs_st_dtype_name(int32_t dtype);

/* True when the first bytes look like a safetensors file (reader.c). */
bool mfs_st_sniff_file(const uint8_t *head, size_t len, uint64_t file_size);

/* format.h's `sniff` and `open`: a single file or an index (reader.c). */
int mfs_st_sniff(const uint8_t *head, size_t len, uint64_t size);
int mfs_st_open(struct mfs_model *m, const char *display, char *err, size_t errlen);

/* ------------------------------------------------------------ the header scanner */

/*
 * What the reader's checks need of one JSON value of a header (scan.c fills
 * it from the header's bytes, the reference path in reader.c from a jansson
 * tree): its kind, an integer's value, a string's decoded bytes and, for an
 * array, its length and the kinds and values of its first ST_VAL_ELEMS
 * elements (enough for a shape of the largest rank and for data_offsets).
 */
enum st_kind {
	ST_V_NONE = 0,          /* absent (a field an entry does not have) */
	ST_V_UINT,              /* an integer >= 0 (u) */
	ST_V_NEG,               /* an integer < 0 */
	ST_V_REAL,              /* a real number (only from the reference path) */
	ST_V_STRING,            /* s[0 .. len), which may hold NUL bytes */
	ST_V_ARRAY,             /* len elements, the first ones in el[] */
	ST_V_OBJECT,
	ST_V_OTHER,             /* true, false, null */
};

#define ST_VAL_ELEMS    MFS_MAX_RANK

struct st_val {
	int kind;               /* enum st_kind */
	uint64_t u;
	const char *s;
	size_t len;
	struct {
		int kind;
		uint64_t u;
	} el[ST_VAL_ELEMS];
};

/* A tensor's entry: its own kind (ST_V_OBJECT when it is one) and its fields. */
struct st_rawent {
	int kind;
	struct st_val dtype, shape, offsets;
};

/* mfs_st_scan()'s answer when the header is not in the subset it reads. */
#define ST_SCAN_REFERENCE       1
/* A callback's answer: an entry is broken; finish the pass without calls. */
#define ST_SCAN_STOP            1

/* What mfs_st_scan() hands the reader, in file order. */
struct st_scan_ops {
	/* A tensor's name (a key other than "__metadata__"): the reader's copy,
	 * which must stay put until the pass ends; NULL for out of memory. */
	const char *(*name)(void *arg, const char *key, size_t len);
	/* The entry of the tensor `name` (the pointer name() returned). */
	int (*tensor)(void *arg, const char *name, size_t len, const struct st_rawent *e);
	/* A pair of "__metadata__" (the value's bytes valid during the call), or
	 * key NULL when "__metadata__" is not an object. */
	int (*metadata)(void *arg, const char *key, size_t len, const struct st_val *v);
};

/*
 * mfs_st_scan() - one pass over the `len` bytes of a header (scan.c, where
 * the subset it accepts is defined).  Callbacks return 0, ST_SCAN_STOP or
 * -errno (which ends the pass).  Returns 0 when the header was read (and
 * every callback made), ST_SCAN_REFERENCE when it is not in the subset
 * (the caller parses it with jansson instead), or -errno (-ENOMEM, or a
 * callback's).
 */
int mfs_st_scan(const char *buf, size_t len, const struct st_scan_ops *ops, void *arg);

/*
 * mfs_st_test_reference() - for tests only: read every header with the
 * reference path (jansson) instead of the scanner, so that a test can
 * compare the two.  Not thread-safe.
 */
void mfs_st_test_reference(bool on);

/* format.h's `splice` (writer.c). */
int mfs_st_splice(struct mfs_splice *out, const struct mfs_model *m,
                  const struct mfs_edit_set *e, char *err, size_t errlen);

#endif /* MODELFS_CODEC_ST_H */

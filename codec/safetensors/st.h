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

/* format.h's `splice` (writer.c). */
int mfs_st_splice(struct mfs_splice *out, const struct mfs_model *m,
                  const struct mfs_edit_set *e, char *err, size_t errlen);

#endif /* MODELFS_CODEC_ST_H */

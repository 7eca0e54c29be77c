/*
 * codec/format.c — the table of formats, and picking one for a file.
 *
 * Adding a format is adding a folder that defines its `struct mfs_format`
 * (format.h) and one row here; nothing else in codec/, fs/ or tools/ names
 * a format.  The order of the rows is the order of preference when two
 * sniffers answer alike: safetensors first (its signature is a length and a
 * JSON object, which a protobuf file can start with only by accident, and
 * the length is checked against the file size), ONNX last, because it is
 * the format to try when nothing else recognises a file (a protobuf has no
 * magic number), so its reader is the one that says what is wrong.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "format.h"

#define MAX_FORMATS 16

/* The rows, each defined in its format's folder (<fmt>/format.c). */
extern const struct mfs_format mfs_format_gguf;
extern const struct mfs_format mfs_format_onnx;
extern const struct mfs_format mfs_format_safetensors;
extern const struct mfs_format mfs_format_torch;

static const struct mfs_format *table[MAX_FORMATS] = {
	&mfs_format_gguf,       /* a magic number: first, so that no guess beats it */
	&mfs_format_safetensors,
	&mfs_format_torch,
	&mfs_format_onnx,
};
static size_t n_table = 4;

size_t mfs_format_count(void)
{
	return n_table;
}

const struct mfs_format *mfs_format_at(size_t i)
{
	return i < n_table ? table[i] : NULL;
}

int mfs_format_register(const struct mfs_format *f)
{
	if (n_table == MAX_FORMATS)
		return -ENOSPC;
	table[n_table++] = f;
	return 0;
}

const struct mfs_format *mfs_format_sniff(const uint8_t *head, size_t len, uint64_t size)
{
	const struct mfs_format *maybe = NULL;
	for (size_t i = 0; i < n_table; i++) {
		int s = table[i]->sniff(head, len, size);
		if (s == MFS_SNIFF_YES)
			return table[i];
		if (s == MFS_SNIFF_MAYBE && !maybe)
			maybe = table[i];
	}
	return maybe;
}

const struct mfs_format *mfs_format_sniff_next(const uint8_t *head, size_t len, uint64_t size,
                                               const struct mfs_format *prev)
{
	if (!prev)
		return mfs_format_sniff(head, len, size);
	int want = prev->sniff(head, len, size);
	bool seen = false;
	for (size_t i = 0; i < n_table; i++) {
		if (seen && table[i]->sniff(head, len, size) == want)
			return table[i];
		if (table[i] == prev)
			seen = true;
	}
	return NULL;
}

/* The row of a described model (by its format's name); NULL when none. */
static const struct mfs_format *format_of(const struct mfs_desc *d)
{
	if (!d || !d->format)
		return NULL;
	for (size_t i = 0; i < n_table; i++)
		if (strcmp(table[i]->name, d->format) == 0)
			return table[i];
	return NULL;
}

/* The format's own name of `dtype`, NULL when it uses the generic one. */
static const char *alias_of(const struct mfs_format *f, int32_t dtype)
{
	for (const struct mfs_dtype_alias *a = f ? f->dtype_names : NULL; a && a->name; a++)
		if (a->dtype == dtype)
			return a->name;
	return NULL;
}

const char *mfs_desc_dtype_name(const struct mfs_desc *d, int32_t dtype)
{
	const char *s = alias_of(format_of(d), dtype);
	return s ? s : mfs_dtype_name(dtype);
}

int32_t mfs_desc_dtype_from_name(const struct mfs_desc *d, const char *name)
{
	const struct mfs_format *f = format_of(d);
	for (const struct mfs_dtype_alias *a = f ? f->dtype_names : NULL; a && a->name; a++)
		if (strcmp(a->name, name) == 0)
			return a->dtype;
	int32_t dt = mfs_dtype_from_name(name);
	/* One name per dtype: a dtype the format names has no second name. */
	return dt >= 0 && alias_of(f, dt) ? -1 : dt;
}

/*
 * codec/safetensors/format.c — safetensors' row in the table of formats
 * (format.h).
 *
 * What a safetensors file allows an edit to do: any dtype safetensors has a
 * name for, tensors whose sub-byte elements fill whole bytes (the format
 * has no padding), no meta/ file (there is nothing but the header's
 * __metadata__, which is props), and props, tensor renames and tensor
 * deletions only in a single file: a sharded checkpoint spreads over files
 * one rename cannot replace.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "safetensors/st.h"

static bool dtype_ok(int32_t dtype)
{
	return mfs_st_dtype_name(dtype) != NULL;
}

static int tensor_check(const struct mfs_tensor_edit *te, char *msg, size_t msglen)
{
	uint64_t nelem = 1;
	for (size_t k = 0; k < te->rank; k++)
		nelem *= (uint64_t)te->dims[k];
	if (nelem * mfs_dtype_bits(te->dtype) % 8) {
		snprintf(msg, msglen, "tensor '%.200s': %" PRIu64 " %s elements are not a whole "
		         "number of bytes", te->t->name, nelem, mfs_dtype_name(te->dtype));
		return -EINVAL;
	}
	return 0;
}

/*
 * Three fields, through the transaction, single files only: a tensor rename
 * (TENSOR_NAME: its `name` file, or `mv` of its directory) and a tensor
 * deletion (TENSOR_DELETE: `rm -r` of its directory, text "1"), and a
 * new tensor (TENSOR_ADD: `mkdir` in weights/, text its name, id past the
 * model's).  Nothing reads a tensor in a file of tensors, so any one may
 * go.  The new name (of a rename or an added tensor)
 * is one line, not empty, not "__metadata__"; that it names no other
 * tensor is the commit's to check (the writer), since other renames and
 * deletions count.
 */
static bool field_writable(const struct mfs_model *m, uint64_t id)
{
	if (MFS_FIELD_J(id) || mfs_st_data_off(m) == 0)
		return false;
	if (MFS_FIELD_KIND(id) == MFS_FIELD_TENSOR_ADD)
		return MFS_FIELD_I(id) >= m->desc.n_tensors;
	return (MFS_FIELD_KIND(id) == MFS_FIELD_TENSOR_NAME ||
	        MFS_FIELD_KIND(id) == MFS_FIELD_TENSOR_DELETE) &&
	       MFS_FIELD_I(id) < m->desc.n_tensors;
}

static int field_check(const struct mfs_model *m, uint64_t id, const char *text, size_t len,
                       char *msg, size_t msglen)
{
	if (!field_writable(m, id))
		return -EACCES;
	if (MFS_FIELD_KIND(id) == MFS_FIELD_TENSOR_DELETE) {
		if (len == 1 && text[0] == '1')
			return 0;
		if (msg && msglen)
			snprintf(msg, msglen, "a deletion is staged as '1'");
		return -EINVAL;
	}
	const char *why = !len ? "a tensor name cannot be empty" :
	                  memchr(text, '\n', len) ? "a tensor name is one line" :
	                  len == 12 && !memcmp(text, "__metadata__", 12) ?
	                  "__metadata__ is not a tensor name" : NULL;
	if (why && msg && msglen)
		snprintf(msg, msglen, "%s", why);
	return why ? -EINVAL : 0;
}

static const char *const no_meta[] = {NULL};

static bool props_writable(const struct mfs_model *m)
{
	return mfs_st_data_off(m) != 0;
}

const struct mfs_format mfs_format_safetensors = {
	.name = "safetensors",
	.flags = 0,
	.sniff = mfs_st_sniff,
	.open = mfs_st_open,
	.dtype_ok = dtype_ok,
	.tensor_check = tensor_check,
	.meta_names = no_meta,
	.props_writable = props_writable,
	.field_writable = field_writable,
	.field_check = field_check,
	.splice = mfs_st_splice,
};

/*
 * codec/onnx/format.c — ONNX's row in the table of formats (format.h).
 *
 * What ONNX allows an edit to do: any dtype ONNX numbers (the types other
 * formats add, from MFS_DT_EXT_FIRST_ up, have no ONNX data_type) that the
 * graph's declared types do not contradict (types.c), the six
 * ModelProto/GraphProto strings of meta/ (model_version an int64), and
 * metadata_props.  The reader and the writer live beside this file.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx.h"

static const char *const meta_names[] = {
	[MFS_ONNX_META_PRODUCER_NAME] = "producer_name",
	[MFS_ONNX_META_PRODUCER_VERSION] = "producer_version",
	[MFS_ONNX_META_DOMAIN] = "domain",
	[MFS_ONNX_META_MODEL_VERSION] = "model_version",
	[MFS_ONNX_META_DOC_STRING] = "doc_string",
	[MFS_ONNX_META_GRAPH_NAME] = "graph_name",
	[MFS_ONNX_META_N] = NULL,
};
_Static_assert(MFS_ONNX_META_N <= MFS_META_MAX, "too many writable meta files");

static bool dtype_ok(int32_t dtype)
{
	return dtype < MFS_DT_EXT_FIRST_;
}

/* model_version is an int64 written in decimal, or empty (the field removed). */
static int meta_check(unsigned k, const char *text, size_t len)
{
	if (k != MFS_ONNX_META_MODEL_VERSION || !len)
		return 0;
	char num[32];
	char *end;
	if (len >= sizeof(num))
		return -EINVAL;
	memcpy(num, text, len);
	num[len] = '\0';
	errno = 0;
	if (strtoll(num, &end, 10) == 0 && errno == 0 && end == num)
		errno = EINVAL;
	if (errno || *end || !(num[0] == '-' || (num[0] >= '0' && num[0] <= '9')))
		return -EINVAL;
	return 0;
}

static bool props_writable(const struct mfs_model *m)
{
	(void)m;
	return true;
}

const struct mfs_format mfs_format_onnx = {
	.name = "onnx",
	.flags = MFS_DESC_GRAPH,
	.sniff = mfs_onnx_sniff,
	.open = mfs_onnx_open,
	.dtype_ok = dtype_ok,
	.type_check = mfs_onnx_type_check,
	.meta_names = meta_names,
	.meta_check = meta_check,
	.props_writable = props_writable,
	.field_writable = mfs_onnx_field_writable,
	.field_check = mfs_onnx_field_check,
	.splice = mfs_onnx_splice,
};

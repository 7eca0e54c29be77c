/*
 * codec/torch/format.c — PyTorch's row in the table of formats (format.h).
 *
 * Recognised by content: a zip local header at offset 0 (torch.save's zip
 * format, and TorchScript archives), the legacy torch.save magic (a
 * protocol-2 pickle whose first value is torch's LONG1 magic number),
 * which open refuses with a message that names the format, or a JSON
 * document (the index of a sharded checkpoint, reader.c).
 */
#include <string.h>

#include "torch/torch.h"

/* PROTO 2, LONG1 of 10 bytes: 0x1950a86a20f9469cfc6c, torch's legacy MAGIC_NUMBER. */
static const uint8_t legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                       0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

int mfs_torch_sniff(const uint8_t *head, size_t len, uint64_t size)
{
	(void)size;
	if (len >= 4 && memcmp(head, "PK\x03\x04", 4) == 0)
		return MFS_SNIFF_YES;
	if (len >= sizeof(legacy_magic) && memcmp(head, legacy_magic, sizeof(legacy_magic)) == 0)
		return MFS_SNIFF_YES;
	/* A JSON document: the index of a sharded checkpoint (pytorch_model.bin.index.json),
	 * which the safetensors row sees first and hands over (-ENOEXEC) when its shards are
	 * not safetensors files. */
	size_t i = 0;
	while (i < len && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r'))
		i++;
	if (i < len && head[i] == '{')
		return MFS_SNIFF_YES;
	return MFS_SNIFF_NO;
}

static const char *const no_meta[] = {NULL};

/* No dtype edits: a tensor's dtype is in the pickle (writer.c). */
static bool dtype_ok(int32_t dtype)
{
	(void)dtype;
	return false;
}

const struct mfs_format mfs_format_torch = {
	.name = "torch",
	.flags = 0,
	.sniff = mfs_torch_sniff,
	.open = mfs_torch_open,
	.close = mfs_torch_close,
	.tensor_read = mfs_torch_tensor_read,
	.dtype_ok = dtype_ok,
	.meta_names = no_meta,
	.splice = mfs_torch_splice,
	.splice_patches = true,         /* the CRC-32 fields change too (writer.c) */
};

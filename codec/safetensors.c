/* codec/safetensors.c — placeholder until the safetensors reader lands. */
#include <errno.h>
#include "internal.h"

bool mfs_safetensors_sniff(const uint8_t *head, size_t len, uint64_t file_size)
{
	(void)head; (void)len; (void)file_size;
	return false;
}

int mfs_safetensors_open(struct mfs_model *m, const char *display, char *err, size_t errlen)
{
	(void)m;
	return mfs_errf(err, errlen, -EUCLEAN, display, "safetensors is not supported yet");
}

int mfs_safetensors_index_open(struct mfs_model *m, const char *display, char *err, size_t errlen)
{
	(void)m;
	return mfs_errf(err, errlen, -EUCLEAN, display, "sharded safetensors is not supported yet");
}

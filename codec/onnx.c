/* codec/onnx.c — placeholder until the ONNX reader lands. */
#include <errno.h>
#include "internal.h"

int mfs_onnx_open(struct mfs_model *m, const char *display, char *err, size_t errlen)
{
	(void)m;
	return mfs_errf(err, errlen, -EUCLEAN, display, "ONNX is not supported yet");
}

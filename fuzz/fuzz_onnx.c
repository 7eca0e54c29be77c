/*
 * fuzz/fuzz_onnx.c — libFuzzer target: arbitrary bytes as an ONNX model file.
 *
 * The bytes become "model.onnx" in a scratch directory and go through
 * mfs_model_open(), which sniffs the format, pre-scans the protobuf wire
 * (mfs_wire_check bounds nesting before protobuf-c sees a buffer) and walks
 * the metadata.  An accepted model is walked in full and every tensor read
 * through mfs_tensor_read() (fz_walk_model checks ranges and sizes).  A
 * refused one must come with a one-line reason.
 */
#include <errno.h>
#include <string.h>

#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fz_path("model.onnx");
	fz_write(path, data, size);

	mfs_model *m = NULL;
	char err[512] = "";
	int rc = mfs_model_open(&m, path, NULL, err, sizeof(err));
	if (rc == 0) {
		FZ_CHECK(m != NULL);
		fz_walk_model(m);
		mfs_model_close(m);
	} else {
		FZ_CHECK(rc < 0 && m == NULL);
		FZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
	}
	return 0;
}

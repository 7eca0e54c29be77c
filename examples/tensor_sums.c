/*
 * examples/tensor_sums.c - list the tensors of a model and a checksum of each.
 *
 *   tensor_sums MODEL
 *
 * A small client of the public API in include/modelfs/model.h and nothing
 * else: it opens the model (ONNX, safetensors or a sharded index), walks
 * mfs_desc.tensors and reads each tensor's bytes with mfs_tensor_read(), the
 * same bytes a mount shows in weights/.../data.  For each tensor it prints one
 * tab-separated line:
 *
 *   CRC-32 (8 hex digits)   bytes   dtype   shape   name
 *
 * The checksum is CRC-32/IEEE (zlib's, gzip's and PNG's; Python's
 * zlib.crc32), computed here so that the example needs nothing beyond the
 * modelfs codec.  Names are printed as they are: one with a tab or a newline
 * in it would break the line format.
 *
 * Exit status: 0; 1 with one line on standard error when the model cannot be
 * opened or a tensor cannot be read; 2 for bad usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <modelfs/model.h>

/* CRC-32/IEEE: reflected, polynomial 0xEDB88320, a byte at a time by table. */
static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc_update(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

int main(int argc, char **argv)
{
	static unsigned char buf[1 << 16];
	/* At most 64 dims (mount.modelfs(8), LIMITS), each 19 digits and a comma. */
	char shape[64 * 20 + 1];
	char err[512] = "";
	mfs_model *m = NULL;
	int rc = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: tensor_sums MODEL\n");
		return 2;
	}
	crc_init();
	int e = mfs_model_open(&m, argv[1], NULL, err, sizeof(err));
	if (e < 0) {
		fprintf(stderr, "tensor_sums: %s\n", err[0] ? err : strerror(-e));
		return 1;
	}

	const struct mfs_desc *d = mfs_model_desc(m);
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		const struct mfs_tensor *t = d->tensors[i];
		uint32_t crc = 0;
		uint64_t off = 0;
		while (off < t->nbytes) {
			ssize_t n = mfs_tensor_read(m, t, buf, sizeof(buf), off);
			if (n <= 0) {
				fprintf(stderr, "tensor_sums: %s: tensor '%s': %s\n", argv[1], t->name,
				        n < 0 ? strerror((int)-n) : "shorter than its size");
				goto out;
			}
			crc = crc_update(crc, buf, (size_t)n);
			off += (uint64_t)n;
		}
		mfs_dims_format(shape, sizeof(shape), t->dims, t->rank);
		printf("%08" PRIx32 "\t%" PRIu64 "\t%s\t%s\t%s\n", crc, t->nbytes,
		       mfs_dtype_name(t->dtype), shape, t->name);
	}
	rc = 0;
out:
	mfs_model_close(m);
	if (fflush(stdout) != 0 && rc == 0) {
		perror("tensor_sums: standard output");
		rc = 1;
	}
	return rc;
}

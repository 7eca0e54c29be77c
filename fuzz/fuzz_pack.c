/*
 * fuzz/fuzz_pack.c — libFuzzer target: arbitrary bytes as a pack.
 *
 * The bytes become "model.onnx.mfs": pk_open() reads the tail, the seek
 * table and the manifest; an accepted pack has every chunk's frame inside
 * its frames and every file's chunks tiling it, and then every chunk is
 * decompressed (bounded: the first 64) and a read crosses every file;
 * finally mfs_model_open() opens the model inside the pack through its
 * place, and an accepted model reads every tensor (fz_walk_model).  The
 * fuzz build skips the CRCs of the seek table and manifest (read.c), so
 * that mutations reach the parsers behind them.  The oracle: no crash or
 * sanitizer report, a refusal says why.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "pack/pack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fz_path("model.onnx.mfs");
	fz_write(path, data, size);
	mfs_pack_set_cache_size(1u << 20);
	fz_reads_may_fail = true;

	struct mfs_source *src;
	FZ_CHECK(mfs_source_file_open(&src, AT_FDCWD, path) == 0);
	struct mfs_pack *pk;
	char err[512] = "";
	int rc = pk_open(&pk, src, "fuzz", err, sizeof(err));
	if (rc < 0) {
		FZ_CHECK(err[0] != '\0');
		return 0;
	}
	FZ_CHECK(pk->n_files >= 1 && pk->data_end <= size);
	for (uint32_t i = 0; i < pk->n_chunks; i++) {
		const struct pk_chunk *k = &pk->chunks[i];
		FZ_CHECK(k->frame_off + k->frame_len <= pk->data_end);
		FZ_CHECK(k->raw_len > 0 && k->raw_len <= PK_MAX_CHUNK);
	}
	for (uint32_t f = 0; f < pk->n_files; f++) {
		const struct pk_file *pf = &pk->files[f];
		uint64_t sum = 0;
		for (uint32_t j = pf->first; j < pf->first + pf->n; j++) {
			FZ_CHECK(pk->chunks[j].orig_off == sum);
			sum += pk->chunks[j].raw_len;
		}
		FZ_CHECK(sum == pf->size);
		FZ_CHECK(pf->path && pf->path[0] && pf->path[0] != '/');
	}
	uint8_t *buf = malloc(PK_MAX_CHUNK);
	FZ_CHECK(buf != NULL);
	for (uint32_t i = 0; i < pk->n_chunks && i < 64; i++) {
		err[0] = '\0';
		if (pk_chunk_read(pk, i, buf, err, sizeof(err)) < 0)
			FZ_CHECK(err[0] != '\0');
	}
	/* A read across the start of every file's second chunk. */
	for (uint32_t f = 0; f < pk->n_files && f < 16; f++) {
		const struct pk_file *pf = &pk->files[f];
		uint64_t at = pf->n > 1 ? pk->chunks[pf->first + 1].orig_off - 1 : 0;
		ssize_t r = pk_pread(pk, f, buf, 4096, at);
		FZ_CHECK(r < 0 || (uint64_t)r <= pf->size - (at < pf->size ? at : pf->size));
	}
	free(buf);
	pk_unref(pk);

	mfs_model *m = NULL;
	err[0] = '\0';
	rc = mfs_model_open(&m, path, NULL, err, sizeof(err));
	if (rc < 0) {
		FZ_CHECK(err[0] != '\0');
		return 0;
	}
	fz_walk_model(m);
	mfs_model_close(m);
	return 0;
}

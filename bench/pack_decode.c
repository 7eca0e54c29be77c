/*
 * bench/pack_decode.c — the "pack decompression, one core" row of
 * bench/pack.py: open a pack and decompress every chunk of it, in seek
 * table order, on the calling thread, into one buffer that is reused, as a
 * mount's cache miss does (pk_chunk_read_with: read the frame, zstd with
 * its content checksum checked, ungroup the planes).  Nothing is written or
 * hashed.  The reference the bench puts beside it is `zstd -d -T1 -c` of a
 * plain `zstd -3` of the same bytes to /dev/null.
 *
 *   pack_decode PACK [PASSES]
 *
 * Prints `bytes=N chunks=C s=SECONDS mb_per_s=R` for the fastest of
 * PASSES (default 1) passes; exit status 1 (with the error) if a chunk
 * fails.  Built with the codec's internals (codec_internal_dep), like the
 * fuzz replayers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zstd.h>

#include "core/core.h"
#include "pack/pack.h"
#include "source/place.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: pack_decode PACK [PASSES]\n");
		return 2;
	}
	int passes = argc == 3 ? atoi(argv[2]) : 1;
	if (passes < 1 || passes > 100)
		passes = 1;
	char err[1024];
	struct mfs_source *src;
	struct mfs_pack *pk;
	if (mfs_place_open_file(&src, argv[1], err, sizeof(err)) < 0 ||
	    pk_open(&pk, src, argv[1], err, sizeof(err)) < 0) {
		fprintf(stderr, "pack_decode: %s\n", err);
		return 1;
	}
	uint32_t biggest = 1;
	for (uint32_t i = 0; i < pk->n_chunks; i++)
		if (pk->chunks[i].raw_len > biggest)
			biggest = pk->chunks[i].raw_len;
	uint8_t *out = malloc(biggest);
	struct pk_scratch sc = {0};
	int rc = 0;
	double best = 0;
	uint64_t bytes = 0;
	if (!out || !(sc.dctx = ZSTD_createDCtx())) {
		fprintf(stderr, "pack_decode: out of memory\n");
		return 1;
	}
	for (int p = 0; p < passes && rc == 0; p++) {
		double t0 = now();
		bytes = 0;
		for (uint32_t i = 0; i < pk->n_chunks && rc == 0; i++) {
			rc = pk_chunk_read_with(pk, &sc, i, out, err, sizeof(err));
			bytes += pk->chunks[i].raw_len;
		}
		double s = now() - t0;
		if (p == 0 || s < best)
			best = s;
	}
	if (rc < 0)
		fprintf(stderr, "pack_decode: %s\n", err);
	else
		printf("bytes=%llu chunks=%u s=%.6f mb_per_s=%.1f\n", (unsigned long long)bytes,
		       pk->n_chunks, best, (double)bytes / best / 1e6);
	ZSTD_freeDCtx(sc.dctx);
	free(sc.frame);
	free(sc.tmp);
	free(sc.out);
	free(out);
	pk_unref(pk);
	return rc < 0;
}

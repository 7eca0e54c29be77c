/*
 * bench/preadbench.c — the I/O loops of bench/run that must not pay an
 * interpreter's overhead.  Built by bench/run with `cc -O2`.
 *
 *   preadbench pread FILE OFFSET LENGTH COUNT [BS [SEED]]
 *       COUNT preads of BS bytes (default 4096) at random BS-aligned
 *       offsets inside [OFFSET, OFFSET+LENGTH) of FILE; the offsets are a
 *       fixed pseudo-random sequence of SEED, so the mount and the raw file
 *       see the same pattern.
 *   preadbench mmap FILE OFFSET LENGTH [PASSES [touch|sum]]
 *       PASSES times (default 2): open, mmap the page-aligned cover of
 *       [OFFSET, OFFSET+LENGTH), read one byte of every page (touch, the
 *       default) or every byte as 64-bit words (sum), munmap, close.
 *
 * Prints one line of `key=value` pairs; every pass of mmap is reported
 * (pass1_s=... pass2_s=...) so the caller can pick the warm one.
 * Exit status 0 on success, 1 on any I/O error (with a message on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static unsigned long long num(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end) {
		fprintf(stderr, "preadbench: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

static int do_pread(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: preadbench pread FILE OFFSET LENGTH COUNT [BS [SEED]]\n");
		return 2;
	}
	const char *path = argv[2];
	uint64_t off = num(argv[3], "offset"), len = num(argv[4], "length");
	uint64_t count = num(argv[5], "count");
	uint64_t bs = argc > 6 ? num(argv[6], "block size") : 4096;
	uint64_t seed = argc > 7 ? num(argv[7], "seed") : 0x9E3779B97F4A7C15ull;
	if (bs == 0 || len < bs || seed == 0) {
		fprintf(stderr, "preadbench: need LENGTH >= BS > 0 and SEED != 0\n");
		return 2;
	}
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "preadbench: %s: %s\n", path, strerror(errno));
		return 1;
	}
	char *buf = aligned_alloc(4096, (bs + 4095) / 4096 * 4096);
	uint64_t blocks = len / bs, s = seed, sum = 0;
	double t0 = now();
	for (uint64_t i = 0; i < count; i++) {
		off_t o = (off_t)(off + (xorshift64(&s) % blocks) * bs);
		ssize_t n = pread(fd, buf, bs, o);
		if (n != (ssize_t)bs) {
			fprintf(stderr, "preadbench: pread %s at %lld: %s\n", path, (long long)o,
			        n < 0 ? strerror(errno) : "short read");
			return 1;
		}
		sum += (unsigned char)buf[0];
	}
	double t = now() - t0;
	close(fd);
	printf("reads=%" PRIu64 " bs=%" PRIu64 " seconds=%.6f ops_per_s=%.0f mb_per_s=%.1f checksum=%" PRIu64 "\n",
	       count, bs, t, count / t, count * bs / t / 1e6, sum);
	free(buf);
	return 0;
}

static int do_mmap(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: preadbench mmap FILE OFFSET LENGTH [PASSES]\n");
		return 2;
	}
	const char *path = argv[2];
	uint64_t off = num(argv[3], "offset"), len = num(argv[4], "length");
	unsigned passes = argc > 5 ? (unsigned)num(argv[5], "passes") : 2;
	int sum_all = argc > 6 && !strcmp(argv[6], "sum");
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t start = off / pg * pg, end = off + len;
	size_t maplen = end - start;
	printf("bytes=%" PRIu64, len);
	for (unsigned p = 1; p <= passes; p++) {
		double t0 = now();
		int fd = open(path, O_RDONLY);
		if (fd < 0) {
			fprintf(stderr, "preadbench: %s: %s\n", path, strerror(errno));
			return 1;
		}
		unsigned char *m = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, (off_t)start);
		if (m == MAP_FAILED) {
			fprintf(stderr, "preadbench: mmap %s: %s\n", path, strerror(errno));
			return 1;
		}
		volatile uint64_t sum = 0;
		if (sum_all) {
			const uint64_t *w = (const uint64_t *)m;
			uint64_t acc = 0;
			for (size_t i = 0; i < maplen / 8; i++)
				acc += w[i];
			sum = acc;
		} else {
			for (size_t i = 0; i < maplen; i += pg)
				sum += m[i];
		}
		sum += m[maplen - 1];
		munmap(m, maplen);
		close(fd);
		double t = now() - t0;
		printf(" pass%u_s=%.6f pass%u_gb_per_s=%.3f", p, t, p, len / t / 1e9);
	}
	printf("\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "pread"))
		return do_pread(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "mmap"))
		return do_mmap(argc, argv);
	fprintf(stderr, "usage: preadbench pread|mmap ...\n");
	return 2;
}

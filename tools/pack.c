/*
 * tools/pack.c — `modelfs pack`, `unpack` and `verify` (doc/pack.md).
 *
 * Thin: the codec does the work (include/modelfs/pack.h); these parse the
 * arguments, show progress on a terminal and print the results.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modelfs/model.h"
#include "modelfs/pack.h"

#include "tools.h"

static void progress(void *arg, uint64_t done, uint64_t total)
{
	(void)arg;
	if (total)
		fprintf(stderr, "\rmodelfs: packing: %3u%%", (unsigned)(done * 100 / total));
}

static int bad_usage(const char *what)
{
	fprintf(stderr, "modelfs: %s (see modelfs --help)\n", what);
	return 2;
}

int cmd_pack(int argc, char **argv)
{
	struct mfs_pack_opts o = {0};
	const char *model = NULL, *out = NULL;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		bool more = i + 1 < argc;
		if (!strcmp(a, "-o") && more) {
			out = argv[++i];
		} else if (!strcmp(a, "--level") && more) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 1 || v > 22)
				return bad_usage("pack: --level takes 1 to 22");
			o.level = (int)v;
		} else if (!strcmp(a, "--chunk") && more) {
			uint64_t v;
			if (mfs_parse_size(argv[++i], &v) < 0 || v > UINT32_MAX)
				return bad_usage("pack: --chunk takes a size (256K)");
			o.chunk_size = (uint32_t)v;
		} else if (!strcmp(a, "--threads") && more) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 1 || v > 256)
				return bad_usage("pack: --threads takes 1 to 256");
			o.threads = (unsigned)v;
		} else if (!strcmp(a, "--plain")) {
			o.plain = true;
		} else if (a[0] == '-' || model) {
			return bad_usage("pack: MODEL [-o OUT] [--level N] [--chunk SIZE] [--plain] "
			                 "[--threads N]");
		} else {
			model = a;
		}
	}
	if (!model)
		return bad_usage("pack: which MODEL?");
	char def[PATH_MAX];
	if (!out) {
		if ((size_t)snprintf(def, sizeof(def), "%s.mfs", model) >= sizeof(def))
			return bad_usage("pack: MODEL's name is too long");
		out = def;
	}
	bool tty = isatty(STDERR_FILENO);
	if (tty)
		o.progress = progress;
	struct mfs_pack_result r;
	char err[1024];
	int rc = mfs_pack_create(model, out, &o, &r, err, sizeof(err));
	if (tty)
		fprintf(stderr, "\r\033[K");
	if (rc < 0) {
		fprintf(stderr, "modelfs: %s\n", err);
		return 1;
	}
	printf("%s  %s\n", r.sha256, out);
	printf("%s: %llu bytes -> %llu bytes, ratio %.4f, %llu chunks (%llu stored once for "
	       "several)\n", out, (unsigned long long)r.orig_bytes,
	       (unsigned long long)r.pack_bytes,
	       r.pack_bytes ? (double)r.orig_bytes / (double)r.pack_bytes : 0.0,
	       (unsigned long long)r.chunks, (unsigned long long)r.deduped);
	return 0;
}

int cmd_unpack(int argc, char **argv)
{
	const char *pack = NULL, *dir = ".";
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "-o") && i + 1 < argc)
			dir = argv[++i];
		else if (argv[i][0] == '-' || pack)
			return bad_usage("unpack: PACK [-o DIR]");
		else
			pack = argv[i];
	}
	if (!pack)
		return bad_usage("unpack: which PACK?");
	char err[1024];
	if (mfs_pack_unpack(pack, dir, err, sizeof(err)) < 0) {
		fprintf(stderr, "modelfs: %s\n", err);
		return 1;
	}
	return 0;
}

int cmd_verify(const char *path)
{
	char err[1024];
	if (mfs_pack_verify(path, stdout, err, sizeof(err)) < 0) {
		fflush(stdout);
		fprintf(stderr, "modelfs: %s\n", err);
		return 1;
	}
	return 0;
}

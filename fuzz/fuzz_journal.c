/*
 * fuzz/fuzz_journal.c — libFuzzer target: arbitrary bytes as the staging
 * journal (".<model>.modelfs-journal", format atop codec/txn/stage.c) left
 * beside a small model, then mfs_txn_open(), which replays it.
 *
 * Input layout: byte 0 is a mode, the rest is the journal.  The journal is
 * self-checking (CRC-32 on the header and on every record, the model's
 * identity in the header), which a mutator almost never gets right by
 * chance; so mode bit 0 stamps the model's real identity into the header
 * and bit 1 recomputes every CRC, letting the fuzzer reach record replay.
 * Bit 2 aborts the recovered edits before closing.  With either bit clear
 * the checks themselves are fuzzed.
 *
 * Oracle: open either refuses cleanly (negative errno, one-line reason) or
 * succeeds, and then every recovered view can be read (tensor bytes, type,
 * meta, props, status) without a crash; and in every case the model file
 * is byte-for-byte what it was, because recovery never applies a journal.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "core/crc32.h"
#include "txn/sidefile.h"
#include "modelfs/txn.h"

static uint8_t *model_bytes;
static size_t model_len;
static char model_path[512];
static char journal_path[512];

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void setup_once(void)
{
	if (model_bytes)
		return;
	model_bytes = fz_slurp(MFS_FUZZ_SRC "/examples/linear.onnx", &model_len);
	FZ_CHECK(model_bytes != NULL);
	snprintf(model_path, sizeof(model_path), "%s", fz_path("m.onnx"));
	fz_write(model_path, model_bytes, model_len);
	char side[300];
	FZ_CHECK(mfs_sidefile_name(side, sizeof(side), "m.onnx", ".modelfs-journal") == 0);
	snprintf(journal_path, sizeof(journal_path), "%s", fz_path(side));
}

static void fix_up(uint8_t *j, size_t len, unsigned mode)
{
	if ((mode & 1) && len >= 64) {
		struct stat st;
		FZ_CHECK(stat(model_path, &st) == 0);
		put64(j + 16, (uint64_t)st.st_dev);
		put64(j + 24, (uint64_t)st.st_ino);
		put64(j + 32, (uint64_t)st.st_size);
		put64(j + 40, (uint64_t)st.st_mtim.tv_sec);
		put64(j + 48, (uint64_t)st.st_mtim.tv_nsec);
	}
	if ((mode & 2) && len >= 64) {
		put32(j + 60, mfs_crc32(0, j, 60));
		size_t pos = 64;
		while (pos + 48 <= len) {
			uint8_t *h = j + pos;
			uint32_t plen = get32(h + 32);
			if (plen > len - pos - 48)
				break;
			put32(h + 36, plen ? mfs_crc32(0, h + 48, plen) : 0);
			put32(h + 44, mfs_crc32(0, h, 44));
			pos += 48 + (size_t)plen;
		}
	}
}

static void read_back(mfs_txn *t)
{
	static uint8_t buf[1 << 16];
	const struct mfs_desc *d = mfs_txn_desc(t);
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		const struct mfs_tensor *x = d->tensors[i];
		uint64_t size = 0;
		if (mfs_txn_tensor_size(&size, t, x) != 0)
			continue;
		/* A recovered size may be up to 1 TiB of zeros: read the ends only. */
		uint64_t offs[3] = { 0, size / 2, size > sizeof(buf) ? size - sizeof(buf) : 0 };
		for (int k = 0; k < 3; k++) {
			ssize_t n = mfs_txn_tensor_read(t, x, buf, sizeof(buf), offs[k]);
			FZ_CHECK(n < 0 || (uint64_t)n <= size - offs[k]);
		}
		int32_t dtype;
		int64_t dims[64];
		size_t rank;
		(void)mfs_txn_tensor_type(t, x, &dtype, dims, 64, &rank);
	}
	static const char *const meta[] = { "producer_name", "doc_string", "model_version",
	                                    "graph_name", "domain" };
	char text[1024];
	for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++)
		(void)mfs_txn_meta_get(t, meta[i], text, sizeof(text));
	struct mfs_meta *props = NULL;
	size_t n = 0;
	if (mfs_txn_props(&props, &n, t) == 0)
		mfs_txn_props_free(props, n);
	char status[4096];
	(void)mfs_txn_status(t, status, sizeof(status));
	uint64_t fsize;
	if (mfs_txn_file_size(&fsize, t, 0) == 0) {
		ssize_t r = mfs_txn_file_read(t, 0, buf, sizeof(buf), 0);
		FZ_CHECK(r < 0 || (uint64_t)r <= fsize);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup_once();
	if (size < 1)
		return 0;
	unsigned mode = data[0];
	size_t len = size - 1;
	uint8_t *j = malloc(len + 1);
	FZ_CHECK(j != NULL);
	memcpy(j, data + 1, len);
	fix_up(j, len, mode);
	fz_write(journal_path, j, len);
	free(j);

	mfs_txn *t = NULL;
	struct mfs_txn_recovery rec;
	memset(&rec, 0, sizeof(rec));
	char err[512] = "";
	int rc = mfs_txn_open(&t, model_path, NULL, &rec, err, sizeof(err));
	if (getenv("MFS_FUZZ_TRACE"))
		fprintf(stderr, "open: %d %s\n", rc, rc ? err : rec.msg);
	if (rc == 0) {
		read_back(t);
		if (mode & 4)
			FZ_CHECK(mfs_txn_abort(t) == 0);
		mfs_txn_close(t);
	} else {
		FZ_CHECK(rc < 0 && t == NULL);
		FZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
	}

	size_t now_len;
	uint8_t *now = fz_slurp(model_path, &now_len);
	FZ_CHECK(now != NULL);
	FZ_CHECK(now_len == model_len && memcmp(now, model_bytes, model_len) == 0);
	free(now);
	static const char *const keep[] = { "m.onnx", NULL };
	fz_clear(fz_scratch(), keep);
	return 0;
}

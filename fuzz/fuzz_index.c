/*
 * fuzz/fuzz_index.c — libFuzzer target: arbitrary bytes as the
 * "model.safetensors.index.json" of a sharded safetensors checkpoint.
 *
 * The scratch directory holds two small valid shards, a third one in a
 * subdirectory, and traps a hostile index might point at: a symlink to a
 * shard, a symlink to a file outside, a FIFO and a hard-linked shard.  An
 * accepted index must have opened only the real shards (never a trap), and
 * every tensor must lie inside its shard (fz_walk_model reads them all).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"
#define SHARD3 "sub/model-extra.safetensors"

static void write_shard(const char *name, const char *header, size_t data_len)
{
	uint8_t buf[512];
	size_t hlen = strlen(header);
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(hlen >> (8 * i));
	memcpy(buf + 8, header, hlen);
	for (size_t i = 0; i < data_len; i++)
		buf[8 + hlen + i] = (uint8_t)(i * 7 + 1);
	fz_write(fz_path(name), buf, 8 + hlen + data_len);
}

static ino_t shard_ino[3];
static dev_t shard_dev;

static void setup_once(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	char a[512], b[512];
	write_shard(SHARD1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	                    "\"__metadata__\":{\"format\":\"pt\"}}", 8);
	write_shard(SHARD2, "{\"b\":{\"dtype\":\"I16\",\"shape\":[1,3],\"data_offsets\":[0,6]},"
	                    "\"c\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[6,7]}}", 7);
	mkdir(fz_path("sub"), 0755);
	write_shard(SHARD3, "{\"d\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
	write_shard("hard.safetensors",
	            "{\"h\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
	snprintf(a, sizeof(a), "%s", fz_path("hard.safetensors"));
	snprintf(b, sizeof(b), "%s", fz_path("hard2.safetensors"));
	FZ_CHECK(link(a, b) == 0);
	FZ_CHECK(symlink(SHARD1, fz_path("link.safetensors")) == 0);
	FZ_CHECK(symlink("/etc/hostname", fz_path("abs.safetensors")) == 0);
	FZ_CHECK(symlink("sub", fz_path("sublink")) == 0);
	FZ_CHECK(mkfifo(fz_path("fifo.safetensors"), 0644) == 0);
	const char *shards[3] = { SHARD1, SHARD2, SHARD3 };
	for (int k = 0; k < 3; k++) {
		struct stat st;
		FZ_CHECK(stat(fz_path(shards[k]), &st) == 0);
		shard_ino[k] = st.st_ino;
		shard_dev = st.st_dev;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup_once();
	const char *path = fz_path("model.safetensors.index.json");
	fz_write(path, data, size);

	mfs_model *m = NULL;
	char err[512] = "";
	int rc = mfs_model_open(&m, path, NULL, err, sizeof(err));
	if (rc == 0) {
		const struct mfs_desc *d = mfs_model_desc(m);
		if (strcmp(d->format, "safetensors") == 0) {
			/* Identity, not path text: the index may spell a name many ways. */
			for (size_t i = 1; i < d->n_files; i++) {
				struct stat st;
				FZ_CHECK(mfs_file_stat(&st, m, i) == 0);
				bool ok = false;
				for (int k = 0; k < 3; k++)
					ok |= st.st_ino == shard_ino[k] && st.st_dev == shard_dev;
				FZ_CHECK(ok);
			}
			for (uint64_t i = 0; i < d->n_tensors; i++)
				FZ_CHECK(d->n_files == 1 || d->tensors[i]->src >= 1);
		}
		fz_walk_model(m);
		mfs_model_close(m);
	} else {
		FZ_CHECK(rc < 0 && m == NULL);
		FZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
	}
	return 0;
}

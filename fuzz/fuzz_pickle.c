/*
 * fuzz/fuzz_pickle.c — libFuzzer target: arbitrary bytes as the data.pkl
 * of a torch.save checkpoint.
 *
 * Each input goes twice through the pickle reader: straight to pk_load()
 * (every opcode path, with nothing of the zip around it), and as the
 * data.pkl member of a well-formed stored zip that also holds a 4096-byte
 * storage member data/0 and data/1, opened with mfs_model_open().  The
 * oracle: never a crash or a sanitizer report; a refusal always says why;
 * an accepted model reads every tensor in full (fz_walk_model, which
 * checks ranges and sizes), and every contiguous tensor lies inside one of
 * the storage members.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "torch/torch.h"

/* A stored zip of `n` members, laid out as torch.save lays them out. */
static uint8_t *make_zip(const char *const *names, const uint8_t *const *data,
                         const size_t *lens, size_t n, size_t *out_len, uint64_t *starts)
{
	size_t total = 22;
	for (size_t i = 0; i < n; i++)
		total += 30 + 46 + 2 * strlen(names[i]) + lens[i];
	uint8_t *z = calloc(1, total), *p = z;
	FZ_CHECK(z != NULL);
	uint64_t offs[8];
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(names[i]);
		offs[i] = (uint64_t)(p - z);
		mfs_put_le32(p, 0x04034b50u);
		p[4] = 20;
		mfs_put_le32(p + 18, (uint32_t)lens[i]);
		mfs_put_le32(p + 22, (uint32_t)lens[i]);
		p[26] = (uint8_t)nl;
		memcpy(p + 30, names[i], nl);
		p += 30 + nl;
		starts[i] = (uint64_t)(p - z);
		if (lens[i])
			memcpy(p, data[i], lens[i]);
		p += lens[i];
	}
	uint8_t *cd = p;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(names[i]);
		mfs_put_le32(p, 0x02014b50u);
		p[6] = 20;
		mfs_put_le32(p + 20, (uint32_t)lens[i]);
		mfs_put_le32(p + 24, (uint32_t)lens[i]);
		p[28] = (uint8_t)nl;
		mfs_put_le32(p + 42, (uint32_t)offs[i]);
		memcpy(p + 46, names[i], nl);
		p += 46 + nl;
	}
	mfs_put_le32(p, 0x06054b50u);
	p[8] = p[10] = (uint8_t)n;
	mfs_put_le32(p + 12, (uint32_t)(p - cd));
	mfs_put_le32(p + 16, (uint32_t)(cd - z));
	p += 22;
	*out_len = (size_t)(p - z);
	return z;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* 1. The pickle reader alone. */
	struct mfs_arena *a = mfs_arena_create();
	FZ_CHECK(a != NULL);
	struct pk_result res;
	char err[512] = "";
	int rc = pk_load(&res, a, data, size, "fuzz", err, sizeof(err));
	FZ_CHECK(rc == 0 ? res.top != NULL : err[0] != '\0');
	mfs_arena_destroy(a);

	/* 2. As data.pkl of a checkpoint. */
	static uint8_t storage[4096];
	for (size_t i = 0; i < sizeof(storage); i++)
		storage[i] = (uint8_t)(i * 13 + 5);
	const char *names[] = {"archive/data.pkl", "archive/data/0", "archive/data/1",
	                       "archive/version"};
	const uint8_t *datas[] = {data, storage, storage, (const uint8_t *)"3\n"};
	size_t lens[] = {size, sizeof(storage), 64, 2};
	uint64_t starts[4];
	size_t zlen;
	uint8_t *z = make_zip(names, datas, lens, 4, &zlen, starts);
	const char *path = fz_path("model.pt");
	fz_write(path, z, zlen);
	free(z);
	mfs_model *m = NULL;
	err[0] = '\0';
	rc = mfs_model_open(&m, path, NULL, err, sizeof(err));
	if (rc < 0) {
		FZ_CHECK(err[0] != '\0');
		return 0;
	}
	const struct mfs_desc *d = mfs_model_desc(m);
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		const struct mfs_tensor *t = d->tensors[i];
		if (!(t->flags & MFS_TENSOR_CONTIGUOUS) || !t->nbytes)
			continue;
		bool in0 = t->off >= starts[1] && t->off + t->nbytes <= starts[1] + lens[1];
		bool in1 = t->off >= starts[2] && t->off + t->nbytes <= starts[2] + lens[2];
		FZ_CHECK(in0 || in1);
	}
	fz_walk_model(m);
	mfs_model_close(m);
	return 0;
}

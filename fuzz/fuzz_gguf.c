/*
 * fuzz/fuzz_gguf.c — libFuzzer target: arbitrary bytes as a GGUF file.
 *
 * The bytes become "model.gguf" and go through mfs_model_open().  A refusal
 * must be one line.  An accepted GGUF model must keep what the reader
 * promises: tensors in order, each at an offset of the data section that is
 * a multiple of the alignment, within the file and not overlapping; one
 * prop and one meta/types/ entry per key.  Then the writer is driven with
 * every prop "changed" (re-encoded from its text by its type): the new file
 * must be the old one byte for byte outside the padding before the data
 * section — the text of a value reads back to its exact bytes (bools other
 * than 0/1, NaN payloads and arrays of arrays are left as they are, since
 * their text does not hold every bit).  Every tensor is read in full
 * (fz_walk_model).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gguf/gguf.h"

static bool keeps_bits(const struct gguf_kv *kv, const struct mfs_meta *p)
{
	if (kv->nested || kv->type == GV_BOOL || (kv->type == GV_ARRAY && kv->elem == GV_BOOL))
		return false;
	bool fl = kv->type == GV_FLOAT32 || kv->type == GV_FLOAT64 ||
	          (kv->type == GV_ARRAY && (kv->elem == GV_FLOAT32 || kv->elem == GV_FLOAT64));
	return !fl || !memmem(p->value, p->len, "nan", 3);
}

static void check_rewrite(const mfs_model *mm, const uint8_t *data, size_t size)
{
	const struct mfs_model *m = mm;
	const struct gguf_state *st = m->priv;
	const struct mfs_desc *d = &m->desc;
	if (st->split)
		return;
	struct mfs_prop_edit *pe = calloc(d->n_props ? d->n_props : 1, sizeof(*pe));
	FZ_CHECK(pe != NULL);
	for (size_t i = 0; i < d->n_props; i++) {
		pe[i].orig = (int64_t)i;
		pe[i].key = d->props[i].name;
		pe[i].value = d->props[i].value;
		pe[i].len = d->props[i].len;
		pe[i].changed = keeps_bits(&st->kvs[i], &d->props[i]) &&
		                strcmp(d->props[i].name, "general.alignment") != 0;
	}
	struct mfs_edit_set e = {.props_changed = true, .props = pe, .n_props = d->n_props};
	struct mfs_splice sp = {0};
	char err[512] = "";
	int rc = mfs_gguf_splice(&sp, m, &e, err, sizeof(err));
	if (rc == -ENOMEM || rc == -EFBIG) {
		free(pe);
		return;
	}
	FZ_CHECK(rc == 0);
	FZ_CHECK(sp.total == size);
	uint64_t *starts = malloc((sp.n ? sp.n : 1) * sizeof(*starts));
	uint8_t *out = malloc(size ? size : 1);
	FZ_CHECK(starts && out);
	uint64_t pos = 0;
	for (size_t i = 0; i < sp.n; i++) {
		starts[i] = pos;
		pos += sp.p[i].len;
	}
	FZ_CHECK(mfs_splice_read(&sp, starts, out, size, 0) == (ssize_t)size);
	if (!d->n_tensors) {
		FZ_CHECK(memcmp(out, data, size) == 0);
		goto done;
	}
	FZ_CHECK(memcmp(out, data, st->info_end) == 0);
	FZ_CHECK(memcmp(out + st->data_off, data + st->data_off, size - st->data_off) == 0);
	for (uint64_t i = st->info_end; i < st->data_off; i++)
		FZ_CHECK(out[i] == 0);
done:
	free(out);
	free(starts);
	mfs_splice_free(&sp);
	free(pe);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fz_path("model.gguf");
	fz_write(path, data, size);

	mfs_model *m = NULL;
	char err[512] = "";
	int rc = mfs_model_open(&m, path, NULL, err, sizeof(err));
	if (rc == 0) {
		const struct mfs_desc *d = mfs_model_desc(m);
		if (strcmp(d->format, "gguf") == 0) {
			const struct gguf_state *st = ((const struct mfs_model *)m)->priv;
			FZ_CHECK(d->n_files == 1 && !st->split);
			FZ_CHECK(d->n_props == st->n_kv && d->n_meta == 3 + st->n_kv);
			/* Without tensors the file may end inside the padding. */
			FZ_CHECK(st->data_off % st->alignment == 0 ||
			         (!d->n_tensors && st->data_off == size));
			FZ_CHECK(st->data_off >= st->info_end && st->data_off <= size);
			uint64_t end = st->data_off;
			for (uint64_t i = 0; i < d->n_tensors; i++) {
				const struct mfs_tensor *t = d->tensors[i];
				FZ_CHECK(t->src == 0 && t->off >= end);
				FZ_CHECK((t->off - st->data_off) % st->alignment == 0);
				FZ_CHECK(t->off + t->nbytes <= size);
				end = t->off + t->nbytes;
			}
			check_rewrite(m, data, size);
		}
		fz_walk_model(m);
		mfs_model_close(m);
	} else {
		FZ_CHECK(rc < 0 && m == NULL);
		FZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
	}
	return 0;
}

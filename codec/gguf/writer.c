/*
 * codec/gguf/writer.c — the GGUF splice writer.
 *
 * Called by the transaction (through format.h).  Two cases:
 *
 *   - only same-size tensor data edits: the header stays byte for byte and
 *     only the changed ranges of the data section are new, so the commit
 *     can patch the file in place;
 *   - a props edit (a value set, a key added, renamed or removed): the
 *     header is written anew — magic, version and tensor count as they
 *     were, the key count and the pairs in their effective order, an
 *     unchanged pair copied from the old file byte for byte, a changed or
 *     new one encoded from its text by its type (gguf/value.c), the tensor
 *     infos copied as they were (their offsets are relative to the data
 *     section) — then zeros to the alignment, and the whole old data
 *     section copied (copy_file_range through the piece list), with the
 *     edited ranges of tensors from the stage.  The data section keeps its
 *     alignment because it starts at the next multiple of it.
 *
 * What cannot be expressed is refused (-EACCES): edits of a split model,
 * a tensor's dtype, shape or size, general.alignment (it fixes where every
 * tensor is), and values of arrays of arrays.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

/* Tensor `t`'s new bytes: old ranges copied, changed ones from the stage. */
static void put_tensor(struct mfs_splice *s, struct mfs_source *src, const struct mfs_tensor *t,
                       const struct mfs_tensor_edit *te)
{
	if (!te->runs) {
		mfs_splice_fn(s, te->read, te->arg, 0, te->size);
		return;
	}
	uint64_t pos = 0;
	for (size_t i = 0; i < te->n_runs; i++) {
		const struct mfs_run *r = &te->runs[i];
		mfs_source_splice(s, src, t->off + pos, r->off - pos);
		mfs_splice_fn(s, te->read, te->arg, r->off, r->len);
		pos = r->off + r->len;
	}
	mfs_source_splice(s, src, t->off + pos, t->nbytes - pos);
}

static bool is_alignment(const char *k)
{
	return strcmp(k, "general.alignment") == 0;
}

int mfs_gguf_splice(struct mfs_splice *out, const struct mfs_model *m,
                    const struct mfs_edit_set *e, char *err, size_t errlen)
{
	const struct mfs_desc *d = &m->desc;
	const struct gguf_state *st = m->priv;
	const char *display = d->files[0].path;
	struct mfs_source *src = m->srcs[0];
	uint64_t size = d->files[0].size;
	const struct mfs_tensor_edit **by_id = NULL;
	struct mfs_buf kb = {0};
	char msg[300];
	int rc = 0;

	if (st->split)
		return mfs_errf(err, errlen, -EACCES, display, "split GGUF models cannot be edited");
	for (size_t i = 0; i < e->n_tensors; i++) {
		const struct mfs_tensor_edit *te = &e->tensors[i];
		if (te->dtype_changed || te->dims_changed || te->size != te->t->nbytes)
			return mfs_errf(err, errlen, -EACCES, display, "tensor '%.200s': a GGUF "
			                "tensor keeps its dtype, shape and size", te->t->name);
	}
	by_id = calloc(d->n_tensors ? d->n_tensors : 1, sizeof(*by_id));
	if (!by_id) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < e->n_tensors; i++)
		if (e->tensors[i].t->id < d->n_tensors)
			by_id[e->tensors[i].t->id] = &e->tensors[i];

	uint64_t pos = 0;
	if (e->props_changed) {
		/* general.alignment stays as it is, or the offsets would be wrong. */
		for (size_t i = 0; i < st->n_kv; i++) {
			if (!is_alignment(st->kvs[i].key))
				continue;
			bool kept = false;
			for (size_t j = 0; j < e->n_props; j++)
				if (e->props[j].orig == (int64_t)i && !e->props[j].changed)
					kept = true;
			if (!kept) {
				rc = mfs_errf(err, errlen, -EACCES, display, "general.alignment cannot be "
				              "changed or removed (it fixes where every tensor is)");
				goto out;
			}
		}
		uint8_t h[24];
		memcpy(h, "GGUF", 4);
		mfs_put_le32(h + 4, st->version);
		mfs_put_le64(h + 8, st->n_tensors);
		mfs_put_le64(h + 16, e->n_props);
		mfs_splice_bytes(out, h, 24);
		for (size_t j = 0; j < e->n_props; j++) {
			const struct mfs_prop_edit *pe = &e->props[j];
			const struct gguf_kv *kv = pe->orig >= 0 && (uint64_t)pe->orig < st->n_kv
			                                   ? &st->kvs[pe->orig] : NULL;
			if (kv && !pe->changed) {
				mfs_source_splice(out, src, kv->off, kv->len);
				continue;
			}
			size_t klen = strlen(pe->key);
			if (is_alignment(pe->key)) {
				rc = mfs_errf(err, errlen, -EACCES, display, "general.alignment cannot be "
				              "added or changed (it fixes where every tensor is)");
				goto out;
			}
			if (klen > GGUF_MAX_KEY) {
				rc = mfs_errf(err, errlen, -EFBIG, display, "key '%.100s...' is longer "
				              "than %d bytes", pe->key, GGUF_MAX_KEY);
				goto out;
			}
			uint32_t type, elem;
			if (pe->type) {
				if (mfs_gguf_type_parse(pe->type, strlen(pe->type), &type, &elem) < 0) {
					rc = mfs_errf(err, errlen, -EINVAL, display, "key '%.200s': "
					              "'%.60s' is not a GGUF value type", pe->key, pe->type);
					goto out;
				}
			} else if (kv) {
				type = kv->type;
				elem = kv->elem;
			} else {
				mfs_gguf_infer(pe->value, pe->len, &type, &elem);
			}
			kb.len = 0;
			uint8_t le[8];
			mfs_put_le64(le, klen);
			mfs_buf_add(&kb, le, 8);
			mfs_buf_add(&kb, pe->key, klen);
			mfs_put_le32(le, type);
			mfs_buf_add(&kb, le, 4);
			msg[0] = '\0';
			rc = mfs_gguf_encode(&kb, type, elem, pe->value, pe->len, msg, sizeof(msg));
			if (rc == 0 && kb.oom)
				rc = -ENOMEM;
			if (rc < 0 && rc != -ENOMEM) {
				rc = mfs_errf(err, errlen, rc, display, "key '%.200s' (%s%s%s%s): %s",
				              pe->key, mfs_gguf_vtype_name(type), type == GV_ARRAY ? "[" : "",
				              type == GV_ARRAY ? mfs_gguf_vtype_name(elem) : "",
				              type == GV_ARRAY ? "]" : "", msg);
				goto out;
			}
			if (rc < 0)
				goto out;
			mfs_splice_bytes(out, kb.p, kb.len);
		}
		mfs_source_splice(out, src, st->info_off, st->info_end - st->info_off);
		if (!st->n_tensors) {
			/* No data section: what follows the infos is copied as it is. */
			pos = st->info_end;
			goto rest;
		}
		uint64_t a = st->alignment;
		uint64_t pad = (a - out->total % a) % a;
		static const uint8_t zeros[256];
		while (pad) {
			uint64_t n = pad < sizeof(zeros) ? pad : sizeof(zeros);
			mfs_splice_ref(out, zeros, (size_t)n);
			pad -= n;
		}
		pos = st->data_off;
	}
rest:
	for (uint64_t id = 0; id < d->n_tensors; id++) {
		const struct mfs_tensor *t = d->tensors[id];
		if (!by_id[id] || !by_id[id]->data_changed)
			continue;
		mfs_source_splice(out, src, pos, t->off - pos);
		put_tensor(out, src, t, by_id[id]);
		pos = t->off + t->nbytes;
	}
	mfs_source_splice(out, src, pos, size - pos);
	rc = out->err;
out:
	if (rc == -ENOMEM)
		rc = mfs_errf(err, errlen, rc, display, "out of memory");
	free(kb.p);
	free(by_id);
	if (rc < 0)
		mfs_splice_free(out);
	return rc;
}

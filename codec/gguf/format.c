/*
 * codec/gguf/format.c — GGUF's row in the table of formats (format.h).
 *
 * What a GGUF file allows an edit to do: a tensor's bytes in place (same
 * size; its dtype and shape stay, since a quantized type's blocks and the
 * data layout depend on them), and props of any size (set, add, rename,
 * remove), committed by a header rewrite (writer.c).  No meta/ file is
 * writable.  A split model is read-only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

/* A tensor keeps its ggml type: the data layout and its blocks depend on it. */
static bool dtype_ok(int32_t dtype)
{
	(void)dtype;
	return false;
}

static int tensor_check(const struct mfs_tensor_edit *te, char *msg, size_t msglen)
{
	if (te->dtype_changed || te->dims_changed || te->size != te->t->nbytes) {
		snprintf(msg, msglen, "tensor '%.200s': a GGUF tensor keeps its dtype, shape and "
		         "size (%" PRIu64 " bytes)", te->t->name, te->t->nbytes);
		return -EINVAL;
	}
	return 0;
}

static const char *const no_meta[] = {NULL};

/*
 * ggml's names (ggml.c type_traits .type_name) of the types that have a
 * generic dtype; the block types' generic names are already ggml's
 * ("q8_0", "iq2_xxs").
 */
static const struct mfs_dtype_alias ggml_names[] = {
	{MFS_DT_FLOAT, "f32"}, {MFS_DT_FLOAT16, "f16"}, {MFS_DT_BFLOAT16, "bf16"},
	{MFS_DT_DOUBLE, "f64"}, {MFS_DT_INT8, "i8"}, {MFS_DT_INT16, "i16"},
	{MFS_DT_INT32, "i32"}, {MFS_DT_INT64, "i64"}, {0, NULL},
};

static bool props_writable(const struct mfs_model *m)
{
	const struct gguf_state *s = m->priv;
	return s && !s->split;
}

/* A staged value must fit its key's type (a new key's is inferred). */
static int prop_check(const struct mfs_model *m, const char *key, int64_t orig,
                      const char *ty, const char *value, size_t len)
{
	const struct gguf_state *s = m->priv;
	uint32_t type, elem;
	if (strcmp(key, "general.alignment") == 0)
		return -EINVAL;         /* it fixes where every tensor is */
	if (ty) {
		if (mfs_gguf_type_parse(ty, strlen(ty), &type, &elem) < 0)
			return -EINVAL;
	} else if (orig >= 0 && (uint64_t)orig < s->n_kv) {
		const struct gguf_kv *kv = &s->kvs[orig];
		type = kv->type;
		elem = kv->elem;
	} else {
		mfs_gguf_infer(value, len, &type, &elem);
	}
	struct mfs_buf b = {0};
	char msg[256];
	int rc = mfs_gguf_encode(&b, type, elem, value, len, msg, sizeof(msg));
	if (rc == 0 && b.oom)
		rc = -ENOMEM;
	free(b.p);
	return rc == -ENOMEM ? rc : rc < 0 ? -EINVAL : 0;
}

/*
 * meta/types/<key>: a key of a single file may take another type (not an
 * array of arrays, not general.alignment) that its value fits.
 */
static int prop_type_check(const struct mfs_model *m, const char *key, int64_t orig,
                           const char *ty, const char *value, size_t len)
{
	const struct gguf_state *s = m->priv;
	uint32_t type, elem;
	if (!s || s->split || mfs_gguf_type_parse(ty, strlen(ty), &type, &elem) < 0 ||
	    strcmp(key, "general.alignment") == 0)
		return -EINVAL;
	if (orig >= 0 && (uint64_t)orig < s->n_kv) {
		const struct gguf_kv *kv = &s->kvs[orig];
		if (kv->nested)
			return -EINVAL;
		if (kv->type == type && (type != GV_ARRAY || kv->elem == elem))
			return 1;
	}
	return prop_check(m, key, orig, ty, value, len) < 0 ? -EINVAL : 0;
}

const struct mfs_format mfs_format_gguf = {
	.name = "gguf",
	.flags = MFS_DESC_PROPS_TEXT,   /* props are value text (value.c) */
	.dtype_names = ggml_names,
	.sniff = mfs_gguf_sniff,
	.open = mfs_gguf_open,
	.dtype_ok = dtype_ok,
	.tensor_check = tensor_check,
	.meta_names = no_meta,
	.props_writable = props_writable,
	.prop_check = prop_check,
	.prop_type_check = prop_type_check,
	.splice = mfs_gguf_splice,
};

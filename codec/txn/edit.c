/*
 * codec/txn/edit.c — staging edits and reading the staged state.
 *
 * Every call here is one edit or one read of the effective (staged or
 * committed) view, under the transaction's lock (txn.c, invariant 6).  An
 * edit reaches the journal before memory changes (invariant 1).  What may
 * be edited is the format's to say: the tensor flags its reader set, its
 * dtypes, its writable meta/ files and whether it takes props (format.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/htab.h"
#include "txn/txn_int.h"

/* ------------------------------------------------------------ tensors */

bool mfs_txn_tensor_staged(mfs_txn *t, const struct mfs_tensor *x)
{
	pthread_rwlock_rdlock(&t->lock);
	struct tstate tmp;
	const struct tstate *s = txn_tensor_peek(t, x, &tmp);
	bool staged = s && (s->data || s->has_dtype || s->has_shape);
	pthread_rwlock_unlock(&t->lock);
	return staged;
}

/* Lock-free: the options and a tensor's flags never change after open. */
bool mfs_txn_tensor_writable(mfs_txn *t, const struct mfs_tensor *x)
{
	return x && !t->opts.read_only && (x->flags & MFS_TENSOR_EDITABLE);
}

int mfs_txn_tensor_size(uint64_t *out, mfs_txn *t, const struct mfs_tensor *x)
{
	int rc = 0;
	pthread_rwlock_rdlock(&t->lock);
	struct tstate tmp;
	const struct tstate *s = txn_tensor_peek(t, x, &tmp);
	if (!s)
		rc = -ENOENT;
	else if (s->data)
		rc = mfs_stage_size(out, t->st, key_of(K_DATA, s->t->id));
	else
		*out = s->t->nbytes;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

ssize_t mfs_txn_tensor_read(mfs_txn *t, const struct mfs_tensor *x, void *buf, size_t len,
                            uint64_t off)
{
	ssize_t rc;
	pthread_rwlock_rdlock(&t->lock);
	struct tstate tmp;
	const struct tstate *s = txn_tensor_peek(t, x, &tmp);
	if (!s)
		rc = -ENOENT;
	else if (s->data)
		rc = mfs_stage_read(t->st, key_of(K_DATA, s->t->id), buf, len, off);
	else
		rc = mfs_tensor_read(t->m, s->t, buf, len, off);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* Take the lock for an edit of tensor `x`; *s gets its state. */
static int edit_begin(struct mfs_txn *t, const struct mfs_tensor *x, struct tstate **s)
{
	pthread_rwlock_wrlock(&t->lock);
	int rc;
	*s = txn_tensor_state(t, x, &rc);
	if (!*s)
		return rc;
	return txn_editable(t, (*s)->t);
}

ssize_t mfs_txn_tensor_write(mfs_txn *t, const struct mfs_tensor *x, const void *buf, size_t len,
                             uint64_t off)
{
	struct tstate *s;
	ssize_t rc = edit_begin(t, x, &s);
	if (rc == 0)
		rc = txn_bind_tensor(t, s);
	if (rc == 0) {
		uint64_t key = key_of(K_DATA, s->t->id);
		rc = mfs_stage_write(t->st, key, buf, len, off);
		if (rc >= 0) {
			/* Invariant 1: the bytes are in the journal file before we
			 * say they were written. */
			int frc = mfs_stage_flush(t->st);
			if (frc < 0)
				rc = frc;
		}
		txn_flag(t, &s->data, mfs_stage_is_staged(t->st, key));
		txn_touched(t);
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_tensor_truncate(mfs_txn *t, const struct mfs_tensor *x, uint64_t size)
{
	struct tstate *s;
	int rc = edit_begin(t, x, &s);
	if (rc == 0)
		rc = txn_bind_tensor(t, s);
	if (rc == 0) {
		uint64_t key = key_of(K_DATA, s->t->id);
		rc = mfs_stage_truncate(t->st, key, size);
		txn_flag(t, &s->data, mfs_stage_is_staged(t->st, key));
		txn_touched(t);
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_tensor_type(mfs_txn *t, const struct mfs_tensor *x, int32_t *dtype, int64_t *dims,
                        size_t cap, size_t *rank)
{
	int rc = 0;
	pthread_rwlock_rdlock(&t->lock);
	struct tstate tmp;
	const struct tstate *s = txn_tensor_peek(t, x, &tmp);
	if (!s) {
		rc = -ENOENT;
	} else {
		size_t r;
		const int64_t *d = txn_eff_dims(s, &r);
		if (dtype)
			*dtype = txn_eff_dtype(s);
		if (dims && r)
			memcpy(dims, d, (r < cap ? r : cap) * sizeof(*dims));
		if (rank)
			*rank = r;
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_set_dtype(mfs_txn *t, const struct mfs_tensor *x, const char *text, size_t len)
{
	char name[32];
	struct tstate *s;
	int rc = edit_begin(t, x, &s);
	if (rc == 0 && (s->t->flags & MFS_TENSOR_DATA_ONLY))
		rc = -EACCES;
	if (rc < 0)
		goto out;
	len = txn_chomp(text, len);
	if (len >= sizeof(name)) {
		rc = -EINVAL;
		goto out;
	}
	memcpy(name, text, len);
	name[len] = '\0';
	int32_t dt = mfs_desc_dtype_from_name(t->d, name);
	uint64_t key = key_of(K_DTYPE, s->t->id);
	/* The tensor's own dtype back is no edit, even where no other is allowed. */
	if (dt != s->t->dtype && (dt <= 0 || !mfs_dtype_bits(dt) || !t->m->fmt->dtype_ok ||
	                          !t->m->fmt->dtype_ok(dt))) {
		rc = -EINVAL;
		goto out;
	}
	if (dt == s->t->dtype) {
		if ((rc = txn_drop_key(t, key)) == 0)
			txn_flag(t, &s->has_dtype, false);
	} else if ((rc = txn_put_value(t, key, name, len)) == 0) {
		s->dtype = dt;
		txn_flag(t, &s->has_dtype, true);
	}
	txn_touched(t);
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_set_shape(mfs_txn *t, const struct mfs_tensor *x, const char *text, size_t len)
{
	int64_t dims[MFS_MAX_RANK];
	size_t rank;
	struct tstate *s;
	int rc = edit_begin(t, x, &s);
	if (rc == 0 && (s->t->flags & MFS_TENSOR_DATA_ONLY))
		rc = -EACCES;
	if (rc < 0)
		goto out;
	len = txn_chomp(text, len);
	if ((rc = txn_parse_shape(text, len, dims, &rank)) < 0)
		goto out;
	uint64_t key = key_of(K_SHAPE, s->t->id);
	if (txn_dims_equal(dims, rank, s->t->dims, s->t->rank)) {
		if ((rc = txn_drop_key(t, key)) == 0)
			txn_flag(t, &s->has_shape, false);
		txn_touched(t);
		goto out;
	}
	/* Canonical text, so the journal says what the shape file will. */
	char buf[MFS_MAX_RANK * 21 + 1];
	size_t n = mfs_dims_format(buf, sizeof(buf), dims, rank);
	if (!s->dims && !(s->dims = malloc(MFS_MAX_RANK * sizeof(int64_t)))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = txn_put_value(t, key, buf, n)) == 0) {
		memcpy(s->dims, dims, rank * sizeof(int64_t));
		s->rank = rank;
		txn_flag(t, &s->has_shape, true);
	}
	txn_touched(t);
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* ------------------------------------------------------------ meta and props */

bool mfs_txn_meta_writable(mfs_txn *t, const char *name)
{
	pthread_rwlock_rdlock(&t->lock);
	bool ok = !t->opts.read_only && txn_meta_index(t, name) >= 0;
	pthread_rwlock_unlock(&t->lock);
	return ok;
}

ssize_t mfs_txn_meta_get(mfs_txn *t, const char *name, char *buf, size_t cap)
{
	ssize_t rc = -ENOENT;
	pthread_rwlock_rdlock(&t->lock);
	int k = txn_meta_index(t, name);
	if (k >= 0 && t->meta_staged[k]) {
		/* The staged bytes as the file shows them: escaped, and '\n'. */
		size_t len = mfs_text_escape(NULL, 0, t->meta[k], t->meta_len[k]);
		char *e = cap ? malloc(len + 1) : NULL;
		if (cap && !e) {
			rc = -ENOMEM;
			goto out;
		}
		if (e) {
			mfs_text_escape(e, len + 1, t->meta[k], t->meta_len[k]);
			memcpy(buf, e, len < cap ? len : cap);
			free(e);
		}
		if (len < cap)
			buf[len] = '\n';
		rc = (ssize_t)(len + 1);
	} else {
		/* The description holds the file's text already. */
		for (size_t i = 0; i < t->d->n_meta; i++) {
			const struct mfs_meta *m = &t->d->meta[i];
			if (strcmp(m->name, name) != 0)
				continue;
			if (cap && m->len)
				memcpy(buf, m->value, m->len < cap ? m->len : cap);
			rc = (ssize_t)m->len;
			break;
		}
	}
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_meta_set(mfs_txn *t, const char *name, const char *text, size_t len)
{
	int rc = 0;
	char *copy = NULL, *orig = NULL;
	size_t orig_len = 0;
	pthread_rwlock_wrlock(&t->lock);
	int k = txn_meta_index(t, name);
	if (t->opts.read_only) {
		rc = -EROFS;
		goto out;
	}
	if (t->broken) {
		rc = -EIO;
		goto out;
	}
	if (k < 0) {
		rc = -EACCES;
		goto out;
	}
	/* The file's text to the value's bytes (doc/design.md §3.5). */
	len = txn_chomp(text, len);
	if (!(copy = malloc(len + 1))) {
		rc = -ENOMEM;
		goto out;
	}
	len = mfs_text_unescape(copy, text, len);
	copy[len] = '\0';
	if (!txn_utf8_ok(copy, len)) {
		rc = -EINVAL;
		goto out;
	}
	if (t->m->fmt->meta_check && (rc = t->m->fmt->meta_check((unsigned)k, copy, len)) < 0)
		goto out;
	/* Back to what the model says: nothing staged. */
	if ((rc = txn_meta_orig(t, (unsigned)k, &orig, &orig_len)) < 0)
		goto out;
	if (orig_len == len && memcmp(orig, copy, len) == 0) {
		if ((rc = txn_drop_key(t, key_of(K_META, (uint64_t)k))) == 0) {
			free(t->meta[k]);
			t->meta[k] = NULL;
			txn_flag(t, &t->meta_staged[k], false);
			txn_touched(t);
		}
		goto out;
	}
	if ((rc = txn_put_value(t, key_of(K_META, (uint64_t)k), copy, len)) < 0)
		goto out;
	free(t->meta[k]);
	t->meta[k] = copy;
	t->meta_len[k] = len;
	copy = NULL;
	txn_flag(t, &t->meta_staged[k], true);
	txn_touched(t);
out:
	free(copy);
	free(orig);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/*
 * The props index.  Every read of meta/props/<key> through a mount and every
 * props edit finds a slot by key; a scan of the slots made `ls -l` of a
 * directory of 100,000 props quadratic.  So the live slots hang on the
 * chains of a hash table: a bucket holds slot + 1 (0 = empty), a slot the
 * next slot + 1 on its chain.  Bulk changes of the slots (open, the reset
 * after a commit or an abort, a replayed journal) rebuild it; prop_put()
 * moves one slot at a time.  When there is no memory for it, t->pidx is
 * NULL and lookups scan, which is slow but right.
 */
static uint64_t key_hash(const char *key)
{
	uint64_t h = 0xcbf29ce484222325ull;     /* FNV-1a 64 */
	for (; *key; key++) {
		h ^= (unsigned char)*key;
		h *= 0x100000001b3ull;
	}
	return h;
}

static size_t *key_bucket(const struct mfs_txn *t, const char *key)
{
	return &t->pidx[mfs_htab_slot(key_hash(key), t->pidx_n)];
}

static void index_add(struct mfs_txn *t, size_t i)
{
	size_t *b = key_bucket(t, t->props[i].key);
	t->props[i].hnext = *b;
	*b = i + 1;
	t->pidx_live++;
}

static void index_remove(struct mfs_txn *t, size_t i)
{
	for (size_t *p = key_bucket(t, t->props[i].key); *p; p = &t->props[*p - 1].hnext) {
		if (*p == i + 1) {
			*p = t->props[i].hnext;
			t->props[i].hnext = 0;
			t->pidx_live--;
			return;
		}
	}
}

void txn_props_unindex(struct mfs_txn *t)
{
	free(t->pidx);
	t->pidx = NULL;
	t->pidx_n = t->pidx_live = 0;
}

void txn_props_reindex(struct mfs_txn *t)
{
	txn_props_unindex(t);
	size_t n = 16;
	while (n < t->n_props && n < SIZE_MAX / 4)
		n *= 2;
	if (!(t->pidx = calloc(n, sizeof(*t->pidx))))
		return;
	t->pidx_n = n;
	for (size_t i = 0; i < t->n_props; i++)
		if (t->props[i].key)
			index_add(t, i);
}

/* The live slot holding `key`, or -1: with duplicate keys, the first (txn.h). */
static ssize_t prop_find(const struct mfs_txn *t, const char *key)
{
	if (!t->pidx) {
		for (size_t i = 0; i < t->n_props; i++)
			if (t->props[i].key && strcmp(t->props[i].key, key) == 0)
				return (ssize_t)i;
		return -1;
	}
	ssize_t best = -1;
	for (size_t c = *key_bucket(t, key); c; c = t->props[c - 1].hnext)
		if (strcmp(t->props[c - 1].key, key) == 0 && (best < 0 || c - 1 < (size_t)best))
			best = (ssize_t)(c - 1);
	return best;
}

/*
 * Give slot `i` key `key` (NULL: remove it), `value` and staged type `type`
 * (NULL: its own): journal first, then memory (invariant 1).  A slot that
 * comes back to what the model has is unstaged instead; a new slot that is
 * removed is simply dropped.
 */
static int prop_put(struct mfs_txn *t, size_t i, const char *key, const char *type,
                    const char *value, size_t len)
{
	struct pslot *ps = &t->props[i];
	bool orig = i < t->n_orig_props;
	const struct mfs_meta *o = orig ? &t->d->props[i] : NULL;
	char *k = NULL, *v = NULL, *ty = NULL;
	int rc;
	if (key && (!(k = strdup(key)) || !(v = txn_memdup0(value, len)) ||
	            (type && !(ty = strdup(type))))) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	if ((o && key && !type && !strcmp(o->name, key) && o->len == len &&
	     !memcmp(o->value, value, len)) || (!orig && !key))
		rc = txn_drop_key(t, key_of(K_PROP, i));
	else
		rc = txn_put_prop_record(t, i, key, ty, value, len);
	if (rc < 0) {
		free(k);
		free(v);
		free(ty);
		return rc;
	}
	if (t->pidx && ps->key)
		index_remove(t, i);
	free(ps->key);
	free(ps->value);
	free(ps->type);
	ps->key = k;
	ps->value = v;
	ps->type = ty;
	ps->len = key ? len : 0;
	if (t->pidx && k) {
		index_add(t, i);
		if (t->pidx_live > t->pidx_n)
			txn_props_reindex(t);   /* twice the buckets (or none: scans) */
	}
	txn_flag(t, &ps->staged, mfs_stage_is_staged(t->st, key_of(K_PROP, i)));
	txn_touched(t);
	return 0;
}

static int prop_begin(struct mfs_txn *t)
{
	pthread_rwlock_wrlock(&t->lock);
	if (t->opts.read_only)
		return -EROFS;
	if (t->broken)
		return -EIO;
	if (!t->props_ok)
		return -EACCES;
	return 0;
}

/* Lock-free, as mfs_txn_tensor_writable(): props_ok is set once, at open. */
bool mfs_txn_props_writable(mfs_txn *t)
{
	return !t->opts.read_only && t->props_ok;
}

static bool prop_key_ok(const char *key)
{
	size_t n = strlen(key);
	return n && n <= MFS_MAX_NAME && txn_utf8_ok(key, n);
}

int mfs_txn_props(struct mfs_meta **out, size_t *n, mfs_txn *t)
{
	int rc = 0;
	pthread_rwlock_rdlock(&t->lock);
	size_t k = 0;
	struct mfs_meta *v = calloc(t->n_props ? t->n_props : 1, sizeof(*v));
	if (!v) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->n_props; i++) {
		const struct pslot *ps = &t->props[i];
		if (!ps->key)
			continue;
		v[k].name = strdup(ps->key);
		v[k].value = txn_memdup0(ps->value, ps->len);
		v[k].len = ps->len;
		k++;
		if (!v[k - 1].name || !v[k - 1].value) {
			mfs_txn_props_free(v, k);
			v = NULL;
			k = 0;
			rc = -ENOMEM;
			goto out;
		}
	}
out:
	pthread_rwlock_unlock(&t->lock);
	*out = v;
	*n = k;
	return rc;
}

int mfs_txn_prop_get(char **out, size_t *len, mfs_txn *t, const char *key)
{
	int rc = 0;
	*out = NULL;
	*len = 0;
	pthread_rwlock_rdlock(&t->lock);
	ssize_t i = prop_find(t, key);
	if (i < 0) {
		rc = -ENOENT;
	} else if (!(*out = txn_memdup0(t->props[i].value, t->props[i].len))) {
		rc = -ENOMEM;
	} else {
		*len = t->props[i].len;
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

void mfs_txn_props_free(struct mfs_meta *props, size_t n)
{
	for (size_t i = 0; props && i < n; i++) {
		free(props[i].name);
		free(props[i].value);
	}
	free(props);
}

int mfs_txn_prop_set(mfs_txn *t, const char *key, const char *value, size_t len)
{
	int rc = prop_begin(t);
	if (rc < 0)
		goto out;
	len = txn_chomp(value, len);
	if (!prop_key_ok(key) || !txn_utf8_ok(value, len)) {
		rc = -EINVAL;
		goto out;
	}
	ssize_t i = prop_find(t, key);
	if (t->m->fmt->prop_check) {
		int64_t orig = i >= 0 && (size_t)i < t->n_orig_props ? (int64_t)i : -1;
		const char *ty = i >= 0 ? t->props[i].type : NULL;
		if ((rc = t->m->fmt->prop_check(t->m, key, orig, ty, value, len)) < 0)
			goto out;
	}
	if (i >= 0) {
		const struct pslot *ps = &t->props[i];
		if (ps->len != len || memcmp(ps->value, value, len) != 0)
			rc = prop_put(t, (size_t)i, key, ps->type, value, len);
		goto out;
	}
	/* A new key takes a new slot (slots are never reused: the journal
	 * names them). */
	struct pslot *np = reallocarray(t->props, t->n_props + 1, sizeof(*np));
	if (!np) {
		rc = -ENOMEM;
		goto out;
	}
	t->props = np;
	memset(&np[t->n_props], 0, sizeof(*np));
	t->n_props++;
	rc = prop_put(t, t->n_props - 1, key, NULL, value, len);
	if (rc < 0)
		t->n_props--;
	else
		t->generation++;
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_prop_unlink(mfs_txn *t, const char *key)
{
	int rc = prop_begin(t);
	if (rc < 0)
		goto out;
	ssize_t i = prop_find(t, key);
	if (i < 0) {
		rc = -ENOENT;
		goto out;
	}
	if ((rc = prop_put(t, (size_t)i, NULL, NULL, NULL, 0)) == 0)
		t->generation++;
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

bool mfs_txn_prop_types_writable(mfs_txn *t)
{
	return mfs_txn_props_writable(t) && t->m->fmt->prop_type_check;
}

int mfs_txn_prop_type_get(char **out, mfs_txn *t, const char *key)
{
	int rc = 1;
	*out = NULL;
	pthread_rwlock_rdlock(&t->lock);
	ssize_t i = prop_find(t, key);
	if (i < 0)
		rc = -ENOENT;
	else if (t->props[i].type)
		rc = (*out = strdup(t->props[i].type)) ? 0 : -ENOMEM;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_prop_type_set(mfs_txn *t, const char *key, const char *text, size_t len)
{
	char *ty = NULL;
	int rc = prop_begin(t);
	if (rc == 0 && !t->m->fmt->prop_type_check)
		rc = -EACCES;
	if (rc < 0)
		goto out;
	len = txn_chomp(text, len);
	ssize_t i = prop_find(t, key);
	if (i < 0) {
		rc = -ENOENT;
		goto out;
	}
	if (!txn_utf8_ok(text, len) || memchr(text, '\0', len)) {
		rc = -EINVAL;
		goto out;
	}
	if (!(ty = txn_memdup0(text, len))) {
		rc = -ENOMEM;
		goto out;
	}
	struct pslot *ps = &t->props[i];
	int64_t orig = (size_t)i < t->n_orig_props ? (int64_t)i : -1;
	int v = t->m->fmt->prop_type_check(t->m, key, orig, ty, ps->value, ps->len);
	if (v < 0) {
		rc = v;
		goto out;
	}
	/* 1: the key's own type again, which is no staged type. */
	const char *now = v == 1 ? NULL : ty;
	if ((now == NULL) != (ps->type == NULL) || (now && strcmp(now, ps->type) != 0))
		rc = prop_put(t, (size_t)i, ps->key, now, ps->value, ps->len);
out:
	free(ty);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_prop_rename(mfs_txn *t, const char *from, const char *to)
{
	char *value = NULL;
	int rc = prop_begin(t);
	if (rc < 0)
		goto out;
	ssize_t i = prop_find(t, from), j = prop_find(t, to);
	if (i < 0) {
		rc = -ENOENT;
		goto out;
	}
	if (!prop_key_ok(to)) {
		rc = -EINVAL;
		goto out;
	}
	if (i == j)
		goto out;
	size_t len = t->props[i].len;
	if (!(value = txn_memdup0(t->props[i].value, len))) {
		rc = -ENOMEM;
		goto out;
	}
	if (j >= 0) {
		/* Over an existing key, as rename(2) replaces its target: the
		 * target keeps its place and takes the value. */
		if ((rc = prop_put(t, (size_t)j, to, t->props[i].type, value, len)) == 0)
			rc = prop_put(t, (size_t)i, NULL, NULL, NULL, 0);
	} else {
		rc = prop_put(t, (size_t)i, to, t->props[i].type, value, len);
	}
	if (rc == 0)
		t->generation++;
out:
	free(value);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* ------------------------------------------------------------ scratch */

static bool scratch_live(const struct mfs_txn *t, uint64_t id)
{
	return id < t->n_scratch && t->scratch[id];
}

/* A new empty scratch object (t->lock held for writing). */
static int scratch_alloc(struct mfs_txn *t, uint64_t *id)
{
	if (t->opts.read_only)
		return -EROFS;
	uint8_t *ns = realloc(t->scratch, t->n_scratch + 1);
	if (!ns)
		return -ENOMEM;
	t->scratch = ns;
	int rc = mfs_stage_bind(t->st, key_of(K_SCRATCH, t->n_scratch), 0, NULL, NULL);
	if (rc < 0)
		return rc;
	t->scratch[t->n_scratch] = 1;
	*id = t->n_scratch++;
	return 0;
}

int mfs_txn_scratch_new(uint64_t *id, mfs_txn *t)
{
	pthread_rwlock_wrlock(&t->lock);
	int rc = scratch_alloc(t, id);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_tensor_snapshot(uint64_t *id, mfs_txn *t, const struct mfs_tensor *x)
{
	enum { STEP = MFS_STAGE_CHUNK };
	char *buf = malloc(STEP);
	if (!buf)
		return -ENOMEM;
	pthread_rwlock_wrlock(&t->lock);
	struct tstate tmp;
	const struct tstate *s = txn_tensor_peek(t, x, &tmp);
	uint64_t key = s ? key_of(K_DATA, s->t->id) : 0, size = 0;
	int rc = s ? 0 : -ENOENT;
	if (rc == 0 && s->data)
		rc = mfs_stage_size(&size, t->st, key);
	else if (rc == 0)
		size = s->t->nbytes;
	if (rc == 0)
		rc = scratch_alloc(t, id);
	if (rc < 0)
		goto out;
	uint64_t skey = key_of(K_SCRATCH, *id);
	for (uint64_t off = 0; off < size && rc == 0;) {
		size_t want = size - off < STEP ? (size_t)(size - off) : STEP;
		ssize_t n = s->data ? mfs_stage_read(t->st, key, buf, want, off) :
		            mfs_tensor_read(t->m, s->t, buf, want, off);
		if (n == 0)
			n = -EIO;       /* shorter than its size */
		if (n > 0)
			n = mfs_stage_write(t->st, skey, buf, (size_t)n, off);
		if (n < 0)
			rc = (int)n;
		else
			off += (uint64_t)n;
	}
	if (rc == 0)
		rc = mfs_stage_truncate(t->st, skey, size);     /* an empty tensor too */
	if (rc < 0) {
		mfs_stage_drop(t->st, skey);
		mfs_stage_unbind(t->st, skey);
		t->scratch[*id] = 0;
	}
out:
	pthread_rwlock_unlock(&t->lock);
	free(buf);
	return rc;
}

int mfs_txn_scratch_size(uint64_t *out, mfs_txn *t, uint64_t id)
{
	pthread_rwlock_rdlock(&t->lock);
	int rc = scratch_live(t, id) ? mfs_stage_size(out, t->st, key_of(K_SCRATCH, id)) : -ENOENT;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

ssize_t mfs_txn_scratch_read(mfs_txn *t, uint64_t id, void *buf, size_t len, uint64_t off)
{
	pthread_rwlock_rdlock(&t->lock);
	ssize_t rc = scratch_live(t, id) ?
	             mfs_stage_read(t->st, key_of(K_SCRATCH, id), buf, len, off) : -ENOENT;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

ssize_t mfs_txn_scratch_write(mfs_txn *t, uint64_t id, const void *buf, size_t len, uint64_t off)
{
	ssize_t rc = -ENOENT;
	pthread_rwlock_rdlock(&t->lock);
	if (scratch_live(t, id)) {
		rc = mfs_stage_write(t->st, key_of(K_SCRATCH, id), buf, len, off);
		int frc = rc >= 0 ? mfs_stage_flush(t->st) : 0;
		if (frc < 0)
			rc = frc;
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_scratch_truncate(mfs_txn *t, uint64_t id, uint64_t size)
{
	pthread_rwlock_rdlock(&t->lock);
	int rc = scratch_live(t, id) ? mfs_stage_truncate(t->st, key_of(K_SCRATCH, id), size) :
	         -ENOENT;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_scratch_adopt(mfs_txn *t, uint64_t id, const struct mfs_tensor *x)
{
	struct tstate *s;
	int rc = edit_begin(t, x, &s);
	if (rc == 0 && !scratch_live(t, id))
		rc = -ENOENT;
	if (rc == 0)
		rc = txn_bind_tensor(t, s);
	if (rc == 0)
		rc = mfs_stage_move(t->st, key_of(K_SCRATCH, id), key_of(K_DATA, s->t->id));
	if (rc == 0) {
		mfs_stage_unbind(t->st, key_of(K_SCRATCH, id));
		t->scratch[id] = 0;
		txn_flag(t, &s->data, true);
		txn_touched(t);
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_scratch_drop(mfs_txn *t, uint64_t id)
{
	int rc = -ENOENT;
	pthread_rwlock_wrlock(&t->lock);
	if (scratch_live(t, id)) {
		rc = mfs_stage_drop(t->st, key_of(K_SCRATCH, id));
		if (rc == 0) {
			mfs_stage_unbind(t->st, key_of(K_SCRATCH, id));
			t->scratch[id] = 0;
		}
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* ------------------------------------------------------------ root files */

int mfs_txn_file_size(uint64_t *out, mfs_txn *t, size_t idx)
{
	int rc = 0;
	pthread_rwlock_rdlock(&t->lock);
	if (idx >= t->d->n_files) {
		rc = -ENOENT;
	} else if (idx == 0 && t->n_dirty) {
		struct view *v = txn_view_get(t);
		rc = v->rc;
		if (rc == 0)
			*out = v->sp.total;
	} else {
		*out = t->d->files[idx].size;
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

ssize_t mfs_txn_file_read(mfs_txn *t, size_t idx, void *buf, size_t len, uint64_t off)
{
	ssize_t rc;
	pthread_rwlock_rdlock(&t->lock);
	if (idx >= t->d->n_files) {
		rc = -ENOENT;
	} else if (idx == 0 && t->n_dirty) {
		struct view *v = txn_view_get(t);
		rc = v->rc < 0 ? v->rc : mfs_splice_read(&v->sp, v->starts, buf, len, off);
	} else {
		rc = mfs_file_read(t->m, idx, buf, len, off);
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}


/* ------------------------------------------------------------ graph fields */

/* The slot of field `id`, or where it would go (ascending ids). */
static size_t field_pos(const struct mfs_txn *t, uint64_t id)
{
	size_t lo = 0, hi = t->n_fields;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->fields[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void txn_fields_clear(struct mfs_txn *t)
{
	for (size_t i = 0; i < t->n_fields; i++) {
		free(t->fields[i].text);
		txn_flag(t, &t->fields[i].staged, false);
	}
	free(t->fields);
	t->fields = NULL;
	t->n_fields = 0;
	t->field_note[0] = '\0';
	txn_adds_clear(t);
}

int txn_field_put(struct mfs_txn *t, uint64_t id, char *text, size_t len)
{
	size_t i = field_pos(t, id);
	if (i < t->n_fields && t->fields[i].id == id) {
		free(t->fields[i].text);
		t->fields[i].text = text;
		t->fields[i].len = len;
		return 0;
	}
	struct fslot *f = reallocarray(t->fields, t->n_fields + 1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	int rc;
	if (MFS_FIELD_KIND(id) == MFS_FIELD_TENSOR_ADD &&
	    (rc = txn_add_put(t, MFS_FIELD_I(id), text, len)) < 0) {
		t->fields = f;
		return rc;
	}
	t->fields = f;
	memmove(&f[i + 1], &f[i], (t->n_fields - i) * sizeof(*f));
	f[i] = (struct fslot){.id = id, .text = text, .len = len};
	t->n_fields++;
	txn_flag(t, &f[i].staged, true);
	return 0;
}

/* Unstage field `id` (a value set back to the model's). */
static int field_unstage(struct mfs_txn *t, uint64_t id)
{
	size_t i = field_pos(t, id);
	if (i >= t->n_fields || t->fields[i].id != id)
		return 0;
	int rc = txn_drop_key(t, key_of(K_FIELD, id));
	if (rc < 0)
		return rc;
	free(t->fields[i].text);
	txn_flag(t, &t->fields[i].staged, false);
	if (MFS_FIELD_KIND(id) == MFS_FIELD_TENSOR_ADD)
		txn_add_kill(t, txn_add_at(t, MFS_FIELD_I(id)));
	memmove(&t->fields[i], &t->fields[i + 1], (t->n_fields - i - 1) * sizeof(*t->fields));
	t->n_fields--;
	return 0;
}

/* Is `s` a name of the main graph: a value, or what a node reads? */
static bool graph_has_name(const struct mfs_graph *g, const char *s)
{
	for (size_t i = 0; i < g->n_inputs; i++)
		if (g->inputs[i].name && !strcmp(g->inputs[i].name, s))
			return true;
	for (size_t i = 0; i < g->n_outputs; i++)
		if (g->outputs[i].name && !strcmp(g->outputs[i].name, s))
			return true;
	for (size_t i = 0; i < g->n_values; i++)
		if (g->values[i].name && !strcmp(g->values[i].name, s))
			return true;
	for (size_t i = 0; i < g->n_inits; i++)
		if (!strcmp(g->inits[i]->name, s))
			return true;
	for (size_t i = 0; i < g->n_nodes; i++) {
		const struct mfs_node *nd = &g->nodes[i];
		for (size_t k = 0; k < nd->n_outputs; k++)
			if (!strcmp(nd->outputs[k], s))
				return true;
		for (size_t k = 0; k < nd->n_inputs; k++)
			if (!strcmp(nd->inputs[k], s))
				return true;
	}
	return false;
}

/*
 * May value field `id` take the name `text` (escaped)?  Not when it is a
 * name of the graph (as the model has it: a name a staged rename frees is
 * free only after the commit) or the new name of another staged rename:
 * -EEXIST, with the reason in field_note.
 */
static int name_free(struct mfs_txn *t, uint64_t id, const char *text, size_t len)
{
	char *raw = malloc(len + 1);
	if (!raw)
		return -ENOMEM;
	raw[mfs_text_unescape(raw, text, len)] = '\0';
	const struct mfs_desc *d = &t->m->desc;
	bool taken = d->graph && graph_has_name(d->graph, raw);
	for (size_t i = 0; i < t->n_fields && !taken; i++)
		taken = t->fields[i].id != id && mfs_field_is_name(t->fields[i].id) &&
		        t->fields[i].len == len && !memcmp(t->fields[i].text, text, len);
	if (taken)
		txn_set_msg(t->field_note, sizeof(t->field_note),
		            "'%.200s' is already a value name of the graph (a name that a "
		            "pending rename gives up is free after the commit)", text);
	free(raw);
	return taken ? -EEXIST : 0;
}

int mfs_txn_renames(struct mfs_rename **out, size_t *n, mfs_txn *t)
{
	int rc = 0;
	*out = NULL;
	*n = 0;
	pthread_rwlock_rdlock(&t->lock);
	size_t k = 0;
	for (size_t i = 0; i < t->n_fields; i++)
		k += mfs_field_is_name(t->fields[i].id) ||
		     MFS_FIELD_KIND(t->fields[i].id) == MFS_FIELD_TENSOR_DELETE;
	struct mfs_rename *r = k ? calloc(k, sizeof(*r)) : NULL;
	if (k && !r)
		rc = -ENOMEM;
	size_t j = 0;
	for (size_t i = 0; i < t->n_fields && rc == 0; i++) {
		const struct fslot *f = &t->fields[i];
		bool del = MFS_FIELD_KIND(f->id) == MFS_FIELD_TENSOR_DELETE;
		const char *from = mfs_field_is_name(f->id) ? mfs_desc_field_name(&t->m->desc, f->id) :
		                   del && MFS_FIELD_I(f->id) < t->m->desc.n_tensors ?
		                   t->m->desc.tensors[MFS_FIELD_I(f->id)]->name : NULL;
		if (!from)
			continue;
		r[j].id = f->id;
		r[j].from = strdup(from);
		r[j].to = del ? NULL : malloc(f->len + 1);
		if (!r[j].from || (!del && !r[j].to)) {
			j++;
			rc = -ENOMEM;
			break;
		}
		if (!del)
			r[j].to[mfs_text_unescape(r[j].to, f->text, f->len)] = '\0';
		j++;
	}
	pthread_rwlock_unlock(&t->lock);
	if (rc < 0) {
		mfs_txn_renames_free(r, j);
		return rc;
	}
	*out = r;
	*n = j;
	return 0;
}

void mfs_txn_renames_free(struct mfs_rename *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++) {
		free(r[i].from);
		free(r[i].to);
	}
	free(r);
}

int mfs_txn_field_check(mfs_txn *t, uint64_t id, const char *text, size_t len)
{
	char why[320] = "";
	int rc = -EACCES;
	pthread_rwlock_wrlock(&t->lock);
	const struct mfs_format *f = t->m->fmt;
	if (t->opts.read_only)
		rc = -EROFS;
	else if (id < (1ull << KIND_SHIFT) && f->field_writable && f->field_check &&
	         f->field_writable(t->m, id) &&
	         (rc = f->field_check(t->m, id, text, len, why, sizeof(why))) < 0)
		txn_set_msg(t->field_note, sizeof(t->field_note), "%s",
		            txn_strip_display(why, t->m->desc.files[0].path));
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

bool mfs_txn_field_writable(mfs_txn *t, uint64_t id)
{
	pthread_rwlock_rdlock(&t->lock);
	const struct mfs_format *f = t->m->fmt;
	bool ok = !t->opts.read_only && id < (1ull << KIND_SHIFT) && f->field_writable &&
	          f->field_check && f->field_writable(t->m, id);
	pthread_rwlock_unlock(&t->lock);
	return ok;
}

int mfs_txn_field_get(mfs_txn *t, uint64_t id, char **out, size_t *len)
{
	int rc = 0;
	*out = NULL;
	*len = 0;
	pthread_rwlock_rdlock(&t->lock);
	size_t i = field_pos(t, id);
	if (i < t->n_fields && t->fields[i].id == id) {
		const struct fslot *f = &t->fields[i];
		char *b = malloc(f->len + 2);
		if (!b) {
			rc = -ENOMEM;
		} else {
			memcpy(b, f->text, f->len);
			b[f->len] = '\n';
			b[f->len + 1] = '\0';
			*out = b;
			*len = f->len + 1;
			rc = 1;
		}
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_field_set(mfs_txn *t, uint64_t id, const char *orig, size_t orig_len,
                      const char *text, size_t len)
{
	int rc = 0;
	char *copy = NULL, *canon = NULL;
	pthread_rwlock_wrlock(&t->lock);
	const struct mfs_format *f = t->m->fmt;
	if (t->opts.read_only) {
		rc = -EROFS;
		goto out;
	}
	if (t->broken) {
		rc = -EIO;
		goto out;
	}
	/* A value shown in several directories is one rename (model.h). */
	if (mfs_field_is_name(id))
		id = mfs_desc_name_field(&t->m->desc, id);
	if (id >= (1ull << KIND_SHIFT) || !f->field_writable || !f->field_check ||
	    !f->field_writable(t->m, id)) {
		rc = -EACCES;
		goto out;
	}
	len = txn_chomp(text, len);
	if (len > MFS_STAGE_MAX_VALUE) {
		rc = -EFBIG;
		goto out;
	}
	char why[320] = "";
	if (!txn_utf8_ok(text, len) || memchr(text, '\0', len)) {
		txn_set_msg(t->field_note, sizeof(t->field_note), "not UTF-8 text");
		rc = -EINVAL;
		goto out;
	}
	/* Free-text fields (doc strings) may be written with raw line breaks,
	 * as meta/doc_string may: kept in the form a read shows (§3.5). */
	unsigned kind = MFS_FIELD_KIND(id);
	if (kind == MFS_FIELD_NODE_DOC || kind == MFS_FIELD_INPUT_DOC ||
	    kind == MFS_FIELD_OUTPUT_DOC) {
		char *raw = malloc(len + 1);
		size_t rl = raw ? mfs_text_unescape(raw, text, len) : 0;
		size_t el = raw ? mfs_text_escape(NULL, 0, raw, rl) : 0;
		canon = raw && el <= MFS_STAGE_MAX_VALUE ? malloc(el + 1) : NULL;
		if (canon)
			mfs_text_escape(canon, el + 1, raw, rl);
		free(raw);
		if (!canon) {
			rc = el > MFS_STAGE_MAX_VALUE ? -EFBIG : -ENOMEM;
			goto out;
		}
		text = canon;
		len = el;
	}
	if ((rc = f->field_check(t->m, id, text, len, why, sizeof(why))) < 0) {
		txn_set_msg(t->field_note, sizeof(t->field_note), "%s",
		            txn_strip_display(why, t->m->desc.files[0].path));
		goto out;
	}
	/* Back to what the model shows: nothing staged. */
	if (txn_chomp(orig, orig_len) == len && memcmp(orig, text, len) == 0) {
		if ((rc = field_unstage(t, id)) == 0) {
			txn_touched(t);
			if (mfs_field_is_name(id) || kind == MFS_FIELD_TENSOR_DELETE)
				t->generation++;        /* the tree shows the name again */
		}
		goto out;
	}
	if (mfs_field_is_name(id) && (rc = name_free(t, id, text, len)) < 0)
		goto out;
	if (!(copy = txn_memdup0(text, len))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = txn_put_value(t, key_of(K_FIELD, id), copy, len)) < 0)
		goto out;
	if ((rc = txn_field_put(t, id, copy, len)) < 0)
		goto out;
	copy = NULL;
	txn_touched(t);
	if (mfs_field_is_name(id) || kind == MFS_FIELD_TENSOR_DELETE)
		t->generation++;        /* the tree shows the new name, or no tensor */
out:
	free(canon);
	free(copy);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* ------------------------------------------------------------ added tensors */

/* Is `name` a tensor's name: of the model, a staged rename's or an added one's? */
static bool tensor_name_taken(const struct mfs_txn *t, const char *name, const char *text,
                              size_t len)
{
	const struct mfs_desc *d = t->d;
	for (size_t i = 0; i < d->n_tensors; i++)
		if (d->tensors[i]->name && !strcmp(d->tensors[i]->name, name))
			return true;
	if (d->graph && graph_has_name(d->graph, name))
		return true;    /* a graph's value, or what a node reads or writes */
	for (size_t i = 0; i < t->n_fields; i++)
		if (MFS_FIELD_KIND(t->fields[i].id) == MFS_FIELD_TENSOR_NAME &&
		    t->fields[i].len == len && !memcmp(t->fields[i].text, text, len))
			return true;
	for (size_t k = 0; k < t->n_adds; k++)
		if (t->adds[k] && t->adds[k]->live && !strcmp(t->adds[k]->x.name, name))
			return true;
	return false;
}

int mfs_txn_tensor_add(mfs_txn *t, const char *name, uint64_t *id_out)
{
	int rc = 0;
	size_t nl = strlen(name);
	size_t el = mfs_text_escape(NULL, 0, name, nl);
	char *text = malloc(el + 1);
	if (!text)
		return -ENOMEM;
	mfs_text_escape(text, el + 1, name, nl);
	pthread_rwlock_wrlock(&t->lock);
	const struct mfs_format *f = t->m->fmt;
	uint64_t i = t->d->n_tensors + t->n_adds;
	uint64_t id = i <= MFS_FIELD_I_MAX ? MFS_FIELD_ID(MFS_FIELD_TENSOR_ADD, i, 0) : 0;
	char why[320] = "";
	if (t->opts.read_only)
		rc = -EROFS;
	else if (t->broken)
		rc = -EIO;
	else if (!id || !f->field_writable || !f->field_check || !f->field_writable(t->m, id))
		rc = -EPERM;
	else if (el > MFS_STAGE_MAX_VALUE)
		rc = -ENAMETOOLONG;
	else if (!txn_utf8_ok(name, nl))
		rc = -EINVAL;
	else if (tensor_name_taken(t, name, text, el))
		rc = -EEXIST;
	else if ((rc = f->field_check(t->m, id, text, el, why, sizeof(why))) < 0)
		txn_set_msg(t->field_note, sizeof(t->field_note), "%s",
		            txn_strip_display(why, t->m->desc.files[0].path));
	if (rc < 0)
		goto out;
	if ((rc = txn_put_value(t, key_of(K_FIELD, id), text, el)) < 0)
		goto out;
	if ((rc = txn_field_put(t, id, text, el)) < 0) {
		txn_drop_key(t, key_of(K_FIELD, id));
		goto out;
	}
	text = NULL;
	*id_out = i;
	txn_touched(t);
	t->generation++;        /* the tree shows the new tensor */
out:
	pthread_rwlock_unlock(&t->lock);
	free(text);
	return rc;
}

bool mfs_txn_tensor_is_added(mfs_txn *t, const struct mfs_tensor *x)
{
	pthread_rwlock_rdlock(&t->lock);
	const struct addt *a = x && (x->flags & MFS_TENSOR_ADDED) ? txn_add_at(t, x->id) : NULL;
	bool r = a && &a->x == x;
	pthread_rwlock_unlock(&t->lock);
	return r;
}

int mfs_txn_tensor_unadd(mfs_txn *t, const struct mfs_tensor *x)
{
	int rc = -ENOENT;
	pthread_rwlock_wrlock(&t->lock);
	struct addt *a = x && (x->flags & MFS_TENSOR_ADDED) ? txn_add_at(t, x->id) : NULL;
	if (a && &a->x == x) {
		/* Its bytes, dtype and shape first: the field last, so that a
		 * failure leaves a tensor the journal still names. */
		uint64_t id = a->x.id;
		if ((rc = txn_drop_key(t, key_of(K_DATA, id))) == 0 &&
		    (rc = txn_drop_key(t, key_of(K_DTYPE, id))) == 0 &&
		    (rc = txn_drop_key(t, key_of(K_SHAPE, id))) == 0)
			rc = field_unstage(t, MFS_FIELD_ID(MFS_FIELD_TENSOR_ADD, id, 0));
		if (rc == 0) {
			txn_touched(t);
			t->generation++;
		}
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_added(const struct mfs_tensor ***out, size_t *n, mfs_txn *t)
{
	*out = NULL;
	*n = 0;
	pthread_rwlock_rdlock(&t->lock);
	size_t k = 0;
	for (size_t i = 0; i < t->n_adds; i++)
		k += t->adds[i] && t->adds[i]->live;
	const struct mfs_tensor **v = k ? malloc(k * sizeof(*v)) : NULL;
	int rc = k && !v ? -ENOMEM : 0;
	for (size_t i = 0; v && i < t->n_adds; i++)
		if (t->adds[i] && t->adds[i]->live)
			v[(*n)++] = &t->adds[i]->x;
	*out = v;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

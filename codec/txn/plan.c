/*
 * codec/txn/plan.c — what a commit would do: the plan, and the root model
 * file served from it while edits are staged.
 *
 * A plan reduces everything staged to its effective edits (txn.c, HOW IT
 * WORKS): values set back to what the model has are no edits, same-size
 * data is compared with the model to find the ranges that really differ
 * (and whether they differ at all), and each tensor edit is checked (data
 * size = dtype × shape, and the format's own rule).  The format's splice
 * writer turns a plan into the new file as a piece list.  The same list,
 * built without the comparisons that only a commit needs, serves reads of
 * the root model file (the "view"), so that a loader reading it sees the
 * edits; it is rebuilt by the first reader after an edit.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "txn/txn_int.h"

#define CMP_BUF         (256u << 10)   /* compare buffer: one stage chunk; see REDO_BUF */
#define RUN_GAP         64      /* differing runs closer than this are merged */

/* Reads an edited tensor's bytes from the stage, for piece lists. */
static ssize_t rd_fn(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct rd *r = arg;
	return mfs_stage_read(r->st, r->key, buf, len, off);
}

/* ------------------------------------------------------------ plan */

void txn_plan_free(struct plan *p)
{
	for (size_t i = 0; i < p->n_te; i++)
		free(p->runs ? p->runs[i] : NULL);
	free(p->runs);
	free(p->rds);
	free(p->te);
	free(p->props);
	free(p->fields);
	memset(p, 0, sizeof(*p));
}

/*
 * Bytes [at, at + len) differ, and `at` lies at or past the end of the last
 * run: extend that run if the gap between them is at most RUN_GAP, else
 * start a new one.  Adding a range is the same as adding each of its bytes
 * in turn, since the bytes of a range are adjacent (no gap at all).
 */
static int add_run(struct mfs_run **runs, size_t *n, size_t *cap, uint64_t at, uint64_t len)
{
	struct mfs_run *last = *n ? &(*runs)[*n - 1] : NULL;
	if (last && at - (last->off + last->len) <= RUN_GAP) {
		last->len = at + len - last->off;
		return 0;
	}
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct mfs_run *nr = reallocarray(*runs, nc, sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		*runs = nr;
		*cap = nc;
	}
	(*runs)[(*n)++] = (struct mfs_run){at, len};
	return 0;
}

/*
 * Which bytes of a[0..64) and b[0..64) differ, as a 64-bit mask: bit i for
 * byte i.
 *
 * HOW IT WORKS: with SSE2 (every x86-64), four 16-byte compares and their
 * byte masks.  Elsewhere, eight bytes at a time: in the XOR of two words a
 * byte is nonzero exactly where they differ; folding each byte's bits onto
 * its lowest bit and multiplying by 0x0102040810204080 gathers those
 * eight bits into the top byte, one per byte of memory (little-endian
 * loads, so byte i of memory is bits 8i..8i+7).
 */
#ifdef __SSE2__
static inline uint64_t block_mask(const uint8_t *a, const uint8_t *b)
{
	uint64_t m = 0;
	for (int k = 0; k < 4; k++) {
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)(a + 16 * k));
		__m128i y = _mm_loadu_si128((const __m128i *)(const void *)(b + 16 * k));
		unsigned eq = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, y));
		m |= (uint64_t)(~eq & 0xffffu) << (16 * k);
	}
	return m;
}
#else
static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline uint64_t block_mask(const uint8_t *a, const uint8_t *b)
{
	uint64_t m = 0;
	for (int j = 0; j < 64; j += 8) {
		uint64_t x = load_le64(a + j) ^ load_le64(b + j);
		x |= x >> 4;
		x |= x >> 2;
		x |= x >> 1;
		x &= 0x0101010101010101ull;     /* bit 8i: byte i differs */
		m |= ((x * 0x0102040810204080ull) >> 56) << j;
	}
	return m;
}
#endif

static inline unsigned popcount64(uint64_t x)
{
	/* No popcnt instruction is assumed: the classic bit-slicing sum. */
	x = x - ((x >> 1) & 0x5555555555555555ull);
	x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
	return (unsigned)((x * 0x0101010101010101ull) >> 56);
}

/*
 * The differing bytes of a[0..len) and b[0..len) (len <= DIFF_BLOCK), which
 * lie at `pos` in the tensor, added as runs; *diff counts them.
 *
 * A block's mask of differing bytes gives their count (its popcount), the
 * first (trailing zeros) and the last (leading zeros).  Two differing bytes
 * of one block are at most DIFF_BLOCK - 2 bytes apart, which is within
 * RUN_GAP, so byte by byte they would all have joined one run: the block
 * adds the single range from its first to its last differing byte.
 */
#define DIFF_BLOCK      64
_Static_assert(DIFF_BLOCK - 2 <= RUN_GAP, "a block's differing bytes must form one run");

static int diff_block(struct mfs_run **runs, size_t *n, size_t *cap, uint64_t *diff,
                      const uint8_t *a, const uint8_t *b, size_t len, uint64_t pos)
{
	uint64_t m = 0;
	if (len == DIFF_BLOCK) {
		m = block_mask(a, b);
	} else {
		for (size_t j = 0; j < len; j++)        /* the tensor's last bytes */
			m |= (uint64_t)(a[j] != b[j]) << j;
	}
	if (!m)
		return 0;
	unsigned first = (unsigned)__builtin_ctzll(m), last = 63u - (unsigned)__builtin_clzll(m);
	*diff += popcount64(m);
	return add_run(runs, n, cap, pos + first, last + 1 - first);
}

/*
 * The ranges of tensor `s`'s staged data that differ from its base (same
 * size): the staged extents compared block by block.  *changed gets the
 * number of differing bytes.
 */
static int diff_runs(struct mfs_txn *t, struct tstate *s, struct mfs_run **out, size_t *n_out,
                     uint64_t *changed, uint8_t *b1, uint8_t *b2)
{
	uint64_t key = key_of(K_DATA, s->t->id);
	struct mfs_stage_extent *ext = NULL;
	struct mfs_run *runs = NULL;
	size_t n_ext = 0, n = 0, cap = 0;
	uint64_t diff = 0;
	int rc = mfs_stage_extents(t->st, key, NULL, 0, &n_ext);
	if (rc < 0)
		return rc;
	ext = malloc((n_ext ? n_ext : 1) * sizeof(*ext));
	if (!ext)
		return -ENOMEM;
	if ((rc = mfs_stage_extents(t->st, key, ext, n_ext, &n_ext)) < 0)
		goto out;
	for (size_t e = 0; e < n_ext; e++) {
		uint64_t end = ext[e].off + ext[e].len;
		if (end > s->t->nbytes)
			end = s->t->nbytes;
		for (uint64_t pos = ext[e].off; pos < end;) {
			size_t k = end - pos > CMP_BUF ? CMP_BUF : (size_t)(end - pos);
			ssize_t a = mfs_stage_read(t->st, key, b1, k, pos);
			ssize_t b = mfs_tensor_read(s->m, s->t, b2, k, pos);
			if (a < 0 || b < 0) {
				rc = (int)(a < 0 ? a : b);
				goto out;
			}
			if ((size_t)a != k || (size_t)b != k) {
				rc = -EIO;
				goto out;
			}
			for (size_t i = 0; i < k; i += DIFF_BLOCK) {
				size_t blk = k - i < DIFF_BLOCK ? k - i : DIFF_BLOCK;
				if ((rc = diff_block(&runs, &n, &cap, &diff, b1 + i, b2 + i, blk,
				                     pos + i)) < 0)
					goto out;
			}
			pos += k;
		}
	}
	*out = runs;
	*n_out = n;
	*changed = diff;
	runs = NULL;
out:
	free(runs);
	free(ext);
	return rc;
}

/* Commit-time checks of one tensor's effective type and size. */
static int validate(const struct mfs_txn *t, const struct mfs_tensor_edit *te, char *msg,
                    size_t msglen)
{
	const struct mfs_tensor *x = te->t;
	const char *dt = mfs_desc_dtype_name(t->d, te->dtype);
	uint64_t want = 0;
	bool plain = !te->added && !te->dtype_changed && !te->dims_changed &&
	             te->size == x->nbytes;
	int rc = mfs_tensor_nbytes(&want, te->dtype, te->dims, te->rank);
	if (rc < 0 && !plain) {
		txn_set_msg(msg, msglen, "tensor '%.200s': %s has no fixed element size", x->name, dt);
		return -EINVAL;
	}
	if (rc == 0 && te->size != want) {
		char dims[256];
		mfs_dims_format(dims, sizeof(dims), te->dims, te->rank);
		txn_set_msg(msg, msglen, "tensor '%.200s': data is %" PRIu64 " bytes but %s[%s] needs %"
		            PRIu64, x->name, te->size, dt, dims, want);
		return -EINVAL;
	}
	if (rc == 0 && t->m->fmt->tensor_check)
		return t->m->fmt->tensor_check(te, msg, msglen);
	return 0;
}

/*
 * The format's check of every dtype edit against the graph's types, all
 * edits known (a peer edited alike is no conflict): a dtype the graph
 * declares otherwise fails the commit (-EINVAL, its line in `msg`) unless
 * the transaction forces types; what passes with a warning, or forced, is
 * kept for the status (t->type_note).
 */
static int check_types(struct mfs_txn *t, const struct mfs_edit_set *e, char *msg, size_t msglen)
{
	t->type_note[0] = '\0';
	if (!t->m->fmt->type_check)
		return 0;
	size_t warned = 0;
	for (size_t i = 0; i < e->n_tensors; i++) {
		if (!e->tensors[i].dtype_changed || e->tensors[i].added)
			continue;       /* nothing in the graph declares a new tensor's type */
		char line[400];
		int v = t->m->fmt->type_check(t->m, e, i, line, sizeof(line));
		if (v == MFS_TYPE_OK)
			continue;
		if (v == MFS_TYPE_DECLARED && !t->opts.force_types) {
			txn_set_msg(msg, msglen, "%s; set it back, or mount with -o force_types to "
			            "commit it anyway", line);
			return -EINVAL;
		}
		if (!warned++)
			txn_set_msg(t->type_note, sizeof(t->type_note), "%s%s",
			            v == MFS_TYPE_DECLARED ? "forced (force_types): " : "", line);
	}
	if (warned > 1) {
		size_t n = strlen(t->type_note);
		snprintf(t->type_note + n, sizeof(t->type_note) - n, " (and %zu more)", warned - 1);
	}
	return 0;
}

/*
 * Reduce what is staged to its effective edits.  `commit`: validate, and
 * compare same-size data with the base (runs, bytes_edited, no-op
 * detection); otherwise (the served view) only typed storage is compared,
 * which decides whether it must be converted.  Errors leave one line in
 * `msg`.
 */
int txn_plan_build(struct mfs_txn *t, struct plan *p, bool commit, char *msg, size_t msglen)
{
	const struct mfs_desc *d = t->d;
	uint8_t *b1 = NULL, *b2 = NULL;
	int rc = 0;
	memset(p, 0, sizeof(*p));
	p->layout_kept = true;

	size_t n = 0;
	for (size_t i = 0; i < d->n_tensors; i++) {
		const struct tstate *s = txn_ts_at(t, i);
		n += s && (s->data || s->has_dtype || s->has_shape);
	}
	for (size_t k = 0; k < t->n_adds; k++)
		n += txn_add_at(t, d->n_tensors + k) != NULL;
	p->te = calloc(n ? n : 1, sizeof(*p->te));
	p->runs = calloc(n ? n : 1, sizeof(*p->runs));
	p->rds = calloc(n ? n : 1, sizeof(*p->rds));
	b1 = malloc(CMP_BUF);
	b2 = malloc(CMP_BUF);
	if (!p->te || !p->runs || !p->rds || !b1 || !b2) {
		rc = -ENOMEM;
		txn_set_msg(msg, msglen, "out of memory");
		goto out;
	}
	/* The model's tensors, then the added ones (every one an edit). */
	for (size_t i = 0; i < d->n_tensors + t->n_adds; i++) {
		struct tstate *s = txn_ts_at(t, i);
		bool added = i >= d->n_tensors;
		if (!s || (!added && !s->data && !s->has_dtype && !s->has_shape))
			continue;
		const struct mfs_tensor *x = s->t;
		struct mfs_tensor_edit *te = &p->te[p->n_te];
		memset(te, 0, sizeof(*te));     /* the slot of a skipped no-op is reused */
		te->t = x;
		te->dtype = txn_eff_dtype(s);
		te->dims = txn_eff_dims(s, &te->rank);
		te->dtype_changed = te->dtype != x->dtype;
		te->dims_changed = !txn_dims_equal(te->dims, te->rank, x->dims, x->rank);
		te->size = x->nbytes;
		te->added = added;
		if (s->data && (rc = mfs_stage_size(&te->size, t->st, key_of(K_DATA, i))) < 0) {
			txn_set_msg(msg, msglen, "tensor '%.200s': %s", x->name, strerror(-rc));
			goto out;
		}
		if (commit && (rc = validate(t, te, msg, msglen)) < 0)
			goto out;
		/* Bytes of the model file itself: patchable in place, and spliced
		 * the same whether or not they changed. */
		bool in_file = (x->flags & MFS_TENSOR_CONTIGUOUS) && x->src == 0;
		if (s->data) {
			p->rds[p->n_te] = (struct rd){t->st, key_of(K_DATA, i)};
			te->read = rd_fn;
			te->arg = &p->rds[p->n_te];
			if (te->size != x->nbytes) {
				te->data_changed = true;
			} else if (commit || !in_file || te->dtype_changed || te->dims_changed) {
				/* The view skips this for plain data edits of bytes in the
				 * file (the spliced bytes are the same either way); where it
				 * decides how the tensor is re-encoded, it compares too, so
				 * that the view is exactly what a commit writes. */
				uint64_t changed = 0;
				struct mfs_run **runs = &p->runs[p->n_te];
				rc = diff_runs(t, s, runs, &te->n_runs, &changed, b1, b2);
				if (rc < 0) {
					txn_set_msg(msg, msglen, "tensor '%.200s': reading staged data: "
					            "%s", x->name, strerror(-rc));
					goto out;
				}
				te->runs = p->runs[p->n_te];
				te->data_changed = te->n_runs > 0;
				p->bytes_edited += changed;
			} else {
				te->data_changed = true;        /* the view: same bytes anyway */
			}
			if (te->data_changed && te->size != x->nbytes)
				p->bytes_edited += te->size;
		}
		if (added)
			p->layout_kept = false;
		if (!added && !te->dtype_changed && !te->dims_changed && !te->data_changed)
			continue;
		if (te->dtype_changed || te->dims_changed || te->size != x->nbytes || !in_file)
			p->layout_kept = false;
		p->n_te++;
	}

	/* meta/ values that differ from what the model says. */
	for (unsigned k = 0; k < txn_meta_count(t); k++) {
		if (!t->meta_staged[k])
			continue;
		char *orig = NULL;
		size_t cur = 0;
		if ((rc = txn_meta_orig(t, k, &orig, &cur)) < 0) {
			txn_set_msg(msg, msglen, "out of memory");
			goto out;
		}
		bool same = cur == t->meta_len[k] && memcmp(orig, t->meta[k], cur) == 0;
		free(orig);
		if (same)
			continue;
		p->set.meta[k] = t->meta[k];
		p->set.meta_len[k] = t->meta_len[k];
		p->bytes_edited += t->meta_len[k];
		p->layout_kept = false;
	}

	/* The effective props, and whether they differ at all. */
	size_t n_live = 0;
	for (size_t i = 0; i < t->n_props; i++)
		n_live += t->props[i].key != NULL;
	p->props = calloc(n_live ? n_live : 1, sizeof(*p->props));
	if (!p->props) {
		rc = -ENOMEM;
		txn_set_msg(msg, msglen, "out of memory");
		goto out;
	}
	bool props_changed = n_live != d->n_props;
	size_t k = 0;
	for (size_t i = 0; i < t->n_props; i++) {
		const struct pslot *ps = &t->props[i];
		if (!ps->key)
			continue;
		struct mfs_prop_edit *pe = &p->props[k++];
		pe->orig = i < t->n_orig_props ? (int64_t)i : -1;
		pe->key = ps->key;
		pe->value = ps->value;
		pe->len = ps->len;
		pe->type = ps->type;
		pe->changed = pe->orig < 0 || ps->type || strcmp(ps->key, d->props[i].name) != 0 ||
		              ps->len != d->props[i].len ||
		              memcmp(ps->value, d->props[i].value, ps->len) != 0;
		props_changed |= pe->changed || pe->orig != (int64_t)(k - 1);
		if (pe->changed)
			p->bytes_edited += strlen(ps->key) + ps->len;
	}
	if (props_changed) {
		p->set.props_changed = true;
		p->set.props = p->props;
		p->set.n_props = n_live;
		p->layout_kept = false;
	}
	/* Graph fields: every staged one differs from the model (a value set
	 * back is unstaged when written), in ascending id. */
	if (t->n_fields) {
		p->fields = calloc(t->n_fields, sizeof(*p->fields));
		if (!p->fields) {
			rc = -ENOMEM;
			txn_set_msg(msg, msglen, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < t->n_fields; i++) {
			p->fields[i] = (struct mfs_field_edit){t->fields[i].id, t->fields[i].text,
			                                       t->fields[i].len};
			p->bytes_edited += t->fields[i].len;
		}
		p->set.fields = p->fields;
		p->set.n_fields = t->n_fields;
		p->layout_kept = false;
	}
	p->set.tensors = p->te;
	p->set.n_tensors = p->n_te;
	if (commit && (rc = check_types(t, &p->set, msg, msglen)) < 0)
		goto out;
	p->empty = !p->n_te && !p->set.props_changed && !p->set.n_fields;
	for (int j = 0; j < MFS_META_MAX; j++)
		p->empty &= !p->set.meta[j];
out:
	free(b1);
	free(b2);
	if (rc < 0)
		txn_plan_free(p);
	return rc;
}

int txn_build_splice(struct mfs_txn *t, const struct plan *p, struct mfs_splice *sp,
                     char *msg, size_t msglen)
{
	if (!t->m->fmt->splice) {
		txn_set_msg(msg, msglen, "%s models cannot be edited", t->m->fmt->name);
		return -EACCES;
	}
	return t->m->fmt->splice(sp, t->m, &p->set, msg, msglen);
}

/* ------------------------------------------------------------ the view */

void txn_view_drop(struct view *v)
{
	txn_plan_free(&v->plan);
	mfs_splice_free(&v->sp);
	free(v->starts);
	v->starts = NULL;
	v->valid = false;
}

/* The current view, built if stale.  Call with the lock shared or held. */
struct view *txn_view_get(struct mfs_txn *t)
{
	struct view *v = &t->view;
	pthread_mutex_lock(&t->view_lock);
	if (!v->valid || v->seq != t->edit_seq) {
		char msg[512];
		txn_view_drop(v);
		v->seq = t->edit_seq;
		v->valid = true;
		v->rc = txn_plan_build(t, &v->plan, false, msg, sizeof(msg));
		if (v->rc == 0)
			v->rc = txn_build_splice(t, &v->plan, &v->sp, msg, sizeof(msg));
		if (v->rc == 0) {
			v->starts = malloc((v->sp.n ? v->sp.n : 1) * sizeof(*v->starts));
			if (!v->starts)
				v->rc = -ENOMEM;
			uint64_t pos = 0;
			for (size_t i = 0; v->starts && i < v->sp.n; i++) {
				v->starts[i] = pos;
				pos += v->sp.p[i].len;
			}
		}
	}
	pthread_mutex_unlock(&t->view_lock);
	return v;
}

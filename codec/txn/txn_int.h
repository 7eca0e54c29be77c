/*
 * codec/txn/txn_int.h — what the files of the transaction share.
 *
 * Internal to txn/.  The transaction (modelfs/txn.h) is one object spread
 * over five files, each a stage of its life:
 *
 *   txn.c      open (recovery, journal replay), close, the shared helpers and
 *              the in-memory mirrors of what is staged
 *   edit.c     staging edits: tensor bytes, dtype, shape, meta, props,
 *              scratch objects; reads of the staged state
 *   plan.c     reducing what is staged to effective edits (the plan), and
 *              the root model file served from it while edits are staged
 *   apply.c    the commit driver (plan → splice writer → commit engine →
 *              reopen) and abort
 *   status.c   the text of .modelfs/status
 *
 * The design essay, the key table of staged objects and the invariants are
 * at the top of txn.c.  Functions shared between the files are txn_*;
 * everything else is static to its file.
 */
#ifndef MODELFS_CODEC_TXN_INT_H
#define MODELFS_CODEC_TXN_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelfs/txn.h"

#include "format.h"
#include "source/place.h"
#include "txn/commit.h"
#include "txn/stage.h"

/* ------------------------------------------------------------ keys */

#define KIND_SHIFT      56
#define KEY_IDX(k)      ((k) & ((1ull << KIND_SHIFT) - 1))
#define KEY_KIND(k)     ((unsigned)((k) >> KIND_SHIFT))

enum key_kind { K_DATA = 0, K_DTYPE = 1, K_SHAPE = 2, K_META = 3, K_PROP = 4, K_SCRATCH = 5,
                K_FIELD = 6 };

static inline uint64_t key_of(enum key_kind kind, uint64_t idx)
{
	return (uint64_t)kind << KIND_SHIFT | idx;
}

/* Where a tensor shows in the tree, for status lines. */
enum where { W_TENSOR, W_WEIGHTS, W_SPARSE };

#define TS_PAGE 256u            /* tensor states per page (struct mfs_txn.ts) */

/* ------------------------------------------------------------ state */

/* What is staged for one tensor of the current model. */
struct tstate {
	const mfs_model *m;
	const struct mfs_tensor *t;
	uint8_t where;
	bool bound;             /* its data key is bound in the stage */
	bool data;              /* its data is staged */
	bool has_dtype, has_shape;
	int32_t dtype;
	size_t rank;
	int64_t *dims;          /* malloc'd, when has_shape */
};

/*
 * A tensor staged as new (a TENSOR_ADD field: `mkdir weights/<path>`): its
 * description, made here (dtype float32, a scalar, no bytes until written),
 * and its state.  Slot k of struct mfs_txn.adds has id d->n_tensors + k.
 * Never freed before mfs_txn_close(): trees and the stage hold pointers.
 */
struct addt {
	struct mfs_tensor x;
	struct tstate s;
	bool live;              /* false: unstaged (rmdir, abort, commit) */
	struct addt *next_dead;
};

/*
 * A metadata property slot (see the key table).  Slots are found by key
 * through a hash index (edit.c, "the props index"): a change of a slot's
 * key goes through prop_put() (edit.c), and code that changes many slots at
 * once calls txn_props_reindex() afterwards.
 */
struct pslot {
	char *key;              /* NULL: no property here (removed, or a free slot) */
	char *value;
	size_t len;
	char *type;             /* a staged type (mfs_txn_prop_type_set), NULL: its own */
	bool staged;
	size_t hnext;           /* the props index: next slot + 1 on this chain, 0 = end */
};

struct old_model {
	mfs_model *m;
	struct old_model *next;
};

/* Reads an edited tensor's bytes from the stage, for piece lists. */
struct rd {
	struct mfs_stage *st;
	uint64_t key;
};

/* A staged graph field (model.h MFS_FIELD_ID; key K_FIELD, the id). */
struct fslot {
	uint64_t id;
	char *text;             /* as the file shows it, without the last '\n' */
	size_t len;
	bool staged;            /* counted in n_dirty */
};

/* The effective edits, ready for a splice writer. */
struct plan {
	struct mfs_tensor_edit *te;
	size_t n_te;
	struct mfs_run **runs;  /* per te, malloc'd */
	struct rd *rds;         /* per te */
	struct mfs_prop_edit *props;
	struct mfs_field_edit *fields;
	struct mfs_edit_set set;
	uint64_t bytes_edited;
	bool layout_kept;       /* only same-size data edits of bytes in the model file */
	bool empty;
};

/* The root model file as it would be committed now. */
struct view {
	bool valid;
	uint64_t seq;
	int rc;
	struct plan plan;
	struct mfs_splice sp;
	uint64_t *starts;       /* each piece's offset in the file */
};

struct mfs_txn {
	pthread_rwlock_t lock;
	pthread_mutex_t view_lock;
	char *path;             /* the model, absolute */
	char *name;             /* its file name (after a versioned commit, the version's) */
	char *orig_name;        /* the file name it was opened on: {stem} {ext} of versions */
	char *commit_to;        /* opts.commit_to, copied; NULL when none */
	pthread_mutex_t sha_lock;
	char sha256[65];        /* the open file's SHA-256 once known, "" before (sha_lock) */
	int dirfd;              /* O_PATH descriptor of its directory */
	struct mfs_txn_opts opts;

	mfs_model *m;
	const struct mfs_desc *d;
	struct old_model *old;
	/* The ids (of the model before) of the tensors the last commit
	 * deleted, ascending: a tensor of an older description maps to the
	 * current one's id less the deleted ids below it (txn_cur_id). */
	uint64_t *gone;
	size_t n_gone;
	/* Tensors staged as new, by id - d->n_tensors (NULL: a slot never
	 * used), and those unstaged (kept until close). */
	struct addt **adds;
	size_t n_adds;
	struct addt *adds_dead;
	struct mfs_identity id;
	bool props_ok;          /* the format takes props edits for this model (set at
	                         * open; a commit keeps the model's structure) */
	bool broken;            /* invariant 4 */
	char broken_msg[512];

	struct mfs_stage *st;   /* NULL when read-only */
	/*
	 * The d->n_tensors tensor states, in pages of TS_PAGE made on first
	 * edit (txn_tensor_state): a page that is NULL holds nothing staged, so
	 * a mount that is only read keeps no state per tensor.  A state never
	 * moves once made (the stage holds it as a base-read argument).
	 */
	struct tstate **ts;     /* ts_pages pointers, or NULL before txn_init_state */
	size_t ts_pages;
	uint8_t *ts_where;      /* d->n_tensors: each tensor's enum where */
	char *meta[MFS_META_MAX];       /* by the format's meta index (format.h) */
	size_t meta_len[MFS_META_MAX];
	bool meta_staged[MFS_META_MAX];
	struct pslot *props;
	size_t n_props, n_orig_props;
	size_t *pidx;           /* the props index: buckets of slot + 1 (0 = empty), or NULL
	                         * (then lookups scan the slots) */
	size_t pidx_n;          /* buckets, a power of two */
	size_t pidx_live;       /* slots on its chains */
	struct fslot *fields;   /* staged graph fields, ascending id (few: a sorted array) */
	size_t n_fields;
	char field_note[384];   /* why the last field write was refused, or "" */
	uint8_t *scratch;       /* 1 = live, by scratch id */
	size_t n_scratch;

	uint64_t n_dirty;       /* staged edits of the model (scratch not counted) */
	/* Progress of the commit running (atomics: read without the lock). */
	uint64_t prog_done, prog_total;
	bool committing;
	uint64_t generation;
	uint64_t edit_seq;
	struct view view;

	char last[640];         /* "last commit: ..." */
	char type_note[512];    /* what the last commit's type check warned of, or "" */
	struct mfs_txn_recovery rec;
	char journal_note[256];
};

/* ------------------------------------------------------------ shared helpers (txn.c) */

void txn_set_msg(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* One line: strip a "<file>: " prefix that mfs_errf() put there. */
const char *txn_strip_display(const char *msg, const char *display);
bool txn_utf8_ok(const char *s, size_t n);
/* Text as a file held it: one trailing '\n' does not count. */
size_t txn_chomp(const char *text, size_t len);
char *txn_memdup0(const void *p, size_t len);
/* "1,10" -> dims.  Empty is a scalar.  Non-negative decimals only. */
int txn_parse_shape(const char *text, size_t len, int64_t *dims, size_t *rank);
bool txn_dims_equal(const int64_t *a, size_t ra, const int64_t *b, size_t rb);

/* Count staged edits (dirty) as flags flip. */
void txn_flag(struct mfs_txn *t, bool *f, bool v);
void txn_clear_state(struct mfs_txn *t);
int txn_reset_state(struct mfs_txn *t);
int txn_init_state(struct mfs_txn *t);
/* Something visible changed: the served view is stale. */
void txn_touched(struct mfs_txn *t);
/* The state of `x` for an edit (write lock held): made when missing; NULL
 * for a tensor not of the current model, or on ENOMEM (*rc says which). */
struct tstate *txn_tensor_state(struct mfs_txn *t, const struct mfs_tensor *x, int *rc);
/* The state of `x` for a read (any lock): its own, or `tmp` filled as a state
 * with nothing staged; NULL for a tensor not of the current model. */
const struct tstate *txn_tensor_peek(struct mfs_txn *t, const struct mfs_tensor *x,
                                     struct tstate *tmp);
/* State `i` (< d->n_tensors) when made, else NULL (nothing staged there). */
struct tstate *txn_ts_at(const struct mfs_txn *t, size_t i);
/* May tensor `x` be edited?  0, or the errno a write gets. */
int txn_editable(const struct mfs_txn *t, const struct mfs_tensor *x);
int txn_bind_tensor(struct mfs_txn *t, struct tstate *s);
int32_t txn_eff_dtype(const struct tstate *s);
const int64_t *txn_eff_dims(const struct tstate *s, size_t *rank);
/*
 * The model's value of writable meta file `k` as bytes: the description
 * holds its file text (escaped, doc/design.md §3.5), decoded here.  *out is
 * malloc'd (NUL-terminated); "" when the model has no such file.
 */
int txn_meta_orig(const struct mfs_txn *t, unsigned k, char **out, size_t *len);
/* The format's writable meta/ files: how many, and the index of `name` (-1). */
unsigned txn_meta_count(const struct mfs_txn *t);
int txn_meta_index(const struct mfs_txn *t, const char *name);
/* The current model's identity, from its source, with its layout. */
int txn_model_identity(struct mfs_txn *t);
/* flock(LOCK_SH, LOCK_EX or LOCK_UN) of model `m`'s file, non-blocking (LOCK_SH waits
 * a little for an in-place commit elsewhere): 0, -EBUSY, or -errno. */
int txn_lock_model(const mfs_model *m, int how);
/* Remove the note of a failed commit (a commit or an abort succeeded). */
void txn_clear_failure(struct mfs_txn *t);
/* Forget every staged graph field, in memory. */
void txn_fields_clear(struct mfs_txn *t);
/* Take field `id` with `text` (malloc'd, taken over) as staged, in memory. */
int txn_field_put(struct mfs_txn *t, uint64_t id, char *text, size_t len);
/* Tensor states: the added tensor of id `id` (>= d->n_tensors) when live, else NULL. */
struct addt *txn_add_at(const struct mfs_txn *t, uint64_t id);
/* Field TENSOR_ADD `id` staged with (escaped) name text: its tensor made. */
int txn_add_put(struct mfs_txn *t, uint64_t id, const char *text, size_t len);
/* Unstage added tensor `a` in memory (its keys are the caller's to drop). */
void txn_add_kill(struct mfs_txn *t, struct addt *a);
/* Every added tensor unstaged (fields cleared). */
void txn_adds_clear(struct mfs_txn *t);
/* Small staged values. */
int txn_put_value(struct mfs_txn *t, uint64_t key, const void *buf, size_t len);
int txn_drop_key(struct mfs_txn *t, uint64_t key);
int txn_put_prop_record(struct mfs_txn *t, size_t slot, const char *key, const char *type,
                        const char *value, size_t len);

/* ------------------------------------------------------------ edit.c */

/*
 * The props index: rebuild it from the slots (after changing many of them;
 * without memory, lookups fall back to scanning), or drop it (before the
 * slots are freed).
 */
void txn_props_reindex(struct mfs_txn *t);
void txn_props_unindex(struct mfs_txn *t);

/* ------------------------------------------------------------ plan.c */

int txn_plan_build(struct mfs_txn *t, struct plan *p, bool commit, char *msg, size_t msglen);
void txn_plan_free(struct plan *p);
/* The new model file for plan `p`, from the format's writer. */
int txn_build_splice(struct mfs_txn *t, const struct plan *p, struct mfs_splice *sp, char *msg,
                     size_t msglen);
/* The current view, built if stale.  Call with the lock shared or held. */
struct view *txn_view_get(struct mfs_txn *t);
void txn_view_drop(struct view *v);

#endif /* MODELFS_CODEC_TXN_INT_H */

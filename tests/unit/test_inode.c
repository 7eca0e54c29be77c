/*
 * tests/unit/test_inode.c — inode numbers across tree rebuilds (fs/inode.c).
 *
 * Trees are built from small descriptions made by hand (a safetensors-like
 * layout: meta/, meta/props/<key>, weights/<name>/...) and rebuilt with a
 * prop added, removed or renamed, the way the daemon rebuilds after an edit:
 * every surviving path keeps its number, new paths get numbers never used,
 * vanished numbers answer ESTALE, the events name what changed, and the
 * table goes back to costing nothing when the numbering is the identity
 * again.  Scratch files: listing, lookup, rename, freeing when nothing
 * reaches them, and taking an entry's place when renamed over it.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inode.h"
#include "names.h"
#include "tree.h"

/* A description with tensors "a.w" and "b" and the given props (value "v"). */
struct fixture {
	struct mfs_desc d;
	struct mfs_graph g;
	struct mfs_tensor t[2];
	struct mfs_tensor *inits[2];
	int64_t dims[2][1];
	struct mfs_meta meta[1];
	struct mfs_meta props[8];
	struct mfs_file file;
};

static void fixture(struct fixture *f, const char *const *keys)
{
	memset(f, 0, sizeof(*f));
	static const char *const names[2] = {"a.w", "b"};
	for (int i = 0; i < 2; i++) {
		f->dims[i][0] = 4;
		f->t[i] = (struct mfs_tensor){.id = (uint64_t)i, .name = (char *)names[i],
		                              .dtype = MFS_DT_FLOAT, .rank = 1, .dims = f->dims[i],
		                              .nbytes = 16};
		f->inits[i] = &f->t[i];
	}
	f->g.inits = f->inits;
	f->g.n_inits = 2;
	f->meta[0] = (struct mfs_meta){.name = "format", .value = "safetensors\n", .len = 12};
	size_t n = 0;
	for (; keys && keys[n]; n++)
		f->props[n] = (struct mfs_meta){.name = (char *)keys[n], .value = "v", .len = 1};
	f->file = (struct mfs_file){.path = "m.safetensors", .size = 100};
	f->d = (struct mfs_desc){.format = "safetensors", .meta = f->meta, .n_meta = 1,
	                         .props = f->props, .n_props = n, .graph = &f->g,
	                         .files = &f->file, .n_files = 1};
}

static struct mfs_tree *build(struct fixture *f)
{
	struct mfs_tree *t = NULL;
	assert_int_equal(mfs_tree_build(&t, &f->d), 0);
	return t;
}

/* The inode of `path` through the table. */
static uint64_t ino_of(const struct mfs_itab *it, const char *path)
{
	uint32_t idx;
	assert_int_equal(mfs_tree_resolve(mfs_itab_tree(it), path, &idx), 0);
	return mfs_itab_ino(it, idx);
}

/* Events, recorded. */
struct ev {
	int n_appeared, n_vanished, n_changed;
	char last_appeared[64], last_vanished[64];
	uint64_t vanished_ino;
};

static void record(void *arg, enum mfs_itab_event ev, uint64_t parent, const char *name,
                   size_t len, uint64_t ino)
{
	(void)parent;
	struct ev *e = arg;
	char *dst = NULL;
	if (ev == MFS_IEV_APPEARED) {
		e->n_appeared++;
		dst = e->last_appeared;
	} else if (ev == MFS_IEV_VANISHED) {
		e->n_vanished++;
		e->vanished_ino = ino;
		dst = e->last_vanished;
	} else {
		e->n_changed++;
	}
	if (dst)
		snprintf(dst, 64, "%.*s", (int)len, name);
}

static void first_tree_is_numbered_index_plus_one(void **state)
{
	(void)state;
	struct fixture f;
	fixture(&f, (const char *const[]){"k", NULL});
	struct mfs_tree *t = build(&f);
	struct mfs_itab *it;
	assert_int_equal(mfs_itab_new(&it, t), 0);
	uint32_t n = mfs_tree_count(t), idx;
	assert_int_equal(mfs_itab_ino(it, 0), 1);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(mfs_itab_ino(it, i), (uint64_t)i + 1);
		assert_int_equal(mfs_itab_index(it, (uint64_t)i + 1, &idx), 0);
		assert_int_equal(idx, i);
	}
	assert_int_equal(mfs_itab_index(it, 0, &idx), -ENOENT);
	assert_int_equal(mfs_itab_index(it, n + 1, &idx), -ENOENT);  /* never handed out */
	uint64_t x = mfs_itab_alloc(it);
	assert_int_equal(x, (uint64_t)n + 1);
	assert_int_equal(mfs_itab_index(it, x, &idx), -ESTALE);     /* not a tree entry */
	mfs_itab_destroy(it);
	mfs_tree_destroy(t);
}

static void a_new_prop_gets_a_new_number_and_the_rest_keep_theirs(void **state)
{
	(void)state;
	struct fixture f1, f2;
	fixture(&f1, (const char *const[]){"k", NULL});
	fixture(&f2, (const char *const[]){"k", "new", NULL});
	struct mfs_tree *t1 = build(&f1), *t2 = build(&f2);
	struct mfs_itab *it;
	assert_int_equal(mfs_itab_new(&it, t1), 0);
	uint64_t ctl = mfs_itab_alloc(it);
	const char *paths[] = {"", "meta", "meta/format", "meta/props", "meta/props/k",
	                       "weights/a/w/data", "weights/b/shape", "m.safetensors"};
	uint64_t before[8];
	for (int i = 0; i < 8; i++)
		before[i] = ino_of(it, paths[i]);

	struct ev e = {0};
	assert_int_equal(mfs_itab_rebuild(it, t2, NULL, record, &e), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(ino_of(it, paths[i]), before[i]);
	uint64_t ino_new = ino_of(it, "meta/props/new");
	assert_true(ino_new > ctl);             /* never a number used before */
	assert_int_equal(e.n_appeared, 1);
	assert_string_equal(e.last_appeared, "new");
	assert_int_equal(e.n_vanished, 0);
	assert_int_equal(e.n_changed, 1);       /* meta/props/: one more child */
	uint32_t idx;
	assert_int_equal(mfs_itab_index(it, ino_new, &idx), 0);
	assert_int_equal(mfs_itab_index(it, ctl, &idx), -ESTALE);
	mfs_itab_destroy(it);
	mfs_tree_destroy(t1);
	mfs_tree_destroy(t2);
}

static void a_removed_prop_is_stale_and_its_number_never_returns(void **state)
{
	(void)state;
	struct fixture f1, f2, f3;
	fixture(&f1, (const char *const[]){"a", "k", NULL});
	fixture(&f2, (const char *const[]){"k", NULL});
	fixture(&f3, (const char *const[]){"a", "k", NULL});
	struct mfs_tree *t1 = build(&f1), *t2 = build(&f2), *t3 = build(&f3);
	struct mfs_itab *it;
	assert_int_equal(mfs_itab_new(&it, t1), 0);
	uint64_t a = ino_of(it, "meta/props/a"), k = ino_of(it, "meta/props/k");
	uint64_t data = ino_of(it, "weights/b/data");

	struct ev e = {0};
	assert_int_equal(mfs_itab_rebuild(it, t2, NULL, record, &e), 0);
	assert_int_equal(e.n_vanished, 1);
	assert_string_equal(e.last_vanished, "a");
	assert_int_equal(e.vanished_ino, a);
	uint32_t idx;
	assert_int_equal(mfs_itab_index(it, a, &idx), -ESTALE);
	assert_int_equal(ino_of(it, "meta/props/k"), k);
	assert_int_equal(ino_of(it, "weights/b/data"), data);

	/* Back again: the same path, a new number. */
	memset(&e, 0, sizeof(e));
	assert_int_equal(mfs_itab_rebuild(it, t3, NULL, record, &e), 0);
	assert_int_equal(e.n_appeared, 1);
	assert_true(ino_of(it, "meta/props/a") != a);
	assert_int_equal(mfs_itab_index(it, a, &idx), -ESTALE);
	assert_int_equal(ino_of(it, "meta/props/k"), k);
	mfs_itab_destroy(it);
	mfs_tree_destroy(t1);
	mfs_tree_destroy(t2);
	mfs_tree_destroy(t3);
}

static void a_rename_keeps_the_number_the_kernel_moved(void **state)
{
	(void)state;
	struct fixture f1, f2;
	fixture(&f1, (const char *const[]){"a", "k", NULL});
	fixture(&f2, (const char *const[]){"b", "k", NULL});
	struct mfs_tree *t1 = build(&f1), *t2 = build(&f2);
	struct mfs_itab *it;
	assert_int_equal(mfs_itab_new(&it, t1), 0);
	uint64_t a = ino_of(it, "meta/props/a"), props = ino_of(it, "meta/props");
	struct mfs_itab_move mv = {props, "a", 1, "b", 1};
	struct ev e = {0};
	assert_int_equal(mfs_itab_rebuild(it, t2, &mv, record, &e), 0);
	assert_int_equal(ino_of(it, "meta/props/b"), a);
	assert_int_equal(e.n_appeared, 0);
	assert_int_equal(e.n_vanished, 0);
	mfs_itab_destroy(it);
	mfs_tree_destroy(t1);
	mfs_tree_destroy(t2);
}

static void the_identity_comes_back_and_costs_nothing(void **state)
{
	(void)state;
	struct fixture f1, f2, f3;
	fixture(&f1, (const char *const[]){"k", NULL});
	fixture(&f2, (const char *const[]){"k", "x", NULL});
	fixture(&f3, (const char *const[]){"k", NULL});
	struct mfs_tree *t1 = build(&f1), *t2 = build(&f2), *t3 = build(&f3);
	struct mfs_itab *it;
	assert_int_equal(mfs_itab_new(&it, t1), 0);
	uint64_t mem0 = mfs_itab_mem(it);
	assert_int_equal(mfs_itab_rebuild(it, t2, NULL, NULL, NULL), 0);
	assert_true(mfs_itab_mem(it) > mem0);   /* arrays while numbers are shuffled */
	assert_int_equal(mfs_itab_rebuild(it, t3, NULL, NULL, NULL), 0);
	assert_int_equal(mfs_itab_mem(it), mem0);
	for (uint32_t i = 0; i < mfs_tree_count(t3); i++)
		assert_int_equal(mfs_itab_ino(it, i), (uint64_t)i + 1);
	mfs_itab_destroy(it);
	mfs_tree_destroy(t1);
	mfs_tree_destroy(t2);
	mfs_tree_destroy(t3);
}

static void scratch_files_are_listed_found_renamed_and_freed(void **state)
{
	(void)state;
	struct fixture f;
	fixture(&f, NULL);
	struct mfs_tree *t = build(&f);
	struct mfs_itab *it;
	assert_int_equal(mfs_itab_new(&it, t), 0);
	uint64_t dir = ino_of(it, "weights/b");
	struct mfs_xnode *x = mfs_itab_scratch_add(it, dir, ".data.XyZ", 9, 7);
	struct mfs_xnode *y = mfs_itab_scratch_add(it, dir, "other", 5, 8);
	assert_non_null(x);
	assert_non_null(y);
	assert_true(x->ino > mfs_tree_count(t) && y->ino > x->ino);
	assert_ptr_equal(mfs_itab_scratch_find(it, dir, ".data.XyZ", 9), x);
	assert_null(mfs_itab_scratch_find(it, dir + 1, ".data.XyZ", 9));
	assert_ptr_equal(mfs_itab_x(it, x->ino), x);
	assert_ptr_equal(mfs_itab_scratch_next(it, NULL), x);
	assert_ptr_equal(mfs_itab_scratch_next(it, x), y);
	assert_null(mfs_itab_scratch_next(it, y));

	assert_int_equal(mfs_itab_scratch_move(it, x, dir, "renamed", 7), 0);
	assert_null(mfs_itab_scratch_find(it, dir, ".data.XyZ", 9));
	assert_ptr_equal(mfs_itab_scratch_find(it, dir, "renamed", 7), x);

	/* Unlisted but held by the kernel: kept; let go: freed. */
	uint64_t xi = x->ino;
	x->nlookup = 1;
	mfs_itab_scratch_unlist(it, x);
	mfs_itab_x_put(it, x);
	assert_ptr_equal(mfs_itab_x(it, xi), x);
	assert_ptr_equal(mfs_itab_scratch_next(it, NULL), y);
	x->nlookup = 0;
	mfs_itab_x_put(it, x);
	assert_null(mfs_itab_x(it, xi));

	/* Many state xnodes: the table grows and finds them all. */
	for (uint64_t i = 10001; i <= 11000; i++)
		assert_non_null(mfs_itab_x_get(it, i));
	size_t n = 0;
	for (struct mfs_xnode *z = mfs_itab_x_next(it, NULL); z; z = mfs_itab_x_next(it, z))
		n++;
	assert_int_equal(n, 1001);              /* and y */
	for (uint64_t i = 10001; i <= 11000; i++)
		assert_int_equal(mfs_itab_x(it, i)->ino, i);
	mfs_itab_destroy(it);
	mfs_tree_destroy(t);
}

static void a_scratch_file_renamed_over_data_takes_its_place(void **state)
{
	(void)state;
	struct fixture f;
	fixture(&f, NULL);
	struct mfs_tree *t = build(&f);
	struct mfs_itab *it;
	assert_int_equal(mfs_itab_new(&it, t), 0);
	uint32_t di;
	assert_int_equal(mfs_tree_resolve(t, "weights/b/data", &di), 0);
	uint64_t dino = mfs_itab_ino(it, di);
	struct mfs_xnode *dx = mfs_itab_x_get(it, dino);     /* state of the old file */
	assert_non_null(dx);
	dx->ver = 5;
	struct mfs_xnode *x = mfs_itab_scratch_add(it, ino_of(it, "weights/b"), ".data.1", 7, 3);
	assert_non_null(x);
	x->nlookup = 2;
	x->set = MFS_XA_MTIME;
	uint64_t sino = x->ino;

	assert_int_equal(mfs_itab_take_number(it, di, x), 0);
	/* The name has the scratch file's number, the old one is dead. */
	assert_int_equal(mfs_itab_ino(it, di), sino);
	uint32_t idx;
	assert_int_equal(mfs_itab_index(it, sino, &idx), 0);
	assert_int_equal(idx, di);
	assert_int_equal(mfs_itab_index(it, dino, &idx), -ESTALE);
	/* It is the entry's state now: unlisted, attributes kept; the old state is gone. */
	assert_ptr_equal(mfs_itab_x(it, sino), x);
	assert_int_equal(x->kind, MFS_XN_STATE);
	assert_false(x->listed);
	assert_int_equal(x->set, MFS_XA_MTIME);
	assert_null(mfs_itab_scratch_next(it, NULL));
	assert_null(mfs_itab_x(it, dino));
	/* Every other entry keeps its number. */
	for (uint32_t i = 0; i < mfs_tree_count(t); i++)
		if (i != di)
			assert_int_equal(mfs_itab_ino(it, i), (uint64_t)i + 1);
	/* Not a scratch file any more, and not the root: refused. */
	assert_int_equal(mfs_itab_take_number(it, di, x), -EINVAL);
	struct mfs_xnode *y = mfs_itab_scratch_add(it, 1, "y", 1, 4);
	assert_int_equal(mfs_itab_take_number(it, 0, y), -EINVAL);

	/* A rebuild by path keeps the new number; a new scratch file gets a fresh one. */
	struct mfs_tree *t2 = build(&f);
	assert_int_equal(mfs_itab_rebuild(it, t2, NULL, NULL, NULL), 0);
	assert_int_equal(ino_of(it, "weights/b/data"), sino);
	assert_int_equal(mfs_itab_index(it, dino, &idx), -ESTALE);
	struct mfs_xnode *z = mfs_itab_scratch_add(it, 1, "z", 1, 5);
	assert_true(z->ino > y->ino);
	assert_int_equal(mfs_itab_index(it, z->ino, &idx), -ESTALE);
	mfs_itab_destroy(it);
	mfs_tree_destroy(t);
	mfs_tree_destroy(t2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(first_tree_is_numbered_index_plus_one),
		cmocka_unit_test(a_new_prop_gets_a_new_number_and_the_rest_keep_theirs),
		cmocka_unit_test(a_removed_prop_is_stale_and_its_number_never_returns),
		cmocka_unit_test(a_rename_keeps_the_number_the_kernel_moved),
		cmocka_unit_test(the_identity_comes_back_and_costs_nothing),
		cmocka_unit_test(scratch_files_are_listed_found_renamed_and_freed),
		cmocka_unit_test(a_scratch_file_renamed_over_data_takes_its_place),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

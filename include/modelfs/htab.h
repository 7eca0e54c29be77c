/*
 * modelfs/htab.h — the one way modelfs grows a chained hash table.
 *
 * Not part of the model API: a helper shared by the codec's staging store
 * (objects by key) and the daemon's inode table (xnodes by inode number),
 * which both keep nodes on singly linked chains hanging off a power-of-two
 * array of buckets, keyed by a 64-bit number.  A node type says where its
 * chain pointer and its key are (offsetof), and the helpers do the rest.
 * Header-only; not installed.
 */
#ifndef MODELFS_HTAB_H
#define MODELFS_HTAB_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The bucket of `key` in a table of `n` buckets (a power of two): the high
 * half of a Fibonacci-hashing product, so sequential keys spread. */
static inline size_t mfs_htab_slot(uint64_t key, size_t n)
{
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (n - 1);
}

/*
 * mfs_htab_grow() - double the bucket array *buckets of *n buckets, moving
 * every node to its new chain.  A node's chain pointer is at byte offset
 * `next_off` and its uint64_t key at `key_off`.  Returns 0, or -ENOMEM with
 * the table unchanged (still correct, with longer chains).
 */
static inline int mfs_htab_grow(void *buckets, size_t *n, size_t next_off, size_t key_off)
{
	void ***bp = buckets;
	size_t nn = *n * 2;
	void **nb = calloc(nn, sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	void **old = *bp;
	for (size_t i = 0; i < *n; i++) {
		void *node = old[i];
		while (node) {
			void **next = (void **)((char *)node + next_off);
			void *after = *next;
			uint64_t key;
			memcpy(&key, (char *)node + key_off, sizeof(key));
			size_t k = mfs_htab_slot(key, nn);
			*next = nb[k];
			nb[k] = node;
			node = after;
		}
	}
	free(old);
	*bp = nb;
	*n = nn;
	return 0;
}

#endif /* MODELFS_HTAB_H */

/*
 * codec/core/arena.c — the bump allocator model descriptions are built from.
 *
 * A model description is thousands of small strings and arrays that all live
 * exactly as long as the model.  Carving them from large blocks and freeing
 * the blocks at once keeps open fast and makes leaks impossible by
 * construction.  Blocks grow geometrically up to 1 MiB; a request larger than
 * a block gets a block of its own.  mfs_arena_alloc() is 16-aligned, arrays
 * are aligned to what their element needs and strings not at all.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

struct block {
	struct block *next;
	size_t size;            /* usable bytes after the header */
	size_t used;
	_Alignas(16) unsigned char data[];
};

/*
 * Two chains of blocks: strings (unaligned) apart from everything else, so
 * that a name between two structs does not cost a struct's alignment.
 */
struct mfs_arena {
	struct block *head;
	struct block *strings;
	uint64_t total;
};

#define MIN_BLOCK (16u << 10)
#define MAX_BLOCK (1u << 20)

struct mfs_arena *mfs_arena_create(void)
{
	return calloc(1, sizeof(struct mfs_arena));
}

void mfs_arena_destroy(struct mfs_arena *a)
{
	if (!a)
		return;
	struct block *chains[2] = {a->head, a->strings};
	for (int i = 0; i < 2; i++) {
		struct block *b = chains[i];
		while (b) {
			struct block *next = b->next;
			free(b);
			b = next;
		}
	}
	free(a);
}

/*
 * `size` bytes aligned to `align` (a power of two <= 16), zeroed, from the
 * chain at `*head`.  Strings take 1 (in their own chain) and arrays the
 * alignment their element size allows, so a description of 300,000 tensors
 * does not spend 16-byte steps on each name and shape (bench/RESULTS.md,
 * "many tensors").
 */
static void *chain_alloc(struct mfs_arena *a, struct block **head, size_t size, size_t align)
{
	struct block *b = *head;
	size_t pad = b ? (align - (b->used & (align - 1))) & (align - 1) : 0;
	if (!b || b->size - b->used < size || b->size - b->used - size < pad) {
		size_t bsize = b ? b->size * 2 : MIN_BLOCK;
		if (bsize > MAX_BLOCK)
			bsize = MAX_BLOCK;
		if (bsize < size)
			bsize = size;
		if (bsize > SIZE_MAX - sizeof(struct block))
			return NULL;
		struct block *nb = malloc(sizeof(struct block) + bsize);
		if (!nb)
			return NULL;
		nb->size = bsize;
		nb->used = 0;
		if (b && size > b->size / 2 && b->size - b->used >= MIN_BLOCK) {
			/* A big request: keep the current block as head so its
			 * free space is not wasted. */
			nb->next = b->next;
			b->next = nb;
		} else {
			nb->next = b;
			*head = nb;
		}
		b = nb;
		pad = 0;        /* a block's data is 16-aligned */
		a->total += bsize;
	}
	b->used += pad;
	void *p = b->data + b->used;
	b->used += size;
	memset(p, 0, size);
	return p;
}

static void *arena_alloc(struct mfs_arena *a, size_t size, size_t align)
{
	return chain_alloc(a, align == 1 ? &a->strings : &a->head, size, align);
}

void *mfs_arena_alloc(struct mfs_arena *a, size_t size)
{
	return arena_alloc(a, size, 16);
}

void *mfs_arena_array(struct mfs_arena *a, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	size_t total = n * size;
	/* An element's alignment divides its size: the lowest set bit of the
	 * size is enough (at most 16, what malloc promises). */
	size_t align = size & (~size + 1);
	if (align == 0 || align > 16)
		align = 16;
	return arena_alloc(a, total ? total : 1, align);
}

char *mfs_arena_strndup(struct mfs_arena *a, const char *s, size_t len)
{
	if (len == SIZE_MAX)
		return NULL;
	char *p = arena_alloc(a, len + 1, 1);
	if (!p)
		return NULL;
	if (len)
		memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *mfs_arena_strdup(struct mfs_arena *a, const char *s)
{
	return mfs_arena_strndup(a, s, strlen(s));
}

char *mfs_arena_printf(struct mfs_arena *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *p = arena_alloc(a, (size_t)n + 1, 1);
	if (!p)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

uint64_t mfs_arena_bytes(const struct mfs_arena *a)
{
	return a->total;
}

void mfs_buf_add(struct mfs_buf *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (n > SIZE_MAX - b->len - 1) {
		b->oom = true;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

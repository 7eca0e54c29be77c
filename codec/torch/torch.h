/*
 * codec/torch/torch.h — what the PyTorch reader (torch.save zip files), its
 * zip directory reader, its pickle reader and its format row share.
 *
 * Internal to torch/.  The layout of the files and the rules they must
 * satisfy are at the top of zip.c (the container), pickle.c (the pickle
 * subset) and reader.c (what a checkpoint becomes).  The limits below are
 * listed in mount.modelfs(8), LIMITS; keep the two in step.
 */
#ifndef MODELFS_CODEC_TORCH_H
#define MODELFS_CODEC_TORCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

/* ------------------------------------------------------------ limits */

#define TZ_MAX_ENTRIES          1000000u        /* members of one zip */
#define TZ_MAX_CDIR             (256ull << 20)  /* bytes of its central directory */
#define TZ_MAX_NAME             4096u           /* bytes of a member name */
#define TZ_MAX_INFLATE          (64ull << 20)   /* bytes a deflated member inflates to */
#define TZ_MAX_INFLATE_ALL      (1ull << 30)    /* ... all of an archive's together */
#define TZ_MAX_RATIO            256u            /* inflated / compressed size, beyond ... */
#define TZ_RATIO_FREE           (1ull << 20)    /* ... this many inflated bytes */

#define PK_MAX_PICKLE           (1ull << 30)    /* bytes of data.pkl */
#define PK_MAX_STRING           (16u << 20)     /* bytes of one string or bytes value */
#define PK_MAX_STACK            65536u          /* values on the stack at once */
#define PK_MAX_MARKS            4096u           /* open MARKs at once */
#define PK_MAX_MEMO             (1u << 24)      /* memo entries */
#define PK_MAX_DEPTH            64u             /* nesting of containers */
#define PK_MAX_ITEMS            (1u << 24)      /* elements of one container */
#define PK_MAX_VALUES           (1u << 24)      /* values of one pickle */

/* ------------------------------------------------------------ zip */

/* One member of the archive, from the central directory and its local header. */
struct tz_entry {
	char *name;             /* NUL-terminated (names holding NUL are refused) */
	size_t name_len;
	uint16_t method;        /* 0 = stored */
	uint16_t flags;         /* general-purpose bits */
	uint32_t crc;
	uint64_t csize, usize;
	uint64_t local_off;     /* local header */
	uint64_t data_off;      /* first byte of the member's data */
	uint64_t cdir_off;      /* its central directory record */
};

struct tz_archive {
	struct tz_entry *ents;  /* sorted by name */
	size_t n;
	uint64_t cdir_off, cdir_size;
};

/*
 * tz_open() - read the central directory of the zip in `src` (`size`
 * bytes): every entry and local header checked against the file (zip.c).
 * Returns 0, or -errno with one line in `err` that starts with `display`.
 * Free with tz_free().
 */
int tz_open(struct tz_archive *z, struct mfs_source *src, const char *display, char *err,
            size_t errlen);
void tz_free(struct tz_archive *z);
/* The member named `name`, or NULL. */
const struct tz_entry *tz_find(const struct tz_archive *z, const char *name);

/* Deflate, the zip method torch.jit.save uses for code (inflate.c). */
#define TZ_DEFLATE 8
/*
 * tz_inflate_check() - inflate deflated member `e` of `src` into nothing:
 * within the limits above and *budget (inflated bytes left for the archive,
 * reduced by this member's), a whole stream, its sizes and CRC-32 as the
 * directory says.  0, or -EUCLEAN / -EFBIG with one line in `err`.
 */
int tz_inflate_check(struct mfs_source *src, const struct tz_entry *e, uint64_t *budget,
                     const char *display, char *err, size_t errlen);
/* tz_inflate() - inflate it into out[0 .. e->usize): 0, -EIO, -ENOMEM. */
int tz_inflate(struct mfs_source *src, const struct tz_entry *e, uint8_t *out);

/* ------------------------------------------------------------ pickle */

enum pk_kind {
	PK_NONE = 1, PK_BOOL, PK_INT, PK_FLOAT, PK_STR, PK_BYTES,
	PK_TUPLE, PK_LIST, PK_DICT, PK_SET,
	PK_GLOBAL,              /* a global that is a value (a dtype, a storage class) */
	PK_STORAGE,             /* a persistent id ('storage', type, key, location, numel) */
	PK_TENSOR,              /* the result of a tensor rebuild function */
};

struct pk_val;

struct pk_tensor {
	const struct pk_storage *storage;
	int32_t dtype;
	int64_t offset;                 /* in elements */
	size_t rank;
	int64_t dims[MFS_MAX_RANK];
	int64_t strides[MFS_MAX_RANK];
};

struct pk_storage {
	int32_t dtype;                  /* MFS_DT_UNDEFINED for an untyped storage */
	const char *key;
	int64_t numel;
};

/* One value (32 bytes: a big pickle makes millions). */
struct pk_val {
	uint8_t kind;                   /* enum pk_kind */
	uint8_t depth;                  /* containers nested inside, 0 for a leaf */
	bool b;                         /* BOOL */
	uint16_t gid;                   /* GLOBAL: its row in pickle.c's table */
	union {
		int64_t i;              /* INT, BOOL */
		double f;               /* FLOAT */
		struct {                /* STR, BYTES (s[len] == 0); GLOBAL: "module.name" */
			const char *s;
			size_t len;
		};
		struct {                /* TUPLE, LIST, SET; DICT: keys and values */
			struct pk_val **items;
			struct pk_val **vals;
			uint32_t n, cap;
		};
		struct pk_storage *sto; /* STORAGE */
		struct pk_tensor *t;    /* TENSOR */
	};
};

/* What a pickle gives: the top value, and the globals it names. */
struct pk_result {
	struct pk_val *top;
	char **globals;                 /* "module.name", first-seen order */
	size_t n_globals;
};

/*
 * pk_load() - read the pickle `buf[0 .. len)` symbolically (pickle.c):
 * nothing in it is called or executed.  Values come from `a`.  Returns 0,
 * or -EUCLEAN (-EFBIG past a limit, -ENOMEM) with one line in `err`, after
 * `display`, naming the opcode or global and its offset.
 */
int pk_load(struct pk_result *out, struct mfs_arena *a, const uint8_t *buf, size_t len,
            const char *display, char *err, size_t errlen);

/* ------------------------------------------------------------ the model */

#define TZ_CACHE_SLOTS 8        /* inflated members kept (reader.c) */

/* How one tensor maps onto its storage (m->priv->tens[id]). */
struct tt_info {
	unsigned src;           /* the source file (a shard) holding it */
	uint64_t base;          /* storage's first byte in that file */
	uint64_t extent;        /* bytes of the storage the tensor may touch */
	uint64_t lo, hi;        /* the bytes of the file it does touch */
	int64_t offset;         /* in elements */
	unsigned esize;
	int64_t strides[MFS_MAX_RANK];
	const struct tz_entry *member;
	bool deflated;          /* a TorchScript member shown inflated (inflate.c) */
};

struct tt_state {
	struct tz_archive zip;  /* the model file's (a single checkpoint) */
	struct tz_archive *shards;      /* a sharded one's, n_shards of them (malloc'd) */
	size_t n_shards;
	struct tt_info *tens;   /* desc.n_tensors entries */
	bool torchscript;
	/* The deflated members read last, kept inflated (a read of a member in
	 * pieces must not inflate it each time, nor two files read side by side
	 * evict each other): at most TZ_CACHE_SLOTS, TZ_MAX_INFLATE bytes in all. */
	pthread_mutex_t zlock;
	bool zlock_init;
	struct tz_cached {
		const struct tz_entry *member;  /* NULL: free */
		uint8_t *buf;
		uint64_t used;                  /* a clock: the larger, the more recent */
	} zcache[TZ_CACHE_SLOTS];
	uint64_t zclock;
};

int mfs_torch_sniff(const uint8_t *head, size_t len, uint64_t size);
int mfs_torch_open(struct mfs_model *m, const char *display, char *err, size_t errlen);
void mfs_torch_close(struct mfs_model *m);
ssize_t mfs_torch_tensor_read(const struct mfs_model *m, const struct mfs_tensor *t, void *buf,
                              size_t len, uint64_t off);
int mfs_torch_splice(struct mfs_splice *out, const struct mfs_model *m,
                     const struct mfs_edit_set *e, char *err, size_t errlen);

#endif /* MODELFS_CODEC_TORCH_H */

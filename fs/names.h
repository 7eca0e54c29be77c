/*
 * fs/names.h — model names as path components (doc/design.md §3.3).
 *
 * A model may name a tensor, a node or a metadata key anything at all,
 * including "", ".", "..", "a/b", control bytes and 10 kB of text.  Before
 * such a name becomes one component of a path in the mount it is encoded:
 *
 *   '%'  '/'  bytes < 0x20  0x7f     percent-encoded: %25 %2F %0A ... %7F
 *   "."  ".."                        %2E and %2E%2E
 *   ""                               %
 *   longer than `max` bytes          cut, then "%~" and 16 hex digits of a
 *                                    64-bit hash of the whole name
 *
 * Every other byte (UTF-8 included) is kept as it is, so ordinary names read
 * as themselves.  The encoder never produces "", ".", "..", a '/' or a NUL,
 * so no model can make a path that leaves its directory.  Encoding is
 * injective: the untruncated forms decode back to the name, and a truncated
 * form is marked by "%~", which no untruncated form contains ('%' is
 * otherwise always followed by two hex digits, or ends the lone "%").  Two
 * truncated forms collide only when two long names share their first ~230
 * bytes and their hash; the tree builder still catches that (see tree.c).
 *
 * No FUSE here: fs_core is unit-tested without a mount.
 */
#ifndef MODELFS_FS_NAMES_H
#define MODELFS_FS_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest path component Linux accepts (NAME_MAX). */
#define MFS_NAME_MAX 255

/* The smallest `max` mfs_name_encode() accepts: room for a cut name. */
#define MFS_NAME_MIN_MAX 32

/*
 * mfs_name_encode() - encode `name[0 .. len)` into one path component.
 * @out:  receives the component and a NUL; must hold `max + 1` bytes.
 * @max:  the longest component wanted, MFS_NAME_MIN_MAX .. MFS_NAME_MAX
 *        (callers that add a prefix or a suffix pass less than 255).
 * The cut of a long name never splits a %XX escape or a UTF-8 sequence.
 * Returns the length of the component: 1 .. max.
 */
size_t mfs_name_encode(char *out, size_t max, const char *name, size_t len);

/*
 * mfs_name_is_plain() - true when mfs_name_encode() would return `name`
 * unchanged (nothing to escape, not "." or "..", not empty, at most `max`
 * bytes), so a caller can use the model's own bytes without a copy.
 */
bool mfs_name_is_plain(const char *name, size_t len, size_t max);

/*
 * mfs_name_decode() - the name a component encodes.
 * @out:     receives the name (not NUL-terminated: it may contain NUL
 *           bytes); must hold `len` bytes (a name is never longer than its
 *           encoding).
 * @out_len: receives the length of the name.
 * Returns 0, -EINVAL when `comp` is not something mfs_name_encode() makes
 * (a bad escape, a bare "." or ".."), or -ENAMETOOLONG for a truncated
 * component, whose full name only the tree's `name` files know.
 */
int mfs_name_decode(char *out, size_t *out_len, const char *comp, size_t len);

/*
 * Splitting a tensor name into a path under weights/ (doc/design.md §3.1):
 * "layer4.1.conv2.weight" -> layer4 / 1 / conv2 / weight.  The name is cut
 * at every '/' and '.', empty segments are dropped, and when no segment is
 * left (".", "", "/..") the whole name is the one segment.  Segments are
 * raw bytes of the name: encode each with mfs_name_encode().
 *
 *	struct mfs_split s;
 *	mfs_split_init(&s, name, strlen(name));
 *	while (mfs_split_next(&s, &seg, &seg_len))
 *		...
 */
struct mfs_split {
	const char *name;
	size_t len;
	size_t pos;
	bool any;               /* a segment was returned */
	bool done;
};

void mfs_split_init(struct mfs_split *s, const char *name, size_t len);
bool mfs_split_next(struct mfs_split *s, const char **seg, size_t *seg_len);

/*
 * mfs_name_split_path() - the whole split-and-encoded path as one string,
 * segments joined by '/' ("layer4/1/conv2/weight"): for tests, messages and
 * tools.  Writes at most `len` bytes including the NUL into `buf` and returns
 * the length the full path needs (like snprintf).
 */
size_t mfs_name_split_path(char *buf, size_t len, const char *name, size_t name_len);

/*
 * mfs_name_hash() - a seeded 64-bit hash of `data[0 .. len)`; fast, well
 * mixed, not cryptographic.  The encoder uses seed 0 (names must be stable
 * from mount to mount); the tree's lookup table uses a random seed.
 */
uint64_t mfs_name_hash(const void *data, size_t len, uint64_t seed);

#endif /* MODELFS_FS_NAMES_H */

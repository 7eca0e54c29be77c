/*
 * codec/txn/version.h — the names of versioned commits (the template
 * language is documented atop version.c and in modelfs(1)).
 *
 * Format-neutral and FUSE-free; used by the commit driver (apply.c).
 */
#ifndef MODELFS_CODEC_VERSION_H
#define MODELFS_CODEC_VERSION_H

#include <stdbool.h>
#include <stddef.h>

/*
 * mfs_version_check() - is `tmpl` a valid template?  Returns 0, or -EINVAL
 * with one line in `err` (unknown placeholder, '/', lone brace, bad K).
 */
int mfs_version_check(const char *tmpl, char *err, size_t errlen);

/* mfs_version_uses_hash() - does `tmpl` (valid) name the new file's SHA-256? */
bool mfs_version_uses_hash(const char *tmpl);

/*
 * mfs_version_name() - the name template `tmpl` gives to a new version of
 * the model first mounted as `orig` (its {stem} and {ext}), whose SHA-256 is
 * `sha_hex` (64 hex digits; NULL before it is known: zeros stand in, for a
 * check of the rest).  {n} counts the files of directory `dirfd` (-1: no
 * listing, {n} is 1) whose names fit the template.  Does not check that the
 * name is free.  Returns 0, -EINVAL (bad template, or a result that is
 * empty, "." or "..", hidden, or names a side file) or -ENAMETOOLONG, with
 * one line in `err`, or -errno from listing the directory.
 */
int mfs_version_name(char *out, size_t outlen, const char *tmpl, const char *orig,
                     const char *sha_hex, int dirfd, char *err, size_t errlen);

/*
 * mfs_version_kind() - may `name` be the name of a version of a model that
 * is (`packed`) or is not in a place that rewrites its own file (a pack)?
 * A version must open as what is mounted: a pack's version is a pack, so
 * its name must be one the pack place claims (MODEL.mfs); a plain model's
 * must not be.  0, or -EINVAL with one line in `err`.
 */
int mfs_version_kind(const char *name, bool packed, char *err, size_t errlen);

#endif /* MODELFS_CODEC_VERSION_H */

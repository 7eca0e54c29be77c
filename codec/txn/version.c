/*
 * codec/txn/version.c — the names of versioned commits: the template
 * language of `modelfs commit --to TEMPLATE` and `-o commit_to=TEMPLATE`.
 *
 * A versioned commit writes the committed model as a new file beside the
 * one mounted and never overwrites anything (apply.c drives it, commit.c
 * writes it).  Its name comes from a template of literal text and
 * placeholders:
 *
 *   {n}          the version number: one more than the largest number that
 *                an existing file of the directory carries at this place of
 *                a name that fits the template (any hash where the template
 *                has one), 1 when no file fits.  So model_v{n}_{sha256:12}.onnx
 *                goes v1, v2, v3 whatever the hashes are.
 *   {sha256}     the new file's SHA-256, 64 lower-case hex digits, hashed
 *                from the bytes as they are written (commit.c).
 *   {sha256:K}   its first K hex digits, 4 <= K <= 64.
 *   {stem}       the name of the file the mount was opened on, less its
 *                last extension ("model" of "model.onnx"; the whole name
 *                when it has none).  The original's, not the version
 *                mounted now, so that {stem}_v{n}{ext} gives model_v2.onnx
 *                after model_v1.onnx, not model_v1_v1.onnx.
 *   {ext}        that extension with its dot (".onnx"), or "".
 *
 * Anything else in braces, a lone brace, a '/' or a control character
 * (a newline would make a name no status line can show) is refused, and so
 * is a result that is empty, "." or "..", starts with '.' (hidden names
 * are modelfs's side files), contains ".modelfs-" or is longer than
 * NAME_MAX.  These checks run before anything is written; that the name
 * does not exist is checked before writing too (when the name does not
 * depend on the hash) and again, atomically, by the rename that installs
 * the file (renameat2 RENAME_NOREPLACE, commit.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "modelfs/model.h"
#include "txn/version.h"

enum ph { PH_LIT, PH_N, PH_SHA, PH_STEM, PH_EXT };

/* One piece of a template: literal text or a placeholder. */
struct tok {
	enum ph kind;
	const char *s;          /* PH_LIT: the text */
	size_t len;             /* PH_LIT: its length; PH_SHA: hex digits */
};

#define MAX_TOKS 64

static int say(char *err, size_t errlen, int rc, const char *fmt, const char *what)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, what);
	return rc;
}

/* Cut `tmpl` into tokens.  0, or -EINVAL with a line in err. */
static int lex(struct tok *out, size_t *n_out, const char *tmpl, char *err, size_t errlen)
{
	size_t n = 0;
	const char *p = tmpl;
	if (!*p)
		return say(err, errlen, -EINVAL, "bad version template: it is empty%s", "");
	while (*p) {
		if (n >= MAX_TOKS)
			return say(err, errlen, -EINVAL, "bad version template '%s': too many parts",
			           tmpl);
		if (*p == '/')
			return say(err, errlen, -EINVAL, "bad version template '%s': a version is "
			           "written beside the model, so its name has no '/'", tmpl);
		if (*p == '}')
			return say(err, errlen, -EINVAL, "bad version template '%s': a '}' without "
			           "its '{'", tmpl);
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return say(err, errlen, -EINVAL, "bad version template: it holds a control "
			           "character%s", "");
		if (*p != '{') {
			const char *q = p;
			while (*q && *q != '{' && *q != '}' && *q != '/' &&
			       (unsigned char)*q >= 0x20 && *q != 0x7f)
				q++;
			out[n++] = (struct tok){PH_LIT, p, (size_t)(q - p)};
			p = q;
			continue;
		}
		const char *close = strchr(p, '}');
		if (!close)
			return say(err, errlen, -EINVAL, "bad version template '%s': a '{' without "
			           "its '}'", tmpl);
		size_t len = (size_t)(close - p - 1);
		const char *in = p + 1;
		struct tok t = {PH_LIT, NULL, 0};
		if (len == 1 && in[0] == 'n') {
			t.kind = PH_N;
		} else if (len == 4 && !memcmp(in, "stem", 4)) {
			t.kind = PH_STEM;
		} else if (len == 3 && !memcmp(in, "ext", 3)) {
			t.kind = PH_EXT;
		} else if (len == 6 && !memcmp(in, "sha256", 6)) {
			t.kind = PH_SHA;
			t.len = 64;
		} else if (len > 7 && !memcmp(in, "sha256:", 7) && len <= 9) {
			unsigned k = 0;
			bool ok = true;
			for (size_t i = 7; i < len; i++) {
				if (in[i] < '0' || in[i] > '9')
					ok = false;
				else
					k = k * 10 + (unsigned)(in[i] - '0');
			}
			if (!ok || k < 4 || k > 64) {
				char what[32];
				snprintf(what, sizeof(what), "%.*s", (int)len, in);
				return say(err, errlen, -EINVAL, "bad version template: {%s}: K of "
				           "{sha256:K} is a number of hex digits from 4 to 64", what);
			}
			t.kind = PH_SHA;
			t.len = k;
		} else {
			char what[72];
			snprintf(what, sizeof(what), "%.*s", (int)(len > 64 ? 64 : len), in);
			return say(err, errlen, -EINVAL, "bad version template: unknown placeholder "
			           "{%s} (known: {n} {sha256} {sha256:K} {stem} {ext})", what);
		}
		out[n++] = t;
		p = close + 1;
	}
	*n_out = n;
	return 0;
}

/* The stem and extension of `orig`. */
static void split_name(const char *orig, size_t *stem_len, const char **ext)
{
	const char *dot = strrchr(orig, '.');
	if (!dot || dot == orig) {
		*stem_len = strlen(orig);
		*ext = orig + *stem_len;
	} else {
		*stem_len = (size_t)(dot - orig);
		*ext = dot;
	}
}

int mfs_version_check(const char *tmpl, char *err, size_t errlen)
{
	struct tok toks[MAX_TOKS];
	size_t n;
	return lex(toks, &n, tmpl, err, errlen);
}

bool mfs_version_uses_hash(const char *tmpl)
{
	struct tok toks[MAX_TOKS];
	size_t n;
	if (lex(toks, &n, tmpl, NULL, 0) < 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (toks[i].kind == PH_SHA)
			return true;
	return false;
}

/*
 * Does `name` fit tokens [i, n), and what number does its {n} carry?  A
 * backtracking match: {n} takes 1 to 19 decimal digits without a leading
 * zero, {sha256:K} exactly K hex digits.  Templates are short and names at
 * most NAME_MAX, so the cost is small.
 */
static bool fits(const struct tok *t, size_t i, size_t n, const char *name, const char *orig,
                 unsigned long long *num)
{
	if (i == n)
		return *name == '\0';
	size_t stem_len;
	const char *ext;
	split_name(orig, &stem_len, &ext);
	switch (t[i].kind) {
	case PH_LIT:
		return !strncmp(name, t[i].s, t[i].len) &&
		       fits(t, i + 1, n, name + t[i].len, orig, num);
	case PH_STEM:
		return !strncmp(name, orig, stem_len) && fits(t, i + 1, n, name + stem_len, orig, num);
	case PH_EXT:
		return !strncmp(name, ext, strlen(ext)) &&
		       fits(t, i + 1, n, name + strlen(ext), orig, num);
	case PH_SHA:
		for (size_t k = 0; k < t[i].len; k++)
			if (!((name[k] >= '0' && name[k] <= '9') || (name[k] >= 'a' && name[k] <= 'f')))
				return false;
		return fits(t, i + 1, n, name + t[i].len, orig, num);
	case PH_N: {
		unsigned long long v = 0;
		if (name[0] < '1' || name[0] > '9')
			return false;
		for (size_t k = 0; k < 19 && name[k] >= '0' && name[k] <= '9'; k++) {
			v = v * 10 + (unsigned)(name[k] - '0');
			unsigned long long sub = 0;
			if (fits(t, i + 1, n, name + k + 1, orig, &sub)) {
				*num = v > sub ? v : sub;
				return true;
			}
		}
		return false;
	}
	}
	return false;
}

int mfs_version_name(char *out, size_t outlen, const char *tmpl, const char *orig,
                     const char *sha_hex, int dirfd, char *err, size_t errlen)
{
	struct tok toks[MAX_TOKS];
	size_t n;
	int rc = lex(toks, &n, tmpl, err, errlen);
	if (rc < 0)
		return rc;
	unsigned long long next = 1;
	bool has_n = false;
	for (size_t i = 0; i < n; i++)
		has_n |= toks[i].kind == PH_N;
	if (has_n && dirfd >= 0) {
		/* The largest {n} of the names in the directory that fit. */
		int dfd = mfs_io->openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		if (!d) {
			rc = -errno;
			if (dfd >= 0)
				mfs_io->close(dfd);
			if (err && errlen)
				snprintf(err, errlen, "cannot list the model's directory: %s",
				         strerror(-rc));
			return rc;
		}
		struct dirent *de;
		while ((de = readdir(d))) {
			unsigned long long v = 0;
			if (de->d_name[0] != '.' && fits(toks, 0, n, de->d_name, orig, &v) &&
			    v >= next && v < 9000000000000000000ull)
				next = v + 1;
		}
		closedir(d);
	}
	size_t stem_len, pos = 0;
	const char *ext;
	split_name(orig, &stem_len, &ext);
	char buf[NAME_MAX + 64];
	for (size_t i = 0; i < n; i++) {
		const char *s = NULL;
		size_t len = 0;
		char num[24];
		switch (toks[i].kind) {
		case PH_LIT:
			s = toks[i].s;
			len = toks[i].len;
			break;
		case PH_N:
			len = (size_t)snprintf(num, sizeof(num), "%llu", next);
			s = num;
			break;
		case PH_SHA:
			s = sha_hex ? sha_hex : "0000000000000000000000000000000000000000000000000000000000000000";
			len = toks[i].len;
			break;
		case PH_STEM:
			s = orig;
			len = stem_len;
			break;
		case PH_EXT:
			s = ext;
			len = strlen(ext);
			break;
		}
		if (pos + len > NAME_MAX)
			return say(err, errlen, -ENAMETOOLONG, "version template '%s' makes a name "
			           "longer than the file system allows", tmpl);
		memcpy(buf + pos, s, len);
		pos += len;
	}
	buf[pos] = '\0';
	if (!pos || !strcmp(buf, ".") || !strcmp(buf, ".."))
		return say(err, errlen, -EINVAL, "version template '%s' makes an empty name, "
		           "'.' or '..'", tmpl);
	if (buf[0] == '.' || strstr(buf, ".modelfs-"))
		return say(err, errlen, -EINVAL, "version template '%s' makes a hidden name "
		           "(a leading '.', or '.modelfs-'), which modelfs keeps for its own files",
		           tmpl);
	if (pos + 1 > outlen)
		return say(err, errlen, -ENAMETOOLONG, "version template '%s': name too long", tmpl);
	memcpy(out, buf, pos + 1);
	return 0;
}

int mfs_version_kind(const char *name, bool packed, char *err, size_t errlen)
{
	if (mfs_model_path_rewrites(name) == packed)
		return 0;
	if (err && errlen)
		snprintf(err, errlen, packed ?
		         "%s would not open as a pack, and a version of a pack is a pack: end "
		         "the template in .mfs" :
		         "%s would open as a pack, but a version of this model is the model "
		         "itself: end the template in its own extension", name);
	return -EINVAL;
}

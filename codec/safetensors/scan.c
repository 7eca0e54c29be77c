/*
 * codec/safetensors/scan.c — one pass over a safetensors header, without a
 * document tree.
 *
 * The header of a checkpoint with 300,000 tensors is some 30 MB of JSON.
 * Parsed into a jansson tree it took eleven times that in memory and seconds
 * of allocation, all of it thrown away once the description was built.
 * This scanner reads the header's bytes once, front to back, and hands the
 * reader (reader.c) each entry as it completes: a tensor entry as the
 * kinds and values of its "dtype", "shape" and "data_offsets" (struct
 * st_rawent), each "__metadata__" pair as a key and a value.  Nothing it
 * allocates outlives the pass but what the reader keeps.
 *
 * WHAT IT ACCEPTS, AND WHY THAT IS ENOUGH
 *
 * The scanner accepts a subset of what jansson (the reference parser, with
 * the reader's flags) accepts, and on that subset it sees the same values:
 *
 *   - RFC 8259 JSON: objects, arrays, strings, integers, true, false, null,
 *     whitespace of space, tab, LF and CR only, nothing after the top-level
 *     object but whitespace;
 *   - strings of strict UTF-8 (no overlong form, no surrogate, nothing past
 *     U+10FFFF), no raw control byte, the escapes of RFC 8259 with
 *     surrogate pairs joined; \u0000 in a value (JSON_ALLOW_NUL), never in
 *     a key;
 *   - integers in the range of int64 (jansson's json_int_t);
 *   - containers nested at most SCAN_MAX_DEPTH deep (jansson: 2048);
 *   - no object, at any level, with a key twice (JSON_REJECT_DUPLICATES).
 *
 * It says no (ST_SCAN_REFERENCE) to everything else, including a real
 * number anywhere: reals never occur in a well-formed header, and whether
 * jansson takes one (overflow) is jansson's call.  On that answer the
 * reader parses the header with jansson as it always did, so a file outside
 * the subset gets exactly the verdict and the message it always got, and
 * only the subset — every header a real writer produces — takes this pass.
 *
 * Entries are delivered in file order, which is jansson's iteration order.
 * When a callback returns ST_SCAN_STOP (it found the first broken entry) the
 * scan goes on to the end without calling back, because a syntax error or a
 * duplicate later in the header is what jansson would have reported.
 * Duplicates are found by sorting each object's keys when it closes
 * (O(n log n) whatever the keys; no hash an attacker could flood).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors/st.h"

#define SCAN_MAX_DEPTH  64      /* containers; deeper goes to the reference parser */

/* A key of an open object: its decoded bytes, which stay put until the pass ends. */
struct key {
	const char *p;
	size_t len;
};

/* The keys of one open object. */
struct keys {
	struct key *v;
	size_t n, cap;
};

struct scan {
	const unsigned char *p, *end;
	int verdict;                    /* 0, ST_SCAN_REFERENCE or -errno: stop at once */
	bool stopped;                   /* a callback said ST_SCAN_STOP: no more calls */
	int depth;
	struct keys levels[SCAN_MAX_DEPTH + 1];
	struct mfs_arena *tmp;          /* escaped keys, so that a later string cannot move them */
	char *sbuf;                     /* the last decoded string that had escapes */
	size_t scap;
	char *dbuf;                     /* an entry's "dtype" string, until the entry ends */
	size_t dcap;
	const struct st_scan_ops *ops;
	void *arg;
};

static bool refuse(struct scan *s)
{
	if (!s->verdict)
		s->verdict = ST_SCAN_REFERENCE;
	return false;
}

static bool fail(struct scan *s, int rc)
{
	if (!s->verdict || s->verdict == ST_SCAN_REFERENCE)
		s->verdict = rc;
	return false;
}

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

/* The next byte after whitespace, or -1 at the end. */
static int peek(struct scan *s)
{
	skip_ws(s);
	return s->p < s->end ? *s->p : -1;
}

static bool expect(struct scan *s, int c)
{
	if (peek(s) != c)
		return refuse(s);
	s->p++;
	return true;
}

/* After a member or an element: 1 at `close` (consumed), 0 at ',', -1 otherwise. */
static int next(struct scan *s, int close)
{
	int c = peek(s);
	if (c != close && c != ',') {
		refuse(s);
		return -1;
	}
	s->p++;
	return c == close;
}

/* ------------------------------------------------------------ strings */

/*
 * Length of the strict UTF-8 sequence at p (lead byte >= 0x80), or 0 when
 * it is not one: a stray continuation byte, an overlong form, a surrogate,
 * a code point past U+10FFFF, or a sequence cut by `end`.
 */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0];
	size_t n;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static int hex4(const unsigned char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		int c = p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v << 4 | d;
	}
	return v;
}

static bool sbuf_put(struct scan *s, size_t *o, const void *p, size_t n)
{
	if (!n)
		return true;
	if (*o + n > s->scap) {
		size_t cap = s->scap ? s->scap : 256;
		while (cap < *o + n)
			cap *= 2;
		char *b = realloc(s->sbuf, cap);
		if (!b)
			return fail(s, -ENOMEM);
		s->sbuf = b;
		s->scap = cap;
	}
	memcpy(s->sbuf + *o, p, n);
	*o += n;
	return true;
}

/*
 * The string at s->p (its opening quote): its decoded bytes in *out and
 * *len, pointing into the header when it has no escape and into s->sbuf
 * (valid until the next string with escapes) otherwise.  *nul: it holds a
 * decoded U+0000.
 */
static bool scan_string(struct scan *s, const char **out, size_t *len, bool *nul)
{
	const unsigned char *p = s->p + 1, *start = p, *end = s->end;
	*nul = false;
	for (;;) {
		if (p >= end)
			return refuse(s);
		unsigned c = *p;
		if (c == '"') {
			*out = (const char *)start;
			*len = (size_t)(p - start);
			s->p = p + 1;
			return true;
		}
		if (c == '\\')
			break;
		if (c < 0x20)
			return refuse(s);
		if (c < 0x80) {
			p++;
			continue;
		}
		size_t k = utf8_len(p, end);
		if (!k)
			return refuse(s);
		p += k;
	}

	/* Escapes: decode into sbuf. */
	size_t o = 0;
	if (!sbuf_put(s, &o, start, (size_t)(p - start)))
		return false;
	for (;;) {
		if (p >= end)
			return refuse(s);
		unsigned c = *p;
		if (c == '"')
			break;
		if (c < 0x20)
			return refuse(s);
		if (c >= 0x80) {
			size_t k = utf8_len(p, end);
			if (!k || !sbuf_put(s, &o, p, k))
				return k ? false : refuse(s);
			p += k;
			continue;
		}
		if (c != '\\') {
			if (!sbuf_put(s, &o, p, 1))
				return false;
			p++;
			continue;
		}
		if (end - p < 2)
			return refuse(s);
		unsigned char b;
		switch (p[1]) {
		case '"': b = '"'; break;
		case '\\': b = '\\'; break;
		case '/': b = '/'; break;
		case 'b': b = '\b'; break;
		case 'f': b = '\f'; break;
		case 'n': b = '\n'; break;
		case 'r': b = '\r'; break;
		case 't': b = '\t'; break;
		case 'u': {
			if (end - p < 6)
				return refuse(s);
			int v = hex4(p + 2);
			if (v < 0 || (v >= 0xdc00 && v <= 0xdfff))
				return refuse(s);
			uint32_t cp = (uint32_t)v;
			p += 6;
			if (v >= 0xd800 && v <= 0xdbff) {
				if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
					return refuse(s);
				int lo = hex4(p + 2);
				if (lo < 0xdc00 || lo > 0xdfff)
					return refuse(s);
				cp = 0x10000 + (((uint32_t)v - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
				p += 6;
			}
			unsigned char u[4];
			size_t n;
			if (cp < 0x80) {
				u[0] = (unsigned char)cp;
				n = 1;
			} else if (cp < 0x800) {
				u[0] = (unsigned char)(0xc0 | cp >> 6);
				u[1] = (unsigned char)(0x80 | (cp & 0x3f));
				n = 2;
			} else if (cp < 0x10000) {
				u[0] = (unsigned char)(0xe0 | cp >> 12);
				u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
				u[2] = (unsigned char)(0x80 | (cp & 0x3f));
				n = 3;
			} else {
				u[0] = (unsigned char)(0xf0 | cp >> 18);
				u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
				u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
				u[3] = (unsigned char)(0x80 | (cp & 0x3f));
				n = 4;
			}
			*nul |= cp == 0;
			if (!sbuf_put(s, &o, u, n))
				return false;
			continue;
		}
		default:
			return refuse(s);
		}
		if (!sbuf_put(s, &o, &b, 1))
			return false;
		p += 2;
	}
	*out = o ? s->sbuf : "";
	*len = o;
	s->p = p + 1;
	return true;
}

/* ------------------------------------------------------------ keys */

static int key_cmp(const void *pa, const void *pb)
{
	const struct key *a = pa, *b = pb;
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->p, b->p, n);
	return c ? c : (a->len > b->len) - (a->len < b->len);
}

/*
 * A key of the object open at the current depth; `stable` when its bytes
 * stay where they are until the pass ends (the header, or a name the
 * reader keeps), else they are copied.
 */
static bool add_key(struct scan *s, const char *p, size_t len, bool stable)
{
	struct keys *k = &s->levels[s->depth];
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 8;
		struct key *v = realloc(k->v, cap * sizeof(*v));
		if (!v)
			return fail(s, -ENOMEM);
		k->v = v;
		k->cap = cap;
	}
	if (!stable) {
		char *c = mfs_arena_strndup(s->tmp, p, len);
		if (!c)
			return fail(s, -ENOMEM);
		p = c;
	}
	k->v[k->n++] = (struct key){p, len};
	return true;
}

/* The object at the current depth closes: any key twice goes to jansson. */
static bool close_keys(struct scan *s)
{
	struct keys *k = &s->levels[s->depth];
	size_t n = k->n;
	k->n = 0;
	if (n < 2)
		return true;
	if (n <= 8) {
		for (size_t i = 0; i < n; i++)
			for (size_t j = i + 1; j < n; j++)
				if (!key_cmp(&k->v[i], &k->v[j]))
					return refuse(s);
		return true;
	}
	qsort(k->v, n, sizeof(*k->v), key_cmp);
	for (size_t i = 1; i < n; i++)
		if (!key_cmp(&k->v[i - 1], &k->v[i]))
			return refuse(s);
	return true;
}

/* An object key: a string without U+0000 (jansson refuses one). */
static bool scan_key(struct scan *s, const char **out, size_t *len, bool *escaped)
{
	bool nul;
	if (peek(s) != '"')
		return refuse(s);
	if (!scan_string(s, out, len, &nul))
		return false;
	if (nul)
		return refuse(s);
	*escaped = *out == s->sbuf;
	return expect(s, ':');
}

/* ------------------------------------------------------------ values */

/*
 * An integer at s->p: ST_V_UINT with its value, or ST_V_NEG for a negative
 * one (-0 is 0, as jansson reads it).  A real, a malformed number or one
 * outside int64 goes to jansson.
 */
static int scan_number(struct scan *s, uint64_t *out)
{
	const unsigned char *p = s->p, *end = s->end;
	bool neg = p < end && *p == '-';
	uint64_t v = 0;
	if (neg)
		p++;
	if (p >= end || *p < '0' || *p > '9') {
		refuse(s);
		return -1;
	}
	if (*p == '0') {
		p++;
	} else {
		while (p < end && *p >= '0' && *p <= '9') {
			if (v > (UINT64_MAX - 9) / 10) {
				refuse(s);
				return -1;
			}
			v = v * 10 + (uint64_t)(*p++ - '0');
		}
	}
	if ((p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E')) ||
	    v > (uint64_t)INT64_MAX + neg) {
		refuse(s);
		return -1;
	}
	s->p = p;
	*out = v;
	return neg && v ? ST_V_NEG : ST_V_UINT;
}

static bool literal(struct scan *s, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return refuse(s);
	s->p += n;
	return true;
}

static bool scan_value(struct scan *s, struct st_val *v);

/* An array at s->p; `v` (may be NULL) gets its length and first elements. */
static bool scan_array(struct scan *s, struct st_val *v)
{
	if (s->depth == SCAN_MAX_DEPTH)
		return refuse(s);
	s->depth++;
	s->p++;
	size_t n = 0;
	if (peek(s) == ']') {
		s->p++;
	} else {
		for (;;) {
			struct st_val el;
			if (!scan_value(s, v ? &el : NULL))
				return false;
			if (v && n < ST_VAL_ELEMS) {
				v->el[n].kind = el.kind;
				v->el[n].u = el.u;
			}
			n++;
			int c = next(s, ']');
			if (c < 0)
				return false;
			if (c)
				break;
		}
	}
	s->depth--;
	if (v) {
		v->kind = ST_V_ARRAY;
		v->len = n;
	}
	return true;
}

/* An object whose members nobody reads: checked, keys deduplicated. */
static bool skip_object(struct scan *s)
{
	if (s->depth == SCAN_MAX_DEPTH)
		return refuse(s);
	s->depth++;
	s->p++;
	if (peek(s) == '}') {
		s->p++;
	} else {
		for (;;) {
			const char *k;
			size_t kl;
			bool esc;
			if (!scan_key(s, &k, &kl, &esc) || !add_key(s, k, kl, !esc) ||
			    !scan_value(s, NULL))
				return false;
			int c = next(s, '}');
			if (c < 0)
				return false;
			if (c)
				break;
		}
	}
	if (!close_keys(s))
		return false;
	s->depth--;
	return true;
}

/* Any value; `v` (may be NULL) gets its kind, an integer's value, a string's bytes. */
static bool scan_value(struct scan *s, struct st_val *v)
{
	struct st_val dummy;
	if (!v)
		v = &dummy;
	v->kind = ST_V_OTHER;
	v->u = 0;
	v->len = 0;
	v->s = NULL;
	switch (peek(s)) {
	case '"': {
		bool nul;
		v->kind = ST_V_STRING;
		return scan_string(s, &v->s, &v->len, &nul);
	}
	case '[':
		return scan_array(s, v == &dummy ? NULL : v);
	case '{':
		v->kind = ST_V_OBJECT;
		return skip_object(s);
	case 't':
		return literal(s, "true");
	case 'f':
		return literal(s, "false");
	case 'n':
		return literal(s, "null");
	case '-':
	case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9': {
		int k = scan_number(s, &v->u);
		if (k < 0)
			return false;
		v->kind = k;
		return true;
	}
	default:
		return refuse(s);
	}
}

/* ------------------------------------------------------------ entries */

static void call(struct scan *s, int rc)
{
	if (rc == ST_SCAN_STOP)
		s->stopped = true;
	else if (rc < 0)
		fail(s, rc);
}

/* A string value the entry keeps until it ends ("dtype"): copied out of sbuf. */
static bool keep_dtype(struct scan *s, struct st_val *v)
{
	if (v->kind != ST_V_STRING || v->s != s->sbuf || !v->len)
		return true;
	if (v->len > s->dcap) {
		char *b = realloc(s->dbuf, v->len);
		if (!b)
			return fail(s, -ENOMEM);
		s->dbuf = b;
		s->dcap = v->len;
	}
	memcpy(s->dbuf, v->s, v->len);
	v->s = s->dbuf;
	return true;
}

/* The value of a tensor's entry: its three fields, then the reader's call. */
static bool scan_entry(struct scan *s, const char *name, size_t len)
{
	struct st_rawent re;
	memset(&re, 0, sizeof(re));     /* ST_V_NONE: absent */
	if (peek(s) != '{') {
		if (!scan_value(s, NULL))
			return false;
		re.kind = ST_V_OTHER;
	} else {
		re.kind = ST_V_OBJECT;
		s->depth++;
		s->p++;
		if (peek(s) == '}') {
			s->p++;
		} else {
			for (;;) {
				const char *k;
				size_t kl;
				bool esc;
				if (!scan_key(s, &k, &kl, &esc) || !add_key(s, k, kl, !esc))
					return false;
				struct st_val *f = NULL;
				if (kl == 5 && !memcmp(k, "dtype", 5))
					f = &re.dtype;
				else if (kl == 5 && !memcmp(k, "shape", 5))
					f = &re.shape;
				else if (kl == 12 && !memcmp(k, "data_offsets", 12))
					f = &re.offsets;
				if (!scan_value(s, f) || (f == &re.dtype && !keep_dtype(s, f)))
					return false;
				int c = next(s, '}');
				if (c < 0)
					return false;
				if (c)
					break;
			}
		}
		if (!close_keys(s))
			return false;
		s->depth--;
	}
	if (!s->stopped)
		call(s, s->ops->tensor(s->arg, name, len, &re));
	return !s->verdict;
}

/* The value of "__metadata__": its pairs, in order, to the reader. */
static bool scan_metadata(struct scan *s)
{
	if (peek(s) != '{') {
		if (!scan_value(s, NULL))
			return false;
		if (!s->stopped)
			call(s, s->ops->metadata(s->arg, NULL, 0, NULL));
		return !s->verdict;
	}
	s->depth++;
	s->p++;
	if (peek(s) == '}') {
		s->p++;
	} else {
		for (;;) {
			const char *k;
			size_t kl;
			bool esc;
			struct st_val v;
			if (!scan_key(s, &k, &kl, &esc) || !add_key(s, k, kl, !esc))
				return false;
			if (esc)
				k = s->levels[s->depth].v[s->levels[s->depth].n - 1].p;
			if (!scan_value(s, &v))
				return false;
			if (!s->stopped)
				call(s, s->ops->metadata(s->arg, k, kl, &v));
			if (s->verdict)
				return false;
			int c = next(s, '}');
			if (c < 0)
				return false;
			if (c)
				break;
		}
	}
	if (!close_keys(s))
		return false;
	s->depth--;
	return true;
}

int mfs_st_scan(const char *buf, size_t len, const struct st_scan_ops *ops, void *arg)
{
	struct scan s = {
		.p = (const unsigned char *)buf, .end = (const unsigned char *)buf + len,
		.ops = ops, .arg = arg,
	};
	s.tmp = mfs_arena_create();
	if (!s.tmp)
		return -ENOMEM;
	if (!expect(&s, '{'))
		goto out;
	s.depth = 1;
	if (peek(&s) == '}') {
		s.p++;
	} else {
		for (;;) {
			const char *k;
			size_t kl;
			bool esc;
			if (!scan_key(&s, &k, &kl, &esc))
				goto out;
			if (kl == 12 && !memcmp(k, "__metadata__", 12)) {
				if (!add_key(&s, "__metadata__", 12, true) || !scan_metadata(&s))
					goto out;
			} else {
				/* The reader keeps the name; the key set points at its copy. */
				const char *name = ops->name(arg, k, kl);
				if (!name) {
					fail(&s, -ENOMEM);
					goto out;
				}
				if (!add_key(&s, name, kl, true) || !scan_entry(&s, name, kl))
					goto out;
			}
			int c = next(&s, '}');
			if (c < 0)
				goto out;
			if (c)
				break;
		}
	}
	if (!close_keys(&s))
		goto out;
	if (peek(&s) != -1)
		refuse(&s);
out:
	for (int i = 0; i <= SCAN_MAX_DEPTH; i++)
		free(s.levels[i].v);
	free(s.sbuf);
	free(s.dbuf);
	mfs_arena_destroy(s.tmp);
	return s.verdict;
}

/*
 * codec/source/http.c — a model that lives behind a URL: http://, https://
 * and s3://bucket/key as places (place.h), each file a byte source whose
 * reads are HTTP range requests (source.h).
 *
 * Everything above sees a source with no descriptor (fd() is -1) and falls
 * back to pread; nothing above knows the bytes are remote.
 *
 * What a remote file promises is what a local one does: the bytes as they
 * were when opened.  So the first response's ETag (or Last-Modified) is the
 * version we serve, every later range request carries If-Match (or
 * If-Unmodified-Since), and a response whose validator differs is refused:
 * a changed object gives EIO and a log line, never bytes of two versions.
 *
 * Opening asks for the first MFS_HTTP_HEAD bytes at once: that is the
 * size (Content-Range), the validator and, for most models, the whole
 * header, kept in memory.  A 200 answer to that range request means the
 * server ignores Range: the mount fails then, rather than downloading the
 * model on every read.
 *
 * S3 is the same over path-style URLs (endpoint/bucket/key), signed by
 * libcurl's own SigV4 (CURLOPT_AWS_SIGV4) with the credentials from the
 * environment; they are never printed.
 *
 * Several FUSE threads read at once: each request takes a curl handle from
 * the source's free list (made on demand, kept for connection reuse), so
 * requests run in parallel.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/core.h"
#include "source/cache.h"
#include "source/http.h"
#include "source/place.h"

/* The first request: enough for a typical header (safetensors, GGUF, an
 * ONNX graph without weights). */
#define MFS_HTTP_HEAD (256 * 1024)
#define MFS_HTTP_URL_MAX 8192
#define MFS_HTTP_MAX_HANDLES 16
/* A small read (up to MFS_HTTP_SMALL, or half a block while a reader walks
 * metadata: advise_random) fetches the aligned block around it, and the
 * source keeps the last few: a zip's local headers or a protobuf's
 * scattered fields then cost one request per block, not one per field.
 * Tensor reads are larger and fetch exactly what is read. */
#define MFS_HTTP_BLOCK (64 * 1024)
#define MFS_HTTP_BLOCKS 16
#define MFS_HTTP_SMALL 4096

static struct mfs_remote_opts g_opts = {.timeout = 30, .retries = 3};
static char g_cache_dir[4096];
static char g_s3_endpoint[2048];
static char g_ca_file[4096];
static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static int g_curl_rc;

static void curl_init_once(void)
{
	g_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -ENOMEM;
}

int mfs_remote_configure(const struct mfs_remote_opts *o)
{
	g_opts = *o;
	g_cache_dir[0] = g_s3_endpoint[0] = '\0';
	if (o->cache_dir && snprintf(g_cache_dir, sizeof(g_cache_dir), "%s", o->cache_dir) >=
	    (int)sizeof(g_cache_dir))
		return -ENAMETOOLONG;
	if (o->s3_endpoint && snprintf(g_s3_endpoint, sizeof(g_s3_endpoint), "%s",
	                               o->s3_endpoint) >= (int)sizeof(g_s3_endpoint))
		return -ENAMETOOLONG;
	g_ca_file[0] = '\0';
	if (o->ca_file && snprintf(g_ca_file, sizeof(g_ca_file), "%s", o->ca_file) >=
	    (int)sizeof(g_ca_file))
		return -ENAMETOOLONG;
	g_opts.ca_file = g_ca_file[0] ? g_ca_file : NULL;
	g_opts.cache_dir = g_cache_dir[0] ? g_cache_dir : NULL;
	g_opts.s3_endpoint = g_s3_endpoint[0] ? g_s3_endpoint : NULL;
	if (!g_opts.timeout)
		g_opts.timeout = 30;
	return 0;
}

/* The cache directory to use: the configured one, else the XDG default;
 * NULL for none. */
static const char *cache_dir(char *buf, size_t cap)
{
	const char *d = g_opts.cache_dir;
	if (d)
		return strcmp(d, "none") ? d : NULL;
	const char *x = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	int n;
	if (x && x[0] == '/')
		n = snprintf(buf, cap, "%s/modelfs", x);
	else if (home && home[0] == '/')
		n = snprintf(buf, cap, "%s/.cache/modelfs", home);
	else
		return NULL;
	return n > 0 && (size_t)n < cap ? buf : NULL;
}

static bool is_s3(const char *path)
{
	return !strncmp(path, "s3://", 5);
}

bool mfs_path_is_remote(const char *path)
{
	return !strncasecmp(path, "http://", 7) || !strncasecmp(path, "https://", 8) ||
	       is_s3(path);
}

/* One line to the log and, when the daemon has one, to stderr. */
static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	syslog(LOG_ERR, "modelfs: %s", line);
	fprintf(stderr, "modelfs: %s\n", line);
}

/* ------------------------------------------------------------ requests */

struct http_target {
	char *url;              /* what is requested (an S3 path-style URL) */
	char *display;          /* what messages name: the user's spelling */
	bool s3;
	char region[64];
};

struct http_source {
	struct mfs_source base;
	struct http_target tg;
	char etag[256];         /* the version served; "" when the server gave none */
	char lastmod[64];
	uint8_t *head;          /* bytes [0, head_len), fetched at open */
	size_t head_len;
	struct mfs_cache_obj *cache;
	pthread_mutex_t lock;
	CURL *free_h[MFS_HTTP_MAX_HANDLES];
	size_t n_free;
	/* metadata blocks, under `lock` */
	bool random;
	struct {
		uint64_t off;
		size_t len;
		uint8_t *data;
	} blk[MFS_HTTP_BLOCKS];
	size_t blk_next;
};

/* What one response said, filled by the callbacks. */
struct reply {
	uint8_t *buf;
	size_t cap, got;
	bool overflow;
	char etag[256];
	char lastmod[64];
	char crange[128];
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct reply *r = arg;
	size_t len = sz * n;
	if (len > r->cap - r->got) {
		/* More than asked for (a 200 to a range request): stop it. */
		r->overflow = true;
		return 0;
	}
	memcpy(r->buf + r->got, p, len);
	r->got += len;
	return len;
}

/* Copy header `name`'s value (trimmed) into out when line is that header. */
static void header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	if (len <= nl || strncasecmp(line, name, nl) || line[nl] != ':')
		return;
	const char *v = line + nl + 1;
	const char *e = line + len;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
		e--;
	size_t vl = (size_t)(e - v);
	if (vl >= cap)
		vl = cap - 1;
	memcpy(out, v, vl);
	out[vl] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct reply *r = arg;
	size_t len = sz * n;
	/* A new status line (after a redirect or 100): forget the old headers. */
	if (len >= 5 && !strncmp(p, "HTTP/", 5))
		r->etag[0] = r->lastmod[0] = r->crange[0] = '\0';
	header_value(p, len, "ETag", r->etag, sizeof(r->etag));
	header_value(p, len, "Last-Modified", r->lastmod, sizeof(r->lastmod));
	header_value(p, len, "Content-Range", r->crange, sizeof(r->crange));
	return len;
}

/* Credentials from the environment, for S3; NULL when incomplete. */
static bool s3_credentials(char *userpwd, size_t cap)
{
	const char *id = getenv("AWS_ACCESS_KEY_ID");
	const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
	if (!id || !secret || !*id)
		return false;
	return snprintf(userpwd, cap, "%s:%s", id, secret) < (int)cap;
}

/*
 * One GET of bytes [off, off + len) with validators `etag`/`lastmod` (may be
 * empty: none yet).  `inm` asks If-None-Match instead of If-Match (the
 * cache's revalidation).  Returns the HTTP status, or -1 with *cerr set for
 * a transfer that failed.
 */
static long perform(CURL *h, const struct http_target *tg, struct reply *r, uint64_t off,
                    uint64_t len, const char *etag, const char *lastmod, bool inm,
                    CURLcode *cerr)
{
	char range[64], hv[400], userpwd[1024], sig[128];
	struct curl_slist *hdrs = NULL;
	curl_easy_reset(h);
	snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, off, off + len - 1);
	curl_easy_setopt(h, CURLOPT_URL, tg->url);
	curl_easy_setopt(h, CURLOPT_RANGE, range);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)g_opts.timeout);
	/* A stall: less than one byte a second for `timeout` seconds. */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)g_opts.timeout);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "modelfs/0.1");
	if (g_opts.ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, g_opts.ca_file);
	if (etag[0]) {
		snprintf(hv, sizeof(hv), "%s: %s", inm ? "If-None-Match" : "If-Match", etag);
		hdrs = curl_slist_append(hdrs, hv);
	} else if (lastmod[0]) {
		snprintf(hv, sizeof(hv), "%s: %s",
		         inm ? "If-Modified-Since" : "If-Unmodified-Since", lastmod);
		hdrs = curl_slist_append(hdrs, hv);
	}
	if (tg->s3) {
		if (s3_credentials(userpwd, sizeof(userpwd))) {
			snprintf(sig, sizeof(sig), "aws:amz:%s:s3", tg->region);
			curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sig);
			curl_easy_setopt(h, CURLOPT_USERPWD, userpwd);
			/* curl (7.88) signs an empty payload hash but does not send
			 * the header S3 wants for it. */
			hdrs = curl_slist_append(hdrs, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
			const char *tok = getenv("AWS_SESSION_TOKEN");
			if (tok && *tok) {
				snprintf(hv, sizeof(hv), "x-amz-security-token: %.360s", tok);
				hdrs = curl_slist_append(hdrs, hv);
			}
		}
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	*cerr = curl_easy_perform(h);
	explicit_bzero(userpwd, sizeof(userpwd));
	curl_easy_setopt(h, CURLOPT_USERPWD, NULL);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (*cerr != CURLE_OK && !(r->overflow && *cerr == CURLE_WRITE_ERROR))
		return -1;
	return status;
}

/* Is this failure worth another try (a dropped connection, a stall, 5xx)? */
static bool retryable(long status, CURLcode c)
{
	if (status < 0)
		return c == CURLE_COULDNT_CONNECT || c == CURLE_OPERATION_TIMEDOUT ||
		       c == CURLE_RECV_ERROR || c == CURLE_SEND_ERROR || c == CURLE_PARTIAL_FILE ||
		       c == CURLE_GOT_NOTHING || c == CURLE_SSL_CONNECT_ERROR;
	return status >= 500 && status <= 599;
}

/* "bytes A-B/TOTAL": does it start at off with len bytes?  *total gets TOTAL. */
static bool crange_ok(const char *cr, uint64_t off, uint64_t len, uint64_t *total)
{
	uint64_t a, b, t;
	if (sscanf(cr, "bytes %" SCNu64 "-%" SCNu64 "/%" SCNu64, &a, &b, &t) != 3)
		return false;
	*total = t;
	return a == off && b >= a && b - a + 1 == len && b < t;
}

static CURL *take_handle(struct http_source *s)
{
	CURL *h = NULL;
	pthread_mutex_lock(&s->lock);
	if (s->n_free)
		h = s->free_h[--s->n_free];
	pthread_mutex_unlock(&s->lock);
	return h ? h : curl_easy_init();
}

static void give_handle(struct http_source *s, CURL *h)
{
	pthread_mutex_lock(&s->lock);
	if (s->n_free < MFS_HTTP_MAX_HANDLES) {
		s->free_h[s->n_free++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	if (h)
		curl_easy_cleanup(h);
}

static void backoff(unsigned attempt)
{
	/* 100 ms, 200 ms, 400 ms, ... capped at 3.2 s */
	unsigned ms = 100u << (attempt < 5 ? attempt : 5);
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/*
 * Fetch exactly bytes [off, off + len) of the version being served into
 * buf, with retries.  Returns 0 or -errno (-EIO with a log line).
 */
static int fetch_range(struct http_source *s, void *buf, uint64_t off, size_t len)
{
	CURL *h = take_handle(s);
	if (!h)
		return -ENOMEM;
	int rc = -EIO;
	long status = 0;
	CURLcode c = CURLE_OK;
	unsigned tries = 0;
	for (;; tries++) {
		struct reply r = {.buf = buf, .cap = len};
		status = perform(h, &s->tg, &r, off, len, s->etag, s->lastmod, false, &c);
		if (status == 206 && !r.overflow && r.got == len) {
			uint64_t total;
			if (!crange_ok(r.crange, off, len, &total) || total != s->base.size ||
			    (s->etag[0] && strcmp(r.etag, s->etag)) ||
			    (!s->etag[0] && s->lastmod[0] && strcmp(r.lastmod, s->lastmod))) {
				logf_("%s: changed on the server since it was mounted (bytes %" PRIu64
				      "-%" PRIu64 " refused)", s->tg.display, off, off + len - 1);
				break;
			}
			rc = 0;
			break;
		}
		if (status == 412) {
			logf_("%s: changed on the server since it was mounted (HTTP 412 for bytes %"
			      PRIu64 "-%" PRIu64 ")", s->tg.display, off, off + len - 1);
			break;
		}
		if (status == 206 && r.got < len && tries < g_opts.retries) {
			backoff(tries);         /* cut short: try again */
			continue;
		}
		if (retryable(status, c) && tries < g_opts.retries) {
			backoff(tries);
			continue;
		}
		if (status < 0)
			logf_("%s: bytes %" PRIu64 "-%" PRIu64 ": %s (after %u tries)", s->tg.display,
			      off, off + len - 1, curl_easy_strerror(c), tries + 1);
		else
			logf_("%s: bytes %" PRIu64 "-%" PRIu64 ": HTTP %ld (after %u tries)",
			      s->tg.display, off, off + len - 1, status, tries + 1);
		break;
	}
	give_handle(s, h);
	return rc;
}

/* ------------------------------------------------------------ the source */

/* Bytes [off, off + len) through the cache or the network into buf. */
static int get_range(struct http_source *s, void *buf, uint64_t off, size_t len)
{
	if (s->cache && mfs_cache_get(s->cache, buf, off, len) == 0)
		return 0;
	int rc = fetch_range(s, buf, off, len);
	if (rc == 0 && s->cache)
		mfs_cache_put(s->cache, buf, off, len);
	return rc;
}

/* A small read while metadata is walked: fetch the aligned block (two
 * when the read straddles), keep it, copy out. */
static ssize_t block_read(struct http_source *s, void *buf, size_t len, uint64_t off)
{
	uint64_t boff = off - off % MFS_HTTP_BLOCK;
	uint64_t bend = off + len;
	bend += (MFS_HTTP_BLOCK - bend % MFS_HTTP_BLOCK) % MFS_HTTP_BLOCK;
	if (bend > s->base.size)
		bend = s->base.size;
	size_t blen = (size_t)(bend - boff);
	uint8_t *data = malloc(blen);
	if (!data)
		return -ENOMEM;
	int rc = get_range(s, data, boff, blen);
	if (rc < 0) {
		free(data);
		return rc;
	}
	memcpy(buf, data + (off - boff), len);
	pthread_mutex_lock(&s->lock);
	size_t i = s->blk_next++ % MFS_HTTP_BLOCKS;
	free(s->blk[i].data);
	s->blk[i].off = boff;
	s->blk[i].len = blen;
	s->blk[i].data = data;
	pthread_mutex_unlock(&s->lock);
	return (ssize_t)len;
}

static ssize_t http_pread(struct mfs_source *src, void *buf, size_t len, uint64_t off)
{
	struct http_source *s = (struct http_source *)src;
	if (off >= src->size)
		return 0;
	if (len > src->size - off)
		len = (size_t)(src->size - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	if (!len)
		return 0;
	if (off + len <= s->head_len) {
		memcpy(buf, s->head + off, len);
		return (ssize_t)len;
	}
	pthread_mutex_lock(&s->lock);
	bool random = s->random;
	for (size_t i = 0; i < MFS_HTTP_BLOCKS; i++)
		if (s->blk[i].data && s->blk[i].off <= off &&
		    off + len <= s->blk[i].off + s->blk[i].len) {
			memcpy(buf, s->blk[i].data + (off - s->blk[i].off), len);
			pthread_mutex_unlock(&s->lock);
			return (ssize_t)len;
		}
	pthread_mutex_unlock(&s->lock);
	if (len <= (random ? MFS_HTTP_BLOCK / 2 : MFS_HTTP_SMALL))
		return block_read(s, buf, len, off);
	int rc = get_range(s, buf, off, len);
	return rc < 0 ? rc : (ssize_t)len;
}

static int http_fd(const struct mfs_source *s)
{
	(void)s;
	return -1;
}

static int http_stat(const struct mfs_source *src, struct stat *out)
{
	const struct http_source *s = (const struct http_source *)src;
	memset(out, 0, sizeof(*out));
	out->st_mode = S_IFREG | 0444;
	out->st_nlink = 1;
	out->st_size = (off_t)src->size;
	out->st_uid = getuid();
	out->st_gid = getgid();
	out->st_mtim.tv_sec = src->mtime_sec;
	out->st_mtim.tv_nsec = src->mtime_nsec;
	out->st_ctim = out->st_mtim;
	/* An identity that changes with the version: a hash of the URL and
	 * validator stands for device and inode. */
	uint64_t hsh = 1469598103934665603ULL;
	for (const char *p = s->tg.url; *p; p++)
		hsh = (hsh ^ (uint8_t)*p) * 1099511628211ULL;
	for (const char *p = s->etag; *p; p++)
		hsh = (hsh ^ (uint8_t)*p) * 1099511628211ULL;
	out->st_ino = (ino_t)hsh;
	return 0;
}

static void http_advise(struct mfs_source *src, bool random)
{
	struct http_source *s = (struct http_source *)src;
	pthread_mutex_lock(&s->lock);
	s->random = random;
	pthread_mutex_unlock(&s->lock);
}

static void target_free(struct http_target *tg)
{
	free(tg->url);
	free(tg->display);
}

static void http_close(struct mfs_source *src)
{
	struct http_source *s = (struct http_source *)src;
	for (size_t i = 0; i < s->n_free; i++)
		curl_easy_cleanup(s->free_h[i]);
	for (size_t i = 0; i < MFS_HTTP_BLOCKS; i++)
		free(s->blk[i].data);
	mfs_cache_close(s->cache);
	pthread_mutex_destroy(&s->lock);
	target_free(&s->tg);
	free(s->head);
	free(s);
}

static const struct mfs_source_ops http_ops = {
	.kind = "http",
	.pread = http_pread,
	.fd = http_fd,
	.stat = http_stat,
	.advise_random = http_advise,
	.close = http_close,
};

/* Last-Modified as a time, for the file's mtime; 0 when absent. */
static int64_t http_time(const char *s)
{
	if (!s[0])
		return 0;
	time_t t = curl_getdate(s, NULL);
	return t < 0 ? 0 : (int64_t)t;
}

/* Say why an open failed: one line naming the URL. */
static int open_failure(char *err, size_t errlen, const char *display, long status, CURLcode c)
{
	if (status == 404)
		return mfs_errf(err, errlen, -ENOENT, display, "not found on the server (HTTP 404)");
	if (status == 403 || status == 401)
		return mfs_errf(err, errlen, -EACCES, display, "access denied (HTTP %ld)", status);
	if (status == 200)
		return mfs_errf(err, errlen, -EOPNOTSUPP, display,
		                "the server ignores Range requests (HTTP 200 to a range request): "
		                "cannot read it remotely");
	if (status < 0)
		return mfs_errf(err, errlen, -EIO, display, "%s", curl_easy_strerror(c));
	return mfs_errf(err, errlen, -EIO, display, "HTTP %ld", status);
}

/*
 * Open `tg` (taken over): the first range request, then the cache.  With a
 * warm cache for this URL the first request only revalidates it.
 */
static int source_open(struct mfs_source **out, struct http_target *tg, char *err, size_t errlen)
{
	*out = NULL;
	int rc = -ENOMEM;
	struct http_source *s = calloc(1, sizeof(*s));
	if (!s) {
		target_free(tg);
		return mfs_errf(err, errlen, -ENOMEM, "remote", "out of memory");
	}
	s->tg = *tg;
	pthread_mutex_init(&s->lock, NULL);
	s->base.ops = &http_ops;
	CURL *h = take_handle(s);
	if (!h) {
		rc = mfs_errf(err, errlen, -ENOMEM, s->tg.display, "out of memory");
		goto fail;
	}
	s->head = malloc(MFS_HTTP_HEAD);
	if (!s->head) {
		give_handle(s, h);
		rc = mfs_errf(err, errlen, -ENOMEM, s->tg.display, "out of memory");
		goto fail;
	}

	/* What the cache knows of this URL: a version and perhaps its head. */
	struct mfs_cache_meta cm = {0};
	char cdbuf[4096];
	const char *cdir = cache_dir(cdbuf, sizeof(cdbuf));
	if (cdir && mfs_cache_open(&s->cache, cdir, g_opts.cache_size, s->tg.url, &cm) < 0)
		s->cache = NULL;        /* no cache: read through */
	bool warm = s->cache && cm.size && (cm.etag[0] || cm.lastmod[0]);

	long status = 0;
	CURLcode c = CURLE_OK;
	struct reply r = {0};
	for (unsigned tries = 0;; tries++) {
		memset(&r, 0, sizeof(r));
		r.buf = s->head;
		r.cap = MFS_HTTP_HEAD;
		status = perform(h, &s->tg, &r, 0, MFS_HTTP_HEAD, warm ? cm.etag : "",
		                 warm ? cm.lastmod : "", warm, &c);
		if (!retryable(status, c) || tries >= g_opts.retries)
			break;
		backoff(tries);
	}
	give_handle(s, h);
	uint64_t total = 0;
	if (status == 304 && warm) {
		/* Unchanged: the cached version is served, its head from the cache. */
		snprintf(s->etag, sizeof(s->etag), "%s", cm.etag);
		snprintf(s->lastmod, sizeof(s->lastmod), "%s", cm.lastmod);
		s->base.size = cm.size;
		s->head_len = cm.size < MFS_HTTP_HEAD ? (size_t)cm.size : MFS_HTTP_HEAD;
		if (mfs_cache_get(s->cache, s->head, 0, s->head_len) < 0)
			s->head_len = 0;        /* evicted meanwhile: fetched on read */
	} else if (status == 206 && !r.overflow) {
		uint64_t a, b;
		if (sscanf(r.crange, "bytes %" SCNu64 "-%" SCNu64 "/%" SCNu64, &a, &b, &total) != 3 ||
		    a != 0 || b >= total || b + 1 != r.got) {
			rc = mfs_errf(err, errlen, -EIO, s->tg.display,
			              "bad Content-Range '%s' for bytes 0-%d", r.crange,
			              MFS_HTTP_HEAD - 1);
			goto fail;
		}
		snprintf(s->etag, sizeof(s->etag), "%s", r.etag);
		snprintf(s->lastmod, sizeof(s->lastmod), "%s", r.lastmod);
		s->base.size = total;
		s->head_len = r.got;
		/* Keep only what came: a model of many small shards must not
		 * hold a full head buffer for each. */
		uint8_t *shrunk = realloc(s->head, s->head_len ? s->head_len : 1);
		if (shrunk)
			s->head = shrunk;
		if (s->cache && !s->etag[0] && !s->lastmod[0]) {
			/* Nothing to tell a new version from the old by: cached
			 * ranges could be stale, so none are used or kept. */
			mfs_cache_close(s->cache);
			s->cache = NULL;
		}
		if (s->cache && warm)
			logf_("note: %s: changed on the server since it was cached: the cached "
			      "ranges are dropped and it is fetched again", s->tg.display);
		if (s->cache) {
			struct mfs_cache_meta nm = {.size = total};
			snprintf(nm.etag, sizeof(nm.etag), "%s", r.etag);
			snprintf(nm.lastmod, sizeof(nm.lastmod), "%s", r.lastmod);
			/* A new version, or none before: the cache starts over. */
			if (mfs_cache_reset(s->cache, &nm) == 0)
				mfs_cache_put(s->cache, s->head, 0, s->head_len);
		}
	} else if (status == 416) {
		rc = mfs_errf(err, errlen, -EUCLEAN, s->tg.display, "empty file, not a model");
		goto fail;
	} else {
		rc = open_failure(err, errlen, s->tg.display, r.overflow ? 200 : status, c);
		goto fail;
	}
	s->base.mtime_sec = http_time(s->lastmod);
	*out = &s->base;
	return 0;
fail:
	http_close(&s->base);
	return rc;
}

/* ------------------------------------------------------------ the place */

struct http_place {
	struct mfs_place base;
	char *prefix;           /* the URL up to and including its last '/' */
	char *dprefix;          /* the same for the user's spelling */
	bool s3;
	char region[64];
	char *basename;
};

/*
 * The rules for a location a model names, in URL terms: relative, no ".."
 * or "." or empty component, and nothing that a server would read as
 * something else ('?', '#', '%', '\\', control bytes and spaces).
 */
static int location_ok(const char *loc, char *err, size_t errlen, const char *display)
{
	if (!loc[0])
		return mfs_errf(err, errlen, -EUCLEAN, display, "external data location is empty");
	const char *why = mfs_place_path_fault(loc);
	if (loc[0] == '/')
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "external data location '%s' %s", loc, why);
	if (strlen(loc) >= 1024)
		return mfs_errf(err, errlen, -EUCLEAN, display, "external data location too long");
	for (const char *p = loc; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch <= ' ' || ch == 0x7f || ch == '?' || ch == '#' || ch == '%' || ch == '\\')
			return mfs_errf(err, errlen, -EUCLEAN, display,
			                "external data location '%s' has a character a URL cannot "
			                "carry plainly", loc);
	}
	if (why)
		return mfs_errf(err, errlen, -EUCLEAN, display,
		                "external data location '%s' %s", loc, why);
	return 0;
}

static char *concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);
	if (s) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

static int http_beneath(struct mfs_place *pl, struct mfs_source **out, const char *location,
                        char *err, size_t errlen, const char *display)
{
	struct http_place *p = (struct http_place *)pl;
	*out = NULL;
	int rc = location_ok(location, err, errlen, display);
	if (rc < 0)
		return rc;
	struct http_target tg = {.s3 = p->s3};
	snprintf(tg.region, sizeof(tg.region), "%s", p->region);
	tg.url = concat(p->prefix, location);
	tg.display = concat(p->dprefix, location);
	if (!tg.url || !tg.display) {
		target_free(&tg);
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	}
	char e2[512];
	rc = source_open(out, &tg, e2, sizeof(e2));
	if (rc < 0)
		return mfs_errf(err, errlen, rc == -ENOENT ? -ENOENT : rc, display,
		                "external data file '%s': %s", location, e2);
	return 0;
}

static void http_place_close(struct mfs_place *pl)
{
	struct http_place *p = (struct http_place *)pl;
	free(p->prefix);
	free(p->dprefix);
	free(p->basename);
	free(p);
}

static const struct mfs_place_ops http_place_ops = {
	.kind = "url",
	.open_beneath = http_beneath,
	.close = http_place_close,
};

static bool http_claims(const char *path)
{
	return mfs_path_is_remote(path);
}

/* s3://bucket/key -> ENDPOINT/bucket/key (path style). */
static int s3_url(char *out, size_t cap, const char *path, char *region, size_t rcap,
                  char *err, size_t errlen)
{
	const char *bk = path + 5;
	const char *slash = strchr(bk, '/');
	if (!slash || slash == bk || !slash[1])
		return mfs_errf(err, errlen, -EINVAL, path, "an S3 URL is s3://BUCKET/KEY");
	const char *reg = getenv("AWS_REGION");
	if (!reg || !*reg)
		reg = getenv("AWS_DEFAULT_REGION");
	if (!reg || !*reg)
		reg = "us-east-1";
	for (const char *q = reg; *q; q++)
		if (!isalnum((unsigned char)*q) && *q != '-')
			return mfs_errf(err, errlen, -EINVAL, path, "AWS_REGION is not a region name");
	snprintf(region, rcap, "%s", reg);
	int n;
	/* -o s3_endpoint=, else the AWS tools' own variables (for modelfs info
	 * and convert, which have no mount options). */
	const char *ep = g_opts.s3_endpoint;
	if (!ep || !*ep)
		ep = getenv("AWS_ENDPOINT_URL_S3");
	if (!ep || !*ep)
		ep = getenv("AWS_ENDPOINT_URL");
	if (ep && *ep && strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8))
		return mfs_errf(err, errlen, -EINVAL, path, "the S3 endpoint is not an http:// "
		                "or https:// URL");
	if (ep && *ep) {
		size_t el = strlen(ep);
		while (el && ep[el - 1] == '/')
			el--;
		n = snprintf(out, cap, "%.*s/%s", (int)el, ep, bk);
	} else {
		n = snprintf(out, cap, "https://s3.%s.amazonaws.com/%s", reg, bk);
	}
	if (n < 0 || (size_t)n >= cap)
		return mfs_errf(err, errlen, -ENAMETOOLONG, path, "URL too long");
	if (!getenv("AWS_ACCESS_KEY_ID") || !getenv("AWS_SECRET_ACCESS_KEY"))
		return mfs_errf(err, errlen, -EACCES, path, "no credentials: set "
		                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
	return 0;
}

static int http_open(struct mfs_place **place, struct mfs_source **root, const char **base,
                     const char *path, char *err, size_t errlen)
{
	*place = NULL;
	*root = NULL;
	*base = NULL;
	pthread_once(&g_curl_once, curl_init_once);
	if (g_curl_rc < 0)
		return mfs_errf(err, errlen, g_curl_rc, path, "cannot initialise libcurl");
	if (strlen(path) >= MFS_HTTP_URL_MAX / 2)
		return mfs_errf(err, errlen, -ENAMETOOLONG, path, "URL too long");
	for (const char *q = path; *q; q++)
		if ((unsigned char)*q <= ' ' || *q == '#' || *q == '?')
			return mfs_errf(err, errlen, -EINVAL, path, "the URL has a query, a fragment "
			                "or a blank: name the model file plainly");
	char url[MFS_HTTP_URL_MAX];
	struct http_place *p = calloc(1, sizeof(*p));
	if (!p)
		return mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
	int rc;
	if (is_s3(path)) {
		p->s3 = true;
		if ((rc = s3_url(url, sizeof(url), path, p->region, sizeof(p->region), err,
		                 errlen)) < 0)
			goto fail;
	} else {
		snprintf(url, sizeof(url), "%s", path);
		const char *hostp = strstr(url, "://") + 3;
		if (!*hostp || *hostp == '/') {
			rc = mfs_errf(err, errlen, -EINVAL, path, "the URL has no host");
			goto fail;
		}
		if (!strchr(hostp, '/')) {
			rc = mfs_errf(err, errlen, -EINVAL, path, "the URL names no file");
			goto fail;
		}
	}
	char *ls = strrchr(url, '/');
	char *dls = strrchr(path, '/');
	if (!ls[1] || !dls[1]) {
		rc = mfs_errf(err, errlen, -EISDIR, path, "the URL names a directory, not a model file");
		goto fail;
	}
	p->prefix = strndup(url, (size_t)(ls - url) + 1);
	p->dprefix = strndup(path, (size_t)(dls - path) + 1);
	p->basename = strdup(ls + 1);
	struct http_target tg = {.s3 = p->s3, .url = strdup(url), .display = strdup(path)};
	snprintf(tg.region, sizeof(tg.region), "%s", p->region);
	if (!p->prefix || !p->dprefix || !p->basename || !tg.url || !tg.display) {
		target_free(&tg);
		rc = mfs_errf(err, errlen, -ENOMEM, path, "out of memory");
		goto fail;
	}
	p->base.ops = &http_place_ops;
	p->base.dirfd = -1;
	p->base.name = p->dprefix;
	if ((rc = source_open(root, &tg, err, errlen)) < 0)
		goto fail;
	*place = &p->base;
	*base = p->basename;
	return 0;
fail:
	http_place_close(&p->base);
	return rc;
}

const struct mfs_place_kind mfs_place_http = {
	.name = "url",
	.claims = http_claims,
	.open = http_open,
};

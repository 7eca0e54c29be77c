/*
 * tools/convert.c — `modelfs convert MODEL OUT.safetensors`: any readable
 * model to one safetensors file, streamed.
 *
 * Format-neutral: it goes through the model description and the byte
 * sources of whatever format MODEL is (modelfs/model.h), never through a
 * check of which one.  The tensors written are the main graph's tensors
 * (every tensor of a flat format: safetensors, torch, ...; the initializers
 * of an ONNX graph), in the description's order, each under its full name,
 * and the model's props become the header's "__metadata__".  Nothing of the
 * model is held in memory: the header is built from the description, and
 * every tensor's bytes are copied to the output by copy_file_range(2) when
 * they are one range of a file (mfs_tensor_span), else read and written in
 * 1 MiB pieces (strided views, decoded values, sources without a
 * descriptor).
 *
 * The output follows the safetensors writer's rules (doc/formats.md §2.3):
 * compact JSON, "__metadata__" first, the header padded with spaces to a
 * multiple of 8, tensors tiling the buffer in order.  It is written to a
 * temporary file beside OUT, fsync'd and renamed over OUT, so OUT is either
 * the old file or the whole new one.
 *
 * With --max-shard-size SIZE the tensors, in the same order, are cut at
 * tensor boundaries into shards of at most SIZE tensor bytes (a tensor
 * bigger than SIZE is a shard of its own), NAME-00001-of-0000N.safetensors
 * beside OUT = NAME.safetensors.index.json, each shard a safetensors file as
 * above (the props in every shard's "__metadata__"), and OUT their index as
 * Hugging Face writes it ({"metadata": {"total_size"}, "weight_map"}).  All
 * are written to temporary files first; the shards are renamed into place,
 * then the index, so the index never names a shard that is not yet there.
 *
 * Refused, with one line and nothing written: a tensor whose dtype
 * safetensors cannot name (string, complex128, ...), two tensors of one
 * name, a name or prop that is not valid UTF-8.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "modelfs/model.h"

#include "tools.h"

static const struct {
	int32_t dtype;
	const char *name;
} st_names[] = {
	{MFS_DT_BOOL, "BOOL"}, {MFS_DT_UINT8, "U8"}, {MFS_DT_INT8, "I8"},
	{MFS_DT_INT16, "I16"}, {MFS_DT_UINT16, "U16"}, {MFS_DT_FLOAT16, "F16"},
	{MFS_DT_BFLOAT16, "BF16"}, {MFS_DT_INT32, "I32"}, {MFS_DT_UINT32, "U32"},
	{MFS_DT_FLOAT, "F32"}, {MFS_DT_COMPLEX64, "C64"}, {MFS_DT_DOUBLE, "F64"},
	{MFS_DT_INT64, "I64"}, {MFS_DT_UINT64, "U64"}, {MFS_DT_FLOAT8E5M2, "F8_E5M2"},
	{MFS_DT_FLOAT8E4M3FN, "F8_E4M3"}, {MFS_DT_FLOAT8E8M0, "F8_E8M0"},
	{MFS_DT_FLOAT8E4M3FNUZ, "F8_E4M3FNUZ"}, {MFS_DT_FLOAT8E5M2FNUZ, "F8_E5M2FNUZ"},
	{MFS_DT_FLOAT4E2M1, "F4"}, {MFS_DT_FLOAT6E2M3, "F6_E2M3"}, {MFS_DT_FLOAT6E3M2, "F6_E3M2"},
};

static const char *st_name(int32_t dtype)
{
	for (size_t i = 0; i < sizeof(st_names) / sizeof(st_names[0]); i++)
		if (st_names[i].dtype == dtype)
			return st_names[i].name;
	return NULL;
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Write all of buf at the end of fd. */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Copy tensor t's bytes to the end of `out` (at offset *pos). */
static int copy_tensor(const mfs_model *m, const struct mfs_tensor *t, int out, uint64_t *pos,
                       char *buf, size_t buflen)
{
	uint64_t done = 0;
	struct mfs_span sp;
	if (mfs_tensor_span(&sp, m, t, 0) == 0 && sp.fd >= 0) {
		loff_t in_off = (loff_t)sp.off, out_off = (loff_t)*pos;
		while (done < t->nbytes) {
			size_t want = t->nbytes - done > (1u << 30) ? (1u << 30) :
			              (size_t)(t->nbytes - done);
			ssize_t n = copy_file_range(sp.fd, &in_off, out, &out_off, want, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;  /* EXDEV, ENOSYS, EINVAL...: read and write the rest */
			done += (uint64_t)n;
		}
		if (done && lseek(out, (off_t)(*pos + done), SEEK_SET) < 0)
			return -errno;
	} else if (mfs_tensor_span(&sp, m, t, 0) == 0 && sp.mem) {
		if (write_all(out, sp.mem, (size_t)t->nbytes) < 0)
			return -errno;
		done = t->nbytes;
	}
	while (done < t->nbytes) {
		size_t want = t->nbytes - done > buflen ? buflen : (size_t)(t->nbytes - done);
		ssize_t n = mfs_tensor_read(m, t, buf, want, done);
		if (n <= 0)
			return n < 0 ? (int)n : -EIO;
		if (write_all(out, buf, (size_t)n) < 0)
			return -errno;
		done += (uint64_t)n;
	}
	*pos += t->nbytes;
	return 0;
}

/* The header: compact JSON, __metadata__ first, tensors in order, offsets tiling. */
static char *make_header(const mfs_model *m, struct mfs_tensor *const *ts, size_t n_ts,
                         size_t *hlen, const char *path)
{
	const struct mfs_desc *d = mfs_model_desc(m);
	json_t *root = json_object(), *md = json_object();
	char *text = NULL;
	if (!root || !md)
		goto oom;
	for (size_t i = 0; i < d->n_props; i++) {
		const struct mfs_meta *p = &d->props[i];
		json_t *v = json_stringn(p->value, p->len);
		if (!v || json_object_set_new(md, p->name, v) < 0) {
			fprintf(stderr, "modelfs: %s: prop '%.200s' is not valid UTF-8: safetensors "
			        "metadata must be\n", path, p->name);
			json_decref(root);
			json_decref(md);
			return NULL;
		}
	}
	if (json_object_size(md) && json_object_set(root, "__metadata__", md) < 0)
		goto oom;
	uint64_t off = 0;
	for (size_t i = 0; i < n_ts; i++) {
		const struct mfs_tensor *t = ts[i];
		json_t *e = json_object(), *shape = json_array(), *offs = json_array();
		if (!e || !shape || !offs)
			goto oom;
		for (size_t k = 0; k < t->rank; k++)
			json_array_append_new(shape, json_integer(t->dims[k]));
		json_array_append_new(offs, json_integer((json_int_t)off));
		json_array_append_new(offs, json_integer((json_int_t)(off + t->nbytes)));
		off += t->nbytes;
		json_object_set_new(e, "dtype", json_string(st_name(t->dtype)));
		json_object_set_new(e, "shape", shape);
		json_object_set_new(e, "data_offsets", offs);
		if (json_object_set_new(root, t->name, e) < 0) {
			fprintf(stderr, "modelfs: %s: tensor name '%.200s' is not valid UTF-8: "
			        "safetensors names must be\n", path, t->name);
			json_decref(root);
			json_decref(md);
			return NULL;
		}
	}
	text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	json_decref(md);
	if (!text)
		goto oom2;
	size_t n = strlen(text), padded = (n + 7) / 8 * 8;
	char *p = realloc(text, padded + 1);
	if (!p) {
		free(text);
		goto oom2;
	}
	memset(p + n, ' ', padded - n);
	p[padded] = '\0';
	*hlen = padded;
	return p;
oom:
	json_decref(root);
	json_decref(md);
oom2:
	fprintf(stderr, "modelfs: out of memory\n");
	return NULL;
}

/* Is `outpath` (if it exists) one of the model's source files? */
static bool is_source(const mfs_model *m, const char *in, const char *outpath)
{
	struct stat so;
	if (stat(outpath, &so) < 0)
		return false;
	const struct mfs_desc *d = mfs_model_desc(m);
	char dir[PATH_MAX];
	const char *slash = strrchr(in, '/');
	if (slash)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - in), in);
	else
		snprintf(dir, sizeof(dir), ".");
	for (size_t i = 0; i < d->n_files; i++) {
		char p[PATH_MAX];
		struct stat sf;
		if (i == 0)
			snprintf(p, sizeof(p), "%s", in);
		else if ((size_t)snprintf(p, sizeof(p), "%s/%s", slash ? dir : ".",
		                          d->files[i].path) >= sizeof(p))
			continue;
		if (stat(p, &sf) == 0 && sf.st_dev == so.st_dev && sf.st_ino == so.st_ino)
			return true;
	}
	return false;
}

/*
 * Create the temporary file beside `outpath` that will be renamed over it:
 * its descriptor, and its name in *tmp (malloc'd).  -1 after a message,
 * *tmp NULL.
 */
static int open_tmp(const char *outpath, char **tmp)
{
	char name[PATH_MAX];
	*tmp = NULL;
	if ((size_t)snprintf(name, sizeof(name), "%s.tmp-%d", outpath, (int)getpid()) >=
	    sizeof(name)) {
		fprintf(stderr, "modelfs: %s: path too long\n", outpath);
		return -1;
	}
	int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "modelfs: %s: %s\n", name, strerror(errno));
		return -1;
	}
	if (!(*tmp = strdup(name))) {
		fprintf(stderr, "modelfs: out of memory\n");
		close(fd);
		unlink(name);
		return -1;
	}
	return fd;
}

/*
 * Write the safetensors file of tensors ts[0 .. n) to a new temporary file
 * beside `outpath`, fsync'd; its name in *tmp (malloc'd; NULL when none was
 * made).  0, or -1 after a message.
 */
static int write_file(const mfs_model *m, const char *in, struct mfs_tensor *const *ts, size_t n,
                      const char *outpath, char **tmp, char *buf)
{
	size_t hlen = 0;
	int fd = -1, status = -1;
	*tmp = NULL;
	char *header = make_header(m, ts, n, &hlen, in);
	if (!header)
		return -1;
	if ((fd = open_tmp(outpath, tmp)) < 0)
		goto out;
	uint8_t len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
	if (write_all(fd, len8, 8) < 0 || write_all(fd, header, hlen) < 0) {
		fprintf(stderr, "modelfs: %s: %s\n", outpath, strerror(errno));
		goto out;
	}
	uint64_t pos = 8 + hlen;
	for (size_t i = 0; i < n; i++) {
		int rc = copy_tensor(m, ts[i], fd, &pos, buf, 1 << 20);
		if (rc < 0) {
			fprintf(stderr, "modelfs: %s: tensor '%.200s': %s\n", in, ts[i]->name,
			        strerror(-rc));
			goto out;
		}
	}
	if (fsync(fd) < 0) {
		fprintf(stderr, "modelfs: %s: %s\n", outpath, strerror(errno));
		goto out;
	}
	status = 0;
out:
	if (fd >= 0 && close(fd) < 0 && status == 0) {
		fprintf(stderr, "modelfs: %s: %s\n", outpath, strerror(errno));
		status = -1;
	}
	free(header);
	return status;
}

/*
 * The model's tensors, checked: each has a safetensors dtype and a name of
 * its own.  0, or -1 after a message.
 */
static int check_tensors(const mfs_model *m, const char *in)
{
	const struct mfs_graph *g = mfs_model_desc(m)->graph;
	const char **names = malloc((g->n_inits ? g->n_inits : 1) * sizeof(*names));
	int status = -1;
	if (!names) {
		fprintf(stderr, "modelfs: out of memory\n");
		return -1;
	}
	for (size_t i = 0; i < g->n_inits; i++) {
		const struct mfs_tensor *t = g->inits[i];
		if (!st_name(t->dtype)) {
			unsigned be, bb;
			fprintf(stderr, "modelfs: %s: tensor '%.200s' of dtype %s has no safetensors "
			        "dtype%s\n", in, t->name, mfs_desc_dtype_name(mfs_model_desc(m), t->dtype),
			        mfs_dtype_block(t->dtype, &be, &bb) ?
			        " (a block-quantized type; convert does not dequantize)" : "");
			goto out;
		}
		names[i] = t->name;
	}
	qsort(names, g->n_inits, sizeof(*names), strp_cmp);
	for (size_t i = 0; i < g->n_inits; i++) {
		if ((i && strcmp(names[i - 1], names[i]) == 0) || strcmp(names[i], "__metadata__") == 0) {
			fprintf(stderr, "modelfs: %s: two tensors are named '%.200s' (or one is "
			        "__metadata__): safetensors names are unique\n", in, names[i]);
			goto out;
		}
	}
	status = 0;
out:
	free(names);
	return status;
}

/* Rename every tmp[i] over out[i], in order: 0, or -1 after a message. */
static int rename_all(char **tmp, char **out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (rename(tmp[i], out[i]) < 0) {
			fprintf(stderr, "modelfs: %s: %s\n", out[i], strerror(errno));
			return -1;
		}
		free(tmp[i]);
		tmp[i] = NULL;
	}
	return 0;
}

/* The first tensor of each shard: starts[0 .. *n_shards), starts[*n_shards] = n. */
static size_t *plan_shards(struct mfs_tensor *const *ts, size_t n, uint64_t limit,
                           size_t *n_shards)
{
	size_t *starts = malloc((n + 2) * sizeof(*starts)), k = 0;
	if (!starts)
		return NULL;
	uint64_t cur = 0;
	starts[k++] = 0;
	for (size_t i = 0; i < n; i++) {
		/* A shard that has tensors takes the next only within the limit; a
		 * tensor bigger than the limit is a shard of its own. */
		if (cur > 0 && (ts[i]->nbytes > limit || cur > limit - ts[i]->nbytes)) {
			starts[k++] = i;
			cur = 0;
		}
		cur += ts[i]->nbytes;
	}
	starts[k] = n;
	*n_shards = k;
	return starts;
}

/* Does `s` end with `suffix`? */
static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

#define INDEX_SUFFIX ".safetensors.index.json"

/*
 * The index of shards out[0 .. n): {"metadata": {"total_size": N},
 * "weight_map": {tensor: shard file name}}, as Hugging Face writes it.
 */
static char *make_index(struct mfs_tensor *const *ts, const size_t *starts, size_t n,
                        char **out)
{
	json_t *root = json_object(), *md = json_object(), *wm = json_object();
	uint64_t total = 0;
	char *text = NULL;
	if (!root || !md || !wm)
		goto out;
	for (size_t k = 0; k < n; k++) {
		const char *base = strrchr(out[k], '/');
		base = base ? base + 1 : out[k];
		for (size_t i = starts[k]; i < starts[k + 1]; i++) {
			total += ts[i]->nbytes;
			if (json_object_set_new(wm, ts[i]->name, json_string(base)) < 0)
				goto out;
		}
	}
	if (json_object_set_new(md, "total_size", json_integer((json_int_t)total)) < 0 ||
	    json_object_set(root, "metadata", md) < 0 || json_object_set(root, "weight_map", wm) < 0)
		goto out;
	text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
out:
	json_decref(root);
	json_decref(md);
	json_decref(wm);
	return text;
}

/*
 * Write the index's text to a temporary file beside `path`, fsync'd.
 * 0, or -1 after a message.
 */
static int write_index(const char *path, const char *text, char **tmp)
{
	int fd = open_tmp(path, tmp);
	if (fd < 0)
		return -1;
	int ok = write_all(fd, text, strlen(text)) == 0 && write_all(fd, "\n", 1) == 0 &&
	         fsync(fd) == 0;
	if (close(fd) < 0)
		ok = 0;
	if (!ok)
		fprintf(stderr, "modelfs: %s: %s\n", path, strerror(errno));
	return ok ? 0 : -1;
}

int cmd_convert(const char *in, const char *outpath, uint64_t max_shard)
{
	mfs_model *m = NULL;
	char err[1024];
	if (max_shard && !ends_with(outpath, INDEX_SUFFIX)) {
		fprintf(stderr, "modelfs: %s: with --max-shard-size, OUT names the index, "
		        "NAME" INDEX_SUFFIX "\n", outpath);
		return 1;
	}
	if (mfs_model_open(&m, in, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "modelfs: %s\n", err);
		return 1;
	}
	const struct mfs_graph *g = mfs_model_desc(m)->graph;
	struct mfs_tensor *const *ts = g->inits;
	size_t n = g->n_inits, n_out = 1, *starts = NULL;
	char **tmp = NULL, **out = NULL, *buf = NULL, *index = NULL;
	int status = 1;
	if (check_tensors(m, in) < 0)
		goto done;
	if (max_shard) {
		starts = plan_shards(ts, n, max_shard, &n_out);
	} else if ((starts = malloc(2 * sizeof(*starts)))) {
		starts[0] = 0;
		starts[1] = n;
	}
	if (starts && max_shard && n_out > 99999) {
		fprintf(stderr, "modelfs: %s: %zu shards of at most %" PRIu64 " bytes: more than "
		        "99999\n", in, n_out, max_shard);
		n_out = 0;
		goto done;
	}
	/* The files written: the shards (or the one file), then the index. */
	tmp = starts ? calloc(n_out + 1, sizeof(*tmp)) : NULL;
	out = starts ? calloc(n_out + 1, sizeof(*out)) : NULL;
	buf = malloc(1 << 20);
	if (!starts || !tmp || !out || !buf) {
		fprintf(stderr, "modelfs: out of memory\n");
		goto done;
	}
	size_t stem = strlen(outpath) - (max_shard ? strlen(INDEX_SUFFIX) : 0);
	for (size_t k = 0; k < n_out + (max_shard ? 1 : 0); k++) {
		char name[PATH_MAX];
		size_t need = max_shard && k < n_out ?
		              (size_t)snprintf(name, sizeof(name), "%.*s-%05zu-of-%05zu.safetensors",
		                               (int)stem, outpath, k + 1, n_out) :
		              (size_t)snprintf(name, sizeof(name), "%s", outpath);
		if (need >= sizeof(name)) {
			fprintf(stderr, "modelfs: %s: path too long\n", outpath);
			goto done;
		}
		if (!(out[k] = strdup(name))) {
			fprintf(stderr, "modelfs: out of memory\n");
			goto done;
		}
	}
	/* The output replaces OUT by a rename: if OUT is the model, a shard or
	 * an external data file, that would destroy the input (cp refuses the
	 * same file too). */
	for (size_t k = 0; k < n_out + (max_shard ? 1 : 0); k++) {
		if (is_source(m, in, out[k])) {
			fprintf(stderr, "modelfs: %s: is a file of the model %s itself; write the "
			        "safetensors file under another name\n", out[k], in);
			goto done;
		}
	}
	for (size_t k = 0; k < n_out; k++)
		if (write_file(m, in, ts + starts[k], starts[k + 1] - starts[k], out[k], &tmp[k],
		               buf) < 0)
			goto done;
	if (max_shard) {
		index = make_index(ts, starts, n_out, out);
		if (!index) {
			fprintf(stderr, "modelfs: out of memory\n");
			goto done;
		}
		if (write_index(outpath, index, &tmp[n_out]) < 0)
			goto done;
	}
	/* The shards first, the index last: it names only files already there. */
	if (rename_all(tmp, out, n_out + (max_shard ? 1 : 0)) < 0)
		goto done;
	status = 0;
done:
	for (size_t k = 0; k < n_out + 1; k++) {
		if (tmp && tmp[k]) {
			unlink(tmp[k]);
			free(tmp[k]);
		}
		if (out)
			free(out[k]);
	}
	free(index);
	free(buf);
	free(tmp);
	free(out);
	free(starts);
	mfs_model_close(m);
	return status;
}

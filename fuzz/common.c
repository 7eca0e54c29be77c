/*
 * fuzz/common.c — scratch directory, file helpers and the model walker
 * shared by the fuzz targets (see common.h).  Every target keeps its files
 * in one directory per process, so two fuzzers (or a fuzzer and the replay
 * tests) never see each other's files.
 */
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[256];
static char pathbuf[512];

void fz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "fuzz oracle failed: %s:%d: %s\n", file, line, what);
	fflush(stderr);
	abort();
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	remove(path);
	return 0;
}

static void scratch_cleanup(void)
{
	if (scratch[0])
		nftw(scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fz_scratch(void)
{
	if (!scratch[0]) {
		/* fuzz/run points MFS_FUZZ_SCRATCH at a directory it removes
		 * afterwards: libFuzzer ends a timed run without running atexit(). */
		const char *base = getenv("MFS_FUZZ_SCRATCH");
		if (!base || !*base)
			base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(scratch, sizeof(scratch), "%s/mfs-fuzz-XXXXXX", base);
		if (!mkdtemp(scratch)) {
			perror("mkdtemp");
			abort();
		}
		atexit(scratch_cleanup);
	}
	return scratch;
}

const char *fz_path(const char *name)
{
	snprintf(pathbuf, sizeof(pathbuf), "%s/%s", fz_scratch(), name);
	return pathbuf;
}

void fz_write(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(path);
		abort();
	}
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n <= 0) {
			perror(path);
			abort();
		}
		p += n;
		len -= (size_t)n;
	}
	close(fd);
}

uint8_t *fz_slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	uint8_t *p = malloc((size_t)st.st_size + 1);
	size_t done = 0;
	while (p && done < (size_t)st.st_size) {
		ssize_t n = pread(fd, p + done, (size_t)st.st_size - done, (off_t)done);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	*len = done;
	return p;
}

static void clear_at(int dfd, const char *const *keep)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		bool kept = false;
		for (size_t i = 0; keep && keep[i]; i++)
			kept |= !strcmp(keep[i], de->d_name);
		if (kept)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			continue;
		int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			clear_at(sub, NULL);
		unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
	}
	closedir(d);
}

void fz_clear(const char *dir, const char *const *keep)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		clear_at(dfd, keep);
}

/* ------------------------------------------------------------- walker */

/* Every byte the walker looks at is folded in here, so nothing is optimised away. */
static volatile size_t sink;

static void touch(const char *s)
{
	if (s)
		sink += strlen(s);
}

static void walk_graph(const struct mfs_graph *g, unsigned depth);

static void walk_shape(const struct mfs_shape *s)
{
	if (!s->known)
		return;
	for (size_t i = 0; i < s->rank; i++) {
		FZ_CHECK(s->dims[i].value >= -1);
		touch(s->dims[i].param);
	}
	char buf[64];
	size_t need = mfs_shape_format(buf, sizeof(buf), s);
	FZ_CHECK(need >= sizeof(buf) || strlen(buf) == need);
}

static void walk_values(const struct mfs_value *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		touch(v[i].name);
		touch(v[i].dtype);
		touch(v[i].doc_string);
		walk_shape(&v[i].shape);
	}
}

static void walk_tensor(const struct mfs_tensor *t)
{
	touch(t->name);
	touch(t->doc_string);
	sink += t->rank ? (size_t)t->dims[t->rank - 1] : 0;
	for (size_t i = 0; i < t->rank; i++)
		FZ_CHECK(t->dims[i] >= 0);
	sink += mfs_dtype_bits(t->dtype);
	touch(mfs_dtype_name(t->dtype));
}

static void walk_attrs(const struct mfs_attr *a, size_t n, unsigned depth)
{
	for (size_t i = 0; i < n; i++) {
		touch(a[i].name);
		touch(a[i].ref_attr_name);
		touch(a[i].doc_string);
		for (size_t k = 0; k < a[i].text_len; k++)
			sink += (uint8_t)a[i].text[k];
		for (size_t k = 0; k < a[i].n_tensors; k++)
			walk_tensor(a[i].tensors[k]);
		for (size_t k = 0; k < a[i].n_sparse; k++) {
			touch(a[i].sparse[k]->name);
			walk_tensor(a[i].sparse[k]->values);
			walk_tensor(a[i].sparse[k]->indices);
		}
		for (size_t k = 0; k < a[i].n_graphs; k++)
			walk_graph(a[i].graphs[k], depth + 1);
	}
}

static void walk_nodes(const struct mfs_node *nd, size_t n, unsigned depth)
{
	for (size_t i = 0; i < n; i++) {
		touch(nd[i].op_type);
		touch(nd[i].domain);
		touch(nd[i].name);
		touch(nd[i].doc_string);
		for (size_t k = 0; k < nd[i].n_inputs; k++)
			touch(nd[i].inputs[k]);
		for (size_t k = 0; k < nd[i].n_outputs; k++)
			touch(nd[i].outputs[k]);
		walk_attrs(nd[i].attrs, nd[i].n_attrs, depth);
	}
}

static void walk_graph(const struct mfs_graph *g, unsigned depth)
{
	/* The codec promises graphs nest no deeper than MFS_MAX_DEPTH (64). */
	FZ_CHECK(depth <= 64);
	if (!g)
		return;
	touch(g->name);
	touch(g->doc_string);
	walk_values(g->inputs, g->n_inputs);
	for (size_t i = 0; i < g->n_inputs; i++)
		sink += g->input_is_init[i];
	walk_values(g->outputs, g->n_outputs);
	walk_values(g->values, g->n_values);
	walk_nodes(g->nodes, g->n_nodes, depth);
	for (size_t i = 0; i < g->n_inits; i++)
		walk_tensor(g->inits[i]);
	for (size_t i = 0; i < g->n_sparse_inits; i++) {
		touch(g->sparse_inits[i]->name);
		walk_tensor(g->sparse_inits[i]->values);
		walk_tensor(g->sparse_inits[i]->indices);
	}
}

bool fz_reads_may_fail;

static void read_tensor(const mfs_model *m, const struct mfs_desc *d, const struct mfs_tensor *t)
{
	static uint8_t buf[1 << 16];
	if (!t->mem) {
		FZ_CHECK(t->src < d->n_files);
		FZ_CHECK(t->off <= d->files[t->src].size);
		FZ_CHECK(t->nbytes <= d->files[t->src].size - t->off);
	}
	uint64_t off = 0;
	while (off < t->nbytes) {
		ssize_t n = mfs_tensor_read(m, t, buf, sizeof(buf), off);
		/* A pack's damaged chunk fails its read, and only that. */
		if (fz_reads_may_fail && n == -EIO)
			return;
		FZ_CHECK(n > 0);
		FZ_CHECK((uint64_t)n <= t->nbytes - off);
		for (ssize_t i = 0; i < n; i += 512)
			sink += buf[i];
		off += (uint64_t)n;
	}
	FZ_CHECK(mfs_tensor_read(m, t, buf, sizeof(buf), t->nbytes) == 0);
	FZ_CHECK(mfs_tensor_read(m, t, buf, sizeof(buf), t->nbytes + 12345) == 0);
	if (t->nbytes > 3) {
		/* A short read ending exactly at the end is not cut short. */
		uint8_t a[3];
		FZ_CHECK(mfs_tensor_read(m, t, a, 3, t->nbytes - 3) == 3);
	}
}

void fz_walk_model(const mfs_model *m)
{
	const struct mfs_desc *d = mfs_model_desc(m);
	FZ_CHECK(d->graph != NULL);
	FZ_CHECK(d->n_files >= 1);
	for (size_t i = 0; i < d->n_meta; i++) {
		touch(d->meta[i].name);
		for (size_t k = 0; k < d->meta[i].len; k++)
			sink += (uint8_t)d->meta[i].value[k];
	}
	for (size_t i = 0; i < d->n_props; i++) {
		touch(d->props[i].name);
		sink += d->props[i].len;
	}
	walk_graph(d->graph, 0);
	for (size_t i = 0; i < d->n_functions; i++) {
		const struct mfs_function *f = &d->functions[i];
		touch(f->name);
		touch(f->domain);
		for (size_t k = 0; k < f->n_inputs; k++)
			touch(f->inputs[k]);
		for (size_t k = 0; k < f->n_outputs; k++)
			touch(f->outputs[k]);
		for (size_t k = 0; k < f->n_attributes; k++)
			touch(f->attributes[k]);
		walk_attrs(f->attr_defaults, f->n_attr_defaults, 0);
		walk_nodes(f->nodes, f->n_nodes, 0);
		sink += f->opset_len;
	}
	for (size_t i = 0; i < d->n_training; i++) {
		walk_graph(d->training[i].initialization, 0);
		walk_graph(d->training[i].algorithm, 0);
	}
	for (size_t i = 0; i < d->n_files; i++) {
		touch(d->files[i].path);
		struct mfs_span sp;
		/* A source without a descriptor (a pack's) says so. */
		int src = mfs_file_span(&sp, m, i, 0);
		FZ_CHECK(src == 0 ? sp.fd >= 0 : src == -EOPNOTSUPP);
	}
	for (uint64_t i = 0; i < d->n_tensors; i++) {
		const struct mfs_tensor *t = d->tensors[i];
		FZ_CHECK(t->id == i);
		walk_tensor(t);
		uint64_t want;
		if (t->dtype != MFS_DT_STRING &&
		    mfs_tensor_nbytes(&want, t->dtype, t->dims, t->rank) == 0 &&
		    mfs_dtype_bits(t->dtype) != 0)
			FZ_CHECK(want == t->nbytes);
		read_tensor(m, d, t);
	}
}

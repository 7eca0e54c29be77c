/*
 * tools/modelfs.c — the `modelfs` command.
 *
 * `modelfs info MODEL` prints what a mount would show (format, metadata,
 * inputs and outputs, counts and a tensor table) using the codec alone, with
 * no FUSE: it is the proof that the format library stands on its own.
 * Every text of the model it prints is escaped as the mount's text files
 * are (doc/design.md §3.5), so each item is one line.
 *
 * `modelfs abort|status MOUNTPOINT` drive the transaction of a live mount
 * through its control files (doc/design.md §5.5): a write to
 * MOUNTPOINT/.modelfs/abort, a read of .modelfs/status, where MOUNTPOINT
 * may be any path inside the mount (mount_root).  They need nothing but the
 * mount, so they work as any user who may write there.  `commit`,
 * `unmount` and `recover` are in lifecycle.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "modelfs/model.h"

#include "tools.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: modelfs info|recover MODEL\n"
	        "       modelfs commit|abort|status|unmount MOUNTPOINT\n"
	        "       modelfs commit --to TEMPLATE MOUNTPOINT\n"
	        "       modelfs convert MODEL OUT.safetensors\n"
	        "       modelfs convert --max-shard-size SIZE MODEL OUT.safetensors.index.json\n"
	        "       modelfs diff [--tolerance ABS] [--rtol REL] [--json] A B\n"
	        "       modelfs pack MODEL [-o OUT] [--level N] [--chunk SIZE] [--plain]\n"
	        "                    [--threads N]\n"
	        "       modelfs unpack PACK [-o DIR]\n"
	        "       modelfs verify MODEL|PACK\n"
	        "       modelfs --help | --version\n"
	        "\n"
	        "  info MODEL          print format, metadata, inputs, outputs, counts and the\n"
	        "                      tensor table of MODEL (ONNX or safetensors) without\n"
	        "                      mounting\n"
	        "  recover MODEL       finish or drop an interrupted commit of MODEL and\n"
	        "                      check its journal, without mounting\n"
	        "  convert MODEL OUT   write MODEL's tensors and props to the safetensors\n"
	        "                      file OUT, streamed, running nothing of MODEL; with\n"
	        "                      --max-shard-size, shards NAME-00001-of-0000N.safetensors\n"
	        "                      of at most SIZE tensor bytes and their index OUT\n"
	        "  diff A B            compare two models' tensors and props (any formats);\n"
	        "                      exit 0 same, 1 different, 2 trouble\n"
	        "  pack MODEL          compress MODEL and every file it names into one pack,\n"
	        "                      MODEL.mfs (mountable; prints its SHA-256 and ratio)\n"
	        "  unpack PACK         restore a pack's files, byte-identical, into DIR (.)\n"
	        "  verify MODEL|PACK   recompute every file's and tensor's SHA-256: print\n"
	        "                      them (a model) or check them against the manifest\n"
	        "  commit MOUNTPOINT   commit the edits staged in a mount, atomically (with\n"
	        "                      progress on a terminal)\n"
	        "  commit --to TEMPLATE MOUNTPOINT\n"
	        "                      commit them as a new file beside the model, named by\n"
	        "                      TEMPLATE (model_v{n}_{sha256:12}.onnx), print its\n"
	        "                      name, and switch the mount to it\n"
	        "  abort MOUNTPOINT    drop the edits staged in a mount\n"
	        "  status MOUNTPOINT   print the staged edits, the last commit's result and\n"
	        "                      the journal's state\n"
	        "  unmount MOUNTPOINT  commit, unmount, wait for the daemon to exit; exits\n"
	        "                      non-zero unless every staged edit reached the model\n"
	        "  (MOUNTPOINT may be any file or directory inside the mount)\n");
}

/* ------------------------------------------------------------ mounts */

#define FUSE_SUPER_MAGIC 0x65735546

/*
 * The root of the modelfs mount that `path` lies in, for a command run from
 * a directory (or naming a file) inside a mount: the nearest directory at
 * or above it, on the same FUSE file system, that has a .modelfs/ directory.
 * The walk stops where the file system changes, so nothing outside the
 * mount is ever taken for it.  Returns 0 with the root in `out`, or -1.
 */
static int mount_root(const char *path, char *out, size_t len)
{
	char p[PATH_MAX], ctl[PATH_MAX + 16];
	struct stat st, pst;
	struct statfs sf;
	if (!realpath(path, p) || stat(p, &st) < 0)
		return -1;
	if (statfs(p, &sf) < 0 || sf.f_type != FUSE_SUPER_MAGIC)
		return -1;
	for (;;) {
		if (S_ISDIR(st.st_mode)) {
			snprintf(ctl, sizeof(ctl), "%s/.modelfs", strcmp(p, "/") ? p : "");
			struct stat cst;
			if (stat(ctl, &cst) == 0 && S_ISDIR(cst.st_mode) && cst.st_dev == st.st_dev) {
				snprintf(out, len, "%s", p);
				return 0;
			}
		}
		char *slash = strrchr(p, '/');
		if (!slash || !strcmp(p, "/"))
			return -1;
		if (slash == p)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (stat(p, &pst) < 0 || pst.st_dev != st.st_dev)
			return -1;      /* past the top of the mount */
		st = pst;
	}
}

int ctl_root(const char *mnt, char *out, size_t len)
{
	char ctl[PATH_MAX + 16];
	struct stat st;
	snprintf(ctl, sizeof(ctl), "%s/.modelfs", mnt);
	if (stat(ctl, &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(out, len, "%s", mnt);
		return 0;
	}
	if (mount_root(mnt, out, len) == 0)
		return 0;
	fprintf(stderr, "modelfs: %s: not a modelfs mount\n", mnt);
	return -1;
}

/*
 * Open <root>/.modelfs/<file> of the mount at or above MOUNTPOINT, saying
 * so when there is none.
 */
int ctl_open(const char *mnt, const char *file, int flags)
{
	char path[PATH_MAX + 32], root[PATH_MAX];
	snprintf(path, sizeof(path), "%s/.modelfs/%s", mnt, file);
	int fd = open(path, flags | O_CLOEXEC);
	int e = errno;
	if (fd < 0 && (e == ENOENT || e == ENOTDIR)) {
		if (mount_root(mnt, root, sizeof(root)) == 0) {
			snprintf(path, sizeof(path), "%s/.modelfs/%s", strcmp(root, "/") ? root : "",
			         file);
			fd = open(path, flags | O_CLOEXEC);
			e = errno;
		} else {
			e = ENOENT;
		}
	}
	if (fd < 0 && (e == ENOENT || e == ENOTDIR))
		fprintf(stderr, "modelfs: %s: not a modelfs mount\n", mnt);
	else if (fd < 0)
		fprintf(stderr, "modelfs: %s: %s\n", path, strerror(e));
	return fd;
}

/* The whole of MOUNTPOINT/.modelfs/status, malloc'd; NULL after a message. */
char *ctl_status(const char *mnt, size_t *len)
{
	int fd = ctl_open(mnt, "status", O_RDONLY);
	if (fd < 0)
		return NULL;
	size_t n = 0, cap = 4096;
	char *buf = malloc(cap + 1);
	while (buf) {
		if (n == cap) {
			char *b = realloc(buf, cap * 2 + 1);
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "modelfs: %s/.modelfs/status: %s\n", mnt, strerror(errno));
			free(buf);
			buf = NULL;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (!buf)
		return NULL;
	buf[n] = '\0';
	*len = n;
	return buf;
}

static int cmd_status(const char *mnt)
{
	size_t n;
	char *s = ctl_status(mnt, &n);
	if (!s)
		return 1;
	fwrite(s, 1, n, stdout);
	free(s);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* abort: any write to the control file does it, and fails with its errno. */
static int cmd_abort(const char *mnt)
{
	int fd = ctl_open(mnt, "abort", O_WRONLY);
	if (fd < 0)
		return 1;
	ssize_t w;
	do
		w = write(fd, "1\n", 2);
	while (w < 0 && errno == EINTR);
	int err = w < 0 ? errno : 0;
	if (close(fd) < 0 && !err && errno != EINTR)
		err = errno;
	if (!err)
		return 0;
	fprintf(stderr, "modelfs: abort failed: %s\n", strerror(err));
	return 1;
}

/*
 * Text of the model on standard output, escaped as every text value is
 * (doc/design.md §3.5): '%', controls and DEL as %XX, so that what info
 * prints is one line per item whatever the model holds.
 */
static void put_text(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char e[4];
		size_t k = mfs_text_escape(e, sizeof(e), s + i, 1);
		fwrite(e, 1, k, stdout);
	}
}

static void put_str(const char *s)
{
	put_text(s, strlen(s));
}

/* `s` escaped into a malloc'd string, for a padded column; NULL on ENOMEM. */
static char *escaped(const char *s)
{
	size_t n = strlen(s), need = mfs_text_escape(NULL, 0, s, n);
	char *e = malloc(need + 1);
	if (e)
		mfs_text_escape(e, need + 1, s, n);
	return e;
}

/*
 * A meta/ file as info lines: "<name>: <line>" for each of its lines (the
 * file's text is escaped already, so a line is an item), "<name>: " when
 * it is empty.
 */
static void put_meta(const struct mfs_meta *m)
{
	const char *p = m->value, *end = m->value + m->len;
	do {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		printf("%s: ", m->name);
		fwrite(p, 1, n, stdout);
		putchar('\n');
		p = nl ? nl + 1 : end;
	} while (p < end);
}

static void print_values(const char *title, const struct mfs_value *v, size_t n,
                         const bool *skip)
{
	size_t shown = 0;
	for (size_t i = 0; i < n; i++)
		shown += !(skip && skip[i]);
	printf("%s: %zu\n", title, shown);
	for (size_t i = 0; i < n; i++) {
		if (skip && skip[i])
			continue;
		char shape[4096];
		mfs_shape_format(shape, sizeof(shape), &v[i].shape);
		fputs("  ", stdout);
		put_str(v[i].name);
		fputs("  ", stdout);
		put_str(v[i].dtype[0] ? v[i].dtype : "-");
		printf("  [%s]\n", shape);
	}
}

/* One row of the tensor table. */
struct row {
	const char *kind;
	const struct mfs_tensor *t;
	char *name;             /* the tensor's name escaped (§3.5), malloc'd */
};

struct walk {
	const mfs_model *m;
	uint64_t count;
	uint64_t bytes;
	struct row *rows;       /* count of them, unless `oom` */
	size_t n_rows;          /* rows filled in */
	size_t cap;
	bool oom;
};

static void tensor_row(struct walk *w, const char *where, const struct mfs_tensor *t)
{
	if (!w->oom && w->count == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct row *r = realloc(w->rows, cap * sizeof(*r));
		if (r) {
			w->rows = r;
			w->cap = cap;
		} else {
			w->oom = true;
		}
	}
	char *name = w->oom ? NULL : escaped(t->name);
	if (!name)
		w->oom = true;
	if (!w->oom)
		w->rows[w->n_rows++] = (struct row){where, t, name};
	w->count++;
	w->bytes += t->nbytes;
}

/*
 * A shape as the command shows it, everywhere: dims in brackets, a scalar
 * as "[]" (the files of the mount write a shape without brackets, and a
 * scalar as an empty line: mount.modelfs(8), THE TREE).
 */
static void shape_text(char *buf, size_t len, const struct mfs_tensor *t)
{
	char dims[4096];
	mfs_dims_format(dims, sizeof(dims), t->dims, t->rank);
	snprintf(buf, len, "[%s]", dims);
}

/* Columns a string takes on a terminal: its UTF-8 characters. */
static size_t columns(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* Print `s` left-aligned in `width` columns, then two spaces. */
static void cell(const char *s, size_t width)
{
	fputs(s, stdout);
	for (size_t c = columns(s); c < width + 2; c++)
		putchar(' ');
}

/* The tensor table, each column as wide as its widest cell. */
static void print_table(const struct walk *w)
{
	static const char *const head[] = {"kind", "name", "dtype", "shape"};
	size_t width[4], bytes_w = strlen("bytes");
	char shape[4200], num[32];
	for (int c = 0; c < 4; c++)
		width[c] = strlen(head[c]);
	for (uint64_t i = 0; i < w->count; i++) {
		const struct row *r = &w->rows[i];
		const char *cells[4] = {r->kind, r->name[0] ? r->name : "(unnamed)",
		                        mfs_desc_dtype_name(mfs_model_desc(w->m), r->t->dtype), shape};
		shape_text(shape, sizeof(shape), r->t);
		for (int c = 0; c < 4; c++) {
			size_t n = columns(cells[c]);
			if (n > width[c])
				width[c] = n;
		}
		size_t n = (size_t)snprintf(num, sizeof(num), "%" PRIu64, r->t->nbytes);
		if (n > bytes_w)
			bytes_w = n;
	}
	printf("tensor table:\n  ");
	for (int c = 0; c < 4; c++)
		cell(head[c], width[c]);
	printf("%*s\n", (int)bytes_w, "bytes");
	for (uint64_t i = 0; i < w->count; i++) {
		const struct row *r = &w->rows[i];
		shape_text(shape, sizeof(shape), r->t);
		printf("  ");
		cell(r->kind, width[0]);
		cell(r->name[0] ? r->name : "(unnamed)", width[1]);
		cell(mfs_desc_dtype_name(mfs_model_desc(w->m), r->t->dtype), width[2]);
		cell(shape, width[3]);
		printf("%*" PRIu64 "\n", (int)bytes_w, r->t->nbytes);
	}
}

static void free_rows(struct walk *w)
{
	for (size_t i = 0; i < w->n_rows; i++)
		free(w->rows[i].name);
	free(w->rows);
}

static void walk_graph(struct walk *w, const struct mfs_graph *g);

static void walk_sparse(struct walk *w, const char *where, const struct mfs_sparse *s)
{
	tensor_row(w, where, s->values);
	tensor_row(w, where, s->indices);
}

static void walk_nodes(struct walk *w, const struct mfs_node *nodes, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct mfs_node *nd = &nodes[i];
		for (size_t a = 0; a < nd->n_attrs; a++) {
			const struct mfs_attr *at = &nd->attrs[a];
			for (size_t k = 0; k < at->n_tensors; k++)
				tensor_row(w, "attr", at->tensors[k]);
			for (size_t k = 0; k < at->n_sparse; k++)
				walk_sparse(w, "attr", at->sparse[k]);
			for (size_t k = 0; k < at->n_graphs; k++)
				walk_graph(w, at->graphs[k]);
		}
	}
}

static void walk_graph(struct walk *w, const struct mfs_graph *g)
{
	for (size_t i = 0; i < g->n_inits; i++)
		tensor_row(w, "weight", g->inits[i]);
	for (size_t i = 0; i < g->n_sparse_inits; i++)
		walk_sparse(w, "sparse", g->sparse_inits[i]);
	walk_nodes(w, g->nodes, g->n_nodes);
}

static void walk_all(struct walk *w, const struct mfs_desc *d)
{
	walk_graph(w, d->graph);
	for (size_t i = 0; i < d->n_functions; i++)
		walk_nodes(w, d->functions[i].nodes, d->functions[i].n_nodes);
	for (size_t i = 0; i < d->n_training; i++) {
		if (d->training[i].initialization)
			walk_graph(w, d->training[i].initialization);
		if (d->training[i].algorithm)
			walk_graph(w, d->training[i].algorithm);
	}
}

/*
 * Hidden subcommands for tests/tools/onnx_xcheck.py, which compares what the
 * codec sees with python3-onnx.  `dump-tensors` prints one line per tensor in
 * the order of the info tensor table:
 *     <where> TAB <name> TAB <dtype> TAB <dims> TAB <nbytes> TAB <fnv1a64 of data>
 * `dump-nodes` prints the graphs and nodes in walk order.  Names are escaped
 * as info escapes them (put_text: '%', tabs, newlines and other controls as
 * %XX) so each record is one line.
 */
static void put_escaped(const char *s)
{
	put_str(s);
}

struct dump {
	const mfs_model *m;
	int rc;
};

static void dump_tensor(struct dump *dp, const char *where, const struct mfs_tensor *t)
{
	static unsigned char buf[1 << 20];
	uint64_t h = 0xcbf29ce484222325ull;     /* FNV-1a 64 */
	uint64_t off = 0;
	while (off < t->nbytes) {
		ssize_t n = mfs_tensor_read(dp->m, t, buf, sizeof(buf), off);
		if (n <= 0) {
			fprintf(stderr, "modelfs: reading tensor '%s': %s\n", t->name,
			        n < 0 ? strerror((int)-n) : "short read");
			dp->rc = 1;
			break;
		}
		for (ssize_t i = 0; i < n; i++) {
			h ^= buf[i];
			h *= 0x100000001b3ull;
		}
		off += (uint64_t)n;
	}
	char dims[4096];
	mfs_dims_format(dims, sizeof(dims), t->dims, t->rank);
	printf("%s\t", where);
	put_escaped(t->name);
	printf("\t%s\t%s\t%" PRIu64 "\t%016" PRIx64 "\n", mfs_dtype_name(t->dtype), dims,
	       t->nbytes, h);
}

static void dump_graph(struct dump *dp, const struct mfs_graph *g);

static void dump_attrs(struct dump *dp, const struct mfs_attr *attrs, size_t n)
{
	for (size_t a = 0; a < n; a++) {
		const struct mfs_attr *at = &attrs[a];
		for (size_t k = 0; k < at->n_tensors; k++)
			dump_tensor(dp, "attr", at->tensors[k]);
		for (size_t k = 0; k < at->n_sparse; k++) {
			dump_tensor(dp, "attr", at->sparse[k]->values);
			dump_tensor(dp, "attr", at->sparse[k]->indices);
		}
		for (size_t k = 0; k < at->n_graphs; k++)
			dump_graph(dp, at->graphs[k]);
	}
}

static void dump_graph(struct dump *dp, const struct mfs_graph *g)
{
	for (size_t i = 0; i < g->n_inits; i++)
		dump_tensor(dp, "weight", g->inits[i]);
	for (size_t i = 0; i < g->n_sparse_inits; i++) {
		dump_tensor(dp, "sparse", g->sparse_inits[i]->values);
		dump_tensor(dp, "sparse", g->sparse_inits[i]->indices);
	}
	for (size_t i = 0; i < g->n_nodes; i++)
		dump_attrs(dp, g->nodes[i].attrs, g->nodes[i].n_attrs);
}

static void put_list(char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			putchar(',');
		put_escaped(v[i]);
	}
}

static void put_values(const struct mfs_value *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			putchar(',');
		put_escaped(v[i].name);
	}
}

static void dump_nodes_graph(const struct mfs_graph *g, unsigned depth)
{
	printf("graph\t%u\t", depth);
	put_escaped(g->name);
	putchar('\t');
	put_values(g->inputs, g->n_inputs);
	putchar('\t');
	put_values(g->outputs, g->n_outputs);
	putchar('\n');
	for (size_t i = 0; i < g->n_nodes; i++) {
		const struct mfs_node *nd = &g->nodes[i];
		printf("node\t%u\t", depth);
		put_escaped(nd->op_type);
		putchar('\t');
		put_escaped(nd->domain);
		putchar('\t');
		put_list(nd->inputs, nd->n_inputs);
		putchar('\t');
		put_list(nd->outputs, nd->n_outputs);
		putchar('\n');
		for (size_t a = 0; a < nd->n_attrs; a++)
			for (size_t k = 0; k < nd->attrs[a].n_graphs; k++)
				dump_nodes_graph(nd->attrs[a].graphs[k], depth + 1);
	}
}

static int cmd_dump(const char *path, bool nodes)
{
	mfs_model *m = NULL;
	char err[1024];
	if (mfs_model_open(&m, path, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "modelfs: %s\n", err);
		return 1;
	}
	const struct mfs_desc *d = mfs_model_desc(m);
	struct dump dp = {.m = m, .rc = 0};
	if (nodes) {
		dump_nodes_graph(d->graph, 0);
		printf("counts\t%" PRIu64 "\t%" PRIu64 "\n", d->n_nodes, d->n_tensors);
	} else {
		dump_graph(&dp, d->graph);
		for (size_t i = 0; i < d->n_functions; i++) {
			const struct mfs_function *fn = &d->functions[i];
			for (size_t k = 0; k < fn->n_nodes; k++)
				dump_attrs(&dp, fn->nodes[k].attrs, fn->nodes[k].n_attrs);
			dump_attrs(&dp, fn->attr_defaults, fn->n_attr_defaults);
		}
		for (size_t i = 0; i < d->n_training; i++) {
			if (d->training[i].initialization)
				dump_graph(&dp, d->training[i].initialization);
			if (d->training[i].algorithm)
				dump_graph(&dp, d->training[i].algorithm);
		}
	}
	mfs_model_close(m);
	return dp.rc;
}

/*
 * A prop that is already text, one element per line (MFS_DESC_PROPS_TEXT):
 * its first 8 lines joined by ", ", then how many there are in all.
 */
static void put_lines(const char *s, size_t n)
{
	size_t lines = 1, shown = 0;
	for (size_t i = 0; i < n; i++)
		lines += s[i] == '\n';
	for (size_t i = 0; i < n && shown < 8;) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t l = nl ? (size_t)(nl - (s + i)) : n - i;
		if (shown)
			fputs(", ", stdout);
		fwrite(s + i, 1, l, stdout);
		shown++;
		i += l + 1;
	}
	if (lines > 8)
		printf(", ... (%zu in all)", lines);
}

static int cmd_info(const char *path)
{
	mfs_model *m = NULL;
	char err[1024];
	int rc = mfs_model_open(&m, path, NULL, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "modelfs: %s\n", err);
		return 1;
	}
	const struct mfs_desc *d = mfs_model_desc(m);
	fputs("file: ", stdout);
	put_str(path);
	putchar('\n');
	for (size_t i = 0; i < d->n_meta; i++)
		put_meta(&d->meta[i]);
	for (size_t i = 0; i < d->n_props; i++) {
		fputs("prop ", stdout);
		put_str(d->props[i].name);
		fputs(": ", stdout);
		if (d->flags & MFS_DESC_PROPS_TEXT)
			put_lines(d->props[i].value, d->props[i].len);
		else
			put_text(d->props[i].value, d->props[i].len);
		putchar('\n');
	}
	const struct mfs_graph *g = d->graph;
	print_values("inputs", g->inputs, g->n_inputs, g->input_is_init);
	print_values("outputs", g->outputs, g->n_outputs, NULL);
	struct walk w = {.m = m};
	walk_all(&w, d);
	if (w.oom) {
		fprintf(stderr, "modelfs: out of memory\n");
		free_rows(&w);
		mfs_model_close(m);
		return 1;
	}
	printf("nodes: %" PRIu64 "\n", d->n_nodes);
	printf("functions: %zu\n", d->n_functions);
	printf("tensors: %" PRIu64 " (%" PRIu64 " bytes)\n", w.count, w.bytes);
	printf("files: %zu\n", d->n_files);
	for (size_t i = 0; i < d->n_files; i++) {
		fputs("  ", stdout);
		put_str(d->files[i].path);
		printf("  %" PRIu64 " bytes\n", d->files[i].size);
	}
	print_table(&w);
	free_rows(&w);
	mfs_model_close(m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("modelfs 0.1.0\n");
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "info"))
		return cmd_info(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "status"))
		return cmd_status(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "commit"))
		return cmd_commit(argv[2], NULL);
	if (argc == 5 && !strcmp(argv[1], "commit") && !strcmp(argv[2], "--to"))
		return cmd_commit(argv[4], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "commit") && !strncmp(argv[2], "--to=", 5))
		return cmd_commit(argv[3], argv[2] + 5);
	if (argc == 3 && !strcmp(argv[1], "abort"))
		return cmd_abort(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "unmount"))
		return cmd_unmount(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "recover"))
		return cmd_recover(argv[2]);
	if (argc >= 2 && !strcmp(argv[1], "pack"))
		return cmd_pack(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "unpack"))
		return cmd_unpack(argc, argv);
	if (argc == 3 && !strcmp(argv[1], "verify"))
		return cmd_verify(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "convert"))
		return cmd_convert(argv[2], argv[3], 0);
	if (argc == 6 && !strcmp(argv[1], "convert") && !strcmp(argv[2], "--max-shard-size")) {
		uint64_t max;
		if (mfs_parse_size(argv[3], &max) < 0) {
			fprintf(stderr, "modelfs: --max-shard-size %s: not a size (bytes, or a number "
			        "with K, M, G, KiB, MiB, GiB, KB, MB, GB)\n", argv[3]);
			return 2;
		}
		return cmd_convert(argv[4], argv[5], max);
	}
	if (argc >= 2 && !strcmp(argv[1], "diff"))
		return cmd_diff(argc - 2, argv + 2);
	if (argc == 3 && !strcmp(argv[1], "dump-tensors"))     /* hidden: for tests */
		return cmd_dump(argv[2], false);
	if (argc == 3 && !strcmp(argv[1], "dump-nodes"))        /* hidden: for tests */
		return cmd_dump(argv[2], true);
	usage(stderr);
	return 2;
}

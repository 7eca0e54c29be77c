/*
 * fs/main.c — mount.modelfs, the FUSE daemon.
 *
 *	mount.modelfs MODEL MOUNTPOINT [-o OPTS] [-f] [-d] [-s] [-h] [-V]
 *
 * main() is a ladder: parse the command line, resolve both paths while the
 * current directory still means something, open and validate the model as
 * a transaction (a bad model is one line on stderr and exit 1, with nothing
 * mounted; a journal left by a dead daemon is recovered and reported),
 * build the tree, create the session, mount, daemonize (so the command
 * returns only once the mount is live), run the loop, and unwind in reverse.
 * The loop's end commits what is staged (ll.c, destroy).
 *
 * The mount is read-write when the model's directory is writable (edits
 * are staged in a journal beside the model and committed by a rename in
 * that directory), read-only with -o ro or when it is not.
 *
 * The same binary is what mount(8) runs for `mount -t modelfs MODEL DIR`
 * and for an /etc/fstab line: `/sbin/mount.modelfs MODEL DIR -o OPTS`, with
 * options such as rw, auto or _netdev that make sense to mount(8) but not
 * to FUSE; those are accepted and dropped here (see cli_opts).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ll.h"
#include "modelfs/pack.h"

#define PROG "mount.modelfs"
#define VERSION "0.1.0"

struct cli {
	char *model;
	char *mountpoint;
	int foreground;
	int debug;
	int single;
	int help;
	int version;
	int rw;
	int ro;
	char *commit;
	char *commit_to;
	int force_types;
	int uid_set;
	unsigned uid;
	int gid_set;
	unsigned gid;
	int clone_fd;
	unsigned max_threads;
	unsigned max_idle_threads;
	unsigned max_read;
	bool max_read_set;      /* given by the user: kept whatever the model */
	char *cache_size_s;
	uint64_t cache_size;    /* the bound of the model's cache: a pack's decompressed
	                         * chunks in memory, a remote model's disk cache */
	/* remote models */
	char *cache;
	char *s3_endpoint;
	char *ca_file;
	int timeout_set;
	unsigned timeout;
	int retries_set;
	unsigned retries;
};

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_FOREGROUND,
	KEY_DEBUG,
	KEY_SINGLE,
	KEY_RW,
	KEY_RO,
	KEY_MAX_READ,
};

#define CLI_OPT(t, field, v) {t, offsetof(struct cli, field), v}

static const struct fuse_opt cli_opts[] = {
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("-f", KEY_FOREGROUND),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_KEY("-s", KEY_SINGLE),

	/* modelfs's own options */
	CLI_OPT("uid=%u", uid, 0),
	CLI_OPT("uid=", uid_set, 1),
	CLI_OPT("gid=%u", gid, 0),
	CLI_OPT("gid=", gid_set, 1),
	CLI_OPT("clone_fd", clone_fd, 1),
	CLI_OPT("max_threads=%u", max_threads, 0),
	CLI_OPT("max_idle_threads=%u", max_idle_threads, 0),
	CLI_OPT("commit=%s", commit, 0),
	CLI_OPT("commit_to=%s", commit_to, 0),
	CLI_OPT("force_types", force_types, 1),
	CLI_OPT("cache_size=%s", cache_size_s, 0),
	FUSE_OPT_KEY("max_read=", KEY_MAX_READ),
	CLI_OPT("cache=%s", cache, 0),
	CLI_OPT("s3_endpoint=%s", s3_endpoint, 0),
	CLI_OPT("ca_file=%s", ca_file, 0),
	CLI_OPT("timeout=%u", timeout, 0),
	CLI_OPT("timeout=", timeout_set, 1),
	CLI_OPT("retries=%u", retries, 0),
	CLI_OPT("retries=", retries_set, 1),

	/* mount(8)'s flags to its helpers: -n (no mtab), -v (verbose), -t TYPE */
	FUSE_OPT_KEY("-n", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("-v", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("-t ", FUSE_OPT_KEY_DISCARD),

	/* Options mount(8) and fstab pass that mean nothing to a FUSE mount. */
	FUSE_OPT_KEY("rw", KEY_RW),
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_KEY("dev", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("suid", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("exec", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nouser", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("owner", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("group", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("comment=", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_END
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " MODEL MOUNTPOINT [-o OPTS] [-f] [-d] [-s]\n"
	        "       " PROG " -h | -V\n"
	        "\n"
	        "Mount the model file MODEL (ONNX, safetensors, *.safetensors.index.json)\n"
	        "at MOUNTPOINT as a tree of graph nodes, tensors and metadata.  Edits are\n"
	        "staged and committed atomically (modelfs commit, fsync, unmount).\n"
	        "Returns once the mount is live; unmount with fusermount3 -u MOUNTPOINT.\n"
	        "\n"
	        "  -f                    stay in the foreground\n"
	        "  -d, -o debug          print every FUSE request (implies -f)\n"
	        "  -s                    single-threaded loop\n"
	        "  -h, --help            this help\n"
	        "  -V, --version         version\n"
	        "\n"
	        "  -o uid=N,gid=N        owner of every entry (default: the model file's)\n"
	        "  -o allow_other        let other users see the mount (root, or\n"
	        "                        user_allow_other in /etc/fuse.conf)\n"
	        "  -o max_read=N         largest read request (default %u; %u for a pack\n"
	        "                        or a remote model: nothing is spliced)\n"
	        "  -o max_threads=N      most worker threads (multi-threaded loop)\n"
	        "  -o max_idle_threads=N idle worker threads kept\n"
	        "  -o clone_fd           one /dev/fuse descriptor per thread\n"
	        "  -o fsname=S           name shown in /proc/mounts (default: MODEL)\n"
	        "  -o ro                 read-only: no journal, every edit fails (EROFS)\n"
	        "  -o rw                 read-write (the default when the model's directory\n"
	        "                        is writable; an error when it is not)\n"
	        "  -o commit=MODE        auto (default), rewrite or inplace: how commits\n"
	        "                        write the model (inplace: a patch through a redo\n"
	        "                        log, not atomic for other readers of the file;\n"
	        "                        a pack's commits write a new pack: no inplace)\n"
	        "  -o cache_size=SIZE    decompressed chunks a pack (MODEL.mfs) keeps in\n"
	        "                        memory (default 32M)\n"
	        "  -o commit_to=TEMPLATE every commit writes a new file beside the model,\n"
	        "                        named by TEMPLATE ({n} {sha256} {sha256:K} {stem}\n"
	        "                        {ext}), and the mount switches to it\n"
	        "  -o force_types        commit dtype edits that contradict the types the\n"
	        "                        graph declares (refused otherwise)\n"
	        "\n"
	        "  MODEL may be http://HOST/PATH, https://... or s3://BUCKET/KEY (read-only):\n"
	        "  -o cache=DIR          chunk cache (default $XDG_CACHE_HOME/modelfs; none)\n"
	        "  -o cache_size=SIZE    for a remote model: bound of the cache, LRU eviction\n"
	        "                        (default 10G)\n"
	        "  -o s3_endpoint=URL    S3-compatible store, path-style (credentials from\n"
	        "                        AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...)\n"
	        "  -o ca_file=PEM        certificates to trust for https (default: system's)\n"
	        "  -o timeout=S          seconds without a byte before a try fails (30)\n"
	        "  -o retries=N          more tries after 5xx or a dropped connection (3)\n"
	        "  -o nodev, nosuid, noexec, noatime, default_permissions, ...\n"
	        "                        passed to FUSE (see mount.fuse3(8))\n"
	        "  -o dev,suid,exec,auto,noauto,user,users,nofail,_netdev,defaults,x-*\n"
	        "                        accepted from mount(8) and fstab, and ignored\n"
	        "\n"
	        "See mount.modelfs(8).\n",
	        MFS_MAX_READ, MFS_MAX_READ_COPIED);
}

static int cli_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)outargs;
	struct cli *cli = data;
	switch (key) {
	case KEY_HELP:
		cli->help = 1;
		return 0;
	case KEY_VERSION:
		cli->version = 1;
		return 0;
	case KEY_FOREGROUND:
		cli->foreground = 1;
		return 0;
	case KEY_DEBUG:
		/* Keep it: fuse_session_new() turns on libfuse's request log. */
		cli->debug = 1;
		cli->foreground = 1;
		return 1;
	case KEY_SINGLE:
		cli->single = 1;
		return 0;
	case KEY_RW:
		cli->rw = 1;
		cli->ro = 0;
		return 0;
	case KEY_RO:
		cli->ro = 1;
		cli->rw = 0;
		return 0;       /* session_args() adds it for FUSE */
	case KEY_MAX_READ:
		if (sscanf(arg, "max_read=%u", &cli->max_read) != 1) {
			fprintf(stderr, PROG ": bad option '%s'\n", arg);
			return -1;
		}
		cli->max_read_set = true;
		return 1;       /* the kernel needs it too (ll_init) */
	case FUSE_OPT_KEY_OPT:
		/* x-systemd.* and friends are for mount(8) and systemd. */
		if (!strncmp(arg, "x-", 2))
			return 0;
		return 1;
	case FUSE_OPT_KEY_NONOPT:
		if (!cli->model) {
			cli->model = strdup(arg);
			return cli->model ? 0 : -1;
		}
		if (!cli->mountpoint) {
			cli->mountpoint = strdup(arg);
			return cli->mountpoint ? 0 : -1;
		}
		fprintf(stderr, PROG ": unexpected argument '%s' (see " PROG " -h)\n", arg);
		return -1;
	default:
		return 1;
	}
}

/*
 * If the caller closed 0, 1 or 2, the model would be opened on one of them
 * and a stray message could land in it: point them at /dev/null first.
 */
static void reopen_stdio(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		int n = open("/dev/null", O_RDWR);
		if (n >= 0 && n != fd)
			close(n);       /* a lower descriptor was closed after all */
	}
}

/*
 * The session's arguments: our defaults first, then whatever the user
 * passed, so that a user's fsname= or max_read= wins.
 */
static int session_args(struct fuse_args *out, const struct fuse_args *in, const char *model,
                        unsigned max_read, bool ro)
{
	char *opts = NULL;
	char base[128];
	snprintf(base, sizeof(base), "%sdefault_permissions,subtype=modelfs,max_read=%u",
	         ro ? "ro," : "", max_read);
	char *fsname = malloc(strlen(model) + sizeof("fsname="));
	if (!fsname)
		return -1;
	strcpy(fsname, "fsname=");
	strcat(fsname, model);
	int rc = fuse_opt_add_arg(out, in->argv[0]);
	if (rc == 0)
		rc = fuse_opt_add_opt(&opts, base);
	if (rc == 0)
		rc = fuse_opt_add_opt_escaped(&opts, fsname);   /* a ',' in the path must not split it */
	if (rc == 0)
		rc = fuse_opt_add_arg(out, "-o");
	if (rc == 0)
		rc = fuse_opt_add_arg(out, opts);
	for (int i = 1; rc == 0 && i < in->argc; i++)
		rc = fuse_opt_add_arg(out, in->argv[i]);
	free(opts);
	free(fsname);
	return rc;
}

/*
 * The kernel's readahead for a FUSE mount is the smaller of what INIT asks
 * for (MFS_READAHEAD, ll_init) and its bdi's read_ahead_kb, which starts at
 * 128 KiB: page-cache reads of a big tensor then arrive as 128 KiB requests.
 * Raise this mount's own bdi to MFS_READAHEAD.  Only root may; for anyone else
 * this quietly changes nothing.  The device number comes from mountinfo,
 * because stat() of the mount point would wait for INIT, which nobody
 * answers until the loop runs.
 */
static void raise_readahead(const char *mnt)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	char line[8192], dev[32] = "";
	while (fgets(line, sizeof(line), f)) {
		/* "<id> <parent> <maj:min> <root> <mount point> ..." */
		char d[32], point[4096];
		if (sscanf(line, "%*s %*s %31s %*s %4095s", d, point) == 2 && !strcmp(point, mnt))
			snprintf(dev, sizeof(dev), "%s", d);   /* the last one is on top */
	}
	fclose(f);
	if (!dev[0])
		return;
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char kb[16];
	int n = snprintf(kb, sizeof(kb), "%u", MFS_READAHEAD / 1024);
	if (write(fd, kb, (size_t)n) < 0) {
		/* not root, or no such knob: the default readahead stays */
	}
	close(fd);
}

/* -o commit=MODE.  Returns 0, or -1 after printing why. */
static int commit_mode(const char *s, enum mfs_commit_mode *out)
{
	*out = MFS_COMMIT_AUTO;
	if (!s || !strcmp(s, "auto"))
		return 0;
	if (!strcmp(s, "rewrite"))
		*out = MFS_COMMIT_REWRITE;
	else if (!strcmp(s, "inplace"))
		*out = MFS_COMMIT_INPLACE;
	else {
		fprintf(stderr, PROG ": bad option 'commit=%s' (auto, rewrite or inplace)\n", s);
		return -1;
	}
	return 0;
}

/* Is the directory of `path` (absolute) writable by us? */
static bool dir_writable(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	return access(dir, W_OK) == 0;
}

/*
 * Is directory `mnt` the directory of `file` or one above it (both
 * absolute, resolved)?  By device and inode, so that a second path to the
 * same directory (a bind mount) counts too.
 */
static bool covers(const char *mnt, const char *file)
{
	struct stat ms, ds;
	char dir[PATH_MAX];
	if (stat(mnt, &ms) < 0)
		return false;
	snprintf(dir, sizeof(dir), "%s", file);
	for (;;) {
		char *slash = strrchr(dir, '/');
		if (!slash)
			return false;
		if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (stat(dir, &ds) == 0 && ds.st_dev == ms.st_dev && ds.st_ino == ms.st_ino)
			return true;
		if (slash == dir)
			return false;
	}
}

/* The remote options, for every remote model this process opens.
 * Returns 0, or -1 after printing why. */
static int remote_setup(const struct cli *cli)
{
	struct mfs_remote_opts ro = {.timeout = 30, .retries = 3};
	ro.cache_dir = cli->cache;
	if (cli->cache && cli->cache[0] != '/' && strcmp(cli->cache, "none")) {
		fprintf(stderr, PROG ": bad option 'cache=%s' (an absolute directory, or none)\n",
		        cli->cache);
		return -1;
	}
	ro.cache_size = cli->cache_size;       /* parsed in main(); 0: the default */
	ro.s3_endpoint = cli->s3_endpoint;
	ro.ca_file = cli->ca_file;
	if (cli->ca_file && access(cli->ca_file, R_OK) < 0) {
		fprintf(stderr, PROG ": bad option 'ca_file=%s': %s\n", cli->ca_file,
		        strerror(errno));
		return -1;
	}
	if (cli->s3_endpoint && strncmp(cli->s3_endpoint, "http://", 7) &&
	    strncmp(cli->s3_endpoint, "https://", 8)) {
		fprintf(stderr, PROG ": bad option 's3_endpoint=%s' (an http:// or https:// URL)\n",
		        cli->s3_endpoint);
		return -1;
	}
	if (cli->timeout_set) {
		if (!cli->timeout || cli->timeout > 3600) {
			fprintf(stderr, PROG ": bad option 'timeout=%u' (1 to 3600 seconds)\n",
			        cli->timeout);
			return -1;
		}
		ro.timeout = cli->timeout;
	}
	if (cli->retries_set) {
		if (cli->retries > 20) {
			fprintf(stderr, PROG ": bad option 'retries=%u' (0 to 20)\n", cli->retries);
			return -1;
		}
		ro.retries = cli->retries;
	}
	if (mfs_remote_configure(&ro) < 0) {
		fprintf(stderr, PROG ": remote options too long\n");
		return -1;
	}
	return 0;
}

static int run_loop(struct fuse_session *se, const struct cli *cli)
{
	if (cli->single)
		return fuse_session_loop(se);
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, (unsigned)cli->clone_fd);
	if (cli->max_idle_threads)
		fuse_loop_cfg_set_idle_threads(cfg, cli->max_idle_threads);
	if (cli->max_threads)
		fuse_loop_cfg_set_max_threads(cfg, cli->max_threads);
	int rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return rc;
}

/*
 * fuse_daemonize() points stderr at /dev/null, where a sanitizer's report
 * from the daemon would vanish.  MFS_DAEMON_STDERR names a file to append
 * the daemon's stderr to instead; the test runner sets it for every mount
 * test and reads the file afterwards.
 */
static void keep_stderr(void)
{
	const char *path = getenv("MFS_DAEMON_STDERR");
	if (!path || !*path)
		return;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (fd != STDERR_FILENO) {
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_args sargs = FUSE_ARGS_INIT(0, NULL);
	struct cli cli = {.max_read = MFS_MAX_READ};
	mfs_txn *txn = NULL;
	struct mfs_fs fs = {0};
	struct fuse_session *se = NULL;
	bool handlers = false, mounted = false, fs_ready = false;
	char model_abs[PATH_MAX], mnt_abs[PATH_MAX], err[1024];
	int ret = 1, rc;

	reopen_stdio();
	/* On failure fuse_opt (or cli_proc) has printed the one line. */
	if (fuse_opt_parse(&args, &cli, cli_opts, cli_proc) < 0)
		goto out;
	if (cli.help) {
		usage(stdout);
		ret = 0;
		goto out;
	}
	if (cli.version) {
		printf(PROG " " VERSION " (libfuse %s)\n", fuse_pkgversion());
		ret = 0;
		goto out;
	}
	if (!cli.model || !cli.mountpoint) {
		fprintf(stderr, PROG ": missing %s (see " PROG " -h)\n",
		        cli.model ? "MOUNTPOINT" : "MODEL and MOUNTPOINT");
		goto out;
	}

	if (cli.cache_size_s && (mfs_parse_size(cli.cache_size_s, &cli.cache_size) < 0 ||
	                         cli.cache_size > SIZE_MAX / 2)) {
		fprintf(stderr, PROG ": bad option 'cache_size=%s' (a size: 64M, 1G)\n",
		        cli.cache_size_s);
		goto out;
	}
	if (remote_setup(&cli) < 0)
		goto out;
	bool remote = mfs_path_is_remote(cli.model);
	if (remote && cli.rw) {
		fprintf(stderr, PROG ": %s: cannot mount read-write: a remote model is read-only\n",
		        cli.model);
		goto out;
	}

	/* fuse_daemonize() moves to "/": resolve both paths now. */
	if (remote) {
		if (snprintf(model_abs, sizeof(model_abs), "%s", cli.model) >= (int)sizeof(model_abs)) {
			fprintf(stderr, PROG ": %s: URL too long\n", cli.model);
			goto out;
		}
		cli.ro = 1;
	} else if (!realpath(cli.model, model_abs)) {
		fprintf(stderr, PROG ": %s: %s\n", cli.model, strerror(errno));
		goto out;
	}
	if (!realpath(cli.mountpoint, mnt_abs)) {
		fprintf(stderr, PROG ": %s: %s\n", cli.mountpoint, strerror(errno));
		goto out;
	}
	/* The root is a directory: the kernel would mount it over a file too,
	 * and then fail every access to it with EIO. */
	struct stat mst;
	if (stat(mnt_abs, &mst) < 0) {
		fprintf(stderr, PROG ": %s: %s\n", cli.mountpoint, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(mst.st_mode)) {
		fprintf(stderr, PROG ": %s: the mount point is not a directory\n", cli.mountpoint);
		goto out;
	}

	/*
	 * The mount must not cover the model: the daemon reads and writes the
	 * model, its journal, its redo log and its external data beside it, in
	 * its directory, and once the mount is live a path through that
	 * directory leads into the mount itself (a commit would wait on its own
	 * daemon, unkillably).  So the mount point may be neither the model's
	 * directory nor any directory above it.
	 */
	if (!remote && covers(mnt_abs, model_abs)) {
		fprintf(stderr, PROG ": %s: the mount point would cover the model %s (its directory "
		        "holds the model's journal and side files): mount it somewhere else\n",
		        cli.mountpoint, cli.model);
		goto out;
	}

	/* A pack commits by writing a new pack (doc/pack.md, "How a commit
	 * writes a pack"): patching it in place does not apply, and asking
	 * for it is an error rather than a surprise. */
	if (cli.commit && !strcmp(cli.commit, "inplace") && mfs_model_path_rewrites(model_abs)) {
		fprintf(stderr, PROG ": %s: commit=inplace does not apply to a pack (a commit "
		        "writes a new pack): use commit=auto or commit=rewrite\n", cli.model);
		goto out;
	}
	/* For a URL, cache_size= bounds the disk cache (gigabytes, say): a
	 * remote pack keeps the default for its decompressed chunks in memory
	 * rather than take that bound for its RAM. */
	if (cli.cache_size && !remote)
		mfs_pack_set_cache_size((size_t)cli.cache_size);

	struct mfs_txn_opts topts = {0};
	if (commit_mode(cli.commit, &topts.mode) < 0)
		goto out;
	if (!cli.ro && !dir_writable(model_abs)) {
		if (cli.rw) {
			fprintf(stderr, PROG ": %s: cannot mount read-write: its directory is not "
			        "writable (use -o ro)\n", cli.model);
			goto out;
		}
		if (cli.commit_to) {
			fprintf(stderr, PROG ": %s: -o commit_to: its directory is not writable, so "
			        "no version can be written beside it\n", cli.model);
			goto out;
		}
		fprintf(stderr, PROG ": note: %s: its directory is not writable: mounting "
		        "read-only\n", cli.model);
		cli.ro = 1;
	}
	if (cli.commit_to && (cli.ro || remote)) {
		fprintf(stderr, PROG ": %s: -o commit_to: a read-only mount%s writes no versions\n",
		        cli.model, remote ? " (a remote model is read-only)" : "");
		goto out;
	}
	topts.read_only = cli.ro;
	topts.force_types = cli.force_types;
	topts.commit_to = cli.commit_to;

	/* The user's spelling names the file in messages; the cwd is still theirs. */
	struct mfs_txn_recovery rec;
	rc = mfs_txn_open(&txn, cli.model, &topts, &rec, err, sizeof(err));
	if (rc == -EBUSY) {
		fprintf(stderr, PROG ": %s: another process has it open for editing (its journal "
		        "is locked)\n", cli.model);
		goto out;
	}
	if (rc < 0) {
		fprintf(stderr, PROG ": %s\n", err[0] ? err : strerror(-rc));
		goto out;
	}
	if (rec.msg[0])
		fprintf(stderr, PROG ": %s: %s\n", cli.model, rec.msg);
	const struct mfs_desc *desc = mfs_txn_desc(txn);

	struct stat st;
	if ((rc = mfs_file_stat(&st, mfs_txn_model(txn), 0)) < 0) {
		fprintf(stderr, PROG ": %s: %s\n", cli.model, strerror(-rc));
		goto out;
	}
	fs.txn = txn;
	fs.read_only = cli.ro;
	fs.recovered = rec.n_recovered > 0;
	/* One worker is a single thread too: it must never wait for the
	 * invalidation threads (inval.c, mfs_inval_settle). */
	fs.single_thread = cli.single || cli.max_threads == 1;
	fs.uid = cli.uid_set ? (uid_t)cli.uid : st.st_uid;
	fs.gid = cli.gid_set ? (gid_t)cli.gid : st.st_gid;
	fs.mtime = (struct timespec){.tv_sec = desc->files[0].mtime_sec,
	                             .tv_nsec = desc->files[0].mtime_nsec};
	struct mfs_span sp0;
	if (!cli.max_read_set && mfs_file_span(&sp0, mfs_txn_model(txn), 0, 0) == -EOPNOTSUPP)
		cli.max_read = MFS_MAX_READ_COPIED;     /* no descriptor: never spliced */
	fs.max_read = cli.max_read;
	fs.model_path = model_abs;
	rc = mfs_fs_init(&fs);
	fs_ready = true;
	if (rc < 0) {
		if (rc == -EFBIG)
			fprintf(stderr, PROG ": %s: the model has more than %u entries to show "
			        "(the tree's limit)\n", cli.model, MFS_TREE_MAX_ENTRIES);
		else
			fprintf(stderr, PROG ": %s: cannot build the tree: %s\n", cli.model,
			        strerror(-rc));
		goto out;
	}

	if (session_args(&sargs, &args, model_abs, cli.max_read, cli.ro) != 0) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	/* libfuse prints why (an unknown option, say). */
	se = fuse_session_new(&sargs, &mfs_ll_ops, sizeof(mfs_ll_ops), &fs);
	if (!se)
		goto out;
	fs.se = se;
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	handlers = true;
	if (fuse_session_mount(se, mnt_abs) != 0)
		goto out;
	mounted = true;
	raise_readahead(mnt_abs);
	if (fuse_daemonize(cli.foreground) != 0)
		goto out;
	if (!cli.foreground)
		keep_stderr();  /* a foreground daemon's stderr is its caller's */

	rc = run_loop(se, &cli);
	/* 0: unmounted; > 0: stopped by SIGINT/SIGTERM/SIGHUP, also clean. */
	ret = rc >= 0 ? 0 : 1;
out:
	if (mounted)
		fuse_session_unmount(se);
	if (handlers)
		fuse_remove_signal_handlers(se);
	if (se)
		fuse_session_destroy(se);       /* destroy: commits what is staged */
	if (fs_ready && fs.unmount_rc < 0)
		ret = 1;                        /* the edits stay in the journal */
	if (fs_ready)
		mfs_fs_fini(&fs);
	mfs_txn_close(txn);
	free(cli.commit);
	free(cli.commit_to);
	free(cli.cache_size_s);
	free(cli.cache);
	free(cli.s3_endpoint);
	free(cli.ca_file);
	fuse_opt_free_args(&sargs);
	fuse_opt_free_args(&args);
	free(cli.model);
	free(cli.mountpoint);
	return ret;
}

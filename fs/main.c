/*
 * fs/main.c — mount.modelfs, the FUSE daemon.
 *
 *	mount.modelfs MODEL MOUNTPOINT [-o OPTS] [-f] [-d] [-s] [-h] [-V]
 *
 * main() is a ladder: parse the command line, resolve both paths while the
 * current directory still means something, open and validate the model
 * (a bad model is one line on stderr and exit 1, with nothing mounted),
 * build the tree, create the session, mount, daemonize (so the command
 * returns only once the mount is live), run the loop, and unwind in reverse.
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
	int uid_set;
	unsigned uid;
	int gid_set;
	unsigned gid;
	int clone_fd;
	unsigned max_threads;
	unsigned max_idle_threads;
	unsigned max_read;
	int bad;                /* a usage error was printed */
};

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_FOREGROUND,
	KEY_DEBUG,
	KEY_SINGLE,
	KEY_RW,
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
	FUSE_OPT_KEY("max_read=", KEY_MAX_READ),

	/* mount(8)'s flags to its helpers: -n (no mtab), -v (verbose), -t TYPE */
	FUSE_OPT_KEY("-n", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("-v", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("-t ", FUSE_OPT_KEY_DISCARD),

	/* Options mount(8) and fstab pass that mean nothing to a FUSE mount. */
	FUSE_OPT_KEY("rw", KEY_RW),
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
	        "read-only at MOUNTPOINT as a tree of graph nodes, tensors and metadata.\n"
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
	        "  -o max_read=N         largest read request (default %u)\n"
	        "  -o max_threads=N      most worker threads (multi-threaded loop)\n"
	        "  -o max_idle_threads=N idle worker threads kept\n"
	        "  -o clone_fd           one /dev/fuse descriptor per thread\n"
	        "  -o fsname=S           name shown in /proc/mounts (default: MODEL)\n"
	        "  -o ro, nodev, nosuid, noexec, noatime, default_permissions, ...\n"
	        "                        passed to FUSE (see mount.fuse3(8))\n"
	        "  -o rw                 accepted, but modelfs mounts read-only for now\n"
	        "  -o dev,suid,exec,auto,noauto,user,users,nofail,_netdev,defaults,x-*\n"
	        "                        accepted from mount(8) and fstab, and ignored\n"
	        "\n"
	        "See mount.modelfs(8).\n",
	        MFS_IO_SIZE);
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
		return 0;
	case KEY_MAX_READ:
		if (sscanf(arg, "max_read=%u", &cli->max_read) != 1) {
			fprintf(stderr, PROG ": bad option '%s'\n", arg);
			cli->bad = 1;
			return -1;
		}
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
		cli->bad = 1;
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
                        unsigned max_read)
{
	char *opts = NULL;
	char base[128];
	snprintf(base, sizeof(base), "ro,default_permissions,subtype=modelfs,max_read=%u", max_read);
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

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_args sargs = FUSE_ARGS_INIT(0, NULL);
	struct cli cli = {.max_read = MFS_IO_SIZE};
	mfs_model *model = NULL;
	struct mfs_tree *tree = NULL;
	struct fuse_session *se = NULL;
	bool handlers = false, mounted = false;
	char model_abs[PATH_MAX], mnt_abs[PATH_MAX], err[1024];
	int ret = 1, rc;

	reopen_stdio();
	if (fuse_opt_parse(&args, &cli, cli_opts, cli_proc) < 0) {
		if (!cli.bad)
			fprintf(stderr, PROG ": bad options (see " PROG " -h)\n");
		goto out;
	}
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

	/* fuse_daemonize() moves to "/": resolve both paths now. */
	if (!realpath(cli.model, model_abs)) {
		fprintf(stderr, PROG ": %s: %s\n", cli.model, strerror(errno));
		goto out;
	}
	if (!realpath(cli.mountpoint, mnt_abs)) {
		fprintf(stderr, PROG ": %s: %s\n", cli.mountpoint, strerror(errno));
		goto out;
	}

	/* The user's spelling names the file in messages; the cwd is still theirs. */
	rc = mfs_model_open(&model, cli.model, NULL, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, PROG ": %s\n", err[0] ? err : strerror(-rc));
		goto out;
	}
	const struct mfs_desc *desc = mfs_model_desc(model);
	rc = mfs_tree_build(&tree, desc);
	if (rc < 0) {
		fprintf(stderr, PROG ": %s: cannot build the tree: %s\n", cli.model, strerror(-rc));
		goto out;
	}

	struct stat st;
	if (fstat(mfs_file_fd(model, 0), &st) < 0) {
		fprintf(stderr, PROG ": %s: %s\n", cli.model, strerror(errno));
		goto out;
	}
	struct mfs_fs fs = {
		.model = model,
		.desc = desc,
		.tree = tree,
		.uid = cli.uid_set ? (uid_t)cli.uid : st.st_uid,
		.gid = cli.gid_set ? (gid_t)cli.gid : st.st_gid,
		.mtime = {.tv_sec = desc->files[0].mtime_sec, .tv_nsec = desc->files[0].mtime_nsec},
		.max_read = cli.max_read,
	};
	for (size_t i = 0; i < desc->n_files; i++)
		fs.total_bytes += desc->files[i].size;

	if (session_args(&sargs, &args, model_abs, cli.max_read) != 0) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	/* libfuse prints why (an unknown option, say). */
	se = fuse_session_new(&sargs, &mfs_ll_ops, sizeof(mfs_ll_ops), &fs);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	handlers = true;
	if (fuse_session_mount(se, mnt_abs) != 0)
		goto out;
	mounted = true;
	if (cli.rw)
		fprintf(stderr, PROG ": note: 'rw' ignored, modelfs mounts read-only for now\n");
	if (fuse_daemonize(cli.foreground) != 0)
		goto out;

	rc = run_loop(se, &cli);
	/* 0: unmounted; > 0: stopped by SIGINT/SIGTERM/SIGHUP, also clean. */
	ret = rc >= 0 ? 0 : 1;
out:
	if (mounted)
		fuse_session_unmount(se);
	if (handlers)
		fuse_remove_signal_handlers(se);
	if (se)
		fuse_session_destroy(se);
	mfs_tree_destroy(tree);
	mfs_model_close(model);
	fuse_opt_free_args(&sargs);
	fuse_opt_free_args(&args);
	free(cli.model);
	free(cli.mountpoint);
	return ret;
}

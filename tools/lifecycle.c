/*
 * tools/lifecycle.c — the commands that end or repair a mount's work:
 * `modelfs commit` (with progress), `modelfs unmount`, `modelfs recover`.
 *
 * `commit` writes to MOUNTPOINT/.modelfs/commit, which returns when the
 * commit is done; on a terminal it shows meanwhile what
 * .modelfs/progress says (bytes written of the total, and the rate), and
 * nothing otherwise, so scripts and logs get only the result.  `commit
 * --to TEMPLATE` writes "to TEMPLATE" instead, a versioned commit, and then
 * prints the new file's name, read from the status's "last commit: ok
 * version NAME" line.
 *
 * `unmount` is what scripts should use instead of `fusermount3 -u`, which
 * returns before the daemon has finished the commit it makes at unmount:
 * it commits, unmounts, waits until the daemon has exited, and then looks
 * for the note a commit that failed at unmount leaves beside the model
 * (modelfs/txn.h, mfs_txn_note_failure), so that its exit status says
 * whether everything staged reached the model.
 *
 * `recover` does without mounting what a read-write mount does first:
 * finish (or drop) an interrupted in-place commit, remove dead temp files,
 * check the journal, and say what it found.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "modelfs/txn.h"

#include "tools.h"

/* ------------------------------------------------------------ progress */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void human(char *buf, size_t len, double bytes)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

/* What .modelfs/progress says: true and the counts while a commit runs. */
static bool read_progress(const char *mnt, uint64_t *done, uint64_t *total)
{
	char path[4096], buf[128];
	snprintf(path, sizeof(path), "%s/.modelfs/progress", mnt);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	unsigned long long d, t;
	if (sscanf(buf, "commit %llu %llu", &d, &t) != 2)
		return false;
	*done = d;
	*total = t;
	return true;
}

/*
 * A piece of long work run in a thread while the calling thread shows, on a
 * terminal only, how far it is: `count` says how many bytes of how many are
 * done (false while nothing is known), `verb` what is done to them.
 */
struct job {
	void (*run)(struct job *);
	bool (*count)(struct job *, uint64_t *done, uint64_t *total);
	const char *what, *verb;        /* "commit", "written" */
	int err;                /* set by run */
	bool finished;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *job_thread(void *arg)
{
	struct job *j = arg;
	j->run(j);
	pthread_mutex_lock(&j->lock);
	j->finished = true;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

static void with_progress(struct job *j)
{
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	pthread_t th;
	if (pthread_create(&th, NULL, job_thread, j) != 0) {
		j->run(j);
	} else {
		bool tty = isatty(STDERR_FILENO), shown = false;
		double t0 = now_s();
		pthread_mutex_lock(&j->lock);
		while (!j->finished) {
			struct timespec dl;
			clock_gettime(CLOCK_REALTIME, &dl);
			dl.tv_nsec += 250 * 1000 * 1000;
			if (dl.tv_nsec >= 1000000000L) {
				dl.tv_sec++;
				dl.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&j->cond, &j->lock, &dl);
			uint64_t done, total;
			if (j->finished || !tty || !j->count(j, &done, &total))
				continue;
			char a[32], b[32], r[32];
			double secs = now_s() - t0;
			human(a, sizeof(a), (double)done);
			human(b, sizeof(b), (double)total);
			human(r, sizeof(r), secs > 0 ? (double)done / secs : 0);
			fprintf(stderr, "\r%s: %s of %s %s (%s/s)\033[K", j->what, a, b, j->verb, r);
			shown = true;
		}
		pthread_mutex_unlock(&j->lock);
		pthread_join(th, NULL);
		if (shown)
			fprintf(stderr, "\r\033[K");
	}
	pthread_cond_destroy(&j->cond);
	pthread_mutex_destroy(&j->lock);
}

struct commit_job {
	struct job job;         /* first */
	const char *mnt;
	const char *tmpl;       /* versioned: "to TEMPLATE" is written; NULL plain */
};

static void run_commit(struct job *j)
{
	struct commit_job *c = (struct commit_job *)j;
	int fd = ctl_open(c->mnt, "commit", O_WRONLY), err = 0;
	if (fd < 0) {
		err = -1;       /* ctl_open said why */
	} else {
		ssize_t r;
		char *line = NULL;
		if (c->tmpl && asprintf(&line, "to %s\n", c->tmpl) < 0)
			line = NULL;
		if (c->tmpl && !line) {
			r = -1;
			errno = ENOMEM;
		} else {
			do
				r = line ? write(fd, line, strlen(line)) : write(fd, "1\n", 2);
			while (r < 0 && errno == EINTR);
		}
		free(line);
		err = r < 0 ? errno : 0;
		if (close(fd) < 0 && !err && errno != EINTR)
			err = errno;
	}
	j->err = err;
}

static bool count_commit(struct job *j, uint64_t *done, uint64_t *total)
{
	/* Nothing to show until the daemon knows how much it will write (a
	 * poll between the commit's start and its plan reads "0 of 0"). */
	return read_progress(((struct commit_job *)j)->mnt, done, total) && *total > 0;
}

/*
 * Commit the mount at `mnt`; while it runs, show its progress on stderr when
 * that is a terminal.  Returns 0, -1 when the control file could not be
 * opened (a message was printed), or the write's errno.
 */
static int commit_with_progress(const char *mnt, const char *tmpl)
{
	struct commit_job c = {
		.job = {.run = run_commit, .count = count_commit, .what = "commit",
		        .verb = "written"},
		.mnt = mnt,
		.tmpl = tmpl,
	};
	with_progress(&c.job);
	return c.job.err;
}

/* The last commit's line after `prefix` from the status (malloc'd), or NULL. */
static char *last_line(const char *mnt, const char *prefix)
{
	size_t n;
	char *s = ctl_status(mnt, &n);
	char *why = NULL;
	for (char *line = s; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (!strncmp(line, prefix, strlen(prefix)))
			why = line + strlen(prefix);
		line = nl ? nl + 1 : NULL;
	}
	char *out = why ? strdup(why) : NULL;
	free(s);
	return out;
}

/* The last commit's message from the status, for a failure line. */
static char *last_commit(const char *mnt)
{
	return last_line(mnt, "last commit: failed: ");
}

int cmd_commit(const char *path, const char *tmpl)
{
	char mnt[PATH_MAX];
	if (ctl_root(path, mnt, sizeof(mnt)) < 0)
		return 1;
	int err = commit_with_progress(mnt, tmpl);
	if (!err && tmpl) {
		/* "last commit: ok version NAME N bytes written (...)": say NAME. */
		char *v = last_line(mnt, "last commit: ok version ");
		/* The name may hold spaces: it ends before " N bytes written". */
		char *end = v ? strstr(v, " bytes written (from ") : NULL;
		while (end && end > v && end[-1] >= '0' && end[-1] <= '9')
			end--;
		if (end && end > v && end[-1] == ' ') {
			end[-1] = '\0';
			printf("%s\n", v);
		} else {
			fprintf(stderr, "modelfs: nothing staged; no version written\n");
		}
		free(v);
		return 0;
	}
	if (!err)
		return 0;
	if (err > 0) {
		char *why = last_commit(mnt);
		fprintf(stderr, "modelfs: commit failed: %s\n", why ? why : strerror(err));
		free(why);
	}
	return 1;
}

/* ------------------------------------------------------------ unmount */

/* "<key>: <value>" from the status, malloc'd; NULL if absent. */
static char *status_field(const char *status, const char *key)
{
	size_t kl = strlen(key);
	for (const char *line = status; line && *line;) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		if (len > kl + 2 && !strncmp(line, key, kl) && line[kl] == ':' && line[kl + 1] == ' ')
			return strndup(line + kl + 2, len - kl - 2);
		line = nl ? nl + 1 : NULL;
	}
	return NULL;
}

/* Run `fusermount3 -u mnt`; 0, or its exit status after it printed why. */
static int fusermount_u(const char *mnt)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", mnt, (char *)NULL);
		fprintf(stderr, "modelfs: cannot run fusermount3: %s\n", strerror(errno));
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Wait until process `pid` has gone (it is not our child). */
static void wait_gone(pid_t pid, const char *mnt)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	double t0 = now_s();
	bool said = false;
	for (;;) {
		if (pfd >= 0) {
			struct pollfd p = {.fd = pfd, .events = POLLIN};
			if (poll(&p, 1, 1000) > 0)
				break;
		} else {
			if (kill(pid, 0) < 0 && errno == ESRCH)
				break;
			usleep(50 * 1000);
		}
		if (pfd >= 0 && kill(pid, 0) < 0 && errno == ESRCH)
			break;
		if (!said && now_s() - t0 > 2 && isatty(STDERR_FILENO)) {
			fprintf(stderr, "modelfs: waiting for the daemon of %s (pid %ld) to finish "
			        "its last commit\n", mnt, (long)pid);
			said = true;
		}
	}
	if (pfd >= 0)
		close(pfd);
}

int cmd_unmount(const char *path)
{
	char mnt[PATH_MAX];
	if (ctl_root(path, mnt, sizeof(mnt)) < 0)
		return 1;
	size_t n;
	char *status = ctl_status(mnt, &n);
	if (!status)
		return 1;
	char *pid_s = status_field(status, "daemon");
	char *model = status_field(status, "model");
	free(status);
	long pid = pid_s && !strncmp(pid_s, "pid ", 4) ? strtol(pid_s + 4, NULL, 10) : 0;
	free(pid_s);
	int rc = 1;

	/* 1. Commit, so that a failure leaves the mount (and its edits) as they are. */
	int err = commit_with_progress(mnt, NULL);
	if (err) {
		if (err > 0) {
			char *why = last_commit(mnt);
			fprintf(stderr, "modelfs: %s: commit failed: %s; nothing was unmounted and the "
			        "edits stay staged\n", mnt, why ? why : strerror(err));
			free(why);
		}
		goto out;
	}
	/* 2. Unmount. */
	time_t started = time(NULL);
	int fr = fusermount_u(mnt);
	if (fr != 0) {
		fprintf(stderr, "modelfs: %s: cannot unmount (fusermount3 -u failed%s); the model "
		        "holds every edit committed so far\n", mnt,
		        fr > 0 ? ": is it busy?" : "");
		goto out;
	}
	/* 3. The daemon commits what was staged since, then exits. */
	if (pid > 0)
		wait_gone((pid_t)pid, mnt);
	/* 4. Did that last commit fail? */
	char note[768];
	int64_t when;
	if (model && mfs_txn_failure_note(model, note, sizeof(note), &when) == 0 &&
	    when >= (int64_t)started - 1) {
		fprintf(stderr, "modelfs: %s: the commit at unmount failed: %s; the edits stay in "
		        "the journal beside %s for the next mount\n", mnt, note, model);
		goto out;
	}
	rc = 0;
out:
	free(model);
	return rc;
}

/* ------------------------------------------------------------ recover */

struct recover_job {
	struct job job;         /* first */
	const char *model;
	mfs_txn *t;
	struct mfs_txn_recovery rec;
	uint64_t done, total;   /* atomic: mfs_txn_opts.recover_* */
	char err[1024];
};

static void run_recover(struct job *j)
{
	struct recover_job *r = (struct recover_job *)j;
	struct mfs_txn_opts opts = {.recover_done = &r->done, .recover_total = &r->total};
	j->err = mfs_txn_open(&r->t, r->model, &opts, &r->rec, r->err, sizeof(r->err));
}

static bool count_recover(struct job *j, uint64_t *done, uint64_t *total)
{
	struct recover_job *r = (struct recover_job *)j;
	*total = __atomic_load_n(&r->total, __ATOMIC_RELAXED);
	*done = __atomic_load_n(&r->done, __ATOMIC_RELAXED);
	return *total > 0;
}

int cmd_recover(const char *model)
{
	/* Finishing a big in-place commit rewrites every patched byte of the
	 * model: on a terminal, show how far it is. */
	struct recover_job *r = calloc(1, sizeof(*r));
	if (!r) {
		fprintf(stderr, "modelfs: %s: out of memory\n", model);
		return 1;
	}
	r->job = (struct job){.run = run_recover, .count = count_recover, .what = "recover",
	                      .verb = "applied"};
	r->model = model;
	with_progress(&r->job);
	int rc = 1;
	if (r->job.err < 0) {
		fprintf(stderr, "modelfs: %s\n", r->err[0] ? r->err : strerror(-r->job.err));
		goto out;
	}
	if (r->rec.msg[0])
		printf("%s: %s\n", model, r->rec.msg);
	else
		printf("%s: nothing to recover\n", model);
	mfs_txn_close(r->t);
	rc = 0;
out:
	free(r);
	return rc;
}

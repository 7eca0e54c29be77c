/*
 * codec/txn/apply.c — the commit driver, and abort.
 *
 * mfs_txn_commit() takes the plan (plan.c) to the commit engine
 * (txn/commit.c has the protocols).  Which way, when every edit keeps the
 * layout (same-size data of tensors in the model file):
 *
 *   commit=auto     a clone of the model (reflink, where the file system
 *                   has it) patched and renamed over it; a full rewrite
 *                   where it has not.  Both are atomic for every reader of
 *                   the file, modelfs or not.
 *   commit=inplace  the redo-log patch of the model itself, when no other
 *                   mount has the model open (an exclusive flock; txn.c,
 *                   txn_lock_model), else a rewrite.  Readers of the file
 *                   itself see a torn model until the commit (or recovery)
 *                   ends: the caller chose that.
 *   commit=rewrite  always the rewrite.
 *
 * Any other edit is a rewrite: the format's splice writer describes the new
 * file.  A model whose place holds its files inside one file of its own (a
 * pack) is always a rewrite of that file: the format's splice writer
 * describes the new model file, the place turns it into its own new file
 * (source/place.h, `rewrite`; a pack reuses the frames of the bytes that
 * did not change, doc/pack.md), and the engine installs that as it would
 * a model file, under the same checks and marks; commit=inplace is refused
 * there.  A versioned commit (mfs_txn_commit_to, or opts.commit_to) is always
 * that rewrite, written to a new file beside the model under the name its
 * template gives once the bytes are hashed (commit.c, V1-V2; version.c),
 * after which the transaction switches to the new file (switch_to: its
 * path and name; the stage moves to its journal and the old file's goes);
 * a version of a pack is a pack, so its name must open as one (and a
 * version of a plain model must not).  The journal learns about a commit before its commit point (a mark
 * naming what is being installed), so that a crash between installing the
 * new version and resetting the journal leaves an obsolete journal that the
 * next open removes, not a stale one it sets aside (stage.h).  After the
 * new version is installed the model is opened again and the stage reset
 * to its identity (txn.c, invariant 4).  Failures before the commit point
 * leave every edit staged (invariant 3).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/file.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "modelfs/view.h"

#include "txn/txn_int.h"
#include "txn/version.h"

static bool keep_scratch(uint64_t key, void *arg)
{
	(void)arg;
	return KEY_KIND(key) == K_SCRATCH;
}

/* Forget every staged edit of the model (not scratch), in the stage too. */
static int drop_edits(struct mfs_txn *t)
{
	size_t n = mfs_stage_list(NULL, 0, t->st);
	uint64_t *keys = malloc((n ? n : 1) * sizeof(*keys));
	int rc = 0;
	if (!keys)
		return -ENOMEM;
	n = mfs_stage_list(keys, n, t->st);
	for (size_t i = 0; i < n && rc == 0; i++)
		if (KEY_KIND(keys[i]) != K_SCRATCH)
			rc = mfs_stage_drop(t->st, keys[i]);
	free(keys);
	return rc;
}

/*
 * A versioned commit installed `name` beside the model: the transaction is
 * that file's from now on (its path, its side files).  The old file's note
 * of a failed commit goes first: its edits are in the version.  0 or
 * -ENOMEM (nothing changed).
 */
static int switch_to(struct mfs_txn *t, const char *name)
{
	char *slash = strrchr(t->path, '/');
	size_t dlen = slash ? (size_t)(slash - t->path) : 0;
	char *nname = strdup(name), *npath = malloc(dlen + strlen(name) + 2);
	if (!nname || !npath) {
		free(nname);
		free(npath);
		return -ENOMEM;
	}
	sprintf(npath, "%.*s/%s", (int)dlen, t->path, name);
	txn_clear_failure(t);
	free(t->name);
	free(t->path);
	t->name = nname;
	t->path = npath;
	return 0;
}

/*
 * After the new version is installed (invariant 4): stage reset to its
 * identity (scratch kept), model reopened, mirrors rebuilt.  The old model
 * is kept (invariant 5).
 */
static int after_install(struct mfs_txn *t, const struct mfs_identity *new_id,
                         const char *new_name, char *msg, size_t msglen)
{
	char err[512];
	mfs_model *nm = NULL;
	int rc;
	if (new_name && switch_to(t, new_name) < 0) {
		/* Cannot even name the new file: stay on the old one (its
		 * journal is dropped: the edits are in the version). */
		new_name = NULL;
		new_id = NULL;
	}
	bool have_id = new_id && (new_id->ino || new_id->dev);
	struct mfs_identity id;
	if (have_id)
		id = *new_id;
	else if (mfs_identity_at(&id, t->dirfd, t->name) < 0)
		memset(&id, 0, sizeof(id));
	/* Tensors this commit deleted (TENSOR_DELETE fields, ascending ids). */
	size_t n_gone = 0, n_new = 0;
	for (size_t i = 0; i < t->n_fields; i++) {
		n_gone += MFS_FIELD_KIND(t->fields[i].id) == MFS_FIELD_TENSOR_DELETE;
		n_new += MFS_FIELD_KIND(t->fields[i].id) == MFS_FIELD_TENSOR_ADD;
	}
	uint64_t *gone = n_gone ? malloc(n_gone * sizeof(*gone)) : NULL;
	if (n_gone && !gone) {
		t->broken = true;
		txn_set_msg(msg, msglen, "committed, but out of memory");
		return -ENOMEM;
	}
	n_gone = 0;
	for (size_t i = 0; i < t->n_fields; i++)
		if (MFS_FIELD_KIND(t->fields[i].id) == MFS_FIELD_TENSOR_DELETE)
			gone[n_gone++] = MFS_FIELD_I(t->fields[i].id);
	mfs_stage_reset_keep_as(t->st, new_name, &id, keep_scratch, NULL);
	pthread_mutex_lock(&t->sha_lock);
	t->sha256[0] = '\0';          /* another file now; a version sets it below */
	pthread_mutex_unlock(&t->sha_lock);
	t->journal_note[0] = '\0';
	txn_view_drop(&t->view);
	txn_clear_state(t);
	t->generation++;
	txn_touched(t);

	rc = mfs_model_open(&nm, t->path, NULL, err, sizeof(err));
	if (rc == 0 && mfs_model_desc(nm)->n_tensors + n_gone != t->d->n_tensors + n_new) {
		mfs_model_close(nm);
		rc = -EIO;
		snprintf(err, sizeof(err), "the committed model has another structure");
	}
	if (rc == 0) {
		free(t->gone);
		t->gone = gone;
		t->n_gone = n_gone;
		gone = NULL;
	}
	free(gone);
	if (rc < 0) {
		t->broken = true;
		txn_set_msg(t->broken_msg, sizeof(t->broken_msg), "committed, but reopening the model "
		            "failed: %s", txn_strip_display(err, t->path));
		txn_set_msg(msg, msglen, "%s", t->broken_msg);
		txn_init_state(t);          /* of the old model: shown until a reopen works */
		return rc;
	}
	struct old_model *o = malloc(sizeof(*o));
	if (!o) {
		mfs_model_close(nm);
		t->broken = true;
		txn_set_msg(msg, msglen, "committed, but out of memory");
		txn_init_state(t);
		return -ENOMEM;
	}
	o->m = t->m;
	o->next = t->old;
	t->old = o;
	t->m = nm;
	t->d = mfs_model_desc(nm);
	t->broken = false;
	/* The lock says "a mount reads this file" (txn_lock_model): the new
	 * model's descriptor takes it over from the old one, which is kept
	 * only for descriptors still reading it. */
	txn_lock_model(o->m, LOCK_UN);
	txn_lock_model(nm, LOCK_SH);
	if ((rc = txn_model_identity(t)) < 0) {
		t->id = id;
		t->id.layout = mfs_model_layout(nm);
	}
	if ((rc = txn_init_state(t)) < 0) {
		t->broken = true;
		txn_set_msg(msg, msglen, "committed, but out of memory");
		return rc;
	}
	/* A stage reset to a guessed identity is re-stamped now. */
	if (!mfs_identity_equal(&t->id, &id) || t->id.layout != id.layout)
		mfs_stage_reset_keep(t->st, &t->id, keep_scratch, NULL);
	return 0;
}

/* Is the model in a place that rewrites its own file (a pack)? */
static bool packed_model(const struct mfs_txn *t)
{
	return t->m->place && t->m->place->ops->rewrite;
}

/* The name of a versioned commit, from its hash (mfs_commit_version). */
struct vname {
	struct mfs_txn *t;
	const char *tmpl;
};

static int version_name(void *arg, const char *sha_hex, char *out, size_t outlen, char *err,
                        size_t errlen)
{
	struct vname *v = arg;
	int rc = mfs_version_name(out, outlen, v->tmpl, v->t->orig_name, sha_hex, v->t->dirfd,
	                          err, errlen);
	if (rc < 0)
		return rc;
	if ((rc = mfs_version_kind(out, packed_model(v->t), err, errlen)) < 0)
		return rc;
	struct stat sb;
	if (mfs_io->fstatat(v->t->dirfd, out, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
		if (err && errlen)
			snprintf(err, errlen, "commit refused: %s exists already, and a version "
			         "never overwrites a file", out);
		return -EEXIST;
	}
	if (errno != ENOENT) {
		rc = -errno;
		if (err && errlen)
			snprintf(err, errlen, "commit: cannot check for %s: %s", out, strerror(-rc));
		return rc;
	}
	return 0;
}

/* Hooks: the journal's mark for a rewrite or a clone, and for in place. */
static int mark_install(void *arg, const struct mfs_identity *new_id)
{
	return mfs_stage_mark_commit(((struct mfs_txn *)arg)->st, new_id);
}

static void mark_inplace(void *arg)
{
	mfs_stage_mark_inplace(((struct mfs_txn *)arg)->st);
}

/*
 * The commit of a model whose place rewrites its own file (a pack): the
 * model file's new pieces and the tensors whose bytes change go to the
 * place, and its new file to the engine.  Returns as mfs_commit_replace().
 */
static int commit_place(struct mfs_txn *t, const struct plan *p,
                        struct mfs_commit_version *ver,
                        const struct mfs_commit_hooks *hooks, struct mfs_commit_report *rep,
                        bool *appended, char *msg, size_t msglen)
{
	struct mfs_place *pl = t->m->place;
	struct mfs_splice sp = {0}, out = {0};
	const struct mfs_splice **files = calloc(t->d->n_files ? t->d->n_files : 1,
	                                         sizeof(*files));
	struct mfs_place_tensor *tc = calloc(p->n_te ? p->n_te : 1, sizeof(*tc));
	struct mfs_place_tensor *ta = calloc(p->n_te ? p->n_te : 1, sizeof(*ta));
	const char **ta_names = calloc(p->n_te ? p->n_te : 1, sizeof(*ta_names));
	size_t k = 0, n_added = 0;
	const char **names = NULL;
	char **owned = NULL;
	struct mfs_patch *patches = NULL;
	int rc = -ENOMEM;
	memset(rep, 0, sizeof(*rep));
	rep->path = "rewrite";
	if (!files || !tc || !ta || !ta_names) {
		txn_set_msg(msg, msglen, "out of memory");
		goto out;
	}
	if ((rc = txn_build_splice(t, p, &sp, msg, msglen)) < 0)
		goto out;
	files[0] = &sp;
	for (size_t i = 0; i < p->n_te; i++) {
		const struct mfs_tensor_edit *te = &p->te[i];
		if (te->added) {        /* ascending ids: the new file's order */
			ta_names[n_added] = te->t->name;
			ta[n_added++] = (struct mfs_place_tensor){.index = te->t->id,
			        .dtype = te->dtype, .size = te->size, .read = te->read,
			        .arg = te->arg};
			continue;
		}
		if (!te->data_changed)
			continue;
		uint64_t idx = te->t->id;       /* its index in the description */
		if (idx >= t->d->n_tensors || t->d->tensors[idx] != te->t)
			continue;
		tc[k++] = (struct mfs_place_tensor){.index = idx, .dtype = te->dtype,
		                                    .size = te->size, .read = te->read,
		                                    .arg = te->arg};
	}
	/* What each tensor is called after the commit: TENSOR_NAME renames
	 * it, TENSOR_DELETE removes it (an initializer's rename is always
	 * staged as its TENSOR_NAME: mfs_desc_name_field). */
	bool renamed = false;
	for (size_t i = 0; i < t->n_fields; i++) {
		unsigned kind = MFS_FIELD_KIND(t->fields[i].id);
		uint64_t ti = MFS_FIELD_I(t->fields[i].id);
		if ((kind != MFS_FIELD_TENSOR_NAME && kind != MFS_FIELD_TENSOR_DELETE) ||
		    ti >= t->d->n_tensors)
			continue;
		if (!renamed) {
			if (!(names = calloc(t->d->n_tensors, sizeof(*names))) ||
			    !(owned = calloc(t->d->n_tensors, sizeof(*owned)))) {
				rc = -ENOMEM;
				txn_set_msg(msg, msglen, "out of memory");
				goto out;
			}
			for (uint64_t j = 0; j < t->d->n_tensors; j++)
				names[j] = t->d->tensors[j]->name;
			renamed = true;
		}
		free(owned[ti]);
		owned[ti] = NULL;
		names[ti] = NULL;
		if (kind == MFS_FIELD_TENSOR_NAME) {
			const struct fslot *f = &t->fields[i];
			if (!(owned[ti] = malloc(f->len + 1))) {
				rc = -ENOMEM;
				txn_set_msg(msg, msglen, "out of memory");
				goto out;
			}
			owned[ti][mfs_text_unescape(owned[ti], f->text, f->len)] = '\0';
			names[ti] = owned[ti];
		}
	}
	/* commit=auto may append to the pack (the place decides: a local,
	 * not --plain pack with little dead space); a version or
	 * commit=rewrite writes a whole new one. */
	uint64_t append_at = 0;
	struct mfs_place_change ch = {.m = t->m, .files = files, .tensors = tc, .n_tensors = k,
	                              .names = names, .added = ta, .added_names = ta_names,
	                              .n_added = n_added, .done = hooks->done,
	                              .total = hooks->total,
	                              .append_at = !ver && t->opts.mode == MFS_COMMIT_AUTO ?
	                                           &append_at : NULL};
	*appended = false;
	if ((rc = pl->ops->rewrite(pl, &out, &ch, msg, msglen)) < 0)
		goto out;
	if (append_at) {
		/* out: the old file's [0, append_at), then what follows it. */
		if (!out.n || out.p[0].len != append_at) {
			rc = -EINVAL;
			txn_set_msg(msg, msglen, "the pack's appending commit is malformed");
			goto out;
		}
		if (!(patches = calloc(out.n, sizeof(*patches)))) {
			rc = -ENOMEM;
			txn_set_msg(msg, msglen, "out of memory");
			goto out;
		}
		uint64_t pos = append_at;
		for (size_t i = 1; i < out.n; i++) {
			patches[i - 1] = (struct mfs_patch){.off = pos, .piece = out.p[i]};
			pos += out.p[i].len;
		}
		*appended = true;
		rc = mfs_commit_append(t->dirfd, t->name, &t->id, patches, out.n - 1, hooks, rep,
		                       msg, msglen);
	} else if (ver)
		rc = mfs_commit_version(t->dirfd, t->name, &t->id, out.p, out.n, ver, hooks, rep,
		                        msg, msglen);
	else
		rc = mfs_commit_replace(t->dirfd, t->name, &t->id, out.p, out.n, hooks, rep, msg,
		                        msglen);
out:
	free(patches);
	mfs_splice_free(&out);
	mfs_splice_free(&sp);
	free(files);
	free(tc);
	for (uint64_t j = 0; owned && j < t->d->n_tensors; j++)
		free(owned[j]);
	free(owned);
	free(names);
	free(ta);
	free(ta_names);
	return rc;
}

/*
 * Is the model on disk still the one the edits were staged against?  0, or
 * -ESTALE / -errno with a line in `msg`.  Only ctime moved (a chmod, or a
 * file copied over the model in place with its size and mtime kept): the
 * model's metadata is read again, and the commit goes ahead only when it
 * describes the same layout (t->id takes the new ctime).
 */
static int check_model(struct mfs_txn *t, char *msg, size_t msglen)
{
	struct mfs_identity now;
	int rc = mfs_identity_at(&now, t->dirfd, t->name);
	if (rc == -ENOENT || rc == -EINVAL)
		rc = -ESTALE;
	if (rc == 0 && mfs_identity_equal(&now, &t->id))
		return 0;
	if (rc == 0 && mfs_identity_same_file(&now, &t->id)) {
		char err[512];
		mfs_model *m = NULL;
		uint64_t layout = 0;
		if (mfs_model_open(&m, t->path, NULL, err, sizeof(err)) == 0) {
			layout = mfs_model_layout(m);
			mfs_model_close(m);
		}
		if (layout == t->id.layout) {
			now.layout = layout;
			t->id = now;
			return 0;
		}
		txn_set_msg(msg, msglen, "commit refused: the model was changed on disk since it "
		            "was mounted (same size and modification time, other content); the "
		            "edits stay staged");
		return -ESTALE;
	}
	if (rc == 0)
		rc = -ESTALE;
	txn_set_msg(msg, msglen, "%s", rc == -ESTALE ? "commit refused: the model changed on disk "
	            "since it was mounted" : strerror(-rc));
	return rc;
}

static void result_fail(struct mfs_txn *t, struct mfs_txn_result *res, int rc, const char *msg)
{
	res->rc = rc;
	txn_set_msg(res->msg, sizeof(res->msg), "%s", msg[0] ? msg : strerror(-rc));
	txn_set_msg(t->last, sizeof(t->last), "last commit: failed: %s", res->msg);
}

static int commit(mfs_txn *t, const char *tmpl, struct mfs_txn_result *res);

int mfs_txn_commit(mfs_txn *t, struct mfs_txn_result *res)
{
	/* t->commit_to is set at open and never changes. */
	return commit(t, t->commit_to, res);
}

int mfs_txn_commit_to(mfs_txn *t, const char *tmpl, struct mfs_txn_result *res)
{
	return commit(t, tmpl && tmpl[0] ? tmpl : NULL, res);
}

/*
 * The commit, plain (tmpl NULL: the model open is replaced) or versioned
 * (a new file named by tmpl; only the rewrite path, which writes, and so
 * can hash, every byte).
 */
static int commit(mfs_txn *t, const char *tmpl, struct mfs_txn_result *res)
{
	struct mfs_commit_version ver = {0};
	struct vname vn = {t, tmpl};
	struct mfs_txn_result dummy;
	struct plan p = {0};
	struct mfs_splice sp = {0}, patch_sp = {0};
	struct mfs_patch *patches = NULL;
	struct mfs_commit_report rep;
	char msg[512] = "";
	int rc = 0;
	bool inplace = false;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	res->path = "none";
	pthread_rwlock_wrlock(&t->lock);
	if (t->broken) {
		/* Try the reopen that failed after the last commit. */
		rc = after_install(t, NULL, NULL, msg, sizeof(msg));
		if (rc < 0) {
			result_fail(t, res, rc, msg);
			goto out;
		}
	}
	if (tmpl) {
		/* Refused before anything else, also with nothing staged, so
		 * that a typo is seen at once. */
		if ((rc = mfs_version_check(tmpl, msg, sizeof(msg))) < 0 ||
		    (rc = mfs_version_name(ver.name_out, sizeof(ver.name_out), tmpl, t->orig_name,
		                           NULL, -1, msg, sizeof(msg))) < 0 ||
		    (rc = mfs_version_kind(ver.name_out, packed_model(t), msg, sizeof(msg))) < 0) {
			result_fail(t, res, rc, msg);
			goto out;
		}
		if (!t->st) {
			rc = -EROFS;
			result_fail(t, res, rc, "a read-only mount writes no versions");
			goto out;
		}
		if (t->n_dirty && !mfs_version_uses_hash(tmpl) &&
		    (rc = version_name(&vn, NULL, ver.name_out, sizeof(ver.name_out), msg,
		                       sizeof(msg))) < 0) {
			/* The name does not depend on the bytes: refused before
			 * they are written. */
			result_fail(t, res, rc, msg);
			goto out;
		}
		ver.name_out[0] = '\0';
	}
	if (!t->n_dirty) {
		txn_set_msg(res->msg, sizeof(res->msg), "nothing staged%s",
		            tmpl ? "; no version written" : "");
		txn_set_msg(t->last, sizeof(t->last), "last commit: ok none (nothing staged)");
		goto out;
	}
	/* The journal holds every edit durably before the model is touched,
	 * so a crash anywhere below loses nothing (a failed sync is noted in
	 * status and does not stop the commit: the edits are in memory). */
	int jrc = mfs_stage_sync(t->st);
	txn_set_msg(t->journal_note, sizeof(t->journal_note), "%s",
	            jrc < 0 ? "syncing the journal failed; staged edits may not survive a power cut" :
	            "");

	/* A model changed on disk under us would make the plan compare and
	 * splice the wrong bytes: say so first (commit.c checks it again
	 * before it writes and right before its commit point). */
	if ((rc = check_model(t, msg, sizeof(msg))) < 0) {
		result_fail(t, res, rc, msg);
		goto out;
	}
	if ((rc = txn_plan_build(t, &p, true, msg, sizeof(msg))) < 0) {
		result_fail(t, res, rc, msg);
		goto out;
	}
	if (p.empty) {
		/* Every staged edit gives back what the model has. */
		drop_edits(t);
		txn_reset_state(t);
		t->generation++;
		txn_touched(t);
		txn_clear_failure(t);
		txn_set_msg(res->msg, sizeof(res->msg), "no effective change; staged edits dropped");
		txn_set_msg(t->last, sizeof(t->last), "last commit: ok none (no effective change)");
		goto out;
	}
	res->bytes_edited = p.bytes_edited;

	struct mfs_commit_hooks hooks = {
		.before_install = mark_install, .after_commit_point = mark_inplace, .arg = t,
		.done = &t->prog_done, .total = &t->prog_total,
		.journal_id = mfs_stage_journal_id(t->st),
	};
	__atomic_store_n(&t->committing, true, __ATOMIC_RELEASE);
	bool ex = false;
	if (t->m->place && t->m->place->ops->rewrite) {
		if (t->opts.mode == MFS_COMMIT_INPLACE) {
			rc = -EINVAL;
			result_fail(t, res, rc, "commit=inplace does not apply to a pack (a commit "
			            "writes a new pack): use commit=auto or commit=rewrite");
			goto unlock;
		}
		if (tmpl) {
			ver.name = version_name;
			ver.arg = &vn;
		}
		rc = commit_place(t, &p, tmpl ? &ver : NULL, &hooks, &rep, &inplace, msg,
		                  sizeof(msg));
		goto committed;
	}
	inplace = !tmpl && p.layout_kept && t->opts.mode == MFS_COMMIT_INPLACE;
	bool clone = !tmpl && p.layout_kept && t->opts.mode == MFS_COMMIT_AUTO;
	ex = inplace && txn_lock_model(t->m, LOCK_EX) == 0;
	if (inplace && !ex) {
		/* Another mount reads this file: patching it would tear what it
		 * reads, a rewrite leaves it its own inode. */
		inplace = false;
		txn_set_msg(t->journal_note, sizeof(t->journal_note), "the model is open in "
		            "another mount: the last commit rewrote it instead of patching it in "
		            "place");
	}
	size_t k = 0;
	bool have_sp = false;
	if ((inplace || clone) && t->m->fmt->splice_patches) {
		/* The format's same-size edits change more than the tensors'
		 * bytes (a checksum; format.h): the patches are the pieces of the
		 * new file that are not the old file's bytes where they were. */
		if ((rc = txn_build_splice(t, &p, &sp, msg, sizeof(msg))) < 0) {
			result_fail(t, res, rc, txn_strip_display(msg, t->d->files[0].path));
			goto unlock;
		}
		have_sp = true;
		patches = calloc(sp.n ? sp.n : 1, sizeof(*patches));
		if (!patches) {
			rc = -ENOMEM;
			result_fail(t, res, rc, "out of memory");
			goto unlock;
		}
		int mfd = mfs_source_fd(t->m->srcs[0]);
		uint64_t pos = 0;
		for (size_t i = 0; i < sp.n; i++) {
			const struct mfs_piece *pc = &sp.p[i];
			if (!(pc->kind == MFS_PIECE_COPY && mfd >= 0 && pc->fd == mfd && pc->off == pos)) {
				patches[k].off = pos;
				patches[k].piece = *pc;
				k++;
			}
			pos += pc->len;
		}
		if (pos != t->d->files[0].size)
			inplace = clone = false;        /* not the same layout after all: rewrite */
	} else if (inplace || clone) {
		size_t n = 0;
		for (size_t i = 0; i < p.n_te; i++)
			n += p.te[i].n_runs;
		patches = calloc(n ? n : 1, sizeof(*patches));
		if (!patches) {
			rc = -ENOMEM;
			result_fail(t, res, rc, "out of memory");
			goto unlock;
		}
		for (size_t i = 0; i < p.n_te; i++) {
			const struct mfs_tensor_edit *te = &p.te[i];
			for (size_t r = 0; r < te->n_runs; r++) {
				mfs_splice_fn(&patch_sp, te->read, te->arg, te->runs[r].off,
				              te->runs[r].len);
				if (patch_sp.err)
					break;
				patches[k].off = te->t->off + te->runs[r].off;
				patches[k].piece = patch_sp.p[patch_sp.n - 1];
				k++;
			}
		}
		if (patch_sp.err) {
			rc = patch_sp.err;
			result_fail(t, res, rc, "out of memory");
			goto unlock;
		}
	}
	rc = -EOPNOTSUPP;
	if (inplace) {
		rc = mfs_commit_inplace(t->dirfd, t->name, &t->id, patches, k, &hooks, &rep, msg,
		                        sizeof(msg));
		/* Back to sharing the file, before the model is opened again. */
		txn_lock_model(t->m, LOCK_SH);
		ex = false;
	} else if (clone)
		rc = mfs_commit_clone(t->dirfd, t->name, &t->id, patches, k, &hooks, &rep, msg,
		                      sizeof(msg));
	if (rc == -EOPNOTSUPP && !inplace) {
		if (!have_sp && (rc = txn_build_splice(t, &p, &sp, msg, sizeof(msg))) < 0) {
			result_fail(t, res, rc, txn_strip_display(msg, t->d->files[0].path));
			goto unlock;
		}
		if (tmpl) {
			ver.name = version_name;
			ver.arg = &vn;
			rc = mfs_commit_version(t->dirfd, t->name, &t->id, sp.p, sp.n, &ver, &hooks,
			                        &rep, msg, sizeof(msg));
		} else {
			rc = mfs_commit_replace(t->dirfd, t->name, &t->id, sp.p, sp.n, &hooks, &rep,
			                        msg, sizeof(msg));
		}
	}
committed:
	res->path = rep.path;
	res->bytes_written = rep.bytes_written + rep.journal_bytes;
	if (rc < 0 && rep.redo_pending) {
		/* Past the commit point of an in-place commit: recovery finishes
		 * it now (the redo log is complete and synced), and then the
		 * commit has succeeded after all. */
		char rmsg[512];
		struct mfs_commit_report rrep;
		if (mfs_commit_recover(t->dirfd, t->name, &t->id, &rrep, rmsg, sizeof(rmsg)) == 0 &&
		    rrep.recovered) {
			rep.installed = true;
			rep.new_id = rrep.new_id;
			res->bytes_written += rrep.bytes_written;
			rc = 0;
		}
	}
	if (rc < 0 && !rep.installed) {
		/* Invariant 3: nothing happened to the model; edits stay, and the
		 * journal's mark (if the rewrite got that far) is taken back. */
		mfs_stage_unmark_commit(t->st);
		result_fail(t, res, rc, txn_strip_display(msg, t->name));
		goto unlock;
	}
	char oldname[256];
	snprintf(oldname, sizeof(oldname), "%s", t->name);
	int rc2 = after_install(t, &rep.new_id, tmpl ? ver.name_out : NULL, msg, sizeof(msg));
	if (tmpl) {
		snprintf(res->version, sizeof(res->version), "%s", ver.name_out);
		snprintf(res->sha256, sizeof(res->sha256), "%s", ver.sha256);
		if (!strcmp(t->name, ver.name_out)) {
			pthread_mutex_lock(&t->sha_lock);
			memcpy(t->sha256, ver.sha256, sizeof(t->sha256));
			pthread_mutex_unlock(&t->sha_lock);
		}
	}
	if (inplace) {
		/* The journal is reset: now the redo log may go (a crash before
		 * this replays it again, which changes nothing). */
		mfs_commit_finish(t->dirfd, t->name);
	}
	txn_clear_failure(t);
	if (rc < 0 || rc2 < 0) {
		/* Installed, but something after the commit point failed: the
		 * model is the new version; say so. */
		res->rc = rc < 0 ? rc : rc2;
		const char *then = rc2 < 0 ? msg : txn_strip_display(msg, oldname);
		txn_set_msg(res->msg, sizeof(res->msg), "committed (%s%s%s, %" PRIu64 " bytes "
		            "written), but: %s", res->path, tmpl ? " " : "", tmpl ? res->version : "",
		            res->bytes_written, then);
		txn_set_msg(t->last, sizeof(t->last), "last commit: ok %s%s%s %" PRIu64 " bytes "
		            "written; then failed: %s", res->path, tmpl ? " " : "",
		            tmpl ? res->version : "", res->bytes_written, then);
		rc = res->rc;
		goto unlock;
	}
	if (tmpl) {
		txn_set_msg(res->msg, sizeof(res->msg), "version %s (sha256 %s) written beside %s, "
		            "which is unchanged: %" PRIu64 " bytes written, %" PRIu64 " bytes "
		            "edited; the mount shows it now", res->version, res->sha256, oldname,
		            res->bytes_written, res->bytes_edited);
		txn_set_msg(t->last, sizeof(t->last), "last commit: ok version %s %" PRIu64 " bytes "
		            "written (from %s, unchanged; sha256 %s)", res->version,
		            res->bytes_written, oldname, res->sha256);
	} else {
		txn_set_msg(res->msg, sizeof(res->msg), "%s: %" PRIu64 " bytes written, %" PRIu64
		            " bytes edited", res->path, res->bytes_written, res->bytes_edited);
		txn_set_msg(t->last, sizeof(t->last), "last commit: ok %s %" PRIu64 " bytes "
		            "written", res->path, res->bytes_written);
	}
	/* A later commit that worked: the notes of recovery are history. */
	t->rec.msg[0] = '\0';
unlock:
	if (ex)
		txn_lock_model(t->m, LOCK_SH);  /* back from LOCK_EX: no commit ran */
	__atomic_store_n(&t->committing, false, __ATOMIC_RELEASE);
out:
	/* What recovery did at open is settled by a commit that succeeds:
	 * status stops reporting it. */
	if (rc == 0)
		t->rec.msg[0] = '\0';
	mfs_splice_free(&patch_sp);
	free(patches);
	mfs_splice_free(&sp);
	txn_plan_free(&p);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

size_t mfs_txn_path(mfs_txn *t, char *buf, size_t len)
{
	pthread_rwlock_rdlock(&t->lock);
	int n = snprintf(buf, len, "%s", t->path);
	pthread_rwlock_unlock(&t->lock);
	return n < 0 ? 0 : (size_t)n;
}

static ssize_t sha_read(void *arg, void *buf, size_t len, uint64_t off)
{
	int rc = mfs_source_read(arg, buf, len, off);
	return rc < 0 ? rc : (ssize_t)len;
}

int mfs_txn_sha256(mfs_txn *t, char out[65])
{
	int rc = 0;
	pthread_rwlock_rdlock(&t->lock);
	pthread_mutex_lock(&t->sha_lock);
	memcpy(out, t->sha256, 65);
	pthread_mutex_unlock(&t->sha_lock);
	if (!out[0]) {
		/* Under the read lock: no commit replaces the model meanwhile. */
		uint8_t md[32];
		rc = mfs_sha256(md, t->d->files[0].size, sha_read, t->m->srcs[0]);
		if (rc == 0) {
			mfs_hex(out, md, 32);
			pthread_mutex_lock(&t->sha_lock);
			memcpy(t->sha256, out, 65);
			pthread_mutex_unlock(&t->sha_lock);
		}
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int mfs_txn_abort(mfs_txn *t)
{
	int rc = 0;
	pthread_rwlock_wrlock(&t->lock);
	if (t->st) {
		rc = mfs_stage_drop_all(t->st);
		for (size_t i = 0; i < t->n_scratch; i++)
			if (t->scratch[i]) {
				mfs_stage_unbind(t->st, key_of(K_SCRATCH, i));
				t->scratch[i] = 0;
			}
		/* Tensor bindings survive drop_all and stay valid. */
		txn_reset_state(t);
	}
	if (rc == 0)
		t->rec.msg[0] = '\0';      /* settled: the recovered edits are gone too */
	txn_view_drop(&t->view);
	t->generation++;
	txn_touched(t);
	if (t->st && rc == 0)
		txn_clear_failure(t);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

void mfs_txn_progress(mfs_txn *t, uint64_t *done, uint64_t *total, bool *committing)
{
	*committing = __atomic_load_n(&t->committing, __ATOMIC_ACQUIRE);
	*done = __atomic_load_n(&t->prog_done, __ATOMIC_RELAXED);
	*total = __atomic_load_n(&t->prog_total, __ATOMIC_RELAXED);
}

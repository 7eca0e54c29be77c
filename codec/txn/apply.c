/*
 * codec/txn/apply.c — the commit driver, and abort.
 *
 * mfs_txn_commit() takes the plan (plan.c) to the commit engine: in place
 * through the redo log when every edit keeps the layout and the mode
 * allows it, else the format's splice writer builds the new file and the
 * engine replaces the model with it (txn/commit.c has the protocol).  After
 * the new version is installed the model is opened again and the stage
 * reset to its identity (txn.c, invariant 4).  Failures before the commit
 * point leave every edit staged (invariant 3).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txn/txn_int.h"

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
 * After the new version is installed (invariant 4): stage reset to its
 * identity (scratch kept), model reopened, mirrors rebuilt.  The old model
 * is kept (invariant 5).
 */
static int after_install(struct mfs_txn *t, const struct mfs_identity *new_id, char *msg,
                         size_t msglen)
{
	char err[512];
	mfs_model *nm = NULL;
	int rc;
	bool have_id = new_id && (new_id->ino || new_id->dev);
	struct mfs_identity id;
	if (have_id)
		id = *new_id;
	else if (mfs_identity_at(&id, t->dirfd, t->name) < 0)
		memset(&id, 0, sizeof(id));
	mfs_stage_reset_keep(t->st, &id, keep_scratch, NULL);
	t->journal_note[0] = '\0';
	txn_view_drop(&t->view);
	txn_clear_state(t);
	t->generation++;
	txn_touched(t);

	rc = mfs_model_open(&nm, t->path, NULL, err, sizeof(err));
	if (rc == 0 && mfs_model_desc(nm)->n_tensors != t->d->n_tensors) {
		mfs_model_close(nm);
		rc = -EIO;
		snprintf(err, sizeof(err), "the committed model has another structure");
	}
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
	if ((rc = txn_model_identity(t)) < 0)
		t->id = id;
	if ((rc = txn_init_state(t)) < 0) {
		t->broken = true;
		txn_set_msg(msg, msglen, "committed, but out of memory");
		return rc;
	}
	/* A stage reset to a guessed identity is re-stamped now. */
	if (!mfs_identity_equal(&t->id, &id))
		mfs_stage_reset_keep(t->st, &t->id, keep_scratch, NULL);
	return 0;
}

static void result_fail(struct mfs_txn *t, struct mfs_txn_result *res, int rc, const char *msg)
{
	res->rc = rc;
	txn_set_msg(res->msg, sizeof(res->msg), "%s", msg[0] ? msg : strerror(-rc));
	txn_set_msg(t->last, sizeof(t->last), "last commit: failed: %s", res->msg);
}

int mfs_txn_commit(mfs_txn *t, struct mfs_txn_result *res)
{
	struct mfs_txn_result dummy;
	struct plan p = {0};
	struct mfs_splice sp = {0}, patch_sp = {0};
	struct mfs_patch *patches = NULL;
	struct mfs_commit_report rep;
	char msg[512] = "";
	int rc = 0;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	res->path = "none";
	pthread_rwlock_wrlock(&t->lock);
	if (t->broken) {
		/* Try the reopen that failed after the last commit. */
		rc = after_install(t, NULL, msg, sizeof(msg));
		if (rc < 0) {
			result_fail(t, res, rc, msg);
			goto out;
		}
	}
	if (!t->n_dirty) {
		txn_set_msg(res->msg, sizeof(res->msg), "nothing staged");
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
	struct mfs_identity now;
	rc = mfs_identity_at(&now, t->dirfd, t->name);
	if (rc == 0 && !mfs_identity_equal(&now, &t->id))
		rc = -ESTALE;
	if (rc < 0) {
		if (rc == -ENOENT || rc == -EINVAL)
			rc = -ESTALE;
		result_fail(t, res, rc, rc == -ESTALE ? "commit refused: the model changed on disk "
		            "since it was mounted" : strerror(-rc));
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
		txn_set_msg(res->msg, sizeof(res->msg), "no effective change; staged edits dropped");
		txn_set_msg(t->last, sizeof(t->last), "last commit: ok none (no effective change)");
		goto out;
	}
	res->bytes_edited = p.bytes_edited;

	/* AUTO also wants the patches to be less than half the file: an
	 * in-place commit writes them twice (log, then model), a rewrite
	 * writes the file once. */
	uint64_t patched = 0;
	for (size_t i = 0; i < p.n_te; i++)
		for (size_t r = 0; r < p.te[i].n_runs; r++)
			patched += p.te[i].runs[r].len;
	uint64_t fsize = t->d->files[0].size;
	bool inplace = p.layout_kept && t->opts.mode != MFS_COMMIT_REWRITE &&
	               (t->opts.mode == MFS_COMMIT_INPLACE ||
	                (fsize >= t->opts.inplace_min && patched <= fsize / 2));
	if (inplace) {
		size_t n = 0;
		for (size_t i = 0; i < p.n_te; i++)
			n += p.te[i].n_runs;
		patches = calloc(n ? n : 1, sizeof(*patches));
		if (!patches) {
			rc = -ENOMEM;
			result_fail(t, res, rc, "out of memory");
			goto out;
		}
		size_t k = 0;
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
			goto out;
		}
		rc = mfs_commit_inplace(t->dirfd, t->name, &t->id, patches, k, &rep, msg,
		                        sizeof(msg));
	} else {
		if ((rc = txn_build_splice(t, &p, &sp, msg, sizeof(msg))) < 0) {
			result_fail(t, res, rc, txn_strip_display(msg, t->d->files[0].path));
			goto out;
		}
		rc = mfs_commit_replace(t->dirfd, t->name, &t->id, sp.p, sp.n, &rep, msg,
		                        sizeof(msg));
	}
	res->path = rep.path;
	res->bytes_written = rep.bytes_written + rep.journal_bytes;
	if (rc < 0 && rep.redo_pending) {
		/* Past the commit point of an in-place commit: recovery finishes
		 * it now (the redo log is complete and synced), and then the
		 * commit has succeeded after all. */
		char rmsg[512];
		struct mfs_commit_report rrep;
		if (mfs_commit_recover(t->dirfd, t->name, &rrep, rmsg, sizeof(rmsg)) == 0 &&
		    rrep.recovered) {
			rep.installed = true;
			rep.new_id = rrep.new_id;
			res->bytes_written += rrep.bytes_written;
			rc = 0;
		}
	}
	if (rc < 0 && !rep.installed) {
		/* Invariant 3: nothing happened to the model; edits stay. */
		result_fail(t, res, rc, txn_strip_display(msg, t->name));
		goto out;
	}
	int rc2 = after_install(t, &rep.new_id, msg, sizeof(msg));
	if (rc < 0 || rc2 < 0) {
		/* Installed, but something after the commit point failed: the
		 * model is the new version; say so. */
		res->rc = rc < 0 ? rc : rc2;
		txn_set_msg(res->msg, sizeof(res->msg), "committed (%s, %" PRIu64 " bytes written), "
		            "but: %s", res->path, res->bytes_written,
		            rc2 < 0 ? msg : txn_strip_display(msg, t->name));
		txn_set_msg(t->last, sizeof(t->last), "last commit: ok %s %" PRIu64 " bytes written; "
		            "then failed: %s", res->path, res->bytes_written,
		            rc2 < 0 ? msg : txn_strip_display(msg, t->name));
		rc = res->rc;
		goto out;
	}
	txn_set_msg(res->msg, sizeof(res->msg), "%s: %" PRIu64 " bytes written, %" PRIu64 " bytes "
	            "edited", res->path, res->bytes_written, res->bytes_edited);
	txn_set_msg(t->last, sizeof(t->last), "last commit: ok %s %" PRIu64 " bytes written",
	            res->path, res->bytes_written);
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
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

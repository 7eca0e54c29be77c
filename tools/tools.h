/*
 * tools/tools.h — what the parts of the `modelfs` command share.
 *
 * modelfs.c holds main, `info`, `status`, `abort` and the helpers that
 * reach a mount's control files; lifecycle.c holds `commit`, `unmount`
 * and `recover`.  Each command returns the process's exit status.
 */
#ifndef MODELFS_TOOLS_H
#define MODELFS_TOOLS_H

#include <stddef.h>
#include <stdint.h>

/*
 * The root of the modelfs mount MOUNTPOINT is in (MOUNTPOINT itself, or the
 * directory above it that holds .modelfs/); 0, or -1 after a message.
 */
int ctl_root(const char *mnt, char *out, size_t len);

/* Open MOUNTPOINT/.modelfs/<file>; -1 after a message saying why. */
int ctl_open(const char *mnt, const char *file, int flags);

/* The whole of MOUNTPOINT/.modelfs/status, malloc'd; NULL after a message. */
char *ctl_status(const char *mnt, size_t *len);

int cmd_commit(const char *mnt, const char *tmpl);
int cmd_unmount(const char *mnt);
int cmd_recover(const char *model);
/* max_shard 0: one file OUT; else shards of at most that many tensor bytes
 * and OUT their index (NAME.safetensors.index.json). */
int cmd_convert(const char *model, const char *out, uint64_t max_shard);
/* `modelfs diff [--tolerance ABS] [--rtol REL] [--json] A B`: argv after "diff". */
int cmd_diff(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_verify(const char *path);

#endif

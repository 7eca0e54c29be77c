#!/usr/bin/env bash
# Bad input: every fixture under tests/data/bad makes mount.modelfs exit
# non-zero (not by a signal) with exactly one line on stderr naming the file,
# nothing mounted and the file untouched; `modelfs info` refuses it the same
# way.  Also a model that does not exist, a directory and a FIFO, and a
# mount point that is a regular file.
. "$(dirname "$0")/../lib.sh"

mnt=$MFS_TMP/m
mkdir -p "$mnt"

refused() {   # refused WHAT FILE
	local what=$1 f=$2 err rc sum
	sum=
	[ -f "$f" ] && sum=$(sha256sum "$f" | cut -d' ' -f1)   # never open a FIFO here
	err=$(timeout 20 "$MOUNT_MODELFS" "$f" "$mnt" 2>&1 >/dev/null); rc=$?
	if mountpoint -q "$mnt"; then mfs_umount "$mnt"; not_ok "$what: it mounted"; return; fi
	if [ $rc -eq 0 ] || [ $rc -ge 124 ]; then not_ok "$what: exit status $rc"; return; fi
	if [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || [ -z "$err" ]; then not_ok "$what: stderr is not one line: $err"; return; fi
	case "$err" in *"$(basename "$f")"*) ;; *) not_ok "$what: error does not name the file: $err"; return ;; esac
	if [ -f "$f" ] && [ "$sum" != "$(sha256sum "$f" | cut -d' ' -f1)" ]; then not_ok "$what: file changed"; return; fi
	ok "$what refused: $err"
	err=$(timeout 20 "$MODELFS" info "$f" 2>&1 >/dev/null); rc=$?
	if [ $rc -ne 0 ] && [ $rc -lt 124 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ]; then
		ok "modelfs info refuses $what"
	else
		not_ok "modelfs info on $what: rc=$rc stderr=$err"
	fi
}

n=0
for f in "$MFS_SRC"/tests/data/bad/*; do
	[ -f "$f" ] || continue
	refused "$(basename "$f")" "$f"
	n=$((n + 1))
done
check "bad fixtures exist ($n)" test "$n" -ge 6

refused "missing model" "$MFS_TMP/does-not-exist.onnx"
mkfifo "$MFS_TMP/fifo.onnx"
refused "FIFO as model" "$MFS_TMP/fifo.onnx"
mkdir "$MFS_TMP/dir.onnx"
refused "directory as model" "$MFS_TMP/dir.onnx"

# A mount point that is not a directory: one line, nothing mounted (the
# kernel would mount over a file, and every stat of it would then be EIO).
ex=$MFS_SRC/examples/linear.onnx
: > "$MFS_TMP/file"
err=$("$MOUNT_MODELFS" "$ex" "$MFS_TMP/file" -o ro 2>&1); rc=$?
# (mountpoint(1) cannot tell: a stat of such a mount fails with EIO.)
mounted=$(awk -v p="$MFS_TMP/file" '$5 == p' /proc/self/mountinfo)
[ -n "$mounted" ] && fusermount3 -u "$MFS_TMP/file"
check_eq "mounting onto a regular file exits 1" "1" "$rc"
check_eq "with one line that says why" \
	"mount.modelfs: $MFS_TMP/file: the mount point is not a directory" "$err"
check_eq "and nothing is mounted there" "" "$mounted"

# A truncated copy of every prefix length of the example: never a crash.
size=$(stat -c %s "$ex")
crashes=0 opened=0
for len in $(seq 0 $((size - 1))); do
	head -c "$len" "$ex" > "$MFS_TMP/trunc.onnx"
	timeout 20 "$MODELFS" info "$MFS_TMP/trunc.onnx" >/dev/null 2>&1; rc=$?
	[ $rc -ge 124 ] && crashes=$((crashes + 1))
	[ $rc -eq 0 ] && opened=$((opened + 1))
done
check_eq "no crash or hang on any of $size truncations of the example" "0" "$crashes"
check "truncations that still parse are few ($opened)" test "$opened" -le 2
mfs_done

#!/usr/bin/env bash
# The bundled example (examples/linear.onnx: Linear(10,1) + ReLU, opset 12)
# mounted and read with everyday tools.
. "$(dirname "$0")/../lib.sh"

model=$MFS_SRC/examples/linear.onnx
sum_before=$(sha256sum "$model" | cut -d' ' -f1)
mnt=$MFS_TMP/m
mkdir -p "$mnt"

# A relative model path must work: the daemon resolves it before it
# daemonizes and changes directory.
# -o ro: this is the repository's example, and the writes below must fail.
(cd "$MFS_SRC/examples" && "$MOUNT_MODELFS" linear.onnx "$mnt" -o ro) && MFS_MOUNTS+=("$mnt")
check "mount with a relative model path is live when the command returns" mountpoint -q "$mnt"

check_eq "meta/input_shape" "batch_size,10" "$(cat "$mnt/meta/input_shape")"
check_eq "meta/output_shape" "batch_size,1" "$(cat "$mnt/meta/output_shape")"
check_eq "meta/opset" "ai.onnx 12" "$(cat "$mnt/meta/opset")"
check_eq "meta/format" "onnx" "$(cat "$mnt/meta/format")"
check_eq "meta/producer_name" "pytorch" "$(cat "$mnt/meta/producer_name")"
check_eq "nodes/ lists Gemm then Relu" "0000-Gemm 0001-Relu" "$(ls "$mnt/nodes" | tr '\n' ' ' | sed 's/ $//')"
check_eq "Gemm inputs" "$(printf 'input\nfc.weight\nfc.bias')" "$(cat "$mnt/nodes/0000-Gemm/inputs")"
check_eq "Gemm attribute transB" "1" "$(cat "$mnt/nodes/0000-Gemm/attrs/transB")"
check_eq "inputs/ holds only the real input" "input" "$(ls "$mnt/inputs")"
check_eq "inputs/input/dtype" "float32" "$(cat "$mnt/inputs/input/dtype")"
check_eq "weights tree" "fc/bias fc/weight" "$(cd "$mnt/weights" && find . -name data | sed 's|^\./||; s|/data$||' | sort | tr '\n' ' ' | sed 's/ $//')"
check_eq "weights/fc/weight/data is 40 bytes" "40" "$(stat -c %s "$mnt/weights/fc/weight/data")"
check_eq "weights/fc/weight/shape" "1,10" "$(cat "$mnt/weights/fc/weight/shape")"
check_eq "weights/fc/weight/dtype" "float32" "$(cat "$mnt/weights/fc/weight/dtype")"
check_eq "weights/fc/weight/name" "fc.weight" "$(cat "$mnt/weights/fc/weight/name")"
check "weights equal the exported PyTorch weights" $PY -c "
import numpy as np, sys
w = np.load('$MFS_SRC/examples/linear.weights.npz')
got_w = np.fromfile('$mnt/weights/fc/weight/data', dtype='<f4').reshape(1, 10)
got_b = np.fromfile('$mnt/weights/fc/bias/data', dtype='<f4')
sys.exit(0 if np.array_equal(got_w, w['fc_weight']) and np.array_equal(got_b, w['fc_bias']) else 1)"
check "root model file is byte-identical to the model" cmp "$mnt/linear.onnx" "$model"

# Every file's st_size equals what read returns.
sizes_ok() {
	local f bad=0
	while IFS= read -r -d '' f; do
		[ "$(stat -c %s "$f")" -eq "$(cat "$f" | wc -c)" ] || { echo "size mismatch: $f"; bad=1; }
	done < <(find "$1" -type f -print0)
	return $bad
}
check "st_size equals bytes read for every file" sizes_ok "$mnt"
check "ls -lR works" ls -lR "$mnt"
check "mtime of entries is the model's mtime" test "$(stat -c %Y "$mnt/weights/fc/weight/data")" = "$(stat -c %Y "$model")"

# rsync copies exactly the weights and a second rsync transfers nothing.
check "rsync -a weights/" rsync -a "$mnt/weights/" "$MFS_TMP/w/"
check "rsync copy equals the mount" diff -r "$mnt/weights" "$MFS_TMP/w"
check_eq "second rsync -a transfers nothing (quick check)" "0" \
	"$(rsync -a --stats "$mnt/weights/" "$MFS_TMP/w/" | awk -F': ' '/Number of regular files transferred/ {print $2}')"

check "mmap of a tensor gives its bytes" $PY -c "
import mmap, sys
with open('$mnt/weights/fc/weight/data', 'rb') as f:
    mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    a = bytes(mm)
with open('$mnt/weights/fc/weight/data', 'rb') as f:
    b = f.read()
sys.exit(0 if a == b and len(a) == 40 else 1)"

# A read-only mount: writes fail with EROFS, never EIO/ENOSYS (writable
# mounts are tests/mount/test_write.sh).
erofs() { local out; out=$("$@" 2>&1) && return 1; echo "$out" | grep -q "Read-only file system"; }
check "writing a tensor fails with EROFS" erofs sh -c "printf x > '$mnt/weights/fc/weight/data'"
check "creating a file fails with EROFS" erofs touch "$mnt/newfile"
check "mkdir fails with EROFS" erofs mkdir "$mnt/meta/x"
check "rm fails with EROFS" erofs rm -f "$mnt/meta/format"
check "reading a missing entry is ENOENT" sh -c "! cat '$mnt/nope' 2>&1 | grep -qv 'No such file'"

pid=$(pgrep -f "mount.modelfs linear.onnx $mnt" | head -n1)
fusermount3 -u "$mnt"
for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
check "daemon exits after fusermount3 -u" sh -c "! kill -0 $pid 2>/dev/null"
check "mount is gone after fusermount3 -u" sh -c "! mountpoint -q '$mnt'"

# Foreground mode: the exit status of the daemon itself is 0.
"$MOUNT_MODELFS" "$model" "$mnt" -f & fpid=$!
for i in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
check "foreground mount is live" mountpoint -q "$mnt"
fusermount3 -u "$mnt"; wait $fpid; rc=$?
check_eq "daemon exit status after fusermount3 -u" "0" "$rc"

# mount(8) and fstab find the helper as /sbin/mount.modelfs.
installed_helper=
if [ ! -e /sbin/mount.modelfs ]; then ln -s "$MOUNT_MODELFS" /sbin/mount.modelfs; installed_helper=1; fi
check "mount -t modelfs MODEL DIR" mount -t modelfs "$model" "$mnt"
MFS_MOUNTS+=("$mnt")
check_eq "mount -t modelfs shows the tree" "batch_size,10" "$(cat "$mnt/meta/input_shape" 2>&1)"
check "fstype is fuse.modelfs" sh -c "grep -q ' $mnt fuse.modelfs ' /proc/mounts"
mfs_umount "$mnt"
fstab=$MFS_TMP/fstab
echo "$model $mnt modelfs ro,noauto 0 0" > "$fstab"
check "mount from an fstab line" mount -T "$fstab" "$mnt"
check_eq "fstab mount shows the tree" "ai.onnx 12" "$(cat "$mnt/meta/opset" 2>&1)"
mfs_umount "$mnt"
[ -n "$installed_helper" ] && rm -f /sbin/mount.modelfs

check_eq "model file untouched" "$sum_before" "$(sha256sum "$model" | cut -d' ' -f1)"
mfs_done

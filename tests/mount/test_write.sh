#!/usr/bin/env bash
# Writable mounts (doc/design.md §5, issue 4), driven by everyday tools on a
# copy of examples/linear.onnx (Linear(10,1) + ReLU): cp, dd, truncate,
# Python, echo, mv, rm and rsync -a stage edits; status, commit and abort
# through the `modelfs` command; commits on fsync and on unmount; what is not
# writable fails with EACCES, EPERM or EINVAL.  The heavy cases (corpus,
# crashes, ENOSPC, big models) are the test_commit_*, test_crash and
# test_exerciser tests.
. "$(dirname "$0")/../lib.sh"

dir=$MFS_TMP/model
mkdir -p "$dir"
cp "$MFS_SRC/examples/linear.onnx" "$dir/"
model=$dir/linear.onnx
mnt=$MFS_TMP/m
w=$mnt/weights/fc/weight
b=$mnt/weights/fc/bias

# The daemon in the foreground, so its exit status can be checked.
mount_fg() {
	mkdir -p "$mnt"
	"$MOUNT_MODELFS" "$model" "$mnt" -f "$@" 2>"$MFS_TMP/daemon.err" &
	daemon=$!
	local i
	for i in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
	MFS_MOUNTS+=("$mnt")
}
# Unmount and wait for the daemon (it commits after the kernel lets go).
umount_fg() {
	fusermount3 -u "$mnt"
	wait "$daemon"
}
# fails_with ERRNO-TEXT cmd...: the command fails and says so.
fails_with() {
	local want=$1 out; shift
	out=$("$@" 2>&1) && { echo "succeeded"; return 1; }
	echo "$out" | grep -q "$want" || { echo "$out"; return 1; }
}
# The weights the model file on disk holds, as "w0 w1 ... | b".
disk_weights() {
	$PY -c "
import onnx, sys
from onnx import numpy_helper as nh
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m)
t = {i.name: nh.to_array(i).ravel().tolist() for i in m.graph.initializer}
print(' '.join('%g' % v for v in t['fc.weight']), '|', ' '.join('%g' % v for v in t['fc.bias']))
" "$model"
}
f32() { $PY -c "import numpy as np, sys; np.array(sys.argv[2:], dtype='<f4').tofile(sys.argv[1])" "$@"; }
show() { $PY -c "import numpy as np, sys; print(' '.join('%g' % v for v in np.fromfile(sys.argv[1], '<f4')))" "$1"; }
journal=$dir/.linear.onnx.modelfs-journal

mount_fg
check "a writable mount is live" mountpoint -q "$mnt" || { cat "$MFS_TMP/daemon.err"; mfs_done; }
check "it is read-write in /proc/mounts" sh -c "grep ' $mnt fuse.modelfs rw,' /proc/mounts"
check_eq "modelfs status of a fresh mount" \
	"last commit: none|journal: none|daemon: pid $daemon|model: $(realpath "$model")" \
	"$("$MODELFS" status "$mnt" | tr '\n' '|' | sed 's/|$//')"
check_eq "data, dtype, shape are writable, name is not" "644 644 644 444" \
	"$(stat -c %a "$w/data" "$w/dtype" "$w/shape" "$w/name" | tr '\n' ' ' | sed 's/ $//')"

# ---- tools that edit data
f32 "$MFS_TMP/w.bin" 1 2 3 4 5 6 7 8 9 10
check "cp over data (O_TRUNC + write)" cp "$MFS_TMP/w.bin" "$w/data"
check_eq "data reads what cp wrote" "1 2 3 4 5 6 7 8 9 10" "$(show "$w/data")"
f32 "$MFS_TMP/x.bin" -7.5
check "dd conv=notrunc into the middle" \
	dd if="$MFS_TMP/x.bin" of="$w/data" bs=4 seek=3 conv=notrunc status=none
check_eq "data after dd" "1 2 3 -7.5 5 6 7 8 9 10" "$(show "$w/data")"
check "truncate -s 20 data" truncate -s 20 "$w/data"
check_eq "st_size after truncate" "20" "$(stat -c %s "$w/data")"
check "truncate -s 40 data (extends with zeros)" truncate -s 40 "$w/data"
check_eq "data after shrink and extend" "1 2 3 -7.5 5 0 0 0 0 0" "$(show "$w/data")"
check "python open(r+b), seek, write, read back" $PY -c "
import struct, sys
with open('$w/data', 'r+b') as f:
    f.seek(24)
    f.write(struct.pack('<4f', 6.5, 7.5, 8.5, 9.5))
    f.seek(0)
    d = f.read()
sys.exit(0 if len(d) == 40 and struct.unpack('<10f', d)[6:] == (6.5, 7.5, 8.5, 9.5) else 1)"
check_eq "data after the python write" "1 2 3 -7.5 5 0 6.5 7.5 8.5 9.5" "$(show "$w/data")"
check "status lists the staged data" sh -c "'$MODELFS' status '$mnt' | grep -q '^staged tensor weights fc.weight data 40 bytes'"
check "the journal beside the model holds the edit" test -s "$journal"

# ---- dtype and shape
check_eq "echo float16 > dtype" "float16" "$(echo float16 > "$w/dtype" && cat "$w/dtype")"
check "echo float33 > dtype fails with EINVAL" fails_with "Invalid argument" bash -c "echo float33 > '$w/dtype'"
check_eq "dtype after the refused write" "float16" "$(cat "$w/dtype")"
check "echo float32 > dtype" sh -c "echo float32 > '$w/dtype'"
check "echo 1,x > shape fails with EINVAL" fails_with "Invalid argument" bash -c "echo 1,x > '$w/shape'"
check "echo -1,10 > shape fails with EINVAL" fails_with "Invalid argument" bash -c "echo -1,10 > '$w/shape'"
check_eq "shape after refused writes" "1,10" "$(cat "$w/shape")"
check "a bad shape written without a newline fails at close (python)" $PY -c "
import errno, sys
f = open('$w/shape', 'w')
f.write('3,x')
try:
    f.close()
except OSError as e:
    sys.exit(0 if e.errno == errno.EINVAL else 1)
sys.exit(1)"
check_eq "printf 10,1 > shape (no newline)" "10,1" "$(printf 10,1 > "$w/shape" && cat "$w/shape")"
check_eq "st_size of shape is that of its text" "5" "$(stat -c %s "$w/shape")"
check "echo 1,10 > shape" sh -c "echo 1,10 > '$w/shape'"

# ---- one value per file: what is not one value fails in write(2), which a
# shell reports (it ignores close's error), and the value stays
check "printf '8\nabc\n' > shape fails with EINVAL" fails_with "Invalid argument" \
	bash -c "printf '8\nabc\n' > '$w/shape'"
check_eq "shape after it" "1,10" "$(cat "$w/shape")"
check "printf '2\n' >> shape (an append) fails with EINVAL" fails_with "Invalid argument" \
	bash -c "printf '2\n' >> '$w/shape'"
check_eq "shape after the append" "1,10" "$(cat "$w/shape")"
check "echo abc > meta/model_version fails with EINVAL" fails_with "Invalid argument" \
	bash -c "echo abc > '$mnt/meta/model_version'"
check_eq "meta/model_version after it" "" "$(cat "$mnt/meta/model_version")"
check "it is write(2) that fails, not only close(2) (python os.write)" $PY -c "
import errno, os, sys
fd = os.open('$w/dtype', os.O_WRONLY | os.O_TRUNC)
try:
    os.write(fd, b'float16\nfloat32\n')
except OSError as e:
    sys.exit(0 if e.errno == errno.EINVAL else 1)
finally:
    try:
        os.close(fd)
    except OSError:
        pass
sys.exit(1)"
check_eq "dtype after it" "float32" "$(cat "$w/dtype")"

# ---- meta and props
check_eq "echo > meta/doc_string" "edited by modelfs" \
	"$(echo 'edited by modelfs' > "$mnt/meta/doc_string" && cat "$mnt/meta/doc_string")"
check_eq "echo v > meta/props/k creates a prop" "v" "$(echo v > "$mnt/meta/props/k" && cat "$mnt/meta/props/k")"
check_eq "echo > an existing prop rewrites it" "v2" "$(echo v2 > "$mnt/meta/props/k" && cat "$mnt/meta/props/k")"
ino_k=$(stat -c %i "$mnt/meta/props/k")
check "mv meta/props/k meta/props/k2" mv "$mnt/meta/props/k" "$mnt/meta/props/k2"
check_eq "props after mv" "k2" "$(ls "$mnt/meta/props" | tr '\n' ' ' | sed 's/ $//')"
check_eq "the renamed prop keeps its value" "v2" "$(cat "$mnt/meta/props/k2")"
check_eq "the renamed prop keeps its inode" "$ino_k" "$(stat -c %i "$mnt/meta/props/k2")"
check "echo gone > meta/props/tmp; rm it" sh -c "echo gone > '$mnt/meta/props/tmp' && rm '$mnt/meta/props/tmp'"
check "rm'd prop is gone" sh -c "! test -e '$mnt/meta/props/tmp'"
check_eq "a prop's value may span lines (read back escaped)" "line 1%0Aline 2" \
	"$(printf 'line 1\nline 2\n' > "$mnt/meta/props/ml" && cat "$mnt/meta/props/ml")"
check "echo >> a prop (an append) fails with EINVAL" fails_with "Invalid argument" \
	bash -c "echo more >> '$mnt/meta/props/ml'"
check_eq "the prop after the append" "line 1%0Aline 2" "$(cat "$mnt/meta/props/ml")"
check "rm it" rm "$mnt/meta/props/ml"

# ---- sed -i: a temporary file beside the one it edits, renamed over it
check "sed -i on meta/doc_string" sed -i 's/by modelfs/by sed/' "$mnt/meta/doc_string"
check_eq "meta/doc_string after sed -i" "edited by sed" "$(cat "$mnt/meta/doc_string")"
check "sed -i on a prop" sed -i 's/v2/v3/' "$mnt/meta/props/k2"
check_eq "the prop after sed -i" "v3" "$(cat "$mnt/meta/props/k2")"
check "sed -i of a read-only meta file that changes it fails (EACCES)" \
	fails_with "Permission denied" sed -i 's/onnx/pb/' "$mnt/meta/format"
check "sed -i of a read-only meta file that keeps it succeeds" sed -i 's/x/x/' "$mnt/meta/format"
check "sed -i of model_version with a bad value fails" \
	fails_with "Invalid argument" sed -i 's/^/abc/' "$mnt/meta/model_version"
check_eq "sed leaves no temporary file behind" "" "$(ls -A "$mnt/meta" "$mnt/meta/props" | grep '^sed' || true)"
check "sed -i back" sh -c "sed -i 's/by sed/by modelfs/' '$mnt/meta/doc_string' && sed -i 's/v3/v2/' '$mnt/meta/props/k2'"

# ---- rsync -a into a tensor directory: temp file, times, rename over data
src=$MFS_TMP/src/bias
mkdir -p "$src"
f32 "$src/data" 0.25
printf 'float32\n' > "$src/dtype"
printf '1\n' > "$src/shape"
printf 'fc.bias\n' > "$src/name"
chmod 444 "$src/name"   # as the mount shows it: rsync -a would chmod it otherwise
touch -d '2021-02-03 04:05:06' "$src"/*
check "rsync -a into weights/fc/bias/" rsync -a "$src/" "$b/"
check_eq "data after rsync" "0.25" "$(show "$b/data")"
check_eq "data has the mtime rsync set" "$(stat -c %Y "$src/data")" "$(stat -c %Y "$b/data")"
check_eq "no rsync temp file left" "" "$(ls -A "$b" | grep '^\.' || true)"
check_eq "a second rsync -a transfers nothing" "0" \
	"$(rsync -a --stats "$src/" "$b/" | awk -F': ' '/Number of regular files transferred/ {print $2}')"
check "rsync of a different name file is refused" fails_with "rsync" \
	sh -c "chmod 644 '$src/name' && printf 'other\n' > '$src/name' && chmod 444 '$src/name' && rsync -a '$src/' '$b/'"

# ---- mv over data: the name shows the renamed inode; a descriptor open on
# the replaced file keeps its content (as on a disk file system)
exec 7<"$b/data"
old_ino=$(stat -c %i "$b/data")
f32 "$MFS_TMP/b2" 0.5
cp "$MFS_TMP/b2" "$b/.new"
new_ino=$(stat -c %i "$b/.new")
check "mv a scratch file over data" mv "$b/.new" "$b/data"
check_eq "data shows the new bytes" "0.5" "$(show "$b/data")"
check_eq "data now has the renamed file's inode" "$new_ino" "$(stat -c %i "$b/data")"
check_eq "a descriptor opened before still reads the old bytes" "0.25" "$(show /dev/fd/7)"
check_eq "... and fstat through it shows the old inode, no links left" "$old_ino 0" \
	"$(stat -L -c '%i %h' /dev/fd/7)"
exec 7<&-
check_eq "data still shows the new bytes after that descriptor closed" "0.5" "$(show "$b/data")"
f32 "$MFS_TMP/b2" 0.25
cp "$MFS_TMP/b2" "$b/.new" && mv "$b/.new" "$b/data"
check_eq "data back to 0.25 by another rename" "0.25" "$(show "$b/data")"

# ---- scratch files never reach the model unless renamed over an entry
check "a scratch file can be created in a tensor dir" sh -c "echo junk > '$w/.scratch' && test \"\$(cat '$w/.scratch')\" = junk"
check "scratch files are listed" sh -c "ls -A '$w' | grep -q '^\.scratch$'"
check "a scratch file cannot be made at the root (EACCES)" fails_with "Permission denied" touch "$mnt/newfile"

# ---- what is not writable
check "writing name is EACCES" fails_with "Permission denied" sh -c "printf x > '$w/name'"
check "writing meta/format is EACCES" fails_with "Permission denied" sh -c "printf x > '$mnt/meta/format'"
check "writing a node's op_type is EACCES" fails_with "Permission denied" sh -c "printf x > '$mnt/nodes/0000-Gemm/op_type'"
check "writing the root model file is EACCES" fails_with "Permission denied" sh -c "printf x > '$mnt/linear.onnx'"
check "creating in nodes/ is EACCES" fails_with "Permission denied" touch "$mnt/nodes/x"
check "creating in meta/ makes a scratch file (sed -i's temporary files)" \
	sh -c "touch '$mnt/meta/x' && test -e '$mnt/meta/x' && rm '$mnt/meta/x'"
check "rm data of a tensor a node reads is EBUSY (rm -r deletes unused initializers only)" \
	fails_with "Device or resource busy" rm "$w/data"
check "mv data is EPERM" fails_with "Operation not permitted" mv "$w/data" "$w/data2"
check "mkdir outside weights/ is EPERM (in weights/ it adds a tensor)" fails_with "Operation not permitted" mkdir "$mnt/meta/d"
check "chmod of a read-only entry is EPERM" fails_with "Operation not permitted" chmod 600 "$mnt/meta/format"
check "chmod of data succeeds" chmod 600 "$w/data"
check_eq "stat shows the mode chmod set" "600" "$(stat -c %a "$w/data")"
check "touch -d of data succeeds" touch -d '2020-01-01 00:00:00' "$w/data"
check_eq "stat shows the mtime touch set" "$(date -d '2020-01-01 00:00:00' +%s)" "$(stat -c %Y "$w/data")"
check "writing .modelfs/status is EACCES" fails_with "Permission denied" sh -c "printf x > '$mnt/.modelfs/status'"

# ---- sizes, the root file
sizes_ok() {
	local f bad=0
	while IFS= read -r -d '' f; do
		[ "$(stat -c %s "$f")" -eq "$(cat "$f" | wc -c)" ] || { echo "size mismatch: $f"; bad=1; }
	done < <(find "$1" -type f ! -name commit ! -name abort -print0)
	return $bad
}
check "st_size equals bytes read for every file, with edits staged" sizes_ok "$mnt"
check "the root model file shows the staged edits" $PY -c "
import onnx, sys
from onnx import numpy_helper as nh
m = onnx.load('$mnt/linear.onnx')
t = {i.name: nh.to_array(i).ravel().tolist() for i in m.graph.initializer}
sys.exit(0 if t['fc.bias'] == [0.25] and m.doc_string == 'edited by modelfs' else 1)"

# ---- commit, abort, status through the modelfs command
check "truncate data to 8 bytes (invalid at commit)" truncate -s 8 "$w/data"
out=$("$MODELFS" commit "$mnt" 2>&1); rc=$?
check_eq "modelfs commit of an invalid edit exits 1" "1" "$rc"
check_eq "it prints one line" "1" "$(printf '%s\n' "$out" | wc -l)"
check "the line says why" sh -c "echo '$out' | grep -q 'modelfs: commit failed: .*fc.weight.*8 bytes'"
check "status says the last commit failed" sh -c "'$MODELFS' status '$mnt' | grep -q '^last commit: failed'"
check_eq "the model is untouched" "$(sha256sum < "$MFS_SRC/examples/linear.onnx")" "$(sha256sum < "$model")"
check "the edit stays staged" sh -c "'$MODELFS' status '$mnt' | grep -q 'fc.weight data 8 bytes'"
f32 "$MFS_TMP/w2.bin" 0.5 1.5 2.5 3.5 4.5 5.5 6.5 7.5 8.5 9.5
check "cp a whole tensor over data" cp "$MFS_TMP/w2.bin" "$w/data"
ino_data=$(stat -c %i "$w/data")
check "modelfs commit" "$MODELFS" commit "$mnt"
check_eq "python3-onnx reads the committed weights" "0.5 1.5 2.5 3.5 4.5 5.5 6.5 7.5 8.5 9.5 | 0.25" "$(disk_weights)"
check_eq "the committed doc_string and prop" "edited by modelfs|v2" "$($PY -c "
import onnx
m = onnx.load('$model')
print(m.doc_string + '|' + ','.join(p.value for p in m.metadata_props if p.key == 'k2'))")"
check "the scratch file did not reach the model" sh -c "! grep -q junk '$model'"
check "the root model file equals the model on disk" cmp "$mnt/linear.onnx" "$model"
check "status says the commit succeeded" sh -c "'$MODELFS' status '$mnt' | grep -q '^last commit: ok'"
check_eq "data keeps its inode across the commit" "$ino_data" "$(stat -c %i "$w/data")"
check_eq "the tree shows the committed data" "0.5 1.5 2.5 3.5 4.5 5.5 6.5 7.5 8.5 9.5" "$(show "$w/data")"
check "st_size equals bytes read for every file after the commit" sizes_ok "$mnt"
check "scratch files survive a commit" test -e "$w/.scratch"
check "rm a scratch file" rm "$w/.scratch"

before=$(sha256sum < "$model")
f32 "$MFS_TMP/x.bin" 42
dd if="$MFS_TMP/x.bin" of="$b/data" conv=notrunc status=none
echo gone > "$mnt/meta/props/ab"
echo junk > "$b/.tmp"
check_eq "staged before the abort" "42" "$(show "$b/data")"
check "modelfs abort" "$MODELFS" abort "$mnt"
check_eq "abort restores data" "0.25" "$(show "$b/data")"
check "abort removes a created prop" sh -c "! test -e '$mnt/meta/props/ab'"
check "abort drops scratch files" sh -c "! test -e '$b/.tmp'"
check_eq "abort leaves the model as it was" "$before" "$(sha256sum < "$model")"
check "the status after abort lists nothing staged" sh -c "! '$MODELFS' status '$mnt' | grep -q '^staged'"

# ---- commit on fsync(2)
dd if="$MFS_TMP/x.bin" of="$b/data" conv=notrunc status=none
check "fsync of a file in the mount" $PY -c "
import os
fd = os.open('$mnt/meta/format', os.O_RDONLY)
os.fsync(fd)
os.close(fd)"
check_eq "fsync committed the staged edit" "0.5 1.5 2.5 3.5 4.5 5.5 6.5 7.5 8.5 9.5 | 42" "$(disk_weights)"
check "a failing commit fails fsync with its errno (EINVAL)" $PY -c "
import errno, os, sys
os.truncate('$b/data', 2)
fd = os.open('$b/data', os.O_RDONLY)
try:
    os.fsync(fd)
except OSError as e:
    sys.exit(0 if e.errno == errno.EINVAL else 1)
finally:
    os.close(fd)
sys.exit(1)"
check "abort the invalid edit" "$MODELFS" abort "$mnt"

# ---- commit on unmount
f32 "$MFS_TMP/x.bin" -3
dd if="$MFS_TMP/x.bin" of="$b/data" conv=notrunc status=none
umount_fg
check_eq "the daemon exits 0 after committing at unmount" "0" "$?"
check_eq "unmount committed the staged edit" "0.5 1.5 2.5 3.5 4.5 5.5 6.5 7.5 8.5 9.5 | -3" "$(disk_weights)"
check_eq "no journal or temp file is left beside the model" "" \
	"$(ls -A "$dir" | grep -v '^linear.onnx$' || true)"

# ---- a journal left by a killed daemon is offered again, not applied
mount_fg
f32 "$MFS_TMP/x.bin" 7
dd if="$MFS_TMP/x.bin" of="$b/data" conv=notrunc status=none
before=$(sha256sum < "$model")
kill -9 "$daemon"; wait "$daemon" 2>/dev/null
fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"
check_eq "kill -9 leaves the model as it was" "$before" "$(sha256sum < "$model")"
mount_fg
check "the next mount reports the recovered journal in status" \
	sh -c "'$MODELFS' status '$mnt' | grep -q '^recovery: .*staged again'"
check_eq "the recovered edit is staged again" "7" "$(show "$b/data")"
check "abort it" "$MODELFS" abort "$mnt"
check_eq "the model still has the committed bias" "-3" "$(show "$b/data")"
check "after the abort, status no longer reports the recovery" \
	sh -c "! '$MODELFS' status '$mnt' | grep -q '^recovery:'"
dd if="$MFS_TMP/x.bin" of="$b/data" conv=notrunc status=none
kill -9 "$daemon"; wait "$daemon" 2>/dev/null
fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"
mount_fg
check "a recovered journal again" sh -c "'$MODELFS' status '$mnt' | grep -q '^recovery: '"
check "commit it" "$MODELFS" commit "$mnt"
check "after a successful commit, status no longer reports the recovery" \
	sh -c "'$MODELFS' status '$mnt' | grep -q '^last commit: ok' && ! '$MODELFS' status '$mnt' | grep -q '^recovery:'"
umount_fg
check_eq "the recovered edit was committed" "7" "$(disk_weights | sed 's/.*| //')"

# ---- -o ro: no journal, everything EROFS
mount_fg -o ro
check "-o ro mounts read-only" sh -c "grep ' $mnt fuse.modelfs ro,' /proc/mounts"
check "writing data in a ro mount is EROFS" fails_with "Read-only file system" sh -c "printf x > '$w/data'"
check "modelfs commit in a ro mount fails" sh -c "! '$MODELFS' commit '$mnt' 2>/dev/null"
umount_fg
check_eq "the daemon of a ro mount exits 0" "0" "$?"
check_eq "nothing beside the model after the ro mount" "" "$(ls -A "$dir" | grep -v '^linear.onnx$' || true)"

check "commit=rewrite is accepted" sh -c "'$MOUNT_MODELFS' '$model' '$mnt' -o commit=rewrite && fusermount3 -u '$mnt'"
check "a bad commit= is refused" fails_with "commit=" "$MOUNT_MODELFS" "$model" "$mnt" -o commit=sometimes
mfs_done

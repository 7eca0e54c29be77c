#!/usr/bin/env bash
# What the commands say (issue 11, item 12): `modelfs status|commit|abort`
# from anywhere inside a mount; `modelfs info` of a file that is no model;
# an external data offset too big for a uint64; the recovery line of status
# once a commit settled it; one form for a scalar shape in `info` and in
# status; and the info table aligned whatever the length of the names.
. "$(dirname "$0")/../lib.sh"

dir=$MFS_TMP/model
mkdir -p "$dir"
cp "$MFS_SRC/examples/linear.onnx" "$dir/"
mnt=$MFS_TMP/m
mkdir -p "$mnt"

# ---- modelfs status, commit and abort from inside a mount
mfs_mount "$dir/linear.onnx" "$mnt" || { not_ok "mount"; mfs_done; }
check_eq "status at the mount point" "last commit: none|journal: none" \
	"$("$MODELFS" status "$mnt" | head -n 2 | tr '\n' '|' | sed 's/|$//')"
check_eq "status of a directory inside the mount" "last commit: none|journal: none" \
	"$("$MODELFS" status "$mnt/weights/fc/weight" | head -n 2 | tr '\n' '|' | sed 's/|$//')"
check_eq "status of '.' from a directory inside the mount" "last commit: none|journal: none" \
	"$(cd "$mnt/nodes/0000-Gemm/attrs" && "$MODELFS" status . | head -n 2 | tr '\n' '|' | sed 's/|$//')"
check_eq "status of a file inside the mount" "last commit: none|journal: none" \
	"$("$MODELFS" status "$mnt/meta/format" | head -n 2 | tr '\n' '|' | sed 's/|$//')"
echo note > "$mnt/meta/props/note"
check "commit from a directory inside the mount" sh -c "cd '$mnt/meta/props' && '$MODELFS' commit ."
check "it committed" sh -c "'$MODELFS' status '$mnt' | grep -q '^last commit: ok'"
echo gone > "$mnt/meta/props/gone"
check "abort from a directory inside the mount" "$MODELFS" abort "$mnt/weights"
check "it aborted" sh -c "! test -e '$mnt/meta/props/gone'"
out=$("$MODELFS" status "$MFS_TMP" 2>&1); rc=$?
check_eq "status of a directory outside any mount exits 1" "1" "$rc"
check_eq "and says it is not a modelfs mount" "modelfs: $MFS_TMP: not a modelfs mount" "$out"
mkdir -p "$MFS_TMP/fake/.modelfs"
out=$("$MODELFS" status "$MFS_TMP/fake" 2>&1)
check_eq "a directory with a .modelfs/ of its own is no mount either" \
	"modelfs: $MFS_TMP/fake: not a modelfs mount" "$out"

# ---- the recovery line goes once a commit settles what recovery offered
echo staged > "$mnt/meta/props/k"
pid=$(pgrep -f "mount.modelfs .*$mnt( |\$)")
kill -9 $pid
for i in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"
mfs_mount "$dir/linear.onnx" "$mnt" 2>/dev/null
check "after kill -9, status reports the recovery" sh -c "'$MODELFS' status '$mnt' | grep -q '^recovery: '"
check "commit" "$MODELFS" commit "$mnt"
check "then the recovery line is gone" sh -c "! '$MODELFS' status '$mnt' | grep -q '^recovery:'"
mfs_umount "$mnt"

# ---- modelfs info of files that are no model
printf 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nsys:x:3:3:sys:/dev:/usr/sbin/nologin\n' > "$MFS_TMP/passwd"
out=$("$MODELFS" info "$MFS_TMP/passwd" 2>&1); rc=$?
check_eq "info of a passwd file exits 1" "1" "$rc"
check_eq "and says it is no model of a known format, then the detail" \
	"modelfs: $MFS_TMP/passwd: not a model of any known format (read as ONNX: bad protobuf tag: wire type 6/7 does not exist at offset 113)" "$out"
echo "just some text" > "$MFS_TMP/text"
out=$("$MODELFS" info "$MFS_TMP/text" 2>&1)
check "info of a text file: the same first words" \
	sh -c "echo '$out' | grep -q '^modelfs: $MFS_TMP/text: not a model of any known format (read as ONNX: '"
head -c 100 "$MFS_SRC/examples/linear.onnx" > "$MFS_TMP/cut.onnx"
out=$("$MODELFS" info "$MFS_TMP/cut.onnx" 2>&1)
check "a truncated ONNX model is an ONNX model: the detail alone" \
	sh -c "echo '$out' | grep -q 'cut.onnx: .*(truncated file)' && ! echo '$out' | grep -q 'known format'"

# ---- an external data offset past 2^64 - 1
$PY - "$MFS_TMP/ext" <<'EOF'
import os, sys
import onnx
from onnx import TensorProto, helper
d = sys.argv[1]
os.makedirs(d)
open(os.path.join(d, "w.bin"), "wb").write(b"\0" * 16)
t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
for k, v in (("location", "w.bin"), ("offset", "99999999999999999999"), ("length", "16")):
    e = t.external_data.add()
    e.key, e.value = k, v
g = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [t])
onnx.save(helper.make_model(g), os.path.join(d, "m.onnx"))
EOF
out=$("$MODELFS" info "$MFS_TMP/ext/m.onnx" 2>&1)
check "an offset of 99999999999999999999 is out of range" \
	sh -c "echo \"\$1\" | grep -q \"external data offset '99999999999999999999' is out of range\"" _ "$out"

# ---- scalars and long names in `modelfs info`
$PY - "$MFS_TMP/scalar.onnx" <<'EOF'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
long = "encoder.layers.0.self_attention.query_key_value.weight.scale_factor_for_int8"
inits = [numpy_helper.from_array(np.array(2.0, dtype=np.float32), "s"),
         numpy_helper.from_array(np.ones((2, 3), dtype=np.float32), long),
         numpy_helper.from_array(np.ones((1,), dtype=np.int64), "n")]
g = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["y"])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], inits)
onnx.save(helper.make_model(g), sys.argv[1])
EOF
info=$("$MODELFS" info "$MFS_TMP/scalar.onnx")
check_eq "a scalar input is [] in the inputs" "  x  float32  []" "$(echo "$info" | sed -n '/^inputs:/{n;p}')"
table=$(echo "$info" | sed -n '/^tensor table:/,$p' | tail -n +2)
check "a scalar tensor is [] in the tensor table" sh -c "echo '$table' | grep -Eq '^  weight +s +float32 +\[\] +4\$'"
check "a matrix is [2,3] in the tensor table" sh -c "echo '$table' | grep -q 'float32  \[2,3\] '"
aligned() {   # every row has its dtype, shape and bytes columns where the header has them
	local head col c
	head=$(echo "$table" | head -n 1)
	for col in dtype shape; do
		c=$(awk -v h="$head" -v w="$col" 'BEGIN { print index(h, w) }')
		echo "$table" | tail -n +2 | while IFS= read -r row; do
			[ "${row:c-2:1}" = " " ] && [ "${row:c-1:1}" != " " ] || { echo "misaligned: $row"; exit 1; }
		done || return 1
	done
	[ "$(echo "$table" | awk '{ print length($0) }' | sort -u | wc -l)" -eq 1 ] || { echo "bytes not right-aligned"; return 1; }
}
check "the table stays aligned with a 78-character name" aligned

cp "$MFS_TMP/scalar.onnx" "$dir/s.onnx"
mfs_mount "$dir/s.onnx" "$mnt" || { not_ok "mount"; mfs_done; }
check_eq "a scalar's shape file is an empty line" "" "$(cat "$mnt/weights/s/shape")"
check "echo 2 > shape of the scalar" sh -c "echo 2 > '$mnt/weights/s/shape'"
check "status shows a shape in brackets" sh -c "'$MODELFS' status '$mnt' | grep -qx 'staged tensor weights s shape \[2\]'"
check "printf '\\n' > shape: a scalar again" sh -c "printf '\\n' > '$mnt/weights/n/shape'"
check "status shows a scalar as []" sh -c "'$MODELFS' status '$mnt' | grep -qx 'staged tensor weights n shape \[\]'"
check "abort" "$MODELFS" abort "$mnt"
mfs_umount "$mnt"
mfs_done

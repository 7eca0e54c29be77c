#!/usr/bin/env bash
# bench/run --smoke: the benchmark script runs end to end on tiny fixtures
# (a few MiB, 2 repetitions) so it cannot rot.  Checks that it prints the
# machine facts, every row, a numeric ratio with min…max and a goal verdict
# for every row, the commit rows included, and the squashfuse_ll peer ratio of
# the read and metadata rows.  Never asserts on a time or a speed: PASS and
# MISS are both fine here.
. "$(dirname "$0")/../lib.sh"

bout=$MFS_TMP/bench.out
berr=$MFS_TMP/bench.err
results=$MFS_SRC/bench/RESULTS.md
before=$( [ -f "$results" ] && sha256sum "$results" | cut -d' ' -f1)

MFS_BUILD=$MFS_BUILD timeout 600 "$MFS_SRC/bench/run" --smoke --workdir "$MFS_TMP/bench" >"$bout" 2>"$berr"
rc=$?
if [ $rc -eq 0 ]; then
	ok "bench/run --smoke exits 0"
else
	not_ok "bench/run --smoke exits 0: exit $rc; $(grep -v '^#' "$berr" | tail -n 3 | tr '\n' ' ')"
	sed 's/^/# /' "$bout"
fi

has() { grep -qE "$1" "$bout"; }
check "prints the command" has '^command: (MFS_BUILD=[^ ]+ )?bench/run --smoke'
check "prints nproc, kernel and libfuse version" \
	has '^machine: nproc=[0-9]+, kernel [^ ]+, libfuse [0-9]+\.[0-9]+'
check "prints which fixtures it used" has '^fixture onnx '

# Every measurable row: "NAME: ratio=X (NUM=..., DEN=...; median of N, ratio MIN…MAX) goal OP G PASS|MISS"
num='[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?'
measurable=()
for m in onnx onnx-ext st-bf16 st-fp32; do
	measurable+=("warm re-read [$m]" "first read [$m]" "small reads [$m]" "mmap [$m]"
	             "mount I/O [$m]" "memory [$m]")
done
measurable+=("mount time [onnx]" "mount time [onnx-ext]" "metadata [graph]" "metadata, warm [graph]"
             "mount time [st-many]" "memory [st-many]")
for row in "${measurable[@]}"; do
	line=$(grep -F "$row: " "$bout" | head -n 1)
	if [ -z "$line" ]; then
		not_ok "row '$row' is printed"
	elif echo "$line" | grep -qE "^.*: ratio=$num \(.*; median of 2, ratio $num…$num\) goal (≥|≤) $num.* (PASS|MISS)\$"; then
		ok "row '$row' has a ratio, its range and a verdict"
	else
		not_ok "row '$row' has a ratio, its range and a verdict: $line"
	fi
	check "raw numbers of '$row' are printed" grep -qF "  $row: " "$bout"
done

for row in "one-tensor commit [onnx]" "write amplification [onnx]" "resize commit [onnx]"; do
	line=$(grep -F "$row: " "$bout" | head -n 1)
	if echo "$line" | grep -qE "^.*: ratio=$num \(.*; median of 2, ratio $num…$num\) goal (≥|≤) $num.* (PASS|MISS)\$"; then
		ok "row '$row' has a ratio, its range and a verdict"
	else
		not_ok "row '$row' has a ratio, its range and a verdict: '$line'"
	fi
done

# The FUSE peer (issue 14): the read and metadata rows also carry a ratio
# against squashfuse_ll, with its range and its own verdict.
peer_rows=()
for m in onnx onnx-ext st-bf16 st-fp32; do
	peer_rows+=("warm re-read [$m]" "first read [$m]" "small reads [$m]" "mmap [$m]")
done
peer_rows+=("metadata [graph]" "metadata, warm [graph]")
if command -v squashfuse_ll >/dev/null && command -v mksquashfs >/dev/null; then
	for row in "${peer_rows[@]}"; do
		line=$(grep -F "$row: " "$bout" | head -n 1)
		if echo "$line" | grep -qE "; vs squashfuse_ll=$num \(mount=$num [^ ]+, squashfuse_ll=$num [^ ]+; median of 2, ratio $num…$num\) goal (≥|≤) 1\.0 (PASS|MISS)\$"; then
			ok "row '$row' has a squashfuse_ll ratio, its range and a verdict"
		else
			not_ok "row '$row' has a squashfuse_ll ratio, its range and a verdict: $line"
		fi
	done
else
	ok "squashfuse_ll ratios # SKIP squashfuse_ll or mksquashfs not installed"
fi

check_eq "no row failed to measure" "" "$(grep -E ': error: ' "$bout")"
check_eq "smoke run leaves bench/RESULTS.md alone" "$before" \
	"$( [ -f "$results" ] && sha256sum "$results" | cut -d' ' -f1)"
check_eq "no mount left behind under the work dir" "" "$(grep -F " $MFS_TMP/bench/" /proc/mounts)"
mfs_done

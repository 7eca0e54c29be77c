# tests/lib.sh — helpers for mount tests written in bash.
#
# A mount test is an executable tests/mount/test_*.sh (or .py, see
# mfstest.py) that prints one line per check: "ok - <what>" or
# "not ok - <what>: <why>", and exits non-zero if any check failed.
# tests/run runs them all and counts the lines.
#
# Source it:  . "$(dirname "$0")/../lib.sh"
set -u
MFS_SRC=${MFS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
MFS_BUILD=${MFS_BUILD:-$MFS_SRC/build}
MOUNT_MODELFS=$MFS_BUILD/fs/mount.modelfs
MODELFS=$MFS_BUILD/tools/modelfs
PY=/usr/bin/python3
export PYTHONPATH=$MFS_SRC/tests${PYTHONPATH:+:$PYTHONPATH}
MFS_FAILED=0
MFS_MOUNTS=()
MFS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/mfstest.XXXXXX")

ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; MFS_FAILED=1; }

# check "what" cmd args...   : ok when the command exits 0
check() {
	local what=$1; shift
	local out
	if out=$("$@" 2>&1); then ok "$what"; else not_ok "$what: $(echo "$out" | tail -n 3 | tr '\n' ' ')"; fi
}

# check_eq "what" expected actual
check_eq() {
	if [ "$2" == "$3" ]; then ok "$1"; else not_ok "$1: expected '$2', got '$3'"; fi
}

# mfs_mount MODEL DIR [opts...] : mounts (returns when live), remembered for cleanup
mfs_mount() {
	local model=$1 dir=$2; shift 2
	mkdir -p "$dir"
	"$MOUNT_MODELFS" "$model" "$dir" "$@" || return 1
	MFS_MOUNTS+=("$dir")
}

# mfs_umount DIR : unmounts, and waits for the daemon to be gone
# The kernel does not wait for the daemon, which commits staged edits after
# the mount is gone: wait for it to exit too.
mfs_umount() {
	local dir pids i
	dir=$(realpath "$1")
	pids=$(pgrep -f "mount.modelfs .*$dir( |\$)" || true)
	fusermount3 -u "$1" 2>/dev/null || umount -l "$1" 2>/dev/null
	for i in $(seq 50); do mountpoint -q "$1" || break; sleep 0.1; done
	mountpoint -q "$1" && return 1
	for i in $(seq 600); do
		local alive=
		for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ -z "$alive" ] && return 0
		sleep 0.1
	done
	return 1
}

mfs_cleanup() {
	local d
	for d in "${MFS_MOUNTS[@]:-}"; do
		[ -n "$d" ] && mountpoint -q "$d" 2>/dev/null && mfs_umount "$d"
	done
	rm -rf "$MFS_TMP"
}
trap mfs_cleanup EXIT

# Require FUSE: a missing /dev/fuse is a failure, never a skip.
if [ ! -c /dev/fuse ]; then
	not_ok "FUSE is required: /dev/fuse is missing"
	exit 1
fi
if [ ! -x "$MOUNT_MODELFS" ]; then
	not_ok "mount.modelfs not built at $MOUNT_MODELFS"
	exit 1
fi

mfs_done() { exit $MFS_FAILED; }

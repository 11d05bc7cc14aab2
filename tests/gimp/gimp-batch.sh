#!/bin/sh
# Run a python-fu script in headless GIMP 3:  gimp-batch.sh ROOT SCRIPT [DIR...]
#   ROOT    from gimp-root.sh: "/" runs the host's gimp-console-3.0; otherwise a Debian root
#           entered with chroot inside a private mount namespace (unshare --mount), in which
#           /proc, /dev, /dev/shm and each DIR are bind-mounted at the SAME path, and a fresh
#           tmpfs covers the root's /tmp. The mounts vanish with the namespace: nothing to clean.
#   DIR...  what GIMP's plug-ins must see: the worker's Python (the venv and the interpreter its
#           python symlinks into) and the onnxstyle sources, the test's files.
# GIMP gets a clean environment: PATH, HOME, GIMP3_DIRECTORY, LANG and every ONNXSTYLE_E2E_*
# variable (the script's parameters).
set -eu
ROOT=$1
SCRIPT=$2
shift 2
# the folder of these scripts, where the ones GIMP runs find layer_dump.py (gimp_setup.binds
# mounts it in the root)
ONNXSTYLE_E2E_SCRIPTS=$(cd "$(dirname "$0")" && pwd)
export ONNXSTYLE_E2E_SCRIPTS

set -- "$@"
ENVS="PATH=/usr/bin:/bin HOME=${HOME} GIMP3_DIRECTORY=${GIMP3_DIRECTORY:?} LANG=C.UTF-8"
for v in $(env | sed -n 's/^\(ONNXSTYLE_E2E_[A-Z0-9_]*\)=.*/\1/p'); do
    eval "ENVS=\"\$ENVS $v=\$$v\""
done
GIMP="gimp-console-3.0 -i --batch-interpreter=python-fu-eval -b - --quit"

if [ "$ROOT" = / ]; then
    exec env -i $ENVS $GIMP <"$SCRIPT"
fi

exec unshare --mount --propagation private sh -eu -c '
    root=$1; script=$2; envs=$3; gimp=$4; shift 4
    mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
    for d in /proc /dev /dev/shm "$@"; do
        d=$(readlink -f "$d")
        mkdir -p "$root$d"
        mount --rbind "$d" "$root$d"
    done
    exec chroot "$root" /usr/bin/env -i $envs $gimp <"$script"
' sh "$ROOT" "$SCRIPT" "$ENVS" "$GIMP" "$@"

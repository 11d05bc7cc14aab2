#!/bin/sh
# Run a driver script beside GIMP 3's GUI on a virtual screen:  gimp-gui.sh ROOT DRIVER [DIR...]
#   ROOT, DIR...  as in gimp-batch.sh (the same chroot, private mount namespace and bind mounts)
#   DRIVER        a Python script run by the root's (or this host's) python3 under xvfb-run and a
#                 private D-Bus session (GIMP's own UI tests do the same), so the driver, GIMP and
#                 its plug-ins share one X display and one accessibility bus; the driver starts GIMP.
# The driver gets a clean environment: PATH, HOME, GIMP3_DIRECTORY, LANG and every ONNXSTYLE_E2E_*
# variable (the script's parameters).
set -eu
ROOT=$1
DRIVER=$2
shift 2
# the folder of these scripts, where the ones GIMP runs find layer_dump.py (gimp_setup.binds
# mounts it in the root)
ONNXSTYLE_E2E_SCRIPTS=$(cd "$(dirname "$0")" && pwd)
export ONNXSTYLE_E2E_SCRIPTS

ENVS="PATH=/usr/bin:/bin HOME=${HOME} GIMP3_DIRECTORY=${GIMP3_DIRECTORY:?} LANG=C.UTF-8"
for v in $(env | sed -n 's/^\(ONNXSTYLE_E2E_[A-Z0-9_]*\)=.*/\1/p'); do
    eval "ENVS=\"\$ENVS $v=\$$v\""
done
# a screen large enough for GIMP's window and the dialog side by side
GUI="xvfb-run -a -s \"-screen 0 1400x1000x24 -nolisten tcp\" dbus-run-session -- python3"

if [ "$ROOT" = / ]; then
    eval exec env -i $ENVS $GUI '"$DRIVER"'
fi

exec unshare --mount --propagation private sh -eu -c '
    root=$1; driver=$2; envs=$3; gui=$4; shift 4
    mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
    for d in /proc /dev /dev/shm "$@"; do
        d=$(readlink -f "$d")
        mkdir -p "$root$d"
        mount --rbind "$d" "$root$d"
    done
    eval exec chroot "$root" /usr/bin/env -i $envs $gui "\"\$driver\""
' sh "$ROOT" "$DRIVER" "$ENVS" "$GUI" "$@"

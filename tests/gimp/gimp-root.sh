#!/bin/sh
# Print the root directory to run GIMP 3 in, making it first if needed:
#   "/"                               this host has gimp-console-3.0 (on Debian 13: apt-get install gimp)
#   /var/cache/onnxstyle/trixie       a Debian 13 root with GIMP 3.0 (override: ONNXSTYLE_GIMP_ROOT)
# Both get the packages of the real-window test and the worker-behind-ssh test too (TEST_PACKAGES:
# a virtual X server, the accessibility bus and its Python client, an ssh client); an existing
# root that lacks some gets them added, once.
# The root is built into "$ROOT.partial" and renamed when complete, so a half-built root is
# never used; a leftover .partial from a crashed build is removed first. Build output goes to
# stderr; stdout is only the path. Needs root (debootstrap, chroot) and the network once.
set -eu

GIMP_PACKAGES="gimp python3-gi gir1.2-gimp-3.0"
TEST_PACKAGES="xvfb xauth at-spi2-core python3-pyatspi openssh-client"
# one file per test package: all present means nothing to install (checked without chroot or apt)
TEST_FILES="usr/bin/xvfb-run usr/bin/Xvfb usr/bin/xauth usr/libexec/at-spi-bus-launcher
usr/lib/python3/dist-packages/pyatspi/__init__.py usr/bin/ssh"
ROOT=${ONNXSTYLE_GIMP_ROOT:-/var/cache/onnxstyle/trixie}

has_test_packages() {  # has_test_packages PREFIX: "" for this host, "$ROOT" for the root
    for f in $TEST_FILES; do
        [ -e "$1/$f" ] || return 1
    done
}

# in the root: apt-get install inside chroot, in a private mount namespace
root_install() {  # root_install DIR PACKAGES
    cp /etc/resolv.conf "$1/etc/resolv.conf" 2>/dev/null || true
    unshare --mount --propagation private sh -eu -c '
        mount -t proc proc "$1/proc"
        mount --rbind /dev "$1/dev"
        chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
            sh -eu -c "apt-get update && apt-get install -y --no-install-recommends $2 && apt-get clean"
    ' sh "$1" "$2" >&2
}

if command -v gimp-console-3.0 >/dev/null 2>&1; then
    if ! has_test_packages "" && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $TEST_PACKAGES >&2
    fi
    echo /
    exit 0
fi
if [ -x "$ROOT/usr/bin/gimp-console-3.0" ] && has_test_packages "$ROOT"; then
    echo "$ROOT"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    if [ -x "$ROOT/usr/bin/gimp-console-3.0" ]; then
        echo "gimp-root.sh: $ROOT lacks the GUI and ssh tests' packages ($TEST_PACKAGES); rerun as root" >&2
        echo "$ROOT"
        exit 0
    fi
    echo "gimp-root.sh: no gimp-console-3.0 here and not root: can't install GIMP 3 or build $ROOT" >&2
    exit 1
fi

# Debian 13 (trixie) and later ship GIMP 3 themselves
VERSION_ID=0
ID=unknown
[ -r /etc/os-release ] && . /etc/os-release
if [ "$ID" = debian ] && [ "${VERSION_ID%%.*}" -ge 13 ] 2>/dev/null; then
    apt-get update -qq >&2  # a fresh machine's package lists may be empty or stale
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        $GIMP_PACKAGES $TEST_PACKAGES >&2
    echo /
    exit 0
fi

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9  # one builder at a time; a second caller waits, then finds the finished root
if [ -x "$ROOT/usr/bin/gimp-console-3.0" ]; then
    if ! has_test_packages "$ROOT"; then
        # a root cached by an older version of this script: add what the GUI and ssh tests need
        echo "gimp-root.sh: adding $TEST_PACKAGES to $ROOT" >&2
        root_install "$ROOT" "$TEST_PACKAGES"
    fi
    echo "$ROOT"
    exit 0
fi

PART="$ROOT.partial"
if [ -e "$PART" ]; then
    # mounts are only ever made in private mount namespaces, but never rm -rf through one
    if grep -q " $PART[/ ]" /proc/self/mountinfo; then
        echo "gimp-root.sh: $PART has mounts on it; unmount them, then rerun" >&2
        exit 1
    fi
    rm -rf --one-file-system "$PART"
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq >&2  # a fresh machine's package lists may be empty or stale
    DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2
fi
# The Debian archive this host's apt is configured with (ONNXSTYLE_DEBIAN_MIRROR overrides); none
# found: debootstrap's own default. No address is written here: the machine's configuration decides.
host_mirror() {
    { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | sed 's/^URIs:[[:space:]]*//' | tr ' ' '\n'
      grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } |
        grep -E '/debian/?$' | head -n 1
}
MIRROR=${ONNXSTYLE_DEBIAN_MIRROR:-$(host_mirror)}
echo "gimp-root.sh: building a Debian 13 root with GIMP 3 in $PART (several minutes)" >&2
debootstrap --variant=minbase trixie "$PART" ${MIRROR:+"$MIRROR"} >&2
root_install "$PART" "$GIMP_PACKAGES $TEST_PACKAGES"
if [ ! -x "$PART/usr/bin/gimp-console-3.0" ] || ! has_test_packages "$PART"; then
    echo "gimp-root.sh: the build in $PART lacks gimp-console-3.0 or the GUI and ssh tests' packages" >&2
    exit 1
fi
mv "$PART" "$ROOT"
echo "$ROOT"

#!/bin/sh
# Print the root directory to run GIMP 3 in, making it first if needed:
#   "/"                               this host has gimp-console-3.0 (on Debian 13: apt-get install gimp)
#   /var/cache/onnxstyle/trixie       a Debian 13 root with GIMP 3.0 (override: ONNXSTYLE_GIMP_ROOT)
# The root is built into "$ROOT.partial" and renamed when complete, so a half-built root is
# never used; a leftover .partial from a crashed build is removed first. Build output goes to
# stderr; stdout is only the path. Needs root (debootstrap, chroot) and the network once.
set -eu

GIMP_PACKAGES="gimp python3-gi gir1.2-gimp-3.0"
ROOT=${ONNXSTYLE_GIMP_ROOT:-/var/cache/onnxstyle/trixie}

if command -v gimp-console-3.0 >/dev/null 2>&1; then
    echo /
    exit 0
fi
if [ -x "$ROOT/usr/bin/gimp-console-3.0" ]; then
    echo "$ROOT"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "gimp-root.sh: no gimp-console-3.0 here and not root: can't install GIMP 3 or build $ROOT" >&2
    exit 1
fi

# Debian 13 (trixie) and later ship GIMP 3 themselves
VERSION_ID=0
ID=unknown
[ -r /etc/os-release ] && . /etc/os-release
if [ "$ID" = debian ] && [ "${VERSION_ID%%.*}" -ge 13 ] 2>/dev/null; then
    apt-get update -qq >&2  # a fresh machine's package lists may be empty or stale
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $GIMP_PACKAGES >&2
    echo /
    exit 0
fi

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9  # one builder at a time; a second caller waits, then finds the finished root
if [ -x "$ROOT/usr/bin/gimp-console-3.0" ]; then
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
cp /etc/resolv.conf "$PART/etc/resolv.conf" 2>/dev/null || true
unshare --mount --propagation private sh -eu -c '
    mount -t proc proc "$1/proc"
    mount --rbind /dev "$1/dev"
    chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -eu -c "apt-get update && apt-get install -y --no-install-recommends $2 && apt-get clean"
' sh "$PART" "$GIMP_PACKAGES" >&2
if [ ! -x "$PART/usr/bin/gimp-console-3.0" ]; then
    echo "gimp-root.sh: the build in $PART has no gimp-console-3.0" >&2
    exit 1
fi
mv "$PART" "$ROOT"
echo "$ROOT"

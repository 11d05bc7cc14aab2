#!/bin/sh
# CI: make GIMP 3 (and a virtual screen) available for tests/test_gimp_*.py: the host's on Debian 13, else a cached
# Debian 13 root at /var/cache/onnxstyle/trixie (built once, several minutes; needs root + network).
exec sh "$(dirname "$0")/../tests/gimp/gimp-root.sh" "$@"

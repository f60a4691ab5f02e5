#!/usr/bin/env bash
# Stages the Debian packages strata builds against into .deps/ for the GPU test host, which
# reaches no package registry (see the shared device README): the shared stage script plus the
# packages it does not list, with ICU's static libraries dropped so the working tree that travels
# to the host stays under its size limit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash ../shared/device/stage.sh libhwloc-dev libhwloc15 libzstd-dev libzstd1 libicu-dev libicu72
deb=$(ls .deps/libicu-dev_*.deb)
tmp=$(mktemp -d)
dpkg-deb -R "$deb" "$tmp/pkg"
find "$tmp/pkg" -name '*.a' -delete
rm -rf "$tmp/pkg/usr/share/doc"
dpkg-deb -Zxz -b "$tmp/pkg" "$deb" >/dev/null
rm -rf "$tmp"
du -sh .deps

#!/bin/bash
# Fetch a Debian kernel image and its modules WITHOUT installing the package:
# resolve the versioned package behind a meta package, `apt-get download` it,
# unpack it with `dpkg-deb -x` and generate modules.dep with `depmod -b`.
# The host's /boot and /lib/modules are never touched.
#
# Usage: fetch-kernel.sh CACHE_DIR [META]     (META: linux-image-cloud-amd64)
# Prints shell assignments: KERNEL=... MODROOT=... KVER=...
set -euo pipefail
CACHE=${1:?cache dir}
META=${2:-linux-image-cloud-amd64}

pkg_of() { apt-cache depends "$1" 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ && !f {f=$2} END {print f}'; }
PKG=$(pkg_of "$META")
if [ -z "$PKG" ]; then
	# the package lists may be missing on a fresh machine
	apt-get update -qq -o DPkg::Lock::Timeout=300 >&2
	PKG=$(pkg_of "$META")
fi
[ -n "$PKG" ] || { echo "fetch-kernel: cannot resolve $META to a linux-image-X.Y.Z package" >&2; exit 1; }
KVER=${PKG#linux-image-}
ROOT=$CACHE/$KVER
if [ ! -f "$ROOT/boot/vmlinuz-$KVER" ]; then
	mkdir -p "$ROOT/debs"
	(cd "$ROOT/debs" && apt-get download -q "$PKG" >&2)
	dpkg-deb -x "$ROOT"/debs/"$PKG"_*.deb "$ROOT"
	rm -rf "$ROOT/debs"
fi
# Debian's postinst creates modules.dep; we did not run it.
[ -s "$ROOT/lib/modules/$KVER/modules.dep" ] || depmod -b "$ROOT" "$KVER"
echo "KERNEL=$ROOT/boot/vmlinuz-$KVER"
echo "MODROOT=$ROOT"
echo "KVER=$KVER"

#!/bin/bash
# Build the guest's initramfs (gzip'd newc cpio): busybox-static, iproute2's
# `ip` with its shared libraries, the kernel modules the XFRM tests need (with
# their dependencies, in load order), the test binaries and /init.
#
# Usage: build-initramfs.sh OUT.cpio.gz TESTBIN[@PKGDIR]...
#        each test binary runs in /tests/NAME/, next to a copy of PKGDIR/testdata
# Env:   KVER, MODROOT (from fetch-kernel.sh); WORK (scratch dir, default mktemp)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?output}; shift
[ $# -gt 0 ] || { echo "build-initramfs: no test binaries" >&2; exit 1; }
: "${KVER:?}" "${MODROOT:?}"
MD=$MODROOT/lib/modules/$KVER
[ -d "$MD" ] || { echo "build-initramfs: no $MD" >&2; exit 1; }
WORK=${WORK:-$(mktemp -d)}
R=$WORK/root
rm -rf "$R"
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,run,tmp,tests,lib64,lib/modules/"$KVER"}
mkdir -p "$R/var" && ln -s ../run "$R/var/run"

# busybox: one binary, a link per applet. Its `ip` lacks xfrm and netns, so
# iproute2's goes in /sbin and /init calls it by path.
BUSYBOX=$(command -v busybox)
file -L "$BUSYBOX" | grep -q 'statically linked' || { echo "build-initramfs: $BUSYBOX is not static (install busybox-static)" >&2; exit 1; }
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do
	[ "$a" = busybox ] || [ "$a" = ip ] || ln -sf busybox "$R/bin/$a"
done
ln -sf ../bin/busybox "$R/sbin/modprobe" # for the kernel's request_module()

# An ELF and the libraries ldd resolves, at the same paths inside the image.
add_elf() {
	local src=$1 dst=$2 lib
	mkdir -p "$R$(dirname "$dst")"
	cp -L "$src" "$R$dst"
	for lib in $(ldd "$src" | awk '/=> \//{print $3} /^\t\//{print $1}'); do
		mkdir -p "$R$(dirname "$lib")"
		cp -Ln "$lib" "$R$lib"
	done
}
add_elf "$(command -v ip)" /sbin/ip

# Modules: kmod resolves dependencies and prints them in load order; names are
# module names or aliases (crypto-NAME), "builtin" lines need nothing.
MODS="xfrm_user esp4 ah4 xfrm4_tunnel veth
crypto-authenc crypto-echainiv crypto-seqiv crypto-sha512 crypto-sha3-256 crypto-jitterentropy_rng drbg crypto-stdrng
crypto-cbc crypto-ecb crypto-aes crypto-des crypto-des3_ede crypto-cipher_null crypto-rfc4106 crypto-gcm crypto-ghash crypto-ctr
crypto-hmac crypto-md5 crypto-sha1 crypto-sha256 crypto-sha384
nf_tables nft_limit nft_log nfnetlink_log"
: > "$R/etc/modules.load"
missing=""
for m in $MODS; do
	if ! deps=$(modprobe -d "$MODROOT" -S "$KVER" --show-depends "$m" 2>/dev/null); then
		missing="$missing $m"
		continue
	fi
	while read -r kw path _; do
		[ "$kw" = insmod ] || continue
		rel=${path#"$MD"/}
		rel=${rel#/lib/modules/$KVER/}
		grep -qxF "$rel" "$R/etc/modules.load" && continue
		mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
		cp "$MD/$rel" "$R/lib/modules/$KVER/$rel"
		echo "$rel" >>"$R/etc/modules.load"
	done <<<"$deps"
done
[ -z "$missing" ] || echo "build-initramfs: not found as module or builtin (the kernel may lack them):$missing" >&2
cp "$MD"/modules.{dep,alias,softdep,builtin,order,symbols} "$R/lib/modules/$KVER/" 2>/dev/null || true
echo "$KVER" >"$R/etc/kver"

for arg in "$@"; do
	bin=${arg%%@*}
	name=$(basename "$bin" .test)
	mkdir -p "$R/tests/$name"
	cp "$bin" "$R/tests/$name/$name.test"
	if [ "$arg" != "$bin" ] && [ -d "${arg#*@}/testdata" ]; then
		cp -r "${arg#*@}/testdata" "$R/tests/$name/"
	fi
done
cp "$HERE/init.sh" "$R/init"
chmod 755 "$R/init"

(cd "$R" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$OUT"
echo "build-initramfs: $OUT $(du -h "$OUT" | cut -f1), kernel $KVER, $(wc -l <"$R/etc/modules.load") modules, tests: $*" >&2

#!/bin/bash
# Build the guest's initramfs (gzip'd newc cpio): busybox-static, iproute2's
# `ip` with its shared libraries, the kernel modules the guest needs (with
# their dependencies, in load order), optionally strongSwan's charon and
# swanctl and iperf3 (from the host's installed Debian packages), the payload
# staged by lab/qemu (programs in /tests, /etc/programs, tools, shared
# files) and init.sh as /init.
#
# Usage: build-initramfs.sh OUT.cpio.gz PAYLOAD_DIR
# Env:   KVER, MODROOT (from fetch-kernel.sh); WORK (scratch dir, default mktemp)
#        STRONGSWAN=1  charon (kernel-netlink), swanctl, plugins, libraries
#        IPERF=1       iperf3 and its libraries
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?output}
PAYLOAD=${2:?payload dir}
[ -f "$PAYLOAD/etc/programs" ] || { echo "build-initramfs: $PAYLOAD/etc/programs missing" >&2; exit 1; }
: "${KVER:?}" "${MODROOT:?}"
MD=$MODROOT/lib/modules/$KVER
[ -d "$MD" ] || { echo "build-initramfs: no $MD" >&2; exit 1; }
WORK=${WORK:-$(mktemp -d)}
R=$WORK/root
rm -rf "$R"
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,run,tmp,tests,lib64,lib/modules/"$KVER"}
mkdir -p "$R/var" && ln -s ../run "$R/var/run"
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"
printf '127.0.0.1 localhost\n' >"$R/etc/hosts"

# busybox: one binary, a link per applet. Its `ip` lacks xfrm and netns, so
# iproute2's goes in /sbin and /init calls it by path.
BUSYBOX=$(command -v busybox)
file -L "$BUSYBOX" | grep 'statically linked' >/dev/null || { echo "build-initramfs: $BUSYBOX is not static (install busybox-static)" >&2; exit 1; }
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do
	[ "$a" = busybox ] || [ "$a" = ip ] || ln -sf busybox "$R/bin/$a"
done
ln -sf ../bin/busybox "$R/sbin/modprobe" # for the kernel's request_module()

# An ELF (or a shared object) and the libraries ldd resolves, at the same
# paths inside the image.
add_elf() {
	local src=$1 dst=${2:-$1} lib
	mkdir -p "$R$(dirname "$dst")"
	cp -L "$src" "$R$dst"
	for lib in $(ldd "$src" | awk '/=> \//{print $3} /^\t\//{print $1}'); do
		[ -e "$R$lib" ] && continue
		mkdir -p "$R$(dirname "$lib")"
		cp -L "$lib" "$R$lib"
	done
}
add_elf "$(command -v ip)" /sbin/ip

if [ "${STRONGSWAN:-0}" = 1 ]; then
	# charon loads its plugins with dlopen (ldd does not see them): the
	# ones the lab's strongswan.conf names, with their own libraries.
	for f in /usr/lib/ipsec/charon /usr/sbin/swanctl; do
		[ -x "$f" ] || { echo "build-initramfs: $f missing (scripts/deps.sh installs strongSwan)" >&2; exit 1; }
		add_elf "$f"
	done
	for p in random nonce aes sha1 sha2 md5 hmac gmp kdf gcm pem pkcs1 x509 pubkey curve25519 kernel-netlink socket-default vici; do
		add_elf "/usr/lib/ipsec/plugins/libstrongswan-$p.so"
	done
	# glibc loads libgcc_s itself for pthread_cancel (charon's and
	# swanctl's threads); ldd does not list it.
	gcc_s=$(ldconfig -p | awk '/libgcc_s.so.1 .*x86-64/ && !f {f=$NF} END {print f}')
	[ -n "$gcc_s" ] || { echo "build-initramfs: libgcc_s.so.1 not found" >&2; exit 1; }
	add_elf "$gcc_s"
fi
if [ "${IPERF:-0}" = 1 ]; then
	add_elf "$(command -v iperf3)" /usr/bin/iperf3
fi

# Modules: kmod resolves dependencies and prints them in load order; names are
# module names or aliases (crypto-NAME), "builtin" lines need nothing.
MODS="xfrm_user esp4 ah4 xfrm4_tunnel veth tun
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

base=$(du -sk "$R" | cut -f1)
cp -a "$PAYLOAD"/. "$R"/
cp "$HERE/init.sh" "$R/init"
chmod 755 "$R/init"

(cd "$R" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$OUT"
echo "build-initramfs: $OUT $(du -h "$OUT" | cut -f1) ($(du -sh "$R" | cut -f1) unpacked, $((base / 1024)) MB without the payload), kernel $KVER, $(wc -l <"$R/etc/modules.load") modules, strongswan=${STRONGSWAN:-0} iperf3=${IPERF:-0}, programs: $(tr '\n' ' ' <"$R/etc/programs")" >&2

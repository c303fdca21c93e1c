#!/usr/bin/env bash
# Installs the Debian packages the test command and the lab need, only when missing.
# Runs as root (CI does); safe to run repeatedly. Set SPIAGENT_NO_APT=1 to skip.
set -euo pipefail
[ "${SPIAGENT_NO_APT:-0}" = 1 ] && exit 0
pkgs=(
  libyang-tools                         # yanglint for the YANG checks
  iproute2 iputils-ping kmod cpio       # namespaces, lab, initramfs building
  strongswan-charon strongswan-swanctl libcharon-extra-plugins
  libstrongswan-extra-plugins libstrongswan-standard-plugins   # interop peer
  qemu-system-x86 busybox-static        # XFRM proof in a real Debian kernel
  python3-ncclient                      # NETCONF client tests
  iperf3                                # throughput benchmarks (bench/userspace_tput.sh)
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing Debian packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

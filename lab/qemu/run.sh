#!/bin/sh
# Run what needs the kernel's IPsec in a real ESP-capable kernel: download a
# Debian kernel (never installed), build an initramfs with the ipsec/xfrm
# tests, lab/seedlab's guest tests (two spiagents on XFRM, strongSwan's
# charon with kernel-netlink), spiagent, spictl and charon, boot it under
# qemu and report the guest's results. Needs root, qemu-system-x86,
# busybox-static, cpio, kmod and strongSwan (scripts/deps.sh). About 5
# minutes with the kernel cached (/var/cache/spiagent/qemu).
#
# Env: SPIAGENT_QEMU_RUN=REGEX   run only these guest tests
#      SPIAGENT_QEMU_PROGRAMS=seedlab   only these guest programs
#      SPIAGENT_QEMU_LOG=FILE    keep the serial console log there
#      SPIAGENT_QEMU_CACHE=DIR   kernel cache (default /var/cache/spiagent/qemu)
#      SPIAGENT_QEMU_KERNEL_META=linux-image-amd64   another Debian kernel
#      SPIAGENT_QEMU_ACCEL=kvm   use KVM instead of TCG
set -eu
cd "$(dirname "$0")/../.."
exec go test -count=1 -v -timeout 25m -run '^(TestXFRMInQEMU|TestParseGuestLog.*)$' ./lab/qemu/ "$@"

#!/bin/sh
# /init of the spiagent XFRM test guest (busybox ash). Loads the modules, runs
# every /tests/NAME/NAME.test with -test.v in its own directory, prints a
# result marker and powers off. The host (lab/qemu) reads the serial console:
#   SPIAGENT-QEMU-RESULT: PASS | FAIL (n)
# Kernel command line: spiagent.run=REGEX limits the tests (go test -run),
# spiagent.v=1 adds -test.v output of passing tests' logs (always on here).
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /run/netns
KVER=$(cat /etc/kver)
up() { cut -d' ' -f1 /proc/uptime; }
echo "SPIAGENT-QEMU: init at ${KVER} uptime $(up)s"

while read -r m; do
	# EEXIST: already pulled in by request_module(); ENODEV: a CPU-specific
	# variant (e.g. crc32c-intel on TCG's CPU). Both are harmless.
	insmod "/lib/modules/$KVER/$m" 2>/tmp/insmod.err ||
		grep -qE 'File exists|No such device' /tmp/insmod.err ||
		echo "SPIAGENT-QEMU: insmod $m: $(cat /tmp/insmod.err)"
done </etc/modules.load
echo "SPIAGENT-QEMU: $(wc -l </proc/modules) modules loaded at $(up)s"

RUN=
for arg in $(cat /proc/cmdline); do
	case $arg in spiagent.run=*) RUN=${arg#spiagent.run=} ;; esac
done

FAILS=0
for dir in /tests/*/; do
	name=$(basename "$dir")
	echo "SPIAGENT-QEMU: running $name at $(up)s"
	if [ -n "$RUN" ]; then set -- -test.run "$RUN"; else set --; fi
	(cd "$dir" && SPIAGENT_XFRM_GUEST=1 "./$name.test" -test.v -test.count=1 -test.timeout=150s "$@")
	rc=$?
	echo "SPIAGENT-QEMU: $name exited $rc at $(up)s"
	[ $rc = 0 ] || FAILS=$((FAILS + 1))
done

if [ $FAILS = 0 ]; then
	echo "SPIAGENT-QEMU-RESULT: PASS"
else
	echo "SPIAGENT-QEMU-RESULT: FAIL ($FAILS)"
fi
sync
poweroff -f

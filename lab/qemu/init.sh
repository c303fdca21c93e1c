#!/bin/sh
# /init of the spiagent qemu guest (busybox ash). Loads the modules, runs the
# programs named in /etc/programs in order, each in /tests/NAME with the
# arguments in /tests/NAME/args (one per line), prints a result marker and
# powers off. The host (lab/qemu) reads the serial console:
#   SPIAGENT-QEMU: running NAME ...       SPIAGENT-QEMU: NAME exited RC ...
#   SPIAGENT-QEMU-RESULT: PASS | FAIL (n)
# A Go test binary is /tests/NAME/NAME.test; any other program /tests/NAME/NAME;
# /tests/NAME/env (export lines) sets its environment.
# Kernel command line: spiagent.run=REGEX limits every test binary (-test.run).
export PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/bin
export HOME=/tmp
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
echo "SPIAGENT-QEMU: $(wc -l </proc/modules) modules loaded at $(up)s, $(grep MemTotal /proc/meminfo | tr -s ' ')"

RUN=
for arg in $(cat /proc/cmdline); do
	case $arg in spiagent.run=*) RUN=${arg#spiagent.run=} ;; esac
done

# What the programs need to know about the guest.
export SPIAGENT_XFRM_GUEST=1 SPIAGENT_BIN_DIR=/usr/local/bin SPIAGENT_REPO=/usr/local/share/spiagent

FAILS=0
exec 3</etc/programs
while read -r name <&3; do
	[ -n "$name" ] || continue
	dir=/tests/$name
	set --
	while IFS= read -r a; do [ -n "$a" ] && set -- "$@" "$a"; done <"$dir/args"
	prog=./$name
	if [ -x "$dir/$name.test" ]; then
		prog=./$name.test
		[ -n "$RUN" ] && set -- "$@" "-test.run=$RUN"
	fi
	echo "SPIAGENT-QEMU: running $name at $(up)s"
	(cd "$dir" && . ./env && "$prog" "$@" </dev/null)
	rc=$?
	echo "SPIAGENT-QEMU: $name exited $rc at $(up)s, $(grep MemAvailable /proc/meminfo | tr -s ' ')"
	[ $rc = 0 ] || FAILS=$((FAILS + 1))
done
exec 3<&-

if [ $FAILS = 0 ]; then
	echo "SPIAGENT-QEMU-RESULT: PASS"
else
	echo "SPIAGENT-QEMU-RESULT: FAIL ($FAILS)"
fi
sync
poweroff -f

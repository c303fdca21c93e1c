#!/bin/bash
# bench/userspace_tput.sh - end-to-end throughput of the userspace dataplane
# beside strongSwan 5.9.8 kernel-libipsec, same 4-namespace topology
# (H1 - A - B - H2, TEST-NET addresses), same tool (iperf3: TCP 1 stream,
# UDP -b 0 -l 1350), same run, interleaved per repetition.
#
#   sudo bench/userspace_tput.sh [REPS]      env: DUR (s per test, 10), OUT
#
# libipsec: ../shared/interop/strongswan/perf/bench_tput.sh (IKEv1 PSK, ESP
# in UDP, CRYPTO=stock: aesni + openssl), namespace prefix upTs.
# userspace: TestNetnsIperf in ipsec/userspace (fixed keys, both dataplanes
# in one test process), namespace prefix upT<pid>.
# Prints one TPUT line per test; results.txt in $OUT.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
REPS=${1:-3}
DUR=${DUR:-10}
# The shared strongSwan scripts sit beside the project: ../shared from its root.
SWAN_PERF=${SWAN_PERF:-$root/../shared/interop/strongswan/perf/bench_tput.sh}
[ -f "$SWAN_PERF" ] || echo "# no $SWAN_PERF: libipsec runs skipped (set SWAN_PERF)" >&2
SUITES=${SUITES:-aes-gcm-128-udp,aes-cbc-128-hmac-sha1-udp,aes-gcm-128,aes-cbc-128-hmac-sha1,aes-gcm-128-tso,aes-gcm-128-udp-tso,aes-cbc-128-hmac-sha1-udp-tso}
OUT=${OUT:-/tmp/upT-tput-$(date +%H%M%S)}
mkdir -p "$OUT"
(cd "$root" && go test -c -o "$OUT/userspace.test" ./ipsec/userspace) || exit 1
echo "# $(date -u) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/results.txt"
for r in $(seq 1 "$REPS"); do
	if [ -x "$SWAN_PERF" ] || [ -f "$SWAN_PERF" ]; then
		for m in esp-gcm esp-sha1; do
			SW_P=upTs SW_DIR="$OUT/swan-run" CRYPTO=stock DUR=$DUR OUT="$OUT/swan-$m-$r" \
				bash "$SWAN_PERF" $m 1 2>&1 | grep TPUT | sed "s/^TPUT /TPUT impl=libipsec rep=$r /" | tee -a "$OUT/results.txt"
		done
	fi
	(cd "$root/ipsec/userspace" && SPIAGENT_IPERF=1 DUR=$DUR SUITES=$SUITES "$OUT/userspace.test" \
		-test.run 'TestNetnsIperf' -test.v -test.count=1 2>&1) | grep -o 'TPUT .*' | sed "s/stats_a=.*//; s/^TPUT /TPUT rep=$r /" | tee -a "$OUT/results.txt"
done
echo "# done $(date -u), load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/results.txt"

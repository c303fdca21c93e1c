#!/bin/sh
# bench/xfrm_guest.sh - the XFRM dataplane's benchmarks in a real kernel:
# boots the lab/qemu guest (Debian kernel under qemu, TCG) with iperf3 and
# runs, in one boot:
#   - ipsec/xfrm BenchmarkGuestTunnels: 1,000 and 10,000 tunnels (2 SAs and
#     3 policies each) installed and removed through the dataplane: time,
#     the process's Go heap and RSS, the kernel's slab;
#   - lab/scalebench -dataplane xfrm -remove: two spiagents bringing up N
#     tunnels at once (SCALE_N, 100,1000), CPU, RSS, taking them down;
#   - lab/seedlab BenchmarkGuestIperf: iperf3 (TCP, 1 stream) host1 -> host2
#     through two spiagents on XFRM and on the userspace dataplane,
#     alternating, same guest, same run; prints the xfrm/userspace ratio.
# TCG emulates the CPU: read ratios, not absolutes. Needs root and what
# scripts/deps.sh installs. Results: bench/xfrm_RESULTS.md.
#
#   sudo bench/xfrm_guest.sh   env: TUNNELS (1000,10000), IPERF_DUR (10 s), IPERF_REPS (2),
#                              SCALE_N (100,1000; none skips), OUT (results file)
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/spiagent-xfrm-guest-$(date +%H%M%S).txt}
echo "# $(date -u) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
SPIAGENT_QEMU_BENCH=1 SPIAGENT_QEMU_BENCH_OUT="$OUT" \
	go test -count=1 -v -timeout 160m -run '^TestBenchInQEMU$' ./lab/qemu/
echo "# results in $OUT; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

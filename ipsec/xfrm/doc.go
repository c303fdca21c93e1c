// Package xfrm implements ipsec.Dataplane on the Linux kernel's IPsec stack
// (XFRM) over netlink: SAs (ESP, AH, ESP-in-UDP; tunnel and transport),
// policies (in/out/fwd, AH+ESP bundles, bypass, discard), per-SA counters,
// acquire and expire events from the kernel, and detection of packets for
// unknown SPIs, which the kernel drops without telling anyone.
//
// It must not know about IKE, the YANG model, the datastore or the agent: it
// imports only alg, ipsec, ipsec/ipv4hdr and the netlink, netns and
// nftables libraries.
//
// # Ownership
//
// Everything this package installs carries a marker so that a restarted agent
// can flush exactly what it owns and nothing else (strongSwan's or an
// operator's SAs in the same kernel are left alone):
//
//   - SAs: the kernel reqid is ReqIDBase + SA.ReqID (the caller's reqid must
//     be below ReqIDSpan); an SA is ours when its kernel reqid is in
//     [ReqIDBase, ReqIDBase+ReqIDSpan). Templates get the same translation.
//     A mark is not used: an XFRM state mark is also a packet-match key, so a
//     non-zero mark would stop the SA from matching unmarked traffic.
//   - Policies: the kernel policy index is ownedIndex | ID<<3 | dir (the
//     kernel wants the direction in the low three bits). Kernel-generated
//     indices count up from 8 in steps of 8 and never reach the owned bit in
//     practice.
//
// # Invalid-SPI detection: nftables + NFLOG by default, raw sockets as a fallback
//
// The kernel drops ESP/AH for an unknown SPI in xfrm_input and only bumps the
// per-netns XfrmInNoStates counter, which carries no address or SPI. Two ways
// to see those packets were measured on a Debian 6.1 kernel
// (../../../shared/interop/qemu-xfrm/NOTES.md); this package uses nftables:
//
//	table ip spiagent_xfrm {
//	  set esp_spis { type integer; }   # inbound ESP SPIs we hold (and allocated ones)
//	  set ah_spis  { type integer; }
//	  set src_meter { type ipv4_addr; size 4096; flags dynamic,timeout; timeout 1m; }
//	  chain input { type filter hook input priority -150; policy accept;
//	    ip protocol esp @th,0,32 != @esp_spis counter
//	        update @src_meter { ip saddr limit rate S/second burst SB packets }
//	        limit rate R/second burst B packets log group G snaplen 64
//	    ip protocol ah  @th,32,32 != @ah_spis ... (the same)
//	    udp dport 4500 @th,64,32 != 0 @th,64,32 != @esp_spis ... (the same)
//	  }
//	}
//
// Why nftables rather than a raw IPPROTO_ESP socket:
//   - Per-packet cost. A raw socket receives a copy of every inbound ESP
//     packet, valid ones included (raw_local_deliver runs before xfrm4_rcv):
//     one skb clone, one copy and one wakeup per packet of legitimate traffic,
//     then a userspace lookup that throws almost all of them away. The nft rule
//     costs a hash-set lookup in the kernel per ESP packet and nothing else for
//     known SPIs; only unknown-SPI packets leave the kernel.
//   - Kernel-side rate limiting. A per-source meter (S/s, burst SB, at most
//     4096 sources) and then a global limit (R/s, burst B) cap what reaches
//     userspace however fast peers spray random SPIs; a raw socket can only
//     rely on its receive buffer overflowing, after the copies have been made.
//     Userspace then applies its own per-source rate limit and dedup
//     (Detector) with bounded tables.
//   - DoS behaviour. Under a random-SPI flood the kernel work is one set lookup
//     and two token-bucket checks per packet, userspace sees at most R/s, and
//     memory is bounded on both sides. One flooding source only uses its own
//     budget, so other peers' invalid SPIs are still heard
//     (TestRootPerSourceKernelLimit). A flood from many spoofed sources can
//     still fill the meter or use up the global budget and hide a real peer
//     for as long as it lasts (up to a minute for a full meter); the rule's
//     counter and the Stats say how much was seen and suppressed.
//   - ESP-in-UDP. The same table sees UDP/4500 with a non-zero first word (not
//     IKE's non-ESP marker) and an SPI not in the set. The kernel hands such
//     packets from the IKE socket (UDP_ENCAP set) to xfrm_input, which drops
//     them exactly like raw ESP: neither the IKE socket nor a raw ESP socket
//     ever sees them, so the nft rule is the only place they can be caught.
//   - Dependencies. github.com/google/nftables (pure Go, already in go.mod)
//     and the kernel's nf_tables, nft_limit, nft_log and nfnetlink_log (built
//     in or modules on Debian). The NFLOG receiver is a 100-line netlink client
//     in this package. If nf_tables is missing, New fails with a clear error;
//     WithInvalidSPI(InvalidSPIConfig{Method: MethodRawSocket}) falls back to
//     raw sockets and InvalidSPIConfig{Disabled: true} runs without detection.
//
// MethodRawSocket is also implemented (it was cheap: the parser and detector
// are shared): raw IPPROTO_ESP and IPPROTO_AH sockets, a receive buffer of
// 256 KiB as the only bound on kernel-side work, and an in-memory known-SPI
// check per packet (an RWMutex'd map lookup, no allocation). It needs nothing
// but raw sockets, but it wakes the agent for every ESP/AH packet, valid or
// not, and it cannot see ESP-in-UDP.
//
// The known-SPI sets are kept in step with AddSA/DeleteSA/AllocSPI and hard
// expiry; an SPI is added before its SA is (so no false alarm during install)
// and removed after it is deleted.
//
// # Events
//
// vishvananda/netlink's XfrmMonitor only reports EXPIRE, so this package joins
// XFRMNLGRP_ACQUIRE and XFRMNLGRP_EXPIRE itself and decodes xfrm_user_acquire
// and xfrm_user_expire (msg.go). Events go through ipsec.EventQueue, never
// blocking the kernel reader: while the reader is slow, acquires (per
// policy and peer) and expiries (per SA and kind) coalesce and are never
// dropped; invalid-SPI events beyond WithEventBuffer are dropped and
// counted (Stats). The kernel raises an acquire once per larval state
// (net.core.xfrm_acq_expires, 30 s). For an acquire, Event.Policy is the owned policy that matched,
// Event.Trigger the packet as a host-to-host selector, and Event.SA.Dst /
// Event.Src the template's tunnel endpoints (peer and local address).
//
// # Use
//
//	if ok, why := xfrm.Supported(); !ok { /* fall back to ipsec/userspace; log why */ }
//	dp, err := xfrm.New(xfrm.WithLogger(log))   // options: WithNetns, WithInvalidSPI, ...
//	dp.Flush(ctx)                                // remove what an earlier run left
//	spi, _ := dp.AllocSPI(ctx, alg.ESP, peer, local)
//	dp.AddSA(ctx, inbound); dp.AddSA(ctx, outbound); dp.AddPolicy(ctx, p)
//	for ev := range dp.Events() { ... }          // acquire, soft/hard expire, invalid SPI
//	all, _ := dp.AllCounters(ctx)                // every owned SA's counters, one netlink dump
//
// ESP-in-UDP needs the IKE socket on port 4500 to be an encapsulation socket:
// call EnableUDPEncap on it. Run one Dataplane with detection per network
// namespace: it owns the nftables table and binds the NFLOG group.
// A hard expire is also raised for an SPI from AllocSPI that was never
// completed by AddSA (the negotiation took too long).
//
// # Limits
//
//   - SA selectors are set in transport mode only (addresses and protocol, no
//     ports), as strongSwan does; tunnel-mode SAs are bound to traffic by their
//     policies. The kernel checks a transport-mode SA's selector against the
//     decapsulated packet, so for the AH of an AH+ESP tunnel bundle (ESP
//     tunnel inside, AH transport outside) SA.Selector must be the traffic
//     selector (the inner networks), not the tunnel endpoints.
//   - Invalid-SPI detection is IPv4 only (an "ip" table and an IPv4 parser);
//     SAs and policies themselves work for IPv6 too but are only tested on
//     IPv4.
//   - A PortRange becomes an XFRM port/mask pair only when it is a single port
//     or an aligned power-of-two block; anything else is rejected with
//     ErrPortRange (split it into several policies).
//   - A replay window above 32 is sent as XFRMA_REPLAY_ESN_VAL without the ESN
//     flag (the legacy field holds at most 32); ESN itself is not offered.
//   - An SPI reserved with AllocSPI is a larval kernel state that the kernel
//     deletes after net.core.xfrm_acq_expires (30 s by default) unless AddSA
//     completes it (as XFRM_MSG_UPDSA).
//   - Cost per operation: AddSA, DeleteSA, AllocSPI and Counters are one
//     netlink request each (plus one nftables batch for an inbound SPI);
//     AddPolicy is two (a look-up of the index, then NEWPOLICY), DeletePolicy
//     one. Nothing lists the kernel's states or policies except Flush.
//   - Do not call netlink.XfrmState.String(): it panics on kernels before
//     6.13 (nil Pcpunum). Nothing here does.
package xfrm

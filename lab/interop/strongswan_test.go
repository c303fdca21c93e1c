package interop

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ike/transport"
)

// ours is our engine on UDP 500/4500 in the lab's first namespace.
type ours struct {
	tr      *transport.Transport
	install chan ike.ChildSA
	deletes chan ike.ChildDelete
	events  chan ike.Event
	esp     chan espIn // ESP-in-UDP that reached the transport's ESP handler
}

type espIn struct {
	pkt      []byte
	src, dst netip.AddrPort
}

var corpusN atomic.Int64

// traceToCorpus writes every received plaintext message as a FuzzDecode
// seed when IKE_CORPUS_DIR is set (how ike/wire/testdata was captured).
func traceToCorpus() func(bool, []byte) {
	dir := os.Getenv("IKE_CORPUS_DIR")
	if dir == "" {
		return nil
	}
	return func(sent bool, msg []byte) {
		if sent {
			return
		}
		n := corpusN.Add(1)
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", msg)
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("charon-%03d", n)), []byte(body), 0o644)
	}
}

func (l *lab) startOurs(p ike.Policy, child ike.ChildPolicy) *ours {
	l.t.Helper()
	return l.startOursTraced(p, child, traceToCorpus())
}

func (l *lab) startOursTraced(p ike.Policy, child ike.ChildPolicy, trace func(bool, []byte), mod ...func(*ike.Config)) *ours {
	l.t.Helper()
	o := &ours{install: make(chan ike.ChildSA, 64), deletes: make(chan ike.ChildDelete, 64), events: make(chan ike.Event, 256),
		esp: make(chan espIn, 16)}
	cfg := ike.Config{
		// A first policy charon does not accept: Main Mode must offer both
		// (initiator) and pick by priority what charon proposes (responder).
		Policies: []ike.Policy{{Priority: p.Priority - 1, Cipher: alg.TripleDES, Hash: alg.MD5, Group: alg.MODP1024}, p},
		Keys:     map[netip.Addr]alg.Key{netip.MustParseAddr(addrCharon): alg.Key(testPSK)},
		NATT:     ike.NATTAuto,
		Trace:    trace,
	}
	for _, f := range mod {
		f(&cfg)
	}
	tcfg := transport.Config{
		Addrs: []netip.Addr{netip.MustParseAddr(addrOurs)},
		ESPHandler: func(pkt []byte, src, dst netip.AddrPort) {
			select {
			case o.esp <- espIn{append([]byte(nil), pkt...), src, dst}:
			default:
			}
		},
		OnOutput: func(out ike.Output) {
			for _, c := range out.Install {
				o.install <- c
			}
			for _, d := range out.Delete {
				o.deletes <- d
			}
			for _, e := range out.Events {
				select {
				case o.events <- e:
				default:
				}
			}
		},
	}
	if l.bindAny {
		tcfg.Addrs = nil
	}
	err := inNetns(l.nsOurs, func() error {
		var err error
		o.tr, err = transport.New(cfg, tcfg, rand.Reader)
		return err
	})
	if err != nil {
		l.t.Fatalf("start engine in %s: %v", l.nsOurs, err)
	}
	l.t.Cleanup(func() { o.tr.Close() })
	if err := o.tr.SetChildPolicies([]ike.ChildPolicy{child}); err != nil {
		l.t.Fatal(err)
	}
	return o
}

func childPolicy(t ike.Transform, pfs alg.Group) ike.ChildPolicy {
	return ike.ChildPolicy{Tag: "net", ReqID: 1,
		Local: netip.MustParseAddr(addrOurs), Peer: netip.MustParseAddr(addrCharon),
		LocalTS:   ike.Selector{Prefix: netip.MustParsePrefix(lanOurs)},
		RemoteTS:  ike.Selector{Prefix: netip.MustParsePrefix(lanCharon)},
		Proposals: []ike.Transform{t}, PFS: pfs, Lifetime: time.Hour}
}

func recv[T any](t *testing.T, l *lab, ch chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timeout waiting for %s\n--- swanctl --list-sas:\n%s\n--- charon.log:\n%s", what, l.listSAs(), l.log())
	}
	var z T
	return z
}

// checkSameSPIs asserts charon lists exactly one CHILD_SA, INSTALLED, with
// our SPIs mirrored, under an ESTABLISHED IKEv1 SA.
func checkSameSPIs(t *testing.T, l *lab, c ike.ChildSA) {
	t.Helper()
	var list string
	ok := waitFor(5*time.Second, func() bool {
		list = l.listSAs()
		return strings.Contains(list, "INSTALLED") && strings.Contains(list, "ESTABLISHED")
	})
	if !ok {
		t.Fatalf("charon has no established SA:\n%s\n%s", list, l.log())
	}
	t.Logf("swanctl --list-sas:\n%s", list)
	spis := charonChildSPIs(list)
	wantIn, wantOut := fmt.Sprintf("%08x", c.OutSPI(alg.ESP)), fmt.Sprintf("%08x", c.InSPI(alg.ESP))
	if len(spis) != 1 || spis[0][0] != wantIn || spis[0][1] != wantOut {
		t.Fatalf("charon SPIs %v, want in %s out %s (ours: in %s out %s)", spis, wantIn, wantOut, wantOut, wantIn)
	}
	if !strings.Contains(list, "IKEv1") || !strings.Contains(list, "TUNNEL-in-UDP") {
		t.Fatalf("expected IKEv1 and TUNNEL-in-UDP:\n%s", list)
	}
	if c.Encap == nil || c.Encap.RemotePort != 4500 {
		t.Fatalf("our child SA has no UDP encapsulation: %+v", c.Encap)
	}
}

// interopSuite is one algorithm set, in our terms and in charon's.
type interopSuite struct {
	name    string
	ikeProp string
	espProp string
	pol     ike.Policy
	tr      ike.Transform
	pfs     alg.Group
}

var suites = []interopSuite{
	{"aes128-sha1-modp2048", "aes128-sha1-modp2048", "aes128-sha1",
		ike.Policy{Priority: 1, Cipher: alg.AES128, Hash: alg.SHA1, Group: alg.MODP2048, Lifetime: 8 * time.Hour},
		ike.Transform{ESP: alg.AES128, ESPInteg: alg.HMACSHA1}, alg.GroupNone},
	{"aes256-sha256-modp2048-pfs", "aes256-sha256-modp2048", "aes256-sha256-modp2048",
		ike.Policy{Priority: 1, Cipher: alg.AES256, Hash: alg.SHA256, Group: alg.MODP2048, Lifetime: 8 * time.Hour},
		ike.Transform{ESP: alg.AES256, ESPInteg: alg.HMACSHA256}, alg.MODP2048},
	// AES-GCM-16 (RFC 4106): ESP_AES_GCM_16 with Key Length 128, no HMAC.
	{"aes128gcm16-sha256-modp2048", "aes128-sha256-modp2048", "aes128gcm16",
		ike.Policy{Priority: 1, Cipher: alg.AES128, Hash: alg.SHA256, Group: alg.MODP2048, Lifetime: 8 * time.Hour},
		ike.Transform{ESP: alg.AESGCM128}, alg.GroupNone},
}

// We initiate; charon responds. Then INVALID-SPI and DPD over the ISAKMP
// SA, and our DELETE removes charon's CHILD_SA.
func TestOursInitiates(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			l := newLab(t)
			l.writeConf(charonConf{ikeProp: s.ikeProp, espProp: s.espProp})
			l.startCharon()
			o := l.startOurs(s.pol, childPolicy(s.tr, s.pfs))
			if err := o.tr.Initiate("net", nil); err != nil {
				t.Fatal(err)
			}
			c := recv(t, l, o.install, "our child SA")
			checkSameSPIs(t, l, c)

			// An authenticated INVALID-SPI notify: charon 5.9.8 only logs it.
			if err := o.tr.SendInvalidSPI(netip.MustParseAddr(addrOurs), netip.MustParseAddr(addrCharon), alg.ESP, 0x0badc0de); err != nil {
				t.Fatal(err)
			}
			if !waitFor(5*time.Second, func() bool { return strings.Contains(l.log(), "received INVALID_SPI error notify") }) {
				t.Fatalf("charon did not log our INVALID_SPI notify:\n%s", l.log())
			}
			logLines(t, l, "INVALID_SPI")
			// DPD on demand: charon answers R-U-THERE-ACK.
			if err := o.tr.DPD(netip.MustParseAddr(addrCharon)); err != nil {
				t.Fatal(err)
			}
			if !waitFor(5*time.Second, func() bool { s, _ := o.tr.Snapshot(); return s.Counters.DPDAcks == 1 }) {
				t.Fatalf("no DPD ack from charon:\n%s", l.log())
			}
			// Our DELETE removes charon's CHILD_SA.
			if err := o.tr.DeleteChild(c.ID); err != nil {
				t.Fatal(err)
			}
			if !waitFor(5*time.Second, func() bool { return !strings.Contains(l.listSAs(), "INSTALLED") }) {
				t.Fatalf("charon kept the CHILD_SA after our DELETE:\n%s\n%s", l.listSAs(), l.log())
			}
			if !strings.Contains(l.listSAs(), "ESTABLISHED") {
				t.Fatal("charon dropped the IKE SA too")
			}
		})
	}
}

// charon initiates; we respond. Then charon's DELETE removes our child SA,
// and its ISAKMP delete our IKE SA.
func TestOursResponds(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			l := newLab(t)
			l.writeConf(charonConf{ikeProp: s.ikeProp, espProp: s.espProp, start: true})
			o := l.startOurs(s.pol, childPolicy(s.tr, s.pfs))
			l.startCharon()
			c := recv(t, l, o.install, "our child SA")
			if c.Initiator {
				t.Fatal("we should be the responder")
			}
			checkSameSPIs(t, l, c)
			if (s.pfs != alg.GroupNone) != (c.PFS != alg.GroupNone) {
				t.Fatalf("PFS %v", c.PFS)
			}
			l.swanctl("--terminate", "--child", "net")
			d := recv(t, l, o.deletes, "our child delete")
			if d.ID != c.ID || d.Reason != ike.ReasonPeerDelete {
				t.Fatalf("delete %+v", d)
			}
			l.swanctl("--terminate", "--ike", "s2s")
			if !waitFor(5*time.Second, func() bool { s, _ := o.tr.Snapshot(); return len(s.IKE) == 0 }) {
				s, _ := o.tr.Snapshot()
				t.Fatalf("our IKE SA survived charon's ISAKMP delete: %+v", s.IKE)
			}
		})
	}
}

// Our side "reboots" (a fresh engine, no SAs): its Main Mode carries
// INITIAL-CONTACT and charon drops the stale IKE SA and CHILD_SA.
func TestInitialContactFromRestartedEngine(t *testing.T) {
	s := suites[0]
	l, o, _ := establish(t, s)
	o.tr.Close() // no DELETE: charon keeps stale SAs

	o2 := l.startOurs(s.pol, childPolicy(s.tr, s.pfs))
	if err := o2.tr.Initiate("net", nil); err != nil {
		t.Fatal(err)
	}
	c := recv(t, l, o2.install, "second child SA")
	if !waitFor(5*time.Second, func() bool { return strings.Count(l.listSAs(), "ESTABLISHED") == 1 }) {
		t.Fatalf("charon kept the stale IKE SA:\n%s", l.listSAs())
	}
	checkSameSPIs(t, l, c) // exactly one CHILD_SA: the new one
	if !strings.Contains(l.log(), "INITIAL_CONTACT") {
		t.Fatalf("charon log does not mention INITIAL_CONTACT:\n%s", l.log())
	}
	logLines(t, l, "INITIAL_CONTACT")
}

// establish starts charon as the responder for suite s and our engine as
// the initiator, negotiates one child SA and checks charon has the same
// SPIs.
func establish(t *testing.T, s interopSuite) (*lab, *ours, ike.ChildSA) {
	t.Helper()
	l := newLab(t)
	l.writeConf(charonConf{ikeProp: s.ikeProp, espProp: s.espProp})
	l.startCharon()
	o := l.startOurs(s.pol, childPolicy(s.tr, s.pfs))
	if err := o.tr.Initiate("net", nil); err != nil {
		t.Fatal(err)
	}
	c := recv(t, l, o.install, "child SA")
	checkSameSPIs(t, l, c)
	return l, o, c
}

// logLines logs charon's log lines that contain s.
func logLines(t *testing.T, l *lab, s string) {
	for _, line := range strings.Split(l.log(), "\n") {
		if strings.Contains(line, s) {
			t.Log("charon: " + line)
		}
	}
}

// Bound to 0.0.0.0, the transport learns the local address from
// IP_PKTINFO (our phase 1 ID is that address: charon would refuse
// 0.0.0.0) and sends from the policy's address when initiating.
func TestWildcardBind(t *testing.T) {
	s := suites[0]
	for _, weInitiate := range []bool{false, true} {
		t.Run(fmt.Sprint("initiator=", weInitiate), func(t *testing.T) {
			l := newLab(t)
			l.bindAny = true
			l.writeConf(charonConf{ikeProp: s.ikeProp, espProp: s.espProp, start: !weInitiate})
			o := l.startOurs(s.pol, childPolicy(s.tr, s.pfs))
			l.startCharon()
			if weInitiate {
				if err := o.tr.Initiate("net", nil); err != nil {
					t.Fatal(err)
				}
			}
			c := recv(t, l, o.install, "child SA")
			checkSameSPIs(t, l, c)
			if c.Local != netip.MustParseAddr(addrOurs) {
				t.Fatalf("local address %v", c.Local)
			}
		})
	}
}

package interop

import (
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike"
)

// TestCaptureKAT records one exchange with charon, at log level 4, as a
// known-answer vector for ike/suite: the plaintext messages (our Trace)
// and the keys charon derived. It runs only with IKE_KAT_OUT=<file.json>:
//
//	IKE_KAT_OUT=$PWD/ike/suite/testdata/charon_kat.json go test ./lab/interop -run TestCaptureKAT
func TestCaptureKAT(t *testing.T) {
	outFile := os.Getenv("IKE_KAT_OUT")
	if outFile == "" {
		t.Skip("set IKE_KAT_OUT to capture a known-answer vector from charon")
	}
	l := newLab(t)
	l.writeConf(charonConf{ikeProp: "aes256-sha1-modp2048", espProp: "aes256-sha1", secrets: true})
	l.startCharon()
	var mu sync.Mutex
	var msgs []string
	o := l.startOursTraced(ike.Policy{Priority: 1, Cipher: alg.AES256, Hash: alg.SHA1, Group: alg.MODP2048, Lifetime: time.Hour},
		childPolicy(ike.Transform{ESP: alg.AES256, ESPInteg: alg.HMACSHA1}, alg.GroupNone),
		func(sent bool, m []byte) {
			mu.Lock()
			defer mu.Unlock()
			dir := "in"
			if sent {
				dir = "out"
			}
			msgs = append(msgs, dir+" "+hex.EncodeToString(m))
		})
	if err := o.tr.Initiate("net", nil); err != nil {
		t.Fatal(err)
	}
	c := recv(t, l, o.install, "child SA")
	checkSameSPIs(t, l, c)
	log := l.log()
	keys := map[string]string{}
	for _, label := range []string{"shared Diffie Hellman secret", "SKEYID", "SKEYID_d", "SKEYID_a", "SKEYID_e",
		"encryption key Ka", "encryption initiator key", "encryption responder key", "integrity initiator key", "integrity responder key"} {
		v := charonDump(log, label)
		if v == "" {
			t.Logf("charon did not log %q", label)
			continue
		}
		keys[label] = v
	}
	mu.Lock()
	vec := map[string]any{
		"comment":         "Captured from strongSwan 5.9.8 (charon, ike/chd log level 4) negotiating with spiagent's engine; regenerate with lab/interop TestCaptureKAT.",
		"psk":             testPSK,
		"ike":             "aes256-sha1-modp2048",
		"esp":             "aes256-sha1",
		"messages":        msgs,
		"charon":          keys,
		"our_in_spi_esp":  strconv.FormatUint(uint64(c.InSPI(alg.ESP)), 16),
		"our_out_spi_esp": strconv.FormatUint(uint64(c.OutSPI(alg.ESP)), 16),
	}
	mu.Unlock()
	b, _ := json.MarshalIndent(vec, "", "  ")
	if err := os.WriteFile(outFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(keys) < 6 {
		t.Fatalf("only %d keys found in charon's log", len(keys))
	}
}

var dumpLine = regexp.MustCompile(`^\S+ \d+\[\w+\]\s+\d+: ((?:[0-9A-F]{2} ){1,16})`)

// charonDump extracts the hex of the first "<label> => N bytes @ ..." dump.
func charonDump(log, label string) string {
	lines := strings.Split(log, "\n")
	for i, line := range lines {
		k := strings.Index(line, "] "+label+" => ")
		if k < 0 {
			continue
		}
		f := strings.Fields(line[k+len(label)+6:])
		if len(f) < 2 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		var out []string
		for _, l := range lines[i+1:] {
			m := dumpLine.FindStringSubmatch(l)
			if m == nil || len(out) >= n {
				break
			}
			out = append(out, strings.Fields(m[1])...)
		}
		if len(out) < n {
			return ""
		}
		return strings.ToLower(strings.Join(out[:n], ""))
	}
	return ""
}

var _ = netip.Addr{}

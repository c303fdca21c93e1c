package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/spiagent/spiagent/ytree"
)

const (
	polA   = "/crypto/isakmp/policies/policy[priority=1]"
	keyA   = "/crypto/isakmp/keys/key[address=10.2.2.2]"
	tsA    = "/crypto/transform-sets/transform-set[name=auth2]"
	aclA   = "/crypto/access-lists/access-list[name=150]"
	cmEntA = "/crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=10]"
)

func TestLoadExamples(t *testing.T) {
	for _, name := range []string{"seed/router-a.json", "seed/router-b.json", "lab/router-a.json", "lab/router-b.json"} {
		t.Run(name, func(t *testing.T) {
			d, err := LoadJSON(readExample(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if p := Validate(d, crypto()); len(p) > 0 {
				t.Fatalf("problems: %v", p)
			}
			if d.GetCrypto().GetCryptoMaps() == nil || len(d.Crypto.CryptoMaps.CryptoMap) == 0 {
				t.Fatal("no crypto map loaded")
			}
		})
	}
}

func TestLoadJSON(t *testing.T) {
	good := readExample(t, "seed/router-a.json")
	tests := []struct {
		desc    string
		in      string
		wantErr string
	}{
		{"seed", string(good), ""},
		{"trailing newline", string(good) + "\n\n", ""},
		{"trailing garbage byte", string(good) + "x", "invalid character 'x' after top-level value"},
		{"trailing second object", string(good) + "{}", "after top-level value"},
		{"truncated", string(good[:len(good)/2]), "unexpected end of JSON input"},
		{"not an object", `[1]`, "must be an object"},
		{"unknown field", `{"spiagent-crypto:crypto":{"bogus":1}}`, "bogus"},
		{"wrong type", `{"spiagent-crypto:crypto":{"isakmp":{"config":{"invalid-spi-recovery":"yes"}}}}`, "invalid-spi-recovery"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := LoadJSON([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestCommitBadInput: every bad transaction is refused with a typed error
// naming the path and the reason, and nothing changes.
func TestCommitBadInput(t *testing.T) {
	type errKind int
	const (
		opErr errKind = iota
		valErr
	)
	tests := []struct {
		desc     string
		ops      func(t *testing.T) []Op
		kind     errKind
		wantPath string
		wantErr  string
		sentinel error
	}{
		{"unknown path", func(t *testing.T) []Op {
			return []Op{upd(t, "/crypto/isakmp/bogus/config/x", uintV(1))}
		}, opErr, "/crypto/isakmp/bogus/config/x", `unknown element "bogus"`, nil},
		{"unknown leaf", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/config/colour", strV("red"))}
		}, opErr, polA + "/config/colour", `unknown element "colour"`, nil},
		{"wrong type", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/config/lifetime", strV("forever"))}
		}, opErr, polA + "/config/lifetime", "lifetime", nil},
		{"bad enum", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/config/encryption", strV("rot13"))}
		}, opErr, polA + "/config/encryption", "rot13", nil},
		{"bad key type", func(t *testing.T) []Op {
			return []Op{upd(t, "/crypto/isakmp/policies/policy[priority=one]/config/lifetime", uintV(100))}
		}, opErr, "", `key "one" is not a uint16`, nil},
		{"lifetime 59", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/config/lifetime", uintV(59))}
		}, valErr, polA + "/config/lifetime", "59 is outside specified ranges (allowed 60..86400)", nil},
		{"lifetime 86401", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/config/lifetime", uintV(86401))}
		}, valErr, polA + "/config/lifetime", "86401 is outside", nil},
		{"bad address pattern", func(t *testing.T) []Op {
			return []Op{upd(t, "/crypto/interfaces/interface[name=eth9]/config/ipv4-address", strV("10.0.0.256"))}
		}, valErr, "/crypto/interfaces/interface[name=eth9]/config/ipv4-address", "does not match regular expression", nil},
		{"missing transform set", func(t *testing.T) []Op {
			return []Op{upd(t, cmEntA+"/config/transform-set", listV("auth2", "nope"))}
		}, valErr, cmEntA + "/config/transform-set", `transform set "nope" does not exist`, nil},
		{"peer with no key", func(t *testing.T) []Op {
			return []Op{upd(t, cmEntA+"/config/peer", listV("10.2.2.2", "10.9.9.9"))}
		}, valErr, cmEntA + "/config/peer", "no pre-shared key for peer 10.9.9.9", nil},
		{"missing access list", func(t *testing.T) []Op {
			return []Op{upd(t, cmEntA+"/config/match-address", strV("151"))}
		}, valErr, cmEntA + "/config/match-address", `access list "151" does not exist`, nil},
		{"missing crypto map on interface", func(t *testing.T) []Op {
			return []Op{upd(t, "/crypto/interfaces/interface[name=FastEthernet0/1]/config/crypto-map", strV("nomap"))}
		}, valErr, "/crypto/interfaces/interface[name=FastEthernet0/1]/config/crypto-map", `crypto map "nomap" does not exist`, nil},
		{"delete used transform set", func(t *testing.T) []Op {
			return []Op{del(t, tsA)}
		}, valErr, cmEntA + "/config/transform-set", `transform set "auth2" does not exist`, nil},
		{"delete used key", func(t *testing.T) []Op {
			return []Op{del(t, keyA)}
		}, valErr, cmEntA + "/config/peer", "no pre-shared key for peer 10.2.2.2", nil},
		{"delete the key leaf of a used key", func(t *testing.T) []Op {
			return []Op{del(t, keyA+"/config/key")}
		}, valErr, cmEntA + "/config/peer", "no pre-shared key", nil},
		{"empty used access list", func(t *testing.T) []Op {
			return []Op{del(t, aclA+"/entries/entry[sequence=10]")}
		}, valErr, cmEntA + "/config/match-address", `access list "150" has no entries`, nil},
		{"delete used crypto map", func(t *testing.T) []Op {
			return []Op{del(t, "/crypto/crypto-maps/crypto-map[name=testtag1]")}
		}, valErr, "/crypto/interfaces/interface[name=FastEthernet0/0]/config/crypto-map", "does not exist", nil},
		{"state leaf", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/state/lifetime", uintV(100))}
		}, opErr, polA + "/state/lifetime", "state (config false)", nil},
		{"state container", func(t *testing.T) []Op {
			return []Op{del(t, "/crypto/invalid-spi")}
		}, opErr, "/crypto/invalid-spi", "state (config false)", nil},
		{"state inside a JSON value", func(t *testing.T) []Op {
			return []Op{rep(t, polA, ietfV(`{"priority":1,"config":{"priority":1},"state":{"lifetime":5}}`))}
		}, opErr, polA, "state (config false) data cannot be written (state in the value)", nil},
		{"delete missing entry", func(t *testing.T) []Op {
			return []Op{del(t, "/crypto/isakmp/policies/policy[priority=7]")}
		}, opErr, "/crypto/isakmp/policies/policy[priority=7]", "not found", ErrNotFound},
		{"delete unset leaf", func(t *testing.T) []Op {
			return []Op{del(t, polA+"/config/hash")}
		}, opErr, polA + "/config/hash", "not found", ErrNotFound},
		{"entry key disagrees with path", func(t *testing.T) []Op {
			return []Op{rep(t, polA, ietfV(`{"priority":2,"config":{"priority":2}}`))}
		}, opErr, polA, `key "priority" is 2 but the path says 1`, nil},
		{"config key disagrees with list key", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/config/priority", uintV(2))}
		}, valErr, polA + "/config/priority", "must equal the list key 1", nil},
		{"missing mandatory action", func(t *testing.T) []Op {
			return []Op{upd(t, aclA+"/entries/entry[sequence=20]/config/source", strV("10.0.0.0/8"))}
		}, valErr, aclA + "/entries/entry[sequence=20]/config/action", "mandatory leaf is missing", nil},
		{"ports with protocol ip", func(t *testing.T) []Op {
			return []Op{upd(t, aclA+"/entries/entry[sequence=10]/config/destination-port-min", uintV(80))}
		}, valErr, aclA + "/entries/entry[sequence=10]/config/destination-port-min", "only for protocol tcp or udp", nil},
		{"port min above max", func(t *testing.T) []Op {
			return []Op{upd(t, aclA+"/entries/entry[sequence=10]/config", ietfV(`{"protocol":"tcp","source-port-min":90,"source-port-max":80}`))}
		}, valErr, aclA + "/entries/entry[sequence=10]/config/source-port-min", "source-port-min 90 is greater than source-port-max 80", nil},
		{"no ah and no esp", func(t *testing.T) []Op {
			return []Op{rep(t, tsA+"/config", ietfV(`{"name":"auth2","mode":"transport"}`))}
		}, valErr, tsA + "/config", "needs ah or esp", nil},
		{"key bits with esp-des", func(t *testing.T) []Op {
			return []Op{upd(t, tsA+"/config/esp-key-bits", uintV(128))}
		}, valErr, tsA + "/config/esp-key-bits", "only for esp-aes and esp-gcm", nil},
		{"gcm 192", func(t *testing.T) []Op {
			return []Op{upd(t, tsA+"/config", ietfV(`{"esp-encryption":"esp-gcm","esp-key-bits":192}`))}
		}, valErr, tsA + "/config/esp-key-bits", "esp-gcm takes 128 or 256 bits", nil},
		{"gcm with integrity", func(t *testing.T) []Op {
			return []Op{upd(t, tsA+"/config/esp-encryption", strV("esp-gcm"))}
		}, valErr, tsA + "/config/esp-integrity", "no esp-integrity with it", nil},
		{"key bits 100", func(t *testing.T) []Op {
			return []Op{upd(t, tsA+"/config", ietfV(`{"esp-encryption":"esp-aes","esp-key-bits":100}`))}
		}, valErr, tsA + "/config/esp-key-bits", "outside specified ranges", nil},
		{"too many transform sets", func(t *testing.T) []Op {
			return []Op{upd(t, cmEntA+"/config/transform-set", listV("auth2", "auth2", "auth2", "auth2", "auth2", "auth2", "auth2"))}
		}, valErr, cmEntA + "/config/transform-set", "at most 6", nil},
		{"replace needs a value", func(t *testing.T) []Op {
			return []Op{{Kind: OpReplace, Path: mustPath(t, polA+"/config/lifetime")}}
		}, opErr, polA + "/config/lifetime", "needs a value", nil},
		{"container needs JSON", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/config", uintV(3))}
		}, opErr, polA + "/config", "needs a JSON value", nil},
		{"second op fails, first undone", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/config/lifetime", uintV(600)), upd(t, "/crypto/nope", uintV(1))}
		}, opErr, "/crypto/nope", "unknown element", nil},
	}
	s, dir := seedStore(t)
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before := s.Running()
			beforeJSON := mustJSON(t, before.Root)
			hist := s.History()
			files := fileBytes(t, dir)
			_, err := s.Commit(ctx, Tx{Ops: tc.ops(t), User: "test"})
			if err == nil {
				t.Fatal("commit succeeded, want an error")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
			switch tc.kind {
			case opErr:
				var oe *OpError
				if !errors.As(err, &oe) {
					t.Fatalf("got %T %v, want *OpError", err, err)
				}
				if tc.wantPath != "" && oe.Path != tc.wantPath {
					t.Errorf("OpError.Path = %q, want %q", oe.Path, tc.wantPath)
				}
			case valErr:
				var ve *ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("got %T %v, want *ValidationError", err, err)
				}
				found := false
				for _, p := range ve.Problems {
					if p.Path == tc.wantPath && strings.Contains(p.Reason, tc.wantErr) {
						found = true
					}
				}
				if !found {
					t.Errorf("problems %v: none at %s containing %q", ve.Problems, tc.wantPath, tc.wantErr)
				}
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.sentinel)
			}
			if s.Running() != before || mustJSON(t, s.Running().Root) != beforeJSON {
				t.Error("running config changed")
			}
			if diff := cmp.Diff(hist, s.History()); diff != "" {
				t.Errorf("history changed: %s", diff)
			}
			if diff := cmp.Diff(files, fileBytes(t, dir)); diff != "" {
				t.Errorf("data files changed: %s", diff)
			}
			checkRefs(t, s)
		})
	}
}

func TestIgnoreMissing(t *testing.T) {
	s, _ := seedStore(t)
	before := s.Running()
	info, err := s.Commit(context.Background(), Tx{Ops: []Op{del(t, "/crypto/isakmp/policies/policy[priority=7]")}, IgnoreMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	if info.Summary != "no changes" || info.ID != before.ID || s.Running() != before {
		t.Fatalf("got %+v, want no new commit", info)
	}
}

// TestCommitSemantics: what ops do to the tree.
func TestCommitSemantics(t *testing.T) {
	tests := []struct {
		desc  string
		ops   func(t *testing.T) []Op
		check func(t *testing.T, s *Snapshot)
	}{
		{"update leaf", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/config/lifetime", uintV(3600))}
		}, func(t *testing.T, s *Snapshot) {
			if got := s.Root.Crypto.Isakmp.Policies.Policy[1].Config.GetLifetime(); got != 3600 {
				t.Errorf("lifetime %d", got)
			}
		}},
		{"update container merges", func(t *testing.T) []Op {
			return []Op{upd(t, polA+"/config", ietfV(`{"spiagent-crypto:hash":"md5"}`))}
		}, func(t *testing.T, s *Snapshot) {
			c := s.Root.Crypto.Isakmp.Policies.Policy[1].Config
			if c.GetLifetime() != 180 || c.Hash.String() != "md5" {
				t.Errorf("config %+v", c)
			}
		}},
		{"replace container resets", func(t *testing.T) []Op {
			return []Op{rep(t, polA+"/config", ietfV(`{"priority":1,"hash":"md5"}`))}
		}, func(t *testing.T, s *Snapshot) {
			c := s.Root.Crypto.Isakmp.Policies.Policy[1].Config
			if c.Lifetime != nil || c.Hash.String() != "md5" {
				t.Errorf("config %+v", c)
			}
		}},
		{"json_val with unqualified names creates an entry", func(t *testing.T) []Op {
			return []Op{upd(t, "/crypto/isakmp/policies/policy[priority=5]", jsonV(`{"config":{"encryption":"aes-256","group":"group14"}}`))}
		}, func(t *testing.T, s *Snapshot) {
			p := s.Root.Crypto.Isakmp.Policies.Policy[5]
			if p.GetPriority() != 5 || p.Config.GetPriority() != 5 || p.Config.Encryption.String() != "aes-256" {
				t.Errorf("policy %+v %+v", p, p.Config)
			}
		}},
		{"leaf path creates the entry and its keys", func(t *testing.T) []Op {
			return []Op{upd(t, "/crypto/isakmp/keys/key[address=10.3.3.3]/config/key", strV("k3"))}
		}, func(t *testing.T, s *Snapshot) {
			k := s.Root.Crypto.Isakmp.Keys.Key["10.3.3.3"]
			if k.GetAddress() != "10.3.3.3" || k.Config.GetAddress() != "10.3.3.3" || k.Config.GetKey() != "k3" {
				t.Errorf("key %+v", k)
			}
		}},
		{"whole list replace", func(t *testing.T) []Op {
			return []Op{rep(t, "/crypto/isakmp/policies/policy", ietfV(`[{"priority":9,"config":{"priority":9}}]`))}
		}, func(t *testing.T, s *Snapshot) {
			ps := s.Root.Crypto.Isakmp.Policies.Policy
			if len(ps) != 1 || ps[9] == nil {
				t.Errorf("policies %v", ps)
			}
		}},
		{"acl protocol as number", func(t *testing.T) []Op {
			return []Op{upd(t, aclA+"/entries/entry[sequence=10]/config", ietfV(`{"protocol":17,"destination-port-min":500,"destination-port-max":500}`))}
		}, func(t *testing.T, s *Snapshot) {
			c := s.Root.Crypto.AccessLists.AccessList["150"].Entries.Entry[10].Config
			if c.GetDestinationPortMin() != 500 {
				t.Errorf("config %+v", c)
			}
		}},
		{"ops in order: delete then recreate", func(t *testing.T) []Op {
			return []Op{del(t, polA), upd(t, polA+"/config/lifetime", uintV(999))}
		}, func(t *testing.T, s *Snapshot) {
			c := s.Root.Crypto.Isakmp.Policies.Policy[1].Config
			if c.GetLifetime() != 999 || c.Authentication != 0 {
				t.Errorf("config %+v", c)
			}
		}},
		{"delete a key with the entry that uses it", func(t *testing.T) []Op {
			return []Op{del(t, cmEntA), del(t, keyA), del(t, tsA), del(t, aclA)}
		}, func(t *testing.T, s *Snapshot) {
			if s.Root.Crypto.Isakmp.Keys != nil && len(s.Root.Crypto.Isakmp.Keys.Key) > 0 {
				t.Error("key still there")
			}
		}},
		{"move a peer to a new key", func(t *testing.T) []Op {
			return []Op{
				upd(t, "/crypto/isakmp/keys/key[address=10.9.9.9]/config/key", strV("nine")),
				upd(t, cmEntA+"/config/peer", listV("10.9.9.9")),
				del(t, keyA),
			}
		}, func(t *testing.T, s *Snapshot) {
			if s.Root.Crypto.Isakmp.Keys.Key["10.2.2.2"] != nil {
				t.Error("old key still there")
			}
		}},
		{"replace root", func(t *testing.T) []Op {
			return []Op{{Kind: OpReplace, Path: &gpb.Path{}, Val: ietfV(string(readExample(t, "seed/router-b.json")))}}
		}, func(t *testing.T, s *Snapshot) {
			if s.Root.Crypto.Isakmp.Keys.Key["10.2.2.2"] != nil {
				t.Error("router-a key still there")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, _ := seedStore(t)
			old := s.Running()
			oldJSON := mustJSON(t, old.Root)
			if _, err := s.Commit(context.Background(), Tx{Ops: tc.ops(t)}); err != nil {
				t.Fatal(err)
			}
			tc.check(t, s.Running())
			if mustJSON(t, old.Root) != oldJSON {
				t.Error("the old snapshot was mutated")
			}
			if p := Validate(s.Running().Root, crypto()); len(p) > 0 {
				t.Errorf("full validation disagrees with the commit's: %v", p)
			}
			checkRefs(t, s)
		})
	}
}

// TestCommitDiff checks the diff handed to the applier and subscribers.
func TestCommitDiff(t *testing.T) {
	s, _ := seedStore(t)
	var got Diff
	s.SetApplier(ApplierFunc(func(_ context.Context, _, _ *Snapshot, d Diff) error { got = d; return nil }))
	_, err := s.Commit(context.Background(), Tx{Ops: []Op{
		upd(t, polA+"/config/lifetime", uintV(300)),
		upd(t, "/crypto/isakmp/policies/policy[priority=2]/config/hash", strV("sha256")),
		del(t, "/crypto/interfaces/interface[name=FastEthernet0/1]"),
		upd(t, cmEntA+"/config/pfs", strV("group14")),
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := func(s string) *gpb.Path { return mustPath(t, s) }
	ifc := "/crypto/interfaces/interface[name=FastEthernet0/1]"
	want := Diff{
		{Path: p(cmEntA + "/config/pfs"), Kind: Added, New: strV("group14")},
		{Path: p(ifc + "/config/ipv4-address"), Kind: Removed, Old: strV("10.0.0.1")},
		{Path: p(ifc + "/config/ipv4-prefix-length"), Kind: Removed, Old: uintV(8)},
		{Path: p(ifc + "/config/name"), Kind: Removed, Old: strV("FastEthernet0/1")},
		{Path: p(ifc + "/name"), Kind: Removed, Old: strV("FastEthernet0/1")},
		{Path: p(polA + "/config/lifetime"), Kind: Modified, Old: uintV(180), New: uintV(300)},
		{Path: p("/crypto/isakmp/policies/policy[priority=2]/config/hash"), Kind: Added, New: strV("sha256")},
		{Path: p("/crypto/isakmp/policies/policy[priority=2]/config/priority"), Kind: Added, New: uintV(2)},
		{Path: p("/crypto/isakmp/policies/policy[priority=2]/priority"), Kind: Added, New: uintV(2)},
	}
	sortDiff(got)
	sortDiff(want)
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("diff (-want +got):\n%s", d)
	}
}

func sortDiff(d Diff) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && ytree.PathString(d[j].Path.GetElem()) < ytree.PathString(d[j-1].Path.GetElem()); j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}

package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/spiagent/spiagent/ytree"
)

// TestIncrementalMatchesFullValidation applies random transactions (valid
// and invalid) and checks that the commit's incremental validation accepts
// exactly the configs that full validation accepts, and that the reference
// counts stay exact.
func TestIncrementalMatchesFullValidation(t *testing.T) {
	s, _ := seedStore(t)
	ctx := context.Background()
	if _, err := s.Commit(ctx, Tx{Ops: []Op{{Kind: OpUpdate, Path: mustPath(t, "/"), Val: ietfV(string(mustEmit(t, 8)))}}}); err != nil {
		t.Fatal(err)
	}
	peer := func(i int) string { return fmt.Sprintf("10.0.0.%d", i) }
	cm := func(seq int) string {
		return fmt.Sprintf("/crypto/crypto-maps/crypto-map[name=VPN]/entries/entry[sequence=%d]", seq)
	}
	gens := []func(r *rand.Rand) Op{
		func(r *rand.Rand) Op {
			return del(t, fmt.Sprintf("/crypto/isakmp/keys/key[address=%s]", peer(1+r.Intn(10))))
		},
		func(r *rand.Rand) Op {
			return upd(t, fmt.Sprintf("/crypto/isakmp/keys/key[address=%s]/config/key", peer(1+r.Intn(10))), strV("k"))
		},
		func(r *rand.Rand) Op {
			return del(t, fmt.Sprintf("/crypto/isakmp/keys/key[address=%s]/config/key", peer(1+r.Intn(10))))
		},
		func(r *rand.Rand) Op { return upd(t, cm(1+r.Intn(10))+"/config/peer", listV(peer(1+r.Intn(10)))) },
		func(r *rand.Rand) Op { return del(t, cm(1+r.Intn(10))) },
		func(r *rand.Rand) Op {
			return upd(t, cm(1+r.Intn(10))+"/config/match-address", strV(fmt.Sprintf("acl-%d", 1+r.Intn(10))))
		},
		func(r *rand.Rand) Op {
			return del(t, fmt.Sprintf("/crypto/access-lists/access-list[name=acl-%d]", 1+r.Intn(10)))
		},
		func(r *rand.Rand) Op {
			return del(t, fmt.Sprintf("/crypto/access-lists/access-list[name=acl-%d]/entries/entry[sequence=10]", 1+r.Intn(10)))
		},
		func(r *rand.Rand) Op {
			return upd(t, fmt.Sprintf("/crypto/access-lists/access-list[name=acl-%d]/entries/entry[sequence=10]/config/action", 1+r.Intn(10)), strV("permit"))
		},
		func(r *rand.Rand) Op { return del(t, "/crypto/transform-sets/transform-set[name=TS]") },
		func(r *rand.Rand) Op {
			return upd(t, "/crypto/transform-sets/transform-set[name=TS]/config", ietfV(`{"name":"TS","esp-encryption":"esp-aes"}`))
		},
		func(r *rand.Rand) Op {
			return upd(t, cm(1+r.Intn(10))+"/config/transform-set", listV([]string{"TS", "auth2", "nope"}[r.Intn(3)]))
		},
		func(r *rand.Rand) Op { return del(t, "/crypto/crypto-maps/crypto-map[name=VPN]") },
		func(r *rand.Rand) Op {
			return upd(t, "/crypto/interfaces/interface[name=eth0]/config/crypto-map", strV([]string{"VPN", "testtag1", "none"}[r.Intn(3)]))
		},
		func(r *rand.Rand) Op {
			return upd(t, cm(1+r.Intn(10))+"/config/sa-lifetime-seconds", uintV(uint64(100+r.Intn(200))))
		},
		func(r *rand.Rand) Op {
			return upd(t, fmt.Sprintf("/crypto/access-lists/access-list[name=acl-%d]/entries/entry[sequence=%d]/config/source", 1+r.Intn(10), 10*(1+r.Intn(2))), strV("192.0.2.0/24"))
		},
		func(r *rand.Rand) Op {
			return upd(t, fmt.Sprintf("/crypto/access-lists/access-list[name=acl-%d]/entries/entry[sequence=10]/config/priority", 1+r.Intn(10)), uintV(1))
		},
	}
	r := rand.New(rand.NewSource(1))
	var ok, refused int
	for i := 0; i < 600; i++ {
		var ops []Op
		for j := 0; j < 1+r.Intn(3); j++ {
			ops = append(ops, gens[r.Intn(len(gens))](r))
		}
		// what full validation says about the result
		tx := newTx(s.Running().Root)
		applyErr := error(nil)
		for _, op := range ops {
			if err := apply(tx, op, true); err != nil && err != lenientSkip {
				applyErr = err
				break
			}
		}
		_, err := s.Commit(ctx, Tx{Ops: ops, IgnoreMissing: true})
		if applyErr != nil {
			if err == nil {
				t.Fatalf("tx %d: apply failed (%v) but commit succeeded", i, applyErr)
			}
			continue
		}
		full := Validate(tx.Root(), crypto())
		var ve *ValidationError
		switch {
		case err == nil:
			ok++
			if len(full) > 0 {
				t.Fatalf("tx %d %v: committed, but full validation finds %v", i, opsString(ops), full)
			}
		case errors.As(err, &ve):
			refused++
			if len(full) == 0 {
				t.Fatalf("tx %d %v: refused (%v), but full validation finds nothing", i, opsString(ops), err)
			}
		default:
			t.Fatalf("tx %d: %v", i, err)
		}
		checkRefs(t, s)
	}
	if ok < 50 || refused < 50 {
		t.Errorf("not a good mix: %d committed, %d refused", ok, refused)
	}
	t.Logf("%d committed, %d refused", ok, refused)
}

func opsString(ops []Op) string {
	s := ""
	for _, op := range ops {
		s += fmt.Sprintf("[%s %s %s] ", op.Kind, ytree.PathString(op.Path.GetElem()), valString(op.Val))
	}
	return s
}

package netconf

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/store"
)

// TestConcurrentSessions: sessions editing and committing in parallel with
// direct store commits (as gNMI makes them) lose nothing, and the server's
// cached running tree ends equal to the store.
func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t, nil)
	const sessions, rounds = 4, 8
	var wg sync.WaitGroup
	errs := make(chan error, sessions+1)
	for s := 0; s < sessions; s++ {
		c := e.dial(rwUser, rwPass, s%2 == 0)
		wg.Add(1)
		go func(s int, c *client) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				name := fmt.Sprintf("ts-%d-%d", s, r)
				ts := `<crypto xmlns="` + cryptoNS + `"><transform-sets><transform-set><name>` + name + `</name><config><name>` + name + `</name><esp-encryption>esp-aes</esp-encryption></config></transform-set></transform-sets></crypto>`
				target := "candidate"
				if r%2 == 1 {
					target = "running"
				}
				b, err := c.rawBytes(fmt.Sprintf(`<rpc message-id="%d" xmlns="%s"><edit-config><target><%s/></target><config>%s</config></edit-config></rpc>`, r, baseNS, target, ts))
				if err == nil && !bytes.Contains(b, []byte("<ok/>")) {
					err = fmt.Errorf("edit %s: %s", name, b)
				}
				if err == nil && target == "candidate" {
					b, err = c.rawBytes(fmt.Sprintf(`<rpc message-id="c%d" xmlns="%s"><commit/></rpc>`, r, baseNS))
					if err == nil && !bytes.Contains(b, []byte("<ok/>")) {
						err = fmt.Errorf("commit %s: %s", name, b)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(s, c)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := 0; r < rounds; r++ {
			name := fmt.Sprintf("gnmi-%d", r)
			v := fmt.Sprintf(`{"name":%q,"config":{"name":%q,"esp-encryption":"esp-3des"}}`, name, name)
			p := &gpb.Path{Elem: []*gpb.PathElem{{Name: "crypto"}, {Name: "transform-sets"}, {Name: "transform-set", Key: map[string]string{"name": name}}}}
			if _, err := e.st.Commit(context.Background(), store.Tx{User: "gnmi", Ops: []store.Op{{Kind: store.OpReplace, Path: p, Val: ietfVal(v)}}}); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for s := 0; s < sessions; s++ {
		for r := 0; r < rounds; r++ {
			if name := fmt.Sprintf("ts-%d-%d", s, r); !hasTS(e, name) {
				t.Errorf("%s lost", name)
			}
		}
	}
	for r := 0; r < rounds; r++ {
		if name := fmt.Sprintf("gnmi-%d", r); !hasTS(e, name) {
			t.Errorf("%s (direct store commit) lost", name)
		}
	}
	if t.Failed() {
		for _, h := range e.st.History() {
			t.Logf("commit %d %s %s: %s", h.ID, h.User, h.Comment, h.Summary)
		}
	}
	cached := e.srv.runningTree()
	b, _ := store.EmitJSONWithSecrets(e.st.Running().Root, true)
	fresh, err := store.LoadJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	cb := renderData(nil, reflect.ValueOf(cached), "", false)
	fb := renderData(nil, reflect.ValueOf(fresh), "", false)
	if !bytes.Equal(cb, fb) {
		t.Fatalf("cached running tree differs from the store:\n%s\n%s", cb, fb)
	}
}

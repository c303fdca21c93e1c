package store_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/store"
)

func Example() {
	dir, _ := os.MkdirTemp("", "spiagent-store")
	defer os.RemoveAll(dir)
	s, err := store.Open(dir, store.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	path := func(p string) *gpb.Path { gp, _ := ygot.StringToStructuredPath(p); return gp }
	ctx := context.Background()
	info, err := s.Commit(ctx, store.Tx{User: "alice", Ops: []store.Op{
		{Kind: store.OpUpdate, Path: path("/crypto/isakmp/policies/policy[priority=1]/config"),
			Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: []byte(`{"authentication":"pre-share","lifetime":180}`)}}},
	}})
	fmt.Println(info.ID, info.Summary, err)
	fmt.Println(s.Running().Root.GetCrypto().GetIsakmp().GetPolicies().GetPolicy(1).GetConfig().GetLifetime())

	_, err = s.Commit(ctx, store.Tx{Ops: []store.Op{
		{Kind: store.OpUpdate, Path: path("/crypto/isakmp/policies/policy[priority=1]/config/lifetime"),
			Val: &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 59}}},
	}})
	fmt.Println(err)
	// Output:
	// 1 4 added, 0 modified, 0 removed (update /crypto/isakmp/policies/policy[priority=1]/config) <nil>
	// 180
	// store: invalid config: /crypto/isakmp/policies/policy[priority=1]/config/lifetime: unsigned integer value 59 is outside specified ranges (allowed 60..86400)
}

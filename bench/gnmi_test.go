// Package bench holds cross-package benchmarks; gnmi_test.go measures the
// gNMI server through the real gRPC stack on loopback (TLS, password
// authentication): Set latency, Get of a 10k config, ON_CHANGE fan-out and
// the memory of idle subscribers. Results: bench/gnmi_RESULTS.md.
package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/agent/validators"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/internal/testconfig"
	"github.com/spiagent/spiagent/store"
)

type benchEnv struct {
	st   *store.Store
	tel  *telemetry.Tree
	addr string
	pool *x509.CertPool
}

var userOnce struct {
	sync.Once
	users []byte
}

// newBenchEnv serves gNMI over TLS on loopback with a config of n entries.
func newBenchEnv(b *testing.B, n int, queue int) *benchEnv {
	b.Helper()
	dir := b.TempDir()
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelError}))
	st, err := store.Open(filepath.Join(dir, "data"), store.WithLogger(log), store.WithValidator(validators.NewCrypto()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if n > 0 {
		if _, err := st.Commit(context.Background(), store.Tx{Ops: []store.Op{{Kind: store.OpReplace, Path: &gpb.Path{},
			Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: testconfig.BigJSON(n)}}}}}); err != nil {
			b.Fatal(err)
		}
	}
	usersPath := filepath.Join(dir, "users")
	userOnce.Do(func() {
		p := filepath.Join(b.TempDir(), "users")
		if err := auth.AddUser(p, "bench", auth.RoleReadWrite, []byte("bench-pw")); err != nil {
			b.Fatal(err)
		}
		userOnce.users, _ = os.ReadFile(p)
	})
	if err := os.WriteFile(usersPath, userOnce.users, 0o600); err != nil {
		b.Fatal(err)
	}
	users, err := auth.OpenUsers(usersPath)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := auth.LoadServerCert("", "", dir)
	if err != nil {
		b.Fatal(err)
	}
	tlsCfg, _ := auth.ServerTLSConfig(cert, "")
	e := &benchEnv{st: st, tel: telemetry.New(), pool: x509.NewCertPool()}
	pemBytes, _ := os.ReadFile(cert.CertFile)
	e.pool.AppendCertsFromPEM(pemBytes)
	// MaxStreams: BenchmarkGNMIIdleSubscriberMemory holds 200 streams per
	// iteration on one connection (the default allows 32 at once).
	srv, err := gnmi.New(gnmi.Config{Store: st, State: e.tel, Users: users, TLS: tlsCfg, Log: log, SubscriberQueue: queue, MaxStreams: math.MaxUint32})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	e.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, lis); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return e
}

func (e *benchEnv) client(b *testing.B) gpb.GNMIClient {
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: e.pool, ServerName: "localhost"})),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return gpb.NewGNMIClient(cc)
}

func ctxAuth() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "username", "bench", "password", "bench-pw")
}

func mustPath(b *testing.B, s string) *gpb.Path {
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func percentiles(b *testing.B, d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))].Microseconds()) }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}

// BenchmarkGNMISetOneLeaf10k: a gNMI Set of one leaf (an entry's SA
// lifetime) on a config of 10k crypto-map entries and 10k keys, end to end:
// TLS, authentication (cached after the first RPC), store commit with
// validation and fsync'd journal.
func BenchmarkGNMISetOneLeaf10k(b *testing.B) {
	e := newBenchEnv(b, 10000, 0)
	c := e.client(b)
	ctx := ctxAuth()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := &gpb.SetRequest{Update: []*gpb.Update{{
			Path: mustPath(b, fmt.Sprintf("/crypto/crypto-maps/crypto-map[name=big]/entries/entry[sequence=%d]/config/sa-lifetime-seconds", i%10000+1)),
			Val:  &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: []byte(fmt.Sprint(1000 + i%2))}},
		}}}
		t0 := time.Now()
		if _, err := c.Set(ctx, req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	percentiles(b, lat)
}

// BenchmarkGNMIGetConfig10k: Get of the whole 10k config as JSON_IETF.
func BenchmarkGNMIGetConfig10k(b *testing.B) {
	e := newBenchEnv(b, 10000, 0)
	c := e.client(b)
	ctx := ctxAuth()
	var size int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := c.Get(ctx, &gpb.GetRequest{Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF})
		if err != nil {
			b.Fatal(err)
		}
		size = len(resp.GetNotification()[0].GetUpdate()[0].GetVal().GetJsonIetfVal())
	}
	b.ReportMetric(float64(size)/1e6, "MB/response")
}

// BenchmarkGNMIOnChange: state updates (one SA counter each) fanned out to
// 1 and 10 ON_CHANGE subscribers; notifications/s is what all subscribers
// together received per second.
func BenchmarkGNMIOnChange(b *testing.B) {
	for _, subs := range []int{1, 10} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			e := newBenchEnv(b, 0, 1<<16)
			putSA := func(n uint64) {
				if err := e.tel.Update(func(tx *telemetry.Tx) error {
					return tx.PutIPsecSA(&gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa{State: &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State{
						DestinationAddress: ygot.String("192.0.2.2"), Protocol: gen.SpiagentTypes_IpsecProtocol_esp,
						Spi: ygot.Uint32(0x100), Packets: ygot.Uint64(n)}})
				}); err != nil {
					b.Fatal(err)
				}
			}
			putSA(0)
			ctx, cancel := context.WithCancel(ctxAuth())
			defer cancel()
			var wg sync.WaitGroup
			ready := make(chan struct{}, subs)
			target := uint64(b.N)
			for s := 0; s < subs; s++ {
				sc, err := e.client(b).Subscribe(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := sc.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
					Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_PROTO,
					Subscription: []*gpb.Subscription{{Path: mustPath(b, "/crypto/ipsec/sas/sa/state/packets"), Mode: gpb.SubscriptionMode_ON_CHANGE}},
				}}}); err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						r, err := sc.Recv()
						if err != nil {
							b.Error(err)
							return
						}
						if r.GetSyncResponse() {
							ready <- struct{}{}
						}
						for _, u := range r.GetUpdate().GetUpdate() {
							if u.GetVal().GetUintVal() == target {
								return
							}
						}
					}
				}()
			}
			for s := 0; s < subs; s++ {
				<-ready
			}
			b.ResetTimer()
			t0 := time.Now()
			for i := 1; i <= b.N; i++ {
				putSA(uint64(i))
			}
			wg.Wait()
			el := time.Since(t0)
			b.StopTimer()
			b.ReportMetric(float64(b.N*subs)/el.Seconds(), "notifications/s")
		})
	}
}

// BenchmarkGNMIIdleSubscriberMemory: heap and goroutines per idle STREAM
// ON_CHANGE subscriber (client and server share this process, so the heap
// figure includes the client's side of each stream: an upper bound).
func BenchmarkGNMIIdleSubscriberMemory(b *testing.B) {
	const n = 200
	e := newBenchEnv(b, 0, 0) // the default queue (gnmi.DefaultSubscriberQueue)
	c := e.client(b)
	ctx, cancel := context.WithCancel(ctxAuth())
	defer cancel()
	measure := func() (uint64, int) {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc, runtime.NumGoroutine()
	}
	for i := 0; i < b.N; i++ {
		h0, g0 := measure()
		var streams []gpb.GNMI_SubscribeClient
		for s := 0; s < n; s++ {
			sc, err := c.Subscribe(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := sc.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
				Mode:         gpb.SubscriptionList_STREAM,
				Subscription: []*gpb.Subscription{{Path: mustPath(b, "/crypto/ipsec/sas"), Mode: gpb.SubscriptionMode_ON_CHANGE}},
			}}}); err != nil {
				b.Fatal(err)
			}
			if _, err := sc.Recv(); err != nil { // sync
				b.Fatal(err)
			}
			streams = append(streams, sc)
		}
		h1, g1 := measure()
		b.ReportMetric(float64(int64(h1)-int64(h0))/n/1024, "KiB/subscriber")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/subscriber")
		runtime.KeepAlive(streams)
	}
}

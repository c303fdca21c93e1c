package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"

	"github.com/spiagent/spiagent/gen"
)

var sizes = []int{1000, 10000, 50000}

func sizeName(n int) string { return fmt.Sprintf("%dk", n/1000) }

// benchStore opens a store whose data file holds bigConfig(n).
func benchStore(b *testing.B, n int) *Store {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	data, err := encodeSnapshot(&Snapshot{ID: 1, Time: time.Now(), Root: bigConfig(n)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := writeFileAtomic(dir, snapshotName, data); err != nil {
		b.Fatal(err)
	}
	if err := writeFileAtomic(dir, journalName, journalHeader(1)); err != nil {
		b.Fatal(err)
	}
	s, err := Open(dir, testOptions()...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// cpuTime is the CPU time (user+system) the process has used: the machine
// the figures were taken on is shared, so wall time alone overstates cost.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMetric reports the process CPU time per op since start.
func cpuMetric(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

// phaseMetrics accumulates the phase timings of the commits of a benchmark.
type phaseMetrics struct{ sum Phases }

func (m *phaseMetrics) add(p Phases) {
	m.sum.Apply += p.Apply
	m.sum.Diff += p.Diff
	m.sum.Validate += p.Validate
	m.sum.Applier += p.Applier
	m.sum.Persist += p.Persist
	m.sum.Publish += p.Publish
}

func (m *phaseMetrics) report(b *testing.B, commits int) {
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(commits) }
	b.ReportMetric(us(m.sum.Apply), "apply-µs")
	b.ReportMetric(us(m.sum.Diff), "diff-µs")
	b.ReportMetric(us(m.sum.Validate), "validate-µs")
	b.ReportMetric(us(m.sum.Persist), "persist-µs")
	b.ReportMetric(us(m.sum.Publish+m.sum.Applier), "applier+publish-µs")
}

// BenchmarkCommitOneLeaf: one leaf of one crypto-map entry, on configs of n
// crypto-map entries, n keys and n access lists (all in one crypto map: the
// largest list map there can be).
func BenchmarkCommitOneLeaf(b *testing.B) {
	for _, n := range sizes {
		b.Run(sizeName(n), func(b *testing.B) {
			s := benchStore(b, n)
			ctx := context.Background()
			path := mustPath(b, fmt.Sprintf("/crypto/crypto-maps/crypto-map[name=VPN]/entries/entry[sequence=%d]/config/sa-lifetime-seconds", n/2))
			var m phaseMetrics
			b.ReportAllocs()
			b.ResetTimer()
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				if _, err := s.Commit(ctx, Tx{Ops: []Op{{Kind: OpUpdate, Path: path, Val: uintV(uint64(1000 + i%2))}}}); err != nil {
					b.Fatal(err)
				}
				m.add(s.LastPhases())
			}
			cpuMetric(b, c0)
			m.report(b, b.N)
		})
	}
}

// BenchmarkCommitKeyAddDelete: add then delete an unused key (two commits per
// op). The delete re-checks every reference (a loop over all crypto-map
// entries), the slow path of incremental validation.
func BenchmarkCommitKeyAddDelete(b *testing.B) {
	for _, n := range sizes {
		b.Run(sizeName(n), func(b *testing.B) {
			s := benchStore(b, n)
			ctx := context.Background()
			kp := "/crypto/isakmp/keys/key[address=192.0.2.77]"
			add := Tx{Ops: []Op{upd(b, kp+"/config/key", strV("k"))}}
			rm := Tx{Ops: []Op{del(b, kp)}}
			var m phaseMetrics
			b.ResetTimer()
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				if _, err := s.Commit(ctx, add); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Commit(ctx, rm); err != nil {
					b.Fatal(err)
				}
				m.add(s.LastPhases())
			}
			cpuMetric(b, c0)
			m.report(b, b.N) // phases of the delete
		})
	}
}

// BenchmarkCommitNewEntry: add a crypto-map entry (and its key and ACL) in one
// transaction, then remove it again.
func BenchmarkCommitNewEntry(b *testing.B) {
	for _, n := range sizes {
		b.Run(sizeName(n), func(b *testing.B) {
			s := benchStore(b, n)
			ctx := context.Background()
			e := "/crypto/crypto-maps/crypto-map[name=VPN]/entries/entry[sequence=65000]"
			add := Tx{Ops: []Op{
				upd(b, "/crypto/isakmp/keys/key[address=192.0.2.99]/config/key", strV("k")),
				upd(b, "/crypto/access-lists/access-list[name=new]/entries/entry[sequence=10]/config", ietfV(`{"action":"permit","destination":"198.51.100.0/24"}`)),
				upd(b, e+"/config", ietfV(`{"peer":["192.0.2.99"],"transform-set":["TS"],"match-address":"new"}`)),
			}}
			rm := Tx{Ops: []Op{del(b, e), del(b, "/crypto/access-lists/access-list[name=new]"), del(b, "/crypto/isakmp/keys/key[address=192.0.2.99]")}}
			var m phaseMetrics
			b.ResetTimer()
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				if _, err := s.Commit(ctx, add); err != nil {
					b.Fatal(err)
				}
				m.add(s.LastPhases())
				if _, err := s.Commit(ctx, rm); err != nil {
					b.Fatal(err)
				}
			}
			cpuMetric(b, c0)
			m.report(b, b.N) // phases of the add
		})
	}
}

// BenchmarkLoadValidate10k: parse the RFC 7951 JSON of the 10k config and
// validate it fully; and Open of a data directory holding it.
func BenchmarkLoadValidate10k(b *testing.B) {
	data, err := EmitJSONWithSecrets(bigConfig(10000), true)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("LoadJSON+Validate", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		defer cpuMetric(b, cpuTime())
		for i := 0; i < b.N; i++ {
			d, err := LoadJSON(data)
			if err != nil {
				b.Fatal(err)
			}
			if p := Validate(d, crypto()); len(p) > 0 {
				b.Fatal(p)
			}
		}
	})
	b.Run("LoadJSON", func(b *testing.B) {
		defer cpuMetric(b, cpuTime())
		for i := 0; i < b.N; i++ {
			if _, err := LoadJSON(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	d, _ := LoadJSON(data)
	b.Run("Validate", func(b *testing.B) {
		defer cpuMetric(b, cpuTime())
		for i := 0; i < b.N; i++ {
			if p := Validate(d, crypto()); len(p) > 0 {
				b.Fatal(p)
			}
		}
	})
	b.Run("EmitJSON", func(b *testing.B) { // compact, as in the snapshot file
		defer cpuMetric(b, cpuTime())
		for i := 0; i < b.N; i++ {
			if _, err := emitJSON(d, true, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Open", func(b *testing.B) {
		s := benchStore(b, 10000)
		dir := s.dir
		s.Close()
		b.ResetTimer()
		defer cpuMetric(b, cpuTime())
		for i := 0; i < b.N; i++ {
			s, err := Open(dir, testOptions()...)
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
}

// BenchmarkNaive10k measures the phases of the design this package avoids:
// a deep copy, a full ygot validation, ygot.Diff and a full JSON rewrite per
// commit.
func BenchmarkNaive10k(b *testing.B) {
	d := bigConfig(10000)
	b.Run("DeepCopy", func(b *testing.B) {
		defer cpuMetric(b, cpuTime())
		for i := 0; i < b.N; i++ {
			if _, err := ygot.DeepCopy(d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ytypes.Validate", func(b *testing.B) {
		defer cpuMetric(b, cpuTime())
		for i := 0; i < b.N; i++ {
			ytypes.Validate(gen.SchemaTree["Device"], d)
		}
	})
	c, _ := ygot.DeepCopy(d)
	c.(*gen.Device).Crypto.CryptoMaps.CryptoMap["VPN"].Entries.Entry[5000].Config.SaLifetimeSeconds = ygot.Uint32(1000)
	b.Run("ygot.Diff", func(b *testing.B) {
		defer cpuMetric(b, cpuTime())
		for i := 0; i < b.N; i++ {
			if _, err := ygot.Diff(d, c.(*gen.Device)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("FullSnapshotWrite", func(b *testing.B) {
		dir := b.TempDir()
		defer cpuMetric(b, cpuTime())
		for i := 0; i < b.N; i++ {
			data, err := encodeSnapshot(&Snapshot{ID: 1, Root: d}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := writeFileAtomic(dir, snapshotName, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJournalSync is the floor under every commit on this machine: an
// append of a 300-byte record and fdatasync, as the journal does.
func BenchmarkJournalSync(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "j"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, 300)
	for i := 0; i < b.N; i++ {
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := syncData(f); err != nil {
			b.Fatal(err)
		}
	}
}

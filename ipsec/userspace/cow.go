package userspace

import (
	"maps"
	"sync/atomic"
)

// shardBits sets how many shards a cowMap has (1024): a change copies one
// shard, about n/1024 entries, so it costs the same at 10 entries as at
// 10,000 (about 10 per shard) and little more at 100,000.
const shardBits = 10

// cowMap is a map the packet path reads without a lock (an atomic load and
// a map lookup, no allocation) and writers change by copying one shard, so
// a change costs O(n/1024) instead of the O(n) of copying one whole map.
// Writers must be serialised (the dataplane's mutex); readers may run at
// any time and see each key either before or after a change.
type cowMap[K comparable, V any] struct {
	shards [1 << shardBits]atomic.Pointer[map[K]V]
	hash   func(K) uint32
	n      int // entries; writers only
}

func (m *cowMap[K, V]) shard(k K) *atomic.Pointer[map[K]V] {
	return &m.shards[(m.hash(k)*0x9e3779b1)>>(32-shardBits)]
}

func (m *cowMap[K, V]) get(k K) (V, bool) {
	if p := m.shard(k).Load(); p != nil {
		v, ok := (*p)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// set adds or replaces k.
func (m *cowMap[K, V]) set(k K, v V) {
	s := m.shard(k)
	var next map[K]V
	if p := s.Load(); p != nil {
		next = make(map[K]V, len(*p)+1)
		maps.Copy(next, *p)
	} else {
		next = make(map[K]V, 1)
	}
	if _, ok := next[k]; !ok {
		m.n++
	}
	next[k] = v
	s.Store(&next)
}

// del removes k.
func (m *cowMap[K, V]) del(k K) {
	s := m.shard(k)
	p := s.Load()
	if p == nil {
		return
	}
	if _, ok := (*p)[k]; !ok {
		return
	}
	m.n--
	if len(*p) == 1 {
		s.Store(nil)
		return
	}
	next := maps.Clone(*p)
	delete(next, k)
	s.Store(&next)
}

// each calls f for every entry (each shard as it is when reached).
func (m *cowMap[K, V]) each(f func(K, V)) {
	for i := range m.shards {
		if p := m.shards[i].Load(); p != nil {
			for k, v := range *p {
				f(k, v)
			}
		}
	}
}

// reset empties the map.
func (m *cowMap[K, V]) reset() {
	for i := range m.shards {
		m.shards[i].Store(nil)
	}
	m.n = 0
}

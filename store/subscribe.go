package store

import "sync"

type subscriber struct {
	ch   chan Event
	once sync.Once
}

func (sub *subscriber) close() { sub.once.Do(func() { close(sub.ch) }) }

// Subscribe returns a channel of commit events with room for buf events, and
// a function to cancel the subscription. A subscriber that falls behind (its
// channel full when a commit is published) is dropped: its channel is closed
// and it must subscribe again (and read Running) to resynchronize. Commits
// never wait for subscribers.
func (s *Store) Subscribe(buf int) (<-chan Event, func()) {
	if buf < 1 {
		buf = 1
	}
	sub := &subscriber{ch: make(chan Event, buf)}
	s.smu.Lock()
	s.subs[sub] = struct{}{}
	s.smu.Unlock()
	return sub.ch, func() {
		s.smu.Lock()
		delete(s.subs, sub)
		s.smu.Unlock()
		sub.close()
	}
}

func (s *Store) publish(ev Event) {
	s.smu.Lock()
	defer s.smu.Unlock()
	for sub := range s.subs {
		select {
		case sub.ch <- ev:
		default:
			delete(s.subs, sub)
			sub.close()
			s.log.Warn("subscriber fell behind and was dropped", "commit", ev.Info.ID)
		}
	}
}

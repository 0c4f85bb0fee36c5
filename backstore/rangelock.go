package backstore

import "sync"

// rangeLocker serialises writes whose byte ranges overlap when one of them
// needs exclusive access. With O_DIRECT an unaligned write is a
// read-modify-write of whole alignment units: if anything else wrote into
// those units between the read and the write-back, the write-back would
// restore stale bytes and lose that write. RMW writes therefore lock their
// units exclusively; aligned writes lock theirs shared so they run in
// parallel with each other but never inside an RMW window.
type rangeLocker struct {
	mu     sync.Mutex
	cond   sync.Cond   // signalled when a range is released; L is &mu
	held   []heldRange // guarded by mu
	nextID uint64      // guarded by mu
}

type heldRange struct {
	start, end int64 // [start, end)
	exclusive  bool
	id         uint64
}

// lockToken identifies one held range for unlock.
type lockToken uint64

func (l *rangeLocker) conflicts(start, end int64, exclusive bool) bool {
	for _, h := range l.held {
		if h.start < end && start < h.end && (exclusive || h.exclusive) {
			return true
		}
	}
	return false
}

// lock blocks until [start, end) can be held in the requested mode.
func (l *rangeLocker) lock(start, end int64, exclusive bool) lockToken {
	l.mu.Lock()
	if l.cond.L == nil {
		l.cond.L = &l.mu
	}
	for l.conflicts(start, end, exclusive) {
		l.cond.Wait()
	}
	l.nextID++
	id := l.nextID
	l.held = append(l.held, heldRange{start: start, end: end, exclusive: exclusive, id: id})
	l.mu.Unlock()
	return lockToken(id)
}

// unlock releases the range taken by lock.
func (l *rangeLocker) unlock(t lockToken) {
	l.mu.Lock()
	for i, h := range l.held {
		if h.id == uint64(t) {
			last := len(l.held) - 1
			l.held[i] = l.held[last]
			l.held = l.held[:last]
			break
		}
	}
	// Wake every waiter: each one rechecks its own range. Waiters are rare
	// (only overlapping writes wait), so the broadcast costs little.
	l.cond.Broadcast()
	l.mu.Unlock()
}

package backstore

import "sync"

// rangeLocker serialises writes whose byte ranges overlap when one of them
// needs exclusive access. With O_DIRECT an unaligned write is a
// read-modify-write of whole alignment units: if anything else wrote into
// those units between the read and the write-back, the write-back would
// restore stale bytes and lose that write. RMW writes therefore lock their
// units exclusively; aligned writes lock theirs shared so they run in
// parallel with each other but never inside an RMW window.
//
// Overlapping requests are granted in arrival order: a request waits for
// earlier waiters it conflicts with, so a stream of small RMWs cannot
// starve a large write spanning their units (and the reverse).
// Non-overlapping requests never wait for each other.
type rangeLocker struct {
	mu      sync.Mutex
	cond    sync.Cond   // signalled when a range is released; L is &mu
	held    []lockRange // guarded by mu
	waiting []lockRange // guarded by mu; in arrival order (ascending id)
	nextID  uint64      // guarded by mu
}

type lockRange struct {
	start, end int64 // [start, end)
	exclusive  bool
	id         uint64
}

// lockToken identifies one held range for unlock.
type lockToken uint64

func (r lockRange) conflicts(o lockRange) bool {
	return r.start < o.end && o.start < r.end && (r.exclusive || o.exclusive)
}

// blocked reports whether r must wait: it conflicts with a held range or
// with a request that has been waiting since before r arrived.
func (l *rangeLocker) blocked(r lockRange) bool {
	for _, h := range l.held {
		if r.conflicts(h) {
			return true
		}
	}
	for _, w := range l.waiting {
		if w.id >= r.id {
			break
		}
		if r.conflicts(w) {
			return true
		}
	}
	return false
}

// lock blocks until [start, end) can be held in the requested mode.
func (l *rangeLocker) lock(start, end int64, exclusive bool) lockToken {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cond.L == nil {
		l.cond.L = &l.mu
	}
	l.nextID++
	r := lockRange{start: start, end: end, exclusive: exclusive, id: l.nextID}
	if l.blocked(r) {
		l.waiting = append(l.waiting, r)
		for l.blocked(r) {
			l.cond.Wait()
		}
		l.waiting = removeRange(l.waiting, r.id)
		// Later waiters that conflicted with r as a waiter conflict with it
		// as a holder too, so no one else can proceed yet: no broadcast.
	}
	l.held = append(l.held, r)
	return lockToken(r.id)
}

// unlock releases the range taken by lock.
func (l *rangeLocker) unlock(t lockToken) {
	l.mu.Lock()
	l.held = removeRange(l.held, uint64(t))
	// Wake every waiter to recheck its own range. Waiters are rare (only
	// overlapping writes wait), so the broadcast costs little.
	if len(l.waiting) > 0 {
		l.cond.Broadcast()
	}
	l.mu.Unlock()
}

// removeRange deletes the range with the given id, keeping the order.
func removeRange(rs []lockRange, id uint64) []lockRange {
	for i := range rs {
		if rs[i].id == id {
			return append(rs[:i], rs[i+1:]...)
		}
	}
	return rs
}

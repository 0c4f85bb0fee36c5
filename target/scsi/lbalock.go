package scsi

import "sync"

// lbaLocker orders commands whose LBA ranges overlap when one of them must
// see the range alone. COMPARE AND WRITE and WRITE ATOMIC(16) lock their
// range exclusively, so their read-compare-write (or multi-block write) is
// atomic against every other write (SBC-4 COMPARE AND WRITE: no other
// command may change the blocks between the compare and the write) and
// against reads that would see half of an atomic write; plain reads and
// writes lock shared and never wait for each other.
//
// Requests are granted in arrival order among those they conflict with, so
// a stream of shared writes cannot starve an exclusive one (VMware's ATS
// heartbeat is a COMPARE AND WRITE that must come through under load).
// An uncontended lock allocates nothing: READ and WRITE take one.
type lbaLocker struct {
	mu      sync.Mutex
	held    []lbaLock  // guarded by mu
	waiting []*lbaLock // guarded by mu, in arrival order
	nextID  uint64     // guarded by mu
}

type lbaLock struct {
	start, end uint64 // [start, end) in logical blocks
	exclusive  bool
	id         uint64
	ready      chan struct{} // waiters only: closed when granted
}

// lbaToken names a held range for unlock; 0 is the empty range.
type lbaToken uint64

func (a *lbaLock) conflicts(b *lbaLock) bool {
	return a.start < b.end && b.start < a.end && (a.exclusive || b.exclusive)
}

// blockedLocked reports whether r must wait: it conflicts with a held range
// or with an earlier waiter (those before index upTo in waiting).
func (l *lbaLocker) blockedLocked(r *lbaLock, upTo int) bool {
	for i := range l.held {
		if r.conflicts(&l.held[i]) {
			return true
		}
	}
	for _, w := range l.waiting[:upTo] {
		if r.conflicts(w) {
			return true
		}
	}
	return false
}

// lock blocks until blocks [lba, lba+n) are held in the requested mode and
// returns the token that unlock takes. n == 0 locks nothing.
func (l *lbaLocker) lock(lba, n uint64, exclusive bool) lbaToken {
	if n == 0 {
		return 0
	}
	r := lbaLock{start: lba, end: lba + n, exclusive: exclusive}
	if r.end < r.start { // wrapped: callers range check first, but stay safe
		r.end = ^uint64(0)
	}
	l.mu.Lock()
	l.nextID++
	r.id = l.nextID
	if !l.blockedLocked(&r, len(l.waiting)) {
		l.held = append(l.held, r)
		l.mu.Unlock()
		return lbaToken(r.id)
	}
	// A copy, so r itself stays on the stack in the uncontended path.
	w := new(lbaLock)
	*w = r
	w.ready = make(chan struct{})
	l.waiting = append(l.waiting, w)
	l.mu.Unlock()
	<-w.ready
	return lbaToken(w.id)
}

// unlock releases a range and grants, in arrival order, every waiter no
// longer blocked.
func (l *lbaLocker) unlock(t lbaToken) {
	if t == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.held {
		if l.held[i].id == uint64(t) {
			l.held = append(l.held[:i], l.held[i+1:]...)
			break
		}
	}
	for i := 0; i < len(l.waiting); {
		w := l.waiting[i]
		if l.blockedLocked(w, i) {
			i++
			continue
		}
		l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
		l.held = append(l.held, lbaLock{start: w.start, end: w.end, exclusive: w.exclusive, id: w.id})
		close(w.ready)
	}
}

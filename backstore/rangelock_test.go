package backstore

import (
	"testing"
	"time"
)

func TestRangeLockerConflicts(t *testing.T) {
	tests := []struct {
		name            string
		heldStart       int64
		heldEnd         int64
		heldExclusive   bool
		start, end      int64
		exclusive, want bool
	}{
		{"shared over shared", 0, 10, false, 5, 15, false, false},
		{"exclusive over shared", 0, 10, false, 5, 15, true, true},
		{"shared over exclusive", 0, 10, true, 9, 10, false, true},
		{"exclusive over exclusive", 0, 10, true, 0, 10, true, true},
		{"touching ranges do not overlap", 0, 10, true, 10, 20, true, false},
		{"range before", 10, 20, true, 0, 10, true, false},
		{"contained", 0, 100, true, 40, 41, false, true},
		{"containing", 40, 41, true, 0, 100, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l rangeLocker
			tok := l.lock(tt.heldStart, tt.heldEnd, tt.heldExclusive)
			r := lockRange{start: tt.start, end: tt.end, exclusive: tt.exclusive, id: 1 << 60}
			if got := l.blocked(r); got != tt.want {
				t.Errorf("blocked = %v, want %v", got, tt.want)
			}
			l.unlock(tok)
			if l.blocked(r) {
				t.Error("still blocked after unlock")
			}
		})
	}
}

func TestRangeLockerWaits(t *testing.T) {
	var l rangeLocker
	held := l.lock(0, 4096, true)
	free := l.lock(4096, 8192, true) // disjoint: must not block
	acquired := make(chan lockToken)
	go func() { acquired <- l.lock(100, 200, false) }()
	select {
	case <-acquired:
		t.Fatal("overlapping lock acquired while an exclusive lock was held")
	case <-time.After(50 * time.Millisecond):
	}
	l.unlock(free) // releasing an unrelated range must not let it in
	select {
	case <-acquired:
		t.Fatal("overlapping lock acquired after an unrelated unlock")
	case <-time.After(50 * time.Millisecond):
	}
	l.unlock(held)
	select {
	case tok := <-acquired:
		l.unlock(tok)
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by unlock")
	}
	if len(l.held) != 0 {
		t.Errorf("%d ranges still held", len(l.held))
	}
}

// A request that overlaps an earlier waiter queues behind it even when
// nothing it overlaps is held: otherwise a stream of small exclusive
// locks could starve a large shared one forever.
func TestRangeLockerFairness(t *testing.T) {
	var l rangeLocker
	held := l.lock(0, 10, true)
	order := make(chan string, 2)
	go func() { // waits for held
		tok := l.lock(0, 100, false)
		order <- "wide"
		time.Sleep(20 * time.Millisecond)
		l.unlock(tok)
	}()
	for !waiting(&l, 1) {
		time.Sleep(time.Millisecond)
	}
	go func() { // free of held, but behind the wide waiter
		tok := l.lock(50, 60, true)
		order <- "late"
		l.unlock(tok)
	}()
	for !waiting(&l, 2) {
		time.Sleep(time.Millisecond)
	}
	unrelated := l.lock(200, 300, true) // overlaps nothing: no wait
	l.unlock(unrelated)
	l.unlock(held)
	if first, second := <-order, <-order; first != "wide" || second != "late" {
		t.Errorf("granted %s before %s, want arrival order", first, second)
	}
}

func waiting(l *rangeLocker, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiting) == n
}

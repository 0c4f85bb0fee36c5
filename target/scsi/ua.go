package scsi

import (
	"sync"
	"sync/atomic"

	"github.com/blockport/blockport/target/scsi/sense"
)

// maxPendingUA bounds the unit attentions queued per nexus. SAM-5 lets the
// device server drop conditions it cannot queue; a reset condition (ASC
// 29h) is never dropped because it supersedes what came before it.
const maxPendingUA = 8

// uaState is one I_T nexus' unit attention queue on one LU (SAM-5).
type uaState struct {
	pending atomic.Bool    // len(queue) > 0; read without the lock on the hot path
	queue   []*sense.Error // guarded by uaTable.mu
}

// uaTable holds the UA state of every nexus the LU has seen since the
// process started.
type uaTable struct {
	mu      sync.RWMutex
	nexuses map[Nexus]*uaState // guarded by mu
}

func (t *uaTable) init() { t.nexuses = make(map[Nexus]*uaState) }

// state returns the nexus' UA state, creating it on first sight with POWER
// ON, RESET, OR BUS DEVICE RESET OCCURRED (29h/00h) queued: SAM-5 reports a
// power on to every I_T nexus, and a nexus this LU has not seen (a new
// session) has not been told. The generic 29h/00h rather than POWER ON
// OCCURRED (29h/01h) is what initiators expect after a fresh login: libiscsi's
// tools retry exactly that code and fail on others.
func (t *uaTable) state(n *Nexus) *uaState {
	t.mu.RLock()
	st := t.nexuses[*n]
	t.mu.RUnlock()
	if st != nil {
		return st
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if st = t.nexuses[*n]; st == nil {
		st = &uaState{}
		t.nexuses[*n] = st
		t.pushLocked(st, sense.ResetOccurred())
	}
	return st
}

// pop removes and returns the oldest pending UA, or nil.
func (t *uaTable) pop(st *uaState) *sense.Error {
	if !st.pending.Load() {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(st.queue) == 0 {
		return nil
	}
	e := st.queue[0]
	st.queue = st.queue[1:]
	st.pending.Store(len(st.queue) > 0)
	// Hand out a copy: the fabric may set DescFormat on what it gets.
	c := *e
	return &c
}

// pushLocked queues e on st. A reset-class UA (ASC 29h) replaces every
// other queued condition: SPC-5 / SAM-5 report the reset, and
// conditions from before it (e.g. mode parameters changed) are moot. A
// pending power-on (29h/00h or 29h/01h) stays when a later reset arrives:
// it already tells the initiator that its state is gone.
func (t *uaTable) pushLocked(st *uaState, e *sense.Error) {
	const ascReset = 0x29
	for _, q := range st.queue {
		if q.Is(e) {
			return
		}
	}
	if e.ASC == ascReset {
		kept := st.queue[:0]
		for _, q := range st.queue {
			if q.ASC == ascReset && (q.ASCQ == sense.PowerOnOccurred().ASCQ || q.ASCQ == sense.ResetOccurred().ASCQ) {
				kept = append(kept, q)
			}
		}
		st.queue = kept
		if len(st.queue) > 0 {
			// Power on already pending covers this reset.
			st.pending.Store(true)
			return
		}
	} else if len(st.queue) >= maxPendingUA {
		return
	}
	st.queue = append(st.queue, e)
	st.pending.Store(true)
}

// establish queues mk() for every nexus the LU has seen, or for only those
// keep accepts when keep is not nil.
func (t *uaTable) establish(mk func() *sense.Error, keep func(Nexus) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for n, st := range t.nexuses {
		if keep == nil || keep(n) {
			t.pushLocked(st, mk())
		}
	}
}

// establishFor queues mk() for one nexus if the LU has seen it; a nexus
// never seen will get POWER ON OCCURRED instead, which covers any event.
func (t *uaTable) establishFor(n Nexus, mk func() *sense.Error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.nexuses[n]; st != nil {
		t.pushLocked(st, mk())
	}
}

// forget drops a nexus' state when its session ends: the next session of
// the same initiator port is a new I_T nexus and starts with a fresh UA.
func (t *uaTable) forget(n Nexus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.nexuses, n)
}

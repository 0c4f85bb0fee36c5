package pr

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// memRecord is a Shared record in memory with the semantics of the RADOS
// one (backstore/rbd/record.go, tested there against a real cluster):
// versioned compare-and-swap, and a notification that returns once every
// other watcher's function has returned.
type memRecord struct {
	mu       sync.Mutex
	value    []byte
	version  uint64
	watchers map[*memView]func([]byte) error
	fenced   []*memView    // views that did not take a fencing note in
	loads    int           // Load calls
	delay    time.Duration // each Load takes this long
	failLoad bool
}

// memView is one server's handle on the record.
type memView struct{ rec *memRecord }

func newMemRecord() *memRecord {
	return &memRecord{version: 1, watchers: map[*memView]func([]byte) error{}}
}

func (m *memRecord) view() *memView { return &memView{rec: m} }

func (v *memView) Load() ([]byte, uint64, error) {
	m := v.rec
	m.mu.Lock()
	delay := m.delay
	m.loads++
	m.mu.Unlock()
	time.Sleep(delay)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failLoad {
		return nil, 0, errors.New("cluster unreachable")
	}
	return append([]byte(nil), m.value...), m.version, nil
}

func (v *memView) Store(value []byte, version uint64) (uint64, bool, error) {
	m := v.rec
	m.mu.Lock()
	defer m.mu.Unlock()
	if version != m.version {
		return 0, false, nil
	}
	m.value = append([]byte(nil), value...)
	m.version++
	return m.version, true, nil
}

func (v *memView) Notify(note []byte, fence bool) error {
	m := v.rec
	m.mu.Lock()
	others := map[*memView]func([]byte) error{}
	for w, fn := range m.watchers {
		if w != v {
			others[w] = fn
		}
	}
	m.mu.Unlock()
	time.Sleep(100 * time.Microsecond) // the round trip to the cluster
	for w, fn := range others {
		if err := fn(append([]byte{}, note...)); err != nil && fence {
			m.mu.Lock()
			m.fenced = append(m.fenced, w)
			m.mu.Unlock()
		}
	}
	return nil
}

func (v *memView) Watch(changed func([]byte) error) error {
	v.rec.mu.Lock()
	defer v.rec.mu.Unlock()
	v.rec.watchers[v] = changed
	return nil
}

// lose tells v's watcher that its watch was lost.
func (v *memView) lose() {
	v.rec.mu.Lock()
	fn := v.rec.watchers[v]
	v.rec.mu.Unlock()
	fn(nil)
}

// rewatch tells v's watcher that it watches again.
func (v *memView) rewatch() {
	v.rec.mu.Lock()
	fn := v.rec.watchers[v]
	v.rec.mu.Unlock()
	fn([]byte{})
}

// gateways returns two states on one record and what each was told.
func gateways(t *testing.T) (a, b *State, rec *memRecord, va, vb *memView, toldB *[]*Result) {
	t.Helper()
	rec = newMemRecord()
	va, vb = rec.view(), rec.view()
	var told []*Result
	a = sharedGateway(t, va, func(*Result) error { return nil })
	b = sharedGateway(t, vb, func(r *Result) error { told = append(told, r); return nil })
	return a, b, rec, va, vb, &told
}

// sharedGateway is one gateway's state on a view of a record, watching it
// with fn.
func sharedGateway(t *testing.T, v *memView, fn func(*Result) error) *State {
	t.Helper()
	s, err := NewShared(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Watch(fn); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSharedStateIsEnforcedByEveryGateway(t *testing.T) {
	a, b, _, _, _, _ := gateways(t)
	// The same initiators reach gateway B through target port group 2.
	nexA2B := nexA
	nexA2B.TPGT = 2
	nexC2B := nexC
	nexC2B.TPGT = 2
	mustOut(t, a, nexA, OutRequest{Action: RegisterAndIgnore, SAKey: 0xA, AllTgPt: true})
	mustOut(t, a, nexA, OutRequest{Action: Reserve, Key: 0xA, Type: WriteExclusiveRegistrantsOnly})
	if !b.Conflicts(nexC2B, Write) {
		t.Fatal("gateway B lets an unregistered initiator write under A's reservation")
	}
	if b.Conflicts(nexA2B, Write) || b.Conflicts(nexC2B, Read) {
		t.Fatal("gateway B refuses what the reservation allows")
	}
	// B's READ KEYS sees A's registration.
	if err := b.Refresh(); err != nil {
		t.Fatal(err)
	}
	keys := b.In(ReadKeys)
	if len(keys) != 16 || keys[15] != 0xA {
		t.Fatalf("READ KEYS through B: % x", keys)
	}
	// A release through B is seen by A.
	mustOut(t, b, nexA2B, OutRequest{Action: Release, Key: 0xA, Type: WriteExclusiveRegistrantsOnly})
	if a.Conflicts(nexC, Write) {
		t.Fatal("gateway A still enforces a reservation released through B")
	}
}

func TestSharedStateConflictingChangesOneWins(t *testing.T) {
	a, b, _, _, _, _ := gateways(t)
	nexB2 := nexB
	nexB2.TPGT = 2
	register(t, a, nexA, 0xA)
	register(t, b, nexB2, 0xB)
	// Both reserve at once; the record decides, and the loser sees the
	// winner's reservation and gets RESERVATION CONFLICT.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, g := range []struct {
		s   *State
		n   Nexus
		key uint64
	}{{a, nexA, 0xA}, {b, nexB2, 0xB}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = g.s.Out(g.n, &OutRequest{Action: Reserve, Key: g.key, Type: ExclusiveAccess})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrConflict):
			t.Fatalf("unexpected error %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d gateways won the reservation: %v", won, errs)
	}
	a.Refresh()
	b.Refresh()
	holderA, holderB := a.In(ReadReservation), b.In(ReadReservation)
	if string(holderA) != string(holderB) || len(holderA) != 24 {
		t.Fatalf("the gateways disagree on the holder: % x and % x", holderA, holderB)
	}
}

func TestSharedPreemptTellsTheOtherGateway(t *testing.T) {
	a, b, _, _, _, told := gateways(t)
	nexB2 := nexB
	nexB2.TPGT = 2
	register(t, b, nexB2, 0xB)
	mustOut(t, b, nexB2, OutRequest{Action: Reserve, Key: 0xB, Type: WriteExclusive})
	register(t, a, nexA, 0xA)
	res := mustOut(t, a, nexA, OutRequest{Action: PreemptAndAbort, Key: 0xA, SAKey: 0xB, Type: WriteExclusive})
	if len(res.Aborted) != 1 {
		t.Fatalf("result %+v", res)
	}
	// B was told before Out returned: its nexus is to be aborted and
	// gets REGISTRATIONS PREEMPTED.
	last := (*told)[len(*told)-1]
	if last == nil || len(last.Aborted) != 1 || !last.Aborted[0].Covers(nexB2) {
		t.Fatalf("B was told %+v", last)
	}
	if len(last.Notices) != 1 || last.Notices[0].UA != RegistrationsPreempted || !last.Notices[0].To.Covers(nexB2) {
		t.Fatalf("B's notices %+v", last.Notices)
	}
	if !b.Conflicts(nexB2, Write) {
		t.Fatal("the preempted initiator may still write through B")
	}
}

func TestSharedStateLostWatchFailsClosed(t *testing.T) {
	a, b, rec, _, vb, told := gateways(t)
	nexB2 := nexB
	nexB2.TPGT = 2
	register(t, a, nexA, 0xA)
	// B is cut off: its watch is lost and the record cannot be read.
	rec.mu.Lock()
	rec.failLoad = true
	rec.mu.Unlock()
	vb.lose()
	if (*told)[len(*told)-1] != nil {
		t.Fatal("a lost watch was reported with notices")
	}
	if !b.Conflicts(nexB2, Write) || !b.Conflicts(nexB2, Read) {
		t.Fatal("a gateway that cannot read the shared state lets I/O through")
	}
	if b.Conflicts(nexB2, Allowed) || b.Conflicts(nexB2, Exempt) {
		t.Fatal("TEST UNIT READY and INQUIRY must still be answered")
	}
	if _, err := b.Out(nexB2, &OutRequest{Action: RegisterAndIgnore, SAKey: 0xB}); !errors.Is(err, ErrStateUnavailable) {
		t.Fatalf("PR OUT without the shared state: %v", err)
	}
	// Reachable again: B loads and answers as before.
	rec.mu.Lock()
	rec.failLoad = false
	rec.mu.Unlock()
	if b.Conflicts(nexB2, Write) {
		t.Fatal("no reservation, but B still refuses once the state is back")
	}
}

// TestSharedConcurrentChangesDoNotDeadlock: two gateways change the state
// at the same moment, each telling the other; neither may wait for the
// other's acknowledgement while holding the lock the other's note needs.
func TestSharedConcurrentChangesDoNotDeadlock(t *testing.T) {
	a, b, _, _, _, _ := gateways(t)
	nexB2 := nexB
	nexB2.TPGT = 2
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for i, g := range []struct {
			s *State
			n Nexus
		}{{a, nexA}, {b, nexB2}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range 200 {
					g.s.Out(g.n, &OutRequest{Action: RegisterAndIgnore, SAKey: uint64(1 + i + 2*k)})
				}
			}()
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("concurrent changes through two gateways deadlocked")
	}
	a.Refresh()
	b.Refresh()
	if ka, kb := a.In(ReadKeys), b.In(ReadKeys); string(ka) != string(kb) || len(ka) != 8+16 {
		t.Fatalf("the gateways end with different keys: % x and % x", ka, kb)
	}
}

// TestSharedStateUnwatchedLoadsEveryTime: after a lost watch, a change the
// gateway was never told of is enforced on the next command, until the
// watch is back.
func TestSharedStateUnwatchedLoadsEveryTime(t *testing.T) {
	a, b, _, va, vb, _ := gateways(t)
	nexC2 := nexC
	nexC2.TPGT = 2
	register(t, a, nexA, 0xA)
	vb.lose()
	if b.Conflicts(nexC2, Write) {
		t.Fatal("no reservation yet")
	}
	// A reserves, but the note never reaches B (it is not watching):
	// store the new state behind B's back.
	st := a.st.clone()
	if _, _, err := st.out(nexA, &OutRequest{Action: Reserve, Key: 0xA, Type: WriteExclusive}); err != nil {
		t.Fatal(err)
	}
	value, _ := encode(&st)
	_, version, _ := va.Load()
	if _, ok, err := va.Store(value, version); !ok || err != nil {
		t.Fatalf("store: %v %v", ok, err)
	}
	if !b.Conflicts(nexC2, Write) {
		t.Fatal("an unwatched gateway answered from its old copy")
	}
	// Watching again: B takes notes as before.
	vb.rewatch()
	if b.unwatched.Load() {
		t.Fatal("still unwatched after the watch came back")
	}
}

// TestSharedPreemptFencesAGatewayThatCannotStop: a gateway that cannot
// stop the preempted tasks says so, and the preempting gateway has it
// fenced before PREEMPT AND ABORT completes; changes that take nobody's
// access away fence nobody.
func TestSharedPreemptFencesAGatewayThatCannotStop(t *testing.T) {
	rec := newMemRecord()
	vb := rec.view()
	a := sharedGateway(t, rec.view(), func(*Result) error { return nil })
	b := sharedGateway(t, vb, func(r *Result) error {
		if r != nil && len(r.Aborted) > 0 {
			return errors.New("a preempted write is stuck in the backstore")
		}
		return errors.New("b fails every note")
	})
	nexB2 := nexB
	nexB2.TPGT = 2
	register(t, a, nexA, 0xA)
	register(t, b, nexB2, 0xB)
	mustOut(t, b, nexB2, OutRequest{Action: Reserve, Key: 0xB, Type: WriteExclusive})
	if len(rec.fenced) != 0 {
		t.Fatalf("fenced after changes that revoke nothing: %v", rec.fenced)
	}
	mustOut(t, a, nexA, OutRequest{Action: PreemptAndAbort, Key: 0xA, SAKey: 0xB, Type: WriteExclusive})
	if len(rec.fenced) != 1 || rec.fenced[0] != vb {
		t.Fatalf("fenced %v, want gateway B", rec.fenced)
	}
}

// TestSharedStateLoadsCoalesce: commands arriving together on a copy that
// must be reloaded share the loads instead of one round trip each.
func TestSharedStateLoadsCoalesce(t *testing.T) {
	_, b, rec, _, vb, _ := gateways(t)
	nexC2 := nexC
	nexC2.TPGT = 2
	vb.lose() // every check now loads first
	rec.mu.Lock()
	rec.loads, rec.delay = 0, 20*time.Millisecond
	rec.mu.Unlock()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.Conflicts(nexC2, Write) {
				t.Error("conflict without any reservation")
			}
		}()
	}
	wg.Wait()
	rec.mu.Lock()
	loads := rec.loads
	rec.mu.Unlock()
	if loads > 8 {
		t.Fatalf("64 concurrent checks made %d loads", loads)
	}
	t.Logf("64 concurrent checks, %d loads", loads)
}

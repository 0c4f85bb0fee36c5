package scsi

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blockport/blockport/backstore"
)

// gatedStore holds every write until its gate opens, and notes how many
// writes had returned when Sync was last called.
type gatedStore struct {
	*memStore
	entered     chan struct{}
	gate        chan struct{}
	done        atomic.Int32
	doneAtSync  atomic.Int32
	syncsCalled atomic.Int32
}

func (s *gatedStore) WriteAt(p []byte, off int64, fua bool) (int, error) {
	s.entered <- struct{}{}
	<-s.gate
	n, err := s.memStore.WriteAt(p, off, fua)
	s.done.Add(1)
	return n, err
}

func (s *gatedStore) Sync() error {
	s.doneAtSync.Store(s.done.Load())
	s.syncsCalled.Add(1)
	return s.memStore.Sync()
}

// gatedDevice is a device whose LU 0 writes through a gatedStore.
func gatedDevice(t *testing.T, opts ...luOpt) (*Device, *LU, *gatedStore) {
	t.Helper()
	gs := &gatedStore{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	opts = append(opts, func(c *LUConfig) {
		gs.memStore = c.Backstore.(*memStore)
		c.Backstore = backstore.Backstore(gs)
	})
	d, lu, _ := newTestDevice(t, 64, 512, opts...)
	return d, lu, gs
}

// TestRemoveLUDrain: a removed LU takes no new commands, and Drain waits
// for the one still in its backstore, so that the backstore is closed
// only once it has returned.
func TestRemoveLUDrain(t *testing.T) {
	d, lu, gs := gatedDevice(t)
	clearUA(t, d, nexusA, 0)

	// A command prepared before the removal, executed after it.
	late := &Command{Nexus: nexusA, LUN: 0, CDB: read10(0, 1), Attr: TaskSimple, ExpectedLength: 512}
	if err := d.Prepare(late); err != nil {
		t.Fatal(err)
	}
	late.Data = make([]byte, late.TransferLength)

	done := make(chan result, 1)
	go func() { done <- run(t, d, nexusA, 0, write10(1, 1), make([]byte, 512), 512) }()
	select {
	case <-gs.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the write never reached the backstore")
	}
	removed, err := d.RemoveLU(0)
	if err != nil || removed != lu {
		t.Fatalf("RemoveLU: %v, %v", removed, err)
	}
	if lu.Drain(50 * time.Millisecond) {
		t.Fatal("Drain reported no command running with a write in the backstore")
	}
	r := result{}
	_, r.err = d.Execute(context.Background(), late)
	r.status, r.sense = statusOf(t, r.err)
	r.check(t, luNotSupp) // not run on the removed LU's backstore

	close(gs.gate)
	(<-done).check(t, good) // it was executing: it completes
	if !lu.Drain(5 * time.Second) {
		t.Fatal("Drain still waiting after the write returned")
	}
}

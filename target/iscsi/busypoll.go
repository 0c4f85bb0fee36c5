package iscsi

import (
	"runtime"
	"sync/atomic"
	"time"
)

// busyPoller lets a connection's reader keep reading a socket for a short
// while after it finds it empty, instead of parking at once ([server]
// busy_poll). Parking costs a netpoller wake-up on both sides of the next
// PDU: the initiator's send wakes a sleeping thread, and ours resumes the
// reader through the scheduler; at queue depth 1 that is a good part of
// each command's round trip. Spinning trades a core for it, so at most one
// reader of the whole service spins at a time, and only for budget.
type busyPoller struct {
	// budget bounds each poll; the reader still waits for readiness, with
	// its deadlines, once it runs out.
	budget   atomic.Int64 // nanoseconds; 0: off
	spinning atomic.Bool  // one spinner per service
	found    atomic.Uint64
	expired  atomic.Uint64
}

// maxBusyPoll caps the budget, whoever sets it.
const maxBusyPoll = time.Millisecond

// set changes the budget; it applies to the next empty read of every
// connection.
func (p *busyPoller) set(d time.Duration) {
	p.budget.Store(int64(min(max(d, 0), maxBusyPoll)))
}

// poll calls try until it reports data or the budget runs out, when the
// budget is on and no other reader spins. It reports whether try found
// something to report (data, or the end of the connection); false means
// wait for readiness as usual.
func (p *busyPoller) poll(try func() bool) bool {
	d := time.Duration(p.budget.Load())
	if d <= 0 || !p.spinning.CompareAndSwap(false, true) {
		return false
	}
	defer p.spinning.Store(false)
	start := time.Now()
	for {
		// Let the goroutines waiting for this P run between tries: the
		// one that is about to answer the initiator may be one of them.
		runtime.Gosched()
		if try() {
			p.found.Add(1)
			return true
		}
		if time.Since(start) >= d {
			p.expired.Add(1)
			return false
		}
	}
}

// SetBusyPoll sets how long a connection's reader keeps reading an empty
// socket before it parks (0 turns it off; more than a millisecond is a
// millisecond, the bound config.MaxBusyPoll puts on the setting). It
// applies at once to every connection.
func (s *Service) SetBusyPoll(d time.Duration) { s.poller.set(d) }

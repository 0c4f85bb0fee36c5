package scsi

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/blockport/blockport/target/scsi/sense"
)

// Command accounting. Every completed command of an LU bumps a few atomic
// counters; nothing is locked and nothing allocates on the I/O path. The
// counters are read by whoever wants them (metrics at scrape time, status)
// through LU.Stats. Labels stay bounded: direction, operation class and
// sense key, never CDB bytes or initiator ports.

// OpClass groups commands for latency: reads and writes of the medium, and
// everything else.
type OpClass uint8

// Operation classes.
const (
	ClassRead OpClass = iota
	ClassWrite
	ClassOther
	NumOpClasses
)

func (c OpClass) String() string {
	switch c {
	case ClassRead:
		return "read"
	case ClassWrite:
		return "write"
	}
	return "other"
}

// NumDirections is the number of Direction values (none, read, write).
const NumDirections = 3

// LatencyBounds are the upper bounds of the latency histogram buckets; a
// last, unbounded bucket follows. They span a RAM disk on loopback (tens of
// microseconds) to a stalled device (seconds).
var LatencyBounds = [...]time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond,
	2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

type latencyHist struct {
	buckets  [len(LatencyBounds) + 1]atomic.Uint64
	sumNanos atomic.Uint64
}

func (h *latencyHist) observe(d time.Duration) {
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	if d > 0 {
		h.sumNanos.Add(uint64(d))
	}
}

// luStats are the counters of one LU.
type luStats struct {
	commands             [NumDirections]atomic.Uint64
	bytes                [NumDirections]atomic.Uint64
	latency              [NumOpClasses]latencyHist
	senseKeys            [16]atomic.Uint64
	reservationConflicts atomic.Uint64
	otherStatus          atomic.Uint64 // BUSY, TASK SET FULL, TASK ABORTED...
}

// LatencyHistogram is a snapshot of one latency histogram. Counts[i] is the
// number of commands with a latency in (LatencyBounds[i-1], LatencyBounds[i]];
// the last element counts those above every bound.
type LatencyHistogram struct {
	Counts []uint64      `json:"counts"`
	Sum    time.Duration `json:"sum_ns"`
	Count  uint64        `json:"count"`
}

// LUStats is a snapshot of an LU's counters since it was created.
type LUStats struct {
	Commands             [NumDirections]uint64          `json:"commands"` // by Direction
	Bytes                [NumDirections]uint64          `json:"bytes"`    // by Direction
	Latency              [NumOpClasses]LatencyHistogram `json:"latency"`  // by OpClass
	SenseKeys            [16]uint64                     `json:"sense_keys"`
	ReservationConflicts uint64                         `json:"reservation_conflicts"`
	OtherStatus          uint64                         `json:"other_status"`
}

// Stats returns a snapshot of the LU's counters. Each counter is read
// atomically; the set is not one instant, which monotonic counters allow.
func (lu *LU) Stats() LUStats {
	var out LUStats
	st := &lu.stats
	for i := range NumDirections {
		out.Commands[i] = st.commands[i].Load()
		out.Bytes[i] = st.bytes[i].Load()
	}
	for c := range NumOpClasses {
		h := &st.latency[c]
		counts := make([]uint64, len(h.buckets))
		var n uint64
		for i := range h.buckets {
			counts[i] = h.buckets[i].Load()
			n += counts[i]
		}
		out.Latency[c] = LatencyHistogram{Counts: counts, Sum: time.Duration(h.sumNanos.Load()), Count: n}
	}
	for i := range st.senseKeys {
		out.SenseKeys[i] = st.senseKeys[i].Load()
	}
	out.ReservationConflicts = st.reservationConflicts.Load()
	out.OtherStatus = st.otherStatus.Load()
	return out
}

// Completed accounts a command that has been answered: n is what Execute
// returned, err the command's outcome (Prepare's or Execute's) and elapsed
// the time from its arrival to its answer. The fabric calls it once per
// command that reached a response. Commands to a LUN with no LU are not
// counted (there is nothing to label them with that an initiator cannot
// make up).
func (d *Device) Completed(cmd *Command, n int, err error, elapsed time.Duration) {
	lu := cmd.lu
	if lu == nil {
		if cmd.Nexus == nil {
			return
		}
		if lu = d.luFor(cmd.Nexus, cmd.LUN); lu == nil {
			return
		}
	}
	st := &lu.stats
	dir := cmd.Dir
	if dir >= NumDirections {
		dir = DirNone
	}
	st.commands[dir].Add(1)
	if err == nil {
		switch dir {
		case DirRead:
			if n > 0 {
				st.bytes[DirRead].Add(uint64(n))
			}
		case DirWrite:
			st.bytes[DirWrite].Add(uint64(cmd.TransferLength))
		}
	} else {
		var se *sense.Error
		var ste StatusError
		switch {
		case errors.As(err, &se):
			st.senseKeys[se.Key&0xF].Add(1)
		case errors.As(err, &ste) && Status(ste) == StatusReservationConflict:
			st.reservationConflicts.Add(1)
		default:
			st.otherStatus.Add(1)
		}
	}
	st.latency[classOf(cmd)].observe(elapsed)
}

// classOf is the latency class of a command: a read or write of the medium
// (from the dispatch table), else other.
func classOf(cmd *Command) OpClass {
	op := cmd.op
	switch {
	case op == nil:
		return ClassOther
	case op.writes:
		return ClassWrite
	case op.blockIO && cmd.Dir == DirRead:
		return ClassRead
	}
	return ClassOther
}

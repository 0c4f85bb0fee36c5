package scsi

import (
	"sync/atomic"
	"time"
)

// luUse counts the commands executing on an LU, so that whoever removes
// it (a reload) can wait for them before closing its backstore. Without the
// wait, a write still in its backstore call when the store is closed and
// reopened could land after the final flush, and the old file, still open
// under that call, keeps its lock against the new one.
type luUse struct {
	running atomic.Int64
	removed atomic.Bool // set by RemoveLU; the LU takes no more commands
}

// enter counts a command in; false once the LU is removed. The count goes
// up before the flag is read and RemoveLU sets the flag before Drain reads
// the count, so a command either sees the flag or is seen by Drain.
func (lu *LU) enter() bool {
	lu.use.running.Add(1)
	if lu.use.removed.Load() {
		lu.use.running.Add(-1)
		return false
	}
	return true
}

func (lu *LU) exit() { lu.use.running.Add(-1) }

// Drain waits, at most d, until no command executes on the LU, which
// must have been removed (Device.RemoveLU); it reports whether none does.
func (lu *LU) Drain(d time.Duration) bool {
	deadline := time.Now().Add(d)
	pause := 100 * time.Microsecond
	for lu.use.running.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
	return true
}

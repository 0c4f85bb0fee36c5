package iscsi

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/blockport/blockport/target/scsi"
)

// Session is one iSCSI session. Blockport negotiates MaxConnections=1, so a
// session has exactly one connection for its whole life.
type Session struct {
	key    sessionKey
	tsih   uint16 // set by Service.register, then read-only
	target *Target
	nexus  *scsi.Nexus
	params Params
	remote string
	since  time.Time
	conn   *conn

	closeOnce sync.Once
}

func (s *Session) close() {
	s.closeOnce.Do(func() { s.conn.closeWith(connErrorf("session closed by the target")) })
}

// cmdWindow is the CmdSN window of a session (RFC 7143 4.2.2.1). expCmdSN
// is written by the connection's reader goroutine only; maxCmdSN is raised by
// the writer goroutine when it reports a larger window, and never lowered,
// because initiators ignore a MaxCmdSN smaller than one they already have.
type cmdWindow struct {
	expCmdSN atomic.Uint32
	maxCmdSN atomic.Uint32
	inflight atomic.Int32 // non-immediate commands received but not answered
	// immediate counts immediate requests received and not answered;
	// they are refused past depth (conn.ordered).
	immediate atomic.Int32
	depth     uint32
}

func (w *cmdWindow) init(cmdSN, depth uint32) {
	w.depth = depth
	w.expCmdSN.Store(cmdSN)
	w.maxCmdSN.Store(cmdSN + depth - 1)
}

// current returns the ExpCmdSN and MaxCmdSN to report now.
func (w *cmdWindow) current() (exp, max uint32) {
	exp = w.expCmdSN.Load()
	free := int64(w.depth) - int64(w.inflight.Load())
	if free < 0 {
		free = 0
	}
	want := exp + uint32(free) - 1
	for {
		cur := w.maxCmdSN.Load()
		if !serialGreater(want, cur) {
			return exp, cur
		}
		if w.maxCmdSN.CompareAndSwap(cur, want) {
			return exp, want
		}
	}
}

// serialGreater compares 32-bit serial numbers (RFC 1982), as RFC 7143 4.2.2.1
// requires for CmdSN and StatSN.
func serialGreater(a, b uint32) bool {
	return a != b && int32(a-b) > 0
}

// serialInWindow reports whether lo <= sn <= hi in serial arithmetic.
func serialInWindow(sn, lo, hi uint32) bool {
	return !serialGreater(lo, sn) && !serialGreater(sn, hi)
}

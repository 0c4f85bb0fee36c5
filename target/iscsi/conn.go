package iscsi

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blockport/blockport/backstore"
)

// conn is one TCP connection. As in net/http's conn.serve, one reader
// goroutine (serve) decodes PDUs, commands execute on their own goroutines
// (bounded by the CmdSN window), and one writer goroutine owns the socket's
// write side and batches responses into a single writev.
type conn struct {
	svc  *Service
	opts *Options // the service's options when the connection began; read-only
	nc   net.Conn
	tpgt uint16 // the portal's tag; at login, the tag of the target's group that holds it
	log  *slog.Logger
	// portal is the portal that accepted the connection; read-only.
	portal Portal

	r *Reader // owned by the reader goroutine
	// bufBytes counts the bytes of command buffers this connection holds:
	// from the command's arrival (a write's data-out, a read's data-in)
	// until the answer has been sent. Past maxConnBufBytes new commands
	// get TASK SET FULL (scsicmd.go), which bounds both writes that wait
	// for data that never comes and answers an initiator does not read.
	bufBytes atomic.Int64
	// held: answers queued with holdForReader wait for flushHeld. Owned
	// by the reader goroutine.
	held bool
	w    *Writer // owned by the login, then by the writer goroutine
	// sock reads and writes the socket without the runtime's syscall
	// bookkeeping (rawSocket); nil when nc is not a TCP connection.
	sock *rawSocket

	sess      *Session // set at the end of a normal login
	cid       uint16   // the connection ID given at login
	discovery bool
	params    Params // negotiated; read-only after login
	window    cmdWindow

	outq outQueue // responses waiting for the socket
	// writeDeadline is the socket's write deadline (armWriteDeadline);
	// owned by the flusher of the moment.
	writeDeadline time.Time
	kick          chan struct{} // wakes the writer goroutine (buffered, 1)
	stopW         chan struct{} // closed to stop the writer goroutine
	quit          chan struct{} // closed when the connection is going down
	done          chan struct{} // closed when serve has returned
	quitOnce      sync.Once
	closeErr      atomic.Pointer[ConnError]
	inLogin       atomic.Bool // still in the login phase (for the login guard)
	// malformedSeen: a malformed PDU was logged; later ones are counted and
	// logged at debug level only, so a hostile peer cannot flood the log.
	// Owned by the reader goroutine.
	malformedSeen bool
	// dataSNSeen: a Data-Out DataSN error was logged; later ones of the
	// connection go to debug level (each PDU of a command can have one).
	// Owned by the reader goroutine.
	dataSNSeen bool

	mu    sync.Mutex
	tasks map[uint32]*task // by ITT; guarded by mu
	// wg counts every goroutine that may queue a PDU (executors, TMF and
	// logout waiters, the pinger): out is closed only after they are gone.
	wg sync.WaitGroup

	// Owned by the reader goroutine.
	pending    map[uint32]*queuedPDU // commands that arrived ahead of ExpCmdSN
	textReq    []byte                // text of a Text Request continued with the C bit
	textCont   *textExchange         // a long Text answer still being handed out
	initiator  string                // InitiatorName from login
	nextTTT    uint32
	scratch    []byte
	lastRecv   atomic.Int64 // unix nanoseconds of the last PDU received
	pingTTT    atomic.Uint32
	pingSentAt atomic.Int64
	loggedOut  atomic.Bool
}

// outPDU is one PDU queued for the writer. The writer fills StatSN,
// ExpCmdSN and MaxCmdSN when it sends, so they are in wire order.
type outPDU struct {
	hdr        BHS
	data       []byte
	advanceSN  bool   // this PDU consumes a StatSN (RFC 7143 4.2.2.2)
	keepStatSN bool   // the header's StatSN field is not the session's (none)
	onSent     func() // called by the writer after the PDU went out (or was dropped)
	putBuf     []byte // a pooled buffer data points into, returned after sending
	// bufOf and bufN: putBuf's bytes, given back to the connection's
	// count (conn.bufBytes) with it.
	bufOf      *atomic.Int64
	bufN       int64
	closeAfter bool // close the connection once it is sent (logout)
}

var outPDUPool = sync.Pool{New: func() any { return new(outPDU) }}

func getOutPDU() *outPDU {
	p := outPDUPool.Get().(*outPDU)
	*p = outPDU{}
	return p
}

// queuedPDU is a non-immediate PDU that arrived with a CmdSN above ExpCmdSN;
// it runs when the gap closes (RFC 7143 4.2.2.1 delivery in CmdSN order).
type queuedPDU struct {
	hdr  BHS
	ahs  []byte
	data []byte
}

func newConn(svc *Service, nc net.Conn, tpgt uint16) *conn {
	c := &conn{
		svc:     svc,
		opts:    svc.opts.Load(),
		nc:      nc,
		tpgt:    tpgt,
		log:     svc.log.With("remote", nc.RemoteAddr().String(), "portal", nc.LocalAddr().String()),
		sock:    newRawSocket(nc, &svc.poller),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		tasks:   make(map[uint32]*task),
		pending: make(map[uint32]*queuedPDU),
		nextTTT: 1,
	}
	if c.sock != nil {
		c.r, c.w = NewReader(c.sock), NewWriter(c.sock)
	} else {
		c.r, c.w = NewReader(nc), NewWriter(nc)
	}
	c.params = DefaultParams()
	// RFC 7143 13.12: login PDUs carry at most 8192 bytes of data.
	c.r.SetMaxRecvDataSegmentLength(8192)
	return c
}

func (c *conn) closeWith(err *ConnError) {
	c.quitOnce.Do(func() {
		c.closeErr.Store(err)
		close(c.quit)
		// Unblock the reader; the writer notices quit.
		c.nc.SetReadDeadline(time.Now())
	})
}

// shutdown is a graceful stop: no new commands are read, running ones finish.
func (c *conn) shutdown() { c.closeWith(connErrorf("server shutting down")) }

func (c *conn) waitDone(d time.Duration) {
	select {
	case <-c.done:
	case <-time.After(d):
	}
}

func (c *conn) serve(ctx context.Context) {
	defer close(c.done)
	defer c.nc.Close()
	res, err := c.login()
	c.inLogin.Store(false)
	c.svc.guard.loginEnded(SourceIP(c.nc.RemoteAddr()))
	c.svc.observeLogin(loginResultOf(err))
	if err != nil {
		if c.sess != nil {
			// The session was registered, then its final Login Response
			// could not be sent: it never began, so it must not stay in
			// the table and count against the target's limit.
			c.svc.endSession(c.sess)
		}
		if !errors.Is(err, io.EOF) {
			// The names the initiator gave, if it got that far (never a
			// CHAP value: those stay in the login state).
			c.log.Info("login failed", "initiator", res.state.initiator, "target", res.state.targetName,
				"result", loginResultOf(err).String(), "err", err)
		}
		return
	}
	st := res.state
	c.params = res.params
	c.cid = st.cid
	c.initiator = st.initiator
	c.discovery = st.sessType == sessionDiscovery
	c.log = c.log.With("initiator", st.initiator)
	if c.sess != nil {
		c.log = c.log.With("target", c.sess.target.Name)
	}
	c.log.Info("login", "session", map[bool]string{true: "discovery", false: "normal"}[c.discovery],
		"tsih", st.tsih, "header_digest", c.params.HeaderDigest, "data_digest", c.params.DataDigest)

	// RFC 7143 6.3: digests apply from the first PDU after the final login response.
	c.r.SetDigests(c.params.HeaderDigest, c.params.DataDigest)
	c.w.SetDigests(c.params.HeaderDigest, c.params.DataDigest)
	c.r.SetMaxRecvDataSegmentLength(int(c.params.MaxRecvDataSegmentLength))
	c.window.init(st.cmdSN, c.opts.QueueDepth)
	c.outq.statSN = st.statSN
	c.kick = make(chan struct{}, 1)
	c.stopW = make(chan struct{})
	c.lastRecv.Store(time.Now().UnixNano())

	writerDone := make(chan struct{})
	go c.writeLoop(writerDone)
	c.goSender(c.pingLoop)

	rerr := c.readLoop(ctx)

	// Tear down: stop reading, let running commands finish (their responses
	// are dropped if the socket is gone), then let the writer send what is
	// left and stop.
	switch {
	case rerr == nil:
		c.closeWith(connErrorf("reader stopped"))
	case errors.Is(rerr, io.EOF):
		c.closeWith(connErrorf("closed by the initiator"))
	default:
		c.closeWith(connErrorf("%v", rerr))
	}
	c.dropWaitingTasks()
	c.wg.Wait()
	close(c.stopW)
	<-writerDone
	if c.sess != nil {
		c.svc.endSession(c.sess)
	}
	reason := ""
	if ce := c.closeErr.Load(); ce != nil {
		reason = ce.Reason
	}
	if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, net.ErrClosed) && !isTimeout(rerr) {
		reason = rerr.Error()
	}
	c.log.Info("logout", "clean", c.loggedOut.Load(), "reason", reason)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readLoop is the reader goroutine of the full feature phase.
func (c *conn) readLoop(ctx context.Context) error {
	for {
		select {
		case <-c.quit:
			return nil
		case <-ctx.Done():
			return nil
		default:
		}
		c.flushHeld()
		hdr, err := c.r.ReadHeader()
		if err != nil {
			var de *DigestError
			var pe *ProtocolError
			if errors.As(err, &de) || errors.As(err, &pe) {
				c.noteMalformed("closing connection", err.Error())
			}
			return err
		}
		c.lastRecv.Store(time.Now().UnixNano())
		if err := c.dispatch(hdr); err != nil {
			var rej *RejectError
			var ce *ConnError
			switch {
			case errors.As(err, &rej):
				c.noteMalformed("reject", rej.Why)
				c.sendReject(rej)
			case errors.As(err, &ce):
				c.noteMalformed("closing connection", ce.Reason)
				return err
			default:
				return err
			}
		}
	}
}

// readSmallData reads the data segment of the current PDU into a fresh
// slice. Used for PDUs whose data is small and must outlive the next read.
func (c *conn) readSmallData(h *BHS) ([]byte, error) {
	n := h.DataSegmentLength()
	if n == 0 {
		return nil, nil
	}
	buf := make([]byte, n)
	if err := c.r.ReadData(buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// dispatch handles one PDU whose header was just read; its data segment is
// still on the wire.
func (c *conn) dispatch(hdr *Header) error {
	h := &hdr.BHS
	op := h.Opcode()
	if c.discovery {
		switch op {
		case OpTextRequest, OpLogoutRequest, OpNOPOut:
		default:
			// RFC 7143 4.3: a discovery session carries only Text, Logout and NOP.
			if err := c.r.DiscardData(); err != nil {
				return err
			}
			return &RejectError{Reason: RejectProtocolError, Header: *h, Why: op.String() + " in a discovery session"}
		}
	}
	switch op {
	case OpSCSICommand, OpNOPOut, OpTaskMgmtRequest, OpTextRequest, OpLogoutRequest:
		return c.ordered(hdr)
	case OpDataOut:
		return c.handleDataOut(h)
	case OpSNACKRequest:
		if err := c.r.DiscardData(); err != nil {
			return err
		}
		// RFC 7143 11.16: SNACK needs ErrorRecoveryLevel > 0; we negotiate 0.
		return &RejectError{Reason: RejectSNACKReject, Header: *h, Why: "SNACK at ErrorRecoveryLevel 0"}
	default:
		if err := c.r.DiscardData(); err != nil {
			return err
		}
		return &RejectError{Reason: RejectCommandNotSupported, Header: *h, Why: "opcode " + op.String()}
	}
}

// cmdSNOf returns the CmdSN field (bytes 24-27) of a request that carries one.
func cmdSNOf(h *BHS) uint32 { return binary.BigEndian.Uint32(h[24:28]) }

// ordered applies the CmdSN rules of RFC 7143 4.2.2.1 to a request: an
// immediate one runs now; a non-immediate one runs when its CmdSN is the
// next expected, waits when it is ahead inside the window, and is silently
// dropped when it is outside the window.
func (c *conn) ordered(hdr *Header) error {
	h := &hdr.BHS
	if h.Immediate() {
		// Immediate requests bypass the window (RFC 7143 3.2.2.1), so
		// they have a bound of their own: a flood of them is refused
		// with the Reject the RFC has for it (11.17.1).
		if c.window.immediate.Load() >= int32(c.window.depth) {
			if err := c.r.DiscardData(); err != nil {
				return err
			}
			return &RejectError{Reason: RejectImmediateCommand, Header: *h, Why: "too many immediate commands"}
		}
		return c.execute(hdr, nil, false)
	}
	sn := cmdSNOf(h)
	exp := c.window.expCmdSN.Load()
	_, max := c.window.current()
	switch {
	case !serialInWindow(sn, exp, max):
		// Past MaxCmdSN, or a closed window (MaxCmdSN = ExpCmdSN-1)
		// even for the next expected CmdSN: RFC 7143 4.2.2.1 has the
		// target ignore it.
		c.log.Debug("CmdSN outside the window dropped", "cmdsn", sn, "exp", exp, "max", max)
		return c.r.DiscardData()
	case sn == exp:
		c.window.expCmdSN.Store(exp + 1)
		if err := c.execute(hdr, nil, false); err != nil {
			return err
		}
		return c.drainPending()
	default:
		if _, dup := c.pending[sn]; dup {
			c.log.Debug("duplicate CmdSN dropped", "cmdsn", sn)
			return c.r.DiscardData()
		}
		q := &queuedPDU{hdr: *h, ahs: append([]byte(nil), hdr.AHS...)}
		data, err := c.readSmallData(h)
		if err != nil {
			return err
		}
		q.data = data
		c.pending[sn] = q
		return nil
	}
}

func (c *conn) drainPending() error {
	for {
		exp := c.window.expCmdSN.Load()
		q, ok := c.pending[exp]
		if !ok {
			return nil
		}
		delete(c.pending, exp)
		c.window.expCmdSN.Store(exp + 1)
		hdr := &Header{BHS: q.hdr, AHS: q.ahs}
		if err := c.execute(hdr, q.data, true); err != nil {
			return err
		}
	}
}

// execute runs a request in CmdSN order. When queued is false its data
// segment is still on the wire; otherwise it is in data.
func (c *conn) execute(hdr *Header, data []byte, queued bool) error {
	h := &hdr.BHS
	if h.Immediate() {
		c.window.immediate.Add(1)
	} else {
		c.window.inflight.Add(1)
	}
	if h.Opcode() == OpSCSICommand {
		return c.handleSCSICommand(hdr, data, queued)
	}
	if !queued {
		var err error
		if data, err = c.readSmallData(h); err != nil {
			return err
		}
	}
	switch h.Opcode() {
	case OpNOPOut:
		return c.handleNOPOut(h, data)
	case OpTaskMgmtRequest:
		return c.handleTaskMgmt(h)
	case OpTextRequest:
		return c.handleText(h, data)
	case OpLogoutRequest:
		return c.handleLogout(h)
	}
	return nil
}

// commandDone releases the CmdSN window slot of a non-immediate request,
// or the count of an immediate one.
func (c *conn) commandDone(immediate bool) {
	if immediate {
		c.window.immediate.Add(-1)
	} else {
		c.window.inflight.Add(-1)
	}
}

// goSender runs f on a goroutine that may queue PDUs.
func (c *conn) goSender(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// outQueue serialises PDUs onto the socket. StatSN, ExpCmdSN and MaxCmdSN
// are filled in queue order under mu, so they are in wire order. Whoever
// finds the queue idle and may write becomes the flusher and sends batches
// (one writev each) until the queue is empty; PDUs queued meanwhile ride
// along in the next batch.
type outQueue struct {
	mu       sync.Mutex
	pending  []*outPDU // guarded by mu
	spare    []*outPDU // guarded by mu; the other half of a double buffer
	flushing bool      // guarded by mu: a flusher owns the Writer
	stopped  bool      // guarded by mu: the socket is done; PDUs are dropped
	statSN   uint32    // guarded by mu
	// bytes is what pending holds (headers and data), not yet taken by
	// a flusher; guarded by mu. Past maxQueuedBytes the initiator is not
	// reading its answers while it keeps sending: the connection ends.
	bytes int
}

// maxQueuedBytes bounds outQueue.bytes: the command buffers of a
// connection (maxConnBufBytes) plus as much again for what they do not
// cover (NOP-In echoes, Rejects, responses).
var maxQueuedBytes = 2 * maxConnBufBytes // a variable for tests

// sendMode says who writes a queued PDU to the socket.
type sendMode uint8

const (
	// viaWriter leaves the writing to the writer goroutine. The reader
	// goroutine uses it for PDUs it sends while commands may still be
	// arriving: if the reader blocked in a write while the initiator
	// blocked writing data to us, neither would ever read.
	viaWriter sendMode = iota
	// writeHere writes from the calling goroutine when no one else is
	// writing, saving a hand-off to the writer goroutine. For executors,
	// whose initiator waits for the answer, and for the reader once it
	// has taken up everything the initiator sent.
	writeHere
	// holdForReader queues the PDU for the reader goroutine to write once
	// it has taken up everything the initiator sent (readLoop), so that a
	// burst of commands run by the reader is answered with one write. A
	// long burst hands what has piled up to the writer goroutine
	// (holdMax). Only the reader uses it.
	holdForReader
)

// holdMax bounds the answers held for the reader: more go to the writer
// goroutine, so an initiator that keeps sending still gets answers.
const holdMax = 32

// send queues a PDU for the writer goroutine (viaWriter).
func (c *conn) send(p *outPDU) { c.enqueue(p, viaWriter) }

// sendInline queues a PDU and writes it from here when no one is writing
// (writeHere).
func (c *conn) sendInline(p *outPDU) { c.enqueue(p, writeHere) }

func (c *conn) enqueue(p *outPDU, how sendMode) {
	c.push(p)
	c.flush(how)
}

// push queues a PDU without writing; flush must follow.
func (c *conn) push(p *outPDU) {
	q := &c.outq
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		releaseOut(p)
		return
	}
	q.pending = append(q.pending, p)
	q.bytes += len(p.hdr) + len(p.data)
	over := q.bytes > maxQueuedBytes
	q.mu.Unlock()
	if over {
		c.closeWith(connErrorf("initiator does not read its answers (over %d bytes queued)", maxQueuedBytes))
	}
}

// flush gets what is queued written, as how says: by the caller when no
// one is writing (writeHere), by the writer goroutine (viaWriter), or
// later by the reader (holdForReader).
func (c *conn) flush(how sendMode) {
	q := &c.outq
	q.mu.Lock()
	if q.flushing || len(q.pending) == 0 {
		q.mu.Unlock()
		return
	}
	if how == holdForReader {
		c.held = true
		if len(q.pending) < holdMax {
			q.mu.Unlock()
			return
		}
		how = viaWriter
	}
	if how == viaWriter {
		q.mu.Unlock()
		select {
		case c.kick <- struct{}{}:
		default:
		}
		return
	}
	q.flushing = true
	c.flushLocked()
}

// flushHeld writes the answers held for the reader once nothing more from
// the initiator waits to be read: it is then not blocked writing to us, so
// it reads what we write. Called by the reader before it reads a header.
func (c *conn) flushHeld() {
	if !c.held || c.moreToRead() {
		return
	}
	c.held = false
	c.flush(writeHere)
}

// flushLocked writes batches until the queue is empty. Called with q.mu held
// and q.flushing set by the caller; returns with q.mu released.
func (c *conn) flushLocked() {
	q := &c.outq
	var fail *ConnError
	closeAfter := false
	for len(q.pending) > 0 && !q.stopped {
		batch := q.pending
		q.pending = q.spare[:0]
		q.bytes = 0
		exp, max := c.window.current()
		for _, x := range batch {
			if !x.keepStatSN {
				binary.BigEndian.PutUint32(x.hdr[24:28], q.statSN)
			}
			binary.BigEndian.PutUint32(x.hdr[28:32], exp)
			binary.BigEndian.PutUint32(x.hdr[32:36], max)
			if x.advanceSN {
				q.statSN++
			}
			closeAfter = closeAfter || x.closeAfter
		}
		q.mu.Unlock()
		for _, x := range batch {
			c.w.Queue(&x.hdr, x.data)
		}
		c.armWriteDeadline()
		err := c.w.Flush()
		for i, x := range batch {
			releaseOut(x)
			batch[i] = nil
		}
		q.mu.Lock()
		q.spare = batch[:0]
		if err != nil {
			q.stopped = true
			fail = connErrorf("write: %v", err)
		} else if closeAfter {
			// Logout: the response is out; nothing more is sent.
			q.stopped = true
			fail = connErrorf("logout")
			if tc, ok := c.nc.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}
	}
	var dropped []*outPDU
	if q.stopped {
		dropped, q.pending = q.pending, nil
	}
	q.flushing = false
	q.mu.Unlock()
	for _, x := range dropped {
		releaseOut(x)
	}
	if fail != nil {
		c.closeWith(fail)
	}
}

// armWriteDeadline bounds the next write: an initiator that stops reading
// for NopTimeout loses its connection. The deadline moves on only when a
// quarter of the timeout has passed since it was last set, not for every
// batch: each SetWriteDeadline is a timer update in the runtime, and a
// busy connection flushes tens of thousands of times a second. A stuck
// write thus ends after three quarters of NopTimeout at the earliest.
// Called by the flusher of the moment only.
func (c *conn) armWriteDeadline() {
	now := time.Now()
	if timeout := c.opts.NopTimeout; now.Add(timeout).Sub(c.writeDeadline) > timeout/4 {
		c.writeDeadline = now.Add(timeout)
		c.nc.SetWriteDeadline(c.writeDeadline)
	}
}

func releaseOut(p *outPDU) {
	if p.onSent != nil {
		p.onSent()
	}
	if p.putBuf != nil {
		backstore.PutBuffer(p.putBuf)
	}
	if p.bufOf != nil {
		p.bufOf.Add(-p.bufN)
	}
	outPDUPool.Put(p)
}

// writeLoop is the writer goroutine: it flushes what the reader queued (and
// anything left when an inline flusher was busy) until stopW closes, then
// sends what remains and marks the queue stopped.
func (c *conn) writeLoop(done chan<- struct{}) {
	defer close(done)
	flush := func() {
		q := &c.outq
		q.mu.Lock()
		if q.flushing || len(q.pending) == 0 {
			q.mu.Unlock()
			return
		}
		q.flushing = true
		c.flushLocked()
	}
	for {
		select {
		case <-c.kick:
			flush()
		case <-c.stopW:
			flush()
			q := &c.outq
			q.mu.Lock()
			q.stopped = true
			dropped := q.pending
			q.pending = nil
			q.mu.Unlock()
			for _, x := range dropped {
				releaseOut(x)
			}
			return
		}
	}
}

// pingLoop sends NOP-In pings to an idle initiator and drops it when it
// does not answer in time (RFC 7143 11.19: a NOP-In with a valid TTT asks
// for a NOP-Out answer).
func (c *conn) pingLoop() {
	interval, timeout := c.opts.NopInterval, c.opts.NopTimeout
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		select {
		case <-c.quit:
			return
		case now := <-tick.C:
			if itt, ok := c.stalledDataOut(now, timeout); ok {
				c.closeWith(connErrorf("no Data-Out for task 0x%x in %v", itt, timeout))
				return
			}
			last := time.Unix(0, c.lastRecv.Load())
			if sent := c.pingSentAt.Load(); sent != 0 {
				if last.Before(time.Unix(0, sent)) && now.Sub(time.Unix(0, sent)) > timeout {
					c.closeWith(connErrorf("initiator did not answer a NOP-In in %v", timeout))
					return
				}
				if !last.Before(time.Unix(0, sent)) {
					c.pingSentAt.Store(0)
				}
				continue
			}
			if now.Sub(last) < interval {
				continue
			}
			ttt := c.allocPingTTT()
			p := getOutPDU()
			nop := NOPIn{LUN: 0, ITT: 0xffffffff, TTT: ttt}
			nop.Encode(&p.hdr)
			c.pingSentAt.Store(now.UnixNano())
			c.send(p)
		}
	}
}

// stalledDataOut finds a task that has waited for its data-out longer
// than limit: the initiator answers pings but never sends the data (or
// lost it), and at ErrorRecoveryLevel 0 nothing can ask for it again. The
// task would hold its buffer and CmdSN slot for the life of the connection.
func (c *conn) stalledDataOut(now time.Time, limit time.Duration) (uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for itt, t := range c.tasks {
		if t.state == taskReceiving && now.Sub(time.Unix(0, t.dataAt.Load())) > limit {
			return itt, true
		}
	}
	return 0, false
}

func (c *conn) allocPingTTT() uint32 {
	// Ping TTTs live in the top half of the TTT space, R2T TTTs in the bottom.
	t := c.pingTTT.Add(1) | 0x80000000
	if t == 0xffffffff {
		t = c.pingTTT.Add(1) | 0x80000000
	}
	return t
}

func (c *conn) sendReject(rej *RejectError) {
	p := getOutPDU()
	r := Reject{Reason: rej.Reason, DataSN_R2TSN: 0}
	r.Encode(&p.hdr)
	hdrCopy := rej.Header
	p.data = hdrCopy[:]
	p.advanceSN = true
	c.send(p)
}

// handleNOPOut answers a ping (RFC 7143 11.18): an ITT other than 0xffffffff
// asks for a NOP-In echoing the data; ITT 0xffffffff answers our own ping.
func (c *conn) handleNOPOut(h *BHS, data []byte) error {
	nop := h.NOPOut()
	defer c.commandDone(nop.Immediate)
	if nop.ITT == 0xffffffff {
		if nop.TTT != 0xffffffff {
			c.pingSentAt.Store(0)
		}
		return nil
	}
	if nop.TTT != 0xffffffff {
		return &RejectError{Reason: RejectProtocolError, Header: *h, Why: "NOP-Out with both ITT and TTT set"}
	}
	if len(data) > int(c.params.MaxXmitDataSegmentLength) {
		data = data[:c.params.MaxXmitDataSegmentLength]
	}
	p := getOutPDU()
	in := NOPIn{LUN: nop.LUN, ITT: nop.ITT, TTT: 0xffffffff}
	in.Encode(&p.hdr)
	p.data = data
	p.advanceSN = true
	c.send(p)
	return nil
}

// handleLogout ends the session or connection (RFC 7143 11.14). Running
// commands finish first so that nothing acknowledged is lost.
func (c *conn) handleLogout(h *BHS) error {
	req := h.LogoutRequest()
	c.commandDone(req.Immediate)
	if c.loggedOut.Load() {
		// One logout ends the connection; more would each start a
		// wait for the tasks.
		return &RejectError{Reason: RejectProtocolError, Header: *h, Why: "Logout Request after the connection's logout"}
	}
	resp := LogoutResponse{ITT: req.ITT, Time2Wait: 0, Time2Retain: 0}
	switch req.ReasonCode {
	case LogoutCloseSession, LogoutCloseConnection:
		if req.ReasonCode == LogoutCloseConnection && req.CID != c.cid {
			resp.Response = LogoutRespCIDNotFound
		}
	case LogoutRemoveForRecovery:
		// ErrorRecoveryLevel 0 has no connection recovery.
		resp.Response = LogoutRespRecoveryUnsupported
	default:
		return &RejectError{Reason: RejectInvalidPDUField, Header: *h, Why: "logout reason code"}
	}
	closing := resp.Response == LogoutRespSuccess
	if closing {
		c.loggedOut.Store(true)
	}
	c.goSender(func() {
		if closing && !c.waitTasks(c.opts.NopTimeout) {
			// Commands outlived the wait: abort them (those that check
			// their context stop). One still in its backstore keeps the
			// nexus, and a reservation it holds, until it returns: the
			// connection's teardown ends the session after its tasks.
			if !waitAll(c.abortTasks(func(*task) bool { return true }), tmfWait) {
				resp.Response = LogoutRespCleanupFailed
			}
		}
		if closing && resp.Response == LogoutRespSuccess {
			if c.sess != nil {
				// The I_T nexus ends before the initiator hears that it
				// did: a reservation it held is released by the time its
				// next session (or another initiator) acts on the
				// Logout Response. endSession also unregisters the
				// session, so the teardown's endSession leaves alone a new
				// session the initiator may have begun by then.
				c.svc.endSession(c.sess)
			}
		}
		p := getOutPDU()
		resp.Encode(&p.hdr)
		p.advanceSN = true
		p.closeAfter = closing
		c.send(p)
	})
	return nil
}

// noteMalformed counts a PDU answered with a Reject or a closed connection
// and logs it; the peer address is in c.log. Only the first of a connection
// is logged above debug level.
func (c *conn) noteMalformed(action, why string) {
	c.svc.malformed.Add(1)
	if action == "reject" {
		c.svc.observeReject("reject")
	} else {
		c.svc.observeReject("close")
	}
	if c.malformedSeen {
		c.log.Debug("malformed PDU", "action", action, "why", why)
		return
	}
	c.malformedSeen = true
	c.log.Warn("malformed PDU", "action", action, "why", why)
}

// moreToRead reports whether the initiator has sent more than the reader
// has taken up: bytes in the Reader's buffer or in the socket's receive
// queue (SIOCINQ, FIONREAD). Owned by the reader goroutine. Where it cannot tell,
// it says yes.
func (c *conn) moreToRead() bool {
	if c.r.Buffered() > 0 || c.sock == nil {
		return true
	}
	n, err := c.sock.Unread()
	return err != nil || n > 0
}

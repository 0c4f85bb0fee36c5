package iscsi

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi"
	"github.com/blockport/blockport/target/scsi/sense"
)

// taskState says who owns a task. Transitions happen under conn.mu.
type taskState uint8

const (
	taskReceiving taskState = iota // the reader goroutine collects its data-out
	taskExecuting                  // an executor goroutine owns it
)

// task is one SCSI command of a session.
type task struct {
	itt       uint32
	immediate bool
	lunRaw    uint64
	edtl      uint32
	cmd       scsi.Command
	cdb       [16]byte
	extCDB    []byte
	prepErr   error  // Prepare failed: drain unsolicited data, then answer with it
	buf       []byte // pooled; data-out or data-in
	bufN      int    // bytes of buf counted in conn.bufBytes; moves with buf to the answer PDU
	need      int    // bytes of data-out to collect (writes)
	received  int    // bytes of data-out stored so far
	state     taskState
	aborted   atomic.Bool
	// ctx is the context an executing task runs under, cancelled when it
	// is aborted, so that a long command (a SANITIZE waiting for its end,
	// a large copy) stops.
	ctx taskContext
	// waiters, guarded by conn.mu, is made by abortTasks for an executing
	// task and closed by complete once the task has stopped.
	waiters chan struct{}
	arrived time.Time // when the command PDU was taken up (latency metrics)
	// dataAt is when the task last received data-out (UnixNano), or
	// arrived; the ping loop closes a connection whose receiving task has
	// waited longer than NopTimeout (checkDataOut).
	dataAt atomic.Int64

	// Unsolicited data (RFC 7143 4.2.5.2: immediate data plus Data-Out with
	// TTT 0xffffffff up to FirstBurstLength). Owned by the reader goroutine.
	unsolDone      bool
	unsolOffset    uint32
	unsolExpDataSN uint32

	// Solicited data: R2Ts sent and not yet satisfied. Owned by the reader.
	r2tNext int
	r2tSN   uint32
	r2ts    []r2tSeq
}

type r2tSeq struct {
	ttt       uint32
	offset    uint32
	length    uint32
	received  uint32
	expDataSN uint32
}

// decodeLUN turns an 8-byte SAM LUN into a LUN number with the SCSI core's
// decoder; an address method it does not support gives a number no LU has.
func decodeLUN(raw uint64) uint64 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], raw)
	lun, err := scsi.DecodeLUN(b)
	if err != nil {
		return 1<<64 - 1
	}
	return lun
}

func (c *conn) handleSCSICommand(hdr *Header, queuedData []byte, queued bool) error {
	h := &hdr.BHS
	req := h.SCSICommand()
	dsl := h.DataSegmentLength()
	discard := func() error {
		if queued {
			return nil
		}
		return c.r.DiscardData()
	}
	if c.sess == nil {
		c.commandDone(req.Immediate)
		if err := discard(); err != nil {
			return err
		}
		return &RejectError{Reason: RejectProtocolError, Header: *h, Why: "SCSI command outside a normal session"}
	}
	c.mu.Lock()
	_, busy := c.tasks[req.ITT]
	c.mu.Unlock()
	if busy {
		c.commandDone(req.Immediate)
		if err := discard(); err != nil {
			return err
		}
		return &RejectError{Reason: RejectTaskInProgress, Header: *h, Why: "ITT already in use"}
	}
	if dsl > int(c.params.FirstBurstLength) || (dsl > 0 && !c.params.ImmediateData) {
		c.commandDone(req.Immediate)
		// RFC 7143 4.2.5.2: immediate data is bounded by FirstBurstLength
		// and needs ImmediateData=Yes.
		return connErrorf("immediate data of %d bytes not allowed", dsl)
	}

	t := newTask()
	t.itt = req.ITT
	t.immediate = req.Immediate
	t.lunRaw = req.LUN
	t.edtl = req.ExpectedDataTransferLength
	t.cdb = req.CDB
	t.arrived = time.Now()
	t.dataAt.Store(t.arrived.UnixNano())
	cdb := t.cdb[:]
	if len(hdr.AHS) > 0 {
		ext, err := ExtendedCDB(hdr.AHS)
		if err != nil {
			c.commandDone(req.Immediate)
			if err := discard(); err != nil {
				return err
			}
			return &RejectError{Reason: RejectInvalidPDUField, Header: *h, Why: err.Error()}
		}
		if len(ext) > 0 {
			t.extCDB = append(append(make([]byte, 0, 16+len(ext)), cdb...), ext...)
			cdb = t.extCDB
		}
	}
	t.cmd = scsi.Command{
		Nexus:          c.sess.nexus,
		LUN:            decodeLUN(req.LUN),
		CDB:            cdb,
		Attr:           scsi.TaskAttr(req.Attr),
		Tag:            uint64(req.ITT),
		ExpectedLength: req.ExpectedDataTransferLength,
	}
	dev := c.sess.target.Device
	if err := dev.Prepare(&t.cmd); err != nil {
		t.prepErr = err
	} else {
		n := t.cmd.TransferLength
		if t.cmd.Dir == scsi.DirWrite {
			n = min(int(t.edtl), n)
		}
		switch {
		case t.cmd.Dir == scsi.DirNone:
		case !c.reserveBuf(n):
			// SAM-5: the task set is full for this I_T nexus; the
			// initiator retries (Linux lowers its queue depth).
			t.prepErr = scsi.StatusError(scsi.StatusTaskSetFull)
			t.cmd.Dir = scsi.DirNone
		case t.cmd.Dir == scsi.DirWrite:
			t.need = n
			t.buf, t.bufN = backstore.GetBuffer(n)[:n], n
		default:
			t.buf, t.bufN = backstore.GetBuffer(n)[:n], n
		}
	}

	// Immediate data lands at offset 0.
	if dsl > 0 {
		if queued {
			t.received = copy(t.buf[:t.need], queuedData)
		} else if err := c.storeData(t, 0, dsl); err != nil {
			c.commandDone(req.Immediate)
			c.releaseTask(t)
			return err
		}
	}
	t.unsolOffset = uint32(dsl)
	t.unsolDone = req.Final
	if t.unsolDone {
		t.r2tNext = min(int(t.unsolOffset), t.need)
	}
	c.mu.Lock()
	c.tasks[t.itt] = t
	c.mu.Unlock()
	c.advance(t)
	return nil
}

// storeData reads n bytes of the current PDU's data segment into the task's
// buffer at off. The common case reads straight into the buffer; bytes
// beyond what the command needs (an underflow) are read and dropped.
func (c *conn) storeData(t *task, off, n int) error {
	t.dataAt.Store(time.Now().UnixNano())
	if off+n <= t.need {
		if err := c.r.ReadData(t.buf[off : off+n]); err != nil {
			return dataErr(err)
		}
		t.received += n
		return nil
	}
	if cap(c.scratch) < n {
		c.scratch = make([]byte, n)
	}
	s := c.scratch[:n]
	if err := c.r.ReadData(s); err != nil {
		return dataErr(err)
	}
	if off < t.need {
		t.received += copy(t.buf[off:t.need], s)
	}
	return nil
}

// dataErr turns a data digest error into a connection error: with
// ErrorRecoveryLevel 0 the lost data cannot be asked for again.
func dataErr(err error) error {
	var de *DigestError
	if errors.As(err, &de) {
		return connErrorf("data digest error: %v", err)
	}
	return err
}

// advance moves a task on after data arrived: more R2Ts, or execution.
func (c *conn) advance(t *task) {
	if !t.unsolDone {
		return
	}
	if t.prepErr == nil && t.received < t.need {
		c.sendR2Ts(t)
		return
	}
	if len(t.r2ts) > 0 {
		return
	}
	c.startTask(t)
}

// sendR2Ts keeps up to MaxOutstandingR2T transfers requested, each at most
// MaxBurstLength (RFC 7143 4.2.5.1).
func (c *conn) sendR2Ts(t *task) {
	for len(t.r2ts) < int(c.params.MaxOutstandingR2T) && t.r2tNext < t.need {
		length := min(t.need-t.r2tNext, int(c.params.MaxBurstLength))
		ttt := c.nextTTT
		c.nextTTT++
		if c.nextTTT >= 0x80000000 {
			c.nextTTT = 1
		}
		seq := r2tSeq{ttt: ttt, offset: uint32(t.r2tNext), length: uint32(length)}
		t.r2ts = append(t.r2ts, seq)
		p := getOutPDU()
		r := R2T{LUN: t.lunRaw, ITT: t.itt, TTT: ttt, R2TSN: t.r2tSN, BufferOffset: seq.offset, DesiredDataTransferLength: seq.length}
		r.Encode(&p.hdr)
		t.r2tSN++
		t.r2tNext += length
		c.send(p)
	}
}

// handleDataOut stores one Data-Out PDU (RFC 7143 11.7) into its task.
func (c *conn) handleDataOut(h *BHS) error {
	d := h.DataOut()
	dsl := h.DataSegmentLength()
	// The state is read with the lookup: an executing task may complete
	// and be reused (zeroed) at any moment, while a receiving one is
	// changed only by this goroutine (an abort just marks it).
	c.mu.Lock()
	t := c.tasks[d.ITT]
	if t != nil && t.state != taskReceiving {
		t = nil
	}
	c.mu.Unlock()
	if t == nil {
		// Unknown, aborted or already executing: the data is dropped
		// quietly.
		return c.r.DiscardData()
	}
	if t.aborted.Load() {
		return c.r.DiscardData()
	}
	if d.TTT == 0xffffffff {
		// Unsolicited data: in order, DataSN from 0, within FirstBurstLength.
		if t.unsolDone {
			return connErrorf("unsolicited Data-Out after the final one (ITT 0x%x)", d.ITT)
		}
		if d.DataSN != t.unsolExpDataSN {
			c.dataSequenceError(t, d.DataSN, t.unsolExpDataSN)
		}
		if d.BufferOffset != t.unsolOffset {
			return connErrorf("Data-Out offset %d, expected %d (ITT 0x%x)", d.BufferOffset, t.unsolOffset, d.ITT)
		}
		if uint64(t.unsolOffset)+uint64(dsl) > uint64(c.params.FirstBurstLength) {
			return connErrorf("unsolicited data beyond FirstBurstLength (ITT 0x%x)", d.ITT)
		}
		if err := c.storeData(t, int(d.BufferOffset), dsl); err != nil {
			return err
		}
		t.unsolExpDataSN = d.DataSN + 1
		t.unsolOffset += uint32(dsl)
		if d.Final {
			t.unsolDone = true
			t.r2tNext = min(int(t.unsolOffset), t.need)
		}
		c.advance(t)
		return nil
	}
	idx := -1
	for i := range t.r2ts {
		if t.r2ts[i].ttt == d.TTT {
			idx = i
			break
		}
	}
	if idx < 0 {
		if err := c.r.DiscardData(); err != nil {
			return err
		}
		return &RejectError{Reason: RejectInvalidPDUField, Header: *h, Why: "Data-Out with an unknown TTT"}
	}
	seq := &t.r2ts[idx]
	// RFC 7143 4.2.5.1 with DataPDUInOrder=Yes: each sequence arrives in
	// order, DataSN counting from 0 per R2T. An offset out of order cannot be
	// followed and ends the connection.
	if d.DataSN != seq.expDataSN {
		c.dataSequenceError(t, d.DataSN, seq.expDataSN)
	}
	if d.BufferOffset != seq.offset+seq.received || seq.received+uint32(dsl) > seq.length {
		return connErrorf("Data-Out offset %d length %d outside R2T [%d,+%d) (ITT 0x%x)",
			d.BufferOffset, dsl, seq.offset, seq.length, d.ITT)
	}
	if err := c.storeData(t, int(d.BufferOffset), dsl); err != nil {
		return err
	}
	seq.received += uint32(dsl)
	seq.expDataSN = d.DataSN + 1
	if d.Final {
		if seq.received != seq.length {
			return connErrorf("Data-Out sequence ended after %d of %d bytes (ITT 0x%x)", seq.received, seq.length, d.ITT)
		}
		t.r2ts = append(t.r2ts[:idx], t.r2ts[idx+1:]...)
	}
	c.advance(t)
	return nil
}

// dataSequenceError fails a write whose Data-Out PDUs came with a wrong
// DataSN. ErrorRecoveryLevel 0 cannot ask for the data again, but the data
// still arrives by offset, so the task takes it all and then fails with
// ABORTED COMMAND / DATA PHASE ERROR (SPC-5 4.4) instead of being written:
// the initiator sees the failure and the connection stays up.
func (c *conn) dataSequenceError(t *task, got, want uint32) {
	if c.dataSNSeen {
		c.log.Debug("Data-Out DataSN error", "itt", t.itt, "datasn", got, "expected", want)
	} else {
		c.dataSNSeen = true
		c.log.Warn("Data-Out DataSN error (further ones on this connection at debug level)", "itt", t.itt, "datasn", got, "expected", want)
	}
	if t.prepErr == nil {
		t.prepErr = sense.DataPhaseError()
	}
}

// startTask hands a task whose data is complete to an executor goroutine.
func (c *conn) startTask(t *task) {
	c.mu.Lock()
	if t.aborted.Load() {
		// abortTasks already dropped it while it was receiving.
		c.mu.Unlock()
		return
	}
	t.state = taskExecuting
	c.mu.Unlock()
	if t.prepErr != nil {
		c.complete(t, 0, t.prepErr, viaWriter)
		return
	}
	if t.cmd.Dir == scsi.DirWrite {
		t.cmd.Data = t.buf[:t.need]
	} else {
		t.cmd.Data = t.buf
	}
	dev := c.sess.target.Device
	ctx := &t.ctx
	small := t.cmd.TransferLength <= inlineExecMax
	switch {
	case small && t.cmd.Immediate():
		// A read or write of a memory LU is a copy: handing it to another
		// goroutine would cost more (a wake-up of another thread per
		// command on a small machine). The answer is held until the
		// reader has taken up everything the initiator sent, then the
		// whole burst is answered with one write (flushHeld), so the
		// reader never blocks in a write while commands queue up behind.
		n, err := dev.Execute(ctx, &t.cmd)
		c.complete(t, n, err, holdForReader)
		return
	case small && t.cmd.Dir == scsi.DirRead && c.window.inflight.Load() <= 1 && !c.moreToRead():
		// Queue depth 1 and a small read: nothing else is waiting to be
		// read, and the initiator is waiting for this answer (so it reads
		// while we write). Running it here saves two goroutine hand-offs.
		// inflight alone cannot tell: commands still in the socket are not
		// counted, and taking them one by one behind a slow backstore
		// would serialize a deep queue.
		n, err := dev.Execute(ctx, &t.cmd)
		c.complete(t, n, err, writeHere)
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		n, err := dev.Execute(ctx, &t.cmd)
		// The initiator waits for this answer: write it from here when the
		// socket is idle rather than waking the writer goroutine.
		c.complete(t, n, err, writeHere)
	}()
}

// inlineExecMax bounds the reads the reader goroutine runs itself at queue
// depth 1: small enough that the answer fits the socket's send buffer.
const inlineExecMax = 64 << 10

// complete answers a task: Data-In with the status in the last PDU where
// RFC 7143 11.7.3 allows it, else a SCSI Response with sense data. how
// says who writes it to the socket (sendMode).
func (c *conn) complete(t *task, n int, err error, how sendMode) {
	c.mu.Lock()
	if c.tasks[t.itt] == t {
		delete(c.tasks, t.itt)
	}
	// Out of the map, the task is beyond the reach of abortTasks: neither
	// aborted nor waiters change from here on.
	waiters := t.waiters
	c.mu.Unlock()
	if t.aborted.Load() {
		c.releaseTask(t)
		c.commandDone(t.immediate)
		if waiters != nil {
			close(waiters)
		}
		return
	}
	// The slot is free before the answer is written, so that the
	// MaxCmdSN the answer carries counts it: written here at once, it
	// would otherwise show the window one command short, closed at
	// queue_depth 1 until some later PDU said otherwise.
	c.commandDone(t.immediate)
	c.answer(t, n, err, how)
	if waiters != nil {
		close(waiters)
	}
	// Nothing refers to the task any more: the reader looks tasks up in
	// the map only, and an ABORT TASK that found it there before it left
	// checks the ITT as well as the pointer.
	putTask(t)
}

// answer sends the response of a completed task (complete).
func (c *conn) answer(t *task, n int, err error, how sendMode) {
	c.sess.target.Device.Completed(&t.cmd, n, err, time.Since(t.arrived))
	status, sense := scsi.StatusOf(err)

	// Residuals (RFC 7143 11.4.5): writes against the CDB's length, reads
	// against the data the command produced.
	var produced int64
	if t.cmd.Dir == scsi.DirWrite {
		produced = int64(t.cmd.TransferLength)
	} else if err == nil {
		produced = int64(n)
	}
	residual := int64(t.edtl) - produced
	under, over := residual > 0, residual < 0
	if over {
		residual = -residual
	}

	sendLen := 0
	if t.cmd.Dir == scsi.DirRead && err == nil {
		sendLen = int(min(int64(n), int64(t.edtl)))
	}
	if sendLen > 0 && status == scsi.StatusGood {
		c.sendDataIn(t, sendLen, uint8(status), under, over, uint32(residual), how)
		return
	}
	p := getOutPDU()
	resp := SCSIResponse{
		Overflow:      over,
		Underflow:     under,
		Status:        uint8(status),
		ITT:           t.itt,
		ResidualCount: uint32(residual),
	}
	if sendLen > 0 {
		// Data went out in Data-In PDUs; the response counts them.
		c.sendDataInNoStatus(t, sendLen)
		resp.ExpDataSN = uint32(c.dataInPDUs(sendLen))
	}
	resp.Encode(&p.hdr)
	if len(sense) > 0 {
		// RFC 7143 11.4.7: SenseLength then the sense data.
		p.data = make([]byte, 2+len(sense))
		binary.BigEndian.PutUint16(p.data, uint16(len(sense)))
		copy(p.data[2:], sense)
	}
	p.advanceSN = true
	if t.buf != nil {
		c.handOver(t, p)
	}
	c.enqueue(p, how)
}

// maxConnBufBytes bounds conn.bufBytes: 64 MiB is eight commands of the
// largest transfer (8 MiB, VPD Block Limits) or 512 of 128 KiB.
const maxConnBufBytes = 64 << 20

// reserveBuf counts n bytes of command buffer in, or reports that the
// connection holds too much already. A connection holding nothing may
// always take one command.
func (c *conn) reserveBuf(n int) bool {
	if v := c.bufBytes.Add(int64(n)); v > maxConnBufBytes && v != int64(n) {
		c.bufBytes.Add(-int64(n))
		return false
	}
	return true
}

// handOver gives t's buffer, and its count, to p: both go back once p is
// sent (releaseOut).
func (c *conn) handOver(t *task, p *outPDU) {
	p.putBuf, p.bufOf, p.bufN = t.buf, &c.bufBytes, int64(t.bufN)
	t.buf, t.bufN = nil, 0
}

func (c *conn) dataInPDUs(n int) int {
	seg := int(c.params.MaxXmitDataSegmentLength)
	return (n + seg - 1) / seg
}

// sendDataIn sends n bytes of t.buf as Data-In PDUs no larger than the
// initiator's MaxRecvDataSegmentLength, the last one carrying the status.
// The buffer goes straight to the socket and back to the pool afterwards.
func (c *conn) sendDataIn(t *task, n int, status uint8, under, over bool, residual uint32, how sendMode) {
	seg := int(c.params.MaxXmitDataSegmentLength)
	burst := int(c.params.MaxBurstLength)
	buf := t.buf
	var dataSN uint32
	for off := 0; off < n; off += seg {
		end := min(off+seg, n)
		last := end == n
		p := getOutPDU()
		d := DataIn{
			// RFC 7143 11.7.1: F marks the end of each input sequence, which
			// MaxBurstLength bounds.
			Final:        last || end%burst == 0,
			ITT:          t.itt,
			TTT:          0xffffffff,
			DataSN:       dataSN,
			BufferOffset: uint32(off),
		}
		if last {
			d.HasStatus = true
			d.Status = status
			d.Underflow, d.Overflow = under, over
			d.ResidualCount = residual
			p.advanceSN = true
			c.handOver(t, p)
		} else {
			p.keepStatSN = true
		}
		d.Encode(&p.hdr)
		p.data = buf[off:end]
		dataSN++
		c.push(p)
	}
	c.flush(how)
}

// sendDataInNoStatus sends Data-In for a command whose status needs a SCSI
// Response (sense data cannot ride in a Data-In).
func (c *conn) sendDataInNoStatus(t *task, n int) {
	seg := int(c.params.MaxXmitDataSegmentLength)
	burst := int(c.params.MaxBurstLength)
	var dataSN uint32
	for off := 0; off < n; off += seg {
		end := min(off+seg, n)
		p := getOutPDU()
		d := DataIn{Final: end == n || end%burst == 0, ITT: t.itt, TTT: 0xffffffff, DataSN: dataSN, BufferOffset: uint32(off)}
		d.Encode(&p.hdr)
		p.keepStatSN = true
		p.data = t.buf[off:end]
		dataSN++
		c.push(p)
	}
}

// releaseTask returns a dropped task's buffer.
func (c *conn) releaseTask(t *task) {
	if t.buf != nil {
		backstore.PutBuffer(t.buf)
		t.buf = nil
	}
	c.bufBytes.Add(-int64(t.bufN))
	t.bufN = 0
}

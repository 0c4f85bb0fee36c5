package iscsi

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Bounds on what one connection can make the target hold.

// sendRaw sends one SCSI command PDU without data and without reading.
func (in *initiator) sendRaw(cdb []byte, edtl uint32, write, immediate bool, cmdSN uint32) uint32 {
	in.t.Helper()
	itt := in.itt
	in.itt++
	var c16 [16]byte
	copy(c16[:], cdb)
	req := SCSICommand{Final: true, Immediate: immediate, Read: !write && edtl > 0, Write: write, Attr: TaskAttrSimple,
		LUN: in.lun, ITT: itt, ExpectedDataTransferLength: edtl, CmdSN: cmdSN, ExpStatSN: in.expSN, CDB: c16}
	var h BHS
	req.Encode(&h)
	if err := in.w.WritePDU(&h, nil); err != nil {
		in.t.Fatal(err)
	}
	return itt
}

// connOf is the target's side of the one connection the fabric serves.
func connOf(t *testing.T, f *fabric) *conn {
	t.Helper()
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if len(f.svc.conns) != 1 {
		t.Fatalf("%d connections, want 1", len(f.svc.conns))
	}
	for c := range f.svc.conns {
		return c
	}
	return nil
}

// TestConnBufferBudget: writes that wait for data that never comes hold
// their buffers; past maxConnBufBytes the next command gets TASK SET FULL
// instead of another 8 MiB. Aborting them gives the bytes back, and after
// ordinary I/O the count is back at zero.
func TestConnBufferBudget(t *testing.T) {
	f := startFabric(t, Options{})
	in := dial(t, f)
	in.mustLogin()
	in.clearUA()
	const eight = 8 << 20
	var waiting []uint32
	for i := 0; i < maxConnBufBytes/eight; i++ {
		itt := in.sendRaw(write10(0, eight/512), eight, true, false, in.cmdSN)
		in.cmdSN++
		pdu, err := in.r.ReadPDU()
		if err != nil || pdu.Header.Opcode() != OpR2T {
			t.Fatalf("write %d: want an R2T, got %v (%v)", i, pdu.Header.Opcode(), err)
		}
		waiting = append(waiting, itt)
	}
	c := connOf(t, f)
	if got := c.bufBytes.Load(); got != maxConnBufBytes {
		t.Fatalf("%d bytes held by %d waiting writes, want %d", got, len(waiting), maxConnBufBytes)
	}
	full := in.sendRaw(write10(0, eight/512), eight, true, false, in.cmdSN)
	in.cmdSN++
	if st := in.responses(full)[full]; st != 0x28 {
		t.Fatalf("a write past the budget: status %#x, want TASK SET FULL", st)
	}
	// A small read still fits? No: the budget is spent; it is refused too.
	small := in.sendRaw(read10(0, 1), 512, false, false, in.cmdSN)
	in.cmdSN++
	if st := in.responses(small)[small]; st != 0x28 {
		t.Fatalf("a read past the budget: status %#x, want TASK SET FULL", st)
	}
	// ABORT TASK SET drops the waiting writes and their bytes.
	if got := in.tmf(TMFAbortTaskSet, in.lun, 0); got != TMFRespFunctionComplete {
		t.Fatalf("ABORT TASK SET: %d", got)
	}
	if got := c.bufBytes.Load(); got != 0 {
		t.Fatalf("%d bytes still counted after the abort", got)
	}
	// Ordinary reads and writes, of every size path, leave nothing counted.
	for _, blocks := range []uint16{1, 256, 4096} {
		data := make([]byte, int(blocks)*512)
		if r := in.command(write10(8, blocks), uint32(len(data)), data, 0); r.status != 0 {
			t.Fatalf("WRITE of %d blocks: %#x", blocks, r.status)
		}
		if r := in.command(read10(8, blocks), uint32(len(data)), nil, 0); r.status != 0 {
			t.Fatalf("READ of %d blocks: %#x", blocks, r.status)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.bufBytes.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes counted after the I/O ended", c.bufBytes.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestClosedWindowDropsNextCmdSN: with the window full (MaxCmdSN =
// ExpCmdSN-1) even a command with CmdSN = ExpCmdSN is ignored (RFC 7143
// 4.2.2.1), so queue depth bounds what the target takes in.
func TestClosedWindowDropsNextCmdSN(t *testing.T) {
	f := startFabric(t, Options{QueueDepth: 2})
	in := dial(t, f)
	in.mustLogin()
	in.clearUA()
	// The last TEST UNIT READY's slot is given back just after its answer
	// went out: wait for it, so that exactly two slots are open.
	c := connOf(t, f)
	deadline := time.Now().Add(5 * time.Second)
	for c.window.inflight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d commands still counted in the window", c.window.inflight.Load())
		}
		time.Sleep(time.Millisecond)
	}
	a := in.sendRaw(write10(0, 1), 512, true, false, in.cmdSN)
	b := in.sendRaw(write10(1, 1), 512, true, false, in.cmdSN+1)
	third := in.sendRaw(write10(2, 1), 512, true, false, in.cmdSN+2)
	seen := map[uint32]bool{}
	in.nc.SetReadDeadline(time.Now().Add(time.Second))
	for {
		pdu, err := in.r.ReadPDU()
		if err != nil {
			break // nothing more within the second
		}
		switch pdu.Header.Opcode() {
		case OpR2T:
			seen[pdu.Header.R2T().ITT] = true
		case OpSCSIResponse:
			seen[pdu.Header.SCSIResponse().ITT] = true
		}
	}
	if !seen[a] || !seen[b] || seen[third] {
		t.Fatalf("answers %v: want R2Ts for %#x and %#x, nothing for %#x beyond the window", seen, a, b, third)
	}
}

// TestImmediateCommandBound: immediate commands skip the window; past the
// queue depth of them in flight the next is refused with Reject reason
// 0x06 (too many immediate commands).
func TestImmediateCommandBound(t *testing.T) {
	f := startFabric(t, Options{QueueDepth: 2})
	in := dial(t, f)
	in.mustLogin()
	in.clearUA()
	in.sendRaw(write10(0, 1), 512, true, true, in.cmdSN)
	in.sendRaw(write10(1, 1), 512, true, true, in.cmdSN)
	in.sendRaw(write10(2, 1), 512, true, true, in.cmdSN)
	var r2ts, rejects int
	in.nc.SetReadDeadline(time.Now().Add(time.Second))
	for {
		pdu, err := in.r.ReadPDU()
		if err != nil {
			break
		}
		switch pdu.Header.Opcode() {
		case OpR2T:
			r2ts++
		case OpReject:
			if reason := pdu.Header[2]; reason != RejectImmediateCommand {
				t.Fatalf("reject reason %#x, want %#x", reason, RejectImmediateCommand)
			}
			rejects++
		}
	}
	if r2ts != 2 || rejects != 1 {
		t.Fatalf("%d R2Ts and %d rejects, want 2 and 1", r2ts, rejects)
	}
}

// TestSecondLogoutRejected: one logout per connection; another is
// rejected instead of starting a second wait for the tasks.
func TestSecondLogoutRejected(t *testing.T) {
	f := startFabric(t, Options{})
	in := dial(t, f)
	in.mustLogin()
	in.clearUA()
	in.startWrite(0) // a task that waits for its data keeps the logout waiting
	in.sendLogout()
	in.sendLogout()
	in.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	pdu, err := in.r.ReadPDU()
	if err != nil || pdu.Header.Opcode() != OpReject {
		t.Fatalf("second logout: want a Reject first, got %v (%v)", pdu.Header.Opcode(), err)
	}
}

// TestDataSNErrorsLogOnce: every Data-Out PDU of a command can carry a
// wrong DataSN; the first is logged as a warning, the rest at debug
// level, so one command cannot write thousands of log lines.
func TestDataSNErrorsLogOnce(t *testing.T) {
	var logs syncBuffer
	f := startFabric(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	in := dial(t, f)
	in.mustLogin()
	in.clearUA()
	for round := range 2 {
		itt, ttt := in.startWrite(uint32(round))
		// One block in four 128-byte PDUs, all with DataSN 7.
		for i := range 4 {
			d := DataOut{Final: i == 3, LUN: in.lun, ITT: itt, TTT: ttt, DataSN: 7, BufferOffset: uint32(i * 128), ExpStatSN: in.expSN}
			var h BHS
			d.Encode(&h)
			if err := in.w.WritePDU(&h, make([]byte, 128)); err != nil {
				t.Fatal(err)
			}
		}
		if st := in.responses(itt)[itt]; st != 0x02 {
			t.Fatalf("round %d: write with wrong DataSNs: status %#x, want CHECK CONDITION", round, st)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"Data-Out DataSN error"); n != 1 {
		t.Fatalf("%d warnings for 8 DataSN errors, want 1:\n%s", n, logs.String())
	}
}

// TestConnectionsPerSource: a source holds at most MaxConnectionsPerSource
// connections, logged in or not; the next is closed before it is read,
// and one more fits once a connection ends.
func TestConnectionsPerSource(t *testing.T) {
	f := startFabric(t, Options{MaxConnectionsPerSource: 2})
	a := loginAs(t, f, "iqn.2026-11.io.blockport:one", 1)
	loginAs(t, f, "iqn.2026-11.io.blockport:two", 2)
	third := dial(t, f)
	third.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := third.nc.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("third connection from one source: read %d bytes, %v; want it closed", n, err)
	}
	a.nc.Close()
	connected := func() int {
		g := f.svc.guard
		g.mu.Lock()
		defer g.mu.Unlock()
		if st := g.sources[netip.MustParseAddr("127.0.0.1")]; st != nil {
			return st.connected
		}
		return 0
	}
	deadline := time.Now().Add(5 * time.Second)
	for connected() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections counted after one of two closed", connected())
		}
		time.Sleep(5 * time.Millisecond)
	}
	loginAs(t, f, "iqn.2026-11.io.blockport:three", 3)
}

// TestDataOutTimeout: an initiator that keeps the connection alive but
// never sends the data a write waits for loses the connection after
// NopTimeout, with a log line that says why.
func TestDataOutTimeout(t *testing.T) {
	var logs syncBuffer
	f := startFabric(t, Options{NopInterval: 100 * time.Millisecond, NopTimeout: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	in := dial(t, f)
	in.mustLogin()
	in.clearUA()
	in.startWrite(0)
	// Keep the connection busy with pings of our own, so that only the
	// missing data can end it.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := uint32(0); ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			nop := NOPOut{Immediate: true, ITT: 0x1000 + i, TTT: 0xffffffff, CmdSN: in.cmdSN}
			var h BHS
			nop.Encode(&h)
			if in.w.WritePDU(&h, nil) != nil {
				return
			}
		}
	}()
	start := time.Now()
	in.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := in.r.ReadPDU(); err != nil {
			break
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("connection ended after %v", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "no Data-Out for task") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line about the missing Data-Out:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUnreadAnswersEndConnection: an initiator that keeps sending pings
// with data but never reads the echoes must not make the target queue
// without end. Either the target stops reading too (its reader was the
// one writing, and is blocked: our writes stall), or the queue passes
// maxQueuedBytes and the connection ends. What must not happen is the
// target reading all 64 MiB of pings while it queues their answers.
func TestUnreadAnswersEndConnection(t *testing.T) {
	old := maxQueuedBytes
	maxQueuedBytes = 1 << 20
	t.Cleanup(func() { maxQueuedBytes = old })
	var logs syncBuffer
	f := startFabric(t, Options{NopInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	in := dial(t, f)
	in.mustLogin()
	payload := make([]byte, 8192)
	for i := uint32(0); i < 8192; i++ {
		if strings.Contains(logs.String(), "does not read its answers") {
			return
		}
		nop := NOPOut{Immediate: true, ITT: i, TTT: 0xffffffff, CmdSN: in.cmdSN}
		var h BHS
		nop.Encode(&h)
		in.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if err := in.w.WritePDU(&h, payload); err != nil {
			return // the target stopped reading, or closed the connection
		}
	}
	time.Sleep(100 * time.Millisecond)
	if !strings.Contains(logs.String(), "does not read its answers") {
		t.Fatalf("the target read 64 MiB of pings and queued their answers:\n%s", logs.String())
	}
}

// TestWindowOpenInAnswers: the MaxCmdSN an answer carries counts the slot
// its own command gave back. At queue_depth 1 every answer used to show a
// closed window (MaxCmdSN = ExpCmdSN-1), and an initiator that obeys it
// waited for the next NOP-In before sending again.
func TestWindowOpenInAnswers(t *testing.T) {
	f := startFabric(t, Options{QueueDepth: 1})
	in := dial(t, f)
	in.mustLogin()
	for i := range 20 {
		in.sendRaw([]byte{0, 0, 0, 0, 0, 0}, 0, false, false, in.cmdSN)
		in.cmdSN++
		pdu, err := in.r.ReadPDU()
		if err != nil || pdu.Header.Opcode() != OpSCSIResponse {
			t.Fatalf("command %d: %v %v", i, pdu.Header.Opcode(), err)
		}
		r := pdu.Header.SCSIResponse()
		in.expSN = r.StatSN + 1
		if r.ExpCmdSN != in.cmdSN || r.MaxCmdSN != in.cmdSN {
			t.Fatalf("command %d: ExpCmdSN %d MaxCmdSN %d, want both %d (one slot, free)", i, r.ExpCmdSN, r.MaxCmdSN, in.cmdSN)
		}
	}
}

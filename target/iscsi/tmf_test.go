package iscsi

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi"
)

// loginAs opens a full feature session as initiator name with the ISID
// ending in isid (another I_T nexus for each).
func loginAs(t *testing.T, f *fabric, name string, isid byte) *initiator {
	t.Helper()
	in := dial(t, f)
	in.isid[5] = isid
	if resp, _ := in.login(normalKeys(name), nil); resp.StatusClass != 0 || resp.NSG != 3 {
		t.Fatalf("%s login: %d/%d", name, resp.StatusClass, resp.StatusDetail)
	}
	in.maxSeg = 8192
	return in
}

// rawLUN is the 8-byte SAM LUN of lun as it travels in a PDU.
func rawLUN(lun uint64) uint64 {
	b := scsi.EncodeLUN(lun)
	return binary.BigEndian.Uint64(b[:])
}

// startWrite sends a one-block WRITE(10) to the initiator's LUN without
// data and returns its ITT and the TTT of the R2T that solicits the data:
// the task then waits in the target for its Data-Out.
func (in *initiator) startWrite(lba uint32) (itt, ttt uint32) {
	in.t.Helper()
	itt = in.itt
	in.itt++
	var cdb [16]byte
	copy(cdb[:], write10(lba, 1))
	req := SCSICommand{Final: true, Write: true, Attr: TaskAttrSimple, LUN: in.lun, ITT: itt,
		ExpectedDataTransferLength: 512, CmdSN: in.cmdSN, ExpStatSN: in.expSN, CDB: cdb}
	in.cmdSN++
	var h BHS
	req.Encode(&h)
	if err := in.w.WritePDU(&h, nil); err != nil {
		in.t.Fatal(err)
	}
	pdu, err := in.r.ReadPDU()
	if err != nil || pdu.Header.Opcode() != OpR2T {
		in.t.Fatalf("WRITE without data: want an R2T, got %v (%v)", pdu.Header.Opcode(), err)
	}
	r := pdu.Header.R2T()
	if r.ITT != itt {
		in.t.Fatalf("R2T for ITT %#x, want %#x", r.ITT, itt)
	}
	return itt, r.TTT
}

func (in *initiator) sendData(itt, ttt uint32, data []byte) {
	in.t.Helper()
	d := DataOut{Final: true, LUN: in.lun, ITT: itt, TTT: ttt, ExpStatSN: in.expSN}
	var h BHS
	d.Encode(&h)
	if err := in.w.WritePDU(&h, data); err != nil {
		in.t.Fatal(err)
	}
}

// tmf sends an immediate task management request and returns its response code.
func (in *initiator) tmf(fn uint8, rawLUN uint64, ref uint32) uint8 {
	in.t.Helper()
	req := TaskMgmtRequest{Immediate: true, Function: fn | 0x80, LUN: rawLUN, ITT: in.itt, ReferencedTaskTag: ref, CmdSN: in.cmdSN, ExpStatSN: in.expSN}
	in.itt++
	var h BHS
	req.Encode(&h)
	if err := in.w.WritePDU(&h, nil); err != nil {
		in.t.Fatal(err)
	}
	pdu, err := in.r.ReadPDU()
	if err != nil || pdu.Header.Opcode() != OpTaskMgmtResponse {
		in.t.Fatalf("TMF response: %v %v", pdu.Header.Opcode(), err)
	}
	r := pdu.Header.TaskMgmtResponse()
	in.expSN = r.StatSN + 1
	return r.Response
}

// responses reads SCSI responses until those of every ITT in want have
// arrived (bounded by the connection's deadline) and returns all it read,
// ITT -> status.
func (in *initiator) responses(want ...uint32) map[uint32]uint8 {
	in.t.Helper()
	got := map[uint32]uint8{}
	missing := func() bool {
		for _, itt := range want {
			if _, ok := got[itt]; !ok {
				return true
			}
		}
		return false
	}
	for missing() {
		pdu, err := in.r.ReadPDU()
		if err != nil {
			in.t.Fatalf("waiting for the responses to %x (have %v): %v", want, got, err)
		}
		if pdu.Header.Opcode() != OpSCSIResponse {
			in.t.Fatalf("unexpected %v", pdu.Header.Opcode())
		}
		r := pdu.Header.SCSIResponse()
		in.expSN = r.StatSN + 1
		got[r.ITT] = r.Status
	}
	return got
}

// Task management reaches only the logical units that the requesting
// initiator's LUN masking lets it see, under its own numbering: node B,
// which sees LU 1 as its LUN 0 and nothing else, can neither touch node
// A's tasks on LU 0 (A's LUN 0) nor name A's LUN 1 directly.
func TestTaskManagementFollowsMasking(t *testing.T) {
	f := startFabricWith(t, Options{}, func(tg *Target) {
		store, err := backstore.Open(backstore.Options{Kind: "memory", Size: 8 << 20, BlockSize: 512})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		lu, err := scsi.NewLU(scsi.LUConfig{Backstore: store, BlockSize: 512, Serial: "test1", NAA: scsi.NewNAA([]byte("t1"))})
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.Device.AddLU(1, lu); err != nil {
			t.Fatal(err)
		}
		err = tg.Device.SetMasking(&scsi.Masking{Initiators: map[string][]scsi.LUNMapping{
			"iqn.2026-11.io.blockport:node-a": {{LUN: 0, As: 0}, {LUN: 1, As: 1}},
			"iqn.2026-11.io.blockport:node-b": {{LUN: 1, As: 0}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	})
	a := loginAs(t, f, "iqn.2026-11.io.blockport:node-a", 1)
	b := loginAs(t, f, "iqn.2026-11.io.blockport:node-b", 2)
	for _, lun := range []uint64{0, 1} {
		a.lun = rawLUN(lun)
		a.clearUA()
	}
	b.clearUA()
	block := bytes.Repeat([]byte{0xa5}, 512)

	// B cannot see A's LUN 1: its task management there finds no LUN and
	// leaves A's task alone.
	a.lun = rawLUN(1)
	itt, ttt := a.startWrite(10)
	for _, fn := range []uint8{TMFClearTaskSet, TMFAbortTaskSet, TMFLogicalUnitReset} {
		if got := b.tmf(fn, rawLUN(1), 0); got != TMFRespLUNNotExist {
			t.Errorf("function %d on a LUN masked from B: response %d, want LUN does not exist", fn, got)
		}
	}
	a.sendData(itt, ttt, block)
	if got := a.responses(itt); got[itt] != 0 {
		t.Fatalf("A's write after B's TMFs on a masked LUN: responses %v, want GOOD for %#x", got, itt)
	}

	// B's LUN 0 is A's LUN 1: CLEAR TASK SET there clears A's task on LU 1
	// and not A's task on its LUN 0, a different LU.
	a.lun = rawLUN(1)
	onLU1, ttt1 := a.startWrite(20)
	a.lun = rawLUN(0)
	onLU0, ttt0 := a.startWrite(20)
	if got := b.tmf(TMFClearTaskSet, rawLUN(0), 0); got != TMFRespFunctionComplete {
		t.Fatalf("CLEAR TASK SET on B's LUN 0: response %d", got)
	}
	a.lun = rawLUN(1)
	a.sendData(onLU1, ttt1, block)
	a.lun = rawLUN(0)
	a.sendData(onLU0, ttt0, block)
	got := a.responses(onLU0)
	if got[onLU0] != 0 {
		t.Errorf("A's write on LU 0 (which B cannot see): responses %v, want GOOD for %#x", got, onLU0)
	}
	if _, ok := got[onLU1]; ok {
		t.Errorf("A's write on LU 1 completed after B cleared the task set of that LU")
	}
	// The cleared write never reached the medium.
	a.lun = rawLUN(1)
	if r := a.command(read10(20, 1), 512, nil, 0); r.status != 0 || !bytes.Equal(r.data, make([]byte, 512)) {
		t.Errorf("LU 1 block 20 after its write was cleared: status %#x, data %x...", r.status, r.data[:8])
	}
}

// stuckStore is a backstore whose writes wait until release is closed, as
// a write stuck in a hung disk or NFS server does.
type stuckStore struct {
	backstore.Backstore
	entered chan struct{} // receives once per write that started
	release chan struct{}
}

func (s *stuckStore) WriteAt(p []byte, off int64, fua bool) (int, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Backstore.WriteAt(p, off, fua)
}

// startStuckFabric serves a fabric whose LUN 1 is a stuckStore, with
// tmfWait shortened to 200 ms. release lets the stuck writes go on; it
// also runs at cleanup.
func startStuckFabric(t *testing.T) (f *fabric, stuck *stuckStore, release func()) {
	t.Helper()
	return startStuckFabricWith(t, Options{})
}

func startStuckFabricWith(t *testing.T, opts Options) (f *fabric, stuck *stuckStore, release func()) {
	t.Helper()
	old := tmfWait
	tmfWait = 200 * time.Millisecond
	t.Cleanup(func() { tmfWait = old }) // runs after the fabric has stopped
	stuck = &stuckStore{entered: make(chan struct{}, 4), release: make(chan struct{})}
	f = startFabricWith(t, opts, func(tg *Target) {
		mem, err := backstore.Open(backstore.Options{Kind: "memory", Size: 1 << 20, BlockSize: 512})
		if err != nil {
			t.Fatal(err)
		}
		stuck.Backstore = mem
		lu, err := scsi.NewLU(scsi.LUConfig{Backstore: stuck, BlockSize: 512, Serial: "stuck", NAA: scsi.NewNAA([]byte("stuck"))})
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.Device.AddLU(1, lu); err != nil {
			t.Fatal(err)
		}
	})
	var once sync.Once
	release = func() { once.Do(func() { close(stuck.release) }) }
	t.Cleanup(release)
	return f, stuck, release
}

// stuckInitiator logs in to a stuck fabric with immediate data and
// addresses its stuck LUN 1, unit attentions cleared.
func stuckInitiator(t *testing.T, f *fabric) *initiator {
	t.Helper()
	in := dial(t, f)
	in.mustLogin(KeyValue{Key: "ImmediateData", Value: "Yes"})
	in.lun = rawLUN(1)
	in.clearUA()
	return in
}

// sendStuckWrite sends a one-block WRITE(10) at lba with its data as
// immediate data, so that it executes at once, and returns its ITT once
// it sits in the stuck backstore.
func (in *initiator) sendStuckWrite(stuck *stuckStore, lba uint32) uint32 {
	in.t.Helper()
	itt := in.itt
	in.itt++
	var cdb [16]byte
	copy(cdb[:], write10(lba, 1))
	req := SCSICommand{Final: true, Write: true, Attr: TaskAttrSimple, LUN: in.lun, ITT: itt,
		ExpectedDataTransferLength: 512, CmdSN: in.cmdSN, ExpStatSN: in.expSN, CDB: cdb}
	in.cmdSN++
	var h BHS
	req.Encode(&h)
	if err := in.w.WritePDU(&h, make([]byte, 512)); err != nil {
		in.t.Fatal(err)
	}
	select {
	case <-stuck.entered:
	case <-time.After(5 * time.Second):
		in.t.Fatal("the write never reached the backstore")
	}
	return itt
}

// A TMF whose tasks do not stop in time is not reported as done: the
// write could still land after the initiator was told it was aborted.
func TestTaskManagementRejectsWhileTaskStuck(t *testing.T) {
	f, stuck, releaseAll := startStuckFabric(t)
	in := stuckInitiator(t, f)

	for i, tt := range []struct {
		name string
		fn   uint8
	}{{"ABORT TASK", TMFAbortTask}, {"LOGICAL UNIT RESET", TMFLogicalUnitReset}} {
		itt := in.sendStuckWrite(stuck, uint32(8*i))
		start := time.Now()
		if got := in.tmf(tt.fn, in.lun, itt); got != TMFRespFunctionRejected {
			t.Errorf("%s of a task stuck in its backstore: response %d, want FUNCTION REJECTED", tt.name, got)
		}
		if d := time.Since(start); d < tmfWait {
			t.Errorf("%s answered after %v, before its %v bound", tt.name, d, tmfWait)
		}
		if tt.fn == TMFLogicalUnitReset {
			releaseAll()
		}
	}
	// Once the writes end, the connection goes on.
	releaseAll()
	in.clearUA()
	if r := in.command(read10(0, 1), 512, nil, 0); r.status != 0 {
		t.Fatalf("READ after the stuck writes: status %#x", r.status)
	}
}

// SPC-2 reservations survive ABORT TASK SET and CLEAR TASK SET, and end
// with a LOGICAL UNIT RESET (SAM-5, SPC-2 5.5.1).
func TestTaskManagementAndReserve(t *testing.T) {
	f := startFabric(t, Options{})
	a := loginAs(t, f, "iqn.2026-11.io.blockport:holder", 1)
	b := loginAs(t, f, "iqn.2026-11.io.blockport:other", 2)
	a.clearUA()
	b.clearUA()
	const reservationConflict = 0x18
	if r := a.command([]byte{0x16, 0, 0, 0, 0, 0}, 0, nil, 0); r.status != 0 {
		t.Fatalf("RESERVE(6): status %#x", r.status)
	}
	block := make([]byte, 512)
	for _, fn := range []uint8{TMFAbortTaskSet, TMFClearTaskSet} {
		if got := a.tmf(fn, 0, 0); got != TMFRespFunctionComplete {
			t.Fatalf("function %d: response %d", fn, got)
		}
		if r := b.command(write10(0, 1), 512, block, 512); r.status != reservationConflict {
			t.Fatalf("after function %d the reservation is gone: other's WRITE status %#x", fn, r.status)
		}
	}
	if got := a.tmf(TMFLogicalUnitReset, 0, 0); got != TMFRespFunctionComplete {
		t.Fatalf("LUN RESET: response %d", got)
	}
	b.clearUA()
	if r := b.command(write10(0, 1), 512, block, 512); r.status != 0 {
		t.Fatalf("after LUN RESET: other's WRITE status %#x", r.status)
	}
}

// An initiator that holds a SCSI-2 reservation and logs out has released
// it by the time its Logout Response arrives: another initiator's next
// command does not conflict (libiscsi's Sanitize tests log a clone out and
// go straight on).
func TestLogoutReleasesBeforeResponse(t *testing.T) {
	f := startFabric(t, Options{})
	b := loginAs(t, f, "iqn.2026-11.io.blockport:other", 2)
	b.clearUA()
	block := make([]byte, 512)
	for i := range 20 {
		a := loginAs(t, f, "iqn.2026-11.io.blockport:holder", 1)
		a.clearUA()
		if r := a.command([]byte{0x16, 0, 0, 0, 0, 0}, 0, nil, 0); r.status != 0 {
			t.Fatalf("round %d: RESERVE(6): status %#x", i, r.status)
		}
		a.sendLogout()
		if pdu, err := a.r.ReadPDU(); err != nil || pdu.Header.Opcode() != OpLogoutResponse {
			t.Fatalf("round %d: logout response: %v", i, err)
		}
		if r := b.command(write10(0, 1), 512, block, 512); r.status != 0 {
			t.Fatalf("round %d: WRITE right after the holder's Logout Response: status %#x", i, r.status)
		}
		a.nc.Close()
	}
}

// A TARGET COLD RESET closes the sessions that existed when it came, not
// one that logs in right after its response (RFC 7143 11.5.1).
func TestColdResetSparesLaterSessions(t *testing.T) {
	f := startFabric(t, Options{})
	a := dial(t, f)
	a.mustLogin()
	a.clearUA()
	if got := a.tmf(TMFTargetColdReset, 0, 0); got != TMFRespFunctionComplete {
		t.Fatalf("TARGET COLD RESET: response %d", got)
	}
	b := loginAs(t, f, "iqn.2026-11.io.blockport:later", 9)
	time.Sleep(300 * time.Millisecond) // past the reset's closing of the old sessions
	b.clearUA()
	if r := b.command([]byte{0, 0, 0, 0, 0, 0}, 0, nil, 0); r.status != 0 {
		t.Fatalf("TEST UNIT READY on the later session: status %#x", r.status)
	}
	// The session that asked for the reset is gone.
	a.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.r.ReadPDU(); err == nil {
		t.Fatal("the resetting session is still open")
	}
}

// moreToRead sees commands still in the socket, which the CmdSN window's
// inflight count does not: only then may the reader run a read itself.
func TestMoreToRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	c := newConn(NewService(&testRegistry{}, Options{}), server, 1)
	if c.moreToRead() {
		t.Fatal("an idle socket has more to read")
	}
	client.Write(make([]byte, 100))
	deadline := time.Now().Add(5 * time.Second)
	for !c.moreToRead() {
		if time.Now().After(deadline) {
			t.Fatal("bytes in the socket's receive queue are not seen")
		}
		time.Sleep(time.Millisecond)
	}
	// Taken into the Reader's buffer, they still count.
	buf := make([]byte, 10)
	if _, err := c.r.br.Read(buf); err != nil {
		t.Fatal(err)
	}
	if !c.moreToRead() {
		t.Fatal("bytes in the Reader's buffer are not seen")
	}
	if _, err := c.r.br.Discard(c.r.Buffered()); err != nil {
		t.Fatal(err)
	}
	if c.moreToRead() {
		t.Fatal("a drained connection has more to read")
	}
}

// A connection that never finishes its login is closed at the login
// timeout, whether it sends nothing or stops half way.
func TestLoginTimeoutClosesStalledLogins(t *testing.T) {
	f := startFabric(t, Options{LoginTimeout: 300 * time.Millisecond})
	silent := dial(t, f)
	half := dial(t, f)
	// One security-stage request that does not transit: the login waits
	// for the next one, which never comes.
	half.loginPDU(0, 0, false, normalKeys("iqn.2026-11.io.blockport:stalled"))
	for name, in := range map[string]*initiator{"silent": silent, "half way": half} {
		start := time.Now()
		in.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := in.r.ReadPDU(); err == nil {
			t.Fatalf("%s: a PDU instead of the connection closing", name)
		} else if isTimeout(err) {
			t.Fatalf("%s: still open after %v", name, time.Since(start))
		}
	}
}

// PREEMPT AND ABORT whose preempted write is stuck in the backstore does
// not complete until that write has stopped: its GOOD tells a cluster the
// other node is fenced (SPC-5 5.14.12.5). Once the write ends, it does.
func TestPreemptAndAbortWaitsForStuckWrite(t *testing.T) {
	f, stuck, releaseAll := startStuckFabric(t)
	a := loginAs(t, f, "iqn.2026-11.io.blockport:survivor", 1)
	b := loginAs(t, f, "iqn.2026-11.io.blockport:fenced", 2)
	for _, in := range []*initiator{a, b} {
		in.lun = rawLUN(1)
		in.clearUA()
	}
	// PERSISTENT RESERVE OUT with a 24-byte parameter list.
	prOut := func(in *initiator, sa, typ byte, key, sark uint64) result {
		params := make([]byte, 24)
		binary.BigEndian.PutUint64(params[0:], key)
		binary.BigEndian.PutUint64(params[8:], sark)
		return in.command([]byte{0x5f, sa, typ, 0, 0, 0, 0, 0, 24, 0}, 24, params, 24)
	}
	const register, reserve, preemptAndAbort, writeExclusive = 0, 1, 5, 1
	for _, step := range []struct {
		in       *initiator
		sa       byte
		key, new uint64
	}{{a, register, 0, 0xa}, {b, register, 0, 0xb}, {b, reserve, 0xb, 0}} {
		if r := prOut(step.in, step.sa, writeExclusive, step.key, step.new); r.status != 0 {
			t.Fatalf("PR OUT service action %d: status %#x sense %x", step.sa, r.status, r.sense)
		}
	}

	// The holder's write sticks in the backstore.
	b.sendStuckWrite(stuck, 0)

	done := make(chan result, 1)
	go func() { done <- prOut(a, preemptAndAbort, writeExclusive, 0xa, 0xb) }()
	select {
	case r := <-done:
		t.Fatalf("PREEMPT AND ABORT completed (status %#x) while the preempted write was still in the backstore", r.status)
	case <-time.After(3 * tmfWait):
	}
	releaseAll()
	select {
	case r := <-done:
		if r.status != 0 {
			t.Fatalf("PREEMPT AND ABORT after the write stopped: status %#x sense %x", r.status, r.sense)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PREEMPT AND ABORT did not complete after the preempted write stopped")
	}
}

// A logout whose session still has a command in its backstore after the
// wait answers "cleanup failed" and keeps the I_T nexus, and so the
// reservation, until that command returns: another initiator must not
// write under a reservation whose holder's write may still land.
func TestLogoutKeepsNexusWhileTaskStuck(t *testing.T) {
	f, stuck, release := startStuckFabricWith(t, Options{NopTimeout: 200 * time.Millisecond})
	a := loginAs(t, f, "iqn.2026-11.io.blockport:holder", 1)
	a.lun = rawLUN(1)
	a.clearUA()
	b := loginAs(t, f, "iqn.2026-11.io.blockport:other", 2)
	b.lun = rawLUN(1)
	b.clearUA()
	if r := a.command([]byte{0x16, 0, 0, 0, 0, 0}, 0, nil, 0); r.status != 0 {
		t.Fatalf("RESERVE(6): status %#x", r.status)
	}
	a.sendStuckWrite(stuck, 0)
	a.sendLogout()
	pdu, err := a.r.ReadPDU()
	if err != nil || pdu.Header.Opcode() != OpLogoutResponse {
		t.Fatalf("logout response: %v", err)
	}
	if got := pdu.Header.LogoutResponse().Response; got != LogoutRespCleanupFailed {
		t.Fatalf("logout with a write stuck in the backstore: response %d, want %d (cleanup failed)", got, LogoutRespCleanupFailed)
	}
	if r := b.command(read10(0, 1), 512, nil, 0); r.status != 0x18 {
		t.Fatalf("READ by another initiator while the holder's write is stuck: status %#x, want RESERVATION CONFLICT", r.status)
	}
	release()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := b.command(read10(0, 1), 512, nil, 0)
		if r.status == 0 {
			break
		}
		if r.status != 0x18 || time.Now().After(deadline) {
			t.Fatalf("READ after the stuck write returned: status %#x", r.status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sendLogout sends an immediate Logout Request that closes the session,
// without reading the answer.
func (in *initiator) sendLogout() {
	in.t.Helper()
	req := LogoutRequest{Immediate: true, ReasonCode: LogoutCloseSession, ITT: in.itt, CmdSN: in.cmdSN, ExpStatSN: in.expSN}
	in.itt++
	var h BHS
	req.Encode(&h)
	if err := in.w.WritePDU(&h, nil); err != nil {
		in.t.Fatal(err)
	}
}

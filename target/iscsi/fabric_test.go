package iscsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi"
)

// These tests run the real fabric on a loopback socket against the real
// SCSI core and a memory backstore, with a small initiator built from the
// package's own codec.

const testTarget = "iqn.2026-11.io.blockport:test"

type testRegistry struct {
	target  *Target
	portals []Portal
}

func (r *testRegistry) LookupTarget(name string) *Target {
	if name == r.target.Name {
		return r.target
	}
	return nil
}
func (r *testRegistry) Targets() []*Target { return []*Target{r.target} }
func (r *testRegistry) Portals() []Portal  { return r.portals }

type fabric struct {
	svc  *Service
	addr string
}

func startFabric(t testing.TB, opts Options) *fabric {
	t.Helper()
	return startFabricWith(t, opts, nil)
}

// startFabricWith lets a test adjust the target (Admit, Auth) before the
// service starts.
func startFabricWith(t testing.TB, opts Options, adjust func(*Target)) *fabric {
	t.Helper()
	store, err := backstore.Open(backstore.Options{Kind: "memory", Size: 8 << 20, BlockSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	lu, err := scsi.NewLU(scsi.LUConfig{Backstore: store, BlockSize: 512, Serial: "test0", NAA: scsi.NewNAA([]byte("t0"))})
	if err != nil {
		t.Fatal(err)
	}
	dev := scsi.NewDevice(testTarget)
	if err := dev.AddLU(0, lu); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := &testRegistry{
		target:  &Target{Name: testTarget, Alias: "test", Device: dev, Admit: func(string, net.Addr) bool { return true }},
		portals: []Portal{{Addr: ln.Addr().String(), TPGT: 1}},
	}
	if adjust != nil {
		adjust(reg.target)
	}
	svc := NewService(reg, opts)
	svc.AttachTarget(reg.target) // as the server does: PREEMPT AND ABORT reaches the tasks
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); svc.ServeConn(ctx, nc, 1) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		svc.Shutdown(sctx)
		scancel()
		cancel()
		wg.Wait()
		store.Close()
	})
	return &fabric{svc: svc, addr: ln.Addr().String()}
}

type initiator struct {
	t      testing.TB
	nc     net.Conn
	r      *Reader
	w      *Writer
	isid   [6]byte
	cmdSN  uint32
	expSN  uint32
	itt    uint32
	tsih   uint16
	maxSeg int
	lun    uint64 // the raw 8-byte LUN that command addresses
}

func dial(t testing.TB, f *fabric) *initiator {
	t.Helper()
	nc, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { nc.Close() })
	in := &initiator{t: t, nc: nc, r: NewReader(nc), w: NewWriter(nc), isid: [6]byte{0x80, 1, 2, 3, 4, 5}, cmdSN: 1, itt: 1}
	in.r.SetMaxRecvDataSegmentLength(0)
	return in
}

// login runs a one-request-per-stage login and returns the final response.
func (in *initiator) login(stage0, stage1 []KeyValue) (LoginResponse, []KeyValue) {
	in.t.Helper()
	resp, kvs := in.loginPDU(0, 1, true, stage0)
	if resp.StatusClass != 0 {
		return resp, kvs
	}
	resp2, kvs2 := in.loginPDU(1, 3, true, stage1)
	return resp2, append(kvs, kvs2...)
}

func (in *initiator) loginPDU(csg, nsg uint8, transit bool, kvs []KeyValue) (LoginResponse, []KeyValue) {
	in.t.Helper()
	req := LoginRequest{Transit: transit, CSG: csg, NSG: nsg, ISID: in.isid, TSIH: in.tsih, ITT: in.itt, CmdSN: in.cmdSN, ExpStatSN: in.expSN}
	var h BHS
	req.Encode(&h)
	if err := in.w.WritePDU(&h, AppendText(nil, kvs...)); err != nil {
		in.t.Fatal(err)
	}
	pdu, err := in.r.ReadPDU()
	if err != nil {
		in.t.Fatalf("login response: %v", err)
	}
	if pdu.Header.Opcode() != OpLoginResponse {
		in.t.Fatalf("got %v, want a Login Response", pdu.Header.Opcode())
	}
	resp := pdu.Header.LoginResponse()
	in.expSN = resp.StatSN + 1
	in.tsih = resp.TSIH
	answers, err := ParseText(pdu.Data)
	if err != nil {
		in.t.Fatalf("login answer text: %v", err)
	}
	return resp, answers
}

func normalKeys(initiator string) []KeyValue {
	return []KeyValue{{Key: "InitiatorName", Value: initiator}, {Key: "TargetName", Value: testTarget},
		{Key: "SessionType", Value: "Normal"}, {Key: "AuthMethod", Value: "None"}}
}

func (in *initiator) mustLogin(ops ...KeyValue) {
	in.t.Helper()
	resp, _ := in.login(normalKeys("iqn.2026-11.io.blockport:tester"), ops)
	if resp.StatusClass != 0 || !resp.Transit || resp.NSG != 3 {
		in.t.Fatalf("login: status %d/%d T=%v NSG=%d", resp.StatusClass, resp.StatusDetail, resp.Transit, resp.NSG)
	}
	if resp.TSIH == 0 {
		in.t.Fatal("final login response has no TSIH")
	}
	in.maxSeg = 8192
	for _, kv := range ops {
		switch kv.Key {
		case "HeaderDigest":
			in.r.SetDigests(kv.Value == "CRC32C", in.hasDataDigest(ops))
			in.w.SetDigests(kv.Value == "CRC32C", in.hasDataDigest(ops))
		case "DataDigest":
			in.r.SetDigests(in.hasHeaderDigest(ops), kv.Value == "CRC32C")
			in.w.SetDigests(in.hasHeaderDigest(ops), kv.Value == "CRC32C")
		}
	}
}

func (in *initiator) hasDataDigest(ops []KeyValue) bool {
	for _, kv := range ops {
		if kv.Key == "DataDigest" {
			return kv.Value == "CRC32C"
		}
	}
	return false
}

func (in *initiator) hasHeaderDigest(ops []KeyValue) bool {
	for _, kv := range ops {
		if kv.Key == "HeaderDigest" {
			return kv.Value == "CRC32C"
		}
	}
	return false
}

type result struct {
	status   uint8
	sense    []byte
	data     []byte
	under    bool
	over     bool
	residual uint32
	r2ts     int
}

// command runs one SCSI command to completion, answering R2Ts.
func (in *initiator) command(cdb []byte, edtl uint32, out []byte, immediate int) result {
	in.t.Helper()
	itt := in.itt
	in.itt++
	var c16 [16]byte
	copy(c16[:], cdb)
	req := SCSICommand{Final: true, Read: out == nil && edtl > 0, Write: out != nil, Attr: TaskAttrSimple, LUN: in.lun, ITT: itt,
		ExpectedDataTransferLength: edtl, CmdSN: in.cmdSN, ExpStatSN: in.expSN, CDB: c16}
	in.cmdSN++
	var h BHS
	req.Encode(&h)
	imm := out[:min(immediate, len(out))]
	if err := in.w.WritePDU(&h, imm); err != nil {
		in.t.Fatal(err)
	}
	var res result
	for {
		pdu, err := in.r.ReadPDU()
		if err != nil {
			in.t.Fatalf("reading response: %v", err)
		}
		switch pdu.Header.Opcode() {
		case OpR2T:
			r := pdu.Header.R2T()
			res.r2ts++
			var dataSN uint32
			for off := r.BufferOffset; off < r.BufferOffset+r.DesiredDataTransferLength; off += uint32(in.maxSeg) {
				end := min(off+uint32(in.maxSeg), r.BufferOffset+r.DesiredDataTransferLength)
				d := DataOut{Final: end == r.BufferOffset+r.DesiredDataTransferLength, ITT: itt, TTT: r.TTT, DataSN: dataSN, BufferOffset: off, ExpStatSN: in.expSN}
				var dh BHS
				d.Encode(&dh)
				if err := in.w.WritePDU(&dh, out[off:end]); err != nil {
					in.t.Fatal(err)
				}
				dataSN++
			}
		case OpDataIn:
			d := pdu.Header.DataIn()
			if int(d.BufferOffset) != len(res.data) {
				in.t.Fatalf("Data-In offset %d, have %d bytes", d.BufferOffset, len(res.data))
			}
			res.data = append(res.data, pdu.Data...)
			if d.HasStatus {
				in.expSN = d.StatSN + 1
				res.status, res.under, res.over, res.residual = d.Status, d.Underflow, d.Overflow, d.ResidualCount
				return res
			}
		case OpSCSIResponse:
			r := pdu.Header.SCSIResponse()
			in.expSN = r.StatSN + 1
			res.status, res.under, res.over, res.residual = r.Status, r.Underflow, r.Overflow, r.ResidualCount
			if len(pdu.Data) >= 2 {
				n := binary.BigEndian.Uint16(pdu.Data)
				res.sense = append([]byte(nil), pdu.Data[2:2+int(n)]...)
			}
			return res
		default:
			in.t.Fatalf("unexpected %v", pdu.Header.Opcode())
		}
	}
}

func write10(lba uint32, blocks uint16) []byte {
	c := []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], blocks)
	return c
}

func read10(lba uint32, blocks uint16) []byte {
	c := write10(lba, blocks)
	c[0] = 0x28
	return c
}

// clearUA issues TEST UNIT READY until no unit attention is pending.
func (in *initiator) clearUA() {
	for i := 0; i < 5; i++ {
		if r := in.command([]byte{0, 0, 0, 0, 0, 0}, 0, nil, 0); r.status == 0 {
			return
		}
	}
	in.t.Fatal("unit attention does not clear")
}

func TestLoginAndReadWrite(t *testing.T) {
	for _, digests := range []bool{false, true} {
		name := map[bool]string{false: "no-digests", true: "crc32c"}[digests]
		t.Run(name, func(t *testing.T) {
			f := startFabric(t, Options{})
			in := dial(t, f)
			ops := []KeyValue{{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "No"},
				{Key: "MaxRecvDataSegmentLength", Value: "8192"}}
			if digests {
				ops = append(ops, KeyValue{Key: "HeaderDigest", Value: "CRC32C"}, KeyValue{Key: "DataDigest", Value: "CRC32C"})
			}
			in.mustLogin(ops...)
			in.clearUA()
			data := bytes.Repeat([]byte("blockport"), 64*512/9+1)[:64*512]
			if r := in.command(write10(10, 64), 64*512, data, 0); r.status != 0 || r.r2ts == 0 {
				t.Fatalf("write: status %#x sense %x r2ts %d", r.status, r.sense, r.r2ts)
			}
			r := in.command(read10(10, 64), 64*512, nil, 0)
			if r.status != 0 || !bytes.Equal(r.data, data) {
				t.Fatalf("read back: status %#x, %d bytes, equal=%v", r.status, len(r.data), bytes.Equal(r.data, data))
			}
			// EDTL larger than the data: underflow residual (RFC 7143 11.4.5.1).
			r = in.command(read10(10, 1), 4096, nil, 0)
			if r.status != 0 || !r.under || r.residual != 4096-512 || len(r.data) != 512 {
				t.Fatalf("underflow: status %#x under=%v residual %d len %d", r.status, r.under, r.residual, len(r.data))
			}
			// EDTL smaller: only EDTL bytes, overflow residual.
			r = in.command(read10(10, 2), 512, nil, 0)
			if r.status != 0 || !r.over || r.residual != 512 || len(r.data) != 512 {
				t.Fatalf("overflow: status %#x over=%v residual %d len %d", r.status, r.over, r.residual, len(r.data))
			}
		})
	}
}

func TestImmediateAndUnsolicitedData(t *testing.T) {
	f := startFabric(t, Options{})
	in := dial(t, f)
	in.mustLogin(KeyValue{Key: "InitialR2T", Value: "No"}, KeyValue{Key: "ImmediateData", Value: "Yes"},
		KeyValue{Key: "FirstBurstLength", Value: "65536"})
	in.clearUA()
	data := bytes.Repeat([]byte{0xa5, 0x5a}, 8*512/2)
	if r := in.command(write10(0, 8), 8*512, data, 8*512); r.status != 0 || r.r2ts != 0 {
		t.Fatalf("immediate write: status %#x r2ts %d", r.status, r.r2ts)
	}
	// Half immediate, the rest through an R2T.
	data2 := bytes.Repeat([]byte{0x11}, 16*512)
	if r := in.command(write10(100, 16), 16*512, data2, 4*512); r.status != 0 || r.r2ts != 1 {
		t.Fatalf("mixed write: status %#x r2ts %d", r.status, r.r2ts)
	}
	r := in.command(read10(100, 16), 16*512, nil, 0)
	if !bytes.Equal(r.data, data2) {
		t.Fatal("mixed write read back differs")
	}
}

func TestSCSIErrorsCarrySense(t *testing.T) {
	f := startFabric(t, Options{})
	in := dial(t, f)
	in.mustLogin()
	in.clearUA()
	r := in.command(read10(1<<30, 1), 512, nil, 0) // far beyond the 8 MiB LU
	if r.status != 2 || len(r.sense) < 14 || r.sense[2]&0x0f != 5 || r.sense[12] != 0x21 {
		t.Fatalf("out of range read: status %#x sense %x", r.status, r.sense)
	}
	r = in.command([]byte{0xff, 0, 0, 0, 0, 0}, 0, nil, 0)
	if r.status != 2 || r.sense[12] != 0x20 {
		t.Fatalf("unknown opcode: status %#x sense %x", r.status, r.sense)
	}
}

func TestCmdSNWindow(t *testing.T) {
	f := startFabric(t, Options{})
	in := dial(t, f)
	in.mustLogin()
	in.clearUA()
	// A non-immediate NOP-Out takes a CmdSN (RFC 7143 11.18); the next
	// command must still run.
	nop := NOPOut{ITT: in.itt, TTT: 0xffffffff, CmdSN: in.cmdSN, ExpStatSN: in.expSN}
	in.itt++
	in.cmdSN++
	var h BHS
	nop.Encode(&h)
	if err := in.w.WritePDU(&h, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	pdu, err := in.r.ReadPDU()
	if err != nil || pdu.Header.Opcode() != OpNOPIn || string(pdu.Data) != "ping" {
		t.Fatalf("NOP-In: %v %v %q", err, pdu.Header.Opcode(), pdu.Data)
	}
	in.expSN = pdu.Header.NOPIn().StatSN + 1
	if r := in.command([]byte{0, 0, 0, 0, 0, 0}, 0, nil, 0); r.status != 0 {
		t.Fatalf("TUR after NOP-Out: status %#x", r.status)
	}

	// Commands sent out of order run in CmdSN order once the gap closes.
	first, second := in.cmdSN, in.cmdSN+1
	for _, sn := range []uint32{second, first} {
		c := SCSICommand{Final: true, Attr: TaskAttrSimple, ITT: 1000 + sn, CmdSN: sn, ExpStatSN: in.expSN}
		c.Encode(&h)
		if err := in.w.WritePDU(&h, nil); err != nil {
			t.Fatal(err)
		}
	}
	in.cmdSN += 2
	got := map[uint32]bool{}
	for len(got) < 2 {
		pdu, err := in.r.ReadPDU()
		if err != nil {
			t.Fatal(err)
		}
		got[pdu.Header.ITT()] = true
	}

	// A CmdSN beyond MaxCmdSN is dropped silently (RFC 7143 4.2.2.1).
	c := SCSICommand{Final: true, Attr: TaskAttrSimple, ITT: 5000, CmdSN: in.cmdSN + 100000, ExpStatSN: in.expSN}
	c.Encode(&h)
	in.w.WritePDU(&h, nil)
	if r := in.command([]byte{0, 0, 0, 0, 0, 0}, 0, nil, 0); r.status != 0 {
		t.Fatalf("TUR after a dropped command: %#x", r.status)
	}
}

func TestLoginFailures(t *testing.T) {
	f := startFabric(t, Options{})
	tests := []struct {
		name          string
		keys          []KeyValue
		tsih          uint16
		class, detail uint8
	}{
		{"unknown target", []KeyValue{{Key: "InitiatorName", Value: "iqn.2026-11.x:y"}, {Key: "TargetName", Value: "iqn.2026-11.io.blockport:nope"}}, 0, 2, 3},
		{"no initiator name", []KeyValue{{Key: "TargetName", Value: testTarget}}, 0, 2, 7},
		{"no target name", []KeyValue{{Key: "InitiatorName", Value: "iqn.2026-11.x:y"}}, 0, 2, 7},
		{"unknown TSIH", normalKeys("iqn.2026-11.x:y"), 0x4242, 2, 0x0a},
		{"bad session type", []KeyValue{{Key: "InitiatorName", Value: "iqn.2026-11.x:y"}, {Key: "SessionType", Value: "Weird"}}, 0, 2, 9},
		{"only CHAP offered", []KeyValue{{Key: "InitiatorName", Value: "iqn.2026-11.x:y"}, {Key: "TargetName", Value: testTarget}, {Key: "AuthMethod", Value: "CHAP"}}, 0, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := dial(t, f)
			in.tsih = tt.tsih
			resp, _ := in.loginPDU(0, 1, true, tt.keys)
			if resp.StatusClass != tt.class || resp.StatusDetail != tt.detail {
				t.Fatalf("status %#x/%#x, want %#x/%#x", resp.StatusClass, resp.StatusDetail, tt.class, tt.detail)
			}
			// The target closes the connection after a failed login.
			if _, err := in.r.ReadPDU(); err == nil {
				t.Fatal("connection still open after a failed login")
			}
		})
	}
}

func TestDiscoverySendTargets(t *testing.T) {
	f := startFabric(t, Options{})
	in := dial(t, f)
	resp, _ := in.login([]KeyValue{{Key: "InitiatorName", Value: "iqn.2026-11.x:y"}, {Key: "SessionType", Value: "Discovery"}, {Key: "AuthMethod", Value: "None"}}, nil)
	if resp.StatusClass != 0 || resp.NSG != 3 {
		t.Fatalf("discovery login: %d/%d", resp.StatusClass, resp.StatusDetail)
	}
	req := TextRequest{Final: true, Immediate: true, ITT: 77, TTT: 0xffffffff, CmdSN: in.cmdSN, ExpStatSN: in.expSN}
	var h BHS
	req.Encode(&h)
	if err := in.w.WritePDU(&h, AppendText(nil, KeyValue{Key: "SendTargets", Value: "All"})); err != nil {
		t.Fatal(err)
	}
	pdu, err := in.r.ReadPDU()
	if err != nil || pdu.Header.Opcode() != OpTextResponse {
		t.Fatalf("text response: %v", err)
	}
	text := string(pdu.Data)
	if !strings.Contains(text, "TargetName="+testTarget+"\x00") || !strings.Contains(text, "TargetAddress="+f.addr+",1\x00") {
		t.Fatalf("SendTargets answer %q", text)
	}
	// A SCSI command has no place in a discovery session: Reject.
	c := SCSICommand{Final: true, ITT: 78, CmdSN: in.cmdSN, ExpStatSN: in.expSN}
	c.Encode(&h)
	in.w.WritePDU(&h, nil)
	pdu, err = in.r.ReadPDU()
	if err != nil || pdu.Header.Opcode() != OpReject {
		t.Fatalf("want Reject, got %v %v", pdu.Header.Opcode(), err)
	}
}

func TestSessionReinstatement(t *testing.T) {
	f := startFabric(t, Options{})
	a := dial(t, f)
	a.mustLogin()
	b := dial(t, f)
	b.mustLogin() // same initiator name and ISID: reinstates
	if _, err := a.r.ReadPDU(); err == nil {
		t.Fatal("old session's connection is still open")
	}
	if n := len(f.svc.Sessions()); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
	b.clearUA()
}

func TestIdleInitiatorIsDropped(t *testing.T) {
	f := startFabric(t, Options{NopInterval: 100 * time.Millisecond, NopTimeout: 300 * time.Millisecond})
	in := dial(t, f)
	in.mustLogin()
	// Read the pings without answering them: the target must give up.
	deadline := time.Now().Add(5 * time.Second)
	pings := 0
	for time.Now().Before(deadline) {
		pdu, err := in.r.ReadPDU()
		if err != nil {
			if pings == 0 {
				t.Fatalf("closed before any NOP-In: %v", err)
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "reset") {
				return
			}
			t.Fatalf("read: %v", err)
		}
		if pdu.Header.Opcode() == OpNOPIn {
			if n := pdu.Header.NOPIn(); n.ITT != 0xffffffff || n.TTT == 0xffffffff {
				t.Fatalf("ping NOP-In ITT %#x TTT %#x", n.ITT, n.TTT)
			}
			pings++
		}
	}
	t.Fatal("an initiator that never answers pings was not dropped")
}

func TestTaskManagement(t *testing.T) {
	f := startFabric(t, Options{})
	in := dial(t, f)
	in.mustLogin()
	in.clearUA()
	tmf := func(fn uint8, lun uint64, ref uint32) uint8 {
		req := TaskMgmtRequest{Immediate: true, Function: fn | 0x80, LUN: lun, ITT: in.itt, ReferencedTaskTag: ref, CmdSN: in.cmdSN, ExpStatSN: in.expSN}
		in.itt++
		var h BHS
		req.Encode(&h)
		if err := in.w.WritePDU(&h, nil); err != nil {
			t.Fatal(err)
		}
		pdu, err := in.r.ReadPDU()
		if err != nil || pdu.Header.Opcode() != OpTaskMgmtResponse {
			t.Fatalf("TMF response: %v", err)
		}
		r := pdu.Header.TaskMgmtResponse()
		in.expSN = r.StatSN + 1
		return r.Response
	}
	if got := tmf(TMFAbortTask, 0, 0x12345); got != TMFRespTaskNotExist {
		t.Errorf("ABORT TASK of an unknown task: %d", got)
	}
	if got := tmf(TMFLogicalUnitReset, 0x0007_0000_0000_0000, 0); got != TMFRespLUNNotExist {
		t.Errorf("LUN RESET of LUN 7: %d", got)
	}
	if got := tmf(TMFLogicalUnitReset, 0, 0); got != TMFRespFunctionComplete {
		t.Errorf("LUN RESET: %d", got)
	}
	// SAM-5: the reset leaves a unit attention.
	if r := in.command([]byte{0, 0, 0, 0, 0, 0}, 0, nil, 0); r.status != 2 || r.sense[2]&0x0f != 6 {
		t.Errorf("TUR after LUN RESET: status %#x sense %x", r.status, r.sense)
	}
	if got := tmf(TMFTaskReassign, 0, 1); got != TMFRespReassignNotSupported {
		t.Errorf("TASK REASSIGN: %d", got)
	}
}

// The reader runs reads and writes of a memory LU itself and holds their
// answers until it has taken up all the initiator sent (holdForReader).
// A burst longer than the hold bound, and a burst whose last PDU asks for
// no answer (a NOP-Out reply), are still answered in full.
func TestReaderAnswersBursts(t *testing.T) {
	f := startFabric(t, Options{})
	in := dial(t, f)
	in.mustLogin(KeyValue{Key: "ImmediateData", Value: "Yes"})
	in.clearUA()
	block := bytes.Repeat([]byte{0xb7}, 512)
	if r := in.command(write10(7, 1), 512, block, 512); r.status != 0 {
		t.Fatalf("WRITE(10): status %#x", r.status)
	}
	for _, tt := range []struct {
		name     string
		reads    int
		trailing bool // end the burst with a NOP-Out that needs no answer
	}{{"longer than the hold bound", 3*holdMax + 5, false}, {"ending in a PDU with no answer", 5, true}} {
		t.Run(tt.name, func(t *testing.T) {
			var h BHS
			itts := map[uint32]bool{}
			for range tt.reads {
				var cdb [16]byte
				copy(cdb[:], read10(7, 1))
				c := SCSICommand{Final: true, Read: true, Attr: TaskAttrSimple, ITT: in.itt, CmdSN: in.cmdSN,
					ExpStatSN: in.expSN, ExpectedDataTransferLength: 512, CDB: cdb}
				itts[in.itt] = true
				in.itt++
				in.cmdSN++
				c.Encode(&h)
				if err := in.w.WritePDU(&h, nil); err != nil {
					t.Fatal(err)
				}
			}
			if tt.trailing {
				// RFC 7143 11.18: ITT 0xffffffff, immediate: nothing comes back.
				nop := NOPOut{Immediate: true, ITT: 0xffffffff, TTT: 0xffffffff, CmdSN: in.cmdSN, ExpStatSN: in.expSN}
				nop.Encode(&h)
				if err := in.w.WritePDU(&h, nil); err != nil {
					t.Fatal(err)
				}
			}
			in.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			defer in.nc.SetReadDeadline(time.Time{})
			for len(itts) > 0 {
				pdu, err := in.r.ReadPDU()
				if err != nil {
					t.Fatalf("%d reads still unanswered: %v", len(itts), err)
				}
				d := pdu.Header.DataIn()
				if pdu.Header.Opcode() != OpDataIn || !d.HasStatus || d.Status != 0 || !itts[d.ITT] || !bytes.Equal(pdu.Data, block) {
					t.Fatalf("answer %v ITT %#x status %#x: not a good Data-In of an outstanding read", pdu.Header.Opcode(), d.ITT, d.Status)
				}
				delete(itts, d.ITT)
				in.expSN = d.StatSN + 1
			}
		})
	}
}

package iscsi

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// hexBHS builds a BHS from (offset, bytes...) runs over a zero header so
// golden PDUs below read like the RFC field diagrams.
func hexBHS(runs ...[]byte) BHS {
	var h BHS
	for _, r := range runs {
		copy(h[r[0]:], r[1:])
	}
	return h
}

func at(off byte, b ...byte) []byte { return append([]byte{off}, b...) }

// TestGoldenSCSICommand: a READ(10) of 8 blocks at LBA 0x1234 to LUN 1,
// laid out by hand from RFC 7143 11.3.
func TestGoldenSCSICommand(t *testing.T) {
	h := hexBHS(
		at(0, 0x01, 0xc1, 0x00, 0x00), // opcode, F|R|Attr=Simple
		at(4, 0x00, 0x00, 0x00, 0x00), // TotalAHSLength, DataSegmentLength
		at(8, 0x00, 0x01, 0, 0, 0, 0, 0, 0),
		at(16, 0xde, 0xad, 0xbe, 0xef), // ITT
		at(20, 0x00, 0x00, 0x10, 0x00), // EDTL 4096
		at(24, 0x00, 0x00, 0x00, 0x07), // CmdSN
		at(28, 0x00, 0x00, 0x00, 0x03), // ExpStatSN
		at(32, 0x28, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x00, 0x08, 0x00),
	)
	want := SCSICommand{
		Final: true, Read: true, Attr: TaskAttrSimple,
		LUN: 0x0001000000000000, ITT: 0xdeadbeef, ExpectedDataTransferLength: 4096,
		CmdSN: 7, ExpStatSN: 3,
		CDB: [16]byte{0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 0x08, 0},
	}
	if h.Opcode() != OpSCSICommand || h.Immediate() || !h.Final() || h.ITT() != 0xdeadbeef {
		t.Fatalf("generic fields: op %v imm %v final %v itt %x", h.Opcode(), h.Immediate(), h.Final(), h.ITT())
	}
	if got := h.SCSICommand(); got != want {
		t.Fatalf("decode:\n got %+v\nwant %+v", got, want)
	}
	var enc BHS
	want.Encode(&enc)
	if enc != h {
		t.Fatalf("encode:\n got % x\nwant % x", enc, h)
	}
}

// TestGoldenLoginRequest: the first operational login request of RFC 7143
// 11.12 with T=1, CSG=1 (operational), NSG=3 (full feature).
func TestGoldenLoginRequest(t *testing.T) {
	h := hexBHS(
		at(0, 0x43, 0x87, 0x00, 0x00),
		at(4, 0x00, 0x00, 0x01, 0x2c), // DataSegmentLength 300
		at(8, 0x80, 0x12, 0x34, 0x56, 0x78, 0x9a, 0x00, 0x05),
		at(16, 0x00, 0x00, 0x00, 0x01),
		at(20, 0x00, 0x02),
		at(24, 0x00, 0x00, 0x00, 0x0a),
		at(28, 0x00, 0x00, 0x00, 0x00),
	)
	want := LoginRequest{Transit: true, CSG: 1, NSG: 3, ISID: [6]byte{0x80, 0x12, 0x34, 0x56, 0x78, 0x9a},
		TSIH: 5, ITT: 1, CID: 2, CmdSN: 10}
	if h.DataSegmentLength() != 300 || !h.Immediate() || h.Opcode() != OpLoginRequest {
		t.Fatalf("generic fields: dsl %d imm %v op %v", h.DataSegmentLength(), h.Immediate(), h.Opcode())
	}
	if got := h.LoginRequest(); got != want {
		t.Fatalf("decode:\n got %+v\nwant %+v", got, want)
	}
	var enc BHS
	want.Encode(&enc)
	enc.setDataSegmentLength(300)
	if enc != h {
		t.Fatalf("encode:\n got % x\nwant % x", enc, h)
	}
}

// TestGoldenTargetPDUs checks target PDUs against hand-built layouts.
func TestGoldenTargetPDUs(t *testing.T) {
	tests := []struct {
		name string
		enc  func(*BHS)
		want BHS
	}{
		{"SCSI Response with residual underflow", func(h *BHS) {
			r := SCSIResponse{Underflow: true, Status: 0x02, ITT: 0x11, StatSN: 0x22, ExpCmdSN: 0x33, MaxCmdSN: 0x44, ExpDataSN: 5, ResidualCount: 512}
			r.Encode(h)
		}, hexBHS(at(0, 0x21, 0x82, 0x00, 0x02), at(16, 0, 0, 0, 0x11), at(24, 0, 0, 0, 0x22, 0, 0, 0, 0x33, 0, 0, 0, 0x44, 0, 0, 0, 5), at(44, 0, 0, 2, 0))},
		{"Data-In with status (phase collapse)", func(h *BHS) {
			d := DataIn{Final: true, HasStatus: true, Status: 0, LUN: 1 << 48, ITT: 9, TTT: ReservedTag, StatSN: 4, ExpCmdSN: 8, MaxCmdSN: 40, DataSN: 2, BufferOffset: 8192}
			d.Encode(h)
		}, hexBHS(at(0, 0x25, 0x81), at(8, 0, 1), at(16, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 4, 0, 0, 0, 8, 0, 0, 0, 40, 0, 0, 0, 2, 0, 0, 0x20, 0))},
		{"Data-In without status leaves StatSN reserved", func(h *BHS) {
			d := DataIn{Status: 0x02, StatSN: 77, ITT: 1, DataSN: 1}
			d.Encode(h)
		}, hexBHS(at(0, 0x25, 0x00), at(16, 0, 0, 0, 1), at(36, 0, 0, 0, 1))},
		{"R2T", func(h *BHS) {
			r := R2T{LUN: 2 << 48, ITT: 3, TTT: 4, StatSN: 5, ExpCmdSN: 6, MaxCmdSN: 7, R2TSN: 8, BufferOffset: 65536, DesiredDataTransferLength: 262144}
			r.Encode(h)
		}, hexBHS(at(0, 0x31, 0x80), at(8, 0, 2), at(16, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 8, 0, 1, 0, 0, 0, 4, 0, 0))},
		{"Login Response, initiator error / not found", func(h *BHS) {
			l := LoginResponse{CSG: 0, NSG: 0, VersionMax: 0, VersionActive: 0, ISID: [6]byte{1, 2, 3, 4, 5, 6}, ITT: 0x10, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3,
				StatusClass: LoginClassInitiatorError, StatusDetail: LoginDetailNotFound}
			l.Encode(h)
		}, hexBHS(at(0, 0x23, 0x00), at(8, 1, 2, 3, 4, 5, 6), at(16, 0, 0, 0, 0x10), at(24, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0x02, 0x03))},
		{"Logout Response", func(h *BHS) {
			l := LogoutResponse{Response: LogoutRespCIDNotFound, ITT: 1, StatSN: 2, ExpCmdSN: 3, MaxCmdSN: 4, Time2Wait: 2, Time2Retain: 20}
			l.Encode(h)
		}, hexBHS(at(0, 0x26, 0x80, 0x01), at(16, 0, 0, 0, 1), at(24, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4), at(40, 0, 2, 0, 20))},
		{"Reject", func(h *BHS) {
			r := Reject{Reason: RejectDataDigestError, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, DataSN_R2TSN: 4}
			r.Encode(h)
		}, hexBHS(at(0, 0x3f, 0x80, 0x02), at(16, 0xff, 0xff, 0xff, 0xff), at(24, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4))},
		{"Async Message: target requests logout", func(h *BHS) {
			a := AsyncMessage{StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, AsyncEvent: AsyncEventRequestLogout, Parameter3: 5}
			a.Encode(h)
		}, hexBHS(at(0, 0x32, 0x80), at(16, 0xff, 0xff, 0xff, 0xff), at(24, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0x01, 0x00), at(42, 0, 5))},
		{"NOP-In ping", func(h *BHS) {
			n := NOPIn{ITT: ReservedTag, TTT: 0x100, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3}
			n.Encode(h)
		}, hexBHS(at(0, 0x20, 0x80), at(16, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3))},
		{"Task Management Response", func(h *BHS) {
			r := TaskMgmtResponse{Response: TMFRespFunctionRejected, ITT: 1, StatSN: 2, ExpCmdSN: 3, MaxCmdSN: 4}
			r.Encode(h)
		}, hexBHS(at(0, 0x22, 0x80, 0xff), at(16, 0, 0, 0, 1), at(24, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4))},
		{"Text Response continue", func(h *BHS) {
			r := TextResponse{Continue: true, ITT: 1, TTT: 2, StatSN: 3, ExpCmdSN: 4, MaxCmdSN: 5}
			r.Encode(h)
		}, hexBHS(at(0, 0x24, 0x40), at(16, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := BHS{}
			for i := range h {
				h[i] = 0xa5 // Encode must zero every byte it does not set
			}
			tt.enc(&h)
			if h != tt.want {
				t.Fatalf("\n got % x\nwant % x", h[:], tt.want[:])
			}
		})
	}
}

// TestRoundTrip encodes every view with all fields set to distinct values
// and decodes it back.
func TestRoundTrip(t *testing.T) {
	var h BHS
	check := func(name string, want, got any) {
		t.Helper()
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
	}
	{
		v := SCSICommand{Immediate: true, Final: true, Write: true, Attr: 4, LUN: 0x0102030405060708, ITT: 1, ExpectedDataTransferLength: 2, CmdSN: 3, ExpStatSN: 4, CDB: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}
		v.Encode(&h)
		check("SCSICommand", v, h.SCSICommand())
	}
	{
		v := DataOut{Final: true, LUN: 9, ITT: 1, TTT: 2, ExpStatSN: 3, DataSN: 4, BufferOffset: 5}
		v.Encode(&h)
		check("DataOut", v, h.DataOut())
	}
	{
		v := NOPOut{Immediate: true, LUN: 9, ITT: 1, TTT: 2, CmdSN: 3, ExpStatSN: 4}
		v.Encode(&h)
		check("NOPOut", v, h.NOPOut())
	}
	{
		v := TaskMgmtRequest{Immediate: true, Function: TMFLogicalUnitReset, LUN: 9, ITT: 1, ReferencedTaskTag: 2, CmdSN: 3, ExpStatSN: 4, RefCmdSN: 5, ExpDataSN: 6}
		v.Encode(&h)
		check("TaskMgmtRequest", v, h.TaskMgmtRequest())
	}
	{
		v := LoginRequest{Transit: true, Continue: true, CSG: 0, NSG: 1, VersionMax: 1, VersionMin: 0, ISID: [6]byte{1, 2, 3, 4, 5, 6}, TSIH: 7, ITT: 8, CID: 9, CmdSN: 10, ExpStatSN: 11}
		v.Encode(&h)
		check("LoginRequest", v, h.LoginRequest())
	}
	{
		v := TextRequest{Immediate: true, Final: true, Continue: true, LUN: 9, ITT: 1, TTT: 2, CmdSN: 3, ExpStatSN: 4}
		v.Encode(&h)
		check("TextRequest", v, h.TextRequest())
	}
	{
		v := LogoutRequest{Immediate: true, ReasonCode: LogoutRemoveForRecovery, ITT: 1, CID: 2, CmdSN: 3, ExpStatSN: 4}
		v.Encode(&h)
		check("LogoutRequest", v, h.LogoutRequest())
	}
	{
		v := SNACKRequest{Type: SNACKRData, LUN: 9, ITT: 1, TTT: 2, ExpStatSN: 3, BegRun: 4, RunLength: 5}
		v.Encode(&h)
		check("SNACKRequest", v, h.SNACKRequest())
	}
	{
		v := SCSIResponse{BidiOverflow: true, BidiUnderflow: true, Overflow: true, Underflow: true, Response: 1, Status: 2, ITT: 3, StatSN: 4, ExpCmdSN: 5, MaxCmdSN: 6, ExpDataSN: 7, BidiResidualCount: 8, ResidualCount: 9}
		v.Encode(&h)
		check("SCSIResponse", v, h.SCSIResponse())
	}
	{
		v := DataIn{Final: true, Acknowledge: true, Overflow: true, Underflow: true, HasStatus: true, Status: 2, LUN: 9, ITT: 1, TTT: 2, StatSN: 3, ExpCmdSN: 4, MaxCmdSN: 5, DataSN: 6, BufferOffset: 7, ResidualCount: 8}
		v.Encode(&h)
		check("DataIn", v, h.DataIn())
	}
	{
		v := R2T{LUN: 9, ITT: 1, TTT: 2, StatSN: 3, ExpCmdSN: 4, MaxCmdSN: 5, R2TSN: 6, BufferOffset: 7, DesiredDataTransferLength: 8}
		v.Encode(&h)
		check("R2T", v, h.R2T())
	}
	{
		v := NOPIn{LUN: 9, ITT: 1, TTT: 2, StatSN: 3, ExpCmdSN: 4, MaxCmdSN: 5}
		v.Encode(&h)
		check("NOPIn", v, h.NOPIn())
	}
	{
		v := TaskMgmtResponse{Response: 5, ITT: 1, StatSN: 2, ExpCmdSN: 3, MaxCmdSN: 4}
		v.Encode(&h)
		check("TaskMgmtResponse", v, h.TaskMgmtResponse())
	}
	{
		v := LoginResponse{Transit: true, Continue: false, CSG: 1, NSG: 3, VersionMax: 0, VersionActive: 0, ISID: [6]byte{6, 5, 4, 3, 2, 1}, TSIH: 2, ITT: 3, StatSN: 4, ExpCmdSN: 5, MaxCmdSN: 6, StatusClass: 3, StatusDetail: 2}
		v.Encode(&h)
		check("LoginResponse", v, h.LoginResponse())
	}
	{
		v := TextResponse{Final: true, Continue: true, LUN: 9, ITT: 1, TTT: 2, StatSN: 3, ExpCmdSN: 4, MaxCmdSN: 5}
		v.Encode(&h)
		check("TextResponse", v, h.TextResponse())
	}
	{
		v := LogoutResponse{Response: 3, ITT: 1, StatSN: 2, ExpCmdSN: 3, MaxCmdSN: 4, Time2Wait: 5, Time2Retain: 6}
		v.Encode(&h)
		check("LogoutResponse", v, h.LogoutResponse())
	}
	{
		v := AsyncMessage{LUN: 9, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, AsyncEvent: 4, AsyncVCode: 5, Parameter1: 6, Parameter2: 7, Parameter3: 8}
		v.Encode(&h)
		check("AsyncMessage", v, h.AsyncMessage())
	}
	{
		v := Reject{Reason: RejectProtocolError, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, DataSN_R2TSN: 4}
		v.Encode(&h)
		check("Reject", v, h.Reject())
	}
}

func TestOpcodeString(t *testing.T) {
	tests := []struct {
		op   Opcode
		want string
		init bool
	}{
		{OpSCSICommand, "SCSI Command", true},
		{OpDataIn, "SCSI Data-In", false},
		{OpReject, "Reject", false},
		{OpSNACKRequest, "SNACK Request", true},
		{Opcode(0x1c), "Opcode(0x1c)", true},
	}
	for _, tt := range tests {
		if got := tt.op.String(); got != tt.want {
			t.Errorf("%#x: String %q, want %q", uint8(tt.op), got, tt.want)
		}
		if tt.op.FromInitiator() != tt.init {
			t.Errorf("%v: FromInitiator %v", tt.op, !tt.init)
		}
	}
}

// extCDBAHS builds an Extended CDB AHS for a CDB of total length n.
func extCDBAHS(n int) []byte {
	length := n - 15
	b := []byte{byte(length >> 8), byte(length), AHSExtendedCDB, 0}
	for i := 16; i < n; i++ {
		b = append(b, byte(i))
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestExtendedCDB(t *testing.T) {
	bidi := []byte{0x00, 0x05, AHSBidiReadLength, 0, 0x00, 0x01, 0x00, 0x00, 0, 0, 0, 0}
	tests := []struct {
		name    string
		ahs     []byte
		want    []byte
		wantErr bool
	}{
		{"none", nil, nil, false},
		{"32-byte CDB", extCDBAHS(32), extCDBAHS(32)[4:20], false},
		{"17-byte CDB needs padding", extCDBAHS(17), []byte{16}, false},
		{"after a bidi AHS", append(append([]byte{}, bidi...), extCDBAHS(20)...), []byte{16, 17, 18, 19}, false},
		{"only bidi", bidi, nil, false},
		{"header shorter than 4 bytes", []byte{0, 1}, nil, true},
		{"length past the segment", []byte{0x00, 0x20, AHSExtendedCDB, 0, 1, 2, 3, 4}, nil, true},
		{"huge length", []byte{0xff, 0xff, AHSExtendedCDB, 0}, nil, true},
		{"AHSLength 1 carries no CDB", []byte{0x00, 0x01, AHSExtendedCDB, 0}, nil, true},
		{"two Extended CDB AHS", append(extCDBAHS(20), extCDBAHS(20)...), nil, true},
		{"trailing garbage", append(extCDBAHS(20), 0, 0), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExtendedCDB(tt.ahs)
			if tt.wantErr {
				var pe *ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v, want *ProtocolError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got % x, want % x", got, tt.want)
			}
		})
	}
}

func TestBidiReadExpectedLength(t *testing.T) {
	good := []byte{0x00, 0x05, AHSBidiReadLength, 0, 0x00, 0x01, 0x00, 0x00, 0, 0, 0, 0}
	n, ok, err := BidiReadExpectedLength(append(extCDBAHS(20), good...))
	if err != nil || !ok || n != 65536 {
		t.Fatalf("got %d %v %v", n, ok, err)
	}
	if _, ok, err := BidiReadExpectedLength(extCDBAHS(20)); ok || err != nil {
		t.Fatalf("absent: ok %v err %v", ok, err)
	}
	bad := []byte{0x00, 0x04, AHSBidiReadLength, 0, 0, 0, 0, 0}
	if _, _, err := BidiReadExpectedLength(bad); err == nil {
		t.Fatal("AHSLength 4 accepted")
	}
}

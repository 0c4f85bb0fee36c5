package iscsi

import (
	"encoding/binary"
	"fmt"
)

// Opcode is the 6-bit iSCSI opcode in byte 0 of the Basic Header Segment
// (RFC 7143 11.2.1.2). Initiator opcodes are 0x00-0x1f, target opcodes
// 0x20-0x3f.
type Opcode uint8

// RFC 7143 11.2.1.2 opcodes.
const (
	OpNOPOut           Opcode = 0x00
	OpSCSICommand      Opcode = 0x01
	OpTaskMgmtRequest  Opcode = 0x02
	OpLoginRequest     Opcode = 0x03
	OpTextRequest      Opcode = 0x04
	OpDataOut          Opcode = 0x05
	OpLogoutRequest    Opcode = 0x06
	OpSNACKRequest     Opcode = 0x10
	OpNOPIn            Opcode = 0x20
	OpSCSIResponse     Opcode = 0x21
	OpTaskMgmtResponse Opcode = 0x22
	OpLoginResponse    Opcode = 0x23
	OpTextResponse     Opcode = 0x24
	OpDataIn           Opcode = 0x25
	OpLogoutResponse   Opcode = 0x26
	OpR2T              Opcode = 0x31
	OpAsyncMessage     Opcode = 0x32
	OpReject           Opcode = 0x3f
)

var opcodeNames = map[Opcode]string{
	OpNOPOut:           "NOP-Out",
	OpSCSICommand:      "SCSI Command",
	OpTaskMgmtRequest:  "Task Management Request",
	OpLoginRequest:     "Login Request",
	OpTextRequest:      "Text Request",
	OpDataOut:          "SCSI Data-Out",
	OpLogoutRequest:    "Logout Request",
	OpSNACKRequest:     "SNACK Request",
	OpNOPIn:            "NOP-In",
	OpSCSIResponse:     "SCSI Response",
	OpTaskMgmtResponse: "Task Management Response",
	OpLoginResponse:    "Login Response",
	OpTextResponse:     "Text Response",
	OpDataIn:           "SCSI Data-In",
	OpLogoutResponse:   "Logout Response",
	OpR2T:              "R2T",
	OpAsyncMessage:     "Asynchronous Message",
	OpReject:           "Reject",
}

func (o Opcode) String() string {
	if name, ok := opcodeNames[o]; ok {
		return name
	}
	return fmt.Sprintf("Opcode(0x%02x)", uint8(o))
}

// FromInitiator reports whether o is an initiator opcode (RFC 7143
// 11.2.1.2: target opcodes have bit 5 set).
func (o Opcode) FromInitiator() bool { return o&0x20 == 0 }

// BHSLength is the size of the Basic Header Segment (RFC 7143 11.2.1).
const BHSLength = 48

// MaxDataSegmentLength is the largest value the 24-bit DataSegmentLength
// field can carry (RFC 7143 11.2.1.5).
const MaxDataSegmentLength = 1<<24 - 1

// ReservedTag is the "no tag" value 0xffffffff used for ITT and TTT
// (RFC 7143 11.2.1.8, 11.18.4).
const ReservedTag uint32 = 0xffffffff

// BHS is the raw 48-byte Basic Header Segment. Opcode-specific views are
// decoded from it on demand so a PDU is parsed once and never copied into a
// catch-all structure.
type BHS [BHSLength]byte

const (
	bitImmediate = 0x40 // byte 0
	bitFinal     = 0x80 // byte 1
	opcodeMask   = 0x3f
)

func (h *BHS) u16(off int) uint16      { return binary.BigEndian.Uint16(h[off:]) }
func (h *BHS) u32(off int) uint32      { return binary.BigEndian.Uint32(h[off:]) }
func (h *BHS) u64(off int) uint64      { return binary.BigEndian.Uint64(h[off:]) }
func (h *BHS) put16(off int, v uint16) { binary.BigEndian.PutUint16(h[off:], v) }
func (h *BHS) put32(off int, v uint32) { binary.BigEndian.PutUint32(h[off:], v) }
func (h *BHS) put64(off int, v uint64) { binary.BigEndian.PutUint64(h[off:], v) }
func (h *BHS) flag(off int, mask uint8) bool {
	return h[off]&mask != 0
}

func setIf(cond bool, mask uint8) uint8 {
	if cond {
		return mask
	}
	return 0
}

// Opcode returns the opcode in the low 6 bits of byte 0.
func (h *BHS) Opcode() Opcode { return Opcode(h[0] & opcodeMask) }

// Immediate returns the I bit (RFC 7143 11.2.1.1): the command is not
// subject to CmdSN ordering.
func (h *BHS) Immediate() bool { return h.flag(0, bitImmediate) }

// Final returns the F bit, bit 7 of byte 1 (RFC 7143 11.2.1.3).
func (h *BHS) Final() bool { return h.flag(1, bitFinal) }

// TotalAHSLength returns the AHS length in bytes; on the wire it is counted
// in 4-byte words (RFC 7143 11.2.1.4).
func (h *BHS) TotalAHSLength() int { return int(h[4]) * 4 }

// DataSegmentLength returns the unpadded length of the data segment
// (RFC 7143 11.2.1.5).
func (h *BHS) DataSegmentLength() int {
	return int(h[5])<<16 | int(h[6])<<8 | int(h[7])
}

// setDataSegmentLength stores n in the 24-bit field; the caller guarantees
// n <= MaxDataSegmentLength.
func (h *BHS) setDataSegmentLength(n int) {
	h[5], h[6], h[7] = byte(n>>16), byte(n>>8), byte(n)
}

// ITT returns the Initiator Task Tag at bytes 16-19 (RFC 7143 11.2.1.8).
func (h *BHS) ITT() uint32 { return h.u32(16) }

// LUN returns bytes 8-15 as a big-endian integer. The LUN encoding itself
// (SAM-5 4.7) is left to the SCSI layer.
func (h *BHS) LUN() uint64 { return h.u64(8) }

// Task attributes carried in SCSI Command byte 1 (RFC 7143 11.3.1.1).
const (
	TaskAttrUntagged    = 0
	TaskAttrSimple      = 1
	TaskAttrOrdered     = 2
	TaskAttrHeadOfQueue = 3
	TaskAttrACA         = 4
)

// SCSICommand is the SCSI Command PDU (RFC 7143 11.3).
type SCSICommand struct {
	Immediate, Final, Read, Write bool
	Attr                          uint8
	LUN                           uint64
	ITT                           uint32
	ExpectedDataTransferLength    uint32
	CmdSN, ExpStatSN              uint32
	CDB                           [16]byte
}

// SCSICommand decodes h as a SCSI Command (RFC 7143 11.3).
func (h *BHS) SCSICommand() SCSICommand {
	c := SCSICommand{
		Immediate:                  h.Immediate(),
		Final:                      h.Final(),
		Read:                       h.flag(1, 0x40),
		Write:                      h.flag(1, 0x20),
		Attr:                       h[1] & 0x07,
		LUN:                        h.LUN(),
		ITT:                        h.ITT(),
		ExpectedDataTransferLength: h.u32(20),
		CmdSN:                      h.u32(24),
		ExpStatSN:                  h.u32(28),
	}
	copy(c.CDB[:], h[32:48])
	return c
}

// Encode writes c into h; used by tests and tools that play initiator.
func (c *SCSICommand) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpSCSICommand) | setIf(c.Immediate, bitImmediate)
	h[1] = setIf(c.Final, bitFinal) | setIf(c.Read, 0x40) | setIf(c.Write, 0x20) | c.Attr&0x07
	h.put64(8, c.LUN)
	h.put32(16, c.ITT)
	h.put32(20, c.ExpectedDataTransferLength)
	h.put32(24, c.CmdSN)
	h.put32(28, c.ExpStatSN)
	copy(h[32:48], c.CDB[:])
}

// DataOut is the SCSI Data-Out PDU (RFC 7143 11.7).
type DataOut struct {
	Final                                     bool
	LUN                                       uint64
	ITT, TTT, ExpStatSN, DataSN, BufferOffset uint32
}

// DataOut decodes h as a SCSI Data-Out (RFC 7143 11.7).
func (h *BHS) DataOut() DataOut {
	return DataOut{
		Final:        h.Final(),
		LUN:          h.LUN(),
		ITT:          h.ITT(),
		TTT:          h.u32(20),
		ExpStatSN:    h.u32(28),
		DataSN:       h.u32(36),
		BufferOffset: h.u32(40),
	}
}

// Encode writes d into h.
func (d *DataOut) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpDataOut)
	h[1] = setIf(d.Final, bitFinal)
	h.put64(8, d.LUN)
	h.put32(16, d.ITT)
	h.put32(20, d.TTT)
	h.put32(28, d.ExpStatSN)
	h.put32(36, d.DataSN)
	h.put32(40, d.BufferOffset)
}

// NOPOut is the NOP-Out PDU (RFC 7143 11.18).
type NOPOut struct {
	Immediate                  bool
	LUN                        uint64
	ITT, TTT, CmdSN, ExpStatSN uint32
}

// NOPOut decodes h as a NOP-Out (RFC 7143 11.18).
func (h *BHS) NOPOut() NOPOut {
	return NOPOut{
		Immediate: h.Immediate(),
		LUN:       h.LUN(),
		ITT:       h.ITT(),
		TTT:       h.u32(20),
		CmdSN:     h.u32(24),
		ExpStatSN: h.u32(28),
	}
}

// Encode writes n into h.
func (n *NOPOut) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpNOPOut) | setIf(n.Immediate, bitImmediate)
	h[1] = bitFinal // RFC 7143 11.18: byte 1 is always 0x80
	h.put64(8, n.LUN)
	h.put32(16, n.ITT)
	h.put32(20, n.TTT)
	h.put32(24, n.CmdSN)
	h.put32(28, n.ExpStatSN)
}

// Task management function codes (RFC 7143 11.5.1; 9-12 from RFC 7144 4.x).
const (
	TMFAbortTask        = 1
	TMFAbortTaskSet     = 2
	TMFClearACA         = 3
	TMFClearTaskSet     = 4
	TMFLogicalUnitReset = 5
	TMFTargetWarmReset  = 6
	TMFTargetColdReset  = 7
	TMFTaskReassign     = 8
	TMFQueryTask        = 9
	TMFQueryTaskSet     = 10
	TMFITNexusReset     = 11
	TMFQueryAsyncEvent  = 12
)

// Task management response codes (RFC 7143 11.6.1; 7 from RFC 7144 4.2).
const (
	TMFRespFunctionComplete     = 0
	TMFRespTaskNotExist         = 1
	TMFRespLUNNotExist          = 2
	TMFRespTaskStillAllegiant   = 3
	TMFRespReassignNotSupported = 4
	TMFRespNotSupported         = 5
	TMFRespAuthorizationFailed  = 6
	TMFRespFunctionSucceeded    = 7
	TMFRespFunctionRejected     = 255
)

// TaskMgmtRequest is the Task Management Function Request (RFC 7143 11.5).
type TaskMgmtRequest struct {
	Immediate                                          bool
	Function                                           uint8
	LUN                                                uint64
	ITT, ReferencedTaskTag, CmdSN, ExpStatSN, RefCmdSN uint32
	ExpDataSN                                          uint32
}

// TaskMgmtRequest decodes h as a Task Management Function Request.
func (h *BHS) TaskMgmtRequest() TaskMgmtRequest {
	return TaskMgmtRequest{
		Immediate:         h.Immediate(),
		Function:          h[1] & 0x7f,
		LUN:               h.LUN(),
		ITT:               h.ITT(),
		ReferencedTaskTag: h.u32(20),
		CmdSN:             h.u32(24),
		ExpStatSN:         h.u32(28),
		RefCmdSN:          h.u32(32),
		ExpDataSN:         h.u32(36),
	}
}

// Encode writes t into h.
func (t *TaskMgmtRequest) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpTaskMgmtRequest) | setIf(t.Immediate, bitImmediate)
	h[1] = bitFinal | t.Function&0x7f
	h.put64(8, t.LUN)
	h.put32(16, t.ITT)
	h.put32(20, t.ReferencedTaskTag)
	h.put32(24, t.CmdSN)
	h.put32(28, t.ExpStatSN)
	h.put32(32, t.RefCmdSN)
	h.put32(36, t.ExpDataSN)
}

// LoginRequest is the Login Request PDU (RFC 7143 11.12).
type LoginRequest struct {
	Transit, Continue      bool
	CSG, NSG               uint8
	VersionMax, VersionMin uint8
	ISID                   [6]byte
	TSIH                   uint16
	ITT                    uint32
	CID                    uint16
	CmdSN, ExpStatSN       uint32
}

// LoginRequest decodes h as a Login Request (RFC 7143 11.12).
func (h *BHS) LoginRequest() LoginRequest {
	l := LoginRequest{
		Transit:    h.flag(1, 0x80),
		Continue:   h.flag(1, 0x40),
		CSG:        (h[1] >> 2) & 0x03,
		NSG:        h[1] & 0x03,
		VersionMax: h[2],
		VersionMin: h[3],
		TSIH:       h.u16(14),
		ITT:        h.ITT(),
		CID:        h.u16(20),
		CmdSN:      h.u32(24),
		ExpStatSN:  h.u32(28),
	}
	copy(l.ISID[:], h[8:14])
	return l
}

// Encode writes l into h. RFC 7143 11.12: the I bit is always 1.
func (l *LoginRequest) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpLoginRequest) | bitImmediate
	h[1] = setIf(l.Transit, 0x80) | setIf(l.Continue, 0x40) | (l.CSG&3)<<2 | l.NSG&3
	h[2] = l.VersionMax
	h[3] = l.VersionMin
	copy(h[8:14], l.ISID[:])
	h.put16(14, l.TSIH)
	h.put32(16, l.ITT)
	h.put16(20, l.CID)
	h.put32(24, l.CmdSN)
	h.put32(28, l.ExpStatSN)
}

// TextRequest is the Text Request PDU (RFC 7143 11.10).
type TextRequest struct {
	Immediate, Final, Continue bool
	LUN                        uint64
	ITT, TTT, CmdSN, ExpStatSN uint32
}

// TextRequest decodes h as a Text Request (RFC 7143 11.10).
func (h *BHS) TextRequest() TextRequest {
	return TextRequest{
		Immediate: h.Immediate(),
		Final:     h.Final(),
		Continue:  h.flag(1, 0x40),
		LUN:       h.LUN(),
		ITT:       h.ITT(),
		TTT:       h.u32(20),
		CmdSN:     h.u32(24),
		ExpStatSN: h.u32(28),
	}
}

// Encode writes t into h.
func (t *TextRequest) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpTextRequest) | setIf(t.Immediate, bitImmediate)
	h[1] = setIf(t.Final, bitFinal) | setIf(t.Continue, 0x40)
	h.put64(8, t.LUN)
	h.put32(16, t.ITT)
	h.put32(20, t.TTT)
	h.put32(24, t.CmdSN)
	h.put32(28, t.ExpStatSN)
}

// Logout reason codes (RFC 7143 11.14.1).
const (
	LogoutCloseSession      = 0
	LogoutCloseConnection   = 1
	LogoutRemoveForRecovery = 2
)

// Logout response codes (RFC 7143 11.15.1).
const (
	LogoutRespSuccess             = 0
	LogoutRespCIDNotFound         = 1
	LogoutRespRecoveryUnsupported = 2
	LogoutRespCleanupFailed       = 3
)

// LogoutRequest is the Logout Request PDU (RFC 7143 11.14).
type LogoutRequest struct {
	Immediate        bool
	ReasonCode       uint8
	ITT              uint32
	CID              uint16
	CmdSN, ExpStatSN uint32
}

// LogoutRequest decodes h as a Logout Request (RFC 7143 11.14).
func (h *BHS) LogoutRequest() LogoutRequest {
	return LogoutRequest{
		Immediate:  h.Immediate(),
		ReasonCode: h[1] & 0x7f,
		ITT:        h.ITT(),
		CID:        h.u16(20),
		CmdSN:      h.u32(24),
		ExpStatSN:  h.u32(28),
	}
}

// Encode writes l into h.
func (l *LogoutRequest) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpLogoutRequest) | setIf(l.Immediate, bitImmediate)
	h[1] = bitFinal | l.ReasonCode&0x7f
	h.put32(16, l.ITT)
	h.put16(20, l.CID)
	h.put32(24, l.CmdSN)
	h.put32(28, l.ExpStatSN)
}

// SNACK types (RFC 7143 11.16.1).
const (
	SNACKDataR2T = 0
	SNACKStatus  = 1
	SNACKDataACK = 2
	SNACKRData   = 3
)

// SNACKRequest is the SNACK Request PDU (RFC 7143 11.16).
type SNACKRequest struct {
	Type                                   uint8
	LUN                                    uint64
	ITT, TTT, ExpStatSN, BegRun, RunLength uint32
}

// SNACKRequest decodes h as a SNACK Request (RFC 7143 11.16).
func (h *BHS) SNACKRequest() SNACKRequest {
	return SNACKRequest{
		Type:      h[1] & 0x0f,
		LUN:       h.LUN(),
		ITT:       h.ITT(),
		TTT:       h.u32(20),
		ExpStatSN: h.u32(28),
		BegRun:    h.u32(40),
		RunLength: h.u32(44),
	}
}

// Encode writes s into h.
func (s *SNACKRequest) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpSNACKRequest)
	h[1] = bitFinal | s.Type&0x0f
	h.put64(8, s.LUN)
	h.put32(16, s.ITT)
	h.put32(20, s.TTT)
	h.put32(28, s.ExpStatSN)
	h.put32(40, s.BegRun)
	h.put32(44, s.RunLength)
}

// SCSI Response codes (RFC 7143 11.4.3).
const (
	ResponseCompleted     = 0x00
	ResponseTargetFailure = 0x01
)

// SCSIResponse is the SCSI Response PDU (RFC 7143 11.4). The data segment
// carries the sense data with its 2-byte SenseLength prefix (11.4.7).
type SCSIResponse struct {
	BidiOverflow, BidiUnderflow, Overflow, Underflow bool
	Response, Status                                 uint8
	ITT                                              uint32
	StatSN, ExpCmdSN, MaxCmdSN, ExpDataSN            uint32
	BidiResidualCount, ResidualCount                 uint32
}

// Encode zeroes h and fills every field but the lengths.
func (r *SCSIResponse) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpSCSIResponse)
	h[1] = bitFinal | setIf(r.BidiOverflow, 0x10) | setIf(r.BidiUnderflow, 0x08) |
		setIf(r.Overflow, 0x04) | setIf(r.Underflow, 0x02)
	h[2] = r.Response
	h[3] = r.Status
	h.put32(16, r.ITT)
	// bytes 20-23: SNACK Tag, zero when no R-Data SNACK was served.
	h.put32(24, r.StatSN)
	h.put32(28, r.ExpCmdSN)
	h.put32(32, r.MaxCmdSN)
	h.put32(36, r.ExpDataSN)
	h.put32(40, r.BidiResidualCount)
	h.put32(44, r.ResidualCount)
}

// SCSIResponse decodes h as a SCSI Response; used by tests and tools.
func (h *BHS) SCSIResponse() SCSIResponse {
	return SCSIResponse{
		BidiOverflow:      h.flag(1, 0x10),
		BidiUnderflow:     h.flag(1, 0x08),
		Overflow:          h.flag(1, 0x04),
		Underflow:         h.flag(1, 0x02),
		Response:          h[2],
		Status:            h[3],
		ITT:               h.ITT(),
		StatSN:            h.u32(24),
		ExpCmdSN:          h.u32(28),
		MaxCmdSN:          h.u32(32),
		ExpDataSN:         h.u32(36),
		BidiResidualCount: h.u32(40),
		ResidualCount:     h.u32(44),
	}
}

// DataIn is the SCSI Data-In PDU (RFC 7143 11.7). HasStatus is the S bit:
// the PDU also carries the command status (phase collapse, 11.7.4), which is
// only allowed together with Final.
type DataIn struct {
	Final, Acknowledge, Overflow, Underflow, HasStatus bool
	Status                                             uint8
	LUN                                                uint64
	ITT, TTT, StatSN, ExpCmdSN, MaxCmdSN               uint32
	DataSN, BufferOffset, ResidualCount                uint32
}

// Encode zeroes h and fills every field but the lengths.
func (d *DataIn) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpDataIn)
	h[1] = setIf(d.Final, bitFinal) | setIf(d.Acknowledge, 0x40) |
		setIf(d.Overflow, 0x04) | setIf(d.Underflow, 0x02) | setIf(d.HasStatus, 0x01)
	if d.HasStatus {
		// RFC 7143 11.7.1: Status and StatSN are only valid with S=1;
		// otherwise they are reserved.
		h[3] = d.Status
		h.put32(24, d.StatSN)
	}
	h.put64(8, d.LUN)
	h.put32(16, d.ITT)
	h.put32(20, d.TTT)
	h.put32(28, d.ExpCmdSN)
	h.put32(32, d.MaxCmdSN)
	h.put32(36, d.DataSN)
	h.put32(40, d.BufferOffset)
	h.put32(44, d.ResidualCount)
}

// DataIn decodes h as a SCSI Data-In; used by tests and tools.
func (h *BHS) DataIn() DataIn {
	return DataIn{
		Final:         h.Final(),
		Acknowledge:   h.flag(1, 0x40),
		Overflow:      h.flag(1, 0x04),
		Underflow:     h.flag(1, 0x02),
		HasStatus:     h.flag(1, 0x01),
		Status:        h[3],
		LUN:           h.LUN(),
		ITT:           h.ITT(),
		TTT:           h.u32(20),
		StatSN:        h.u32(24),
		ExpCmdSN:      h.u32(28),
		MaxCmdSN:      h.u32(32),
		DataSN:        h.u32(36),
		BufferOffset:  h.u32(40),
		ResidualCount: h.u32(44),
	}
}

// R2T is the Ready To Transfer PDU (RFC 7143 11.8).
type R2T struct {
	LUN                                            uint64
	ITT, TTT, StatSN, ExpCmdSN, MaxCmdSN           uint32
	R2TSN, BufferOffset, DesiredDataTransferLength uint32
}

// Encode zeroes h and fills every field but the lengths.
func (r *R2T) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpR2T)
	h[1] = bitFinal
	h.put64(8, r.LUN)
	h.put32(16, r.ITT)
	h.put32(20, r.TTT)
	h.put32(24, r.StatSN)
	h.put32(28, r.ExpCmdSN)
	h.put32(32, r.MaxCmdSN)
	h.put32(36, r.R2TSN)
	h.put32(40, r.BufferOffset)
	h.put32(44, r.DesiredDataTransferLength)
}

// R2T decodes h as an R2T; used by tests and tools.
func (h *BHS) R2T() R2T {
	return R2T{
		LUN:                       h.LUN(),
		ITT:                       h.ITT(),
		TTT:                       h.u32(20),
		StatSN:                    h.u32(24),
		ExpCmdSN:                  h.u32(28),
		MaxCmdSN:                  h.u32(32),
		R2TSN:                     h.u32(36),
		BufferOffset:              h.u32(40),
		DesiredDataTransferLength: h.u32(44),
	}
}

// NOPIn is the NOP-In PDU (RFC 7143 11.19). A target-initiated ping has
// ITT = ReservedTag and a TTT other than ReservedTag.
type NOPIn struct {
	LUN                                  uint64
	ITT, TTT, StatSN, ExpCmdSN, MaxCmdSN uint32
}

// Encode zeroes h and fills every field but the lengths.
func (n *NOPIn) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpNOPIn)
	h[1] = bitFinal
	h.put64(8, n.LUN)
	h.put32(16, n.ITT)
	h.put32(20, n.TTT)
	h.put32(24, n.StatSN)
	h.put32(28, n.ExpCmdSN)
	h.put32(32, n.MaxCmdSN)
}

// NOPIn decodes h as a NOP-In; used by tests and tools.
func (h *BHS) NOPIn() NOPIn {
	return NOPIn{
		LUN:      h.LUN(),
		ITT:      h.ITT(),
		TTT:      h.u32(20),
		StatSN:   h.u32(24),
		ExpCmdSN: h.u32(28),
		MaxCmdSN: h.u32(32),
	}
}

// TaskMgmtResponse is the Task Management Function Response (RFC 7143 11.6).
type TaskMgmtResponse struct {
	Response                        uint8
	ITT, StatSN, ExpCmdSN, MaxCmdSN uint32
}

// Encode zeroes h and fills every field but the lengths.
func (t *TaskMgmtResponse) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpTaskMgmtResponse)
	h[1] = bitFinal
	h[2] = t.Response
	h.put32(16, t.ITT)
	h.put32(24, t.StatSN)
	h.put32(28, t.ExpCmdSN)
	h.put32(32, t.MaxCmdSN)
}

// TaskMgmtResponse decodes h as a Task Management Function Response.
func (h *BHS) TaskMgmtResponse() TaskMgmtResponse {
	return TaskMgmtResponse{
		Response: h[2],
		ITT:      h.ITT(),
		StatSN:   h.u32(24),
		ExpCmdSN: h.u32(28),
		MaxCmdSN: h.u32(32),
	}
}

// Login status classes (RFC 7143 11.13.5).
const (
	LoginClassSuccess        = 0x00
	LoginClassRedirection    = 0x01
	LoginClassInitiatorError = 0x02
	LoginClassTargetError    = 0x03
)

// Login status details, to be paired with the class named in the constant
// (RFC 7143 11.13.5).
const (
	LoginDetailSuccess = 0x00

	LoginDetailMovedTemporarily = 0x01 // class Redirection
	LoginDetailMovedPermanently = 0x02 // class Redirection

	LoginDetailInitiatorError      = 0x00 // class InitiatorError
	LoginDetailAuthFailure         = 0x01
	LoginDetailAuthorizationFailed = 0x02
	LoginDetailNotFound            = 0x03
	LoginDetailTargetRemoved       = 0x04
	LoginDetailUnsupportedVersion  = 0x05
	LoginDetailTooManyConnections  = 0x06
	LoginDetailMissingParameter    = 0x07
	LoginDetailCantIncludeInSess   = 0x08
	LoginDetailSessionTypeUnsupp   = 0x09
	LoginDetailSessionNotExist     = 0x0a
	LoginDetailInvalidDuringLogin  = 0x0b

	LoginDetailTargetError        = 0x00 // class TargetError
	LoginDetailServiceUnavailable = 0x01
	LoginDetailOutOfResources     = 0x02
)

// LoginResponse is the Login Response PDU (RFC 7143 11.13).
type LoginResponse struct {
	Transit, Continue          bool
	CSG, NSG                   uint8
	VersionMax, VersionActive  uint8
	ISID                       [6]byte
	TSIH                       uint16
	ITT                        uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	StatusClass, StatusDetail  uint8
}

// Encode zeroes h and fills every field but the lengths.
func (l *LoginResponse) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpLoginResponse)
	h[1] = setIf(l.Transit, 0x80) | setIf(l.Continue, 0x40) | (l.CSG&3)<<2 | l.NSG&3
	h[2] = l.VersionMax
	h[3] = l.VersionActive
	copy(h[8:14], l.ISID[:])
	h.put16(14, l.TSIH)
	h.put32(16, l.ITT)
	h.put32(24, l.StatSN)
	h.put32(28, l.ExpCmdSN)
	h.put32(32, l.MaxCmdSN)
	h[36] = l.StatusClass
	h[37] = l.StatusDetail
}

// LoginResponse decodes h as a Login Response; used by tests and tools.
func (h *BHS) LoginResponse() LoginResponse {
	l := LoginResponse{
		Transit:       h.flag(1, 0x80),
		Continue:      h.flag(1, 0x40),
		CSG:           (h[1] >> 2) & 3,
		NSG:           h[1] & 3,
		VersionMax:    h[2],
		VersionActive: h[3],
		TSIH:          h.u16(14),
		ITT:           h.ITT(),
		StatSN:        h.u32(24),
		ExpCmdSN:      h.u32(28),
		MaxCmdSN:      h.u32(32),
		StatusClass:   h[36],
		StatusDetail:  h[37],
	}
	copy(l.ISID[:], h[8:14])
	return l
}

// TextResponse is the Text Response PDU (RFC 7143 11.11).
type TextResponse struct {
	Final, Continue                      bool
	LUN                                  uint64
	ITT, TTT, StatSN, ExpCmdSN, MaxCmdSN uint32
}

// Encode zeroes h and fills every field but the lengths.
func (t *TextResponse) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpTextResponse)
	h[1] = setIf(t.Final, bitFinal) | setIf(t.Continue, 0x40)
	h.put64(8, t.LUN)
	h.put32(16, t.ITT)
	h.put32(20, t.TTT)
	h.put32(24, t.StatSN)
	h.put32(28, t.ExpCmdSN)
	h.put32(32, t.MaxCmdSN)
}

// TextResponse decodes h as a Text Response; used by tests and tools.
func (h *BHS) TextResponse() TextResponse {
	return TextResponse{
		Final:    h.Final(),
		Continue: h.flag(1, 0x40),
		LUN:      h.LUN(),
		ITT:      h.ITT(),
		TTT:      h.u32(20),
		StatSN:   h.u32(24),
		ExpCmdSN: h.u32(28),
		MaxCmdSN: h.u32(32),
	}
}

// LogoutResponse is the Logout Response PDU (RFC 7143 11.15).
type LogoutResponse struct {
	Response                        uint8
	ITT, StatSN, ExpCmdSN, MaxCmdSN uint32
	Time2Wait, Time2Retain          uint16
}

// Encode zeroes h and fills every field but the lengths.
func (l *LogoutResponse) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpLogoutResponse)
	h[1] = bitFinal
	h[2] = l.Response
	h.put32(16, l.ITT)
	h.put32(24, l.StatSN)
	h.put32(28, l.ExpCmdSN)
	h.put32(32, l.MaxCmdSN)
	h.put16(40, l.Time2Wait)
	h.put16(42, l.Time2Retain)
}

// LogoutResponse decodes h as a Logout Response; used by tests and tools.
func (h *BHS) LogoutResponse() LogoutResponse {
	return LogoutResponse{
		Response:    h[2],
		ITT:         h.ITT(),
		StatSN:      h.u32(24),
		ExpCmdSN:    h.u32(28),
		MaxCmdSN:    h.u32(32),
		Time2Wait:   h.u16(40),
		Time2Retain: h.u16(42),
	}
}

// Asynchronous message event codes (RFC 7143 11.9.1).
const (
	AsyncEventSCSI              = 0
	AsyncEventRequestLogout     = 1
	AsyncEventDropConnection    = 2
	AsyncEventDropAllConnection = 3
	AsyncEventRequestNegotiate  = 4
	AsyncEventVendorSpecific    = 255
)

// AsyncMessage is the Asynchronous Message PDU (RFC 7143 11.9). Its ITT is
// always ReservedTag; for AsyncEventSCSI the data segment carries sense data.
type AsyncMessage struct {
	LUN                                uint64
	StatSN, ExpCmdSN, MaxCmdSN         uint32
	AsyncEvent, AsyncVCode             uint8
	Parameter1, Parameter2, Parameter3 uint16
}

// Encode zeroes h and fills every field but the lengths.
func (a *AsyncMessage) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpAsyncMessage)
	h[1] = bitFinal
	h.put64(8, a.LUN)
	h.put32(16, ReservedTag)
	h.put32(24, a.StatSN)
	h.put32(28, a.ExpCmdSN)
	h.put32(32, a.MaxCmdSN)
	h[36] = a.AsyncEvent
	h[37] = a.AsyncVCode
	h.put16(38, a.Parameter1)
	h.put16(40, a.Parameter2)
	h.put16(42, a.Parameter3)
}

// AsyncMessage decodes h as an Asynchronous Message; used by tests and tools.
func (h *BHS) AsyncMessage() AsyncMessage {
	return AsyncMessage{
		LUN:        h.LUN(),
		StatSN:     h.u32(24),
		ExpCmdSN:   h.u32(28),
		MaxCmdSN:   h.u32(32),
		AsyncEvent: h[36],
		AsyncVCode: h[37],
		Parameter1: h.u16(38),
		Parameter2: h.u16(40),
		Parameter3: h.u16(42),
	}
}

// Reject reason codes (RFC 7143 11.17.1).
const (
	RejectDataDigestError       = 0x02
	RejectSNACKReject           = 0x03
	RejectProtocolError         = 0x04
	RejectCommandNotSupported   = 0x05
	RejectImmediateCommand      = 0x06
	RejectTaskInProgress        = 0x07
	RejectInvalidDataACK        = 0x08
	RejectInvalidPDUField       = 0x09
	RejectLongOperation         = 0x0a
	RejectDeprecatedNegotiation = 0x0b // "Negotiation Reset" in RFC 3720
	RejectWaitingForLogout      = 0x0c
)

// Reject is the Reject PDU (RFC 7143 11.17). Its data segment carries the
// complete BHS of the rejected PDU; its ITT is always ReservedTag.
type Reject struct {
	Reason                                   uint8
	StatSN, ExpCmdSN, MaxCmdSN, DataSN_R2TSN uint32
}

// Encode zeroes h and fills every field but the lengths.
func (r *Reject) Encode(h *BHS) {
	*h = BHS{}
	h[0] = byte(OpReject)
	h[1] = bitFinal
	h[2] = r.Reason
	h.put32(16, ReservedTag)
	h.put32(24, r.StatSN)
	h.put32(28, r.ExpCmdSN)
	h.put32(32, r.MaxCmdSN)
	h.put32(36, r.DataSN_R2TSN)
}

// Reject decodes h as a Reject; used by tests and tools.
func (h *BHS) Reject() Reject {
	return Reject{
		Reason:       h[2],
		StatSN:       h.u32(24),
		ExpCmdSN:     h.u32(28),
		MaxCmdSN:     h.u32(32),
		DataSN_R2TSN: h.u32(36),
	}
}

// AHS types (RFC 7143 11.2.2).
const (
	AHSExtendedCDB      = 1
	AHSBidiReadLength   = 2
	ahsHeaderLength     = 3 // AHSLength (2 bytes) + AHSType (1 byte)
	ahsExtCDBMinLength  = 2 // reserved byte + at least one CDB byte
	ahsBidiLengthLength = 5 // reserved byte + 4-byte length
)

// walkAHS calls fn for each AHS in ahs, after checking that every AHS header
// and its padded body lie inside the segment (RFC 7143 11.2.2: each AHS is
// padded to a multiple of 4 bytes). A malformed segment is a *ProtocolError.
func walkAHS(ahs []byte, fn func(typ uint8, body []byte) error) error {
	for off := 0; off < len(ahs); {
		if len(ahs)-off < 4 {
			return &ProtocolError{Reason: fmt.Sprintf("AHS at offset %d: %d bytes left, too short for an AHS header", off, len(ahs)-off)}
		}
		length := int(binary.BigEndian.Uint16(ahs[off:]))
		// AHSType (ahs[off+2]) is not checked here: RFC 7143 11.2.2.2 leaves
		// unknown types to the consumer, which ignores them.
		typ := ahs[off+2]
		padded := (ahsHeaderLength + length + 3) &^ 3
		if padded > len(ahs)-off {
			return &ProtocolError{Reason: fmt.Sprintf("AHS at offset %d: AHSLength %d runs past the %d-byte AHS segment", off, length, len(ahs))}
		}
		if err := fn(typ, ahs[off+ahsHeaderLength:off+ahsHeaderLength+length]); err != nil {
			return err
		}
		off += padded
	}
	return nil
}

// ValidateAHS checks the structure of a whole AHS segment.
func ValidateAHS(ahs []byte) error {
	return walkAHS(ahs, func(uint8, []byte) error { return nil })
}

// ExtendedCDB returns the CDB bytes beyond the first 16 carried in an
// Extended CDB AHS (RFC 7143 11.2.2.3: AHSLength = CDB length - 15, a
// reserved byte, then the remaining CDB bytes). It returns nil and no error
// when there is no such AHS. The result aliases ahs.
func ExtendedCDB(ahs []byte) ([]byte, error) {
	var ext []byte
	found := false
	err := walkAHS(ahs, func(typ uint8, body []byte) error {
		if typ != AHSExtendedCDB {
			return nil
		}
		if found {
			return &ProtocolError{Reason: "more than one Extended CDB AHS"}
		}
		found = true
		if len(body) < ahsExtCDBMinLength {
			return &ProtocolError{Reason: fmt.Sprintf("Extended CDB AHS with AHSLength %d carries no CDB bytes", len(body))}
		}
		ext = body[1:]
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ext, nil
}

// BidiReadExpectedLength returns the Read Expected Data Transfer Length of a
// bidirectional command (RFC 7143 11.2.2.4), ok=false when it is absent.
func BidiReadExpectedLength(ahs []byte) (length uint32, ok bool, err error) {
	err = walkAHS(ahs, func(typ uint8, body []byte) error {
		if typ != AHSBidiReadLength {
			return nil
		}
		if ok {
			return &ProtocolError{Reason: "more than one Bidirectional Read Expected Data Transfer Length AHS"}
		}
		if len(body) != ahsBidiLengthLength {
			return &ProtocolError{Reason: fmt.Sprintf("Bidirectional Read Expected Data Transfer Length AHS has AHSLength %d, want %d", len(body), ahsBidiLengthLength)}
		}
		length, ok = binary.BigEndian.Uint32(body[1:]), true
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return length, ok, nil
}

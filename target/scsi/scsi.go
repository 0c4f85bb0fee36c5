// Package scsi is the SCSI core of Blockport: it executes commands against
// logical units. It knows SAM/SPC/SBC and nothing of TCP or iSCSI.
//
// A command goes through two steps, as in the Linux target core's
// sbc_parse_cdb: Prepare decodes the CDB from the dispatch table, sets the
// data direction and transfer length and checks everything that can be
// checked before data moves; Execute then runs it. Both return a
// *sense.Error for CHECK CONDITION or a StatusError for another status;
// StatusOf turns either into what the fabric sends.
package scsi

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/blockport/blockport/target/scsi/sense"
)

// Nexus identifies an I_T nexus (SAM-5): initiator port + target port.
// It is comparable and is used directly as a map key inside the package.
type Nexus struct {
	Initiator string  // iSCSI initiator name
	ISID      [6]byte // the initiator part of the session identifier
	Target    string  // iSCSI target name
	TPGT      uint16  // target portal group tag
}

// Key is a stable unique string for the nexus: the iSCSI initiator port
// name and target port name (RFC 7143 "iqn...,i,0x<ISID>" and
// "iqn...,t,0x<TPGT>") joined by a comma.
func (n *Nexus) Key() string {
	b := make([]byte, 0, len(n.Initiator)+len(n.Target)+32)
	b = append(b, n.Initiator...)
	b = append(b, ",i,0x"...)
	b = hex.AppendEncode(b, n.ISID[:])
	b = append(b, ',')
	b = append(b, n.Target...)
	b = append(b, ",t,0x"...)
	b = fmt.Appendf(b, "%04x", n.TPGT)
	return string(b)
}

// TaskAttr is the task attribute (SAM-5); the values are the iSCSI
// ATTR field values (RFC 7143 11.3.1).
type TaskAttr uint8

// Task attributes.
const (
	TaskUntagged    TaskAttr = 0
	TaskSimple      TaskAttr = 1
	TaskOrdered     TaskAttr = 2
	TaskHeadOfQueue TaskAttr = 3
	TaskACA         TaskAttr = 4
)

// Direction is the data transfer direction of a command, seen from the initiator.
type Direction uint8

// Data directions.
const (
	DirNone  Direction = iota // no data
	DirRead                   // data-in: target to initiator
	DirWrite                  // data-out: initiator to target
)

func (d Direction) String() string {
	switch d {
	case DirNone:
		return "none"
	case DirRead:
		return "read"
	case DirWrite:
		return "write"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// Status is a SCSI status code (SAM-5).
type Status byte

// Status codes.
const (
	StatusGood                Status = 0x00
	StatusCheckCondition      Status = 0x02
	StatusConditionMet        Status = 0x04
	StatusBusy                Status = 0x08
	StatusReservationConflict Status = 0x18
	StatusTaskSetFull         Status = 0x28
	StatusACAActive           Status = 0x30
	StatusTaskAborted         Status = 0x40
)

func (s Status) String() string {
	switch s {
	case StatusGood:
		return "GOOD"
	case StatusCheckCondition:
		return "CHECK CONDITION"
	case StatusConditionMet:
		return "CONDITION MET"
	case StatusBusy:
		return "BUSY"
	case StatusReservationConflict:
		return "RESERVATION CONFLICT"
	case StatusTaskSetFull:
		return "TASK SET FULL"
	case StatusACAActive:
		return "ACA ACTIVE"
	case StatusTaskAborted:
		return "TASK ABORTED"
	}
	return fmt.Sprintf("Status(0x%02x)", byte(s))
}

// StatusError ends a command with a status other than CHECK CONDITION,
// e.g. StatusError(StatusReservationConflict).
type StatusError Status

func (e StatusError) Error() string { return "scsi status " + Status(e).String() }

// Command is one SCSI task as the fabric hands it to the core.
type Command struct {
	Nexus          *Nexus
	LUN            uint64 // the LUN number, already decoded from the 8-byte SAM LUN
	CDB            []byte
	Attr           TaskAttr
	Tag            uint64
	ExpectedLength uint32 // the initiator's expected data transfer length (iSCSI EDTL)

	// Set by Prepare:
	Dir Direction
	// TransferLength is in bytes: the data-out the command needs (writes) or
	// the most data-in it can return (reads: allocation length or blocks*block size).
	TransferLength int

	// Set by the fabric before Execute. Writes: the data-out received, of
	// length min(ExpectedLength, TransferLength); reads: a buffer of length
	// TransferLength to fill.
	Data []byte

	// Set by Prepare, read by Execute; owned by the goroutine running the command.
	lu   *LU      // nil only for the commands that work without a logical unit
	op   *opDesc  // the dispatch table entry
	args cdbArgs  // fields decoded from the CDB
	ua   *uaState // the nexus' UA state on lu (for REQUEST SENSE)
	// readOnly: the LU or the nexus' LUN mapping refuses writes.
	readOnly bool
}

// LU is the logical unit the command addresses, as Prepare resolved it for
// the command's nexus (nil when the nexus sees none at its LUN). Two
// initiators may number one LU differently: compare LUs, not LUN numbers.
func (c *Command) LU() *LU { return c.lu }

// Immediate reports whether a prepared command is a plain READ or WRITE of
// an LU whose backstore finishes I/O without waiting for a device
// (backstore.Immediate). The fabric may then run it on the goroutine that
// received it. Such a command may still wait briefly for an LBA range lock
// held by a COMPARE AND WRITE running elsewhere, never for the fabric.
func (c *Command) Immediate() bool {
	return c.op != nil && c.op.quick && c.lu != nil && c.lu.immediate
}

// Name is the command's name from the dispatch table ("READ(10)"), or ""
// before Prepare succeeded in finding the opcode. Metrics label by it.
func (c *Command) Name() string {
	if c.op == nil {
		return ""
	}
	return c.op.name
}

// cdbArgs holds what the parse functions decode for the exec functions.
type cdbArgs struct {
	lba      uint64
	blocks   uint32 // number of logical blocks (0 may mean "to the end" for some commands)
	fua      bool
	immed    bool
	bytchk   uint8
	alloc    uint32 // allocation length for data-in commands
	evpd     bool
	page     uint8 // INQUIRY page code / MODE SENSE page code
	subpage  uint8
	pc       uint8 // MODE SENSE page control
	dbd      bool
	llbaa    bool
	desc     bool  // REQUEST SENSE DESC
	selRep   uint8 // REPORT LUNS select report
	start    bool  // START STOP UNIT; PREVENT ALLOW MEDIUM REMOVAL's PREVENT
	loej     bool  // START STOP UNIT load/eject
	noFlush  bool
	powCond  uint8
	rsocOpts uint8 // REPORT SUPPORTED OPERATION CODES
	rsocOp   uint8
	rsocSA   uint16
	rctd     bool
	ten      bool // MODE SENSE(10) rather than (6)
	wsUnmap  bool // WRITE SAME UNMAP bit (provisioning.go)
	ndob     bool // WRITE SAME(16) NO DATA-OUT BUFFER bit
}

// StatusOf maps an error from Prepare or Execute to the SCSI status and the
// sense data to send (nil unless CHECK CONDITION). Sense is in fixed format
// unless the error asks for descriptor format (the LU's D_SENSE bit). An
// error of another kind is a bug or an unwrapped failure: it becomes
// HARDWARE ERROR / INTERNAL TARGET FAILURE.
func StatusOf(err error) (Status, []byte) {
	if err == nil {
		return StatusGood, nil
	}
	if e, ok := sense.As(err); ok {
		return StatusCheckCondition, e.Bytes()
	}
	var se StatusError
	if errors.As(err, &se) {
		if Status(se) == StatusCheckCondition {
			// CHECK CONDITION always carries sense (SAM-5).
			return StatusCheckCondition, sense.InternalTargetFailure().Fixed()
		}
		return Status(se), nil
	}
	return StatusCheckCondition, sense.InternalTargetFailure().Fixed()
}

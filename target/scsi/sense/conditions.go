package sense

// Conditions of the removable medium, SANITIZE and EXTENDED COPY commands
// (SPC-5 "ASC and ASCQ assignments").
const (
	ascNotReady            = 0x04
	ascMediumNotPresent    = 0x3A
	ascMediumRemoval       = 0x53
	ascCopyTargetDevice    = 0x0D
	ascTooManySegDescs     = 0x26 // with ASCQ 08h
	ascCommandSequence     = 0x2C
	ascMediumFormatCorrupt = 0x31
)

func init() {
	for code, name := range map[uint16]string{
		0x041B: "LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS",
		0x0016: "OPERATION IN PROGRESS",
		0x0D02: "COPY TARGET DEVICE NOT REACHABLE",
		0x2606: "TOO MANY TARGET DESCRIPTORS",
		0x2607: "UNSUPPORTED TARGET DESCRIPTOR TYPE CODE",
		0x2608: "TOO MANY SEGMENT DESCRIPTORS",
		0x2609: "UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE",
		0x2C00: "COMMAND SEQUENCE ERROR",
		0x3103: "SANITIZE COMMAND FAILED",
		0x3A00: "MEDIUM NOT PRESENT",
		0x5302: "MEDIUM REMOVAL PREVENTED",
	} {
		ascNames[code] = name
	}
}

// MediumNotPresent: NOT READY, MEDIUM NOT PRESENT (3Ah/00h).
func MediumNotPresent() *Error { return New(KeyNotReady, ascMediumNotPresent, 0) }

// MediumRemovalPrevented: ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED (53h/02h).
func MediumRemovalPrevented() *Error { return New(KeyIllegalRequest, ascMediumRemoval, 0x02) }

// SanitizeInProgress: NOT READY, LOGICAL UNIT NOT READY, SANITIZE IN
// PROGRESS (04h/1Bh) with the progress in 65536ths (SBC-4 4.11).
func SanitizeInProgress(progress uint16) *Error {
	e := New(KeyNotReady, ascNotReady, 0x1B)
	e.HasProgress, e.Progress = true, progress
	return e
}

// SanitizeFailed: MEDIUM ERROR, SANITIZE COMMAND FAILED (31h/03h): a
// sanitize ended without completing; only a new SANITIZE (or EXIT FAILURE
// MODE) clears it (SBC-4 4.11).
func SanitizeFailed() *Error { return New(KeyMediumError, ascMediumFormatCorrupt, 0x03) }

// CommandSequenceError: ILLEGAL REQUEST, COMMAND SEQUENCE ERROR (2Ch/00h).
func CommandSequenceError() *Error { return New(KeyIllegalRequest, ascCommandSequence, 0) }

// CopyTargetNotReachable: COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE
// (0Dh/02h): an EXTENDED COPY names a logical unit the initiator cannot
// reach, or cannot write (SPC-4 6.4).
func CopyTargetNotReachable() *Error { return New(KeyCopyAborted, ascCopyTargetDevice, 0x02) }

// TooManyTargetDescriptors: ILLEGAL REQUEST, TOO MANY TARGET DESCRIPTORS (26h/06h).
func TooManyTargetDescriptors() *Error { return New(KeyIllegalRequest, ascInvalidFieldInParam, 0x06) }

// UnsupportedTargetDescriptorType: ILLEGAL REQUEST, UNSUPPORTED TARGET
// DESCRIPTOR TYPE CODE (26h/07h), pointing at the descriptor's type byte.
func UnsupportedTargetDescriptorType(byteOffset int) *Error {
	e := New(KeyIllegalRequest, ascInvalidFieldInParam, 0x07)
	e.Field = &FieldPointer{Byte: uint16(byteOffset), Bit: -1}
	return e
}

// TooManySegmentDescriptors: ILLEGAL REQUEST, TOO MANY SEGMENT DESCRIPTORS (26h/08h).
func TooManySegmentDescriptors() *Error { return New(KeyIllegalRequest, ascTooManySegDescs, 0x08) }

// UnsupportedSegmentDescriptorType: ILLEGAL REQUEST, UNSUPPORTED SEGMENT
// DESCRIPTOR TYPE CODE (26h/09h), pointing at the descriptor's type byte.
func UnsupportedSegmentDescriptorType(byteOffset int) *Error {
	e := New(KeyIllegalRequest, ascInvalidFieldInParam, 0x09)
	e.Field = &FieldPointer{Byte: uint16(byteOffset), Bit: -1}
	return e
}

// CopyAborted: COPY ABORTED, NO ADDITIONAL SENSE INFORMATION (00h/00h): a
// segment of an EXTENDED COPY failed while it was being processed (SPC-4:
// errors after segment processing began are reported as COPY ABORTED).
// field, when not nil, is the segment pointer: the byte of the parameter
// list that describes what failed (SD=0).
func CopyAborted(field *FieldPointer) *Error {
	e := New(KeyCopyAborted, ascNoAdditionalInfo, 0)
	e.Field = field
	return e
}

// OperationInProgress: ILLEGAL REQUEST, OPERATION IN PROGRESS (00h/16h): an
// EXTENDED COPY reuses the list identifier of a copy of the same I_T nexus
// that is still running (SPC-4).
func OperationInProgress() *Error { return New(KeyIllegalRequest, ascNoAdditionalInfo, 0x16) }

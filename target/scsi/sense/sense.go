// Package sense holds SCSI sense data as a Go error. A command that ends in
// CHECK CONDITION returns a *Error; the fabric encodes it with Fixed or
// Descriptor (SPC-5) and sends it in the SCSI Response.
//
// Handlers use the named constructors (InvalidFieldInCDB, LBAOutOfRange, ...)
// and never spell sense key / ASC / ASCQ triples themselves.
package sense

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key is a sense key (SPC-5, table "Sense key descriptions").
type Key uint8

// Sense keys used by Blockport.
const (
	KeyNoSense        Key = 0x0
	KeyRecoveredError Key = 0x1
	KeyNotReady       Key = 0x2
	KeyMediumError    Key = 0x3
	KeyHardwareError  Key = 0x4
	KeyIllegalRequest Key = 0x5
	KeyUnitAttention  Key = 0x6
	KeyDataProtect    Key = 0x7
	KeyCopyAborted    Key = 0xA
	KeyAbortedCommand Key = 0xB
	KeyMiscompare     Key = 0xE
)

var keyNames = [16]string{
	"NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR", "HARDWARE ERROR",
	"ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT", "BLANK CHECK", "VENDOR SPECIFIC",
	"COPY ABORTED", "ABORTED COMMAND", "RESERVED", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED",
}

func (k Key) String() string {
	if int(k) < len(keyNames) {
		return keyNames[k]
	}
	return fmt.Sprintf("KEY(0x%x)", uint8(k))
}

// Response codes (SPC-5).
const (
	codeFixedCurrent      = 0x70
	codeFixedDeferred     = 0x71
	codeDescriptorCurrent = 0x72
	codeDescDeferred      = 0x73
)

// Sizes of the encodings this package produces.
const (
	FixedLen   = 18 // fixed format with the additional sense length 10 (SPC-5)
	MaxDescLen = 8 + 12 + 8
)

// FieldPointer is the sense-key-specific field pointer of an ILLEGAL REQUEST
// (SPC-5): which byte, and optionally which bit, of the CDB or of
// the parameter data was wrong.
type FieldPointer struct {
	CDB  bool   // C/D: true when the field is in the CDB, false for parameter data
	Byte uint16 // FIELD POINTER: the byte offset
	Bit  int8   // BIT POINTER 0..7 (the most significant bit of the field); -1 when the whole byte is meant (BPV=0)
}

// Error is one sense data instance. It implements error.
type Error struct {
	Key  Key
	ASC  byte
	ASCQ byte
	// HasInfo reports that Info is valid: the INFORMATION field (SPC-5),
	// e.g. the failing LBA of a medium error or the miscompare offset.
	HasInfo bool
	Info    uint64
	// Field, when not nil, is sent as the sense-key-specific field pointer with SKSV=1.
	Field *FieldPointer
	// HasProgress sends Progress as the sense-key-specific PROGRESS
	// INDICATION (SPC-5: NOT READY and NO SENSE), in 65536ths of the operation.
	HasProgress bool
	Progress    uint16
	// DescFormat selects descriptor format sense (0x72) for Bytes. The SCSI
	// core sets it from the LU's control mode page D_SENSE bit (SPC-5).
	DescFormat bool
	// Cause is the failure behind the condition (e.g. a backstore I/O
	// error), for logs only; it is never sent to the initiator.
	Cause error
}

// WithCause records the underlying failure and returns e.
func (e *Error) WithCause(err error) *Error {
	e.Cause = err
	return e
}

// Unwrap returns Cause.
func (e *Error) Unwrap() error { return e.Cause }

// New returns sense data with the given key and additional sense code.
func New(key Key, asc, ascq byte) *Error { return &Error{Key: key, ASC: asc, ASCQ: ascq} }

// Code is ASC<<8 | ASCQ, handy for comparisons and tables.
func (e *Error) Code() uint16 { return uint16(e.ASC)<<8 | uint16(e.ASCQ) }

func (e *Error) Error() string {
	s := fmt.Sprintf("check condition: %s, ASC/ASCQ %02Xh/%02Xh", e.Key, e.ASC, e.ASCQ)
	if name := ascName(e.ASC, e.ASCQ); name != "" {
		s += " (" + name + ")"
	}
	if e.HasInfo {
		s += fmt.Sprintf(", information 0x%x", e.Info)
	}
	if e.Field != nil {
		where := "parameter data"
		if e.Field.CDB {
			where = "CDB"
		}
		s += fmt.Sprintf(", %s byte %d", where, e.Field.Byte)
		if e.Field.Bit >= 0 {
			s += fmt.Sprintf(" bit %d", e.Field.Bit)
		}
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Is makes errors.Is match two sense errors with the same key, ASC and ASCQ.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Key == e.Key && t.ASC == e.ASC && t.ASCQ == e.ASCQ
}

// As returns the *Error inside err, if any.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// Bytes encodes e in the format DescFormat selects.
func (e *Error) Bytes() []byte {
	if e.DescFormat {
		return e.Descriptor()
	}
	return e.Fixed()
}

// Fixed encodes e as fixed format sense data (SPC-5), 18 bytes.
func (e *Error) Fixed() []byte { return e.AppendFixed(make([]byte, 0, FixedLen)) }

// AppendFixed appends the fixed format encoding of e to b.
func (e *Error) AppendFixed(b []byte) []byte {
	var s [FixedLen]byte
	s[0] = codeFixedCurrent
	// SPC-5: VALID=1 only when the INFORMATION value fits in 4 bytes;
	// larger values need descriptor format.
	if e.HasInfo && e.Info <= 0xFFFFFFFF {
		s[0] |= 0x80
		binary.BigEndian.PutUint32(s[3:7], uint32(e.Info))
	}
	s[2] = byte(e.Key) & 0x0F
	s[7] = FixedLen - 8 // ADDITIONAL SENSE LENGTH
	s[12] = e.ASC
	s[13] = e.ASCQ
	if e.Field != nil {
		putSKS(s[15:18], e.Field)
	} else if e.HasProgress {
		s[15] = 0x80 // SKSV
		binary.BigEndian.PutUint16(s[16:18], e.Progress)
	}
	return append(b, s[:]...)
}

// Descriptor encodes e as descriptor format sense data (SPC-5) with an
// information descriptor and a sense key specific descriptor when needed.
func (e *Error) Descriptor() []byte { return e.AppendDescriptor(make([]byte, 0, MaxDescLen)) }

// AppendDescriptor appends the descriptor format encoding of e to b.
func (e *Error) AppendDescriptor(b []byte) []byte {
	start := len(b)
	b = append(b, codeDescriptorCurrent, byte(e.Key)&0x0F, e.ASC, e.ASCQ, 0, 0, 0, 0)
	if e.HasInfo {
		// SPC-5: information descriptor, type 00h, length 0Ah, VALID=1.
		var d [12]byte
		d[0], d[1], d[2] = 0x00, 0x0A, 0x80
		binary.BigEndian.PutUint64(d[4:12], e.Info)
		b = append(b, d[:]...)
	}
	if e.Field != nil {
		// SPC-5: sense key specific descriptor, type 02h, length 06h.
		var d [8]byte
		d[0], d[1] = 0x02, 0x06
		putSKS(d[4:7], e.Field)
		b = append(b, d[:]...)
	} else if e.HasProgress {
		var d [8]byte
		d[0], d[1], d[4] = 0x02, 0x06, 0x80
		binary.BigEndian.PutUint16(d[5:7], e.Progress)
		b = append(b, d[:]...)
	}
	b[start+7] = byte(len(b) - start - 8)
	return b
}

// putSKS writes the 3-byte field pointer sense-key-specific data (SPC-5).
func putSKS(p []byte, f *FieldPointer) {
	p[0] = 0x80 // SKSV
	if f.CDB {
		p[0] |= 0x40
	}
	if f.Bit >= 0 && f.Bit <= 7 {
		p[0] |= 0x08 | byte(f.Bit) // BPV and BIT POINTER
	}
	binary.BigEndian.PutUint16(p[1:3], f.Byte)
}

// Parse decodes fixed or descriptor format sense data. It accepts truncated
// fixed data down to the ASC/ASCQ bytes and ignores descriptors it does not know.
func Parse(b []byte) (*Error, error) {
	if len(b) < 1 {
		return nil, errors.New("sense: empty")
	}
	switch b[0] & 0x7F {
	case codeFixedCurrent, codeFixedDeferred:
		return parseFixed(b)
	case codeDescriptorCurrent, codeDescDeferred:
		return parseDescriptor(b)
	default:
		return nil, fmt.Errorf("sense: unknown response code 0x%02x", b[0]&0x7F)
	}
}

func parseFixed(b []byte) (*Error, error) {
	if len(b) < 14 {
		return nil, fmt.Errorf("sense: fixed format needs at least 14 bytes, have %d", len(b))
	}
	e := &Error{Key: Key(b[2] & 0x0F), ASC: b[12], ASCQ: b[13]}
	if b[0]&0x80 != 0 {
		e.HasInfo = true
		e.Info = uint64(binary.BigEndian.Uint32(b[3:7]))
	}
	// The additional sense length bounds what follows byte 7.
	end := min(len(b), 8+int(b[7]))
	if end >= 18 && b[15]&0x80 != 0 && (e.Key == KeyIllegalRequest) {
		e.Field = parseSKS(b[15:18])
	} else if end >= 18 && b[15]&0x80 != 0 && (e.Key == KeyNotReady || e.Key == KeyNoSense) {
		e.HasProgress, e.Progress = true, binary.BigEndian.Uint16(b[16:18])
	}
	return e, nil
}

func parseDescriptor(b []byte) (*Error, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("sense: descriptor format needs at least 8 bytes, have %d", len(b))
	}
	e := &Error{Key: Key(b[1] & 0x0F), ASC: b[2], ASCQ: b[3], DescFormat: true}
	end := min(len(b), 8+int(b[7]))
	for p := 8; p+2 <= end; {
		typ, n := b[p], int(b[p+1])
		if p+2+n > end {
			return nil, fmt.Errorf("sense: descriptor 0x%02x at %d overruns the data", typ, p)
		}
		d := b[p : p+2+n]
		switch {
		case typ == 0x00 && n >= 0x0A:
			e.HasInfo = d[2]&0x80 != 0
			e.Info = binary.BigEndian.Uint64(d[4:12])
		case typ == 0x02 && n >= 0x06 && d[4]&0x80 != 0 && e.Key == KeyIllegalRequest:
			e.Field = parseSKS(d[4:7])
		case typ == 0x02 && n >= 0x06 && d[4]&0x80 != 0 && (e.Key == KeyNotReady || e.Key == KeyNoSense):
			e.HasProgress, e.Progress = true, binary.BigEndian.Uint16(d[5:7])
		}
		p += 2 + n
	}
	return e, nil
}

func parseSKS(p []byte) *FieldPointer {
	f := &FieldPointer{CDB: p[0]&0x40 != 0, Byte: binary.BigEndian.Uint16(p[1:3]), Bit: -1}
	if p[0]&0x08 != 0 {
		f.Bit = int8(p[0] & 0x07)
	}
	return f
}

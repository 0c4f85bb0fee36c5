// Package pr holds the persistent reservation state of one logical unit
// (SPC-5 5.14): registrants, the reservation and its six types, the
// generation counter, SCSI-2 RESERVE/RELEASE state and the conflict rules
// that decide whether a command from an I_T nexus may run. It knows no
// transport and no CDB layout: the SCSI core decodes PERSISTENT RESERVE
// IN/OUT and calls the methods here. APTPL state is written atomically to
// a file (persist.go).
package pr

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Type is a persistent reservation type (SPC-5 table "Persistent
// reservation type codes").
type Type uint8

// Reservation types.
const (
	WriteExclusive                 Type = 0x1
	ExclusiveAccess                Type = 0x3
	WriteExclusiveRegistrantsOnly  Type = 0x5
	ExclusiveAccessRegistrantsOnly Type = 0x6
	WriteExclusiveAllRegistrants   Type = 0x7
	ExclusiveAccessAllRegistrants  Type = 0x8
)

const (
	// MaxRegistrants bounds the registrations of one LU; more is
	// INSUFFICIENT REGISTRATION RESOURCES (SPC-5 5.14.7).
	MaxRegistrants = 1024

	// scopeLU is the only SCOPE: LU_SCOPE (SPC-5 6.17.2).
	scopeLU = 0x0

	// iSCSI TransportIDs (SPC-5 "iSCSI TransportID", RFC 7143 4.2.7).
	iscsiProtocolID                = 0x5
	transportIDFormatName          = 0x00 // iSCSI name: the initiator device
	transportIDFormatPort          = 0x01 // name,i,0xISID: one initiator port
	transportIDFormatMask          = 0xC0
	transportIDProtocolMask        = 0x0F
	maxTransportIDLen              = 4 + 224 + 2 + 32 + 4 // name (223 + NUL), separator, ISID, padding
	minIscsiTransportIDLen         = 20
	transportIDLengthAlign         = 4
	iscsiInitiatorPortSeparator    = ",i,0x"
	iscsiInitiatorPortSeparatorLen = len(iscsiInitiatorPortSeparator)
	iscsiTransportIDHeaderLen      = 4
)

// Valid reports whether t is one of the six defined types.
func (t Type) Valid() bool {
	switch t {
	case WriteExclusive, ExclusiveAccess, WriteExclusiveRegistrantsOnly,
		ExclusiveAccessRegistrantsOnly, WriteExclusiveAllRegistrants, ExclusiveAccessAllRegistrants:
		return true
	}
	return false
}

// allRegistrants: every registrant is a reservation holder (SPC-5 5.14.10).
func (t Type) allRegistrants() bool {
	return t == WriteExclusiveAllRegistrants || t == ExclusiveAccessAllRegistrants
}

// registrantsOnly: registered nexuses have access, the holder is one.
func (t Type) registrantsOnly() bool {
	return t == WriteExclusiveRegistrantsOnly || t == ExclusiveAccessRegistrantsOnly
}

// exclusiveAccess: reads conflict too, not only writes.
func (t Type) exclusiveAccess() bool {
	return t == ExclusiveAccess || t == ExclusiveAccessRegistrantsOnly || t == ExclusiveAccessAllRegistrants
}

func (t Type) String() string {
	switch t {
	case WriteExclusive:
		return "Write Exclusive"
	case ExclusiveAccess:
		return "Exclusive Access"
	case WriteExclusiveRegistrantsOnly:
		return "Write Exclusive - Registrants Only"
	case ExclusiveAccessRegistrantsOnly:
		return "Exclusive Access - Registrants Only"
	case WriteExclusiveAllRegistrants:
		return "Write Exclusive - All Registrants"
	case ExclusiveAccessAllRegistrants:
		return "Exclusive Access - All Registrants"
	}
	return fmt.Sprintf("Type(0x%x)", uint8(t))
}

// Nexus identifies an I_T nexus: the iSCSI initiator port (name + ISID)
// and the target port (target name + target portal group tag). The SCSI
// core converts its own nexus to this one.
type Nexus struct {
	Initiator string
	ISID      [6]byte
	Target    string
	TPGT      uint16
}

// Registrant is one registration (SPC-5 5.14.7). It belongs to the I_T
// nexus it was made through; AllTargetPorts extends it to every target
// port, and a registration made through SPEC_I_PT with an iSCSI name
// TransportID (format 00b) has no ISID and covers every port of that
// initiator device.
type Registrant struct {
	Key            uint64
	Initiator      string
	ISID           [6]byte
	HasISID        bool
	Target         string
	TPGT           uint16
	AllTargetPorts bool
}

// Covers reports whether the registration applies to nexus n.
func (r *Registrant) Covers(n Nexus) bool {
	return strings.EqualFold(r.Initiator, n.Initiator) && (!r.HasISID || r.ISID == n.ISID) &&
		r.Target == n.Target && (r.AllTargetPorts || r.TPGT == n.TPGT)
}

// overlaps reports whether two registrations could cover one nexus.
func (r *Registrant) overlaps(o *Registrant) bool {
	return strings.EqualFold(r.Initiator, o.Initiator) && (!r.HasISID || !o.HasISID || r.ISID == o.ISID) &&
		r.Target == o.Target && (r.AllTargetPorts || o.AllTargetPorts || r.TPGT == o.TPGT)
}

// TransportID encodes the registrant's initiator as an iSCSI TransportID
// (SPC-5 / RFC 7143: protocol identifier 5h; format 01b "name,i,0xISID"
// when the ISID is known, 00b the name alone), null terminated and padded
// to a multiple of four bytes.
func (r *Registrant) TransportID() []byte {
	name := r.Initiator
	format := byte(transportIDFormatName)
	if r.HasISID {
		name = fmt.Sprintf("%s%s%012x", r.Initiator, iscsiInitiatorPortSeparator, r.ISID[:])
		format = transportIDFormatPort
	}
	n := len(name) + 1
	n = (n + transportIDLengthAlign - 1) &^ (transportIDLengthAlign - 1)
	if n < minIscsiTransportIDLen-iscsiTransportIDHeaderLen {
		n = minIscsiTransportIDLen - iscsiTransportIDHeaderLen
	}
	b := make([]byte, iscsiTransportIDHeaderLen+n)
	b[0] = format<<6 | iscsiProtocolID
	b[2], b[3] = byte(n>>8), byte(n)
	copy(b[4:], name)
	return b
}

// ParseTransportID decodes one iSCSI TransportID at the start of p and
// returns the initiator name, the ISID when present (format 01b), and the
// TransportID's length. Errors name the byte offset within p.
func ParseTransportID(p []byte) (name string, isid [6]byte, hasISID bool, n int, err error) {
	if len(p) < iscsiTransportIDHeaderLen {
		return "", isid, false, 0, &FieldError{Offset: 0, Msg: "TransportID shorter than its header"}
	}
	if p[0]&transportIDProtocolMask != iscsiProtocolID {
		return "", isid, false, 0, &FieldError{Offset: 0, Msg: "TransportID protocol is not iSCSI"}
	}
	format := p[0] & transportIDFormatMask >> 6
	if format != transportIDFormatName && format != transportIDFormatPort {
		return "", isid, false, 0, &FieldError{Offset: 0, Msg: "unknown TransportID format"}
	}
	addl := int(p[2])<<8 | int(p[3])
	if addl < 4 || addl%transportIDLengthAlign != 0 || iscsiTransportIDHeaderLen+addl > len(p) || addl > maxTransportIDLen {
		return "", isid, false, 0, &FieldError{Offset: 2, Msg: "bad TransportID ADDITIONAL LENGTH"}
	}
	body := p[iscsiTransportIDHeaderLen : iscsiTransportIDHeaderLen+addl]
	end := 0
	for end < len(body) && body[end] != 0 {
		end++
	}
	if end == len(body) || end == 0 {
		return "", isid, false, 0, &FieldError{Offset: iscsiTransportIDHeaderLen, Msg: "iSCSI name not null terminated"}
	}
	s := string(body[:end])
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7E {
			return "", isid, false, 0, &FieldError{Offset: iscsiTransportIDHeaderLen + i, Msg: "iSCSI name holds a non-printable byte"}
		}
	}
	if format == transportIDFormatPort {
		sep := strings.Index(strings.ToLower(s), iscsiInitiatorPortSeparator)
		if sep <= 0 || len(s)-sep-iscsiInitiatorPortSeparatorLen != 2*len(isid) {
			return "", isid, false, 0, &FieldError{Offset: iscsiTransportIDHeaderLen, Msg: "initiator port name is not NAME,i,0xISID"}
		}
		raw, err := hex.DecodeString(s[sep+iscsiInitiatorPortSeparatorLen:])
		if err != nil || len(raw) != len(isid) {
			return "", isid, false, 0, &FieldError{Offset: iscsiTransportIDHeaderLen + sep, Msg: "bad ISID in TransportID"}
		}
		var v [6]byte
		copy(v[:], raw)
		return s[:sep], v, true, iscsiTransportIDHeaderLen + addl, nil
	}
	return s, isid, false, iscsiTransportIDHeaderLen + addl, nil
}

// FieldError is an invalid field in a parameter list, at Offset.
type FieldError struct {
	Offset int
	Msg    string
}

func (e *FieldError) Error() string { return fmt.Sprintf("pr: parameter byte %d: %s", e.Offset, e.Msg) }

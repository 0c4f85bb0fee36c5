// Package isns is an iSNS client (RFC 4171, Internet Storage Name Service):
// the iSNSP PDU and attribute codec, and the client side of the few
// messages an iSCSI target needs. DevAttrReg registers the target's
// Network Entity, Portals, Storage Nodes and Portal Groups; DevDereg
// removes them; DevAttrQry refreshes the registration and asks which
// targets an initiator may discover (discovery domains). Registrar keeps a
// registration alive across server restarts and lost connections.
//
// The package knows iSNS and nothing of the target core: the core
// describes what to register as a Registration.
package isns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// RFC 4171 5.1: the iSNSP PDU header.
const (
	// Version is the only iSNSP version (RFC 4171 5.1.1).
	Version = 0x0001
	// HeaderLen is the size of the fixed PDU header.
	HeaderLen = 12
	// MaxPayload is the largest PDU payload: the PDU Length field is 16
	// bits (RFC 4171 5.1.3). Longer messages span several PDUs.
	MaxPayload = 0xffff
	// DefaultPort is the port IANA assigned to iSNS.
	DefaultPort = 3205

	// maxSegment is the payload of every PDU but the last when a message
	// is split: the largest multiple of 4 that fits, so attributes stay
	// aligned in each PDU.
	maxSegment = MaxPayload &^ 3
	// maxMessagePDUs and maxMessageBytes bound what a peer can make us
	// buffer for one message.
	maxMessagePDUs  = 64
	maxMessageBytes = 1 << 20
)

// Flags are the PDU header flags (RFC 4171 5.1.4). The RFC numbers the
// bits of the 32-bit word that holds PDU Length and Flags, so its bit 16
// is the most significant bit of this field.
type Flags uint16

const (
	FlagClient   Flags = 0x8000 // bit 16: the sender is the iSNS client
	FlagServer   Flags = 0x4000 // bit 17: the sender is the iSNS server
	FlagAuth     Flags = 0x2000 // bit 18: an authentication block is present
	FlagReplace  Flags = 0x1000 // bit 19: DevAttrReg replaces the keyed object
	FlagLastPDU  Flags = 0x0800 // bit 20: last PDU of the message
	FlagFirstPDU Flags = 0x0400 // bit 21: first PDU of the message
)

func (f Flags) String() string {
	names := []struct {
		bit  Flags
		name string
	}{{FlagClient, "client"}, {FlagServer, "server"}, {FlagAuth, "auth"}, {FlagReplace, "replace"}, {FlagFirstPDU, "first"}, {FlagLastPDU, "last"}}
	s := ""
	for _, n := range names {
		if f&n.bit != 0 {
			if s != "" {
				s += "|"
			}
			s += n.name
			f &^= n.bit
		}
	}
	if f != 0 {
		if s != "" {
			s += "|"
		}
		s += fmt.Sprintf("%#04x", uint16(f))
	}
	if s == "" {
		return "0"
	}
	return s
}

// Function is an iSNSP function ID (RFC 4171 4.1.3). A response has
// the request's ID with the most significant bit set.
type Function uint16

// Request functions.
const (
	FuncDevAttrReg Function = 0x0001
	FuncDevAttrQry Function = 0x0002
	FuncDevGetNext Function = 0x0003
	FuncDevDereg   Function = 0x0004
	FuncSCNReg     Function = 0x0005
	FuncSCNDereg   Function = 0x0006
	FuncSCNEvent   Function = 0x0007
	FuncSCN        Function = 0x0008
	FuncDDReg      Function = 0x0009
	FuncDDDereg    Function = 0x000a
	FuncDDSReg     Function = 0x000b
	FuncDDSDereg   Function = 0x000c
	FuncESI        Function = 0x000d
	FuncHeartbeat  Function = 0x000e

	responseBit Function = 0x8000
)

// Response is the function ID of the answer to f.
func (f Function) Response() Function { return f | responseBit }

// IsResponse reports whether f is a response function ID.
func (f Function) IsResponse() bool { return f&responseBit != 0 }

var functionNames = map[Function]string{
	FuncDevAttrReg: "DevAttrReg", FuncDevAttrQry: "DevAttrQry", FuncDevGetNext: "DevGetNext",
	FuncDevDereg: "DevDereg", FuncSCNReg: "SCNReg", FuncSCNDereg: "SCNDereg", FuncSCNEvent: "SCNEvent",
	FuncSCN: "SCN", FuncDDReg: "DDReg", FuncDDDereg: "DDDereg", FuncDDSReg: "DDSReg",
	FuncDDSDereg: "DDSDereg", FuncESI: "ESI", FuncHeartbeat: "Heartbeat",
}

func (f Function) String() string {
	if name, ok := functionNames[f&^responseBit]; ok {
		if f.IsResponse() {
			return name + "Rsp"
		}
		return name
	}
	return fmt.Sprintf("function %#04x", uint16(f))
}

// Header is the fixed 12-byte iSNSP PDU header (RFC 4171 5.1).
type Header struct {
	Version       uint16
	Function      Function
	Length        uint16 // payload bytes that follow the header
	Flags         Flags
	TransactionID uint16 // the same in every PDU of a message and in its response
	SequenceID    uint16 // 0 for the first PDU of a message, counting up
}

// PDU is one iSNSP PDU. Payload aliases the buffer it was parsed from.
type PDU struct {
	Header
	Payload []byte
}

// ProtocolError is a PDU or message that breaks RFC 4171. The client
// drops the connection on one.
type ProtocolError struct{ Why string }

func (e *ProtocolError) Error() string { return "isns: " + e.Why }

func protocolErrorf(format string, args ...any) error {
	return &ProtocolError{Why: fmt.Sprintf(format, args...)}
}

// ParseHeader decodes the 12-byte header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, protocolErrorf("PDU header is %d bytes, want %d", len(b), HeaderLen)
	}
	h := Header{
		Version:       binary.BigEndian.Uint16(b[0:]),
		Function:      Function(binary.BigEndian.Uint16(b[2:])),
		Length:        binary.BigEndian.Uint16(b[4:]),
		Flags:         Flags(binary.BigEndian.Uint16(b[6:])),
		TransactionID: binary.BigEndian.Uint16(b[8:]),
		SequenceID:    binary.BigEndian.Uint16(b[10:]),
	}
	// RFC 4171 5.1.1: only version 1 exists; anything else is not iSNSP
	// as we know it.
	if h.Version != Version {
		return h, protocolErrorf("iSNSP version %d, want %d", h.Version, Version)
	}
	return h, nil
}

// ParsePDU decodes one PDU from the start of b and returns it with the
// bytes that follow it. The payload aliases b.
func ParsePDU(b []byte) (PDU, []byte, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return PDU{}, b, err
	}
	end := HeaderLen + int(h.Length)
	if len(b) < end {
		return PDU{}, b, protocolErrorf("%v PDU length %d, but only %d payload bytes", h.Function, h.Length, len(b)-HeaderLen)
	}
	return PDU{Header: h, Payload: b[HeaderLen:end:end]}, b[end:], nil
}

// AppendHeader appends the encoded header to dst.
func (h Header) AppendHeader(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, h.Version)
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.Function))
	dst = binary.BigEndian.AppendUint16(dst, h.Length)
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.Flags))
	dst = binary.BigEndian.AppendUint16(dst, h.TransactionID)
	return binary.BigEndian.AppendUint16(dst, h.SequenceID)
}

// Append appends the encoded PDU to dst, with Length set from the payload.
func (p PDU) Append(dst []byte) ([]byte, error) {
	if len(p.Payload) > MaxPayload {
		return dst, fmt.Errorf("isns: PDU payload of %d bytes exceeds %d", len(p.Payload), MaxPayload)
	}
	h := p.Header
	h.Length = uint16(len(p.Payload))
	dst = h.AppendHeader(dst)
	return append(dst, p.Payload...), nil
}

// Message is a whole iSNSP message: the payloads of its PDUs joined in
// sequence order (RFC 4171 5.2).
type Message struct {
	Function      Function
	Flags         Flags // of the first PDU, without the first/last bits
	TransactionID uint16
	Payload       []byte
}

// AppendMessage encodes m as PDUs, splitting a payload longer than one PDU
// holds at 4-byte boundaries, with sequence IDs from 0 and the first and
// last PDU flags set (RFC 4171 5.2).
func AppendMessage(dst []byte, m Message) ([]byte, error) {
	if len(m.Payload) > maxMessagePDUs*maxSegment {
		return dst, fmt.Errorf("isns: %v message of %d bytes is too long", m.Function, len(m.Payload))
	}
	payload := m.Payload
	for seq := uint16(0); ; seq++ {
		n := min(len(payload), maxSegment)
		h := Header{
			Version:       Version,
			Function:      m.Function,
			Flags:         m.Flags &^ (FlagFirstPDU | FlagLastPDU),
			TransactionID: m.TransactionID,
			SequenceID:    seq,
		}
		if seq == 0 {
			h.Flags |= FlagFirstPDU
		}
		if n == len(payload) {
			h.Flags |= FlagLastPDU
		}
		var err error
		if dst, err = (PDU{Header: h, Payload: payload[:n]}).Append(dst); err != nil {
			return dst, err
		}
		payload = payload[n:]
		if len(payload) == 0 {
			return dst, nil
		}
	}
}

// MessageReader reads whole messages from a stream of PDUs.
type MessageReader struct {
	r   io.Reader
	hdr [HeaderLen]byte
}

// NewMessageReader reads messages from r.
func NewMessageReader(r io.Reader) *MessageReader { return &MessageReader{r: r} }

// ReadMessage reads the PDUs of one message and joins their payloads. The
// PDUs of a message carry one transaction ID and consecutive sequence IDs
// from 0; the first has the first-PDU flag and the last the last-PDU flag
// (RFC 4171 5.1.5, 5.1.6, 5.2). A message that breaks this, or is longer
// than this client accepts, is a *ProtocolError; a stream that ends
// between PDUs is io.EOF, within one io.ErrUnexpectedEOF.
func (mr *MessageReader) ReadMessage() (Message, error) {
	var m Message
	for seq := 0; ; seq++ {
		if _, err := io.ReadFull(mr.r, mr.hdr[:]); err != nil {
			if seq > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Message{}, err
		}
		h, err := ParseHeader(mr.hdr[:])
		if err != nil {
			return Message{}, err
		}
		switch {
		case seq == 0 && h.Flags&FlagFirstPDU == 0:
			return Message{}, protocolErrorf("%v PDU (transaction %d, sequence %d) without the first-PDU flag starts a message", h.Function, h.TransactionID, h.SequenceID)
		case seq > 0 && h.Flags&FlagFirstPDU != 0:
			return Message{}, protocolErrorf("%v PDU with the first-PDU flag inside a message", h.Function)
		case int(h.SequenceID) != seq:
			return Message{}, protocolErrorf("%v PDU sequence %d, want %d", h.Function, h.SequenceID, seq)
		case seq > 0 && (h.TransactionID != m.TransactionID || h.Function != m.Function):
			return Message{}, protocolErrorf("%v PDU of transaction %d inside %v message of transaction %d", h.Function, h.TransactionID, m.Function, m.TransactionID)
		case seq >= maxMessagePDUs || len(m.Payload)+int(h.Length) > maxMessageBytes:
			return Message{}, protocolErrorf("%v message longer than %d PDUs or %d bytes", h.Function, maxMessagePDUs, maxMessageBytes)
		}
		if seq == 0 {
			m = Message{Function: h.Function, Flags: h.Flags &^ (FlagFirstPDU | FlagLastPDU), TransactionID: h.TransactionID}
		}
		start := len(m.Payload)
		m.Payload = append(m.Payload, make([]byte, h.Length)...)
		if _, err := io.ReadFull(mr.r, m.Payload[start:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Message{}, err
		}
		if h.Flags&FlagLastPDU != 0 {
			return m, nil
		}
	}
}

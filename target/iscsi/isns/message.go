package isns

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Request is a registration or query request (RFC 4171 5.6): the Source
// Attribute, the Message Key, a Delimiter, then the Operating Attributes.
type Request struct {
	Function Function
	// Replace sets the replace flag: a DevAttrReg then replaces the
	// object named by the Message Key and everything it contains,
	// instead of updating it (RFC 4171 5.1.4, 5.6.5.1).
	Replace bool
	// Source names the requesting Storage Node (RFC 4171 5.6.1): an iSCSI
	// Name attribute.
	Source    Attribute
	Keys      []Attribute
	Operating []Attribute
}

// Payload encodes the request's PDU payload.
func (r Request) Payload() []byte {
	n := r.Source.Len() + attrHeaderLen
	for _, a := range r.Keys {
		n += a.Len()
	}
	for _, a := range r.Operating {
		n += a.Len()
	}
	b := make([]byte, 0, n)
	b = AppendAttribute(b, r.Source)
	for _, a := range r.Keys {
		b = AppendAttribute(b, a)
	}
	b = AppendAttribute(b, Delimiter())
	for _, a := range r.Operating {
		b = AppendAttribute(b, a)
	}
	return b
}

// Message is the request as a message of transaction xid, sent by a
// client.
func (r Request) Message(xid uint16) Message {
	flags := FlagClient
	if r.Replace {
		flags |= FlagReplace
	}
	return Message{Function: r.Function, Flags: flags, TransactionID: xid, Payload: r.Payload()}
}

// errAuthBlock: Blockport speaks iSNS without authentication blocks (RFC
// 4171 5.5), as open-isns does with Security = 0.
var errAuthBlock = errors.New("isns: message carries an authentication block, which this client does not support")

// ParseRequest decodes a request message, as a server (or a test double)
// sees it. Attribute values alias m.Payload.
func ParseRequest(m Message) (Request, error) {
	if m.Function.IsResponse() {
		return Request{}, protocolErrorf("%v is a response, not a request", m.Function)
	}
	if m.Flags&FlagAuth != 0 {
		return Request{}, errAuthBlock
	}
	attrs, err := ParseAttributes(m.Payload)
	if err != nil {
		return Request{}, fmt.Errorf("%v request: %w", m.Function, err)
	}
	if len(attrs) == 0 {
		return Request{}, protocolErrorf("%v request without a Source Attribute", m.Function)
	}
	r := Request{Function: m.Function, Replace: m.Flags&FlagReplace != 0, Source: attrs[0]}
	r.Keys, r.Operating = splitAtDelimiter(attrs[1:])
	return r, nil
}

// Response is the answer to a request (RFC 4171 5.7): a status code, the
// Message Key, a Delimiter and the Operating Attributes.
type Response struct {
	Function  Function // the response's function ID (request | 0x8000)
	Status    Status
	Keys      []Attribute
	Operating []Attribute
}

// Payload encodes the response's PDU payload; a test server uses it.
func (r Response) Payload() []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(r.Status))
	for _, a := range r.Keys {
		b = AppendAttribute(b, a)
	}
	if len(r.Keys) > 0 || len(r.Operating) > 0 {
		b = AppendAttribute(b, Delimiter())
	}
	for _, a := range r.Operating {
		b = AppendAttribute(b, a)
	}
	return b
}

// ParseResponse decodes a response message. Attributes before the first
// Delimiter are the Message Key, those after it the Operating Attributes;
// without a Delimiter every attribute counts as an Operating Attribute.
// Values alias m.Payload. A non-success status is not an error here: see
// Response.Err.
func ParseResponse(m Message) (Response, error) {
	if !m.Function.IsResponse() {
		return Response{}, protocolErrorf("%v is a request, not a response", m.Function)
	}
	if m.Flags&FlagAuth != 0 {
		return Response{}, errAuthBlock
	}
	// RFC 4171 5.4: the status code is a plain 4-byte field, not a TLV.
	if len(m.Payload) < 4 {
		return Response{}, protocolErrorf("%v payload is %d bytes, too short for a status code", m.Function, len(m.Payload))
	}
	r := Response{Function: m.Function, Status: Status(binary.BigEndian.Uint32(m.Payload))}
	attrs, err := ParseAttributes(m.Payload[4:])
	if err != nil {
		return Response{}, fmt.Errorf("%v: %w", m.Function, err)
	}
	keys, operating := splitAtDelimiter(attrs)
	if operating == nil {
		keys, operating = nil, keys
	}
	r.Keys, r.Operating = keys, operating
	return r, nil
}

// Err is nil for a successful response, else a *StatusError.
func (r Response) Err() error {
	if r.Status == StatusSuccess {
		return nil
	}
	return &StatusError{Function: r.Function &^ responseBit, Status: r.Status}
}

// splitAtDelimiter cuts attrs at the first Delimiter. operating is nil
// (not empty) when there is none.
func splitAtDelimiter(attrs []Attribute) (keys, operating []Attribute) {
	for i, a := range attrs {
		if a.Tag == TagDelimiter {
			return attrs[:i], append([]Attribute{}, attrs[i+1:]...)
		}
	}
	return attrs, nil
}

package isns

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/: the responses captured
// from open-isns in pdu_test.go, requests this client sends, and broken
// PDUs.

// exercise runs every decoder on every attribute and checks that a parsed
// attribute survives encoding and parsing again.
func exercise(t *testing.T, attrs []Attribute) {
	t.Helper()
	for _, a := range attrs {
		_ = a.String()
		_, _ = a.Str()
		_, _ = a.Uint32()
		_, _ = a.Uint64()
		_, _ = a.IP()
		_, _, _ = a.Port()
		back, err := ParseAttributes(AppendAttribute(nil, a))
		if err != nil || len(back) != 1 || back[0].Tag != a.Tag || !bytes.Equal(back[0].Value, a.Value) {
			t.Fatalf("attribute %v does not survive a round trip: %v %v", a, back, err)
		}
	}
}

// FuzzParsePDU feeds arbitrary bytes to ParsePDU and every payload it
// accepts to the attribute, request and response parsers. Nothing may
// panic; errors are *ProtocolErrors; what parses re-encodes to the same
// bytes (a PDU) or to something that parses the same (a request or
// response).
func FuzzParsePDU(f *testing.F) {
	f.Fuzz(func(t *testing.T, wire []byte) {
		rest := wire
		for i := 0; i < 16 && len(rest) > 0; i++ {
			p, next, err := ParsePDU(rest)
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("error %T %v is not a *ProtocolError", err, err)
				}
				return
			}
			if int(p.Length) != len(p.Payload) || len(next) != len(rest)-HeaderLen-len(p.Payload) {
				t.Fatalf("PDU length %d, payload %d, %d of %d bytes left", p.Length, len(p.Payload), len(next), len(rest))
			}
			enc, err := p.Append(nil)
			if err != nil || !bytes.Equal(enc, rest[:len(rest)-len(next)]) {
				t.Fatalf("PDU re-encodes as % x, %v", enc, err)
			}
			if attrs, err := ParseAttributes(p.Payload); err == nil {
				exercise(t, attrs)
			}
			m := Message{Function: p.Function, Flags: p.Flags &^ (FlagFirstPDU | FlagLastPDU), TransactionID: p.TransactionID, Payload: p.Payload}
			if resp, err := ParseResponse(m); err == nil {
				exercise(t, resp.Keys)
				exercise(t, resp.Operating)
				_ = resp.Err()
				_ = targetNames(resp.Operating)
				again, err := ParseResponse(Message{Function: resp.Function, Payload: resp.Payload()})
				if err != nil || again.Status != resp.Status || !attrsEqual(again.Keys, resp.Keys) || !attrsEqual(again.Operating, resp.Operating) {
					t.Fatalf("response %+v re-parses as %+v, %v", resp, again, err)
				}
			}
			if req, err := ParseRequest(m); err == nil {
				exercise(t, []Attribute{req.Source})
				exercise(t, req.Keys)
				exercise(t, req.Operating)
				again, err := ParseRequest(req.Message(m.TransactionID))
				if err != nil || again.Replace != req.Replace || !attrsEqual(again.Keys, req.Keys) || !attrsEqual(again.Operating, req.Operating) {
					t.Fatalf("request %+v re-parses as %+v, %v", req, again, err)
				}
			}
			rest = next
		}
	})
}

// FuzzReadMessage feeds arbitrary bytes to the message reader, which
// reassembles PDUs. What it returns re-encodes and reads back the same.
func FuzzReadMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, wire []byte) {
		mr := NewMessageReader(bytes.NewReader(wire))
		for i := 0; i < 8; i++ {
			m, err := mr.ReadMessage()
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) && err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("error %T %v", err, err)
				}
				return
			}
			if len(m.Payload) > maxMessageBytes || m.Flags&(FlagFirstPDU|FlagLastPDU) != 0 {
				t.Fatalf("message of %d bytes with flags %v", len(m.Payload), m.Flags)
			}
			enc, err := AppendMessage(nil, m)
			if err != nil {
				t.Fatal(err)
			}
			back, err := NewMessageReader(bytes.NewReader(enc)).ReadMessage()
			if err != nil || back.Function != m.Function || back.Flags != m.Flags || back.TransactionID != m.TransactionID || !bytes.Equal(back.Payload, m.Payload) {
				t.Fatalf("message %+v reads back as %+v, %v", m, back, err)
			}
			_, _ = ParseResponse(m)
			_, _ = ParseRequest(m)
		}
	})
}

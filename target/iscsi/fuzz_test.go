package iscsi

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/.

// decodeAll exercises every view and AHS helper on a header.
func decodeAll(p *PDU) {
	h := &p.Header
	_ = h.Opcode().String()
	switch h.Opcode() {
	case OpSCSICommand:
		_ = h.SCSICommand()
	case OpDataOut:
		_ = h.DataOut()
	case OpNOPOut:
		_ = h.NOPOut()
	case OpTaskMgmtRequest:
		_ = h.TaskMgmtRequest()
	case OpLoginRequest:
		_ = h.LoginRequest()
	case OpTextRequest:
		_ = h.TextRequest()
	case OpLogoutRequest:
		_ = h.LogoutRequest()
	case OpSNACKRequest:
		_ = h.SNACKRequest()
	default:
		_, _, _, _ = h.SCSIResponse(), h.DataIn(), h.R2T(), h.NOPIn()
		_, _, _, _ = h.TaskMgmtResponse(), h.LoginResponse(), h.TextResponse(), h.LogoutResponse()
		_, _ = h.AsyncMessage(), h.Reject()
	}
	_, _ = ExtendedCDB(p.AHS)
	_, _, _ = BidiReadExpectedLength(p.AHS)
}

// FuzzReadPDU feeds arbitrary bytes through the Reader. Every PDU it
// accepts must be self-consistent and survive a Writer/Reader round trip.
func FuzzReadPDU(f *testing.F) {
	f.Fuzz(func(t *testing.T, wire []byte, headerDigest, dataDigest bool) {
		r := NewReader(bytes.NewReader(wire))
		r.SetDigests(headerDigest, dataDigest)
		r.SetMaxRecvDataSegmentLength(1 << 16)
		for i := 0; i < 64; i++ {
			p, err := r.ReadPDU()
			var de *DigestError
			if err != nil && !(errors.As(err, &de) && !de.Header) {
				if p != nil {
					t.Fatalf("PDU returned with error %v", err)
				}
				var pe *ProtocolError
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &de) && !errors.As(err, &pe) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			if len(p.Data) != p.Header.DataSegmentLength() || len(p.AHS) != p.Header.TotalAHSLength() {
				t.Fatalf("lengths: data %d/%d ahs %d/%d", len(p.Data), p.Header.DataSegmentLength(), len(p.AHS), p.Header.TotalAHSLength())
			}
			if err := ValidateAHS(p.AHS); err != nil {
				t.Fatalf("Reader accepted an invalid AHS: %v", err)
			}
			decodeAll(p)
			if len(p.AHS) == 0 {
				var buf bytes.Buffer
				w := NewWriter(&buf)
				w.SetDigests(headerDigest, dataDigest)
				h := p.Header
				if err := w.WritePDU(&h, p.Data); err != nil {
					t.Fatal(err)
				}
				r2 := NewReader(&buf)
				r2.SetDigests(headerDigest, dataDigest)
				r2.SetMaxRecvDataSegmentLength(0)
				q, err := r2.ReadPDU()
				if err != nil || q.Header != p.Header || !bytes.Equal(q.Data, p.Data) {
					t.Fatalf("round trip: %v", err)
				}
			}
		}
	})
}

// FuzzParseText: accepted text re-encodes to text that parses the same.
func FuzzParseText(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		kvs, err := ParseText(data)
		if err != nil {
			var te *TextError
			if !errors.As(err, &te) {
				t.Fatalf("error type %T", err)
			}
			return
		}
		for _, kv := range kvs {
			if kv.Key == "" || len(kv.Key) > MaxKeyLength || len(kv.Value) > MaxLargeValueLength {
				t.Fatalf("bad pair accepted: %q", kv)
			}
		}
		again, err := ParseText(AppendText(nil, kvs...))
		if err != nil || !reflect.DeepEqual(again, kvs) {
			t.Fatalf("round trip: %q -> %q, %v", kvs, again, err)
		}
	})
}

// FuzzNegotiation: whatever the initiator sends over two requests, the
// target's answers and Params stay within the RFC 7143 13 ranges and the
// target's limits.
func FuzzNegotiation(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, discovery bool, split uint8) {
		kvs, err := ParseText(data)
		if err != nil {
			return
		}
		limits := DefaultTargetLimits()
		n := NewNegotiation(limits, discovery)
		cut := int(split) % (len(kvs) + 1)
		var answers []KeyValue
		for _, part := range [][]KeyValue{kvs[:cut], kvs[cut:]} {
			a, err := n.Offer(part)
			if err != nil {
				var ne *NegotiationError
				if !errors.As(err, &ne) {
					t.Fatalf("error type %T", err)
				}
				return
			}
			answers = append(answers, a...)
			answers = append(answers, n.Declarations()...)
		}
		offered := map[string]bool{}
		for _, kv := range kvs {
			offered[kv.Key] = true
		}
		for _, a := range answers {
			if !offered[a.Key] && a.Key != "MaxRecvDataSegmentLength" {
				t.Fatalf("answer %q to a key never offered", a)
			}
			def, known := LookupKey(a.Key)
			if !known || a.Value == ValueReject || a.Value == ValueIrrelevant || a.Value == ValueNotUnderstood {
				continue
			}
			switch def.Kind {
			case NumericMin, NumericMax, NumericDeclarative:
				v, ok := parseNumber(a.Value)
				if !ok || v < uint64(def.Min) || v > uint64(def.Max) {
					t.Fatalf("answer %q out of range", a)
				}
			case BooleanAnd, BooleanOr:
				if _, ok := parseBool(a.Value); !ok {
					t.Fatalf("answer %q not boolean", a)
				}
			}
		}
		p := n.Params()
		if p.MaxBurstLength < 512 || p.MaxBurstLength > limits.MaxBurstLength ||
			p.FirstBurstLength < 512 || p.FirstBurstLength > p.MaxBurstLength ||
			p.MaxXmitDataSegmentLength < 512 || p.MaxXmitDataSegmentLength > MaxDataSegmentLength ||
			p.MaxConnections != 1 || p.MaxOutstandingR2T != 1 || p.ErrorRecoveryLevel != 0 ||
			p.DefaultTime2Wait < limits.DefaultTime2Wait || p.DefaultTime2Wait > 3600 ||
			p.DefaultTime2Retain > limits.DefaultTime2Retain || !p.DataPDUInOrder || !p.DataSequenceInOrder ||
			p.TaskReporting != "RFC3720" || p.ProtocolLevel > 1 {
			t.Fatalf("params out of bounds: %+v", p)
		}
	})
}

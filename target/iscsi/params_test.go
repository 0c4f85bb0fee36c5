package iscsi

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func kv(k, v string) KeyValue { return KeyValue{Key: k, Value: v} }

// TestOfferTable drives every key through one Offer: the answers and the
// resulting Params (starting from DefaultParams) are checked.
func TestOfferTable(t *testing.T) {
	tests := []struct {
		name      string
		limits    func(*TargetLimits)
		discovery bool
		offers    []KeyValue
		answers   []KeyValue
		want      func(*Params) // changes from DefaultParams
		errPart   string
	}{
		// 13.1 digests: first offered value the target supports.
		{name: "HeaderDigest prefers CRC32C", offers: []KeyValue{kv("HeaderDigest", "CRC32C,None")},
			answers: []KeyValue{kv("HeaderDigest", "CRC32C")}, want: func(p *Params) { p.HeaderDigest = true }},
		{name: "HeaderDigest prefers None", offers: []KeyValue{kv("HeaderDigest", "None,CRC32C")},
			answers: []KeyValue{kv("HeaderDigest", "None")}},
		{name: "unknown digest skipped", offers: []KeyValue{kv("DataDigest", "MD5,CRC32C")},
			answers: []KeyValue{kv("DataDigest", "CRC32C")}, want: func(p *Params) { p.DataDigest = true }},
		{name: "digest not allowed", limits: func(l *TargetLimits) { l.DataDigest = DigestNone },
			offers: []KeyValue{kv("DataDigest", "CRC32C")}, answers: []KeyValue{kv("DataDigest", "Reject")}},
		{name: "digest required, CRC32C offered", limits: func(l *TargetLimits) { l.DataDigest = DigestRequired },
			offers: []KeyValue{kv("DataDigest", "None,CRC32C")}, answers: []KeyValue{kv("DataDigest", "CRC32C")}, want: func(p *Params) { p.DataDigest = true }},
		{name: "digest required, None offered", limits: func(l *TargetLimits) { l.HeaderDigest = DigestRequired },
			offers: []KeyValue{kv("HeaderDigest", "None")}, errPart: "requires CRC32C"},
		{name: "empty digest list", offers: []KeyValue{kv("HeaderDigest", "")}, answers: []KeyValue{kv("HeaderDigest", "Reject")}},

		// 13.2 MaxConnections: minimum, 1..65535.
		{name: "MaxConnections min", offers: []KeyValue{kv("MaxConnections", "4")}, answers: []KeyValue{kv("MaxConnections", "1")}},
		{name: "MaxConnections with MC/S", limits: func(l *TargetLimits) { l.MaxConnections = 8 },
			offers: []KeyValue{kv("MaxConnections", "4")}, answers: []KeyValue{kv("MaxConnections", "4")}, want: func(p *Params) { p.MaxConnections = 4 }},
		{name: "MaxConnections 0", offers: []KeyValue{kv("MaxConnections", "0")}, answers: []KeyValue{kv("MaxConnections", "Reject")}},
		{name: "MaxConnections 65536", offers: []KeyValue{kv("MaxConnections", "65536")}, answers: []KeyValue{kv("MaxConnections", "Reject")}},
		{name: "MaxConnections hex", offers: []KeyValue{kv("MaxConnections", "0x1")}, answers: []KeyValue{kv("MaxConnections", "1")}},
		{name: "MaxConnections text", offers: []KeyValue{kv("MaxConnections", "one")}, answers: []KeyValue{kv("MaxConnections", "Reject")}},

		// 13.10 InitialR2T: OR.
		{name: "InitialR2T No accepted", offers: []KeyValue{kv("InitialR2T", "No")}, answers: []KeyValue{kv("InitialR2T", "No")},
			want: func(p *Params) { p.InitialR2T = false }},
		{name: "InitialR2T No, target wants Yes", limits: func(l *TargetLimits) { l.InitialR2T = true },
			offers: []KeyValue{kv("InitialR2T", "No")}, answers: []KeyValue{kv("InitialR2T", "Yes")}},
		{name: "InitialR2T Yes", offers: []KeyValue{kv("InitialR2T", "Yes")}, answers: []KeyValue{kv("InitialR2T", "Yes")}},
		{name: "InitialR2T bad", offers: []KeyValue{kv("InitialR2T", "yes")}, answers: []KeyValue{kv("InitialR2T", "Reject")}},

		// 13.11 ImmediateData: AND.
		{name: "ImmediateData Yes", offers: []KeyValue{kv("ImmediateData", "Yes")}, answers: []KeyValue{kv("ImmediateData", "Yes")}},
		{name: "ImmediateData Yes, target says No", limits: func(l *TargetLimits) { l.ImmediateData = false },
			offers: []KeyValue{kv("ImmediateData", "Yes")}, answers: []KeyValue{kv("ImmediateData", "No")}, want: func(p *Params) { p.ImmediateData = false }},
		{name: "ImmediateData No", offers: []KeyValue{kv("ImmediateData", "No")}, answers: []KeyValue{kv("ImmediateData", "No")},
			want: func(p *Params) { p.ImmediateData = false }},

		// 13.12 MaxRecvDataSegmentLength: declarative, not answered.
		{name: "MaxRecvDataSegmentLength declared", offers: []KeyValue{kv("MaxRecvDataSegmentLength", "65536")},
			want: func(p *Params) { p.MaxXmitDataSegmentLength = 65536 }},
		{name: "MaxRecvDataSegmentLength 2^24-1", offers: []KeyValue{kv("MaxRecvDataSegmentLength", "16777215")},
			want: func(p *Params) { p.MaxXmitDataSegmentLength = 16777215 }},
		{name: "MaxRecvDataSegmentLength 511", offers: []KeyValue{kv("MaxRecvDataSegmentLength", "511")},
			answers: []KeyValue{kv("MaxRecvDataSegmentLength", "Reject")}},
		{name: "MaxRecvDataSegmentLength 2^24", offers: []KeyValue{kv("MaxRecvDataSegmentLength", "16777216")},
			answers: []KeyValue{kv("MaxRecvDataSegmentLength", "Reject")}},

		// 13.13 / 13.14 burst lengths: minimum; FirstBurstLength <= MaxBurstLength.
		{name: "MaxBurstLength above limit", offers: []KeyValue{kv("MaxBurstLength", "1048576")}, answers: []KeyValue{kv("MaxBurstLength", "262144")}},
		// FirstBurstLength (default 65536) is clamped to the smaller MaxBurstLength.
		{name: "MaxBurstLength below limit", offers: []KeyValue{kv("MaxBurstLength", "16384")}, answers: []KeyValue{kv("MaxBurstLength", "16384")},
			want: func(p *Params) { p.MaxBurstLength, p.FirstBurstLength = 16384, 16384 }},
		{name: "MaxBurstLength hex", offers: []KeyValue{kv("MaxBurstLength", "0x4000")}, answers: []KeyValue{kv("MaxBurstLength", "16384")},
			want: func(p *Params) { p.MaxBurstLength, p.FirstBurstLength = 16384, 16384 }},
		{name: "MaxBurstLength 511", offers: []KeyValue{kv("MaxBurstLength", "511")}, answers: []KeyValue{kv("MaxBurstLength", "Reject")}},
		{name: "MaxBurstLength signed", offers: []KeyValue{kv("MaxBurstLength", "+1024")}, answers: []KeyValue{kv("MaxBurstLength", "Reject")}},
		{name: "MaxBurstLength reserved word", offers: []KeyValue{kv("MaxBurstLength", "Reject")}, answers: []KeyValue{kv("MaxBurstLength", "Reject")}},
		{name: "MaxBurstLength 2^64", offers: []KeyValue{kv("MaxBurstLength", "18446744073709551616")}, answers: []KeyValue{kv("MaxBurstLength", "Reject")}},
		{name: "FirstBurstLength above limit", offers: []KeyValue{kv("FirstBurstLength", "262144")}, answers: []KeyValue{kv("FirstBurstLength", "65536")}},
		{name: "FirstBurstLength below limit", offers: []KeyValue{kv("FirstBurstLength", "4096")}, answers: []KeyValue{kv("FirstBurstLength", "4096")},
			want: func(p *Params) { p.FirstBurstLength = 4096 }},
		{name: "FirstBurstLength > MaxBurstLength in one request",
			limits:  func(l *TargetLimits) { l.FirstBurstLength = 262144 },
			offers:  []KeyValue{kv("FirstBurstLength", "262144"), kv("MaxBurstLength", "65536")},
			answers: []KeyValue{kv("FirstBurstLength", "65536"), kv("MaxBurstLength", "65536")},
			want:    func(p *Params) { p.FirstBurstLength, p.MaxBurstLength = 65536, 65536 }},

		// 13.15 / 13.16 times.
		{name: "DefaultTime2Wait max", offers: []KeyValue{kv("DefaultTime2Wait", "0")}, answers: []KeyValue{kv("DefaultTime2Wait", "2")}},
		{name: "DefaultTime2Wait larger", offers: []KeyValue{kv("DefaultTime2Wait", "10")}, answers: []KeyValue{kv("DefaultTime2Wait", "10")},
			want: func(p *Params) { p.DefaultTime2Wait = 10 }},
		{name: "DefaultTime2Wait 3601", offers: []KeyValue{kv("DefaultTime2Wait", "3601")}, answers: []KeyValue{kv("DefaultTime2Wait", "Reject")}},
		{name: "DefaultTime2Retain min", offers: []KeyValue{kv("DefaultTime2Retain", "0")}, answers: []KeyValue{kv("DefaultTime2Retain", "0")},
			want: func(p *Params) { p.DefaultTime2Retain = 0 }},
		{name: "DefaultTime2Retain larger", offers: []KeyValue{kv("DefaultTime2Retain", "60")}, answers: []KeyValue{kv("DefaultTime2Retain", "20")}},

		// 13.17 MaxOutstandingR2T.
		{name: "MaxOutstandingR2T min", offers: []KeyValue{kv("MaxOutstandingR2T", "8")}, answers: []KeyValue{kv("MaxOutstandingR2T", "1")}},
		{name: "MaxOutstandingR2T with limit 4", limits: func(l *TargetLimits) { l.MaxOutstandingR2T = 4 },
			offers: []KeyValue{kv("MaxOutstandingR2T", "8")}, answers: []KeyValue{kv("MaxOutstandingR2T", "4")}, want: func(p *Params) { p.MaxOutstandingR2T = 4 }},
		{name: "MaxOutstandingR2T 0", offers: []KeyValue{kv("MaxOutstandingR2T", "0")}, answers: []KeyValue{kv("MaxOutstandingR2T", "Reject")}},

		// 13.18 / 13.19: OR.
		{name: "DataPDUInOrder No, target needs order", offers: []KeyValue{kv("DataPDUInOrder", "No")}, answers: []KeyValue{kv("DataPDUInOrder", "Yes")}},
		{name: "DataPDUInOrder No accepted", limits: func(l *TargetLimits) { l.DataPDUInOrder = false },
			offers: []KeyValue{kv("DataPDUInOrder", "No")}, answers: []KeyValue{kv("DataPDUInOrder", "No")}, want: func(p *Params) { p.DataPDUInOrder = false }},
		{name: "DataSequenceInOrder No accepted", limits: func(l *TargetLimits) { l.DataSequenceInOrder = false },
			offers: []KeyValue{kv("DataSequenceInOrder", "No")}, answers: []KeyValue{kv("DataSequenceInOrder", "No")}, want: func(p *Params) { p.DataSequenceInOrder = false }},
		{name: "DataSequenceInOrder Yes", offers: []KeyValue{kv("DataSequenceInOrder", "Yes")}, answers: []KeyValue{kv("DataSequenceInOrder", "Yes")}},

		// 13.20 ErrorRecoveryLevel.
		{name: "ErrorRecoveryLevel min", offers: []KeyValue{kv("ErrorRecoveryLevel", "2")}, answers: []KeyValue{kv("ErrorRecoveryLevel", "0")}},
		{name: "ErrorRecoveryLevel 3", offers: []KeyValue{kv("ErrorRecoveryLevel", "3")}, answers: []KeyValue{kv("ErrorRecoveryLevel", "Reject")}},
		{name: "ErrorRecoveryLevel with ERL1 target", limits: func(l *TargetLimits) { l.MaxErrorRecoveryLevel = 1 },
			offers: []KeyValue{kv("ErrorRecoveryLevel", "2")}, answers: []KeyValue{kv("ErrorRecoveryLevel", "1")}, want: func(p *Params) { p.ErrorRecoveryLevel = 1 }},

		// 13.23 TaskReporting, 13.24 iSCSIProtocolLevel.
		{name: "TaskReporting without FastAbort", offers: []KeyValue{kv("TaskReporting", "FastAbort,ResponseFence,RFC3720")},
			answers: []KeyValue{kv("TaskReporting", "RFC3720")}},
		{name: "TaskReporting with FastAbort", limits: func(l *TargetLimits) { l.FastAbort = true },
			offers: []KeyValue{kv("TaskReporting", "FastAbort,RFC3720")}, answers: []KeyValue{kv("TaskReporting", "FastAbort")},
			want: func(p *Params) { p.TaskReporting = "FastAbort" }},
		{name: "TaskReporting unknown", offers: []KeyValue{kv("TaskReporting", "Foo")}, answers: []KeyValue{kv("TaskReporting", "Reject")}},
		{name: "iSCSIProtocolLevel min", offers: []KeyValue{kv("iSCSIProtocolLevel", "2")}, answers: []KeyValue{kv("iSCSIProtocolLevel", "1")}},
		{name: "iSCSIProtocolLevel 32", offers: []KeyValue{kv("iSCSIProtocolLevel", "32")}, answers: []KeyValue{kv("iSCSIProtocolLevel", "Reject")}},

		// 13.25 obsolete marker keys.
		{name: "markers", offers: []KeyValue{kv("OFMarker", "No"), kv("IFMarker", "Yes"), kv("OFMarkInt", "2048"), kv("IFMarkInt", "1~65535"), kv("OFMarker2", "x")},
			answers: []KeyValue{kv("OFMarker", "No"), kv("IFMarker", "No"), kv("OFMarkInt", "Reject"), kv("IFMarkInt", "Reject"), kv("OFMarker2", "NotUnderstood")}},
		{name: "marker with bad value", offers: []KeyValue{kv("IFMarker", "Maybe")}, answers: []KeyValue{kv("IFMarker", "Reject")}},

		// Unknown and extension keys, login-layer keys.
		{name: "extension and unknown keys", offers: []KeyValue{kv("X-com.example.foo", "1"), kv("X#NodeArchitecture", "Linux"), kv("FooBar", "1")},
			answers: []KeyValue{kv("X-com.example.foo", "NotUnderstood"), kv("X#NodeArchitecture", "NotUnderstood"), kv("FooBar", "NotUnderstood")}},
		{name: "login layer keys are skipped", offers: []KeyValue{kv("InitiatorName", "iqn.x"), kv("TargetName", "iqn.y"), kv("SessionType", "Normal"),
			kv("AuthMethod", "None"), kv("InitiatorAlias", "h"), kv("CHAP_A", "5"), kv("SendTargets", "All"), kv("MaxConnections", "1")},
			answers: []KeyValue{kv("MaxConnections", "1")}},

		// Target-only keys.
		{name: "TargetAlias from initiator", offers: []KeyValue{kv("TargetAlias", "x")}, errPart: "only the target"},
		{name: "TargetPortalGroupTag from initiator", offers: []KeyValue{kv("TargetPortalGroupTag", "1")}, errPart: "only the target"},
		{name: "TargetAddress from initiator", offers: []KeyValue{kv("TargetAddress", "1.2.3.4")}, errPart: "only the target"},

		// Discovery sessions: session keys marked "Irrelevant when:
		// SessionType=Discovery" in RFC 7143 13.x.
		{name: "discovery", discovery: true,
			offers: []KeyValue{kv("HeaderDigest", "CRC32C"), kv("MaxConnections", "1"), kv("InitialR2T", "No"), kv("ImmediateData", "Yes"),
				kv("MaxRecvDataSegmentLength", "32768"), kv("MaxBurstLength", "512"), kv("FirstBurstLength", "512"), kv("DefaultTime2Wait", "5"),
				kv("DefaultTime2Retain", "0"), kv("MaxOutstandingR2T", "1"), kv("DataPDUInOrder", "Yes"), kv("DataSequenceInOrder", "Yes"),
				kv("ErrorRecoveryLevel", "1"), kv("TaskReporting", "RFC3720")},
			answers: []KeyValue{kv("HeaderDigest", "CRC32C"), kv("MaxConnections", "Irrelevant"), kv("InitialR2T", "Irrelevant"), kv("ImmediateData", "Irrelevant"),
				kv("MaxBurstLength", "Irrelevant"), kv("FirstBurstLength", "Irrelevant"), kv("DefaultTime2Wait", "5"),
				kv("DefaultTime2Retain", "0"), kv("MaxOutstandingR2T", "Irrelevant"), kv("DataPDUInOrder", "Irrelevant"), kv("DataSequenceInOrder", "Irrelevant"),
				kv("ErrorRecoveryLevel", "0"), kv("TaskReporting", "Irrelevant")},
			want: func(p *Params) {
				p.HeaderDigest, p.MaxXmitDataSegmentLength, p.DefaultTime2Wait, p.DefaultTime2Retain = true, 32768, 5, 0
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limits := DefaultTargetLimits()
			if tt.limits != nil {
				tt.limits(&limits)
			}
			n := NewNegotiation(limits, tt.discovery)
			answers, err := n.Offer(tt.offers)
			if tt.errPart != "" {
				var ne *NegotiationError
				if !errors.As(err, &ne) || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("err = %v, want *NegotiationError containing %q", err, tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(answers) == 0 {
				answers = nil
			}
			if !reflect.DeepEqual(answers, tt.answers) {
				t.Fatalf("answers\n got %q\nwant %q", answers, tt.answers)
			}
			want := DefaultParams()
			if tt.want != nil {
				tt.want(&want)
			}
			if got := n.Params(); got != want {
				t.Fatalf("params\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestOfferTwice(t *testing.T) {
	for _, key := range []string{"MaxBurstLength", "MaxRecvDataSegmentLength", "HeaderDigest", "ImmediateData"} {
		n := NewNegotiation(DefaultTargetLimits(), false)
		value := map[string]string{"MaxBurstLength": "4096", "MaxRecvDataSegmentLength": "4096", "HeaderDigest": "None", "ImmediateData": "No"}[key]
		if _, err := n.Offer([]KeyValue{kv(key, value)}); err != nil {
			t.Fatal(err)
		}
		_, err := n.Offer([]KeyValue{kv("ErrorRecoveryLevel", "0"), kv(key, value)})
		var ne *NegotiationError
		if !errors.As(err, &ne) || ne.Key != key {
			t.Fatalf("%s twice: err = %v", key, err)
		}
	}
}

// TestFirstBurstClampedAcrossRequests: FirstBurstLength settled before a
// smaller MaxBurstLength still never exceeds it in Params.
func TestFirstBurstClampedAcrossRequests(t *testing.T) {
	n := NewNegotiation(DefaultTargetLimits(), false)
	if a, err := n.Offer([]KeyValue{kv("FirstBurstLength", "65536")}); err != nil || a[0].Value != "65536" {
		t.Fatalf("%q %v", a, err)
	}
	if a, err := n.Offer([]KeyValue{kv("MaxBurstLength", "16384")}); err != nil || a[0].Value != "16384" {
		t.Fatalf("%q %v", a, err)
	}
	if p := n.Params(); p.FirstBurstLength != 16384 || p.MaxBurstLength != 16384 {
		t.Fatalf("first %d max %d", p.FirstBurstLength, p.MaxBurstLength)
	}
}

func TestDeclarationsDefault(t *testing.T) {
	n := NewNegotiation(DefaultTargetLimits(), false)
	if p := n.Params(); p.MaxRecvDataSegmentLength != 8192 {
		t.Fatalf("before declaring, the target receives the 8192 default, got %d", p.MaxRecvDataSegmentLength)
	}
	d := n.Declarations()
	if !reflect.DeepEqual(d, []KeyValue{kv("MaxRecvDataSegmentLength", "262144")}) {
		t.Fatalf("declarations %q", d)
	}
	if d := n.Declarations(); d != nil {
		t.Fatalf("second call %q", d)
	}
	if n.Pending() {
		t.Fatal("pending without offers")
	}
	if p := n.Params(); p.MaxRecvDataSegmentLength != 262144 {
		t.Fatalf("MaxRecvDataSegmentLength %d", p.MaxRecvDataSegmentLength)
	}
}

// TestTargetOffers: limits stricter than the defaults make the target offer
// keys itself; the initiator's answers settle them.
func TestTargetOffers(t *testing.T) {
	limits := DefaultTargetLimits()
	limits.MaxBurstLength = 65536
	limits.FirstBurstLength = 16384
	limits.ImmediateData = false
	limits.DefaultTime2Wait = 5
	limits.DefaultTime2Retain = 0
	limits.HeaderDigest = DigestRequired
	limits.DataDigest = DigestRequired

	n := NewNegotiation(limits, false)
	// The initiator offered DataDigest itself: the target answers, not offers.
	if _, err := n.Offer([]KeyValue{kv("DataDigest", "CRC32C")}); err != nil {
		t.Fatal(err)
	}
	d := n.Declarations()
	want := []KeyValue{kv("MaxRecvDataSegmentLength", "262144"), kv("HeaderDigest", "CRC32C"), kv("MaxBurstLength", "65536"),
		kv("FirstBurstLength", "16384"), kv("ImmediateData", "No"), kv("DefaultTime2Wait", "5"), kv("DefaultTime2Retain", "0")}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("declarations\n got %q\nwant %q", d, want)
	}
	if !n.Pending() {
		t.Fatal("not pending after offers")
	}
	a, err := n.Offer([]KeyValue{kv("HeaderDigest", "CRC32C"), kv("MaxBurstLength", "65536"), kv("FirstBurstLength", "8192"),
		kv("DefaultTime2Wait", "5"), kv("DefaultTime2Retain", "0")})
	if err != nil || len(a) != 0 {
		t.Fatalf("answers to offers must not be answered: %q %v", a, err)
	}
	if n.Pending() {
		t.Fatal("still pending: ImmediateData=No needs no answer")
	}
	p := n.Params()
	if !p.HeaderDigest || !p.DataDigest || p.MaxBurstLength != 65536 || p.FirstBurstLength != 8192 || p.ImmediateData ||
		p.DefaultTime2Wait != 5 || p.DefaultTime2Retain != 0 || p.MaxRecvDataSegmentLength != 262144 {
		t.Fatalf("params %+v", p)
	}
	// The optional answer to ImmediateData=No may still come, once.
	if _, err := n.Offer([]KeyValue{kv("ImmediateData", "No")}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Offer([]KeyValue{kv("ImmediateData", "No")}); err == nil {
		t.Fatal("third ImmediateData accepted")
	}
}

func TestTargetOfferRefused(t *testing.T) {
	tests := []struct {
		answer  KeyValue
		errPart string
	}{
		{kv("HeaderDigest", "Reject"), "answered Reject"},
		{kv("HeaderDigest", "None"), "invalid answer"},
		{kv("HeaderDigest", "NotUnderstood"), "answered NotUnderstood"},
	}
	for _, tt := range tests {
		limits := DefaultTargetLimits()
		limits.HeaderDigest = DigestRequired
		n := NewNegotiation(limits, false)
		n.Declarations()
		_, err := n.Offer([]KeyValue{tt.answer})
		if err == nil || !strings.Contains(err.Error(), tt.errPart) {
			t.Errorf("%v: err = %v, want %q", tt.answer, err, tt.errPart)
		}
	}
	// A numeric answer above the offer is folded by the minimum function.
	limits := DefaultTargetLimits()
	limits.MaxBurstLength = 8192
	n := NewNegotiation(limits, false)
	n.Declarations()
	if _, err := n.Offer([]KeyValue{kv("MaxBurstLength", "262144")}); err != nil {
		t.Fatal(err)
	}
	if p := n.Params(); p.MaxBurstLength != 8192 || p.FirstBurstLength != 8192 {
		t.Fatalf("params %+v", p)
	}
}

func TestNonLeadingConnection(t *testing.T) {
	n := NewNegotiation(DefaultTargetLimits(), false)
	n.SetLeading(false)
	a, err := n.Offer([]KeyValue{kv("MaxBurstLength", "4096"), kv("HeaderDigest", "CRC32C")})
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyValue{kv("MaxBurstLength", "Reject"), kv("HeaderDigest", "CRC32C")}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("got %q", a)
	}
}

func TestTextNegotiation(t *testing.T) {
	cur := DefaultParams()
	cur.MaxBurstLength = 4096
	n := NewTextNegotiation(DefaultTargetLimits(), false, cur)
	a, err := n.Offer([]KeyValue{kv("MaxRecvDataSegmentLength", "16384"), kv("MaxBurstLength", "8192"), kv("HeaderDigest", "CRC32C")})
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyValue{kv("MaxBurstLength", "Reject"), kv("HeaderDigest", "Reject")}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("got %q", a)
	}
	if d := n.Declarations(); d != nil {
		t.Fatalf("declarations in FFP: %q", d)
	}
	if p := n.Params(); p.MaxXmitDataSegmentLength != 16384 || p.MaxBurstLength != 4096 {
		t.Fatalf("params %+v", p)
	}
	if _, err := n.Offer([]KeyValue{kv("MaxRecvDataSegmentLength", "32768")}); err == nil {
		t.Fatal("redeclaration within one sequence accepted")
	}
	n.StartTextNegotiation()
	if _, err := n.Offer([]KeyValue{kv("MaxRecvDataSegmentLength", "32768")}); err != nil {
		t.Fatal(err)
	}
	if p := n.Params(); p.MaxXmitDataSegmentLength != 32768 {
		t.Fatalf("params %+v", p)
	}
}

// TestZeroLimits: a zero TargetLimits is normalized to valid bounds.
func TestZeroLimits(t *testing.T) {
	n := NewNegotiation(TargetLimits{}, false)
	a, err := n.Offer([]KeyValue{kv("MaxBurstLength", "1024"), kv("MaxOutstandingR2T", "4"), kv("HeaderDigest", "CRC32C,None"), kv("ImmediateData", "Yes")})
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyValue{kv("MaxBurstLength", "1024"), kv("MaxOutstandingR2T", "1"), kv("HeaderDigest", "None"), kv("ImmediateData", "No")}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("got %q", a)
	}
}

// TestKeyTable checks the table against itself and DefaultParams.
func TestKeyTable(t *testing.T) {
	defaults := DefaultParams()
	limits := DefaultTargetLimits()
	for _, k := range keyTable {
		if k.Name == "" || k.Section == "" || k.Kind == 0 || k.Scope == 0 || k.Use == 0 || k.Sender == 0 {
			t.Errorf("%q: incomplete row %+v", k.Name, k)
		}
		if got, ok := LookupKey(k.Name); !ok || got.Name != k.Name {
			t.Errorf("LookupKey(%q) failed", k.Name)
		}
		if k.LoginLayer || k.Obsolete || k.Sender == SenderTarget {
			continue
		}
		p := defaults
		switch k.Kind {
		case BooleanAnd, BooleanOr:
			v, ok := parseBool(k.Default)
			if k.flag == nil || k.lflag == nil || !ok || *k.flag(&p) != v {
				t.Errorf("%s: boolean row inconsistent (default %q)", k.Name, k.Default)
			}
		case NumericMin, NumericMax:
			v, ok := parseNumber(k.Default)
			if k.num == nil || k.lnum == nil || !ok || uint64(*k.num(&p)) != v || v < uint64(k.Min) || v > uint64(k.Max) {
				t.Errorf("%s: numeric row inconsistent (default %q)", k.Name, k.Default)
			}
			if l := k.lnum(&limits); l < k.Min || l > k.Max {
				t.Errorf("%s: default limit %d outside %d..%d", k.Name, l, k.Min, k.Max)
			}
		case NumericDeclarative:
			if k.num == nil {
				t.Errorf("%s: no accessor", k.Name)
			}
		case ListSelect:
			if k.accept == nil || k.store == nil || !k.accept(&limits, k.Default) {
				t.Errorf("%s: list row inconsistent", k.Name)
			}
		}
	}
	if _, ok := LookupKey("NoSuchKey"); ok {
		t.Error("LookupKey found NoSuchKey")
	}
}

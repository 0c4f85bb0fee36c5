package iscsi

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseText(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name    string
		in      string
		want    []KeyValue
		errPart string // substring of the error; "" = success
	}{
		{"empty", "", nil, ""},
		{"one pair", "HeaderDigest=None\x00", []KeyValue{{"HeaderDigest", "None"}}, ""},
		{"login request", "InitiatorName=iqn.2004-10.com.example:host\x00SessionType=Normal\x00AuthMethod=None\x00",
			[]KeyValue{{"InitiatorName", "iqn.2004-10.com.example:host"}, {"SessionType", "Normal"}, {"AuthMethod", "None"}}, ""},
		{"list value", "DataDigest=CRC32C,None\x00", []KeyValue{{"DataDigest", "CRC32C,None"}}, ""},
		{"empty value kept", "X-foo=\x00", []KeyValue{{"X-foo", ""}}, ""},
		{"value containing '='", "X-a=b=c\x00", []KeyValue{{"X-a", "b=c"}}, ""},
		{"extension key with #", "X#NodeArchitecture=Linux\x00", []KeyValue{{"X#NodeArchitecture", "Linux"}}, ""},
		{"UTF-8 value", "InitiatorAlias=h\u00f4te\x00", []KeyValue{{"InitiatorAlias", "h\u00f4te"}}, ""},
		{"NUL padding skipped", "A=1\x00\x00\x00\x00", []KeyValue{{"A", "1"}}, ""},
		{"63-byte key", long(63) + "=1\x00", []KeyValue{{long(63), "1"}}, ""},
		{"255-byte value", "TargetAlias=" + long(255) + "\x00", []KeyValue{{"TargetAlias", long(255)}}, ""},
		{"long CHAP_C", "CHAP_C=0x" + long(2000) + "\x00", []KeyValue{{"CHAP_C", "0x" + long(2000)}}, ""},

		{"missing final NUL", "HeaderDigest=None", nil, "not terminated"},
		{"missing final NUL after a pair", "A=1\x00B=2", nil, "not terminated"},
		{"missing '='", "HeaderDigest\x00", nil, "no '='"},
		{"empty key", "=None\x00", nil, "empty key"},
		{"64-byte key", long(64) + "=1\x00", nil, "exceeds 63"},
		{"256-byte value", "TargetAlias=" + long(256) + "\x00", nil, "exceeds 255"},
		{"8193-byte CHAP_R", "CHAP_R=" + long(8193) + "\x00", nil, "exceeds 8192"},
		{"space in key", "Header Digest=None\x00", nil, "not allowed in key"},
		{"invalid UTF-8", "InitiatorAlias=\xff\xfe\x00", nil, "UTF-8"},
		{"duplicate key", "MaxBurstLength=512\x00ImmediateData=No\x00MaxBurstLength=1024\x00", nil, `"MaxBurstLength"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseText([]byte(tt.in))
			if tt.errPart != "" {
				var te *TextError
				if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("err = %v, want *TextError containing %q", err, tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseTextRepeated(t *testing.T) {
	in := "TargetName=iqn.a\x00TargetAddress=10.0.0.1:3260,1\x00TargetName=iqn.b\x00TargetAddress=10.0.0.2:3260,1\x00"
	got, err := ParseTextRepeated([]byte(in))
	if err != nil || len(got) != 4 || got[2] != (KeyValue{"TargetName", "iqn.b"}) {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := ParseText([]byte(in)); err == nil {
		t.Fatal("ParseText accepted repeated keys")
	}
}

func TestAppendText(t *testing.T) {
	kvs := []KeyValue{{"HeaderDigest", "None"}, {"MaxRecvDataSegmentLength", "262144"}, {"X-empty", ""}}
	b := AppendText([]byte("prefix"), kvs...)
	want := "prefixHeaderDigest=None\x00MaxRecvDataSegmentLength=262144\x00X-empty=\x00"
	if string(b) != want {
		t.Fatalf("got %q", b)
	}
	back, err := ParseText(b[len("prefix"):])
	if err != nil || !reflect.DeepEqual(back, kvs) {
		t.Fatalf("round trip: %q %v", back, err)
	}
	if got := AppendText(nil); got != nil {
		t.Fatalf("no pairs: %q", got)
	}
}

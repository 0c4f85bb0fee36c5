package config

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	long := "iqn.2026-11.io.blockport:" + strings.Repeat("a", 223-len("iqn.2026-11.io.blockport:"))
	tests := []struct {
		name string
		err  string // part of the error; "" for a valid name
	}{
		// RFC 7143 4.2.7.2 examples and names real initiators use.
		{"iqn.2001-04.com.example", ""},
		{"iqn.2001-04.com.example:storage:diskarrays-sn-a8675309", ""},
		{"iqn.2001-04.com.example.storage:tape.sys1.xyz", ""},
		{"iqn.1994-05.com.redhat:8f2d2c5b1f1e", ""},
		{"iqn.1991-05.com.microsoft:host1.corp.example.com", ""},
		{"iqn.2026-11.io.blockport:lab", ""},
		{"iqn.2026-11.io.blockport:", ""},
		{"eui.02004567A425678D", ""},
		{"eui.02004567a425678d", ""},
		{"naa.52004567BA64678D", ""},
		{"naa.62004567BA64678D0123456789ABCDEF", ""},
		{long, ""},

		{"", "empty"},
		{long + "a", "224 bytes, the limit is 223"},
		{"IQN.2001-04.com.example", `must be lower case "iqn."`},
		{"Eui.02004567A425678D", `must be lower case "eui."`},
		{"iscsi.target", `must start with "iqn.", "eui." or "naa."`},
		{"iqn", "must start with"},
		{"iqn.2001-04.com.Example", "upper-case 'E' at byte 16"},
		{"iqn.2001-04.com.example:disk 1", "character ' ' at byte 28"},
		{"iqn.2001-04.com.example:disk_1", "character '_'"},
		{"iqn.2001-04.com.exämple", "is not allowed"},
		{"iqn.2001-4.com.example", "date yyyy-mm"},
		{"iqn.01-04.com.example", "date yyyy-mm"},
		{"iqn.2001-04", "followed by \".\" and a reversed domain"},
		{"iqn.2001-04:x", "followed by \".\" and a reversed domain"},
		{"iqn.2001-04.", "missing the reversed domain"},
		{"iqn.2001-04.:x", "missing the reversed domain"},
		{"iqn.2001-00.com.example", "month 00"},
		{"iqn.2001-13.com.example", "month 13"},
		{"iqn.2001-04.com..example", "empty label"},
		{"iqn.2001-04.com.example.:x", "empty label"},
		{"eui.02004567A425678", "needs 16 hex digits, has 15"},
		{"eui.02004567A425678DE", "needs 16 hex digits, has 17"},
		{"eui.02004567A425678G", "'G' is not a hex digit"},
		{"naa.52004567BA64678D01", "needs 16 or 32 hex digits, has 18"},
		{"naa.", "has 0"},
	}
	for _, tc := range tests {
		err := ValidateName(tc.name)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ValidateName(%q) = %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ValidateName(%q) = %v; want an error containing %q", tc.name, err, tc.err)
		}
	}
}

func TestCanonicalName(t *testing.T) {
	for in, want := range map[string]string{
		"eui.02004567a425678d":  "eui.02004567A425678D",
		"naa.52004567ba64678d":  "naa.52004567BA64678D",
		"iqn.2001-04.com.ex:ab": "iqn.2001-04.com.ex:ab",
	} {
		if got := canonicalName(in); got != want {
			t.Errorf("canonicalName(%q) = %q, want %q", in, got, want)
		}
	}
}

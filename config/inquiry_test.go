package config

import (
	"strings"
	"testing"
)

func TestLUNInquiryOptions(t *testing.T) {
	const head = "[[target]]\nname = \"iqn.2026-11.io.blockport:a\"\n  [[target.lun]]\n  lun = 0\n  backstore = \"memory\"\n  size = \"1MiB\"\n"
	tests := []struct {
		name, extra string
		want        string // substring of the error; "" for success
	}{
		{"defaults", "", ""},
		{"all set", "  removable = true\n  vendor = \"ACME\"\n  product = \"Tape Drive 9000\"\n", ""},
		{"vendor too long", "  vendor = \"ACMECORPX\"\n", "a.toml:7: target[0].lun[0].vendor: is 9 bytes; the INQUIRY field holds 8"},
		{"product too long", "  product = \"" + strings.Repeat("p", 17) + "\"\n", "a.toml:7: target[0].lun[0].product: is 17 bytes; the INQUIRY field holds 16"},
		{"vendor not ASCII", "  vendor = \"caf\u00e9\"\n", "target[0].lun[0].vendor: must be printable ASCII; byte 3"},
		{"removable not bool", "  removable = \"yes\"\n", "a.toml:7: target[0].lun[0].removable: must be true or false, not a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("a.toml", []byte(head+tc.extra), "")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				lun := c.Targets[0].LUNs[0]
				if tc.extra != "" && (!lun.Removable || lun.Vendor != "ACME" || lun.Product != "Tape Drive 9000") {
					t.Fatalf("decoded %+v", lun)
				}
				if tc.extra == "" && (lun.Removable || lun.Vendor != "" || lun.Product != "") {
					t.Fatalf("defaults decoded as %+v", lun)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

package target

import (
	"net"
	"net/netip"
	"testing"

	"github.com/blockport/blockport/config"
)

func TestAccessAdmitAndAuth(t *testing.T) {
	tc := config.Target{
		Name: "iqn.2026-11.io.blockport:t",
		LUNs: []config.LUN{{ID: 0}, {ID: 1}},
		CHAP: &config.CHAP{User: "all", Secret: "target-wide-secret"},
		ACLs: []config.ACL{
			{Initiator: "iqn.2026-11.x:a", Portals: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
				CHAP: &config.CHAP{User: "a", Secret: "a-secret-000001"}, MutualCHAP: &config.CHAP{User: "san", Secret: "san-secret-00001"}},
			{Initiator: "iqn.2026-11.x:b", LUNs: []config.ACLLUN{{LUN: 1, As: 0, ReadOnly: true}}},
		},
	}
	addr := func(s string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(s), Port: 5000} }
	for _, allowAny := range []bool{false, true} {
		tc.AllowAnyInitiator = allowAny
		acc, err := newAccess(tc)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			ini, from string
			want      bool
		}{
			{"iqn.2026-11.x:a", "10.0.0.9", true},
			{"IQN.2026-11.X:A", "10.0.0.9", true}, // names compare case-insensitively
			{"iqn.2026-11.x:a", "10.0.1.9", false},
			{"iqn.2026-11.x:a", "::ffff:10.0.0.9", true},
			{"iqn.2026-11.x:b", "192.168.0.1", true},
			{"iqn.2026-11.x:c", "10.0.0.9", allowAny},
		} {
			if got := acc.admit(tt.ini, addr(tt.from)); got != tt.want {
				t.Errorf("allowAny=%v admit(%s from %s) = %v, want %v", allowAny, tt.ini, tt.from, got, tt.want)
			}
		}
		if p := acc.auth("iqn.2026-11.x:a"); p.CHAP.User != "a" || p.Mutual == nil || p.Mutual.User != "san" {
			t.Errorf("ACL CHAP does not override: %+v", p)
		}
		if p := acc.auth("iqn.2026-11.x:b"); p.CHAP == nil || p.CHAP.User != "all" || p.Mutual != nil {
			t.Errorf("target CHAP not inherited: %+v", p)
		}
	}
	m := masking(tc)
	if len(m.Initiators["iqn.2026-11.x:a"]) != 2 || m.Initiators["iqn.2026-11.x:b"][0].As != 0 || !m.Initiators["iqn.2026-11.x:b"][0].ReadOnly {
		t.Errorf("masking %+v", m)
	}
	if masking(config.Target{LUNs: tc.LUNs}) != nil {
		t.Error("masking without ACLs")
	}
	// A secret_file that was never loaded is an error, not an empty secret.
	tc.CHAP = &config.CHAP{User: "x", SecretFile: "/nonexistent"}
	if _, err := newAccess(tc); err == nil {
		t.Error("unloaded secret accepted")
	}
}

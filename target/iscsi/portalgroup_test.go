package iscsi

import (
	"strings"
	"testing"
)

// sendTargets runs a discovery session and returns the SendTargets=All text.
func sendTargets(t *testing.T, f *fabric) string {
	t.Helper()
	in := dial(t, f)
	resp, _ := in.login([]KeyValue{{Key: "InitiatorName", Value: "iqn.2026-11.x:y"}, {Key: "SessionType", Value: "Discovery"}, {Key: "AuthMethod", Value: "None"}}, nil)
	if resp.StatusClass != 0 || resp.NSG != 3 {
		t.Fatalf("discovery login: %d/%d", resp.StatusClass, resp.StatusDetail)
	}
	req := TextRequest{Final: true, Immediate: true, ITT: 77, TTT: 0xffffffff, CmdSN: in.cmdSN, ExpStatSN: in.expSN}
	var h BHS
	req.Encode(&h)
	if err := in.w.WritePDU(&h, AppendText(nil, KeyValue{Key: "SendTargets", Value: "All"})); err != nil {
		t.Fatal(err)
	}
	pdu, err := in.r.ReadPDU()
	if err != nil || pdu.Header.Opcode() != OpTextResponse {
		t.Fatalf("text response: %v", err)
	}
	return string(pdu.Data)
}

// TestPortalGroupTag: a target with portal groups answers the tag of the
// group that holds the portal, lists the portal with that tag, and refuses
// logins through portals outside its groups.
func TestPortalGroupTag(t *testing.T) {
	f := startFabricWith(t, Options{}, func(tg *Target) {
		tg.PortalGroup = func(listen string) (uint16, bool) { return 7, listen == "" }
	})
	in := dial(t, f)
	resp, kvs := in.login(normalKeys("iqn.2026-11.io.blockport:tester"), nil)
	if resp.StatusClass != 0 {
		t.Fatalf("login: %d/%d", resp.StatusClass, resp.StatusDetail)
	}
	var tag string
	for _, kv := range kvs {
		if kv.Key == "TargetPortalGroupTag" {
			tag = kv.Value
		}
	}
	if tag != "7" {
		t.Fatalf("TargetPortalGroupTag %q, want 7 (answers %v)", tag, kvs)
	}
	if text := sendTargets(t, f); !strings.Contains(text, "TargetAddress="+f.addr+",7\x00") {
		t.Fatalf("SendTargets answer %q", text)
	}

	// Another gateway's portals follow this server's own, as configured.
	r := startFabricWith(t, Options{}, func(tg *Target) {
		tg.PortalGroup = func(listen string) (uint16, bool) { return 1, true }
		tg.RemotePortals = []Portal{{Addr: "gw-b.example:3260", TPGT: 2}, {Addr: "[fd00::2]:3260", TPGT: 2}}
	})
	want := "TargetAddress=" + r.addr + ",1\x00TargetAddress=gw-b.example:3260,2\x00TargetAddress=[fd00::2]:3260,2\x00"
	if text := sendTargets(t, r); !strings.Contains(text, want) {
		t.Fatalf("SendTargets with remote portals: %q, want %q", text, want)
	}

	g := startFabricWith(t, Options{}, func(tg *Target) {
		tg.PortalGroup = func(listen string) (uint16, bool) { return 0, false }
	})
	in = dial(t, g)
	resp, _ = in.loginPDU(0, 1, true, normalKeys("iqn.2026-11.io.blockport:tester"))
	if resp.StatusClass != 2 || resp.StatusDetail != 3 {
		t.Fatalf("login through a portal outside the target's groups: %#x/%#x, want 2/3 (not found)", resp.StatusClass, resp.StatusDetail)
	}
	if text := sendTargets(t, g); strings.Contains(text, "TargetAddress=") {
		t.Fatalf("SendTargets lists a portal outside the target's groups: %q", text)
	}
}

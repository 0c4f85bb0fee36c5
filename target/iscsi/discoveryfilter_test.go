package iscsi

import (
	"strings"
	"sync"
	"testing"
)

// recordingFilter lets through the names in allow (any case) and records
// what it was asked.
type recordingFilter struct {
	allow []string
	mu    sync.Mutex
	asked []string // initiator names, guarded by mu
}

func (f *recordingFilter) VisibleTargets(initiator string, targets []string) []string {
	f.mu.Lock()
	f.asked = append(f.asked, initiator)
	f.mu.Unlock()
	var out []string
	for _, t := range targets {
		for _, a := range f.allow {
			if strings.EqualFold(a, t) {
				out = append(out, a)
			}
		}
	}
	return out
}

func (f *recordingFilter) initiators() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

// TestDiscoveryFilter: with a DiscoveryFilter, a discovery session's
// SendTargets lists only what the filter allows; a normal session's own
// target is not filtered.
func TestDiscoveryFilter(t *testing.T) {
	tests := []struct {
		name   string
		allow  []string
		listed bool
	}{
		{"allowed", []string{testTarget}, true},
		{"allowed in another case", []string{strings.ToUpper(testTarget)}, true},
		{"not allowed", []string{"iqn.2026-11.io.blockport:other"}, false},
		{"fails closed", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			filter := &recordingFilter{allow: tc.allow}
			f := startFabric(t, Options{DiscoveryFilter: filter})
			text := sendTargets(t, f)
			if got := strings.Contains(text, "TargetName="+testTarget+"\x00"); got != tc.listed {
				t.Fatalf("SendTargets answer %q; listed %v, want %v", text, got, tc.listed)
			}
			if !tc.listed && text != "" {
				t.Fatalf("SendTargets of a filtered target lists %q", text)
			}
			if asked := filter.initiators(); len(asked) != 1 || asked[0] != "iqn.2026-11.x:y" {
				t.Fatalf("filter asked about %q, want the initiator once", asked)
			}
		})
	}

	// In a normal session SendTargets names the session's own target,
	// which the initiator is logged in to already.
	filter := &recordingFilter{}
	f := startFabric(t, Options{DiscoveryFilter: filter})
	in := dial(t, f)
	in.mustLogin()
	req := TextRequest{Final: true, Immediate: true, ITT: 90, TTT: 0xffffffff, CmdSN: in.cmdSN, ExpStatSN: in.expSN}
	var h BHS
	req.Encode(&h)
	if err := in.w.WritePDU(&h, AppendText(nil, KeyValue{Key: "SendTargets", Value: ""})); err != nil {
		t.Fatal(err)
	}
	pdu, err := in.r.ReadPDU()
	if err != nil || pdu.Header.Opcode() != OpTextResponse {
		t.Fatalf("text response: %v", err)
	}
	if !strings.Contains(string(pdu.Data), "TargetName="+testTarget+"\x00") {
		t.Fatalf("normal session SendTargets answer %q", pdu.Data)
	}
	if asked := filter.initiators(); len(asked) != 0 {
		t.Fatalf("filter asked in a normal session: %q", asked)
	}
}

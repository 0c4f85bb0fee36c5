package target

import (
	"slices"
	"testing"

	"github.com/blockport/blockport/config"
	"github.com/blockport/blockport/target/scsi"
	"github.com/blockport/blockport/target/scsi/alua"
)

// TestALUAStateNames: the config accepts exactly the states package alua parses.
func TestALUAStateNames(t *testing.T) {
	if !slices.Equal(config.ALUAStates, alua.StateNames()) {
		t.Fatalf("config.ALUAStates %v, alua.StateNames %v", config.ALUAStates, alua.StateNames())
	}
	if config.DefaultPortalGroupTag != scsi.DefaultPortGroup {
		t.Fatal("default portal group tag and default ALUA group differ")
	}
}

func TestPortalGroups(t *testing.T) {
	dev := scsi.NewDevice("t")
	lookup, _, err := portalGroups(config.Target{}, dev)
	if err != nil || lookup != nil {
		t.Fatalf("no groups: lookup %v, err %v", lookup != nil, err)
	}
	tc := config.Target{PortalGroups: []config.PortalGroup{
		{Tag: 3, Addresses: []string{"127.0.0.1:3260", "[::1]:3260"}, ALUAState: "active/optimized"},
		{Tag: 9, Addresses: []string{"127.0.0.2:3260"}, ALUAState: "standby"},
		{Tag: 4, Addresses: []string{"10.0.0.4:3260"}, ALUAState: "active/non-optimized", Remote: true},
	}}
	lookup, remote, err := portalGroups(tc, dev)
	if err != nil {
		t.Fatal(err)
	}
	if len(remote) != 1 || remote[0].Addr != "10.0.0.4:3260" || remote[0].TPGT != 4 {
		t.Fatalf("remote portals %+v", remote)
	}
	for _, c := range []struct {
		listen string
		tag    uint16
		ok     bool
	}{{"127.0.0.1:3260", 3, true}, {"[::1]:3260", 3, true}, {"127.0.0.2:3260", 9, true}, {"127.0.0.3:3260", 0, false}, {"10.0.0.4:3260", 0, false}} {
		if tag, ok := lookup(c.listen); tag != c.tag || ok != c.ok {
			t.Errorf("lookup(%s) = %d, %v; want %d, %v", c.listen, tag, ok, c.tag, c.ok)
		}
	}
	tc.PortalGroups[1].ALUAState = "offline"
	if _, _, err := portalGroups(tc, scsi.NewDevice("t")); err == nil {
		t.Fatal("offline accepted")
	}
}

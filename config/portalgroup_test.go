package config

import (
	"reflect"
	"testing"
)

// pgConfig is a config with two listen addresses (lines 1-2) and a target
// whose portal group tables start at line 9.
const pgConfig = `[server]
listen = ["127.0.0.1:3260", "127.0.0.2:3260"]
[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "1MiB"
`

func TestParsePortalGroups(t *testing.T) {
	text := pgConfig + `  [[target.portal_group]]
  tag = 1
  addresses = ["127.0.0.1:3260"]
  [[target.portal_group]]
  tag = 7
  addresses = ["127.0.0.2:3260"]
  alua_state = "standby"
  [[target.portal_group]]
  tag = 9
  addresses = ["10.0.0.9:3260"]
  remote = true
[[target]]
name = "iqn.2026-11.io.blockport:b"
`
	c, err := Parse("test.toml", []byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	want := []PortalGroup{
		{Tag: 1, Addresses: []string{"127.0.0.1:3260"}, ALUAState: "active/optimized"},
		{Tag: 7, Addresses: []string{"127.0.0.2:3260"}, ALUAState: "standby"},
		{Tag: 9, Addresses: []string{"10.0.0.9:3260"}, ALUAState: "active/optimized", Remote: true},
	}
	if !reflect.DeepEqual(c.Targets[0].PortalGroups, want) {
		t.Fatalf("portal groups %+v, want %+v", c.Targets[0].PortalGroups, want)
	}
	if c.Targets[1].PortalGroups != nil {
		t.Fatalf("target without groups got %+v", c.Targets[1].PortalGroups)
	}
}

func TestPortalGroupProblems(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		wants []want
	}{
		{"missing keys", "  [[target.portal_group]]\n  alua_sate = \"standby\"\n", []want{
			{9, "target[0].portal_group[0].tag", "missing"},
			{9, "target[0].portal_group[0].addresses", "missing"},
			{10, "target[0].portal_group[0].alua_sate", "unknown key"},
		}},
		{"tag range and types", "  [[target.portal_group]]\n  tag = 0\n  addresses = \"127.0.0.1:3260\"\n  [[target.portal_group]]\n  tag = 65536\n  addresses = [\"127.0.0.2:3260\"]\n", []want{
			{10, "target[0].portal_group[0].tag", "between 1 and 65535, not 0"},
			{11, "target[0].portal_group[0].addresses", "must be an array of strings"},
			{13, "target[0].portal_group[1].tag", "between 1 and 65535, not 65536"},
		}},
		{"duplicate tag, shared and unknown address, bad state", "  [[target.portal_group]]\n  tag = 3\n  addresses = [\"127.0.0.1:3260\"]\n  [[target.portal_group]]\n  tag = 3\n  addresses = [\"127.0.0.1:3260\", \"10.0.0.1:3260\"]\n  alua_state = \"offline\"\n", []want{
			{13, "target[0].portal_group[1].tag", "tag 3 is already used by the portal group at line 10"},
			{14, "target[0].portal_group[1].addresses[0]", `"127.0.0.1:3260" is already in the portal group at line 11`},
			{14, "target[0].portal_group[1].addresses[1]", `"10.0.0.1:3260" is not a [server] listen address`},
			{15, "target[0].portal_group[1].alua_state", `"offline" is not an ALUA state`},
		}},
		{"empty address list", "  [[target.portal_group]]\n  tag = 2\n  addresses = []\n", []want{
			{11, "target[0].portal_group[0].addresses", "at least one"},
		}},
		{"remote groups", "  [[target.portal_group]]\n  tag = 1\n  addresses = [\"127.0.0.1:3260\"]\n" +
			"  [[target.portal_group]]\n  tag = 2\n  remote = true\n  addresses = [\"127.0.0.2:3260\", \"gw-b\", \"0.0.0.0:3260\", \"gw-b.example:3260\", \"[fd00::2]:3260\"]\n", []want{
			{15, "target[0].portal_group[1].addresses[0]", "is a [server] listen address, so the group is not remote"},
			{15, "target[0].portal_group[1].addresses[1]", `"gw-b" is not a host:port portal address`},
			{15, "target[0].portal_group[1].addresses[2]", "wildcard"},
		}},
		{"only remote groups", "  [[target.portal_group]]\n  tag = 2\n  remote = true\n  addresses = [\"10.0.0.2:3260\"]\n", []want{
			{9, "target[0].portal_group", "every portal group is remote"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problemsOf(t, pgConfig+tc.text, ""), tc.wants)
		})
	}
}

// TestPortalGroupsAfterListenOverride: serve --listen replaces [server]
// listen and revalidates; groups that name the old addresses are refused.
func TestPortalGroupsAfterListenOverride(t *testing.T) {
	c, err := Parse("test.toml", []byte(pgConfig+"  [[target.portal_group]]\n  tag = 2\n  addresses = [\"127.0.0.2:3260\"]\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	c.Server.Listen = []string{"127.0.0.1:3999"}
	if err := c.Validate(); err == nil {
		t.Fatal("Validate accepted a portal group address that is not listened on")
	}
}

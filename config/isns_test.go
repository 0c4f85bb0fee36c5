package config

import (
	"reflect"
	"testing"
	"time"
)

// isnsBase is a valid config of four lines; [isns] tables start at line 5.
const isnsBase = `[[target]]
name = "iqn.2026-11.io.blockport:a"
allow_any_initiator = true

`

func TestParseISNS(t *testing.T) {
	tests := []struct {
		name string
		text string
		want *ISNS
	}{
		{"absent: off", "", nil},
		{"defaults", "[isns]\nserver = \"isns.example.com\"\n",
			&ISNS{Server: "isns.example.com:3205", RegistrationPeriod: 15 * time.Minute}},
		{"everything", "[isns]\nserver = \"10.0.0.5:3300\"\nentity = \"san1.example.com\"\nregistration_period = \"2m\"\ndiscovery_domains = true\n",
			&ISNS{Server: "10.0.0.5:3300", Entity: "san1.example.com", RegistrationPeriod: 2 * time.Minute, DiscoveryDomains: true}},
		{"period in seconds", "[isns]\nserver = \"127.0.0.1:3205\"\nregistration_period = 30\n",
			&ISNS{Server: "127.0.0.1:3205", RegistrationPeriod: 30 * time.Second}},
		{"IPv4 without port", "[isns]\nserver = \"10.0.0.5\"\n",
			&ISNS{Server: "10.0.0.5:3205", RegistrationPeriod: 15 * time.Minute}},
		{"bracketed IPv6 without port", "[isns]\nserver = \"[fd00::5]\"\n",
			&ISNS{Server: "[fd00::5]:3205", RegistrationPeriod: 15 * time.Minute}},
		{"bare IPv6", "[isns]\nserver = \"fd00::5\"\n",
			&ISNS{Server: "[fd00::5]:3205", RegistrationPeriod: 15 * time.Minute}},
		{"IPv6 with port", "[isns]\nserver = \"[fd00::5]:3300\"\n",
			&ISNS{Server: "[fd00::5]:3300", RegistrationPeriod: 15 * time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("test.toml", []byte(isnsBase+tc.text), "")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.ISNS, tc.want) {
				t.Fatalf("ISNS = %+v, want %+v", c.ISNS, tc.want)
			}
		})
	}
}

func TestISNSProblems(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		wants []want
	}{
		{"missing server and unknown key", "[isns]\nsever = \"x\"\n", []want{
			{5, "isns.server", "missing"},
			{6, "isns.sever", "unknown key; valid keys in [isns]: server, entity, registration_period, discovery_domains"},
		}},
		{"bad types", "[isns]\nserver = 3205\nentity = 1\ndiscovery_domains = \"yes\"\n", []want{
			{6, "isns.server", "must be a string"},
			{7, "isns.entity", "must be a string"},
			{8, "isns.discovery_domains", "must be true or false"},
		}},
		{"bad server", "[isns]\nserver = \"isns..example\"\n", []want{
			{6, "isns.server", "neither an IP address nor a host name"},
		}},
		{"empty server", "[isns]\nserver = \"\"\n", []want{
			{6, "isns.server", "must not be empty"},
		}},
		{"no host", "[isns]\nserver = \":3205\"\n", []want{
			{6, "isns.server", "names no host"},
		}},
		{"wildcard", "[isns]\nserver = \"0.0.0.0:3205\"\n", []want{
			{6, "isns.server", "wildcard"},
		}},
		{"bad port", "[isns]\nserver = \"isns:99999\"\n", []want{
			{6, "isns.server", "not a number from 1 to 65535"},
		}},
		{"period too short", "[isns]\nserver = \"isns\"\nregistration_period = \"1s\"\n", []want{
			{7, "isns.registration_period", "between 10s and 24h0m0s"},
		}},
		{"period not a duration", "[isns]\nserver = \"isns\"\nregistration_period = \"soon\"\n", []want{
			{7, "isns.registration_period", "not a duration"},
		}},
		{"period with fractions", "[isns]\nserver = \"isns\"\nregistration_period = \"10.5s\"\n", []want{
			{7, "isns.registration_period", "whole number of seconds"},
		}},
		{"entity with control characters", "[isns]\nserver = \"isns\"\nentity = \"a\\tb\"\n", []want{
			{7, "isns.entity", "printable"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problemsOf(t, isnsBase+tc.text, ""), tc.wants)
		})
	}
}

func TestISNSNotATable(t *testing.T) {
	checkProblems(t, problemsOf(t, "isns = \"isns.example.com\"\n"+isnsBase, ""), []want{{1, "isns", "must be a table"}})
}

func TestISNSEntityLength(t *testing.T) {
	long := make([]byte, MaxISNSEntity+1)
	for i := range long {
		long[i] = 'e'
	}
	text := isnsBase + "[isns]\nserver = \"isns\"\nentity = \"" + string(long) + "\"\n"
	checkProblems(t, problemsOf(t, text, ""), []want{{7, "isns.entity", "the limit is 255"}})
	text = isnsBase + "[isns]\nserver = \"isns\"\nentity = \"" + string(long[1:]) + "\"\n"
	if _, err := Parse("test.toml", []byte(text), ""); err != nil {
		t.Fatalf("entity of %d bytes: %v", MaxISNSEntity, err)
	}
}

// A Config built in code is checked by Validate with the same rules.
func TestValidateISNS(t *testing.T) {
	c := Default()
	c.ISNS = &ISNS{Server: "isns.example.com:3205", RegistrationPeriod: time.Minute}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.ISNS.RegistrationPeriod = 0
	if err := c.Validate(); err == nil {
		t.Fatal("a zero registration period passed Validate")
	}
}

package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const aclTarget = `[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "1MiB"
  [[target.lun]]
  lun = 1
  backstore = "memory"
  size = "1MiB"
`

func TestParseAccess(t *testing.T) {
	dir := t.TempDir()
	secretPath := filepath.Join(dir, "node1.secret")
	if err := os.WriteFile(secretPath, []byte("file-secret-0001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := `[discovery]
chap = { user = "disc", secret = "discovery-secret" }
chap_algorithms = ["sha-256", "MD5"]
[limits]
max_sessions_per_target = 8
queue_depth = 32
max_connections_per_source = 40
max_burst_length = 131072
first_burst_length = 8192
login_timeout = "5s"
idle_timeout = 30
[[target]]
name = "iqn.2026-11.io.blockport:a"
chap = { user = "all", secret = "target-wide-sec" }
` + aclTarget[strings.Index(aclTarget, "  [[target.lun]]"):] + `
  [[target.acl]]
  initiator = "iqn.1991-05.com.microsoft:node1"
  luns = [0, { lun = 1, as = 5, read_only = true }]
  chap = { user = "node1", secret_file = "node1.secret" }
  mutual_chap = { user = "san", secret = "target-secret-01" }
  portals = ["10.0.0.0/24", "192.168.1.7", "::ffff:10.1.1.1"]
  [[target.acl]]
  initiator = "iqn.1991-05.com.microsoft:node2"
`
	c, err := Parse("test.toml", []byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	wantDisc := Discovery{CHAP: &CHAP{User: "disc", Secret: "discovery-secret"}, CHAPAlgorithms: []string{"sha-256", "MD5"}}
	if !reflect.DeepEqual(c.Discovery, wantDisc) {
		t.Errorf("discovery %+v", c.Discovery)
	}
	wantLim := DefaultLimits()
	wantLim.MaxSessionsPerTarget, wantLim.QueueDepth, wantLim.MaxBurstLength, wantLim.FirstBurstLength = 8, 32, 131072, 8192
	wantLim.LoginTimeout, wantLim.IdleTimeout = 5*time.Second, 30*time.Second
	wantLim.MaxConnectionsPerSource = 40
	if c.Limits != wantLim {
		t.Errorf("limits %+v, want %+v", c.Limits, wantLim)
	}
	tg := c.Targets[0]
	wantACLs := []ACL{{
		Initiator:  "iqn.1991-05.com.microsoft:node1",
		LUNs:       []ACLLUN{{LUN: 0, As: 0}, {LUN: 1, As: 5, ReadOnly: true}},
		CHAP:       &CHAP{User: "node1", Secret: "file-secret-0001", SecretFile: secretPath},
		MutualCHAP: &CHAP{User: "san", Secret: "target-secret-01"},
		Portals: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("192.168.1.7/32"),
			netip.MustParsePrefix("10.1.1.1/32")},
	}, {Initiator: "iqn.1991-05.com.microsoft:node2"}}
	if !reflect.DeepEqual(tg.ACLs, wantACLs) {
		t.Errorf("acls\n%+v\nwant\n%+v", tg.ACLs, wantACLs)
	}
	if tg.CHAP == nil || tg.CHAP.Secret != "target-wide-sec" {
		t.Errorf("target chap %+v", tg.CHAP)
	}
}

func TestAccessProblems(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.secret")
	os.WriteFile(open, []byte("readable-by-all-1"), 0o644)
	os.Chmod(open, 0o644)
	short := filepath.Join(dir, "short.secret")
	os.WriteFile(short, []byte("tiny\n"), 0o600)
	const secretText = "SECRET-never-shown"
	// tgt is a target with extra target-level keys (from line 3) and two
	// LUNs; acl tables appended to it start at line 12 + extra lines.
	tgt := func(extra string) string {
		return "[[target]]\nname = \"iqn.2026-11.io.blockport:a\"\n" + extra + aclTarget[strings.Index(aclTarget, "  [[target.lun]]"):]
	}
	acl := tgt("")
	tests := []struct {
		name  string
		text  string
		wants []want
	}{
		{"unknown keys", acl + "  [[target.acl]]\n  initiator = \"iqn.2026-11.x:y\"\n  lunz = [0]\n  chap = { user = \"u\", secret = \"0123456789abc\", sekret = 1 }\n",
			[]want{{13, "target[0].acl[0].lunz", "unknown key"}, {14, "target[0].acl[0].chap.sekret", "unknown key"}}},
		{"bad initiator and luns", acl + "  [[target.acl]]\n  initiator = \"node1\"\n  luns = [0, 7, -1, \"x\", { lun = 1, as = 0 }, { as = 3 }]\n",
			[]want{
				{12, "target[0].acl[0].initiator", "iqn."},
				{13, "target[0].acl[0].luns[2]", "between 0 and"},
				{13, "target[0].acl[0].luns[3]", "LUN number or a"},
				{13, "target[0].acl[0].luns[5].lun", "missing"},
			}},
		{"acl luns", acl + "  [[target.acl]]\n  initiator = \"iqn.2026-11.x:y\"\n  luns = [0, 7, { lun = 1, as = 0 }]\n",
			[]want{{13, "target[0].acl[0].luns[1]", "no LUN 7"}, {13, "target[0].acl[0].luns[2]", "already shown by luns[0]"}}},
		{"duplicate initiator", acl + "  [[target.acl]]\n  initiator = \"iqn.2026-11.x:y\"\n  [[target.acl]]\n  initiator = \"iqn.2026-11.x:y\"\n",
			[]want{{14, "target[0].acl[1].initiator", "already has an ACL entry at line 12"}}},
		{"portals", acl + "  [[target.acl]]\n  initiator = \"iqn.2026-11.x:y\"\n  portals = [\"10.0.0.1/24\", \"nowhere\", \"10.0.0.0/33\"]\n",
			[]want{{13, "target[0].acl[0].portals[0]", "host bits"}, {13, "target[0].acl[0].portals[1]", "neither"}, {13, "target[0].acl[0].portals[2]", "not a network"}}},
		{"secrets", tgt("chap = { user = \"u\", secret = \"short\" }\nmutual_chap = { user = \"t\", secret = \"short\" }\n"),
			[]want{{3, "target[0].chap.secret", "5 bytes; it must be 12 to 255"}, {4, "target[0].mutual_chap.secret", "5 bytes"}, {4, "target[0].mutual_chap", "same secret"}}},
		{"secret missing and both", tgt("chap = { user = \"u\" }\nmutual_chap = { user = \"t\", secret = \"" + secretText + "\", secret_file = \"x\" }\n"),
			[]want{{3, "target[0].chap.secret", "missing"}, {4, "target[0].mutual_chap.secret_file", "not both"}}},
		{"secret files", "[discovery]\nchap = { user = \"d\", secret_file = \"open.secret\" }\nmutual_chap = { user = \"m\", secret_file = \"short.secret\" }\n",
			[]want{{2, "discovery.chap.secret_file", "accessible by group or others"}, {3, "discovery.mutual_chap.secret_file", "4 bytes"}}},
		{"mutual without chap", tgt("mutual_chap = { user = \"t\", secret = \"" + secretText + "\" }\n"),
			[]want{{3, "target[0].mutual_chap", "needs chap"}}},
		{"acl mutual without chap", acl + "  [[target.acl]]\n  initiator = \"iqn.2026-11.x:y\"\n  mutual_chap = { user = \"t\", secret = \"" + secretText + "\" }\n",
			[]want{{13, "target[0].acl[0].mutual_chap", "needs chap"}}},
		{"user", tgt("chap = { user = \"\", secret = \"" + secretText + "\" }\n"),
			[]want{{3, "target[0].chap.user", "must not be empty"}}},
		{"algorithms", "[discovery]\nchap_algorithms = [\"MD4\"]\n" + tgt("chap_algorithms = [\"SHA-512\"]\n"),
			[]want{{2, "discovery.chap_algorithms[0]", "unknown CHAP algorithm"}, {5, "target[0].chap_algorithms[0]", "unknown CHAP algorithm"}}},
		{"limits", "[limits]\nqueue_depth = 0\nmax_burst_length = 4096\nfirst_burst_length = 8192\nlogin_timeout = \"soon\"\nidle_timeout = \"1ms\"\nmax_connections = \"many\"\nnop_timeout = -3\nwho = 1\n",
			[]want{{2, "limits.queue_depth", "between 1 and 65535"}, {4, "limits.first_burst_length", "larger than max_burst_length"},
				{5, "limits.login_timeout", "not a duration"}, {6, "limits.idle_timeout", "between 1s and 1h0m0s"},
				{7, "limits.max_connections", "must be an integer"}, {8, "limits.nop_timeout", "between"},
				{9, "limits.who", "unknown key"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problemsOf(t, tt.text, dir)
			checkProblems(t, got, tt.wants)
			for _, p := range got {
				if strings.Contains(p.String(), secretText) || strings.Contains(p.String(), "short\"") {
					t.Errorf("a secret shows in %q", p)
				}
			}
		})
	}
}

func TestSecretRedacted(t *testing.T) {
	c := CHAP{User: "u", Secret: "hunter2-hunter2"}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v %#v %s %v", c, c, c.Secret, &c)} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("secret in %q", s)
		}
	}
	if string(c.Secret.Reveal()) != "hunter2-hunter2" {
		t.Fatal("Reveal")
	}
	// Nor in JSON, nor in slog's text and JSON handlers.
	js, err := json.Marshal(c)
	if err != nil || strings.Contains(string(js), "hunter2") {
		t.Fatalf("secret in JSON %s (%v)", js, err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "chap", c, "secret", c.Secret)
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "chap", c, "secret", c.Secret)
	if strings.Contains(b.String(), "hunter2") {
		t.Fatalf("secret in a log line: %s", b.String())
	}
}

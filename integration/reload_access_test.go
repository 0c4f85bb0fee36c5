package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blockport/blockport/internal/iscsitest"
)

// A reload changes who may log in and what they see while the server runs:
// discovery CHAP turned on applies to the next discovery login; an
// initiator removed from the ACLs loses its session while another keeps
// its own; only the initiator whose LUN set changed hears REPORTED LUNS
// DATA HAS CHANGED.
func TestReloadChangesAccess(t *testing.T) {
	ls := Tool(t, "iscsi-ls")
	const nodeA, nodeB = "iqn.2026-11.io.blockport:reload-a", "iqn.2026-11.io.blockport:reload-b"
	cfg := func(discovery string, aclB string) string {
		return fmt.Sprintf(`[server]
listen = ["127.0.0.1:3260"]
state_dir = "{{DIR}}/state"
%s
[[target]]
name = %q
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "8MiB"
  [[target.lun]]
  lun = 1
  backstore = "memory"
  size = "8MiB"

  [[target.acl]]
  initiator = %q
  luns = [0]
%s`, discovery, aclIQN, nodeA, aclB)
	}
	aclB := fmt.Sprintf("\n  [[target.acl]]\n  initiator = %q\n  luns = [0]\n", nodeB)
	s := StartServer(t, cfg("", aclB))
	socket := filepath.Join(s.Dir, "state", "admin.sock")
	reload := func(text string) string {
		t.Helper()
		if err := os.WriteFile(s.ConfigPath, []byte(strings.ReplaceAll(text, "{{DIR}}", s.Dir)), 0o644); err != nil {
			t.Fatal(err)
		}
		return MustRun(t, DefaultToolTimeout, Binary(t), "reload", "--socket", socket)
	}
	dial := func(name string, isid byte) *iscsitest.Client {
		c, err := iscsitest.Dial(s.Addr, name, aclIQN, [6]byte{0x80, 0, 0, 0, 0, isid})
		if err != nil {
			t.Fatalf("%s login: %v", name, err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.ClearUA(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(nodeA, 1), dial(nodeB, 2)
	tur := []byte{0, 0, 0, 0, 0, 0}

	if res := Run(t, accessToolTime, ls, "-i", nodeA, s.Portal()); res.Err != nil || !strings.Contains(res.Output, aclIQN) {
		t.Fatalf("discovery without CHAP: %v\n%s", res.Err, res.Output)
	}

	// A sees LUN 1 too; B is no longer allowed; discovery needs CHAP.
	const discoverySecret = "discovery-secret-89"
	disc := fmt.Sprintf("\n[discovery]\nchap = { user = \"disc\", secret = %q }\n", discoverySecret)
	out := reload(strings.Replace(cfg(disc, ""), "luns = [0]", "luns = [0, 1]", 1))
	for _, want := range []string{"discovery authentication changed", "access rules changed (closed 1 sessions"} {
		if !strings.Contains(out, want) {
			t.Errorf("reload output lacks %q:\n%s", want, out)
		}
	}
	r, err := a.Command(tur, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key, asc, ascq := r.SenseKey(); r.Status != 2 || key != 6 || asc != 0x3f || ascq != 0x0e {
		t.Errorf("A after its LUN set grew: status %#x sense %x/%x/%x, want REPORTED LUNS DATA HAS CHANGED", r.Status, key, asc, ascq)
	}
	if _, err := b.Command(tur, 0, nil); err == nil {
		t.Error("B's session survived the removal of its ACL entry")
	}
	if res := Run(t, accessToolTime, ls, "-i", nodeA, s.Portal()); res.Err == nil {
		t.Errorf("discovery without CHAP after it was required:\n%s", res.Output)
	}
	url := fmt.Sprintf("iscsi://disc%%%s@%s", discoverySecret, s.Addr)
	if res := Run(t, accessToolTime, ls, "-i", nodeA, url); res.Err != nil || !strings.Contains(res.Output, aclIQN) {
		t.Errorf("discovery with the new CHAP secret: %v\n%s", res.Err, res.Output)
	}
	// A reload that changes nothing A sees leaves it undisturbed.
	reload(strings.Replace(cfg(disc, aclB), "luns = [0]", "luns = [0, 1]", 1))
	if r, err := a.Command(tur, 0, nil); err != nil || r.Status != 0 {
		t.Errorf("A after an unrelated ACL change: %v status %#x sense % x", err, r.Status, r.Sense)
	}
}

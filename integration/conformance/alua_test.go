package conformance

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/blockport/blockport/integration"
)

// TestALUAFamilies runs iscsi-test-cu's MultipathIO family through two
// portals in two portal groups (active/optimized and active/non-optimized:
// both carry I/O). None may fail or skip. (libiscsi's ReportTargetPortGroups
// family is newer than Debian's iscsi-test-cu; target/scsi/alua_test.go
// covers what it checks.)
func TestALUAFamilies(t *testing.T) {
	tool := integration.Tool(t, "iscsi-test-cu")
	stdbuf, _ := exec.LookPath("stdbuf")
	const iqn = "iqn.2026-11.io.blockport:alua-conformance"
	for _, family := range []string{"MultipathIO"} {
		t.Run(family, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			addrs := integration.StartPortals(t, 2, func(addrs []string) string {
				return fmt.Sprintf(`[server]
listen = [%q, %q]
state_dir = "{{DIR}}/state"
[[target]]
name = %q
allow_any_initiator = true
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "64MiB"
  [[target.portal_group]]
  tag = 1
  addresses = [%q]
  [[target.portal_group]]
  tag = 2
  addresses = [%q]
  alua_state = "active/non-optimized"
`, addrs[0], addrs[1], iqn, addrs[0], addrs[1])
			})
			url := func(a string) string { return fmt.Sprintf("iscsi://%s/%s/0", a, iqn) }
			r := &Runner{
				Tool: tool, Stdbuf: stdbuf, URL: url(addrs[0]),
				Initiator1: "iqn.2026-11.io.blockport:alua-1",
				Initiator2: "iqn.2026-11.io.blockport:alua-2",
				Family:     "ALL",
				Suites:     []string{"ALL." + family},
				ExtraArgs:  []string{url(addrs[1])}, // the second path
				PerTest:    perTestHangLimit,
				WorkDir:    integration.TempDir(t),
				Logf:       t.Logf,
			}
			rep, err := r.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Results) == 0 {
				t.Fatal("no test ran")
			}
			for _, res := range rep.Results {
				if res.Outcome != Pass {
					t.Errorf("%s: %s %s", res.Name, res.Outcome, res.Detail)
				}
			}
		})
	}
}

package conformance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeTool writes a stand-in for iscsi-test-cu that lists tests A, B and C
// of suite S and runs them, doing onB (shell) when it reaches B on its first
// run (-t ALL); a restart gets a file of test names and runs them cleanly.
// It exercises the runner's process handling: hangs, crashes, restarts.
func fakeTool(t *testing.T, onB string) string {
	t.Helper()
	script := `#!/bin/bash
if [ "$1" = "--list" ]; then printf 'ALL\nALL.S\nALL.S.A\nALL.S.B\nALL.S.C\nSCSI.S.A\n'; exit 0; fi
while [ $# -gt 0 ]; do [ "$1" = -t ] && sel=$2; shift; done
first=1; tests="A B C"
if [ -f "$sel" ]; then first=0; tests=$(sed 's/^ALL\.S\.//' "$sel"); fi
printf '\n     CUnit - A unit testing framework for C - Version 2.1-3\n\nSuite: S'
n=0
for t in $tests; do
  printf '\n  Test: %s ...' "$t"
  if [ "$t" = B ] && [ $first = 1 ]; then
` + onB + `
  fi
  printf 'passed'
  n=$((n+1))
done
printf '\n\nRun Summary:    Type  Total    Ran Passed Failed Inactive\n               tests %6d %6d %6d      0        0\n' $n $n $n
exit 0
`
	path := filepath.Join(t.TempDir(), "iscsi-test-cu")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func newTestRunner(t *testing.T, tool string) *Runner {
	return &Runner{
		Tool:       tool,
		URL:        "iscsi://127.0.0.1:1/iqn.2026-11.io.blockport:none/0",
		Initiator1: "iqn.a",
		Initiator2: "iqn.b",
		Family:     "ALL",
		PerTest:    time.Second,
		WorkDir:    t.TempDir(),
		Logf:       t.Logf,
	}
}

func outcomes(results []Result) map[string]Outcome {
	m := map[string]Outcome{}
	for _, r := range results {
		m[r.Name] = r.Outcome
	}
	return m
}

func TestRunnerRecoversFromHangsAndCrashes(t *testing.T) {
	tests := []struct {
		name     string
		onB      string
		incident string
	}{
		{"clean", "true", ""},
		{"hang", "exec sleep 60", "hung (no output for"},
		{"crash", "kill -SEGV $$", "crashed (signal 11"},
		{"exit mid-test", "exit 3", "exited with status 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRunner(t, fakeTool(t, tt.onB))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			rep, err := r.Run(ctx)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("Run took %v; the hang detector should act within ~2s", d)
			}
			want := map[string]Outcome{"ALL.S.A": Pass, "ALL.S.B": Pass, "ALL.S.C": Pass}
			wantRuns := 1
			if tt.incident != "" {
				want["ALL.S.B"] = Fail
				wantRuns = 2
			}
			if got := outcomes(rep.Results); !reflect.DeepEqual(got, want) {
				t.Errorf("outcomes = %v, want %v", got, want)
			}
			if rep.Runs != wantRuns {
				t.Errorf("Runs = %d, want %d", rep.Runs, wantRuns)
			}
			if tt.incident == "" {
				if len(rep.Incidents) != 0 {
					t.Errorf("incidents = %q, want none", rep.Incidents)
				}
				return
			}
			if len(rep.Incidents) != 1 || !strings.HasPrefix(rep.Incidents[0], "ALL.S.B: ") || !strings.Contains(rep.Incidents[0], tt.incident) {
				t.Errorf("incidents = %q, want one for ALL.S.B containing %q", rep.Incidents, tt.incident)
			}
			for _, res := range rep.Results {
				if res.Name == "ALL.S.B" && !strings.Contains(res.Detail, tt.incident) {
					t.Errorf("B's detail = %q, want it to say %q", res.Detail, tt.incident)
				}
			}
		})
	}
}

func TestRunnerSetupFailure(t *testing.T) {
	script := "#!/bin/sh\nif [ \"$1\" = --list ]; then echo ALL.S.A; exit 0; fi\necho 'Failed to connect to SCSI device 0'\nexit 10\n"
	path := filepath.Join(t.TempDir(), "iscsi-test-cu")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	rep, err := newTestRunner(t, path).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "before running any test") || !strings.Contains(err.Error(), "Failed to connect") {
		t.Fatalf("Run error = %v, want a setup failure quoting the output", err)
	}
	if rep == nil || rep.Runs != 1 {
		t.Fatalf("report = %+v, want one run", rep)
	}
	if got := outcomes(rep.Results); got["ALL.S.A"] != Missing {
		t.Errorf("outcomes = %v, want A missing", got)
	}
}

func TestRunnerTargetDied(t *testing.T) {
	r := newTestRunner(t, fakeTool(t, "kill -SEGV $$"))
	r.Alive = func() error { return errors.New("blockport exited: signal: killed") }
	rep, err := r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the target died during ALL.S.B") {
		t.Fatalf("Run error = %v, want the target died during ALL.S.B", err)
	}
	if got := outcomes(rep.Results); got["ALL.S.A"] != Pass || got["ALL.S.C"] != Missing {
		t.Errorf("outcomes = %v, want A pass and C missing", got)
	}
}

func TestRunnerOverallTimeout(t *testing.T) {
	r := newTestRunner(t, fakeTool(t, "exec sleep 60"))
	r.PerTest = time.Minute // the overall deadline comes first
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "overall timeout during ALL.S.B") {
		t.Fatalf("Run error = %v, want an overall timeout during ALL.S.B", err)
	}
}

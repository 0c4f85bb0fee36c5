package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/blockport/blockport/integration"
)

func TestMain(m *testing.M) { os.Exit(integration.Main(m)) }

const (
	conformanceIQN   = "iqn.2026-11.io.blockport:conformance"
	expectedFile     = "expected.txt"
	overallTimeout   = 15 * time.Minute
	perTestHangLimit = 3 * time.Minute
)

// TestConformance runs libiscsi's iscsi-test-cu (family ALL, destructive
// tests allowed) against a file LUN and compares each test's outcome with
// expected.txt. UPDATE_EXPECTED=1 rewrites the file from the run.
func TestConformance(t *testing.T) {
	tool := integration.Tool(t, "iscsi-test-cu")
	stdbuf, _ := exec.LookPath("stdbuf")
	// 128 MiB is plenty for libiscsi's tests and keeps the whole-LUN ones
	// (WRITE SAME over every block) short. No write cache and O_DIRECT:
	// what is acknowledged is on the medium, as the FUA tests assume.
	s := integration.StartServer(t, integration.Config(conformanceIQN, integration.LUN{
		LUN: 0, Backstore: "file", Path: "lun0.img", Size: "128MiB", BlockSize: 512, DirectIO: true,
	}))

	logPath := filepath.Join(integration.TempDir(t), "iscsi-test-cu.log")
	if root, err := integration.RepoRoot(); err == nil {
		// Keep the console log where it outlives the test directory.
		if dir := filepath.Join(root, "integration", ".tmp"); os.MkdirAll(dir, 0o755) == nil {
			logPath = filepath.Join(dir, "conformance-last.log")
		}
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()

	r := &Runner{
		Tool:       tool,
		Stdbuf:     stdbuf,
		URL:        s.URL(conformanceIQN, 0),
		Initiator1: "iqn.2026-11.io.blockport:conformance-initiator-1",
		Initiator2: "iqn.2026-11.io.blockport:conformance-initiator-2",
		Family:     "ALL",
		PerTest:    perTestHangLimit,
		WorkDir:    integration.TempDir(t),
		Alive: func() error {
			if !s.Running() {
				return fmt.Errorf("blockport exited: %v", s.ExitError())
			}
			return nil
		},
		Output: logFile,
		Logf:   t.Logf,
	}
	ctx, cancel := context.WithTimeout(context.Background(), overallTimeout)
	defer cancel()
	start := time.Now()
	rep, runErr := r.Run(ctx)
	t.Logf("iscsi-test-cu console log: %s", logPath)
	if rep == nil {
		t.Fatalf("conformance run: %v", runErr)
	}
	totals := Totals(rep.Results)
	t.Logf("conformance totals after %v in %d run(s): %d pass, %d skip, %d fail, %d missing",
		time.Since(start).Round(time.Second), rep.Runs, totals[Pass], totals[Skip], totals[Fail], totals[Missing])
	for _, inc := range rep.Incidents {
		t.Errorf("incident: %s", inc)
	}
	logSlowest(t, rep.Durations, 5)
	if runErr != nil {
		t.Errorf("conformance run: %v", runErr)
	}
	if !s.Running() {
		t.Fatalf("blockport died during the conformance run: %v", s.ExitError())
	}
	// CUnit's own count must agree with ours when the run was not restarted,
	// or the parser has drifted from iscsi-test-cu's output.
	if rep.Runs == 1 && len(rep.Summaries) == 1 {
		sum := rep.Summaries[0]
		if sum.Ran != totals[Pass]+totals[Skip]+totals[Fail] || sum.Failed != totals[Fail] {
			t.Errorf("parsed %d pass+skip, %d fail, but CUnit's summary says %d ran, %d failed", totals[Pass]+totals[Skip], totals[Fail], sum.Ran, sum.Failed)
		}
	}
	if runErr != nil {
		// Partial results are not compared or saved.
		return
	}

	expPath := expectedFile
	data, err := os.ReadFile(expPath)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := ParseExpectations(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", expPath, err)
	}
	if os.Getenv("UPDATE_EXPECTED") == "1" {
		var b bytes.Buffer
		if _, err := exp.Updated(rep.Results).WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(expPath, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s from this run", expPath)
		return
	}

	worse, better, unknown := exp.Compare(rep.Results)
	if len(better) > 0 {
		t.Logf("%d tests did better than %s expects (UPDATE_EXPECTED=1 records it):\n  %s", len(better), expPath, joinChanges(better))
	}
	if len(unknown) > 0 {
		t.Logf("%d tests are not in %s (a newer libiscsi?):\n  %s", len(unknown), expPath, joinChanges(unknown))
	}
	if len(worse) > 0 {
		t.Errorf("%d tests did worse than %s expects:\n  %s", len(worse), expPath, joinChanges(worse))
	}
}

func joinChanges(changes []Change) string {
	s := make([]string, len(changes))
	for i, c := range changes {
		s[i] = c.String()
	}
	return strings.Join(s, "\n  ")
}

// logSlowest names the slowest tests, to see where a run's time goes.
func logSlowest(t *testing.T, durations map[string]time.Duration, n int) {
	type entry struct {
		name string
		d    time.Duration
	}
	var all []entry
	for name, d := range durations {
		all = append(all, entry{name, d})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].d > all[j].d })
	var lines []string
	for _, e := range all[:min(n, len(all))] {
		lines = append(lines, fmt.Sprintf("%s %v", e.name, e.d.Round(time.Millisecond)))
	}
	if len(lines) > 0 {
		t.Logf("slowest tests: %s", strings.Join(lines, ", "))
	}
}

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
	"sync"
	"testing"
	"time"

	"github.com/blockport/blockport/integration"
)

func TestMain(m *testing.M) { os.Exit(integration.Main(m)) }

// multipathSuite needs two paths to the LUN: it runs in a pass of its own.
const multipathSuite = "ALL.MultipathIO"

const (
	conformanceIQN   = "iqn.2026-11.io.blockport:conformance"
	overallTimeout   = 15 * time.Minute
	perTestHangLimit = 3 * time.Minute
)

// TestConformance runs libiscsi's iscsi-test-cu (family ALL, destructive
// tests and SANITIZE allowed) against one LUN of each kind of the matrix
// (MatrixKinds), each kind on a server of its own, as many at once as
// -parallel allows (iscsi-test-cu mostly waits: on sleeps in the SANITIZE
// and reset tests, and on round trips), and compares each test's outcome
// with that kind's expectations file. UPDATE_EXPECTED=1 rewrites the files
// from the run. At the end it lists the tests that passed on no LUN of the
// matrix.
func TestConformance(t *testing.T) {
	tool := integration.Tool(t, "iscsi-test-cu")
	stdbuf, _ := exec.LookPath("stdbuf")
	backstores := serverBackstores(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), overallTimeout)
	defer cancel()

	var mu sync.Mutex
	passedSomewhere := map[string]bool{} // guarded by mu
	var notPassed []string               // in list order, deduplicated later; guarded by mu
	detail := map[string]string{}        // guarded by mu
	// The group returns once every parallel kind has finished.
	t.Run("matrix", func(t *testing.T) {
		for _, kind := range MatrixKinds(backstores) {
			t.Run(kind.Name, func(t *testing.T) {
				t.Parallel()
				results := runKind(t, ctx, tool, stdbuf, kind)
				mu.Lock()
				defer mu.Unlock()
				for _, r := range results {
					if r.Outcome == Pass {
						passedSomewhere[r.Name] = true
					} else {
						notPassed = append(notPassed, r.Name)
						if detail[r.Name] == "" {
							detail[r.Name] = kind.Name + ": " + r.Outcome.String() + " " + r.Detail
						}
					}
				}
			})
		}
	})
	seen := map[string]bool{}
	var nowhere []string
	for _, n := range notPassed {
		if !passedSomewhere[n] && !seen[n] {
			seen[n] = true
			nowhere = append(nowhere, n+" ("+strings.TrimSpace(detail[n])+")")
		}
	}
	t.Logf("conformance matrix: %v; %d tests passed on no LUN:\n  %s",
		time.Since(start).Round(time.Second), len(nowhere), strings.Join(nowhere, "\n  "))
}

// serverBackstores asks the binary which backstore kinds it has.
func serverBackstores(t *testing.T) []string {
	out := integration.MustRun(t, time.Minute, integration.Binary(t), "version")
	_, list, ok := strings.Cut(out, "backstores: ")
	if !ok {
		t.Fatalf("blockport version does not list its backstores: %q", out)
	}
	return strings.Split(strings.Fields(list)[0], ",")
}

// runKind runs iscsi-test-cu against a LUN of one kind and compares the
// outcome with the kind's expectations; it returns the results.
func runKind(t *testing.T, ctx context.Context, tool, stdbuf string, kind LUNKind) []Result {
	lun := kind.LUN
	if kind.Setup != nil {
		skip, cleanup, err := kind.Setup(integration.TempDir(t), &lun)
		if err != nil {
			t.Fatalf("set up the %s LUN: %v", kind.Name, err)
		}
		if cleanup != nil {
			t.Cleanup(cleanup)
		}
		if skip != "" {
			t.Skipf("%s LUN left out of the matrix: %s", kind.Name, skip)
		}
	}
	cfg := integration.Config(conformanceIQN, lun)
	// Sanitize.Reset sleeps 60 s at a time without reading its socket while
	// it waits for the sanitize to end; with the default NOP-In timeout the
	// session would drop, and every new session starts with a unit
	// attention, so the test would never see GOOD.
	cfg += "\n[limits]\nnop_timeout = \"2m\"\n"
	if kind.Optional {
		// A kind whose backstore the config layer does not take yet is
		// left out, with the reason, rather than failed.
		dir := integration.TempDir(t)
		path := filepath.Join(dir, "validate.toml")
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(cfg, "{{DIR}}", dir)), 0o644); err != nil {
			t.Fatal(err)
		}
		if res := integration.Run(t, time.Minute, integration.Binary(t), "validate", "--config", path); res.ExitCode() != 0 {
			t.Skipf("%s LUN left out of the matrix: the config does not validate: %s", kind.Name, strings.TrimSpace(res.Output))
		}
	}
	// Two portals: the MultipathIO tests reach the LUN by both paths.
	s := integration.StartServerPortals(t, cfg, 2)

	logPath := filepath.Join(integration.TempDir(t), "iscsi-test-cu.log")
	if root, err := integration.RepoRoot(); err == nil {
		// Keep the console log where it outlives the test directory.
		if dir := filepath.Join(root, "integration", ".tmp"); os.MkdirAll(dir, 0o755) == nil {
			logPath = filepath.Join(dir, "conformance-"+kind.Name+"-last.log")
		}
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()

	// Two passes. The first runs the kind's tests through one portal:
	// through two, libiscsi takes the second path as the "second
	// initiator" of tests that clone one, and state those tests leave on
	// it (a SCSI-2 RESERVE that a closed clone would have released)
	// leaks into later tests. There MultipathIO finds one path and skips;
	// the second pass runs it again through both portals, and its
	// outcomes replace the first pass's.
	url2 := fmt.Sprintf("iscsi://%s/%s/0", s.MoreAddrs[0], conformanceIQN)
	type pass struct {
		suites, exclude []string
		extraURL        string
	}
	passes := []pass{{suites: kind.Suites, exclude: kind.Exclude}}
	if len(kind.Suites) == 0 {
		passes = append(passes, pass{suites: []string{multipathSuite}, extraURL: url2})
	}
	start := time.Now()
	var results []Result
	var runErr error
	for _, p := range passes {
		r := &Runner{
			Tool:       tool,
			Stdbuf:     stdbuf,
			URL:        s.URL(conformanceIQN, 0),
			Initiator1: "iqn.2026-11.io.blockport:conformance-initiator-1",
			Initiator2: "iqn.2026-11.io.blockport:conformance-initiator-2",
			Family:     "ALL",
			ExtraArgs:  []string{"--allow-sanitize"},
			Suites:     p.suites,
			Exclude:    p.exclude,
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
		if p.extraURL != "" {
			// getopt moves operands last: this is the second path.
			r.ExtraArgs = append(r.ExtraArgs, p.extraURL)
		}
		rep, err := r.Run(ctx)
		if rep == nil {
			t.Logf("iscsi-test-cu console log: %s", logPath)
			t.Fatalf("conformance run: %v", err)
		}
		results = mergeResults(results, rep.Results)
		for _, inc := range rep.Incidents {
			t.Errorf("incident: %s", inc)
		}
		logSlowest(t, rep.Durations, 5)
		// CUnit's own count must agree with ours when the run was not
		// restarted, or the parser has drifted from iscsi-test-cu's output.
		if totals := Totals(rep.Results); rep.Runs == 1 && len(rep.Summaries) == 1 {
			sum := rep.Summaries[0]
			if sum.Ran != totals[Pass]+totals[Skip]+totals[Fail] || sum.Failed != totals[Fail] {
				t.Errorf("parsed %d pass+skip, %d fail, but CUnit's summary says %d ran, %d failed", totals[Pass]+totals[Skip], totals[Fail], sum.Ran, sum.Failed)
			}
		}
		if err != nil {
			runErr = err
			t.Errorf("conformance run: %v", err)
			break
		}
	}
	t.Logf("iscsi-test-cu console log: %s", logPath)
	totals := Totals(results)
	t.Logf("%s LUN: %d pass, %d skip, %d fail, %d missing after %v",
		kind.Name, totals[Pass], totals[Skip], totals[Fail], totals[Missing], time.Since(start).Round(time.Second))
	if !s.Running() {
		t.Fatalf("blockport died during the conformance run: %v", s.ExitError())
	}
	if runErr != nil {
		// Partial results are not compared or saved.
		return results
	}
	compareExpected(t, kind.Expected, results)
	return results
}

// compareExpected checks results against an expectations file, or rewrites
// the file from them with UPDATE_EXPECTED=1. A missing file is created
// then; without it a missing file fails the test.
func compareExpected(t *testing.T, expPath string, results []Result) {
	data, err := os.ReadFile(expPath)
	if err != nil && !(os.IsNotExist(err) && os.Getenv("UPDATE_EXPECTED") == "1") {
		t.Fatal(err)
	}
	exp, err := ParseExpectations(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", expPath, err)
	}
	if os.Getenv("UPDATE_EXPECTED") == "1" {
		var b bytes.Buffer
		if _, err := exp.Updated(results).WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(expPath, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s from this run", expPath)
		return
	}

	worse, better, unknown := exp.Compare(results)
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

// mergeResults adds the results of a later pass to earlier ones: a test
// run again replaces its earlier outcome in place; new ones are appended.
func mergeResults(earlier, later []Result) []Result {
	at := make(map[string]int, len(earlier))
	for i, r := range earlier {
		at[r.Name] = i
	}
	for _, r := range later {
		if i, ok := at[r.Name]; ok {
			earlier[i] = r
			continue
		}
		at[r.Name] = len(earlier)
		earlier = append(earlier, r)
	}
	return earlier
}

package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/blockport/blockport/integration"
)

// Runner runs iscsi-test-cu against one LUN. A run that hangs (no output for
// PerTest) or crashes is charged to the test that was running, which is
// recorded as failed, and iscsi-test-cu is started again on the tests not
// yet reported, so one bad test does not hide the outcome of the others.
type Runner struct {
	Tool       string   // path of iscsi-test-cu
	Stdbuf     string   // path of stdbuf to unbuffer its output, or "" to run it directly
	URL        string   // iscsi://HOST:PORT/IQN/LUN
	Initiator1 string   // -i
	Initiator2 string   // -I, for the tests that need a second I_T nexus
	Family     string   // "ALL"
	ExtraArgs  []string // more iscsi-test-cu options, e.g. --allow-sanitize
	// Suites, if set, limits the run to the tests of these suites
	// ("ALL.ReadOnly"), or to these single tests ("ALL.Suite.Test"), e.g.
	// the ones that apply to a read-only LUN.
	Suites []string
	// Exclude drops the tests of these suites, or these single tests
	// ("ALL.Suite.Test"), e.g. a slow suite already covered on another LUN
	// kind whose code path does not differ here.
	Exclude []string
	PerTest time.Duration
	WorkDir string // where test-list files for restarts are written
	// Alive, if set, reports why the target is gone (nil while it runs).
	// It is asked after a hang or a crash, to tell them from a dead target.
	Alive func() error
	// Output, if set, receives a copy of the console output of every run.
	Output io.Writer
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
}

// Report is the outcome of a whole conformance run.
type Report struct {
	Results   []Result // one per test of the family, in list order
	Runs      int      // iscsi-test-cu invocations
	Incidents []string // hangs and crashes, in order
	Summaries []RunSummary
	// Durations holds how long each test took, by name (approximate:
	// between the start of its line and the start of the next test).
	Durations map[string]time.Duration
}

// maxRuns bounds restarts: each restart follows a hang or crash that is
// charged to one test, so this many means the target is in a bad state.
const maxRuns = 25

func (r *Runner) logf(format string, args ...any) {
	if r.Logf != nil {
		r.Logf(format, args...)
	}
}

// List returns the full names of the family's tests from `iscsi-test-cu -l`.
func (r *Runner) List(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := integration.CommandContext(ctx, r.Tool, "--list")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", r.Tool, err)
	}
	names := ParseList(r.Family, out)
	if len(r.Suites) > 0 {
		var kept []string
		for _, n := range names {
			for _, s := range r.Suites {
				if inSuite(n, s) {
					kept = append(kept, n)
					break
				}
			}
		}
		names = kept
	}
	if len(r.Exclude) > 0 {
		var kept []string
	next:
		for _, n := range names {
			for _, s := range r.Exclude {
				if inSuite(n, s) {
					continue next
				}
			}
			kept = append(kept, n)
		}
		names = kept
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s --list shows no test in family %q", r.Tool, r.Family)
	}
	return names, nil
}

// inSuite reports whether the test named name belongs to suite, or is the
// test that suite names ("ALL.Suite.Test").
func inSuite(name, suite string) bool { return name == suite || strings.HasPrefix(name, suite+".") }

// Run runs every test of the family and returns one result per test. It
// returns an error, with the results so far, when iscsi-test-cu cannot run
// at all, when the target dies, or when ctx ends first.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	names, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{Durations: map[string]time.Duration{}}
	done := map[string]Result{}
	var extra []Result // reported tests that --list did not name
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[n] = true
	}
	finish := func() {
		for _, n := range names {
			res, ok := done[n]
			if !ok {
				res = Result{Name: n, Outcome: Missing}
			}
			rep.Results = append(rep.Results, res)
		}
		rep.Results = append(rep.Results, extra...)
	}
	defer finish()

	remaining := names
	for len(remaining) > 0 {
		if rep.Runs == maxRuns {
			return rep, fmt.Errorf("gave up after %d runs of iscsi-test-cu; incidents: %s", maxRuns, strings.Join(rep.Incidents, "; "))
		}
		selection := r.Family
		if rep.Runs > 0 || len(r.Suites) > 0 || len(r.Exclude) > 0 {
			// -t takes a file of test names, one a line.
			selection = filepath.Join(r.WorkDir, fmt.Sprintf("tests-%d.txt", rep.Runs+1))
			if err := os.WriteFile(selection, []byte(strings.Join(remaining, "\n")+"\n"), 0o644); err != nil {
				return rep, err
			}
		}
		rep.Runs++
		r.logf("iscsi-test-cu run %d: %d tests", rep.Runs, len(remaining))
		out, starts, end := r.runOnce(ctx, selection)
		console := ParseConsole(r.Family, out)

		completed := 0
		for i, res := range console.Results {
			if i+1 < len(starts) {
				rep.Durations[res.Name] = starts[i+1].Sub(starts[i])
			}
			if !known[res.Name] {
				extra = append(extra, res)
				continue
			}
			if _, dup := done[res.Name]; !dup {
				done[res.Name] = res
				completed++
			}
		}
		if console.Summary != nil {
			rep.Summaries = append(rep.Summaries, *console.Summary)
		}
		if end.clean() && console.Summary != nil {
			break
		}

		// The run ended early: find the test it was in.
		culprit := console.Running
		if culprit == "" || !known[culprit] {
			culprit = ""
			for _, n := range remaining {
				if _, ok := done[n]; !ok {
					culprit = n
					break
				}
			}
		}
		if ctx.Err() != nil {
			return rep, fmt.Errorf("overall timeout during %s (%d tests not run)", culprit, len(names)-len(done))
		}
		if r.Alive != nil {
			if err := r.Alive(); err != nil {
				return rep, fmt.Errorf("the target died during %s: %v", culprit, err)
			}
		}
		if console.Running == "" && completed == 0 {
			// It never got into a test: a login or setup failure that
			// a restart would only repeat.
			return rep, fmt.Errorf("iscsi-test-cu %s before running any test:\n%s", end, tail(out, 40))
		}
		incident := fmt.Sprintf("%s: iscsi-test-cu %s", culprit, end)
		rep.Incidents = append(rep.Incidents, incident)
		r.logf("%s; restarting with the tests not yet run", incident)
		done[culprit] = Result{Name: culprit, Outcome: Fail, Detail: "iscsi-test-cu " + end.String()}

		remaining = remaining[:0:0]
		for _, n := range names {
			if _, ok := done[n]; !ok {
				remaining = append(remaining, n)
			}
		}
	}
	return rep, nil
}

// runEnd says how one iscsi-test-cu process ended.
type runEnd struct {
	exitCode int            // -1 when signalled
	signal   syscall.Signal // when signalled and not by us
	hung     time.Duration  // >0: killed by us after this long without output
	err      error          // could not start
}

// clean is a normal exit: 0 when all passed, 1 when some failed.
func (e runEnd) clean() bool {
	return e.err == nil && e.hung == 0 && (e.exitCode == 0 || e.exitCode == 1)
}

func (e runEnd) String() string {
	switch {
	case e.err != nil:
		return "did not start: " + e.err.Error()
	case e.hung > 0:
		return fmt.Sprintf("hung (no output for %v; killed)", e.hung)
	case e.exitCode < 0:
		return fmt.Sprintf("crashed (signal %d, %v)", int(e.signal), e.signal)
	}
	return fmt.Sprintf("exited with status %d", e.exitCode)
}

// runOnce runs iscsi-test-cu once on a selection (-t) and returns its
// console output, when each test started, and how it ended.
func (r *Runner) runOnce(ctx context.Context, selection string) ([]byte, []time.Time, runEnd) {
	args := append([]string{"--dataloss"}, r.ExtraArgs...)
	args = append(args, "-i", r.Initiator1, "-I", r.Initiator2, "-t", selection, r.URL)
	name := r.Tool
	if r.Stdbuf != "" {
		// The console goes to a pipe, which stdio fully buffers: without
		// this a hang would be charged to a test that had finished.
		args = append([]string{"-o0", "-e0", r.Tool}, args...)
		name = r.Stdbuf
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := integration.CommandContext(runCtx, name, args...)
	out := &progressWriter{copy: r.Output, last: time.Now()}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, nil, runEnd{err: err}
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var end runEnd
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-waited:
			end.exitCode = cmd.ProcessState.ExitCode()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				end.signal = ws.Signal()
			}
			var exitErr *exec.ExitError
			if err != nil && !errors.As(err, &exitErr) && end.hung == 0 {
				end.err = err
			}
			data, starts := out.result()
			return data, starts, end
		case <-tick.C:
			if idle := out.idle(); r.PerTest > 0 && idle >= r.PerTest && end.hung == 0 {
				end.hung = idle.Round(time.Second)
				cancel() // kills the process group; Wait returns
			}
		}
	}
}

// progressWriter collects console output and notes when output last came
// and when each test started. exec writes to it from one goroutine; the
// watchdog reads it from another.
type progressWriter struct {
	copy io.Writer

	mu     sync.Mutex
	buf    bytes.Buffer // guarded by mu
	last   time.Time    // guarded by mu
	starts []time.Time  // guarded by mu; one per "  Test: " seen
}

func (w *progressWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	// Count test starts in the new bytes, including one split across
	// writes: look back over the previous bytes by the marker's length.
	const marker = "\n" + testPrefix
	from := max(w.buf.Len()-len(marker)+1, 0)
	before := bytes.Count(w.buf.Bytes()[from:], []byte(marker))
	w.buf.Write(p)
	after := bytes.Count(w.buf.Bytes()[from:], []byte(marker))
	for range after - before {
		w.starts = append(w.starts, now)
	}
	w.last = now
	if w.copy != nil {
		w.copy.Write(p) // a failing log copy must not stop the run
	}
	return len(p), nil
}

func (w *progressWriter) idle() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Since(w.last)
}

func (w *progressWriter) result() ([]byte, []time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes()), append([]time.Time(nil), w.starts...)
}

// tail returns the last n lines of out.
func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

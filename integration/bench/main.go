// Command bench measures Blockport against tgt and gotgt on loopback, and
// against the machine's limits (a plain loopback TCP exchange of the same
// message sizes, and the raw file), and writes a Markdown table and the raw
// results as JSON. It is `make bench`; it is not part of `make test`.
//
//	go run ./integration/bench [flags]
//
// BENCH_QUICK=1 (or -quick) runs one short round, to smoke-test the harness
// in a couple of minutes. Every process it starts (the three targets,
// qemu-img, iscsi-perf) runs in its own process group, dies with the
// harness, and is killed before it exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blockport/blockport/config"
)

type options struct {
	quick         bool
	rounds        int
	runSeconds    float64
	gotgtSeconds  float64 // every gotgt run stays below its ~5 s stall
	targets       []string
	kinds         []string
	sessions      []int
	out           string
	bin           string
	dir           string
	writeCache    bool
	busyPoll      time.Duration
	iscsiPerf     bool
	ceiling       bool
	gotgtBin      string
	keepResultDir bool
}

func main() {
	os.Exit(run())
}

func run() int {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Whatever happens, no target outlives the harness.
	defer stopAllDaemons()
	if err := bench(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	quickEnv := os.Getenv("BENCH_QUICK") == "1"
	fs.BoolVar(&o.quick, "quick", quickEnv, "one short round (also BENCH_QUICK=1)")
	fs.IntVar(&o.rounds, "rounds", 0, "rounds of A B C interleaved runs (default 3, quick 1)")
	fs.Float64Var(&o.runSeconds, "seconds", 0, "target length of one run (default 3, quick 1)")
	fs.Float64Var(&o.gotgtSeconds, "gotgt-seconds", 2, "length of one gotgt run, kept under its stall after ~5 s of a session")
	targets := fs.String("targets", "blockport,tgt,gotgt", "targets to run, comma-separated")
	kinds := fs.String("kinds", "memory,file", "LUN kinds, comma-separated")
	sessions := fs.String("sessions", "", "multi-session counts (default 1,4,16,64; quick 1,8,64; \"none\" skips)")
	fs.StringVar(&o.out, "out", "", "directory for the .md and .json results (default integration/bench/results)")
	fs.StringVar(&o.bin, "bin", "bin/blockport", "blockport binary (make bench builds it)")
	fs.StringVar(&o.dir, "dir", "", "scratch directory on a filesystem with O_DIRECT (default $TMPDIR, then /var/tmp)")
	fs.BoolVar(&o.writeCache, "write-cache", true, "file LUNs acknowledge writes from O_DIRECT without a per-write sync (tgt's default); false: write-through (Blockport write_cache=false, tgt bsoflags direct,sync)")
	fs.DurationVar(&o.busyPoll, "busy-poll", 0, "Blockport's server.busy_poll (e.g. 30us); 0: off, as by default")
	fs.BoolVar(&o.iscsiPerf, "iscsi-perf", true, "also measure the read workloads with libiscsi's iscsi-perf")
	fs.BoolVar(&o.ceiling, "ceiling", true, "measure the loopback TCP and raw file ceilings")
	fs.StringVar(&o.gotgtBin, "gotgt", "", "prebuilt gotgt binary (default: build "+gotgtVersion+" from the module proxy, cached)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.rounds == 0 {
		o.rounds = 3
		if o.quick {
			o.rounds = 1
		}
	}
	if o.runSeconds == 0 {
		o.runSeconds = 3
		if o.quick {
			o.runSeconds = 1
		}
	}
	if o.busyPoll < 0 || o.busyPoll > config.MaxBusyPoll {
		return o, fmt.Errorf("-busy-poll: %v is not between 0 and %v", o.busyPoll, config.MaxBusyPoll)
	}
	if o.rounds < 1 || o.runSeconds <= 0 || o.gotgtSeconds <= 0 || o.gotgtSeconds > 4 {
		return o, errors.New("-rounds must be >= 1, -seconds > 0, and -gotgt-seconds in (0, 4]")
	}
	o.gotgtSeconds = math.Min(o.gotgtSeconds, o.runSeconds)
	for t := range strings.SplitSeq(*targets, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains([]string{TargetBlockport, TargetTgt, TargetGotgt}, t) {
			return o, fmt.Errorf("-targets: unknown target %q (blockport, tgt, gotgt)", t)
		}
		o.targets = append(o.targets, t)
	}
	for k := range strings.SplitSeq(*kinds, ",") {
		k = strings.TrimSpace(k)
		if k != KindMemory && k != KindFile {
			return o, fmt.Errorf("-kinds: unknown kind %q (memory, file)", k)
		}
		o.kinds = append(o.kinds, k)
	}
	s := *sessions
	if s == "" {
		s = "1,4,16,64"
		if o.quick {
			s = "1,8,64"
		}
	}
	if s != "none" {
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 256 {
				return o, fmt.Errorf("-sessions: %q is not a count from 1 to 256", f)
			}
			o.sessions = append(o.sessions, n)
		}
	}
	return o, nil
}

// repoRoot finds the module root above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// scratchDir picks a directory whose filesystem accepts O_DIRECT.
func scratchDir(want string) (string, error) {
	candidates := []string{want}
	if want == "" {
		candidates = []string{os.TempDir(), "/var/tmp"}
	}
	var tried []string
	for _, dir := range candidates {
		probe := filepath.Join(dir, ".bench-odirect-probe")
		f, err := os.OpenFile(probe, os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o600)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", dir, err))
			continue
		}
		f.Close()
		os.Remove(probe)
		return os.MkdirTemp(dir, "blockport-bench-")
	}
	return "", fmt.Errorf("no directory accepts O_DIRECT (%s); pass -dir", strings.Join(tried, "; "))
}

// writeImage writes size bytes of a non-zero pattern (so reads hit real
// blocks, not holes), syncs, and drops the pages from the cache so no target
// starts with a warm cache.
func writeImage(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// machine describes where the numbers were taken.
func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load, _ := os.ReadFile("/proc/loadavg")
	fields := strings.Fields(string(load))
	if len(fields) > 3 {
		fields = fields[:3]
	}
	return fmt.Sprintf("%d CPUs (%s), Linux %s, load average at start %s", runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), strings.Join(fields, " "))
}

// bench is the whole run.
func bench(ctx context.Context, o options) error {
	started := time.Now()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	bin := o.bin
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(root, bin)
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("blockport binary: %w (run make build, or pass -bin)", err)
	}
	for _, tool := range []string{"qemu-img", "iscsi-perf"} {
		if _, err := runTool(ctx, 10*time.Second, "sh", "-c", "command -v "+tool); err != nil {
			return fmt.Errorf("%s not found: install libiscsi-bin, qemu-utils and qemu-block-extra (make deps)", tool)
		}
	}
	outDir := o.out
	if outDir == "" {
		outDir = filepath.Join(root, "integration", "bench", "results")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	scratch, err := scratchDir(o.dir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	// tgtd and gotgt do not follow a harness that dies: they are stopped
	// by stopAllDaemons on return and by Pdeathsig on a crash.

	rep := &Report{
		Started: started,
		Command: "go run ./integration/bench " + strings.Join(os.Args[1:], " "),
		Quick:   o.quick,
		Rounds:  o.rounds,
		Machine: machine(),
	}
	if os.Getenv("BENCH_QUICK") == "1" {
		rep.Command = "BENCH_QUICK=1 " + rep.Command
	}
	rep.Notes = append(rep.Notes,
		"qemu-img bench: `-t none -n -d QD -c COUNT -s SIZE -S STEP` through qemu's raw driver clipped to 1 GiB; random = step 104729×4 KiB (odd, so every 4 KiB block once per 262144 requests); COUNT calibrated per target from a warm-up run to last about the run time",
		fmt.Sprintf("run time %.1f s (gotgt %.1f s: it stalls after ~5 s of a session); the iscsi-perf rows only read (READ 16)", o.runSeconds, o.gotgtSeconds),
		"client cores: the load generator's utime+stime (all threads) over its wall time, login included; qemu-img bench and iscsi-perf drive iSCSI from one thread, so a row near 1.0 is limited by the client, not the target",
		"CPU s/GB: target process utime+stime over the run per 10^9 bytes moved; peak RSS: VmHWM, reset before each run through /proc/PID/clear_refs; targets are restarted for each LUN kind; a Blockport memory LUN's RSS includes the data written to it (tgt null keeps none, gotgt's tmpfs file is page cache)",
		"the machine is shared: load from other work moves single runs; compare medians of interleaved rounds")

	// Images: one per target so no page cache or allocation state is shared.
	needFile := slices.Contains(o.kinds, KindFile)
	imagePath := func(name string) string { return filepath.Join(scratch, name+".img") }
	if needFile {
		names := slices.Clone(o.targets)
		if o.ceiling {
			names = append(names, "raw")
		}
		for _, n := range names {
			if err := writeImage(imagePath(n), imageSize); err != nil {
				return fmt.Errorf("prepare image: %w", err)
			}
		}
	}

	// Without file runs, targets serve no file LUN (there is no image).
	filePath := func(name string) string {
		if !needFile {
			return ""
		}
		return imagePath(name)
	}
	var targets []Target
	for _, name := range o.targets {
		dir := filepath.Join(scratch, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		switch name {
		case TargetBlockport:
			targets = append(targets, &blockportTarget{bin: bin, dir: dir, filePath: filePath(name), writeCache: o.writeCache, busyPoll: o.busyPoll})
		case TargetTgt:
			targets = append(targets, &tgtTarget{dir: dir, filePath: filePath(name), writeCache: o.writeCache})
		case TargetGotgt:
			gbin := o.gotgtBin
			if gbin == "" {
				cache, err := os.UserCacheDir()
				if err != nil {
					cache = os.TempDir()
				}
				if gbin, err = buildGotgt(ctx, filepath.Join(cache, "blockport-bench")); err != nil {
					return err
				}
			}
			// The memory LUN: a sparse file on tmpfs (RAM), as gotgt's own
			// null store reports a size of 0 and cannot be used.
			shm := "/dev/shm"
			if st, err := os.Stat(shm); err != nil || !st.IsDir() {
				shm = dir
			}
			mem, err := os.CreateTemp(shm, "blockport-bench-gotgt-*.img")
			if err != nil {
				return err
			}
			mem.Close()
			defer os.Remove(mem.Name())
			if err := os.Truncate(mem.Name(), imageSize); err != nil {
				return err
			}
			targets = append(targets, &gotgtTarget{bin: gbin, dir: dir, filePath: filePath(name), memPath: mem.Name()})
		}
	}
	// Each kind gets freshly started targets, so that what one kind left
	// in memory (a memory LUN's written chunks) does not count in the
	// other's peak RSS.
	r := &runner{o: o, counts: map[string]int{}}
	noted := map[string]bool{}
	anyRan := false
	for _, kind := range o.kinds {
		var running []Target
		for _, t := range targets {
			if err := t.Start(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "bench: %s did not start, left out of the %s runs: %v\n", t.Name(), kind, err)
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s left out of the %s runs: %v", t.Name(), kind, err))
				continue
			}
			if !noted[t.Name()] {
				noted[t.Name()] = true
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %s", t.Name(), t.Notes()))
			}
			running = append(running, t)
		}
		anyRan = anyRan || len(running) > 0
		for round := 1; round <= o.rounds; round++ {
			for _, w := range Workloads {
				// A B C: every target in turn for the same workload.
				for _, t := range running {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					rep.Samples = append(rep.Samples, r.qemuRun(ctx, t, kind, w, round))
					if o.iscsiPerf && !w.Write {
						rep.Samples = append(rep.Samples, r.perfRun(ctx, t, kind, w, round))
					}
				}
				if o.ceiling && kind == KindFile {
					rep.Samples = append(rep.Samples, r.rawFileRun(ctx, imagePath("raw"), w, round))
				}
				// The loopback ceiling once per round, beside the
				// targets' runs of the first kind, so that a round's
				// fraction of it compares runs made in the same minutes.
				if o.ceiling && kind == o.kinds[0] {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					rep.Samples = append(rep.Samples, r.loopbackRun(ctx, w, round))
				}
			}
		}
		if kind == KindMemory {
			for _, t := range running {
				for _, n := range o.sessions {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					rep.Sessions = append(rep.Sessions, r.sessionsRun(ctx, t, n))
				}
			}
		}
		for _, t := range running {
			t.Stop()
		}
	}
	if !anyRan {
		return errors.New("no target started")
	}
	rep.Duration = time.Since(started)

	stamp := started.Format("20060102-150405")
	jsonPath := filepath.Join(outDir, "bench-"+stamp+".json")
	mdPath := filepath.Join(outDir, "bench-"+stamp+".md")
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(jsonPath, data, 0o644); err != nil {
		return err
	}
	md, err := os.Create(mdPath)
	if err != nil {
		return err
	}
	rep.WriteMarkdown(md)
	if err := md.Close(); err != nil {
		return err
	}
	rep.WriteMarkdown(os.Stdout)
	fmt.Fprintf(os.Stderr, "bench: wrote %s and %s\n", mdPath, jsonPath)
	return nil
}

// runner holds the per-cell request counts calibrated in the first round.
type runner struct {
	o      options
	counts map[string]int // "target/kind/workload" -> requests per run
}

func (r *runner) runSeconds(target string) float64 {
	if target == TargetGotgt {
		return r.o.gotgtSeconds
	}
	return r.o.runSeconds
}

// runLimit bounds a run expected to take secs: a run past it is a stall.
func runLimit(secs float64) time.Duration {
	return time.Duration(math.Max(10, 4*secs+5) * float64(time.Second))
}

// calibrate returns the request count for a run of about secs, from a
// warm-up run of the same workload (which also warms caches and the path).
func (r *runner) calibrate(ctx context.Context, key string, w Workload, secs float64, image string, imageOpts bool) (int, error) {
	if n, ok := r.counts[key]; ok {
		return n, nil
	}
	warm := w.warmupCount()
	took, _, err := runQemuBench(ctx, runLimit(secs), w, warm, image, imageOpts)
	if err != nil {
		return 0, fmt.Errorf("warm-up: %w", err)
	}
	rate := float64(warm) / took.Seconds()
	n := int(rate * secs)
	n = min(max(n, warm), 5_000_000)
	r.counts[key] = n
	return n, nil
}

// measured runs fn while sampling pid's CPU time and peak RSS.
func measured(pid int, s *Sample, fn func() error) {
	resetErr := resetPeakRSS(pid)
	before, err := readUsage(pid)
	if err != nil {
		s.Error = fmt.Sprintf("read target usage: %v", err)
		return
	}
	if err := fn(); err != nil {
		s.Error = err.Error()
		return
	}
	after, err := readUsage(pid)
	if err != nil {
		s.Error = fmt.Sprintf("read target usage: %v", err)
		return
	}
	s.CPUSeconds = after.CPUSeconds - before.CPUSeconds
	if resetErr == nil {
		s.PeakRSSKiB = after.PeakRSSKiB
	}
}

// restartAfterStall brings a stalled target back for the runs that follow.
func restartAfterStall(ctx context.Context, t Target, err error) {
	var te *timeoutError
	if !errors.As(err, &te) {
		return
	}
	fmt.Fprintf(os.Stderr, "bench: %s stalled; restarting it\n", t.Name())
	t.Stop()
	if serr := t.Start(ctx); serr != nil {
		fmt.Fprintf(os.Stderr, "bench: restart %s: %v\n", t.Name(), serr)
	}
}

func (r *runner) qemuRun(ctx context.Context, t Target, kind string, w Workload, round int) Sample {
	s := Sample{Target: t.Name(), Kind: kind, Tool: ToolQemu, Workload: w.Name, Size: w.Size, QD: w.QD, Round: round}
	secs := r.runSeconds(t.Name())
	image := t.Endpoint(kind).qemuImageOpts(benchIQN + "-initiator")
	key := t.Name() + "/" + kind + "/" + w.Name
	n, err := r.calibrate(ctx, key, w, secs, image, true)
	if err != nil {
		s.Error = err.Error()
		restartAfterStall(ctx, t, err)
		return s
	}
	s.Requests = n
	var runErr error
	measured(t.PID(), &s, func() error {
		took, use, err := runQemuBench(ctx, runLimit(secs), w, n, image, true)
		runErr = err
		s.Seconds = took.Seconds()
		s.setClient(use)
		return err
	})
	if runErr != nil {
		// Say where it stopped: the run's size and how long it should
		// have taken.
		s.Error = fmt.Sprintf("%d requests, about %.1f s expected: %s", n, secs, s.Error)
		restartAfterStall(ctx, t, runErr)
	}
	s.fill()
	fmt.Fprintf(os.Stderr, "bench: round %d %-9s %-6s %-14s %-20s %9.0f IOPS %8.1f MB/s %s\n", round, t.Name(), kind, s.Tool, w.Name, s.IOPS, s.MBps, s.Error)
	return s
}

func (r *runner) perfRun(ctx context.Context, t Target, kind string, w Workload, round int) Sample {
	s := Sample{Target: t.Name(), Kind: kind, Tool: ToolIscsiPerf, Workload: w.Name, Size: w.Size, QD: w.QD, Round: round}
	secs := max(1, int(math.Round(r.runSeconds(t.Name()))))
	var runErr error
	var iops float64
	measured(t.PID(), &s, func() error {
		var use ClientUsage
		iops, use, runErr = runIscsiPerf(ctx, w, t.Endpoint(kind), benchIQN+"-perf", secs)
		s.setClient(use)
		return runErr
	})
	if runErr != nil {
		restartAfterStall(ctx, t, runErr)
		return s
	}
	// iscsi-perf reports a rate over its own run time (login excluded).
	s.Seconds = float64(secs)
	s.IOPS = iops
	s.Requests = int(iops * s.Seconds)
	s.MBps = iops * float64(w.Size) / 1e6
	fmt.Fprintf(os.Stderr, "bench: round %d %-9s %-6s %-14s %-20s %9.0f IOPS %8.1f MB/s %s\n", round, t.Name(), kind, s.Tool, w.Name, s.IOPS, s.MBps, s.Error)
	return s
}

func (r *runner) rawFileRun(ctx context.Context, path string, w Workload, round int) Sample {
	s := Sample{Target: CeilingRawFile, Kind: KindFile, Tool: ToolQemu, Workload: w.Name, Size: w.Size, QD: w.QD, Round: round}
	n, err := r.calibrate(ctx, "raw/"+w.Name, w, r.o.runSeconds, path, false)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	took, use, err := runQemuBench(ctx, runLimit(r.o.runSeconds), w, n, path, false)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Requests, s.Seconds = n, took.Seconds()
	s.setClient(use)
	s.fill()
	fmt.Fprintf(os.Stderr, "bench: round %d %-9s %-6s %-14s %-20s %9.0f IOPS %8.1f MB/s\n", round, "raw file", "file", s.Tool, w.Name, s.IOPS, s.MBps)
	return s
}

func (r *runner) loopbackRun(ctx context.Context, w Workload, round int) Sample {
	s := Sample{Target: CeilingLoopback, Tool: ToolLoopback, Workload: w.Name, Size: w.Size, QD: w.QD, Round: round}
	res, err := runLoopback(ctx, w, time.Duration(r.o.runSeconds*float64(time.Second)))
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Requests, s.Seconds = res.Requests, res.Elapsed.Seconds()
	s.P50us = float64(res.P50) / float64(time.Microsecond)
	s.P99us = float64(res.P99) / float64(time.Microsecond)
	s.fill()
	fmt.Fprintf(os.Stderr, "bench: round %d %-9s %-6s %-14s %-20s %9.0f IOPS %8.1f MB/s\n", round, "loopback", "-", s.Tool, w.Name, s.IOPS, s.MBps)
	return s
}

// sessionsRun runs n iscsi-perf sessions at once (4 KiB random reads, QD4
// each) against t's memory LUN and measures t's CPU over the whole span.
func (r *runner) sessionsRun(ctx context.Context, t Target, n int) SessionRun {
	res := SessionRun{Target: t.Name(), Sessions: n}
	secs := max(1, int(math.Round(r.runSeconds(t.Name()))))
	w := Workload{Name: "4K rand read QD4", Size: 4096, QD: 4, Random: true}
	ep := t.Endpoint(KindMemory)
	var mu sync.Mutex
	var errs []string
	var s Sample
	start := time.Now()
	measured(t.PID(), &s, func() error {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				iops, _, err := runIscsiPerf(ctx, w, ep, fmt.Sprintf("%s-session-%d", benchIQN, i), secs)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					res.Failed++
					if len(errs) < 3 {
						errs = append(errs, err.Error())
					}
					return
				}
				res.IOPS += iops
			})
		}
		wg.Wait()
		return nil
	})
	res.Seconds = time.Since(start).Seconds()
	res.PerfSeconds = float64(secs)
	res.CPUSeconds, res.PeakRSSKiB = s.CPUSeconds, s.PeakRSSKiB
	if s.Error != "" {
		errs = append(errs, s.Error)
	}
	res.Error = strings.Join(errs, "; ")
	if res.Failed > 0 {
		restartAfterStall(ctx, t, firstTimeout(errs))
	}
	fmt.Fprintf(os.Stderr, "bench: sessions %-9s %3d: %9.0f IOPS, %.2f target cores, %d failed\n", t.Name(), n, res.IOPS, res.CoresUsed(), res.Failed)
	return res
}

// firstTimeout returns a timeoutError when any session stalled.
func firstTimeout(errs []string) error {
	for _, e := range errs {
		if strings.Contains(e, "stalled") {
			return &timeoutError{}
		}
	}
	return nil
}

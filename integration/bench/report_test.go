package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/blockport/blockport/config"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 10, 1000}, 10}, // an outlier round does not move it
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 || in[1] != 1 {
		t.Errorf("median sorted its argument: %v", in)
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		a, b, want float64
	}{
		{3, 2, 1.5},
		{1, 0, math.NaN()},
		{math.NaN(), 2, math.NaN()},
		{2, math.NaN(), math.NaN()},
	}
	for _, tt := range tests {
		got := ratio(tt.a, tt.b)
		if got != tt.want && !(math.IsNaN(got) && math.IsNaN(tt.want)) {
			t.Errorf("ratio(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestPercentileDuration(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 100; i++ {
		v = append(v, time.Duration(i))
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentileDuration(v, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentileDuration(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
}

func sample(target, kind, wl string, round int, iops float64) Sample {
	s := Sample{Target: target, Kind: kind, Tool: ToolQemu, Workload: wl, Size: 4096, QD: 32, Round: round,
		Requests: int(iops), Seconds: 1, CPUSeconds: 0.5, PeakRSSKiB: 1024 * int64(round),
		ClientCPUSeconds: 0.3 * float64(round), ClientWallSeconds: 1.2}
	s.fill()
	return s
}

func TestAggregateMediansAndFailures(t *testing.T) {
	wl := "4K rand read QD32"
	samples := []Sample{
		sample(TargetBlockport, KindFile, wl, 1, 30000),
		sample(TargetBlockport, KindFile, wl, 2, 90000),
		sample(TargetBlockport, KindFile, wl, 3, 60000),
		{Target: TargetBlockport, Kind: KindFile, Tool: ToolQemu, Workload: wl, Size: 4096, QD: 32, Round: 4, Error: "no answer within 10s (stalled)"},
	}
	a := aggregate(samples)[aggKey{TargetBlockport, KindFile, ToolQemu, wl}]
	if a == nil {
		t.Fatal("no aggregate")
	}
	if a.IOPS != 60000 {
		t.Errorf("IOPS = %v, want the median 60000", a.IOPS)
	}
	if want := 60000 * 4096 / 1e6; math.Abs(a.MBps-want) > 1e-9 {
		t.Errorf("MB/s = %v, want %v", a.MBps, want)
	}
	if a.Runs != 4 || a.Failed != 1 || len(a.Errors) != 1 {
		t.Errorf("runs %d failed %d errors %q", a.Runs, a.Failed, a.Errors)
	}
	if want := 32 / 60000.0 * 1e6; math.Abs(a.MeanLatUs-want) > 1e-9 {
		t.Errorf("mean latency = %v µs, want %v", a.MeanLatUs, want)
	}
	// CPU per GB: 0.5 s over 60000*4096 bytes is the median run.
	if want := 0.5 / (60000 * 4096 / 1e9); math.Abs(a.CPUSecPerGB-want) > 1e-9 {
		t.Errorf("CPU s/GB = %v, want %v", a.CPUSecPerGB, want)
	}
	if a.PeakRSSMiB != 3 {
		t.Errorf("peak RSS = %v MiB, want the largest, 3", a.PeakRSSMiB)
	}
	// Client cores: 0.3, 0.6 and 0.9 s of CPU over 1.2 s; the failed run
	// (no usage) does not count.
	if want := 0.6 / 1.2; math.Abs(a.ClientCores-want) > 1e-9 {
		t.Errorf("client cores = %v, want the median %v", a.ClientCores, want)
	}
}

func TestMarkdownRatios(t *testing.T) {
	wl := "4K rand read QD32"
	rep := &Report{Started: time.Unix(0, 0).UTC(), Command: "bench", Rounds: 1, Machine: "test"}
	rep.Samples = []Sample{
		sample(TargetBlockport, KindMemory, wl, 1, 60000),
		sample(TargetTgt, KindMemory, wl, 1, 40000),
		sample(TargetGotgt, KindMemory, wl, 1, 30000),
		{Target: CeilingLoopback, Tool: ToolLoopback, Workload: wl, Size: 4096, QD: 32, Round: 1, Requests: 120000, Seconds: 1},
	}
	rep.Samples[3].fill()
	rep.Sessions = []SessionRun{{Target: TargetBlockport, Sessions: 8, Seconds: 2, PerfSeconds: 1, IOPS: 50000, CPUSeconds: 0.5}}
	var buf bytes.Buffer
	rep.WriteMarkdown(&buf)
	out := buf.String()
	for _, want := range []string{
		"| memory | qemu-img bench | 4K rand read QD32 | 60000 / 246 | 40000 / 164 | 30000 / 123 | 1.50x | 2.00x | 120000 / 492 (TCP) | 50% |",
		"| blockport | 8 | 50000 | 0.25 | 100000 |",
		// Per target: CPU s/GB 0.5 s over 0.24576 GB, client cores 0.3/1.2.
		"| memory | qemu-img bench | 4K rand read QD32 | blockport | 1 | 60000 | 246 | 533 | – | – | 2.03 | 0.25 | 1.00 |",
		"| – | loopback TCP | 4K rand read QD32 | loopback TCP | 1 | 120000 | 492 | 267 | – | – | – | – | – |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	// A target with no result shows a dash, not a zero or NaN.
	rep.Samples = rep.Samples[:1]
	buf.Reset()
	rep.WriteMarkdown(&buf)
	if !strings.Contains(buf.String(), "| 60000 / 246 | – | – | – | – |") || strings.Contains(buf.String(), "NaN") {
		t.Errorf("missing targets not shown as dashes:\n%s", buf.String())
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not encode as JSON: %v", err)
	}
}

func TestParseQemuBench(t *testing.T) {
	tests := []struct {
		out     string
		want    time.Duration
		wantErr bool
	}{
		{"Sending 100 read requests, 4096 bytes each, 32 in parallel (starting at offset 0, step size 428969984)\nRun completed in 4.208 seconds.\n", 4208 * time.Millisecond, false},
		{"Run completed in 0.000 seconds.\n", time.Millisecond, false},
		{"qemu-img: Failed request: Input/output error\nSending 20000 read requests\n", 0, true},
		{"qemu-img: Could not open 'x': No such file\n", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseQemuBench(tt.out)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseQemuBench(%q) = %v, %v; want %v, error %v", tt.out, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseIscsiPerf(t *testing.T) {
	out := "iscsi-perf version 0.1\n\nconnected to iscsi://x/y/0\ncapacity is 2097152 blocks\n" +
		"performing RANDOM READ with 32 parallel requests\n" +
		"\r00:00:01 - lba 1, iops current 100 (0 MB/s), iops average 100 (0 MB/s), in_flight 32, busy 0" +
		"\riops average 35508 (138 MB/s)                  \n\nfinished.\n"
	got, err := parseIscsiPerf(out)
	if err != nil || got != 35508 {
		t.Errorf("parseIscsiPerf = %v, %v; want 35508", got, err)
	}
	if _, err := parseIscsiPerf("Login Failed. iscsi_connect failed\n"); err == nil {
		t.Error("a failed login parsed as a result")
	}
	if _, err := parseIscsiPerf("\riops average 5 (0 MB/s), in_flight 1"); err == nil {
		t.Error("an unfinished run parsed as a result")
	}
}

func TestParseProc(t *testing.T) {
	// Field 2 with a space and a ')' inside; utime 150, stime 250 ticks.
	stat := "1234 (we ird) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 150 250 0 0 20 0 8 0 100 1000000 500 18446744073709551615"
	cpu, err := parseProcStat(stat)
	if err != nil || cpu != 4 {
		t.Errorf("parseProcStat = %v, %v; want 4 s", cpu, err)
	}
	if _, err := parseProcStat("1234 (short) S 1 2"); err == nil {
		t.Error("short stat parsed")
	}
	if _, err := parseProcStat("no parenthesis"); err == nil {
		t.Error("stat without a command name parsed")
	}
	hwm, err := parseVmHWM("Name:\tx\nVmPeak:\t 9000 kB\nVmHWM:\t    8420 kB\nVmRSS:\t 100 kB\n")
	if err != nil || hwm != 8420 {
		t.Errorf("parseVmHWM = %v, %v; want 8420", hwm, err)
	}
	if _, err := parseVmHWM("VmRSS:\t 100 kB\n"); err == nil {
		t.Error("status without VmHWM parsed")
	}
}

// TestReadUsageSelf reads this process's own /proc entries.
func TestReadUsageSelf(t *testing.T) {
	u, err := readUsage(osGetpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.PeakRSSKiB <= 0 || u.CPUSeconds < 0 {
		t.Errorf("usage %+v", u)
	}
}

func TestQemuBenchArgs(t *testing.T) {
	w := Workload{Name: "x", Size: 4096, QD: 32, Write: true, Random: true}
	got := strings.Join(qemuBenchArgs(w, 1000, "OPTS", true), " ")
	want := "bench --image-opts -t none -n -w -d 32 -c 1000 -s 4096 -S 428969984 OPTS"
	if got != want {
		t.Errorf("args = %q, want %q", got, want)
	}
	seq := Workload{Size: 131072, QD: 8}
	if got := strings.Join(qemuBenchArgs(seq, 10, "f.img", false), " "); got != "bench -f raw -t none -n -d 8 -c 10 -s 131072 -S 131072 f.img" {
		t.Errorf("sequential args = %q", got)
	}
	// The random walk must visit every 4 KiB block of the image.
	if randomStride%4096 != 0 || (randomStride/4096)%2 == 0 || imageSize%randomStride == 0 {
		t.Errorf("stride %d is not an odd multiple of 4 KiB", randomStride)
	}
}

func TestLoopbackCeiling(t *testing.T) {
	for _, w := range []Workload{
		{Name: "read", Size: 4096, QD: 4},
		{Name: "write", Size: 128 << 10, QD: 2, Write: true},
	} {
		res, err := runLoopback(context.Background(), w, 100*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", w.Name, err)
		}
		if res.Requests == 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Elapsed < 100*time.Millisecond {
			t.Errorf("%s: %+v", w.Name, res)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick"})
	if err != nil || o.rounds != 1 || o.runSeconds != 1 || len(o.sessions) != 3 || len(o.targets) != 3 {
		t.Errorf("quick: %+v, %v", o, err)
	}
	o, err = parseFlags(nil)
	if err != nil || o.rounds != 3 || o.gotgtSeconds != 2 || o.busyPoll != 0 {
		t.Errorf("default: %+v, %v", o, err)
	}
	if o, err = parseFlags([]string{"-busy-poll", "30us"}); err != nil || o.busyPoll != 30*time.Microsecond {
		t.Errorf("-busy-poll 30us: %v, %v", o.busyPoll, err)
	}
	for _, bad := range [][]string{{"-targets", "lio"}, {"-kinds", "block"}, {"-sessions", "0"}, {"-gotgt-seconds", "6"}, {"extra"},
		{"-busy-poll", "2ms"}, {"-busy-poll", "-1us"}, {"-busy-poll", "30"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTableText(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 100, "plain"},
		{"exit status 10: Login Failed.\n|  | iscsi-perf version 0.1\n", 100, "exit status 10: Login Failed. / / iscsi-perf version 0.1"},
		{"abcdefghij", 4, "abcd…"},
		{"ĸĸĸ", 3, "ĸ…"}, // never cuts a character in two
	}
	for _, tt := range tests {
		if got := tableText(tt.in, tt.max); got != tt.want {
			t.Errorf("tableText(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

// TestBlockportConfig: the bench's Blockport config is valid, with the
// file LUN only when there is an image for it, and busy polling only when
// asked for.
func TestBlockportConfig(t *testing.T) {
	for _, poll := range []time.Duration{0, 30 * time.Microsecond} {
		cfg, err := config.Parse("bench.toml", []byte(blockportConfig(t.TempDir(), "", true, poll)), t.TempDir())
		if err != nil {
			t.Fatalf("busy poll %v: %v", poll, err)
		}
		if cfg.Server.BusyPoll != poll {
			t.Fatalf("busy_poll = %v, want %v", cfg.Server.BusyPoll, poll)
		}
	}
	for _, file := range []string{"", "/var/tmp/bench.img"} {
		cfg, err := config.Parse("bench.toml", []byte(blockportConfig(t.TempDir(), file, true, 0)), t.TempDir())
		if err != nil {
			t.Fatalf("file %q: %v", file, err)
		}
		want := 1
		if file != "" {
			want = 2
		}
		if len(cfg.Targets) != 1 || len(cfg.Targets[0].LUNs) != want {
			t.Fatalf("file %q: %d targets, want 1 with %d LUNs", file, len(cfg.Targets), want)
		}
	}
}

// runToolUsage reports the CPU time of the whole process, every thread,
// and its wall time.
func TestRunToolUsage(t *testing.T) {
	// Two shells spinning at once: a process of 0.3 s wall time that
	// uses up to two cores.
	spin := "i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done"
	out, use, err := runToolUsage(context.Background(), time.Minute, "sh", "-c", "("+spin+") & ("+spin+"); wait; echo done")
	if err != nil || strings.TrimSpace(out) != "done" {
		t.Fatalf("runToolUsage: %q, %v", out, err)
	}
	if use.CPU <= 0 || use.Wall <= 0 {
		t.Fatalf("usage %+v: want CPU and wall time", use)
	}
	// A subshell's time reaches the parent through wait, as qemu-img's
	// threads count in its own rusage.
	if c := use.Cores(); c < 0.5 || c > float64(runtime.NumCPU())+0.5 {
		t.Errorf("cores = %.2f (CPU %v over %v): want the shells' busy time", c, use.CPU, use.Wall)
	}
	if _, _, err := runToolUsage(context.Background(), time.Minute, "sh", "-c", "exit 3"); err == nil {
		t.Error("a failing tool reported no error")
	}
	if (ClientUsage{}).Cores() != 0 {
		t.Error("cores of nothing is not 0")
	}
}

// The side-by-side ratio carries the spread of the per-round ratios; a
// round where either target failed does not count.
func TestRoundRatioSpread(t *testing.T) {
	wl := "4K rand write QD32"
	failed := sample(TargetTgt, KindMemory, wl, 4, 0)
	failed.Error = "no answer within 10s (stalled)"
	samples := []Sample{
		sample(TargetBlockport, KindMemory, wl, 1, 60000), sample(TargetTgt, KindMemory, wl, 1, 40000), // 1.50
		sample(TargetBlockport, KindMemory, wl, 2, 45000), sample(TargetTgt, KindMemory, wl, 2, 50000), // 0.90
		sample(TargetBlockport, KindMemory, wl, 3, 66000), sample(TargetTgt, KindMemory, wl, 3, 40000), // 1.65
		sample(TargetBlockport, KindMemory, wl, 4, 99000), failed,
		sample(TargetGotgt, KindMemory, wl, 1, 30000),
	}
	key := func(target string) aggKey { return aggKey{target, KindMemory, ToolQemu, wl} }
	got := roundRatios(samples, key(TargetBlockport), key(TargetTgt))
	want := []float64{0.9, 1.5, 1.65}
	if len(got) != len(want) {
		t.Fatalf("round ratios %v, want %v", got, want)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("round ratios %v, want %v", got, want)
		}
	}
	if g := roundRatios(samples, key(TargetBlockport), key(TargetGotgt)); len(g) != 1 {
		t.Errorf("Blockport/gotgt round ratios %v, want the one round gotgt ran", g)
	}
	for _, tt := range []struct {
		v      float64
		rounds []float64
		want   string
	}{
		{1.5, want, "1.50x (0.90–1.65)"},
		{2, []float64{2}, "2.00x"},
		{math.NaN(), want, "–"},
	} {
		if s := fmtRatioSpread(tt.v, tt.rounds); s != tt.want {
			t.Errorf("fmtRatioSpread(%v, %v) = %q, want %q", tt.v, tt.rounds, s, tt.want)
		}
	}
	rep := &Report{Started: time.Unix(0, 0).UTC(), Command: "bench", Rounds: 4, Machine: "test", Samples: samples}
	var buf bytes.Buffer
	rep.WriteMarkdown(&buf)
	// Medians: Blockport 63000 (of four), tgt 40000 (of three).
	if row := "| 63000 / 258 | 40000 / 164 (1/4 failed) | 30000 / 123 | 1.57x (0.90–1.65) | 2.10x | – | – |"; !strings.Contains(buf.String(), row) {
		t.Errorf("markdown lacks %q:\n%s", row, buf.String())
	}

	// The fraction of the ceiling is taken round by round: round 2's slow
	// ceiling goes with round 2's slow Blockport run.
	for round, iops := range []float64{100000, 50000, 110000, 99000} {
		c := sample(CeilingLoopback, "", wl, round+1, iops)
		c.Tool = ToolLoopback
		rep.Samples = append(rep.Samples, c)
	}
	buf.Reset()
	rep.WriteMarkdown(&buf)
	// Per round 0.60, 0.90, 0.60, 1.00: median 0.75. The ratio of the
	// medians (63000/99500) would say 63%.
	if row := "| 2.10x | 99500 / 408 (TCP) | 75% (60–100) |"; !strings.Contains(buf.String(), row) {
		t.Errorf("markdown lacks %q:\n%s", row, buf.String())
	}
}

func TestFmtPctSpread(t *testing.T) {
	for _, tt := range []struct {
		v      float64
		rounds []float64
		want   string
	}{
		{0.5, nil, "50%"},
		{math.NaN(), nil, "–"},
		{0.5, []float64{0.8}, "80%"},
		{0.5, []float64{0.8, 0.9}, "85% (80–90)"},
		{0.5, []float64{0.7, 0.8, 1.17}, "80% (70–117)"},
	} {
		if s := fmtPctSpread(tt.v, tt.rounds); s != tt.want {
			t.Errorf("fmtPctSpread(%v, %v) = %q, want %q", tt.v, tt.rounds, s, tt.want)
		}
	}
}

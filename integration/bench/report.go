package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Pseudo-targets that measure the machine's limits.
const (
	CeilingLoopback = "loopback TCP"
	CeilingRawFile  = "raw file"
)

// Sample is one run of one workload against one target: the raw result.
type Sample struct {
	Target   string `json:"target"`
	Kind     string `json:"kind"` // memory, file; "" for the loopback ceiling
	Tool     string `json:"tool"`
	Workload string `json:"workload"`
	Size     int    `json:"size"`
	QD       int    `json:"qd"`
	Round    int    `json:"round"`

	Requests   int     `json:"requests"`
	Seconds    float64 `json:"seconds"`
	IOPS       float64 `json:"iops"`
	MBps       float64 `json:"mbps"`                  // 10^6 bytes per second
	P50us      float64 `json:"p50_us,omitempty"`      // only where the tool measures each request
	P99us      float64 `json:"p99_us,omitempty"`      //
	CPUSeconds float64 `json:"cpu_seconds,omitempty"` // target process utime+stime during the run
	PeakRSSKiB int64   `json:"peak_rss_kib,omitempty"`
	// The load generator's CPU time (all threads) and wall time, login
	// included: near one core, a single-threaded client such as
	// qemu-img is what limits the run.
	ClientCPUSeconds  float64 `json:"client_cpu_seconds,omitempty"`
	ClientWallSeconds float64 `json:"client_wall_seconds,omitempty"`
	Error             string  `json:"error,omitempty"`
}

// setClient records what the load generator cost.
func (s *Sample) setClient(u ClientUsage) {
	s.ClientCPUSeconds, s.ClientWallSeconds = u.CPU.Seconds(), u.Wall.Seconds()
}

// ClientCores is the load generator's CPU time over its wall time; NaN
// when unmeasured.
func (s Sample) ClientCores() float64 {
	if s.ClientWallSeconds <= 0 {
		return math.NaN()
	}
	return s.ClientCPUSeconds / s.ClientWallSeconds
}

// Bytes is the data moved.
func (s Sample) Bytes() float64 { return s.IOPS * s.Seconds * float64(s.Size) }

// fill derives the rates from Requests and Seconds.
func (s *Sample) fill() {
	if s.Seconds > 0 {
		s.IOPS = float64(s.Requests) / s.Seconds
		s.MBps = s.IOPS * float64(s.Size) / 1e6
	}
}

// median of values; NaN for none.
func median(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	v := slices.Clone(values)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// ratio is a/b, NaN when either is missing or b is zero.
func ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN()
	}
	return a / b
}

// Agg is the median of a (target, kind, tool, workload) cell over rounds.
type Agg struct {
	Target, Kind, Tool, Workload string
	Size, QD                     int
	Runs, Failed                 int
	IOPS, MBps                   float64
	P50us, P99us                 float64
	MeanLatUs                    float64 // Little's law: QD / IOPS
	CPUSecPerGB                  float64
	ClientCores                  float64 // Sample.ClientCores
	PeakRSSMiB                   float64 // the largest peak over the runs
	Errors                       []string
}

type aggKey struct{ target, kind, tool, workload string }

// aggregate groups samples and takes medians; failed runs count in Failed
// and keep their error text, but not in the medians.
func aggregate(samples []Sample) map[aggKey]*Agg {
	out := map[aggKey]*Agg{}
	type acc struct{ iops, mbps, p50, p99, cpu, client []float64 }
	accs := map[aggKey]*acc{}
	for _, s := range samples {
		k := aggKey{s.Target, s.Kind, s.Tool, s.Workload}
		a := out[k]
		if a == nil {
			a = &Agg{Target: s.Target, Kind: s.Kind, Tool: s.Tool, Workload: s.Workload, Size: s.Size, QD: s.QD, PeakRSSMiB: math.NaN()}
			out[k] = a
			accs[k] = &acc{}
		}
		a.Runs++
		if s.Error != "" {
			a.Failed++
			if !slices.Contains(a.Errors, s.Error) {
				a.Errors = append(a.Errors, s.Error)
			}
			continue
		}
		c := accs[k]
		c.iops = append(c.iops, s.IOPS)
		c.mbps = append(c.mbps, s.MBps)
		if s.P50us > 0 {
			c.p50 = append(c.p50, s.P50us)
			c.p99 = append(c.p99, s.P99us)
		}
		if s.CPUSeconds > 0 && s.Bytes() > 0 {
			c.cpu = append(c.cpu, s.CPUSeconds/(s.Bytes()/1e9))
		}
		if cores := s.ClientCores(); !math.IsNaN(cores) {
			c.client = append(c.client, cores)
		}
		if s.PeakRSSKiB > 0 {
			mib := float64(s.PeakRSSKiB) / 1024
			if math.IsNaN(a.PeakRSSMiB) || mib > a.PeakRSSMiB {
				a.PeakRSSMiB = mib
			}
		}
	}
	for k, a := range out {
		c := accs[k]
		a.IOPS, a.MBps = median(c.iops), median(c.mbps)
		a.P50us, a.P99us = median(c.p50), median(c.p99)
		a.CPUSecPerGB = median(c.cpu)
		a.ClientCores = median(c.client)
		a.MeanLatUs = math.NaN()
		if a.IOPS > 0 {
			a.MeanLatUs = float64(a.QD) / a.IOPS * 1e6
		}
	}
	return out
}

// Report is everything a run produced.
type Report struct {
	Started  time.Time     `json:"started"`
	Command  string        `json:"command"`
	Quick    bool          `json:"quick"`
	Rounds   int           `json:"rounds"`
	Machine  string        `json:"machine"`
	Notes    []string      `json:"notes"`
	Samples  []Sample      `json:"samples"`
	Sessions []SessionRun  `json:"sessions,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// SessionRun is one multi-session measurement.
type SessionRun struct {
	Target      string  `json:"target"`
	Sessions    int     `json:"sessions"`
	Seconds     float64 `json:"seconds"`      // wall time, logins included
	PerfSeconds float64 `json:"perf_seconds"` // each session's measured run
	IOPS        float64 `json:"iops"`         // sum over sessions
	CPUSeconds  float64 `json:"cpu_seconds"`
	PeakRSSKiB  int64   `json:"peak_rss_kib"`
	Failed      int     `json:"failed_sessions"`
	Error       string  `json:"error,omitempty"`
}

// CoresUsed is the target's CPU seconds per wall second.
func (r SessionRun) CoresUsed() float64 {
	if r.Seconds == 0 {
		return math.NaN()
	}
	return r.CPUSeconds / r.Seconds
}

// IOPSPerCore is requests served per second of target CPU: flat over the
// session counts means the target scales.
func (r SessionRun) IOPSPerCore() float64 {
	return ratio(r.IOPS*r.PerfSeconds, r.CPUSeconds)
}

// The comparison targets, in the table's column order.
const (
	TargetBlockport = "blockport"
	TargetTgt       = "tgt"
	TargetGotgt     = "gotgt"
)

// rowOrder lists (kind, tool, workload) rows in report order.
func rowOrder(samples []Sample) []aggKey {
	var rows []aggKey
	seen := map[aggKey]bool{}
	kindRank := map[string]int{KindMemory: 0, KindFile: 1}
	toolRank := map[string]int{ToolQemu: 0, ToolIscsiPerf: 1}
	wlRank := map[string]int{}
	for i, w := range Workloads {
		wlRank[w.Name] = i
	}
	for _, s := range samples {
		if s.Target == CeilingLoopback || s.Target == CeilingRawFile {
			continue
		}
		k := aggKey{"", s.Kind, s.Tool, s.Workload}
		if !seen[k] {
			seen[k] = true
			rows = append(rows, k)
		}
	}
	slices.SortStableFunc(rows, func(a, b aggKey) int {
		if d := kindRank[a.kind] - kindRank[b.kind]; d != 0 {
			return d
		}
		if d := toolRank[a.tool] - toolRank[b.tool]; d != 0 {
			return d
		}
		return wlRank[a.workload] - wlRank[b.workload]
	})
	return rows
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2fx", v)
}

// roundRatios is a/b of IOPS for each round in which both cells ran
// without failing: the two runs of a round are next to each other in time,
// so their ratio shows how far load from outside moved the result.
func roundRatios(samples []Sample, a, b aggKey) []float64 {
	byRound := map[int][2]float64{}
	for _, s := range samples {
		if s.Error != "" {
			continue
		}
		k := aggKey{s.Target, s.Kind, s.Tool, s.Workload}
		p := byRound[s.Round]
		switch k {
		case a:
			p[0] = s.IOPS
		case b:
			p[1] = s.IOPS
		default:
			continue
		}
		byRound[s.Round] = p
	}
	var out []float64
	for _, p := range byRound {
		if p[0] > 0 && p[1] > 0 {
			out = append(out, p[0]/p[1])
		}
	}
	slices.Sort(out)
	return out
}

// fmtRatioSpread is the ratio of the medians, followed by the lowest and
// highest round's ratio when there are two rounds or more.
func fmtRatioSpread(v float64, rounds []float64) string {
	s := fmtRatio(v)
	if math.IsNaN(v) || len(rounds) < 2 {
		return s
	}
	return fmt.Sprintf("%s (%.2f–%.2f)", s, rounds[0], rounds[len(rounds)-1])
}

func fmtPct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", v*100)
}

// fmtPctSpread is the median of the per-round fractions, with the lowest
// and highest when there are two rounds or more; without any, v.
func fmtPctSpread(v float64, rounds []float64) string {
	switch len(rounds) {
	case 0:
		return fmtPct(v)
	case 1:
		return fmtPct(rounds[0])
	}
	return fmt.Sprintf("%s (%.0f–%.0f)", fmtPct(median(rounds)), rounds[0]*100, rounds[len(rounds)-1]*100)
}

// cell is the IOPS / MB/s text of one aggregate, with failed runs marked.
func cell(a *Agg) string {
	if a == nil {
		return "–"
	}
	s := fmt.Sprintf("%s / %s", fmtNum(a.IOPS), fmtNum(a.MBps))
	if a.Failed > 0 {
		s += fmt.Sprintf(" (%d/%d failed)", a.Failed, a.Runs)
	}
	return s
}

// WriteMarkdown renders the report.
func (r *Report) WriteMarkdown(w io.Writer) {
	aggs := aggregate(r.Samples)
	get := func(target, kind, tool, wl string) *Agg { return aggs[aggKey{target, kind, tool, wl}] }
	iops := func(a *Agg) float64 {
		if a == nil {
			return math.NaN()
		}
		return a.IOPS
	}

	fmt.Fprintf(w, "# Blockport benchmark (%s)\n\n", r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "`%s` — %d round(s), A B C interleaved, medians; %s; took %v.\n\n", r.Command, r.Rounds, r.Machine, r.Duration.Round(time.Second))
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "## Side by side (IOPS / MB/s, median; ratios of the medians, with the lowest and highest single round's ratio)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The ceilings run in the same rounds as the targets; % of ceiling is the median of each round's Blockport/ceiling, with the lowest and highest round, so that a round the machine ran slow lowers both sides of its fraction.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| LUN | tool | workload | Blockport | tgt | gotgt | Blockport/tgt | Blockport/gotgt | ceiling | Blockport % of ceiling |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, row := range rowOrder(r.Samples) {
		b := get(TargetBlockport, row.kind, row.tool, row.workload)
		t := get(TargetTgt, row.kind, row.tool, row.workload)
		g := get(TargetGotgt, row.kind, row.tool, row.workload)
		// The ceiling of a memory LUN is the loopback exchange; of a file
		// LUN, the slower of loopback and the raw file.
		ceilKey := aggKey{CeilingLoopback, "", ToolLoopback, row.workload}
		ceil := aggs[ceilKey]
		ceilName := "TCP"
		if row.kind == KindFile {
			fk := aggKey{CeilingRawFile, KindFile, ToolQemu, row.workload}
			if f := aggs[fk]; f != nil && (ceil == nil || f.IOPS < ceil.IOPS) {
				ceil, ceilKey, ceilName = f, fk, "file"
			}
		}
		bKey := aggKey{TargetBlockport, row.kind, row.tool, row.workload}
		versus := func(target string) []float64 {
			return roundRatios(r.Samples, bKey, aggKey{target, row.kind, row.tool, row.workload})
		}
		ceilText := "–"
		if ceil != nil {
			ceilText = fmt.Sprintf("%s / %s (%s)", fmtNum(ceil.IOPS), fmtNum(ceil.MBps), ceilName)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			row.kind, row.tool, row.workload, cell(b), cell(t), cell(g),
			fmtRatioSpread(ratio(iops(b), iops(t)), versus(TargetTgt)),
			fmtRatioSpread(ratio(iops(b), iops(g)), versus(TargetGotgt)),
			ceilText, fmtPctSpread(ratio(iops(b), iops(ceil)), roundRatios(r.Samples, bKey, ceilKey)))
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "## Per target (median; latency: mean by Little's law = QD/IOPS, p50/p99 only where measured per request)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| LUN | tool | workload | target | runs | IOPS | MB/s | mean lat µs | p50 µs | p99 µs | CPU s/GB | client cores | peak RSS MiB |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	var keys []aggKey
	for k := range aggs {
		keys = append(keys, k)
	}
	order := map[string]int{TargetBlockport: 0, TargetTgt: 1, TargetGotgt: 2, CeilingLoopback: 3, CeilingRawFile: 4}
	rows := rowOrder(r.Samples)
	rowIdx := func(k aggKey) int {
		for i, row := range rows {
			if row.kind == k.kind && row.tool == k.tool && row.workload == k.workload {
				return i
			}
		}
		return len(rows) + slices.IndexFunc(Workloads, func(w Workload) bool { return w.Name == k.workload })
	}
	slices.SortFunc(keys, func(a, b aggKey) int {
		if d := rowIdx(a) - rowIdx(b); d != 0 {
			return d
		}
		return order[a.target] - order[b.target]
	})
	for _, k := range keys {
		a := aggs[k]
		runs := fmt.Sprintf("%d", a.Runs)
		if a.Failed > 0 {
			runs = fmt.Sprintf("%d (%d failed)", a.Runs, a.Failed)
		}
		kind := a.Kind
		if kind == "" {
			kind = "–"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			kind, a.Tool, a.Workload, a.Target, runs, fmtNum(a.IOPS), fmtNum(a.MBps), fmtNum(a.MeanLatUs),
			fmtNum(a.P50us), fmtNum(a.P99us), fmtNum(a.CPUSecPerGB), fmtNum(a.ClientCores), fmtNum(a.PeakRSSMiB))
	}
	fmt.Fprintln(w)

	if len(r.Sessions) > 0 {
		fmt.Fprintln(w, "## Sessions (iscsi-perf 4K random read QD4 per session, memory LUN)")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target | sessions | total IOPS | target cores used | IOPS per target core | peak RSS MiB | failed sessions |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
		for _, s := range r.Sessions {
			failed := fmt.Sprintf("%d", s.Failed)
			if s.Error != "" {
				failed += " (" + tableText(s.Error, 240) + ")"
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s |\n", s.Target, s.Sessions, fmtNum(s.IOPS),
				fmtNum(s.CoresUsed()), fmtNum(s.IOPSPerCore()), fmtNum(float64(s.PeakRSSKiB)/1024), failed)
		}
		fmt.Fprintln(w)
	}

	var errs []string
	for _, k := range keys {
		for _, e := range aggs[k].Errors {
			errs = append(errs, fmt.Sprintf("%s %s %s %s: %s", k.target, k.kind, k.tool, k.workload, e))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintln(w, "## Failed runs")
		fmt.Fprintln(w)
		for _, e := range errs {
			fmt.Fprintf(w, "- %s\n", tableText(e, 1000))
		}
		fmt.Fprintln(w)
	}
}

// tableText makes an error message fit one Markdown table cell or list
// item: one line (a tool's output may hold many), no "|", at most max
// bytes.
func tableText(s string, max int) string {
	s = strings.ReplaceAll(strings.Join(strings.Fields(s), " "), "|", "/")
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

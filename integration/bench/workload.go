package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// imageSize is the size of every benchmarked LUN as the initiator sees it.
// tgt's null LUN is bigger; qemu's raw driver clips it to this size.
const imageSize = 1 << 30

// randomStride is the "random" walk: qemu-img bench advances by a fixed
// step modulo the image size, and an odd multiple of 4 KiB is coprime with
// the 2^18 4 KiB blocks of a 1 GiB image, so the walk visits every block
// once, in scattered order, before repeating. 104729 is prime.
const randomStride = 104729 * 4096

// Workload is one access pattern.
type Workload struct {
	Name   string
	Size   int  // bytes per request
	QD     int  // requests in flight
	Write  bool // else read
	Random bool // else sequential
}

// Step is the qemu-img bench -S argument.
func (w Workload) Step() int {
	if w.Random {
		return randomStride
	}
	return w.Size
}

// Workloads are the rows.
var Workloads = []Workload{
	{Name: "4K rand read QD1", Size: 4096, QD: 1, Random: true},
	{Name: "4K rand write QD1", Size: 4096, QD: 1, Write: true, Random: true},
	{Name: "4K rand read QD32", Size: 4096, QD: 32, Random: true},
	{Name: "4K rand write QD32", Size: 4096, QD: 32, Write: true, Random: true},
	{Name: "128K seq read QD8", Size: 128 << 10, QD: 8},
	{Name: "128K seq write QD8", Size: 128 << 10, QD: 8, Write: true},
}

// warmupCount is the size of the calibration run that also warms caches and
// connections: small enough for gotgt's stall, large enough to time.
func (w Workload) warmupCount() int {
	switch {
	case w.Size >= 64<<10:
		return 400
	case w.QD == 1:
		return 1000
	default:
		return 4000
	}
}

// Endpoint is how an initiator reaches one LUN.
type Endpoint struct {
	Portal string // 127.0.0.1:PORT
	IQN    string
	LUN    int
}

// URL is the libiscsi URL iscsi://PORTAL/IQN/LUN.
func (e Endpoint) URL() string { return fmt.Sprintf("iscsi://%s/%s/%d", e.Portal, e.IQN, e.LUN) }

// qemuImageOpts addresses the LUN through qemu's raw driver clipped to
// imageSize, with its own initiator name (sessions from one name and ISID
// would reinstate each other).
func (e Endpoint) qemuImageOpts(initiator string) string {
	return fmt.Sprintf("driver=raw,size=%d,file.driver=iscsi,file.transport=tcp,file.portal=%s,file.target=%s,file.lun=%d,file.initiator-name=%s",
		imageSize, e.Portal, e.IQN, e.LUN, initiator)
}

// qemuBenchArgs builds `qemu-img bench` for count requests of w on image
// (either --image-opts text or a raw file path).
func qemuBenchArgs(w Workload, count int, image string, imageOpts bool) []string {
	args := []string{"bench"}
	if imageOpts {
		args = append(args, "--image-opts")
	} else {
		args = append(args, "-f", "raw")
	}
	args = append(args, "-t", "none", "-n")
	if w.Write {
		args = append(args, "-w")
	}
	args = append(args,
		"-d", strconv.Itoa(w.QD),
		"-c", strconv.Itoa(count),
		"-s", strconv.Itoa(w.Size),
		"-S", strconv.Itoa(w.Step()),
		image)
	return args
}

var qemuBenchRE = regexp.MustCompile(`Run completed in ([0-9]+(?:\.[0-9]+)?) seconds`)

// parseQemuBench returns the run time qemu-img bench reports.
func parseQemuBench(out string) (time.Duration, error) {
	if strings.Contains(out, "Failed request") {
		return 0, fmt.Errorf("qemu-img bench: %s", lastLines(out, 2))
	}
	m := qemuBenchRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("qemu-img bench: no run time in %q", lastLines(out, 2))
	}
	secs, err := strconv.ParseFloat(m[1], 64)
	if err != nil || secs < 0 || secs > 1e6 {
		return 0, fmt.Errorf("qemu-img bench: bad run time %q", m[1])
	}
	// qemu prints milliseconds; a run that short cannot be timed.
	if secs < 0.001 {
		secs = 0.001
	}
	return time.Duration(secs * float64(time.Second)), nil
}

var iscsiPerfRE = regexp.MustCompile(`iops average ([0-9]+) \(([0-9]+) MB/s\)`)

// parseIscsiPerf returns the final average IOPS iscsi-perf prints (its
// progress lines, separated by '\r', carry running averages; the last one
// is the run's).
func parseIscsiPerf(out string) (float64, error) {
	all := iscsiPerfRE.FindAllStringSubmatch(out, -1)
	if len(all) == 0 {
		return 0, fmt.Errorf("iscsi-perf: no average in %q", lastLines(out, 2))
	}
	if !strings.Contains(out, "finished") {
		return 0, fmt.Errorf("iscsi-perf: did not finish: %q", lastLines(out, 2))
	}
	iops, err := strconv.ParseFloat(all[len(all)-1][1], 64)
	if err != nil {
		return 0, fmt.Errorf("iscsi-perf: %w", err)
	}
	return iops, nil
}

// Tool names a load generator in the report.
const (
	ToolQemu      = "qemu-img bench"
	ToolIscsiPerf = "iscsi-perf"
	ToolLoopback  = "loopback TCP"
)

// runQemuBench runs count requests of w against image and returns the run
// and what qemu-img cost. The measured time is qemu's own (it excludes
// login and logout).
func runQemuBench(ctx context.Context, limit time.Duration, w Workload, count int, image string, imageOpts bool) (time.Duration, ClientUsage, error) {
	out, use, err := runToolUsage(ctx, limit, "qemu-img", qemuBenchArgs(w, count, image, imageOpts)...)
	if err != nil {
		return 0, use, err
	}
	took, err := parseQemuBench(out)
	return took, use, err
}

// runIscsiPerf reads with iscsi-perf for secs seconds (it only reads, with
// READ(16)); blocks is the request size in 512-byte blocks.
func runIscsiPerf(ctx context.Context, w Workload, ep Endpoint, initiator string, secs int) (float64, ClientUsage, error) {
	if w.Write {
		return 0, ClientUsage{}, errors.New("iscsi-perf only reads")
	}
	args := []string{"-i", initiator, "-t", strconv.Itoa(secs), "-m", strconv.Itoa(w.QD), "-b", strconv.Itoa(w.Size / 512)}
	if w.Random {
		args = append(args, "-r")
	}
	args = append(args, ep.URL())
	out, use, err := runToolUsage(ctx, time.Duration(secs)*time.Second+15*time.Second, "iscsi-perf", args...)
	if err != nil {
		return 0, use, err
	}
	iops, err := parseIscsiPerf(out)
	return iops, use, err
}

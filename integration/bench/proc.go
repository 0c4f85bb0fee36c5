package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK)).
const clockTicks = 100

// ProcUsage is a process's CPU time so far and its peak resident set.
type ProcUsage struct {
	CPUSeconds float64 // utime+stime of all threads
	PeakRSSKiB int64   // VmHWM
}

// parseProcStat returns utime+stime in seconds from the text of
// /proc/PID/stat. The command name (field 2) may hold spaces and parentheses,
// so fields are counted from the last ')'.
func parseProcStat(text string) (float64, error) {
	end := strings.LastIndexByte(text, ')')
	if end < 0 {
		return 0, errors.New("proc stat: no ')' after the command name")
	}
	// After ") " come field 3 (state) onwards; utime is field 14, stime 15.
	fields := strings.Fields(text[end+1:])
	const utimeIdx, stimeIdx = 14 - 3, 15 - 3
	if len(fields) <= stimeIdx {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want more than %d", len(fields), stimeIdx)
	}
	utime, err := strconv.ParseUint(fields[utimeIdx], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat utime: %w", err)
	}
	stime, err := strconv.ParseUint(fields[stimeIdx], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat stime: %w", err)
	}
	return float64(utime+stime) / clockTicks, nil
}

// parseVmHWM returns the VmHWM line of /proc/PID/status in KiB.
func parseVmHWM(text string) (int64, error) {
	for line := range strings.SplitSeq(text, "\n") {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		num, ok := strings.CutSuffix(strings.TrimSpace(rest), " kB")
		if !ok {
			return 0, fmt.Errorf("proc status: VmHWM %q is not in kB", strings.TrimSpace(rest))
		}
		return strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	}
	return 0, errors.New("proc status: no VmHWM line")
}

// readUsage samples a running process.
func readUsage(pid int) (ProcUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcUsage{}, err
	}
	cpu, err := parseProcStat(string(stat))
	if err != nil {
		return ProcUsage{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcUsage{}, err
	}
	hwm, err := parseVmHWM(string(status))
	if err != nil {
		return ProcUsage{}, err
	}
	return ProcUsage{CPUSeconds: cpu, PeakRSSKiB: hwm}, nil
}

// resetPeakRSS sets VmHWM back to the current RSS (proc(5): writing 5 to
// clear_refs), so that the peak after a run belongs to that run. It needs
// to own the process or be root; without it the peak covers the process's
// whole life, which the report then says.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// Daemon is a long-running process the harness started (a target). It runs
// in its own process group and dies with the harness (Pdeathsig).
type Daemon struct {
	Name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // valid once exited is closed
	out    *syncBuffer
}

// syncBuffer is an io.Writer safe for exec's copy goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Keep the tail only: a chatty daemon must not grow the harness.
	if b.buf.Len() > 1<<20 {
		tail := append([]byte(nil), b.buf.Bytes()[b.buf.Len()-(256<<10):]...)
		b.buf.Reset()
		b.buf.Write(tail)
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// registry of every process started, for the final cleanup.
var (
	daemonsMu sync.Mutex
	daemons   = map[*Daemon]bool{} // guarded by daemonsMu
)

// startDaemon runs name with args in dir, env added to the harness's own.
func startDaemon(label, dir string, env []string, name string, args ...string) (*Daemon, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	d := &Daemon{Name: label, cmd: cmd, exited: make(chan struct{}), out: &syncBuffer{}}
	cmd.Stdout = d.out
	cmd.Stderr = d.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", label, err)
	}
	daemonsMu.Lock()
	daemons[d] = true
	daemonsMu.Unlock()
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()
	return d, nil
}

// PID is the daemon's process id (the one whose CPU and memory count).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Running reports whether the process is alive.
func (d *Daemon) Running() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// Output is the tail of what the daemon printed.
func (d *Daemon) Output() string { return d.out.String() }

// Stop sends SIGTERM, waits up to grace, then SIGKILLs the whole group and
// reaps the process.
func (d *Daemon) Stop(grace time.Duration) {
	pid := d.cmd.Process.Pid
	if d.Running() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-d.exited
	daemonsMu.Lock()
	delete(daemons, d)
	daemonsMu.Unlock()
}

// stopAllDaemons is the last-resort cleanup (signal or panic path).
func stopAllDaemons() {
	daemonsMu.Lock()
	list := make([]*Daemon, 0, len(daemons))
	for d := range daemons {
		list = append(list, d)
	}
	daemonsMu.Unlock()
	for _, d := range list {
		d.Stop(2 * time.Second)
	}
}

// runTool runs one bounded client process (qemu-img, iscsi-perf, tgtadm) and
// returns its combined output. The process group is killed at the deadline.
func runTool(ctx context.Context, limit time.Duration, name string, args ...string) (string, error) {
	out, _, err := runToolUsage(ctx, limit, name, args...)
	return out, err
}

// ClientUsage is what a load generator cost: its CPU time (utime+stime
// of all its threads) and how long it ran, login and logout included.
type ClientUsage struct {
	CPU, Wall time.Duration
}

// Cores is the CPU time over the wall time: 1.0 is one core kept busy.
func (u ClientUsage) Cores() float64 {
	if u.Wall <= 0 {
		return 0
	}
	return u.CPU.Seconds() / u.Wall.Seconds()
}

// runToolUsage is runTool that also reports the process's CPU use.
func runToolUsage(ctx context.Context, limit time.Duration, name string, args ...string) (string, ClientUsage, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	var use ClientUsage
	if ps := cmd.ProcessState; ps != nil {
		use = ClientUsage{CPU: ps.UserTime() + ps.SystemTime(), Wall: time.Since(start)}
	}
	if ctx.Err() == context.DeadlineExceeded {
		return out.String(), use, &timeoutError{limit: limit}
	}
	if err != nil {
		return out.String(), use, fmt.Errorf("%s: %w: %s", name, err, lastLines(out.String(), 3))
	}
	return out.String(), use, nil
}

// timeoutError marks a run that did not finish in time (a stalled target).
type timeoutError struct{ limit time.Duration }

func (e *timeoutError) Error() string { return fmt.Sprintf("no answer within %v (stalled)", e.limit) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(s, "\r", "\n")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// toolPackages names the Debian package that ships each initiator tool, so a
// skipped test says what to install.
var toolPackages = map[string]string{
	"iscsi-ls":             "libiscsi-bin",
	"iscsi-inq":            "libiscsi-bin",
	"iscsi-test-cu":        "libiscsi-bin",
	"iscsi-readcapacity16": "libiscsi-bin",
	"qemu-img":             "qemu-utils",
	"qemu-io":              "qemu-utils",
	"stdbuf":               "coreutils",
	"isnsd":                "open-isns-server",
	"isnsadm":              "open-isns-utils",
}

// Tool returns the path of a required external tool. When it is missing the
// test is skipped naming the package to install, or fails when CI=true, since
// CI must never pass by skipping every real-client test.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	pkg := toolPackages[name]
	if pkg == "" {
		pkg = "the package that provides it"
	}
	missing(t, fmt.Sprintf("%s not found in PATH: install %s (apt-get install -y %s)", name, pkg, pkg))
	return ""
}

// QemuISCSI checks that qemu's iscsi block driver is loadable: Debian ships it
// in qemu-block-extra, apart from qemu-img itself. It returns the qemu-img path.
func QemuISCSI(t testing.TB) string {
	t.Helper()
	qemuImg := Tool(t, "qemu-img")
	res := Run(t, 30*time.Second, qemuImg, "--help")
	if !strings.Contains(res.Output, " iscsi ") {
		missing(t, "qemu-img has no iscsi driver: install qemu-block-extra (apt-get install -y qemu-block-extra)")
	}
	return qemuImg
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Result is the outcome of one external command.
type Result struct {
	Cmdline string
	Output  string // stdout and stderr interleaved
	Err     error  // nil for exit status 0
}

// ExitCode returns the process exit status, or -1 when it did not exit
// normally (signal, timeout, not started).
func (r Result) ExitCode() int {
	if r.Err == nil {
		return 0
	}
	var exit *exec.ExitError
	if errors.As(r.Err, &exit) {
		return exit.ExitCode()
	}
	return -1
}

// Command prepares an external command bounded by timeout: when it expires
// the command's whole process group is killed. The returned cancel must be
// called (it reaps nothing; Wait does).
func Command(timeout time.Duration, name string, args ...string) (*exec.Cmd, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return CommandContext(ctx, name, args...), cancel
}

// CommandContext prepares an external command in its own process group that
// is SIGKILLed, group and all, when ctx ends or the test binary dies.
func CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Bounds the wait for the output pipes after the kill.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs an external command to completion with a timeout and returns its
// combined output; it logs the command line and, when it fails, the output.
func Run(t testing.TB, timeout time.Duration, name string, args ...string) Result {
	t.Helper()
	cmd, cancel := Command(timeout, name, args...)
	defer cancel()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	res := Result{Cmdline: name + " " + strings.Join(args, " "), Output: string(out), Err: err}
	if cmd.ProcessState != nil && !cmd.ProcessState.Exited() && err != nil {
		res.Err = fmt.Errorf("%w (killed after %v; timeout %v)", err, time.Since(start).Round(time.Millisecond), timeout)
	}
	t.Logf("$ %s  [%v, exit %d]", res.Cmdline, time.Since(start).Round(time.Millisecond), res.ExitCode())
	if err != nil {
		t.Logf("output:\n%s", res.Output)
	}
	return res
}

// MustRun is Run that fails the test unless the command exits 0.
func MustRun(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	res := Run(t, timeout, name, args...)
	if res.Err != nil {
		t.Fatalf("%s: %v", res.Cmdline, res.Err)
	}
	return res.Output
}

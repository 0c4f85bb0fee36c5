// Package integration drives the built blockport binary with real iSCSI
// initiators (libiscsi's utilities, qemu-img, qemu-io) over loopback.
//
// Each test package calls Main from its TestMain; the binary is built once
// per test binary, when the first server starts. StartServer then runs one
// server per test in its own working directory, on a free 127.0.0.1 port,
// in its own process group, and always stops and reaps it when the test
// ends.
//
// The harness is Linux-only: it relies on O_DIRECT, process groups and
// Pdeathsig.
//
// Environment:
//
//	BLOCKPORT_BIN       use this prebuilt binary instead of building one
//	BLOCKPORT_RACE=1    build the server with -race and fail a test whose
//	                    server reports a data race
//	BLOCKPORT_TEST_DIR  parent of the per-test working directories; by
//	                    default the first of $TMPDIR, /var/tmp and
//	                    integration/.tmp that supports O_DIRECT
//	CI=true             a missing initiator tool fails the test instead of
//	                    skipping it
package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// StartTimeout bounds how long a server may take to accept connections.
	StartTimeout = 10 * time.Second
	// StopTimeout bounds the graceful stop after SIGTERM before SIGKILL;
	// longer than the server's own drain period for connected sessions.
	StopTimeout = 30 * time.Second
	// DefaultToolTimeout bounds one run of an external initiator tool.
	DefaultToolTimeout = 2 * time.Minute
)

// harness state, set up once per test binary.
var (
	baseDir  string // parent of per-test working directories; set by Main
	buildDir string // holds the built binary; set by Main

	buildOnce  sync.Once
	binaryPath string // set by buildOnce
	buildErr   error  // set by buildOnce
)

// Main prepares the harness, runs the tests and removes what it built. Use
// it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(integration.Main(m)) }
//
// The binary is built once per test binary, when the first server starts,
// so a package's pure unit tests run even while cmd/blockport is broken.
func Main(m *testing.M) int {
	root, err := RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	baseDir, err = chooseBaseDir(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	buildDir, err = os.MkdirTemp(baseDir, "build-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(buildDir)
	code := m.Run()
	for i := len(atExit) - 1; i >= 0; i-- {
		if err := atExit[i](); err != nil {
			fmt.Fprintln(os.Stderr, "integration:", err)
			code = 1
		}
	}
	return code
}

// atExit holds what Main undoes once every test has run (a shared Ceph
// cluster), last registered first. Only tests append to it, and tests of a
// package that share something set it up under a sync.Once.
var atExit []func() error

// serverBuildTags are the build tags of the server under test.
var serverBuildTags string

// Binary returns the blockport binary under test: BLOCKPORT_BIN if set,
// else `go build ./cmd/blockport` (with -race when BLOCKPORT_RACE=1), built
// on first use. A failed build fails the test.
func Binary(t testing.TB) string {
	t.Helper()
	if buildDir == "" {
		t.Fatal("integration: Main was not called from TestMain")
	}
	buildOnce.Do(func() {
		if bin := os.Getenv("BLOCKPORT_BIN"); bin != "" {
			binaryPath, buildErr = filepath.Abs(bin)
			if buildErr == nil {
				_, buildErr = os.Stat(binaryPath)
			}
			return
		}
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		binaryPath = filepath.Join(buildDir, "blockport")
		buildErr = build(root, binaryPath, os.Getenv("BLOCKPORT_RACE") == "1")
	})
	if buildErr != nil {
		t.Fatalf("blockport binary: %v", buildErr)
	}
	return binaryPath
}

// build compiles ./cmd/blockport into out. A build that hangs is killed.
func build(root, out string, race bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	if serverBuildTags != "" {
		// Tests built with -tags ceph test a server with RBD (tags_ceph.go).
		args = append(args, "-tags", serverBuildTags)
	}
	args = append(args, "./cmd/blockport")
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = root
	cmd.WaitDelay = 5 * time.Second
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, output)
	}
	return nil
}

// goTool prefers the toolchain that built this test binary.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

// RepoRoot finds the module root by walking up from the working directory
// (go test runs a test binary in its package directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// chooseBaseDir picks where servers keep their images. /tmp is often tmpfs,
// where O_DIRECT opens fail (EINVAL) on older kernels, and a direct_io LUN
// would then not start; so take the first candidate that accepts O_DIRECT.
func chooseBaseDir(root string) (string, error) {
	candidates := []string{os.Getenv("BLOCKPORT_TEST_DIR"), os.TempDir(), "/var/tmp", filepath.Join(root, "integration", ".tmp")}
	var tried []string
	for _, dir := range candidates {
		if dir == "" {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", dir, err))
			continue
		}
		if err := supportsDirectIO(dir); err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", dir, err))
			continue
		}
		return dir, nil
	}
	return "", fmt.Errorf("no directory supports O_DIRECT (%s); set BLOCKPORT_TEST_DIR", strings.Join(tried, "; "))
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TempDir makes a working directory for one test on a filesystem that
// supports O_DIRECT and removes it when the test and its cleanups end.
func TempDir(t testing.TB) string {
	t.Helper()
	if baseDir == "" {
		t.Fatal("integration: Main was not called from TestMain")
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	dir, err := os.MkdirTemp(baseDir, "test-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered before any server's cleanup, so it runs after it (LIFO).
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Server is one blockport process serving a config in its own directory.
// Its methods are called from the test goroutine only.
type Server struct {
	t          testing.TB
	Dir        string // working directory: the config file and relative paths
	ConfigPath string
	Addr       string // 127.0.0.1:PORT, kept across Restart
	// MoreAddrs are further portals (a second path to the same LUNs, as
	// multipath tests want), also kept across Restart.
	MoreAddrs []string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been reaped
	waitErr error         // valid once exited is closed
	output  *logBuffer    // stdout and stderr of every run, in order
	stdout  *logBuffer    // stdout of the current run, to see it is ready
	runs    int
}

// ReadyLine starts the line blockport prints to stdout once it serves.
const ReadyLine = "blockport: serving "

// StartServer writes cfgText to blockport.toml in a fresh directory and runs
// `blockport serve --config FILE --listen 127.0.0.1:PORT` there. The text may
// use {{DIR}} for that directory (e.g. state_dir = "{{DIR}}/state") and
// {{ADDR}} for the listen address (a portal group's addresses). It
// returns once the port accepts connections and the server has printed its
// ReadyLine; a server that exits or is not ready within StartTimeout fails the
// test. Cleanup stops the server
// gracefully and fails the test if the graceful stop does not exit 0.
func StartServer(t testing.TB, cfgText string) *Server {
	t.Helper()
	return StartServerPortals(t, cfgText, 1)
}

// StartServerPortals is StartServer with the server listening on n
// loopback portals: Addr and n-1 MoreAddrs.
func StartServerPortals(t testing.TB, cfgText string, n int) *Server {
	t.Helper()
	return startServer(t, cfgText, net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))), n)
}

// StartServerOn is StartServer on a listen address the caller chose (with
// FreePort), for configs that must name it before the server starts: two
// gateways that list each other's portals.
func StartServerOn(t testing.TB, cfgText, addr string) *Server {
	t.Helper()
	return startServer(t, cfgText, addr, 1)
}

func startServer(t testing.TB, cfgText, addr string, n int) *Server {
	t.Helper()
	dir := TempDir(t)
	cfgPath := filepath.Join(dir, "blockport.toml")
	s := &Server{
		t:          t,
		Dir:        dir,
		ConfigPath: cfgPath,
		Addr:       addr,
		output:     &logBuffer{},
	}
	cfgText = strings.ReplaceAll(cfgText, "{{DIR}}", dir)
	cfgText = strings.ReplaceAll(cfgText, "{{ADDR}}", s.Addr)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	for range n - 1 {
		s.MoreAddrs = append(s.MoreAddrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))))
	}
	t.Cleanup(func() {
		if s.Running() {
			if err := s.stop(); err != nil {
				t.Errorf("stop server: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("blockport output (%s):\n%s", s.ConfigPath, s.output.String())
		}
	})
	s.Start()
	return s
}

// Start runs the server process again after Stop or Kill.
func (s *Server) Start() {
	s.t.Helper()
	if s.Running() {
		s.t.Fatal("server already running")
	}
	bin := Binary(s.t)
	s.runs++
	args := []string{"serve", "--config", s.ConfigPath, "--listen", s.Addr}
	for _, a := range s.MoreAddrs {
		args = append(args, "--listen", a)
	}
	fmt.Fprintf(s.output, "=== run %d: %s %s\n", s.runs, bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.Dir
	s.stdout = &logBuffer{}
	cmd.Stdout = io.MultiWriter(s.output, s.stdout)
	cmd.Stderr = s.output
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary dies, the kernel kills the server: no leftovers.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start blockport: %v", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func(exited chan struct{}) {
		s.waitErr = cmd.Wait()
		close(exited)
	}(s.exited)

	if err := s.waitListening(StartTimeout); err != nil {
		s.stop()
		s.t.Fatalf("blockport did not start: %v\n%s", err, s.output.String())
	}
}

// waitListening polls until the port accepts and the server has printed its
// ready line (a listener may be open before the targets are configured), or
// until the process exits.
func (s *Server) waitListening(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("exited before serving: %s", exitString(s.waitErr))
		default:
		}
		conn, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			if strings.Contains(s.stdout.String(), ReadyLine) {
				return nil
			}
			err = fmt.Errorf("port open but no %q line on stdout yet", ReadyLine)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not serving after %v: %v", s.Addr, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Exited is closed when the current server process has exited.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// ExitError describes how the last process ended (nil while running or for
// exit status 0).
func (s *Server) ExitError() error {
	if s.Running() {
		return nil
	}
	return s.waitErr
}

// Stop sends SIGTERM, waits up to StopTimeout for a clean exit 0, then
// SIGKILLs. A stop that is not graceful fails the test.
func (s *Server) Stop() {
	s.t.Helper()
	if err := s.stop(); err != nil {
		s.t.Errorf("stop server: %v", err)
	}
}

func (s *Server) stop() error {
	if !s.Running() {
		return nil
	}
	pgid := s.cmd.Process.Pid
	// Signal the leader only: it owns the graceful stop. Children, if
	// any, are killed with the group below.
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	var err error
	select {
	case <-s.exited:
		if s.waitErr != nil {
			err = fmt.Errorf("after SIGTERM: %v (want exit 0)", s.waitErr)
		}
	case <-time.After(StopTimeout):
		err = fmt.Errorf("no exit %v after SIGTERM; killed", StopTimeout)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-s.exited
	if rerr := s.raceReport(); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// Kill SIGKILLs the server's process group (a crash) and reaps it.
func (s *Server) Kill() {
	s.t.Helper()
	if !s.Running() {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// Signal sends sig to the server's process group (SIGSTOP and SIGCONT
// freeze and thaw it: a gateway that is alive but does not answer).
func (s *Server) Signal(sig syscall.Signal) {
	s.t.Helper()
	if s.Running() {
		_ = syscall.Kill(-s.cmd.Process.Pid, sig)
	}
}

// Restart stops the server gracefully and starts it on the same address.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// raceReport fails a run whose race-enabled server found a data race.
func (s *Server) raceReport() error {
	if strings.Contains(s.output.String(), "WARNING: DATA RACE") {
		return errors.New("the server reported a data race (see its output)")
	}
	return nil
}

// Output returns everything the server wrote to stdout and stderr so far.
func (s *Server) Output() string { return s.output.String() }

// WaitOutput waits up to limit for the server's output to contain want and
// reports whether it did. A client can see the answer to a request before
// the line the server logs about it has come through the output pipe, so
// tests that check the log after a client returns wait for it here.
func (s *Server) WaitOutput(want string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for !strings.Contains(s.Output(), want) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Portal returns the discovery URL iscsi://127.0.0.1:PORT.
func (s *Server) Portal() string { return "iscsi://" + s.Addr }

// URL returns the libiscsi URL of one LUN, iscsi://127.0.0.1:PORT/IQN/LUN.
func (s *Server) URL(iqn string, lun int) string {
	return fmt.Sprintf("iscsi://%s/%s/%d", s.Addr, iqn, lun)
}

// QemuOpts returns a qemu --image-opts string for one LUN through the raw
// format. headerDigest is "" for qemu's default (None,CRC32C offered) or
// "crc32c" / "none" to insist on one.
func (s *Server) QemuOpts(iqn string, lun int, headerDigest string) string {
	opts := fmt.Sprintf("driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=%s,file.target=%s,file.lun=%d", s.Addr, iqn, lun)
	if headerDigest != "" {
		opts += ",file.header-digest=" + headerDigest
	}
	return opts
}

// logBuffer is an io.Writer safe for the two copy goroutines of exec.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// exitString describes a Wait error, including a clean exit.
func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

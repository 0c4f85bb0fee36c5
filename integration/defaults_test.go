package integration

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `blockport serve` with no config serves the built-in lab target: a 1 GiB
// thin image under ./blockport-data/ that takes space only where written,
// announced by one line with the URL to connect to; SIGTERM stops it with
// exit status 0. `blockport version` names the backstores it has.
func TestServeBuiltInDefault(t *testing.T) {
	inq := Tool(t, "iscsi-inq")
	if out := MustRun(t, DefaultToolTimeout, Binary(t), "version"); !strings.Contains(out, "blockport") || !strings.Contains(out, "backstores: ") {
		t.Errorf("blockport version: %q", out)
	}
	dir := TempDir(t)
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	cmd, stdout, stderr, cancel := startServe(t, 2*time.Minute, dir, "--listen", addr)
	defer cancel()
	defer cmd.Process.Kill()
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		first, _ := r.ReadString('\n')
		lines <- first
		io.Copy(io.Discard, r)
	}()
	var ready string
	select {
	case ready = <-lines:
	case <-time.After(StartTimeout):
		t.Fatalf("no ready line; stderr:\n%s", stderr.String())
	}
	url := "iscsi://" + addr + "/iqn.2026-11.io.blockport:lab/0"
	if !strings.HasPrefix(ready, ReadyLine) || !strings.Contains(ready, url) {
		t.Fatalf("ready line %q does not give %s", ready, url)
	}
	if out := MustRun(t, DefaultToolTimeout, inq, url); !strings.Contains(out, "BLOCKPRT") {
		t.Errorf("iscsi-inq on the default LUN:\n%s", out)
	}
	var st syscall.Stat_t
	img := filepath.Join(dir, "blockport-data", "lab0.img")
	if err := syscall.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 1<<30 || st.Blocks*512 > 64<<20 {
		t.Errorf("default image: %d bytes, %d allocated; want 1 GiB, thin", st.Size, st.Blocks*512)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(img); err != nil {
		t.Fatal(err)
	}
}

// A SIGTERM sent the moment the ready line appears, while the server is
// still starting its admin API and metrics, ends in an orderly stop with
// exit status 0: the signal is caught from before the first listener opens.
func TestSIGTERMAtReadyLine(t *testing.T) {
	const iqn = "iqn.2026-11.io.blockport:early-term"
	dir := TempDir(t)
	cfgPath := filepath.Join(dir, "blockport.toml")
	cfg := strings.ReplaceAll(Config(iqn, LUN{LUN: 0, Backstore: "memory", Size: "4MiB"}), "{{DIR}}", dir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
		cmd, stdout, stderr, cancel := startServe(t, time.Minute, dir, "--config", cfgPath, "--listen", addr)
		first, _ := bufio.NewReader(stdout).ReadString('\n')
		if !strings.HasPrefix(first, ReadyLine) {
			cmd.Process.Kill()
			cmd.Wait()
			cancel()
			t.Fatalf("round %d: first line %q, want the ready line\n%s", round, first, stderr.String())
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		cancel()
		if err != nil {
			t.Fatalf("round %d: SIGTERM right after the ready line: %v (want exit 0)\n%s", round, err, stderr.String())
		}
	}
}

// startServe starts `blockport serve args...` in dir, bounded by timeout,
// with its stdout on a pipe and its stderr collected.
func startServe(t *testing.T, timeout time.Duration, dir string, args ...string) (*exec.Cmd, io.ReadCloser, *strings.Builder, context.CancelFunc) {
	t.Helper()
	cmd, cancel := Command(timeout, Binary(t), append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	return cmd, stdout, stderr, cancel
}

package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartPortals runs blockport on n loopback portals given in the config
// itself (no --listen, so [[target.portal_group]] tables can name them).
// cfg gets the n free addresses and returns the config text, which may use
// {{DIR}}. It returns the addresses once all accept connections; cleanup
// stops the server with SIGTERM (SIGKILL after 30 s) and, if the test
// failed, logs its output.
func StartPortals(t testing.TB, n int, cfg func(addrs []string) string) []string {
	t.Helper()
	dir := TempDir(t)
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	}
	path := filepath.Join(dir, "blockport.toml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(cfg(addrs), "{{DIR}}", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &logBuffer{}
	cmd := exec.Command(Binary(t), "serve", "--config", path)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("blockport output (%s):\n%s", path, out.String())
		}
	})
	deadline := time.Now().Add(StartTimeout)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				t.Fatalf("blockport exited: %s", out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("blockport does not listen on %s: %v", a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addrs
}

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A reload that reopens a file LUN while an initiator keeps writing to it
// (queue depth 8) waits for the commands in its backstore before closing
// it, so that the reopen finds the image free (its lock released) and the
// LUN is mapped again. The writer may see errors while the LUN is away;
// what must not happen is a LUN left unmapped.
func TestReloadReopensBusyLUN(t *testing.T) {
	QemuISCSI(t)
	qemuImg := Tool(t, "qemu-img")
	qemuIO := Tool(t, "qemu-io")
	lun0 := LUN{LUN: 0, Backstore: "memory", Size: "8MiB"}
	cfg := func(writeCache bool) string {
		return Config(testIQN, lun0, LUN{LUN: 1, Backstore: "file", Path: "lun1.img", Size: "64MiB", DirectIO: true, WriteCache: writeCache})
	}
	s := StartServer(t, cfg(false))
	bin := Binary(t)
	socket := filepath.Join(s.Dir, "state", "admin.sock")
	for round, writeCache := range []bool{true, false, true} {
		bench, cancel := Command(time.Minute, qemuImg, "bench", "-w", "-t", "none", "-n", "-d", "8",
			"-c", "100000000", "-s", "4096", "--image-opts", s.QemuOpts(testIQN, 1, ""))
		var out strings.Builder
		bench.Stdout, bench.Stderr = &out, &out
		if err := bench.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		time.Sleep(time.Second) // logged in and writing
		text := strings.ReplaceAll(cfg(writeCache), "{{DIR}}", s.Dir)
		if err := os.WriteFile(s.ConfigPath, []byte(text), 0o644); err != nil {
			cancel()
			t.Fatal(err)
		}
		res := Run(t, DefaultToolTimeout, bin, "reload", "--socket", socket)
		cancel()
		bench.Wait()
		if res.Err != nil || !strings.Contains(res.Output, "mapped LUN 1") || strings.Contains(res.Output, "left unmapped") {
			t.Fatalf("round %d: reload of a busy LUN: %v\n%s\nqemu-img bench:\n%s", round, res.Err, res.Output, out.String())
		}
	}
	qemuIOCheck(t, qemuIO, s.URL(testIQN, 1), "write -P 0x5a 0 1048576", "read -P 0x5a 0 1048576")
}

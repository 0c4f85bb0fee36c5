package conformance

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blockport/blockport/integration"
)

// reservationFamilies are the iscsi-test-cu families of issue 6: persistent
// reservations, SCSI-2 reservations and multipath I/O. Every test in them
// must pass: none may fail or skip.
var reservationFamilies = []string{
	"PrinReadKeys", "PrinReportCapabilities", "PrinServiceactionRange", "ProutRegister",
	"ProutReserve", "ProutClear", "ProutPreempt", "Reserve6", "MultipathIO",
}

// startTwoPortals runs blockport on two loopback portals (two paths to one
// LUN) and returns their addresses. The process is killed at cleanup.
func startTwoPortals(t *testing.T, iqn string) [2]string {
	t.Helper()
	dir := integration.TempDir(t)
	cfg := strings.ReplaceAll(integration.Config(iqn, integration.LUN{LUN: 0, Backstore: "memory", Size: "64MiB"}), "{{DIR}}", dir)
	path := filepath.Join(dir, "blockport.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var addrs [2]string
	for i := range addrs {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(integration.FreePort(t)))
	}
	var out strings.Builder
	cmd := exec.Command(integration.Binary(t), "serve", "--config", path, "--listen", addrs[0], "--listen", addrs[1])
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("blockport output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(integration.StartTimeout)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("blockport does not listen on %s: %v", a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addrs
}

// TestReservationFamilies runs exactly the reservation and multipath
// families, each against a fresh server reached through two portals
// (iscsi-test-cu takes the second URL as a second path).
func TestReservationFamilies(t *testing.T) {
	tool := integration.Tool(t, "iscsi-test-cu")
	stdbuf, _ := exec.LookPath("stdbuf")
	const iqn = "iqn.2026-11.io.blockport:reservations"
	for _, family := range reservationFamilies {
		t.Run(family, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			addrs := startTwoPortals(t, iqn)
			url := func(a string) string { return fmt.Sprintf("iscsi://%s/%s/0", a, iqn) }
			r := &Runner{
				Tool: tool, Stdbuf: stdbuf, URL: url(addrs[0]),
				Initiator1: "iqn.2026-11.io.blockport:reservations-1",
				Initiator2: "iqn.2026-11.io.blockport:reservations-2",
				Family:     "ALL",
				Suites:     []string{"ALL." + family},
				// getopt moves operands to the end: this is the second URL.
				ExtraArgs: []string{url(addrs[1])},
				PerTest:   perTestHangLimit,
				WorkDir:   integration.TempDir(t),
				Logf:      t.Logf,
			}
			rep, err := r.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Results) == 0 {
				t.Fatal("no test ran")
			}
			for _, res := range rep.Results {
				if res.Outcome != Pass {
					t.Errorf("%s: %s %s", res.Name, res.Outcome, res.Detail)
				}
			}
		})
	}
}

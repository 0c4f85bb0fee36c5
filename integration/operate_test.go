package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// metricValue finds one sample in a Prometheus text exposition; name
// includes the labels exactly as exposed, e.g. `x_total{a="b"}`.
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("metric %s not exposed:\n%s", name, text)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Metrics are scraped after real I/O from qemu-io and a login to a target
// that does not exist.
func TestMetricsAfterIO(t *testing.T) {
	QemuISCSI(t)
	qemuIO := Tool(t, "qemu-io")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	cfg := strings.Replace(Config(testIQN, LUN{LUN: 0, Backstore: "memory", Size: "32MiB"}),
		"[server]\n", "[server]\nmetrics_listen = \""+metricsAddr+"\"\n", 1)
	s := StartServer(t, cfg)

	qemuIOCheck(t, qemuIO, s.URL(testIQN, 0), "write -P 0x3c 0 1048576", "read -P 0x3c 0 1048576")
	// A login to a target that does not exist is an authorization failure.
	res := Run(t, DefaultToolTimeout, qemuIO, "-f", "raw", "-c", "read 0 512", "iscsi://"+s.Addr+"/iqn.2026-11.io.blockport:nope/0")
	if res.Err == nil {
		t.Fatal("qemu-io reached a target that does not exist")
	}

	code, body := httpGet(t, "http://"+metricsAddr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	l := `{direction="write",lun="0",target="` + testIQN + `"}`
	if v := metricValue(t, body, "blockport_scsi_bytes_total"+l); v < 1048576 {
		t.Errorf("write bytes = %v, want >= 1 MiB", v)
	}
	if v := metricValue(t, body, `blockport_scsi_bytes_total{direction="read",lun="0",target="`+testIQN+`"}`); v < 1048576 {
		t.Errorf("read bytes = %v, want >= 1 MiB", v)
	}
	if v := metricValue(t, body, "blockport_scsi_commands_total"+l); v < 1 {
		t.Errorf("write commands = %v", v)
	}
	if v := metricValue(t, body, `blockport_scsi_command_duration_seconds_count{class="write",lun="0",target="`+testIQN+`"}`); v < 1 {
		t.Errorf("write latency count = %v", v)
	}
	if v := metricValue(t, body, `blockport_logins_total{result="success"}`); v < 1 {
		t.Errorf("successful logins = %v", v)
	}
	if v := metricValue(t, body, `blockport_logins_total{result="authorization_failure"}`); v < 1 {
		t.Errorf("authorization failures = %v", v)
	}
	if v := metricValue(t, body, `blockport_backstore_capacity_bytes{backstore="memory",lun="0",target="`+testIQN+`"}`); v != 32<<20 {
		t.Errorf("capacity = %v", v)
	}
	if !strings.Contains(body, `blockport_build_info{`) {
		t.Error("no build info")
	}
	if strings.Contains(body, "isid") || strings.Contains(body, "linux-kvm") {
		t.Error("metrics carry an unbounded label (ISID or initiator name)")
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := httpGet(t, "http://"+metricsAddr+p); code != 200 {
			t.Errorf("%s: %d", p, code)
		}
	}
}

// Reload under running I/O: qemu-io keeps writing and verifying LUN 0 in
// one session while LUN 1 is added, used and removed; an invalid config
// changes nothing.
func TestReloadUnderIO(t *testing.T) {
	QemuISCSI(t)
	qemuIO := Tool(t, "qemu-io")
	iscsiLs := Tool(t, "iscsi-ls")
	base := Config(testIQN, LUN{LUN: 0, Backstore: "file", Path: "lun0.img", Size: "64MiB", DirectIO: true})
	s := StartServer(t, base)
	bin := Binary(t)
	socket := filepath.Join(s.Dir, "state", "admin.sock")
	writeCfg := func(text string) {
		t.Helper()
		text = strings.ReplaceAll(text, "{{DIR}}", s.Dir)
		if err := os.WriteFile(s.ConfigPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// One qemu-io process, one session: many writes and verified reads.
	var cmds []string
	for i := range 60 {
		off := (i % 16) * (4 << 20)
		cmds = append(cmds, fmt.Sprintf("write -P 0x%02x %d 4194304", 0x40+i%32, off),
			fmt.Sprintf("read -P 0x%02x %d 4194304", 0x40+i%32, off))
	}
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, s.URL(testIQN, 0))
	io, cancel := Command(2*time.Minute, qemuIO, args...)
	defer cancel()
	var out strings.Builder
	io.Stdout, io.Stderr = &out, &out
	if err := io.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- io.Wait() }()

	// Wait for its session to show in the status.
	var st struct {
		Targets []struct {
			Name     string
			LUNs     []struct{ LUN int } `json:"luns"`
			Sessions []struct{ Initiator, ISID string }
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		o := MustRun(t, DefaultToolTimeout, bin, "status", "--socket", socket, "--json")
		if err := json.Unmarshal([]byte(o), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, o)
		}
		if len(st.Targets) == 1 && len(st.Targets[0].Sessions) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session in the status:\n%s", o)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Targets[0].Sessions[0].ISID == "" {
		t.Error("status session without ISID")
	}
	tree := MustRun(t, DefaultToolTimeout, bin, "status", "--socket", socket)
	for _, want := range []string{testIQN, "lun0 [file ", "sessions [1]", "isid "} {
		if !strings.Contains(tree, want) {
			t.Errorf("status tree lacks %q:\n%s", want, tree)
		}
	}

	withLUN1 := Config(testIQN,
		LUN{LUN: 0, Backstore: "file", Path: "lun0.img", Size: "64MiB", DirectIO: true},
		LUN{LUN: 1, Backstore: "memory", Size: "8MiB"})
	writeCfg(withLUN1)
	if o := MustRun(t, DefaultToolTimeout, bin, "reload", "--socket", socket); !strings.Contains(o, "mapped LUN 1") {
		t.Errorf("reload output: %s", o)
	}
	if o := MustRun(t, DefaultToolTimeout, iscsiLs, "-s", s.Portal()); !strings.Contains(o, "Lun:1") {
		t.Errorf("LUN 1 not listed after reload:\n%s", o)
	}
	qemuIOCheck(t, qemuIO, s.URL(testIQN, 1), "write -P 0x11 0 65536", "read -P 0x11 0 65536")

	// [limits] apply from the next connection; the running session stays.
	writeCfg(withLUN1 + "\n[limits]\nqueue_depth = 16\nnop_timeout = \"20s\"\n")
	if o := MustRun(t, DefaultToolTimeout, bin, "reload", "--socket", socket); !strings.Contains(o, "[limits] changed") || strings.Contains(o, "next start") {
		t.Errorf("reload of [limits]: %s", o)
	}
	qemuIOCheck(t, qemuIO, s.URL(testIQN, 1), "read -P 0x11 0 65536")

	// An invalid config is refused and changes nothing.
	writeCfg(withLUN1 + "\n  bogus_key = 1\n")
	res := Run(t, DefaultToolTimeout, bin, "reload", "--socket", socket)
	if res.Err == nil || !strings.Contains(res.Output, "bogus_key") {
		t.Errorf("invalid config: reload %v: %s", res.Err, res.Output)
	}
	if o := MustRun(t, DefaultToolTimeout, iscsiLs, "-s", s.Portal()); !strings.Contains(o, "Lun:1") {
		t.Errorf("LUN 1 gone after a refused reload:\n%s", o)
	}

	// Remove LUN 1 with SIGHUP this time.
	writeCfg(base)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Output(), "unmapped LUN 1") {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP reload did not unmap LUN 1")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if o := MustRun(t, DefaultToolTimeout, iscsiLs, "-s", s.Portal()); strings.Contains(o, "Lun:1") {
		t.Errorf("LUN 1 still listed after removal:\n%s", o)
	}

	select {
	case err := <-done:
		if err != nil || strings.Contains(out.String(), "verification failed") || strings.Contains(out.String(), "error") {
			t.Fatalf("qemu-io under reloads: %v\n%s", err, out.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("qemu-io did not finish")
	}
	if n := strings.Count(out.String(), "read 4194304/4194304 bytes"); n != 60 {
		t.Errorf("qemu-io verified %d reads, want 60", n)
	}
	// The long session lasted through every reload: three qemu logins in
	// all (it and the two LUN 1 checks), no reinstatement.
	if n := strings.Count(s.Output(), "msg=login "); n < 3 || strings.Count(s.Output(), "initiator=iqn.2008-11.org.linux-kvm target="+testIQN+" session=normal") != 3 {
		t.Errorf("qemu-io logged in %d times (want its session kept through the reloads)", n)
	}
}

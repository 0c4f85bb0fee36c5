package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// busy_poll end to end: with a budget, qemu-io's verified 4 KiB writes and
// reads at queue depth 1 are served by polling readers (the metric counts
// polls that found the next PDU); a reload turns it off at once, without
// a restart, and the counters stop.
func TestBusyPoll(t *testing.T) {
	QemuISCSI(t)
	qemuIO := Tool(t, "qemu-io")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	lun := Config(testIQN, LUN{LUN: 0, Backstore: "memory", Size: "16MiB"})
	withPoll := func(budget string) string {
		return strings.Replace(lun, "[server]\n", "[server]\nmetrics_listen = \""+metricsAddr+"\"\nbusy_poll = \""+budget+"\"\n", 1)
	}
	s := StartServer(t, withPoll("1ms"))
	polls := func() (found, expired float64) {
		t.Helper()
		code, body := httpGet(t, "http://"+metricsAddr+"/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		return metricValue(t, body, `blockport_busy_polls_total{result="data"}`), metricValue(t, body, `blockport_busy_polls_total{result="timeout"}`)
	}
	var cmds []string
	for i := range 200 {
		off := (i % 64) * 65536
		cmds = append(cmds, fmt.Sprintf("write -P 0x%02x %d 4096", i%251, off), fmt.Sprintf("read -P 0x%02x %d 4096", i%251, off))
	}
	qemuIOCheck(t, qemuIO, s.URL(testIQN, 0), cmds...)
	found, expired := polls()
	// 400 commands, each answered before qemu-io sends the next: the
	// reader finds the socket empty and polls after most of them (not
	// all: qemu-io's next command may be there before the reader looks;
	// a slow machine may let some polls run out).
	if found+expired < 100 || found < 1 {
		t.Fatalf("busy polls after 400 queue-depth-1 commands: %v found data, %v ran out", found, expired)
	}

	// Off by reload: applied at once, no restart warning.
	if err := os.WriteFile(s.ConfigPath, []byte(strings.ReplaceAll(withPoll("0"), "{{DIR}}", s.Dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	o := MustRun(t, DefaultToolTimeout, Binary(t), "reload", "--socket", filepath.Join(s.Dir, "state", "admin.sock"))
	if !strings.Contains(o, "server.busy_poll changed from 1ms to 0s") || strings.Contains(o, "next start") {
		t.Fatalf("reload of busy_poll: %s", o)
	}
	// Counted from here: the first session's last poll (its EOF) may
	// have landed after the scrape above.
	found, expired = polls()
	qemuIOCheck(t, qemuIO, s.URL(testIQN, 0), cmds[:100]...)
	if f, e := polls(); f != found || e != expired {
		t.Fatalf("busy polls went on after busy_poll was turned off: %v/%v, then %v/%v", found, expired, f, e)
	}
}

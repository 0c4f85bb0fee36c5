package integration

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
)

// iSNS ([isns]) against the real server: open-isns's isnsd on a free
// loopback port, in its own directory with its own config, checked with
// isnsadm over isnsd's local control socket.

const (
	isnsEntity = "blockport:integration"
	// isnsWait bounds the wait for a registration to appear or go. The
	// registrar notices a lost connection at once and retries after 1 s,
	// 2 s, 4 s...
	isnsWait = 20 * time.Second
	// isnsToolTime bounds one isnsadm or iscsi-ls run.
	isnsToolTime = 30 * time.Second
)

// isnsServer is one isnsd process. Its methods are called from the test
// goroutine only.
type isnsServer struct {
	t        *testing.T
	dir      string
	addr     string // 127.0.0.1:PORT, kept across restarts
	adminCfg string // isnsadm config: this server, its control socket
	isnsadm  string

	cmd    *exec.Cmd
	cancel context.CancelFunc
	exited chan struct{}
	output *logBuffer // every run's stdout and stderr
}

// startISNS runs isnsd in the foreground (-f) with an in-memory database
// (no Database line), so that a restart loses every registration, and
// without authentication (Security = 0), discovery domains only as
// configured (no default domain) and no SLP.
func startISNS(t *testing.T) *isnsServer {
	t.Helper()
	isnsd := sbinTool(t, "isnsd")
	s := &isnsServer{t: t, dir: TempDir(t), isnsadm: sbinTool(t, "isnsadm"), output: &logBuffer{}}
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	control := filepath.Join(s.dir, "control")
	serverCfg := fmt.Sprintf(`# isnsd for Blockport's integration tests
BindAddress = %s
SourceName = iqn.2026-11.io.blockport.test:isnsd
RegistrationPeriod = 2m
DefaultDiscoveryDomain = 0
SLPRegister = 0
Security = 0
PIDFile = %s
ControlSocket = %s
`, s.addr, filepath.Join(s.dir, "isnsd.pid"), control)
	s.adminCfg = filepath.Join(s.dir, "isnsadm.conf")
	adminCfg := fmt.Sprintf("ServerAddress = %s\nSourceName = iqn.2026-11.io.blockport.test:isnsadm\nSecurity = 0\nControlSocket = %s\n", s.addr, control)
	for name, text := range map[string]string{"isnsd.conf": serverCfg, "isnsadm.conf": adminCfg} {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("isnsd output:\n%s", s.output.String())
		}
	})
	s.start(isnsd)
	return s
}

func (s *isnsServer) start(isnsd string) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := CommandContext(ctx, isnsd, "-f", "-c", filepath.Join(s.dir, "isnsd.conf"))
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = s.output, s.output
	fmt.Fprintf(s.output, "=== %s\n", strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		cancel()
		s.t.Fatalf("start isnsd: %v", err)
	}
	s.cmd, s.cancel, s.exited = cmd, cancel, make(chan struct{})
	go func(exited chan struct{}) { cmd.Wait(); close(exited) }(s.exited)

	control := filepath.Join(s.dir, "control")
	deadline := time.Now().Add(StartTimeout)
	for {
		select {
		case <-s.exited:
			s.t.Fatalf("isnsd exited at start:\n%s", s.output.String())
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			if _, err = os.Stat(control); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("isnsd not listening on %s after %v: %v\n%s", s.addr, StartTimeout, err, s.output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// isnsadm's identity over the control socket must be a registered
	// control node to see (and change) the whole database.
	s.admin("--register", "control")
}

// stop ends isnsd: SIGTERM, then SIGKILL to its process group.
func (s *isnsServer) stop() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
	}
	s.cancel() // kills the group if anything is left
	<-s.exited
	s.cmd = nil
	os.Remove(filepath.Join(s.dir, "control"))
}

// restart stops isnsd and starts it again on the same port, with an empty
// database.
func (s *isnsServer) restart() {
	s.t.Helper()
	s.stop()
	s.start(sbinTool(s.t, "isnsd"))
}

// sbinTool is Tool for open-isns's programs, which Debian installs in
// /usr/sbin: a user's PATH may lack it.
func sbinTool(t *testing.T, name string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if p := filepath.Join("/usr/sbin", name); fileExists(p) {
			return p
		}
	}
	return Tool(t, name)
}

// admin runs isnsadm against this server as its control node.
func (s *isnsServer) admin(args ...string) string {
	s.t.Helper()
	return MustRun(s.t, isnsToolTime, s.isnsadm, append([]string{"-c", s.adminCfg, "--local"}, args...)...)
}

// list is `isnsadm --list TYPE`: entities, nodes, portals, portal-groups.
func (s *isnsServer) list(kind string) string {
	s.t.Helper()
	return s.admin("--list", kind)
}

// waitList polls `isnsadm --list kind` until its output does (present) or
// does not contain every one of wants.
func (s *isnsServer) waitList(kind string, present bool, wants ...string) {
	s.t.Helper()
	deadline := time.Now().Add(isnsWait)
	for {
		out := s.list(kind)
		ok := true
		for _, w := range wants {
			if strings.Contains(out, w) != present {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("after %v, isnsadm --list %s (want present=%v: %q):\n%s", isnsWait, kind, present, wants, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// isnsConfig is a one-target memory config with an [isns] section.
func isnsConfig(server string, discoveryDomains bool) string {
	return Config(testIQN, LUN{LUN: 0, Backstore: "memory", Size: "16MiB"}) + fmt.Sprintf(`
[isns]
server = %q
entity = %q
registration_period = "30s"
discovery_domains = %t
`, server, isnsEntity, discoveryDomains)
}

// TestISNSRegistration: Blockport registers its entity, target, alias,
// portal and portal group with isnsd at start; follows a reload that adds
// and removes a target; registers again after isnsd restarts with an
// empty database; and deregisters when it stops.
func TestISNSRegistration(t *testing.T) {
	isns := startISNS(t)
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	withMetrics := func(cfg string) string {
		return strings.Replace(cfg, "[server]\n", "[server]\nmetrics_listen = \""+metricsAddr+"\"\n", 1)
	}
	s := StartServer(t, withMetrics(isnsConfig(isns.addr, false)))
	_, port, _ := net.SplitHostPort(s.Addr)

	entityLine := `Entity identifier = "` + isnsEntity + `"`
	nodeLine := `iSCSI name = "` + testIQN + `"`
	isns.waitList("entities", true, entityLine)
	isns.waitList("nodes", true, nodeLine)
	nodes := isns.list("nodes")
	for _, want := range []string{"iSCSI node type = Target", `iSCSI alias = "integration"`} {
		if !strings.Contains(nodes, want) {
			t.Errorf("isnsadm --list nodes lacks %q:\n%s", want, nodes)
		}
	}
	portals := isns.list("portals")
	for _, want := range []string{"Portal IP address = 127.0.0.1", "Portal TCP/UDP port = " + port + "/tcp"} {
		if !strings.Contains(portals, want) {
			t.Errorf("isnsadm --list portals lacks %q:\n%s", want, portals)
		}
	}
	groups := isns.list("portal-groups")
	for _, want := range []string{`Portal group name = "` + testIQN + `"`, "Portal group port = " + port + "/tcp", "Portal group tag = 1"} {
		if !strings.Contains(groups, want) {
			t.Errorf("isnsadm --list portal-groups lacks %q:\n%s", want, groups)
		}
	}
	if code, body := httpGet(t, "http://"+metricsAddr+"/metrics"); code != 200 ||
		metricValue(t, body, `blockport_isns_registrations_total{result="success"}`) < 1 || metricValue(t, body, "blockport_isns_registered") != 1 {
		t.Errorf("iSNS metrics (status %d):\n%s", code, body)
	}
	socket := filepath.Join(s.Dir, "state", "admin.sock")
	if out := MustRun(t, DefaultToolTimeout, Binary(t), "status", "--socket", socket); !strings.Contains(out, "o- isns "+isns.addr+" [entity "+isnsEntity+"] [registered]") {
		t.Errorf("status lacks the iSNS registration:\n%s", out)
	}

	// Reload: a second target is registered, then deregistered.
	const second = "iqn.2026-11.io.blockport:isns-second"
	withSecond := withMetrics(isnsConfig(isns.addr, false)) + fmt.Sprintf("\n[[target]]\nname = %q\nallow_any_initiator = true\n", second)
	writeConfig(t, s, withSecond)
	MustRun(t, DefaultToolTimeout, Binary(t), "reload", "--socket", socket)
	isns.waitList("nodes", true, nodeLine, `iSCSI name = "`+second+`"`)
	writeConfig(t, s, withMetrics(isnsConfig(isns.addr, false)))
	MustRun(t, DefaultToolTimeout, Binary(t), "reload", "--socket", socket)
	isns.waitList("nodes", false, `iSCSI name = "`+second+`"`)
	isns.waitList("nodes", true, nodeLine)

	// isnsd restarts and has forgotten everything (its database is in
	// memory): Blockport notices the closed connection and registers again,
	// often before this test can look, so the log tells that it did.
	registrations := strings.Count(s.Output(), "registered with iSNS server")
	isns.restart()
	isns.waitList("nodes", true, nodeLine)
	deadline := time.Now().Add(isnsToolTime)
	for strings.Count(s.Output(), "registered with iSNS server") <= registrations {
		if time.Now().After(deadline) {
			t.Fatalf("no new registration logged after isnsd restarted:\n%s", s.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	isns.waitList("entities", true, entityLine)
	isns.waitList("portals", true, "Portal TCP/UDP port = "+port+"/tcp")

	// SIGTERM: Blockport deregisters before it exits.
	s.Stop()
	if out := isns.list("nodes"); strings.Contains(out, nodeLine) {
		t.Errorf("the target is still registered after blockport stopped:\n%s", out)
	}
	if out := isns.list("entities"); strings.Contains(out, entityLine) {
		t.Errorf("the entity is still registered after blockport stopped:\n%s", out)
	}
	if !strings.Contains(s.Output(), "deregistered from iSNS server") {
		t.Errorf("no deregistration logged:\n%s", s.Output())
	}
}

// TestISNSDiscoveryDomains: with discovery_domains, SendTargets lists the
// target only to an initiator that shares a discovery domain with it, and
// nothing to anyone while isnsd is unreachable (logged once).
func TestISNSDiscoveryDomains(t *testing.T) {
	iscsiLs := Tool(t, "iscsi-ls")
	isns := startISNS(t)
	s := StartServer(t, isnsConfig(isns.addr, true))
	isns.waitList("nodes", true, `iSCSI name = "`+testIQN+`"`)

	const (
		inDomain  = "iqn.1993-08.org.debian:01:isns-member"
		outDomain = "iqn.1993-08.org.debian:01:isns-stranger"
	)
	sendTargets := func(initiator string) string {
		t.Helper()
		return MustRun(t, isnsToolTime, iscsiLs, "-i", initiator, s.Portal())
	}
	if out := sendTargets(inDomain); strings.Contains(out, testIQN) {
		t.Fatalf("SendTargets lists the target to an initiator in no discovery domain:\n%s", out)
	}
	isns.admin("--dd-register", "dd-name=blockport-integration", "member-name="+inDomain, "member-name="+testIQN)
	if out := sendTargets(inDomain); !strings.Contains(out, testIQN) {
		t.Fatalf("SendTargets does not list the target to a member of its discovery domain:\n%s", out)
	}
	if out := sendTargets(outDomain); strings.Contains(out, testIQN) {
		t.Fatalf("SendTargets lists the target to an initiator outside its discovery domain:\n%s", out)
	}

	// isnsd gone: fail closed, and say so once.
	isns.stop()
	for range 2 {
		if out := sendTargets(inDomain); strings.Contains(out, testIQN) {
			t.Fatalf("SendTargets lists the target while the iSNS server is unreachable:\n%s", out)
		}
	}
	s.WaitOutput("discovery-domain check failed", 5*time.Second)
	if n := strings.Count(s.Output(), "discovery-domain check failed"); n != 1 {
		t.Errorf("the failed check was logged %d times, want once:\n%s", n, s.Output())
	}
}

// writeConfig replaces the server's config file (for a reload).
func writeConfig(t *testing.T, s *Server, text string) {
	t.Helper()
	text = strings.ReplaceAll(text, "{{DIR}}", s.Dir)
	if err := os.WriteFile(s.ConfigPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

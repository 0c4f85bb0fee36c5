package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LUN kinds every target serves.
const (
	KindMemory = "memory" // Blockport memory, tgt null, gotgt file on tmpfs
	KindFile   = "file"   // a pre-written 1 GiB file, O_DIRECT where the target can
)

// benchIQN is the target name every server uses.
const benchIQN = "iqn.2026-11.io.blockport:bench"

// Target is one iSCSI target server under test.
type Target interface {
	Name() string
	// Start launches the server on a free loopback port, serving both kinds.
	Start(ctx context.Context) error
	// Stop ends it and every process it started.
	Stop()
	PID() int
	Endpoint(kind string) Endpoint
	// Notes describes the backing of each kind, for the report.
	Notes() string
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPort polls addr until it accepts or d exits or limit passes.
func waitPort(addr string, d *Daemon, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if !d.Running() {
			return fmt.Errorf("%s exited before listening on %s: %s", d.Name, addr, lastLines(d.Output(), 5))
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %v: %s", d.Name, addr, limit, lastLines(d.Output(), 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- Blockport ----

type blockportTarget struct {
	bin        string
	dir        string // config, state and nothing else
	filePath   string // the file LUN's image, prepared by the harness; "" for no file LUN
	writeCache bool
	busyPoll   time.Duration // server.busy_poll; 0: off (the default)
	addr       string
	d          *Daemon
}

func (b *blockportTarget) Name() string { return "blockport" }
func (b *blockportTarget) PID() int     { return b.d.PID() }
func (b *blockportTarget) Notes() string {
	n := fmt.Sprintf("memory: backstore \"memory\"; file: backstore \"file\", direct_io = true, write_cache = %t", b.writeCache)
	if b.busyPoll > 0 {
		n += fmt.Sprintf("; busy_poll = %q", b.busyPoll)
	}
	return n
}

func (b *blockportTarget) Endpoint(kind string) Endpoint {
	lun := 0
	if kind == KindFile {
		lun = 1
	}
	return Endpoint{Portal: b.addr, IQN: benchIQN, LUN: lun}
}

// blockportConfig renders the bench config: both LUNs, and limits that let
// the multi-session mode log 64 sessions in at once; busy polling when
// busyPoll is set.
func blockportConfig(dir, filePath string, writeCache bool, busyPoll time.Duration) string {
	fileLUN := ""
	if filePath != "" {
		fileLUN = fmt.Sprintf(`
  [[target.lun]]
  lun = 1
  backstore = "file"
  path = %q
  size = "1GiB"
  block_size = 512
  direct_io = true
  write_cache = %t
`, filePath, writeCache)
	}
	poll := ""
	if busyPoll > 0 {
		poll = fmt.Sprintf("busy_poll = %q\n", busyPoll)
	}
	return fmt.Sprintf(`[server]
listen = ["127.0.0.1:3260"] # replaced by --listen
state_dir = %q
%s
[limits]
max_logins_per_source = 128

[[target]]
name = %q
allow_any_initiator = true

  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "1GiB"
  block_size = 512
`, filepath.Join(dir, "state"), poll, benchIQN) + fileLUN
}

func (b *blockportTarget) Start(ctx context.Context) error {
	cfg := filepath.Join(b.dir, "blockport.toml")
	if err := os.WriteFile(cfg, []byte(blockportConfig(b.dir, b.filePath, b.writeCache, b.busyPoll)), 0o644); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	b.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	b.d, err = startDaemon("blockport", b.dir, nil, b.bin, "serve", "--config", cfg, "--listen", b.addr)
	if err != nil {
		return err
	}
	if err := waitPort(b.addr, b.d, 15*time.Second); err != nil {
		b.d.Stop(time.Second)
		return err
	}
	// The port may open before the targets are configured: wait for the
	// ready line.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.d.Output(), "blockport: serving ") {
		if time.Now().After(deadline) || !b.d.Running() {
			b.d.Stop(time.Second)
			return fmt.Errorf("blockport not ready: %s", lastLines(b.d.Output(), 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func (b *blockportTarget) Stop() {
	if b.d != nil {
		b.d.Stop(10 * time.Second)
		b.d = nil
	}
}

// ---- tgt (Linux SCSI target framework, user-space tgtd) ----

type tgtTarget struct {
	dir         string
	filePath    string // "" for no file LUN
	writeCache  bool
	addr        string
	controlPort int
	d           *Daemon
}

func (t *tgtTarget) Name() string { return "tgt" }
func (t *tgtTarget) PID() int     { return t.d.PID() }
func (t *tgtTarget) Notes() string {
	flags := "direct"
	if !t.writeCache {
		flags = "direct,sync"
	}
	return fmt.Sprintf("memory: --bstype null (reads return no data); file: --bstype rdwr --bsoflags %s", flags)
}

func (t *tgtTarget) Endpoint(kind string) Endpoint {
	// tgt's LUN 0 is its controller; data LUNs start at 1.
	lun := 2
	if kind == KindFile {
		lun = 1
	}
	return Endpoint{Portal: t.addr, IQN: benchIQN, LUN: lun}
}

// ensureTgt installs Debian's tgt when tgtd is missing and we are root.
func ensureTgt(ctx context.Context) error {
	if _, err := exec.LookPath("tgtd"); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("tgtd not found: install the Debian package tgt (apt-get install tgt), or leave tgt out with -targets")
	}
	fmt.Fprintln(os.Stderr, "bench: installing tgt with apt-get")
	if _, err := runTool(ctx, 5*time.Minute, "apt-get", "install", "-y", "--no-install-recommends", "tgt"); err != nil {
		if _, uerr := runTool(ctx, 5*time.Minute, "apt-get", "update"); uerr != nil {
			return fmt.Errorf("apt-get update: %w", uerr)
		}
		if _, err := runTool(ctx, 5*time.Minute, "apt-get", "install", "-y", "--no-install-recommends", "tgt"); err != nil {
			return fmt.Errorf("apt-get install tgt: %w", err)
		}
	}
	_, err := exec.LookPath("tgtd")
	return err
}

func (t *tgtTarget) tgtadm(ctx context.Context, args ...string) error {
	full := append([]string{"-C", strconv.Itoa(t.controlPort), "--lld", "iscsi"}, args...)
	_, err := runTool(ctx, 20*time.Second, "tgtadm", full...)
	return err
}

func (t *tgtTarget) Start(ctx context.Context) error {
	if err := ensureTgt(ctx); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	t.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// The management channel is an abstract socket named after the control
	// port: pick one no system tgtd (port 0) uses, within the 0..32767
	// tgtd accepts.
	t.controlPort = 1 + os.Getpid()%32000
	// -f: foreground, so the PID measured is tgtd's; the portal option
	// keeps it on loopback.
	t.d, err = startDaemon("tgtd", t.dir, nil, "tgtd", "-f", "-C", strconv.Itoa(t.controlPort), "--iscsi", "portal="+t.addr)
	if err != nil {
		return err
	}
	if err := waitPort(t.addr, t.d, 15*time.Second); err != nil {
		t.d.Stop(time.Second)
		return err
	}
	flags := "direct"
	if !t.writeCache {
		flags = "direct,sync"
	}
	steps := [][]string{{"--op", "new", "--mode", "target", "--tid", "1", "-T", benchIQN}}
	if t.filePath != "" {
		steps = append(steps, []string{"--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "--bstype", "rdwr", "--bsoflags", flags, "-b", t.filePath})
	}
	steps = append(steps,
		[]string{"--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "2", "--bstype", "null", "-b", "bench-null"},
		[]string{"--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"})
	for _, s := range steps {
		if err := t.tgtadm(ctx, s...); err != nil {
			t.d.Stop(time.Second)
			return fmt.Errorf("configure tgtd: %w", err)
		}
	}
	return nil
}

// Stop: tgtd does not exit on SIGTERM while it has targets, so after a
// short grace it is killed; it holds no state worth a clean stop here.
func (t *tgtTarget) Stop() {
	if t.d != nil {
		t.d.Stop(2 * time.Second)
		t.d = nil
	}
}

// ---- gotgt ----

// gotgtVersion is the pinned gotgt release, fetched through the Go module
// proxy and built locally (it is not committed).
const gotgtVersion = "v0.2.2"

// gotgtListenPatch makes gotgt listen on loopback only: v0.2.2 binds every
// interface (":PORT") and has no option for it. It is the only change.
var gotgtListenPatch = [2]string{`net.Listen("tcp", ":"+strconv.Itoa(port))`, `net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))`}

// buildGotgt returns a gotgt binary: the cached one, or one built now from
// the module proxy's source into cacheDir.
func buildGotgt(ctx context.Context, cacheDir string) (string, error) {
	bin := filepath.Join(cacheDir, "gotgt-"+gotgtVersion+"-loopback")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(cacheDir, "gotgt-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	fmt.Fprintf(os.Stderr, "bench: building gotgt %s (once; cached in %s)\n", gotgtVersion, cacheDir)
	// Outside any module, so the download does not touch go.mod.
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/gostor/gotgt@"+gotgtVersion)
	dl.Dir = work
	dl.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := dl.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download gotgt: %w: %s", err, out)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download gotgt: %v %s", err, mod.Error)
	}
	src := filepath.Join(work, "src")
	if err := copyTree(mod.Dir, src); err != nil {
		return "", err
	}
	listen := filepath.Join(src, "pkg", "port", "iscsit", "iscsid.go")
	text, err := os.ReadFile(listen)
	if err != nil {
		return "", err
	}
	if !strings.Contains(string(text), gotgtListenPatch[0]) {
		return "", fmt.Errorf("gotgt %s: listen call not found in %s; update gotgtListenPatch", gotgtVersion, listen)
	}
	patched := strings.Replace(string(text), gotgtListenPatch[0], gotgtListenPatch[1], 1)
	if err := os.WriteFile(listen, []byte(patched), 0o644); err != nil {
		return "", err
	}
	tmpBin := filepath.Join(work, "gotgt")
	build := exec.CommandContext(ctx, "go", "build", "-o", tmpBin, ".")
	build.Dir = src
	// No cgo: that leaves out the Ceph backing store and its C library.
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build gotgt: %w: %s", err, out)
	}
	return bin, os.Rename(tmpBin, bin)
}

// copyTree copies a read-only module tree into a writable one.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
}

type gotgtTarget struct {
	bin      string
	dir      string // GOSTOR_CONFIG directory
	filePath string // the file LUN; "" for none
	memPath  string // the memory LUN: a file on tmpfs
	addr     string
	d        *Daemon
}

func (g *gotgtTarget) Name() string { return "gotgt" }
func (g *gotgtTarget) PID() int     { return g.d.PID() }
func (g *gotgtTarget) Notes() string {
	return "memory: file on tmpfs (its null store reports size 0); file: file backing store (buffered: gotgt has no O_DIRECT); " + gotgtVersion + " patched to listen on 127.0.0.1 only"
}

func (g *gotgtTarget) Endpoint(kind string) Endpoint {
	lun := 0
	if kind == KindFile {
		lun = 1
	}
	return Endpoint{Portal: g.addr, IQN: benchIQN, LUN: lun}
}

func (g *gotgtTarget) Start(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	apiPort, err := freePort()
	if err != nil {
		return err
	}
	g.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	type storage struct {
		DeviceID   int    `json:"deviceID"`
		Path       string `json:"path"`
		Online     bool   `json:"online"`
		BlockShift int    `json:"blockShift"`
	}
	type portal struct {
		ID     int    `json:"id"`
		Portal string `json:"portal"`
	}
	type tgt struct {
		TPGTs map[string][]int `json:"tpgts"`
		LUNs  map[string]int   `json:"luns"`
	}
	cfg := struct {
		Storages []storage      `json:"storages"`
		Portals  []portal       `json:"iscsiportals"`
		Targets  map[string]tgt `json:"iscsitargets"`
	}{
		Storages: []storage{{DeviceID: 1000, Path: "file:" + g.memPath, Online: true, BlockShift: 9}},
		Portals:  []portal{{ID: 0, Portal: g.addr}},
		Targets:  map[string]tgt{benchIQN: {TPGTs: map[string][]int{"1": {0}}, LUNs: map[string]int{"0": 1000}}},
	}
	if g.filePath != "" {
		cfg.Storages = append(cfg.Storages, storage{DeviceID: 1001, Path: "file:" + g.filePath, Online: true, BlockShift: 9})
		cfg.Targets[benchIQN].LUNs["1"] = 1001
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(g.dir, "config.json"), data, 0o644); err != nil {
		return err
	}
	g.d, err = startDaemon("gotgt", g.dir, []string{"GOSTOR_CONFIG=" + g.dir}, g.bin,
		"daemon", "--port", strconv.Itoa(port), "--host", "tcp://127.0.0.1:"+strconv.Itoa(apiPort), "--log", "error")
	if err != nil {
		return err
	}
	if err := waitPort(g.addr, g.d, 15*time.Second); err != nil {
		g.d.Stop(time.Second)
		return err
	}
	return nil
}

func (g *gotgtTarget) Stop() {
	if g.d != nil {
		g.d.Stop(5 * time.Second)
		g.d = nil
	}
}

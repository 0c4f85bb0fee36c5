package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/blockport/blockport/config"
	"github.com/blockport/blockport/target"
	"github.com/blockport/blockport/target/metrics"
)

// operations is what runs beside the iSCSI portals: the metrics listener,
// the admin socket, SIGHUP reloads and systemd notifications.
type operations struct {
	log     *slog.Logger
	servers []*http.Server
	sighup  chan os.Signal
	done    chan struct{}
	wg      sync.WaitGroup
}

// startOperations wires metrics, the admin API and SIGHUP to srv. reload
// re-reads the config file as serve read it (same overrides).
func startOperations(srv *target.Server, cfg *config.Config, reload func() (*config.Config, error), log *slog.Logger) (*operations, error) {
	ops := &operations{log: log, done: make(chan struct{})}
	apply := func() (*target.ReloadReport, error) {
		sdNotify("RELOADING=1\nMONOTONIC_USEC=" + fmt.Sprint(time.Now().UnixMicro()))
		defer sdNotify("READY=1")
		c, err := reload()
		if err != nil {
			log.Error("reload refused: config invalid, nothing changed", "err", strings.TrimSpace(err.Error()))
			return nil, err
		}
		rep, err := srv.Reload(c)
		if err != nil {
			log.Error("reload failed", "err", err)
			return nil, err
		}
		for _, ch := range rep.Changes {
			log.Info("reload", "change", ch)
		}
		for _, w := range rep.Warnings {
			log.Warn("reload", "warning", w)
		}
		log.Info("reload done", "changes", len(rep.Changes), "warnings", len(rep.Warnings))
		return rep, nil
	}

	if addr := cfg.Server.MetricsListen; addr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		m, err := metrics.New(reg, srv, versionString())
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		srv.SetObserver(m)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
		}
		ops.serve(ln, metrics.Handler(reg, srv.Ready))
		log.Info("metrics", "listen", ln.Addr().String())
	}
	if path := cfg.Server.AdminSocketPath(); path != "" {
		ln, err := target.ListenAdmin(path)
		if err != nil {
			ops.stop()
			return nil, err
		}
		ops.serve(ln, srv.AdminHandler(apply))
		log.Info("admin API", "socket", path)
	}
	ops.sighup = make(chan os.Signal, 1)
	signal.Notify(ops.sighup, syscall.SIGHUP)
	ops.wg.Add(1)
	go func() {
		defer ops.wg.Done()
		for {
			select {
			case <-ops.sighup:
				log.Info("SIGHUP: reloading the config")
				apply()
			case <-ops.done:
				return
			}
		}
	}()
	return ops, nil
}

func (o *operations) serve(ln net.Listener, h http.Handler) {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	o.servers = append(o.servers, hs)
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("http listener ended", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

// ready tells systemd (Type=notify) that the portals accept connections.
func (o *operations) ready() { sdNotify("READY=1") }

func (o *operations) stop() {
	sdNotify("STOPPING=1")
	if o.sighup != nil {
		signal.Stop(o.sighup)
	}
	close(o.done)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, hs := range o.servers {
		hs.Shutdown(ctx)
	}
	o.wg.Wait()
}

// sdNotify sends a state to systemd's notification socket when there is
// one (sd_notify(3): a datagram to $NOTIFY_SOCKET; "@" means the abstract
// namespace). Without systemd it does nothing.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// adminSocketFlags resolves the admin socket of `status` and `reload`:
// --socket, else the config's admin_socket, else the built-in config's.
func adminSocket(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (string, *flag.FlagSet, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "the server's config file (to find its admin socket)")
	socket := fs.String("socket", "", "the admin socket (default: the config's server.admin_socket)")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "blockport %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", nil, exitUsage
	}
	if *socket != "" {
		return *socket, fs, exitOK
	}
	cfg := config.Default()
	if *cfgPath != "" {
		c, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return "", nil, exitUsage
		}
		cfg = c
	}
	p := cfg.Server.AdminSocketPath()
	if p == "" {
		fmt.Fprintf(stderr, "blockport %s: the admin API is off (server.admin_socket = \"off\")\n", name)
		return "", nil, exitUsage
	}
	return p, fs, exitOK
}

func reloadCmd(args []string, stdout, stderr io.Writer) int {
	path, _, code := adminSocket("reload", args, stderr, nil)
	if code != exitOK {
		return code
	}
	rep, err := target.NewAdminClient(path).Reload()
	if err != nil {
		fmt.Fprintf(stderr, "blockport reload: %v\n", strings.TrimSpace(err.Error()))
		return exitFailure
	}
	if len(rep.Changes) == 0 {
		fmt.Fprintln(stdout, "no changes")
	}
	for _, c := range rep.Changes {
		fmt.Fprintln(stdout, c)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	return exitOK
}

func statusCmd(args []string, stdout, stderr io.Writer) int {
	var asJSON *bool
	path, _, code := adminSocket("status", args, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
	})
	if code != exitOK {
		return code
	}
	st, err := target.NewAdminClient(path).Status()
	if err != nil {
		fmt.Fprintf(stderr, "blockport status: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return exitOK
	}
	printStatus(stdout, st, time.Now())
	return exitOK
}

// printStatus draws the status as a tree, as targetcli's ls does.
func printStatus(w io.Writer, st *target.Status, now time.Time) {
	fmt.Fprintf(w, "o- blockport [portals: %s] [up %s] [connections: %d]\n",
		strings.Join(st.Portals, ", "), now.Sub(st.Started).Round(time.Second), st.Fabric.ActiveConnections)
	if is := st.ISNS; is != nil {
		state := "not registered"
		if is.Registered {
			state = "registered"
		}
		fmt.Fprintf(w, "  o- isns %s [entity %s] [%s] [registrations %d, failed %d]\n",
			is.Server, is.Entity, state, is.Registrations, is.RegistrationFailures+is.RefreshFailures)
	}
	for ti, t := range st.Targets {
		last := ti == len(st.Targets)-1
		branch, indent := "  o- ", "  |  "
		if last {
			indent = "     "
		}
		access := "any initiator"
		if !t.AllowAnyInitiator {
			access = fmt.Sprintf("%d ACLs", len(t.ACLs))
		}
		alias := ""
		if t.Alias != "" {
			alias = " (" + t.Alias + ")"
		}
		fmt.Fprintf(w, "%s%s%s [%s] [sessions: %d]\n", branch, t.Name, alias, access, len(t.Sessions))
		fmt.Fprintf(w, "%so- luns [%d]\n", indent, len(t.LUNs))
		for _, l := range t.LUNs {
			alloc := ""
			if l.Allocated >= 0 {
				alloc = ", allocated " + humanBytes(l.Allocated)
			}
			ro := ""
			if l.ReadOnly {
				ro = ", read-only"
			}
			where := l.Backstore
			if l.Path != "" {
				where += " " + l.Path
			}
			s := l.Stats
			fmt.Fprintf(w, "%s|  o- lun%d [%s] [%s%s, %d-byte blocks%s] [reads %d (%s), writes %d (%s), errors %d]\n",
				indent, l.LUN, where, humanBytes(l.Size), alloc, l.BlockSize, ro,
				s.Commands[1], humanBytes(int64(s.Bytes[1])), s.Commands[2], humanBytes(int64(s.Bytes[2])), sumErrors(s.SenseKeys))
		}
		fmt.Fprintf(w, "%so- sessions [%d]\n", indent, len(t.Sessions))
		for _, se := range t.Sessions {
			fmt.Fprintf(w, "%s   o- %s [isid %s] [tsih %d] [from %s] [age %s]\n", indent, se.Initiator, se.ISID, se.TSIH, se.Remote, se.Age)
			keys := make([]string, 0, len(se.Params))
			for k := range se.Params {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			parts := make([]string, len(keys))
			for i, k := range keys {
				parts[i] = k + "=" + se.Params[k]
			}
			fmt.Fprintf(w, "%s      %s\n", indent, strings.Join(parts, " "))
		}
	}
}

func sumErrors(keys [16]uint64) uint64 {
	var n uint64
	for i, v := range keys {
		if i != 6 { // UNIT ATTENTION is an announcement, not a failure
			n += v
		}
	}
	return n
}

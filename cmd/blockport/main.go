// Command blockport is the Blockport iSCSI target server.
//
//	blockport serve [--config FILE] [--listen ADDR]...
//	blockport validate --config FILE
//	blockport image create --backstore sparse|file --size SIZE [--block-size N] [--force] PATH
//	blockport image info PATH
//	blockport version
//
// Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/config"
	"github.com/blockport/blockport/target"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// shutdownGrace bounds how long in-flight commands may take at shutdown.
const shutdownGrace = 20 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  blockport serve [--config FILE] [--listen ADDR]...   serve targets (no config: a 1 GiB lab disk on 127.0.0.1:3260)
  blockport validate --config FILE                     check a config file
  blockport image create|info ...                      create or describe a file or sparse image
  blockport status [--config FILE|--socket P] [--json] targets, LUNs and sessions of a running server
  blockport reload [--config FILE|--socket P]          make a running server re-read its config (as SIGHUP)
  blockport version                                    print the version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "image":
		return image(args[1:], stdout, stderr)
	case "status":
		return statusCmd(args[1:], stdout, stderr)
	case "reload":
		return reloadCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		printVersion(stdout)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "blockport: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "TOML config file (default: the built-in lab config)")
	var listen listFlag
	fs.Var(&listen, "listen", "portal address host:port, overrides [server] listen (repeatable)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "blockport serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	var cfg *config.Config
	if *cfgPath == "" {
		cfg = config.Default()
	} else {
		c, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
		cfg = c
	}
	if len(listen) > 0 {
		cfg.Server.Listen = listen
		if err := cfg.Validate(); err != nil {
			fmt.Fprintf(stderr, "blockport serve: --listen: %v\n", err)
			return exitUsage
		}
	}
	log := newLogger(stderr, cfg.Server.LogLevel, cfg.Server.LogFormat)

	// Signals are caught before anything is opened, so a SIGTERM that
	// arrives while the server starts (a supervisor that saw the ready line,
	// or gave up waiting) still ends in an orderly shutdown and exit 0,
	// never the default action's death with backstores half flushed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := target.New(cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFailure
	}
	if err := srv.Listen(); err != nil {
		log.Error("start failed", "err", err)
		srv.Shutdown(context.Background())
		return exitFailure
	}
	addrs := srv.Addrs()
	for _, t := range cfg.Targets {
		lun := uint64(0)
		if len(t.LUNs) > 0 {
			lun = t.LUNs[0].ID
		}
		fmt.Fprintf(stdout, "blockport: serving %s on %s (%s)\n", t.Name, strings.Join(addrs, ", "),
			target.URL(addrs[0], t.Name, lun))
	}

	// Live reload reads the file again with the same overrides (operate.go).
	reloadConfig := func() (*config.Config, error) {
		if *cfgPath == "" {
			return config.Default(), nil
		}
		c, err := config.Load(*cfgPath)
		if err != nil {
			return nil, err
		}
		if len(listen) > 0 {
			c.Server.Listen = listen
		}
		return c, nil
	}
	ops, err := startOperations(srv, cfg, reloadConfig, log)
	if err != nil {
		log.Error("start failed", "err", err)
		srv.Shutdown(context.Background())
		return exitFailure
	}
	defer ops.stop()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	ops.ready()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			log.Error("serve failed", "err", err)
			shutdown(srv, log)
			return exitFailure
		}
		// Every portal of the start was removed by reloads; keep serving
		// the ones reload added until told to stop.
		<-ctx.Done()
	}
	// From here a second SIGINT or SIGTERM has its default effect: an
	// operator who will not wait out the grace can end the process.
	stop()
	log.Info("shutting down (a second signal ends the process at once)", "grace", shutdownGrace)
	if err := shutdown(srv, log); err != nil {
		return exitFailure
	}
	return exitOK
}

func shutdown(srv *target.Server, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
		return err
	}
	log.Info("stopped")
	return nil
}

func validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "TOML config file to check")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *cfgPath == "" {
		if fs.NArg() == 1 {
			*cfgPath = fs.Arg(0)
		} else {
			fmt.Fprintln(stderr, "blockport validate: --config FILE is required")
			return exitUsage
		}
	}
	if _, err := config.Load(*cfgPath); err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			fmt.Fprintln(stderr, strings.TrimRight(cerr.Error(), "\n"))
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", *cfgPath, err)
		}
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok\n", *cfgPath)
	return exitOK
}

// versionString is the version, or dev-<commit> for a development build.
func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v = "dev-" + s.Value[:12]
			}
		}
	}
	return v
}

func printVersion(w io.Writer) {
	v := versionString()
	fmt.Fprintf(w, "blockport %s %s %s/%s backstores: %s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH,
		strings.Join(backstore.Kinds(), ","))
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

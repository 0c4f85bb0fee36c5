package target

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/config"
	"github.com/blockport/blockport/target/iscsi"
)

// freeAddr is host with a port that was free a moment ago (the config
// takes no port 0).
func freeAddr(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// testConfig serves one target with a memory LUN on the listen addresses.
func testConfig(t *testing.T, stateDir string, listen ...string) *config.Config {
	t.Helper()
	text := `[server]
listen = ["` + strings.Join(listen, `", "`) + `"]
state_dir = "` + stateDir + `"
admin_socket = "off"

[[target]]
name = "iqn.2026-12.io.blockport:unit"
allow_any_initiator = true
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "1MiB"
`
	cfg, err := config.Parse("test.toml", []byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testServer is a listening server with one memory LUN on a port the
// kernel picks.
func testServer(t *testing.T) *Server {
	t.Helper()
	return startServer(t, testConfig(t, t.TempDir(), freeAddr(t, "127.0.0.1")))
}

func startServer(t *testing.T, cfg *config.Config) *Server {
	t.Helper()
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Shutdown(context.Background())
		t.Fatal(err)
	}
	return s
}

// TestServeShutdownOrder: Shutdown may come before, during or after Serve
// starts (a SIGTERM right after the ready line). Serve then returns nil and
// starts no accept loop that Shutdown does not wait for; -race checks the
// ordering of the loops' count against Shutdown's wait.
func TestServeShutdownOrder(t *testing.T) {
	for _, c := range []struct {
		name  string
		delay time.Duration // between starting Serve and Shutdown; <0: Shutdown first
	}{
		{"shutdown first", -1},
		{"together", 0},
		{"after a yield", time.Microsecond},
		{"serving", 20 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			for range 10 {
				s := testServer(t)
				errc := make(chan error, 1)
				if c.delay < 0 {
					if err := s.Shutdown(context.Background()); err != nil {
						t.Fatal(err)
					}
					go func() { errc <- s.Serve(context.Background()) }()
				} else {
					go func() { errc <- s.Serve(context.Background()) }()
					time.Sleep(c.delay)
					if err := s.Shutdown(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				select {
				case err := <-errc:
					if err != nil {
						t.Fatalf("Serve: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Serve did not return after Shutdown")
				}
				if s.Ready() {
					t.Fatal("ready after Shutdown")
				}
			}
		})
	}
}

// TestKeepStoresAfterClose: a backstore a reload opens after Shutdown closed
// the others is closed at once, not left open and unflushed.
func TestKeepStoresAfterClose(t *testing.T) {
	s := testServer(t)
	open := func() backstore.Backstore {
		b, err := backstore.Open(backstore.Options{Kind: "memory", Size: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := open()
	if err := s.keepStores(namedStore{target: "t", lun: 1, store: before}); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := open()
	if err := s.keepStores(namedStore{target: "t", lun: 2, store: after}); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]backstore.Backstore{"kept before Shutdown": before, "kept after": after} {
		if _, err := b.ReadAt(make([]byte, 512), 0); !errors.Is(err, backstore.ErrClosed) {
			t.Errorf("%s: read after Shutdown: %v, want ErrClosed", name, err)
		}
	}
}

// TestReloadPortalsByAddress: reload finds the portals to close by their
// address, not by their place in the list, which reloads reorder: after
// [A B] -> [A C B] the bound portals are A B C, and [A C] must close B.
func TestReloadPortalsByAddress(t *testing.T) {
	a, b, c := freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1")
	dir := t.TempDir()
	s := startServer(t, testConfig(t, dir, a, b))
	defer s.Shutdown(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx)
	for _, listen := range [][]string{{a, c, b}, {a, c}} {
		rep, err := s.Reload(testConfig(t, dir, listen...))
		if err != nil {
			t.Fatalf("reload to %v: %v", listen, err)
		}
		if len(rep.Warnings) > 0 {
			t.Fatalf("reload to %v: warnings %v", listen, rep.Warnings)
		}
	}
	for addr, want := range map[string]bool{a: true, b: false, c: true} {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if conn != nil {
			conn.Close()
		}
		if got := err == nil; got != want {
			t.Errorf("%s accepts connections: %v, want %v (err %v)", addr, got, want, err)
		}
	}
	if got := s.Addrs(); len(got) != 2 || !slices.Contains(got, a) || !slices.Contains(got, c) {
		t.Errorf("Addrs() = %v, want %s and %s", got, a, c)
	}
}

// flakyListener fails its first n Accepts as a listener out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	n, calls atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.calls.Add(1) <= l.n.Load() {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestAcceptRetries: a failing Accept pauses and retries; the portal
// serves again once the cause is gone, and Shutdown still ends the loop.
func TestAcceptRetries(t *testing.T) {
	s := testServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln}
	fl.n.Store(4)
	s.wg.Add(1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		defer s.wg.Done()
		s.acceptLoop(context.Background(), fl, iscsi.Portal{Addr: ln.Addr().String(), TPGT: 1})
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.svc.Stats().ActiveConnections == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after %d accept calls", fl.calls.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c := fl.calls.Load(); c < 5 {
		t.Fatalf("%d accept calls, want the 4 failures and a success", c)
	}
	ln.Close()
	s.Shutdown(context.Background())
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("accept loop did not end after its listener closed")
	}
}

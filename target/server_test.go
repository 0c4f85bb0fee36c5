package target

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/config"
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

// testServer is a listening server with one memory LUN on a port the
// kernel picks.
func testServer(t *testing.T) *Server {
	t.Helper()
	text := `[server]
listen = ["` + freeAddr(t, "127.0.0.1") + `"]
state_dir = "` + t.TempDir() + `"
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

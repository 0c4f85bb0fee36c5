package target

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blockport/blockport/config"
	"github.com/blockport/blockport/target/iscsi/isns"
)

// TestISNSRegistration: the registration describes the bound portals
// (with the ports the kernel chose) and every target, with the tag it has
// on each portal it is reached through.
func TestISNSRegistration(t *testing.T) {
	a1, a2 := freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.2")
	text := `[server]
listen = ["` + a1 + `", "` + a2 + `"]
state_dir = "` + t.TempDir() + `"
admin_socket = "off"

[isns]
server = "127.0.0.1:1"
entity = "blockport:unit"
registration_period = "1m"

[[target]]
name = "iqn.2026-11.io.blockport:a"
alias = "alpha"
allow_any_initiator = true

[[target]]
name = "iqn.2026-11.io.blockport:b"
allow_any_initiator = true
  [[target.portal_group]]
  tag = 7
  addresses = ["` + a2 + `"]
`
	cfg, err := config.Parse("test.toml", []byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	var bound []netip.AddrPort
	for _, a := range s.Addrs() {
		bound = append(bound, netip.MustParseAddrPort(a))
	}
	reg := s.isnsRegistration()
	want := isns.Registration{
		EntityID: "blockport:unit",
		Period:   time.Minute,
		Portals:  []isns.Portal{{Addr: bound[0]}, {Addr: bound[1]}},
		Nodes: []isns.Node{
			{Name: "iqn.2026-11.io.blockport:a", Alias: "alpha", PortalGroups: []isns.PortalGroup{{Portal: bound[0], Tag: 1}, {Portal: bound[1], Tag: 1}}},
			{Name: "iqn.2026-11.io.blockport:b", PortalGroups: []isns.PortalGroup{{Portal: bound[1], Tag: 7}}},
		},
	}
	if !reflect.DeepEqual(reg, want) {
		t.Fatalf("registration\n%+v\nwant\n%+v", reg, want)
	}
	if err := reg.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Status().ISNS == nil || s.Status().ISNS.Entity != "blockport:unit" {
		t.Fatalf("status %+v", s.Status().ISNS)
	}
}

func TestISNSEntityDefault(t *testing.T) {
	cfg := &config.Config{ISNS: &config.ISNS{Entity: "san1"}}
	if got := isnsEntity(cfg); got != "san1" {
		t.Errorf("configured entity: %q", got)
	}
	cfg.ISNS.Entity = ""
	if got := isnsEntity(cfg); !strings.HasPrefix(got, "blockport:") || len(got) <= len("blockport:") {
		t.Errorf("default entity %q", got)
	}
	if newISNSLink(&config.Config{}, slog.Default()) != nil {
		t.Error("an iSNS link without [isns]")
	}
}

// syncBuffer is a log sink for a handler used from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestISNSDiscoveryFailsClosed: with the iSNS server unreachable, an
// initiator discovers nothing, and the failure is logged once.
func TestISNSDiscoveryFailsClosed(t *testing.T) {
	var logs syncBuffer
	d := &isnsDiscovery{client: isns.NewClient("127.0.0.1:1", time.Second), log: slog.New(slog.NewTextHandler(&logs, nil))}
	defer d.client.Close()
	for range 3 {
		if got := d.VisibleTargets("iqn.1993-08.org.debian:01:x", []string{"iqn.2026-11.io.blockport:a"}); got != nil {
			t.Fatalf("visible %q with the server unreachable", got)
		}
	}
	if n := strings.Count(logs.String(), "discovery-domain check failed"); n != 1 {
		t.Fatalf("logged %d times:\n%s", n, logs.String())
	}
	// A name no discovery domain can hold sees nothing, without asking.
	if got := d.VisibleTargets("not-an-iscsi-name", []string{"iqn.2026-11.io.blockport:a"}); got != nil {
		t.Fatalf("visible %q to an invalid name", got)
	}
}

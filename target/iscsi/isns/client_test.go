package isns

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	nodeA = "iqn.2026-11.io.blockport:a"
	nodeB = "iqn.2026-11.io.blockport:b"
	init1 = "iqn.1993-08.org.debian:01:init1"
)

var (
	portal1 = netip.MustParseAddrPort("127.0.0.1:3260")
	portal2 = netip.MustParseAddrPort("127.0.0.1:3261")
)

// twoTargets registers nodes a and b; a on both portals, b on the first.
func twoTargets() Registration {
	return Registration{
		EntityID: "blockport:test",
		Period:   time.Minute,
		Portals:  []Portal{{Addr: portal1}, {Addr: portal2}},
		Nodes: []Node{
			{Name: nodeA, Alias: "a", PortalGroups: []PortalGroup{{Portal: portal1, Tag: 1}, {Portal: portal2, Tag: 2}}},
			{Name: nodeB, PortalGroups: []PortalGroup{{Portal: portal1, Tag: 1}}},
		},
	}
}

func TestClientRegisterQueryDeregister(t *testing.T) {
	srv := newFakeServer(t)
	srv.set(func(s *fakeServer) { s.period = 300 })
	c := NewClient(srv.addr, 2*time.Second)
	defer c.Close()
	ctx := context.Background()

	got, err := c.Register(ctx, twoTargets(), true)
	if err != nil {
		t.Fatal(err)
	}
	if got != (Registered{EntityID: "blockport:test", Period: 5 * time.Minute}) {
		t.Fatalf("Register = %+v", got)
	}
	e := srv.entity("blockport:test")
	if e == nil || !reflect.DeepEqual(e.nodes, []string{nodeA, nodeB}) || !reflect.DeepEqual(e.portals, []netip.AddrPort{portal1, portal2}) {
		t.Fatalf("server holds %+v", e)
	}
	if req := srv.log()[0]; !req.Replace || req.Source.String() != `iSCSI Name="`+nodeA+`"` {
		t.Fatalf("DevAttrReg %+v: want replace, source the first node", req)
	}

	if ok, err := c.IsRegistered(ctx, nodeA, "blockport:test"); !ok || err != nil {
		t.Fatalf("IsRegistered = %v, %v", ok, err)
	}
	if ok, err := c.IsRegistered(ctx, nodeA, "blockport:other"); ok || err != nil {
		t.Fatalf("IsRegistered under another entity = %v, %v", ok, err)
	}

	srv.set(func(s *fakeServer) { s.domains[init1] = []string{nodeB} })
	if v, err := c.VisibleTargets(ctx, init1); err != nil || !reflect.DeepEqual(v, []string{nodeB}) {
		t.Fatalf("VisibleTargets = %q, %v", v, err)
	}
	if v, err := c.VisibleTargets(ctx, "iqn.1993-08.org.debian:01:nobody"); err != nil || v != nil {
		t.Fatalf("VisibleTargets of an initiator in no domain = %q, %v (No Such Entry is an empty answer)", v, err)
	}

	if err := c.Deregister(ctx, nodeA, "blockport:test", []string{nodeB}, []netip.AddrPort{portal2}); err != nil {
		t.Fatal(err)
	}
	if e := srv.entity("blockport:test"); !reflect.DeepEqual(e.nodes, []string{nodeA}) || !reflect.DeepEqual(e.portals, []netip.AddrPort{portal1}) {
		t.Fatalf("after deregistering b and portal 2: %+v", e)
	}
	if err := c.Deregister(ctx, nodeA, "blockport:test", nil, nil); err != nil {
		t.Fatal(err)
	}
	if e := srv.entity("blockport:test"); e != nil {
		t.Fatalf("entity left: %+v", e)
	}
	if ok, err := c.IsRegistered(ctx, nodeA, "blockport:test"); ok || err != nil {
		t.Fatalf("IsRegistered after deregistration = %v, %v", ok, err)
	}
	// Every exchange went over one connection.
	srv.mu.Lock()
	n := len(srv.conns)
	srv.mu.Unlock()
	if n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestClientStatusErrors(t *testing.T) {
	srv := newFakeServer(t)
	c := NewClient(srv.addr, 2*time.Second)
	defer c.Close()
	ctx := context.Background()
	srv.set(func(s *fakeServer) {
		s.refuse[FuncDevAttrReg] = StatusSourceUnauthorized
		s.refuse[FuncDevAttrQry] = StatusInternalError
	})
	_, err := c.Register(ctx, twoTargets(), false)
	if !errors.Is(err, StatusSourceUnauthorized) || !strings.Contains(err.Error(), `register entity "blockport:test"`) ||
		!strings.Contains(err.Error(), "Source Unauthorized (8)") {
		t.Fatalf("Register error %v", err)
	}
	if _, err := c.VisibleTargets(ctx, init1); !errors.Is(err, StatusInternalError) {
		t.Fatalf("VisibleTargets error %v", err)
	}
	if _, err := c.IsRegistered(ctx, nodeA, "e"); !errors.Is(err, StatusInternalError) {
		t.Fatalf("IsRegistered error %v", err)
	}
	// A status error keeps the connection: it was a good answer.
	srv.mu.Lock()
	n := len(srv.conns)
	srv.mu.Unlock()
	if n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestClientValidates(t *testing.T) {
	c := NewClient("127.0.0.1:1", time.Second)
	defer c.Close()
	tests := []struct {
		name string
		mod  func(*Registration)
		want string
	}{
		{"no entity", func(r *Registration) { r.EntityID = "" }, "empty entity"},
		{"long entity", func(r *Registration) { r.EntityID = strings.Repeat("e", 256) }, "at most 255"},
		{"NUL in name", func(r *Registration) { r.Nodes[0].Name = "iqn.x\x00y" }, "NUL"},
		{"unnamed node", func(r *Registration) { r.Nodes[1].Name = "" }, "without an iSCSI name"},
		{"unknown portal", func(r *Registration) { r.Portals = r.Portals[:1] }, "not a registered portal"},
		{"no nodes", func(r *Registration) { r.Nodes = nil }, "at least one storage node"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := twoTargets()
			tc.mod(&r)
			if _, err := c.Register(context.Background(), r, false); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestClientTimeout: a server that does not answer costs one timeout; the
// connection is dropped and the next exchange opens a new one.
func TestClientTimeout(t *testing.T) {
	srv := newFakeServer(t)
	c := NewClient(srv.addr, 300*time.Millisecond)
	defer c.Close()
	srv.set(func(s *fakeServer) { s.silent = true })
	start := time.Now()
	_, err := c.IsRegistered(context.Background(), nodeA, "e")
	if err == nil || !strings.Contains(err.Error(), "no response") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	srv.set(func(s *fakeServer) { s.silent = false })
	if _, err := c.IsRegistered(context.Background(), nodeA, "e"); err != nil {
		t.Fatal(err)
	}
	// The caller's context bounds an exchange as well.
	srv.set(func(s *fakeServer) { s.silent = true })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := c.IsRegistered(ctx, nodeA, "e"); err == nil || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("error %v after %v", err, time.Since(start))
	}
}

// TestClientReconnects: when the server goes away, Lost fires, exchanges
// fail while it is down, and succeed on a new connection once it is back.
func TestClientReconnects(t *testing.T) {
	srv := newFakeServer(t)
	c := NewClient(srv.addr, time.Second)
	defer c.Close()
	ctx := context.Background()
	if c.Lost() != nil {
		t.Fatal("Lost before connecting")
	}
	if _, err := c.Register(ctx, twoTargets(), true); err != nil {
		t.Fatal(err)
	}
	lost := c.Lost()
	srv.down()
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("Lost did not fire when the server closed the connection")
	}
	// The next call reports the end once more (closed), then forgets it.
	select {
	case <-c.Lost():
	default:
		t.Fatal("Lost no longer reports the dead connection")
	}
	if c.Lost() != nil {
		t.Fatal("a dead connection is reported twice")
	}
	if _, err := c.IsRegistered(ctx, nodeA, "blockport:test"); err == nil || !strings.Contains(err.Error(), "connect to iSNS server") {
		t.Fatalf("exchange with the server down: %v", err)
	}
	srv.up()
	if ok, err := c.IsRegistered(ctx, nodeA, "blockport:test"); err != nil || !ok {
		t.Fatalf("after the server came back: %v, %v", ok, err)
	}
	c.Close()
	if _, err := c.IsRegistered(ctx, nodeA, "blockport:test"); !errors.Is(err, errClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestResolve(t *testing.T) {
	wild := netip.MustParseAddrPort("0.0.0.0:3260")
	r := Registration{
		EntityID: "e",
		Portals:  []Portal{{Addr: wild}, {Addr: netip.MustParseAddrPort("10.0.0.5:3260")}, {Addr: netip.MustParseAddrPort("[::ffff:10.0.0.6]:3260")}},
		Nodes:    []Node{{Name: nodeA, PortalGroups: []PortalGroup{{Portal: wild, Tag: 1}, {Portal: netip.MustParseAddrPort("10.0.0.5:3260"), Tag: 2}}}},
	}
	got := r.Resolve(netip.MustParseAddr("10.0.0.5"))
	wantPortals := []Portal{{Addr: netip.MustParseAddrPort("10.0.0.5:3260")}, {Addr: netip.MustParseAddrPort("10.0.0.6:3260")}}
	if !reflect.DeepEqual(got.Portals, wantPortals) {
		t.Errorf("portals %v, want %v (wildcard replaced, duplicates merged, IPv4-mapped unmapped)", got.Portals, wantPortals)
	}
	if want := []PortalGroup{{Portal: netip.MustParseAddrPort("10.0.0.5:3260"), Tag: 1}}; !reflect.DeepEqual(got.Nodes[0].PortalGroups, want) {
		t.Errorf("portal groups %v, want %v (the first group on a merged portal wins)", got.Nodes[0].PortalGroups, want)
	}
	if got.Validate() != nil || !got.Equal(got.Resolve(netip.Addr{})) {
		t.Error("a resolved registration does not resolve to itself")
	}
	if kept := r.Resolve(netip.Addr{}); kept.Portals[0].Addr != wild {
		t.Error("without a local address the wildcard stays")
	}
}

// TestRegisterRequestNullPGT: a node gets a Portal Group for every portal,
// with a NULL tag where it is not reached (RFC 4171 6.5.4).
func TestRegisterRequestNullPGT(t *testing.T) {
	req := twoTargets().RegisterRequest(false)
	if req.Replace {
		t.Fatal("replace set")
	}
	var pgs []string
	for i, a := range req.Operating {
		if a.Tag == TagPGISCSIName {
			pgs = append(pgs, req.Operating[i].String()+" "+req.Operating[i+2].String()+" "+req.Operating[i+3].String())
		}
	}
	want := []string{
		`PG iSCSI Name="` + nodeA + `" PG Portal TCP/UDP Port=3260/tcp PG Tag=1`,
		`PG iSCSI Name="` + nodeA + `" PG Portal TCP/UDP Port=3261/tcp PG Tag=2`,
		`PG iSCSI Name="` + nodeB + `" PG Portal TCP/UDP Port=3260/tcp PG Tag=1`,
		`PG iSCSI Name="` + nodeB + `" PG Portal TCP/UDP Port=3261/tcp PG Tag=<nil>`,
	}
	if !reflect.DeepEqual(pgs, want) {
		t.Fatalf("portal groups\n%s\nwant\n%s", strings.Join(pgs, "\n"), strings.Join(want, "\n"))
	}
}

// testRegistrar runs a registrar of reg against srv with short backoffs;
// stop ends Run.
func testRegistrar(t *testing.T, srv *fakeServer, reg Registration) (r *Registrar, stop context.CancelFunc) {
	t.Helper()
	c := NewClient(srv.addr, time.Second)
	r = NewRegistrar(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.MinBackoff, r.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	ctx, stop := context.WithCancel(context.Background())
	r.Update(reg)
	go r.Run(ctx)
	t.Cleanup(func() {
		stop()
		<-r.done
		c.Close()
	})
	return r, stop
}

func functions(reqs []Request) []string {
	var out []string
	for _, r := range reqs {
		s := r.Function.String()
		if r.Replace {
			s += "(replace)"
		}
		out = append(out, s)
	}
	return out
}

// TestRegistrar follows a registration through its life: registered at
// start (replacing stale state), updated (removed node and portal
// deregistered), refreshed, registered again after the server lost it
// and after it was unreachable, moved to another entity, and deregistered
// at the end.
func TestRegistrar(t *testing.T) {
	srv := newFakeServer(t)
	srv.set(func(s *fakeServer) { s.period = 3 }) // refresh every second
	r, stop := testRegistrar(t, srv, twoTargets())

	waitFor(t, "registered", 5*time.Second, func() bool { return srv.entity("blockport:test") != nil })
	if got := functions(srv.log()); !reflect.DeepEqual(got, []string{"DevAttrReg(replace)"}) {
		t.Fatalf("requests %v", got)
	}
	waitFor(t, "stats", time.Second, func() bool { st := r.Stats(); return st.Registered && st.Registrations == 1 })

	// Reload: b and portal 2 go away.
	one := twoTargets()
	one.Nodes = one.Nodes[:1]
	one.Portals = one.Portals[:1]
	one.Nodes[0].PortalGroups = one.Nodes[0].PortalGroups[:1]
	r.Update(one)
	waitFor(t, "b and portal 2 deregistered, the rest updated", 5*time.Second, func() bool {
		e := srv.entity("blockport:test")
		return e != nil && len(e.nodes) == 1 && len(e.portals) == 1 && len(srv.log()) >= 3
	})
	log := srv.log()
	if got := functions(log[1:3]); !reflect.DeepEqual(got, []string{"DevDereg", "DevAttrReg"}) {
		t.Fatalf("update requests %v, want a DevDereg then an update", got)
	}
	if d := log[1]; len(d.Operating) != 3 || d.Operating[0].String() != `iSCSI Name="`+nodeB+`"` {
		t.Fatalf("DevDereg operating %v", d.Operating)
	}

	// Refresh: a check within a third of the granted 3 s, however often
	// an Update that changes nothing comes in meanwhile.
	n := len(srv.log())
	waitFor(t, "refresh", 3*time.Second, func() bool {
		r.Update(one)
		l := srv.log()
		return len(l) > n && l[len(l)-1].Function == FuncDevAttrQry
	})

	// The server restarts with an empty database: registered again at once.
	srv.restart()
	waitFor(t, "registered after the server restarted", 5*time.Second, func() bool { return srv.entity("blockport:test") != nil })
	if l := srv.log(); !l[len(l)-1].Replace {
		t.Fatalf("re-registration without replace: %v", functions(l))
	}

	// The server is away for a while, then back with an empty database.
	srv.down()
	srv.set(func(s *fakeServer) { s.entities = map[string]*fakeEntity{} })
	time.Sleep(300 * time.Millisecond) // a few failed attempts
	srv.up()
	waitFor(t, "registered after the server came back", 5*time.Second, func() bool { return srv.entity("blockport:test") != nil })
	if st := r.Stats(); st.RegistrationFailures+st.RefreshFailures == 0 {
		t.Errorf("no failure counted while the server was down: %+v", st)
	}

	// Another entity identifier: the old entity goes, the new one comes.
	moved := one
	moved.EntityID = "blockport:moved"
	r.Update(moved)
	waitFor(t, "moved", 5*time.Second, func() bool {
		return srv.entity("blockport:test") == nil && srv.entity("blockport:moved") != nil
	})

	// Stop, then deregister.
	stop()
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer dcancel()
	if err := r.Deregister(dctx); err != nil {
		t.Fatal(err)
	}
	if srv.entity("blockport:moved") != nil || r.Stats().Registered {
		t.Fatal("still registered after Deregister")
	}
}

// TestRegistrarNoTargets: without nodes nothing is registered, and a
// registration whose last node goes away is removed.
func TestRegistrarNoTargets(t *testing.T) {
	srv := newFakeServer(t)
	empty := twoTargets()
	empty.Nodes = nil
	r, _ := testRegistrar(t, srv, empty)
	time.Sleep(100 * time.Millisecond)
	if l := srv.log(); len(l) != 0 {
		t.Fatalf("requests without targets: %v", functions(l))
	}
	r.Update(twoTargets())
	waitFor(t, "registered", 5*time.Second, func() bool { return srv.entity("blockport:test") != nil })
	r.Update(empty)
	waitFor(t, "deregistered", 5*time.Second, func() bool { return srv.entity("blockport:test") == nil })
	if got := functions(srv.log()); !reflect.DeepEqual(got, []string{"DevAttrReg(replace)", "DevDereg"}) {
		t.Fatalf("requests %v", got)
	}
}

// TestRegistrarBackoff: failures are retried with a doubling, bounded wait.
func TestRegistrarBackoff(t *testing.T) {
	r := NewRegistrar(NewClient("127.0.0.1:1", time.Second), nil)
	r.MinBackoff, r.MaxBackoff = time.Second, 8*time.Second
	for failures, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 10: 8 * time.Second} {
		got := r.backoff(failures)
		if got < want || got > want+want/10 {
			t.Errorf("backoff after %d failures = %v, want %v plus up to a tenth", failures, got, want)
		}
	}
	// A refused registration is a failure too, and retried.
	srv := newFakeServer(t)
	srv.set(func(s *fakeServer) { s.refuse[FuncDevAttrReg] = StatusBusy })
	r2, _ := testRegistrar(t, srv, twoTargets())
	waitFor(t, "retries", 5*time.Second, func() bool { return len(srv.log()) >= 3 })
	srv.set(func(s *fakeServer) { delete(s.refuse, FuncDevAttrReg) })
	waitFor(t, "registered", 5*time.Second, func() bool { return r2.Stats().Registered })
	if st := r2.Stats(); st.RegistrationFailures < 2 || st.Registrations != 1 || srv.entity("blockport:test") == nil {
		t.Fatalf("stats %+v", st)
	}
	if l := srv.log(); slices.ContainsFunc(l, func(r Request) bool { return r.Function != FuncDevAttrReg }) {
		t.Fatalf("requests %v", functions(l))
	}
}

package iscsi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Logins that race with a reload or a shutdown, or fail at their last step.

// TestLoginAdmitCheckedAtRegistration: a reload that refuses an initiator
// while its login is under way closes only registered sessions; the login
// itself must then fail when it registers, not begin a session the rules
// no longer allow.
func TestLoginAdmitCheckedAtRegistration(t *testing.T) {
	var refuse atomic.Bool
	f := startFabricWith(t, Options{}, func(tg *Target) {
		tg.Admit = func(string, net.Addr) bool { return !refuse.Load() }
	})
	in := dial(t, f)
	resp, _ := in.loginPDU(0, 1, true, normalKeys("iqn.2026-11.io.blockport:racer"))
	if resp.StatusClass != 0 {
		t.Fatalf("security stage: status %d/%d", resp.StatusClass, resp.StatusDetail)
	}
	refuse.Store(true) // the reload's new rules, published mid-login
	resp, _ = in.loginPDU(1, 3, true, nil)
	if resp.StatusClass != loginClassInitiatorErr || resp.StatusDetail != loginDetailAuthzFailure {
		t.Fatalf("final login: status %d/%d, want %d/%d (authorization failure)",
			resp.StatusClass, resp.StatusDetail, loginClassInitiatorErr, loginDetailAuthzFailure)
	}
	if s := f.svc.Sessions(); len(s) != 0 {
		t.Fatalf("sessions %+v after a refused login", s)
	}
}

// failingWrites is a connection whose writes fail: the final Login
// Response cannot be sent.
type failingWrites struct{ net.Conn }

func (failingWrites) Write([]byte) (int, error) { return 0, errors.New("connection reset (test)") }

// TestLoginResponseFailureEndsSession: a session registered for a login
// whose final response could not be sent never began; it must not stay in
// the session table.
func TestLoginResponseFailureEndsSession(t *testing.T) {
	dev := fuzzDevice(t)
	reg := &testRegistry{target: &Target{Name: testTarget, Device: dev}, portals: []Portal{{Addr: "127.0.0.1:3260", TPGT: 1}}}
	svc := NewService(reg, Options{LoginTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	client, server := fuzzConnPair(t)
	defer client.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		svc.ServeConn(context.Background(), failingWrites{server}, 1)
	}()
	client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Write(fuzzLogin()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("connection did not end after its login response failed")
	}
	if s := svc.Sessions(); len(s) != 0 {
		t.Fatalf("sessions %+v left by a login that could not answer", s)
	}
}

// TestShutdownBeforeLogin: Shutdown reaches a connection that was accepted
// but has not started its login; the login must not replace Shutdown's
// "stop now" with its own deadline and wait for the initiator.
func TestShutdownBeforeLogin(t *testing.T) {
	reg := &testRegistry{target: &Target{Name: testTarget, Device: fuzzDevice(t)}}
	svc := NewService(reg, Options{LoginTimeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	client, server := fuzzConnPair(t)
	defer client.Close()
	c := newConn(svc, server, 1)
	c.shutdown() // what Service.Shutdown does to every connection it knows
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		c.serve(context.Background())
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("login waited for the initiator after Shutdown")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("connection took %v to end after Shutdown", d)
	}
	// The target closed the connection without answering.
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read after Shutdown: %d bytes, %v; want EOF", n, err)
	}
}

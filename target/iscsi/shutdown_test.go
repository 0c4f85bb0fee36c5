package iscsi

import (
	"context"
	"strings"
	"testing"
	"time"
)

// shutdownWithin runs svc.Shutdown with a grace of grace and fails the test
// if it has not returned within limit.
func shutdownWithin(t *testing.T, svc *Service, grace, limit time.Duration) (error, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- svc.Shutdown(ctx) }()
	select {
	case err := <-errc:
		return err, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("Shutdown with a %v grace still running after %v", grace, limit)
		return nil, 0
	}
}

// TestShutdownAbortsAfterGrace: once the grace ends, Shutdown aborts the
// commands still running; one that checks its context (a SANITIZE waiting
// for its overwrite) ends, and Shutdown returns without waiting for it to
// complete.
func TestShutdownAbortsAfterGrace(t *testing.T) {
	f, stuck, _ := startStuckFabric(t)
	in := stuckInitiator(t, f)
	// SANITIZE OVERWRITE without IMMED, one pass of a 4-byte pattern: the
	// command waits for the overwrite, whose first write sticks.
	params := []byte{0x01, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef}
	cdb := [16]byte{0x48, 0x01, 0, 0, 0, 0, 0, 0, byte(len(params))}
	req := SCSICommand{Final: true, Write: true, Attr: TaskAttrSimple, LUN: in.lun, ITT: in.itt,
		ExpectedDataTransferLength: uint32(len(params)), CmdSN: in.cmdSN, ExpStatSN: in.expSN, CDB: cdb}
	in.cmdSN++
	in.itt++
	var h BHS
	req.Encode(&h)
	if err := in.w.WritePDU(&h, params); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stuck.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the sanitize never reached the backstore")
	}
	err, took := shutdownWithin(t, f.svc, 200*time.Millisecond, 20*time.Second)
	if err != nil {
		t.Fatalf("Shutdown: %v (the aborted SANITIZE should have ended)", err)
	}
	if took > shutdownAbortWait {
		t.Fatalf("Shutdown took %v", took)
	}
}

// TestShutdownGivesUpOnStuckCommand: a write stuck in its backstore call
// cannot be aborted; Shutdown returns after shutdownAbortWait with an
// error that names the connection, instead of waiting without end.
func TestShutdownGivesUpOnStuckCommand(t *testing.T) {
	old := shutdownAbortWait
	shutdownAbortWait = 300 * time.Millisecond
	t.Cleanup(func() { shutdownAbortWait = old })
	f, stuck, release := startStuckFabric(t)
	in := stuckInitiator(t, f)
	in.sendStuckWrite(stuck, 0)
	err, took := shutdownWithin(t, f.svc, 100*time.Millisecond, 10*time.Second)
	if err == nil {
		t.Fatal("Shutdown reported success with a write still in its backstore")
	}
	if local := in.nc.LocalAddr().String(); !strings.Contains(err.Error(), local) {
		t.Errorf("error %q does not name the connection from %s", err, local)
	}
	if took < 400*time.Millisecond {
		t.Errorf("Shutdown gave up after %v, before its grace and abort wait", took)
	}
	release()
}

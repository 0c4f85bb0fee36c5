package iscsi

import "testing"

func TestTransitionAllowed(t *testing.T) {
	tests := []struct {
		from, to loginStage
		want     bool
	}{
		{stageSecurity, stageSecurity, false},
		{stageSecurity, stageOperational, true},
		{stageSecurity, stageFullFeature, true},
		{stageOperational, stageSecurity, false},
		{stageOperational, stageOperational, false},
		{stageOperational, stageFullFeature, true},
		{stageFullFeature, stageSecurity, false},
		{stageFullFeature, stageFullFeature, false},
		{loginStage(2), stageFullFeature, false},
		{stageSecurity, loginStage(2), false},
	}
	for _, tt := range tests {
		if got := transitionAllowed(tt.from, tt.to); got != tt.want {
			t.Errorf("transitionAllowed(%v, %v) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestSerialArithmetic(t *testing.T) {
	tests := []struct {
		a, b uint32
		want bool
	}{
		{1, 0, true},
		{0, 1, false},
		{5, 5, false},
		{0, 0xffffffff, true}, // wraps
		{0xffffffff, 0, false},
		{0x80000000, 0, false}, // RFC 1982: 2^31 apart is undefined; we say no
		{0x80000000, 1, true},
	}
	for _, tt := range tests {
		if got := serialGreater(tt.a, tt.b); got != tt.want {
			t.Errorf("serialGreater(%#x, %#x) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	windows := []struct {
		sn, lo, hi uint32
		want       bool
	}{
		{10, 10, 20, true},
		{20, 10, 20, true},
		{21, 10, 20, false},
		{9, 10, 20, false},
		{2, 0xfffffff0, 5, true},
		{6, 0xfffffff0, 5, false},
		{0xffffffef, 0xfffffff0, 5, false},
	}
	for _, w := range windows {
		if got := serialInWindow(w.sn, w.lo, w.hi); got != w.want {
			t.Errorf("serialInWindow(%#x, %#x, %#x) = %v, want %v", w.sn, w.lo, w.hi, got, w.want)
		}
	}
}

func TestCmdWindowNeverShrinks(t *testing.T) {
	var w cmdWindow
	w.init(100, 4)
	exp, max := w.current()
	if exp != 100 || max != 103 {
		t.Fatalf("initial window = [%d,%d], want [100,103]", exp, max)
	}
	// Four commands in flight: the computed window would close, but an
	// advertised MaxCmdSN is never taken back.
	w.expCmdSN.Store(104)
	w.inflight.Store(4)
	if _, max = w.current(); max != 103 {
		t.Fatalf("MaxCmdSN = %d with a full queue, want 103", max)
	}
	w.inflight.Store(1)
	if _, max = w.current(); max != 106 {
		t.Fatalf("MaxCmdSN = %d after completions, want 106", max)
	}
}

func TestDecodeLUN(t *testing.T) {
	none := uint64(1<<64 - 1)
	tests := []struct {
		raw  uint64
		want uint64
	}{
		{0, 0},
		{0x0001_0000_0000_0000, 1},
		{0x00ff_0000_0000_0000, 255},
		{0x4100_0000_0000_0000, 256},   // flat space
		{0x7fff_0000_0000_0000, 16383}, // largest flat LUN
		{0x0100_0000_0000_0000, none},  // peripheral with a bus number
		{0x8000_0000_0000_0000, none},  // logical unit addressing
		{0xc000_0000_0000_0000, none},  // extended addressing
	}
	for _, tt := range tests {
		if got := decodeLUN(tt.raw); got != tt.want {
			t.Errorf("decodeLUN(%#016x) = %d, want %d", tt.raw, got, tt.want)
		}
	}
}

// SetLimits (a reload of [limits]) applies from the next connection: a
// lowered session bound refuses new logins and a new queue depth shows in
// new sessions' window, while a running session keeps what it had.
func TestSetLimitsAppliesToNewConnections(t *testing.T) {
	f := startFabric(t, Options{QueueDepth: 16})
	dialLogin := func(isid byte) (*initiator, LoginResponse) {
		in := dial(t, f)
		in.isid[5] = isid
		resp, _ := in.login(normalKeys("iqn.2026-11.io.blockport:limits"), nil)
		return in, resp
	}
	a, resp := dialLogin(1)
	if resp.StatusClass != 0 || resp.MaxCmdSN-resp.ExpCmdSN+1 != 16 {
		t.Fatalf("first login: status %d/%d, window %d (want 16)", resp.StatusClass, resp.StatusDetail, resp.MaxCmdSN-resp.ExpCmdSN+1)
	}
	a.maxSeg = 8192

	f.svc.SetLimits(Options{MaxSessionsPerTarget: 1, QueueDepth: 4})
	if _, resp := dialLogin(2); resp.StatusClass != 3 || resp.StatusDetail != 2 {
		t.Errorf("second session over a lowered bound: status %d/%d, want 3/2 (out of resources)", resp.StatusClass, resp.StatusDetail)
	}
	// The running session goes on with its window.
	a.clearUA()
	if r := a.command([]byte{0, 0, 0, 0, 0, 0}, 0, nil, 0); r.status != 0 {
		t.Fatalf("TEST UNIT READY on the running session: status %#x", r.status)
	}

	f.svc.SetLimits(Options{QueueDepth: 4})
	if _, resp := dialLogin(3); resp.StatusClass != 0 || resp.MaxCmdSN-resp.ExpCmdSN+1 != 4 {
		t.Errorf("login after raising the bound: status %d/%d, window %d (want 4)", resp.StatusClass, resp.StatusDetail, resp.MaxCmdSN-resp.ExpCmdSN+1)
	}
}

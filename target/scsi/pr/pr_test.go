package pr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

const tgt = "iqn.2026-11.io.blockport:t"

var (
	nexA  = Nexus{Initiator: "iqn.a", ISID: [6]byte{0x80, 0, 0, 0, 0, 1}, Target: tgt, TPGT: 1}
	nexA2 = Nexus{Initiator: "iqn.a", ISID: [6]byte{0x80, 0, 0, 0, 0, 1}, Target: tgt, TPGT: 2} // same initiator port, other target port
	nexB  = Nexus{Initiator: "iqn.b", ISID: [6]byte{0x80, 0, 0, 0, 0, 2}, Target: tgt, TPGT: 1}
	nexC  = Nexus{Initiator: "iqn.c", ISID: [6]byte{0x80, 0, 0, 0, 0, 3}, Target: tgt, TPGT: 1}
)

func mustOut(t *testing.T, s *State, n Nexus, r OutRequest) Result {
	t.Helper()
	res, err := s.Out(n, &r)
	if err != nil {
		t.Fatalf("%+v from %s: %v", r, n.Initiator, err)
	}
	return res
}

func register(t *testing.T, s *State, n Nexus, key uint64) {
	t.Helper()
	mustOut(t, s, n, OutRequest{Action: RegisterAndIgnore, SAKey: key})
}

// TestConflictMatrix is SPC-5's table of commands allowed in the presence
// of persistent reservations, by reservation type and by whether the
// nexus asking is the holder, another registrant, or not registered.
func TestConflictMatrix(t *testing.T) {
	type want struct{ read, write bool } // true: conflict
	tests := []struct {
		typ                       Type
		holder, registered, other want
	}{
		{WriteExclusive, want{false, false}, want{false, true}, want{false, true}},
		{ExclusiveAccess, want{false, false}, want{true, true}, want{true, true}},
		{WriteExclusiveRegistrantsOnly, want{false, false}, want{false, false}, want{false, true}},
		{ExclusiveAccessRegistrantsOnly, want{false, false}, want{false, false}, want{true, true}},
		{WriteExclusiveAllRegistrants, want{false, false}, want{false, false}, want{false, true}},
		{ExclusiveAccessAllRegistrants, want{false, false}, want{false, false}, want{true, true}},
	}
	for _, tc := range tests {
		t.Run(tc.typ.String(), func(t *testing.T) {
			s, _ := New("")
			register(t, s, nexA, 0xA)
			register(t, s, nexB, 0xB)
			mustOut(t, s, nexA, OutRequest{Action: Reserve, Key: 0xA, Type: tc.typ})
			for _, c := range []struct {
				name string
				n    Nexus
				w    want
			}{{"holder", nexA, tc.holder}, {"registrant", nexB, tc.registered}, {"unregistered", nexC, tc.other}} {
				if got := s.Conflicts(c.n, Read); got != c.w.read {
					t.Errorf("%s read: conflict %v, want %v", c.name, got, c.w.read)
				}
				if got := s.Conflicts(c.n, Write); got != c.w.write {
					t.Errorf("%s write: conflict %v, want %v", c.name, got, c.w.write)
				}
				for _, cl := range []Class{Exempt, Allowed, Release2} {
					if s.Conflicts(c.n, cl) {
						t.Errorf("%s class %d conflicts", c.name, cl)
					}
				}
				if !s.Conflicts(c.n, Reserve2) {
					t.Errorf("%s: RESERVE(6) with registrations does not conflict", c.name)
				}
			}
			// The registration belongs to the I_T nexus: the same
			// initiator port through another target port is not registered.
			if tc.typ != WriteExclusive && tc.typ != ExclusiveAccess && !s.Conflicts(nexA2, Write) {
				t.Error("another target port of the holder's initiator may write")
			}
		})
	}
}

func TestNoReservationNoConflict(t *testing.T) {
	s, _ := New("")
	register(t, s, nexA, 1)
	for _, n := range []Nexus{nexA, nexB} {
		if s.Conflicts(n, Write) || s.Conflicts(n, Read) {
			t.Fatalf("conflict without a reservation for %s", n.Initiator)
		}
	}
}

func TestSCSI2(t *testing.T) {
	s, _ := New("")
	if err := s.Reserve2(nexA); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve2(nexA); err != nil {
		t.Fatal("holder cannot reserve again:", err)
	}
	if err := s.Reserve2(nexB); !errors.Is(err, ErrConflict) {
		t.Fatalf("second RESERVE: %v", err)
	}
	for c, want := range map[Class]bool{Exempt: false, Allowed: true, Read: true, Write: true, Release2: false, Reserve2: true} {
		if got := s.Conflicts(nexB, c); got != want {
			t.Errorf("class %d from another nexus: %v, want %v", c, got, want)
		}
		if s.Conflicts(nexA, c) && c != Reserve2 {
			t.Errorf("class %d conflicts for the holder", c)
		}
	}
	if _, err := s.Out(nexB, &OutRequest{Action: RegisterAndIgnore, SAKey: 1}); !errors.Is(err, ErrConflict) {
		t.Errorf("PR OUT under another's SCSI-2 reservation: %v", err)
	}
	s.Release2(nexB) // not the holder: no effect
	if !s.Conflicts(nexB, Write) {
		t.Fatal("RELEASE from another nexus released")
	}
	s.NexusLoss(nexA)
	if s.Conflicts(nexB, Write) {
		t.Fatal("nexus loss kept the reservation")
	}
	s.Reserve2(nexA)
	s.Reset()
	if err := s.Reserve2(nexB); err != nil {
		t.Fatal("reset kept the reservation:", err)
	}
	s.Release2(nexB)
	register(t, s, nexA, 1)
	if err := s.Reserve2(nexA); !errors.Is(err, ErrConflict) {
		t.Fatal("RESERVE(6) with a registration:", err)
	}
}

func TestRegisterRules(t *testing.T) {
	s, _ := New("")
	if _, err := s.Out(nexA, &OutRequest{Action: Register, Key: 5, SAKey: 1}); !errors.Is(err, ErrConflict) {
		t.Fatalf("unregistered REGISTER with a key: %v", err)
	}
	mustOut(t, s, nexA, OutRequest{Action: Register, SAKey: 1})
	if _, err := s.Out(nexA, &OutRequest{Action: Register, Key: 2, SAKey: 3}); !errors.Is(err, ErrConflict) {
		t.Fatalf("REGISTER with a wrong key: %v", err)
	}
	mustOut(t, s, nexA, OutRequest{Action: Register, Key: 1, SAKey: 3}) // change key
	mustOut(t, s, nexA, OutRequest{Action: RegisterAndIgnore, SAKey: 4})
	keys := s.In(ReadKeys)
	if gen := binary.BigEndian.Uint32(keys); gen != 3 {
		t.Errorf("generation %d after three registrations, want 3", gen)
	}
	if k := binary.BigEndian.Uint64(keys[8:]); len(keys) != 16 || k != 4 {
		t.Fatalf("READ KEYS % x", keys)
	}
	mustOut(t, s, nexA, OutRequest{Action: Reserve, Key: 4, Type: WriteExclusiveRegistrantsOnly})
	register(t, s, nexB, 9)
	res := mustOut(t, s, nexA, OutRequest{Action: Register, Key: 4, SAKey: 0}) // unregister the holder
	if len(res.Notices) != 1 || res.Notices[0].UA != ReservationsReleased || res.Notices[0].To.Initiator != "iqn.b" {
		t.Fatalf("unregistering a registrants-only holder: notices %+v", res.Notices)
	}
	if rr := s.In(ReadReservation); binary.BigEndian.Uint32(rr[4:8]) != 0 {
		t.Fatal("reservation survives its holder's unregistration")
	}
	// An unregistered nexus that registers key 0 changes nothing.
	gen := binary.BigEndian.Uint32(s.In(ReadKeys))
	mustOut(t, s, nexC, OutRequest{Action: Register})
	if g := binary.BigEndian.Uint32(s.In(ReadKeys)); g != gen {
		t.Fatal("a no-op REGISTER bumped the generation")
	}
}

func TestReserveReleaseClear(t *testing.T) {
	s, _ := New("")
	register(t, s, nexA, 1)
	register(t, s, nexB, 2)
	if _, err := s.Out(nexC, &OutRequest{Action: Reserve, Key: 3, Type: WriteExclusive}); !errors.Is(err, ErrConflict) {
		t.Fatal("unregistered RESERVE:", err)
	}
	var ce *CDBFieldError
	if _, err := s.Out(nexA, &OutRequest{Action: Reserve, Key: 1, Type: 2}); !errors.As(err, &ce) {
		t.Fatal("RESERVE of type 2:", err)
	}
	if _, err := s.Out(nexA, &OutRequest{Action: Reserve, Key: 1, Scope: 1, Type: 1}); !errors.As(err, &ce) {
		t.Fatal("RESERVE with scope 1:", err)
	}
	mustOut(t, s, nexA, OutRequest{Action: Reserve, Key: 1, Type: ExclusiveAccess})
	mustOut(t, s, nexA, OutRequest{Action: Reserve, Key: 1, Type: ExclusiveAccess})
	if _, err := s.Out(nexA, &OutRequest{Action: Reserve, Key: 1, Type: WriteExclusive}); !errors.Is(err, ErrConflict) {
		t.Fatal("RESERVE of another type by the holder:", err)
	}
	if _, err := s.Out(nexB, &OutRequest{Action: Reserve, Key: 2, Type: ExclusiveAccess}); !errors.Is(err, ErrConflict) {
		t.Fatal("RESERVE by another registrant:", err)
	}
	mustOut(t, s, nexB, OutRequest{Action: Release, Key: 2, Type: ExclusiveAccess}) // not the holder: no-op
	if !s.Conflicts(nexB, Read) {
		t.Fatal("RELEASE by a non-holder released")
	}
	if _, err := s.Out(nexA, &OutRequest{Action: Release, Key: 1, Type: WriteExclusive}); !errors.Is(err, ErrInvalidRelease) {
		t.Fatal("RELEASE of the wrong type:", err)
	}
	mustOut(t, s, nexA, OutRequest{Action: Release, Key: 1, Type: ExclusiveAccess})
	mustOut(t, s, nexA, OutRequest{Action: Reserve, Key: 1, Type: ExclusiveAccessAllRegistrants})
	res := mustOut(t, s, nexB, OutRequest{Action: Release, Key: 2, Type: ExclusiveAccessAllRegistrants})
	if len(res.Notices) != 1 || res.Notices[0].To.Initiator != "iqn.a" || res.Notices[0].UA != ReservationsReleased {
		t.Fatalf("all-registrants release by any registrant: %+v", res.Notices)
	}
	mustOut(t, s, nexA, OutRequest{Action: Reserve, Key: 1, Type: WriteExclusive})
	res = mustOut(t, s, nexB, OutRequest{Action: Clear, Key: 2})
	if len(res.Notices) != 1 || res.Notices[0].UA != ReservationsPreempted {
		t.Fatalf("CLEAR notices %+v", res.Notices)
	}
	if k := s.In(ReadKeys); binary.BigEndian.Uint32(k[4:8]) != 0 || s.Conflicts(nexC, Write) {
		t.Fatal("CLEAR left state behind")
	}
}

func TestPreempt(t *testing.T) {
	s, _ := New("")
	register(t, s, nexA, 0xA)
	register(t, s, nexB, 0xB)
	register(t, s, nexC, 0xA) // keys need not be unique
	mustOut(t, s, nexA, OutRequest{Action: Reserve, Key: 0xA, Type: WriteExclusiveRegistrantsOnly})
	res := mustOut(t, s, nexB, OutRequest{Action: PreemptAndAbort, Key: 0xB, SAKey: 0xA, Type: WriteExclusiveRegistrantsOnly})
	if len(res.Aborted) != 2 {
		t.Fatalf("aborted %+v, want A and C", res.Aborted)
	}
	preempted := 0
	for _, n := range res.Notices {
		if n.UA == RegistrationsPreempted {
			preempted++
		}
	}
	if preempted != 2 {
		t.Fatalf("notices %+v", res.Notices)
	}
	if !s.Conflicts(nexA, Write) || s.Conflicts(nexB, Write) {
		t.Fatal("B does not hold the reservation after preempting A")
	}
	full := s.In(ReadFullStatus)
	if n := binary.BigEndian.Uint32(full[4:8]); n == 0 || full[8+12]&1 == 0 || binary.BigEndian.Uint64(full[8:16]) != 0xB {
		t.Fatalf("READ FULL STATUS % x", full)
	}
	// Preempting a key nobody holds is a conflict; key 0 without a
	// matching reservation is an invalid field.
	if _, err := s.Out(nexB, &OutRequest{Action: Preempt, Key: 0xB, SAKey: 0x77, Type: WriteExclusive}); !errors.Is(err, ErrConflict) {
		t.Fatal("PREEMPT of an unknown key:", err)
	}
	register(t, s, nexA, 0xA)
	mustOut(t, s, nexB, OutRequest{Action: Release, Key: 0xB, Type: WriteExclusiveRegistrantsOnly})
	var fe *FieldError
	if _, err := s.Out(nexB, &OutRequest{Action: Preempt, Key: 0xB, Type: WriteExclusive}); !errors.As(err, &fe) {
		t.Fatal("PREEMPT key 0 without a reservation:", err)
	}
	// Without a reservation, PREEMPT only removes registrations.
	res = mustOut(t, s, nexB, OutRequest{Action: Preempt, Key: 0xB, SAKey: 0xA, Type: WriteExclusive})
	if len(res.Aborted) != 0 || s.Conflicts(nexA, Write) {
		t.Fatal("PREEMPT without a reservation reserved or aborted")
	}
	// All registrants with key 0: everyone else goes, the issuer reserves.
	register(t, s, nexA, 0xA)
	mustOut(t, s, nexA, OutRequest{Action: Reserve, Key: 0xA, Type: ExclusiveAccessAllRegistrants})
	mustOut(t, s, nexB, OutRequest{Action: Preempt, Key: 0xB, SAKey: 0, Type: ExclusiveAccess})
	if !s.Conflicts(nexA, Read) || s.Conflicts(nexB, Write) {
		t.Fatal("all-registrants PREEMPT 0 did not hand B an Exclusive Access reservation")
	}
}

func TestSpecIPTAndMove(t *testing.T) {
	s, _ := New("")
	param := make([]byte, BasicParamLen+4)
	binary.BigEndian.PutUint64(param[8:16], 0x55)
	param[20] = 0x08 | 0x04 // SPEC_I_PT, ALL_TG_PT
	tid := (&Registrant{Initiator: "iqn.b", ISID: nexB.ISID, HasISID: true}).TransportID()
	tid2 := (&Registrant{Initiator: "iqn.c"}).TransportID()
	param = append(append(param, tid...), tid2...)
	binary.BigEndian.PutUint32(param[24:28], uint32(len(tid)+len(tid2)))
	r, err := ParseOut(Register, 0, param)
	if err != nil {
		t.Fatal(err)
	}
	mustOut(t, s, nexA, *r)
	for _, n := range []Nexus{nexA, nexA2, nexB, nexC} {
		if s.st.find(n) < 0 {
			t.Errorf("%s TPGT %d is not registered", n.Initiator, n.TPGT)
		}
	}
	// REGISTER AND MOVE: A reserves, then moves the reservation to a new
	// nexus D with key 0xD, unregistering itself.
	mustOut(t, s, nexA, OutRequest{Action: Reserve, Key: 0x55, Type: WriteExclusive})
	nexD := Nexus{Initiator: "iqn.d", ISID: [6]byte{0x40, 0, 0, 0, 0, 9}, Target: tgt, TPGT: 1}
	mv := make([]byte, 24)
	binary.BigEndian.PutUint64(mv[0:8], 0x55)
	binary.BigEndian.PutUint64(mv[8:16], 0xD)
	mv[17] = 0x02
	binary.BigEndian.PutUint16(mv[18:20], 1)
	dtid := (&Registrant{Initiator: "iqn.d", ISID: nexD.ISID, HasISID: true}).TransportID()
	binary.BigEndian.PutUint32(mv[20:24], uint32(len(dtid)))
	r, err = ParseOut(RegisterAndMove, 0x01, append(mv, dtid...))
	if err != nil {
		t.Fatal(err)
	}
	mustOut(t, s, nexA, *r)
	if s.Conflicts(nexD, Write) || !s.Conflicts(nexB, Write) || s.st.find(nexA) >= 0 {
		t.Fatal("REGISTER AND MOVE did not move the reservation to D and unregister A")
	}
}

func TestTransportIDRoundTrip(t *testing.T) {
	for _, r := range []Registrant{
		{Initiator: "iqn.1994-05.com.redhat:abc", ISID: [6]byte{0x23, 0x3d, 0, 0, 0x3d, 1}, HasISID: true},
		{Initiator: "iqn.x"},
	} {
		b := r.TransportID()
		if len(b)%4 != 0 || len(b) < 20 {
			t.Fatalf("TransportID length %d", len(b))
		}
		name, isid, has, n, err := ParseTransportID(b)
		if err != nil || name != r.Initiator || isid != r.ISID || has != r.HasISID || n != len(b) {
			t.Fatalf("round trip of %+v: %q % x %v %d %v", r, name, isid, has, n, err)
		}
	}
	for _, bad := range [][]byte{
		{0x45, 0, 0},                                // short
		{0x44, 0, 0, 4, 'a', 0, 0, 0},               // not iSCSI
		{0x05, 0, 0, 4, 'a', 'b', 'c', 'd'},         // no NUL
		{0x45, 0, 0, 8, 'a', 'b', 0, 0, 0, 0, 0, 0}, // port format without ,i,0x
		{0x05, 0, 0, 64, 'a', 0},                    // length beyond the data
	} {
		if _, _, _, _, err := ParseTransportID(bad); err == nil {
			t.Errorf("% x accepted", bad)
		}
	}
}

func TestParseOutLengths(t *testing.T) {
	var le *ParamLengthError
	if _, err := ParseOut(Register, 0, make([]byte, 23)); !errors.As(err, &le) {
		t.Error("23-byte list:", err)
	}
	if _, err := ParseOut(Register, 0, make([]byte, 28)); !errors.As(err, &le) {
		t.Error("28-byte list without SPEC_I_PT:", err)
	}
	p := make([]byte, 24)
	p[20] = 0x08
	var fe *FieldError
	if _, err := ParseOut(Reserve, 0, p); !errors.As(err, &fe) {
		t.Error("SPEC_I_PT with RESERVE:", err)
	}
	p = make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:8], 7)
	p[20] = 0x01
	r, err := ParseOut(Preempt, 0x13, p)
	if err != nil || r.Key != 7 || !r.APTPL || r.Scope != 1 || r.Type != 3 {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestAPTPLPersistence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pr", "lu.json")
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	register(t, s, nexA, 0xA) // APTPL=0: nothing written
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatal("state written without APTPL")
	}
	mustOut(t, s, nexB, OutRequest{Action: RegisterAndIgnore, SAKey: 0xB, APTPL: true, AllTgPt: true})
	mustOut(t, s, nexB, OutRequest{Action: Reserve, Key: 0xB, Type: WriteExclusiveRegistrantsOnly})
	before := s.In(ReadFullStatus)
	s2, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	if after := s2.In(ReadFullStatus); !bytes.Equal(before, after) {
		t.Fatalf("reloaded full status differs:\n% x\n% x", before, after)
	}
	if caps := s2.In(ReportCapabilities); caps[3]&1 == 0 {
		t.Fatal("PTPL_A clear after reload")
	}
	if !s2.Conflicts(nexC, Write) || s2.Conflicts(nexA, Write) {
		t.Fatal("reloaded reservation does not apply")
	}
	// An interrupted save leaves a temporary file: it is not the state.
	os.WriteFile(file+".tmp123", []byte("{garbage"), 0o600)
	if _, err := New(file); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(file + ".tmp*"); len(m) != 0 {
		t.Fatal("temporary file left behind")
	}
	// APTPL=0 in a later registration turns persistence off: the file goes.
	mustOut(t, s2, nexA, OutRequest{Action: Register, Key: 0xA, SAKey: 0xA1})
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatal("state file kept after APTPL=0")
	}
	// A corrupt state file is refused, not silently ignored.
	os.WriteFile(file, []byte(`{"version":1,"reserved":true,"type":9,"holder":0,"registrants":[]}`), 0o600)
	if _, err := New(file); err == nil {
		t.Fatal("invalid state file loaded")
	}
}

func TestSaveFailureKeepsOldState(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pr", "lu.json")
	s, _ := New(file)
	mustOut(t, s, nexA, OutRequest{Action: RegisterAndIgnore, SAKey: 1, APTPL: true})
	if err := os.Chmod(filepath.Dir(file), 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(filepath.Dir(file), 0o700)
	if os.Getuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	if _, err := s.Out(nexB, &OutRequest{Action: RegisterAndIgnore, SAKey: 2, APTPL: true}); err == nil {
		t.Fatal("save into a read-only directory succeeded")
	}
	if k := s.In(ReadKeys); binary.BigEndian.Uint32(k[4:8]) != 8 {
		t.Fatal("failed save changed the in-memory state")
	}
}

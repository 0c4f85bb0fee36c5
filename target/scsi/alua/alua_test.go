package alua

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseState(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want State
		bad  bool
	}{
		{"active/optimized", ActiveOptimized, false},
		{"active/non-optimized", ActiveNonOptimized, false},
		{"standby", Standby, false},
		{"Unavailable", Unavailable, false},
		{"offline", 0, true},
		{"active", 0, true},
		{"", 0, true},
	} {
		got, err := ParseState(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("ParseState(%q) = %v, %v; want %v, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
		if !tc.bad && got.String() != stateNames[tc.want] {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}

// TestAllows is the per-state command table of SPC-5 5.16.2.4.
func TestAllows(t *testing.T) {
	for _, tc := range []struct {
		state                  State
		active, standby, anyOK bool
	}{
		{ActiveOptimized, true, true, true},
		{ActiveNonOptimized, true, true, true},
		{Standby, false, true, true},
		{Unavailable, false, false, true},
		{Offline, false, false, true},
		{Transitioning, false, false, true},
	} {
		for _, c := range []struct {
			a    Access
			want bool
		}{{NeedsActive, tc.active}, {StandbyOK, tc.standby}, {AnyState, tc.anyOK}} {
			if got := tc.state.Allows(c.a); got != c.want {
				t.Errorf("%v.Allows(%d) = %v, want %v", tc.state, c.a, got, c.want)
			}
		}
	}
}

// TestCanTransition: every supported state reaches every other; the
// unsupported ones are never entered or left.
func TestCanTransition(t *testing.T) {
	all := []State{ActiveOptimized, ActiveNonOptimized, Standby, Unavailable, LBADependent, Offline, Transitioning}
	for _, from := range all {
		for _, to := range all {
			want := from.Supported() && to.Supported()
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%v, %v) = %v, want %v", from, to, got, want)
			}
		}
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name   string
		groups []GroupConfig
		ok     bool
	}{
		{"one", []GroupConfig{{ID: 1}}, true},
		{"two", []GroupConfig{{ID: 2, State: Standby}, {ID: 1}}, true},
		{"none", nil, false},
		{"zero id", []GroupConfig{{ID: 0}}, false},
		{"duplicate", []GroupConfig{{ID: 3}, {ID: 3, State: Standby}}, false},
		{"offline", []GroupConfig{{ID: 1, State: Offline}}, false},
	} {
		_, err := New(tc.groups)
		if (err == nil) != tc.ok {
			t.Errorf("%s: New = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestSet(t *testing.T) {
	p, err := New([]GroupConfig{{ID: 1, State: ActiveOptimized}, {ID: 2, State: Standby}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		changes    []Change
		changed    bool
		errOffset  int // -1: no error
		want1      State
		want2      State
		generation uint64
	}{
		{"no-op", []Change{{ID: 1, State: ActiveOptimized, Offset: 4}}, false, -1, ActiveOptimized, Standby, 0},
		{"swap", []Change{{ID: 1, State: Standby, Offset: 4}, {ID: 2, State: ActiveOptimized, Offset: 8}}, true, -1, Standby, ActiveOptimized, 1},
		{"unknown group is atomic", []Change{{ID: 1, State: Unavailable, Offset: 4}, {ID: 9, State: Standby, Offset: 8}}, false, 10, Standby, ActiveOptimized, 1},
		{"named twice", []Change{{ID: 2, State: Standby, Offset: 4}, {ID: 2, State: Unavailable, Offset: 8}}, false, 10, Standby, ActiveOptimized, 1},
		{"unsupported target state", []Change{{ID: 2, State: Offline, Offset: 4}}, false, 4, Standby, ActiveOptimized, 1},
		{"to non-optimized", []Change{{ID: 2, State: ActiveNonOptimized, Offset: 4}}, true, -1, Standby, ActiveNonOptimized, 2},
	} {
		changed, err := p.Set(tc.changes)
		var ce *ChangeError
		switch {
		case tc.errOffset < 0 && err != nil:
			t.Errorf("%s: Set: %v", tc.name, err)
		case tc.errOffset >= 0 && !errors.As(err, &ce):
			t.Errorf("%s: Set = %v, want a ChangeError", tc.name, err)
		case tc.errOffset >= 0 && ce.Offset != tc.errOffset:
			t.Errorf("%s: error offset %d, want %d", tc.name, ce.Offset, tc.errOffset)
		}
		if changed != tc.changed {
			t.Errorf("%s: changed = %v, want %v", tc.name, changed, tc.changed)
		}
		s1, _ := p.State(1)
		s2, _ := p.State(2)
		groups, gen := p.Groups()
		if s1 != tc.want1 || s2 != tc.want2 || gen != tc.generation {
			t.Errorf("%s: states %v, %v gen %d; want %v, %v gen %d", tc.name, s1, s2, gen, tc.want1, tc.want2, tc.generation)
		}
		if gen > 0 && groups[0].Status != StatusExplicit {
			t.Errorf("%s: status %d after an explicit change", tc.name, groups[0].Status)
		}
	}
	if _, ok := p.State(7); ok {
		t.Error("State(7) found a group that does not exist")
	}
}

func TestParseSetList(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		want   []Change
		lenErr bool
		errAt  int
	}{
		{"empty", nil, nil, false, -1},
		{"header only", []byte{0, 0, 0, 0}, []Change{}, false, -1},
		{"two", []byte{0, 0, 0, 0, 0x02, 0, 0, 1, 0xF0, 0xFF, 0x01, 0x02}, []Change{{ID: 1, State: Standby, Offset: 4}, {ID: 0x0102, State: ActiveOptimized, Offset: 8}}, false, -1},
		{"short header", []byte{0, 0}, nil, true, -1},
		{"partial descriptor", []byte{0, 0, 0, 0, 0, 0, 0}, nil, true, -1},
		{"offline", []byte{0, 0, 0, 0, 0x0E, 0, 0, 1}, nil, false, 4},
		{"lba dependent", []byte{0, 0, 0, 0, 0, 0, 0, 1, 0x04, 0, 0, 2}, nil, false, 8},
	} {
		got, err := ParseSetList(tc.in)
		var le *LengthError
		var ce *ChangeError
		switch {
		case tc.lenErr:
			if !errors.As(err, &le) {
				t.Errorf("%s: err = %v, want LengthError", tc.name, err)
			}
		case tc.errAt >= 0:
			if !errors.As(err, &ce) || ce.Offset != tc.errAt {
				t.Errorf("%s: err = %v, want ChangeError at %d", tc.name, err, tc.errAt)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case len(got) != len(tc.want):
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		default:
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("%s: [%d] = %+v, want %+v", tc.name, i, got[i], tc.want[i])
				}
			}
		}
	}
}

func TestAppendReport(t *testing.T) {
	p, err := New([]GroupConfig{{ID: 2, State: Standby}, {ID: 1, State: ActiveOptimized}})
	if err != nil {
		t.Fatal(err)
	}
	group1 := []byte{0x00, SupportedBits, 0, 1, 0, StatusNone, 0, 1, 0, 0, 0, 1}
	group2 := []byte{0x02, SupportedBits, 0, 2, 0, StatusNone, 0, 1, 0, 0, 0, 2}
	want := append([]byte{0, 0, 0, 24}, group1...)
	want = append(want, group2...)
	if got := p.AppendReport(nil, FormatLengthOnly); !bytes.Equal(got, want) {
		t.Errorf("length only:\n got % x\nwant % x", got, want)
	}
	wantExt := append([]byte{0, 0, 0, 24, 0x10, ImplicitTransitionTime, 0, 0}, group1...)
	wantExt = append(wantExt, group2...)
	if got := p.AppendReport(nil, FormatExtendedHeader); !bytes.Equal(got, wantExt) {
		t.Errorf("extended:\n got % x\nwant % x", got, wantExt)
	}
	if _, err := p.Set([]Change{{ID: 2, State: ActiveNonOptimized}}); err != nil {
		t.Fatal(err)
	}
	got := p.AppendReport(nil, FormatLengthOnly)
	if got[4+12] != byte(ActiveNonOptimized) || got[4+12+5] != StatusExplicit {
		t.Errorf("after SET: group 2 descriptor % x", got[16:28])
	}
}

// FuzzParseSetList: any parameter list parses or fails cleanly, and what
// parses has one descriptor per 4 bytes with a supported state.
func FuzzParseSetList(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0x02, 0, 0, 1})
	f.Add([]byte{0, 0, 0, 0, 0x0E, 0, 0, 1, 0x00, 0, 0, 2})
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		changes, err := ParseSetList(b)
		if err != nil {
			return
		}
		if len(b) > 0 && len(changes) != (len(b)-4)/4 {
			t.Fatalf("%d changes from %d bytes", len(changes), len(b))
		}
		for _, c := range changes {
			if !c.State.Supported() {
				t.Fatalf("unsupported state %v accepted", c.State)
			}
		}
		p, _ := New([]GroupConfig{{ID: 1}, {ID: 2, State: Standby}})
		p.Set(changes)
		p.AppendReport(nil, FormatExtendedHeader)
	})
}

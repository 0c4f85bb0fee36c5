package conformance

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"
)

const sampleExpectations = `# Expectations for TestConformance.
# One line per test: name, TAB, outcome.

ALL.Read10.Simple	pass
# WRITE SAME is not implemented yet.
ALL.WriteSame10.Simple	skip
ALL.Read10.BeyondEol	fail	# SBC-4 5.16: wrong ASC, tracked
ALL.Inquiry.Standard	skip
# trailer
`

func TestParseExpectations(t *testing.T) {
	e, err := ParseExpectations(strings.NewReader(sampleExpectations))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Entries) != 4 {
		t.Fatalf("parsed %d entries, want 4", len(e.Entries))
	}
	got, ok := e.Lookup("ALL.Read10.BeyondEol")
	if !ok || got.Outcome != Fail || got.Comment != "SBC-4 5.16: wrong ASC, tracked" {
		t.Errorf("BeyondEol = %+v, %v", got, ok)
	}
	if ws, _ := e.Lookup("ALL.WriteSame10.Simple"); !reflect.DeepEqual(ws.Before, []string{"# WRITE SAME is not implemented yet."}) {
		t.Errorf("WriteSame10.Simple comments = %q", ws.Before)
	}
	if !reflect.DeepEqual(e.Trailer, []string{"# trailer"}) {
		t.Errorf("Trailer = %q", e.Trailer)
	}
	// An unchanged file writes back byte for byte.
	var b bytes.Buffer
	if _, err := e.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if b.String() != sampleExpectations {
		t.Errorf("round trip changed the file:\n%s", b.String())
	}
}

func TestParseExpectationsErrors(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"ALL.A.B\n", "line 1: want"},
		{"ALL.A.B\tpass\textra\n", "line 1: want"},
		{"# c\nALL.A.B\tpassed\n", "line 2: unknown outcome \"passed\""},
		{"ALL.A.B\tpass\nALL.A.B\tfail\n", "line 2: ALL.A.B listed twice"},
	}
	for _, tt := range tests {
		_, err := ParseExpectations(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseExpectations(%q) error = %v, want %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestCompare(t *testing.T) {
	e, err := ParseExpectations(strings.NewReader(sampleExpectations))
	if err != nil {
		t.Fatal(err)
	}
	results := []Result{
		{Name: "ALL.Read10.Simple", Outcome: Skip, Detail: "[SKIPPED] x"}, // pass -> skip: worse
		{Name: "ALL.WriteSame10.Simple", Outcome: Pass},                   // skip -> pass: better
		{Name: "ALL.Read10.BeyondEol", Outcome: Fail},                     // unchanged
		{Name: "ALL.New.Test", Outcome: Fail},                             // not in the file
		// ALL.Inquiry.Standard is missing: worse
	}
	worse, better, unknown := e.Compare(results)
	wantWorse := []Change{
		{Name: "ALL.Inquiry.Standard", Expected: Skip, Got: Missing, Detail: "not reported by iscsi-test-cu"},
		{Name: "ALL.Read10.Simple", Expected: Pass, Got: Skip, Detail: "[SKIPPED] x"},
	}
	if !reflect.DeepEqual(worse, wantWorse) {
		t.Errorf("worse = %+v\nwant %+v", worse, wantWorse)
	}
	if want := []Change{{Name: "ALL.WriteSame10.Simple", Expected: Skip, Got: Pass}}; !reflect.DeepEqual(better, want) {
		t.Errorf("better = %+v", better)
	}
	if want := []Change{{Name: "ALL.New.Test", Expected: Missing, Got: Fail}}; !reflect.DeepEqual(unknown, want) {
		t.Errorf("unknown = %+v", unknown)
	}
	if s := worse[1].String(); s != "ALL.Read10.Simple: expected pass, got skip ([SKIPPED] x)" {
		t.Errorf("Change.String() = %q", s)
	}
}

func TestUpdated(t *testing.T) {
	e, err := ParseExpectations(strings.NewReader(sampleExpectations))
	if err != nil {
		t.Fatal(err)
	}
	results := []Result{
		{Name: "ALL.New.Test", Outcome: Pass},
		{Name: "ALL.Read10.Simple", Outcome: Pass},
		{Name: "ALL.WriteSame10.Simple", Outcome: Pass},
		{Name: "ALL.Read10.BeyondEol", Outcome: Fail},
		{Name: "ALL.Unmap.Simple", Outcome: Skip, Detail: "[SKIPPED] Logical unit is fully\n provisioned. #1"},
	}
	var b bytes.Buffer
	if _, err := e.Updated(results).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	// The header stays on top; comments stay with their test; the trailing
	// comment of an unchanged outcome stays; a dropped test goes.
	want := `# Expectations for TestConformance.
# One line per test: name, TAB, outcome.

ALL.New.Test	pass
ALL.Read10.Simple	pass
# WRITE SAME is not implemented yet.
ALL.WriteSame10.Simple	pass
ALL.Read10.BeyondEol	fail	# SBC-4 5.16: wrong ASC, tracked
ALL.Unmap.Simple	skip	# libiscsi: [SKIPPED] Logical unit is fully provisioned. 1
# trailer
`
	if b.String() != want {
		t.Errorf("Updated file:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestUpdatedFromHeaderOnly(t *testing.T) {
	e, err := ParseExpectations(strings.NewReader("# header\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := e.Updated([]Result{{Name: "ALL.A.B", Outcome: Skip}}).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if want := "# header\n\nALL.A.B\tskip\n"; b.String() != want {
		t.Errorf("Updated = %q, want %q", b.String(), want)
	}
}

// TestExpectedFileParses keeps the checked-in files of the matrix valid.
func TestExpectedFileParses(t *testing.T) {
	for _, kind := range MatrixKinds(nil) {
		if _, err := os.Stat(kind.Expected); os.IsNotExist(err) && kind.Name != "file" {
			continue // a kind not recorded yet
		}
		checkExpectedFile(t, kind.Expected)
	}
}

// The matrix's goal, kept by the files: every test passes on at least one
// LUN kind, and wherever one does not pass, its line says why.
func TestExpectedEveryTestPassesSomewhere(t *testing.T) {
	passed := map[string]bool{}
	var order []string
	for _, kind := range MatrixKinds(nil) {
		f, err := os.Open(kind.Expected)
		if err != nil {
			t.Fatal(err)
		}
		e, err := ParseExpectations(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", kind.Expected, err)
		}
		for _, entry := range e.Entries {
			if _, seen := passed[entry.Name]; !seen {
				order = append(order, entry.Name)
			}
			passed[entry.Name] = passed[entry.Name] || entry.Outcome == Pass
			if entry.Outcome != Pass && entry.Comment == "" {
				t.Errorf("%s: %s is %s without a reason (add <TAB># why)", kind.Expected, entry.Name, entry.Outcome)
			}
		}
	}
	for _, name := range order {
		if !passed[name] {
			t.Errorf("%s passes on no LUN kind of the matrix", name)
		}
	}
}

func checkExpectedFile(t *testing.T, expectedFile string) {
	f, err := os.Open(expectedFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e, err := ParseExpectations(f)
	if err != nil {
		t.Fatalf("%s: %v", expectedFile, err)
	}
	if len(e.Entries) == 0 {
		t.Fatalf("%s lists no test", expectedFile)
	}
	for _, entry := range e.Entries {
		if !strings.HasPrefix(entry.Name, "ALL.") || strings.Count(entry.Name, ".") != 2 {
			t.Errorf("%s: %q is not a FAMILY.Suite.Test name of family ALL", expectedFile, entry.Name)
		}
	}
}

func FuzzParseExpectations(f *testing.F) {
	f.Add([]byte(sampleExpectations))
	f.Add([]byte("A\tpass\t# x # y\n\n#\n"))
	f.Add([]byte("A pass\r\nB\tskip"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseExpectations(bytes.NewReader(data))
		if err != nil {
			return
		}
		// What parses must write back into something that parses to the
		// same entries.
		var b bytes.Buffer
		if _, err := e.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		again, err := ParseExpectations(&b)
		if err != nil {
			t.Fatalf("rewritten file does not parse: %v\n%q", err, b.String())
		}
		if len(again.Entries) != len(e.Entries) {
			t.Fatalf("rewrite changed the entry count %d -> %d", len(e.Entries), len(again.Entries))
		}
		for i := range e.Entries {
			a, b := e.Entries[i], again.Entries[i]
			if a.Name != b.Name || a.Outcome != b.Outcome || a.Comment != b.Comment {
				t.Fatalf("entry %d changed: %+v -> %+v", i, a, b)
			}
		}
	})
}

package conformance

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseConsoleSample(t *testing.T) {
	data, err := os.ReadFile("testdata/console-sample.txt")
	if err != nil {
		t.Fatal(err)
	}
	c := ParseConsole("ALL", data)
	if c.Running != "" {
		t.Errorf("Running = %q, want none", c.Running)
	}
	if want := (RunSummary{Total: 26, Ran: 26, Passed: 25, Failed: 1}); c.Summary == nil || *c.Summary != want {
		t.Errorf("Summary = %+v, want %+v", c.Summary, want)
	}
	if len(c.Results) != 26 {
		t.Fatalf("parsed %d results, want 26", len(c.Results))
	}
	totals := Totals(c.Results)
	if totals[Pass] != 12 || totals[Skip] != 13 || totals[Fail] != 1 {
		t.Errorf("totals = %v, want 12 pass, 13 skip, 1 fail", totals)
	}
	checks := map[string]Result{
		"ALL.CompareAndWrite.Simple":             {Outcome: Skip, Detail: "[SKIPPED] COMPAREANDWRITE is not implemented."},
		"ALL.GetLBAStatus.Simple":                {Outcome: Pass},
		"ALL.GetLBAStatus.BeyondEol":             {Outcome: Fail, Detail: "[FAILED] GET_LBA_STATUS successful but should have failed with ILLEGAL_REQUEST(0x05)/LBA_OUT_OF_RANGE(0x2100)"},
		"ALL.GetLBAStatus.UnmapSingle":           {Outcome: Skip, Detail: "[SKIPPED] Logical unit is fully provisioned. Skipping test"},
		"ALL.ModeSense6.Control":                 {Outcome: Pass}, // a [WARNING] is not a skip
		"ALL.ModeSense6.Control-D_SENSE":         {Outcome: Pass},
		"ALL.ExtendedCopy.ValidSegDescr":         {Outcome: Skip, Detail: "[SKIPPED] EXTENDEDCOPY is not implemented."},
		"ALL.Inquiry.VersionDescriptors":         {Outcome: Pass},
		"ALL.CompareAndWrite.InvalidDataOutSize": {Outcome: Skip, Detail: "[SKIPPED] Logical unit is fully provisioned. Skipping test"},
	}
	byName := map[string]Result{}
	for _, r := range c.Results {
		byName[r.Name] = r
	}
	for name, want := range checks {
		got, ok := byName[name]
		if !ok {
			t.Errorf("%s not parsed", name)
			continue
		}
		if got.Outcome != want.Outcome || got.Detail != want.Detail {
			t.Errorf("%s = %v %q, want %v %q", name, got.Outcome, got.Detail, want.Outcome, want.Detail)
		}
	}
}

// TestParseConsoleAgreesWithSummary checks the parser against CUnit's own
// count on every captured console log: when they disagree, iscsi-test-cu's
// output has a shape the parser does not know.
func TestParseConsoleAgreesWithSummary(t *testing.T) {
	files, err := filepath.Glob("testdata/console-*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captured console logs: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		c := ParseConsole("ALL", data)
		if c.Summary == nil {
			t.Errorf("%s: no Run Summary parsed", file)
			continue
		}
		totals := Totals(c.Results)
		if len(c.Results) != c.Summary.Ran || totals[Fail] != c.Summary.Failed {
			t.Errorf("%s: parsed %d tests (%d failed), CUnit ran %d (%d failed)", file, len(c.Results), totals[Fail], c.Summary.Ran, c.Summary.Failed)
		}
	}
}

func TestParseConsole(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    []Result
		running string
	}{
		{
			name: "pass on the test line",
			out:  "Suite: Read10\n  Test: Simple ...passed\n",
			want: []Result{{Name: "ALL.Read10.Simple", Outcome: Pass}},
		},
		{
			name: "failure detail from the assertion when nothing was logged",
			out:  "Suite: Read10\n  Test: BeyondEol ...FAILED\n    1. test_read10_beyond_eol.c:40  - CU_ASSERT_EQUAL(ret,0)\n  Test: Next ...passed\n",
			want: []Result{
				{Name: "ALL.Read10.BeyondEol", Outcome: Fail, Detail: "1. test_read10_beyond_eol.c:40  - CU_ASSERT_EQUAL(ret,0)"},
				{Name: "ALL.Read10.Next", Outcome: Pass},
			},
		},
		{
			name: "FAILED wins over SKIPPED",
			out:  "Suite: S\n  Test: T ...    [SKIPPED] part\n    [FAILED] other part\nFAILED\n",
			want: []Result{{Name: "ALL.S.T", Outcome: Fail, Detail: "[FAILED] other part"}},
		},
		{
			name:    "output cut inside a test (hang or crash)",
			out:     "Suite: S\n  Test: A ...passed\n  Test: B ...    [FAILED] something\n",
			want:    []Result{{Name: "ALL.S.A", Outcome: Pass}},
			running: "ALL.S.B",
		},
		{
			name:    "output cut right after the test line",
			out:     "Suite: S\n  Test: A ...passed\n  Test: B ...",
			want:    []Result{{Name: "ALL.S.A", Outcome: Pass}},
			running: "ALL.S.B",
		},
		{
			name: "a log line that merely contains passed is not the token",
			out:  "Suite: S\n  Test: A ...    all writes passed\nFAILED\n",
			want: []Result{{Name: "ALL.S.A", Outcome: Fail}},
		},
		{
			name: "same test name in two suites",
			out:  "Suite: Read6\n  Test: Simple ...passed\nSuite: Read10\n  Test: Simple ...passed\n",
			want: []Result{{Name: "ALL.Read6.Simple", Outcome: Pass}, {Name: "ALL.Read10.Simple", Outcome: Pass}},
		},
		{
			name: "suite cleanup logs after the token, on its line",
			out:  "Suite: S\n  Test: A ...passed    [SKIPPED] PERSISTENT RESERVE IN is not implemented.\n\n  Test: B ...    [SKIPPED] x\npassed    [SKIPPED] PERSISTENT RESERVE IN is not implemented.\n  Test: C ...FAILED    [SKIPPED] y\n",
			want: []Result{
				{Name: "ALL.S.A", Outcome: Pass},
				{Name: "ALL.S.B", Outcome: Skip, Detail: "[SKIPPED] x"},
				{Name: "ALL.S.C", Outcome: Fail},
			},
		},
		{
			name: "a token glued to other text is not a token",
			out:  "Suite: S\n  Test: A ...\npassedx\nFAILED\n",
			want: []Result{{Name: "ALL.S.A", Outcome: Fail}},
		},
		{
			name: "no tests: a login failure",
			out:  "Failed to connect to SCSI device 0\n",
		},
		{
			name: "CRLF line ends",
			out:  "Suite: S\r\n  Test: A ...passed\r\n",
			want: []Result{{Name: "ALL.S.A", Outcome: Pass}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ParseConsole("ALL", []byte(tt.out))
			if !reflect.DeepEqual(c.Results, tt.want) {
				t.Errorf("results = %+v\nwant %+v", c.Results, tt.want)
			}
			if c.Running != tt.running {
				t.Errorf("Running = %q, want %q", c.Running, tt.running)
			}
		})
	}
}

func TestParseList(t *testing.T) {
	out := "ALL\nALL.Read10\nALL.Read10.Simple\nALL.Read10.BeyondEol\nSCSI\nSCSI.Read10\nSCSI.Read10.Simple\nALL.ModeSense6.Control-D_SENSE\nALL..Broken\n"
	got := ParseList("ALL", []byte(out))
	want := []string{"ALL.Read10.Simple", "ALL.Read10.BeyondEol", "ALL.ModeSense6.Control-D_SENSE"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseList = %q, want %q", got, want)
	}
}

func TestOutcomeOrderAndNames(t *testing.T) {
	if !(Missing < Fail && Fail < Skip && Skip < Pass) {
		t.Fatal("outcomes must order missing < fail < skip < pass")
	}
	for _, o := range []Outcome{Fail, Skip, Pass} {
		got, err := ParseOutcome(o.String())
		if err != nil || got != o {
			t.Errorf("ParseOutcome(%q) = %v, %v", o.String(), got, err)
		}
	}
	for _, bad := range []string{"", "missing", "PASS", "passed"} {
		if _, err := ParseOutcome(bad); err == nil {
			t.Errorf("ParseOutcome(%q) accepted", bad)
		}
	}
	if s := Outcome(42).String(); !strings.Contains(s, "42") {
		t.Errorf("Outcome(42).String() = %q", s)
	}
}

func FuzzParseConsole(f *testing.F) {
	if data, err := os.ReadFile("testdata/console-sample.txt"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("Suite: S\n  Test: A ...passed\n  Test: B ..."))
	f.Add([]byte("Run Summary:\n tests 99999999999999999999 1 1 0 0\n"))
	f.Add([]byte("  Test:  ...FAILED\n    1. x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := ParseConsole("ALL", data)
		for _, r := range c.Results {
			if !strings.HasPrefix(r.Name, "ALL.") {
				t.Fatalf("result name %q lacks the family", r.Name)
			}
			if r.Outcome < Fail || r.Outcome > Pass {
				t.Fatalf("result %q has outcome %v", r.Name, r.Outcome)
			}
		}
		if c.Summary != nil && (c.Summary.Total < 0 || c.Summary.Ran < 0) {
			t.Fatalf("negative summary %+v", c.Summary)
		}
	})
}

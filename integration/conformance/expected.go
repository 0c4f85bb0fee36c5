package conformance

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Expectation is one line of the expectations file:
//
//	FAMILY.Suite.Test<TAB>pass|skip|fail[<TAB># why]
//
// Comment lines (starting with #) and blank lines are kept with the entry
// that follows them, so a rewrite keeps the reasons people wrote down.
type Expectation struct {
	Name    string
	Outcome Outcome
	Comment string   // trailing "# ..." without the #, trimmed
	Before  []string // comment and blank lines just above the entry
}

// Expectations is a parsed expectations file, in file order.
type Expectations struct {
	Entries []Expectation
	Trailer []string // comment lines after the last entry
	index   map[string]int
}

// ParseExpectations reads an expectations file. Errors name the line.
func ParseExpectations(r io.Reader) (*Expectations, error) {
	e := &Expectations{index: map[string]int{}}
	var pending []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for lineNo := 1; sc.Scan(); lineNo++ {
		raw := strings.TrimRight(sc.Text(), " \t\r")
		if trimmed := strings.TrimSpace(raw); trimmed == "" || strings.HasPrefix(trimmed, "#") {
			pending = append(pending, raw)
			continue
		}
		body, comment, _ := strings.Cut(raw, "#")
		fields := strings.Fields(body)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"TestName<TAB>pass|skip|fail\", got %q", lineNo, raw)
		}
		outcome, err := ParseOutcome(fields[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", lineNo, err)
		}
		if _, dup := e.index[fields[0]]; dup {
			return nil, fmt.Errorf("line %d: %s listed twice", lineNo, fields[0])
		}
		e.index[fields[0]] = len(e.Entries)
		e.Entries = append(e.Entries, Expectation{
			Name:    fields[0],
			Outcome: outcome,
			Comment: strings.TrimSpace(comment),
			Before:  pending,
		})
		pending = nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	e.Trailer = pending
	return e, nil
}

// Lookup returns the expectation for a test.
func (e *Expectations) Lookup(name string) (Expectation, bool) {
	i, ok := e.index[name]
	if !ok {
		return Expectation{}, false
	}
	return e.Entries[i], true
}

// Change is a test whose outcome differs from its expectation.
type Change struct {
	Name     string
	Expected Outcome // Missing for a test the file does not list
	Got      Outcome // Missing for a test the run did not report
	Detail   string
}

func (c Change) String() string {
	s := fmt.Sprintf("%s: expected %s, got %s", c.Name, c.Expected, c.Got)
	if c.Detail != "" {
		s += " (" + c.Detail + ")"
	}
	return s
}

// Compare returns the tests that did worse than expected (including every
// expected test the run did not report), those that did better, and those
// the file does not know (a newer libiscsi), each sorted by name.
func (e *Expectations) Compare(results []Result) (worse, better, unknown []Change) {
	seen := make(map[string]bool, len(results))
	for _, r := range results {
		seen[r.Name] = true
		exp, ok := e.Lookup(r.Name)
		switch {
		case !ok:
			unknown = append(unknown, Change{Name: r.Name, Expected: Missing, Got: r.Outcome, Detail: r.Detail})
		case r.Outcome < exp.Outcome:
			worse = append(worse, Change{Name: r.Name, Expected: exp.Outcome, Got: r.Outcome, Detail: r.Detail})
		case r.Outcome > exp.Outcome:
			better = append(better, Change{Name: r.Name, Expected: exp.Outcome, Got: r.Outcome, Detail: r.Detail})
		}
	}
	for _, exp := range e.Entries {
		if !seen[exp.Name] {
			worse = append(worse, Change{Name: exp.Name, Expected: exp.Outcome, Got: Missing, Detail: "not reported by iscsi-test-cu"})
		}
	}
	for _, list := range [][]Change{worse, better, unknown} {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	return worse, better, unknown
}

// Updated returns the expectations rewritten to what the run found, in run
// order. Comments of tests that are still there are kept; a trailing
// comment is kept only while the outcome is unchanged, since it explains
// that outcome. Entries for tests the run no longer has are dropped.
func (e *Expectations) Updated(results []Result) *Expectations {
	u := &Expectations{index: map[string]int{}, Trailer: e.Trailer}
	if len(e.Entries) == 0 && len(results) > 0 {
		// A file of comments only: they are its header, not a trailer.
		u.Trailer = nil
		defer func() { u.Entries[0].Before = e.Trailer }()
	}
	for _, r := range results {
		if _, dup := u.index[r.Name]; dup {
			continue
		}
		next := Expectation{Name: r.Name, Outcome: r.Outcome}
		if old, ok := e.Lookup(r.Name); ok {
			next.Before = old.Before
			if old.Outcome == r.Outcome {
				next.Comment = old.Comment
			}
		}
		if next.Comment == "" && r.Outcome != Pass && r.Detail != "" {
			// A new skip or failure starts with libiscsi's own reason;
			// whoever reviews the rewrite may say more.
			next.Comment = "libiscsi: " + strings.Join(strings.Fields(strings.ReplaceAll(r.Detail, "#", "")), " ")
		}
		u.index[r.Name] = len(u.Entries)
		u.Entries = append(u.Entries, next)
	}
	// The file's header is the comment block above its first entry; keep
	// it on top even when the run starts with a different test.
	if len(e.Entries) > 0 && len(u.Entries) > 0 && u.Entries[0].Name != e.Entries[0].Name {
		header := e.Entries[0].Before
		if i, ok := u.index[e.Entries[0].Name]; ok {
			u.Entries[i].Before = nil
		}
		u.Entries[0].Before = append(append([]string(nil), header...), u.Entries[0].Before...)
	}
	return u
}

// WriteTo writes the file form that ParseExpectations reads.
func (e *Expectations) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	for _, entry := range e.Entries {
		for _, line := range entry.Before {
			b.WriteString(line + "\n")
		}
		b.WriteString(entry.Name + "\t" + entry.Outcome.String())
		if entry.Comment != "" {
			b.WriteString("\t# " + entry.Comment)
		}
		b.WriteString("\n")
	}
	for _, line := range e.Trailer {
		b.WriteString(line + "\n")
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// Totals counts results by outcome.
func Totals(results []Result) map[Outcome]int {
	t := map[Outcome]int{}
	for _, r := range results {
		t[r.Outcome]++
	}
	return t
}

package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration. File and Line locate it
// (Line is 0 when the problem has no position, e.g. in a Config built in
// code); Key is the indexed key path, such as "target[1].lun[0].size".
type Problem struct {
	File string
	Line int
	Key  string
	Msg  string
}

// String renders the problem as "FILE:LINE: key: msg", leaving out the
// parts that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case p.File != "" && p.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", p.File, p.Line)
	case p.File != "":
		b.WriteString(p.File + ": ")
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error lists every problem found in one configuration, so that an operator
// can fix them all in one pass instead of one per restart.
type Error struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// reporter collects problems and gives each key path its source line.
type reporter struct {
	file  string
	lines map[string]int // indexed key path -> line, from scanKeyLines; nil for configs built in code
	// reported holds the keys that already have a problem: a value that did
	// not decode is reported once, not again by every check that reads it.
	reported map[string]bool
	problems []Problem
}

func newReporter(file string, lines map[string]int) *reporter {
	return &reporter{file: file, lines: lines, reported: map[string]bool{}}
}

func (r *reporter) add(key, format string, args ...any) {
	if key != "" {
		if r.reported[key] {
			return
		}
		r.reported[key] = true
	}
	r.problems = append(r.problems, Problem{
		File: r.file,
		Line: r.lineOf(key),
		Key:  key,
		Msg:  fmt.Sprintf(format, args...),
	})
}

// lineOf finds the line of key, or of its nearest ancestor that has one: a
// missing key is reported at the line of the table that lacks it.
func (r *reporter) lineOf(key string) int {
	for key != "" {
		if line, ok := r.lines[key]; ok {
			return line
		}
		cut := strings.LastIndexAny(key, ".[")
		if cut < 0 {
			return 0
		}
		key = key[:cut]
	}
	return 0
}

// err returns the problems in line order, or nil when there are none.
func (r *reporter) err() error {
	if len(r.problems) == 0 {
		return nil
	}
	problems := append([]Problem(nil), r.problems...)
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
	return &Error{Problems: problems}
}

// joinKey appends one key part to a dotted path, quoting it as TOML would
// when it is not a bare key.
func joinKey(base, part string) string {
	if !isBareKey(part) {
		part = strconv.Quote(part)
	}
	if base == "" {
		return part
	}
	return base + "." + part
}

// indexKey names element i of an array: "target[2]".
func indexKey(base string, i int) string {
	return base + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBareKeyChar(s[i]) {
			return false
		}
	}
	return true
}

// isBareKeyChar: TOML 1.0 bare keys are A-Za-z0-9_-.
func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

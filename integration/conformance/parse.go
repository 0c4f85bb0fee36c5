// Package conformance runs libiscsi's iscsi-test-cu against a target and
// compares every test's outcome with a checked-in expectations file.
//
// iscsi-test-cu is a CUnit program. In its verbose console mode (the
// default) CUnit prints "Suite: NAME", then for each test "  Test: NAME ..."
// followed by whatever the test logs and finally "passed" or "FAILED". A
// libiscsi test that cannot run (an opcode the target does not implement, a
// feature the LU does not have) logs "[SKIPPED] why" and passes; this
// package reports such a test as skip. The console is used rather than
// CUnit's XML mode because the XML records no skips.
package conformance

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Outcome is what one test did. Outcomes are ordered: a larger one is
// better, so a change to a smaller one is a regression.
type Outcome int

const (
	Missing Outcome = iota // not reported at all
	Fail
	Skip
	Pass
)

var outcomeNames = [...]string{Missing: "missing", Fail: "fail", Skip: "skip", Pass: "pass"}

func (o Outcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
	return outcomeNames[o]
}

// ParseOutcome accepts the outcomes an expectations file may name.
func ParseOutcome(s string) (Outcome, error) {
	switch s {
	case "pass":
		return Pass, nil
	case "skip":
		return Skip, nil
	case "fail":
		return Fail, nil
	}
	return Missing, fmt.Errorf("unknown outcome %q (want pass, skip or fail)", s)
}

// Result is the outcome of one test.
type Result struct {
	Name    string // FAMILY.Suite.Test, as iscsi-test-cu --list prints it
	Outcome Outcome
	Detail  string // the first [SKIPPED]/[FAILED] message or failed assertion; why it hung or crashed
}

// RunSummary is CUnit's "tests" row of its closing Run Summary table.
type RunSummary struct {
	Total, Ran, Passed, Failed, Inactive int
}

// Console is what ParseConsole found in a (possibly cut short) console log.
type Console struct {
	Results []Result // completed tests, in order
	// Running is the test that had started when the output ended, or "".
	// A hang or crash is charged to it.
	Running string
	Summary *RunSummary // nil if the run did not get to its summary
}

const (
	suitePrefix = "Suite: "
	testPrefix  = "  Test: "
	testSuffix  = " ..."
	tokPassed   = "passed"
	tokFailed   = "FAILED"
)

// summaryTestsRE matches the tests row of CUnit's Run Summary:
// "tests    230    230    196     34        0".
var summaryTestsRE = regexp.MustCompile(`^\s*tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$`)

// ParseConsole parses iscsi-test-cu's verbose console output; family is the
// test family the names are prefixed with (e.g. "ALL"). It never fails:
// lines it does not know are a test's log output or are ignored.
func ParseConsole(family string, out []byte) Console {
	var (
		c         Console
		suite     string
		running   string          // full name of the test in progress
		log       strings.Builder // its log lines
		last      = -1            // index in c.Results of the last FAILED test, for its assertions
		inSummary bool
	)
	finish := func(token string) {
		r := Result{Name: running, Outcome: Pass}
		text := log.String()
		switch {
		case token == tokFailed:
			r.Outcome = Fail
			r.Detail = firstTagged(text, "[FAILED]")
		case strings.Contains(text, "[SKIPPED]"):
			r.Outcome = Skip
			r.Detail = firstTagged(text, "[SKIPPED]")
		}
		c.Results = append(c.Results, r)
		if r.Outcome == Fail {
			last = len(c.Results) - 1
		} else {
			last = -1
		}
		running = ""
		log.Reset()
	}
	// feed handles text that belongs to the running test: a log line, or
	// the completion token.
	feed := func(s string) {
		if token := completion(s); token != "" {
			finish(token)
			return
		}
		log.WriteString(s)
		log.WriteByte('\n')
	}

	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, suitePrefix):
			// A test cut off by a new suite did not complete: drop it.
			running, last = "", -1
			log.Reset()
			suite = strings.TrimSpace(line[len(suitePrefix):])
		case strings.HasPrefix(line, testPrefix):
			running, last = "", -1
			log.Reset()
			rest := line[len(testPrefix):]
			name, after, ok := strings.Cut(rest, testSuffix)
			if !ok {
				// The " ..." is still to come: the output ends
				// mid-line, inside the name.
				name, after = strings.TrimSpace(rest), ""
			}
			if name == "" {
				continue
			}
			running = family + "." + suite + "." + name
			if after != "" {
				feed(after)
			}
		case strings.HasPrefix(line, "Run Summary:"):
			running, last = "", -1
			inSummary = true
		case inSummary:
			if m := summaryTestsRE.FindStringSubmatch(line); m != nil {
				var n [5]int
				for i := range n {
					n[i], _ = strconv.Atoi(m[i+1]) // \d+ matched; overflow leaves 0
				}
				c.Summary = &RunSummary{Total: n[0], Ran: n[1], Passed: n[2], Failed: n[3], Inactive: n[4]}
			}
		case running != "":
			feed(line)
		case last >= 0 && c.Results[last].Detail == "":
			// "    1. file.c:38  - CU_ASSERT_EQUAL(_r,0)" after FAILED:
			// the assertion says why when the test logged nothing.
			if s := strings.TrimSpace(line); s != "" {
				c.Results[last].Detail = s
			}
		}
	}
	c.Running = running
	return c
}

// completion returns the CUnit token that ends a test if s starts with one.
// Tests indent what they log, so only CUnit starts a line with the token;
// text after it on the same line comes from the suite's cleanup or the next
// test's setup (libiscsi's clear_pr logs "[SKIPPED] ..." there), not from
// the test that ended.
func completion(s string) string {
	for _, token := range []string{tokPassed, tokFailed} {
		rest, ok := strings.CutPrefix(s, token)
		if ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\r') {
			return token
		}
	}
	return ""
}

// firstTagged returns the first log line containing tag, trimmed.
func firstTagged(text, tag string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, tag) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// ParseList parses `iscsi-test-cu --list`, which prints every family,
// FAMILY.Suite and FAMILY.Suite.Test, and returns the full test names of one
// family in order.
func ParseList(family string, out []byte) []string {
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		parts := strings.Split(line, ".")
		if len(parts) == 3 && parts[0] == family && parts[1] != "" && parts[2] != "" {
			names = append(names, line)
		}
	}
	return names
}

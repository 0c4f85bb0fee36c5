package config

import (
	"strconv"
	"strings"
)

// scanKeyLines maps every key of a TOML document, written as an indexed path
// ("target[1].lun[0].size"), to the 1-based line where it is defined.
//
// BurntSushi/toml keeps one position per dotted key name, so all the
// [[target.lun]] tables share one entry for "target.lun.size" and the
// position of the last one wins; it does not export those positions either.
// Errors must name the right table, so the text, already accepted by the
// TOML parser, is scanned once more here just far enough to know where each
// table, array element and key starts. The scanner never fails: on text it
// does not understand it moves on, and a key it missed is reported at the
// line of its nearest ancestor.
func scanKeyLines(src string) map[string]int {
	s := &lineScanner{src: src, line: 1, lines: map[string]int{}, lastElem: map[string]int{}}
	s.document()
	return s.lines
}

type lineScanner struct {
	src   string
	pos   int
	line  int
	lines map[string]int
	// lastElem maps an array of tables ("target[0].lun") to the index of
	// its last element: TOML 1.0 section 2.14 attaches keys and sub-tables
	// to the most recently defined element.
	lastElem map[string]int
}

func (s *lineScanner) eof() bool { return s.pos >= len(s.src) }

func (s *lineScanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *lineScanner) advance() {
	if s.eof() {
		return
	}
	if s.src[s.pos] == '\n' {
		s.line++
	}
	s.pos++
}

func (s *lineScanner) hasPrefix(p string) bool { return strings.HasPrefix(s.src[s.pos:], p) }

func (s *lineScanner) record(path string, line int) {
	if _, ok := s.lines[path]; !ok {
		s.lines[path] = line
	}
}

// skipBlank skips spaces and tabs on the current line.
func (s *lineScanner) skipBlank() {
	for c := s.peek(); c == ' ' || c == '\t'; c = s.peek() {
		s.advance()
	}
}

// skipBlankLines skips whitespace, newlines and comments.
func (s *lineScanner) skipBlankLines() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.advance()
		case '#':
			s.skipRestOfLine()
		default:
			return
		}
	}
}

func (s *lineScanner) skipRestOfLine() {
	for !s.eof() && s.peek() != '\n' {
		s.advance()
	}
}

func (s *lineScanner) document() {
	table := "" // indexed path of the current table; "" is the root
	for {
		s.skipBlankLines()
		if s.eof() {
			return
		}
		line := s.line
		switch {
		case s.hasPrefix("[["):
			s.pos += 2
			parts := s.key()
			if len(parts) == 0 {
				s.skipRestOfLine()
				continue
			}
			// The parents resolve to their last elements; the array itself
			// gains a new one.
			array := joinKey(s.resolve("", parts[:len(parts)-1], line), parts[len(parts)-1])
			next := 0
			if n, ok := s.lastElem[array]; ok {
				next = n + 1
			}
			s.lastElem[array] = next
			table = indexKey(array, next)
			s.record(array, line)
			s.record(table, line)
		case s.peek() == '[':
			s.pos++
			table = s.resolve("", s.key(), line)
			s.record(table, line)
		default:
			path := s.resolve(table, s.key(), line)
			s.skipBlank()
			if s.peek() == '=' {
				s.advance()
			}
			s.skipBlank()
			s.record(path, line)
			s.value(path)
		}
		// The rest of the line is a closing bracket or a comment.
		s.skipRestOfLine()
	}
}

// resolve appends a dotted key to base, stepping into the last element of
// every array of tables it passes through.
// Tables a dotted key creates implicitly are recorded at its line.
func (s *lineScanner) resolve(base string, parts []string, line int) string {
	path := base
	for _, part := range parts {
		path = joinKey(path, part)
		if n, ok := s.lastElem[path]; ok {
			path = indexKey(path, n)
		}
		s.record(path, line)
	}
	return path
}

// key reads a possibly dotted, possibly quoted key and returns its parts.
func (s *lineScanner) key() []string {
	var parts []string
	for {
		s.skipBlank()
		var part string
		switch c := s.peek(); {
		case c == '"':
			part = s.basicString()
		case c == '\'':
			part = s.literalString()
		case isBareKeyChar(c):
			start := s.pos
			for isBareKeyChar(s.peek()) {
				s.advance()
			}
			part = s.src[start:s.pos]
		default:
			return parts
		}
		parts = append(parts, part)
		s.skipBlank()
		if s.peek() != '.' {
			return parts
		}
		s.advance()
	}
}

// basicString reads a one-line "..." string and returns its value.
func (s *lineScanner) basicString() string {
	start := s.pos
	s.advance()
	for !s.eof() {
		switch s.peek() {
		case '\\':
			s.advance()
			s.advance()
			continue
		case '"':
			s.advance()
			raw := s.src[start:s.pos]
			// Go's escapes cover TOML's; a key using one Go lacks only
			// loses its exact line, not the problem.
			if v, err := strconv.Unquote(raw); err == nil {
				return v
			}
			return raw[1 : len(raw)-1]
		case '\n':
			return s.src[start+1 : s.pos]
		}
		s.advance()
	}
	return s.src[start+1:]
}

// literalString reads a one-line '...' string, which has no escapes.
func (s *lineScanner) literalString() string {
	s.advance()
	start := s.pos
	for !s.eof() && s.peek() != '\'' && s.peek() != '\n' {
		s.advance()
	}
	v := s.src[start:s.pos]
	if s.peek() == '\'' {
		s.advance()
	}
	return v
}

// multiline skips a multi-line string, basic (three double quotes) or
// literal (three single quotes); up to two quotes may precede the
// closing delimiter (TOML 1.0 section 2.6).
func (s *lineScanner) multiline(delim string) {
	s.pos += len(delim)
	for !s.eof() {
		if delim == `"""` && s.peek() == '\\' {
			s.advance()
			s.advance()
			continue
		}
		if s.hasPrefix(delim) {
			s.pos += len(delim)
			for i := 0; i < 2 && s.peek() == delim[0]; i++ {
				s.advance()
			}
			return
		}
		s.advance()
	}
}

// value skips one value, recording the lines of array elements and of the
// keys of inline tables.
func (s *lineScanner) value(path string) {
	switch {
	case s.hasPrefix(`"""`):
		s.multiline(`"""`)
	case s.hasPrefix("'''"):
		s.multiline("'''")
	case s.peek() == '"':
		s.basicString()
	case s.peek() == '\'':
		s.literalString()
	case s.peek() == '[':
		s.array(path)
	case s.peek() == '{':
		s.inlineTable(path)
	default:
		// Numbers, booleans, dates (which may hold a space).
		for !s.eof() {
			switch s.peek() {
			case ',', ']', '}', '\n', '#':
				return
			}
			s.advance()
		}
	}
}

func (s *lineScanner) array(path string) {
	s.advance() // [
	for i := 0; ; i++ {
		s.skipBlankLines()
		if s.eof() {
			return
		}
		if s.peek() == ']' {
			s.advance()
			return
		}
		before := s.pos
		elem := indexKey(path, i)
		s.record(elem, s.line)
		s.value(elem)
		s.skipBlankLines()
		switch s.peek() {
		case ',':
			s.advance()
		case ']':
			s.advance()
			return
		default:
			if s.pos == before {
				s.advance() // not TOML; make progress anyway
			}
		}
	}
}

func (s *lineScanner) inlineTable(path string) {
	s.advance() // {
	for !s.eof() {
		// Newlines are skipped too: TOML 1.1 allows them in inline tables.
		s.skipBlankLines()
		switch s.peek() {
		case '}':
			s.advance()
			return
		case ',':
			s.advance()
			continue
		}
		before, line := s.pos, s.line
		key := path
		for _, part := range s.key() {
			key = joinKey(key, part)
			s.record(key, line)
		}
		s.skipBlank()
		if s.peek() == '=' {
			s.advance()
		}
		s.skipBlank()
		s.record(key, line)
		s.value(key)
		if s.pos == before {
			s.advance()
		}
	}
}

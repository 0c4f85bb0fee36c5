package iscsi

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// KeyValue is one key=value pair of a Login or Text PDU data segment.
type KeyValue struct{ Key, Value string }

// Text size limits (RFC 7143 6.1).
const (
	// MaxKeyLength: "key names MUST NOT exceed 63 bytes".
	MaxKeyLength = 63
	// MaxValueLength is the limit of a simple value unless a key says
	// otherwise.
	MaxValueLength = 255
	// MaxLargeValueLength applies to the large-binary-value keys of the
	// authentication methods (CHAP_C, CHAP_R, SRP_*, KRB_*, SPKM_*): their
	// encoded values may be long, and 8192 bytes is the least amount of
	// key=value text every implementation must accept in one negotiation
	// sequence, so no single value can legitimately be longer.
	MaxLargeValueLength = 8192
)

// TextError describes a malformed key=value segment. Key is empty when the
// pair could not be split.
type TextError struct {
	Offset int // byte offset of the offending pair in the data segment
	Key    string
	Reason string
}

func (e *TextError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("iscsi: text key %q at offset %d: %s", e.Key, e.Offset, e.Reason)
	}
	return fmt.Sprintf("iscsi: text at offset %d: %s", e.Offset, e.Reason)
}

// largeValueKey reports whether key takes a large-binary-value (RFC 7143
// 12.1.3 CHAP, RFC 3720 11.1.2-11.1.4 SRP, Kerberos and SPKM).
func largeValueKey(key string) bool {
	switch key {
	case "CHAP_C", "CHAP_R", "KRB_AP_REQ", "KRB_AP_REP":
		return true
	}
	return strings.HasPrefix(key, "SRP_") || strings.HasPrefix(key, "SPKM_")
}

// validKeyByte reports whether c may appear in a key name: RFC 7143 6.1
// allows letters, digits, '.', '-', '+', '@' and '_'; '#' is added for the
// IANA-registered "X#" extension keys (RFC 7143 13.22).
func validKeyByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '.', '-', '+', '@', '_', '#':
		return true
	}
	return false
}

// ParseText parses the concatenated data segments of one Login or Text
// request (the caller joins PDUs sent with the C bit first).
//
// RFC 7143 6.1 rules applied: every pair is "key=value" followed by one NUL,
// including the last one, so text not ending in NUL is an error (a pair
// split across PDUs has been joined by then, so a missing NUL means a
// truncated pair); key names are 1-63 bytes of [A-Za-z0-9.-+@_#]; values
// are valid UTF-8 of at most MaxValueLength bytes (MaxLargeValueLength for
// authentication keys with large binary values); an empty value is kept for
// the negotiation layer to judge. Empty pairs (consecutive NULs) are skipped:
// some initiators count NUL padding in DataSegmentLength, and skipping it
// loses nothing. A key appearing twice is a protocol error (RFC 7143 6.1:
// "a key ... MUST NOT be sent more than once" in one negotiation sequence).
func ParseText(data []byte) ([]KeyValue, error) {
	return parseText(data, true)
}

// ParseTextRepeated is ParseText without the duplicate check, for text
// where RFC 7143 allows repeated keys: the SendTargets response of a
// discovery session repeats TargetName and TargetAddress (RFC 7143 Appendix
// C).
func ParseTextRepeated(data []byte) ([]KeyValue, error) {
	return parseText(data, false)
}

func parseText(data []byte, unique bool) ([]KeyValue, error) {
	var kvs []KeyValue
	var seen map[string]struct{}
	if unique {
		seen = make(map[string]struct{})
	}
	for off := 0; off < len(data); {
		end := off
		for end < len(data) && data[end] != 0 {
			end++
		}
		if end == len(data) {
			return nil, &TextError{Offset: off, Reason: "pair is not terminated by a NUL byte"}
		}
		pair := data[off:end]
		start := off
		off = end + 1
		if len(pair) == 0 {
			continue
		}
		eq := -1
		for i, c := range pair {
			if c == '=' {
				eq = i
				break
			}
		}
		if eq < 0 {
			return nil, &TextError{Offset: start, Reason: fmt.Sprintf("no '=' in %q", truncate(pair))}
		}
		if eq == 0 {
			return nil, &TextError{Offset: start, Reason: "empty key name"}
		}
		keyBytes := pair[:eq]
		if len(keyBytes) > MaxKeyLength {
			return nil, &TextError{Offset: start, Reason: fmt.Sprintf("key name of %d bytes exceeds %d (%q)", len(keyBytes), MaxKeyLength, truncate(keyBytes))}
		}
		for _, c := range keyBytes {
			if !validKeyByte(c) {
				return nil, &TextError{Offset: start, Reason: fmt.Sprintf("byte 0x%02x not allowed in key name %q", c, truncate(keyBytes))}
			}
		}
		key := string(keyBytes)
		valueBytes := pair[eq+1:]
		limit := MaxValueLength
		if largeValueKey(key) {
			limit = MaxLargeValueLength
		}
		if len(valueBytes) > limit {
			return nil, &TextError{Offset: start, Key: key, Reason: fmt.Sprintf("value of %d bytes exceeds %d", len(valueBytes), limit)}
		}
		if !utf8.Valid(valueBytes) {
			return nil, &TextError{Offset: start, Key: key, Reason: "value is not valid UTF-8"}
		}
		if unique {
			if _, dup := seen[key]; dup {
				return nil, &TextError{Offset: start, Key: key, Reason: "key sent more than once"}
			}
			seen[key] = struct{}{}
		}
		kvs = append(kvs, KeyValue{Key: key, Value: string(valueBytes)})
	}
	return kvs, nil
}

// truncate shortens b for an error message.
func truncate(b []byte) string {
	const max = 32
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// AppendText appends each pair as "key=value\x00" (RFC 7143 6.1). It does
// not validate: the caller produces keys and values from the key table.
func AppendText(dst []byte, kvs ...KeyValue) []byte {
	for _, kv := range kvs {
		dst = append(dst, kv.Key...)
		dst = append(dst, '=')
		dst = append(dst, kv.Value...)
		dst = append(dst, 0)
	}
	return dst
}

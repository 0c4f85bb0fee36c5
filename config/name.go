package config

import (
	"fmt"
	"strings"
)

// maxNameLen is the longest iSCSI name, in bytes (RFC 7143 4.2.7.1).
const maxNameLen = 223

// ValidateName checks an iSCSI name (RFC 7143 4.2.7) in one of its three
// formats:
//
//	iqn.yyyy-mm.reversed.domain[:anything]   e.g. iqn.2026-11.io.blockport:lab
//	eui. + 16 hex digits (EUI-64)            e.g. eui.02004567A425678D
//	naa. + 16 or 32 hex digits (NAA 5 or 6)  e.g. naa.52004567BA64678D
//
// Names must already be in the normalised form of the RFC 3722 stringprep
// profile, which lower-cases them: this check accepts the ASCII subset of that
// form (a-z, 0-9, '-', '.', ':'); hex digits of eui. and naa. names may be in
// either case. Non-ASCII names are refused, since checking them would need
// the full stringprep tables.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("empty iSCSI name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("invalid iSCSI name %.40q...: %d bytes, the limit is %d (RFC 7143 4.2.7.1)", name, len(name), maxNameLen)
	}
	switch {
	case strings.HasPrefix(name, "iqn."):
		return validateIQN(name)
	case strings.HasPrefix(name, "eui."):
		return validateHexName(name, 16)
	case strings.HasPrefix(name, "naa."):
		return validateHexName(name, 16, 32)
	}
	if len(name) >= 4 {
		switch strings.ToLower(name[:4]) {
		case "iqn.", "eui.", "naa.":
			return fmt.Errorf("invalid iSCSI name %q: the type designator must be lower case %q (RFC 7143 4.2.7.2)", name, strings.ToLower(name[:4]))
		}
	}
	return fmt.Errorf("invalid iSCSI name %q: must start with \"iqn.\", \"eui.\" or \"naa.\" (RFC 7143 4.2.7.2)", name)
}

// validateIQN checks "iqn." yyyy-mm "." reversed-domain [ ":" unique ].
func validateIQN(name string) error {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == ':':
		case c >= 'A' && c <= 'Z':
			return fmt.Errorf("invalid iSCSI name %q: upper-case %q at byte %d; iSCSI names are lower case (RFC 3722 maps them)", name, c, i)
		default:
			return fmt.Errorf("invalid iSCSI name %q: character %q at byte %d is not allowed (only a-z, 0-9, '-', '.', ':')", name, c, i)
		}
	}
	rest := name[len("iqn."):]
	if len(rest) < len("yyyy-mm") || !isDigits(rest[0:4]) || rest[4] != '-' || !isDigits(rest[5:7]) {
		return fmt.Errorf("invalid iSCSI name %q: \"iqn.\" must be followed by a date yyyy-mm (RFC 7143 4.2.7.2)", name)
	}
	if month := rest[5:7]; month < "01" || month > "12" {
		return fmt.Errorf("invalid iSCSI name %q: month %s is not 01..12", name, month)
	}
	rest = rest[len("yyyy-mm"):]
	if rest == "" || rest[0] != '.' {
		return fmt.Errorf("invalid iSCSI name %q: the date must be followed by \".\" and a reversed domain name, as in iqn.2026-11.com.example", name)
	}
	authority, _, _ := strings.Cut(rest[1:], ":")
	if authority == "" {
		return fmt.Errorf("invalid iSCSI name %q: missing the reversed domain name of the naming authority", name)
	}
	for _, label := range strings.Split(authority, ".") {
		if label == "" {
			return fmt.Errorf("invalid iSCSI name %q: empty label in the naming authority %q", name, authority)
		}
	}
	return nil
}

// validateHexName checks "eui." or "naa." followed by one of the allowed
// numbers of hex digits.
func validateHexName(name string, lengths ...int) error {
	digits := name[len("eui."):]
	for i := 0; i < len(digits); i++ {
		if !isHex(digits[i]) {
			return fmt.Errorf("invalid iSCSI name %q: %q is not a hex digit", name, digits[i])
		}
	}
	for _, n := range lengths {
		if len(digits) == n {
			return nil
		}
	}
	if len(lengths) == 1 {
		return fmt.Errorf("invalid iSCSI name %q: %q needs %d hex digits, has %d", name, name[:4], lengths[0], len(digits))
	}
	return fmt.Errorf("invalid iSCSI name %q: %q needs %d or %d hex digits, has %d", name, name[:4], lengths[0], lengths[1], len(digits))
}

// canonicalName is the form two names are compared in: iqn names are already
// lower case; the hex of eui. and naa. names is case-insensitive.
func canonicalName(name string) string {
	if strings.HasPrefix(name, "eui.") || strings.HasPrefix(name, "naa.") {
		return name[:4] + strings.ToUpper(name[4:])
	}
	return name
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

package config

import (
	"fmt"
	"math/big"
	"strings"
)

// maxSizeText bounds the text ParseSize will look at; no real size needs more,
// and it keeps big-number arithmetic on hostile input cheap.
const maxSizeText = 64

// sizeUnits maps a lower-cased unit to its multiplier. Single letters and the
// IEC "iB" forms are powers of 1024, as disk tools use them; the SI "B" forms
// (kB, MB, ...) are powers of 1000, as drive vendors use them.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	"p": 1 << 50, "pi": 1 << 50, "pib": 1 << 50, "pb": 1e15,
}

// ParseSize parses a byte count such as "1073741824", "512MiB", "1G" (binary),
// "10TB" (decimal) or "1.5GiB". The unit is case-insensitive and may be
// separated from the number by spaces. The result must be a whole number of
// bytes that fits in an int64; zero is accepted (callers decide whether it
// is allowed).
func ParseSize(s string) (int64, error) {
	text := strings.TrimSpace(s)
	if text == "" {
		return 0, fmt.Errorf("empty size")
	}
	if len(text) > maxSizeText {
		return 0, fmt.Errorf("size %.20q...: too long", text)
	}
	if text[0] == '-' {
		return 0, fmt.Errorf("size %q: must not be negative", text)
	}
	end := 0
	for end < len(text) && (text[end] >= '0' && text[end] <= '9' || text[end] == '.') {
		end++
	}
	number, unit := text[:end], strings.TrimSpace(text[end:])
	if strings.Trim(number, ".") == "" {
		return 0, fmt.Errorf("size %q: must start with a number", text)
	}
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (use K, M, G, T, P or KiB, MiB, GiB, TiB, PiB for powers of 1024; kB, MB, GB, TB, PB for powers of 1000)", text, unit)
	}
	value, ok := new(big.Rat).SetString(number)
	if !ok {
		return 0, fmt.Errorf("size %q: %q is not a number", text, number)
	}
	value.Mul(value, new(big.Rat).SetInt64(mult))
	if !value.IsInt() {
		return 0, fmt.Errorf("size %q: is not a whole number of bytes", text)
	}
	if !value.Num().IsInt64() {
		return 0, fmt.Errorf("size %q: too large", text)
	}
	return value.Num().Int64(), nil
}

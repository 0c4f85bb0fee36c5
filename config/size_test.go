package config

import (
	"math"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string // part of the error; "" for success
	}{
		{"0", 0, ""},
		{"1073741824", 1 << 30, ""},
		{"512", 512, ""},
		{"512B", 512, ""},
		{"1KiB", 1024, ""},
		{"1K", 1024, ""},
		{"1k", 1024, ""},
		{"1kB", 1000, ""},
		{"1KB", 1000, ""},
		{"512MiB", 512 << 20, ""},
		{"512M", 512 << 20, ""},
		{"512MB", 512e6, ""},
		{"1GiB", 1 << 30, ""},
		{"1G", 1 << 30, ""},
		{"1Gi", 1 << 30, ""},
		{"1gib", 1 << 30, ""},
		{"1GB", 1e9, ""},
		{"10TB", 10e12, ""},
		{"2TiB", 2 << 40, ""},
		{"1PiB", 1 << 50, ""},
		{"3PB", 3e15, ""},
		{" 1 GiB ", 1 << 30, ""},
		{"1.5GiB", 3 << 29, ""},
		{"0.5K", 512, ""},
		{".5K", 512, ""},
		{"1.", 1, ""},
		{"9223372036854775807", math.MaxInt64, ""},
		{"8191PiB", 8191 << 50, ""},

		{"", 0, "empty"},
		{"   ", 0, "empty"},
		{"GiB", 0, "must start with a number"},
		{".", 0, "must start with a number"},
		{"-1", 0, "negative"},
		{"-1GiB", 0, "negative"},
		{"1 gallon", 0, `unknown unit "gallon"`},
		{"1GiB2", 0, "unknown unit"},
		{"1e9", 0, "unknown unit"},
		{"0x10", 0, "unknown unit"},
		{"1.2.3", 0, "not a number"},
		{"1.1B", 0, "whole number of bytes"},
		{"0.3K", 0, "whole number of bytes"},
		{"9223372036854775808", 0, "too large"},
		{"8192PiB", 0, "too large"},
		{strings.Repeat("1", 65), 0, "too long"},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseSize(%q) error %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("ParseSize(%q) = %d, want %d", tc.in, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseSize(%q) = %d, %v; want an error containing %q", tc.in, got, err, tc.err)
		}
	}
}

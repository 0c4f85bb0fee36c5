package main

import (
	"os"
	"strings"
	"testing"
)

var osGetpid = os.Getpid

// The parsers read other programs' output; whatever they print must give a
// result or an error, never a panic or a negative time.

func FuzzParseQemuBench(f *testing.F) {
	f.Add("Run completed in 4.208 seconds.\n")
	f.Add("qemu-img: Failed request: Input/output error\n")
	f.Fuzz(func(t *testing.T, out string) {
		d, err := parseQemuBench(out)
		if err == nil && d <= 0 {
			t.Errorf("parseQemuBench(%q) = %v without an error", out, d)
		}
	})
}

func FuzzParseIscsiPerf(f *testing.F) {
	f.Add("\riops average 35508 (138 MB/s)\n\nfinished.\n")
	f.Fuzz(func(t *testing.T, out string) {
		iops, err := parseIscsiPerf(out)
		if err == nil && (iops < 0 || !strings.Contains(out, "finished")) {
			t.Errorf("parseIscsiPerf(%q) = %v", out, iops)
		}
	})
}

func FuzzParseProc(f *testing.F) {
	f.Add("1 (a) S 1 1 1 0 -1 0 0 0 0 0 150 250 0", "VmHWM:\t 8420 kB\n")
	f.Fuzz(func(t *testing.T, stat, status string) {
		if cpu, err := parseProcStat(stat); err == nil && cpu < 0 {
			t.Errorf("negative CPU time %v from %q", cpu, stat)
		}
		_, _ = parseVmHWM(status)
	})
}

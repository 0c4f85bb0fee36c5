package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestImageCommand(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "sub", "disk.img")
	for _, tt := range []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"sparse", []string{"image", "create", "--backstore", "sparse", "--size", "64MiB", img}, exitOK, "created sparse image", ""},
		{"exists", []string{"image", "create", "--backstore", "sparse", "--size", "64MiB", img}, exitFailure, "", "--force"},
		{"info sparse", []string{"image", "info", img}, exitOK, "size:      67108864 bytes (64.0 MiB)\nallocated: 0 bytes", ""},
		{"force file", []string{"image", "create", "--backstore", "file", "--size", "8MiB", "--block-size", "4096", "--force", img}, exitOK, "8.0 MiB allocated", ""},
		{"info file", []string{"image", "info", img}, exitOK, "size:      8388608 bytes", ""},
		{"bad kind", []string{"image", "create", "--backstore", "memory", "--size", "1MiB", img}, exitUsage, "", "sparse or file"},
		{"no size", []string{"image", "create", "--backstore", "file", img}, exitUsage, "", "--size is required"},
		{"bad size", []string{"image", "create", "--backstore", "file", "--size", "lots", img}, exitUsage, "", "--size lots"},
		{"unaligned", []string{"image", "create", "--backstore", "file", "--size", "1000", img}, exitUsage, "", "not a multiple"},
		{"block size", []string{"image", "create", "--backstore", "file", "--size", "1MiB", "--block-size", "1024", img}, exitUsage, "", "512 or 4096"},
		{"no path", []string{"image", "create", "--backstore", "file", "--size", "1MiB"}, exitUsage, "", "one PATH"},
		{"info missing", []string{"image", "info", filepath.Join(dir, "nope")}, exitFailure, "", "no such file"},
		{"unknown", []string{"image", "grow"}, exitUsage, "", `unknown command "grow"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tt.args, &out, &errOut); code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.code, errOut.String())
			}
			if !strings.Contains(out.String(), tt.out) || !strings.Contains(errOut.String(), tt.err) {
				t.Fatalf("stdout %q stderr %q, want %q / %q", out.String(), errOut.String(), tt.out, tt.err)
			}
			if strings.Contains(out.String(), "\r") {
				t.Fatal("progress bar drawn into a non-terminal")
			}
		})
	}
	st, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if blocks := st.Sys().(*syscall.Stat_t).Blocks * 512; blocks < 8<<20 {
		t.Fatalf("file image allocates %d bytes", blocks)
	}
}

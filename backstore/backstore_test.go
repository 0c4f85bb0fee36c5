package backstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestKindsRegistered(t *testing.T) {
	kinds := Kinds()
	for _, k := range []string{"file", "memory"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("kind %q not registered (have %v)", k, kinds)
		}
	}
}

func TestRegisterMisuse(t *testing.T) {
	for name, open := range map[string]OpenFunc{
		"duplicate": openMemory,
		"nil":       nil,
	} {
		t.Run(name, func(t *testing.T) {
			kind := "memory"
			if open == nil {
				kind = "test-nil"
			}
			defer func() {
				if recover() == nil {
					t.Error("Register did not panic")
				}
			}()
			Register(kind, open)
		})
	}
}

func TestOpenRejectsOptions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		opts Options
		want []string // substrings of the error
	}{
		{"unknown kind", Options{Kind: "tape", Path: "/x"}, []string{`unknown kind "tape"`, "file", "memory"}},
		{"empty kind", Options{Path: "/x"}, []string{`unknown kind ""`}},
		{"block size", Options{Kind: "memory", Size: 4096, BlockSize: 1024}, []string{"open memory backstore", "block_size 1024"}},
		{"negative size", Options{Kind: "memory", Size: -512}, []string{"size -512"}},
		{"size not multiple", Options{Kind: "file", Path: filepath.Join(dir, "a.img"), Size: 5000, BlockSize: 4096},
			[]string{"open file backstore", "a.img", "size 5000", "block_size 4096"}},
		{"memory without size", Options{Kind: "memory"}, []string{"size must be set"}},
		{"file without path", Options{Kind: "file", Size: 4096}, []string{"path is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Open(tt.opts)
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestClipRead(t *testing.T) {
	tests := []struct {
		length  int
		off     int64
		wantN   int
		wantErr error
	}{
		{512, 0, 512, nil},
		{512, 512, 512, nil},     // ends exactly at size
		{1024, 512, 512, io.EOF}, // crosses the end
		{1, 1024, 0, io.EOF},     // starts at the end
		{1, 5000, 0, io.EOF},
		{0, 1024, 0, nil}, // empty reads never fail at the end
		{0, 0, 0, nil},
		{1, -1, 0, ErrOutOfRange},
	}
	for _, tt := range tests {
		n, err := ClipRead(tt.length, tt.off, 1024)
		if n != tt.wantN || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("ClipRead(%d, %d, 1024) = %d, %v; want %d, %v", tt.length, tt.off, n, err, tt.wantN, tt.wantErr)
		}
	}
}

func TestCheckWrite(t *testing.T) {
	tests := []struct {
		length int
		off    int64
		ok     bool
	}{
		{512, 0, true}, {1024, 0, true}, {0, 1024, true},
		{1, 1024, false}, {513, 512, false}, {1, -1, false}, {0, 1025, false},
		{1 << 30, 1 << 62, false}, // no overflow past the check
	}
	for _, tt := range tests {
		err := CheckWrite(tt.length, tt.off, 1024)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrOutOfRange)) {
			t.Errorf("CheckWrite(%d, %d, 1024) = %v, want ok=%v", tt.length, tt.off, err, tt.ok)
		}
	}
}

// pattern returns n bytes that differ per seed and per position, so a
// misplaced or stale byte shows.
func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.Uint64())
	}
	return p[:n:n]
}

// directDir returns a directory on a filesystem that accepts O_DIRECT.
// t.TempDir is tried first; /tmp may be tmpfs, which refused O_DIRECT
// before Linux 6.6, so /var/tmp and the package directory come next.
func directDir(t testing.TB) string {
	t.Helper()
	accepts := func(d string) bool {
		probe := filepath.Join(d, "probe")
		f, err := os.OpenFile(probe, os.O_CREATE|os.O_RDWR|syscall.O_DIRECT, 0o600)
		if err != nil {
			return false
		}
		f.Close()
		os.Remove(probe)
		return true
	}
	if d := t.TempDir(); accepts(d) {
		return d
	}
	for _, parent := range []string{"/var/tmp", "."} {
		d, err := os.MkdirTemp(parent, "backstore-test-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		if accepts(d) {
			return d
		}
	}
	t.Skip("no directory here accepts O_DIRECT")
	return ""
}

// exerciseAgainstModel runs seeded random reads and writes of random
// alignment against b and a plain byte slice, and fails on any difference.
func exerciseAgainstModel(t *testing.T, b Backstore, seed uint64, ops int) {
	t.Helper()
	size := b.Size()
	model := make([]byte, size)
	if _, err := b.ReadAt(model, 0); err != nil {
		t.Fatalf("initial read: %v", err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	maxLen := min(size, 2*maxBounce+4096)
	for i := range ops {
		// Mostly small transfers, sometimes sector multiples, now and then
		// one longer than a bounce buffer.
		var length int64
		switch r.IntN(8) {
		case 0:
			length = 1 + r.Int64N(maxLen)
		case 1, 2:
			length = min(maxLen, 512*(1+r.Int64N(16)))
		default:
			length = 1 + r.Int64N(min(maxLen, 64<<10))
		}
		off := r.Int64N(size - length + 1)
		if r.IntN(3) == 0 {
			off &^= 511
		}
		// Shift within a larger buffer to vary memory alignment too.
		shift := r.IntN(2) * (1 + r.IntN(64))
		if r.IntN(2) == 0 {
			data := pattern(int(length), uint64(i)+seed<<20)
			buf := append(make([]byte, shift, shift+len(data)), data...)[shift:]
			n, err := b.WriteAt(buf, off, r.IntN(2) == 0)
			if err != nil || n != len(buf) {
				t.Fatalf("op %d: WriteAt(len %d, off %d) = %d, %v", i, length, off, n, err)
			}
			copy(model[off:], data)
		} else {
			buf := make([]byte, shift+int(length))[shift:]
			n, err := b.ReadAt(buf, off)
			if err != nil || n != len(buf) {
				t.Fatalf("op %d: ReadAt(len %d, off %d) = %d, %v", i, length, off, n, err)
			}
			if !bytes.Equal(buf, model[off:off+length]) {
				t.Fatalf("op %d: ReadAt(len %d, off %d) returned data that differs from what was written", i, length, off)
			}
		}
	}
	all := make([]byte, size)
	if _, err := b.ReadAt(all, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(all, model) {
		t.Fatal("final contents differ from the model")
	}
}

package backstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func allocatedOnDisk(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}

// Which capabilities each kind offers decides what the SCSI layer
// advertises; this table is the contract.
func TestCapabilitiesByKind(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		kind                             string
		unmapper, allocator, zeroer, geo bool
	}{
		{"file", false, false, true, false},
		{"sparse", true, true, true, false},
		{"memory", false, false, false, false},
	} {
		opts := Options{Kind: tt.kind, Size: 1 << 20}
		if tt.kind != "memory" {
			opts.Path = filepath.Join(dir, tt.kind+".img")
		}
		b, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		_, u := b.(Unmapper)
		_, a := b.(Allocator)
		_, z := b.(Zeroer)
		_, g := b.(Geometry)
		if u != tt.unmapper || a != tt.allocator || z != tt.zeroer || g != tt.geo {
			t.Errorf("%s: Unmapper %v Allocator %v Zeroer %v Geometry %v", tt.kind, u, a, z, g)
		}
		b.Close()
	}
}

func TestSparseUnmapAndAllocated(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(map[bool]string{false: "buffered", true: "direct"}[direct], func(t *testing.T) {
			dir := t.TempDir()
			if direct {
				dir = directDir(t)
			}
			path := filepath.Join(dir, "thin.img")
			b, err := Open(Options{Kind: "sparse", Path: path, Size: 64 << 20, DirectIO: direct})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			s := b.(*sparseBackstore)
			if got := allocatedOnDisk(t, path); got != 0 {
				t.Fatalf("new sparse image allocates %d bytes", got)
			}
			if info := s.UnmapInfo(); !info.ReadsZero || !info.Thin || info.Granularity < 512 {
				t.Fatalf("UnmapInfo %+v", info)
			}
			// 1 MiB of data at 4 MiB.
			data := pattern(1<<20, 5)
			if _, err := b.WriteAt(data, 4<<20, true); err != nil {
				t.Fatal(err)
			}
			used, err := s.AllocatedBytes()
			if err != nil || used < 1<<20 || used > 1<<20+64<<10 {
				t.Fatalf("AllocatedBytes %d (err %v), want about 1 MiB", used, err)
			}
			checkRuns(t, s, []run{{0, 4 << 20, false}, {4 << 20, 1 << 20, true}, {5 << 20, 59 << 20, false}})
			// A run is clipped to the length asked for.
			if mapped, n, err := s.Allocated(4<<20+4096, 8192); err != nil || !mapped || n != 8192 {
				t.Fatalf("Allocated clipped: %v %d %v", mapped, n, err)
			}
			// Punch the middle 512 KiB; it reads as zeros, the rest is intact.
			if err := s.Unmap(4<<20+256<<10, 512<<10, false); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 1<<20)
			if _, err := b.ReadAt(got, 4<<20); err != nil {
				t.Fatal(err)
			}
			want := bytes.Clone(data)
			clear(want[256<<10 : 768<<10])
			if !bytes.Equal(got, want) {
				t.Fatal("contents after Unmap differ")
			}
			checkRuns(t, s, []run{{0, 4 << 20, false}, {4 << 20, 256 << 10, true}, {4<<20 + 256<<10, 512 << 10, false},
				{4<<20 + 768<<10, 256 << 10, true}, {5 << 20, 59 << 20, false}})
			if used2, _ := s.AllocatedBytes(); used2 > used-500<<10 {
				t.Fatalf("Unmap of 512 KiB freed only %d bytes", used-used2)
			}
			// WriteZeroes keeps the size and reads as zeros.
			if err := s.WriteZeroes(4<<20, 4096, true); err != nil {
				t.Fatal(err)
			}
			if _, err := b.ReadAt(got[:4096], 4<<20); err != nil || !bytes.Equal(got[:4096], make([]byte, 4096)) {
				t.Fatalf("WriteZeroes: %v", err)
			}
			if st, _ := os.Stat(path); st.Size() != 64<<20 {
				t.Fatalf("size changed to %d", st.Size())
			}
			used, avail, err := s.Space()
			if err != nil || used <= 0 || avail <= 0 || used+avail > 64<<20 {
				t.Fatalf("Space %d %d %v", used, avail, err)
			}
			// Out of range.
			for _, r := range [][2]int64{{-1, 10}, {64 << 20, 1}, {63 << 20, 2 << 20}} {
				if err := s.Unmap(r[0], r[1], false); !errors.Is(err, ErrOutOfRange) {
					t.Errorf("Unmap(%d, %d) = %v", r[0], r[1], err)
				}
			}
			if _, _, err := s.Allocated(64<<20, 1); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("Allocated at the end = %v", err)
			}
		})
	}
}

type run struct {
	off, length int64
	mapped      bool
}

func checkRuns(t *testing.T, s *sparseBackstore, want []run) {
	t.Helper()
	var got []run
	for off := int64(0); off < s.Size(); {
		mapped, n, err := s.Allocated(off, s.Size()-off)
		if err != nil || n <= 0 {
			t.Fatalf("Allocated(%d) = %v, %d, %v", off, mapped, n, err)
		}
		got = append(got, run{off, n, mapped})
		off += n
	}
	if len(got) != len(want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("runs %v, want %v", got, want)
		}
	}
}

// An unaligned O_DIRECT write next to an Unmap must not write back stale
// bytes over the hole (the Unmap locks the alignment units).
func TestSparseUnmapRacesUnalignedWrites(t *testing.T) {
	path := filepath.Join(directDir(t), "race.img")
	b, err := Open(Options{Kind: "sparse", Path: path, Size: 1 << 20, DirectIO: true, WriteCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := b.(*sparseBackstore)
	for round := 0; round < 50; round++ {
		if _, err := b.WriteAt(bytes.Repeat([]byte{0xEE}, 8192), 0, false); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		// The write's read-modify-write unit covers the unmapped bytes
		// 4196..4495 without its own bytes overlapping them.
		go func() { defer wg.Done(); s.Unmap(4196, 300, false) }()
		go func() { defer wg.Done(); b.WriteAt([]byte{1, 2, 3}, 4146, false) }()
		wg.Wait()
		got := make([]byte, 300)
		b.ReadAt(got, 4196)
		if !bytes.Equal(got, make([]byte, 300)) {
			t.Fatalf("round %d: unmapped bytes hold stale data again", round)
		}
	}
}

func TestFilePreallocatedAndGrown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "full.img")
	var calls int
	var last [2]int64
	b, err := Open(Options{Kind: "file", Path: path, Size: 600 << 20, Progress: func(done, total int64) { calls++; last = [2]int64{done, total} }})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if got := allocatedOnDisk(t, path); got < 600<<20 {
		t.Fatalf("file image allocates %d bytes, want 600 MiB", got)
	}
	if calls < 3 || last != [2]int64{600 << 20, 600 << 20} {
		t.Fatalf("progress: %d calls, last %v", calls, last)
	}
	// Growing through a larger configured size allocates the tail too;
	// a sparse image grows as a hole.
	b, err = Open(Options{Kind: "file", Path: path, Size: 700 << 20})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if got := allocatedOnDisk(t, path); got < 700<<20 {
		t.Fatalf("grown file image allocates %d bytes", got)
	}
	sp := filepath.Join(t.TempDir(), "thin.img")
	for _, size := range []int64{1 << 20, 100 << 20} {
		b, err := Open(Options{Kind: "sparse", Path: sp, Size: size})
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	if got := allocatedOnDisk(t, sp); got != 0 {
		t.Fatalf("grown sparse image allocates %d bytes", got)
	}
	// Shrinking is refused.
	if _, err := Open(Options{Kind: "sparse", Path: sp, Size: 1 << 20}); err == nil || !strings.Contains(err.Error(), "refusing to shrink") {
		t.Fatalf("shrink: %v", err)
	}
}

func TestPreallocateFallsBackToZeros(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "nofalloc.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	noFalloc := func(int, uint32, int64, int64) error { return unix.EOPNOTSUPP }
	if err := preallocate(f, 0, 3<<20+512, noFalloc, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(); st.Size() != 3<<20+512 || allocatedOnDisk(t, f.Name()) < 3<<20 {
		t.Fatalf("fallback preallocation: size %d", st.Size())
	}
	full := func(int, uint32, int64, int64) error { return unix.ENOSPC }
	if err := preallocate(f, 0, 1<<20, full, nil); err == nil || !strings.Contains(err.Error(), "not enough space") {
		t.Fatalf("ENOSPC: %v", err)
	}
}

func TestCreateImageAndStat(t *testing.T) {
	dir := t.TempDir()
	sp := filepath.Join(dir, "a", "thin.img")
	if err := CreateImage(Options{Kind: "sparse", Path: sp, Size: 10 << 20}, false); err != nil {
		t.Fatal(err)
	}
	info, err := StatImage(sp)
	if err != nil || info.Size != 10<<20 || info.Allocated != 0 {
		t.Fatalf("sparse info %+v %v", info, err)
	}
	if err := CreateImage(Options{Kind: "file", Path: sp, Size: 4 << 20}, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("overwrite without force: %v", err)
	}
	if err := CreateImage(Options{Kind: "file", Path: sp, Size: 4 << 20}, true); err != nil {
		t.Fatal(err)
	}
	if info, _ := StatImage(sp); info.Size != 4<<20 || info.Allocated < 4<<20 {
		t.Fatalf("forced file image %+v", info)
	}
	// A served image is never replaced.
	b, err := Open(Options{Kind: "file", Path: sp})
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateImage(Options{Kind: "sparse", Path: sp, Size: 4 << 20}, true); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("replace a served image: %v", err)
	}
	b.Close()
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{Kind: "memory", Path: sp, Size: 4096}, "no image file"},
		{Options{Kind: "sparse", Path: filepath.Join(dir, "z"), Size: 0}, "size is required"},
		{Options{Kind: "sparse", Path: filepath.Join(dir, "z"), Size: 1000}, "not a multiple"},
		{Options{Kind: "sparse", Path: dir, Size: 4096}, "not a regular file"},
	} {
		if err := CreateImage(tt.opts, true); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CreateImage(%+v) = %v, want %q", tt.opts, err, tt.want)
		}
	}
	if _, err := StatImage(dir); err == nil {
		t.Error("StatImage of a directory succeeded")
	}
}

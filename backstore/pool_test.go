package backstore

import (
	"fmt"
	"testing"
)

func TestGetBufferSizeClasses(t *testing.T) {
	tests := []struct {
		n       int
		wantCap int
	}{
		{1, 4 << 10},
		{512, 4 << 10},
		{4 << 10, 4 << 10},
		{4<<10 + 1, 8 << 10},
		{48 << 10, 64 << 10},
		{1 << 20, 1 << 20},
		{1<<20 + 512, 2 << 20},
		{16 << 20, 16 << 20},
		{16<<20 + 1, 16<<20 + 1}, // beyond the pool: exact, still aligned
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			for round := range 3 { // fresh, then (likely) recycled
				b := GetBuffer(tt.n)
				if len(b) != tt.n || cap(b) != tt.wantCap {
					t.Fatalf("round %d: len %d cap %d, want len %d cap %d", round, len(b), cap(b), tt.n, tt.wantCap)
				}
				if !isAligned(b, BufferAlign) {
					t.Fatalf("round %d: buffer not aligned to %d", round, BufferAlign)
				}
				b[0], b[len(b)-1] = 1, 2 // the whole length is usable
				PutBuffer(b)
			}
		})
	}
}

func TestGetBufferZero(t *testing.T) {
	for _, n := range []int{0, -1} {
		if b := GetBuffer(n); b != nil {
			t.Errorf("GetBuffer(%d) = len %d, want nil", n, len(b))
		}
	}
	PutBuffer(nil) // must not panic
}

// Foreign slices must never come back out of the pool with the wrong
// size or alignment.
func TestPutBufferRejectsForeign(t *testing.T) {
	big := alignedAlloc(3 * BufferAlign)
	foreign := [][]byte{
		make([]byte, 100),
		make([]byte, 3000, 5000),         // capacity not a power of two
		big[1 : 1+4096 : 1+4096],         // right capacity, misaligned
		big[BufferAlign : 2*BufferAlign], // cap 8192 from here: fine to pool
		alignedAlloc(32 << 20),           // beyond the largest class
	}
	for _, b := range foreign {
		PutBuffer(b)
	}
	for range 64 {
		for _, n := range []int{4096, 8192} {
			b := GetBuffer(n)
			if !isAligned(b, BufferAlign) || cap(b) != n {
				t.Fatalf("GetBuffer(%d): cap %d aligned %v", n, cap(b), isAligned(b, BufferAlign))
			}
			defer PutBuffer(b)
		}
	}
}

func TestSizeClass(t *testing.T) {
	tests := []struct{ n, class int }{
		{1, 0}, {4096, 0}, {4097, 1}, {8192, 1}, {8193, 2}, {1 << 24, 12},
	}
	for _, tt := range tests {
		if got := sizeClass(tt.n); got != tt.class {
			t.Errorf("sizeClass(%d) = %d, want %d", tt.n, got, tt.class)
		}
	}
}

func TestPoolSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	for _, n := range []int{512, 4096, 65536, 1 << 20, 16 << 20} {
		PutBuffer(GetBuffer(n)) // warm the class
		allocs := testing.AllocsPerRun(100, func() {
			PutBuffer(GetBuffer(n))
		})
		if allocs != 0 {
			t.Errorf("GetBuffer/PutBuffer(%d): %.1f allocations per run, want 0", n, allocs)
		}
	}
}

func BenchmarkPoolGetPut(b *testing.B) {
	for _, n := range []int{4 << 10, 64 << 10, 1 << 20, 16 << 20} {
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					buf := GetBuffer(n)
					buf[0] = 1
					PutBuffer(buf)
				}
			})
		})
	}
}

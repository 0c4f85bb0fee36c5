package backstore

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
)

func openTestMemory(t *testing.T, size int64, readOnly bool) *memoryBackstore {
	t.Helper()
	b, err := Open(Options{Kind: "memory", Size: size, ReadOnly: readOnly})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.(*memoryBackstore)
}

func TestMemoryLazyAllocation(t *testing.T) {
	const size = 1 << 30
	b := openTestMemory(t, size, false)
	if n := b.allocatedChunks(); n != 0 {
		t.Fatalf("fresh 1 GiB memory LUN holds %d chunks", n)
	}
	tests := []struct {
		name       string
		off        int64
		length     int
		wantChunks int // cumulative
	}{
		{"one byte", 5*memoryChunkSize + 3, 1, 1},
		{"same chunk again", 5*memoryChunkSize + 4096, 4096, 1},
		{"across a chunk boundary", 8*memoryChunkSize - 100, 200, 3},
		{"last block", size - 512, 512, 4},
		{"three chunks at once", 100 * memoryChunkSize, 3 * memoryChunkSize, 7},
	}
	model := map[int64][]byte{}
	for i, tt := range tests {
		data := pattern(tt.length, uint64(i+1))
		if n, err := b.WriteAt(data, tt.off, i%2 == 1); err != nil || n != tt.length {
			t.Fatalf("%s: WriteAt = %d, %v", tt.name, n, err)
		}
		model[tt.off] = data
		if n := b.allocatedChunks(); n != tt.wantChunks {
			t.Errorf("%s: %d chunks allocated, want %d", tt.name, n, tt.wantChunks)
		}
	}
	for off, data := range model {
		got := make([]byte, len(data))
		if _, err := b.ReadAt(got, off); err != nil || !bytes.Equal(got, data) {
			t.Errorf("ReadAt(off %d): %v, equal %v", off, err, bytes.Equal(got, data))
		}
	}
	// Unwritten areas, in allocated and unallocated chunks, read as zeros;
	// reads allocate nothing.
	for _, off := range []int64{0, 5*memoryChunkSize + 16384, 5*memoryChunkSize + 8192, 50 * memoryChunkSize} {
		got := bytes.Repeat([]byte{0xff}, 2048)
		if _, err := b.ReadAt(got, off); err != nil || !bytes.Equal(got, make([]byte, 2048)) {
			t.Errorf("unwritten ReadAt(off %d) not zeros (%v)", off, err)
		}
	}
	if n := b.allocatedChunks(); n != 7 {
		t.Errorf("reads allocated chunks: %d, want 7", n)
	}
}

func TestMemoryShortLastChunk(t *testing.T) {
	const size = memoryChunkSize + 1024
	b := openTestMemory(t, size, false)
	data := pattern(1024+512, 3)
	if _, err := b.WriteAt(data, size-int64(len(data)), false); err != nil {
		t.Fatal(err)
	}
	if got := len(b.chunks[1].Load().data); got != 1024 {
		t.Errorf("last chunk holds %d bytes, want 1024", got)
	}
	exerciseAgainstModel(t, b, 11, 100)
}

func TestMemoryRandomAgainstModel(t *testing.T) {
	b := openTestMemory(t, 8<<20, false)
	exerciseAgainstModel(t, b, 99, 300)
}

func TestMemoryBoundsAndState(t *testing.T) {
	const size = 64 << 10
	b := openTestMemory(t, size, false)
	if n, err := b.ReadAt(make([]byte, 1024), size-512); n != 512 || err != io.EOF {
		t.Errorf("ReadAt across the end = %d, %v; want 512, io.EOF", n, err)
	}
	if n, err := b.ReadAt(make([]byte, 1), size); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at the end = %d, %v", n, err)
	}
	if _, err := b.ReadAt(make([]byte, 1), -1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("ReadAt at -1 = %v", err)
	}
	if _, err := b.WriteAt(make([]byte, 1024), size-512, true); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("WriteAt across the end = %v", err)
	}
	if err := b.Sync(); err != nil {
		t.Errorf("Sync = %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := b.allocatedChunks(); n != 0 {
		t.Errorf("Close kept %d chunks", n)
	}
	for name, err := range map[string]error{
		"close": b.Close(), "sync": b.Sync(),
		"read":  func() error { _, err := b.ReadAt(make([]byte, 1), 0); return err }(),
		"write": func() error { _, err := b.WriteAt(make([]byte, 1), 0, false); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}

	ro := openTestMemory(t, size, true)
	if _, err := ro.WriteAt(make([]byte, 512), 0, false); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteAt on read-only = %v", err)
	}
}

func TestMemoryConcurrent(t *testing.T) {
	const (
		writers = 8
		piece   = 300 // odd size: neighbours share chunks and straddle boundaries
		rounds  = 50
	)
	b := openTestMemory(t, 4*memoryChunkSize, false)
	base := int64(memoryChunkSize - writers*piece/2) // straddle chunk 0/1
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				if _, err := b.WriteAt(bytes.Repeat([]byte{byte(w + r)}, piece), base+int64(w*piece), false); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() { // readers race with writers and allocation
			buf := make([]byte, 2*piece)
			for range rounds {
				if _, err := b.ReadAt(buf, base+int64(w*piece)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := make([]byte, writers*piece)
	b.ReadAt(got, base)
	for w := range writers {
		if want := bytes.Repeat([]byte{byte(w + rounds - 1)}, piece); !bytes.Equal(got[w*piece:(w+1)*piece], want) {
			t.Errorf("writer %d: final data lost", w)
		}
	}
}

// TestMemoryCloseUnderIO closes a LUN while readers and writers are busy
// on it, across allocated and unallocated chunks: each call either
// completes or fails with ErrClosed, and none touches the unmapped region
// (a crash, or a data race under -race, if it did).
func TestMemoryCloseUnderIO(t *testing.T) {
	for round := range 20 {
		b, err := Open(Options{Kind: "memory", Size: 16 * memoryChunkSize})
		if err != nil {
			t.Fatal(err)
		}
		m := b.(*memoryBackstore)
		if _, err := m.WriteAt(make([]byte, 4096), 0, false); err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				buf := bytes.Repeat([]byte{byte(w)}, 8192)
				<-start
				for i := 0; ; i++ {
					off := int64((i*7+w)%16)*memoryChunkSize + int64(w)*8192
					var err error
					if i%2 == 0 {
						_, err = m.WriteAt(buf, off, false)
					} else {
						_, err = m.ReadAt(buf, off)
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("round %d: %v", round, err)
						return
					}
				}
			})
		}
		close(start)
		if err := m.Close(); err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
		wg.Wait()
		if m.allocatedChunks() != 0 {
			t.Fatalf("round %d: chunks left after Close", round)
		}
	}
}

// TestMemoryDataOutsideHeap: a written LUN's blocks are not Go heap, so
// they neither count toward the collector's heap goal nor are scanned.
func TestMemoryDataOutsideHeap(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b := openTestMemory(t, 64*memoryChunkSize, false)
	buf := bytes.Repeat([]byte{0xa5}, memoryChunkSize)
	for i := range int64(64) {
		if _, err := b.WriteAt(buf, i*memoryChunkSize, false); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 16*memoryChunkSize {
		t.Fatalf("64 MiB written grew the Go heap by %d bytes", grown)
	}
	got := make([]byte, memoryChunkSize)
	if _, err := b.ReadAt(got, 63*memoryChunkSize); err != nil || !bytes.Equal(got, buf) {
		t.Fatalf("read back: %v", err)
	}
}

package backstore

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

func init() { Register("memory", openMemory) }

// memoryChunkSize is the allocation unit of a memory backstore: a 1 GiB LUN
// costs only the 1 MiB chunks that were written, plus 8 bytes per chunk.
const memoryChunkSize = 1 << 20

// memoryBackstore keeps blocks in RAM; it is volatile and meant for tests
// and benchmarks. Unwritten chunks read as zeros (as unmapped blocks of a thin
// LU do when it reports LBPRZ=1, SBC-4 logical block provisioning).
//
// The blocks live in one anonymous mapping of the LUN's size, outside the
// Go heap: address space only (MAP_NORESERVE), with the pages of a chunk
// made present when it is first written. In the heap, the collector's goal
// counted the LUN's data as live, so a written 1 GiB LUN let another 1 GiB
// of per-command garbage pile up before a cycle: the server's RSS reached
// twice the data, and that garbage landed on fresh pages.
type memoryBackstore struct {
	size     int64
	readOnly bool
	// region is the mapping; nil once closed. Chunks are slices of it.
	region []byte
	// unmap releases region if the backstore is dropped without Close.
	unmap runtime.Cleanup
	// mu orders chunk allocation (read-locked) before Close (locked), so
	// that no chunk of an unmapped region is handed out.
	mu sync.RWMutex
	// chunks[i] covers [i*memoryChunkSize, (i+1)*memoryChunkSize); nil
	// until first written. The slice itself never changes after open.
	chunks []atomic.Pointer[memoryChunk]
	closed atomic.Bool
}

// memoryChunk holds one chunk's bytes. Each chunk has its own lock so that
// I/O to different chunks never contends and no lock spans a whole large
// transfer, only its piece in this chunk.
type memoryChunk struct {
	mu   sync.RWMutex
	data []byte // guarded by mu; nil once the backstore is closed
}

func openMemory(opts Options) (Backstore, error) {
	if opts.Size <= 0 {
		return nil, errors.New("size must be set and positive for a memory backstore")
	}
	if opts.Size > math.MaxInt {
		return nil, fmt.Errorf("size %d is too large for a memory backstore", opts.Size)
	}
	region, err := unix.Mmap(-1, 0, int(opts.Size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("reserving %d bytes of address space for a memory backstore: %w", opts.Size, err)
	}
	n := (opts.Size + memoryChunkSize - 1) / memoryChunkSize
	m := &memoryBackstore{
		size:     opts.Size,
		readOnly: opts.ReadOnly,
		region:   region,
		chunks:   make([]atomic.Pointer[memoryChunk], n),
	}
	m.unmap = runtime.AddCleanup(m, func(r []byte) { unix.Munmap(r) }, region)
	return m, nil
}

func (m *memoryBackstore) Size() int64 { return m.size }

// Immediate: reads and writes are copies under a chunk lock (backstore.Immediate).
func (m *memoryBackstore) Immediate() bool { return true }

func (m *memoryBackstore) ReadAt(p []byte, off int64) (int, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	n, eof := ClipRead(len(p), off, m.size)
	if n == 0 {
		return 0, eof
	}
	done := 0
	for done < n {
		pos := off + int64(done)
		idx, inChunk := pos/memoryChunkSize, int(pos%memoryChunkSize)
		piece := min(n-done, memoryChunkSize-inChunk)
		dst := p[done : done+piece]
		if c := m.chunks[idx].Load(); c == nil {
			clear(dst)
		} else {
			c.mu.RLock()
			if c.data == nil {
				c.mu.RUnlock()
				return done, ErrClosed
			}
			copy(dst, c.data[inChunk:])
			c.mu.RUnlock()
		}
		done += piece
	}
	return n, eof
}

func (m *memoryBackstore) WriteAt(p []byte, off int64, fua bool) (int, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	if m.readOnly {
		return 0, ErrReadOnly
	}
	if err := CheckWrite(len(p), off, m.size); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		idx, inChunk := pos/memoryChunkSize, int(pos%memoryChunkSize)
		piece := min(len(p)-done, memoryChunkSize-inChunk)
		c := m.chunk(idx)
		if c == nil {
			return done, ErrClosed
		}
		c.mu.Lock()
		if c.data == nil {
			c.mu.Unlock()
			return done, ErrClosed
		}
		copy(c.data[inChunk:], p[done:done+piece])
		c.mu.Unlock()
		done += piece
	}
	// fua needs nothing: memory is as stable as this backstore gets.
	return len(p), nil
}

// chunk returns chunk idx, allocating it on first use; nil once the
// backstore is closed. Two writers racing to allocate agree through
// CompareAndSwap; the loser's chunk is dropped.
func (m *memoryBackstore) chunk(idx int64) *memoryChunk {
	if c := m.chunks[idx].Load(); c != nil {
		return c
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed.Load() {
		return nil
	}
	start := idx * memoryChunkSize
	fresh := &memoryChunk{data: m.region[start:min(start+memoryChunkSize, m.size)]}
	// All its pages at once: one madvise (Linux 5.14) rather than a page
	// fault per 4 KiB page as writes first touch them. Where the kernel
	// cannot, the faults happen as before.
	_ = unix.Madvise(fresh.data, unix.MADV_POPULATE_WRITE)
	for {
		if m.chunks[idx].CompareAndSwap(nil, fresh) {
			return fresh
		}
		// Another writer won, or Close cleared the slot in between.
		if c := m.chunks[idx].Load(); c != nil {
			return c
		}
	}
}

// allocatedChunks counts chunks that hold memory (for tests and, later,
// GET LBA STATUS).
func (m *memoryBackstore) allocatedChunks() int {
	n := 0
	for i := range m.chunks {
		if m.chunks[i].Load() != nil {
			n++
		}
	}
	return n
}

func (m *memoryBackstore) Sync() error {
	if m.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Close drops the data and returns its memory to the system. I/O racing
// with Close either completes before it (chunk locks) or gets ErrClosed;
// none touches the region once it is unmapped.
func (m *memoryBackstore) Close() error {
	m.mu.Lock()
	if !m.closed.CompareAndSwap(false, true) {
		m.mu.Unlock()
		return ErrClosed
	}
	m.mu.Unlock()
	for i := range m.chunks {
		c := m.chunks[i].Swap(nil)
		if c == nil {
			continue
		}
		c.mu.Lock()
		c.data = nil
		c.mu.Unlock()
	}
	m.unmap.Stop()
	err := unix.Munmap(m.region)
	m.region = nil
	return err
}

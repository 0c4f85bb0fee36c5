package backstore

import (
	"errors"
	"sync"
	"sync/atomic"
)

func init() { Register("memory", openMemory) }

// memoryChunkSize is the allocation unit of a memory backstore: a 1 GiB LUN
// costs only the 1 MiB chunks that were written, plus 8 bytes per chunk.
const memoryChunkSize = 1 << 20

// memoryBackstore keeps blocks in RAM; it is volatile and meant for tests
// and benchmarks. Unwritten chunks read as zeros (as unmapped blocks of a thin
// LU do when it reports LBPRZ=1, SBC-4 logical block provisioning).
type memoryBackstore struct {
	size     int64
	readOnly bool
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
	data []byte // guarded by mu (the slice header never changes; the bytes do)
}

func openMemory(opts Options) (Backstore, error) {
	if opts.Size <= 0 {
		return nil, errors.New("size must be set and positive for a memory backstore")
	}
	n := (opts.Size + memoryChunkSize - 1) / memoryChunkSize
	return &memoryBackstore{
		size:     opts.Size,
		readOnly: opts.ReadOnly,
		chunks:   make([]atomic.Pointer[memoryChunk], n),
	}, nil
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
		c.mu.Lock()
		copy(c.data[inChunk:], p[done:done+piece])
		c.mu.Unlock()
		done += piece
	}
	// fua needs nothing: memory is as stable as this backstore gets.
	return len(p), nil
}

// chunk returns chunk idx, allocating it on first use. Two writers racing
// to allocate agree through CompareAndSwap; the loser's chunk is dropped.
func (m *memoryBackstore) chunk(idx int64) *memoryChunk {
	if c := m.chunks[idx].Load(); c != nil {
		return c
	}
	length := min(memoryChunkSize, m.size-idx*memoryChunkSize)
	fresh := &memoryChunk{data: make([]byte, length)}
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

// Close drops the data. I/O racing with Close may still complete on a
// chunk it already holds; that is memory-safe and the data is gone after.
func (m *memoryBackstore) Close() error {
	if !m.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	for i := range m.chunks {
		m.chunks[i].Store(nil)
	}
	return nil
}

package backstore

import (
	"math/bits"
	"sync"
	"unsafe"
)

// BufferAlign is the memory alignment of every buffer from GetBuffer: the
// page size, which satisfies O_DIRECT on every Linux filesystem, so the
// iSCSI layer can receive data straight into a buffer that the file
// backstore then hands to the kernel without a bounce copy.
const BufferAlign = 4096

const (
	minBufferShift = 12 // 4 KiB, the smallest size class
	maxBufferShift = 24 // 16 MiB, the largest pooled size class
	// MaxPooledBuffer is the largest size GetBuffer serves from the pool;
	// larger requests are allocated (aligned) and dropped by PutBuffer.
	MaxPooledBuffer = 1 << maxBufferShift
)

// bufferPools holds one pool per power-of-two size class. Entries are the
// *byte of the first element rather than a []byte: a pointer fits in an
// interface without boxing, which keeps Get/Put free of allocations.
var bufferPools [maxBufferShift - minBufferShift + 1]sync.Pool

// GetBuffer returns a buffer of length n whose first byte is aligned to
// BufferAlign and whose capacity is n rounded up to a power of two (at
// least 4 KiB). Its contents are undefined: callers overwrite it. Return
// it with PutBuffer when done. GetBuffer(0) returns nil.
func GetBuffer(n int) []byte {
	if n <= 0 {
		return nil
	}
	if n > MaxPooledBuffer {
		return alignedAlloc(n)
	}
	class := sizeClass(n)
	size := 1 << (class + minBufferShift)
	if p, ok := bufferPools[class].Get().(*byte); ok {
		return unsafe.Slice(p, size)[:n]
	}
	return alignedAlloc(size)[:n]
}

// PutBuffer returns a buffer obtained from GetBuffer to its pool. Buffers
// that did not come from the pool (wrong capacity or alignment) are left to
// the garbage collector, so passing any slice is safe. The caller must not
// use b afterwards.
func PutBuffer(b []byte) {
	c := cap(b)
	if c < 1<<minBufferShift || c > MaxPooledBuffer || c&(c-1) != 0 {
		return
	}
	p := unsafe.SliceData(b[:c])
	if uintptr(unsafe.Pointer(p))%BufferAlign != 0 {
		return
	}
	bufferPools[bits.TrailingZeros(uint(c))-minBufferShift].Put(p)
}

// sizeClass is the index of the smallest class holding n bytes (0 < n <= MaxPooledBuffer).
func sizeClass(n int) int {
	if n <= 1<<minBufferShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufferShift
}

// alignedAlloc allocates n bytes aligned to BufferAlign with capacity
// exactly n, so PutBuffer recognises the size class. Large allocations
// from the Go heap are usually page aligned already; over-allocate only
// when this one is not.
func alignedAlloc(n int) []byte {
	b := make([]byte, n)
	if isAligned(b, BufferAlign) {
		return b
	}
	b = make([]byte, n+BufferAlign)
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b))) & (BufferAlign - 1))
	return b[skip : skip+n : skip+n]
}

// isAligned reports whether the first byte of b sits at a multiple of align
// (a power of two). An empty slice counts as aligned: no byte is accessed.
func isAligned(b []byte, align int) bool {
	if cap(b) == 0 {
		return true
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))&uintptr(align-1) == 0
}

package backstore

// Optional capabilities. A backstore implements the ones it can honour and
// the SCSI layer discovers them with type assertions: it advertises UNMAP,
// WRITE SAME with UNMAP, thin provisioning and physical block geometry only
// when the backstore behind the LU really has them ("capabilities are asked,
// not assumed", as SPDK's io_type_supported).

// Unmapper releases the storage behind byte ranges (SBC-4 UNMAP, WRITE SAME
// with the UNMAP bit).
type Unmapper interface {
	// Unmap deallocates [off, off+length). Parts of the range that the
	// medium cannot release (smaller than its allocation unit) keep their
	// storage; when UnmapInfo().ReadsZero they read as zeros afterwards.
	// The range must lie below Size. With the backstore in write-through
	// mode (or fua) the change is stable when Unmap returns.
	Unmap(off, length int64, fua bool) error
	// UnmapInfo describes what Unmap does; it is fixed at open.
	UnmapInfo() UnmapInfo
}

// UnmapInfo describes a backstore's unmapping.
type UnmapInfo struct {
	// Granularity is the allocation unit in bytes (a power of two): only
	// whole aligned units are released (VPD 0xB0 OPTIMAL UNMAP GRANULARITY).
	Granularity int64
	// ReadsZero: an unmapped byte reads as zero (READ CAPACITY(16) LBPRZ).
	ReadsZero bool
	// Thin: storage is allocated on first write and Unmap gives it back
	// (VPD 0xB2 PROVISIONING TYPE thin); false for a device whose discard
	// frees nothing the initiator can see.
	Thin bool
}

// Allocator reports which byte ranges hold storage (SBC-4 GET LBA STATUS).
type Allocator interface {
	// Allocated reports whether off is backed by storage (mapped) and the
	// length of the run of bytes from off, at most length, that share that
	// state. off must lie below Size; run is at least 1 when length > 0.
	Allocated(off, length int64) (mapped bool, run int64, err error)
	// AllocatedBytes is the storage the whole backstore uses now, in bytes
	// (for the thin-provisioning threshold and `blockport image info`).
	AllocatedBytes() (int64, error)
}

// Zeroer writes zeros without transferring them (SBC-4 WRITE SAME of a zero
// block): fallocate(FALLOC_FL_ZERO_RANGE) on a file, BLKZEROOUT on a
// device. The range stays allocated.
type Zeroer interface {
	WriteZeroes(off, length int64, fua bool) error
}

// Geometry reports the medium's physical block size when it is larger than
// a logical block (READ CAPACITY(16) LOGICAL BLOCKS PER PHYSICAL BLOCK
// EXPONENT): writes of whole aligned physical blocks avoid a
// read-modify-write below the backstore.
type Geometry interface {
	PhysicalBlockSize() uint32
}

// BlockSizer is a backstore that chooses the LU's logical block size when
// Options.BlockSize was 0 (a block device serves its own).
type BlockSizer interface {
	LUNBlockSize() uint32
}

// Immediate is a backstore whose ReadAt and WriteAt finish in the time of
// a memory copy and never wait for a device (memory). A fabric may run
// their reads and writes on the goroutine that received the command: on a
// small machine, handing a 4 KiB copy to another goroutine costs more than
// the copy (a scheduler wake-up of another thread per command).
type Immediate interface {
	Immediate() bool
}

// Resizer is a backstore whose capacity can grow while it serves (online
// resize, SBC-4 CAPACITY DATA HAS CHANGED): an image file is extended to a
// larger configured size, a block device is measured again.
type Resizer interface {
	// Resize grows the backstore to size bytes, or with size 0 to what its
	// medium holds now, and returns the size it serves from then on. It
	// never shrinks: a smaller size is an error and changes nothing.
	Resize(size int64) (int64, error)
}

// SameWriter writes one pattern repeatedly over a range without the caller
// expanding it (SBC-4 WRITE SAME of a non-zero block): a network backstore
// sends the pattern once instead of once per block.
type SameWriter interface {
	// WriteSame writes pattern over [off, off+length); length is a
	// multiple of len(pattern) and the range lies below Size.
	WriteSame(pattern []byte, off, length int64, fua bool) error
}

// AtomicComparer compares and writes a range in one step of the medium
// itself (SBC-4 COMPARE AND WRITE), atomic also against other servers that
// write the same medium (two gateways in front of one RBD image), which a
// lock inside one server cannot be.
type AtomicComparer interface {
	// CompareAndWrite writes write at off if the medium holds compare
	// there (both of one length). On a mismatch nothing is written and
	// mismatch is the offset of the first differing byte from off; it is
	// -1 when the write was done. errors.ErrUnsupported means this range
	// cannot be done atomically by the medium: the caller compares and
	// writes itself.
	CompareAndWrite(compare, write []byte, off int64, fua bool) (mismatch int64, err error)
}

// ResizeNotifier is a backstore whose size can change from outside the
// server (an RBD image grown with `rbd resize` or by another gateway). It
// calls the function it was given from its own goroutine when it sees the
// medium's size change; the SCSI layer then measures it (Resizer) and
// raises CAPACITY DATA HAS CHANGED.
type ResizeNotifier interface {
	OnResize(fn func())
}

// Identified is a backstore whose medium has an identity of its own that
// every server opening it sees alike (an RBD image's cluster, pool and
// image id). The LU's serial number and NAA designator derive from it, so
// two gateways exporting the medium present the same SCSI device to
// multipath and cluster software.
type Identified interface {
	Identity() string
}

// Shared is a backstore that several servers serve at once (one RBD image
// behind two gateways). It keeps small records beside the data that every
// one of them sees, for state that must follow the medium rather than the
// server: persistent reservations.
type Shared interface {
	// Record opens the record name, creating it empty when missing.
	Record(name string) (Record, error)
}

// Record is a small value shared by every server of a Shared backstore.
type Record interface {
	// Load returns the value and its version (empty before the first Store).
	Load() (value []byte, version uint64, err error)
	// Store replaces the value if the record is still at version. When
	// another server stored first, ok is false and nothing changed.
	Store(value []byte, version uint64) (newVersion uint64, ok bool, err error)
	// Notify gives note to the other servers watching the record and
	// returns once their Watch functions have returned, or they did not
	// answer in time. With fence, every other server that uses the record
	// and did not take the note in (its function failed, it did not
	// answer, it no longer watches) is cut off from the medium before
	// Notify returns (an RBD gateway is blocklisted); an error says one
	// could not be.
	Notify(note []byte, fence bool) error
	// Watch calls changed, from a goroutine of its own, with the note of
	// every Notify of another server; an error from changed tells that
	// server the note was not taken in. changed gets nil when the watch
	// was lost and changes may have been missed (reload before trusting a
	// copy), and an empty note once it watches again.
	Watch(changed func(note []byte) error) error
}

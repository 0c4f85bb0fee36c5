package backstore

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

func init() { Register("sparse", openSparse) }

// sparseBackstore is a thin image: a sparse file that allocates storage on
// first write and gives it back on UNMAP by punching holes
// (FALLOC_FL_PUNCH_HOLE). Which ranges hold storage is the file's own map of
// data and holes (SEEK_DATA/SEEK_HOLE), so nothing is kept beside the image.
type sparseBackstore struct {
	*fileBackstore
}

func openSparse(opts Options) (Backstore, error) {
	b, err := openImage(opts, true)
	if err != nil {
		return nil, err
	}
	return &sparseBackstore{b}, nil
}

// UnmapInfo: holes are punched in units of the filesystem block and read
// as zeros (fallocate(2): "subsequent reads ... return zeros").
func (s *sparseBackstore) UnmapInfo() UnmapInfo {
	return UnmapInfo{Granularity: int64(s.fsBlock), ReadsZero: true, Thin: true}
}

// Unmap punches a hole over [off, off+length); the size is kept.
func (s *sparseBackstore) Unmap(off, length int64, fua bool) error {
	return s.changeRange("unmap", off, length, fua, s.fallocMode(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE))
}

// Allocated looks up the run of data or hole that starts at off.
func (s *sparseBackstore) Allocated(off, length int64) (bool, int64, error) {
	if s.closed.Load() {
		return false, 0, ErrClosed
	}
	if off < 0 || length < 0 || off >= s.size.Load() {
		return false, 0, fmt.Errorf("allocation status at offset %d: %w", off, ErrOutOfRange)
	}
	end := min(s.size.Load(), off+length)
	data, err := s.seek(off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return false, end - off, nil // no data at or after off: a hole to the end
	}
	if err != nil {
		return false, 0, s.ioError("seek data in", int(length), off, err)
	}
	if data > off {
		return false, min(data, end) - off, nil
	}
	hole, err := s.seek(off, unix.SEEK_HOLE)
	if errors.Is(err, unix.ENXIO) {
		hole = end // raced with a truncation; the size only grows while open
	} else if err != nil {
		return false, 0, s.ioError("seek hole in", int(length), off, err)
	}
	return true, min(hole, end) - off, nil
}

// seek runs lseek(2) on the image. The resulting file offset is never used
// (all I/O is positional), so concurrent seeks do not disturb each other.
func (s *sparseBackstore) seek(off int64, whence int) (int64, error) {
	var pos int64
	var seekErr error
	err := s.conn.Control(func(fd uintptr) {
		pos, seekErr = unix.Seek(int(fd), off, whence)
	})
	if err != nil {
		return 0, err
	}
	return pos, seekErr
}

// AllocatedBytes is the storage the image uses: st_blocks, in 512-byte units.
func (s *sparseBackstore) AllocatedBytes() (int64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var st unix.Stat_t
	var statErr error
	if err := s.conn.Control(func(fd uintptr) { statErr = unix.Fstat(int(fd), &st) }); err != nil {
		return 0, err
	}
	if statErr != nil {
		return 0, fmt.Errorf("stat %q: %w", s.path, statErr)
	}
	return st.Blocks * 512, nil
}

// WriteZeroes zeros [off, off+length) in place with
// FALLOC_FL_ZERO_RANGE, which converts the range to unwritten extents
// without moving data; where the filesystem lacks it, zeros are written.
func (b *fileBackstore) WriteZeroes(off, length int64, fua bool) error {
	err := b.changeRange("write zeroes to", off, length, fua, b.fallocMode(unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE))
	if !errors.Is(err, errFallocateUnsupported) {
		return err
	}
	buf := GetBuffer(int(min(length, maxBounce)))
	defer PutBuffer(buf)
	clear(buf)
	for done := int64(0); done < length; {
		n := min(int64(len(buf)), length-done)
		if _, err := b.WriteAt(buf[:n], off+done, fua); err != nil {
			return err
		}
		done += n
	}
	return nil
}

var errFallocateUnsupported = errors.New("fallocate mode not supported")

// fallocMode returns the range operation fallocate(mode) for changeRange.
func (b *fileBackstore) fallocMode(mode uint32) func(fd int, off, length int64) error {
	return func(fd int, off, length int64) error { return b.fallocate(fd, mode, off, length) }
}

// changeRange applies change (fallocate, a block device ioctl) to
// [off, off+length) of the open descriptor. It holds the
// O_DIRECT alignment units around the range exclusively: an unaligned
// write's read-modify-write of a neighbouring unit must not write back
// bytes read before the range was changed.
func (b *fileBackstore) changeRange(op string, off, length int64, fua bool, change func(fd int, off, length int64) error) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if b.readOnly {
		return ErrReadOnly
	}
	if off < 0 || length < 0 || off > b.size.Load() || length > b.size.Load()-off {
		return fmt.Errorf("%s %d bytes at offset %d with size %d: %w", op, length, off, b.size.Load(), ErrOutOfRange)
	}
	if length == 0 {
		return nil
	}
	if b.direct {
		t := b.units.lock(b.alignDown(off), b.alignUp(off+length), true)
		defer b.units.unlock(t)
	}
	var changeErr error
	err := b.conn.Control(func(fd uintptr) {
		for {
			changeErr = change(int(fd), off, length)
			if changeErr != unix.EINTR {
				return
			}
		}
	})
	if err == nil {
		err = changeErr
	}
	if notSupported(err) {
		return fmt.Errorf("%s %q: %w (%w)", op, b.path, errFallocateUnsupported, err)
	}
	if err != nil {
		return b.ioError(op, int(length), off, err)
	}
	// fallocate changes metadata only and a discard may sit in a volatile
	// cache; O_DSYNC covers neither. In write-through mode, or for FUA,
	// make the change stable before returning.
	if fua || !b.writeCache {
		if err := b.datasync(); err != nil {
			return b.ioError(op+" (fdatasync)", int(length), off, err)
		}
	}
	return nil
}

// Image files report no physical block size (Geometry): the filesystem
// block is the unit of allocation, reported as the unmap granularity, but a
// smaller write to it is not a read-modify-write of a medium the way a
// 512e disk's is, and initiators handle LBPPB > 1 unevenly.

// Space reports the storage the image uses and how much more it can get:
// the rest of its size, bounded by the free space of its filesystem (the
// SBC-4 Logical Block Provisioning log page).
func (s *sparseBackstore) Space() (used, available int64, err error) {
	used, err = s.AllocatedBytes()
	if err != nil {
		return 0, 0, err
	}
	var fs unix.Statfs_t
	var statErr error
	if err := s.conn.Control(func(fd uintptr) { statErr = unix.Fstatfs(int(fd), &fs) }); err != nil {
		return 0, 0, err
	}
	if statErr != nil {
		return 0, 0, fmt.Errorf("statfs %q: %w", s.path, statErr)
	}
	available = max(0, min(s.size.Load()-used, int64(fs.Bavail)*fs.Bsize))
	return used, available, nil
}

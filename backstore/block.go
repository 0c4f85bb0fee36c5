package backstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() { Register("block", openBlock) }

// blockBackstore serves a block device. Its size and block sizes come from
// the device (BLKGETSIZE64, BLKSSZGET, BLKPBSZGET); I/O goes through the
// file machinery (O_DIRECT, O_DSYNC write-through, RWF_DSYNC FUA), and
// flushes are fdatasync(2), which on a device flushes its volatile cache.
type blockBackstore struct {
	*fileBackstore
	logical  uint32 // the device's logical block size
	physical uint32 // the device's physical block size
	rdev     uint64 // the device number, to find it in sysfs
	lunBlock int64  // the LU's block size: only whole LU blocks are served
}

// discardBlockBackstore is a block device that supports discard: UNMAP
// reaches it as BLKDISCARD. A device without discard is a plain
// blockBackstore, which does not offer Unmapper at all, so the SCSI layer
// does not advertise UNMAP for it.
type discardBlockBackstore struct {
	*blockBackstore
	granularity int64
}

func openBlock(opts Options) (Backstore, error) {
	if opts.Path == "" {
		return nil, errors.New("path is required")
	}
	// O_EXCL on a block device (without O_CREAT) claims it exclusively:
	// the open fails with EBUSY while it is mounted, part of a RAID or
	// LVM volume, or open by another LUN or process in the same way.
	flags := os.O_RDWR | unix.O_EXCL
	if opts.ReadOnly {
		flags = os.O_RDONLY | unix.O_EXCL
	} else if !opts.WriteCache {
		flags |= unix.O_DSYNC
	}
	if opts.DirectIO {
		flags |= unix.O_DIRECT
	}
	st, err := os.Stat(opts.Path)
	if err != nil {
		return nil, err
	}
	if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return nil, fmt.Errorf("not a block device (mode %v)", st.Mode())
	}
	f, err := os.OpenFile(opts.Path, flags, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, errors.New("device is busy: mounted, or opened exclusively by another LUN or process")
	}
	if err != nil {
		return nil, openError(err, opts.DirectIO)
	}
	b, err := setupBlock(f, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	if g := discardGranularity(b.rdev); g > 0 {
		return &discardBlockBackstore{blockBackstore: b, granularity: max(g, int64(b.logical))}, nil
	}
	return b, nil
}

func setupBlock(f *os.File, opts Options) (*blockBackstore, error) {
	fb := newFileBackstore(f, opts)
	conn, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	fb.conn = conn
	var size uint64
	var logical, physical int
	var st unix.Stat_t
	var ioErr error
	if err := conn.Control(func(fd uintptr) {
		if ioErr = unix.Fstat(int(fd), &st); ioErr != nil {
			return
		}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); e != 0 {
			ioErr = fmt.Errorf("BLKGETSIZE64: %w", e)
			return
		}
		if logical, ioErr = unix.IoctlGetInt(int(fd), unix.BLKSSZGET); ioErr != nil {
			ioErr = fmt.Errorf("BLKSSZGET: %w", ioErr)
			return
		}
		if physical, ioErr = unix.IoctlGetInt(int(fd), unix.BLKPBSZGET); ioErr != nil {
			ioErr = fmt.Errorf("BLKPBSZGET: %w", ioErr)
		}
	}); err != nil {
		return nil, err
	}
	if ioErr != nil {
		return nil, ioErr
	}
	if !isPowerOfTwo(int64(logical)) || logical < 512 || !isPowerOfTwo(int64(physical)) || physical < logical || physical > 64<<10 {
		return nil, fmt.Errorf("device reports unusable block sizes: logical %d, physical %d", logical, physical)
	}
	bs := int64(opts.BlockSize)
	if bs == 0 {
		// Unset: serve the device's own logical block size.
		if logical != 512 && logical != 4096 {
			return nil, fmt.Errorf("device has %d-byte logical blocks; set block_size to 512 or 4096", logical)
		}
		bs = int64(logical)
	}
	if bs < int64(logical) {
		return nil, fmt.Errorf("block_size %d is smaller than the device's logical block size %d; set block_size = %d", bs, logical, logical)
	}
	// A device whose size is not a whole number of LU blocks (a 4096-byte
	// LU on a device of 512-byte sectors) serves only its whole blocks.
	usable := int64(size) / bs * bs
	if usable == 0 {
		return nil, fmt.Errorf("device of %d bytes holds no %d-byte block", size, bs)
	}
	if opts.Size != 0 && opts.Size != usable {
		return nil, fmt.Errorf("size %d is configured but the device holds %d bytes; leave size out for a block device", opts.Size, usable)
	}
	fb.size.Store(usable)
	fb.fsBlock = uint32(physical)
	// A device has no "new": a missing key is made, and whatever the
	// device held reads as noise (docs/config.md says so).
	if err := fb.setupCrypt(opts, true); err != nil {
		return nil, err
	}
	if fb.direct {
		// O_DIRECT on a block device needs its logical block size, the
		// unit its size is counted in. Before Linux 6.11 statx reports
		// no alignment for a device and directAlignment's 4096 fallback
		// left the last sectors of a device whose size is not a multiple
		// of 4 KiB out of reach (the bounce read of their unit runs past
		// the end).
		_, fb.memAlign = fb.directAlignment()
		fb.offsetAlign = int64(logical)
		if fb.memAlign > BufferAlign || fb.offsetAlign > maxBounce {
			return nil, fmt.Errorf("O_DIRECT alignment (memory %d, offset %d) is beyond what this server supports; set direct_io = false", fb.memAlign, fb.offsetAlign)
		}
	}
	fb.startAIO()
	return &blockBackstore{fileBackstore: fb, logical: uint32(logical), physical: uint32(physical), rdev: st.Rdev, lunBlock: bs}, nil
}

// Resize measures the device again (BLKGETSIZE64) and serves its new size
// when it grew (a grown LV or SAN volume). The size is the device's: a
// non-zero size must equal it. A device that shrank is an error, and the
// old size stays (its tail then fails with a medium error on access).
func (b *blockBackstore) Resize(size int64) (int64, error) {
	if b.closed.Load() {
		return 0, ErrClosed
	}
	cur := b.size.Load()
	var devSize uint64
	var ioErr error
	if err := b.conn.Control(func(fd uintptr) {
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&devSize))); e != 0 {
			ioErr = fmt.Errorf("BLKGETSIZE64: %w", e)
		}
	}); err != nil {
		return cur, err
	}
	if ioErr != nil {
		return cur, ioErr
	}
	usable := int64(devSize) / b.lunBlock * b.lunBlock
	switch {
	case size != 0 && size != usable:
		return cur, fmt.Errorf("size %d is configured but the device holds %d bytes; leave size out for a block device", size, usable)
	case usable < cur:
		return cur, fmt.Errorf("device shrank from %d to %d bytes; still serving %d", cur, usable, cur)
	}
	b.size.Store(usable)
	return usable, nil
}

// CryptoErase on a device replaces the key only: zeroing a whole device
// would take as long as overwriting it, which is what the key change saves.
func (b *blockBackstore) CryptoErase() error {
	if err := b.rekey(); err != nil {
		return err
	}
	return b.Sync()
}

// LUNBlockSize is the logical block size the LU serves: block_size, or
// the device's own when none was set.
func (b *blockBackstore) LUNBlockSize() uint32 { return uint32(b.lunBlock) }

// PhysicalBlockSize is the device's physical block size (BLKPBSZGET).
func (b *blockBackstore) PhysicalBlockSize() uint32 { return b.physical }

// WriteZeroes zeros the range on the device itself (BLKZEROOUT), which
// uses the device's WRITE ZEROES or WRITE SAME when it has them and never
// deallocates.
func (b *blockBackstore) WriteZeroes(off, length int64, fua bool) error {
	return b.changeRange("zero", off, length, fua, func(fd int, off, length int64) error {
		return blockRangeIoctl(fd, unix.BLKZEROOUT, off, length)
	})
}

// Unmap discards the range (BLKDISCARD). What a discarded block reads back
// as is up to the device, so LBPRZ is not claimed.
func (d *discardBlockBackstore) Unmap(off, length int64, fua bool) error {
	return d.changeRange("discard", off, length, fua, func(fd int, off, length int64) error {
		return blockRangeIoctl(fd, unix.BLKDISCARD, off, length)
	})
}

func (d *discardBlockBackstore) UnmapInfo() UnmapInfo {
	return UnmapInfo{Granularity: d.granularity, ReadsZero: false, Thin: true}
}

// blockRangeIoctl issues BLKDISCARD or BLKZEROOUT, which take a
// {start, length} pair of uint64 in bytes.
func blockRangeIoctl(fd int, req uint, off, length int64) error {
	r := [2]uint64{uint64(off), uint64(length)}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&r))); e != 0 {
		return e
	}
	return nil
}

// discardGranularity reads the device's discard limits from sysfs
// (queue/discard_max_bytes, queue/discard_granularity); 0 means the
// device has no discard. A partition has its queue in its parent's
// directory.
func discardGranularity(rdev uint64) int64 {
	dir := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(rdev), unix.Minor(rdev))
	read := func(name string) int64 {
		for _, p := range []string{filepath.Join(dir, "queue", name), filepath.Join(dir, "..", "queue", name)} {
			if b, err := os.ReadFile(p); err == nil {
				n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
				if err == nil {
					return n
				}
			}
		}
		return 0
	}
	if read("discard_max_bytes") == 0 {
		return 0
	}
	g := read("discard_granularity")
	if !isPowerOfTwo(g) {
		return 512
	}
	return g
}

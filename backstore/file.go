package backstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"github.com/ncw/directio"
	"golang.org/x/sys/unix"
)

func init() { Register("file", openFile) }

// maxBounce bounds the aligned bounce buffer of one step of an unaligned
// O_DIRECT transfer; longer transfers go through it in pieces.
const maxBounce = 1 << 20

// fileBackstore serves a raw image file: block n of the LU is at byte
// n*BlockSize of the file.
type fileBackstore struct {
	file       *os.File
	conn       syscall.RawConn // of file; holds the fd open during raw syscalls
	path       string
	size       atomic.Int64 // grows with Resize, never shrinks
	direct     bool
	writeCache bool
	readOnly   bool

	// O_DIRECT constraints, fixed at open: offsets and lengths must be
	// multiples of offsetAlign and buffer addresses of memAlign.
	offsetAlign int64
	memAlign    int
	// fsBlock is the filesystem's (or device's physical) block size: a
	// power of two from 512 to 64 KiB.
	fsBlock uint32

	// units serialises read-modify-write of O_DIRECT alignment units.
	units rangeLocker

	// noDsyncFlag is set once the kernel refused RWF_DSYNC; FUA writes
	// then use write + fdatasync.
	noDsyncFlag atomic.Bool
	closed      atomic.Bool

	// lost is the first failure to make written data stable: an
	// fdatasync error, or EIO from a write. The kernel reports a
	// writeback error once per open file, to whichever call looks first
	// (a FUA write, an UNMAP's flush), so without this a later
	// SYNCHRONIZE CACHE would find nothing and answer GOOD for data
	// acknowledged earlier and lost. Every Sync returns it from then on;
	// reopening the LUN (reload, restart) clears it.
	lost atomic.Pointer[error]

	// The syscalls whose answers depend on the kernel; tests replace them
	// to drive the fallback paths. Set at open, read-only after.
	pwritev2  func(fd int, iovs [][]byte, off int64, flags int) (int, error)
	fdatasync func(fd int) error
	fallocate func(fd int, mode uint32, off, length int64) error

	// sparse: the image allocates on write (kind "sparse"); growing it
	// leaves a hole instead of preallocating.
	sparse bool

	// crypt enciphers the data at rest (Options.KeyFile, crypt.go); nil
	// for plain data. Set at open.
	crypt *cryptState

	// aio submits O_DIRECT reads and writes asynchronously (aio_linux.go);
	// nil for buffered I/O or where the kernel offers none. Set at open.
	aio *aioContext
	// inflight counts reads and writes under way (startIO).
	inflight atomic.Int32
}

// setupCrypt turns on encryption when opts ask for it; create allows a
// new key when the key file is missing (openCrypt).
func (b *fileBackstore) setupCrypt(opts Options, create bool) error {
	if opts.KeyFile == "" {
		return nil
	}
	c, err := openCrypt(opts.KeyFile, create)
	if err != nil {
		return err
	}
	b.crypt = c
	return nil
}

func openFile(opts Options) (Backstore, error) {
	b, err := openImage(opts, false)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// openImage opens (creating it when missing) the image file of a file or,
// with sparse set, a sparse backstore. A file image is fully allocated at
// creation and when it grows, so a write never fails for lack of space; a
// sparse image allocates on write.
func openImage(opts Options, sparse bool) (*fileBackstore, error) {
	if opts.Path == "" {
		return nil, errors.New("path is required")
	}
	// An encrypted image that does not exist yet gets its key first: a
	// crash between the two then leaves a key without an image (made
	// at the next start), never an image without its key.
	if opts.KeyFile != "" {
		if _, err := os.Stat(opts.Path); errors.Is(err, fs.ErrNotExist) {
			if _, err := openCrypt(opts.KeyFile, true); err != nil {
				return nil, err
			}
		}
	}
	if err := createImage(opts, sparse); err != nil {
		return nil, err
	}
	flags := os.O_RDWR
	if opts.ReadOnly {
		flags = os.O_RDONLY
	} else if !opts.WriteCache {
		// Write-through: O_DSYNC makes every pwrite return only once its
		// data (and the metadata to reach it) is stable, so an
		// acknowledged write survives power loss without a flush.
		flags |= unix.O_DSYNC
	}
	var f *os.File
	var err error
	if opts.DirectIO {
		f, err = directio.OpenFile(opts.Path, flags, 0)
	} else {
		f, err = os.OpenFile(opts.Path, flags, 0)
	}
	if err != nil {
		return nil, openError(err, opts.DirectIO)
	}
	b := newFileBackstore(f, opts)
	b.sparse = sparse
	if err := b.setup(opts); err != nil {
		f.Close()
		return nil, err
	}
	if err := b.setupCrypt(opts, false); err != nil {
		f.Close()
		return nil, err
	}
	b.startAIO()
	return b, nil
}

// startAIO gives an O_DIRECT backstore its Linux AIO context (aio_linux.go)
// as the last step of a successful open. Without one (no AIO in the kernel,
// aio-max-nr used up) reads and writes stay synchronous pread/pwrite.
func (b *fileBackstore) startAIO() {
	if !b.direct {
		return
	}
	if a, err := newAIOContext(); err == nil {
		b.aio = a
	}
}

// startIO counts a read or write in flight and says whether it goes
// through the AIO context: when others are in flight (a deep queue), so
// that no thread blocks per I/O. Alone (queue depth 1) the synchronous
// call has the shorter path. endIO must follow.
func (b *fileBackstore) startIO() (useAIO bool) {
	return b.inflight.Add(1) > 1 && b.aio != nil
}

func (b *fileBackstore) endIO() { b.inflight.Add(-1) }

// aioRW runs one read or write through the AIO context, holding the
// descriptor open until it completes.
func (b *fileBackstore) aioRW(write bool, buf []byte, off int64, rwFlags uint32) (int, error) {
	var n int
	var ioErr error
	err := b.conn.Control(func(fd uintptr) {
		n, ioErr = b.aio.rw(int(fd), write, buf, off, rwFlags)
	})
	if err != nil {
		if b.closed.Load() {
			return n, ErrClosed // the image was closed under us
		}
		return n, err
	}
	if errors.Is(ioErr, errAIOClosed) {
		return n, ErrClosed
	}
	return n, ioErr
}

// newFileBackstore wraps an open image or device; the caller finishes the
// setup (size, locking, alignment).
func newFileBackstore(f *os.File, opts Options) *fileBackstore {
	return &fileBackstore{
		file:        f,
		path:        opts.Path,
		direct:      opts.DirectIO,
		writeCache:  opts.WriteCache,
		readOnly:    opts.ReadOnly,
		offsetAlign: 1,
		memAlign:    1,
		pwritev2:    unix.Pwritev2,
		fdatasync:   unix.Fdatasync,
		fallocate:   unix.Fallocate,
	}
}

// openError explains the open failures a user can fix in the config.
func openError(err error, direct bool) error {
	if direct && errors.Is(err, syscall.EINVAL) {
		// open(2): EINVAL with O_DIRECT means the filesystem has no
		// direct I/O (tmpfs before Linux 6.6, some FUSE filesystems).
		return fmt.Errorf("%w (%w)", ErrDirectIOUnsupported, err)
	}
	return err
}

// createImage creates a missing image of opts.Size bytes, with its parent
// directories: fully allocated (fallocate) for a file image, a hole for a
// sparse one. An existing image is left alone.
func createImage(opts Options, sparse bool) error {
	if _, err := os.Stat(opts.Path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if opts.ReadOnly {
		return errors.New("image does not exist and read_only forbids creating it")
	}
	if opts.Size == 0 {
		return errors.New("image does not exist and no size is configured to create it")
	}
	dir := filepath.Dir(opts.Path)
	if err := mkdirAllSynced(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(opts.Path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil // created by someone else meanwhile; setup checks its size
	}
	if err != nil {
		return err
	}
	if sparse {
		err = f.Truncate(opts.Size)
	} else {
		err = preallocate(f, 0, opts.Size, unix.Fallocate, opts.Progress)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir) // make the new directory entry itself durable
	}
	if err != nil {
		os.Remove(opts.Path)
		return fmt.Errorf("create image: %w", err)
	}
	return nil
}

// mkdirAllSynced is os.MkdirAll that also makes the new directories
// durable: the entry of each one it created is synced in its parent, so a
// crash cannot take away a directory whose files were synced.
func mkdirAllSynced(dir string, perm os.FileMode) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	for _, d := range missing { // deepest first; each parent holds the entry
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// setup checks the opened image against opts, grows it when needed, locks
// it against a second exporter and learns the O_DIRECT alignment.
func (b *fileBackstore) setup(opts Options) error {
	conn, err := b.file.SyscallConn()
	if err != nil {
		return err
	}
	b.conn = conn
	st, err := b.file.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (mode %v)", st.Mode())
	}
	b.fsBlock = 4096
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Blksize >= 512 && sys.Blksize <= 64<<10 && isPowerOfTwo(int64(sys.Blksize)) {
		b.fsBlock = uint32(sys.Blksize)
	}
	if err := b.lock(); err != nil {
		return err
	}

	current, want := st.Size(), opts.Size
	bs := int64(opts.BlockSize)
	switch {
	case want == 0:
		if current == 0 {
			return errors.New("image is empty and no size is configured")
		}
		if current%bs != 0 {
			return fmt.Errorf("image size %d is not a multiple of block_size %d", current, bs)
		}
		want = current
	case current > want:
		return fmt.Errorf("image is %d bytes, larger than the configured size %d; refusing to shrink it (raise size, or set it to 0 to use the image size)", current, want)
	case current < want:
		if opts.ReadOnly {
			return fmt.Errorf("image is %d bytes, smaller than the configured size %d, and read_only forbids growing it", current, want)
		}
		if err := b.grow(current, want, opts.Progress); err != nil {
			return err
		}
	}
	b.size.Store(want)

	if b.direct {
		b.offsetAlign, b.memAlign = b.directAlignment()
		if b.memAlign > BufferAlign || b.offsetAlign > maxBounce {
			return fmt.Errorf("O_DIRECT alignment (memory %d, offset %d) is beyond what this server supports; set direct_io = false", b.memAlign, b.offsetAlign)
		}
		// The tail unit could only be rewritten whole by extending the file.
		if b.size.Load()%b.offsetAlign != 0 {
			return fmt.Errorf("size %d is not a multiple of the O_DIRECT alignment %d of this filesystem; change size or set direct_io = false", b.size.Load(), b.offsetAlign)
		}
	}
	return nil
}

// lock takes an advisory flock so that two servers (or two LUNs) never
// export the same image read-write: that would corrupt any filesystem on
// it. Read-only opens share the lock.
func (b *fileBackstore) lock() error {
	how := unix.LOCK_EX | unix.LOCK_NB
	if b.readOnly {
		how = unix.LOCK_SH | unix.LOCK_NB
	}
	var lockErr error
	err := b.conn.Control(func(fd uintptr) {
		lockErr = unix.Flock(int(fd), how)
	})
	if err == nil {
		err = lockErr
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		return errors.New("image is in use by another backstore or process (flock held)")
	}
	return err
}

// directAlignment asks the kernel for the file's O_DIRECT alignment
// (statx STATX_DIOALIGN, Linux 6.1). Without an answer it assumes the
// conservative page-sized values that directio documents.
func (b *fileBackstore) directAlignment() (offsetAlign int64, memAlign int) {
	offsetAlign, memAlign = directio.BlockSize, directio.AlignSize
	var st unix.Statx_t
	var statErr error
	err := b.conn.Control(func(fd uintptr) {
		statErr = unix.Statx(int(fd), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st)
	})
	if err != nil || statErr != nil || st.Mask&unix.STATX_DIOALIGN == 0 {
		return offsetAlign, memAlign
	}
	if isPowerOfTwo(int64(st.Dio_offset_align)) && isPowerOfTwo(int64(st.Dio_mem_align)) {
		return int64(st.Dio_offset_align), int(st.Dio_mem_align)
	}
	return offsetAlign, memAlign
}

func isPowerOfTwo(x int64) bool { return x > 0 && x&(x-1) == 0 }

func (b *fileBackstore) Size() int64 { return b.size.Load() }

// grow extends the image file from current to want bytes: allocated for a
// file image, a hole for a sparse one; the new tail reads as zeros. Sync
// makes the new size durable before any write lands beyond the old end.
func (b *fileBackstore) grow(current, want int64, progress func(done, total int64)) error {
	var err error
	if b.sparse {
		err = b.file.Truncate(want)
	} else {
		err = preallocate(b.file, current, want, b.fallocate, progress)
	}
	if err != nil {
		return fmt.Errorf("grow image from %d to %d bytes: %w", current, want, err)
	}
	if err := b.file.Sync(); err != nil {
		return fmt.Errorf("grow image from %d to %d bytes: %w", current, want, err)
	}
	return nil
}

// Resize grows the image to size bytes while it serves; 0 adopts the
// file's own length when another program made it longer. It refuses to
// shrink: the LU above would lose blocks its initiators may hold data in.
func (b *fileBackstore) Resize(size int64) (int64, error) {
	if b.closed.Load() {
		return 0, ErrClosed
	}
	cur := b.size.Load()
	st, err := b.file.Stat()
	if err != nil {
		return cur, err
	}
	onDisk := st.Size()
	want := size
	if want == 0 {
		want = max(cur, onDisk)
		if b.direct {
			want -= want % b.offsetAlign
		}
	}
	switch {
	case want < cur:
		return cur, fmt.Errorf("image is %d bytes; refusing to shrink it to %d", cur, want)
	case want == cur:
		return cur, nil
	case b.direct && want%b.offsetAlign != 0:
		return cur, fmt.Errorf("size %d is not a multiple of the O_DIRECT alignment %d of this filesystem", want, b.offsetAlign)
	case onDisk < want && b.readOnly:
		return cur, fmt.Errorf("image is %d bytes, smaller than %d, and read_only forbids growing it", onDisk, want)
	case onDisk < want:
		if err := b.grow(onDisk, want, nil); err != nil {
			return cur, err
		}
	}
	b.size.Store(want)
	return want, nil
}

// directReady reports whether p at off can go to O_DIRECT as it is.
func (b *fileBackstore) directReady(p []byte, off int64) bool {
	mask := b.offsetAlign - 1
	return off&mask == 0 && int64(len(p))&mask == 0 && isAligned(p, b.memAlign)
}

func (b *fileBackstore) alignDown(x int64) int64 { return x &^ (b.offsetAlign - 1) }
func (b *fileBackstore) alignUp(x int64) int64 {
	return (x + b.offsetAlign - 1) &^ (b.offsetAlign - 1)
}

func (b *fileBackstore) ReadAt(p []byte, off int64) (int, error) {
	if b.closed.Load() {
		return 0, ErrClosed
	}
	n, eof := ClipRead(len(p), off, b.size.Load())
	if n == 0 {
		return 0, eof
	}
	p = p[:n]
	if b.crypt != nil {
		if err := checkCryptRange(n, off); err != nil {
			return 0, err
		}
		defer func() { b.crypt.decrypt(p, off) }()
	}
	var err error
	if b.direct && !b.directReady(p, off) {
		n, err = b.readBounce(p, off)
	} else {
		n, err = b.readFull(p, off)
	}
	if err != nil {
		return n, b.ioError("read", len(p), off, err)
	}
	return n, eof
}

// readFull reads all of p at off, below b.size. os.File.ReadAt already
// retries short reads; io.EOF here means the image was truncated under us.
func (b *fileBackstore) readFull(p []byte, off int64) (int, error) {
	var n int
	var err error
	useAIO := b.startIO()
	defer b.endIO()
	if useAIO {
		n, err = b.aioRW(false, p, off, 0)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
	} else {
		n, err = b.file.ReadAt(p, off)
	}
	if err == io.EOF {
		err = fmt.Errorf("image shorter than its configured size %d: %w", b.size.Load(), io.ErrUnexpectedEOF)
	}
	return n, err
}

// readBounce serves an O_DIRECT read whose buffer, offset or length is
// unaligned: it reads whole alignment units into a pooled aligned buffer
// and copies the wanted bytes out.
func (b *fileBackstore) readBounce(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		start := b.alignDown(pos)
		stop := min(end, start+maxBounce)
		buf := GetBuffer(int(b.alignUp(stop) - start))
		_, err := b.readFull(buf, start)
		if err == nil {
			done += copy(p[done:], buf[pos-start:stop-start])
		}
		PutBuffer(buf)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (b *fileBackstore) WriteAt(p []byte, off int64, fua bool) (int, error) {
	if b.closed.Load() {
		return 0, ErrClosed
	}
	if b.readOnly {
		return 0, ErrReadOnly
	}
	if err := CheckWrite(len(p), off, b.size.Load()); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.crypt != nil {
		// The caller's buffer stays plaintext (COMPARE AND WRITE, WRITE
		// AND VERIFY and copies read it again): encipher into a pooled one.
		if err := checkCryptRange(len(p), off); err != nil {
			return 0, err
		}
		buf := GetBuffer(len(p))
		defer PutBuffer(buf)
		b.crypt.encrypt(buf, p, off)
		p = buf[:len(p)]
	}
	var n int
	var err error
	switch {
	case !b.direct:
		n, err = b.pwrite(p, off, fua)
	case b.directReady(p, off):
		// Shared: aligned writes overlap each other freely, as on a disk,
		// but must not land inside another write's read-modify-write.
		t := b.units.lock(off, off+int64(len(p)), false)
		n, err = b.pwrite(p, off, fua)
		b.units.unlock(t)
	default:
		n, err = b.writeBounce(p, off, fua)
	}
	if err != nil {
		return n, b.ioError("write", len(p), off, err)
	}
	return n, nil
}

// writeBounce serves an unaligned O_DIRECT write as a read-modify-write of
// the alignment units it touches, holding them exclusively so that a
// concurrent write into the same units cannot be overwritten with the
// stale bytes read here.
func (b *fileBackstore) writeBounce(p []byte, off int64, fua bool) (int, error) {
	end := off + int64(len(p))
	unit := b.offsetAlign
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		start := b.alignDown(pos)
		stop := min(end, start+maxBounce)
		unitsEnd := b.alignUp(stop)
		t := b.units.lock(start, unitsEnd, true)
		buf := GetBuffer(int(unitsEnd - start))
		var err error
		// Only the first and last units can be partly covered; read them
		// so the bytes around the caller's data are written back unchanged.
		headPartial := pos != start
		if headPartial {
			_, err = b.readFull(buf[:unit], start)
		}
		if err == nil && stop != unitsEnd && !(headPartial && unitsEnd-unit == start) {
			_, err = b.readFull(buf[len(buf)-int(unit):], unitsEnd-unit)
		}
		if err == nil {
			copy(buf[pos-start:], p[done:done+int(stop-pos)])
			_, err = b.pwrite(buf, start, fua)
		}
		PutBuffer(buf)
		b.units.unlock(t)
		if err != nil {
			return done, err
		}
		done += int(stop - pos)
	}
	return done, nil
}

// pwrite writes all of buf at off and, for a FUA write in write-back mode,
// makes it stable before returning. In write-through mode O_DSYNC already
// does that for every write.
func (b *fileBackstore) pwrite(buf []byte, off int64, fua bool) (int, error) {
	n, err := b.pwriteOnce(buf, off, fua)
	b.noteWriteErr(err)
	return n, err
}

func (b *fileBackstore) pwriteOnce(buf []byte, off int64, fua bool) (int, error) {
	useAIO := b.startIO()
	defer b.endIO()
	if useAIO {
		// O_DSYNC of a write-through image applies to AIO writes too; a
		// FUA write in write-back mode asks for RWF_DSYNC on its own.
		var flags uint32
		if fua && b.writeCache {
			if b.noDsyncFlag.Load() {
				return b.pwriteSync(buf, off, fua)
			}
			flags = unix.RWF_DSYNC
		}
		n, err := b.aioRW(true, buf, off, flags)
		if flags != 0 && n == 0 && notSupported(err) {
			b.noDsyncFlag.Store(true)
			return b.pwriteSync(buf, off, fua)
		}
		return n, err
	}
	return b.pwriteSync(buf, off, fua)
}

// pwriteSync is pwrite through pwrite(2)/pwritev2(2) on the calling thread.
func (b *fileBackstore) pwriteSync(buf []byte, off int64, fua bool) (int, error) {
	if !fua || !b.writeCache {
		return b.file.WriteAt(buf, off)
	}
	if !b.noDsyncFlag.Load() {
		// pwritev2(2) RWF_DSYNC (Linux 4.7): O_DSYNC for this one write,
		// which syncs only this data instead of the whole file.
		n, err := b.pwriteDsync(buf, off)
		if err == nil || n > 0 || !notSupported(err) {
			return n, err
		}
		b.noDsyncFlag.Store(true)
	}
	n, err := b.file.WriteAt(buf, off)
	if err != nil {
		return n, err
	}
	if err := b.datasync(); err != nil {
		return n, fmt.Errorf("fdatasync after FUA write: %w", err)
	}
	return n, nil
}

func (b *fileBackstore) pwriteDsync(buf []byte, off int64) (int, error) {
	var n int
	var writeErr error
	// Control, not Write: RawConn.Write takes the descriptor's write lock,
	// which would serialise concurrent FUA writes; Control only keeps the
	// descriptor from being closed under us, as pwrite(2) via WriteAt does.
	err := b.conn.Control(func(fd uintptr) {
		for n < len(buf) {
			m, err := b.pwritev2(int(fd), [][]byte{buf[n:]}, off+int64(n), unix.RWF_DSYNC)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				writeErr = err
				return
			}
			if m <= 0 {
				writeErr = io.ErrShortWrite
				return
			}
			n += m
		}
	})
	if err != nil {
		return n, err
	}
	return n, writeErr
}

// notSupported recognises a kernel or filesystem without RWF_DSYNC:
// EOPNOTSUPP for an unknown flag, ENOSYS without pwritev2 at all.
func notSupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENOSYS)
}

func (b *fileBackstore) datasync() error {
	var syncErr error
	err := b.conn.Control(func(fd uintptr) {
		for {
			syncErr = b.fdatasync(int(fd))
			if syncErr != unix.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	if syncErr != nil {
		b.noteLost(syncErr)
	}
	return syncErr
}

// noteLost records the first failure to make data stable (lost).
func (b *fileBackstore) noteLost(err error) {
	b.lost.CompareAndSwap(nil, &err)
}

// noteWriteErr records EIO from a write: the device failed to store
// data, this write's or, reported through it, an earlier one's.
func (b *fileBackstore) noteWriteErr(err error) {
	if err != nil && errors.Is(err, unix.EIO) {
		b.noteLost(err)
	}
}

// Sync flushes the page cache and the device's volatile cache for this
// file: fdatasync(2), which skips metadata that reading the data back does
// not need (timestamps).
func (b *fileBackstore) Sync() error {
	if b.closed.Load() {
		return ErrClosed
	}
	if b.readOnly {
		return nil
	}
	if lost := b.lost.Load(); lost != nil {
		return fmt.Errorf("%q: an earlier write or flush failed, so data acknowledged before it may not be stored (check the device, then reopen the LUN): %w", b.path, *lost)
	}
	if err := b.datasync(); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("fdatasync %q: %w", b.path, err)
	}
	return nil
}

// Close flushes a write-back cache, so a clean shutdown loses nothing,
// then closes the image (which drops the flock).
func (b *fileBackstore) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	if b.aio != nil {
		b.aio.Close() // waits for the I/O in flight
	}
	var syncErr error
	if b.writeCache && !b.readOnly {
		if err := b.datasync(); err != nil {
			syncErr = fmt.Errorf("fdatasync %q: %w", b.path, err)
		}
	}
	return errors.Join(syncErr, b.file.Close())
}

func (b *fileBackstore) ioError(op string, length int, off int64, err error) error {
	if errors.Is(err, os.ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%s %d bytes at offset %d of %q: %w", op, length, off, b.path, err)
}

package backstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// fileMode is one way of opening a file backstore under test.
type fileMode struct {
	name       string
	direct     bool
	writeCache bool
	// forceAlign, when set, widens the O_DIRECT alignment beyond what the
	// filesystem asks, to exercise the page-sized fallback on any machine.
	forceAlign int64
}

var fileModes = []fileMode{
	{name: "buffered-writethrough"},
	{name: "buffered-writeback", writeCache: true},
	{name: "direct-writethrough", direct: true},
	{name: "direct-writeback", direct: true, writeCache: true},
	{name: "direct-align4096", direct: true, writeCache: true, forceAlign: 4096},
}

func openTestFile(t *testing.T, m fileMode, size int64) *fileBackstore {
	t.Helper()
	dir := t.TempDir()
	if m.direct {
		dir = directDir(t)
	}
	b, err := Open(Options{Kind: "file", Path: filepath.Join(dir, "lun.img"), Size: size,
		BlockSize: 512, DirectIO: m.direct, WriteCache: m.writeCache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	fb := b.(*fileBackstore)
	if m.forceAlign != 0 {
		if fb.offsetAlign > m.forceAlign {
			t.Skipf("filesystem alignment %d exceeds %d", fb.offsetAlign, m.forceAlign)
		}
		fb.offsetAlign, fb.memAlign = m.forceAlign, int(m.forceAlign)
	}
	return fb
}

func TestFileRoundTrip(t *testing.T) {
	const size = 8 << 20
	cases := []struct {
		name      string
		off       int64
		length    int
		memOffset int // shift of the caller's buffer from an aligned address
	}{
		{"aligned 4KiB", 0, 4096, 0},
		{"aligned 64KiB mid", 1 << 20, 64 << 10, 0},
		{"one 512 block", 512, 512, 0},
		{"unaligned small", 100, 1000, 0},
		{"across a page", 4000, 200, 0},
		{"inside one sector", 513, 3, 0},
		{"unaligned memory only", 8192, 8192, 1},
		{"unaligned everything", 777, 5000, 3},
		{"longer than a bounce", 12345, 3*maxBounce + 999, 7},
		{"last byte", size - 1, 1, 0},
		{"whole tail page", size - 4096, 4096, 0},
	}
	for _, m := range fileModes {
		t.Run(m.name, func(t *testing.T) {
			b := openTestFile(t, m, size)
			model := make([]byte, size)
			for i, c := range cases {
				data := pattern(c.length, uint64(i+1))
				backing := GetBuffer(c.length + c.memOffset)
				buf := backing[c.memOffset : c.memOffset+c.length]
				copy(buf, data)
				n, err := b.WriteAt(buf, c.off, i%2 == 0)
				PutBuffer(backing)
				if err != nil || n != c.length {
					t.Fatalf("%s: WriteAt = %d, %v", c.name, n, err)
				}
				copy(model[c.off:], data)

				for _, readShift := range []int{0, 1} {
					got := make([]byte, c.length+readShift)[readShift:]
					if n, err := b.ReadAt(got, c.off); err != nil || n != c.length {
						t.Fatalf("%s: ReadAt = %d, %v", c.name, n, err)
					}
					if !bytes.Equal(got, data) {
						t.Fatalf("%s: read back differs (read buffer shift %d)", c.name, readShift)
					}
				}
			}
			// Neighbouring bytes of every write must be intact: compare
			// the image through the filesystem, bypassing the backstore.
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			onDisk, err := os.ReadFile(b.path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(onDisk, model) {
				t.Fatal("image file differs from the model")
			}
		})
	}
}

func TestFileRandomAgainstModel(t *testing.T) {
	for _, m := range fileModes {
		t.Run(m.name, func(t *testing.T) {
			b := openTestFile(t, m, 4<<20)
			exerciseAgainstModel(t, b, 42, 200)
		})
	}
}

// Concurrent writes that share alignment units must not lose each other's
// bytes. Under O_DIRECT an unaligned write is a read-modify-write of whole
// units; only the unit lock keeps its stale read of the rest of a unit from
// being written back over a concurrent write. Unaligned writers run until
// the aligned writer is done, so that every aligned write, the last one
// included, races with RMWs of its units.
func TestFileConcurrentNeighbourWrites(t *testing.T) {
	for _, m := range fileModes {
		t.Run(m.name, func(t *testing.T) {
			const (
				unalignedWriters = 12
				piece            = 100 // many writers per 512-byte and 4 KiB unit
				rounds           = 30
			)
			b := openTestFile(t, m, 64<<10)
			unalignedOff := func(w int) int { return w*piece + 37 } // [37, 1237)
			finalByte := func(w int) byte { return byte(200 + w) }

			var alignedDone atomic.Bool
			var unaligned sync.WaitGroup
			for w := range unalignedWriters {
				unaligned.Go(func() {
					for r := 0; !alignedDone.Load(); r++ {
						data := bytes.Repeat([]byte{byte(r)}, piece)
						if _, err := b.WriteAt(data, int64(unalignedOff(w)), r%5 == 0); err != nil {
							t.Error(err)
							return
						}
					}
					data := bytes.Repeat([]byte{finalByte(w)}, piece)
					if _, err := b.WriteAt(data, int64(unalignedOff(w)), false); err != nil {
						t.Error(err)
					}
				})
			}
			// One aligned writer rewrites the whole first 4 KiB: it covers
			// the RMW units, so the bytes no unaligned writer touches,
			// [1237, 4096), must end with its last value.
			for r := range rounds {
				if _, err := b.WriteAt(bytes.Repeat([]byte{byte(r)}, 4096), 0, r%5 == 0); err != nil {
					t.Error(err)
					break
				}
			}
			alignedDone.Store(true)
			unaligned.Wait()
			if t.Failed() {
				return
			}

			got := make([]byte, 8192)
			if _, err := b.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if want := bytes.Repeat([]byte{rounds - 1}, 4096-1237); !bytes.Equal(got[1237:4096], want) {
				t.Errorf("aligned writer: final bytes lost (got % x...)", got[1237:1245])
			}
			for w := range unalignedWriters {
				off, want := unalignedOff(w), bytes.Repeat([]byte{finalByte(w)}, piece)
				if !bytes.Equal(got[off:off+piece], want) {
					t.Errorf("unaligned writer %d: final bytes lost (got % x...)", w, got[off:off+8])
				}
			}
		})
	}
}

func TestFileOpenFlags(t *testing.T) {
	for _, m := range fileModes[:4] {
		for _, readOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/ro=%v", m.name, readOnly), func(t *testing.T) {
				dir := t.TempDir()
				if m.direct {
					dir = directDir(t)
				}
				path := filepath.Join(dir, "lun.img")
				if err := os.WriteFile(path, make([]byte, 8192), 0o600); err != nil {
					t.Fatal(err)
				}
				b, err := Open(Options{Kind: "file", Path: path, DirectIO: m.direct, WriteCache: m.writeCache, ReadOnly: readOnly})
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				fb := b.(*fileBackstore)
				var flags int
				fb.conn.Control(func(fd uintptr) { flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
				if err != nil {
					t.Fatal(err)
				}
				check := func(name string, bit int, want bool) {
					if (flags&bit != 0) != want {
						t.Errorf("%s set = %v, want %v (flags %#x)", name, flags&bit != 0, want, flags)
					}
				}
				check("O_DIRECT", unix.O_DIRECT, m.direct)
				check("O_DSYNC", unix.O_DSYNC, !m.writeCache && !readOnly)
				if acc := flags & unix.O_ACCMODE; (acc == unix.O_RDONLY) != readOnly {
					t.Errorf("access mode %#x with read-only %v", acc, readOnly)
				}
			})
		}
	}
}

func TestFileCreateGrowShrink(t *testing.T) {
	dir := t.TempDir()
	existing := func(size int, fill byte) string {
		path := filepath.Join(t.TempDir(), "existing.img")
		if err := os.WriteFile(path, bytes.Repeat([]byte{fill}, size), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name     string
		path     string
		opts     Options
		wantSize int64
		wantErr  []string
	}{
		{name: "create with parents", path: filepath.Join(dir, "a", "b", "new.img"), opts: Options{Size: 16 << 20}, wantSize: 16 << 20},
		{name: "existing, size from file", path: existing(8192, 7), wantSize: 8192},
		{name: "existing, same size", path: existing(8192, 7), opts: Options{Size: 8192}, wantSize: 8192},
		{name: "grow", path: existing(8192, 7), opts: Options{Size: 1 << 20}, wantSize: 1 << 20},
		{name: "refuse shrink", path: existing(8192, 7), opts: Options{Size: 4096},
			wantErr: []string{"8192", "4096", "refusing to shrink"}},
		{name: "file not a multiple of block size", path: existing(1000, 7),
			wantErr: []string{"image size 1000", "block_size 512"}},
		{name: "file not a multiple of 4096", path: existing(8704, 7), opts: Options{BlockSize: 4096},
			wantErr: []string{"image size 8704", "block_size 4096"}},
		{name: "empty file, no size", path: existing(0, 0), wantErr: []string{"empty"}},
		{name: "missing, no size", path: filepath.Join(dir, "nosize.img"), wantErr: []string{"no size"}},
		{name: "missing, read-only", path: filepath.Join(dir, "ro.img"), opts: Options{Size: 4096, ReadOnly: true},
			wantErr: []string{"read_only"}},
		{name: "read-only refuses to grow", path: existing(4096, 7), opts: Options{Size: 8192, ReadOnly: true},
			wantErr: []string{"4096", "8192", "read_only"}},
		{name: "directory", path: dir, opts: Options{Size: 4096}, wantErr: []string{"directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Kind, opts.Path = "file", tt.path
			before, _ := os.ReadFile(tt.path)
			b, err := Open(opts)
			if len(tt.wantErr) > 0 {
				if err == nil {
					b.Close()
					t.Fatal("Open succeeded")
				}
				for _, w := range append(tt.wantErr, "open file backstore") {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				if after, _ := os.ReadFile(tt.path); !bytes.Equal(before, after) {
					t.Error("a refused open changed the image")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.Size() != tt.wantSize {
				t.Errorf("Size = %d, want %d", b.Size(), tt.wantSize)
			}
			st, err := os.Stat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != tt.wantSize {
				t.Errorf("file size %d, want %d", st.Size(), tt.wantSize)
			}
			if before == nil {
				if st.Mode().Perm() != 0o600 {
					t.Errorf("new image mode %v, want 0600", st.Mode().Perm())
				}
				// A file image is fully allocated at creation, so no write
				// to it can fail for lack of space (sparse.go's kind is thin).
				if blocks := st.Sys().(*syscall.Stat_t).Blocks; blocks*512 < tt.wantSize {
					t.Errorf("new image allocates %d bytes, want all %d", blocks*512, tt.wantSize)
				}
			}
			// Old contents survive growth; the new tail reads as zeros.
			got := make([]byte, tt.wantSize)
			if _, err := b.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:len(before)], before) || !bytes.Equal(got[len(before):], make([]byte, len(got)-len(before))) {
				t.Error("contents after open differ from the original file followed by zeros")
			}
		})
	}
}

func TestFileReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.img")
	want := pattern(8192, 9)
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	var opened []Backstore
	for range 2 { // read-only opens share the image
		b, err := Open(Options{Kind: "file", Path: path, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		opened = append(opened, b)
	}
	b := opened[0]
	if n, err := b.WriteAt(make([]byte, 512), 0, false); !errors.Is(err, ErrReadOnly) || n != 0 {
		t.Errorf("WriteAt on read-only = %d, %v; want 0, ErrReadOnly", n, err)
	}
	got := make([]byte, 8192)
	if _, err := b.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Errorf("ReadAt on read-only: %v, equal %v", err, bytes.Equal(got, want))
	}
	if err := b.Sync(); err != nil {
		t.Errorf("Sync on read-only: %v", err)
	}
	if _, err := Open(Options{Kind: "file", Path: path}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("read-write open beside read-only opens: %v, want an in-use error", err)
	}
}

func TestFileExclusiveLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock.img")
	first, err := Open(Options{Kind: "file", Path: path, Size: 4096})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Open(Options{Kind: "file", Path: path, Size: 4096})
	if err == nil {
		second.Close()
		t.Fatal("second read-write open of the same image succeeded")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %q does not say the image is in use", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(Options{Kind: "file", Path: path, Size: 4096})
	if err != nil {
		t.Fatalf("open after Close: %v", err)
	}
	again.Close()
}

func TestFileBounds(t *testing.T) {
	for _, m := range fileModes {
		t.Run(m.name, func(t *testing.T) {
			const size = 64 << 10
			b := openTestFile(t, m, size)
			tail := pattern(4096, 5)
			if _, err := b.WriteAt(tail, size-4096, false); err != nil {
				t.Fatal(err)
			}
			reads := []struct {
				off     int64
				length  int
				wantN   int
				wantErr error
			}{
				{size - 4096, 4096, 4096, nil},
				{size - 4096, 8192, 4096, io.EOF}, // crosses the end
				{size - 100, 300, 100, io.EOF},    // unaligned, crosses the end
				{size, 512, 0, io.EOF},
				{size + 4096, 512, 0, io.EOF},
				{size, 0, 0, nil},
				{-512, 512, 0, ErrOutOfRange},
			}
			for _, r := range reads {
				buf := make([]byte, r.length)
				n, err := b.ReadAt(buf, r.off)
				if n != r.wantN || !errors.Is(err, r.wantErr) || (r.wantErr == nil && err != nil) {
					t.Errorf("ReadAt(len %d, off %d) = %d, %v; want %d, %v", r.length, r.off, n, err, r.wantN, r.wantErr)
				}
				if r.wantN > 0 && !bytes.Equal(buf[:n], tail[len(tail)-r.wantN:]) {
					t.Errorf("ReadAt(len %d, off %d): wrong data before EOF", r.length, r.off)
				}
			}
			writes := []struct {
				off    int64
				length int
			}{{size - 512, 1024}, {size, 1}, {-1, 1}, {size + 512, 512}}
			for _, w := range writes {
				if n, err := b.WriteAt(bytes.Repeat([]byte{0xee}, w.length), w.off, false); !errors.Is(err, ErrOutOfRange) || n != 0 {
					t.Errorf("WriteAt(len %d, off %d) = %d, %v; want 0, ErrOutOfRange", w.length, w.off, n, err)
				}
			}
			if n, err := b.WriteAt(nil, size, true); n != 0 || err != nil {
				t.Errorf("empty WriteAt at the end = %d, %v", n, err)
			}
			got := make([]byte, 4096)
			b.ReadAt(got, size-4096)
			if !bytes.Equal(got, tail) {
				t.Error("a refused write changed data")
			}
			if st, _ := os.Stat(b.path); st.Size() != size {
				t.Errorf("image grew to %d bytes", st.Size())
			}
		})
	}
}

// syscallCounter wraps the real syscalls, optionally answering with an
// injected error, to observe which durability path a write took.
type syscallCounter struct {
	pwritev2Calls, datasyncCalls atomic.Int32
	pwritev2Err                  error // returned instead of calling the kernel
	datasyncEINTR                atomic.Int32
	datasyncErr                  atomic.Pointer[error] // returned once instead of calling the kernel
}

func (c *syscallCounter) install(b *fileBackstore) {
	// These paths are the synchronous ones; aio_linux_test.go covers AIO.
	if b.aio != nil {
		b.aio.Close()
		b.aio = nil
	}
	b.pwritev2 = func(fd int, iovs [][]byte, off int64, flags int) (int, error) {
		c.pwritev2Calls.Add(1)
		if flags&unix.RWF_DSYNC == 0 {
			return 0, errors.New("pwritev2 without RWF_DSYNC")
		}
		if c.pwritev2Err != nil {
			return 0, c.pwritev2Err
		}
		return unix.Pwritev2(fd, iovs, off, flags)
	}
	b.fdatasync = func(fd int) error {
		c.datasyncCalls.Add(1)
		if c.datasyncEINTR.Load() > 0 {
			c.datasyncEINTR.Add(-1)
			return unix.EINTR
		}
		if err := c.datasyncErr.Swap(nil); err != nil {
			return *err
		}
		return unix.Fdatasync(fd)
	}
}

func TestFileDurabilityPaths(t *testing.T) {
	type step struct {
		fua              bool
		wantPwritev2     int32 // cumulative
		wantDatasync     int32 // cumulative
		unalignedPayload bool
	}
	tests := []struct {
		name        string
		mode        fileMode
		pwritev2Err error
		steps       []step
		wantErr     bool
	}{
		{name: "write-back FUA uses RWF_DSYNC", mode: fileModes[1], steps: []step{
			{fua: false}, {fua: true, wantPwritev2: 1}, {fua: true, wantPwritev2: 2}}},
		{name: "direct write-back FUA, aligned and bounced", mode: fileModes[3], steps: []step{
			{fua: true, wantPwritev2: 1}, {fua: true, wantPwritev2: 2, unalignedPayload: true}}},
		{name: "EOPNOTSUPP falls back to fdatasync once and for all", mode: fileModes[1], pwritev2Err: unix.EOPNOTSUPP, steps: []step{
			{fua: true, wantPwritev2: 1, wantDatasync: 1}, {fua: true, wantPwritev2: 1, wantDatasync: 2}, {fua: false, wantPwritev2: 1, wantDatasync: 2}}},
		{name: "ENOSYS falls back", mode: fileModes[3], pwritev2Err: unix.ENOSYS, steps: []step{
			{fua: true, wantPwritev2: 1, wantDatasync: 1, unalignedPayload: true}}},
		{name: "write-through FUA needs nothing more", mode: fileModes[0], steps: []step{
			{fua: true}, {fua: false}}},
		{name: "EIO is a failure, not a fallback", mode: fileModes[1], pwritev2Err: unix.EIO, wantErr: true, steps: []step{
			{fua: true, wantPwritev2: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := openTestFile(t, tt.mode, 1<<20)
			c := &syscallCounter{pwritev2Err: tt.pwritev2Err}
			c.install(b)
			for i, s := range tt.steps {
				data := pattern(8192, uint64(i))
				off := int64(i) * 8192
				if s.unalignedPayload {
					data, off = data[:1000], off+3
				}
				_, err := b.WriteAt(data, off, s.fua)
				if (err != nil) != tt.wantErr {
					t.Fatalf("step %d: WriteAt: %v", i, err)
				}
				if got := c.pwritev2Calls.Load(); got != s.wantPwritev2 {
					t.Errorf("step %d: %d pwritev2 calls, want %d", i, got, s.wantPwritev2)
				}
				if got := c.datasyncCalls.Load(); got != s.wantDatasync {
					t.Errorf("step %d: %d fdatasync calls, want %d", i, got, s.wantDatasync)
				}
				if tt.wantErr {
					if !errors.Is(err, unix.EIO) {
						t.Errorf("error %v does not wrap EIO", err)
					}
					continue
				}
				// Visible through another descriptor, i.e. in the file.
				f, err := os.Open(b.path)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(data))
				_, err = f.ReadAt(got, off)
				f.Close()
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("step %d: data not in the file (%v)", i, err)
				}
			}
		})
	}
}

func TestFileSyncAndClose(t *testing.T) {
	for _, m := range fileModes[:2] {
		t.Run(m.name, func(t *testing.T) {
			b := openTestFile(t, m, 1<<20)
			c := &syscallCounter{}
			c.install(b)
			c.datasyncEINTR.Store(2) // interrupted calls are retried
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := c.datasyncCalls.Load(); got != 3 {
				t.Errorf("Sync made %d fdatasync calls, want 3 (two EINTR)", got)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			wantAfterClose := int32(3)
			if m.writeCache {
				wantAfterClose = 4 // Close flushes a write-back cache
			}
			if got := c.datasyncCalls.Load(); got != wantAfterClose {
				t.Errorf("after Close: %d fdatasync calls, want %d", got, wantAfterClose)
			}
			if err := b.Close(); !errors.Is(err, ErrClosed) {
				t.Errorf("second Close = %v, want ErrClosed", err)
			}
			if _, err := b.ReadAt(make([]byte, 512), 0); !errors.Is(err, ErrClosed) {
				t.Errorf("ReadAt after Close = %v", err)
			}
			if _, err := b.WriteAt(make([]byte, 512), 0, false); !errors.Is(err, ErrClosed) {
				t.Errorf("WriteAt after Close = %v", err)
			}
			if err := b.Sync(); !errors.Is(err, ErrClosed) {
				t.Errorf("Sync after Close = %v", err)
			}
		})
	}
}

func TestOpenErrorDirectIO(t *testing.T) {
	einval := &fs.PathError{Op: "open", Path: "/x", Err: syscall.EINVAL}
	tests := []struct {
		name        string
		err         error
		direct      bool
		wantUnsupp  bool
		wantMention string
	}{
		{"EINVAL with O_DIRECT", einval, true, true, "direct_io"},
		{"EINVAL without O_DIRECT", einval, false, false, "invalid argument"},
		{"ENOENT with O_DIRECT", &fs.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}, true, false, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := openError(tt.err, tt.direct)
			if errors.Is(err, ErrDirectIOUnsupported) != tt.wantUnsupp {
				t.Errorf("errors.Is(ErrDirectIOUnsupported) = %v", !tt.wantUnsupp)
			}
			if !errors.Is(err, tt.err) {
				t.Error("the original error is not wrapped")
			}
			if !strings.Contains(err.Error(), tt.wantMention) {
				t.Errorf("error %q does not mention %q", err, tt.wantMention)
			}
		})
	}
}

// tmpfs is the filesystem where O_DIRECT support varies by kernel: it
// either refuses (an error naming direct_io) or accepts without statx
// alignment info (the page-sized fallback applies).
func TestFileDirectOnTmpfs(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "backstore-test-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(dir)
	b, err := Open(Options{Kind: "file", Path: filepath.Join(dir, "odd.img"), Size: 3 * 512, DirectIO: true})
	switch {
	case errors.Is(err, ErrDirectIOUnsupported):
		if !strings.Contains(err.Error(), "direct_io") {
			t.Errorf("error %q does not name direct_io", err)
		}
		return
	case err == nil:
		fb := b.(*fileBackstore)
		defer b.Close()
		if fb.offsetAlign > 512 {
			t.Fatalf("size 1536 accepted with O_DIRECT alignment %d", fb.offsetAlign)
		}
	default:
		if !strings.Contains(err.Error(), "O_DIRECT alignment") || !strings.Contains(err.Error(), "direct_io") {
			t.Errorf("unexpected error %v", err)
		}
	}
	b, err = Open(Options{Kind: "file", Path: filepath.Join(dir, "even.img"), Size: 1 << 20, DirectIO: true, WriteCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	exerciseAgainstModel(t, b, 7, 50)
}

// Resize grows file and sparse images while they are open, adopts a file
// another program extended, and refuses to shrink or to grow a read-only
// image; a refused resize changes nothing.
func TestImageResize(t *testing.T) {
	for _, kind := range []string{"file", "sparse"} {
		for _, direct := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s direct=%v", kind, direct), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "img")
				b, err := Open(Options{Kind: kind, Path: path, Size: 1 << 20, BlockSize: 512, DirectIO: direct})
				if err != nil {
					if direct && strings.Contains(err.Error(), "direct_io") {
						t.Skip("this filesystem refuses O_DIRECT")
					}
					t.Fatal(err)
				}
				defer b.Close()
				r := b.(Resizer)
				block := bytes.Repeat([]byte{0x3C}, 4096)
				if _, err := b.WriteAt(block, 1<<20-4096, false); err != nil {
					t.Fatal(err)
				}
				steps := []struct {
					size, want int64
					err        string
				}{
					{1 << 20, 1 << 20, ""},
					{4 << 20, 4 << 20, ""},
					{2 << 20, 4 << 20, "refusing to shrink"},
					{0, 4 << 20, ""},
				}
				for _, s := range steps {
					got, err := r.Resize(s.size)
					if s.err != "" && (err == nil || !strings.Contains(err.Error(), s.err)) || s.err == "" && err != nil {
						t.Fatalf("Resize(%d): %v, want error %q", s.size, err, s.err)
					}
					if got != s.want || b.Size() != s.want {
						t.Fatalf("Resize(%d) = %d, Size %d; want %d", s.size, got, b.Size(), s.want)
					}
					if st, _ := os.Stat(path); st.Size() != s.want {
						t.Fatalf("Resize(%d): file is %d bytes, want %d", s.size, st.Size(), s.want)
					}
				}
				// The old data stays, the new tail reads zeros and takes writes.
				got := make([]byte, 8192)
				if _, err := b.ReadAt(got, 1<<20-4096); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[:4096], block) || !bytes.Equal(got[4096:], make([]byte, 4096)) {
					t.Fatal("data around the old end changed with the resize")
				}
				if _, err := b.WriteAt(block, 4<<20-4096, true); err != nil {
					t.Fatalf("write to the new last block: %v", err)
				}
				// Another program extends the image: Resize(0) adopts it.
				if err := os.Truncate(path, 6<<20); err != nil {
					t.Fatal(err)
				}
				if got, err := r.Resize(0); err != nil || got != 6<<20 {
					t.Fatalf("Resize(0) after the file grew: %d, %v", got, err)
				}
			})
		}
	}
	// A read-only image adopts a longer file but never extends it.
	path := filepath.Join(t.TempDir(), "ro")
	if err := os.WriteFile(path, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Open(Options{Kind: "file", Path: path, BlockSize: 512, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.(Resizer).Resize(16384); err == nil || !strings.Contains(err.Error(), "read_only") || b.Size() != 8192 {
		t.Fatalf("growing a read-only image: %v, size %d", err, b.Size())
	}
}

// TestFileLostWritesStick: the kernel reports a writeback error once, to
// whichever call looks first. Once a flush or a write has failed, every
// later Sync (SYNCHRONIZE CACHE) fails too, even when fdatasync itself
// would now succeed, until the image is opened again.
func TestFileLostWritesStick(t *testing.T) {
	eio := error(unix.EIO)
	tests := []struct {
		name  string
		mode  fileMode
		fail  func(c *syscallCounter)
		cause func(b *fileBackstore) error // the call that meets the error
	}{
		{"Sync meets a writeback error", fileModes[1],
			func(c *syscallCounter) { c.datasyncErr.Store(&eio) },
			func(b *fileBackstore) error { return b.Sync() }},
		{"a FUA write's fallback flush meets it", fileModes[1],
			func(c *syscallCounter) { c.pwritev2Err = unix.EOPNOTSUPP; c.datasyncErr.Store(&eio) },
			func(b *fileBackstore) error { _, err := b.WriteAt(pattern(4096, 1), 0, true); return err }},
		{"a RWF_DSYNC write meets it", fileModes[3],
			func(c *syscallCounter) { c.pwritev2Err = unix.EIO },
			func(b *fileBackstore) error { _, err := b.WriteAt(pattern(4096, 1), 0, true); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := openTestFile(t, tt.mode, 1<<20)
			c := &syscallCounter{}
			c.install(b)
			tt.fail(c)
			if err := tt.cause(b); !errors.Is(err, unix.EIO) {
				t.Fatalf("the failing call: %v, want EIO", err)
			}
			c.pwritev2Err = nil
			for i := range 3 {
				if err := b.Sync(); !errors.Is(err, unix.EIO) {
					t.Fatalf("Sync %d after the failure: %v, want it to keep failing with EIO", i, err)
				}
			}
			// Writes go on (a FUA write's own data is made stable)...
			if _, err := b.WriteAt(pattern(4096, 2), 4096, true); err != nil {
				t.Fatalf("FUA write after the failure: %v", err)
			}
			// ...and a fresh open starts clean.
			path := b.path
			b.Close()
			r, err := Open(Options{Kind: "file", Path: path, BlockSize: 512, WriteCache: true})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := r.Sync(); err != nil {
				t.Fatalf("Sync after reopening: %v", err)
			}
		})
	}
}

func TestMkdirAllSynced(t *testing.T) {
	base := t.TempDir()
	for _, tt := range []struct {
		name, dir string
	}{
		{"exists", base},
		{"one level", filepath.Join(base, "a")},
		{"three levels", filepath.Join(base, "b", "c", "d")},
		{"under an existing new one", filepath.Join(base, "b", "c", "e")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := mkdirAllSynced(tt.dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if st, err := os.Stat(tt.dir); err != nil || !st.IsDir() {
				t.Fatalf("%s: %v", tt.dir, err)
			}
		})
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	if err := mkdirAllSynced(filepath.Join(file, "sub"), 0o700); err == nil {
		t.Fatal("made a directory under a file")
	}
}

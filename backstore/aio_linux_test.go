//go:build linux && (amd64 || arm64)

package backstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// openAIOFile opens an O_DIRECT image that must have its AIO context.
func openAIOFile(t *testing.T, m fileMode, size int64) *fileBackstore {
	t.Helper()
	b := openTestFile(t, m, size)
	if b.aio == nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no Linux AIO context on an O_DIRECT image (io_setup failed)")
		}
		t.Skip("no Linux AIO on this machine (io_setup failed)")
	}
	return b
}

// queued makes b behave as with another request in flight, so that its
// reads and writes take the AIO path (startIO) until the test ends.
func queued(t *testing.T, b *fileBackstore) {
	b.inflight.Add(1)
	t.Cleanup(func() { b.inflight.Add(-1) })
}

// TestAIOOnlyWhenQueued: a request alone takes the synchronous path (fewer
// hand-offs at queue depth 1); with others in flight it goes through AIO.
func TestAIOOnlyWhenQueued(t *testing.T) {
	for _, others := range []bool{false, true} {
		t.Run(fmt.Sprintf("others in flight %v", others), func(t *testing.T) {
			b := openAIOFile(t, fileModes[3], 1<<20)
			var submitted atomic.Int32
			b.aio.submitHook = func(*iocb) error { submitted.Add(1); return nil }
			if others {
				queued(t, b)
			}
			buf := pattern(4096, 3)
			if _, err := b.WriteAt(buf, 4096, true); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4096)
			if _, err := b.ReadAt(got, 4096); err != nil || !bytes.Equal(got, buf) {
				t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, buf))
			}
			want := int32(0)
			if others {
				want = 2
			}
			if n := submitted.Load(); n != want {
				t.Errorf("%d AIO submissions, want %d", n, want)
			}
		})
	}
}

// TestAIOFlags: what each write asks of the kernel. A FUA write in
// write-back mode carries RWF_DSYNC; write-through relies on the image's
// O_DSYNC; reads are plain preads.
func TestAIOFlags(t *testing.T) {
	tests := []struct {
		name      string
		mode      fileMode
		write     bool
		fua       bool
		wantOp    uint16
		wantFlags uint32
	}{
		{"write-back write", fileModes[3], true, false, iocbCmdPwrite, 0},
		{"write-back FUA write", fileModes[3], true, true, iocbCmdPwrite, unix.RWF_DSYNC},
		{"write-through write", fileModes[2], true, false, iocbCmdPwrite, 0},
		{"write-through FUA write", fileModes[2], true, true, iocbCmdPwrite, 0},
		{"read", fileModes[3], false, false, iocbCmdPread, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := openAIOFile(t, tt.mode, 1<<20)
			queued(t, b)
			var seen []iocb
			b.aio.submitHook = func(cb *iocb) error { seen = append(seen, *cb); return nil }
			buf := GetBuffer(8192)
			defer PutBuffer(buf)
			var err error
			if tt.write {
				_, err = b.WriteAt(buf, 8192, tt.fua)
			} else {
				_, err = b.ReadAt(buf, 8192)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != 1 {
				t.Fatalf("%d submissions, want 1", len(seen))
			}
			cb := seen[0]
			if cb.opcode != tt.wantOp || cb.rwFlags != tt.wantFlags || cb.offset != 8192 || cb.nbytes != 8192 || cb.flags&iocbFlagResfd == 0 {
				t.Errorf("iocb op %d flags %#x off %d len %d aio_flags %#x, want op %d flags %#x off 8192 len 8192 with RESFD",
					cb.opcode, cb.rwFlags, cb.offset, cb.nbytes, cb.flags, tt.wantOp, tt.wantFlags)
			}
		})
	}
}

// TestAIODsyncRefused: a kernel that refuses RWF_DSYNC on an AIO write
// turns FUA into write + fdatasync, once and for all; other errors are
// failures.
func TestAIODsyncRefused(t *testing.T) {
	tests := []struct {
		name         string
		refuse       error
		wantErr      bool
		wantDatasync int32
	}{
		{"EOPNOTSUPP falls back", unix.EOPNOTSUPP, false, 2},
		{"EINVAL is a failure", unix.EINVAL, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := openAIOFile(t, fileModes[3], 1<<20)
			queued(t, b)
			var datasyncs atomic.Int32
			b.fdatasync = func(fd int) error { datasyncs.Add(1); return unix.Fdatasync(fd) }
			b.aio.submitHook = func(cb *iocb) error {
				if cb.rwFlags&unix.RWF_DSYNC != 0 {
					return tt.refuse
				}
				return nil
			}
			buf := pattern(4096, 7)
			for i := range 2 {
				_, err := b.WriteAt(buf, int64(i)*4096, true)
				if (err != nil) != tt.wantErr {
					t.Fatalf("FUA write %d: %v", i, err)
				}
			}
			if got := datasyncs.Load(); got != tt.wantDatasync {
				t.Errorf("%d fdatasync calls, want %d", got, tt.wantDatasync)
			}
			if !tt.wantErr {
				got := make([]byte, 4096)
				if _, err := b.ReadAt(got, 4096); err != nil || !bytes.Equal(got, buf) {
					t.Errorf("read back: %v, equal %v", err, bytes.Equal(got, buf))
				}
			}
		})
	}
}

// TestAIOConcurrent: more writers than AIO slots, aligned and unaligned,
// each block read back intact.
func TestAIOConcurrent(t *testing.T) {
	for _, m := range []fileMode{fileModes[2], fileModes[3]} {
		t.Run(m.name, func(t *testing.T) {
			const workers, size = aioDepth + 72, 4096
			b := openAIOFile(t, m, workers*size)
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Go(func() {
					data := pattern(size, uint64(w))
					off := int64(w) * size
					if w%3 == 0 {
						// Unaligned: the bounce path, through AIO as well.
						data, off = data[:size-100], off+50
					}
					if _, err := b.WriteAt(data, off, w%2 == 0); err != nil {
						errs <- err
						return
					}
					got := make([]byte, len(data))
					if _, err := b.ReadAt(got, off); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, data) {
						errs <- fmt.Errorf("worker %d: data read back differs", w)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestAIOCloseWithIOInFlight: Close waits for the I/O in flight; I/O
// racing with it either completes or gets ErrClosed, and nothing hangs.
func TestAIOCloseWithIOInFlight(t *testing.T) {
	b := openAIOFile(t, fileModes[3], 8<<20)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range 64 {
		wg.Go(func() {
			buf := GetBuffer(64 << 10)
			defer PutBuffer(buf)
			<-start
			for i := range 50 {
				off := int64((w*50+i)%128) * (64 << 10)
				_, err := b.WriteAt(buf, off, false)
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("write racing Close: %v", err)
					}
					return
				}
			}
		})
	}
	close(start)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := b.WriteAt(make([]byte, 4096), 0, false); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close: %v, want ErrClosed", err)
	}
}

// TestAIOTruncatedImage: a read past the end of an image cut short under
// the server is an error naming the configured size, as without AIO.
func TestAIOTruncatedImage(t *testing.T) {
	b := openAIOFile(t, fileModes[3], 1<<20)
	queued(t, b)
	if err := os.Truncate(b.path, 512<<10); err != nil {
		t.Fatal(err)
	}
	buf := GetBuffer(4096)
	defer PutBuffer(buf)
	_, err := b.ReadAt(buf, 768<<10)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("shorter than its configured size")) {
		t.Fatalf("read beyond a truncated image: %v", err)
	}
}

// TestAIOBatchRefusal: of requests submitted at the same time, one the
// kernel refuses (a bad descriptor) gets its error and the ones around it
// complete.
func TestAIOBatchRefusal(t *testing.T) {
	b := openAIOFile(t, fileModes[3], 1<<20)
	var fd int
	if err := b.conn.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var refused, completed atomic.Int32
	for w := range 96 {
		wg.Go(func() {
			buf := GetBuffer(4096)
			defer PutBuffer(buf)
			useFD := fd
			if w%8 == 0 {
				useFD = -1
			}
			n, err := b.aio.rw(useFD, true, buf, int64(w%64)*4096, 0)
			switch {
			case useFD == -1 && errors.Is(err, unix.EBADF) && n == 0:
				refused.Add(1)
			case useFD != -1 && err == nil && n == 4096:
				completed.Add(1)
			default:
				t.Errorf("request %d (fd %d): %d bytes, %v", w, useFD, n, err)
			}
		})
	}
	wg.Wait()
	if refused.Load() != 12 || completed.Load() != 84 {
		t.Errorf("%d refused and %d completed, want 12 and 84", refused.Load(), completed.Load())
	}
}

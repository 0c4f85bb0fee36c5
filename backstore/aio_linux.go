//go:build linux && (amd64 || arm64)

package backstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux native AIO (io_setup(2), io_submit(2), io_getevents(2)) for O_DIRECT
// images and devices. A blocking pread/pwrite ties up an OS thread for the
// whole device time, and the Go runtime hands its P to another thread and
// takes it back for every one: at queue depth 32 on a small machine those
// thread switches cost more than the I/O. With AIO the goroutine that
// submits parks on a channel instead; one reaper goroutine per backstore
// collects completions when the kernel signals an eventfd, which the Go
// netpoller watches, so no thread sleeps in the kernel per I/O.
//
// The iocb layout below is the little-endian one of linux/aio_abi.h (the
// key and rw_flags words swap on big-endian), hence the build constraint;
// elsewhere aio_other.go reports AIO as unavailable and the synchronous
// path serves.

const (
	iocbCmdPread  = 0
	iocbCmdPwrite = 1
	iocbFlagResfd = 1 << 0
)

// iocb is struct iocb of linux/aio_abi.h (64 bytes).
type iocb struct {
	data      uint64 // aio_data: the slot index
	key       uint32
	rwFlags   uint32 // aio_rw_flags: RWF_DSYNC for a FUA write
	opcode    uint16
	reqprio   int16
	fd        uint32
	buf       uint64
	nbytes    uint64
	offset    int64
	reserved2 uint64
	flags     uint32
	resfd     uint32
}

// ioEvent is struct io_event (32 bytes).
type ioEvent struct {
	data uint64
	obj  uint64
	res  int64
	res2 int64
}

// aioDepth bounds the I/Os in flight per backstore. Deeper queues wait for
// a slot; the iSCSI layer's own queue depth is usually below it.
const aioDepth = 128

// aioSlot is one in-flight request. Its iocb must stay put while the
// kernel reads it (io_submit copies it) and the buffer it points to must
// stay reachable until the completion: the submitter holds both.
type aioSlot struct {
	idx  uint64
	cb   iocb
	done chan int64 // the result (bytes, or -errno), one per submission
}

// aioContext is one AIO context with its eventfd and reaper goroutine.
type aioContext struct {
	ctx    uint64   // aio_context_t
	efd    *os.File // read by the reaper through the netpoller
	efdNum int      // the same descriptor for iocbs (efd.Fd() would make it blocking)
	slots  []aioSlot
	free   chan *aioSlot
	closed atomic.Bool
	closeO sync.Once
	reaped chan struct{} // closed when the reaper has exited

	// submitHook, when set (tests only), sees each iocb before io_submit
	// and may fail the submission in its place.
	submitHook func(cb *iocb) error
}

var errAIOClosed = errors.New("backstore: AIO context closed")

// newAIOContext sets up a context of aioDepth requests. It fails where the
// kernel has no AIO or the system's aio-max-nr is used up; the caller then
// keeps the synchronous path.
func newAIOContext() (*aioContext, error) {
	var ctx uint64
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, aioDepth, uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		return nil, fmt.Errorf("io_setup: %w", e)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Syscall(unix.SYS_IO_DESTROY, uintptr(ctx), 0, 0)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	a := &aioContext{
		ctx:    ctx,
		efd:    os.NewFile(uintptr(efd), "aio-eventfd"), // non-blocking: the netpoller waits on it
		efdNum: efd,
		slots:  make([]aioSlot, aioDepth),
		free:   make(chan *aioSlot, aioDepth),
		reaped: make(chan struct{}),
	}
	for i := range a.slots {
		a.slots[i].idx = uint64(i)
		a.slots[i].done = make(chan int64, 1)
		a.free <- &a.slots[i]
	}
	go a.reap()
	return a, nil
}

// reap delivers completions: the eventfd counts them, io_getevents (never
// blocking: timeout zero) collects them, each goes to its slot.
func (a *aioContext) reap() {
	defer close(a.reaped)
	var count [8]byte
	events := make([]ioEvent, aioDepth)
	zero := unix.Timespec{}
	for {
		if _, err := a.efd.Read(count[:]); err != nil {
			return // closed by Close once nothing is in flight
		}
		for {
			r, _, e := unix.Syscall6(unix.SYS_IO_GETEVENTS, uintptr(a.ctx), 0, uintptr(len(events)),
				uintptr(unsafe.Pointer(&events[0])), uintptr(unsafe.Pointer(&zero)), 0)
			if e == unix.EINTR {
				continue
			}
			if e != 0 || r == 0 {
				break
			}
			for _, ev := range events[:r] {
				if ev.data < uint64(len(a.slots)) {
					a.slots[ev.data].done <- ev.res
				}
			}
			if int(r) < len(events) {
				break
			}
		}
	}
}

// rw reads (write false) or writes buf at off on fd, with the kernel's
// RWF_* flags for this one request, and waits for it. It resubmits the
// rest of a short transfer; a transfer of zero bytes is io.ErrUnexpectedEOF
// for a read and io.ErrShortWrite for a write, as with pread/pwrite.
func (a *aioContext) rw(fd int, write bool, buf []byte, off int64, rwFlags uint32) (int, error) {
	slot, ok := <-a.free
	if !ok || a.closed.Load() {
		if ok {
			a.free <- slot
		}
		return 0, errAIOClosed
	}
	defer func() { a.free <- slot }()
	done := 0
	for done < len(buf) {
		p := buf[done:]
		slot.cb = iocb{
			data:    slot.idx,
			rwFlags: rwFlags,
			fd:      uint32(fd),
			buf:     uint64(uintptr(unsafe.Pointer(&p[0]))),
			nbytes:  uint64(len(p)),
			offset:  off + int64(done),
			flags:   iocbFlagResfd,
			resfd:   uint32(a.efdNum),
		}
		if write {
			slot.cb.opcode = iocbCmdPwrite
		} else {
			slot.cb.opcode = iocbCmdPread
		}
		if a.submitHook != nil {
			if err := a.submitHook(&slot.cb); err != nil {
				return done, err
			}
		}
		cbp := &slot.cb
		for {
			r, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, uintptr(a.ctx), 1, uintptr(unsafe.Pointer(&cbp)))
			if e == unix.EINTR {
				continue
			}
			if e == unix.EAGAIN {
				// The kernel is short of resources for the moment.
				runtime.Gosched()
				continue
			}
			if e != 0 {
				return done, e
			}
			if r != 1 {
				return done, fmt.Errorf("io_submit queued %d of 1 requests", r)
			}
			break
		}
		res := <-slot.done
		// The kernel used p until the completion: keep it reachable.
		runtime.KeepAlive(p)
		switch {
		case res < 0:
			return done, unix.Errno(-res)
		case res == 0:
			if write {
				return done, io.ErrShortWrite
			}
			return done, io.ErrUnexpectedEOF
		}
		done += int(res)
	}
	return done, nil
}

// Close waits for the requests in flight, then releases the context. I/O
// after Close gets errAIOClosed.
func (a *aioContext) Close() {
	a.closeO.Do(func() {
		a.closed.Store(true)
		for range aioDepth {
			<-a.free // every slot back: nothing in flight
		}
		close(a.free) // late callers blocked on a slot see it closed
		unix.Syscall(unix.SYS_IO_DESTROY, uintptr(a.ctx), 0, 0)
		a.efd.Close()
		<-a.reaped
	})
}

package iscsi

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A connection's socket is non-blocking, so its read, writev and ioctl
// calls return at once (with EAGAIN when they would wait). rawSocket makes
// them with RawSyscall, without the runtime's entersyscall: where all Ps
// are idle between two PDUs (queue depth 1, the usual case) entersyscall
// wakes the runtime's monitor thread (sysmon), which then polls every 20
// µs until the Ps are idle again. On a 2-vCPU VM that was a quarter of the
// server's CPU time per 4 KiB command. Waiting for readiness and deadlines
// are still the netpoller's, through syscall.RawConn.

// rawSocket reads and writes a socket's descriptor directly. Read is for
// the reader goroutine only; WriteBuffers for one writer at a time; the
// two have separate state.
type rawSocket struct {
	rc syscall.RawConn

	// Read state, owned by the reader. readFn is bound once so that a
	// Read does not allocate a closure.
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	// poll, when set, may keep reading an empty socket for a while
	// before the reader parks (busypoll.go). pollFd and pollFn serve it
	// without a closure per read.
	poll   *busyPoller
	pollFd uintptr
	pollFn func() bool

	// Write state, owned by the writer of the moment.
	iov     []unix.Iovec
	wleft   []unix.Iovec // what writeFn still has to send
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool

	// Control state (moreToRead), owned by the reader.
	inq    int
	inqErr syscall.Errno
	inqFn  func(fd uintptr)
}

// newRawSocket returns a rawSocket for nc, or nil when nc is not a TCP
// connection (a net.Pipe in tests). poll may be nil.
func newRawSocket(nc net.Conn, poll *busyPoller) *rawSocket {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	if _, tcp := nc.(*net.TCPConn); !tcp {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &rawSocket{rc: rc, poll: poll}
	s.readFn = s.read
	s.pollFn = s.readAgain
	s.writeFn = s.writev
	s.inqFn = s.siocinq
	return s
}

func (s *rawSocket) read(fd uintptr) bool {
	if s.tryRead(fd) {
		return true
	}
	if s.poll != nil {
		s.pollFd = fd
		return s.poll.poll(s.pollFn)
	}
	return false // wait for readiness
}

// tryRead reads into rbuf once (again after EINTR): false when the socket
// is empty, true with rn and rerrno set otherwise (data, EOF or an error,
// all for Read to report).
func (s *rawSocket) tryRead(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch e {
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			continue
		}
		s.rn, s.rerrno = int(n), e
		return true
	}
}

// readAgain is one read of a busy poll.
func (s *rawSocket) readAgain() bool { return s.tryRead(s.pollFd) }

// Read implements io.Reader for the connection's bufio.Reader.
func (s *rawSocket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf, s.rn, s.rerrno = p, 0, 0
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	if err != nil {
		return 0, err
	}
	if s.rerrno != 0 {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", s.rerrno)}
	}
	if s.rn == 0 {
		return 0, io.EOF
	}
	return s.rn, nil
}

// iovMax is the most iovecs one writev takes (IOV_MAX on Linux).
const iovMax = 1024

func (s *rawSocket) writev(fd uintptr) bool {
	for len(s.wleft) > 0 {
		cnt := min(len(s.wleft), iovMax)
		n, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&s.wleft[0])), uintptr(cnt))
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until writable, then go on
		default:
			s.werrno = e
			return true
		}
		s.advance(int(n))
	}
	return true
}

// advance drops n written bytes from the front of wleft.
func (s *rawSocket) advance(n int) {
	for n > 0 && len(s.wleft) > 0 {
		v := &s.wleft[0]
		if uint64(n) < v.Len {
			v.Base = (*byte)(unsafe.Add(unsafe.Pointer(v.Base), n))
			v.Len -= uint64(n)
			return
		}
		n -= int(v.Len)
		s.wleft = s.wleft[1:]
	}
}

// WriteBuffers writes every buffer in order (a writev per IOV_MAX
// buffers, more after a short write), waiting for the socket to take them
// within its write deadline.
func (s *rawSocket) WriteBuffers(bufs [][]byte) error {
	s.iov = s.iov[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		s.iov = append(s.iov, unix.Iovec{Base: &b[0], Len: uint64(len(b))})
	}
	s.wleft, s.werrno = s.iov, 0
	err := s.rc.Write(s.writeFn)
	clear(s.iov) // drop references to the caller's buffers
	s.wleft = nil
	if err != nil {
		return err
	}
	if s.werrno != 0 {
		return &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("writev", s.werrno)}
	}
	return nil
}

// Write implements io.Writer (one buffer: WriteBuffers).
func (s *rawSocket) Write(p []byte) (int, error) {
	if err := s.WriteBuffers([][]byte{p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *rawSocket) siocinq(fd uintptr) {
	var n int32
	_, _, e := unix.RawSyscall(unix.SYS_IOCTL, fd, unix.SIOCINQ, uintptr(unsafe.Pointer(&n)))
	s.inq, s.inqErr = int(n), e
}

// Unread returns how many bytes wait in the socket's receive queue
// (SIOCINQ); an error when it cannot tell.
func (s *rawSocket) Unread() (int, error) {
	if err := s.rc.Control(s.inqFn); err != nil {
		return 0, err
	}
	if s.inqErr != 0 {
		return 0, s.inqErr
	}
	return s.inq, nil
}

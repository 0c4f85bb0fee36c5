package iscsi

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP: %v", err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { s.Close(); c.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

func TestRawSocketOnlyForTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if newRawSocket(a, nil) != nil {
		t.Fatal("rawSocket for a net.Pipe")
	}
	s, _ := tcpPair(t)
	if newRawSocket(s, nil) == nil {
		t.Fatal("no rawSocket for a TCP connection")
	}
}

// TestRawSocketWriteBuffers sends more than both socket buffers hold, in
// more pieces than one writev takes, while the peer reads slowly: the
// writer must wait for room and resume after short writes, in order.
func TestRawSocketWriteBuffers(t *testing.T) {
	tests := []struct {
		name   string
		pieces int
		size   int
	}{
		{"one small buffer", 1, 48},
		{"more buffers than IOV_MAX", 3*iovMax + 7, 100},
		{"more than the socket buffers", 40, 256 << 10},
		{"empty buffers among others", 9, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, cli := tcpPair(t)
			s := newRawSocket(srv, nil)
			var want bytes.Buffer
			bufs := make([][]byte, tt.pieces)
			for i := range bufs {
				size := tt.size
				if tt.size == 0 && i%2 == 1 {
					size = 13 // empty ones between non-empty ones
				}
				bufs[i] = pattern(size, byte(i))
				want.Write(bufs[i])
			}
			got := make(chan []byte, 1)
			go func() {
				var all bytes.Buffer
				chunk := make([]byte, 64<<10)
				for all.Len() < want.Len() {
					n, err := cli.Read(chunk)
					all.Write(chunk[:n])
					if err != nil {
						break
					}
					if want.Len() > 1<<20 {
						time.Sleep(time.Millisecond) // slow reader
					}
				}
				got <- all.Bytes()
			}()
			srv.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if err := s.WriteBuffers(bufs); err != nil {
				t.Fatal(err)
			}
			if b := <-got; !bytes.Equal(b, want.Bytes()) {
				t.Fatalf("peer read %d bytes, want %d (or they differ)", len(b), want.Len())
			}
			for i, v := range s.iov[:cap(s.iov)] {
				if v.Base != nil {
					t.Fatalf("iovec %d still points at a caller's buffer", i)
				}
			}
		})
	}
}

func TestRawSocketWriteDeadline(t *testing.T) {
	srv, _ := tcpPair(t)
	s := newRawSocket(srv, nil)
	srv.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	big := [][]byte{make([]byte, 64<<20)} // the peer never reads
	start := time.Now()
	err := s.WriteBuffers(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !isTimeout(err) {
		t.Fatalf("write to a peer that does not read: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("deadline of 200ms ended the write after %v", d)
	}
}

func TestRawSocketWriteToClosedPeer(t *testing.T) {
	srv, cli := tcpPair(t)
	s := newRawSocket(srv, nil)
	cli.SetLinger(0)
	cli.Close() // RST: the next writes fail
	srv.SetWriteDeadline(time.Now().Add(5 * time.Second))
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = s.WriteBuffers([][]byte{pattern(4096, 1)})
		time.Sleep(time.Millisecond)
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) || (errno != syscall.EPIPE && errno != syscall.ECONNRESET) {
		t.Fatalf("write after the peer reset: %v, want EPIPE or ECONNRESET", err)
	}
}

func TestRawSocketRead(t *testing.T) {
	srv, cli := tcpPair(t)
	s := newRawSocket(srv, nil)
	if n, err := s.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
	// Unread counts what waits in the receive queue.
	msg := pattern(3000, 7)
	if _, err := cli.Write(msg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := s.Unread()
		if err != nil {
			t.Fatal(err)
		}
		if n == len(msg) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Unread says %d, want %d", n, len(msg))
		}
		time.Sleep(time.Millisecond)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read back: %v", err)
	}
	if n, err := s.Unread(); n != 0 || err != nil {
		t.Fatalf("Unread after reading everything: %d, %v", n, err)
	}

	// A read waits for data, within the read deadline.
	srv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := s.Read(got); !isTimeout(err) {
		t.Fatalf("read with nothing sent: %v, want a timeout", err)
	}
	srv.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(20 * time.Millisecond)
		cli.Write([]byte("late"))
		cli.Close()
	}()
	if n, err := s.Read(got); err != nil || string(got[:n]) != "late" {
		t.Fatalf("read of data sent later: %q, %v", got[:n], err)
	}
	// The peer's close is io.EOF.
	if _, err := s.Read(got); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	// Our own close is net.ErrClosed.
	srv.Close()
	if _, err := s.Read(got); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
}

// TestRawSocketReadUnblockedByDeadline is how a connection stops its
// reader (closeWith): a deadline in the past wakes a waiting Read.
func TestRawSocketReadUnblockedByDeadline(t *testing.T) {
	srv, _ := tcpPair(t)
	s := newRawSocket(srv, nil)
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	srv.SetReadDeadline(time.Now())
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Fatalf("woken read: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline in the past did not wake the read")
	}
}

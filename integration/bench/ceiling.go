package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// The loopback ceiling: a request/response exchange over one plain TCP
// connection on 127.0.0.1 with the message sizes of an iSCSI exchange (a
// 48-byte header each way, the data in the direction of the transfer) and
// the workload's queue depth, and no storage behind it. No target can move
// these bytes faster over this machine's loopback.

const ceilingHeader = 48 // an iSCSI basic header segment

var errNoRequest = errors.New("loopback: no request completed")

// loopbackResult is one ceiling run.
type loopbackResult struct {
	Requests int
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// runLoopback drives w over a fresh loopback connection for d.
func runLoopback(ctx context.Context, w Workload, d time.Duration) (loopbackResult, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loopbackResult{}, err
	}
	defer l.Close()
	serverErr := make(chan error, 1)
	go func() { serverErr <- serveLoopback(l, w.Size) }()

	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return loopbackResult{}, err
	}
	defer conn.Close()
	res, err := driveLoopback(ctx, conn, w, d)
	conn.Close()
	if serr := <-serverErr; err == nil && serr != nil && !errors.Is(serr, io.EOF) {
		err = serr
	}
	return res, err
}

// serveLoopback answers one connection: for each request header it reads
// the write payload, if any, and sends a response header followed, for a
// read, by size bytes.
func serveLoopback(l net.Listener, size int) error {
	conn, err := l.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 256<<10)
	hdr := make([]byte, ceilingHeader)
	resp := make([]byte, ceilingHeader)
	payload := make([]byte, size)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return err
		}
		write := hdr[0] == 1
		if write {
			if _, err := io.ReadFull(r, payload); err != nil {
				return err
			}
		}
		copy(resp, hdr)
		bufs := net.Buffers{resp}
		if !write {
			bufs = append(bufs, payload)
		}
		if _, err := bufs.WriteTo(conn); err != nil {
			return err
		}
	}
}

// driveLoopback keeps w.QD requests in flight on conn for d and measures
// each one's round trip. The server answers in order, so a FIFO of send
// times matches responses to requests.
func driveLoopback(ctx context.Context, conn net.Conn, w Workload, d time.Duration) (loopbackResult, error) {
	slots := make(chan struct{}, w.QD)
	var mu sync.Mutex
	var sent []time.Time // guarded by mu; send times not yet answered, in order
	lat := make([]time.Duration, 0, 1<<16)
	stop := make(chan struct{})
	sendErr := make(chan error, 1)
	start := time.Now()
	deadline := start.Add(d)

	go func() {
		hdr := make([]byte, ceilingHeader)
		payload := make([]byte, w.Size)
		var tag uint32
		for {
			select {
			case slots <- struct{}{}:
			case <-stop:
				sendErr <- nil
				return
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				sendErr <- nil
				return
			}
			hdr[0] = 2
			if w.Write {
				hdr[0] = 1
			}
			tag++
			binary.BigEndian.PutUint32(hdr[16:], tag)
			bufs := net.Buffers{hdr}
			if w.Write {
				bufs = append(bufs, payload)
			}
			mu.Lock()
			sent = append(sent, time.Now())
			mu.Unlock()
			if _, err := bufs.WriteTo(conn); err != nil {
				sendErr <- err
				return
			}
		}
	}()

	r := bufio.NewReaderSize(conn, 256<<10)
	resp := make([]byte, ceilingHeader)
	payload := make([]byte, w.Size)
	var recvErr error
	senderDone := false
	for {
		mu.Lock()
		pending := len(sent)
		mu.Unlock()
		if pending == 0 {
			// Stop only once the sender has: a request it sends after
			// the last answer must be answered and read too, or closing
			// the connection with that answer unread resets it.
			if senderDone {
				break
			}
			select {
			case err := <-sendErr:
				senderDone = true
				if err != nil {
					recvErr = err
				}
			case <-time.After(10 * time.Microsecond):
				// The sender has not sent yet; wait for a request to exist.
			}
			if recvErr != nil {
				break
			}
			continue
		}
		if _, err := io.ReadFull(r, resp); err != nil {
			recvErr = err
			break
		}
		if !w.Write {
			if _, err := io.ReadFull(r, payload); err != nil {
				recvErr = err
				break
			}
		}
		now := time.Now()
		mu.Lock()
		lat = append(lat, now.Sub(sent[0]))
		sent = sent[1:]
		mu.Unlock()
		<-slots
	}
	elapsed := time.Since(start)
	close(stop)
	if recvErr != nil {
		conn.Close() // the sender may be blocked writing
	}
	if !senderDone {
		if err := <-sendErr; err != nil && recvErr == nil {
			recvErr = err
		}
	}
	if recvErr != nil {
		return loopbackResult{}, fmt.Errorf("loopback: %w", recvErr)
	}
	if len(lat) == 0 {
		return loopbackResult{}, errNoRequest
	}
	slices.Sort(lat)
	return loopbackResult{
		Requests: len(lat),
		Elapsed:  elapsed,
		P50:      percentileDuration(lat, 50),
		P99:      percentileDuration(lat, 99),
	}, nil
}

// percentileDuration is the nearest-rank percentile of sorted values.
func percentileDuration(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

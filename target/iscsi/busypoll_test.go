package iscsi

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

func TestBusyPollerPoll(t *testing.T) {
	tests := []struct {
		name        string
		budget      time.Duration
		otherSpins  bool // another reader holds the spinner's place
		dataAt      int  // try succeeds on this call; 0: never
		want        bool
		wantCalls   int // -1: at least one
		wantFound   uint64
		wantExpired uint64
	}{
		{name: "off", budget: 0, dataAt: 1, want: false, wantCalls: 0},
		{name: "data on the third try", budget: time.Second, dataAt: 3, want: true, wantCalls: 3, wantFound: 1},
		{name: "budget runs out", budget: 500 * time.Microsecond, want: false, wantCalls: -1, wantExpired: 1},
		{name: "another reader spins", budget: time.Second, otherSpins: true, dataAt: 1, want: false, wantCalls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p busyPoller
			p.set(tt.budget)
			p.spinning.Store(tt.otherSpins)
			calls := 0
			start := time.Now()
			got := p.poll(func() bool {
				calls++
				return calls == tt.dataAt
			})
			took := time.Since(start)
			if got != tt.want {
				t.Errorf("poll = %v, want %v", got, tt.want)
			}
			if tt.wantCalls >= 0 && calls != tt.wantCalls || tt.wantCalls < 0 && calls == 0 {
				t.Errorf("try called %d times, want %d", calls, tt.wantCalls)
			}
			if f, e := p.found.Load(), p.expired.Load(); f != tt.wantFound || e != tt.wantExpired {
				t.Errorf("found/expired = %d/%d, want %d/%d", f, e, tt.wantFound, tt.wantExpired)
			}
			if tt.wantExpired > 0 && took < tt.budget {
				t.Errorf("gave up after %v, before its budget of %v", took, tt.budget)
			}
			if p.spinning.Load() != tt.otherSpins {
				t.Errorf("spinner's place is %v after the poll, want %v", p.spinning.Load(), tt.otherSpins)
			}
		})
	}
}

func TestBusyPollerSetBounds(t *testing.T) {
	for _, tt := range []struct{ set, want time.Duration }{
		{30 * time.Microsecond, 30 * time.Microsecond},
		{time.Millisecond, time.Millisecond},
		{5 * time.Millisecond, time.Millisecond},
		{-time.Microsecond, 0},
		{0, 0},
	} {
		var p busyPoller
		p.set(tt.set)
		if got := time.Duration(p.budget.Load()); got != tt.want {
			t.Errorf("set(%v): budget %v, want %v", tt.set, got, tt.want)
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

type readResult struct {
	b   []byte
	err error
}

// readAsync starts one Read of s and returns where its result arrives.
func readAsync(s *rawSocket) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := s.Read(buf)
		ch <- readResult{buf[:n], err}
	}()
	return ch
}

func recvResult(t *testing.T, ch <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return")
		return readResult{}
	}
}

// spinningRead starts a Read on a fresh loopback connection with a poll
// budget of a minute and returns once the reader spins: the peer's end,
// and where the Read's result arrives.
func spinningRead(t *testing.T, p *busyPoller) (*net.TCPConn, <-chan readResult) {
	t.Helper()
	srv, cli := tcpPair(t)
	p.budget.Store(int64(time.Minute))
	ch := readAsync(newRawSocket(srv, p))
	waitFor(t, "the reader to spin", p.spinning.Load)
	return cli, ch
}

// TestRawSocketBusyPoll runs Read on real loopback sockets with a busy
// poller: data that arrives while the reader spins, data after the budget
// ran out (the netpoller's wake-up), the peer's close while spinning, and
// a second reader that finds the spinner's place taken. Budgets are set
// past the 1 ms cap, straight into the poller, so that the spin is still
// on when the test writes, however slow the machine.
func TestRawSocketBusyPoll(t *testing.T) {
	t.Run("data while spinning", func(t *testing.T) {
		var p busyPoller
		cli, ch := spinningRead(t, &p)
		cli.Write([]byte("ping"))
		r := recvResult(t, ch)
		if r.err != nil || !bytes.Equal(r.b, []byte("ping")) {
			t.Fatalf("Read = %q, %v; want ping", r.b, r.err)
		}
		if f, e := p.found.Load(), p.expired.Load(); f != 1 || e != 0 {
			t.Fatalf("found/expired = %d/%d, want 1/0", f, e)
		}
		if p.spinning.Load() {
			t.Fatal("the spinner's place is still taken")
		}
	})
	t.Run("data after the budget", func(t *testing.T) {
		srv, cli := tcpPair(t)
		var p busyPoller
		p.set(200 * time.Microsecond)
		ch := readAsync(newRawSocket(srv, &p))
		waitFor(t, "the poll to run out", func() bool { return p.expired.Load() == 1 })
		cli.Write([]byte("late"))
		r := recvResult(t, ch)
		if r.err != nil || !bytes.Equal(r.b, []byte("late")) {
			t.Fatalf("Read = %q, %v; want late", r.b, r.err)
		}
		if f := p.found.Load(); f != 0 {
			t.Fatalf("found = %d after the budget ran out, want 0", f)
		}
	})
	t.Run("peer closes while spinning", func(t *testing.T) {
		var p busyPoller
		cli, ch := spinningRead(t, &p)
		cli.Close()
		if r := recvResult(t, ch); r.err != io.EOF {
			t.Fatalf("Read after the peer closed = %q, %v; want EOF", r.b, r.err)
		}
	})
	t.Run("one spinner", func(t *testing.T) {
		var p busyPoller
		cliA, chA := spinningRead(t, &p)
		srvB, cliB := tcpPair(t)
		chB := readAsync(newRawSocket(srvB, &p))
		cliB.Write([]byte("b"))
		if r := recvResult(t, chB); r.err != nil || string(r.b) != "b" {
			t.Fatalf("reader B: %q, %v", r.b, r.err)
		}
		if f, e := p.found.Load(), p.expired.Load(); f != 0 || e != 0 {
			t.Fatalf("reader B polled (found/expired %d/%d) while A held the spinner's place", f, e)
		}
		cliA.Write([]byte("a"))
		if r := recvResult(t, chA); r.err != nil || string(r.b) != "a" {
			t.Fatalf("reader A: %q, %v", r.b, r.err)
		}
		if f := p.found.Load(); f != 1 {
			t.Fatalf("found = %d, want 1 (reader A)", f)
		}
	})
}

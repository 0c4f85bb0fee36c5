package integration

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/blockport/blockport/internal/iscsitest"
)

// PR commands as a guest cluster's fencing agent sends them (SPC-5 6.16, 6.17).
const (
	prTypeWERO         = 0x5 // Write Exclusive - Registrants Only
	saRegisterIgnore   = 0x6
	saReserve          = 0x1
	saPreemptAndAbort  = 0x5
	statusGood         = 0x00
	statusCheck        = 0x02
	statusResvConflict = 0x18
)

func prOut(c *iscsitest.Client, sa, typ byte, key, saKey uint64, aptpl bool) (iscsitest.Result, error) {
	param := make([]byte, 24)
	binary.BigEndian.PutUint64(param[0:8], key)
	binary.BigEndian.PutUint64(param[8:16], saKey)
	if aptpl {
		param[20] = 0x01
	}
	cdb := []byte{0x5F, sa, typ, 0, 0, 0, 0, 0, 24, 0}
	return c.Command(cdb, 24, param)
}

func prIn(c *iscsitest.Client, sa byte) (iscsitest.Result, error) {
	return c.Command([]byte{0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0x00, 0}, 4096, nil)
}

func write10(c *iscsitest.Client, lba uint32, data []byte) (iscsitest.Result, error) {
	cdb := []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, byte(len(data) / 512), 0}
	binary.BigEndian.PutUint32(cdb[2:6], lba)
	return c.Command(cdb, uint32(len(data)), data)
}

func read10(c *iscsitest.Client, lba uint32, blocks int) (iscsitest.Result, error) {
	cdb := []byte{0x28, 0, 0, 0, 0, 0, 0, 0, byte(blocks), 0}
	binary.BigEndian.PutUint32(cdb[2:6], lba)
	return c.Command(cdb, uint32(blocks*512), nil)
}

func dialNode(t *testing.T, s *Server, iqn, node string, isid byte) *iscsitest.Client {
	t.Helper()
	c, err := iscsitest.Dial(s.Addr, "iqn.2026-11.io.blockport:"+node, iqn, [6]byte{0x80, 0x12, 0x34, 0x56, 0x00, isid})
	if err != nil {
		t.Fatalf("%s: %v", node, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.ClearUA(); err != nil {
		t.Fatalf("%s: %v", node, err)
	}
	return c
}

func must(t *testing.T, what string, r iscsitest.Result, err error, status uint8) iscsitest.Result {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if r.Status != status {
		t.Fatalf("%s: status 0x%02x (sense % x), want 0x%02x", what, r.Status, r.Sense, status)
	}
	return r
}

// TestClusterFailover plays a two-node guest cluster fencing a node with
// persistent reservations over our own iSCSI client: A and B register, A
// holds Write Exclusive - Registrants Only and writes (and leaves a write
// waiting for data), B preempts A and aborts its tasks, A's next write is
// refused, B writes; after a restart, APTPL kept B's key and reservation.
func TestClusterFailover(t *testing.T) {
	const iqn = "iqn.2026-11.io.blockport:cluster"
	s := StartServer(t, Config(iqn, LUN{LUN: 0, Backstore: "file", Path: "shared.img", Size: "16MiB"}))
	a := dialNode(t, s, iqn, "node-a", 0xA)
	b := dialNode(t, s, iqn, "node-b", 0xB)

	r, err := prOut(a, saRegisterIgnore, 0, 0, 0xAAAA, true)
	must(t, "A registers", r, err, statusGood)
	r, err = prOut(b, saRegisterIgnore, 0, 0, 0xBBBB, true)
	must(t, "B registers", r, err, statusGood)
	r, err = prOut(a, saReserve, prTypeWERO, 0xAAAA, 0, true)
	must(t, "A reserves", r, err, statusGood)
	r, err = write10(a, 0, bytes.Repeat([]byte{'A'}, 512))
	must(t, "A writes", r, err, statusGood)
	// A's next write is in flight: the target waits for its data.
	held := []byte{0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0}
	sendLate, err := a.Hold(held, 512)
	if err != nil {
		t.Fatal("A's held write:", err)
	}

	start := time.Now()
	r, err = prOut(b, saPreemptAndAbort, prTypeWERO, 0xBBBB, 0xAAAA, true)
	must(t, "B preempts and aborts A", r, err, statusGood)
	t.Logf("PREEMPT AND ABORT took %v", time.Since(start))
	// The aborted write's data arrives now: it was checked against the
	// reservation before the preemption, so only the abort keeps it out.
	if err := sendLate(bytes.Repeat([]byte{'A'}, 512)); err != nil {
		t.Fatal("A's late data:", err)
	}

	// A learns it was preempted (REGISTRATIONS PREEMPTED), then is fenced.
	r, err = write10(a, 0, bytes.Repeat([]byte{'a'}, 512))
	if err == nil && r.Status == statusCheck {
		if k, asc, ascq := r.SenseKey(); k != 0x6 || asc != 0x2A || ascq != 0x05 {
			t.Fatalf("A's first command after preemption: sense %x/%02x/%02x, want UNIT ATTENTION 2A/05", k, asc, ascq)
		}
		r, err = write10(a, 0, bytes.Repeat([]byte{'a'}, 512))
	}
	must(t, "A writes after being preempted", r, err, statusResvConflict)
	r, err = write10(b, 0, bytes.Repeat([]byte{'B'}, 512))
	must(t, "B writes", r, err, statusGood)

	s.Restart()
	b = dialNode(t, s, iqn, "node-b", 0xB)
	a = dialNode(t, s, iqn, "node-a", 0xA)
	r, err = prIn(b, 0x0) // READ KEYS
	r = must(t, "READ KEYS", r, err, statusGood)
	if n := binary.BigEndian.Uint32(r.Data[4:8]); n != 8 || binary.BigEndian.Uint64(r.Data[8:16]) != 0xBBBB {
		t.Fatalf("keys after restart: % x, want only B's", r.Data)
	}
	r, err = prIn(b, 0x3) // READ FULL STATUS
	r = must(t, "READ FULL STATUS", r, err, statusGood)
	d := r.Data[8:]
	if len(d) < 24 || binary.BigEndian.Uint64(d[0:8]) != 0xBBBB || d[12]&0x01 == 0 || d[13] != prTypeWERO {
		t.Fatalf("full status after restart: % x, want B holding type %d", r.Data, prTypeWERO)
	}
	// iSCSI TransportID, format 01b: the initiator port name with its ISID.
	tid := d[24:]
	const want = "iqn.2026-11.io.blockport:node-b,i,0x80123456000b\x00"
	if len(tid) < 4 || tid[0] != 0x45 || !strings.HasPrefix(string(tid[4:]), want) {
		t.Fatalf("TransportID % x, want format 01b iSCSI %q", tid, want)
	}
	r, err = write10(a, 0, bytes.Repeat([]byte{'a'}, 512))
	must(t, "A writes after the restart", r, err, statusResvConflict)
	r, err = read10(a, 0, 2) // Write Exclusive: reads stay open to everyone
	r = must(t, "A reads", r, err, statusGood)
	if r.Data[0] != 'B' {
		t.Fatalf("block 0 holds %q, want B's write", r.Data[0])
	}
	if bytes.Contains(r.Data[512:], []byte("A")) {
		t.Fatal("A's aborted write landed")
	}
}

// TestAPTPLSurvivesSIGKILL kills the server while an initiator keeps
// changing its APTPL registration, many times. Every restart must load the
// state file, and the key found must be the last one acknowledged or the
// one in flight: never a torn or older state.
func TestAPTPLSurvivesSIGKILL(t *testing.T) {
	const iqn = "iqn.2026-11.io.blockport:aptpl"
	s := StartServer(t, Config(iqn, LUN{LUN: 0, Backstore: "memory", Size: "4MiB"}))
	rounds := 25
	if testing.Short() {
		rounds = 5
	}
	var acked uint64 // last key the target acknowledged
	for round := range rounds {
		c, err := iscsitest.Dial(s.Addr, "iqn.2026-11.io.blockport:killer", iqn, [6]byte{0x80, 0, 0, 0, 0, 1})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := c.ClearUA(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		// Check what the previous round left.
		r, err := prIn(c, 0x0)
		r = must(t, "READ KEYS", r, err, statusGood)
		var got uint64
		if binary.BigEndian.Uint32(r.Data[4:8]) >= 8 {
			got = binary.BigEndian.Uint64(r.Data[8:16])
		}
		if got != acked && got != acked+1 {
			t.Fatalf("round %d: key %#x after SIGKILL, want %#x (acknowledged) or %#x (in flight)", round, got, acked, acked+1)
		}
		acked = got
		c.Timeout = 5 * time.Second
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				r, err := prOut(c, saRegisterIgnore, 0, 0, acked+1, true)
				if err != nil || r.Status != statusGood {
					return
				}
				acked++
			}
		}()
		time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond)
		s.Kill()
		<-done
		c.Close()
		s.Start() // fails the test if the state file does not load
	}
	t.Logf("%d SIGKILLs during APTPL saves; last key %#x", rounds, acked)
}

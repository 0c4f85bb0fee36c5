package scsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/blockport/blockport/target/scsi/sense"
)

func TestNexusKey(t *testing.T) {
	n := Nexus{Initiator: "iqn.1993-08.org.debian:01:abc", ISID: [6]byte{0x23, 0x3D, 0x00, 0x00, 0x00, 0x01}, Target: "iqn.2024-01.org.blockport:disk", TPGT: 1}
	want := "iqn.1993-08.org.debian:01:abc,i,0x233d00000001,iqn.2024-01.org.blockport:disk,t,0x0001"
	if got := n.Key(); got != want {
		t.Fatalf("Key() = %q, want %q", got, want)
	}
	m := n
	m.TPGT = 2
	if m.Key() == n.Key() {
		t.Fatal("different nexuses share a key")
	}
}

func TestNewLUValidation(t *testing.T) {
	naa := NewNAA([]byte("v"))
	tests := []struct {
		name string
		cfg  LUConfig
		ok   bool
	}{
		{"defaults", LUConfig{Backstore: newMemStore(4096), NAA: naa}, true},
		{"no backstore", LUConfig{NAA: naa}, false},
		{"block size 1024", LUConfig{Backstore: newMemStore(4096), BlockSize: 1024, NAA: naa}, false},
		{"no NAA", LUConfig{Backstore: newMemStore(4096)}, false},
		{"NAA 5", LUConfig{Backstore: newMemStore(4096), NAA: [16]byte{0x50, 1}}, false},
		{"vendor too long", LUConfig{Backstore: newMemStore(4096), NAA: naa, Vendor: "ABCDEFGHI"}, false},
		{"product not ASCII", LUConfig{Backstore: newMemStore(4096), NAA: naa, Product: "disk\x01"}, false},
		{"smaller than a block", LUConfig{Backstore: newMemStore(4096), BlockSize: 4096, NAA: naa}, true},
		{"empty backstore", LUConfig{Backstore: newMemStore(100), NAA: naa}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lu, err := NewLU(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("NewLU: %v, want ok=%v", err, tt.ok)
			}
			if err == nil && (lu.BlockSize() == 0 || lu.Blocks() == 0 || lu.cfg.Vendor != DefaultVendor || lu.cfg.Serial == "") {
				t.Fatalf("defaults not filled: %+v", lu.cfg)
			}
		})
	}
}

func TestNewNAA(t *testing.T) {
	a, b := NewNAA([]byte("target:0")), NewNAA([]byte("target:1"))
	if a != NewNAA([]byte("target:0")) {
		t.Fatal("NewNAA is not deterministic")
	}
	if a == b {
		t.Fatal("different seeds give the same designator")
	}
	if a[0]>>4 != 6 {
		t.Fatalf("NAA field %d, want 6", a[0]>>4)
	}
	// The 24-bit company ID follows the NAA nibble.
	if cid := uint32(a[0]&0x0F)<<20 | uint32(a[1])<<12 | uint32(a[2])<<4 | uint32(a[3]>>4); cid != naaCompanyID {
		t.Fatalf("company ID %06x", cid)
	}
}

func TestLUNCodec(t *testing.T) {
	tests := []struct {
		lun uint64
		enc [8]byte
	}{
		{0, [8]byte{0x00, 0x00}},
		{1, [8]byte{0x00, 0x01}},
		{255, [8]byte{0x00, 0xFF}},
		{256, [8]byte{0x41, 0x00}},
		{MaxLUN, [8]byte{0x7F, 0xFF}},
	}
	for _, tt := range tests {
		if got := EncodeLUN(tt.lun); got != tt.enc {
			t.Errorf("EncodeLUN(%d) = % x, want % x", tt.lun, got, tt.enc)
		}
		if got, err := DecodeLUN(tt.enc); err != nil || got != tt.lun {
			t.Errorf("DecodeLUN(% x) = %d, %v", tt.enc, got, err)
		}
	}
	if got, err := DecodeLUN([8]byte{0x40, 0x05}); err != nil || got != 5 {
		t.Errorf("flat LUN 5 = %d, %v", got, err)
	}
	for _, bad := range [][8]byte{{0x01, 0x00}, {0x00, 0x01, 0x00, 0x02}, {0xC0, 0x01}, {0x80, 0x01}} {
		if _, err := DecodeLUN(bad); !errors.Is(err, ErrLUNFormat) {
			t.Errorf("DecodeLUN(% x) = %v, want ErrLUNFormat", bad, err)
		}
	}
}

func FuzzDecodeLUN(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x41, 0x00, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xD2, 0x00, 0x01, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		var b [8]byte
		copy(b[:], in)
		lun, err := DecodeLUN(b)
		if err != nil {
			return
		}
		if lun > MaxLUN {
			t.Fatalf("decoded LUN %d over MaxLUN", lun)
		}
		if again, err := DecodeLUN(EncodeLUN(lun)); err != nil || again != lun {
			t.Fatalf("round trip of %d: %d, %v", lun, again, err)
		}
	})
}

var tur = []byte{opTestUnitReady, 0, 0, 0, 0, 0}

func ua(ascq byte) want { return checkCond(sense.KeyUnitAttention, 0x29, ascq) }

func TestUnitAttentions(t *testing.T) {
	d, _, _ := newTestDevice(t, 100, 512)

	// A nexus never seen gets POWER ON, RESET, OR BUS DEVICE RESET once.
	run(t, d, nexusA, 0, tur, nil, 0).check(t, ua(0x00))
	run(t, d, nexusA, 0, tur, nil, 0).check(t, good)
	// A new session of the same nexus (same key) does not.
	again := *nexusA
	run(t, d, &again, 0, tur, nil, 0).check(t, good)
	// The UA is reported on a READ before any range check.
	run(t, d, nexusB, 0, cdb10(opRead10, 0, 1<<30, 1), nil, 512).check(t, ua(0x00))

	// NexusLoss: the next session of that nexus starts afresh, with 29h/00h.
	d.NexusLoss(nexusA)
	run(t, d, nexusB, 0, tur, nil, 0).check(t, good)
	run(t, d, nexusA, 0, tur, nil, 0).check(t, ua(0x00))
	run(t, d, nexusA, 0, tur, nil, 0).check(t, good)

	// LUN reset: every nexus, the requester included.
	if err := d.LUNReset(nexusA, 0); err != nil {
		t.Fatal(err)
	}
	run(t, d, nexusA, 0, tur, nil, 0).check(t, ua(0x03))
	run(t, d, nexusB, 0, tur, nil, 0).check(t, ua(0x03))
	err := d.LUNReset(nexusA, 42)
	if e, ok := sense.As(err); !ok || e.Code() != 0x2500 {
		t.Fatalf("LUNReset of a missing LUN: %v", err)
	}

	// Target reset: 29h/00h everywhere; a later reset replaces an earlier one.
	d.LUNReset(nexusA, 0)
	d.TargetReset(nexusB)
	run(t, d, nexusA, 0, tur, nil, 0).check(t, ua(0x00))
	run(t, d, nexusA, 0, tur, nil, 0).check(t, good)

	// INQUIRY and REPORT LUNS do not clear a UA; REQUEST SENSE does.
	d.TargetReset(nexusA)
	run(t, d, nexusA, 0, inquiryCDB(false, 0, 36), nil, 36).check(t, good)
	run(t, d, nexusA, 0, reportLUNsCDB(0, 64), nil, 64).check(t, good)
	r := run(t, d, nexusA, 0, []byte{opRequestSense, 0, 0, 0, 18, 0}, nil, 18)
	r.check(t, good)
	if e, _ := sense.Parse(r.data); e == nil || e.Code() != 0x2900 {
		t.Fatalf("REQUEST SENSE % x", r.data)
	}
	run(t, d, nexusA, 0, tur, nil, 0).check(t, good)

	// Mapping a new LUN tells nexuses of the existing LUs.
	lu2, _ := NewLU(LUConfig{Backstore: newMemStore(4096), NAA: NewNAA([]byte("2"))})
	if err := d.AddLU(2, lu2); err != nil {
		t.Fatal(err)
	}
	run(t, d, nexusA, 0, tur, nil, 0).check(t, checkCond(sense.KeyUnitAttention, 0x3F, 0x0E))
	// The new LU itself reports power on.
	run(t, d, nexusA, 2, tur, nil, 0).check(t, ua(0x00))
	run(t, d, nexusA, 2, tur, nil, 0).check(t, good)
	// Unknown opcode comes before the UA (SAM-5 order).
	d.TargetReset(nexusA)
	run(t, d, nexusA, 2, []byte{0xC0, 0, 0, 0, 0, 0}, nil, 0).check(t, invalidOpcode)
	run(t, d, nexusA, 2, tur, nil, 0).check(t, ua(0x00))
}

func TestUAQueueBounded(t *testing.T) {
	var tbl uaTable
	tbl.init()
	st := tbl.state(nexusA)
	tbl.mu.Lock()
	for i := 0; i < 3*maxPendingUA; i++ {
		tbl.pushLocked(st, sense.New(sense.KeyUnitAttention, 0x2A, byte(i)))
	}
	n := len(st.queue)
	tbl.mu.Unlock()
	if n != maxPendingUA {
		t.Fatalf("queue length %d", n)
	}
	// A reset still gets in, and power on (already queued) covers it.
	tbl.establish(sense.BusDeviceResetOccurred, nil)
	if e := tbl.pop(st); e.Code() != 0x2900 {
		t.Fatalf("first UA %v", e)
	}
	if e := tbl.pop(st); e != nil {
		t.Fatalf("reset did not clear older conditions: %v", e)
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status Status
		sense  []byte
	}{
		{"nil", nil, StatusGood, nil},
		{"sense", sense.LBAOutOfRange(), StatusCheckCondition, sense.LBAOutOfRange().Fixed()},
		{"wrapped sense", fmt.Errorf("x: %w", sense.InvalidOpcode()), StatusCheckCondition, sense.InvalidOpcode().Fixed()},
		{"descriptor", &sense.Error{Key: sense.KeyIllegalRequest, ASC: 0x21, DescFormat: true}, StatusCheckCondition, sense.LBAOutOfRange().Descriptor()},
		{"reservation conflict", StatusError(StatusReservationConflict), StatusReservationConflict, nil},
		{"busy", StatusError(StatusBusy), StatusBusy, nil},
		{"bare check condition", StatusError(StatusCheckCondition), StatusCheckCondition, sense.InternalTargetFailure().Fixed()},
		{"other error", errors.New("boom"), StatusCheckCondition, sense.InternalTargetFailure().Fixed()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, sb := StatusOf(tt.err)
			if st != tt.status || !bytes.Equal(sb, tt.sense) {
				t.Fatalf("StatusOf = %v % x, want %v % x", st, sb, tt.status, tt.sense)
			}
		})
	}
	if StatusError(StatusTaskSetFull).Error() == "" || Status(0x77).String() == "" {
		t.Fatal("empty strings")
	}
}

func TestExecuteCancelledAndUnprepared(t *testing.T) {
	d, _, _ := newTestDevice(t, 10, 512)
	clearUA(t, d, nexusA, 0)
	cmd := &Command{Nexus: nexusA, CDB: cdb10(opRead10, 0, 0, 1), ExpectedLength: 512}
	if _, err := d.Execute(context.Background(), cmd); err == nil {
		t.Fatal("Execute without Prepare succeeded")
	}
	if err := d.Prepare(cmd); err != nil {
		t.Fatal(err)
	}
	cmd.Data = make([]byte, 512)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Execute(ctx, cmd); !errors.Is(err, StatusError(StatusTaskAborted)) {
		t.Fatalf("cancelled Execute: %v", err)
	}
	if err := d.Prepare(&Command{CDB: tur}); err == nil {
		t.Fatal("Prepare without a nexus succeeded")
	}
	// A write whose data-out the fabric cut short is an internal failure, not a partial write.
	w := &Command{Nexus: nexusA, CDB: cdb10(opWrite10, 0, 0, 2), ExpectedLength: 1024}
	if err := d.Prepare(w); err != nil {
		t.Fatal(err)
	}
	w.Data = make([]byte, 512)
	if _, err := d.Execute(context.Background(), w); err == nil {
		t.Fatal("short data-out accepted")
	}
}

// TestConcurrentCommands runs many nexuses' I/O and UA traffic at once
// (meaningful under -race).
func TestConcurrentCommands(t *testing.T) {
	d, _, _ := newTestDevice(t, 256, 512)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := &Nexus{Initiator: "iqn.x", ISID: [6]byte{byte(g)}, Target: "iqn.t", TPGT: 1}
			clearUA(t, d, n, 0)
			data := fill(8*512, byte(g))
			lba := uint32(g * 8)
			for i := 0; i < 50; i++ {
				if r := run(t, d, n, 0, cdb10(opWrite10, 0, lba, 8), data, 8*512); r.status != StatusGood {
					if r.sense.Key != sense.KeyUnitAttention {
						t.Errorf("write: %v", r.err)
						return
					}
					continue
				}
				r := run(t, d, n, 0, cdb10(opRead10, 0, lba, 8), nil, 8*512)
				if r.status == StatusGood && !bytes.Equal(r.data, data) {
					t.Error("read back another goroutine's data")
					return
				}
				if i%10 == 0 {
					d.LUNReset(n, 0)
					d.LUNs()
				}
			}
		}()
	}
	wg.Wait()
}

// FuzzCDB feeds arbitrary CDBs, LUNs, expected lengths and data through
// Prepare and Execute on a small memory LU: nothing may panic, every error
// must map to a status with well-formed sense, and data-in must fit.
func FuzzCDB(f *testing.F) {
	seeds := [][]byte{
		tur, cdb6(opRead6, 1, 0), cdb6(opWrite6, 1, 2),
		cdb10(opRead10, 0x18, 3, 2), cdb10(opWrite10, 0x08, 0, 1), cdb12(opRead12, 0, 0, 4), cdb16(opWrite16, 0, 30, 2),
		cdb10(opVerify10, 0x02, 0, 2), cdb16(opVerify16, 0x06, 0, 4), cdb12(opWriteAndVerify12, 0x02, 1, 1),
		cdb10(opPreFetch10, 0x02, 0, 0), cdb16(opSynchronizeCache16, 0, 0, 0),
		inquiryCDB(true, 0x83, 255), inquiryCDB(false, 0, 36), modeSense6(false, 0, 0x3F, 0, 255), modeSense10(false, true, 2, 8, 200),
		reportLUNsCDB(0, 64), rsocCDB(0x80, 0, 0, 1024), rsocCDB(2, 0x9E, 0x10, 64), cdb16(opServiceActionIn16, 0x10, 0, 32),
		cdb10(opReadCapacity10, 0, 0, 0), {opRequestSense, 1, 0, 0, 255, 0}, {opStartStopUnit, 0, 0, 0, 0, 0},
	}
	for _, s := range seeds {
		f.Add(s, uint8(0), uint32(4096), []byte("data-out"))
	}
	f.Fuzz(func(t *testing.T, cdb []byte, lun uint8, edtl uint32, out []byte) {
		if len(cdb) > 32 {
			cdb = cdb[:32]
		}
		d, _, _ := newTestDevice(t, 64, 512)
		cmd := &Command{Nexus: nexusA, LUN: uint64(lun % 3), CDB: cdb, ExpectedLength: edtl}
		err := d.Prepare(cmd)
		if err == nil {
			if cmd.TransferLength < 0 || cmd.TransferLength > maxTransferBytes+maxReportLUNsLen {
				t.Fatalf("TransferLength %d", cmd.TransferLength)
			}
			switch cmd.Dir {
			case DirRead:
				cmd.Data = make([]byte, cmd.TransferLength)
			case DirWrite:
				want := min(int(edtl), cmd.TransferLength)
				cmd.Data = make([]byte, want)
				copy(cmd.Data, out)
			}
			var n int
			n, err = d.Execute(context.Background(), cmd)
			if n < 0 || n > len(cmd.Data) {
				t.Fatalf("Execute returned %d bytes for a %d-byte buffer", n, len(cmd.Data))
			}
		}
		st, sb := StatusOf(err)
		if st == StatusCheckCondition {
			if _, perr := sense.Parse(sb); perr != nil {
				t.Fatalf("bad sense % x: %v", sb, perr)
			}
		} else if st != StatusGood && st != StatusTaskAborted {
			t.Fatalf("unexpected status %v", st)
		}
	})
}

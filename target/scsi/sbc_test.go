package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi/sense"
)

const testBlocks = 1000

// TestBlockCommandChecks covers the CHECK CONDITIONs of the block commands
// with the exact sense, in the cases libiscsi's Read*/Write*/Verify*/
// WriteVerify*/Prefetch* families exercise.
func TestBlockCommandChecks(t *testing.T) {
	const bs = 512
	nb := uint32(testBlocks)
	tests := []struct {
		name string
		cdb  []byte
		edtl uint32
		ro   bool
		want want
	}{
		// Ranges (SBC-4 4.5), including overflow of lba+len.
		{"READ10 last block", cdb10(opRead10, 0, nb-1, 1), bs, false, good},
		{"READ10 one past the end", cdb10(opRead10, 0, nb, 1), bs, false, lbaOOB},
		{"READ10 2 blocks straddling the end", cdb10(opRead10, 0, nb-1, 2), 2 * bs, false, lbaOOB},
		{"READ10 0 blocks at capacity", cdb10(opRead10, 0, nb, 0), 0, false, good},
		{"READ10 0 blocks past capacity", cdb10(opRead10, 0, nb+1, 0), 0, false, lbaOOB},
		{"READ10 LBA 2^31", cdb10(opRead10, 0, 0x80000000, 1), bs, false, lbaOOB},
		{"READ10 LBA -1", cdb10(opRead10, 0, 0xFFFFFFFF, 1), bs, false, lbaOOB},
		{"READ16 LBA -1 wraps", cdb16(opRead16, 0, ^uint64(0), 2), 2 * bs, false, lbaOOB},
		{"READ16 LBA 2^63", cdb16(opRead16, 0, 1<<63, 1), bs, false, lbaOOB},
		{"READ12 beyond", cdb12(opRead12, 0, nb-5, 6), 6 * bs, false, lbaOOB},
		{"READ6 beyond", cdb6(opRead6, nb-1, 2), 2 * bs, false, lbaOOB},
		{"READ6 LBA 0x1fffff", cdb6(opRead6, 0x1FFFFF, 1), bs, false, lbaOOB},
		{"READ6 0 means 256 blocks", cdb6(opRead6, nb-255, 0), 256 * bs, false, lbaOOB},
		{"WRITE10 beyond", cdb10(opWrite10, 0, nb, 1), bs, false, lbaOOB},
		{"WRITE16 beyond", cdb16(opWrite16, 0, uint64(nb)-1, 2), 2 * bs, false, lbaOOB},
		{"VERIFY10 0 blocks past end", cdb10(opVerify10, 0x02, nb+1, 0), 0, false, lbaOOB},
		{"VERIFY16 beyond", cdb16(opVerify16, 0x02, uint64(nb)-1, 2), 2 * bs, false, lbaOOB},
		{"WRITE AND VERIFY12 beyond", cdb12(opWriteAndVerify12, 0x02, nb, 1), bs, false, lbaOOB},
		{"PRE-FETCH10 0 blocks past end", cdb10(opPreFetch10, 0, nb+1, 0), 0, false, lbaOOB},
		{"PRE-FETCH16 beyond", cdb16(opPreFetch16, 0, uint64(nb)-1, 2), 0, false, lbaOOB},
		{"SYNCHRONIZE CACHE10 beyond", cdb10(opSynchronizeCache10, 0, nb-1, 2), 0, false, lbaOOB},
		{"SYNCHRONIZE CACHE16 whole LU", cdb16(opSynchronizeCache16, 0x02, 0, 0), 0, false, good},
		{"PRE-FETCH10 IMMED and group", append(cdb10(opPreFetch10, 0x02, 0, 1)[:6:6], 3, 0, 1, 0), 0, false, good},

		// Protection fields: no protection information (SBC-4 4.22).
		{"READ10 RDPROTECT=1", cdb10(opRead10, 0x20, 0, 1), bs, false, invalidField(1, 7)},
		{"WRITE12 WRPROTECT=7", cdb12(opWrite12, 0xE0, 0, 1), bs, false, invalidField(1, 7)},
		{"VERIFY10 VRPROTECT=3", cdb10(opVerify10, 0x60|0x02, 0, 1), bs, false, invalidField(1, 7)},
		{"WRITE AND VERIFY16 WRPROTECT=1", cdb16(opWriteAndVerify16, 0x20, 0, 1), bs, false, invalidField(1, 7)},
		{"VERIFY10 BYTCHK=2 reserved", cdb10(opVerify10, 0x04, 0, 1), bs, false, invalidField(1, 2)},
		{"WRITE AND VERIFY10 BYTCHK=3", cdb10(opWriteAndVerify10, 0x06, 0, 1), bs, false, invalidField(1, 2)},

		// DPO/FUA accepted (DPOFUA=1 in MODE SENSE).
		{"READ10 DPO FUA", cdb10(opRead10, 0x18, 0, 1), bs, false, good},
		{"WRITE10 DPO FUA FUA_NV", cdb10(opWrite10, 0x1A, 0, 1), bs, false, good},
		{"VERIFY10 DPO", cdb10(opVerify10, 0x10, 0, 1), 0, false, good},

		// Write protection comes after the range check.
		{"WRITE10 read-only", cdb10(opWrite10, 0, 0, 1), bs, true, writeProt},
		{"WRITE AND VERIFY10 read-only", cdb10(opWriteAndVerify10, 0x02, 0, 1), bs, true, writeProt},
		{"WRITE10 read-only beyond end", cdb10(opWrite10, 0, nb, 1), bs, true, lbaOOB},
		{"READ10 read-only", cdb10(opRead10, 0, 0, 1), bs, true, good},
		{"VERIFY10 read-only", cdb10(opVerify10, 0, 0, 1), 0, true, good},

		// Maximum transfer length (VPD B0h: 8 MiB = 16384 blocks of 512).
		{"READ16 over max transfer", cdb16(opRead16, 0, 0, 16385), 0, false, lbaOOB},
		{"READ12 at max transfer", cdb12(opRead12, 0, 0, 16384), 0, false, lbaOOB},

		// Short data-out.
		{"WRITE10 EDTL 200 of 512", cdb10(opWrite10, 0, 0, 1), 200, false, invalidIU},
		{"VERIFY10 BYTCHK=1 short data", cdb10(opVerify10, 0x02, 0, 2), bs, false, invalidIU},
		{"WRITE10 EDTL 0", cdb10(opWrite10, 0, 0, 1), 0, false, good},
		{"WRITE10 EDTL 1 block of 2", cdb10(opWrite10, 0, 0, 2), bs, false, good},
		{"WRITE10 EDTL over TL", cdb10(opWrite10, 0, 0, 1), 10000, false, good},

		// NACA=1 in CONTROL: ACA is not supported (SAM-5 5.2).
		{"READ10 NACA", append(cdb10(opRead10, 0, 0, 1)[:9:9], 0x04), bs, false, invalidField(9, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _, _ := newTestDevice(t, testBlocks, bs, func(c *LUConfig) { c.ReadOnly = tt.ro })
			clearUA(t, d, nexusA, 0)
			data := fill(int(max(tt.edtl, 4*bs)), 0xA6)
			run(t, d, nexusA, 0, tt.cdb, data, tt.edtl).check(t, tt.want)
		})
	}
}

func TestMaxTransferLength(t *testing.T) {
	// A LU big enough that the range check passes, so the transfer length
	// check is what fails.
	d, lu, _ := newTestDevice(t, 20000, 512)
	clearUA(t, d, nexusA, 0)
	if lu.maxXfer != 16384 {
		t.Fatalf("maxXfer = %d", lu.maxXfer)
	}
	run(t, d, nexusA, 0, cdb16(opRead16, 0, 0, 16385), nil, 0).check(t, invalidField(10, 7))
	run(t, d, nexusA, 0, cdb12(opWrite12, 0, 0, 16385), nil, 0).check(t, invalidField(6, 7))
	run(t, d, nexusA, 0, cdb10(opVerify10, 0, 0, 16385), nil, 0).check(t, invalidField(7, 7))
	run(t, d, nexusA, 0, cdb16(opRead16, 0, 0, 16384), nil, 16384*512).check(t, good)
	// PRE-FETCH moves no data: not bounded.
	run(t, d, nexusA, 0, cdb10(opPreFetch10, 0, 0, 20000), nil, 0).check(t, good)
}

func TestReadWrite(t *testing.T) {
	for _, bs := range []uint32{512, 4096} {
		for _, tc := range []struct {
			name        string
			read, write func(lba uint32, n uint8, flags byte) []byte
		}{
			{"6", func(l uint32, n uint8, _ byte) []byte { return cdb6(opRead6, l, n) }, func(l uint32, n uint8, _ byte) []byte { return cdb6(opWrite6, l, n) }},
			{"10", func(l uint32, n uint8, f byte) []byte { return cdb10(opRead10, f, l, uint16(n)) }, func(l uint32, n uint8, f byte) []byte { return cdb10(opWrite10, f, l, uint16(n)) }},
			{"12", func(l uint32, n uint8, f byte) []byte { return cdb12(opRead12, f, l, uint32(n)) }, func(l uint32, n uint8, f byte) []byte { return cdb12(opWrite12, f, l, uint32(n)) }},
			{"16", func(l uint32, n uint8, f byte) []byte { return cdb16(opRead16, f, uint64(l), uint32(n)) }, func(l uint32, n uint8, f byte) []byte { return cdb16(opWrite16, f, uint64(l), uint32(n)) }},
		} {
			t.Run(fmt.Sprintf("bs%d/%s", bs, tc.name), func(t *testing.T) {
				d, _, st := newTestDevice(t, 64, bs)
				clearUA(t, d, nexusA, 0)
				data := fill(3*int(bs), 0x11)
				run(t, d, nexusA, 0, tc.write(61, 3, 0), data, uint32(len(data))).check(t, good)
				if got := st.bytes(61*int(bs), 3*int(bs)); !bytes.Equal(got, data) {
					t.Fatal("medium does not hold the written data")
				}
				if st.fuaWrites.Load() != 0 {
					t.Fatal("FUA write without FUA bit")
				}
				r := run(t, d, nexusA, 0, tc.read(61, 3, 0), nil, uint32(len(data)))
				r.check(t, good)
				if !bytes.Equal(r.data, data) {
					t.Fatal("read data differs")
				}
				if tc.name != "6" {
					run(t, d, nexusA, 0, tc.write(0, 1, 0x08), data, bs).check(t, good)
					if st.fuaWrites.Load() != 1 {
						t.Fatal("FUA bit did not reach the backstore")
					}
				}
			})
		}
	}
}

// TestPartialWrite: EDTL < TL in whole blocks writes only the blocks sent
// (libiscsi WriteVerify10 residuals: first block 'b', second still 'a').
func TestPartialWrite(t *testing.T) {
	for _, op := range []byte{opWrite10, opWriteAndVerify10} {
		d, _, st := newTestDevice(t, 16, 512)
		clearUA(t, d, nexusA, 0)
		run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 2), bytes.Repeat([]byte("a"), 1024), 1024).check(t, good)
		run(t, d, nexusA, 0, cdb10(op, 0x02, 0, 2), bytes.Repeat([]byte("b"), 1024), 512).check(t, good)
		got := st.bytes(0, 1024)
		if !bytes.Equal(got[:512], bytes.Repeat([]byte("b"), 512)) || !bytes.Equal(got[512:], bytes.Repeat([]byte("a"), 512)) {
			t.Fatalf("op %02x: wrote more or less than the data sent", op)
		}
		// EDTL 0: nothing written, GOOD.
		w := st.writes.Load()
		run(t, d, nexusA, 0, cdb10(op, 0x02, 0, 1), nil, 0).check(t, good)
		if st.writes.Load() != w {
			t.Fatal("a write with no data reached the backstore")
		}
	}
}

func TestVerify(t *testing.T) {
	const bs = 512
	d, _, st := newTestDevice(t, 64, bs)
	clearUA(t, d, nexusA, 0)
	data := fill(4*bs, 0x30)
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 10, 4), data, 4*bs).check(t, good)

	flipped := bytes.Clone(data)
	flipped[1234] ^= 'X'
	block := bytes.Repeat([]byte{0x5A}, bs)
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 20, 3), bytes.Repeat(block, 3), 3*bs).check(t, good)
	other := bytes.Clone(block)
	other[7] = 0

	tests := []struct {
		name string
		cdb  []byte
		out  []byte
		want want
		info uint64
	}{
		{"BYTCHK=0 reads the blocks", cdb10(opVerify10, 0, 10, 4), nil, good, 0},
		{"BYTCHK=1 match", cdb10(opVerify10, 0x02, 10, 4), data, good, 0},
		{"BYTCHK=1 match VERIFY12", cdb12(opVerify12, 0x02, 10, 4), data, good, 0},
		{"BYTCHK=1 match VERIFY16", cdb16(opVerify16, 0x02, 10, 4), data, good, 0},
		{"BYTCHK=1 miscompare offset", cdb10(opVerify10, 0x02, 10, 4), flipped, miscompare, 1234},
		{"BYTCHK=1 0 blocks", cdb10(opVerify10, 0x02, 10, 0), nil, good, 0},
		{"BYTCHK=3 one block repeated", cdb16(opVerify16, 0x06, 20, 3), block, good, 0},
		{"BYTCHK=3 miscompare", cdb16(opVerify16, 0x06, 20, 3), other, miscompare, 7},
		{"BYTCHK=3 miscompare in third block", cdb16(opVerify16, 0x06, 19, 3), block, miscompare, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, d, nexusA, 0, tt.cdb, tt.out, uint32(len(tt.out)))
			r.check(t, tt.want)
			if tt.want.status == StatusCheckCondition && (!r.sense.HasInfo || r.sense.Info != tt.info) {
				t.Fatalf("miscompare information %v/%d, want %d", r.sense.HasInfo, r.sense.Info, tt.info)
			}
		})
	}
	if st.writes.Load() != 2 {
		t.Fatalf("VERIFY wrote to the medium: %d writes", st.writes.Load())
	}
}

func TestWriteAndVerify(t *testing.T) {
	const bs = 512
	d, _, st := newTestDevice(t, 64, bs)
	clearUA(t, d, nexusA, 0)
	data := fill(5*bs, 0x70)
	for _, cdb := range [][]byte{
		cdb10(opWriteAndVerify10, 0x02, 5, 5),
		cdb12(opWriteAndVerify12, 0x02, 5, 5),
		cdb16(opWriteAndVerify16, 0x00, 5, 5),
	} {
		run(t, d, nexusA, 0, cdb, data, 5*bs).check(t, good)
		if !bytes.Equal(st.bytes(5*bs, 5*bs), data) {
			t.Fatal("data not written")
		}
	}
	if st.fuaWrites.Load() != 3 {
		t.Fatalf("WRITE AND VERIFY must write through: %d FUA writes", st.fuaWrites.Load())
	}
	// A medium that reads back something else is a MISCOMPARE.
	bad := &flakyStore{memStore: st, corruptAt: 5*bs + 100}
	lu2, err := NewLU(LUConfig{Backstore: bad, BlockSize: bs, NAA: NewNAA([]byte("x"))})
	if err != nil {
		t.Fatal(err)
	}
	d2 := NewDevice("d2")
	if err := d2.AddLU(3, lu2); err != nil {
		t.Fatal(err)
	}
	clearUA(t, d2, nexusA, 3)
	r := run(t, d2, nexusA, 3, cdb10(opWriteAndVerify10, 0x02, 5, 2), data, 2*bs)
	r.check(t, miscompare)
	if r.sense.Info != 100 {
		t.Fatalf("miscompare offset %d, want 100", r.sense.Info)
	}
	// BYTCHK=0 only checks the blocks can be read.
	run(t, d2, nexusA, 3, cdb10(opWriteAndVerify10, 0x00, 5, 2), data, 2*bs).check(t, good)
}

// flakyStore returns data with one byte flipped at corruptAt.
type flakyStore struct {
	*memStore
	corruptAt int64
}

func (f *flakyStore) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.memStore.ReadAt(p, off)
	if i := f.corruptAt - off; i >= 0 && i < int64(n) {
		p[i] ^= 0xFF
	}
	return n, err
}

func TestMediumErrors(t *testing.T) {
	const bs = 512
	medium := func(asc byte) want { return checkCond(sense.KeyMediumError, asc, 0) }
	tests := []struct {
		name   string
		inject func(*memStore)
		cdb    []byte
		want   want
		info   uint64
		noInfo bool
	}{
		{"read error at LBA 7", func(s *memStore) { s.failReadAt.Store(7 * bs) }, cdb10(opRead10, 0, 5, 4), medium(0x11), 7, false},
		{"verify read error", func(s *memStore) { s.failReadAt.Store(9*bs + 3) }, cdb16(opVerify16, 0, 5, 8), medium(0x11), 9, false},
		{"write error", func(s *memStore) { s.failWriteAt.Store(0) }, cdb10(opWrite10, 0, 6, 2), medium(0x0C), 6, false},
		{"sync error", func(s *memStore) { s.failSync.Store(true) }, cdb10(opSynchronizeCache10, 0, 0, 0), medium(0x0C), 0, true},
		{"stop flushes and fails", func(s *memStore) { s.failSync.Store(true) }, []byte{opStartStopUnit, 0, 0, 0, 0, 0}, medium(0x0C), 0, true},
		{"stop with NO_FLUSH", func(s *memStore) { s.failSync.Store(true) }, []byte{opStartStopUnit, 0, 0, 0, 0x04, 0}, good, 0, true},
		{"start", func(s *memStore) { s.failSync.Store(true) }, []byte{opStartStopUnit, 1, 0, 0, 0x01, 0}, good, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _, st := newTestDevice(t, 64, bs)
			clearUA(t, d, nexusA, 0)
			tt.inject(st)
			r := run(t, d, nexusA, 0, tt.cdb, fill(8*bs, 1), 8*bs)
			r.check(t, tt.want)
			if tt.want.status == StatusCheckCondition {
				if r.sense.HasInfo == tt.noInfo || (!tt.noInfo && r.sense.Info != tt.info) {
					t.Fatalf("information %v/%d, want %d", r.sense.HasInfo, r.sense.Info, tt.info)
				}
				if !errorsIsInjected(r.err) {
					t.Fatalf("cause not kept: %v", r.err)
				}
			}
		})
	}
}

func errorsIsInjected(err error) bool {
	e, ok := sense.As(err)
	return ok && e.Cause != nil && bytes.Contains([]byte(e.Error()), []byte(errInjected.Error()))
}

func TestSyncAndPrefetch(t *testing.T) {
	d, _, st := newTestDevice(t, 64, 512)
	clearUA(t, d, nexusA, 0)
	run(t, d, nexusA, 0, cdb10(opSynchronizeCache10, 0x02, 0, 10), nil, 0).check(t, good)
	run(t, d, nexusA, 0, cdb16(opSynchronizeCache16, 0, 63, 1), nil, 0).check(t, good)
	if st.syncs.Load() != 2 {
		t.Fatalf("syncs = %d", st.syncs.Load())
	}
	pf := &prefetchStore{memStore: st}
	lu, err := NewLU(LUConfig{Backstore: pf, BlockSize: 512, NAA: NewNAA([]byte("pf"))})
	if err != nil {
		t.Fatal(err)
	}
	d2 := NewDevice("pf")
	d2.AddLU(0, lu)
	clearUA(t, d2, nexusA, 0)
	run(t, d2, nexusA, 0, cdb16(opPreFetch16, 0x02, 60, 0), nil, 0).check(t, good)
	if pf.off != 60*512 || pf.length != 4*512 {
		t.Fatalf("prefetch hint %d+%d, want %d+%d", pf.off, pf.length, 60*512, 4*512)
	}
}

type prefetchStore struct {
	*memStore
	off, length int64
}

func (p *prefetchStore) Prefetch(off, length int64) error { p.off, p.length = off, length; return nil }

func TestReadCapacity(t *testing.T) {
	tests := []struct {
		name   string
		size   int64
		bs     uint32
		last10 uint32
		last16 uint64
	}{
		{"small 512", 1000 * 512, 512, 999, 999},
		{"small 4096", 10 * 4096, 4096, 9, 9},
		{"over 2^32 blocks", (1<<32 + 5) * 512, 512, 0xFFFFFFFF, 1<<32 + 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newMemStore(4096)
			st.size = tt.size
			lu, err := NewLU(LUConfig{Backstore: st, BlockSize: tt.bs, NAA: NewNAA([]byte("rc"))})
			if err != nil {
				t.Fatal(err)
			}
			d := NewDevice("rc")
			d.AddLU(0, lu)
			clearUA(t, d, nexusA, 0)
			r := run(t, d, nexusA, 0, cdb10(opReadCapacity10, 0, 0, 0), nil, 8)
			r.check(t, good)
			if len(r.data) != 8 || binary.BigEndian.Uint32(r.data) != tt.last10 || binary.BigEndian.Uint32(r.data[4:]) != tt.bs {
				t.Fatalf("READ CAPACITY(10) = % x", r.data)
			}
			rc16 := cdb16(opServiceActionIn16, saReadCapacity16, 0, 32)
			r = run(t, d, nexusA, 0, rc16, nil, 32)
			r.check(t, good)
			if len(r.data) != 32 || binary.BigEndian.Uint64(r.data) != tt.last16 || binary.BigEndian.Uint32(r.data[8:]) != tt.bs ||
				!bytes.Equal(r.data[12:], make([]byte, 20)) {
				t.Fatalf("READ CAPACITY(16) = % x", r.data)
			}
		})
	}
	d, _, _ := newTestDevice(t, 100, 512)
	clearUA(t, d, nexusA, 0)
	// libiscsi ReadCapacity16.alloclen: allocation lengths 0..15 are not errors.
	for alloc := uint32(0); alloc < 16; alloc++ {
		r := run(t, d, nexusA, 0, cdb16(opServiceActionIn16, saReadCapacity16, 0, alloc), nil, alloc)
		r.check(t, good)
		if len(r.data) != int(alloc) {
			t.Fatalf("alloc %d returned %d bytes", alloc, len(r.data))
		}
	}
	// PMI=0 with a non-zero LBA (SBC-3).
	run(t, d, nexusA, 0, cdb10(opReadCapacity10, 0, 5, 0), nil, 8).check(t, invalidField(2, 7))
	pmi := cdb10(opReadCapacity10, 0, 5, 0)
	pmi[8] = 1
	run(t, d, nexusA, 0, pmi, nil, 8).check(t, good)
	// Unknown SERVICE ACTION IN(16) service action.
	run(t, d, nexusA, 0, cdb16(opServiceActionIn16, 0x11, 0, 32), nil, 32).check(t, invalidField(1, 4))
}

// TestMemoryBackstore runs a write/read cycle on the real memory backstore.
func TestMemoryBackstore(t *testing.T) {
	bs, err := backstore.Open(backstore.Options{Kind: "memory", Size: 4 << 20, BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	lu, err := NewLU(LUConfig{Backstore: bs, BlockSize: 4096, NAA: NewNAA([]byte("mem"))})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDevice("mem")
	d.AddLU(1, lu)
	clearUA(t, d, nexusA, 1)
	data := fill(8*4096, 0x42)
	run(t, d, nexusA, 1, cdb16(opWrite16, 0x08, 1020, 4), data, 4*4096).check(t, good)
	r := run(t, d, nexusA, 1, cdb16(opRead16, 0, 1020, 4), nil, 4*4096)
	r.check(t, good)
	if !bytes.Equal(r.data, data[:4*4096]) {
		t.Fatal("read back differs")
	}
	run(t, d, nexusA, 1, cdb16(opVerify16, 0x02, 1020, 4), data, 4*4096).check(t, good)
	run(t, d, nexusA, 1, cdb16(opRead16, 0, 1021, 4), nil, 4*4096).check(t, lbaOOB)
}

// TestReadNoAlloc: the READ/WRITE hot path allocates nothing per command.
func TestReadNoAlloc(t *testing.T) {
	d, _, _ := newTestDevice(t, 64, 512)
	clearUA(t, d, nexusA, 0)
	buf := make([]byte, 8*512)
	rd := &Command{Nexus: nexusA, CDB: cdb10(opRead10, 0, 8, 8), ExpectedLength: 8 * 512}
	wr := &Command{Nexus: nexusA, CDB: cdb16(opWrite16, 0x08, 8, 8), ExpectedLength: 8 * 512}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		for _, c := range []*Command{rd, wr} {
			if err := d.Prepare(c); err != nil {
				t.Fatal(err)
			}
			c.Data = buf
			if _, err := d.Execute(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per READ+WRITE", allocs)
	}
}

// TestCommandImmediate: only plain READ and WRITE of an LU whose backstore
// is backstore.Immediate (memory) may run on the fabric's receiving
// goroutine; everything else, and any command on an image, may wait.
func TestCommandImmediate(t *testing.T) {
	mem, err := backstore.Open(backstore.Options{Kind: "memory", Size: 1 << 20, BlockSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	memLU, err := NewLU(LUConfig{Backstore: mem, BlockSize: 512, NAA: NewNAA([]byte("immediate-mem"))})
	if err != nil {
		t.Fatal(err)
	}
	otherLU, err := NewLU(LUConfig{Backstore: newMemStore(1 << 20), BlockSize: 512, NAA: NewNAA([]byte("immediate-other"))})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDevice("test")
	if err := d.AddLU(0, memLU); err != nil {
		t.Fatal(err)
	}
	if err := d.AddLU(1, otherLU); err != nil {
		t.Fatal(err)
	}
	// Clear the power-on unit attention of both LUs for nexus A.
	for lun := range uint64(2) {
		run(t, d, nexusA, lun, []byte{0x00, 0, 0, 0, 0, 0}, nil, 0)
	}
	read10 := []byte{0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0}
	write10 := []byte{0x2a, 0, 0, 0, 0, 8, 0, 0, 8, 0}
	write16 := []byte{0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 8, 0, 0}
	writeVerify10 := []byte{0x2e, 0, 0, 0, 0, 8, 0, 0, 8, 0}
	syncCache10 := []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	inquiry := []byte{0x12, 0, 0, 0, 96, 0}
	tests := []struct {
		name string
		lun  uint64
		cdb  []byte
		want bool
	}{
		{"READ(10) on memory", 0, read10, true},
		{"WRITE(10) on memory", 0, write10, true},
		{"WRITE(16) on memory", 0, write16, true},
		{"WRITE AND VERIFY(10) on memory", 0, writeVerify10, false},
		{"SYNCHRONIZE CACHE(10) on memory", 0, syncCache10, false},
		{"INQUIRY on memory", 0, inquiry, false},
		{"READ(10) on a store that may block", 1, read10, false},
		{"WRITE(10) on a store that may block", 1, write10, false},
		{"READ(10) on an unmapped LUN", 7, read10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := &Command{Nexus: nexusA, LUN: tt.lun, CDB: tt.cdb, Attr: TaskSimple, ExpectedLength: 8 * 512}
			d.Prepare(cmd) // an unmapped LUN fails here; Immediate must still answer
			if got := cmd.Immediate(); got != tt.want {
				t.Errorf("Immediate() = %v, want %v", got, tt.want)
			}
		})
	}
}

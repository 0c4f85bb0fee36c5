package scsi

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi/sense"
)

// newSparseDevice maps one LU on a real sparse image of blocks*bs bytes.
func newSparseDevice(t testing.TB, blocks int, bs uint32, opts ...luOpt) (*Device, *LU, backstore.Backstore) {
	t.Helper()
	store, err := backstore.Open(backstore.Options{
		Kind: "sparse", Path: filepath.Join(t.TempDir(), "thin.img"),
		Size: int64(blocks) * int64(bs), BlockSize: bs, WriteCache: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := LUConfig{Backstore: store, BlockSize: bs, WriteCache: true, NAA: NewNAA([]byte(t.Name())), Serial: "SN0002"}
	for _, o := range opts {
		o(&cfg)
	}
	lu, err := NewLU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDevice("test")
	if err := d.AddLU(0, lu); err != nil {
		t.Fatal(err)
	}
	clearUA(t, d, nexusA, 0)
	return d, lu, store
}

func unmapList(ranges ...[2]uint64) []byte {
	b := make([]byte, 8+16*len(ranges))
	binary.BigEndian.PutUint16(b[0:2], uint16(len(b)-2))
	binary.BigEndian.PutUint16(b[2:4], uint16(16*len(ranges)))
	for i, r := range ranges {
		binary.BigEndian.PutUint64(b[8+16*i:], r[0])
		binary.BigEndian.PutUint32(b[8+16*i+8:], uint32(r[1]))
	}
	return b
}

func unmapCDB(anchor bool, listLen int) []byte {
	c := make([]byte, 10)
	c[0] = opUnmap
	if anchor {
		c[1] = 0x01
	}
	binary.BigEndian.PutUint16(c[7:9], uint16(listLen))
	return c
}

func getLBAStatusCDB(lba uint64, alloc uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1] = opServiceActionIn16, saGetLBAStatus
	binary.BigEndian.PutUint64(c[2:10], lba)
	binary.BigEndian.PutUint32(c[10:14], alloc)
	return c
}

type lbaStatus struct {
	lba    uint64
	blocks uint32
	status byte
}

func lbaStatuses(t *testing.T, data []byte) []lbaStatus {
	t.Helper()
	if len(data) < 8 {
		t.Fatalf("GET LBA STATUS data %d bytes", len(data))
	}
	if got := binary.BigEndian.Uint32(data[0:4]); int(got) != len(data)-4 {
		t.Fatalf("PARAMETER DATA LENGTH %d with %d bytes", got, len(data))
	}
	var out []lbaStatus
	for d := data[8:]; len(d) >= 16; d = d[16:] {
		out = append(out, lbaStatus{binary.BigEndian.Uint64(d[0:8]), binary.BigEndian.Uint32(d[8:12]), d[12] & 0x0F})
	}
	return out
}

func readCapacity16(t *testing.T, d *Device) []byte {
	t.Helper()
	r := run(t, d, nexusA, 0, cdb16(opServiceActionIn16, saReadCapacity16, 0, 32), nil, 32)
	r.check(t, good)
	return r.data
}

func vpd(t *testing.T, d *Device, page byte) []byte {
	t.Helper()
	r := run(t, d, nexusA, 0, []byte{opInquiry, 1, page, 0, 255, 0}, nil, 255)
	r.check(t, good)
	return r.data
}

// Capabilities are asked, not assumed: a backstore without Unmapper gets no
// LBPME, no LBPU/LBPWS and no unmap limits; a sparse one gets all of them.
func TestProvisioningAdvertised(t *testing.T) {
	for _, tt := range []struct {
		name     string
		thin     bool
		bs       uint32
		wantGran uint32
	}{
		{"full 512", false, 512, 0},
		{"sparse 512", true, 512, 8}, // 4 KiB filesystem blocks
		{"sparse 4096", true, 4096, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var d *Device
			if tt.thin {
				d, _, _ = newSparseDevice(t, 2048, tt.bs)
			} else {
				d, _, _ = newTestDevice(t, 2048, tt.bs)
				clearUA(t, d, nexusA, 0)
			}
			rc := readCapacity16(t, d)
			if lbpme, lbprz := rc[14]&0x80 != 0, rc[14]&0x40 != 0; lbpme != tt.thin || lbprz != tt.thin {
				t.Errorf("READ CAPACITY(16) LBPME=%v LBPRZ=%v, want %v", lbpme, lbprz, tt.thin)
			}
			if rc[13] != 0 {
				t.Errorf("physical block exponent %d for an image file, want 0", rc[13])
			}
			lbp := vpd(t, d, vpdProvisioning)
			wantFlags, wantType := byte(0), byte(0)
			if tt.thin {
				wantFlags, wantType = 0x80|0x40|0x20|0x04, 0x02
			}
			if lbp[5] != wantFlags || lbp[6]&0x07 != wantType {
				t.Errorf("VPD B2 flags %02x type %d, want %02x type %d", lbp[5], lbp[6]&7, wantFlags, wantType)
			}
			bl := vpd(t, d, vpdBlockLimits)
			maxLBA, maxDesc := binary.BigEndian.Uint32(bl[20:24]), binary.BigEndian.Uint32(bl[24:28])
			gran := binary.BigEndian.Uint32(bl[28:32])
			if tt.thin != (maxLBA != 0 && maxDesc != 0) || gran != tt.wantGran {
				t.Errorf("VPD B0 unmap limits: LBA count %d, descriptors %d, granularity %d", maxLBA, maxDesc, gran)
			}
			if ws := binary.BigEndian.Uint64(bl[36:44]); ws == 0 || ws > uint64(maxTransferBytes/tt.bs) {
				t.Errorf("MAXIMUM WRITE SAME LENGTH %d", ws)
			}
			// UNMAP exists only on the thin LU.
			r := run(t, d, nexusA, 0, unmapCDB(false, 0), nil, 0)
			if tt.thin {
				r.check(t, good)
			} else {
				r.check(t, invalidOpcode)
			}
		})
	}
}

// Geometry from a backstore that has it (a block device) reaches READ
// CAPACITY(16) and the transfer granularity.
type geometryStore struct {
	*memStore
	phys uint32
}

func (g geometryStore) PhysicalBlockSize() uint32 { return g.phys }

func TestPhysicalBlockExponent(t *testing.T) {
	for _, tt := range []struct {
		bs, phys uint32 // phys: the backstore's geometry; 0 for none
		cfgPhys  uint32 // LUConfig.PhysicalBlockSize (physical_block_size)
		want     byte
	}{
		{512, 4096, 0, 3}, {512, 512, 0, 0}, {4096, 4096, 0, 0}, {512, 1024, 0, 1},
		// The config's value replaces the backstore's, or its absence.
		{512, 0, 4096, 3}, {512, 0, 0, 0}, {4096, 0, 16384, 2}, {512, 4096, 512, 0},
	} {
		var st backstore.Backstore = newMemStore(1 << 20)
		if tt.phys != 0 {
			st = geometryStore{newMemStore(1 << 20), tt.phys}
		}
		lu, err := NewLU(LUConfig{Backstore: st, BlockSize: tt.bs, PhysicalBlockSize: tt.cfgPhys, NAA: NewNAA([]byte("geo"))})
		if err != nil {
			t.Fatal(err)
		}
		d := NewDevice("geo")
		d.AddLU(0, lu)
		clearUA(t, d, nexusA, 0)
		if got := readCapacity16(t, d)[13] & 0x0F; got != tt.want {
			t.Errorf("bs %d phys %d config %d: exponent %d, want %d", tt.bs, tt.phys, tt.cfgPhys, got, tt.want)
		}
		if g := binary.BigEndian.Uint16(vpd(t, d, vpdBlockLimits)[6:8]); g < 1<<tt.want {
			t.Errorf("bs %d phys %d config %d: OPTIMAL TRANSFER LENGTH GRANULARITY %d", tt.bs, tt.phys, tt.cfgPhys, g)
		}
	}
	for _, bad := range []uint32{256, 1536, 512 << 16} {
		if _, err := NewLU(LUConfig{Backstore: newMemStore(1 << 20), BlockSize: 512, PhysicalBlockSize: bad, NAA: NewNAA([]byte("geo"))}); err == nil {
			t.Errorf("physical block size %d accepted for 512-byte blocks", bad)
		}
	}
}

func TestUnmapAndLBAStatus(t *testing.T) {
	const bs = 512
	d, lu, store := newSparseDevice(t, 4096, bs) // 2 MiB
	// Write 64 KiB at LBA 128 and 64 KiB at LBA 1024.
	for _, lba := range []uint32{128, 1024} {
		run(t, d, nexusA, 0, cdb10(opWrite10, 0, lba, 128), fill(128*bs, 0x11), 128*bs).check(t, good)
	}
	r := run(t, d, nexusA, 0, getLBAStatusCDB(0, 4096), nil, 4096)
	r.check(t, good)
	want := []lbaStatus{{0, 128, 1}, {128, 128, 0}, {256, 768, 1}, {1024, 128, 0}, {1152, 4096 - 1152, 1}}
	if got := lbaStatuses(t, r.data); !equalStatus(got, want) {
		t.Fatalf("LBA status %v, want %v", got, want)
	}
	// Starting inside a run reports from the starting LBA.
	r = run(t, d, nexusA, 0, getLBAStatusCDB(130, 24), nil, 24)
	r.check(t, good)
	if got := lbaStatuses(t, r.data); len(got) != 1 || got[0] != (lbaStatus{130, 126, 0}) {
		t.Fatalf("status from 130: %v", got)
	}

	// Unmap 32 KiB (whole filesystem blocks) in the first range and all of the second.
	list := unmapList([2]uint64{136, 64}, [2]uint64{1024, 128}, [2]uint64{0, 0})
	run(t, d, nexusA, 0, unmapCDB(false, len(list)), list, uint32(len(list))).check(t, good)
	r = run(t, d, nexusA, 0, getLBAStatusCDB(0, 4096), nil, 4096)
	r.check(t, good)
	want = []lbaStatus{{0, 128, 1}, {128, 8, 0}, {136, 64, 1}, {200, 56, 0}, {256, 4096 - 256, 1}}
	if got := lbaStatuses(t, r.data); !equalStatus(got, want) {
		t.Fatalf("after UNMAP: %v, want %v", got, want)
	}
	// LBPRZ: the unmapped blocks read as zeros, the rest is intact.
	r = run(t, d, nexusA, 0, cdb10(opRead10, 0, 128, 128), nil, 128*bs)
	r.check(t, good)
	exp := fill(128*bs, 0x11)
	clear(exp[8*bs : 72*bs])
	if !bytes.Equal(r.data, exp) {
		t.Fatal("data after UNMAP differs")
	}
	used, err := store.(backstore.Allocator).AllocatedBytes()
	if err != nil || used > 64<<10 {
		t.Fatalf("allocated %d bytes after unmapping 96 of 128 KiB (err %v)", used, err)
	}
	_ = lu
}

func equalStatus(a, b []lbaStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestUnmapErrors(t *testing.T) {
	d, _, _ := newSparseDevice(t, 1024, 512)
	paramErr := func(asc, ascq byte) want { return checkCond(sense.KeyIllegalRequest, asc, ascq) }
	badLens := unmapList([2]uint64{0, 1})
	binary.BigEndian.PutUint16(badLens[2:4], 32) // claims two descriptors, carries one
	for _, tt := range []struct {
		name   string
		cdb    []byte
		list   []byte
		expect want
	}{
		{"no list", unmapCDB(false, 0), nil, good},
		{"header only", unmapCDB(false, 8), unmapList(), good},
		{"short header", unmapCDB(false, 6), make([]byte, 6), paramErr(0x1A, 0)},
		{"descriptor length beyond list", unmapCDB(false, len(badLens)), badLens, paramErr(0x1A, 0)},
		{"anchor", unmapCDB(true, 24), unmapList([2]uint64{0, 1}), invalidField(1, 0)},
		{"beyond end", unmapCDB(false, 24), unmapList([2]uint64{1020, 5}), lbaOOB},
		{"LBA far beyond", unmapCDB(false, 24), unmapList([2]uint64{^uint64(0), 1}), lbaOOB},
		{"zero blocks at end", unmapCDB(false, 24), unmapList([2]uint64{1024, 0}), good},
		{"last block", unmapCDB(false, 24), unmapList([2]uint64{1023, 1}), good},
		{"most descriptors", unmapCDB(false, 8+16*maxUnmapDescriptors), unmapList(make([][2]uint64, maxUnmapDescriptors)...), good},
	} {
		t.Run(tt.name, func(t *testing.T) {
			run(t, d, nexusA, 0, tt.cdb, tt.list, uint32(len(tt.list))).check(t, tt.expect)
		})
	}
	t.Run("read only", func(t *testing.T) {
		d, _, _ := newSparseDevice(t, 1024, 512, func(c *LUConfig) { c.ReadOnly = true })
		run(t, d, nexusA, 0, unmapCDB(false, 24), unmapList([2]uint64{0, 1}), 24).check(t, writeProt)
	})
}

func writeSameCDB(sixteen bool, flags byte, lba uint64, n uint32) []byte {
	if sixteen {
		return cdb16(opWriteSame16, flags, lba, n)
	}
	return cdb10(opWriteSame10, flags, uint32(lba), uint16(n))
}

func TestWriteSame(t *testing.T) {
	const bs = 512
	for _, sixteen := range []bool{false, true} {
		name := "10"
		if sixteen {
			name = "16"
		}
		t.Run(name, func(t *testing.T) {
			d, _, store := newSparseDevice(t, 2048, bs)
			block := fill(bs, 0xA5)
			// A pattern over 40 blocks.
			run(t, d, nexusA, 0, writeSameCDB(sixteen, 0, 10, 40), block, bs).check(t, good)
			r := run(t, d, nexusA, 0, cdb10(opRead10, 0, 9, 42), nil, 42*bs)
			r.check(t, good)
			for i := 0; i < 42; i++ {
				want := block
				if i == 0 || i == 41 {
					want = make([]byte, bs)
				}
				if !bytes.Equal(r.data[i*bs:(i+1)*bs], want) {
					t.Fatalf("block %d after WRITE SAME differs", 9+i)
				}
			}
			// UNMAP bit: the blocks read as zeros and are deallocated.
			run(t, d, nexusA, 0, writeSameCDB(sixteen, 0x08, 8, 48), make([]byte, bs), bs).check(t, good)
			r = run(t, d, nexusA, 0, cdb10(opRead10, 0, 8, 48), nil, 48*bs)
			r.check(t, good)
			if !bytes.Equal(r.data, make([]byte, 48*bs)) {
				t.Fatal("blocks after WRITE SAME with UNMAP are not zero")
			}
			if used, _ := store.(backstore.Allocator).AllocatedBytes(); used != 0 {
				t.Fatalf("%d bytes allocated after unmapping everything written", used)
			}
			// NUMBER OF LOGICAL BLOCKS 0: to the end of the LU.
			run(t, d, nexusA, 0, writeSameCDB(sixteen, 0, 2040, 0), block, bs).check(t, good)
			r = run(t, d, nexusA, 0, cdb10(opRead10, 0, 2040, 8), nil, 8*bs)
			if !bytes.Equal(r.data[7*bs:], block) {
				t.Fatal("WRITE SAME to the end did not reach the last block")
			}
			// Errors.
			for _, tt := range []struct {
				name   string
				cdb    []byte
				data   []byte
				edtl   uint32
				expect want
			}{
				{"wrprotect", writeSameCDB(sixteen, 0x20, 0, 1), block, bs, invalidField(1, 7)},
				{"anchor", writeSameCDB(sixteen, 0x18, 0, 1), block, bs, invalidField(1, 4)},
				{"beyond end", writeSameCDB(sixteen, 0, 2047, 2), block, bs, lbaOOB},
				{"zero blocks past end", writeSameCDB(sixteen, 0, 2049, 0), block, bs, lbaOOB},
				{"data-out too short", writeSameCDB(sixteen, 0, 0, 1), block[:bs/2], bs / 2, invalidIU},
				{"data-out too long", writeSameCDB(sixteen, 0, 0, 1), append(block, block...), 2 * bs, invalidIU},
			} {
				run(t, d, nexusA, 0, tt.cdb, tt.data, tt.edtl).check(t, tt.expect)
			}
		})
	}
	t.Run("NDOB", func(t *testing.T) {
		d, _, _ := newSparseDevice(t, 64, bs)
		run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 4), fill(4*bs, 1), 4*bs).check(t, good)
		run(t, d, nexusA, 0, cdb16(opWriteSame16, 0x01, 1, 2), nil, 0).check(t, good)
		r := run(t, d, nexusA, 0, cdb10(opRead10, 0, 0, 4), nil, 4*bs)
		exp := fill(4*bs, 1)
		clear(exp[bs : 3*bs])
		if !bytes.Equal(r.data, exp) {
			t.Fatal("WRITE SAME(16) NDOB did not zero exactly its blocks")
		}
		// NDOB is a WRITE SAME(16) bit only.
		run(t, d, nexusA, 0, cdb10(opWriteSame10, 0x01, 0, 1), fill(bs, 1), bs).check(t, invalidField(1, 0))
	})
	t.Run("fully provisioned", func(t *testing.T) {
		d, _, st := newTestDevice(t, 64, bs)
		clearUA(t, d, nexusA, 0)
		// UNMAP set without LBPWS is an invalid field.
		run(t, d, nexusA, 0, cdb10(opWriteSame10, 0x08, 0, 1), make([]byte, bs), bs).check(t, invalidField(1, 3))
		// A zero block is written as zeros (memStore has no Zeroer).
		run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 4), fill(4*bs, 1), 4*bs).check(t, good)
		run(t, d, nexusA, 0, cdb10(opWriteSame10, 0, 0, 3), make([]byte, bs), bs).check(t, good)
		if !bytes.Equal(st.bytes(0, 4*bs), append(make([]byte, 3*bs), fill(4*bs, 1)[3*bs:]...)) {
			t.Fatal("WRITE SAME of zeros on a full LU")
		}
		// Beyond MAXIMUM WRITE SAME LENGTH.
		d2, lu2, _ := newTestDevice(t, int(maxTransferBytes/bs)+8, bs)
		clearUA(t, d2, nexusA, 0)
		run(t, d2, nexusA, 0, cdb16(opWriteSame16, 0, 0, lu2.prov.maxWriteSame+1), make([]byte, bs), bs).check(t, invalidField(10, 7))
		run(t, d2, nexusA, 0, cdb16(opWriteSame16, 0, 0, 0), make([]byte, bs), bs).check(t, invalidField(10, 7))
	})
}

func TestGetLBAStatusFullAndBeyond(t *testing.T) {
	d, _, _ := newTestDevice(t, 100, 512)
	clearUA(t, d, nexusA, 0)
	r := run(t, d, nexusA, 0, getLBAStatusCDB(10, 64), nil, 64)
	r.check(t, good)
	if got := lbaStatuses(t, r.data); len(got) != 1 || got[0] != (lbaStatus{10, 90, 0}) {
		t.Fatalf("fully provisioned LU: %v", got)
	}
	for _, lba := range []uint64{100, 101, 1 << 63, ^uint64(0)} {
		run(t, d, nexusA, 0, getLBAStatusCDB(lba, 24), nil, 24).check(t, lbaOOB)
	}
	// An allocation length below a descriptor still gets the header.
	r = run(t, d, nexusA, 0, getLBAStatusCDB(0, 8), nil, 8)
	r.check(t, good)
	if len(r.data) != 8 || binary.BigEndian.Uint32(r.data[0:4]) != 20 {
		t.Fatalf("short allocation: % x", r.data)
	}
}

func TestThinThresholdUA(t *testing.T) {
	const bs = 4096
	d, _, _ := newSparseDevice(t, 256, bs, func(c *LUConfig) { c.ThinThresholdPercent = 50 }) // 1 MiB
	clearUA(t, d, nexusB, 0)
	soft := checkCond(sense.KeyUnitAttention, 0x38, 0x07)
	vpdLBP := vpd(t, d, vpdProvisioning)
	if vpdLBP[7] != 50 {
		t.Errorf("THRESHOLD PERCENTAGE %d, want 50", vpdLBP[7])
	}
	// 25%: below the threshold, no UA.
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 64), fill(64*bs, 3), 64*bs).check(t, good)
	run(t, d, nexusB, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, good)
	// 62.5%: crossed; every nexus hears it once.
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 64, 96), fill(96*bs, 3), 96*bs).check(t, good)
	for _, n := range []*Nexus{nexusA, nexusB} {
		run(t, d, n, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, soft)
		run(t, d, n, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, good)
	}
	// Still above: no new UA. Unmap below, then cross again: a new UA.
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 200, 1), fill(bs, 3), bs).check(t, good)
	run(t, d, nexusB, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, good)
	list := unmapList([2]uint64{0, 256})
	run(t, d, nexusA, 0, unmapCDB(false, len(list)), list, uint32(len(list))).check(t, good)
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 160), fill(160*bs, 4), 160*bs).check(t, good)
	run(t, d, nexusB, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, soft)
}

// FuzzUnmapList: any parameter list is refused or accepted with every
// range inside the LU, never a panic.
func FuzzUnmapList(f *testing.F) {
	f.Add(unmapList([2]uint64{0, 8}, [2]uint64{100, 1}))
	f.Add(unmapList())
	f.Add([]byte{0, 6, 0, 0, 0, 0, 0, 0})
	f.Add(unmapList([2]uint64{^uint64(0), 2}))
	store := backstore.Backstore(newMemStore(1 << 20))
	lu, err := NewLU(LUConfig{Backstore: store, NAA: NewNAA([]byte("fuzz"))})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, list []byte) {
		ranges, err := lu.parseUnmapList(list)
		if err != nil {
			if _, ok := sense.As(err); !ok {
				t.Fatalf("error %v is not sense data", err)
			}
			return
		}
		for _, r := range ranges {
			if r.blocks == 0 || r.lba+uint64(r.blocks) > lu.blocks.Load() || r.lba+uint64(r.blocks) < r.lba {
				t.Fatalf("range %+v escapes the LU of %d blocks", r, lu.blocks.Load())
			}
		}
	})
}

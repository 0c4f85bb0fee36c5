package scsi

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/blockport/blockport/target/scsi/sense"
)

// Builders of EXTENDED COPY(LID1) parameter lists.

func xcHeader(listID, usage byte, tdl, sdl int) []byte {
	h := make([]byte, xcopyHeaderLen)
	h[0], h[1] = listID, usage<<3
	binary.BigEndian.PutUint16(h[2:4], uint16(tdl))
	binary.BigEndian.PutUint32(h[8:12], uint32(sdl))
	return h
}

func xcTarget(naa [16]byte, bs uint32) []byte {
	d := make([]byte, xcopyTargetDescLen)
	d[0] = tpcDescIdentification
	d[4], d[5], d[7] = 0x01, 0x03, 16
	copy(d[8:], naa[:])
	d[29], d[30], d[31] = byte(bs>>16), byte(bs>>8), byte(bs)
	return d
}

func xcSeg(src, dst uint16, blocks uint16, srcLBA, dstLBA uint64) []byte {
	s := make([]byte, 28)
	s[0] = tpcSegBlockToBlock
	binary.BigEndian.PutUint16(s[2:4], 0x18)
	binary.BigEndian.PutUint16(s[4:6], src)
	binary.BigEndian.PutUint16(s[6:8], dst)
	binary.BigEndian.PutUint16(s[10:12], blocks)
	binary.BigEndian.PutUint64(s[12:20], srcLBA)
	binary.BigEndian.PutUint64(s[20:28], dstLBA)
	return s
}

func xcSegBytes(src, dst uint16, n uint32, srcLBA, dstLBA uint64, srcOff, dstOff uint16) []byte {
	s := make([]byte, 32)
	s[0] = tpcSegBlockToBlockBytes
	binary.BigEndian.PutUint16(s[2:4], 0x1C)
	binary.BigEndian.PutUint16(s[4:6], src)
	binary.BigEndian.PutUint16(s[6:8], dst)
	binary.BigEndian.PutUint32(s[8:12], n)
	binary.BigEndian.PutUint64(s[12:20], srcLBA)
	binary.BigEndian.PutUint64(s[20:28], dstLBA)
	binary.BigEndian.PutUint16(s[28:30], srcOff)
	binary.BigEndian.PutUint16(s[30:32], dstOff)
	return s
}

// xcList assembles a list from target and segment descriptors.
func xcList(listID, usage byte, targets [][]byte, segs ...[]byte) []byte {
	var t, s []byte
	for _, d := range targets {
		t = append(t, d...)
	}
	for _, d := range segs {
		s = append(s, d...)
	}
	p := xcHeader(listID, usage, len(t), len(s))
	return append(append(p, t...), s...)
}

func xcopyCDB(n int) []byte {
	c := make([]byte, 16)
	c[0] = opExtendedCopy
	binary.BigEndian.PutUint32(c[10:14], uint32(n))
	return c
}

func rcrCDB(sa, listID byte, alloc uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1], c[2] = opReceiveCopyResults, sa, listID
	binary.BigEndian.PutUint32(c[10:14], alloc)
	return c
}

func TestParseXCopyList(t *testing.T) {
	var naa [16]byte
	naa[0] = 0x60
	tgt := xcTarget(naa, 512)
	seg := xcSeg(0, 0, 1, 0, 1)
	many := func(d []byte, n int) [][]byte {
		var out [][]byte
		for range n {
			out = append(out, d)
		}
		return out
	}
	mod := func(p []byte, at int, v byte) []byte {
		q := append([]byte(nil), p...)
		q[at] = v
		return q
	}
	good := xcList(1, listIDHold, [][]byte{tgt}, seg)
	manySegs := xcList(1, 0, [][]byte{tgt}, many(seg, xcopyMaxSegments+1)...)
	paramErr := func(byteOff int, bit int8) *sense.Error {
		e := sense.InvalidFieldInParameterList(byteOff, int(bit))
		return e
	}
	tests := []struct {
		name string
		p    []byte
		want *sense.Error // nil: parses
	}{
		{"valid", good, nil},
		{"0Ah segment", xcList(1, 0, [][]byte{tgt}, xcSegBytes(0, 0, 100, 0, 1, 3, 7)), nil},
		{"no descriptors", xcHeader(0, listIDDisabled, 0, 0), nil},
		{"short header", good[:15], sense.ParameterListLengthError()},
		{"truncated target", good[:16+31], sense.ParameterListLengthError()},
		{"truncated segment", good[:len(good)-1], sense.ParameterListLengthError()},
		{"reserved bits byte 1", mod(good, 1, 0x40), paramErr(1, 7)},
		{"list id usage 01b", mod(good, 1, 0x08), paramErr(1, 4)},
		{"reserved byte 5", mod(good, 5, 1), paramErr(5, 7)},
		{"inline data", func() []byte { p := mod(good, 15, 4); return append(p, 0, 0, 0, 0) }(), paramErr(12, 7)},
		{"descriptor list too long", xcList(1, 0, many(tgt, 8), many(seg, 28)...), sense.ParameterListLengthError()},
		{"too many targets", xcList(1, 0, many(tgt, xcopyMaxTargetDescs+1), seg), sense.TooManyTargetDescriptors()},
		{"too many segments", manySegs, sense.TooManySegmentDescriptors()},
		{"target list not whole descriptors", func() []byte {
			p := xcHeader(1, 0, 31, 0)
			return append(p, tgt[:31]...)
		}(), paramErr(2, 7)},
		{"FC N_Port_Name target", xcList(1, 0, [][]byte{mod(tgt, 0, 0xE0)}, seg), sense.UnsupportedTargetDescriptorType(16)},
		{"tape target", xcList(1, 0, [][]byte{mod(tgt, 1, 0x01)}, seg), paramErr(17, 4)},
		{"target port designator", xcList(1, 0, [][]byte{mod(tgt, 5, 0x13)}, seg), paramErr(21, 5)},
		{"designator too long", xcList(1, 0, [][]byte{mod(tgt, 7, 21)}, seg), paramErr(23, 7)},
		{"empty designator", xcList(1, 0, [][]byte{mod(tgt, 7, 0)}, seg), paramErr(23, 7)},
		{"reserved block parameter bits", xcList(1, 0, [][]byte{mod(tgt, 28, 0x01)}, seg), paramErr(44, 7)},
		{"stream segment", xcList(1, 0, [][]byte{tgt}, mod(seg, 0, 0x03)), sense.UnsupportedSegmentDescriptorType(48)},
		{"segment length", func() []byte {
			s := append(mod(seg, 3, 0x1C), 0, 0, 0, 0)
			return xcList(1, 0, [][]byte{tgt}, s)
		}(), paramErr(50, 7)},
		{"segment reserved bits", xcList(1, 0, [][]byte{tgt}, mod(seg, 1, 0x04)), paramErr(49, 7)},
		{"segment reserved bytes", xcList(1, 0, [][]byte{tgt}, mod(seg, 8, 0x01)), paramErr(56, 7)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := parseXCopyList(tc.p)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if len(tc.p) > 16 && (len(l.targets) != 1 || len(l.segments) != 1) {
					t.Fatalf("parsed %d targets, %d segments", len(l.targets), len(l.segments))
				}
				return
			}
			e, ok := sense.As(err)
			if !ok || !e.Is(tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if tc.want.Field != nil && (e.Field == nil || *e.Field != *tc.want.Field) {
				t.Fatalf("field %+v, want %+v", e.Field, tc.want.Field)
			}
		})
	}
}

// newCopyDevice maps two LUs of 256 blocks at LUNs 0 and 1.
func newCopyDevice(t *testing.T, bs0, bs1 uint32) (*Device, [2]*LU, [2]*memStore) {
	t.Helper()
	d, lu0, st0 := newTestDevice(t, 256, bs0)
	st1 := newMemStore(256 * int(bs1))
	lu1, err := NewLU(LUConfig{Backstore: st1, BlockSize: bs1, NAA: NewNAA([]byte(t.Name() + "/1"))})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddLU(1, lu1); err != nil {
		t.Fatal(err)
	}
	clearUA(t, d, nexusA, 0)
	clearUA(t, d, nexusA, 1)
	return d, [2]*LU{lu0, lu1}, [2]*memStore{st0, st1}
}

func runXCopy(t *testing.T, d *Device, n *Nexus, p []byte) result {
	t.Helper()
	return run(t, d, n, 0, xcopyCDB(len(p)), p, uint32(len(p)))
}

var (
	copyTargetUnreachable = checkCond(sense.KeyCopyAborted, 0x0D, 0x02)
	copyAbortedPlain      = checkCond(sense.KeyCopyAborted, 0x00, 0x00)
)

func TestExtendedCopy(t *testing.T) {
	d, lus, st := newCopyDevice(t, 512, 512)
	t0, t1 := xcTarget(lus[0].cfg.NAA, 512), xcTarget(lus[1].cfg.NAA, 512)
	src := fill(16*512, 0x40)
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 16), src, 16*512).check(t, good)

	// Between LUs: 16 blocks from LUN 0 LBA 0 to LUN 1 LBA 100.
	runXCopy(t, d, nexusA, xcList(1, listIDDisabled, [][]byte{t0, t1}, xcSeg(0, 1, 16, 0, 100))).check(t, good)
	if got := st[1].bytes(100*512, 16*512); !bytes.Equal(got, src) {
		t.Fatal("copy to LUN 1 differs")
	}
	// Byte offsets (0Ah): 1000 bytes from byte 10 of LBA 1 to byte 300 of LBA 200.
	runXCopy(t, d, nexusA, xcList(1, listIDDisabled, [][]byte{t0, t1}, xcSegBytes(0, 1, 1000, 1, 200, 10, 300))).check(t, good)
	if got := st[1].bytes(200*512+300, 1000); !bytes.Equal(got, src[512+10:512+1010]) {
		t.Fatal("byte-offset copy differs")
	}
	if got := st[1].bytes(200*512, 300); !bytes.Equal(got, make([]byte, 300)) {
		t.Fatal("byte-offset copy wrote before its offset")
	}
	// Overlapping within one LU, destination after the source: like memmove.
	runXCopy(t, d, nexusA, xcList(1, listIDDisabled, [][]byte{t0}, xcSeg(0, 0, 16, 0, 4))).check(t, good)
	if got := st[0].bytes(4*512, 16*512); !bytes.Equal(got, src) {
		t.Fatal("overlapping copy corrupted the data")
	}
	// Zero-length parameter list and zero blocks copy nothing.
	run(t, d, nexusA, 0, xcopyCDB(0), nil, 0).check(t, good)
	runXCopy(t, d, nexusA, xcList(1, listIDDisabled, [][]byte{t0}, xcSeg(0, 0, 0, 0, 1))).check(t, good)

	otherNAA := NewNAA([]byte("no such LU"))
	tests := []struct {
		name string
		p    []byte
		want want
	}{
		{"unknown designator", xcList(1, 0, [][]byte{t0, xcTarget(otherNAA, 512)}, xcSeg(0, 1, 1, 0, 0)), copyTargetUnreachable},
		{"destination index", xcList(1, 0, [][]byte{t0}, xcSeg(0, 1, 1, 0, 0)), copyAbortedPlain},
		{"source beyond the end", xcList(1, 0, [][]byte{t0}, xcSeg(0, 0, 2, 255, 0)), copyAbortedPlain},
		{"destination beyond the end", xcList(1, 0, [][]byte{t0}, xcSeg(0, 0, 2, 0, 255)), copyAbortedPlain},
		{"huge LBA", xcList(1, 0, [][]byte{t0}, xcSeg(0, 0, 1, 0, ^uint64(0))), copyAbortedPlain},
		{"block length mismatch", xcList(1, 0, [][]byte{xcTarget(lus[0].cfg.NAA, 4096)}, xcSeg(0, 0, 1, 0, 1)), want{status: StatusCheckCondition, key: sense.KeyIllegalRequest, asc: 0x26}},
		{"offset beyond the block", xcList(1, 0, [][]byte{t0}, xcSegBytes(0, 0, 1, 0, 1, 512, 0)), want{status: StatusCheckCondition, key: sense.KeyIllegalRequest, asc: 0x26}},
		{"parameter list over the limit", nil, checkCond(sense.KeyIllegalRequest, 0x1A, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.p == nil {
				run(t, d, nexusA, 0, xcopyCDB(xcopyHeaderLen+xcopyMaxDescListLen+1), nil, 0).check(t, tc.want)
				return
			}
			r := runXCopy(t, d, nexusA, tc.p)
			r.check(t, tc.want)
			if tc.want.key == sense.KeyCopyAborted && tc.want.asc == 0 {
				// The segment pointer names the failing field (SD=0).
				if e, _ := sense.As(r.err); e.Field == nil {
					t.Fatal("no segment pointer")
				}
			}
		})
	}
}

func TestExtendedCopyObeysMasking(t *testing.T) {
	d, lus, st := newCopyDevice(t, 512, 512)
	t0, t1 := xcTarget(lus[0].cfg.NAA, 512), xcTarget(lus[1].cfg.NAA, 512)
	secret := fill(512, 0x70)
	run(t, d, nexusA, 1, cdb10(opWrite10, 0, 0, 1), secret, 512).check(t, good)
	// nexusA sees LUN 0 only; nexusB sees LUN 1 read-only as its LUN 0 and LUN 0 as 1.
	if err := d.SetMasking(&Masking{Initiators: map[string][]LUNMapping{
		nexusA.Initiator: {{LUN: 0, As: 0}},
		nexusB.Initiator: {{LUN: 1, As: 0, ReadOnly: true}, {LUN: 0, As: 1}},
	}}); err != nil {
		t.Fatal(err)
	}
	clearUA(t, d, nexusA, 0)
	clearUA(t, d, nexusB, 0)
	runXCopy(t, d, nexusA, xcList(1, 0, [][]byte{t0, t1}, xcSeg(0, 1, 1, 0, 0))).check(t, copyTargetUnreachable)
	runXCopy(t, d, nexusA, xcList(1, 0, [][]byte{t1, t0}, xcSeg(0, 1, 1, 0, 5))).check(t, copyTargetUnreachable)
	if got := st[0].bytes(5*512, 512); !bytes.Equal(got, make([]byte, 512)) {
		t.Fatal("data of a masked LU was copied")
	}
	// nexusB may read its read-only LU and write LUN 0, not the reverse.
	runXCopy(t, d, nexusB, xcList(1, 0, [][]byte{t1, t0}, xcSeg(0, 1, 1, 0, 5))).check(t, good)
	if got := st[0].bytes(5*512, 512); !bytes.Equal(got, secret) {
		t.Fatal("allowed copy did not arrive")
	}
	runXCopy(t, d, nexusB, xcList(1, 0, [][]byte{t0, t1}, xcSeg(0, 1, 1, 0, 0))).check(t, writeProt)
}

func TestReceiveCopyResults(t *testing.T) {
	d, lus, _ := newCopyDevice(t, 512, 512)
	t0 := xcTarget(lus[0].cfg.NAA, 512)

	r := run(t, d, nexusA, 0, rcrCDB(saOperatingParameters, 0, 1024), nil, 1024)
	r.check(t, good)
	op := r.data
	if binary.BigEndian.Uint32(op[0:4]) != uint32(len(op)-4) || binary.BigEndian.Uint16(op[8:10]) != xcopyMaxTargetDescs ||
		binary.BigEndian.Uint16(op[10:12]) != xcopyMaxSegments || binary.BigEndian.Uint32(op[12:16]) != xcopyMaxDescListLen ||
		binary.BigEndian.Uint32(op[16:20]) != xcopyMaxSegmentBytes || !bytes.Equal(op[44:44+op[43]], xcopyDescTypes) {
		t.Fatalf("operating parameters % x", op)
	}

	status := func(id byte) result { return run(t, d, nexusA, 0, rcrCDB(saCopyStatus, id, 1024), nil, 1024) }
	status(7).check(t, invalidField(2, 7))
	// HOLD: the status of list 7 is kept until read once.
	runXCopy(t, d, nexusA, xcList(7, listIDHold, [][]byte{t0}, xcSeg(0, 0, 4, 0, 8), xcSeg(0, 0, 2, 0, 20))).check(t, good)
	r = status(7)
	r.check(t, good)
	if want := []byte{0, 0, 0, 8, 0x01, 0, 2, 0x00, 0, 0, 0x0C, 0x00}; !bytes.Equal(r.data, want) {
		t.Fatalf("copy status % x, want % x", r.data, want)
	}
	run(t, d, nexusA, 0, rcrCDB(saFailedSegmentDetails, 7, 1024), nil, 1024).check(t, invalidField(2, 7))
	status(7).check(t, invalidField(2, 7))
	// Without HOLD nothing is kept.
	runXCopy(t, d, nexusA, xcList(8, listIDNoHold, [][]byte{t0}, xcSeg(0, 0, 1, 0, 8))).check(t, good)
	status(8).check(t, invalidField(2, 7))

	// A failed copy keeps its status and the sense in FAILED SEGMENT DETAILS.
	runXCopy(t, d, nexusA, xcList(9, listIDHold, [][]byte{t0}, xcSeg(0, 0, 1, 0, 256))).check(t, copyAbortedPlain)
	r = run(t, d, nexusA, 0, rcrCDB(saFailedSegmentDetails, 9, 1024), nil, 1024)
	r.check(t, good)
	if len(r.data) < 60+sense.FixedLen || r.data[56] != byte(StatusCheckCondition) || r.data[60+2]&0x0F != byte(sense.KeyCopyAborted) {
		t.Fatalf("failed segment details % x", r.data)
	}
	r = status(9)
	r.check(t, good)
	if r.data[4] != 0x02 {
		t.Fatalf("copy status of a failed copy % x", r.data)
	}
	// Other nexuses have their own list identifiers; a nexus loss forgets.
	runXCopy(t, d, nexusA, xcList(10, listIDHold, [][]byte{t0}, xcSeg(0, 0, 1, 0, 8))).check(t, good)
	clearUA(t, d, nexusB, 0)
	run(t, d, nexusB, 0, rcrCDB(saCopyStatus, 10, 1024), nil, 1024).check(t, invalidField(2, 7))
	d.NexusLoss(nexusA)
	clearUA(t, d, nexusA, 0)
	status(10).check(t, invalidField(2, 7))

	// A list identifier in use by a running copy.
	m := &lus[0].copies
	r1, err := m.begin(*nexusA, 3, listIDHold)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.begin(*nexusA, 3, listIDNoHold); !sense.OperationInProgress().Is(err) {
		t.Fatalf("reuse of a running list ID: %v", err)
	}
	if _, err := m.begin(*nexusB, 3, listIDHold); err != nil {
		t.Fatalf("another nexus' list ID: %v", err)
	}
	m.end(r1, nil)
	if _, err := m.begin(*nexusA, 3, listIDHold); err != nil {
		t.Fatalf("list ID of a finished copy: %v", err)
	}
}

func TestThirdPartyCopyVPD(t *testing.T) {
	d, _, _ := newCopyDevice(t, 512, 512)
	r := run(t, d, nexusA, 0, inquiryCDB(true, vpdThirdPartyCopy, 1024), nil, 1024)
	r.check(t, good)
	p := r.data
	types := map[uint16][]byte{}
	for o := 4; o+4 <= len(p); {
		n := int(binary.BigEndian.Uint16(p[o+2 : o+4]))
		if n%4 != 0 || o+4+n > len(p) {
			t.Fatalf("descriptor at %d of length %d in % x", o, n, p)
		}
		types[binary.BigEndian.Uint16(p[o:o+2])] = p[o : o+4+n]
		o += 4 + n
	}
	cmds := types[0x0001]
	if cmds == nil || !bytes.Equal(cmds[5:5+cmds[4]], []byte{0x83, 1, 0, 0x84, 4, 0, 1, 3, 4}) {
		t.Fatalf("supported commands % x", cmds)
	}
	if pd := types[0x0004]; pd == nil || binary.BigEndian.Uint16(pd[8:10]) != xcopyMaxTargetDescs || binary.BigEndian.Uint32(pd[12:16]) != xcopyMaxDescListLen {
		t.Fatalf("parameter data % x", pd)
	}
	if g := types[0x8001]; g == nil || binary.BigEndian.Uint32(g[12:16]) != xcopyMaxSegmentBytes {
		t.Fatalf("general copy operations % x", g)
	}
	// The standard INQUIRY data says there is a copy manager (3PC).
	r = run(t, d, nexusA, 0, inquiryCDB(false, 0, 96), nil, 96)
	if r.data[5]&0x08 == 0 {
		t.Fatal("3PC not set")
	}
}

func FuzzParseXCopyList(f *testing.F) {
	var naa [16]byte
	naa[0] = 0x60
	tgt := xcTarget(naa, 512)
	f.Add(xcList(1, listIDHold, [][]byte{tgt}, xcSeg(0, 0, 1, 0, 1)))
	f.Add(xcList(2, listIDDisabled, [][]byte{tgt, tgt}, xcSegBytes(0, 1, 4000, 3, 9, 7, 11), xcSeg(1, 0, 2, 5, 6)))
	f.Add(xcHeader(0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, p []byte) {
		l, err := parseXCopyList(p)
		if err != nil {
			if _, ok := sense.As(err); !ok {
				t.Fatalf("error %v is not sense data", err)
			}
			return
		}
		if len(l.targets) > xcopyMaxTargetDescs || len(l.segments) > xcopyMaxSegments {
			t.Fatalf("limits exceeded: %d targets, %d segments", len(l.targets), len(l.segments))
		}
	})
}

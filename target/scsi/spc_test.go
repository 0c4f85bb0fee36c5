package scsi

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/blockport/blockport/target/scsi/sense"
)

func inquiryCDB(evpd bool, page byte, alloc uint16) []byte {
	c := []byte{opInquiry, 0, page, byte(alloc >> 8), byte(alloc), 0}
	if evpd {
		c[1] = 1
	}
	return c
}

func TestStandardInquiry(t *testing.T) {
	d, _, _ := newTestDevice(t, 100, 512, func(c *LUConfig) { c.Product = "Test Disk" })
	// INQUIRY works with a unit attention pending and does not clear it.
	r := run(t, d, nexusA, 0, inquiryCDB(false, 0, 260), nil, 260)
	r.check(t, good)
	b := r.data
	if len(b) != stdInquiryLen || int(b[4]) != len(b)-5 {
		t.Fatalf("length %d, additional length %d", len(b), b[4])
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"peripheral", b[0], byte(0x00)},
		{"version", b[2], byte(0x06)},
		{"HiSup+RDF", b[3], byte(0x12)},
		{"CmdQue", b[7], byte(0x02)},
		{"vendor", string(b[8:16]), "BLOCKPRT"},
		{"product", string(b[16:32]), "Test Disk       "},
		{"revision", string(b[32:36]), "0001"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	var descs []uint16
	for i := 58; i < 74; i += 2 {
		descs = append(descs, binary.BigEndian.Uint16(b[i:]))
	}
	for _, v := range []uint16{versionSAM5, versionISCSI, versionSPC4, versionSBC3} {
		if !slices.Contains(descs, v) {
			t.Errorf("version descriptor %04x missing from %04x", v, descs)
		}
	}
	// Allocation length truncates; 511 and 512 give the same data
	// (libiscsi Inquiry.AllocLength).
	for _, alloc := range []uint16{0, 5, 36, 255, 511, 512} {
		r := run(t, d, nexusA, 0, inquiryCDB(false, 0, alloc), nil, uint32(alloc))
		r.check(t, good)
		if want := min(int(alloc), stdInquiryLen); len(r.data) != want || !bytes.Equal(r.data, b[:want]) {
			t.Fatalf("alloc %d: got %d bytes", alloc, len(r.data))
		}
	}
	// The unit attention is still there.
	run(t, d, nexusA, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, checkCond(sense.KeyUnitAttention, 0x29, 0x00))
}

func TestInquiryErrorsAndMissingLUN(t *testing.T) {
	d, _, _ := newTestDevice(t, 100, 512)
	clearUA(t, d, nexusA, 0)
	tests := []struct {
		name string
		lun  uint64
		cdb  []byte
		want want
	}{
		{"EVPD=0 with page code", 0, inquiryCDB(false, 0x80, 255), invalidField(2, 7)},
		{"CMDDT", 0, []byte{opInquiry, 0x02, 0, 0, 255, 0}, invalidField(1, 1)},
		{"unsupported VPD page", 0, inquiryCDB(true, 0x86, 255), invalidField(2, 7)},
		{"missing LUN, VPD 0x83", 5, inquiryCDB(true, 0x83, 255), invalidField(2, 7)},
		{"missing LUN, TUR", 5, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, luNotSupp},
		{"missing LUN, unknown opcode", 5, []byte{0xFF, 0, 0, 0, 0, 0}, luNotSupp},
		{"missing LUN, READ10", 5, cdb10(opRead10, 0, 0, 1), luNotSupp},
		{"unknown opcode", 0, []byte{0xFF, 0, 0, 0, 0, 0}, invalidOpcode},
		{"empty CDB", 0, []byte{}, invalidOpcode},
		{"CDB shorter than the command", 0, []byte{opRead10, 0, 0}, invalidField(3, -1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, d, nexusA, tt.lun, tt.cdb, nil, 255).check(t, tt.want)
		})
	}
	r := run(t, d, nexusA, 9, inquiryCDB(false, 0, 96), nil, 96)
	r.check(t, good)
	if r.data[0] != 0x7F {
		t.Fatalf("missing LUN peripheral byte %02x, want 7F", r.data[0])
	}
	r = run(t, d, nexusA, 9, inquiryCDB(true, 0, 96), nil, 96)
	r.check(t, good)
	if !bytes.Equal(r.data, []byte{0x7F, 0, 0, 1, 0}) {
		t.Fatalf("missing LUN supported pages % x", r.data)
	}
}

func TestVPDPages(t *testing.T) {
	naa := NewNAA([]byte("vpd"))
	d, _, _ := newTestDevice(t, 100, 4096, func(c *LUConfig) { c.NAA = naa; c.Serial = "S123" })
	clearUA(t, d, nexusA, 0)
	get := func(page byte) []byte {
		t.Helper()
		r := run(t, d, nexusA, 0, inquiryCDB(true, page, 1024), nil, 1024)
		r.check(t, good)
		if r.data[0] != 0 || r.data[1] != page || int(binary.BigEndian.Uint16(r.data[2:]))+4 != len(r.data) {
			t.Fatalf("page %02x header % x (len %d)", page, r.data[:4], len(r.data))
		}
		return r.data
	}
	sup := get(vpdSupportedPages)[4:]
	if !bytes.Equal(sup, []byte{0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2}) {
		t.Fatalf("supported pages % x", sup)
	}
	// libiscsi Inquiry.SupportedVPD: every listed page can be read.
	for _, p := range sup {
		get(p)
	}
	if s := string(get(vpdUnitSerial)[4:]); s != "S123" {
		t.Fatalf("serial %q", s)
	}
	id := get(vpdDeviceID)[4:]
	if !bytes.Equal(id[:4], []byte{0x01, 0x03, 0x00, 16}) || !bytes.Equal(id[4:20], naa[:]) {
		t.Fatalf("NAA designator % x", id[:20])
	}
	t10 := id[20 : 24+int(id[23])] // the target port's designators follow (alua_test.go)
	if !bytes.Equal(t10[:2], []byte{0x02, 0x01}) || int(t10[3]) != len(t10)-4 || string(t10[4:]) != "BLOCKPRTS123" {
		t.Fatalf("T10 designator % x", t10)
	}
	bl := get(vpdBlockLimits)
	if len(bl) != 64 || bl[3] != 0x3C {
		t.Fatalf("block limits length %d", len(bl))
	}
	if g := binary.BigEndian.Uint16(bl[6:]); g != 1 {
		t.Errorf("optimal granularity %d blocks, want 1 for 4096-byte blocks", g)
	}
	if m := binary.BigEndian.Uint32(bl[8:]); m != 2048 {
		t.Errorf("max transfer %d blocks, want 2048", m)
	}
	if !bytes.Equal(bl[20:36], make([]byte, 16)) {
		t.Errorf("unmap fields not zero: % x", bl[20:36])
	}
	bc := get(vpdBlockCharacteristic)
	if binary.BigEndian.Uint16(bc[4:]) != 1 {
		t.Errorf("rotation rate % x", bc[4:6])
	}
	if lbp := get(vpdProvisioning); !bytes.Equal(lbp[4:], make([]byte, 4)) {
		t.Errorf("provisioning % x", lbp)
	}
}

func modeSense6(dbd bool, pc, page, subpage byte, alloc uint8) []byte {
	c := []byte{opModeSense6, 0, pc<<6 | page, subpage, alloc, 0}
	if dbd {
		c[1] = 0x08
	}
	return c
}

func modeSense10(dbd, llbaa bool, pc, page byte, alloc uint16) []byte {
	c := make([]byte, 10)
	c[0], c[2] = opModeSense10, pc<<6|page
	if dbd {
		c[1] |= 0x08
	}
	if llbaa {
		c[1] |= 0x10
	}
	binary.BigEndian.PutUint16(c[7:], alloc)
	return c
}

// pagesOf splits mode pages after the header and block descriptors.
func pagesOf(t *testing.T, b []byte) map[byte][]byte {
	t.Helper()
	m := map[byte][]byte{}
	for len(b) > 0 {
		if len(b) < 2 || len(b) < 2+int(b[1]) {
			t.Fatalf("truncated page % x", b)
		}
		m[b[0]&0x3F] = b[:2+b[1]]
		b = b[2+b[1]:]
	}
	return m
}

func TestModeSense(t *testing.T) {
	d, _, _ := newTestDevice(t, 1000, 512, func(c *LUConfig) { c.WriteCache = true })
	clearUA(t, d, nexusA, 0)

	r := run(t, d, nexusA, 0, modeSense6(false, pcCurrent, modePageAllPages, 0, 255), nil, 255)
	r.check(t, good)
	b := r.data
	if int(b[0]) != len(b)-1 || b[2] != dspDPOFUA || b[3] != 8 {
		t.Fatalf("header % x (len %d)", b[:4], len(b))
	}
	bd := b[4:12]
	if binary.BigEndian.Uint32(bd) != 1000 || !bytes.Equal(bd[5:8], []byte{0, 2, 0}) {
		t.Fatalf("block descriptor % x", bd)
	}
	pages := pagesOf(t, b[12:])
	if len(pages) != 3 || pages[modePageCaching][2]&0x04 == 0 {
		t.Fatalf("pages %v", pages)
	}
	ctl := pages[modePageControl]
	if ctl[2]&0x04 != 0 || ctl[2]>>5 != 0 || ctl[3]>>4 != 1 || ctl[4]&0x08 != 0 {
		t.Fatalf("control page % x", ctl)
	}
	if pages[modePageInfoExc][2]&0x08 == 0 {
		t.Fatal("DEXCPT not set")
	}

	// CONTROL alone equals the one in ALL PAGES (libiscsi ModeSense6.Control).
	r = run(t, d, nexusA, 0, modeSense6(true, pcCurrent, modePageControl, 0, 255), nil, 255)
	r.check(t, good)
	if r.data[3] != 0 || !bytes.Equal(r.data[4:], ctl) {
		t.Fatalf("control page alone % x", r.data)
	}
	// Changeable: D_SENSE and SWP (MODE SELECT, modeselect.go).
	r = run(t, d, nexusA, 0, modeSense6(true, pcChangeable, modePageControl, 0, 255), nil, 255)
	r.check(t, good)
	if !bytes.Equal(r.data[4:], []byte{0x0A, 0x0A, 0x04, 0, 0x08, 0, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("changeable control % x", r.data)
	}
	// Residuals: allocation length 4 returns at most 4 bytes.
	r = run(t, d, nexusA, 0, modeSense6(false, pcCurrent, modePageAllPages, 0, 4), nil, 4)
	r.check(t, good)
	if len(r.data) != 4 {
		t.Fatalf("alloc 4 gave %d bytes", len(r.data))
	}

	// MODE SENSE(10) with a long LBA block descriptor.
	r = run(t, d, nexusA, 0, modeSense10(false, true, pcDefault, modePageCaching, 1000), nil, 1000)
	r.check(t, good)
	b = r.data
	if int(binary.BigEndian.Uint16(b)) != len(b)-2 || b[4]&1 != 1 || binary.BigEndian.Uint16(b[6:]) != 16 ||
		binary.BigEndian.Uint64(b[8:]) != 1000 || binary.BigEndian.Uint32(b[20:]) != 512 || b[24] != modePageCaching {
		t.Fatalf("MODE SENSE(10) % x", b)
	}
	r = run(t, d, nexusA, 0, modeSense10(false, false, pcCurrent, modePageAllPages, 1000), nil, 1000)
	r.check(t, good)
	if binary.BigEndian.Uint16(r.data[6:]) != 8 || r.data[4] != 0 {
		t.Fatalf("MODE SENSE(10) short descriptor % x", r.data[:8])
	}

	for _, tt := range []struct {
		name string
		cdb  []byte
		want want
	}{
		{"saved values", modeSense6(false, pcSaved, modePageAllPages, 0, 255), checkCond(sense.KeyIllegalRequest, 0x39, 0)},
		{"unknown page", modeSense6(false, pcCurrent, 0x19, 0, 255), invalidField(2, 5)},
		{"unknown subpage", modeSense6(false, pcCurrent, modePageControl, 1, 255), invalidField(3, 7)},
		{"all subpages", modeSense6(false, pcCurrent, modePageAllPages, 0xFF, 255), good},
		{"reserved bit", []byte{opModeSense6, 0x10, 0x3F, 0, 255, 0}, invalidField(1, 7)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			run(t, d, nexusA, 0, tt.cdb, nil, 255).check(t, tt.want)
		})
	}
}

func TestModeSenseReadOnly(t *testing.T) {
	d, _, _ := newTestDevice(t, 100, 512, func(c *LUConfig) { c.ReadOnly = true })
	clearUA(t, d, nexusA, 0)
	r := run(t, d, nexusA, 0, modeSense6(true, pcCurrent, modePageCaching, 0, 255), nil, 255)
	r.check(t, good)
	if r.data[2] != dspWP|dspDPOFUA || r.data[3] != 0 || pagesOf(t, r.data[4:])[modePageCaching][2]&0x04 != 0 {
		t.Fatalf("read-only MODE SENSE % x", r.data)
	}
}

func reportLUNsCDB(sel byte, alloc uint32) []byte {
	c := make([]byte, 12)
	c[0], c[2] = opReportLUNs, sel
	binary.BigEndian.PutUint32(c[6:], alloc)
	return c
}

func TestReportLUNs(t *testing.T) {
	d, lu0, _ := newTestDevice(t, 100, 512)
	for _, lun := range []uint64{255, 256, 7, MaxLUN} {
		lu, err := NewLU(LUConfig{Backstore: newMemStore(4096), NAA: NewNAA([]byte{byte(lun), byte(lun >> 8)})})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AddLU(lun, lu); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.AddLU(7, lu0); err == nil {
		t.Fatal("AddLU accepted a taken LUN")
	}
	if err := d.AddLU(MaxLUN+1, lu0); err == nil {
		t.Fatal("AddLU accepted a LUN over MaxLUN")
	}
	if got := d.LUNs(); !slices.Equal(got, []uint64{0, 7, 255, 256, MaxLUN}) {
		t.Fatalf("LUNs() = %v", got)
	}
	// REPORT LUNS works on a LUN with no LU and with a UA pending.
	for _, lun := range []uint64{0, 99} {
		r := run(t, d, nexusA, lun, reportLUNsCDB(0, 4096), nil, 4096)
		r.check(t, good)
		want := []byte{0, 0, 0, 40, 0, 0, 0, 0,
			0x00, 0, 0, 0, 0, 0, 0, 0,
			0x00, 7, 0, 0, 0, 0, 0, 0,
			0x00, 255, 0, 0, 0, 0, 0, 0,
			0x41, 0x00, 0, 0, 0, 0, 0, 0,
			0x7F, 0xFF, 0, 0, 0, 0, 0, 0}
		if !bytes.Equal(r.data, want) {
			t.Fatalf("REPORT LUNS =\n% x\nwant\n% x", r.data, want)
		}
	}
	r := run(t, d, nexusA, 0, reportLUNsCDB(0, 16), nil, 16)
	r.check(t, good)
	if len(r.data) != 16 || r.data[3] != 40 {
		t.Fatalf("truncated REPORT LUNS % x", r.data)
	}
	r = run(t, d, nexusA, 0, reportLUNsCDB(1, 64), nil, 64)
	r.check(t, good)
	if !bytes.Equal(r.data, make([]byte, 8)) {
		t.Fatalf("well-known LUNs % x", r.data)
	}
	run(t, d, nexusA, 0, reportLUNsCDB(0, 15), nil, 15).check(t, invalidField(6, 7))
	run(t, d, nexusA, 0, reportLUNsCDB(3, 64), nil, 64).check(t, invalidField(2, 7))
	// A huge allocation length does not make a huge buffer.
	cmd := &Command{Nexus: nexusA, LUN: 0, CDB: reportLUNsCDB(2, 0xFFFFFFFF), ExpectedLength: 0xFFFFFFFF}
	if err := d.Prepare(cmd); err != nil || cmd.TransferLength != maxReportLUNsLen {
		t.Fatalf("Prepare: %v, TransferLength %d", err, cmd.TransferLength)
	}
	if _, err := d.RemoveLU(7); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RemoveLU(7); err == nil {
		t.Fatal("RemoveLU of an unmapped LUN succeeded")
	}
}

func TestRequestSense(t *testing.T) {
	d, _, _ := newTestDevice(t, 100, 512)
	// The pending POWER ON is returned as data with GOOD, and cleared.
	r := run(t, d, nexusA, 0, []byte{opRequestSense, 0, 0, 0, 252, 0}, nil, 252)
	r.check(t, good)
	e, err := sense.Parse(r.data)
	if err != nil || len(r.data) != sense.FixedLen || e.Key != sense.KeyUnitAttention || e.Code() != 0x2900 {
		t.Fatalf("REQUEST SENSE % x: %v", r.data, err)
	}
	// Then NO SENSE, in descriptor format when DESC=1.
	r = run(t, d, nexusA, 0, []byte{opRequestSense, 1, 0, 0, 252, 0}, nil, 252)
	r.check(t, good)
	if !bytes.Equal(r.data, []byte{0x72, 0, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("NO SENSE descriptor % x", r.data)
	}
	run(t, d, nexusA, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, good)
	// On a LUN with no LU: LOGICAL UNIT NOT SUPPORTED as data.
	r = run(t, d, nexusA, 4, []byte{opRequestSense, 0, 0, 0, 18, 0}, nil, 18)
	r.check(t, good)
	if e, _ := sense.Parse(r.data); e == nil || e.Code() != 0x2500 {
		t.Fatalf("REQUEST SENSE on missing LUN % x", r.data)
	}
	run(t, d, nexusA, 0, []byte{opRequestSense, 2, 0, 0, 18, 0}, nil, 18).check(t, invalidField(1, 7))
}

func rsocCDB(opts, op byte, sa uint16, alloc uint32) []byte {
	c := make([]byte, 12)
	c[0], c[1], c[2], c[3] = opMaintenanceIn, saReportSupportedOps, opts, op
	binary.BigEndian.PutUint16(c[4:], sa)
	binary.BigEndian.PutUint32(c[6:], alloc)
	return c
}

func TestReportSupportedOpcodes(t *testing.T) {
	d, _, _ := newTestDevice(t, 100, 512)
	clearUA(t, d, nexusA, 0)
	// libiscsi Read10.DpoFua etc.: DPO/FUA bits in the usage data.
	for _, op := range []byte{opRead10, opWrite16, opVerify10, opWriteAndVerify10} {
		r := run(t, d, nexusA, 0, rsocCDB(1, op, 0, 512), nil, 512)
		r.check(t, good)
		if r.data[1]&0x07 != 3 || r.data[4] != op || r.data[5]&0x10 == 0 {
			t.Fatalf("op %02x: % x", op, r.data)
		}
		if n := binary.BigEndian.Uint16(r.data[2:]); int(n) != len(r.data)-4 {
			t.Fatalf("op %02x: CDB size %d, data %d", op, n, len(r.data))
		}
	}
	r := run(t, d, nexusA, 0, rsocCDB(2, opServiceActionIn16, saReadCapacity16, 512), nil, 512)
	r.check(t, good)
	if r.data[1] != 3 || r.data[4] != opServiceActionIn16 || r.data[5] != saReadCapacity16 || len(r.data) != 20 {
		t.Fatalf("READ CAPACITY(16) usage % x", r.data)
	}
	r = run(t, d, nexusA, 0, rsocCDB(1, 0x50, 0, 512), nil, 512) // XDWRITE(10): obsolete, never supported
	r.check(t, good)
	if r.data[1]&0x07 != 1 {
		t.Fatalf("unsupported opcode reported % x", r.data)
	}
	// All commands, with timeouts descriptors.
	r = run(t, d, nexusA, 0, rsocCDB(0x80, 0, 0, 4096), nil, 4096)
	r.check(t, good)
	offered := 0 // a memory LU cannot SANITIZE BLOCK ERASE (sanitize.go)
	for _, o := range ops {
		if o.supportedOn(d.LU(0)) {
			offered++
		}
	}
	if n := binary.BigEndian.Uint32(r.data); int(n) != len(r.data)-4 || int(n) != offered*20 {
		t.Fatalf("all commands length %d for %d bytes", n, len(r.data))
	}
	run(t, d, nexusA, 0, rsocCDB(1, opServiceActionIn16, 0, 512), nil, 512).check(t, invalidField(3, 7))
	run(t, d, nexusA, 0, rsocCDB(2, opRead10, 0, 512), nil, 512).check(t, invalidField(3, 7))
	run(t, d, nexusA, 0, rsocCDB(5, opRead10, 0, 512), nil, 512).check(t, invalidField(2, 2))
}

// TestDispatchTable checks the table's internal consistency.
func TestDispatchTable(t *testing.T) {
	seen := map[[2]uint16]bool{}
	for _, o := range ops {
		k := [2]uint16{uint16(o.op), o.sa}
		if seen[k] {
			t.Errorf("%s: duplicate opcode/service action", o.name)
		}
		seen[k] = true
		if o.usage[0] != o.op || (o.hasSA && uint16(o.usage[1]&serviceActionBitsMask) != o.sa) {
			t.Errorf("%s: usage data does not start with the opcode/service action", o.name)
		}
		if o.parse == nil || o.exec == nil || o.name == "" {
			t.Errorf("%s: incomplete row", o.name)
		}
		if want := map[byte]int{0: 6, 1: 10, 2: 10, 4: 16, 5: 12}[o.op>>5]; want != o.cdbLen {
			t.Errorf("%s: CDB length %d, group code says %d", o.name, o.cdbLen, want)
		}
		if o.writes && !o.blockIO {
			t.Errorf("%s: writes but is not block I/O", o.name)
		}
	}
	cmd := &Command{Nexus: nexusA, CDB: cdb10(opRead10, 0, 0, 1)}
	d, _, _ := newTestDevice(t, 10, 512)
	clearUA(t, d, nexusA, 0)
	if cmd.Name() != "" || d.Prepare(cmd) != nil || cmd.Name() != "READ(10)" {
		t.Fatalf("Name() = %q", cmd.Name())
	}
}

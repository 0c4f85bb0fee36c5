package scsi

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/blockport/blockport/target/scsi/sense"
)

func modeSelect6(length uint8) []byte { return []byte{opModeSelect6, 0x10, 0, 0, length, 0} }

// currentPages returns MODE SENSE(6) data for one page with DBD=1, as an
// initiator would fetch it before changing bits and sending it back.
func currentPage(t *testing.T, d *Device, page byte) []byte {
	t.Helper()
	r := run(t, d, nexusA, 0, []byte{opModeSense6, 0x08, page, 0, 255, 0}, nil, 255)
	r.check(t, good)
	p := append([]byte(nil), r.data...)
	p[0] = 0 // MODE DATA LENGTH is reserved in MODE SELECT
	p[2] &^= dspWP | dspDPOFUA
	return p
}

func TestModeSelect(t *testing.T) {
	d, lu, st := newTestDevice(t, 64, 512, func(c *LUConfig) { c.WriteCache = true })
	clearUA(t, d, nexusA, 0)
	clearUA(t, d, nexusB, 0)

	// Turn the write cache off: the cache is flushed, and writes become FUA.
	p := currentPage(t, d, modePageCaching)
	if p[4+2]&0x04 == 0 {
		t.Fatal("WCE is not set with write_cache")
	}
	p[4+2] &^= 0x04
	syncs := st.syncs.Load()
	run(t, d, nexusA, 0, modeSelect6(uint8(len(p))), p, uint32(len(p))).check(t, good)
	if lu.modes.writeCache() || st.syncs.Load() == syncs {
		t.Fatal("WCE=0 did not apply or did not flush")
	}
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 1), make([]byte, 512), 512).check(t, good)
	if st.fuaWrites.Load() != 1 {
		t.Fatal("a write with WCE=0 on a write-back backstore was not FUA")
	}
	// The other nexus is told; the one that changed it is not.
	run(t, d, nexusB, 0, tur, nil, 0).check(t, checkCond(sense.KeyUnitAttention, 0x2A, 0x01))
	run(t, d, nexusA, 0, tur, nil, 0).check(t, good)

	// D_SENSE=1 makes sense data descriptor format.
	c := currentPage(t, d, modePageControl)
	c[4+2] |= 0x04
	run(t, d, nexusA, 0, []byte{opModeSelect10, 0x10, 0, 0, 0, 0, 0, 0, byte(len(c) + 4), 0}, mode6to10(c), uint32(len(c)+4)).check(t, good)
	cmd := &Command{Nexus: nexusA, CDB: cdb10(opRead10, 0, 1000, 1), ExpectedLength: 512}
	if _, sb := StatusOf(d.Prepare(cmd)); len(sb) == 0 || sb[0] != 0x72 {
		t.Fatalf("sense after D_SENSE=1 is % x, want descriptor format", sb)
	}

	// SWP=1 write-protects the LU for every nexus.
	c = currentPage(t, d, modePageControl)
	c[4+4] |= 0x08
	run(t, d, nexusA, 0, modeSelect6(uint8(len(c))), c, uint32(len(c))).check(t, good)
	clearUA(t, d, nexusB, 0)
	run(t, d, nexusB, 0, cdb10(opWrite10, 0, 0, 1), make([]byte, 512), 512).check(t, writeProt)
	if ms := run(t, d, nexusB, 0, []byte{opModeSense6, 0x08, 0x3F, 0, 255, 0}, nil, 255); ms.data[2]&dspWP == 0 {
		t.Fatal("WP is not reported with SWP=1")
	}

	bad := func(mutate func(p []byte)) []byte {
		p := currentPage(t, d, modePageCaching)
		mutate(p)
		return p
	}
	tests := []struct {
		name string
		cdb  []byte
		data []byte
		want want
	}{
		{"empty list", modeSelect6(0), nil, good},
		{"SP is not supported", []byte{opModeSelect6, 0x11, 0, 0, 0, 0}, nil, invalidField(1, 0)},
		{"short header", modeSelect6(3), []byte{0, 0, 0}, checkCond(sense.KeyIllegalRequest, 0x1A, 0)},
		{"unchangeable bit (RCD)", modeSelect6(24), bad(func(p []byte) { p[4+2] |= 0x01 }), checkCond(sense.KeyIllegalRequest, 0x26, 0)},
		{"wrong page length", modeSelect6(24), bad(func(p []byte) { p[4+1] = 0x10 }), checkCond(sense.KeyIllegalRequest, 0x26, 0)},
		{"unknown page", modeSelect6(24), bad(func(p []byte) { p[4] = 0x19 }), checkCond(sense.KeyIllegalRequest, 0x26, 0)},
		{"truncated page", modeSelect6(10), bad(func(p []byte) {})[:10], checkCond(sense.KeyIllegalRequest, 0x1A, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run(t, d, nexusA, 0, tc.cdb, tc.data, uint32(len(tc.data))).check(t, tc.want)
		})
	}
	// A block descriptor that restates the capacity is accepted; another is not.
	hdr := []byte{0, 0, 0, 8}
	bd := lu.appendBlockDescriptor(nil, false, false)
	run(t, d, nexusA, 0, modeSelect6(12), append(hdr, bd...), 12).check(t, good)
	bd[3]++
	run(t, d, nexusA, 0, modeSelect6(12), append(hdr, bd...), 12).check(t, checkCond(sense.KeyIllegalRequest, 0x26, 0))
}

// TestModeSelectWCEOffWaitsForWrites: a write that began with WCE=1 (not
// made stable by itself) and is still in the backstore when an initiator
// turns WCE off is covered by the flush MODE SELECT makes: MODE SELECT
// answers only after that write returned and the flush followed it. A
// failed flush leaves WCE as it was.
func TestModeSelectWCEOffWaitsForWrites(t *testing.T) {
	d, lu, gs := gatedDevice(t, func(c *LUConfig) { c.WriteCache = true })
	clearUA(t, d, nexusA, 0)
	p := currentPage(t, d, modePageCaching)
	p[4+2] &^= 0x04

	wrote := make(chan result, 1)
	go func() { wrote <- run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 1), make([]byte, 512), 512) }()
	<-gs.entered
	selected := make(chan result, 1)
	go func() { selected <- run(t, d, nexusA, 0, modeSelect6(uint8(len(p))), p, uint32(len(p))) }()
	select {
	case r := <-selected:
		t.Fatalf("MODE SELECT WCE=0 answered (status %#x) with a cached write still in the backstore", r.status)
	case <-time.After(100 * time.Millisecond):
	}
	close(gs.gate)
	(<-wrote).check(t, good)
	(<-selected).check(t, good)
	if gs.syncsCalled.Load() == 0 || gs.doneAtSync.Load() != 1 {
		t.Fatalf("flush before the write returned (%d syncs, %d writes done at the last)", gs.syncsCalled.Load(), gs.doneAtSync.Load())
	}

	// Back on, then a failing flush: the MODE SELECT fails, WCE stays on.
	p[4+2] |= 0x04
	run(t, d, nexusA, 0, modeSelect6(uint8(len(p))), p, uint32(len(p))).check(t, good)
	gs.failSync.Store(true)
	p[4+2] &^= 0x04
	if r := run(t, d, nexusA, 0, modeSelect6(uint8(len(p))), p, uint32(len(p))); r.status != StatusCheckCondition {
		t.Fatalf("MODE SELECT with a failing flush: status %#x", r.status)
	}
	if !lu.modes.writeCache() {
		t.Fatal("a failed MODE SELECT turned WCE off")
	}
}

// mode6to10 turns MODE SELECT(6) parameter data into the (10) form.
func mode6to10(p []byte) []byte {
	h := make([]byte, 8)
	h[2] = p[2]
	binary.BigEndian.PutUint16(h[6:8], uint16(p[3]))
	return append(h, p[4:]...)
}

// FuzzModeSelect feeds arbitrary parameter lists to MODE SELECT(6) and
// (10): nothing may panic, and a refused list must change nothing.
func FuzzModeSelect(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0x08, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0x80, 0, 0, 0, 2, 0, 0x0A, 0x0A, 0x04, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0}, true)
	f.Fuzz(func(t *testing.T, params []byte, ten bool) {
		if len(params) > 512 {
			params = params[:512]
		}
		d, lu, _ := newTestDevice(t, 64, 512)
		clearUA(t, d, nexusA, 0)
		before := [3]bool{lu.modes.writeCache(), lu.modes.descSense(), lu.modes.writeProtect()}
		cdb := modeSelect6(uint8(min(len(params), 255)))
		if ten {
			cdb = []byte{opModeSelect10, 0x10, 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint16(cdb[7:9], uint16(len(params)))
		}
		r := run(t, d, nexusA, 0, cdb, params, uint32(len(params)))
		after := [3]bool{lu.modes.writeCache(), lu.modes.descSense(), lu.modes.writeProtect()}
		if r.status != StatusGood && before != after {
			t.Fatalf("a refused MODE SELECT changed the mode parameters: %v -> %v", before, after)
		}
		if r.status != StatusGood && r.status != StatusCheckCondition {
			t.Fatalf("status %v", r.status)
		}
	})
}

func TestReports(t *testing.T) {
	d, _, _ := newTestDevice(t, 64, 512)
	clearUA(t, d, nexusA, 0)
	rdd10 := run(t, d, nexusA, 0, []byte{opReadDefectData10, 0, 0x18, 0, 0, 0, 0, 0, 32, 0}, nil, 32)
	rdd10.check(t, good)
	if !bytes.Equal(rdd10.data, []byte{0, 0x18, 0, 0}) {
		t.Fatalf("READ DEFECT DATA(10) % x", rdd10.data)
	}
	rdd12 := run(t, d, nexusA, 0, []byte{opReadDefectData12, 0x0D, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0}, nil, 64)
	if !bytes.Equal(rdd12.data, []byte{0, 0x0D, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("READ DEFECT DATA(12) % x", rdd12.data)
	}
	tmf := run(t, d, nexusA, 0, []byte{opMaintenanceIn, saReportSupportedTM, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0}, nil, 4)
	if !bytes.Equal(tmf.data, []byte{tmfSupport, 0, 0, 0}) {
		t.Fatalf("REPORT SUPPORTED TMFS % x", tmf.data)
	}
	tmf = run(t, d, nexusA, 0, []byte{opMaintenanceIn, saReportSupportedTM, 0x80, 0, 0, 0, 0, 0, 0, 16, 0, 0}, nil, 16)
	if len(tmf.data) != 16 || tmf.data[3] != 0x0C {
		t.Fatalf("REPORT SUPPORTED TMFS REPD=1 % x", tmf.data)
	}
	run(t, d, nexusA, 0, []byte{opMaintenanceIn, saReportSupportedTM, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0}, nil, 3).check(t, invalidField(6, 7))

	logs := run(t, d, nexusA, 0, []byte{opLogSense, 0, 0x00, 0, 0, 0, 0, 0, 64, 0}, nil, 64)
	if !bytes.Equal(logs.data, []byte{0, 0, 0, 1, 0}) {
		t.Fatalf("LOG SENSE supported pages % x", logs.data)
	}
	// A fully provisioned LU has no Logical Block Provisioning page.
	run(t, d, nexusA, 0, []byte{opLogSense, 0, 0x0C, 0, 0, 0, 0, 0, 64, 0}, nil, 64).check(t, invalidField(2, 5))

	// REPORT SUPPORTED OPERATION CODES lists every new command.
	all := run(t, d, nexusA, 0, rsocCDB(0, 0, 0, 4096), nil, 4096)
	all.check(t, good)
	for _, op := range []byte{opCompareAndWrite, opOrWrite16, opWriteAtomic16, opModeSelect6, opModeSelect10, opPreventAllow, opLogSense, opReadDefectData10, opReadDefectData12} {
		found := false
		for i := 4; i+8 <= len(all.data); i += 8 {
			found = found || all.data[i] == op
		}
		if !found {
			t.Errorf("opcode %02Xh not reported", op)
		}
	}
}

// thinStore is a memStore that reports its space (spaceReporter).
type thinStore struct{ *memStore }

func (thinStore) Space() (int64, int64, error) { return 512 * 10, 512 * 54, nil }

func TestLogSenseProvisioning(t *testing.T) {
	st := thinStore{newMemStore(64 * 512)}
	lu, err := NewLU(LUConfig{Backstore: st, NAA: NewNAA([]byte(t.Name()))})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDevice("test")
	if err := d.AddLU(0, lu); err != nil {
		t.Fatal(err)
	}
	clearUA(t, d, nexusA, 0)
	r := run(t, d, nexusA, 0, []byte{opLogSense, 0, 0x0C, 0, 0, 0, 0, 0, 64, 0}, nil, 64)
	r.check(t, good)
	if len(r.data) != 4+24 || r.data[0] != 0x0C || binary.BigEndian.Uint32(r.data[8:12]) != 54 || binary.BigEndian.Uint32(r.data[20:24]) != 10 {
		t.Fatalf("provisioning page % x", r.data)
	}
}

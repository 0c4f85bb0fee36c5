package scsi

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/blockport/blockport/target/scsi/alua"
	"github.com/blockport/blockport/target/scsi/sense"
)

var (
	standby     = checkCond(sense.KeyNotReady, 0x04, 0x0B)
	unavailable = checkCond(sense.KeyNotReady, 0x04, 0x0C)
	aluaChanged = checkCond(sense.KeyUnitAttention, 0x2A, 0x06)
)

// nexusOn is n seen through the portal group tpgt.
func nexusOn(n *Nexus, tpgt uint16) *Nexus {
	c := *n
	c.TPGT = tpgt
	return &c
}

func rtpgCDB(format byte, alloc uint32) []byte {
	return cdb12(opMaintenanceIn, format<<5|saReportTPG, 0, alloc)
}

func stpgCDB(n uint32) []byte { return cdb12(opMaintenanceOut, saSetTPG, 0, n) }

// twoGroups returns a device whose group 1 is active/optimized and group 2
// standby, with nexusA on group 1 and nexusB on group 2 past their first UA.
func twoGroups(t *testing.T) (*Device, *Nexus, *Nexus) {
	t.Helper()
	d, _, _ := newTestDevice(t, 64, 512)
	if err := d.SetPortGroups([]alua.GroupConfig{{ID: 1, State: alua.ActiveOptimized}, {ID: 2, State: alua.Standby}}); err != nil {
		t.Fatal(err)
	}
	a, b := nexusOn(nexusA, 1), nexusOn(nexusB, 2)
	clearUA(t, d, a, 0)
	// TEST UNIT READY is refused through the standby port, after the UA.
	run(t, d, b, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, checkCond(sense.KeyUnitAttention, 0x29, 0))
	return d, a, b
}

// TestALUACommandRules checks SPC-5 5.16.2.4's per-state command lists
// through a standby and an unavailable port.
func TestALUACommandRules(t *testing.T) {
	d, a, b := twoGroups(t)
	prIn := []byte{opPersistentReserveIn, 0, 0, 0, 0, 0, 0, 0, 8, 0}
	for _, tc := range []struct {
		name          string
		cdb           []byte
		edtl          uint32
		inStandby     want
		inUnavailable want
	}{
		{"READ(10)", cdb10(opRead10, 0, 0, 1), 512, standby, unavailable},
		{"WRITE(10)", cdb10(opWrite10, 0, 0, 1), 512, standby, unavailable},
		{"TEST UNIT READY", []byte{opTestUnitReady, 0, 0, 0, 0, 0}, 0, standby, unavailable},
		{"READ CAPACITY(10)", cdb10(opReadCapacity10, 0, 0, 0), 8, standby, unavailable},
		{"SYNCHRONIZE CACHE(10)", cdb10(opSynchronizeCache10, 0, 0, 0), 0, standby, unavailable},
		{"REPORT SUPPORTED OPERATION CODES", cdb12(opMaintenanceIn, saReportSupportedOps, 0, 512), 512, standby, unavailable},
		{"INQUIRY", []byte{opInquiry, 0, 0, 0, 96, 0}, 96, good, good},
		{"INQUIRY VPD 0x83", inquiryCDB(true, vpdDeviceID, 512), 512, good, good},
		{"REPORT LUNS", cdb12(opReportLUNs, 0, 0, 64), 64, good, good},
		{"REQUEST SENSE", []byte{opRequestSense, 0, 0, 0, 18, 0}, 18, good, good},
		{"REPORT TARGET PORT GROUPS", rtpgCDB(0, 512), 512, good, good},
		{"SET TARGET PORT GROUPS (empty)", stpgCDB(0), 0, good, good},
		{"MODE SENSE(6)", []byte{opModeSense6, 0, 0x3F, 0, 255, 0}, 255, good, unavailable},
		{"LOG SENSE", []byte{opLogSense, 0, 0, 0, 0, 0, 0, 0, 64, 0}, 64, good, unavailable},
		{"PERSISTENT RESERVE IN", prIn, 8, good, unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The active/optimized port runs everything that standby runs.
			if tc.inStandby == good {
				run(t, d, a, 0, tc.cdb, nil, tc.edtl).check(t, good)
			}
			run(t, d, b, 0, tc.cdb, make([]byte, tc.edtl), tc.edtl).check(t, tc.inStandby)
		})
	}
	if _, err := d.ports().Set([]alua.Change{{ID: 2, State: alua.Unavailable}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cdb  []byte
		edtl uint32
		w    want
	}{
		{"READ(10)", cdb10(opRead10, 0, 0, 1), 512, unavailable},
		{"MODE SENSE(6)", []byte{opModeSense6, 0, 0x3F, 0, 255, 0}, 255, unavailable},
		{"PERSISTENT RESERVE IN", prIn, 8, unavailable},
		{"INQUIRY", []byte{opInquiry, 0, 0, 0, 96, 0}, 96, good},
		{"REPORT TARGET PORT GROUPS", rtpgCDB(1, 512), 512, good},
	} {
		run(t, d, b, 0, tc.cdb, nil, tc.edtl).check(t, tc.w)
	}
	// The sense follows the LU's format like every other condition.
	r := run(t, d, b, 0, cdb10(opRead10, 0, 0, 1), nil, 512)
	if r.sense.Key != sense.KeyNotReady {
		t.Fatalf("sense %v", r.sense)
	}
}

func TestReportTargetPortGroups(t *testing.T) {
	d, a, b := twoGroups(t)
	want := []byte{0, 0, 0, 24,
		0x00, alua.SupportedBits, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
		0x02, alua.SupportedBits, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2}
	for _, n := range []*Nexus{a, b} {
		r := run(t, d, n, 0, rtpgCDB(0, 512), nil, 512)
		r.check(t, good)
		if !bytes.Equal(r.data, want) {
			t.Fatalf("RTPG\n got % x\nwant % x", r.data, want)
		}
	}
	r := run(t, d, a, 0, rtpgCDB(1, 512), nil, 512)
	r.check(t, good)
	if len(r.data) != 32 || r.data[4] != 0x10 || !bytes.Equal(r.data[8:], want[4:]) {
		t.Fatalf("extended RTPG % x", r.data)
	}
	// Allocation length cuts the data without an error (libiscsi
	// ReportTargetPortGroups.AllocLength).
	r = run(t, d, a, 0, rtpgCDB(0, 10), nil, 10)
	r.check(t, good)
	if !bytes.Equal(r.data, want[:10]) {
		t.Fatalf("RTPG cut to 10 bytes: % x", r.data)
	}
	run(t, d, a, 0, rtpgCDB(2, 512), nil, 512).check(t, invalidField(1, 7))
}

func TestSetTargetPortGroups(t *testing.T) {
	d, a, b := twoGroups(t)
	c := nexusOn(nexusA, 2) // a second nexus of initiator A, through group 2
	run(t, d, c, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, checkCond(sense.KeyUnitAttention, 0x29, 0))

	swap := []byte{0, 0, 0, 0, byte(alua.Standby), 0, 0, 1, byte(alua.ActiveOptimized), 0, 0, 2}
	run(t, d, b, 0, stpgCDB(uint32(len(swap))), swap, uint32(len(swap))).check(t, good)

	// SPC-5: every other nexus gets ASYMMETRIC ACCESS STATE CHANGED; the
	// one that asked does not.
	run(t, d, a, 0, cdb10(opRead10, 0, 0, 1), nil, 512).check(t, aluaChanged)
	run(t, d, a, 0, cdb10(opRead10, 0, 0, 1), nil, 512).check(t, standby)
	run(t, d, c, 0, cdb10(opRead10, 0, 0, 1), nil, 512).check(t, aluaChanged)
	run(t, d, c, 0, cdb10(opRead10, 0, 0, 1), nil, 512).check(t, good)
	run(t, d, b, 0, cdb10(opRead10, 0, 0, 1), nil, 512).check(t, good)

	r := run(t, d, b, 0, rtpgCDB(0, 512), nil, 512)
	r.check(t, good)
	if r.data[4] != byte(alua.Standby) || r.data[9] != alua.StatusExplicit || r.data[16] != byte(alua.ActiveOptimized) {
		t.Fatalf("RTPG after the swap % x", r.data)
	}

	// A change to the current state raises no unit attention.
	same := []byte{0, 0, 0, 0, byte(alua.Standby), 0, 0, 1}
	run(t, d, b, 0, stpgCDB(8), same, 8).check(t, good)
	run(t, d, c, 0, cdb10(opRead10, 0, 0, 1), nil, 512).check(t, good)

	paramField := func(off int) want {
		w := checkCond(sense.KeyIllegalRequest, 0x26, 0)
		w.field = &sense.FieldPointer{Byte: uint16(off), Bit: -1}
		return w
	}
	lengthErr := checkCond(sense.KeyIllegalRequest, 0x1A, 0)
	for _, tc := range []struct {
		name  string
		param []byte
		w     want
	}{
		{"unknown group", []byte{0, 0, 0, 0, 0, 0, 0, 9}, paramField(6)},
		{"offline", []byte{0, 0, 0, 0, byte(alua.Offline), 0, 0, 1}, paramField(4)},
		{"group twice", []byte{0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 1}, paramField(10)},
		{"partial descriptor", []byte{0, 0, 0, 0, 0, 0}, lengthErr},
	} {
		run(t, d, b, 0, stpgCDB(uint32(len(tc.param))), tc.param, uint32(len(tc.param))).check(t, tc.w)
	}
	// Less data-out than the parameter list length.
	run(t, d, b, 0, stpgCDB(8), swap[:4], 4).check(t, lengthErr)
	// Refused lists changed nothing.
	if s, _ := d.ports().State(1); s != alua.Standby {
		t.Fatalf("group 1 is %v after refused lists", s)
	}
	run(t, d, b, 0, stpgCDB(maxSetTPGParamLen+1), nil, 0).check(t, lengthErr)
}

// TestALUAInquiry: TPGS in standard INQUIRY, and VPD 0x83 with the LU's
// designators (the same through every port) and the port's own.
func TestALUAInquiry(t *testing.T) {
	d, a, b := twoGroups(t)
	r := run(t, d, a, 0, []byte{opInquiry, 0, 0, 0, 96, 0}, nil, 96)
	r.check(t, good)
	if tpgs := r.data[5] >> 4 & 3; tpgs != 3 {
		t.Fatalf("TPGS = %d, want 3 (implicit and explicit)", tpgs)
	}
	page := func(n *Nexus) []byte {
		r := run(t, d, n, 0, inquiryCDB(true, vpdDeviceID, 1024), nil, 1024)
		r.check(t, good)
		if int(binary.BigEndian.Uint16(r.data[2:4]))+4 != len(r.data) {
			t.Fatalf("page length %d for %d bytes", binary.BigEndian.Uint16(r.data[2:4]), len(r.data))
		}
		return r.data[4:]
	}
	type desig struct {
		codeSet, piv, assoc, typ byte
		value                    []byte
	}
	parse := func(body []byte) []desig {
		var out []desig
		for len(body) >= 4 {
			l := int(body[3])
			if 4+l > len(body) {
				t.Fatalf("designator overruns the page: % x", body)
			}
			out = append(out, desig{body[0] & 0x0F, body[1] >> 7, body[1] >> 4 & 3, body[1] & 0x0F, body[4 : 4+l]})
			body = body[4+l:]
		}
		if len(body) != 0 {
			t.Fatalf("trailing bytes % x", body)
		}
		return out
	}
	da, db := parse(page(a)), parse(page(b))
	if len(da) != 6 || len(db) != 6 {
		t.Fatalf("%d and %d designators, want 6", len(da), len(db))
	}
	for i := 0; i < 2; i++ { // LU designators: identical through both ports
		if da[i].assoc != 0 || !bytes.Equal(da[i].value, db[i].value) {
			t.Fatalf("LU designator %d differs: %+v %+v", i, da[i], db[i])
		}
	}
	for _, tc := range []struct {
		ds   []desig
		tpgt uint16
	}{{da, 1}, {db, 2}} {
		rel, tpg, port, dev := tc.ds[2], tc.ds[3], tc.ds[4], tc.ds[5]
		if rel.typ != 4 || rel.assoc != 1 || rel.piv != 1 || binary.BigEndian.Uint16(rel.value[2:]) != tc.tpgt {
			t.Errorf("relative target port designator %+v, want port %d", rel, tc.tpgt)
		}
		if tpg.typ != 5 || tpg.assoc != 1 || binary.BigEndian.Uint16(tpg.value[2:]) != tc.tpgt {
			t.Errorf("target port group designator %+v, want group %d", tpg, tc.tpgt)
		}
		name := string(bytes.TrimRight(port.value, "\x00"))
		if port.typ != 8 || port.assoc != 1 || port.codeSet != 3 || len(port.value)%4 != 0 ||
			name != nexusA.Target+",t,0x000"+string(rune('0'+tc.tpgt)) {
			t.Errorf("target port name %+v %q", port, name)
		}
		if dev.typ != 8 || dev.assoc != 2 || string(bytes.TrimRight(dev.value, "\x00")) != nexusA.Target {
			t.Errorf("target device name %+v", dev)
		}
	}
}

// TestDefaultPortGroup: a device nobody configured has group 1,
// active/optimized, and reports it.
func TestDefaultPortGroup(t *testing.T) {
	d, _, _ := newTestDevice(t, 64, 512)
	clearUA(t, d, nexusA, 0)
	r := run(t, d, nexusA, 0, rtpgCDB(0, 64), nil, 64)
	r.check(t, good)
	want := []byte{0, 0, 0, 12, 0, alua.SupportedBits, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1}
	if !bytes.Equal(r.data, want) {
		t.Fatalf("RTPG % x, want % x", r.data, want)
	}
	if err := d.SetPortGroups([]alua.GroupConfig{{ID: 1}, {ID: 1}}); err == nil {
		t.Fatal("SetPortGroups accepted a group twice")
	}
}

package scsi

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/blockport/blockport/target/scsi/sense"
)

// maskedDevice maps three LUs at 0, 1, 2 and masks them: A sees 0 and 1 as
// they are; B sees LUN 2 as 0, read-only; others see nothing.
func maskedDevice(t *testing.T, othersSeeAll bool) (*Device, []*memStore) {
	t.Helper()
	d := NewDevice("masked")
	var stores []*memStore
	for i := range 3 {
		st := newMemStore(64 * 512)
		lu, err := NewLU(LUConfig{Backstore: st, BlockSize: 512, NAA: NewNAA([]byte{byte(i)}), Serial: "M" + string(rune('0'+i))})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AddLU(uint64(i), lu); err != nil {
			t.Fatal(err)
		}
		stores = append(stores, st)
	}
	err := d.SetMasking(&Masking{
		Initiators: map[string][]LUNMapping{
			// Names compare case-insensitively.
			strings.ToUpper(nexusA.Initiator): {{LUN: 0, As: 0}, {LUN: 1, As: 1}},
			nexusB.Initiator:                  {{LUN: 2, As: 0, ReadOnly: true}},
		},
		OthersSeeAll: othersSeeAll,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, stores
}

func reportedLUNs(t *testing.T, d *Device, n *Nexus) []uint64 {
	t.Helper()
	r := run(t, d, n, 0, reportLUNsCDB(0, 4096), nil, 4096)
	r.check(t, good)
	count := binary.BigEndian.Uint32(r.data[0:4]) / 8
	var luns []uint64
	for i := range int(count) {
		luns = append(luns, uint64(binary.BigEndian.Uint16(r.data[8+8*i:])&0x3FFF))
	}
	return luns
}

func TestMaskingReportLUNs(t *testing.T) {
	nexusC := &Nexus{Initiator: "iqn.2024-01.org.example:c", Target: nexusA.Target, TPGT: 1}
	for _, tt := range []struct {
		name   string
		others bool
		n      *Nexus
		want   []uint64
	}{
		{"A sees its two LUNs", false, nexusA, []uint64{0, 1}},
		{"B sees LUN 2 renumbered", false, nexusB, []uint64{0}},
		{"unlisted sees nothing", false, nexusC, nil},
		{"unlisted sees all when open", true, nexusC, []uint64{0, 1, 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := maskedDevice(t, tt.others)
			if got := reportedLUNs(t, d, tt.n); !slices.Equal(got, tt.want) {
				t.Fatalf("REPORT LUNS = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMaskingEnforcedOnEveryCommand(t *testing.T) {
	d, stores := maskedDevice(t, false)
	tur := []byte{opTestUnitReady, 0, 0, 0, 0, 0}
	nexusC := &Nexus{Initiator: "iqn.2024-01.org.example:c", Target: nexusA.Target, TPGT: 1}

	// A LUN outside the nexus' view is not supported, even when the
	// device has an LU there: nothing bypasses the mask.
	run(t, d, nexusA, 2, tur, nil, 0).check(t, luNotSupp)
	run(t, d, nexusA, 2, read10(0, 1), nil, 512).check(t, luNotSupp)
	run(t, d, nexusC, 0, read10(0, 1), nil, 512).check(t, luNotSupp)
	run(t, d, nexusB, 1, tur, nil, 0).check(t, luNotSupp)
	if err := d.LUNReset(nexusA, 2); err == nil {
		t.Fatal("LUN RESET of a masked LUN succeeded")
	}

	// B's LUN 0 is the device's LUN 2, read-only.
	clearUA(t, d, nexusB, 0)
	stores[2].WriteAt(fill(512, 0xAB), 0, false)
	r := run(t, d, nexusB, 0, read10(0, 1), nil, 512)
	r.check(t, good)
	if r.data[0] != 0xAB {
		t.Fatalf("B read % x..., want the device's LUN 2", r.data[:4])
	}
	run(t, d, nexusB, 0, write10(0, 1), fill(512, 1), 512).check(t, writeProt)
	if stores[2].writes.Load() != 1 { // only the test's own write
		t.Fatal("a write through a read-only mapping reached the backstore")
	}
	// Nor can B change what the LU's other initiators see: reservations,
	// mode pages, the medium, ALUA states.
	register := make([]byte, 24)
	register[15] = 0x42 // SERVICE ACTION RESERVATION KEY
	for _, tt := range []struct {
		name string
		cdb  []byte
		out  []byte
	}{
		{"PERSISTENT RESERVE OUT(REGISTER)", []byte{opPersistentReserveOut, 0x00, 0, 0, 0, 0, 0, 0, 24, 0}, register},
		{"RESERVE(6)", []byte{opReserve6, 0, 0, 0, 0, 0}, nil},
		{"RESERVE(10)", []byte{opReserve10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil},
		{"MODE SELECT(6)", []byte{opModeSelect6, 0x10, 0, 0, 0, 0}, nil},
		{"MODE SELECT(10)", []byte{opModeSelect10, 0x10, 0, 0, 0, 0, 0, 0, 0, 0}, nil},
		{"START STOP UNIT", []byte{opStartStopUnit, 0, 0, 0, 0x02, 0}, nil},
	} {
		run(t, d, nexusB, 0, tt.cdb, tt.out, uint32(len(tt.out))).check(t, writeProt)
	}
	readKeys := []byte{opPersistentReserveIn, 0x00, 0, 0, 0, 0, 0, 0x10, 0x00, 0}
	if r := run(t, d, nexusB, 0, readKeys, nil, 4096); binary.BigEndian.Uint32(r.data[4:8]) != 0 {
		t.Fatalf("READ KEYS after a refused REGISTER lists % x", r.data[:8])
	}
	// The same RESERVE through a read-write mapping works.
	clearUA(t, d, nexusA, 1)
	run(t, d, nexusA, 1, []byte{opReserve6, 0, 0, 0, 0, 0}, nil, 0).check(t, good)
	run(t, d, nexusA, 1, []byte{opRelease6, 0, 0, 0, 0, 0}, nil, 0).check(t, good)

	// MODE SENSE tells B its view is write-protected (device-specific
	// parameter WP, SBC-4), and tells A, which maps LUN 0 read-write, not.
	modeSense6 := []byte{opModeSense6, 0x08, 0x3F, 0, 255, 0}
	if r := run(t, d, nexusB, 0, modeSense6, nil, 255); r.data[2]&0x80 == 0 {
		t.Fatalf("MODE SENSE through a read-only mapping: device-specific parameter %#x, want WP", r.data[2])
	}
	clearUA(t, d, nexusA, 0)
	if r := run(t, d, nexusA, 0, modeSense6, nil, 255); r.data[2]&0x80 != 0 {
		t.Fatalf("MODE SENSE through a read-write mapping: device-specific parameter %#x has WP", r.data[2])
	}

	// A writes its LUN 1 (device LUN 1).
	clearUA(t, d, nexusA, 1)
	run(t, d, nexusA, 1, write10(0, 1), fill(512, 7), 512).check(t, good)
	if got := stores[1].bytes(0, 1)[0]; got != 7 {
		t.Fatalf("write landed wrong: %x", got)
	}

	// Removing the mask opens every LUN again.
	if err := d.SetMasking(nil); err != nil {
		t.Fatal(err)
	}
	if got := reportedLUNs(t, d, nexusC); !slices.Equal(got, []uint64{0, 1, 2}) {
		t.Fatalf("unmasked REPORT LUNS = %v", got)
	}
}

func TestSetMaskingRejects(t *testing.T) {
	d := NewDevice("x")
	for _, m := range []*Masking{
		{Initiators: map[string][]LUNMapping{"iqn.a:x": {{LUN: 0, As: 1}, {LUN: 1, As: 1}}}},
		{Initiators: map[string][]LUNMapping{"iqn.a:x": {{LUN: MaxLUN + 1, As: 0}}}},
		{Initiators: map[string][]LUNMapping{"iqn.a:x": {{LUN: 0, As: MaxLUN + 1}}}},
		{Initiators: map[string][]LUNMapping{"iqn.a:x": nil, "IQN.A:X": nil}},
	} {
		if err := d.SetMasking(m); err == nil {
			t.Errorf("SetMasking(%+v) accepted", m)
		}
	}
}

func read10(lba uint32, n uint16) []byte  { return cdb10(opRead10, 0, lba, n) }
func write10(lba uint32, n uint16) []byte { return cdb10(opWrite10, 0, lba, n) }

// Only the initiators whose view of the LUNs changed hear of it.
func TestMaskingChangeTellsOnlyAffected(t *testing.T) {
	d, _ := maskedDevice(t, false)
	tur := []byte{opTestUnitReady, 0, 0, 0, 0, 0}
	clearUA(t, d, nexusA, 0)
	clearUA(t, d, nexusA, 1)
	clearUA(t, d, nexusB, 0)
	lunsChanged := checkCond(sense.KeyUnitAttention, 0x3F, 0x0E)

	// B's view changes (LUN 2 becomes read-write); A's does not.
	err := d.SetMasking(&Masking{Initiators: map[string][]LUNMapping{
		nexusA.Initiator: {{LUN: 0, As: 0}, {LUN: 1, As: 1}},
		nexusB.Initiator: {{LUN: 2, As: 0}, {LUN: 1, As: 1}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, d, nexusA, 0, tur, nil, 0).check(t, good)
	run(t, d, nexusB, 0, tur, nil, 0).check(t, lunsChanged)
	run(t, d, nexusB, 0, tur, nil, 0).check(t, good)

	// An LU removed from the device: only those who saw it hear of it.
	if _, err := d.RemoveLU(0); err != nil {
		t.Fatal(err)
	}
	run(t, d, nexusB, 0, tur, nil, 0).check(t, good)
	run(t, d, nexusA, 1, tur, nil, 0).check(t, lunsChanged)
}

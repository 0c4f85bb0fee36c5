package scsi

import (
	"testing"

	"github.com/blockport/blockport/target/scsi/sense"
)

var (
	noMedium       = checkCond(sense.KeyNotReady, 0x3A, 0)
	removalPrevent = checkCond(sense.KeyIllegalRequest, 0x53, 0x02)
)

func ssu(immed bool, powCond, flags byte) []byte {
	c := []byte{opStartStopUnit, 0, 0, 0, powCond<<4 | flags, 0}
	if immed {
		c[1] = 1
	}
	return c
}

const (
	ssuStart = 0x01
	ssuLoej  = 0x02
)

func TestRemovableMedium(t *testing.T) {
	d, _, st := newTestDevice(t, 64, 512, func(c *LUConfig) { c.Removable = true })
	clearUA(t, d, nexusA, 0)
	clearUA(t, d, nexusB, 0)
	tur := []byte{opTestUnitReady, 0, 0, 0, 0, 0}
	prevent := func(on byte) []byte { return []byte{opPreventAllow, 0, 0, 0, on, 0} }

	inq := run(t, d, nexusA, 0, []byte{opInquiry, 0, 0, 0, 96, 0}, nil, 96)
	if inq.data[1]&0x80 == 0 {
		t.Fatal("RMB is not set on a removable LU")
	}
	steps := []struct {
		name  string
		nexus *Nexus
		cdb   []byte
		want  want
	}{
		{"eject", nexusA, ssu(false, 0, ssuLoej), good},
		{"TUR without medium", nexusA, tur, noMedium},
		{"read without medium", nexusA, cdb10(opRead10, 0, 0, 1), noMedium},
		{"read capacity without medium", nexusA, []byte{opReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, noMedium},
		{"inquiry without medium", nexusA, []byte{opInquiry, 0, 0, 0, 36, 0}, good},
		{"mode sense without medium", nexusA, []byte{opModeSense6, 0, 0x3F, 0, 255, 0}, good},
		{"load", nexusA, ssu(false, 0, ssuLoej|ssuStart), good},
		{"TUR with medium", nexusA, tur, good},
		{"prevent", nexusA, prevent(1), good},
		{"eject prevented", nexusA, ssu(false, 0, ssuLoej), removalPrevent},
		{"eject prevented for the other nexus too", nexusB, ssu(false, 0, ssuLoej), removalPrevent},
		{"stop without LOEJ is fine", nexusB, ssu(false, 0, 0), good},
		{"power condition ignores LOEJ", nexusA, ssu(true, 1, ssuLoej), good},
		{"still loaded", nexusA, tur, good},
		{"PREVENT 2 is obsolete", nexusA, prevent(2), invalidField(4, 1)},
		{"allow", nexusA, prevent(0), good},
		{"eject allowed", nexusB, ssu(false, 0, ssuLoej), good},
		{"ejected for all", nexusA, tur, noMedium},
		{"load again", nexusB, ssu(false, 0, ssuLoej|ssuStart), good},
	}
	for _, s := range steps {
		run(t, d, s.nexus, 0, s.cdb, nil, 255).check(t, s.want)
	}
	if st.syncs.Load() == 0 {
		t.Fatal("a stop did not flush the cache")
	}
}

// TestPreventEnds: a prevention ends with its nexus, a LUN reset or a target reset.
func TestPreventEnds(t *testing.T) {
	events := []struct {
		name string
		do   func(d *Device)
	}{
		{"nexus loss", func(d *Device) { d.NexusLoss(nexusA) }},
		{"LUN reset", func(d *Device) { d.LUNReset(nexusA, 0) }},
		{"target reset", func(d *Device) { d.TargetReset(nexusB) }},
	}
	for _, ev := range events {
		t.Run(ev.name, func(t *testing.T) {
			d, _, _ := newTestDevice(t, 64, 512, func(c *LUConfig) { c.Removable = true })
			clearUA(t, d, nexusA, 0)
			clearUA(t, d, nexusB, 0)
			run(t, d, nexusA, 0, []byte{opPreventAllow, 0, 0, 0, 1, 0}, nil, 0).check(t, good)
			run(t, d, nexusB, 0, ssu(false, 0, ssuLoej), nil, 0).check(t, removalPrevent)
			ev.do(d)
			clearUA(t, d, nexusB, 0)
			run(t, d, nexusB, 0, ssu(false, 0, ssuLoej), nil, 0).check(t, good)
		})
	}
}

// TestNonRemovableIgnoresLoej: a fixed LU has no medium to eject.
func TestNonRemovableIgnoresLoej(t *testing.T) {
	d, _, _ := newTestDevice(t, 64, 512)
	clearUA(t, d, nexusA, 0)
	run(t, d, nexusA, 0, ssu(false, 0, ssuLoej), nil, 0).check(t, good)
	run(t, d, nexusA, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, good)
}

package scsi

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// LUNMapping makes one LU of a device visible to an initiator.
type LUNMapping struct {
	LUN      uint64 // the device's LUN, where AddLU put the LU
	As       uint64 // the number the initiator addresses it by
	ReadOnly bool   // writes through this mapping answer DATA PROTECT
}

// Masking is the LUN masking of a device: which logical units each
// initiator reaches, under which numbers, and whether it may write.
// Initiators are iSCSI names, compared case-insensitively (RFC 3722
// normalizes them to lower case).
type Masking struct {
	Initiators map[string][]LUNMapping
	// OthersSeeAll lets an initiator that is not listed see every LUN under
	// its own number; otherwise it sees none.
	OthersSeeAll bool
}

// lunView is what one initiator sees, indexed by the number it uses.
type lunView struct {
	all  bool                  // every LUN as numbered, read-write
	byAs map[uint64]LUNMapping // when !all
}

// compiledMasking is a Masking checked and indexed for the hot path.
// Immutable once built.
type compiledMasking struct {
	views  map[string]*lunView // lower-case initiator name -> view
	others *lunView
}

var (
	viewAll  = &lunView{all: true}
	viewNone = &lunView{byAs: map[uint64]LUNMapping{}}
)

func (m *compiledMasking) view(initiator string) *lunView {
	if v, ok := m.views[strings.ToLower(initiator)]; ok {
		return v
	}
	return m.others
}

// SetMasking installs LUN masking; nil removes it, so that every initiator
// sees every LUN (the default). A mapping may name a LUN that has no LU
// (yet): it then answers as an unmapped LUN. The initiators whose view
// changed are told (REPORTED LUNS DATA HAS CHANGED); the others are not.
func (d *Device) SetMasking(m *Masking) error {
	var cm *compiledMasking
	if m != nil {
		cm = &compiledMasking{views: make(map[string]*lunView, len(m.Initiators)), others: viewNone}
		if m.OthersSeeAll {
			cm.others = viewAll
		}
		for name, maps := range m.Initiators {
			key := strings.ToLower(name)
			if _, dup := cm.views[key]; dup {
				return fmt.Errorf("scsi: %s: masking lists initiator %q twice", d.name, name)
			}
			v := &lunView{byAs: make(map[uint64]LUNMapping, len(maps))}
			for _, lm := range maps {
				if lm.LUN > MaxLUN || lm.As > MaxLUN {
					return fmt.Errorf("scsi: %s: initiator %q: LUN %d as %d out of range 0..%d", d.name, name, lm.LUN, lm.As, MaxLUN)
				}
				if _, dup := v.byAs[lm.As]; dup {
					return fmt.Errorf("scsi: %s: initiator %q sees two LUNs as %d", d.name, name, lm.As)
				}
				v.byAs[lm.As] = lm
			}
			cm.views[key] = v
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.masking
	d.masking = cm
	d.lunsChangedLocked(func(n Nexus) bool { return !sameView(old.viewOf(n.Initiator), cm.viewOf(n.Initiator)) })
	return nil
}

// viewOf is view with nil masking meaning that every LUN is visible.
func (m *compiledMasking) viewOf(initiator string) *lunView {
	if m == nil {
		return viewAll
	}
	return m.view(initiator)
}

// sameView reports whether two views show the same LUNs, numbered and
// protected alike.
func sameView(a, b *lunView) bool {
	if a.all || b.all {
		return a.all == b.all
	}
	return maps.Equal(a.byAs, b.byAs)
}

// resolve finds the LU that nexus n addresses as lun and whether its
// mapping is read-only; lu is nil for a LUN the nexus cannot see.
func (d *Device) resolve(n *Nexus, lun uint64) (lu *LU, readOnly bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.masking == nil || n == nil {
		if d.masking != nil {
			return nil, false // no nexus, no access
		}
		return d.lus[lun], false
	}
	v := d.masking.view(n.Initiator)
	if v.all {
		return d.lus[lun], false
	}
	lm, ok := v.byAs[lun]
	if !ok {
		return nil, false
	}
	return d.lus[lm.LUN], lm.ReadOnly
}

// visibleLUNs lists, in ascending order, the numbers under which nexus n
// sees a logical unit (REPORT LUNS).
func (d *Device) visibleLUNs(n *Nexus) []uint64 {
	d.mu.RLock()
	var luns []uint64
	switch {
	case d.masking == nil:
		for l := range d.lus {
			luns = append(luns, l)
		}
	case n == nil:
	default:
		v := d.masking.view(n.Initiator)
		if v.all {
			for l := range d.lus {
				luns = append(luns, l)
			}
			break
		}
		for as, lm := range v.byAs {
			if d.lus[lm.LUN] != nil {
				luns = append(luns, as)
			}
		}
	}
	d.mu.RUnlock()
	slices.Sort(luns)
	return luns
}

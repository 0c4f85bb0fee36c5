package scsi

import (
	"context"
	"sync"

	"github.com/blockport/blockport/target/scsi/sense"
)

// opPreventAllow is PREVENT ALLOW MEDIUM REMOVAL (SBC-4).
const opPreventAllow = 0x1E

// mediaState is the removable medium of an LU: whether it is loaded, and
// which I_T nexuses prevent its removal. On a non-removable LU the medium
// is always loaded.
type mediaState struct {
	mu       sync.Mutex
	ejected  bool           // guarded by mu
	prevents map[Nexus]bool // guarded by mu; nexuses with PREVENT=1
}

// present reports whether the medium is loaded.
func (m *mediaState) present() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.ejected
}

// prevented reports whether any nexus prevents medium removal: SBC-4 makes
// the prevention a property of the LU held on behalf of each nexus that asked.
func (m *mediaState) prevented() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.prevents) > 0
}

func (m *mediaState) setPrevent(n Nexus, prevent bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !prevent {
		delete(m.prevents, n)
		return
	}
	if m.prevents == nil {
		m.prevents = make(map[Nexus]bool)
	}
	m.prevents[n] = true
}

// allow ends the prevention of one nexus (its I_T nexus loss), or of every
// nexus when n is nil (a logical unit reset or hard reset). SPC-5 / SBC-4:
// those events end a PREVENT ALLOW MEDIUM REMOVAL prevention.
func (m *mediaState) allow(n *Nexus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n == nil {
		m.prevents = nil
		return
	}
	delete(m.prevents, *n)
}

// loadOrEject changes the medium state unless removal is prevented.
func (m *mediaState) loadOrEject(load bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.prevents) > 0 {
		// SBC-4 START STOP UNIT: LOEJ with the medium removal prevented.
		return sense.MediumRemovalPrevented()
	}
	m.ejected = !load
	return nil
}

// readyFor reports whether cmd can run on lu now: a removable LU with no
// medium fails every command that needs one with NOT READY / MEDIUM NOT
// PRESENT.
func (lu *LU) readyFor(op *opDesc) error {
	if op.anyLUN {
		return nil // INQUIRY, REPORT LUNS, REQUEST SENSE always run
	}
	if lu.cfg.Removable && !op.noMedium && !lu.media.present() {
		return sense.MediumNotPresent()
	}
	return nil
}

// PREVENT ALLOW MEDIUM REMOVAL (SBC-4): PREVENT 00b allows removal, 01b
// prevents it for this I_T nexus; 10b and 11b are obsolete (medium changer).
func parsePreventAllow(lu *LU, cmd *Command) error {
	c := cmd.CDB
	if c[4]&0xFC != 0 || c[4]&0x03 > 1 {
		return sense.InvalidFieldInCDB(4, 1)
	}
	cmd.args.start = c[4]&0x01 != 0 // reused: the PREVENT bit
	return nil
}

func execPreventAllow(ctx context.Context, d *Device, cmd *Command) (int, error) {
	cmd.lu.media.setPrevent(*cmd.Nexus, cmd.args.start)
	return 0, nil
}

// execStartStopUnit runs START STOP UNIT (SBC-4). A POWER CONDITION other
// than 0h only changes the power condition, which Blockport does not model,
// and ignores START and LOEJ. With LOEJ=1 a removable LU loads (START=1)
// or ejects (START=0) its medium unless removal is prevented. A stop
// flushes the cache first unless NO_FLUSH is set.
func execStartStopUnit(ctx context.Context, d *Device, cmd *Command) (int, error) {
	a := &cmd.args
	lu := cmd.lu
	if a.powCond != 0 {
		return 0, nil
	}
	if !a.start && !a.noFlush {
		if err := lu.store.Sync(); err != nil {
			return 0, sense.WriteFault().WithCause(err)
		}
	}
	if a.loej && lu.cfg.Removable {
		return 0, lu.media.loadOrEject(a.start)
	}
	return 0, nil
}

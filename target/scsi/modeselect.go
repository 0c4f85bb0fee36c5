package scsi

import (
	"context"
	"encoding/binary"
	"sync/atomic"

	"github.com/blockport/blockport/target/scsi/sense"
)

// MODE SELECT opcodes (SPC-5).
const (
	opModeSelect6  = 0x15
	opModeSelect10 = 0x55
)

// modeState holds the mode parameters MODE SELECT can change. They are not
// saved (PS=0): a restart brings back the configured defaults.
type modeState struct {
	wce   atomic.Bool // caching page WCE
	dSens atomic.Bool // control page D_SENSE: descriptor format sense data
	swp   atomic.Bool // control page SWP: software write protect of the whole LU
}

func (m *modeState) init(writeCache bool) { m.wce.Store(writeCache) }

func (m *modeState) writeCache() bool   { return m.wce.Load() }
func (m *modeState) descSense() bool    { return m.dSens.Load() }
func (m *modeState) writeProtect() bool { return m.swp.Load() }

// writeThrough reports whether a write must reach stable storage before
// GOOD although its CDB has FUA=0: the backstore caches writes (configured
// write_cache) but an initiator turned WCE off with MODE SELECT (SBC-4:
// WCE=0 means GOOD only once the data is on the medium).
func (lu *LU) writeThrough() bool { return lu.cfg.WriteCache && !lu.modes.writeCache() }

// MODE SELECT(6) and MODE SELECT(10) (SPC-5): PF (bit 4) and SP (bit 0)
// in byte 1, the parameter list length in byte 4 or bytes 7-8.
func parseModeSelect(lu *LU, cmd *Command) error {
	c := cmd.CDB
	a := &cmd.args
	a.ten = c[0] == opModeSelect10
	if c[1]&0xEE != 0 {
		return sense.InvalidFieldInCDB(1, 7)
	}
	if c[1]&0x01 != 0 {
		// SP=1: Blockport cannot save parameters (SPC-5).
		return sense.InvalidFieldInCDB(1, 0)
	}
	var length uint32
	if a.ten {
		length = uint32(binary.BigEndian.Uint16(c[7:9]))
	} else {
		length = uint32(c[4])
	}
	a.alloc = length
	if length > 0 {
		cmd.Dir = DirWrite
		cmd.TransferLength = int(length)
	}
	return nil
}

func execModeSelect(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	a := &cmd.args
	if a.alloc == 0 {
		return 0, nil // SPC-5: an empty parameter list is not an error
	}
	if len(cmd.Data) < int(a.alloc) {
		return 0, sense.ParameterListLengthError()
	}
	changed, err := lu.applyModeParameters(cmd.Data[:a.alloc], a.ten)
	if err != nil {
		return 0, err
	}
	if changed {
		// SPC-5: the other I_T nexuses learn of the change by a unit attention.
		self := *cmd.Nexus
		lu.ua.establish(sense.ModeParametersChanged, func(n Nexus) bool { return n != self })
	}
	return 0, nil
}

// applyModeParameters checks a whole MODE SELECT parameter list and, only if
// every part of it is acceptable, applies it. It reports whether a value changed.
func (lu *LU) applyModeParameters(p []byte, ten bool) (bool, error) {
	hdrLen := 4
	if ten {
		hdrLen = 8
	}
	if len(p) < hdrLen {
		return false, sense.ParameterListLengthError()
	}
	var bdLen int
	if ten {
		bdLen = int(binary.BigEndian.Uint16(p[6:8]))
	} else {
		bdLen = int(p[3])
	}
	if len(p) < hdrLen+bdLen {
		return false, sense.ParameterListLengthError()
	}
	// The block descriptor may only restate the capacity and block length.
	if bdLen > 0 {
		long := ten && p[4]&0x01 != 0
		want := lu.appendBlockDescriptor(nil, long, false)
		if bdLen != len(want) {
			lenField := 3 // BLOCK DESCRIPTOR LENGTH
			if ten {
				lenField = 6
			}
			return false, sense.InvalidFieldInParameterList(lenField, -1)
		}
		bd := p[hdrLen : hdrLen+bdLen]
		for i := range bd {
			// Zero NUMBER OF BLOCKS / BLOCK LENGTH keep the current values.
			if bd[i] != want[i] && bd[i] != 0 {
				return false, sense.InvalidFieldInParameterList(hdrLen+i, -1)
			}
		}
	}
	wce, dsense, swp := lu.modes.writeCache(), lu.modes.descSense(), lu.modes.writeProtect()
	for off := hdrLen + bdLen; off < len(p); {
		if len(p)-off < 2 {
			return false, sense.ParameterListLengthError()
		}
		code := p[off] & 0x3F
		if p[off]&0x40 != 0 {
			// SPF=1: a subpage; Blockport has none.
			return false, sense.InvalidFieldInParameterList(off, 6)
		}
		cur := lu.appendModePage(nil, code, pcCurrent)
		if len(cur) == 0 {
			return false, sense.InvalidFieldInParameterList(off, 5)
		}
		if int(p[off+1]) != len(cur)-2 {
			return false, sense.InvalidFieldInParameterList(off+1, -1)
		}
		if len(p)-off < len(cur) {
			return false, sense.ParameterListLengthError()
		}
		page := p[off : off+len(cur)]
		mask := lu.appendModePage(nil, code, pcChangeable)
		// Byte 0 bit 7 (PS) is reserved in MODE SELECT; every other bit
		// that is not changeable must keep its current value.
		for i := 1; i < len(page); i++ {
			if diff := (page[i] ^ cur[i]) &^ mask[i]; diff != 0 {
				return false, sense.InvalidFieldInParameterList(off+i, 7-leadingZeros8(diff))
			}
		}
		switch code {
		case modePageCaching:
			wce = page[2]&0x04 != 0
		case modePageControl:
			dsense = page[2]&0x04 != 0
			swp = page[4]&0x08 != 0
		}
		off += len(cur)
	}
	changed := wce != lu.modes.writeCache() || dsense != lu.modes.descSense() || swp != lu.modes.writeProtect()
	if lu.modes.writeCache() && !wce {
		// Turning the write cache off: what it holds goes to the medium
		// first. Writes from now on see WCE=0 and are made stable
		// themselves; the whole-LU lock waits for those that decided
		// otherwise before (they hold their range until stored), so the
		// flush covers them.
		lu.modes.wce.Store(false)
		t := lu.locks.lock(0, lu.blocks.Load(), true)
		err := lu.store.Sync()
		lu.locks.unlock(t)
		if err != nil {
			lu.modes.wce.Store(true) // the MODE SELECT failed: nothing changes
			return false, sense.WriteFault().WithCause(err)
		}
	}
	lu.modes.wce.Store(wce)
	lu.modes.dSens.Store(dsense)
	lu.modes.swp.Store(swp)
	return changed, nil
}

func leadingZeros8(b byte) int {
	n := 0
	for mask := byte(0x80); mask != 0 && b&mask == 0; mask >>= 1 {
		n++
	}
	return n
}

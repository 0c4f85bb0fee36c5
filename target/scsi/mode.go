package scsi

import (
	"context"
	"encoding/binary"

	"github.com/blockport/blockport/target/scsi/sense"
)

// Mode page codes (SPC-5, SBC-4).
const (
	modePageCaching  = 0x08
	modePageControl  = 0x0A
	modePageInfoExc  = 0x1C
	modePageAllPages = 0x3F
)

// Page control values (SPC-5, table "Page control field").
const (
	pcCurrent    = 0
	pcChangeable = 1
	pcDefault    = 2
	pcSaved      = 3
)

// modePageOrder lists the supported pages in the order ALL PAGES returns
// them (SPC-5: ascending page code).
var modePageOrder = []uint8{modePageCaching, modePageControl, modePageInfoExc}

// Device-specific parameter bits of the mode parameter header (SBC-4).
const (
	dspWP     = 0x80 // write protected
	dspDPOFUA = 0x10 // DPO and FUA are supported in READ/WRITE CDBs
)

// MODE SENSE(6) and MODE SENSE(10) (SPC-5).
func parseModeSense(lu *LU, cmd *Command) error {
	c := cmd.CDB
	a := &cmd.args
	a.ten = c[0] == opModeSense10
	var alloc uint32
	if a.ten {
		if c[1]&0xE7 != 0 {
			return sense.InvalidFieldInCDB(1, 7)
		}
		a.llbaa = c[1]&0x10 != 0
		alloc = uint32(binary.BigEndian.Uint16(c[7:9]))
	} else {
		if c[1]&0xF7 != 0 {
			return sense.InvalidFieldInCDB(1, 7)
		}
		alloc = uint32(c[4])
	}
	a.dbd = c[1]&0x08 != 0
	a.pc = c[2] >> 6
	a.page = c[2] & 0x3F
	a.subpage = c[3]
	if a.pc == pcSaved {
		// SPC-5: saved values of a device that cannot save parameters.
		return sense.SavingParametersNotSupported()
	}
	switch a.page {
	case modePageCaching, modePageControl, modePageInfoExc, modePageAllPages:
	default:
		return sense.InvalidFieldInCDB(2, 5)
	}
	// Blockport has no subpages: subpage 0, or FFh ("all subpages") which
	// then means the same page.
	if a.subpage != 0x00 && a.subpage != 0xFF {
		return sense.InvalidFieldInCDB(3, 7)
	}
	dataIn(cmd, alloc, 1<<16)
	return nil
}

func execModeSense(ctx context.Context, d *Device, cmd *Command) (int, error) {
	var buf [256]byte
	return putOut(cmd, cmd.lu.appendModeSense(buf[:0], &cmd.args, cmd.readOnly)), nil
}

// appendModeSense builds the whole MODE SENSE response: header, block
// descriptor and pages. readOnly is the command's view: the LU's own write
// protection or a read-only LUN mapping of the issuing initiator (SBC-4:
// the WP bit tells that initiator its writes will fail).
func (lu *LU) appendModeSense(b []byte, a *cdbArgs, readOnly bool) []byte {
	hdrLen := 4
	if a.ten {
		hdrLen = 8
	}
	var zero [8]byte
	b = append(b, zero[:hdrLen]...)
	dsp := byte(dspDPOFUA)
	if readOnly || lu.cfg.ReadOnly || lu.modes.writeProtect() {
		dsp |= dspWP
	}
	bdStart := len(b)
	if !a.dbd {
		b = lu.appendBlockDescriptor(b, a.ten && a.llbaa, a.pc == pcChangeable)
	}
	bdLen := len(b) - bdStart
	if a.page == modePageAllPages {
		for _, p := range modePageOrder {
			b = lu.appendModePage(b, p, a.pc)
		}
	} else {
		b = lu.appendModePage(b, a.page, a.pc)
	}
	if a.ten {
		binary.BigEndian.PutUint16(b[0:2], uint16(len(b)-2)) // MODE DATA LENGTH excludes itself
		b[3] = dsp
		if a.llbaa && bdLen == 16 {
			b[4] = 0x01 // LONGLBA
		}
		binary.BigEndian.PutUint16(b[6:8], uint16(bdLen))
	} else {
		b[0] = byte(len(b) - 1)
		b[2] = dsp
		b[3] = byte(bdLen)
	}
	return b
}

// appendBlockDescriptor appends the short (8-byte) or long LBA (16-byte)
// mode parameter block descriptor (SBC-4). Nothing in it is changeable.
func (lu *LU) appendBlockDescriptor(b []byte, long, changeable bool) []byte {
	if long {
		var d [16]byte
		if !changeable {
			binary.BigEndian.PutUint64(d[0:8], lu.blocks.Load())
			binary.BigEndian.PutUint32(d[12:16], lu.blockSize)
		}
		return append(b, d[:]...)
	}
	var d [8]byte
	if !changeable {
		// SBC-4: a capacity over FFFFFFFFh blocks is reported as FFFFFFFFh.
		binary.BigEndian.PutUint32(d[0:4], uint32(min(lu.blocks.Load(), 0xFFFFFFFF)))
		d[5], d[6], d[7] = byte(lu.blockSize>>16), byte(lu.blockSize>>8), byte(lu.blockSize)
	}
	return append(b, d[:]...)
}

// appendModePage appends one page for the page control pc. The changeable
// bits are those MODE SELECT takes (modeselect.go). PS=0 everywhere
// because no page is savable.
func (lu *LU) appendModePage(b []byte, page, pc uint8) []byte {
	switch page {
	case modePageCaching:
		// SBC-4 Caching: WCE as configured, RCD=0 (the read cache is used).
		var p [20]byte
		p[0], p[1] = modePageCaching, byte(len(p)-2)
		switch {
		case pc == pcChangeable:
			p[2] |= 0x04 // WCE is changeable (MODE SELECT)
		case pc == pcDefault && lu.cfg.WriteCache, pc == pcCurrent && lu.modes.writeCache():
			p[2] |= 0x04 // WCE
		}
		return append(b, p[:]...)
	case modePageControl:
		// SPC-5 Control: TST=000b (one task set), D_SENSE=0 (fixed
		// sense), QUEUE ALGORITHM MODIFIER=1h (commands are reordered freely),
		// QERR=00b, UA_INTLCK_CTRL=00b, SWP=0, TAS=0, BUSY TIMEOUT PERIOD
		// FFFFh (unlimited: Blockport does not return BUSY for lack of time).
		var p [12]byte
		p[0], p[1] = modePageControl, byte(len(p)-2)
		if pc != pcChangeable {
			p[3] = 0x10
			binary.BigEndian.PutUint16(p[8:10], 0xFFFF)
		}
		if pc == pcChangeable || pc == pcCurrent && lu.modes.descSense() {
			p[2] |= 0x04 // D_SENSE: changeable; current value from MODE SELECT
		}
		if pc == pcChangeable || pc == pcCurrent && lu.modes.writeProtect() {
			p[4] |= 0x08 // SWP: software write protect (SPC-5), changeable
		}
		return append(b, p[:]...)
	case modePageInfoExc:
		// SPC-5 Informational Exceptions Control: DEXCPT=1 (no
		// informational exception reporting), MRIE=0h.
		var p [12]byte
		p[0], p[1] = modePageInfoExc, byte(len(p)-2)
		if pc != pcChangeable {
			p[2] = 0x08
		}
		return append(b, p[:]...)
	}
	return b
}

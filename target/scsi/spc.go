package scsi

import (
	"context"
	"encoding/binary"

	"github.com/blockport/blockport/target/scsi/sense"
)

// Bounds on data-in a command can produce, so a huge allocation length
// never makes the fabric allocate more than the response can fill.
const (
	maxReportLUNsLen = 8 + 8*(MaxLUN+1)
	maxRSOCLen       = 64 << 10
)

// putOut copies a response into cmd.Data, truncated to the allocation
// length (SPC-5: the device server stops at the allocation length
// and that is not an error), and returns the bytes produced.
func putOut(cmd *Command, resp []byte) int {
	return copy(cmd.Data[:min(len(cmd.Data), cmd.TransferLength)], resp)
}

func dataIn(cmd *Command, alloc uint32, most int) {
	cmd.args.alloc = alloc
	cmd.Dir = DirRead
	cmd.TransferLength = int(min(uint64(alloc), uint64(most)))
}

// INQUIRY (SPC-5).
func parseInquiry(lu *LU, cmd *Command) error {
	c := cmd.CDB
	if c[1]&0x02 != 0 { // CMDDT: obsolete since SPC-3, so never supported
		return sense.InvalidFieldInCDB(1, 1)
	}
	if c[1]&0xFC != 0 {
		return sense.InvalidFieldInCDB(1, 7)
	}
	cmd.args.evpd = c[1]&0x01 != 0
	cmd.args.page = c[2]
	if !cmd.args.evpd && c[2] != 0 {
		// SPC-5: PAGE CODE must be zero when EVPD is zero.
		return sense.InvalidFieldInCDB(2, 7)
	}
	if cmd.args.evpd {
		if lu == nil {
			if c[2] != vpdSupportedPages {
				return sense.InvalidFieldInCDB(2, 7)
			}
		} else if _, ok := lu.vpd[c[2]]; !ok {
			return sense.InvalidFieldInCDB(2, 7)
		}
	}
	dataIn(cmd, uint32(binary.BigEndian.Uint16(c[3:5])), 1<<16)
	return nil
}

func execInquiry(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	switch {
	case lu == nil && cmd.args.evpd:
		return putOut(cmd, noLUSupportedPages[:]), nil
	case lu == nil:
		return putOut(cmd, noLUInquiry), nil
	case cmd.args.evpd && cmd.args.page == vpdDeviceID:
		return putOut(cmd, lu.deviceIDPage(cmd.Nexus)), nil // with the target port's designators (alua.go)
	case cmd.args.evpd:
		return putOut(cmd, lu.vpd[cmd.args.page]), nil
	default:
		return putOut(cmd, lu.stdInquiry), nil
	}
}

// Version descriptors (SPC-5, table "Version descriptor values").
const (
	versionSAM5  = 0x00A0
	versionISCSI = 0x0960
	versionSPC4  = 0x0460
	versionSBC3  = 0x04C0
)

// stdInquiryLen covers the data through the last version descriptor.
const stdInquiryLen = 74

// buildStandardInquiry makes standard INQUIRY data (SPC-5). pdt is
// the PERIPHERAL QUALIFIER and DEVICE TYPE byte.
func buildStandardInquiry(pdt byte, vendor, product, revision string) []byte {
	b := make([]byte, stdInquiryLen)
	b[0] = pdt
	b[1] = 0x00 // RMB=0: not removable
	// VERSION 06h: SPC-4. libiscsi and most initiators accept 4..6; SPC-5
	// (07h) is not claimed since not all of its mandatory commands exist.
	b[2] = 0x06
	b[3] = 0x10 | 0x02      // HISUP=1 (hierarchical LUNs), RESPONSE DATA FORMAT=2
	b[4] = byte(len(b) - 5) // ADDITIONAL LENGTH
	b[5] = 0x00             // no SCCS, ACC, TPGS, 3PC, PROTECT
	b[6] = 0x00
	b[7] = 0x02 // CMDQUE: full task management model
	padCopy(b[8:16], vendor)
	padCopy(b[16:32], product)
	padCopy(b[32:36], revision)
	for i, v := range []uint16{versionSAM5, versionISCSI, versionSPC4, versionSBC3} {
		binary.BigEndian.PutUint16(b[58+2*i:], v)
	}
	return b
}

// padCopy copies s into b left-aligned and pads with spaces (SPC-5).
func padCopy(b []byte, s string) {
	n := copy(b, s)
	for i := n; i < len(b); i++ {
		b[i] = ' '
	}
}

func (lu *LU) buildStandardInquiry() []byte {
	b := buildStandardInquiry(pdtDisk, lu.cfg.Vendor, lu.cfg.Product, lu.cfg.Revision)
	if lu.cfg.Removable {
		b[1] |= 0x80 // RMB: removable medium (removable.go)
	}
	b[5] |= 0x30 // TPGS=11b: implicit and explicit ALUA (alua.go)
	b[5] |= 0x08 // 3PC: the LU is an EXTENDED COPY copy manager (xcopy.go)
	return b
}

const (
	pdtDisk = 0x00 // PERIPHERAL QUALIFIER 000b, DEVICE TYPE 00h: direct access block device
	// pdtNoLU: PERIPHERAL QUALIFIER 011b and DEVICE TYPE 1Fh, "not capable
	// of supporting a peripheral device on this logical unit" (SPC-5).
	pdtNoLU = 0x7F
)

// Responses for INQUIRY to a LUN with no LU.
var (
	noLUInquiry        = buildStandardInquiry(pdtNoLU, DefaultVendor, DefaultProduct, DefaultRevision)
	noLUSupportedPages = [5]byte{pdtNoLU, vpdSupportedPages, 0, 1, vpdSupportedPages}
)

// REQUEST SENSE (SPC-5).
func parseRequestSense(lu *LU, cmd *Command) error {
	c := cmd.CDB
	if c[1]&0xFE != 0 {
		return sense.InvalidFieldInCDB(1, 7)
	}
	cmd.args.desc = c[1]&0x01 != 0
	dataIn(cmd, uint32(c[4]), 255)
	return nil
}

// execRequestSense returns the pending unit attention, clearing it, or NO
// SENSE; on a LUN with no LU, LOGICAL UNIT NOT SUPPORTED (SPC-5).
// The status is GOOD either way: the sense is parameter data.
func execRequestSense(ctx context.Context, d *Device, cmd *Command) (int, error) {
	var e *sense.Error
	switch {
	case cmd.lu == nil:
		e = sense.LUNotSupported()
	case cmd.lu.san.running.Load():
		// SBC-4 4.11: the progress of a running sanitize (sanitize.go).
		e = sense.SanitizeInProgress(uint16(cmd.lu.san.progress.Load()))
	default:
		if e = cmd.lu.ua.pop(cmd.ua); e == nil {
			e = sense.NoSense()
			if cmd.lu.san.failedMode() {
				e = sense.SanitizeFailed()
			}
		}
	}
	var buf [sense.MaxDescLen]byte
	var b []byte
	if cmd.args.desc {
		b = e.AppendDescriptor(buf[:0])
	} else {
		b = e.AppendFixed(buf[:0])
	}
	return putOut(cmd, b), nil
}

// REPORT LUNS (SPC-5).
func parseReportLUNs(lu *LU, cmd *Command) error {
	c := cmd.CDB
	switch c[2] {
	case 0x00, 0x02: // logical units; all LUNs (Blockport has no well-known LUs)
	case 0x01: // well-known logical units only
	default:
		return sense.InvalidFieldInCDB(2, 7)
	}
	cmd.args.selRep = c[2]
	alloc := binary.BigEndian.Uint32(c[6:10])
	if alloc < 16 {
		// SPC-3 (kept by Blockport): an allocation length under 16
		// cannot hold the header and one LUN.
		return sense.InvalidFieldInCDB(6, 7)
	}
	dataIn(cmd, alloc, maxReportLUNsLen)
	return nil
}

func execReportLUNs(ctx context.Context, d *Device, cmd *Command) (int, error) {
	var luns []uint64
	if cmd.args.selRep != 0x01 {
		// Only what this nexus may reach, under its own numbers.
		luns = d.visibleLUNs(cmd.Nexus)
	}
	out := cmd.Data[:min(len(cmd.Data), cmd.TransferLength)]
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[0:4], uint32(8*len(luns)))
	n := copy(out, hdr[:])
	for _, lun := range luns {
		if n >= len(out) {
			break
		}
		b := EncodeLUN(lun)
		n += copy(out[n:], b[:])
	}
	return n, nil
}

// START STOP UNIT (SBC-4); executed in removable.go.
func parseStartStopUnit(lu *LU, cmd *Command) error {
	c := cmd.CDB
	if c[1]&0xFE != 0 {
		return sense.InvalidFieldInCDB(1, 7)
	}
	cmd.args.immed = c[1]&0x01 != 0
	cmd.args.powCond = c[4] >> 4
	cmd.args.noFlush = c[4]&0x04 != 0
	cmd.args.loej = c[4]&0x02 != 0
	cmd.args.start = c[4]&0x01 != 0
	return nil
}

// REPORT SUPPORTED OPERATION CODES (SPC-5).
func parseReportSupportedOps(lu *LU, cmd *Command) error {
	c := cmd.CDB
	a := &cmd.args
	a.rctd = c[2]&0x80 != 0
	a.rsocOpts = c[2] & 0x07
	a.rsocOp = c[3]
	a.rsocSA = binary.BigEndian.Uint16(c[4:6])
	if c[2]&0x78 != 0 {
		return sense.InvalidFieldInCDB(2, 6)
	}
	hasSA := opTable[a.rsocOp].bySA != nil
	switch a.rsocOpts {
	case 0:
	case 1: // one command, no service action
		if hasSA {
			return sense.InvalidFieldInCDB(3, 7)
		}
	case 2: // one command with a service action
		if !hasSA {
			return sense.InvalidFieldInCDB(3, 7)
		}
	case 3: // one command, with a service action if it has any
	default:
		return sense.InvalidFieldInCDB(2, 2)
	}
	dataIn(cmd, binary.BigEndian.Uint32(c[6:10]), maxRSOCLen)
	return nil
}

func execReportSupportedOps(ctx context.Context, d *Device, cmd *Command) (int, error) {
	a := &cmd.args
	// SPC-5: the command timeouts descriptor; zero timeouts mean
	// "not specified".
	timeouts := []byte{0x00, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	var resp []byte
	if a.rsocOpts == 0 {
		resp = make([]byte, 4, 4+len(supportedOps)*20)
		for _, o := range supportedOps {
			if !o.supportedOn(cmd.lu) {
				continue
			}
			var desc [8]byte
			desc[0] = o.op
			if o.hasSA {
				binary.BigEndian.PutUint16(desc[2:4], o.sa)
				desc[5] |= 0x01 // SERVACTV
			}
			if a.rctd {
				desc[5] |= 0x02 // CTDP
			}
			binary.BigEndian.PutUint16(desc[6:8], uint16(o.cdbLen))
			resp = append(resp, desc[:]...)
			if a.rctd {
				resp = append(resp, timeouts...)
			}
		}
		binary.BigEndian.PutUint32(resp[0:4], uint32(len(resp)-4))
		return putOut(cmd, resp), nil
	}
	var o *opDesc
	e := &opTable[a.rsocOp]
	if e.bySA != nil && a.rsocOpts != 1 {
		o = e.bySA[a.rsocSA]
	} else if e.bySA == nil {
		o = e.desc
	}
	if o == nil || !o.supportedOn(cmd.lu) {
		// SUPPORT 001b: not supported, no CDB usage data.
		resp = []byte{0, 0x01, 0, 0}
		return putOut(cmd, resp), nil
	}
	resp = make([]byte, 4, 4+len(o.usage)+len(timeouts))
	resp[1] = 0x03 // SUPPORT 011b: supported in conformance with a standard
	if a.rctd {
		resp[1] |= 0x80 // CTDP
	}
	binary.BigEndian.PutUint16(resp[2:4], uint16(len(o.usage)))
	resp = append(resp, o.usage...)
	if a.rctd {
		resp = append(resp, timeouts...)
	}
	return putOut(cmd, resp), nil
}

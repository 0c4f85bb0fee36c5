package scsi

import (
	"context"
	"encoding/binary"

	"github.com/blockport/blockport/target/scsi/sense"
)

// Opcodes and service actions of the reporting commands in this file.
const (
	opReadDefectData10  = 0x37
	opLogSense          = 0x4D
	opReadDefectData12  = 0xB7
	saReportSupportedTM = 0x0D // MAINTENANCE IN
)

// READ DEFECT DATA(10) and (12) (SBC-4). Blockport's logical blocks map
// to no physical medium it manages, so the primary and grown defect lists
// are both empty; they are returned valid (PLISTV/GLISTV) as requested, in
// the requested format, which an empty list satisfies whatever it is.
func parseReadDefectData(lu *LU, cmd *Command) error {
	c := cmd.CDB
	a := &cmd.args
	a.ten = c[0] == opReadDefectData10
	if a.ten {
		if c[1] != 0 || c[2]&0xE0 != 0 {
			return sense.InvalidFieldInCDB(2, 7)
		}
		a.page = c[2] & 0x1F // REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT
		dataIn(cmd, uint32(binary.BigEndian.Uint16(c[7:9])), 4)
		return nil
	}
	if c[1]&0xE0 != 0 {
		return sense.InvalidFieldInCDB(1, 7)
	}
	a.page = c[1] & 0x1F
	dataIn(cmd, binary.BigEndian.Uint32(c[6:10]), 8)
	return nil
}

func execReadDefectData(ctx context.Context, d *Device, cmd *Command) (int, error) {
	a := &cmd.args
	// Byte 1: PLISTV (bit 4) and GLISTV (bit 3) echo REQ_PLIST and
	// REQ_GLIST; DEFECT LIST FORMAT (bits 2-0) echoes the request.
	// DEFECT LIST LENGTH is zero.
	if a.ten {
		return putOut(cmd, []byte{0, a.page, 0, 0}), nil
	}
	return putOut(cmd, []byte{0, a.page, 0, 0, 0, 0, 0, 0}), nil
}

// tmfSupport is what target/iscsi/tmf.go carries out: ABORT TASK, ABORT
// TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET and TARGET RESET (TARGET
// WARM/COLD RESET in iSCSI). CLEAR ACA, QUERY TASK/TASK SET/ASYNCHRONOUS
// EVENT and I_T NEXUS RESET are not supported.
const tmfSupport = 0x80 | 0x40 | 0x10 | 0x08 | 0x02 // ATS ATSS CTSS LURS TRS

// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-5), MAINTENANCE IN 0Dh.
func parseReportSupportedTMFs(lu *LU, cmd *Command) error {
	c := cmd.CDB
	if c[2]&0x7F != 0 {
		return sense.InvalidFieldInCDB(2, 6)
	}
	cmd.args.desc = c[2]&0x80 != 0 // REPD: the extended format
	alloc := binary.BigEndian.Uint32(c[6:10])
	if alloc < 4 {
		// SPC-5: an allocation length under 4 is an invalid field.
		return sense.InvalidFieldInCDB(6, 7)
	}
	dataIn(cmd, alloc, 16)
	return nil
}

func execReportSupportedTMFs(ctx context.Context, d *Device, cmd *Command) (int, error) {
	if !cmd.args.desc {
		return putOut(cmd, []byte{tmfSupport, 0, 0, 0}), nil
	}
	// REPD=1: the 16-byte format, ADDITIONAL DATA LENGTH 0Ch; no TMF
	// timeouts are reported (TMFTMOV=0).
	resp := make([]byte, 16)
	resp[0] = tmfSupport
	resp[3] = 0x0C
	return putOut(cmd, resp), nil
}

// Log page codes (SPC-5, SBC-4).
const (
	logPageSupported    = 0x00
	logPageProvisioning = 0x0C
)

// spaceReporter is an optional backstore capability: how many bytes are
// allocated and how many more can be. Thin backstores implement it; the
// Logical Block Provisioning log page exists only for them.
type spaceReporter interface {
	Space() (used, available int64, err error)
}

// logPages lists the log pages of lu in ascending order.
func (lu *LU) logPages() []byte {
	pages := []byte{logPageSupported}
	if _, ok := lu.store.(spaceReporter); ok {
		pages = append(pages, logPageProvisioning)
	}
	return pages
}

// LOG SENSE (SPC-5): the supported pages page and, on thin LUs, the
// Logical Block Provisioning page (SBC-4) that Windows' thin provisioning
// threshold checks read. No parameter is savable and none is reset.
func parseLogSense(lu *LU, cmd *Command) error {
	c := cmd.CDB
	a := &cmd.args
	if c[1]&0x01 != 0 { // SP: saving is not supported
		return sense.InvalidFieldInCDB(1, 0)
	}
	if c[1]&0xFE != 0 {
		return sense.InvalidFieldInCDB(1, 7)
	}
	a.pc = c[2] >> 6
	a.page = c[2] & 0x3F
	a.subpage = c[3]
	if a.subpage != 0 && a.subpage != 0xFF {
		return sense.InvalidFieldInCDB(3, 7)
	}
	found := false
	for _, p := range lu.logPages() {
		found = found || p == a.page
	}
	if !found {
		return sense.InvalidFieldInCDB(2, 5)
	}
	if binary.BigEndian.Uint16(c[5:7]) != 0 {
		// PARAMETER POINTER: only 0000h (from the first parameter) is taken.
		return sense.InvalidFieldInCDB(5, 7)
	}
	dataIn(cmd, uint32(binary.BigEndian.Uint16(c[7:9])), 1024)
	return nil
}

func execLogSense(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	a := &cmd.args
	var body []byte
	switch a.page {
	case logPageSupported:
		if a.subpage == 0xFF {
			// Supported pages and subpages: (page, subpage) pairs.
			for _, p := range lu.logPages() {
				body = append(body, p, 0)
			}
			body = append(body, logPageSupported, 0xFF)
		} else {
			body = lu.logPages()
		}
	case logPageProvisioning:
		used, avail, err := lu.store.(spaceReporter).Space()
		if err != nil {
			return 0, sense.InternalTargetFailure().WithCause(err)
		}
		// SBC-4: parameters 0001h AVAILABLE LBA MAPPING RESOURCE COUNT
		// and 0002h USED LBA MAPPING RESOURCE COUNT, counted in
		// blocks; each a 4-byte value with DU=0, TSD=1 (no saving),
		// FORMAT AND LINKING 11b (binary), SCOPE 01b (dedicated to this LU).
		for i, v := range []int64{avail, used} {
			p := []byte{0, byte(i + 1), 0x03 | 0x20, 0x08, 0, 0, 0, 0, 0x01, 0, 0, 0}
			binary.BigEndian.PutUint32(p[4:8], uint32(min(uint64(max(v, 0))>>lu.blockShift, 0xFFFFFFFF)))
			body = append(body, p...)
		}
	}
	hdr := []byte{a.page, 0, 0, 0}
	if a.subpage == 0xFF {
		hdr[0] |= 0x40 // SPF
		hdr[1] = 0xFF
	}
	binary.BigEndian.PutUint16(hdr[2:4], uint16(len(body)))
	return putOut(cmd, append(hdr, body...)), nil
}

package scsi

import (
	"context"

	"github.com/blockport/blockport/target/scsi/alua"
	"github.com/blockport/blockport/target/scsi/pr"
	"github.com/blockport/blockport/target/scsi/sense"
)

// Operation codes (SPC-5 / SBC-4 command tables).
const (
	opTestUnitReady       = 0x00
	opRequestSense        = 0x03
	opRead6               = 0x08
	opWrite6              = 0x0A
	opInquiry             = 0x12
	opModeSense6          = 0x1A
	opStartStopUnit       = 0x1B
	opReadCapacity10      = 0x25
	opRead10              = 0x28
	opWrite10             = 0x2A
	opWriteAndVerify10    = 0x2E
	opVerify10            = 0x2F
	opPreFetch10          = 0x34
	opSynchronizeCache10  = 0x35
	opModeSense10         = 0x5A
	opRead16              = 0x88
	opWrite16             = 0x8A
	opWriteAndVerify16    = 0x8E
	opVerify16            = 0x8F
	opPreFetch16          = 0x90
	opSynchronizeCache16  = 0x91
	opServiceActionIn16   = 0x9E
	opReportLUNs          = 0xA0
	opMaintenanceIn       = 0xA3
	opRead12              = 0xA8
	opWrite12             = 0xAA
	opWriteAndVerify12    = 0xAE
	opVerify12            = 0xAF
	saReadCapacity16      = 0x10 // SERVICE ACTION IN(16)
	saReportSupportedOps  = 0x0C // MAINTENANCE IN
	serviceActionBitsMask = 0x1F
)

// opDesc is one row of the dispatch table. It drives dispatch, REPORT
// SUPPORTED OPERATION CODES and metrics labels from one place.
type opDesc struct {
	name   string
	op     byte
	sa     uint16 // service action, when hasSA
	hasSA  bool
	cdbLen int
	// usage is the CDB USAGE DATA of REPORT SUPPORTED OPERATION CODES
	// (SPC-5): a 1 bit for every CDB bit the device server evaluates.
	// For a command with a service action, the SERVICE ACTION field holds
	// its value (SPC-5). The PROTECT fields are 0: without protection information they must be
	// zero and are not supported fields.
	usage []byte

	anyLUN bool // runs on a LUN with no LU (INQUIRY, REPORT LUNS, REQUEST SENSE)
	noUA   bool // does not report or clear a pending unit attention
	// noMedium commands run on a removable LU whose medium is ejected
	// (START STOP UNIT, MODE SENSE...); the others get MEDIUM NOT PRESENT.
	noMedium bool
	// blockIO commands fill args.lba/blocks; Prepare then checks the range,
	// write protection, the maximum transfer length and short data-out.
	blockIO bool
	writes  bool // modifies the medium: refused on a read-only LU
	// quick: a plain READ or WRITE, one copy to or from the backstore;
	// on an LU with a backstore.Immediate store it finishes at once
	// (Command.Immediate).
	quick bool
	// sharedState commands change what other initiators see of the LU
	// (reservations, mode pages, ALUA states, the medium's presence): an
	// initiator whose LUN mapping is read-only gets WRITE PROTECTED, so a
	// read-only client cannot lock writers out or write-protect the LU.
	sharedState bool
	// xferLenAt is the CDB byte of the TRANSFER LENGTH field that is
	// bounded by the maximum transfer length; 0 when not bounded.
	xferLenAt int
	// partialDataOK: with less data-out than TransferLength, process the
	// whole blocks received (writes) instead of refusing the command.
	partialDataOK bool
	// alua: through which target port access states the command runs
	// (SPC-5 5.16.2.4); the zero value needs an active state (alua.go).
	alua alua.Access

	parse func(lu *LU, cmd *Command) error
	exec  func(ctx context.Context, d *Device, cmd *Command) (int, error)
	// supported, when set, tells whether the LU offers the command (a
	// capability of its backstore); where it does not, the command is
	// unknown there, and REPORT SUPPORTED OPERATION CODES leaves it out.
	supported func(lu *LU) bool
}

// supportedOn reports whether lu offers the command; lu may be nil.
func (o *opDesc) supportedOn(lu *LU) bool {
	return o.supported == nil || lu == nil || o.supported(lu)
}

// notSupported is what a command the LU does not offer gets, as for an
// opcode or service action missing from the table.
func (o *opDesc) notSupported() error {
	if o.hasSA {
		return sense.InvalidFieldInCDB(1, 4)
	}
	return sense.InvalidOpcode()
}

// opEntry is the table slot of one opcode: a descriptor, or descriptors by
// service action for opcodes that carry one.
type opEntry struct {
	desc *opDesc
	bySA map[uint16]*opDesc
}

// opTable is indexed by opcode; filled once in init, read-only afterwards.
var opTable [256]opEntry

// ops lists every supported command, ordered by opcode then service action.
var ops = []*opDesc{
	{name: "TEST UNIT READY", op: opTestUnitReady, cdbLen: 6,
		usage: []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
		parse: parseNoData, exec: execNothing},
	{name: "REQUEST SENSE", op: opRequestSense, cdbLen: 6, anyLUN: true, noUA: true, alua: alua.AnyState,
		usage: []byte{0x03, 0x01, 0x00, 0x00, 0xFF, 0x00},
		parse: parseRequestSense, exec: execRequestSense},
	{name: "READ(6)", op: opRead6, cdbLen: 6, blockIO: true, quick: true, xferLenAt: 4,
		usage: []byte{0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0x00},
		parse: parseRW6, exec: execRead},
	{name: "WRITE(6)", op: opWrite6, cdbLen: 6, blockIO: true, quick: true, writes: true, xferLenAt: 4, partialDataOK: true,
		usage: []byte{0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0x00},
		parse: parseRW6, exec: execWrite},
	{name: "INQUIRY", op: opInquiry, cdbLen: 6, anyLUN: true, noUA: true, alua: alua.AnyState,
		usage: []byte{0x12, 0x01, 0xFF, 0xFF, 0xFF, 0x00},
		parse: parseInquiry, exec: execInquiry},
	{name: "RESERVE(6)", op: opReserve6, cdbLen: 6, sharedState: true, // pr.go
		usage: []byte{opReserve6, 0x00, 0x00, 0x00, 0x00, 0x00},
		parse: parseReserveRelease, exec: execReserve},
	{name: "RELEASE(6)", op: opRelease6, cdbLen: 6,
		usage: []byte{opRelease6, 0x00, 0x00, 0x00, 0x00, 0x00},
		parse: parseReserveRelease, exec: execRelease},
	{name: "MODE SELECT(6)", op: opModeSelect6, cdbLen: 6, sharedState: true, noMedium: true, alua: alua.StandbyOK,
		usage: []byte{0x15, 0x10, 0x00, 0x00, 0xFF, 0x00},
		parse: parseModeSelect, exec: execModeSelect},
	{name: "MODE SENSE(6)", op: opModeSense6, cdbLen: 6, noMedium: true, alua: alua.StandbyOK,
		usage: []byte{0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0x00},
		parse: parseModeSense, exec: execModeSense},
	{name: "START STOP UNIT", op: opStartStopUnit, cdbLen: 6, sharedState: true, noMedium: true,
		usage: []byte{0x1B, 0x01, 0x00, 0x0F, 0xF7, 0x00},
		parse: parseStartStopUnit, exec: execStartStopUnit},
	{name: "PREVENT ALLOW MEDIUM REMOVAL", op: opPreventAllow, cdbLen: 6, noMedium: true,
		usage: []byte{0x1E, 0x00, 0x00, 0x00, 0x03, 0x00},
		parse: parsePreventAllow, exec: execPreventAllow},
	{name: "READ CAPACITY(10)", op: opReadCapacity10, cdbLen: 10,
		usage: []byte{0x25, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x00},
		parse: parseReadCapacity10, exec: execReadCapacity10},
	{name: "READ(10)", op: opRead10, cdbLen: 10, blockIO: true, quick: true, xferLenAt: 7,
		usage: []byte{0x28, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseRW10, exec: execRead},
	{name: "WRITE(10)", op: opWrite10, cdbLen: 10, blockIO: true, quick: true, writes: true, xferLenAt: 7, partialDataOK: true,
		usage: []byte{0x2A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseRW10, exec: execWrite},
	{name: "WRITE AND VERIFY(10)", op: opWriteAndVerify10, cdbLen: 10, blockIO: true, writes: true, xferLenAt: 7, partialDataOK: true,
		usage: []byte{0x2E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseWriteAndVerify, exec: execWriteAndVerify},
	{name: "VERIFY(10)", op: opVerify10, cdbLen: 10, blockIO: true, xferLenAt: 7,
		usage: []byte{0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseVerify, exec: execVerify},
	{name: "PRE-FETCH(10)", op: opPreFetch10, cdbLen: 10, blockIO: true,
		usage: []byte{0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseSyncOrPrefetch, exec: execPreFetch},
	{name: "SYNCHRONIZE CACHE(10)", op: opSynchronizeCache10, cdbLen: 10, blockIO: true,
		usage: []byte{0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseSyncOrPrefetch, exec: execSynchronizeCache},
	{name: "RESERVE(10)", op: opReserve10, cdbLen: 10, sharedState: true, // pr.go
		usage: []byte{opReserve10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
		parse: parseReserveRelease, exec: execReserve},
	{name: "RELEASE(10)", op: opRelease10, cdbLen: 10,
		usage: []byte{opRelease10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
		parse: parseReserveRelease, exec: execRelease},
	{name: "READ DEFECT DATA(10)", op: opReadDefectData10, cdbLen: 10,
		usage: []byte{0x37, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseReadDefectData, exec: execReadDefectData},
	{name: "WRITE SAME(10)", op: opWriteSame10, cdbLen: 10, blockIO: true, writes: true, // provisioning.go
		usage: []byte{0x41, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseWriteSame, exec: execWriteSame},
	{name: "UNMAP", op: opUnmap, cdbLen: 10, blockIO: true, writes: true, // block I/O with no LBA range in the CDB
		usage: []byte{0x42, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseUnmap, exec: execUnmap},
	{name: "SANITIZE(OVERWRITE)", op: opSanitize, sa: saSanitizeOverwrite, hasSA: true, cdbLen: 10, // sanitize.go
		usage: []byte{0x48, 0xA0 | saSanitizeOverwrite, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseSanitize, exec: execSanitize},
	{name: "SANITIZE(BLOCK ERASE)", op: opSanitize, sa: saSanitizeBlockErase, hasSA: true, cdbLen: 10,
		usage: []byte{0x48, 0xA0 | saSanitizeBlockErase, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseSanitize, exec: execSanitize, supported: (*LU).canBlockErase},
	{name: "SANITIZE(CRYPTOGRAPHIC ERASE)", op: opSanitize, sa: saSanitizeCryptoErase, hasSA: true, cdbLen: 10,
		usage: []byte{0x48, 0xA0 | saSanitizeCryptoErase, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseSanitize, exec: execSanitize, supported: (*LU).canCryptoErase},
	{name: "SANITIZE(EXIT FAILURE MODE)", op: opSanitize, sa: saSanitizeExitFailure, hasSA: true, cdbLen: 10,
		usage: []byte{0x48, 0xA0 | saSanitizeExitFailure, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseSanitize, exec: execSanitize},
	{name: "LOG SENSE", op: opLogSense, cdbLen: 10, noMedium: true, alua: alua.StandbyOK,
		usage: []byte{0x4D, 0x01, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00},
		parse: parseLogSense, exec: execLogSense},
	{name: "MODE SELECT(10)", op: opModeSelect10, cdbLen: 10, sharedState: true, noMedium: true, alua: alua.StandbyOK,
		usage: []byte{0x55, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseModeSelect, exec: execModeSelect},
	{name: "MODE SENSE(10)", op: opModeSense10, cdbLen: 10, noMedium: true, alua: alua.StandbyOK,
		usage: []byte{0x5A, 0x18, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00},
		parse: parseModeSense, exec: execModeSense},
	prInOp(pr.ReadKeys, "PERSISTENT RESERVE IN(READ KEYS)"), // pr.go
	prInOp(pr.ReadReservation, "PERSISTENT RESERVE IN(READ RESERVATION)"),
	prInOp(pr.ReportCapabilities, "PERSISTENT RESERVE IN(REPORT CAPABILITIES)"),
	prInOp(pr.ReadFullStatus, "PERSISTENT RESERVE IN(READ FULL STATUS)"),
	prOutOp(uint16(pr.Register), "PERSISTENT RESERVE OUT(REGISTER)"),
	prOutOp(uint16(pr.Reserve), "PERSISTENT RESERVE OUT(RESERVE)"),
	prOutOp(uint16(pr.Release), "PERSISTENT RESERVE OUT(RELEASE)"),
	prOutOp(uint16(pr.Clear), "PERSISTENT RESERVE OUT(CLEAR)"),
	prOutOp(uint16(pr.Preempt), "PERSISTENT RESERVE OUT(PREEMPT)"),
	prOutOp(uint16(pr.PreemptAndAbort), "PERSISTENT RESERVE OUT(PREEMPT AND ABORT)"),
	prOutOp(uint16(pr.RegisterAndIgnore), "PERSISTENT RESERVE OUT(REGISTER AND IGNORE EXISTING KEY)"),
	prOutOp(uint16(pr.RegisterAndMove), "PERSISTENT RESERVE OUT(REGISTER AND MOVE)"),
	{name: "EXTENDED COPY(LID1)", op: opExtendedCopy, sa: saExtendedCopyLID1, hasSA: true, cdbLen: 16, // xcopy.go
		usage: []byte{0x83, saExtendedCopyLID1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseExtendedCopy, exec: execExtendedCopy},
	receiveCopyResultsOp(saCopyStatus, "RECEIVE COPY RESULTS(COPY STATUS)"),
	receiveCopyResultsOp(saReceiveData, "RECEIVE COPY RESULTS(RECEIVE DATA)"),
	receiveCopyResultsOp(saOperatingParameters, "RECEIVE COPY RESULTS(OPERATING PARAMETERS)"),
	receiveCopyResultsOp(saFailedSegmentDetails, "RECEIVE COPY RESULTS(FAILED SEGMENT DETAILS)"),
	{name: "READ(16)", op: opRead16, cdbLen: 16, blockIO: true, quick: true, xferLenAt: 10,
		usage: []byte{0x88, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseRW16, exec: execRead},
	{name: "COMPARE AND WRITE", op: opCompareAndWrite, cdbLen: 16, blockIO: true, writes: true,
		usage: []byte{0x89, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0xFF, 0x00, 0x00},
		parse: parseCompareAndWrite, exec: execCompareAndWrite},
	{name: "WRITE(16)", op: opWrite16, cdbLen: 16, blockIO: true, quick: true, writes: true, xferLenAt: 10, partialDataOK: true,
		usage: []byte{0x8A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseRW16, exec: execWrite},
	{name: "ORWRITE(16)", op: opOrWrite16, cdbLen: 16, blockIO: true, writes: true, xferLenAt: 10, partialDataOK: true,
		usage: []byte{0x8B, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseOrWrite16, exec: execOrWrite},
	{name: "WRITE AND VERIFY(16)", op: opWriteAndVerify16, cdbLen: 16, blockIO: true, writes: true, xferLenAt: 10, partialDataOK: true,
		usage: []byte{0x8E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseWriteAndVerify, exec: execWriteAndVerify},
	{name: "VERIFY(16)", op: opVerify16, cdbLen: 16, blockIO: true, xferLenAt: 10,
		usage: []byte{0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseVerify, exec: execVerify},
	{name: "PRE-FETCH(16)", op: opPreFetch16, cdbLen: 16, blockIO: true,
		usage: []byte{0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseSyncOrPrefetch, exec: execPreFetch},
	{name: "SYNCHRONIZE CACHE(16)", op: opSynchronizeCache16, cdbLen: 16, blockIO: true,
		usage: []byte{0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseSyncOrPrefetch, exec: execSynchronizeCache},
	{name: "WRITE SAME(16)", op: opWriteSame16, cdbLen: 16, blockIO: true, writes: true, // provisioning.go
		usage: []byte{0x93, 0x19, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseWriteSame, exec: execWriteSame},
	{name: "WRITE ATOMIC(16)", op: opWriteAtomic16, cdbLen: 16, blockIO: true, writes: true,
		usage: []byte{0x9C, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseWriteAtomic16, exec: execWriteAtomic},
	{name: "READ CAPACITY(16)", op: opServiceActionIn16, sa: saReadCapacity16, hasSA: true, cdbLen: 16,
		usage: []byte{0x9E, saReadCapacity16, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseReadCapacity16, exec: execReadCapacity16},
	{name: "GET LBA STATUS", op: opServiceActionIn16, sa: saGetLBAStatus, hasSA: true, cdbLen: 16, // provisioning.go
		usage: []byte{0x9E, saGetLBAStatus, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseGetLBAStatus, exec: execGetLBAStatus},
	{name: "REPORT LUNS", op: opReportLUNs, cdbLen: 12, anyLUN: true, noUA: true, alua: alua.AnyState,
		usage: []byte{0xA0, 0x00, 0xFF, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseReportLUNs, exec: execReportLUNs},
	{name: "REPORT SUPPORTED OPERATION CODES", op: opMaintenanceIn, sa: saReportSupportedOps, hasSA: true, cdbLen: 12, noMedium: true,
		usage: []byte{0xA3, saReportSupportedOps, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseReportSupportedOps, exec: execReportSupportedOps},
	{name: "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", op: opMaintenanceIn, sa: saReportSupportedTM, hasSA: true, cdbLen: 12, noMedium: true,
		usage: []byte{0xA3, saReportSupportedTM, 0x80, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseReportSupportedTMFs, exec: execReportSupportedTMFs},
	{name: "REPORT TARGET PORT GROUPS", op: opMaintenanceIn, sa: saReportTPG, hasSA: true, cdbLen: 12, noMedium: true, alua: alua.AnyState, // alua.go
		usage: []byte{0xA3, 0xE0 | saReportTPG, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseReportTPG, exec: execReportTPG},
	{name: "SET TARGET PORT GROUPS", op: opMaintenanceOut, sa: saSetTPG, hasSA: true, cdbLen: 12, sharedState: true, noMedium: true, alua: alua.AnyState,
		usage: []byte{0xA4, saSetTPG, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseSetTPG, exec: execSetTPG},
	{name: "READ(12)", op: opRead12, cdbLen: 12, blockIO: true, quick: true, xferLenAt: 6,
		usage: []byte{0xA8, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseRW12, exec: execRead},
	{name: "WRITE(12)", op: opWrite12, cdbLen: 12, blockIO: true, quick: true, writes: true, xferLenAt: 6, partialDataOK: true,
		usage: []byte{0xAA, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseRW12, exec: execWrite},
	{name: "WRITE AND VERIFY(12)", op: opWriteAndVerify12, cdbLen: 12, blockIO: true, writes: true, xferLenAt: 6, partialDataOK: true,
		usage: []byte{0xAE, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseWriteAndVerify, exec: execWriteAndVerify},
	{name: "VERIFY(12)", op: opVerify12, cdbLen: 12, blockIO: true, xferLenAt: 6,
		usage: []byte{0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseVerify, exec: execVerify},
	{name: "READ DEFECT DATA(12)", op: opReadDefectData12, cdbLen: 12,
		usage: []byte{0xB7, 0x1F, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseReadDefectData, exec: execReadDefectData},
}

// supportedOps is ops, for REPORT SUPPORTED OPERATION CODES; set in init
// because ops refers to that command's handler (an initialization cycle).
var supportedOps []*opDesc

func init() {
	supportedOps = ops
	for _, d := range ops {
		if len(d.usage) != d.cdbLen {
			panic("scsi: usage data length of " + d.name + " differs from its CDB length")
		}
		e := &opTable[d.op]
		if d.hasSA {
			if e.bySA == nil {
				e.bySA = make(map[uint16]*opDesc)
			}
			e.bySA[d.sa] = d
		} else {
			e.desc = d
		}
	}
}

// lookupOp finds the table row of a CDB. Unknown opcodes are INVALID
// COMMAND OPERATION CODE; an unknown service action of a known opcode is
// INVALID FIELD IN CDB at the SERVICE ACTION field (SPC-5). The
// descriptor is returned with the opcode error so the caller can still see
// which rules apply.
func lookupOp(cdb []byte) (*opDesc, error) {
	e := &opTable[cdb[0]]
	if e.desc != nil {
		return e.desc, nil
	}
	if e.bySA != nil {
		if len(cdb) < 2 {
			return nil, sense.InvalidFieldInCDB(len(cdb), -1)
		}
		if d := e.bySA[uint16(cdb[1]&serviceActionBitsMask)]; d != nil {
			return d, nil
		}
		return nil, sense.InvalidFieldInCDB(1, 4)
	}
	return nil, sense.InvalidOpcode()
}

func parseNoData(lu *LU, cmd *Command) error { return nil }

func execNothing(ctx context.Context, d *Device, cmd *Command) (int, error) { return 0, nil }

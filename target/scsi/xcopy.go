package scsi

import (
	"context"
	"encoding/binary"
	"io"
	"sync"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi/pr"
	"github.com/blockport/blockport/target/scsi/sense"
)

// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18): every
// LU is a copy manager that copies between logical units of its own
// device. Copy targets are named by identification descriptors (E4h)
// carrying a designator of VPD page 83h, and are looked up only among the
// LUs the issuing I_T nexus can see, through the device's LUN masking: a
// copy can never reach, or write, what the initiator could not reach or
// write itself (the Linux target's CVE-2020-28374 resolved designators
// over every LU of the system).

// Opcodes and service actions (SPC-4).
const (
	opExtendedCopy          = 0x83
	opReceiveCopyResults    = 0x84
	saExtendedCopyLID1      = 0x00
	saCopyStatus            = 0x00
	saReceiveData           = 0x01
	saOperatingParameters   = 0x03
	saFailedSegmentDetails  = 0x04
	vpdThirdPartyCopy       = 0x8F
	tpcDescIdentification   = 0xE4 // target descriptor: identification descriptor
	tpcSegBlockToBlock      = 0x02 // segment descriptor: block device to block device
	tpcSegBlockToBlockBytes = 0x0A // ... with byte offsets
)

// Copy manager limits, reported by OPERATING PARAMETERS and VPD page 8Fh.
const (
	xcopyHeaderLen      = 16
	xcopyTargetDescLen  = 32
	xcopyMaxTargetDescs = 8
	xcopyMaxSegments    = 32
	// xcopyMaxDescListLen bounds target plus segment descriptors; it holds
	// the maximum counts of both kinds (8*32 + 32*32 would not fit, but a
	// list at the count limits of either kind with one of the other does).
	xcopyMaxDescListLen = 1024
	// xcopyMaxSegmentBytes bounds the data one segment moves, and so the
	// time one EXTENDED COPY holds the initiator's command slot.
	xcopyMaxSegmentBytes = 64 << 20
	// xcopyMaxConcurrent copies run at once per LU; more wait for a slot.
	xcopyMaxConcurrent = 16
	// xcopyMaxHeld bounds the finished copies whose results an I_T nexus
	// may still fetch; the oldest are dropped first (SPC-4 allows it when
	// the copy manager needs the resources).
	xcopyMaxHeld = 16
	xcopyChunk   = 1 << 20
)

// xcopyDescTypes are the implemented descriptor type codes.
var xcopyDescTypes = []byte{tpcSegBlockToBlock, tpcSegBlockToBlockBytes, tpcDescIdentification}

// LIST ID USAGE values (SPC-4 EXTENDED COPY(LID1) parameter list).
const (
	listIDHold     = 0 // hold results for RECEIVE COPY RESULTS; list ID unique
	listIDNoHold   = 2 // do not hold; list ID unique among running copies
	listIDDisabled = 3 // no list ID: cannot be asked about
)

// xcopyTargetDesc is one parsed identification target descriptor.
type xcopyTargetDesc struct {
	off        int // of the descriptor in the parameter list
	codeSet    byte
	desigType  byte
	designator []byte
	blockSize  uint32 // DISK BLOCK LENGTH
}

// xcopySegment is one parsed block-to-block segment descriptor.
type xcopySegment struct {
	off            int // of the descriptor in the parameter list
	typ            byte
	src, dst       uint16 // target descriptor indexes
	dc             bool   // 02h: NUMBER OF BLOCKS counts destination blocks
	blocks         uint16 // 02h
	numBytes       uint32 // 0Ah
	srcLBA, dstLBA uint64
	srcOff, dstOff uint16 // 0Ah byte offsets into the first blocks
}

// xcopyList is a parsed EXTENDED COPY(LID1) parameter list.
type xcopyList struct {
	listID   byte
	usage    byte
	targets  []xcopyTargetDesc
	segments []xcopySegment
}

// parseXCopyList decodes and checks the structure of an EXTENDED COPY(LID1)
// parameter list (SPC-4 6.4.3): header, lengths, counts against the limits,
// and the descriptor types and lengths. Whether the copy targets exist and
// the LBAs fit is for execution. Errors are ILLEGAL REQUEST sense data.
func parseXCopyList(p []byte) (*xcopyList, error) {
	if len(p) < xcopyHeaderLen {
		return nil, sense.ParameterListLengthError()
	}
	l := &xcopyList{listID: p[0], usage: p[1] >> 3 & 0x03}
	if p[1]&0xC0 != 0 {
		return nil, sense.InvalidFieldInParameterList(1, 7)
	}
	if l.usage == 1 { // 01b is reserved
		return nil, sense.InvalidFieldInParameterList(1, 4)
	}
	// STR (bit 5) and PRIORITY (bits 2-0) are advisory: chunks are copied
	// in order and copies share the LU with every other command.
	for i := 4; i < 8; i++ {
		if p[i] != 0 {
			return nil, sense.InvalidFieldInParameterList(i, 7)
		}
	}
	tdl := uint64(binary.BigEndian.Uint16(p[2:4]))
	sdl := uint64(binary.BigEndian.Uint32(p[8:12]))
	idl := uint64(binary.BigEndian.Uint32(p[12:16]))
	// SPC-4: descriptors beyond MAXIMUM DESCRIPTOR LIST LENGTH, or lengths
	// beyond the data sent, are a PARAMETER LIST LENGTH ERROR.
	if tdl+sdl > xcopyMaxDescListLen || xcopyHeaderLen+tdl+sdl+idl > uint64(len(p)) {
		return nil, sense.ParameterListLengthError()
	}
	if idl != 0 { // MAXIMUM INLINE DATA LENGTH is 0: no segment type uses it
		return nil, sense.InvalidFieldInParameterList(12, 7)
	}
	if tdl%xcopyTargetDescLen != 0 {
		return nil, sense.InvalidFieldInParameterList(2, 7)
	}
	if tdl/xcopyTargetDescLen > xcopyMaxTargetDescs {
		return nil, sense.TooManyTargetDescriptors()
	}
	segStart := xcopyHeaderLen + int(tdl)
	segEnd := segStart + int(sdl)
	// Count the segment descriptors first: too many is reported before
	// what is wrong inside one.
	var segOffs []int
	for o := segStart; o < segEnd; {
		if o+4 > segEnd {
			return nil, sense.ParameterListLengthError()
		}
		n := 4 + int(binary.BigEndian.Uint16(p[o+2:o+4]))
		if o+n > segEnd {
			return nil, sense.ParameterListLengthError()
		}
		if len(segOffs) == xcopyMaxSegments {
			return nil, sense.TooManySegmentDescriptors()
		}
		segOffs = append(segOffs, o)
		o += n
	}
	for o := xcopyHeaderLen; o < segStart; o += xcopyTargetDescLen {
		t, err := parseTargetDesc(p[o:o+xcopyTargetDescLen], o)
		if err != nil {
			return nil, err
		}
		l.targets = append(l.targets, t)
	}
	for _, o := range segOffs {
		s, err := parseSegmentDesc(p[o:o+4+int(binary.BigEndian.Uint16(p[o+2:o+4]))], o)
		if err != nil {
			return nil, err
		}
		l.segments = append(l.segments, s)
	}
	return l, nil
}

// parseTargetDesc decodes an identification target descriptor (E4h); d is
// the 32-byte descriptor at offset off of the parameter list.
func parseTargetDesc(d []byte, off int) (xcopyTargetDesc, error) {
	t := xcopyTargetDesc{off: off}
	if d[0] != tpcDescIdentification {
		return t, sense.UnsupportedTargetDescriptorType(off)
	}
	// Byte 1: LU ID TYPE and NUL are obsolete in SPC-4 and ignored; the
	// PERIPHERAL DEVICE TYPE must be a direct access block device.
	if d[1]&0x1F != pdtDisk {
		return t, sense.InvalidFieldInParameterList(off+1, 4)
	}
	// Bytes 4-27: a designation descriptor (SPC-4 7.8.6), 20 bytes at most.
	t.codeSet = d[4] & 0x0F
	if assoc := d[5] >> 4 & 0x03; assoc != 0 { // must name a logical unit
		return t, sense.InvalidFieldInParameterList(off+5, 5)
	}
	t.desigType = d[5] & 0x0F
	n := int(d[7])
	if n == 0 || n > 20 {
		return t, sense.InvalidFieldInParameterList(off+7, 7)
	}
	t.designator = d[8 : 8+n]
	// Bytes 28-31: block device parameters, PAD (byte 28 bit 2) and DISK
	// BLOCK LENGTH. PAD only matters for stream devices.
	if d[28]&^0x04 != 0 {
		return t, sense.InvalidFieldInParameterList(off+28, 7)
	}
	t.blockSize = uint32(d[29])<<16 | uint32(d[30])<<8 | uint32(d[31])
	return t, nil
}

// parseSegmentDesc decodes a segment descriptor d at offset off.
func parseSegmentDesc(d []byte, off int) (xcopySegment, error) {
	s := xcopySegment{off: off, typ: d[0]}
	var wantLen int
	switch d[0] {
	case tpcSegBlockToBlock:
		wantLen = 0x18
		if d[1]&^0x03 != 0 { // DC (bit 1), CAT (bit 0)
			return s, sense.InvalidFieldInParameterList(off+1, 7)
		}
	case tpcSegBlockToBlockBytes:
		wantLen = 0x1C
		if d[1]&^0x01 != 0 { // CAT (bit 0)
			return s, sense.InvalidFieldInParameterList(off+1, 7)
		}
	default:
		return s, sense.UnsupportedSegmentDescriptorType(off)
	}
	if len(d) != 4+wantLen {
		return s, sense.InvalidFieldInParameterList(off+2, 7)
	}
	// CAT only concerns the residue of inexact segments, which block to
	// block copies in whole blocks (02h) or bytes (0Ah) do not have.
	s.src = binary.BigEndian.Uint16(d[4:6])
	s.dst = binary.BigEndian.Uint16(d[6:8])
	s.srcLBA = binary.BigEndian.Uint64(d[12:20])
	s.dstLBA = binary.BigEndian.Uint64(d[20:28])
	if d[0] == tpcSegBlockToBlock {
		if d[8] != 0 || d[9] != 0 {
			return s, sense.InvalidFieldInParameterList(off+8, 7)
		}
		s.dc = d[1]&0x02 != 0
		s.blocks = binary.BigEndian.Uint16(d[10:12])
	} else {
		s.numBytes = binary.BigEndian.Uint32(d[8:12])
		s.srcOff = binary.BigEndian.Uint16(d[28:30])
		s.dstOff = binary.BigEndian.Uint16(d[30:32])
	}
	return s, nil
}

// copyTarget is a resolved copy target: an LU the issuing nexus reaches.
type copyTarget struct {
	lu       *LU
	readOnly bool // the LU or the nexus' mapping refuses writes
}

// copyStep is one segment reduced to byte ranges of resolved targets.
type copyStep struct {
	src, dst       *copyTarget
	srcOff, dstOff int64
	n              int64
}

// resolveCopyTargets finds, for each target descriptor, the LU the
// issuing nexus n sees with that designator. Only LUNs visible to n are
// considered, through the same resolution as every other command.
func (d *Device) resolveCopyTargets(n *Nexus, l *xcopyList) ([]*copyTarget, error) {
	targets := make([]*copyTarget, len(l.targets))
	for i := range l.targets {
		t := &l.targets[i]
		for _, lun := range d.visibleLUNs(n) {
			lu, roMapping := d.resolve(n, lun)
			if lu != nil && lu.hasDesignator(t.codeSet, t.desigType, t.designator) {
				targets[i] = &copyTarget{lu: lu, readOnly: roMapping || lu.cfg.ReadOnly || lu.modes.writeProtect()}
				break
			}
		}
		if targets[i] == nil {
			// SPC-4: a copy target the copy manager cannot reach.
			return nil, sense.CopyTargetNotReachable()
		}
		if targets[i].lu.blockSize != t.blockSize {
			return nil, sense.InvalidFieldInParameterList(t.off+29, 7)
		}
	}
	return targets, nil
}

// hasDesignator reports whether the LU's Device Identification page holds
// a logical unit designator with this code set, type and value.
func (lu *LU) hasDesignator(codeSet, typ byte, value []byte) bool {
	page := lu.vpd[vpdDeviceID]
	for o := 4; o+4 <= len(page); {
		n := int(page[o+3])
		if o+4+n > len(page) {
			return false
		}
		if page[o]&0x0F == codeSet && page[o+1]&0x0F == typ && page[o+1]>>4&0x03 == 0 &&
			string(page[o+4:o+4+n]) == string(value) {
			return true
		}
		o += 4 + n
	}
	return false
}

// planCopy checks every segment against its targets before any data moves,
// so that a copy either fails whole or runs. Index and range errors are
// COPY ABORTED with a segment pointer, as the copy manager detects them
// while processing the segment (SPC-4); a segment longer than the copy
// manager supports is an invalid parameter; writing through a read-only
// LU or mapping is DATA PROTECT.
func planCopy(l *xcopyList, targets []*copyTarget) ([]copyStep, error) {
	steps := make([]copyStep, 0, len(l.segments))
	for _, s := range l.segments {
		if int(s.src) >= len(targets) {
			return nil, sense.CopyAborted(&sense.FieldPointer{Byte: uint16(s.off + 4), Bit: -1})
		}
		if int(s.dst) >= len(targets) {
			return nil, sense.CopyAborted(&sense.FieldPointer{Byte: uint16(s.off + 6), Bit: -1})
		}
		src, dst := targets[s.src], targets[s.dst]
		sbs, dbs := uint64(src.lu.blockSize), uint64(dst.lu.blockSize)
		var n, srcOff, dstOff uint64
		if s.typ == tpcSegBlockToBlock {
			unit := sbs
			if s.dc {
				unit = dbs
			}
			n = uint64(s.blocks) * unit
			if n%sbs != 0 || n%dbs != 0 {
				return nil, sense.InvalidFieldInParameterList(s.off+10, 7)
			}
			if n > xcopyMaxSegmentBytes {
				return nil, sense.InvalidFieldInParameterList(s.off+10, 7)
			}
		} else {
			n, srcOff, dstOff = uint64(s.numBytes), uint64(s.srcOff), uint64(s.dstOff)
			if n > xcopyMaxSegmentBytes {
				return nil, sense.InvalidFieldInParameterList(s.off+8, 7)
			}
			if srcOff >= sbs {
				return nil, sense.InvalidFieldInParameterList(s.off+28, 7)
			}
			if dstOff >= dbs {
				return nil, sense.InvalidFieldInParameterList(s.off+30, 7)
			}
		}
		// Byte ranges within the capacity, written so nothing overflows:
		// an LBA may be up to 2^64-1.
		srcCap, dstCap := src.lu.blocks.Load()*sbs, dst.lu.blocks.Load()*dbs
		if s.srcLBA > src.lu.blocks.Load() || s.srcLBA*sbs+srcOff > srcCap || n > srcCap-(s.srcLBA*sbs+srcOff) {
			return nil, sense.CopyAborted(&sense.FieldPointer{Byte: uint16(s.off + 12), Bit: -1})
		}
		if s.dstLBA > dst.lu.blocks.Load() || s.dstLBA*dbs+dstOff > dstCap || n > dstCap-(s.dstLBA*dbs+dstOff) {
			return nil, sense.CopyAborted(&sense.FieldPointer{Byte: uint16(s.off + 20), Bit: -1})
		}
		if n > 0 && dst.readOnly {
			return nil, sense.WriteProtected()
		}
		steps = append(steps, copyStep{src: src, dst: dst,
			srcOff: int64(s.srcLBA*sbs + srcOff), dstOff: int64(s.dstLBA*dbs + dstOff), n: int64(n)})
	}
	return steps, nil
}

// EXTENDED COPY(LID1) CDB (SPC-4): byte 1 SERVICE ACTION 00h, bytes 10-13
// PARAMETER LIST LENGTH. A length of zero copies nothing and is not an
// error; one beyond the largest list the limits allow is refused before
// any data moves.
func parseExtendedCopy(lu *LU, cmd *Command) error {
	c := cmd.CDB
	if c[1]&0xE0 != 0 {
		return sense.InvalidFieldInCDB(1, 7)
	}
	for i := 2; i < 10; i++ {
		if c[i] != 0 {
			return sense.InvalidFieldInCDB(i, 7)
		}
	}
	if c[14] != 0 {
		return sense.InvalidFieldInCDB(14, 7)
	}
	n := binary.BigEndian.Uint32(c[10:14])
	if n > xcopyHeaderLen+xcopyMaxDescListLen {
		return sense.ParameterListLengthError()
	}
	cmd.TransferLength = int(n)
	if n > 0 {
		cmd.Dir = DirWrite
	}
	return nil
}

func execExtendedCopy(ctx context.Context, d *Device, cmd *Command) (int, error) {
	if cmd.TransferLength == 0 {
		return 0, nil
	}
	// Less data-out than the parameter list length: the header's lengths
	// then run past the data, a PARAMETER LIST LENGTH ERROR.
	l, err := parseXCopyList(cmd.Data[:min(len(cmd.Data), cmd.TransferLength)])
	if err != nil {
		return 0, err
	}
	lu := cmd.lu
	rec, err := lu.copies.begin(*cmd.Nexus, l.listID, l.usage)
	if err != nil {
		return 0, err
	}
	err = d.runCopy(ctx, cmd.Nexus, l, rec)
	lu.copies.end(rec, err)
	return 0, err
}

// runCopy resolves, checks and carries out a parsed copy.
func (d *Device) runCopy(ctx context.Context, n *Nexus, l *xcopyList, rec *copyRecord) error {
	targets, err := d.resolveCopyTargets(n, l)
	if err != nil {
		return err
	}
	// The copy's targets count as busy while it runs, as the LU it was
	// sent to does (Execute).
	entered := map[*LU]bool{}
	defer func() {
		for lu := range entered {
			lu.exit()
		}
	}()
	for _, t := range targets {
		if entered[t.lu] {
			continue
		}
		if !t.lu.enter() {
			return sense.CopyTargetNotReachable()
		}
		entered[t.lu] = true
	}
	for _, t := range targets {
		if err := t.ready(n); err != nil {
			return err
		}
	}
	steps, err := planCopy(l, targets)
	if err != nil {
		return err
	}
	release, err := rec.owner.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	buf := backstore.GetBuffer(xcopyChunk)
	defer backstore.PutBuffer(buf)
	for i := range steps {
		if err := steps[i].run(ctx, buf, l.segments[i].off); err != nil {
			return err
		}
		rec.owner.progress(rec, int64(i+1), steps[i].n)
	}
	for _, t := range targets {
		t.lu.checkThreshold() // a thin destination may have allocated storage
	}
	return nil
}

// ready checks that a copy target other than the addressed LU can take
// part: a medium is loaded, no sanitize runs or failed, and the issuing
// nexus holds no conflicting reservation (a copy reads and writes as the
// initiator would).
func (t *copyTarget) ready(n *Nexus) error {
	lu := t.lu
	if lu.cfg.Removable && !lu.media.present() {
		return sense.CopyTargetNotReachable()
	}
	if lu.san.busy() != nil || lu.san.failedMode() {
		return sense.CopyTargetNotReachable()
	}
	class := pr.Read
	if !t.readOnly {
		class = pr.Write
	}
	if lu.pr.Conflicts(prNexus(n), class) {
		return StatusError(StatusReservationConflict)
	}
	return nil
}

// run copies one segment in chunks through buf. Each chunk is read under a
// shared lock of its source blocks and written under a shared lock of its
// destination blocks, as READ and WRITE would, so COMPARE AND WRITE and
// WRITE ATOMIC stay atomic against it. Overlapping ranges of one LU are
// copied back to front when the destination lies after the source, so
// every byte is read before it is overwritten.
func (s *copyStep) run(ctx context.Context, buf []byte, segOff int) error {
	backward := s.src.lu == s.dst.lu && s.dstOff > s.srcOff && s.dstOff < s.srcOff+s.n
	chunk := int64(len(buf))
	for done := int64(0); done < s.n; {
		if ctx.Err() != nil {
			return StatusError(StatusTaskAborted)
		}
		k := min(chunk, s.n-done)
		pos := done
		if backward {
			pos = s.n - done - k
		}
		p := buf[:k]
		if err := s.src.lu.readBytes(p, s.srcOff+pos); err != nil {
			return sense.CopyAborted(&sense.FieldPointer{Byte: uint16(segOff + 12), Bit: -1}).WithCause(err)
		}
		if err := s.dst.lu.writeBytes(p, s.dstOff+pos); err != nil {
			return sense.CopyAborted(&sense.FieldPointer{Byte: uint16(segOff + 20), Bit: -1}).WithCause(err)
		}
		done += k
	}
	return nil
}

// blockSpan is the range of blocks that bytes [off, off+n) touch.
func (lu *LU) blockSpan(off, n int64) (lba, blocks uint64) {
	first := uint64(off) >> lu.blockShift
	last := (uint64(off+n) + uint64(lu.blockSize) - 1) >> lu.blockShift
	return first, last - first
}

func (lu *LU) readBytes(p []byte, off int64) error {
	lba, n := lu.blockSpan(off, int64(len(p)))
	defer lu.locks.unlock(lu.locks.lock(lba, n, false))
	if got, err := lu.store.ReadAt(p, off); got < len(p) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

func (lu *LU) writeBytes(p []byte, off int64) error {
	lba, n := lu.blockSpan(off, int64(len(p)))
	defer lu.locks.unlock(lu.locks.lock(lba, n, false))
	if wrote, err := lu.store.WriteAt(p, off, lu.writeThrough()); err != nil || wrote < len(p) {
		if err == nil {
			err = io.ErrShortWrite
		}
		return err
	}
	return nil
}

// copyKey names a list identifier of one I_T nexus.
type copyKey struct {
	nexus Nexus
	id    byte
}

// copyRecord is one EXTENDED COPY known by its list identifier: running,
// or finished with results held for RECEIVE COPY RESULTS.
type copyRecord struct {
	owner *copyManager
	key   copyKey
	named bool // registered under key (LIST ID USAGE 00b or 10b)
	hold  bool // results are held after the copy (LIST ID USAGE 00b)
	// The rest is guarded by owner.mu.
	running       bool
	segments      int64
	bytes         int64
	failed        bool
	sense         []byte // fixed format sense of a failed copy
	status        Status
	statusTaken   bool
	detailsTaken  bool
	finishedOrder uint64
}

// copyManager tracks the copies of one LU: list identifiers in use,
// held results, and the concurrency limit.
type copyManager struct {
	mu       sync.Mutex
	lists    map[copyKey]*copyRecord // guarded by mu
	finished uint64                  // guarded by mu; orders held results
	slots    chan struct{}           // created on first use under mu
}

// begin registers a copy under its list identifier. SPC-4: a list
// identifier in use by a running copy of the same nexus is OPERATION IN
// PROGRESS; the results held for a finished one are replaced.
func (m *copyManager) begin(n Nexus, id, usage byte) (*copyRecord, error) {
	r := &copyRecord{owner: m, key: copyKey{n, id}, running: true,
		named: usage != listIDDisabled, hold: usage == listIDHold}
	if !r.named {
		return r, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.lists[r.key]; old != nil && old.running {
		return nil, sense.OperationInProgress()
	}
	if m.lists == nil {
		m.lists = make(map[copyKey]*copyRecord)
	}
	m.lists[r.key] = r
	return r, nil
}

// end records the outcome; without HOLD the list identifier is free again.
func (m *copyManager) end(r *copyRecord, err error) {
	if !r.named {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r.running = false
	if m.lists[r.key] != r {
		return // forgotten by a nexus loss meanwhile
	}
	if !r.hold {
		delete(m.lists, r.key)
		return
	}
	if err != nil {
		r.failed = true
		st, sb := StatusOf(err)
		r.status, r.sense = st, sb
	}
	m.finished++
	r.finishedOrder = m.finished
	// Keep at most xcopyMaxHeld finished records per nexus.
	var held []*copyRecord
	for k, o := range m.lists {
		if k.nexus == r.key.nexus && !o.running {
			held = append(held, o)
		}
	}
	for len(held) > xcopyMaxHeld {
		oldest := 0
		for i, o := range held {
			if o.finishedOrder < held[oldest].finishedOrder {
				oldest = i
			}
		}
		delete(m.lists, held[oldest].key)
		held = append(held[:oldest], held[oldest+1:]...)
	}
}

// progress records that a copy finished a segment of n bytes.
func (m *copyManager) progress(r *copyRecord, segments, n int64) {
	m.mu.Lock()
	r.segments = segments
	r.bytes += n
	m.mu.Unlock()
}

// acquire takes one of the LU's concurrent copy slots.
func (m *copyManager) acquire(ctx context.Context) (release func(), err error) {
	m.mu.Lock()
	if m.slots == nil {
		m.slots = make(chan struct{}, xcopyMaxConcurrent)
	}
	slots := m.slots
	m.mu.Unlock()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	case <-ctx.Done():
		return nil, StatusError(StatusTaskAborted)
	}
}

// forget drops what is known of a nexus' copies (its I_T nexus ended).
func (m *copyManager) forget(n Nexus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.lists {
		if k.nexus == n {
			delete(m.lists, k)
		}
	}
}

// RECEIVE COPY RESULTS (SPC-4 6.18), 16-byte CDB: SERVICE ACTION in byte 1,
// LIST IDENTIFIER in byte 2, ALLOCATION LENGTH in bytes 10-13.
func parseReceiveCopyResults(lu *LU, cmd *Command) error {
	c := cmd.CDB
	if c[1]&0xE0 != 0 {
		return sense.InvalidFieldInCDB(1, 7)
	}
	for _, i := range []int{3, 4, 5, 6, 7, 8, 9, 14} {
		if c[i] != 0 {
			return sense.InvalidFieldInCDB(i, 7)
		}
	}
	cmd.args.page = c[2] // the list identifier
	dataIn(cmd, binary.BigEndian.Uint32(c[10:14]), 64+sense.FixedLen)
	return nil
}

func execReceiveCopyResults(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	if cmd.op.sa == saOperatingParameters {
		return putOut(cmd, operatingParameters()), nil
	}
	m := &lu.copies
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.lists[copyKey{*cmd.Nexus, cmd.args.page}]
	// SPC-4: a list identifier with nothing known for this nexus is an
	// invalid field in the CDB. Copies without HOLD are known only while
	// they run.
	if r == nil {
		return 0, sense.InvalidFieldInCDB(2, 7)
	}
	var resp []byte
	switch cmd.op.sa {
	case saCopyStatus:
		resp = make([]byte, 12)
		binary.BigEndian.PutUint32(resp[0:4], 8)
		switch {
		case r.running:
			resp[4] = 0x00 // operation in progress
		case r.failed:
			resp[4] = 0x02 // completed with errors
		default:
			resp[4] = 0x01 // completed without errors
		}
		binary.BigEndian.PutUint16(resp[5:7], uint16(r.segments))
		count, units := uint64(r.bytes), byte(0) // TRANSFER COUNT UNITS 00h: bytes
		if count > 0xFFFFFFFF {
			count, units = count>>10, 0x01 // kibibytes
		}
		resp[7] = units
		binary.BigEndian.PutUint32(resp[8:12], uint32(count))
		if !r.running {
			r.statusTaken = true
		}
	case saReceiveData:
		// No segment type this copy manager implements holds data.
		resp = make([]byte, 4)
	case saFailedSegmentDetails:
		if r.running || !r.failed {
			resp = make([]byte, 4) // no details: AVAILABLE DATA 0
			break
		}
		resp = make([]byte, 60, 60+len(r.sense))
		resp[56] = byte(r.status)
		binary.BigEndian.PutUint16(resp[58:60], uint16(len(r.sense)))
		resp = append(resp, r.sense...)
		binary.BigEndian.PutUint32(resp[0:4], uint32(len(resp)-4))
		r.detailsTaken = true
	}
	// SPC-4: held results are discarded once delivered.
	if !r.running && r.statusTaken && (!r.failed || r.detailsTaken) {
		delete(m.lists, r.key)
	}
	return putOut(cmd, resp), nil
}

// operatingParameters is the OPERATING PARAMETERS data (SPC-4 6.18.4).
func operatingParameters() []byte {
	b := make([]byte, 44, 44+len(xcopyDescTypes))
	b[4] = 0x01 // SNLID: LIST ID USAGE 11b is supported
	binary.BigEndian.PutUint16(b[8:10], xcopyMaxTargetDescs)
	binary.BigEndian.PutUint16(b[10:12], xcopyMaxSegments)
	binary.BigEndian.PutUint32(b[12:16], xcopyMaxDescListLen)
	binary.BigEndian.PutUint32(b[16:20], xcopyMaxSegmentBytes)
	// MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT and MAXIMUM STREAM
	// DEVICE TRANSFER SIZE are 0: no inline data, no held data, no streams.
	binary.BigEndian.PutUint16(b[34:36], xcopyMaxConcurrent) // TOTAL CONCURRENT COPIES
	b[36] = xcopyMaxConcurrent                               // MAXIMUM CONCURRENT COPIES
	// DATA SEGMENT GRANULARITY 0 (2^0 bytes): 0Ah segments copy any length.
	b[43] = byte(len(xcopyDescTypes))
	b = append(b, xcopyDescTypes...)
	binary.BigEndian.PutUint32(b[0:4], uint32(len(b)-4))
	return b
}

// vpdThirdPartyCopyPage builds the Third-party Copy VPD page (SPC-4
// 7.8.17) for EXTENDED COPY(LID1): the supported commands, the parameter
// data limits, the supported descriptors, the (empty) list of supported
// CSCD IDs, and the general copy operation limits.
func vpdThirdPartyCopyPage() []byte {
	var body []byte
	add := func(typ uint16, desc []byte) {
		// Descriptor lengths are padded to a multiple of four.
		for len(desc)%4 != 0 {
			desc = append(desc, 0)
		}
		body = binary.BigEndian.AppendUint16(body, typ)
		body = binary.BigEndian.AppendUint16(body, uint16(len(desc)))
		body = append(body, desc...)
	}
	cmds := []byte{
		opExtendedCopy, 1, saExtendedCopyLID1,
		opReceiveCopyResults, 4, saCopyStatus, saReceiveData, saOperatingParameters, saFailedSegmentDetails,
	}
	add(0x0001, append([]byte{byte(len(cmds))}, cmds...)) // Supported Commands
	params := make([]byte, 28)                            // Parameter Data
	binary.BigEndian.PutUint16(params[4:6], xcopyMaxTargetDescs)
	binary.BigEndian.PutUint16(params[6:8], xcopyMaxSegments)
	binary.BigEndian.PutUint32(params[8:12], xcopyMaxDescListLen)
	add(0x0004, params)
	add(0x0008, append([]byte{byte(len(xcopyDescTypes))}, xcopyDescTypes...)) // Supported Descriptors
	add(0x000C, []byte{0, 0})                                                 // Supported CSCD IDs: none
	general := make([]byte, 28)                                               // General Copy Operations
	binary.BigEndian.PutUint32(general[0:4], xcopyMaxConcurrent)
	binary.BigEndian.PutUint32(general[4:8], xcopyMaxConcurrent)
	binary.BigEndian.PutUint32(general[8:12], xcopyMaxSegmentBytes)
	add(0x8001, general)
	return vpdPage(vpdThirdPartyCopy, body)
}

// receiveCopyResultsOp is the dispatch table row of one RECEIVE COPY
// RESULTS service action.
func receiveCopyResultsOp(sa uint16, name string) *opDesc {
	return &opDesc{name: name, op: opReceiveCopyResults, sa: sa, hasSA: true, cdbLen: 16, noMedium: true,
		usage: []byte{0x84, byte(sa), 0xFF, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00},
		parse: parseReceiveCopyResults, exec: execReceiveCopyResults}
}

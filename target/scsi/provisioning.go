package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/bits"
	"sync/atomic"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi/sense"
)

// Logical block provisioning (SBC-4 4.7): UNMAP, WRITE SAME, GET LBA STATUS,
// and what VPD 0xB0/0xB2 and READ CAPACITY(16) say about them. Everything
// advertised comes from the capabilities the LU's backstore implements
// (backstore.Unmapper, Allocator, Zeroer, Geometry); nothing is assumed.

// Operation codes and service actions of this file.
const (
	opWriteSame10     = 0x41
	opUnmap           = 0x42
	opWriteSame16     = 0x93
	saGetLBAStatus    = 0x12 // SERVICE ACTION IN(16)
	unmapDescLen      = 16   // UNMAP block descriptor (SBC-4 5.32.2)
	lbaStatusDescLen  = 16   // LBA status descriptor (SBC-4 5.20.2)
	maxLBAStatusDescs = 256  // descriptors one GET LBA STATUS returns at most
)

// maxUnmapDescriptors is the MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT: as many
// as a 16-bit PARAMETER LIST LENGTH can carry after the 8-byte header.
const maxUnmapDescriptors = (0xFFFF - 8) / unmapDescLen

// writeSameChunk is the size of the pattern buffer WRITE SAME writes from.
const writeSameChunk = 1 << 20

// provisioning is what the LU knows about its backstore's provisioning;
// fixed in NewLU except the threshold arming.
type provisioning struct {
	unmapper backstore.Unmapper  // nil: no UNMAP, LBPME=0
	unmap    backstore.UnmapInfo // of unmapper
	alloc    backstore.Allocator // nil: every LBA reports mapped
	zeroer   backstore.Zeroer    // nil: WRITE SAME of zeros writes them
	// physExp is the LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
	physExp uint8
	// maxWriteSame is the MAXIMUM WRITE SAME LENGTH in blocks.
	maxWriteSame uint32

	// thresholdPercent > 0 enables the soft threshold UA (thin LUs only).
	thresholdPercent uint8
	// armed: the next crossing of the threshold raises the unit attention.
	// It re-arms when usage falls below the threshold again.
	armed atomic.Bool
}

// initProvisioning asks the backstore for its capabilities.
func (lu *LU) initProvisioning() {
	p := &lu.prov
	if u, ok := lu.store.(backstore.Unmapper); ok {
		p.unmapper, p.unmap = u, u.UnmapInfo()
		if p.unmap.Granularity < int64(lu.blockSize) {
			p.unmap.Granularity = int64(lu.blockSize)
		}
	}
	p.alloc, _ = lu.store.(backstore.Allocator)
	p.zeroer, _ = lu.store.(backstore.Zeroer)
	phys := lu.cfg.PhysicalBlockSize
	if g, ok := lu.store.(backstore.Geometry); ok && phys == 0 {
		phys = g.PhysicalBlockSize()
	}
	if phys > lu.blockSize && phys%lu.blockSize == 0 {
		p.physExp = uint8(min(bits.TrailingZeros32(phys/lu.blockSize), 15))
	}
	// MAXIMUM WRITE SAME LENGTH is the MAXIMUM TRANSFER LENGTH: a WRITE
	// SAME changes no more blocks than one WRITE may, which bounds its time,
	// and initiators that test it with a WRITE of that many blocks (libiscsi)
	// stay within the transfer limit.
	p.maxWriteSame = lu.maxXfer
	if lu.cfg.ThinThresholdPercent > 0 && p.unmapper != nil && p.unmap.Thin && p.alloc != nil {
		p.thresholdPercent = min(lu.cfg.ThinThresholdPercent, 100)
		p.armed.Store(true)
	}
}

// thinProvisioned reports LBPME: the LU supports unmapping (SBC-4 4.7.3).
func (lu *LU) thinProvisioned() bool { return lu.prov.unmapper != nil }

// readsZeroAfterUnmap reports LBPRZ.
func (lu *LU) readsZeroAfterUnmap() bool { return lu.prov.unmapper != nil && lu.prov.unmap.ReadsZero }

// putCapacityProvisioning fills bytes 13-15 of READ CAPACITY(16) data:
// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT, LBPME, LBPRZ, LOWEST ALIGNED
// LOGICAL BLOCK ADDRESS 0 (block 0 starts a physical block).
func (lu *LU) putCapacityProvisioning(b []byte) {
	b[13] = lu.prov.physExp & 0x0F
	if lu.thinProvisioned() {
		b[14] |= 0x80 // LBPME
	}
	if lu.readsZeroAfterUnmap() {
		b[14] |= 0x40 // LBPRZ
	}
}

// putProvisioningLimits fills the Block Limits VPD fields of this file
// (page byte n is body byte n-4): the unmap limits when the LU can unmap,
// the WRITE SAME limit always, and the transfer granularity from the
// physical block.
func (lu *LU) putProvisioningLimits(body []byte) {
	p := &lu.prov
	if phys := uint32(1) << p.physExp; phys > 1 {
		binary.BigEndian.PutUint16(body[2:4], uint16(max(uint32(binary.BigEndian.Uint16(body[2:4])), phys)))
	}
	if p.unmapper != nil {
		binary.BigEndian.PutUint32(body[16:20], 0xFFFFFFFF)          // MAXIMUM UNMAP LBA COUNT: no limit
		binary.BigEndian.PutUint32(body[20:24], maxUnmapDescriptors) // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
		binary.BigEndian.PutUint32(body[24:28], uint32(p.unmap.Granularity/int64(lu.blockSize)))
		body[28] = 0x80 // UGAVALID, UNMAP GRANULARITY ALIGNMENT 0
	}
	binary.BigEndian.PutUint64(body[32:40], uint64(p.maxWriteSame)) // MAXIMUM WRITE SAME LENGTH
}

// vpdLogicalBlockProvisioning builds VPD 0xB2 (SBC-4 6.6.6).
func (lu *LU) vpdLogicalBlockProvisioning() []byte {
	body := make([]byte, 4)
	if lu.thinProvisioned() {
		// LBPU (UNMAP), LBPWS (WRITE SAME(16) with UNMAP), LBPWS10. ANC_SUP=0:
		// anchored LBAs are not supported; DP=0: no descriptor.
		body[1] = 0x80 | 0x40 | 0x20
		if lu.readsZeroAfterUnmap() {
			body[1] |= 0x01 << 2 // LBPRZ 001b: unmapped blocks read as zeros
		}
		if lu.prov.unmap.Thin {
			body[2] = 0x02 // PROVISIONING TYPE 010b: thin provisioned
		} else {
			body[2] = 0x01 // 001b: resource provisioned
		}
		body[3] = lu.prov.thresholdPercent // THRESHOLD PERCENTAGE
	}
	return vpdPage(vpdProvisioning, body)
}

// checkThreshold raises THIN PROVISIONING SOFT THRESHOLD REACHED for every
// nexus when the storage used crosses thin_threshold_percent of the
// capacity (SBC-4 4.7.3.7.4), once per crossing. It runs after commands
// that allocate or release storage.
func (lu *LU) checkThreshold() {
	p := &lu.prov
	if p.thresholdPercent == 0 {
		return
	}
	used, err := p.alloc.AllocatedBytes()
	if err != nil {
		return // a stat failure tells the initiator nothing useful
	}
	limit := int64(lu.blocks.Load()<<lu.blockShift) / 100 * int64(p.thresholdPercent)
	if used >= limit {
		if p.armed.CompareAndSwap(true, false) {
			lu.ua.establish(sense.ThinProvisioningSoftThreshold, nil)
		}
	} else {
		p.armed.Store(true)
	}
}

// UNMAP (SBC-4 5.32): ANCHOR in byte 1 bit 0, PARAMETER LIST LENGTH in
// bytes 7-8. The parameter list is checked whole before anything is
// unmapped.
func parseUnmap(lu *LU, cmd *Command) error {
	if !lu.thinProvisioned() {
		// Not advertised (LBPU=0): the command does not exist for this LU.
		return sense.InvalidOpcode()
	}
	c := cmd.CDB
	if c[1]&0x01 != 0 { // ANCHOR with ANC_SUP=0
		return sense.InvalidFieldInCDB(1, 0)
	}
	if cmd.readOnly {
		return sense.WriteProtected()
	}
	cmd.Dir = DirWrite
	cmd.TransferLength = int(binary.BigEndian.Uint16(c[7:9]))
	return nil
}

// unmapRange is one validated UNMAP block descriptor.
type unmapRange struct {
	lba    uint64
	blocks uint32
}

// parseUnmapList decodes and checks an UNMAP parameter list.
func (lu *LU) parseUnmapList(list []byte) ([]unmapRange, error) {
	if len(list) == 0 {
		return nil, nil // SBC-4: a PARAMETER LIST LENGTH of 0 is not an error
	}
	if len(list) < 8 {
		return nil, sense.ParameterListLengthError()
	}
	// UNMAP DATA LENGTH (bytes 0-1) counts the bytes after itself, BLOCK
	// DESCRIPTOR DATA LENGTH (2-3) those after the header; what the
	// initiator sent bounds both.
	dataLen := int(binary.BigEndian.Uint16(list[0:2]))
	descLen := int(binary.BigEndian.Uint16(list[2:4]))
	if dataLen+2 > len(list) || descLen+8 > len(list) {
		return nil, sense.ParameterListLengthError()
	}
	n := descLen / unmapDescLen
	if n > maxUnmapDescriptors {
		return nil, sense.InvalidFieldInParameterList(2, -1)
	}
	ranges := make([]unmapRange, 0, n)
	for i := range n {
		d := list[8+i*unmapDescLen:]
		r := unmapRange{lba: binary.BigEndian.Uint64(d[0:8]), blocks: binary.BigEndian.Uint32(d[8:12])}
		if r.lba > lu.blocks.Load() || uint64(r.blocks) > lu.blocks.Load()-r.lba {
			return nil, sense.LBAOutOfRange()
		}
		if r.blocks > 0 {
			ranges = append(ranges, r)
		}
	}
	return ranges, nil
}

func execUnmap(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	list := cmd.Data[:min(len(cmd.Data), cmd.TransferLength)]
	ranges, err := lu.parseUnmapList(list)
	if err != nil {
		return 0, err
	}
	defer lu.checkThreshold()
	for _, r := range ranges {
		if ctx.Err() != nil {
			return 0, StatusError(StatusTaskAborted)
		}
		if err := lu.unmapBlocks(r.lba, r.blocks); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// unmapBlocks releases blocks [lba, lba+n) in the backstore.
func (lu *LU) unmapBlocks(lba uint64, n uint32) error {
	defer lu.lockBlocks(lba, n, false)()
	off, length := int64(lba<<lu.blockShift), int64(n)<<lu.blockShift
	if err := lu.prov.unmapper.Unmap(off, length, lu.writeThrough()); err != nil {
		return sense.WriteError(lba).WithCause(err)
	}
	return nil
}

// WRITE SAME(10) (SBC-4 5.50) and WRITE SAME(16) (5.51): byte 1 holds
// WRPROTECT (7-5), ANCHOR (4), UNMAP (3), obsolete PBDATA/LBDATA (2-1) and,
// in the 16-byte CDB, NDOB (0). NUMBER OF LOGICAL BLOCKS 0 means to the
// end of the LU (WSNZ=0).
func parseWriteSame(lu *LU, cmd *Command) error {
	c := cmd.CDB
	a := &cmd.args
	if c[1]&0xE0 != 0 { // WRPROTECT without protection information
		return sense.InvalidFieldInCDB(1, 7)
	}
	if c[1]&0x06 != 0 { // PBDATA, LBDATA: obsolete
		return sense.InvalidFieldInCDB(1, 2)
	}
	a.wsUnmap = c[1]&0x08 != 0
	if a.wsUnmap && cmd.readOnly {
		// A write-protected LU answers DATA PROTECT whatever it could
		// unmap (libiscsi ReadOnly.ReadOnlySBC checks this on thick LUNs).
		return sense.WriteProtected()
	}
	if a.wsUnmap && !lu.thinProvisioned() {
		// SBC-4 5.50: UNMAP set with LBPWS/LBPWS10 zero is an invalid field.
		return sense.InvalidFieldInCDB(1, 3)
	}
	anchor := c[1]&0x10 != 0
	lenAt := 7
	if c[0] == opWriteSame16 {
		a.ndob = c[1]&0x01 != 0
		lenAt = 10
	} else if c[1]&0x01 != 0 {
		return sense.InvalidFieldInCDB(1, 0)
	}
	if anchor {
		// SBC-4: ANCHOR without UNMAP is invalid; with it, only when
		// ANC_SUP=1, which Blockport does not claim.
		return sense.InvalidFieldInCDB(1, 4)
	}
	lbaAndLength(cmd)
	if a.blocks == 0 && a.lba <= lu.blocks.Load() {
		a.blocks = uint32(min(lu.blocks.Load()-a.lba, 0xFFFFFFFF))
	}
	if a.lba <= lu.blocks.Load() && a.blocks > lu.prov.maxWriteSame {
		return sense.InvalidFieldInCDB(lenAt, 7)
	}
	cmd.Dir = DirWrite
	if a.ndob {
		cmd.Dir = DirNone
		return nil
	}
	cmd.TransferLength = int(lu.blockSize)
	// The data-out is exactly one block; more is as wrong as less (which
	// the block I/O checks refuse).
	if cmd.ExpectedLength > lu.blockSize {
		return sense.InvalidFieldInIU()
	}
	return nil
}

func execWriteSame(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	a := &cmd.args
	if a.blocks == 0 {
		return 0, nil
	}
	var block []byte // nil: a block of zeros (NDOB)
	if !a.ndob {
		if len(cmd.Data) < int(lu.blockSize) {
			return 0, sense.InvalidFieldInIU()
		}
		block = cmd.Data[:lu.blockSize]
	}
	// With UNMAP set (parse admitted it only on a thin LU) the blocks are
	// unmapped whatever the data-out holds: initiators send zeros, and
	// libiscsi checks that the blocks then read as zeros when LBPRZ=1.
	if a.wsUnmap {
		defer lu.checkThreshold()
		return 0, lu.unmapBlocks(a.lba, a.blocks)
	}
	defer lu.lockBlocks(a.lba, a.blocks, false)()
	off, length := int64(a.lba<<lu.blockShift), int64(a.blocks)<<lu.blockShift
	fua := lu.writeThrough()
	if (block == nil || isZero(block)) && lu.prov.zeroer != nil {
		defer lu.checkThreshold()
		if err := lu.prov.zeroer.WriteZeroes(off, length, fua); err != nil {
			return 0, sense.WriteError(a.lba).WithCause(err)
		}
		return 0, nil
	}
	defer lu.checkThreshold()
	if sw, ok := lu.store.(backstore.SameWriter); ok && block != nil {
		// The backstore repeats the block itself (rbd_aio_writesame):
		// one block crosses the network instead of the whole range.
		if err := sw.WriteSame(block, off, length, fua); err != nil {
			return 0, sense.WriteError(a.lba).WithCause(err)
		}
		return 0, nil
	}
	buf := backstore.GetBuffer(int(min(length, writeSameChunk)))
	defer backstore.PutBuffer(buf)
	if block == nil {
		clear(buf)
	} else {
		for i := 0; i < len(buf); i += len(block) {
			copy(buf[i:], block)
		}
	}
	for done := int64(0); done < length; {
		if ctx.Err() != nil {
			return 0, StatusError(StatusTaskAborted)
		}
		n := min(int64(len(buf)), length-done)
		if wrote, err := lu.store.WriteAt(buf[:n], off+done, fua); err != nil || int64(wrote) < n {
			return 0, sense.WriteError(a.lba + uint64(done+int64(max(wrote, 0)))>>lu.blockShift).WithCause(err)
		}
		done += n
	}
	return 0, nil
}

func isZero(b []byte) bool {
	var zeros [512]byte
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// GET LBA STATUS (SBC-4 5.20), SERVICE ACTION IN(16) service action 12h:
// STARTING LOGICAL BLOCK ADDRESS in bytes 2-9, ALLOCATION LENGTH in 10-13.
// The REPORT TYPE of byte 14 (SBC-4r10 and later) is honoured as 00b (all
// statuses); other values are accepted and answered the same way, which
// only returns more descriptors than asked.
func parseGetLBAStatus(lu *LU, cmd *Command) error {
	c := cmd.CDB
	cmd.args.lba = binary.BigEndian.Uint64(c[2:10])
	// SBC-4: a starting LBA beyond the last LBA is out of range.
	if cmd.args.lba >= lu.blocks.Load() {
		return sense.LBAOutOfRange()
	}
	dataIn(cmd, binary.BigEndian.Uint32(c[10:14]), 8+maxLBAStatusDescs*lbaStatusDescLen)
	return nil
}

// LBA status descriptor PROVISIONING STATUS values (SBC-4 5.20.2).
const (
	lbaMapped      = 0x0
	lbaDeallocated = 0x1
)

func execGetLBAStatus(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	want := cmd.TransferLength
	descs := max(1, min(maxLBAStatusDescs, (want-8+lbaStatusDescLen-1)/lbaStatusDescLen))
	resp := make([]byte, 8, 8+descs*lbaStatusDescLen)
	bs := int64(lu.blockSize)
	size := int64(lu.blocks.Load()) << lu.blockShift
	for lba := cmd.args.lba; lba < lu.blocks.Load() && len(resp) < cap(resp); {
		off := int64(lba) << lu.blockShift
		mapped, run := true, size-off
		if lu.prov.alloc != nil {
			var err error
			mapped, run, err = lu.prov.alloc.Allocated(off, size-off)
			if err != nil {
				return 0, sense.UnrecoveredReadError(lba).WithCause(err)
			}
		}
		// A run that ends inside a block: the block holds data if any of
		// it is mapped, so mapped runs round up and holes round down. A
		// hole smaller than a block is part of a mapped block.
		end := off + run
		if mapped {
			end = (end + bs - 1) / bs * bs
		} else {
			end = end / bs * bs
			if end <= off {
				mapped, end = true, off+bs
			}
		}
		n := uint64(min(end, size)-off) >> lu.blockShift
		n = min(n, 0xFFFFFFFF) // NUMBER OF LOGICAL BLOCKS is 32 bits
		var desc [lbaStatusDescLen]byte
		binary.BigEndian.PutUint64(desc[0:8], lba)
		binary.BigEndian.PutUint32(desc[8:12], uint32(n))
		if !mapped {
			desc[12] = lbaDeallocated
		} else {
			desc[12] = lbaMapped
		}
		// Merge with the previous descriptor when the status is the same
		// (a short hole rounded into a mapped block).
		if last := len(resp) - lbaStatusDescLen; last >= 8 && resp[last+12] == desc[12] {
			prev := binary.BigEndian.Uint32(resp[last+8 : last+12])
			if uint64(prev)+n <= 0xFFFFFFFF {
				binary.BigEndian.PutUint32(resp[last+8:last+12], prev+uint32(n))
				lba += n
				continue
			}
		}
		resp = append(resp, desc[:]...)
		lba += n
	}
	// PARAMETER DATA LENGTH: the bytes after itself.
	binary.BigEndian.PutUint32(resp[0:4], uint32(len(resp)-4))
	return putOut(cmd, resp), nil
}

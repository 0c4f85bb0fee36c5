package scsi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/blockport/blockport/target/scsi/pr"
	"github.com/blockport/blockport/target/scsi/sense"
)

// MaxLUN is the largest LUN number AddLU accepts: the flat space addressing
// method of the 8-byte SAM LUN (SAM-5) holds 14 bits.
const MaxLUN = 0x3FFF

// Device is one SCSI target device: logical units by LUN number plus their
// per-nexus unit attention state.
type Device struct {
	name string

	mu      sync.RWMutex
	lus     map[uint64]*LU   // guarded by mu
	masking *compiledMasking // nil: every initiator sees every LUN; guarded by mu
	aborter taskAborterSlot  // PREEMPT AND ABORT reaches the fabric through it (pr.go)

	// portGroups: target port groups and their ALUA states (alua.go).
	portGroups portGroupsSlot
}

// NewDevice returns a device with no logical units. name is used in messages.
func NewDevice(name string) *Device {
	return &Device{name: name, lus: make(map[uint64]*LU)}
}

// AddLU maps lu at lun. It fails if the number is taken or out of range, or
// if lu is already mapped on this device.
func (d *Device) AddLU(lun uint64, lu *LU) error {
	if lu == nil {
		return errors.New("scsi: AddLU of a nil LU")
	}
	if lun > MaxLUN {
		return fmt.Errorf("scsi: %s: LUN %d out of range 0..%d", d.name, lun, MaxLUN)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, taken := d.lus[lun]; taken {
		return fmt.Errorf("scsi: %s: LUN %d is already mapped", d.name, lun)
	}
	for n, other := range d.lus {
		if other == lu {
			return fmt.Errorf("scsi: %s: LU is already mapped at LUN %d", d.name, n)
		}
	}
	if lu.pr.IsShared() && !lu.prWatched {
		// Other gateways' reservation changes reach this LU's nexuses.
		if err := lu.pr.Watch(func(res *pr.Result) error { return d.prChanged(lu, res) }); err != nil {
			return fmt.Errorf("scsi: %s: LUN %d: watch shared reservations: %w", d.name, lun, err)
		}
		lu.prWatched = true
	}
	d.lus[lun] = lu
	d.lunsChangedLocked(d.seesLUNLocked(lun))
	return nil
}

// RemoveLU unmaps and returns the LU at lun. Commands that resolved it
// before and have not begun to execute fail with LOGICAL UNIT NOT
// SUPPORTED; wait for those executing with LU.Drain before closing its
// backstore.
func (d *Device) RemoveLU(lun uint64) (*LU, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	lu, ok := d.lus[lun]
	if !ok {
		return nil, fmt.Errorf("scsi: %s: no LU at LUN %d", d.name, lun)
	}
	delete(d.lus, lun)
	lu.use.removed.Store(true)
	d.lunsChangedLocked(d.seesLUNLocked(lun))
	return lu, nil
}

// lunsChangedLocked tells the nexuses whose LUN inventory changed, those
// affected accepts, through every LU of this device they know (SPC-5:
// REPORTED LUNS DATA HAS CHANGED). Other initiators are not disturbed.
func (d *Device) lunsChangedLocked(affected func(Nexus) bool) {
	for _, lu := range d.lus {
		lu.ua.establish(sense.ReportedLUNsDataChanged, affected)
	}
}

// seesLUNLocked returns whether a nexus' view includes the device's LUN
// lun, under whatever number: who is affected when it comes or goes.
func (d *Device) seesLUNLocked(lun uint64) func(Nexus) bool {
	m := d.masking
	return func(n Nexus) bool {
		if m == nil {
			return true
		}
		v := m.view(n.Initiator)
		if v.all {
			return true
		}
		for _, lm := range v.byAs {
			if lm.LUN == lun {
				return true
			}
		}
		return false
	}
}

// LUNs lists the mapped LUN numbers in ascending order.
func (d *Device) LUNs() []uint64 {
	d.mu.RLock()
	luns := make([]uint64, 0, len(d.lus))
	for n := range d.lus {
		luns = append(luns, n)
	}
	d.mu.RUnlock()
	slices.Sort(luns)
	return luns
}

// LU returns the LU mapped at lun, or nil.
func (d *Device) LU(lun uint64) *LU {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.lus[lun]
}

// luFor resolves the LU that nexus n addresses as lun, or nil. It is the one
// place where what an initiator may reach is decided: Prepare and every
// command that names other LUNs (EXTENDED COPY...) resolve through it, so
// LUN masking applies to all of them.
func (d *Device) luFor(n *Nexus, lun uint64) *LU {
	lu, _ := d.resolve(n, lun)
	return lu
}

// Prepare resolves the LU and decodes the CDB: it sets cmd.Dir and
// cmd.TransferLength and checks, in the order SAM-5 and SPC-5 give,
// everything that can be checked before data moves: the LUN, the opcode, a
// pending unit attention, CDB fields, the LBA range, write protection and
// the maximum transfer length; then that a write's expected data length
// covers whole blocks. The error is a *sense.Error or a StatusError.
func (d *Device) Prepare(cmd *Command) error {
	cmd.Dir, cmd.TransferLength, cmd.lu, cmd.op, cmd.ua = DirNone, 0, nil, nil, nil
	cmd.args = cdbArgs{}
	if cmd.Nexus == nil {
		return errors.New("scsi: command without a nexus")
	}
	if len(cmd.CDB) == 0 {
		return sense.InvalidOpcode()
	}
	lu, readOnlyMapping := d.resolve(cmd.Nexus, cmd.LUN)
	cmd.lu = lu // task management matches tasks by it (LU), even when Prepare fails
	cmd.readOnly = lu != nil && (readOnlyMapping || lu.cfg.ReadOnly || lu.modes.writeProtect())

	op, err := lookupOp(cmd.CDB)
	if lu == nil && (op == nil || !op.anyLUN) {
		// SPC-5 / SAM-5: an unknown LUN fails every command but
		// INQUIRY, REPORT LUNS and REQUEST SENSE.
		return sense.LUNotSupported()
	}
	if err != nil {
		return lu.senseErr(err)
	}
	if !op.supportedOn(lu) {
		return lu.senseErr(op.notSupported())
	}
	if len(cmd.CDB) < op.cdbLen {
		return lu.senseErr(sense.InvalidFieldInCDB(len(cmd.CDB), -1))
	}
	cmd.op = op

	if lu != nil {
		// SBC-4 4.11: a sanitize in progress answers first (sanitize.go).
		if err := lu.sanitizeBusy(op); err != nil {
			return lu.senseErr(err)
		}
		st := lu.ua.state(cmd.Nexus)
		cmd.ua = st
		// SAM-5 / SPC-5 (UA_INTLCK_CTRL=00b): report a pending UA on
		// this command and clear it, except for INQUIRY, REPORT LUNS and
		// REQUEST SENSE which run normally (REQUEST SENSE returns it as data).
		if !op.noUA {
			if ua := lu.ua.pop(st); ua != nil {
				return lu.senseErr(ua)
			}
		}
		// SPC-5 5.16.2.4: the access state of the target port (alua.go).
		if err := d.checkAccessState(cmd, op); err != nil {
			return lu.senseErr(err)
		}
		// SPC-5 5.14.1: then the reservation rules (pr.go).
		if err := lu.checkReservation(cmd, op); err != nil {
			return err
		}
		if op.sharedState && readOnlyMapping {
			return lu.senseErr(sense.WriteProtected())
		}
	}
	// SAM-5: Blockport supports no ACA, so NACA=1 in the CONTROL byte is
	// an invalid field.
	if ctl := cmd.CDB[op.cdbLen-1]; ctl&0x04 != 0 {
		return lu.senseErr(sense.InvalidFieldInCDB(op.cdbLen-1, 2))
	}
	if err := op.parse(lu, cmd); err != nil {
		return lu.senseErr(err)
	}
	if lu != nil {
		// SAM-5: after the unit attention, a logical unit that cannot
		// run the command now (no medium, sanitize) says NOT READY.
		if err := lu.readyFor(op); err != nil {
			return lu.senseErr(err)
		}
		if err := lu.sanitizeFailure(op); err != nil {
			return lu.senseErr(err)
		}
	}
	if op.blockIO {
		if err := lu.checkBlockIO(cmd); err != nil {
			return lu.senseErr(err)
		}
	}
	return nil
}

// checkBlockIO applies the checks shared by the commands that address
// logical blocks, after their CDB fields passed, in SBC-4 order.
func (lu *LU) checkBlockIO(cmd *Command) error {
	a := &cmd.args
	// SBC-4: LBA + number of blocks beyond the capacity is out of range.
	// Written so no addition can overflow: lba may be up to 2^64-1.
	if a.lba > lu.blocks.Load() || uint64(a.blocks) > lu.blocks.Load()-a.lba {
		return sense.LBAOutOfRange()
	}
	if cmd.op.writes && cmd.readOnly {
		return sense.WriteProtected()
	}
	// SBC-4 (Block Limits VPD): a transfer over the advertised
	// MAXIMUM TRANSFER LENGTH is an invalid field in the CDB.
	if cmd.op.xferLenAt > 0 && a.blocks > lu.maxXfer {
		return sense.InvalidFieldInCDB(cmd.op.xferLenAt, 7)
	}
	if cmd.Dir == DirWrite && int64(cmd.ExpectedLength) < int64(cmd.TransferLength) {
		// The initiator sends less data-out than the CDB asks for. FCP-4 /
		// RFC 7143 11.4.5 (residuals): process the command for the data sent (overflow
		// residual). Blockport never writes part of a block, so a length that
		// is not whole blocks, or a compare that needs all of its data, is
		// refused (libiscsi's residual tests accept this).
		if cmd.ExpectedLength&(lu.blockSize-1) != 0 || !cmd.op.partialDataOK {
			return sense.InvalidFieldInIU()
		}
	}
	return nil
}

// senseErr marks a sense error with the LU's sense format (the control
// mode page D_SENSE bit, SPC-5); lu may be nil.
func (lu *LU) senseErr(err error) error {
	if e, ok := err.(*sense.Error); ok && lu != nil {
		e.DescFormat = lu.descSense()
	}
	return err
}

// descSense reports the control mode page D_SENSE bit (MODE SELECT).
func (lu *LU) descSense() bool { return lu.modes.descSense() }

// Execute runs a prepared command. For data-in commands it returns the
// number of bytes produced in cmd.Data (possibly less than TransferLength,
// e.g. INQUIRY data shorter than the allocation length); 0 otherwise.
// A context cancelled before the command starts yields StatusError(StatusTaskAborted).
func (d *Device) Execute(ctx context.Context, cmd *Command) (int, error) {
	if cmd.op == nil {
		return 0, errors.New("scsi: Execute of a command that Prepare did not accept")
	}
	if ctx.Err() != nil {
		return 0, StatusError(StatusTaskAborted)
	}
	if lu := cmd.lu; lu != nil {
		if !lu.enter() {
			return 0, sense.LUNotSupported() // removed since Prepare
		}
		defer lu.exit()
	}
	n, err := cmd.op.exec(ctx, d, cmd)
	if err != nil {
		return n, cmd.lu.senseErr(err)
	}
	return n, nil
}

// Resolve returns the logical unit that nexus n addresses as lun, or nil
// when n cannot see one there (LUN masking). Task management resolves its
// LUN field through it, so that a TMF reaches only what its initiator can
// see, under the number that initiator uses.
func (d *Device) Resolve(n *Nexus, lun uint64) *LU { return d.luFor(n, lun) }

// LUNReset applies a LOGICAL UNIT RESET to the SCSI state of lun: every
// nexus, the requesting one included, gets UNIT ATTENTION / BUS DEVICE
// RESET FUNCTION OCCURRED (SAM-5). The fabric aborts the tasks.
func (d *Device) LUNReset(n *Nexus, lun uint64) error {
	lu := d.luFor(n, lun)
	if lu == nil {
		return sense.LUNotSupported()
	}
	lu.ua.establish(sense.BusDeviceResetOccurred, nil)
	lu.media.allow(nil)
	lu.pr.Reset() // releases a SCSI-2 reservation, not persistent ones
	return nil
}

// TargetReset applies a TARGET (warm) RESET: a hard reset of every LU
// (RFC 7143 11.5.1 maps it to SAM's hard reset), after which SAM-5
// has each LU report UNIT ATTENTION / POWER ON, RESET, OR BUS DEVICE RESET
// OCCURRED (29h/00h) to every nexus.
func (d *Device) TargetReset(n *Nexus) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, lu := range d.lus {
		lu.ua.establish(sense.ResetOccurred, nil)
		lu.media.allow(nil)
		lu.pr.Reset()
	}
}

// NexusLoss records that the I_T nexus n ended (its session closed or
// dropped). Its state is forgotten, so the next session of the same
// initiator port starts like any new nexus, with 29h/00h pending. SAM-5's
// I_T NEXUS LOSS OCCURRED (29h/07h) is not used: iSCSI initiators log in
// again with the same ISID as a matter of course, and simple ones (iscsi-ls)
// fail on a UA code they do not expect.
func (d *Device) NexusLoss(n *Nexus) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, lu := range d.lus {
		lu.ua.forget(*n)
		lu.media.allow(n)
		lu.pr.NexusLoss(prNexus(n))
		lu.copies.forget(*n)
	}
}

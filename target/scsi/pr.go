package scsi

// PERSISTENT RESERVE IN/OUT (SPC-5 6.16, 6.17), RESERVE/RELEASE(6)/(10)
// (SPC-2 7.21, 7.17) and the RESERVATION CONFLICT check of Prepare. The
// state and its rules live in package pr; this file decodes CDBs, maps
// pr's results to sense data and unit attentions, and asks the fabric to
// abort the tasks of preempted nexuses.

import (
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/blockport/blockport/target/scsi/alua"
	"github.com/blockport/blockport/target/scsi/pr"
	"github.com/blockport/blockport/target/scsi/sense"
)

// Operation codes of this file.
const (
	opReserve6             = 0x16
	opRelease6             = 0x17
	opReserve10            = 0x56
	opRelease10            = 0x57
	opPersistentReserveIn  = 0x5E
	opPersistentReserveOut = 0x5F
)

// maxPRParamLen bounds a PERSISTENT RESERVE OUT parameter list: 24 bytes
// plus SPEC_I_PT TransportIDs for many initiators.
const maxPRParamLen = 256 << 10

// TaskAborter aborts, for PREEMPT AND ABORT, every task addressed to lu
// (Command.LU) by the I_T nexuses that match accepts, except the command
// except, and returns nil once they have stopped. A preempted write may be
// stuck in its backstore: the aborter then keeps waiting, for as long as
// ctx (the PREEMPT AND ABORT's own task) lives, and returns ctx's error if
// it ends first. The fabric registers it (SetTaskAborter): the SCSI core
// cannot reach tasks queued in the transport.
type TaskAborter func(ctx context.Context, lu *LU, match func(*Nexus) bool, except *Command) error

// taskAborterSlot holds a device's TaskAborter; see SetTaskAborter.
type taskAborterSlot struct{ fn atomic.Pointer[TaskAborter] }

// SetTaskAborter registers the fabric's task abort function.
func (d *Device) SetTaskAborter(fn TaskAborter) { d.aborter.fn.Store(&fn) }

func (d *Device) abortTasks(ctx context.Context, lu *LU, match func(*Nexus) bool, except *Command) error {
	if fn := d.aborter.fn.Load(); fn != nil {
		return (*fn)(ctx, lu, match, except)
	}
	return nil
}

// prNexus converts a nexus to pr's.
func prNexus(n *Nexus) pr.Nexus {
	return pr.Nexus{Initiator: n.Initiator, ISID: n.ISID, Target: n.Target, TPGT: n.TPGT}
}

// conflictClass is the row of the SPC-5/SBC-4 reservation tables a command
// falls in.
func conflictClass(op *opDesc) pr.Class {
	if op.anyLUN {
		return pr.Exempt // INQUIRY, REPORT LUNS, REQUEST SENSE
	}
	switch op.op {
	case opTestUnitReady, opReadCapacity10, opPersistentReserveIn, opPersistentReserveOut,
		opMaintenanceIn, 0x4D /* LOG SENSE */ :
		return pr.Allowed
	case opServiceActionIn16:
		if op.sa == saReadCapacity16 {
			return pr.Allowed
		}
		return pr.Read
	case opReserve6, opReserve10:
		return pr.Reserve2
	case opRelease6, opRelease10:
		return pr.Release2
	case opSynchronizeCache10, opSynchronizeCache16, opStartStopUnit,
		0x04 /* FORMAT UNIT */, 0x15 /* MODE SELECT(6) */, 0x55, /* MODE SELECT(10) */
		0x3B /* WRITE BUFFER */, 0x41 /* WRITE SAME(10) */, 0x42 /* UNMAP */, 0x48, /* SANITIZE */
		0x83 /* EXTENDED COPY */, 0x89 /* COMPARE AND WRITE */, 0x93 /* WRITE SAME(16) */, 0xA4 /* MAINTENANCE OUT */ :
		return pr.Write
	}
	if op.writes {
		return pr.Write
	}
	return pr.Read
}

// checkReservation is Prepare's RESERVATION CONFLICT check.
func (lu *LU) checkReservation(cmd *Command, op *opDesc) error {
	if lu.pr.Conflicts(prNexus(cmd.Nexus), conflictClass(op)) {
		return StatusError(StatusReservationConflict)
	}
	return nil
}

// prError maps an error of package pr to what the command returns.
func prError(err error) error {
	var fe *pr.FieldError
	var ce *pr.CDBFieldError
	var le *pr.ParamLengthError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pr.ErrConflict):
		return StatusError(StatusReservationConflict)
	case errors.Is(err, pr.ErrInvalidRelease):
		return sense.InvalidReleaseOfPR()
	case errors.Is(err, pr.ErrNoResources):
		return sense.InsufficientRegistrationResources()
	case errors.As(err, &fe):
		return sense.InvalidFieldInParameterList(fe.Offset, -1)
	case errors.As(err, &ce):
		return sense.InvalidFieldInCDB(ce.Offset, ce.Bit)
	case errors.As(err, &le):
		return sense.ParameterListLengthError()
	}
	return err // e.g. the APTPL save failed: HARDWARE ERROR
}

func parsePRIn(lu *LU, cmd *Command) error {
	cmd.args.alloc = uint32(binary.BigEndian.Uint16(cmd.CDB[7:9]))
	cmd.Dir, cmd.TransferLength = DirRead, int(cmd.args.alloc)
	return nil
}

func execPRIn(ctx context.Context, d *Device, cmd *Command) (int, error) {
	// Shared state (two gateways) is read from its record first.
	if err := cmd.lu.pr.Refresh(); err != nil {
		return 0, sense.InternalTargetFailure().WithCause(err)
	}
	data := cmd.lu.pr.In(cmd.CDB[1] & serviceActionBitsMask)
	return copy(cmd.Data, data), nil
}

func parsePROut(lu *LU, cmd *Command) error {
	n := binary.BigEndian.Uint32(cmd.CDB[5:9])
	if n > maxPRParamLen {
		return sense.ParameterListLengthError()
	}
	cmd.Dir, cmd.TransferLength = DirWrite, int(n)
	if n == 0 {
		cmd.Dir = DirNone
	}
	return nil
}

func execPROut(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	want := cmd.TransferLength
	if len(cmd.Data) < want {
		// Less data-out than the PARAMETER LIST LENGTH announced.
		return 0, sense.ParameterListLengthError()
	}
	req, err := pr.ParseOut(pr.ServiceAction(cmd.CDB[1]&serviceActionBitsMask), cmd.CDB[2], cmd.Data[:want])
	if err != nil {
		return 0, prError(err)
	}
	self := prNexus(cmd.Nexus)
	res, err := lu.pr.Out(self, req)
	var notifyErr *pr.NotifyError
	if err != nil && !errors.As(err, &notifyErr) {
		return 0, prError(err)
	}
	// A shared change that is stored but that other gateways could not
	// all be told of (notifyErr) still takes effect here first; the
	// command then fails, below.
	lu.establishPRNotices(res.Notices, cmd.Nexus)
	if len(res.Aborted) > 0 {
		// SPC-5 5.14.12.5: PREEMPT AND ABORT aborts the preempted
		// nexuses' tasks on this LU before it completes, so none of
		// their writes lands after it. GOOD means the preempted node is
		// fenced (fence_scsi, failover clusters act on it): it is never
		// given while one of those writes may still reach the medium.
		// (With shared state, the other gateways have done the same for
		// their nexuses before Out returned: prChanged.)
		err := d.abortTasks(ctx, cmd.lu, preempted(res.Aborted, &self), cmd)
		if err != nil {
			// This command was aborted (or its session ended) while
			// preempted writes were still in the backstore.
			return 0, StatusError(StatusTaskAborted)
		}
	}
	if notifyErr != nil {
		return 0, notifyErr // HARDWARE ERROR: another gateway may still let the preempted in
	}
	return 0, nil
}

// establishPRNotices raises the unit attentions a reservation change
// asks for, on every nexus of lu they cover but except.
func (lu *LU) establishPRNotices(notices []pr.Notice, except *Nexus) {
	for _, nt := range notices {
		mk := sense.ReservationsReleased
		switch nt.UA {
		case pr.ReservationsPreempted:
			mk = sense.ReservationsPreempted
		case pr.RegistrationsPreempted:
			mk = sense.RegistrationsPreempted
		}
		to := nt.To
		lu.ua.establish(mk, func(n Nexus) bool { return (except == nil || n != *except) && to.Covers(prNexus(&n)) })
	}
}

// preempted matches the nexuses of the registrations PREEMPT AND ABORT
// removed, but self.
func preempted(aborted []pr.Registrant, self *pr.Nexus) func(*Nexus) bool {
	return func(n *Nexus) bool {
		pn := prNexus(n)
		if self != nil && pn == *self {
			return false
		}
		for i := range aborted {
			if aborted[i].Covers(pn) {
				return true
			}
		}
		return false
	}
}

// remoteAbortWait bounds how long a gateway works on another gateway's
// PREEMPT AND ABORT before it answers that it could not; it is shorter
// than the other's wait for the answer (backstore/rbd notifyTimeout), so
// an answer arrives. Either way the other fences this gateway when the
// tasks did not stop.
const remoteAbortWait = 4 * time.Second

// prChanged takes in a reservation change another server made to lu's
// shared state (pr.State.Watch): the unit attentions it raised for this
// server's nexuses, and for PREEMPT AND ABORT the abort of their tasks,
// done before the change is acknowledged. An error (the tasks did not stop
// in time) has the other server fence this one.
func (d *Device) prChanged(lu *LU, res *pr.Result) error {
	if res == nil {
		return nil // the watch was lost; pr reloads the state
	}
	lu.establishPRNotices(res.Notices, nil)
	if len(res.Aborted) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), remoteAbortWait)
		defer cancel()
		return d.abortTasks(ctx, lu, preempted(res.Aborted, nil), nil)
	}
	return nil
}

func parseReserveRelease(lu *LU, cmd *Command) error {
	// SPC-2: third-party (3RDPTY, byte 1 bit 4) and, in the 6-byte
	// forms, extent reservations are not supported.
	if cmd.CDB[1]&0x10 != 0 {
		return sense.InvalidFieldInCDB(1, 4)
	}
	if len(cmd.CDB) == 6 && cmd.CDB[1]&0x01 != 0 {
		return sense.InvalidFieldInCDB(1, 0)
	}
	if len(cmd.CDB) >= 10 && cmd.CDB[1]&0x02 != 0 {
		// LONGID needs a third-party parameter list.
		return sense.InvalidFieldInCDB(1, 1)
	}
	return nil
}

func execReserve(ctx context.Context, d *Device, cmd *Command) (int, error) {
	return 0, prError(cmd.lu.pr.Reserve2(prNexus(cmd.Nexus)))
}

func execRelease(ctx context.Context, d *Device, cmd *Command) (int, error) {
	cmd.lu.pr.Release2(prNexus(cmd.Nexus))
	return 0, nil
}

// prOps are the dispatch table rows of this file.
func prInOp(sa uint16, name string) *opDesc {
	return &opDesc{name: name, op: opPersistentReserveIn, sa: sa, hasSA: true, cdbLen: 10, alua: alua.StandbyOK,
		usage: []byte{opPersistentReserveIn, byte(sa), 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x00},
		parse: parsePRIn, exec: execPRIn}
}

func prOutOp(sa uint16, name string) *opDesc {
	return &opDesc{name: name, op: opPersistentReserveOut, sa: sa, hasSA: true, cdbLen: 10, alua: alua.StandbyOK, sharedState: true,
		usage: []byte{opPersistentReserveOut, byte(sa), 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x00},
		parse: parsePROut, exec: execPROut}
}

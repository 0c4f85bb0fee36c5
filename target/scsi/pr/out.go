package pr

import (
	"encoding/binary"
	"fmt"
)

// ServiceAction is a PERSISTENT RESERVE OUT service action (SPC-5 6.17.2).
type ServiceAction uint8

// PERSISTENT RESERVE OUT service actions.
const (
	Register          ServiceAction = 0x0
	Reserve           ServiceAction = 0x1
	Release           ServiceAction = 0x2
	Clear             ServiceAction = 0x3
	Preempt           ServiceAction = 0x4
	PreemptAndAbort   ServiceAction = 0x5
	RegisterAndIgnore ServiceAction = 0x6
	RegisterAndMove   ServiceAction = 0x7
)

// Sizes of the PERSISTENT RESERVE OUT parameter lists (SPC-5 6.17.3, 6.17.4).
const (
	BasicParamLen = 24
	moveHeaderLen = 24
)

// TransportID is an initiator named in a parameter list.
type TransportID struct {
	Initiator string
	ISID      [6]byte
	HasISID   bool
}

// OutRequest is one decoded PERSISTENT RESERVE OUT command.
type OutRequest struct {
	Action  ServiceAction
	Scope   uint8
	Type    Type
	Key     uint64 // RESERVATION KEY
	SAKey   uint64 // SERVICE ACTION RESERVATION KEY
	SpecIPT bool
	AllTgPt bool
	APTPL   bool
	// TransportIDs are the SPEC_I_PT initiators, or for REGISTER AND MOVE
	// the one the reservation moves to.
	TransportIDs []TransportID
	Unreg        bool   // REGISTER AND MOVE: unregister the source
	RelTgtPort   uint16 // REGISTER AND MOVE: the target port (its TPGT)
}

// ParseOut decodes a PERSISTENT RESERVE OUT from its service action, the
// SCOPE/TYPE byte of the CDB and the parameter list. The caller has checked
// that the parameter list has the length the CDB announced.
func ParseOut(sa ServiceAction, scopeType byte, param []byte) (*OutRequest, error) {
	r := &OutRequest{Action: sa, Scope: scopeType >> 4, Type: Type(scopeType & 0x0F)}
	if sa == RegisterAndMove {
		if len(param) < moveHeaderLen {
			return nil, errParamLength
		}
		r.Key = binary.BigEndian.Uint64(param[0:8])
		r.SAKey = binary.BigEndian.Uint64(param[8:16])
		r.Unreg = param[17]&0x02 != 0
		r.APTPL = param[17]&0x01 != 0
		r.RelTgtPort = binary.BigEndian.Uint16(param[18:20])
		tidLen := int(binary.BigEndian.Uint32(param[20:24]))
		if tidLen != len(param)-moveHeaderLen {
			return nil, errParamLength
		}
		name, isid, hasISID, n, err := ParseTransportID(param[moveHeaderLen:])
		if err != nil {
			return nil, shiftField(err, moveHeaderLen)
		}
		if n != tidLen {
			return nil, &FieldError{Offset: 20, Msg: "TRANSPORTID PARAMETER DATA LENGTH differs from the TransportID's"}
		}
		r.TransportIDs = []TransportID{{Initiator: name, ISID: isid, HasISID: hasISID}}
		return r, nil
	}
	if len(param) < BasicParamLen {
		return nil, errParamLength
	}
	r.Key = binary.BigEndian.Uint64(param[0:8])
	r.SAKey = binary.BigEndian.Uint64(param[8:16])
	r.SpecIPT = param[20]&0x08 != 0
	r.AllTgPt = param[20]&0x04 != 0
	r.APTPL = param[20]&0x01 != 0
	if !r.SpecIPT {
		if len(param) != BasicParamLen {
			return nil, errParamLength
		}
		return r, nil
	}
	// SPC-5 6.17.3: SPEC_I_PT is only valid with REGISTER; its list
	// carries an ADDITIONAL PARAMETER DATA LENGTH and TransportIDs.
	if sa != Register {
		return nil, &FieldError{Offset: 20, Msg: "SPEC_I_PT set for a service action other than REGISTER"}
	}
	if len(param) < BasicParamLen+4 {
		return nil, errParamLength
	}
	addl := int(binary.BigEndian.Uint32(param[24:28]))
	if addl != len(param)-BasicParamLen-4 {
		return nil, errParamLength
	}
	off := BasicParamLen + 4
	for off < len(param) {
		name, isid, hasISID, n, err := ParseTransportID(param[off:])
		if err != nil {
			return nil, shiftField(err, off)
		}
		r.TransportIDs = append(r.TransportIDs, TransportID{Initiator: name, ISID: isid, HasISID: hasISID})
		off += n
		if len(r.TransportIDs) > MaxRegistrants {
			return nil, ErrNoResources
		}
	}
	return r, nil
}

// errParamLength: ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR.
var errParamLength = &ParamLengthError{}

// ParamLengthError is a parameter list of the wrong length.
type ParamLengthError struct{}

func (*ParamLengthError) Error() string { return "pr: parameter list length error" }

func shiftField(err error, by int) error {
	if fe, ok := err.(*FieldError); ok {
		return &FieldError{Offset: fe.Offset + by, Msg: fe.Msg}
	}
	return err
}

// Out executes a PERSISTENT RESERVE OUT from nexus n (SPC-5 5.14.7 to
// 5.14.11). Changes are saved before it returns when APTPL is in effect; a
// save that fails leaves the state as it was and returns the error.
func (s *State) Out(n Nexus, r *OutRequest) (Result, error) {
	if s.shared != nil {
		return s.outShared(n, r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scsi2 != nil && *s.scsi2 != n {
		return Result{}, ErrConflict
	}
	before := s.st.clone()
	res, changed, err := s.st.out(n, r)
	if err != nil {
		s.st = before
		return Result{}, err
	}
	if changed && (s.st.APTPL || before.APTPL) && s.file != "" {
		if err := s.saveLocked(); err != nil {
			s.st = before
			return Result{}, fmt.Errorf("pr: save APTPL state: %w", err)
		}
	}
	s.updateActiveLocked()
	return res, nil
}

// out applies r to st. changed reports a state change to persist.
func (st *snapshot) out(n Nexus, r *OutRequest) (res Result, changed bool, err error) {
	i := st.find(n)
	switch r.Action {
	case Register, RegisterAndIgnore:
		return st.register(n, i, r)
	case RegisterAndMove:
		return st.move(n, i, r)
	case Reserve, Release, Clear, Preempt, PreemptAndAbort:
	default:
		return res, false, &CDBFieldError{Offset: 1, Bit: 4}
	}
	// SPC-5 5.14.7: every other service action needs a registered nexus
	// quoting its own key.
	if i < 0 || st.Regs[i].Key != r.Key {
		return res, false, ErrConflict
	}
	if r.Action != Clear {
		if r.Scope != scopeLU {
			return res, false, &CDBFieldError{Offset: 2, Bit: 7}
		}
		if !r.Type.Valid() {
			return res, false, &CDBFieldError{Offset: 2, Bit: 3}
		}
	}
	switch r.Action {
	case Reserve:
		// SPC-5 5.14.9.
		if st.Reserved {
			if st.holds(i) && st.Type == r.Type {
				return res, false, nil
			}
			return res, false, ErrConflict
		}
		st.Reserved, st.Type, st.Holder = true, r.Type, i
		if r.Type.allRegistrants() {
			st.Holder = -1
		}
		return res, true, nil
	case Release:
		// SPC-5 5.14.12.2.
		if !st.Reserved || !st.holds(i) {
			return res, false, nil
		}
		if st.Type != r.Type {
			return res, false, ErrInvalidRelease
		}
		if st.Type.registrantsOnly() || st.Type.allRegistrants() {
			res.Notices = st.noticeOthers(i, ReservationsReleased)
		}
		st.Reserved, st.Type, st.Holder = false, 0, -1
		return res, true, nil
	case Clear:
		// SPC-5 5.14.12.3.
		res.Notices = st.noticeOthers(i, ReservationsPreempted)
		st.Regs = nil
		st.Reserved, st.Type, st.Holder = false, 0, -1
		st.Generation++
		return res, true, nil
	}
	return st.preempt(i, r)
}

// noticeOthers builds a notice of ua for every registration but skip.
func (st *snapshot) noticeOthers(skip int, ua UA) []Notice {
	var out []Notice
	for j, reg := range st.Regs {
		if j != skip {
			out = append(out, Notice{UA: ua, To: reg})
		}
	}
	return out
}

func (st *snapshot) register(n Nexus, i int, r *OutRequest) (res Result, changed bool, err error) {
	ignore := r.Action == RegisterAndIgnore
	if ignore && r.SpecIPT {
		return res, false, &FieldError{Offset: 20, Msg: "SPEC_I_PT with REGISTER AND IGNORE EXISTING KEY"}
	}
	if i < 0 {
		// SPC-5 5.14.7.2: an unregistered nexus must quote key 0.
		if !ignore && r.Key != 0 {
			return res, false, ErrConflict
		}
		if r.SAKey == 0 {
			// Nothing to register; APTPL is still applied (SPC-5 5.14.5).
			changed = st.APTPL != r.APTPL
			st.APTPL = r.APTPL
			return res, changed, nil
		}
		add := []Registrant{{Key: r.SAKey, Initiator: n.Initiator, ISID: n.ISID, HasISID: true,
			Target: n.Target, TPGT: n.TPGT, AllTargetPorts: r.AllTgPt}}
		for _, t := range r.TransportIDs {
			add = append(add, Registrant{Key: r.SAKey, Initiator: t.Initiator, ISID: t.ISID, HasISID: t.HasISID,
				Target: n.Target, TPGT: n.TPGT, AllTargetPorts: r.AllTgPt})
		}
		for a := range add {
			for b := range a {
				if add[a].overlaps(&add[b]) {
					return res, false, &FieldError{Offset: 24, Msg: "TransportID names an I_T nexus twice"}
				}
			}
			for j := range st.Regs {
				if add[a].overlaps(&st.Regs[j]) {
					// SPC-5 5.14.7.2: a TransportID already registered.
					return res, false, &FieldError{Offset: 24, Msg: "TransportID names a registered I_T nexus"}
				}
			}
		}
		if len(st.Regs)+len(add) > MaxRegistrants {
			return res, false, ErrNoResources
		}
		st.Regs = append(st.Regs, add...)
		st.APTPL = r.APTPL
		st.Generation++
		return res, true, nil
	}
	if !ignore && st.Regs[i].Key != r.Key {
		return res, false, ErrConflict
	}
	if r.SpecIPT {
		return res, false, &FieldError{Offset: 20, Msg: "SPEC_I_PT from a registered I_T nexus"}
	}
	if r.SAKey == 0 {
		// Unregister (SPC-5 5.14.12.2.3): a holder of a registrants-only
		// reservation releases it and the others are told.
		if st.Reserved && st.Holder == i && st.Type.registrantsOnly() {
			res.Notices = st.noticeOthers(i, ReservationsReleased)
		}
		st.remove(i)
	} else {
		st.Regs[i].Key = r.SAKey
	}
	st.APTPL = r.APTPL
	st.Generation++
	return res, true, nil
}

// preempt runs PREEMPT and PREEMPT AND ABORT (SPC-5 5.14.12.4, 5.14.12.5).
func (st *snapshot) preempt(i int, r *OutRequest) (res Result, changed bool, err error) {
	abort := r.Action == PreemptAndAbort
	var removed []Registrant
	// drop removes every registration with key k except the issuer's.
	drop := func(match func(*Registrant) bool) {
		keep := st.Regs[:0]
		holder := -1
		for j := range st.Regs {
			reg := st.Regs[j]
			if j != i && match(&reg) {
				removed = append(removed, reg)
				continue
			}
			if j == st.Holder {
				holder = len(keep)
			}
			if j == i {
				i = len(keep)
			}
			keep = append(keep, reg)
		}
		st.Regs = keep
		st.Holder = holder
	}
	byKey := func(reg *Registrant) bool { return reg.Key == r.SAKey }
	switch {
	case st.Reserved && st.Type.allRegistrants():
		if r.SAKey == 0 {
			// Every other registration goes; the issuer takes a new
			// reservation of the requested type.
			drop(func(*Registrant) bool { return true })
			st.Type, st.Holder = r.Type, i
			if r.Type.allRegistrants() {
				st.Holder = -1
			}
		} else {
			drop(byKey)
			if len(removed) == 0 {
				return res, false, ErrConflict
			}
		}
	case st.Reserved && st.Regs[st.Holder].Key == r.SAKey:
		oldType := st.Type
		drop(byKey)
		st.Reserved, st.Type, st.Holder = true, r.Type, i
		if r.Type.allRegistrants() {
			st.Holder = -1
		}
		if oldType != r.Type {
			// SPC-5 5.14.12.4.3: the type changed; the remaining
			// registrants are told their reservation was released.
			res.Notices = append(res.Notices, st.noticeOthers(i, ReservationsReleased)...)
		}
	default:
		if r.SAKey == 0 {
			return res, false, &FieldError{Offset: 8, Msg: "SERVICE ACTION RESERVATION KEY is zero"}
		}
		drop(byKey)
		if len(removed) == 0 {
			return res, false, ErrConflict
		}
	}
	for _, reg := range removed {
		res.Notices = append(res.Notices, Notice{UA: RegistrationsPreempted, To: reg})
	}
	if abort {
		res.Aborted = removed
	}
	st.Generation++
	return res, true, nil
}

// move runs REGISTER AND MOVE (SPC-5 5.14.13).
func (st *snapshot) move(n Nexus, i int, r *OutRequest) (res Result, changed bool, err error) {
	if i < 0 {
		return res, false, ErrConflict
	}
	if st.Regs[i].Key != r.Key {
		return res, false, ErrConflict
	}
	if !st.Reserved || !st.holds(i) {
		return res, false, ErrConflict
	}
	if st.Type.allRegistrants() {
		return res, false, ErrConflict
	}
	if r.SAKey == 0 {
		return res, false, &FieldError{Offset: 8, Msg: "SERVICE ACTION RESERVATION KEY is zero"}
	}
	t := r.TransportIDs[0]
	if !t.HasISID {
		// The destination is an I_T nexus: it needs the initiator port.
		return res, false, &FieldError{Offset: moveHeaderLen, Msg: "REGISTER AND MOVE needs an initiator port TransportID"}
	}
	dest := Nexus{Initiator: t.Initiator, ISID: t.ISID, Target: n.Target, TPGT: r.RelTgtPort}
	if dest == n || st.Regs[i].Covers(dest) {
		return res, false, &FieldError{Offset: moveHeaderLen, Msg: "REGISTER AND MOVE to the source I_T nexus"}
	}
	d := st.find(dest)
	if d < 0 {
		if len(st.Regs) >= MaxRegistrants {
			return res, false, ErrNoResources
		}
		st.Regs = append(st.Regs, Registrant{Key: r.SAKey, Initiator: dest.Initiator, ISID: dest.ISID, HasISID: true,
			Target: dest.Target, TPGT: dest.TPGT})
		d = len(st.Regs) - 1
	} else {
		st.Regs[d].Key = r.SAKey
	}
	st.Holder = d
	if r.Unreg {
		st.remove(i)
	}
	st.APTPL = r.APTPL
	st.Generation++
	return res, true, nil
}

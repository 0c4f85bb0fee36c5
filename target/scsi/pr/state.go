package pr

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
)

// Errors the PERSISTENT RESERVE OUT logic returns; the SCSI core maps them
// to a status or sense data.
var (
	// ErrConflict: RESERVATION CONFLICT status.
	ErrConflict = errors.New("pr: reservation conflict")
	// ErrInvalidRelease: ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT
	// RESERVATION (26h/04h): RELEASE with another type than the one held.
	ErrInvalidRelease = errors.New("pr: invalid release of persistent reservation")
	// ErrNoResources: ILLEGAL REQUEST, INSUFFICIENT REGISTRATION RESOURCES (55h/04h).
	ErrNoResources = errors.New("pr: insufficient registration resources")
)

// CDBFieldError is an invalid field in the PERSISTENT RESERVE OUT CDB.
type CDBFieldError struct {
	Offset, Bit int
}

func (e *CDBFieldError) Error() string { return "pr: invalid field in CDB" }

// Class is how a command is treated in the presence of reservations: the
// rows of SPC-5's table "SPC commands that are allowed in the presence of
// various reservations" and SBC-4's equivalent, grouped by their answers.
type Class uint8

// Command classes.
const (
	// Exempt never conflicts: INQUIRY, REPORT LUNS, REQUEST SENSE.
	Exempt Class = iota
	// Allowed runs under any persistent reservation (TEST UNIT READY,
	// READ CAPACITY, PERSISTENT RESERVE IN/OUT, REPORT TARGET PORT
	// GROUPS...) but conflicts with another nexus' SCSI-2 reservation.
	Allowed
	// Read reads the medium or LU state: allowed for non-holders under the
	// Write Exclusive types, for registrants only under the Exclusive
	// Access registrant types, for nobody else under Exclusive Access.
	Read
	// Write modifies the medium or LU state: only the holder (or, under
	// the registrant types, any registrant) may.
	Write
	// Reserve2 is RESERVE(6)/(10).
	Reserve2
	// Release2 is RELEASE(6)/(10).
	Release2
)

// UA is a unit attention condition the reservation logic raises (SPC-5 5.14.11).
type UA uint8

// Unit attentions.
const (
	ReservationsPreempted  UA = iota + 1 // 2Ah/03h
	ReservationsReleased                 // 2Ah/04h
	RegistrationsPreempted               // 2Ah/05h
)

// Notice asks the caller to establish UA for every nexus To covers.
type Notice struct {
	UA UA
	To Registrant
}

// Result is what a PERSISTENT RESERVE OUT did besides changing the state.
type Result struct {
	Notices []Notice
	// Aborted lists the registrations removed by PREEMPT AND ABORT: the
	// caller aborts their nexuses' tasks (SPC-5 5.14.11.2.2).
	Aborted []Registrant
}

// State is the reservation state of one logical unit. All methods are safe
// for concurrent use.
type State struct {
	file string // APTPL state file; "" keeps nothing across restarts

	// shared holds the persistent state of an LU several servers serve
	// (shared.go); nil keeps it here. version is the record version st
	// was loaded from (guarded by mu); stale means st may be behind it.
	shared    Shared
	version   uint64
	stale     atomic.Bool
	unwatched atomic.Bool   // the record's watch is lost: load before every check
	outMu     sync.Mutex    // serializes this server's PR OUTs on shared state
	staleGen  atomic.Uint64 // counts markStale calls
	// Loads of the record (refresh): one at a time, counted as they
	// start; lastLoadErr is the outcome of the last (guarded by loadMu).
	loadMu       sync.Mutex
	loadsStarted atomic.Uint64
	lastLoadErr  error

	// active is true while any registration, persistent reservation or
	// SCSI-2 reservation exists: Conflicts skips the lock when it is false.
	active atomic.Bool

	mu    sync.Mutex
	st    snapshot // guarded by mu
	scsi2 *Nexus   // SCSI-2 RESERVE holder; guarded by mu
}

// snapshot is the persistent part of the state. Holder indexes Regs; it is
// -1 when there is no reservation or the type is all registrants.
type snapshot struct {
	Generation uint32
	Regs       []Registrant
	Reserved   bool
	Type       Type
	Holder     int
	APTPL      bool
}

func (s snapshot) clone() snapshot {
	s.Regs = slices.Clone(s.Regs)
	return s
}

// New returns the state of an LU. With a non-empty file, the APTPL state
// saved there is loaded; a missing file is an empty state.
func New(file string) (*State, error) {
	s := &State{file: file, st: snapshot{Holder: -1}}
	if file != "" {
		st, ok, err := load(file)
		if err != nil {
			return nil, err
		}
		if ok {
			s.st = st
		}
	}
	s.updateActiveLocked()
	return s, nil
}

func (s *State) updateActiveLocked() {
	s.active.Store(len(s.st.Regs) > 0 || s.st.Reserved || s.scsi2 != nil)
}

// find returns the index of the registration covering n, or -1.
func (st *snapshot) find(n Nexus) int {
	for i := range st.Regs {
		if st.Regs[i].Covers(n) {
			return i
		}
	}
	return -1
}

// holds reports whether registration i holds the reservation.
func (st *snapshot) holds(i int) bool {
	if !st.Reserved || i < 0 {
		return false
	}
	return st.Type.allRegistrants() || st.Holder == i
}

// remove deletes registration i, keeping Holder pointing at the same one.
// A removed holder releases a reservation that is not all registrants; an
// all-registrants reservation ends with its last registrant (SPC-5 5.14.10).
func (st *snapshot) remove(i int) {
	st.Regs = slices.Delete(st.Regs, i, i+1)
	switch {
	case st.Holder == i:
		st.Holder = -1
		if !st.Type.allRegistrants() {
			st.Reserved, st.Type = false, 0
		}
	case st.Holder > i:
		st.Holder--
	}
	if st.Reserved && st.Type.allRegistrants() && len(st.Regs) == 0 {
		st.Reserved, st.Type = false, 0
	}
}

// Conflicts reports whether a command of class c from nexus n must end in
// RESERVATION CONFLICT.
func (s *State) Conflicts(n Nexus, c Class) bool {
	if c == Exempt {
		return false
	}
	if s.stale.Load() || s.unwatched.Load() {
		// A shared state that may have missed changes (shared.go): load
		// it first, and refuse what a reservation could refuse while
		// it cannot be loaded.
		if err := s.refresh(); err != nil {
			return c != Allowed && c != Release2
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.conflictsLocked(n, c)
	}
	if !s.active.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conflictsLocked(n, c)
}

func (s *State) conflictsLocked(n Nexus, c Class) bool {
	if s.scsi2 != nil && *s.scsi2 != n {
		// SPC-2 7.21: another initiator's RESERVE blocks everything but
		// the exempt commands and RELEASE (which is then a no-op).
		return c != Release2
	}
	st := &s.st
	i := st.find(n)
	switch c {
	case Reserve2:
		// SPC-5 5.14.3: with any registration, RESERVE conflicts.
		return len(st.Regs) > 0
	case Release2, Allowed:
		return false
	}
	if !st.Reserved || st.holds(i) {
		return false
	}
	return conflictMatrix(st.Type, c, i >= 0)
}

// conflictMatrix is the SPC-5 table for a nexus that does not hold the
// reservation of type t: registered tells whether it has a registration.
func conflictMatrix(t Type, c Class, registered bool) bool {
	switch t {
	case WriteExclusive:
		return c == Write
	case ExclusiveAccess:
		return c == Read || c == Write
	case WriteExclusiveRegistrantsOnly, WriteExclusiveAllRegistrants:
		return c == Write && !registered
	case ExclusiveAccessRegistrantsOnly, ExclusiveAccessAllRegistrants:
		return (c == Read || c == Write) && !registered
	}
	return false
}

// Reserve2 takes a SCSI-2 reservation for n (RESERVE(6)/(10)). It fails
// with ErrConflict when another nexus holds one, or when any persistent
// registration exists (SPC-5 5.14.3); the holder may reserve again.
func (s *State) Reserve2(n Nexus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if (s.scsi2 != nil && *s.scsi2 != n) || len(s.st.Regs) > 0 || s.st.Reserved {
		return ErrConflict
	}
	s.scsi2 = &n
	s.updateActiveLocked()
	return nil
}

// Release2 releases n's SCSI-2 reservation; a RELEASE from another nexus,
// or with none held, does nothing (SPC-2 7.17).
func (s *State) Release2(n Nexus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scsi2 != nil && *s.scsi2 == n {
		s.scsi2 = nil
		s.updateActiveLocked()
	}
}

// Reset drops the SCSI-2 reservation: LOGICAL UNIT RESET and target reset
// release it (SPC-2 5.5.1); persistent reservations are not affected.
func (s *State) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scsi2 = nil
	s.updateActiveLocked()
}

// NexusLoss drops a SCSI-2 reservation held by n (SPC-2: I_T nexus loss
// releases it); registrations survive nexus loss (SPC-5 5.14.7).
func (s *State) NexusLoss(n Nexus) { s.Release2(n) }

// SCSI2Holder returns the SCSI-2 reservation holder, if any.
func (s *State) SCSI2Holder() (Nexus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scsi2 == nil {
		return Nexus{}, false
	}
	return *s.scsi2, true
}

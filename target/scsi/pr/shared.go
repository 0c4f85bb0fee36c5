package pr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Reservations of an LU that several servers serve at once (two gateways
// in front of one RBD image). The persistent state lives in a Shared
// record beside the medium instead of in the server, so that a
// reservation taken through one gateway is enforced by the other and
// survives either one's loss:
//
//   - PERSISTENT RESERVE OUT reads the record, applies the request and
//     stores the result only if nobody stored since (compare-and-swap on
//     the record's version); when it lost the race it reads and applies
//     again. Two gateways never both succeed with conflicting changes.
//   - After a store the gateway tells the others, with the notices (unit
//     attentions) and preempted registrations it produced, and completes
//     the command once they have taken it in (Shared.Notify): the other
//     gateway then already enforces the new state. It notifies without
//     holding the state's lock, since another gateway may be notifying it
//     at the same moment.
//   - Conflicts answers from the copy in memory, with no round trip per
//     command. When a gateway loses its watch of the record (it was cut
//     off and may have missed changes) its copy is stale: it reads the
//     record again before answering, and while it cannot, every command
//     that a reservation could refuse gets RESERVATION CONFLICT.
//   - SCSI-2 RESERVE/RELEASE stays per server.
//
// Persistent state kept this way is kept whatever APTPL says: the LU does
// not lose power when one gateway does. The record format is the APTPL
// file's (persist.go).

// Shared is the record that holds the state (backstore.Record has this shape).
type Shared interface {
	// Load returns the record's value (empty before the first Store) and version.
	Load() (value []byte, version uint64, err error)
	// Store replaces the value if the record is still at version; ok is
	// false when another server stored first.
	Store(value []byte, version uint64) (newVersion uint64, ok bool, err error)
	// Notify gives note to the other servers' Watch functions and returns
	// once they have taken it (or did not answer in time). With fence,
	// the servers that did not take it in are cut off from the medium
	// first; an error says one could not be.
	Notify(note []byte, fence bool) error
	// Watch calls changed with each note another server gives (an error
	// tells it the note was not taken in), with nil when changes may have
	// been missed, and with an empty note when watching again.
	Watch(changed func(note []byte) error) error
}

// maxStoreAttempts bounds the compare-and-swap retries of one PERSISTENT
// RESERVE OUT; each lost race means another server's change went in.
const maxStoreAttempts = 16

// ErrStateUnavailable: the shared state cannot be read; the SCSI layer
// reports it as a hardware error.
var ErrStateUnavailable = errors.New("pr: shared reservation state unavailable")

// NewShared returns the state of an LU whose reservations live in sh.
// Call Watch once the LU can take notices.
func NewShared(sh Shared) (*State, error) {
	s := &State{shared: sh, st: snapshot{Holder: -1}}
	if err := s.refresh(); err != nil {
		return nil, err
	}
	return s, nil
}

// IsShared reports whether the state lives in a Shared record.
func (s *State) IsShared() bool { return s.shared != nil }

// Watch starts taking other servers' changes: each is loaded, and fn gets
// the notices and preempted registrations they carried (nil when the
// watch was lost and changes may have been missed). While the watch is
// lost, every check loads the record first (see Conflicts).
//
// fn's error (the preempted tasks could not be stopped in time) tells the
// server that made the change, which then fences this one.
func (s *State) Watch(fn func(*Result) error) error {
	if s.shared == nil {
		return nil
	}
	err := s.shared.Watch(func(note []byte) error {
		if note == nil {
			// Changes may be missed until the watch is back: answer
			// nothing from memory until then.
			s.unwatched.Store(true)
			s.markStale()
			s.refresh()
			return fn(nil)
		}
		if err := s.refresh(); err != nil {
			return err
		}
		// Watching again (an empty note after a lost watch) or a change:
		// the copy is current.
		s.unwatched.Store(false)
		res, err := decodeNote(note)
		if err != nil {
			return err
		}
		return fn(res)
	})
	if err != nil {
		return err
	}
	// A change stored between NewShared's load and the watch was told to
	// nobody here.
	s.refresh()
	return nil
}

// Refresh brings the copy in memory up to date with the shared record; it
// is a no-op for an LU whose state is not shared.
func (s *State) Refresh() error {
	if s.shared == nil {
		return nil
	}
	return s.refresh()
}

// refresh loads the record, without holding mu during the round trip,
// and takes the state in when it is newer than the copy. On failure the
// copy is marked stale; a success clears the mark only if nothing marked
// it again while the load was under way.
//
// Loads are one at a time (loadMu); a caller that waited while another
// load began and finished takes that load's outcome instead of loading
// again, so a burst of commands on a stale copy costs one round trip.
func (s *State) refresh() error {
	arrived := s.loadsStarted.Load()
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if s.loadsStarted.Load() > arrived {
		// A load that began after this caller arrived has finished.
		return s.lastLoadErr
	}
	s.loadsStarted.Add(1)
	staleGen := s.staleGen.Load()
	err := s.load()
	s.lastLoadErr = err
	if err == nil && s.staleGen.Load() == staleGen {
		s.stale.Store(false)
	}
	return err
}

// load reads the record and installs it if it is newer (loadMu held).
func (s *State) load() error {
	value, version, err := s.shared.Load()
	if err != nil {
		s.markStale()
		return fmt.Errorf("%w: %v", ErrStateUnavailable, err)
	}
	st := snapshot{Holder: -1}
	if len(bytes.TrimSpace(value)) > 0 {
		if st, err = decode(value); err != nil {
			s.markStale()
			return fmt.Errorf("%w: %v", ErrStateUnavailable, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Record versions only grow: an older load changes nothing.
	if version > s.version {
		s.st, s.version = st, version
		s.updateActiveLocked()
	}
	return nil
}

// markStale says the copy may be behind the record.
func (s *State) markStale() {
	s.staleGen.Add(1)
	s.stale.Store(true)
}

// NotifyError is returned by Out when a change to shared state was stored
// but the other servers could not all be told or fenced: the caller does
// its own part of the change (unit attentions, aborts), then fails the
// command.
type NotifyError struct{ Err error }

func (e *NotifyError) Error() string {
	return "pr: shared reservation change stored, others not told: " + e.Err.Error()
}
func (e *NotifyError) Unwrap() error { return e.Err }

// outShared is Out for shared state. The other servers are notified
// without mu held: one of them may be notifying this one at the same time,
// and its note is taken in under mu.
func (s *State) outShared(n Nexus, r *OutRequest) (Result, error) {
	res, note, err := s.storeShared(n, r)
	if err != nil || note == nil {
		return res, err
	}
	// The change is stored whatever Notify says. A gateway that was not
	// told reloads before it answers again (its watch is lost); but one
	// whose initiators lost their access (preempted, cleared) could still
	// have their writes queued: it is fenced before this command
	// completes (SPC-5 5.14.12.5: GOOD means the preempted initiators'
	// tasks are gone).
	if err := s.shared.Notify(note, revokes(&res)); err != nil {
		return res, &NotifyError{Err: err}
	}
	return res, nil
}

// revokes reports whether a change took access from someone: their tasks
// through other gateways must be gone before it completes.
func revokes(res *Result) bool {
	if len(res.Aborted) > 0 {
		return true
	}
	for _, nt := range res.Notices {
		if nt.UA == ReservationsPreempted || nt.UA == RegistrationsPreempted {
			return true
		}
	}
	return false
}

// storeShared applies r to the shared state; note is what to tell the
// other servers, nil when nothing changed. outMu keeps this server's PR
// OUTs in order; mu is held only to read and to install the state, never
// across a round trip to the record, so I/O checks do not wait on it.
func (s *State) storeShared(n Nexus, r *OutRequest) (Result, []byte, error) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	for range maxStoreAttempts {
		if err := s.refresh(); err != nil {
			return Result{}, nil, err
		}
		s.mu.Lock()
		if s.scsi2 != nil && *s.scsi2 != n {
			s.mu.Unlock()
			return Result{}, nil, ErrConflict
		}
		st, version := s.st.clone(), s.version
		s.mu.Unlock()
		res, changed, err := st.out(n, r)
		if err != nil || !changed {
			return res, nil, err
		}
		value, err := encode(&st)
		if err != nil {
			return Result{}, nil, err
		}
		note, err := encodeNote(&res)
		if err != nil {
			return Result{}, nil, err
		}
		newVersion, ok, err := s.shared.Store(value, version)
		if err != nil {
			// The write may or may not have been applied: reload
			// before answering from memory again.
			s.markStale()
			return Result{}, nil, fmt.Errorf("%w: %v", ErrStateUnavailable, err)
		}
		if ok {
			s.mu.Lock()
			if newVersion > s.version {
				s.st, s.version = st, newVersion
				s.updateActiveLocked()
			}
			s.mu.Unlock()
			return res, note, nil
		}
		// Another server changed the state first: apply the request to
		// what it stored.
	}
	return Result{}, nil, fmt.Errorf("%w: %d concurrent changes in a row", ErrStateUnavailable, maxStoreAttempts)
}

// The note of a shared change: what the other servers must do besides
// loading the new state.
type fileNote struct {
	Notices []fileNotice     `json:"notices,omitempty"`
	Aborted []fileRegistrant `json:"aborted,omitempty"`
}

type fileNotice struct {
	UA UA             `json:"ua"`
	To fileRegistrant `json:"to"`
}

func encodeNote(res *Result) ([]byte, error) {
	var f fileNote
	for _, nt := range res.Notices {
		f.Notices = append(f.Notices, fileNotice{UA: nt.UA, To: toFile(nt.To)})
	}
	for _, r := range res.Aborted {
		f.Aborted = append(f.Aborted, toFile(r))
	}
	return json.Marshal(&f)
}

func decodeNote(data []byte) (*Result, error) {
	var f fileNote
	if len(data) == 0 {
		return &Result{}, nil
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	res := &Result{}
	for i, nt := range f.Notices {
		r, err := fromFile(nt.To, i)
		if err != nil {
			return nil, err
		}
		res.Notices = append(res.Notices, Notice{UA: nt.UA, To: r})
	}
	for i, fr := range f.Aborted {
		r, err := fromFile(fr, i)
		if err != nil {
			return nil, err
		}
		res.Aborted = append(res.Aborted, r)
	}
	return res, nil
}

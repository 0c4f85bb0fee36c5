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
	// once they have taken it (or did not answer in time).
	Notify(note []byte) error
	// Watch calls changed with each note another server gives, and with
	// nil when changes may have been missed.
	Watch(changed func(note []byte)) error
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// IsShared reports whether the state lives in a Shared record.
func (s *State) IsShared() bool { return s.shared != nil }

// Watch starts taking other servers' changes: each is loaded, and fn gets
// the notices and preempted registrations they carried (nil when the
// watch was lost and changes may have been missed).
func (s *State) Watch(fn func(*Result)) error {
	if s.shared == nil {
		return nil
	}
	return s.shared.Watch(func(note []byte) {
		s.mu.Lock()
		if note == nil {
			// Changes may have been missed: answer nothing from
			// memory until a load succeeds.
			s.stale.Store(true)
		}
		err := s.refreshLocked()
		s.mu.Unlock()
		if note == nil || err != nil {
			fn(nil)
			return
		}
		res, err := decodeNote(note)
		if err != nil {
			fn(nil)
			return
		}
		fn(res)
	})
}

// Refresh brings the copy in memory up to date with the shared record; it
// is a no-op for an LU whose state is not shared.
func (s *State) Refresh() error {
	if s.shared == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshLocked()
}

// refreshLocked loads the record when its version moved. On failure the
// copy is marked stale.
func (s *State) refreshLocked() error {
	value, version, err := s.shared.Load()
	if err != nil {
		s.stale.Store(true)
		return fmt.Errorf("%w: %v", ErrStateUnavailable, err)
	}
	if version != s.version || s.stale.Load() {
		st := snapshot{Holder: -1}
		if len(bytes.TrimSpace(value)) > 0 {
			if st, err = decode(value); err != nil {
				s.stale.Store(true)
				return fmt.Errorf("%w: %v", ErrStateUnavailable, err)
			}
		}
		s.st, s.version = st, version
	}
	s.stale.Store(false)
	s.updateActiveLocked()
	return nil
}

// outShared is Out for shared state. The other servers are notified
// after mu is released: one of them may be notifying this one at the same
// time, and its note is taken in under mu.
func (s *State) outShared(n Nexus, r *OutRequest) (Result, error) {
	res, note, err := s.storeShared(n, r)
	if err != nil || note == nil {
		return res, err
	}
	// The change is stored whatever Notify says: a gateway that could not
	// be told loses its watch and reloads before it answers again.
	s.shared.Notify(note)
	return res, nil
}

// storeShared applies r to the shared state; note is what to tell the
// other servers, nil when nothing changed.
func (s *State) storeShared(n Nexus, r *OutRequest) (Result, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scsi2 != nil && *s.scsi2 != n {
		return Result{}, nil, ErrConflict
	}
	for range maxStoreAttempts {
		if err := s.refreshLocked(); err != nil {
			return Result{}, nil, err
		}
		before := s.st.clone()
		res, changed, err := s.st.out(n, r)
		if err != nil || !changed {
			s.st = before
			return res, nil, err
		}
		value, err := encode(&s.st)
		if err != nil {
			s.st = before
			return Result{}, nil, err
		}
		note, err := encodeNote(&res)
		if err != nil {
			s.st = before
			return Result{}, nil, err
		}
		version, ok, err := s.shared.Store(value, s.version)
		if err != nil {
			s.st = before
			return Result{}, nil, fmt.Errorf("%w: %v", ErrStateUnavailable, err)
		}
		if ok {
			s.version = version
			s.updateActiveLocked()
			return res, note, nil
		}
		// Another server changed the state first: apply the request to
		// what it stored.
		s.st = before
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

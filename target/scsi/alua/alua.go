// Package alua keeps the asymmetric logical unit access state of one SCSI
// target device (SPC-5 5.16): its target port groups, the primary access
// state of each, which state changes are allowed, and which commands a
// port in each state still runs. It knows nothing of CDB transport or
// sense encoding beyond the SPC field values, so it is tested without a
// network.
//
// Blockport has one SCSI target port per iSCSI target portal group (RFC
// 7143: the target port is the target name plus the portal group tag), so
// each target port group holds exactly one target port, and both the
// group's identifier and the port's relative target port identifier are
// the portal group tag.
package alua

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// State is a primary target port asymmetric access state; the values are
// those of the ASYMMETRIC ACCESS STATE field (SPC-5 6.37, table "Asymmetric
// access state").
type State uint8

// Access states. Blockport supports the first four; the others are named
// so that SET TARGET PORT GROUPS can refuse them precisely.
const (
	ActiveOptimized    State = 0x0
	ActiveNonOptimized State = 0x1
	Standby            State = 0x2
	Unavailable        State = 0x3
	LBADependent       State = 0x4
	Offline            State = 0xE
	Transitioning      State = 0xF
)

// stateNames are the config spellings of the supported states, in State order.
var stateNames = []string{"active/optimized", "active/non-optimized", "standby", "unavailable"}

// StateNames lists the supported states as the config spells them.
func StateNames() []string { return slices.Clone(stateNames) }

// ParseState reads a config spelling ("active/optimized", ...).
func ParseState(s string) (State, error) {
	if i := slices.Index(stateNames, strings.ToLower(s)); i >= 0 {
		return State(i), nil
	}
	return 0, fmt.Errorf("unknown ALUA state %q; valid states: %s", s, strings.Join(stateNames, ", "))
}

func (s State) String() string {
	switch {
	case int(s) < len(stateNames):
		return stateNames[s]
	case s == LBADependent:
		return "lba-dependent"
	case s == Offline:
		return "offline"
	case s == Transitioning:
		return "transitioning"
	}
	return fmt.Sprintf("State(%#x)", uint8(s))
}

// Supported reports whether Blockport puts a group in state s.
func (s State) Supported() bool { return s <= Unavailable }

// SupportedBits is byte 1 of a target port group descriptor (SPC-5 6.37):
// U_SUP, S_SUP, AN_SUP and AO_SUP. T_SUP stays 0: transitions are
// instantaneous, so no port is ever reported transitioning.
const SupportedBits = 0x08 | 0x04 | 0x02 | 0x01

// Status codes of a target port group descriptor (SPC-5 6.37): why the
// group last changed state.
const (
	StatusNone     = 0x00 // no transition since the device started
	StatusExplicit = 0x01 // altered by SET TARGET PORT GROUPS
	StatusImplicit = 0x02 // altered by the device itself (Blockport: never yet)
)

// Access is what a port in some state lets a command do (SPC-5 5.16.2.4).
type Access uint8

// Command classes, from most to least restricted.
const (
	// NeedsActive commands run only through an active/optimized or
	// active/non-optimized port: everything that touches the medium.
	NeedsActive Access = iota
	// StandbyOK commands also run through a standby port: INQUIRY, LOG
	// SELECT/SENSE, MODE SELECT/SENSE, REPORT LUNS, REPORT/SET TARGET PORT
	// GROUPS, REQUEST SENSE, PERSISTENT RESERVE IN/OUT, RECEIVE/SEND
	// DIAGNOSTIC, echo buffer READ/WRITE BUFFER.
	StandbyOK
	// AnyState commands run through a port in any state: INQUIRY, REPORT
	// LUNS, REPORT/SET TARGET PORT GROUPS, REQUEST SENSE, echo buffer
	// READ/WRITE BUFFER.
	AnyState
)

// Allows reports whether a port in state s runs a command of class a.
func (s State) Allows(a Access) bool {
	switch s {
	case ActiveOptimized, ActiveNonOptimized:
		return true
	case Standby:
		return a >= StandbyOK
	default: // unavailable, offline, transitioning
		return a == AnyState
	}
}

// CanTransition reports whether SET TARGET PORT GROUPS may move a group from
// one state to another. SPC-5 5.16.2.6 lets every primary state change to
// every other (through transitioning, which Blockport passes instantly);
// states Blockport does not support are neither left nor entered.
func CanTransition(from, to State) bool { return from.Supported() && to.Supported() }

// GroupConfig is one target port group as configured.
type GroupConfig struct {
	ID    uint16 // target port group identifier = portal group tag, 1..65535
	State State
}

// Group is a snapshot of one target port group.
type Group struct {
	ID     uint16
	State  State
	Status uint8 // StatusNone, StatusExplicit or StatusImplicit
}

// Ports is the ALUA state of one target device. It is safe for concurrent use.
type Ports struct {
	mu     sync.RWMutex
	groups []Group // sorted by ID; guarded by mu
	// generation counts state changes, so a caller can tell that a
	// snapshot is stale; guarded by mu.
	generation uint64
}

// New builds the state from the configured groups. IDs must be unique and
// non-zero (SPC-5: relative target port 0 is reserved), states supported.
func New(groups []GroupConfig) (*Ports, error) {
	if len(groups) == 0 {
		return nil, errors.New("alua: no target port group")
	}
	p := &Ports{}
	for _, g := range groups {
		if g.ID == 0 {
			return nil, errors.New("alua: target port group 0 is reserved")
		}
		if !g.State.Supported() {
			return nil, fmt.Errorf("alua: group %d: state %v is not supported", g.ID, g.State)
		}
		if p.index(g.ID) >= 0 {
			return nil, fmt.Errorf("alua: group %d is defined twice", g.ID)
		}
		p.groups = append(p.groups, Group{ID: g.ID, State: g.State})
		slices.SortFunc(p.groups, func(a, b Group) int { return int(a.ID) - int(b.ID) })
	}
	return p, nil
}

// index finds a group; the caller holds mu (or owns p).
func (p *Ports) index(id uint16) int {
	i, ok := slices.BinarySearchFunc(p.groups, id, func(g Group, id uint16) int { return int(g.ID) - int(id) })
	if !ok {
		return -1
	}
	return i
}

// State returns the access state of the port of portal group tag; ok is
// false when no group holds that port.
func (p *Ports) State(tpgt uint16) (s State, ok bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if i := p.index(tpgt); i >= 0 {
		return p.groups[i].State, true
	}
	return 0, false
}

// Groups returns a snapshot of every group, sorted by ID, and the
// generation it was taken at.
func (p *Ports) Groups() ([]Group, uint64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.groups), p.generation
}

// Change asks for one group's new state (one SET TARGET PORT GROUPS
// descriptor); Offset is the descriptor's byte offset in the parameter
// list, for the sense data of a refused change.
type Change struct {
	ID     uint16
	State  State
	Offset int
}

// ChangeError refuses a SET TARGET PORT GROUPS list: the field at Offset of
// the parameter list is invalid (SPC-5 6.50: INVALID FIELD IN PARAMETER LIST).
type ChangeError struct {
	Offset int
	Why    string
}

func (e *ChangeError) Error() string { return fmt.Sprintf("alua: byte %d: %s", e.Offset, e.Why) }

// Set applies explicit transitions all or nothing: every change is checked
// before any is made. It reports whether some group's state changed (a
// change to the current state is no transition and raises no unit attention).
func (p *Ports) Set(changes []Change) (changed bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[uint16]bool, len(changes))
	for _, c := range changes {
		i := p.index(c.ID)
		switch {
		case i < 0:
			return false, &ChangeError{Offset: c.Offset + 2, Why: fmt.Sprintf("no target port group %d", c.ID)}
		case seen[c.ID]:
			return false, &ChangeError{Offset: c.Offset + 2, Why: fmt.Sprintf("target port group %d named twice", c.ID)}
		case !CanTransition(p.groups[i].State, c.State):
			return false, &ChangeError{Offset: c.Offset, Why: fmt.Sprintf("group %d cannot go from %v to %v", c.ID, p.groups[i].State, c.State)}
		}
		seen[c.ID] = true
	}
	for _, c := range changes {
		g := &p.groups[p.index(c.ID)]
		if g.State != c.State {
			g.State = c.State
			g.Status = StatusExplicit
			changed = true
		}
	}
	if changed {
		p.generation++
	}
	return changed, nil
}

// Parameter list layout of SET TARGET PORT GROUPS (SPC-5 6.50): a 4-byte
// reserved header, then 4-byte set target port group descriptors.
const (
	setHeaderLen     = 4
	setDescriptorLen = 4
)

// ParseSetList decodes a SET TARGET PORT GROUPS parameter list. A list
// whose length is not the header plus whole descriptors is a
// *LengthError; an unsupported state a *ChangeError at its descriptor. An
// empty list (length 0) asks for nothing.
func ParseSetList(b []byte) ([]Change, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < setHeaderLen || (len(b)-setHeaderLen)%setDescriptorLen != 0 {
		return nil, &LengthError{Len: len(b)}
	}
	changes := make([]Change, 0, (len(b)-setHeaderLen)/setDescriptorLen)
	for off := setHeaderLen; off < len(b); off += setDescriptorLen {
		d := b[off : off+setDescriptorLen]
		s := State(d[0] & 0x0F)
		if !s.Supported() {
			return nil, &ChangeError{Offset: off, Why: fmt.Sprintf("state %v is not supported", s)}
		}
		changes = append(changes, Change{ID: uint16(d[2])<<8 | uint16(d[3]), State: s, Offset: off})
	}
	return changes, nil
}

// LengthError is a parameter list of the wrong length (PARAMETER LIST
// LENGTH ERROR).
type LengthError struct{ Len int }

func (e *LengthError) Error() string {
	return fmt.Sprintf("alua: SET TARGET PORT GROUPS parameter list of %d bytes is not 4 + 4n", e.Len)
}

// Report formats (SPC-5 6.37, PARAMETER DATA FORMAT field).
const (
	FormatLengthOnly     = 0x0
	FormatExtendedHeader = 0x1
)

// ImplicitTransitionTime is reported in the extended header, in seconds:
// the longest an implicit transition may take. Blockport's are immediate.
const ImplicitTransitionTime = 0

// AppendReport appends REPORT TARGET PORT GROUPS parameter data in the
// given format: the header, then one descriptor per group with its one
// target port (relative target port identifier = the group's ID).
func (p *Ports) AppendReport(b []byte, format uint8) []byte {
	groups, _ := p.Groups()
	start := len(b)
	b = append(b, 0, 0, 0, 0) // RETURN DATA LENGTH, set below
	if format == FormatExtendedHeader {
		b = append(b, FormatExtendedHeader<<4, ImplicitTransitionTime, 0, 0)
	}
	bodyStart := len(b)
	for _, g := range groups {
		b = append(b,
			byte(g.State)&0x0F, // PREF=0
			SupportedBits,
			byte(g.ID>>8), byte(g.ID),
			0,        // reserved
			g.Status, // STATUS CODE
			0,        // vendor specific
			1,        // TARGET PORT COUNT
			// Target port descriptor: obsolete, reserved, RELATIVE TARGET PORT IDENTIFIER.
			0, 0, byte(g.ID>>8), byte(g.ID),
		)
	}
	// RETURN DATA LENGTH counts the descriptors only (not the header),
	// as libiscsi and sg_rtpg read it.
	n := len(b) - bodyStart
	b[start], b[start+1], b[start+2], b[start+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return b
}

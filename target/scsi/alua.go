package scsi

// Asymmetric logical unit access (SPC-5 5.16): REPORT TARGET PORT GROUPS,
// SET TARGET PORT GROUPS, the access state check of Prepare, and the
// target port designators of VPD page 0x83. The port groups and their
// states live in package alua; a Device holds one alua.Ports shared by all
// its LUs (a target port group spans every LU of the target).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/blockport/blockport/target/scsi/alua"
	"github.com/blockport/blockport/target/scsi/sense"
)

// Operation codes and service actions of this file.
const (
	opMaintenanceOut = 0xA4
	saReportTPG      = 0x0A // MAINTENANCE IN: REPORT TARGET PORT GROUPS
	saSetTPG         = 0x0A // MAINTENANCE OUT: SET TARGET PORT GROUPS
)

// maxSetTPGParamLen bounds a SET TARGET PORT GROUPS parameter list: the
// header plus one descriptor for each possible group.
const maxSetTPGParamLen = 4 + 4*0xFFFF

// DefaultPortGroup is the target port group, and portal group tag, of
// every portal when none is configured.
const DefaultPortGroup = 1

// portGroupsSlot holds a device's ALUA state; see SetPortGroups.
type portGroupsSlot struct{ p atomic.Pointer[alua.Ports] }

// SetPortGroups replaces the device's target port groups. Until it is
// called, a device has one group, DefaultPortGroup, active/optimized.
func (d *Device) SetPortGroups(groups []alua.GroupConfig) error {
	p, err := alua.New(groups)
	if err != nil {
		return fmt.Errorf("scsi: %s: %w", d.name, err)
	}
	d.portGroups.p.Store(p)
	return nil
}

// ports returns the device's ALUA state, creating the default on first use.
func (d *Device) ports() *alua.Ports {
	if p := d.portGroups.p.Load(); p != nil {
		return p
	}
	def, err := alua.New([]alua.GroupConfig{{ID: DefaultPortGroup, State: alua.ActiveOptimized}})
	if err != nil {
		panic("scsi: default port group: " + err.Error()) // fixed input
	}
	d.portGroups.p.CompareAndSwap(nil, def)
	return d.portGroups.p.Load()
}

// checkAccessState is Prepare's ALUA check (SPC-5 5.16.2.4): a command
// that the access state of the target port it came through does not allow
// gets NOT READY, LOGICAL UNIT NOT ACCESSIBLE with the state's ASCQ. A
// port that belongs to no group (only in tests) is not restricted.
func (d *Device) checkAccessState(cmd *Command, op *opDesc) error {
	state, ok := d.ports().State(cmd.Nexus.TPGT)
	if !ok || state.Allows(op.alua) {
		return nil
	}
	switch state {
	case alua.Standby:
		return sense.ALUAStandby()
	case alua.Transitioning:
		return sense.ALUATransition()
	default:
		return sense.ALUAUnavailable()
	}
}

// REPORT TARGET PORT GROUPS (SPC-5 6.37).
func parseReportTPG(lu *LU, cmd *Command) error {
	format := cmd.CDB[1] >> 5
	if format != alua.FormatLengthOnly && format != alua.FormatExtendedHeader {
		return sense.InvalidFieldInCDB(1, 7)
	}
	dataIn(cmd, binary.BigEndian.Uint32(cmd.CDB[6:10]), 8+12*0x10000)
	return nil
}

func execReportTPG(ctx context.Context, d *Device, cmd *Command) (int, error) {
	return putOut(cmd, d.ports().AppendReport(nil, cmd.CDB[1]>>5)), nil
}

// SET TARGET PORT GROUPS (SPC-5 6.50): explicit transitions.
func parseSetTPG(lu *LU, cmd *Command) error {
	n := binary.BigEndian.Uint32(cmd.CDB[6:10])
	if n > maxSetTPGParamLen {
		return sense.ParameterListLengthError()
	}
	cmd.Dir, cmd.TransferLength = DirWrite, int(n)
	if n == 0 {
		cmd.Dir = DirNone // SPC-5: a length of zero is not an error; nothing changes
	}
	return nil
}

func execSetTPG(ctx context.Context, d *Device, cmd *Command) (int, error) {
	if len(cmd.Data) < cmd.TransferLength {
		return 0, sense.ParameterListLengthError()
	}
	changes, err := alua.ParseSetList(cmd.Data[:cmd.TransferLength])
	if err != nil {
		return 0, aluaError(err)
	}
	changed, err := d.ports().Set(changes)
	if err != nil {
		return 0, aluaError(err)
	}
	if changed {
		// SPC-5 5.16.2.8: an explicit change raises ASYMMETRIC ACCESS STATE
		// CHANGED for every I_T nexus but the one that asked for it, on
		// every LU of the device.
		self := *cmd.Nexus
		d.establishAll(sense.AsymmetricAccessStateChanged, func(n Nexus) bool { return n != self })
	}
	return 0, nil
}

// establishAll queues a unit attention on every LU of the device.
func (d *Device) establishAll(mk func() *sense.Error, keep func(Nexus) bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, lu := range d.lus {
		lu.ua.establish(mk, keep)
	}
}

// aluaError maps package alua's errors to sense data.
func aluaError(err error) error {
	var ce *alua.ChangeError
	var le *alua.LengthError
	switch {
	case errors.As(err, &ce):
		return sense.InvalidFieldInParameterList(ce.Offset, -1)
	case errors.As(err, &le):
		return sense.ParameterListLengthError()
	}
	return err
}

// Designator header bytes for target port designators (SPC-5 7.7.6):
// PROTOCOL IDENTIFIER 5h (iSCSI) with PIV=1 and ASSOCIATION 01b (the
// target port), or ASSOCIATION 10b (the target device).
const (
	protocolISCSI      = 0x5
	codeSetBinary      = 0x1
	codeSetUTF8        = 0x3
	pivAssocTargetPort = 0x80 | 0x10
	pivAssocTarget     = 0x80 | 0x20
	desigRelativePort  = 0x4
	desigPortGroup     = 0x5
	desigSCSIName      = 0x8
)

// appendPortDesignators appends the designators of the target port that
// nexus n reaches the LU through: the relative target port identifier and
// the target port group (both the portal group tag; see package alua), the
// iSCSI target port name "<target>,t,0x<TPGT>" and the target device name.
// Every path to an LU shares the LU designators before these.
func appendPortDesignators(b []byte, n *Nexus) []byte {
	tpgt := n.TPGT
	b = append(b, protocolISCSI<<4|codeSetBinary, pivAssocTargetPort|desigRelativePort, 0, 4, 0, 0, byte(tpgt>>8), byte(tpgt))
	b = append(b, protocolISCSI<<4|codeSetBinary, pivAssocTargetPort|desigPortGroup, 0, 4, 0, 0, byte(tpgt>>8), byte(tpgt))
	b = appendSCSIName(b, pivAssocTargetPort, fmt.Sprintf("%s,t,0x%04x", n.Target, tpgt))
	return appendSCSIName(b, pivAssocTarget, n.Target)
}

// appendSCSIName appends a SCSI name string designator (SPC-5 7.7.6.11):
// UTF-8, null terminated and padded to a multiple of 4 bytes. A name too
// long for the one-byte length is left out.
func appendSCSIName(b []byte, pivAssoc byte, name string) []byte {
	l := (len(name) + 4) &^ 3 // at least one NUL, then a multiple of 4
	if l > 0xFF {
		return b
	}
	b = append(b, protocolISCSI<<4|codeSetUTF8, pivAssoc|desigSCSIName, 0, byte(l))
	b = append(b, name...)
	for range l - len(name) {
		b = append(b, 0)
	}
	return b
}

// deviceIDPage returns VPD page 0x83 as nexus n sees it: the LU's
// prebuilt page followed by the designators of n's target port.
func (lu *LU) deviceIDPage(n *Nexus) []byte {
	base := lu.vpd[vpdDeviceID]
	page := appendPortDesignators(append(make([]byte, 0, len(base)+128), base...), n)
	binary.BigEndian.PutUint16(page[2:4], uint16(len(page)-4))
	return page
}

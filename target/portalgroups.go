package target

import (
	"fmt"

	"github.com/blockport/blockport/config"
	"github.com/blockport/blockport/target/iscsi"
	"github.com/blockport/blockport/target/scsi"
	"github.com/blockport/blockport/target/scsi/alua"
)

// portalGroups applies a target's [[target.portal_group]] tables: the
// device gets one ALUA target port group per portal group, in its
// configured state, and the returned lookup tells the fabric which group
// (tag) a portal is in for this target. A target without portal groups
// keeps the device's default group 1 and a nil lookup: every portal, tag 1.
//
// Remote groups (another gateway's) are ALUA groups of the device too, so
// REPORT TARGET PORT GROUPS shows them, and their portals are returned for
// SendTargets; no local portal maps to them.
func portalGroups(tc config.Target, dev *scsi.Device) (lookup func(listen string) (uint16, bool), remote []iscsi.Portal, err error) {
	if len(tc.PortalGroups) == 0 {
		return nil, nil, nil
	}
	tagOf := make(map[string]uint16)
	groups := make([]alua.GroupConfig, 0, len(tc.PortalGroups))
	for _, g := range tc.PortalGroups {
		state, err := alua.ParseState(g.ALUAState)
		if err != nil {
			return nil, nil, fmt.Errorf("portal group %d: %w", g.Tag, err)
		}
		groups = append(groups, alua.GroupConfig{ID: g.Tag, State: state})
		for _, addr := range g.Addresses {
			if g.Remote {
				remote = append(remote, iscsi.Portal{Addr: addr, TPGT: g.Tag})
			} else {
				tagOf[addr] = g.Tag
			}
		}
	}
	if err := dev.SetPortGroups(groups); err != nil {
		return nil, nil, err
	}
	return func(listen string) (uint16, bool) {
		tag, ok := tagOf[listen]
		return tag, ok
	}, remote, nil
}

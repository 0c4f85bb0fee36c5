package config

import (
	"net"
	"slices"
	"strconv"
	"strings"
)

// PortalGroup is one target portal group of a target ([[target.portal_group]]).
// A portal group is a SCSI target port: initiators log in through any of
// its addresses, TargetPortalGroupTag tells them the tag, and ALUA reports
// one target port group per portal group.
//
// The groups reference the server's portals rather than owning addresses:
// every address must be one of [server] listen (written exactly as there),
// so one listener can serve several targets, each placing it in its own
// group. A target with portal groups is reached only through their
// addresses; a target without any has every listen address in group
// DefaultPortalGroupTag, active/optimized. Two groups of a target must not
// share a tag or an address.
type PortalGroup struct {
	Tag       uint16   // tag (1..65535): the TargetPortalGroupTag and ALUA target port group
	Addresses []string // addresses: entries of [server] listen
	// ALUAState (alua_state) is the group's asymmetric access state at
	// start: one of ALUAStates, default active/optimized. SET TARGET PORT
	// GROUPS changes it at run time; a restart returns to the config's.
	ALUAState string
	// Remote (remote = true) is a group that another server serves: the
	// second gateway of a target whose LUNs it exports too (an RBD image
	// behind two gateways). Its addresses are that server's portals, not
	// [server] listen addresses. This server lists them in SendTargets and
	// reports the group's ALUA state in REPORT TARGET PORT GROUPS, so that
	// discovery through either gateway finds both paths and multipath sees
	// one picture; nobody logs in through it here.
	Remote bool
}

// DefaultPortalGroupTag is the tag of every portal of a target that
// configures no portal group.
const DefaultPortalGroupTag = 1

// ALUAStates are the asymmetric access states a portal group may start in
// (SPC-5 5.16.2.4).
var ALUAStates = []string{"active/optimized", "active/non-optimized", "standby", "unavailable"}

var portalGroupKeys = []string{"tag", "addresses", "alua_state", "remote"}

// decodePortalGroups decodes the [[target.portal_group]] tables of a target.
func decodePortalGroups(t table, target *Target) {
	for _, gt := range t.tables("portal_group", portalGroupKeys) {
		gt.checkUnknown()
		g := PortalGroup{ALUAState: ALUAStates[0]}
		var tag int64
		switch {
		case gt.integer("tag", &tag):
			if tag < 1 || tag > 65535 {
				gt.r.add(gt.key("tag"), "must be between 1 and 65535, not %d", tag)
			} else {
				g.Tag = uint16(tag)
			}
		case !gt.has("tag"):
			gt.r.add(gt.key("tag"), "missing: every portal group needs a tag (1..65535)")
		}
		if !gt.stringList("addresses", &g.Addresses) && !gt.has("addresses") {
			gt.r.add(gt.key("addresses"), "missing: list the [server] listen addresses of this group")
		}
		gt.str("alua_state", &g.ALUAState)
		gt.boolean("remote", &g.Remote)
		target.PortalGroups = append(target.PortalGroups, g)
	}
}

// validatePortalGroups checks every target's portal groups against the
// server's listen addresses.
func validatePortalGroups(c *Config, r *reporter) {
	for ti := range c.Targets {
		t := &c.Targets[ti]
		tagAt := map[uint16]string{}  // tag -> key of its first use
		addrAt := map[string]string{} // address -> key of its first use
		for gi, g := range t.PortalGroups {
			gkey := indexKey(indexKey("target", ti)+".portal_group", gi)
			if g.Tag == 0 {
				if !r.reported[gkey+".tag"] {
					r.add(gkey+".tag", "must be between 1 and 65535, not 0")
				}
			} else if first, dup := tagAt[g.Tag]; dup {
				r.add(gkey+".tag", "tag %d is already used by the portal group at %s", g.Tag, r.where(first))
			} else {
				tagAt[g.Tag] = gkey + ".tag"
			}
			if len(g.Addresses) == 0 && !r.reported[gkey+".addresses"] {
				r.add(gkey+".addresses", "must list at least one [server] listen address")
			}
			for ai, addr := range g.Addresses {
				akey := indexKey(gkey+".addresses", ai)
				if g.Remote {
					// Another server's portal: a host and a port.
					host, port, err := net.SplitHostPort(addr)
					if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
						r.add(akey, "%q is not a host:port portal address", addr)
					} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
						r.add(akey, "%q: initiators cannot connect to a wildcard address; give the other server's address", addr)
					} else if slices.Contains(c.Server.Listen, addr) {
						r.add(akey, "%q is a [server] listen address, so the group is not remote: drop remote = true", addr)
					}
					continue
				}
				switch first, dup := addrAt[addr]; {
				case !slices.Contains(c.Server.Listen, addr):
					r.add(akey, "%q is not a [server] listen address (%s)", addr, strings.Join(c.Server.Listen, ", "))
				case dup:
					r.add(akey, "%q is already in the portal group at %s", addr, r.where(first))
				default:
					addrAt[addr] = akey
				}
			}
			if !slices.Contains(ALUAStates, g.ALUAState) {
				r.add(gkey+".alua_state", "%q is not an ALUA state; use one of %s", g.ALUAState, strings.Join(ALUAStates, ", "))
			}
		}
		if len(t.PortalGroups) > 0 && !slices.ContainsFunc(t.PortalGroups, func(g PortalGroup) bool { return !g.Remote }) {
			r.add(indexKey("target", ti)+".portal_group", "every portal group is remote: this server would serve none of the target's ports")
		}
	}
}

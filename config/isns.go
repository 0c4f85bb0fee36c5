package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ISNS is the optional [isns] table: registration with an iSNS server
// (RFC 4171). Without the table Blockport sends no iSNS traffic.
type ISNS struct {
	// Server (server) is the iSNS server's "host:port"; a port left out
	// in the file is DefaultISNSPort.
	Server string
	// Entity (entity) is the Network Entity Identifier the targets and
	// portals are registered under; empty: derived from the host name.
	Entity string
	// RegistrationPeriod (registration_period) is the registration period
	// asked of the server; the registration is refreshed at a third of it
	// (or of the server's, when that is shorter).
	RegistrationPeriod time.Duration
	// DiscoveryDomains (discovery_domains) makes SendTargets list only the
	// targets the iSNS server says the initiator may see (its discovery
	// domains); when the server cannot be asked, it lists none.
	DiscoveryDomains bool
}

// Defaults and bounds of [isns].
const (
	DefaultISNSPort               = 3205 // IANA's iSNS port
	DefaultISNSRegistrationPeriod = 15 * time.Minute
	MinISNSRegistrationPeriod     = 10 * time.Second
	MaxISNSRegistrationPeriod     = 24 * time.Hour
	// MaxISNSEntity: RFC 4171 6.2.1 allows 256 bytes with the NUL.
	MaxISNSEntity = 255
)

var isnsKeys = []string{"server", "entity", "registration_period", "discovery_domains"}

// decodeISNS decodes [isns]; c.ISNS stays nil without it.
func decodeISNS(root table, c *Config) {
	t, ok := root.sub("isns", isnsKeys)
	if !ok {
		return
	}
	t.checkUnknown()
	n := &ISNS{RegistrationPeriod: DefaultISNSRegistrationPeriod}
	if t.str("server", &n.Server) {
		n.Server = withISNSPort(n.Server)
	} else if !t.has("server") {
		t.r.add(t.key("server"), "missing: the iSNS server's address, such as \"isns.example.com\" or \"10.0.0.5:3205\"")
	}
	t.str("entity", &n.Entity)
	t.duration("registration_period", MinISNSRegistrationPeriod, MaxISNSRegistrationPeriod, &n.RegistrationPeriod)
	t.boolean("discovery_domains", &n.DiscoveryDomains)
	c.ISNS = n
}

// withISNSPort adds the default port to an address written without one:
// "isns.example.com", "10.0.0.5", "[fd00::5]" or a bare IPv6 address.
func withISNSPort(s string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	port := strconv.Itoa(DefaultISNSPort)
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return s + ":" + port
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
		return net.JoinHostPort(s, port)
	}
	if s == "" || strings.Contains(s, ":") {
		return s // let validation explain what is wrong
	}
	return net.JoinHostPort(s, port)
}

// validateISNS checks [isns].
func validateISNS(c *Config, r *reporter) {
	n := c.ISNS
	if n == nil {
		return
	}
	if n.Server == "" {
		if !r.reported["isns.server"] {
			r.add("isns.server", "must not be empty")
		}
	} else if err := checkListen(n.Server); err != nil {
		r.add("isns.server", "%v", err)
	} else if host, _, _ := net.SplitHostPort(n.Server); host == "" {
		r.add("isns.server", "%q names no host", n.Server)
	} else if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		r.add("isns.server", "%q is a wildcard address, not a server", n.Server)
	}
	if len(n.Entity) > MaxISNSEntity {
		r.add("isns.entity", "is %d bytes; the limit is %d (RFC 4171 6.2.1)", len(n.Entity), MaxISNSEntity)
	} else if !utf8.ValidString(n.Entity) || strings.ContainsFunc(n.Entity, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		r.add("isns.entity", "must be printable UTF-8")
	}
	if p := n.RegistrationPeriod; p < MinISNSRegistrationPeriod || p > MaxISNSRegistrationPeriod {
		if !r.reported["isns.registration_period"] {
			r.add("isns.registration_period", "must be between %v and %v, not %v", MinISNSRegistrationPeriod, MaxISNSRegistrationPeriod, p)
		}
	} else if p%time.Second != 0 {
		r.add("isns.registration_period", "%v is not a whole number of seconds", p)
	}
}

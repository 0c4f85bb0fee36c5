package isns

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Registration is what one iSCSI target server registers (RFC 4171 3.4):
// one Network Entity holding its Portals and its target Storage Nodes,
// with Portal Group objects telling through which portal each node is
// reached and with which tag.
type Registration struct {
	EntityID string        // Entity Identifier (RFC 4171 6.2.1)
	Period   time.Duration // Registration Period requested (6.2.6); 0 leaves it to the server
	Portals  []Portal
	Nodes    []Node
}

// Portal is one network portal (RFC 4171 6.3). An unspecified address
// (a wildcard listener) is registered as the address through which the
// client reaches the iSNS server.
type Portal struct {
	Addr    netip.AddrPort
	ESIPort uint16 // 0: no Entity Status Inquiry port (6.3.5)
}

// Node is one target Storage Node (RFC 4171 6.4).
type Node struct {
	Name         string // iSCSI Name
	Alias        string // may be empty
	PortalGroups []PortalGroup
}

// PortalGroup says that a node is reached through a portal with a portal
// group tag (RFC 4171 6.5). Portal is one of the Registration's portals.
type PortalGroup struct {
	Portal netip.AddrPort
	Tag    uint16
}

// Validate checks what the attributes can carry.
func (r Registration) Validate() error {
	if err := checkString("entity identifier", r.EntityID, maxEntityIDValue); err != nil {
		return err
	}
	if r.EntityID == "" {
		return errors.New("isns: empty entity identifier")
	}
	if r.Period < 0 || r.Period/time.Second > math.MaxUint32 {
		return fmt.Errorf("isns: registration period %v out of range", r.Period)
	}
	for _, n := range r.Nodes {
		if n.Name == "" {
			return errors.New("isns: node without an iSCSI name")
		}
		if err := checkString("iSCSI name", n.Name, maxISCSINameValue); err != nil {
			return err
		}
		if err := checkString("alias", n.Alias, maxAliasValue); err != nil {
			return err
		}
		for _, pg := range n.PortalGroups {
			if !slices.ContainsFunc(r.Portals, func(p Portal) bool { return p.Addr == pg.Portal }) {
				return fmt.Errorf("isns: node %s: portal group on %v, which is not a registered portal", n.Name, pg.Portal)
			}
		}
	}
	return nil
}

// checkString: a string value is NUL-terminated, so it may hold no NUL,
// and its length with the NUL is bounded (RFC 4171 6.1).
func checkString(what, s string, max int) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("isns: %s %q contains a NUL byte", what, s)
	}
	if len(s)+1 > max {
		return fmt.Errorf("isns: %s is %d bytes; at most %d fit", what, len(s), max-1)
	}
	return nil
}

// Resolve returns r with unspecified portal addresses replaced by local
// (when valid), and duplicate portals and portal groups that this makes
// removed.
func (r Registration) Resolve(local netip.Addr) Registration {
	fix := func(ap netip.AddrPort) netip.AddrPort {
		if ap.Addr().IsUnspecified() && local.IsValid() {
			return netip.AddrPortFrom(local, ap.Port())
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	out := Registration{EntityID: r.EntityID, Period: r.Period}
	for _, p := range r.Portals {
		p.Addr = fix(p.Addr)
		if !slices.ContainsFunc(out.Portals, func(q Portal) bool { return q.Addr == p.Addr }) {
			out.Portals = append(out.Portals, p)
		}
	}
	for _, n := range r.Nodes {
		m := Node{Name: n.Name, Alias: n.Alias}
		for _, pg := range n.PortalGroups {
			pg.Portal = fix(pg.Portal)
			if !slices.ContainsFunc(m.PortalGroups, func(q PortalGroup) bool { return q.Portal == pg.Portal }) {
				m.PortalGroups = append(m.PortalGroups, pg)
			}
		}
		out.Nodes = append(out.Nodes, m)
	}
	return out
}

// Equal reports whether r and o register the same objects.
func (r Registration) Equal(o Registration) bool {
	return r.EntityID == o.EntityID && r.Period == o.Period &&
		slices.Equal(r.Portals, o.Portals) &&
		slices.EqualFunc(r.Nodes, o.Nodes, func(a, b Node) bool {
			return a.Name == b.Name && a.Alias == b.Alias && slices.Equal(a.PortalGroups, b.PortalGroups)
		})
}

// source is the Source Attribute of requests about the registration: the
// first node. RFC 4171 5.6.5.1 lets a DevAttrReg name as source a node it
// registers.
func (r Registration) source() Attribute { return String(TagISCSIName, r.Nodes[0].Name) }

// RegisterRequest is the DevAttrReg of r (RFC 4171 5.6.5.1): the Entity
// Identifier as Message Key; as Operating Attributes the entity, every
// portal, every node, then a Portal Group object for each pair of node
// and portal (PG iSCSI Name, PG Portal IP Addr, PG Portal TCP/UDP Port as
// keys, then the PGT: the node's tag on that portal, or NULL where the
// node is not reached through it). With replace, the server drops what
// the entity held before. r must have a node.
func (r Registration) RegisterRequest(replace bool) Request {
	op := []Attribute{
		String(TagEntityIdentifier, r.EntityID),
		Uint32(TagEntityProtocol, EntityProtocolISCSI),
	}
	if r.Period > 0 {
		op = append(op, Uint32(TagRegistrationPeriod, uint32(r.Period/time.Second)))
	}
	for _, p := range r.Portals {
		op = append(op, IP(TagPortalIPAddress, p.Addr.Addr()), TCPPort(TagPortalPort, p.Addr.Port()))
		if p.ESIPort != 0 {
			op = append(op, TCPPort(TagESIPort, p.ESIPort))
		}
	}
	for _, n := range r.Nodes {
		op = append(op, String(TagISCSIName, n.Name), Uint32(TagISCSINodeType, NodeTypeTarget))
		if n.Alias != "" {
			op = append(op, String(TagISCSIAlias, n.Alias))
		}
	}
	for _, n := range r.Nodes {
		for _, p := range r.Portals {
			// RFC 4171 6.5.4: a NULL PGT says the node is not reached
			// through the portal. Explicit, so that no server assumes a
			// default tag for the pair.
			pgt := Nil(TagPGTag)
			if i := slices.IndexFunc(n.PortalGroups, func(pg PortalGroup) bool { return pg.Portal == p.Addr }); i >= 0 {
				pgt = Uint32(TagPGTag, uint32(n.PortalGroups[i].Tag))
			}
			op = append(op,
				String(TagPGISCSIName, n.Name),
				IP(TagPGPortalIPAddress, p.Addr.Addr()),
				TCPPort(TagPGPortalPort, p.Addr.Port()),
				pgt)
		}
	}
	return Request{
		Function:  FuncDevAttrReg,
		Replace:   replace,
		Source:    r.source(),
		Keys:      []Attribute{String(TagEntityIdentifier, r.EntityID)},
		Operating: op,
	}
}

// Registered is what the server made of a registration.
type Registered struct {
	EntityID string        // as the server keeps it
	Period   time.Duration // the Registration Period it granted; 0 if it named none
}

// Register sends r's DevAttrReg. replace makes the server forget whatever
// the entity held before (a stale registration of an earlier run).
func (c *Client) Register(ctx context.Context, r Registration, replace bool) (Registered, error) {
	if err := r.Validate(); err != nil {
		return Registered{}, err
	}
	if len(r.Nodes) == 0 {
		return Registered{}, errors.New("isns: a registration needs at least one storage node")
	}
	resp, err := c.Exchange(ctx, r.RegisterRequest(replace))
	if err != nil {
		return Registered{}, err
	}
	if err := resp.Err(); err != nil {
		return Registered{}, fmt.Errorf("register entity %q: %w", r.EntityID, err)
	}
	// RFC 4171 5.7.5.1: the response's Message Key holds the Entity
	// Identifier (the one the server assigned, had we sent none), and its
	// Operating Attributes what the server changed, such as the period.
	out := Registered{EntityID: r.EntityID}
	for _, a := range append(slices.Clip(resp.Keys), resp.Operating...) {
		switch a.Tag {
		case TagEntityIdentifier:
			if s, err := a.Str(); err == nil && s != "" {
				out.EntityID = s
			}
		case TagRegistrationPeriod:
			if v, err := a.Uint32(); err == nil {
				out.Period = time.Duration(v) * time.Second
			}
		}
	}
	return out, nil
}

// Deregister sends a DevDereg (RFC 4171 5.6.5.4) for the given nodes and
// portals of the registration's entity, as the node source; with no nodes
// and no portals it deregisters the whole entity, and with it everything
// it contains.
func (c *Client) Deregister(ctx context.Context, source, entityID string, nodes []string, portals []netip.AddrPort) error {
	var op []Attribute
	for _, n := range nodes {
		op = append(op, String(TagISCSIName, n))
	}
	for _, p := range portals {
		op = append(op, IP(TagPortalIPAddress, p.Addr()), TCPPort(TagPortalPort, p.Port()))
	}
	what := fmt.Sprintf("%d nodes and %d portals of entity %q", len(nodes), len(portals), entityID)
	if len(op) == 0 {
		op = []Attribute{String(TagEntityIdentifier, entityID)}
		what = fmt.Sprintf("entity %q", entityID)
	}
	resp, err := c.Exchange(ctx, Request{Function: FuncDevDereg, Source: String(TagISCSIName, source), Operating: op})
	if err != nil {
		return err
	}
	// 5.6.5.4: deregistering what does not exist is no error; a server
	// that says so anyway has what we wanted.
	if err := resp.Err(); err != nil && !errors.Is(err, StatusNoSuchEntry) {
		return fmt.Errorf("deregister %s: %w", what, err)
	}
	return nil
}

// IsRegistered asks whether the server still holds node in entity
// entityID, with node as the source. RFC 4171 6.2.6 suggests just such a
// query of one's own attributes to refresh a registration: any message
// from the client resets its registration timer. False means the server
// has lost the registration (it restarted, or let it expire).
func (c *Client) IsRegistered(ctx context.Context, node, entityID string) (bool, error) {
	resp, err := c.Exchange(ctx, Request{
		Function:  FuncDevAttrQry,
		Source:    String(TagISCSIName, node),
		Keys:      []Attribute{String(TagISCSIName, node)},
		Operating: []Attribute{Nil(TagEntityIdentifier), Nil(TagISCSIName)},
	})
	if err != nil {
		return false, err
	}
	switch err := resp.Err(); {
	case errors.Is(err, StatusNoSuchEntry), errors.Is(err, StatusSourceUnknown):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("query node %s: %w", node, err)
	}
	// 5.7.5.2: the answer lists the node's entity with the requested
	// attributes; our entity must be among them.
	for _, a := range resp.Operating {
		if a.Tag == TagEntityIdentifier {
			if s, err := a.Str(); err == nil && s == entityID {
				return true, nil
			}
		}
	}
	return false, nil
}

// VisibleTargets asks which target Storage Nodes the initiator may
// discover: a DevAttrQry with the initiator as source, so that the server
// answers within the discovery domains the initiator belongs to (RFC 4171
// 5.6.5.2, 2.2.2). No Such Entry is an empty answer.
func (c *Client) VisibleTargets(ctx context.Context, initiator string) ([]string, error) {
	if err := checkString("iSCSI name", initiator, maxISCSINameValue); err != nil {
		return nil, err
	}
	resp, err := c.Exchange(ctx, Request{
		Function:  FuncDevAttrQry,
		Source:    String(TagISCSIName, initiator),
		Keys:      []Attribute{Uint32(TagISCSINodeType, NodeTypeTarget)},
		Operating: []Attribute{Nil(TagISCSIName), Nil(TagISCSINodeType)},
	})
	if err != nil {
		return nil, err
	}
	switch err := resp.Err(); {
	case errors.Is(err, StatusNoSuchEntry):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("query targets visible to %s: %w", initiator, err)
	}
	return targetNames(resp.Operating), nil
}

// targetNames picks the target nodes out of query Operating Attributes:
// each node is its iSCSI Name followed by its other attributes, among
// them the node type. A node whose type is not given counts (the query
// asked for targets); one whose type lacks the target bit does not.
func targetNames(attrs []Attribute) []string {
	var names []string
	current := -1 // index in names of the node being read
	for _, a := range attrs {
		switch a.Tag {
		case TagISCSIName:
			s, err := a.Str()
			if err != nil || s == "" {
				current = -1
				continue
			}
			names = append(names, s)
			current = len(names) - 1
		case TagISCSINodeType:
			if current < 0 {
				continue
			}
			if t, err := a.Uint32(); err == nil && t&NodeTypeTarget == 0 {
				names = slices.Delete(names, current, current+1)
			}
			current = -1
		case TagEntityIdentifier, TagPortalIPAddress, TagPGISCSIName, TagDDID:
			current = -1 // another object starts
		}
	}
	return names
}

package target

import (
	"fmt"
	"net"
	"strings"

	"github.com/blockport/blockport/config"
	"github.com/blockport/blockport/target/iscsi"
	"github.com/blockport/blockport/target/scsi"
)

// access is the compiled access control of one target: who may log in,
// from where, what they must prove and (through the device's masking) what
// they see. Immutable once built.
type access struct {
	allowAny   bool
	acls       map[string]config.ACL // by lower-case initiator name (RFC 3722)
	chap       *iscsi.Credentials
	mutual     *iscsi.Credentials
	algorithms []iscsi.CHAPAlgorithm
}

func newAccess(tc config.Target) (*access, error) {
	a := &access{allowAny: tc.AllowAnyInitiator, acls: make(map[string]config.ACL, len(tc.ACLs))}
	var err error
	if a.chap, err = credentials(tc.CHAP); err != nil {
		return nil, err
	}
	if a.mutual, err = credentials(tc.MutualCHAP); err != nil {
		return nil, err
	}
	if a.algorithms, err = chapAlgorithms(tc.CHAPAlgorithms); err != nil {
		return nil, err
	}
	for _, acl := range tc.ACLs {
		if _, err := credentials(acl.CHAP); err != nil {
			return nil, fmt.Errorf("acl %s: %w", acl.Initiator, err)
		}
		if _, err := credentials(acl.MutualCHAP); err != nil {
			return nil, fmt.Errorf("acl %s: %w", acl.Initiator, err)
		}
		a.acls[strings.ToLower(acl.Initiator)] = acl
	}
	return a, nil
}

// admit decides a login: an initiator with an ACL entry, from one of its
// portals when it lists any; another only with allow_any_initiator.
func (a *access) admit(initiator string, remote net.Addr) bool {
	acl, ok := a.acls[strings.ToLower(initiator)]
	if !ok {
		return a.allowAny
	}
	if len(acl.Portals) == 0 {
		return true
	}
	src := iscsi.SourceIP(remote)
	for _, p := range acl.Portals {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// auth is what an initiator must prove: its ACL entry's CHAP, else the
// target's.
func (a *access) auth(initiator string) iscsi.AuthPolicy {
	p := iscsi.AuthPolicy{CHAP: a.chap, Mutual: a.mutual, Algorithms: a.algorithms}
	if acl, ok := a.acls[strings.ToLower(initiator)]; ok {
		// Errors were caught by newAccess.
		if acl.CHAP != nil {
			p.CHAP, _ = credentials(acl.CHAP)
		}
		if acl.MutualCHAP != nil {
			p.Mutual, _ = credentials(acl.MutualCHAP)
		}
	}
	return p
}

// masking turns the ACLs into the device's LUN masking; nil without ACLs,
// where every admitted initiator sees every LUN.
func masking(tc config.Target) *scsi.Masking {
	if len(tc.ACLs) == 0 {
		return nil
	}
	m := &scsi.Masking{Initiators: make(map[string][]scsi.LUNMapping, len(tc.ACLs)), OthersSeeAll: tc.AllowAnyInitiator}
	for _, acl := range tc.ACLs {
		maps := []scsi.LUNMapping{}
		if acl.LUNs == nil {
			for _, l := range tc.LUNs {
				maps = append(maps, scsi.LUNMapping{LUN: l.ID, As: l.ID})
			}
		}
		for _, l := range acl.LUNs {
			maps = append(maps, scsi.LUNMapping{LUN: l.LUN, As: l.As, ReadOnly: l.ReadOnly})
		}
		m.Initiators[strings.ToLower(acl.Initiator)] = maps
	}
	return m
}

func credentials(c *config.CHAP) (*iscsi.Credentials, error) {
	if c == nil {
		return nil, nil
	}
	if len(c.Secret) == 0 {
		// secret_file is loaded by config validation with file checks.
		return nil, fmt.Errorf("CHAP user %q: secret not loaded", c.User)
	}
	return &iscsi.Credentials{User: c.User, Secret: c.Secret.Reveal()}, nil
}

func chapAlgorithms(names []string) ([]iscsi.CHAPAlgorithm, error) {
	var out []iscsi.CHAPAlgorithm
	for _, n := range names {
		a, err := iscsi.ParseCHAPAlgorithm(n)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// discoveryAuth is the policy of discovery sessions ([discovery]).
func discoveryAuth(d config.Discovery) (iscsi.AuthPolicy, error) {
	var p iscsi.AuthPolicy
	var err error
	if p.CHAP, err = credentials(d.CHAP); err != nil {
		return p, fmt.Errorf("discovery: %w", err)
	}
	if p.Mutual, err = credentials(d.MutualCHAP); err != nil {
		return p, fmt.Errorf("discovery: %w", err)
	}
	if p.Algorithms, err = chapAlgorithms(d.CHAPAlgorithms); err != nil {
		return p, fmt.Errorf("discovery: %w", err)
	}
	return p, nil
}

// fabricOptions turns [limits] into the fabric's options; zero values keep
// the fabric's defaults.
func fabricOptions(cfg *config.Config) (iscsi.Options, error) {
	l := cfg.Limits
	tl := iscsi.DefaultTargetLimits()
	if l.MaxRecvDataSegmentLength != 0 {
		tl.MaxRecvDataSegmentLength = l.MaxRecvDataSegmentLength
	}
	if l.MaxBurstLength != 0 {
		tl.MaxBurstLength = l.MaxBurstLength
	}
	if l.FirstBurstLength != 0 {
		tl.FirstBurstLength = l.FirstBurstLength
	}
	da, err := discoveryAuth(cfg.Discovery)
	if err != nil {
		return iscsi.Options{}, err
	}
	return iscsi.Options{
		Limits:                  tl,
		LoginTimeout:            l.LoginTimeout,
		NopInterval:             l.IdleTimeout,
		NopTimeout:              l.NopTimeout,
		QueueDepth:              l.QueueDepth,
		DiscoveryAuth:           da,
		MaxSessionsPerTarget:    l.MaxSessionsPerTarget,
		MaxConnections:          l.MaxConnections,
		MaxLoginsPerSource:      l.MaxLoginsPerSource,
		MaxConnectionsPerSource: l.MaxConnectionsPerSource,
		BusyPoll:                cfg.Server.BusyPoll,
	}, nil
}

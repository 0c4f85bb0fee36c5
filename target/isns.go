package target

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blockport/blockport/config"
	"github.com/blockport/blockport/target/iscsi"
	"github.com/blockport/blockport/target/iscsi/isns"
)

// iSNS ([isns]): the server keeps its targets and portals registered with
// an iSNS server, and with discovery_domains asks it what each initiator
// may discover. The protocol lives in package isns; this file turns the
// server's state into an isns.Registration.

const (
	// isnsDeregisterTimeout bounds the deregistration at shutdown.
	isnsDeregisterTimeout = 5 * time.Second
	// isnsQueryTimeout bounds one discovery-domain check: the initiator's
	// SendTargets waits for it.
	isnsQueryTimeout = 5 * time.Second
)

// isnsLink is the server's side of [isns]. Immutable after New but for
// the registrar's own state.
type isnsLink struct {
	log       *slog.Logger
	entity    string
	period    time.Duration
	client    *isns.Client // registrations
	registrar *isns.Registrar
	discovery *isnsDiscovery // nil unless discovery_domains

	startOnce sync.Once
	started   atomic.Bool        // Run was started
	cancel    context.CancelFunc // stops Run; set by start
}

// newISNSLink prepares [isns]; nil when the config has none. Nothing is
// sent before start.
func newISNSLink(cfg *config.Config, log *slog.Logger) *isnsLink {
	if cfg.ISNS == nil {
		return nil
	}
	l := &isnsLink{
		log:    log,
		entity: isnsEntity(cfg),
		period: cfg.ISNS.RegistrationPeriod,
		client: isns.NewClient(cfg.ISNS.Server, isns.DefaultTimeout),
	}
	l.registrar = isns.NewRegistrar(l.client, l.log)
	if cfg.ISNS.DiscoveryDomains {
		// A client of its own: a slow registration never delays an
		// initiator's SendTargets.
		l.discovery = &isnsDiscovery{client: isns.NewClient(cfg.ISNS.Server, isnsQueryTimeout), log: l.log}
	}
	return l
}

// isnsEntity is [isns] entity, else "blockport:" and the host name (the
// prefix keeps it apart from an initiator's entity on the same host), else
// the first target's name.
func isnsEntity(cfg *config.Config) string {
	if cfg.ISNS.Entity != "" {
		return cfg.ISNS.Entity
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return "blockport:" + h
	}
	if len(cfg.Targets) > 0 {
		return "blockport:" + cfg.Targets[0].Name
	}
	return "blockport"
}

// filter is the fabric's discovery filter, or nil.
func (l *isnsLink) filter() iscsi.DiscoveryFilter {
	if l == nil || l.discovery == nil {
		return nil
	}
	return l.discovery
}

// start registers reg and keeps it registered until ctx ends or stop.
func (l *isnsLink) start(ctx context.Context, reg isns.Registration) {
	if l == nil {
		return
	}
	l.startOnce.Do(func() {
		ctx, l.cancel = context.WithCancel(ctx)
		l.registrar.Update(reg)
		l.started.Store(true)
		go l.registrar.Run(ctx)
	})
}

// update hands the registrar the registration after a reload.
func (l *isnsLink) update(reg isns.Registration) {
	if l == nil || !l.started.Load() {
		return
	}
	l.registrar.Update(reg)
}

// stop ends the registration loop and deregisters, bounded by
// isnsDeregisterTimeout and ctx.
func (l *isnsLink) stop(ctx context.Context) {
	if l == nil {
		return
	}
	l.startOnce.Do(func() {}) // no start after stop
	if l.discovery != nil {
		l.discovery.client.Close()
	}
	if l.started.Load() {
		l.cancel()
		ctx, cancel := context.WithTimeout(ctx, isnsDeregisterTimeout)
		defer cancel()
		if err := l.registrar.Deregister(ctx); err != nil {
			l.log.Warn("iSNS deregistration failed; the server drops the registration when its period runs out",
				"server", l.client.Addr(), "entity", l.entity, "err", err)
		}
	}
	l.client.Close()
}

// stats is the registrar's counters, for status and metrics.
func (l *isnsLink) stats() *ISNSStatus {
	if l == nil {
		return nil
	}
	return &ISNSStatus{Entity: l.entity, Server: l.client.Addr(), RegistrarStats: l.registrar.Stats()}
}

// ISNSStatus is the state of the iSNS registration ([isns]).
type ISNSStatus struct {
	Server string `json:"server"`
	Entity string `json:"entity"`
	isns.RegistrarStats
}

// isnsRegistration describes the server's targets and bound portals for
// the iSNS server: every portal, and every target with the tag it has on
// each portal it is reached through.
func (s *Server) isnsRegistration() isns.Registration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	reg := isns.Registration{EntityID: s.isns.entity, Period: s.isns.period}
	addrs := make([]netip.AddrPort, len(s.portals)) // by portal; invalid: not registrable
	for i, p := range s.portals {
		if i < len(s.listeners) {
			if ta, ok := s.listeners[i].Addr().(*net.TCPAddr); ok {
				addrs[i] = ta.AddrPort()
			}
		}
		if !addrs[i].IsValid() {
			addrs[i], _ = netip.ParseAddrPort(p.Addr)
		}
		if addrs[i].IsValid() {
			reg.Portals = append(reg.Portals, isns.Portal{Addr: addrs[i]})
		}
	}
	names := make([]string, 0, len(s.targets))
	for n := range s.targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := s.targets[n]
		node := isns.Node{Name: t.Name, Alias: t.Alias}
		for i, p := range s.portals {
			if !addrs[i].IsValid() {
				continue
			}
			tag, ok := p.TPGT, true
			if t.PortalGroup != nil {
				tag, ok = t.PortalGroup(p.Listen)
			}
			if ok {
				node.PortalGroups = append(node.PortalGroups, isns.PortalGroup{Portal: addrs[i], Tag: tag})
			}
		}
		reg.Nodes = append(reg.Nodes, node)
	}
	return reg
}

// isnsDiscovery asks the iSNS server which targets an initiator may
// discover (discovery_domains). It fails closed: when the server cannot
// be asked, the initiator discovers nothing, and that is logged once until
// the server answers again.
type isnsDiscovery struct {
	client  *isns.Client
	log     *slog.Logger
	failing atomic.Bool // the last check failed
}

// VisibleTargets implements iscsi.DiscoveryFilter.
func (d *isnsDiscovery) VisibleTargets(initiator string, targets []string) []string {
	if config.ValidateName(initiator) != nil {
		// No discovery domain holds it; and no answer about a name the
		// server would refuse should read as the server failing.
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), isnsQueryTimeout)
	defer cancel()
	visible, err := d.client.VisibleTargets(ctx, initiator)
	if err != nil {
		if !d.failing.Swap(true) {
			d.log.Warn("iSNS discovery-domain check failed: SendTargets lists no targets until the iSNS server answers",
				"server", d.client.Addr(), "initiator", initiator, "err", err)
		}
		return nil
	}
	if d.failing.Swap(false) {
		d.log.Info("iSNS server answers discovery-domain checks again", "server", d.client.Addr())
	}
	var out []string
	for _, t := range targets {
		for _, v := range visible {
			if strings.EqualFold(t, v) {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

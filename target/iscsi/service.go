package iscsi

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blockport/blockport/target/scsi"
)

// Target is what the fabric needs to know of one iSCSI target. The core
// (package target) builds it from the config and may swap it on reload.
type Target struct {
	Name   string
	Alias  string
	Device *scsi.Device
	// Admit reports whether an initiator may log in to this target
	// (ACLs live in the core; the fabric only asks).
	Admit func(initiator string, remote net.Addr) bool
	// Auth tells what an admitted initiator must prove (CHAP); nil or a
	// zero AuthPolicy means nothing.
	Auth func(initiator string) AuthPolicy
	// PortalGroup places a portal (by its Portal.Listen) in one of the
	// target's portal groups: the tag, or ok=false when the target is not
	// reached through that portal. nil: every portal, with its own TPGT.
	PortalGroup func(listen string) (tpgt uint16, ok bool)
	// RemotePortals are portals of the target that other servers serve
	// (another gateway's portal group): SendTargets lists them after this
	// server's own.
	RemotePortals []Portal
}

// Portal is one network portal with its target portal group tag.
type Portal struct {
	Addr string // host:port as listened on
	TPGT uint16 // the tag of targets without portal groups (Target.PortalGroup nil)
	// Listen is the configured address the portal was made from (Addr
	// may differ: host:0 becomes the port the kernel chose). Targets name
	// their portal groups' portals by it.
	Listen string
}

// tagFor returns the portal group tag of portal p for target t, or false
// when t is not reached through p.
func (t *Target) tagFor(p Portal) (uint16, bool) {
	if t.PortalGroup == nil {
		return p.TPGT, true
	}
	return t.PortalGroup(p.Listen)
}

// Registry is the fabric's view of the core: implemented by package target.
type Registry interface {
	LookupTarget(name string) *Target
	Targets() []*Target
	Portals() []Portal
}

// Options tune the fabric. Zero values mean the defaults below.
type Options struct {
	Limits       TargetLimits
	LoginTimeout time.Duration // a connection that does not finish login in time is closed
	NopInterval  time.Duration // idle time before the target pings the initiator
	NopTimeout   time.Duration // time the initiator has to answer a ping
	QueueDepth   uint32        // commands a session may have outstanding (CmdSN window)
	// DiscoveryAuth is what a discovery session must prove.
	DiscoveryAuth AuthPolicy
	// MaxSessionsPerTarget bounds the normal sessions of one target.
	MaxSessionsPerTarget int
	// MaxConnections bounds the connections of the whole service, logins
	// included; MaxLoginsPerSource bounds the connections of one source
	// address that have not finished login, so a flood from one address
	// cannot use up MaxConnections.
	MaxConnections     int
	MaxLoginsPerSource int
	// MaxConnectionsPerSource bounds the connections of one source
	// address in any phase, so that one host cannot take every slot of
	// MaxConnections (idle discovery sessions cost it nothing).
	MaxConnectionsPerSource int
	Logger                  *slog.Logger
	// DiscoveryFilter, when set, narrows what SendTargets lists in a
	// discovery session beyond the targets' Admit (iSNS discovery domains).
	DiscoveryFilter DiscoveryFilter
	// BusyPoll is the initial busy-poll budget (busypoll.go; 0: off);
	// SetBusyPoll changes it.
	BusyPoll time.Duration
}

// DiscoveryFilter decides which targets an initiator may discover; the
// core implements it (with iSNS discovery domains), so that the fabric
// needs no iSNS client.
type DiscoveryFilter interface {
	// VisibleTargets returns the names, among targets, that initiator may
	// discover. It blocks the connection for as long as it takes, so it
	// must bound its own time, and it must fail closed: when it cannot
	// tell, it returns none.
	VisibleTargets(initiator string, targets []string) []string
}

const (
	defaultLoginTimeout = 15 * time.Second
	defaultNopInterval  = 15 * time.Second
	defaultNopTimeout   = 30 * time.Second
	defaultQueueDepth   = 128
)

// Service accepts iSCSI connections and owns the sessions of one server.
type Service struct {
	registry Registry
	// opts is replaced whole by SetLimits (a reload of [limits]); a
	// connection keeps the Options it started with (conn.opts).
	opts atomic.Pointer[Options]
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[sessionKey]*Session // guarded by mu
	byTSIH   map[uint16]*Session     // guarded by mu
	nextTSIH uint16                  // guarded by mu
	conns    map[*conn]struct{}      // guarded by mu
	closing  bool                    // guarded by mu
	wg       sync.WaitGroup

	guard     *loginGuard
	malformed atomic.Uint64 // PDUs rejected or that closed a connection
	// discoveryAuth is what a discovery session must prove: opts'
	// DiscoveryAuth until SetDiscoveryAuth replaces it (a reload).
	discoveryAuth atomic.Pointer[AuthPolicy]
	obs           Observer // set before serving (observe.go); may be nil
	poller        busyPoller
}

// sessionKey identifies a session for reinstatement: RFC 7143 4.4.3, the
// initiator name, ISID and target portal group (and target) name a session.
type sessionKey struct {
	initiator string
	isid      [6]byte
	target    string
	tpgt      uint16
}

// NewService makes a fabric over a registry.
func NewService(reg Registry, opts Options) *Service {
	opts = withDefaults(opts)
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Service{
		registry: reg,
		log:      log,
		sessions: make(map[sessionKey]*Session),
		byTSIH:   make(map[uint16]*Session),
		nextTSIH: 1,
		conns:    make(map[*conn]struct{}),
		guard:    newLoginGuard(),
	}
	s.opts.Store(&opts)
	s.SetDiscoveryAuth(opts.DiscoveryAuth)
	s.SetBusyPoll(opts.BusyPoll)
	return s
}

// withDefaults fills the zero values of opts with the defaults.
func withDefaults(opts Options) Options {
	if opts.Limits == (TargetLimits{}) {
		opts.Limits = DefaultTargetLimits()
	}
	if opts.LoginTimeout == 0 {
		opts.LoginTimeout = defaultLoginTimeout
	}
	if opts.NopInterval == 0 {
		opts.NopInterval = defaultNopInterval
	}
	if opts.NopTimeout == 0 {
		opts.NopTimeout = defaultNopTimeout
	}
	if opts.QueueDepth == 0 {
		opts.QueueDepth = defaultQueueDepth
	}
	if opts.MaxSessionsPerTarget <= 0 {
		opts.MaxSessionsPerTarget = defaultMaxSessions
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = defaultMaxConnections
	}
	if opts.MaxConnectionsPerSource <= 0 {
		opts.MaxConnectionsPerSource = defaultMaxConnectionsPerSource
	}
	if opts.MaxLoginsPerSource <= 0 {
		opts.MaxLoginsPerSource = defaultMaxLoginsPerSource
	}
	return opts
}

// SetLimits replaces the limits and timeouts of opts (a reload of
// [limits]) from the next connection on: negotiation offers, queue depth,
// login and NOP timeouts, and the session and connection bounds. Running
// connections keep what they started with. The logger, the discovery
// filter and the discovery authentication (SetDiscoveryAuth) stay.
func (s *Service) SetLimits(opts Options) {
	cur := s.opts.Load()
	opts.Logger, opts.DiscoveryFilter, opts.DiscoveryAuth = cur.Logger, cur.DiscoveryFilter, cur.DiscoveryAuth
	opts = withDefaults(opts)
	s.opts.Store(&opts)
}

// SetDiscoveryAuth changes what discovery sessions must prove from their
// next login on; running sessions stay.
func (s *Service) SetDiscoveryAuth(p AuthPolicy) { s.discoveryAuth.Store(&p) }

// ServeConn runs one connection until it ends. tpgt is the portal group of
// the portal that accepted it.
func (s *Service) ServeConn(ctx context.Context, nc net.Conn, tpgt uint16) {
	s.ServePortal(ctx, nc, Portal{TPGT: tpgt})
}

// ServePortal runs one connection accepted on portal p until it ends. A
// normal session's portal group tag comes from its target's portal groups
// (Target.PortalGroup), else from p.TPGT.
func (s *Service) ServePortal(ctx context.Context, nc net.Conn, p Portal) {
	tpgt := p.TPGT
	src := SourceIP(nc.RemoteAddr())
	if o := s.opts.Load(); !s.guard.admit(src, o.MaxConnections, o.MaxLoginsPerSource, o.MaxConnectionsPerSource) {
		// Over a limit: close at once, before reading anything, and say
		// so only at debug level (a flood would flood the log).
		s.log.Debug("connection refused by a limit", "remote", nc.RemoteAddr().String())
		nc.Close()
		return
	}
	c := newConn(s, nc, tpgt)
	c.portal = p
	c.inLogin.Store(true)
	defer func() { s.guard.closed(src, c.inLogin.Load()) }()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	c.serve(ctx)
}

// shutdownAbortWait bounds how long Shutdown waits, once ctx has ended,
// for commands it aborted: those that check their context stop at once;
// one stuck in a backstore call cannot be stopped from here.
var shutdownAbortWait = 5 * time.Second // a variable for tests

// Shutdown closes every connection after letting in-flight commands finish,
// bounded by ctx. When ctx ends first, it closes the sockets and aborts
// every command (long ones such as SANITIZE or a reservation's wait stop
// at their next check), waits shutdownAbortWait more, and returns an error
// naming the connections that still have not ended.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	for _, c := range conns {
		c.abortTasks(func(*task) bool { return true })
		c.nc.Close()
	}
	t := time.NewTimer(shutdownAbortWait)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	}
	var stuck []string
	for _, c := range conns {
		select {
		case <-c.done:
		default:
			stuck = append(stuck, c.nc.RemoteAddr().String())
		}
	}
	return fmt.Errorf("iscsi: %d connections did not end (commands stuck in a backstore?): %s",
		len(stuck), strings.Join(stuck, ", "))
}

// CloseTarget drops every session of a target (used by cold reset and reload).
func (s *Service) CloseTarget(name string) {
	for _, sess := range s.sessionsOf(name) {
		sess.close()
	}
}

func (s *Service) sessionsOf(target string) []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Session
	for k, sess := range s.sessions {
		if k.target == target {
			out = append(out, sess)
		}
	}
	return out
}

// SessionInfo describes one session for status and metrics.
type SessionInfo struct {
	Target    string
	Initiator string
	ISID      [6]byte
	TSIH      uint16
	Remote    string
	Params    Params
	Since     time.Time
}

// Sessions lists the live normal sessions.
func (s *Service) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for k, sess := range s.sessions {
		out = append(out, SessionInfo{
			Target: k.target, Initiator: k.initiator, ISID: k.isid, TSIH: sess.tsih,
			Remote: sess.remote, Params: sess.params, Since: sess.since,
		})
	}
	return out
}

// register installs a new session, reinstating (closing) an old one with the
// same key: RFC 7143 6.3.5, session reinstatement.
func (s *Service) register(key sessionKey, sess *Session) (old *Session, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, loginErrorf(loginClassTargetErr, loginDetailServiceUnavailable, "server is shutting down")
	}
	// The login looked the target up when it began. A reload since then
	// may have removed it or refused this initiator, and a reload closes
	// only the sessions it finds registered; this check under s.mu
	// closes the gap (a reload publishes its rules before it looks).
	cur := s.registry.LookupTarget(key.target)
	if cur == nil || cur.Device != sess.target.Device {
		return nil, loginErrorf(loginClassInitiatorErr, loginDetailNotFound, "target %s was removed during the login", key.target)
	}
	if cur.Admit != nil && !cur.Admit(key.initiator, sess.conn.nc.RemoteAddr()) {
		return nil, loginErrorf(loginClassInitiatorErr, loginDetailAuthzFailure,
			"initiator %q may no longer log in to %q", key.initiator, key.target)
	}
	old = s.sessions[key]
	if old == nil {
		n := 0
		for k := range s.sessions {
			if k.target == key.target {
				n++
			}
		}
		if n >= s.opts.Load().MaxSessionsPerTarget {
			return nil, loginErrorf(loginClassTargetErr, loginDetailOutOfResources,
				"target %s has %d sessions, the limit", key.target, n)
		}
	}
	if old != nil {
		delete(s.byTSIH, old.tsih)
		// The new session is the same I_T nexus: it starts as a new one
		// (SAM-5: the old nexus' state ends with it), and it does so now,
		// under s.mu, rather than whenever the old connection's teardown
		// gets there, which could be after the new session has begun.
		old.target.Device.NexusLoss(old.nexus)
	}
	for i := 0; i < 1<<16; i++ {
		t := s.nextTSIH
		s.nextTSIH++
		if s.nextTSIH == 0 {
			s.nextTSIH = 1 // TSIH 0 is reserved for "new session"
		}
		if _, used := s.byTSIH[t]; !used && t != 0 {
			sess.tsih = t
			break
		}
	}
	s.sessions[key] = sess
	s.byTSIH[sess.tsih] = sess
	return old, nil
}

// endSession removes an ended session and ends its I_T nexus in the SCSI
// core (unit attentions, a SCSI-2 reservation, copy results), unless a
// newer session of the same nexus has replaced it (reinstatement, or a
// quick login after a logout): that one's state is not the old session's to
// clear. Both happen under s.mu, so no session of the nexus can register in
// between.
func (s *Service) endSession(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byTSIH[sess.tsih] == sess {
		delete(s.byTSIH, sess.tsih)
	}
	if s.sessions[sess.key] != sess {
		return
	}
	delete(s.sessions, sess.key)
	sess.target.Device.NexusLoss(sess.nexus)
}

func (s *Service) lookupTSIH(tsih uint16) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byTSIH[tsih]
}

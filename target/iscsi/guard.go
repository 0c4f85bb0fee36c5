package iscsi

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Login failure slowdown: each failed login from a source address makes
// the next failure answer from that address wait longer (doubling from
// failureDelayBase up to failureDelayMax). Only failure answers wait, and
// only on the failing connection, so a correct login is never delayed and
// one address cannot slow down another. A source's count is forgotten after
// failureForget without failures; a successful login does not clear it,
// or an attacker with one valid account could log in between guesses at
// another's secret and never be slowed down.
const (
	failureDelayBase = 100 * time.Millisecond
	failureDelayMax  = 5 * time.Second
	failureForget    = 10 * time.Minute
	// maxTrackedSources bounds the table; when full, the entry with the
	// oldest failure is dropped.
	maxTrackedSources         = 4096
	defaultMaxLoginsPerSource = 16
	// defaultMaxConnectionsPerSource is config.DefaultMaxConnectionsPerSource.
	defaultMaxConnectionsPerSource = 256
	defaultMaxConnections          = 4096
	defaultMaxSessions             = 1024
)

// sourceState is what the guard knows of one source address.
type sourceState struct {
	failures  int       // consecutive failed logins
	lastFail  time.Time // of the last failure
	inLogin   int       // connections in the login phase
	connected int       // connections of any phase
}

// loginGuard counts logins per source address. Safe for concurrent use.
type loginGuard struct {
	mu       sync.Mutex
	sources  map[netip.Addr]*sourceState // guarded by mu
	conns    int                         // all connections; guarded by mu
	failures atomic.Uint64               // failed logins, ever
	refused  atomic.Uint64               // connections refused by a limit
	now      func() time.Time
}

func newLoginGuard() *loginGuard {
	return &loginGuard{sources: make(map[netip.Addr]*sourceState), now: time.Now}
}

// SourceIP is the IP address of a peer; an unknown kind of address maps to
// the zero Addr, which is then one shared source.
func SourceIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	if a != nil {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap.Addr().Unmap()
		}
	}
	return netip.Addr{}
}

// entry returns the state of src, making room if needed. Called with mu held.
func (g *loginGuard) entry(src netip.Addr) *sourceState {
	if st, ok := g.sources[src]; ok {
		return st
	}
	if len(g.sources) >= maxTrackedSources {
		var victim netip.Addr
		var oldest time.Time
		found := false
		for a, st := range g.sources {
			if st.inLogin > 0 || st.connected > 0 {
				continue
			}
			if !found || st.lastFail.Before(oldest) {
				victim, oldest, found = a, st.lastFail, true
			}
		}
		if found {
			delete(g.sources, victim)
		}
	}
	st := &sourceState{}
	g.sources[src] = st
	return st
}

// admit registers a new connection from src in the login phase. It fails
// when the service is at maxConns, src already has maxLogins connections
// logging in, or maxPerSource connections in all.
func (g *loginGuard) admit(src netip.Addr, maxConns, maxLogins, maxPerSource int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.entry(src)
	if g.conns >= maxConns || st.inLogin >= maxLogins || st.connected >= maxPerSource {
		g.refused.Add(1)
		g.pruneLocked(src, st)
		return false
	}
	g.conns++
	st.inLogin++
	st.connected++
	return true
}

// loginEnded moves a connection out of the login phase.
func (g *loginGuard) loginEnded(src netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st, ok := g.sources[src]; ok && st.inLogin > 0 {
		st.inLogin--
	}
}

// closed forgets a connection admitted earlier.
func (g *loginGuard) closed(src netip.Addr, inLogin bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conns--
	st, ok := g.sources[src]
	if !ok {
		return
	}
	if inLogin && st.inLogin > 0 {
		st.inLogin--
	}
	st.connected--
	g.pruneLocked(src, st)
}

// pruneLocked drops an entry that holds nothing worth keeping.
func (g *loginGuard) pruneLocked(src netip.Addr, st *sourceState) {
	if st.inLogin == 0 && st.connected <= 0 && (st.failures == 0 || g.now().Sub(st.lastFail) > failureForget) {
		delete(g.sources, src)
	}
}

// failed counts a failed login from src and returns how long its answer
// should wait.
func (g *loginGuard) failed(src netip.Addr) time.Duration {
	g.failures.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.entry(src)
	now := g.now()
	if now.Sub(st.lastFail) > failureForget {
		st.failures = 0
	}
	st.failures++
	st.lastFail = now
	return failureDelay(st.failures)
}

// failureDelay is the wait after the n-th consecutive failure: none for
// the first (a typo), then doubling, bounded.
func failureDelay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := failureDelayBase
	for i := 2; i < n && d < failureDelayMax; i++ {
		d *= 2
	}
	return min(d, failureDelayMax)
}

// Stats are the fabric's access counters.
type Stats struct {
	LoginFailures     uint64 // logins that ended with a failure status
	RefusedConns      uint64 // connections closed at once by a limit
	MalformedPDUs     uint64 // PDUs answered with a Reject or a closed connection
	ActiveConnections int
	// Busy polls ([server] busy_poll, busypoll.go): those that found data
	// within the budget, and those that ran out and parked the reader.
	BusyPollsFound   uint64
	BusyPollsExpired uint64
}

// Stats returns the access counters.
func (s *Service) Stats() Stats {
	s.guard.mu.Lock()
	active := s.guard.conns
	s.guard.mu.Unlock()
	return Stats{
		LoginFailures:     s.guard.failures.Load(),
		RefusedConns:      s.guard.refused.Load(),
		MalformedPDUs:     s.malformed.Load(),
		ActiveConnections: active,
		BusyPollsFound:    s.poller.found.Load(),
		BusyPollsExpired:  s.poller.expired.Load(),
	}
}

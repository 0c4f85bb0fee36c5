package isns

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Registrar keeps a Registration in an iSNS server: it registers it,
// refreshes it well before the registration period runs out, applies
// changes (Update) by deregistering what went away and registering the
// rest, and registers again, backing off between failed attempts, when
// the connection drops or the server no longer knows the entity (it
// restarted, or the registration expired).
type Registrar struct {
	client *Client
	log    *slog.Logger

	// MinBackoff and MaxBackoff bound the wait after a failed attempt; it
	// doubles from MinBackoff with each failure in a row. Set before Run.
	MinBackoff, MaxBackoff time.Duration

	mu      sync.Mutex
	desired Registration  // guarded by mu
	wake    chan struct{} // signals a new desired registration
	done    chan struct{} // closed when Run returns

	// Owned by Run, then by Deregister.
	registered   *Registration // what the server holds, resolved; nil: nothing
	lastDesired  Registration  // the desired registration registered holds, unresolved
	grantedEvery time.Duration // the period the server granted
	heardAt      time.Time     // when the server last answered a request of ours

	stats registrarStats
}

type registrarStats struct {
	registrations, registrationFailures atomic.Uint64
	refreshes, refreshFailures          atomic.Uint64
	deregistrations                     atomic.Uint64
	registered                          atomic.Bool
}

// RegistrarStats counts what a Registrar did.
type RegistrarStats struct {
	Registered           bool   `json:"registered"`
	Registrations        uint64 `json:"registrations"`         // DevAttrReg answered with success
	RegistrationFailures uint64 `json:"registration_failures"` // DevAttrReg that failed or was refused
	Refreshes            uint64 `json:"refreshes"`             // registration checks that found it in place
	RefreshFailures      uint64 `json:"refresh_failures"`      // checks that could not reach the server
	Deregistrations      uint64 `json:"deregistrations"`
}

// Defaults of a Registrar.
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Minute
	// DefaultPeriod is the refresh basis when neither the registration
	// nor the server names a period.
	DefaultPeriod = 15 * time.Minute
)

// NewRegistrar makes a registrar that registers through c. Call Update
// with the first registration, then Run.
func NewRegistrar(c *Client, log *slog.Logger) *Registrar {
	if log == nil {
		log = slog.Default()
	}
	return &Registrar{
		client:     c,
		log:        log,
		MinBackoff: DefaultMinBackoff,
		MaxBackoff: DefaultMaxBackoff,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
}

// Update sets the registration to keep in the server; Run applies it as
// soon as it can. A registration without nodes removes the entity.
func (r *Registrar) Update(reg Registration) {
	r.mu.Lock()
	r.desired = reg
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Registrar) wanted() Registration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.desired
}

// Stats returns the registrar's counters.
func (r *Registrar) Stats() RegistrarStats {
	return RegistrarStats{
		Registered:           r.stats.registered.Load(),
		Registrations:        r.stats.registrations.Load(),
		RegistrationFailures: r.stats.registrationFailures.Load(),
		Refreshes:            r.stats.refreshes.Load(),
		RefreshFailures:      r.stats.refreshFailures.Load(),
		Deregistrations:      r.stats.deregistrations.Load(),
	}
}

// Run keeps the registration until ctx ends. It then returns; call
// Deregister to remove the registration.
func (r *Registrar) Run(ctx context.Context) {
	defer close(r.done)
	var (
		refreshAt time.Time // when the server must hear from us again
		retryAt   time.Time // after failures: no attempt before then
		failures  int
		check     bool // the connection dropped: see whether the server still has us
	)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		if !now.Before(retryAt) {
			err := r.apply(ctx, r.wanted(), check || !now.Before(refreshAt))
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				failures++
				wait := r.backoff(failures)
				retryAt = time.Now().Add(wait)
				if failures == 1 {
					r.log.Warn("iSNS registration failed; retrying with backoff", "server", r.client.Addr(), "err", err, "retry_in", wait.Round(time.Millisecond))
				} else {
					r.log.Debug("iSNS registration failed again", "server", r.client.Addr(), "err", err, "failures", failures, "retry_in", wait.Round(time.Millisecond))
				}
			} else {
				if failures > 0 {
					r.log.Info("iSNS server reachable again", "server", r.client.Addr(), "failed_attempts", failures)
				}
				failures, retryAt, check = 0, time.Time{}, false
				// From the last exchange: an Update that changed nothing
				// must not postpone the refresh.
				refreshAt = r.heardAt.Add(r.refreshInterval())
			}
		}
		next := refreshAt
		if failures > 0 {
			next = retryAt
		}
		if r.registered == nil && failures == 0 {
			next = time.Now().Add(24 * time.Hour) // nothing to keep: wait for Update
		}
		timer.Reset(max(time.Until(next), 0))
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-timer.C:
		case <-r.client.Lost():
			check = r.registered != nil
			r.log.Debug("iSNS connection closed; checking the registration", "server", r.client.Addr())
		}
	}
}

// refreshInterval is a third of the registration period (the smaller of
// the requested and the granted one): two refreshes can fail before the
// registration expires (RFC 4171 6.2.6).
func (r *Registrar) refreshInterval() time.Duration {
	period := DefaultPeriod
	if r.registered != nil && r.registered.Period > 0 {
		period = r.registered.Period
	}
	if r.grantedEvery > 0 && r.grantedEvery < period {
		period = r.grantedEvery
	}
	return max(period/3, time.Second)
}

// backoff doubles from MinBackoff up to MaxBackoff, with up to a tenth of
// random jitter so that restarted servers are not hit in lockstep.
func (r *Registrar) backoff(failures int) time.Duration {
	d := r.MinBackoff
	for i := 1; i < failures && d < r.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.MaxBackoff)
	if jitter := d / 10; jitter > 0 {
		d += rand.N(jitter)
	}
	return d
}

// apply brings the server in line with want. check verifies that a
// registration believed in place still is (which also refreshes it).
func (r *Registrar) apply(ctx context.Context, want Registration, check bool) error {
	if r.registered == nil && len(want.Nodes) == 0 {
		return nil
	}
	if r.registered != nil && !check && want.Equal(r.lastDesired) {
		return nil
	}
	local, err := r.client.Dial(ctx)
	if err != nil {
		if r.registered == nil || !want.Equal(r.lastDesired) {
			r.stats.registrationFailures.Add(1)
		} else {
			r.stats.refreshFailures.Add(1)
		}
		return err
	}
	resolved := want.Resolve(local)
	old := r.registered
	switch {
	case old == nil:
		return r.register(ctx, want, resolved, true)
	case len(want.Nodes) == 0 || old.EntityID != resolved.EntityID:
		if err := r.deregisterEntity(ctx, *old); err != nil {
			return err
		}
		if len(want.Nodes) == 0 {
			r.lastDesired = want
			return nil
		}
		return r.register(ctx, want, resolved, true)
	case !resolved.Equal(*old):
		return r.change(ctx, want, *old, resolved)
	}
	ok, err := r.client.IsRegistered(ctx, old.Nodes[0].Name, old.EntityID)
	if err != nil {
		r.stats.refreshFailures.Add(1)
		return err
	}
	r.heardAt = time.Now()
	if ok {
		r.stats.refreshes.Add(1)
		return nil
	}
	r.log.Info("iSNS server no longer has our registration (restarted, or it expired); registering again",
		"server", r.client.Addr(), "entity", old.EntityID)
	r.setRegistered(nil)
	return r.register(ctx, want, resolved, true)
}

// register registers everything, replacing what the entity held.
func (r *Registrar) register(ctx context.Context, want, resolved Registration, replace bool) error {
	got, err := r.client.Register(ctx, resolved, replace)
	if err != nil {
		r.stats.registrationFailures.Add(1)
		return err
	}
	r.stats.registrations.Add(1)
	r.heardAt = time.Now()
	r.grantedEvery = got.Period
	r.lastDesired = want
	first := r.registered == nil
	r.setRegistered(&resolved)
	if first {
		r.log.Info("registered with iSNS server", "server", r.client.Addr(), "entity", resolved.EntityID,
			"targets", len(resolved.Nodes), "portals", len(resolved.Portals), "period", got.Period)
	}
	return nil
}

// change applies a new registration over an old one of the same entity:
// nodes and portals that went away are deregistered (which takes their
// portal groups along), then the rest is registered as an update.
func (r *Registrar) change(ctx context.Context, want Registration, old, resolved Registration) error {
	var goneNodes []string
	for _, n := range old.Nodes {
		if !slices.ContainsFunc(resolved.Nodes, func(m Node) bool { return m.Name == n.Name }) {
			goneNodes = append(goneNodes, n.Name)
		}
	}
	var gonePortals []netip.AddrPort
	for _, p := range old.Portals {
		if !slices.ContainsFunc(resolved.Portals, func(q Portal) bool { return q.Addr == p.Addr }) {
			gonePortals = append(gonePortals, p.Addr)
		}
	}
	if len(goneNodes) > 0 || len(gonePortals) > 0 {
		if err := r.client.Deregister(ctx, old.Nodes[0].Name, old.EntityID, goneNodes, gonePortals); err != nil {
			return err
		}
		r.heardAt = time.Now()
		r.stats.deregistrations.Add(1)
		// What is left of the old registration, should the update fail.
		rest := old
		rest.Nodes = slices.DeleteFunc(slices.Clone(old.Nodes), func(n Node) bool { return slices.Contains(goneNodes, n.Name) })
		rest.Portals = slices.DeleteFunc(slices.Clone(old.Portals), func(p Portal) bool { return slices.Contains(gonePortals, p.Addr) })
		if len(rest.Nodes) == 0 {
			r.setRegistered(nil)
		} else {
			r.setRegistered(&rest)
		}
		r.log.Info("deregistered from iSNS server", "server", r.client.Addr(), "entity", old.EntityID,
			"targets", goneNodes, "portals", len(gonePortals))
	}
	replace := r.registered == nil
	if err := r.register(ctx, want, resolved, replace); err != nil {
		return err
	}
	r.log.Info("iSNS registration updated", "server", r.client.Addr(), "entity", resolved.EntityID,
		"targets", len(resolved.Nodes), "portals", len(resolved.Portals))
	return nil
}

func (r *Registrar) deregisterEntity(ctx context.Context, old Registration) error {
	if err := r.client.Deregister(ctx, old.Nodes[0].Name, old.EntityID, nil, nil); err != nil {
		return err
	}
	r.stats.deregistrations.Add(1)
	r.setRegistered(nil)
	r.log.Info("deregistered from iSNS server", "server", r.client.Addr(), "entity", old.EntityID)
	return nil
}

func (r *Registrar) setRegistered(reg *Registration) {
	r.registered = reg
	r.stats.registered.Store(reg != nil)
}

// errRunning: Deregister needs Run to have returned.
var errRunning = errors.New("isns: Deregister called while Run is still running")

// Deregister removes the registration from the server, once Run has
// returned (it waits up to ctx for that). It is what a target server does
// as it shuts down, so that initiators stop discovering it.
func (r *Registrar) Deregister(ctx context.Context) error {
	select {
	case <-r.done:
	case <-ctx.Done():
		return errRunning
	}
	if r.registered == nil {
		return nil
	}
	return r.deregisterEntity(ctx, *r.registered)
}

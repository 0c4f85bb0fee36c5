package target

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/config"
	"github.com/blockport/blockport/target/iscsi"
	"github.com/blockport/blockport/target/scsi"
)

// Live reload: build the desired state from a new config, compare it with
// the config in force, and apply the difference without touching what did
// not change. Sessions of unchanged targets, and I/O to unchanged LUNs of a
// changed target, go on undisturbed.
//
// Order of work: first everything that can fail and that nobody can see yet
// (opening new backstores, compiling access rules), so that a failure there
// changes nothing; then the visible changes, quick and in an order that
// never lets an initiator reach a closed backstore through a live mapping.

// sessionDrainTimeout bounds how long a reload waits for the sessions of a
// removed target to end before closing its backstores.
const sessionDrainTimeout = 10 * time.Second

// luDrainTimeout bounds how long a reload that unmaps or reopens a LUN
// waits for the commands executing on it.
const luDrainTimeout = 10 * time.Second

// ReloadReport says what a reload did.
type ReloadReport struct {
	Changes []string `json:"changes"`
	// Warnings name settings that changed but take effect only at the
	// next start, and changes that failed half way (the rest applied).
	Warnings []string `json:"warnings,omitempty"`
}

// pendingLUN is a LUN whose backstore is open and LU built, not yet mapped.
type pendingLUN struct {
	id    uint64
	lu    *scsi.LU
	store backstore.Backstore
}

// resizeLUN is a LUN whose config changed in size only.
type resizeLUN struct {
	id   uint64
	size int64 // the new configured size; 0: what the medium holds
}

// targetPlan is what a reload does to one target that exists before and after.
type targetPlan struct {
	old, new config.Target
	remove   []uint64          // LUNs to unmap and close (removed or changed)
	add      []pendingLUN      // opened in the prepare phase
	deferred []config.LUN      // reuse the path of a LUN being removed: opened after it is closed
	resize   []resizeLUN       // LUNs that only grow: resized in place, sessions undisturbed
	access   *access           // non-nil when ACLs, CHAP or alias changed
	masking  bool              // the LUN masking changed
	lunCfg   map[uint64]string // for the report
}

// Reload applies cfg. An error means nothing changed; warnings in the report
// list what did not apply.
func (s *Server) Reload(cfg *config.Config) (*ReloadReport, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.RLock()
	old, stopped := s.cfg, s.stopped
	s.mu.RUnlock()
	if stopped {
		return nil, errors.New("reload: server is shutting down")
	}
	ids, err := loadIdentity(s.stateDir)
	if err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	rep := &ReloadReport{Changes: []string{}}
	rep.Warnings = restartOnly(old, cfg)

	oldTargets := targetsByName(old)
	newTargets := targetsByName(cfg)

	// Prepare: open what is new, compile access rules. Undo on failure.
	var opened []backstore.Backstore
	fail := func(err error) (*ReloadReport, error) {
		for _, b := range opened {
			b.Close()
		}
		return nil, fmt.Errorf("reload: %w (nothing changed)", err)
	}
	var added []*iscsi.Target
	var addedStores []namedStore
	var plans []*targetPlan
	for _, tc := range cfg.Targets {
		otc, existed := oldTargets[tc.Name]
		if !existed {
			dev := scsi.NewDevice(tc.Name)
			for _, lc := range tc.LUNs {
				lu, store, err := s.openLU(tc.Name, lc, ids)
				if err != nil {
					return fail(err)
				}
				opened = append(opened, store)
				addedStores = append(addedStores, namedStore{target: tc.Name, lun: lc.ID, store: store})
				if err := dev.AddLU(lc.ID, lu); err != nil {
					return fail(err)
				}
			}
			t, err := s.targetOf(tc, dev)
			if err != nil {
				return fail(err)
			}
			added = append(added, t)
			continue
		}
		if reflect.DeepEqual(otc, tc) {
			continue
		}
		p := &targetPlan{old: otc, new: tc}
		oldLUNs := lunsByID(otc)
		newLUNs := lunsByID(tc)
		for _, lc := range otc.LUNs {
			nl, ok := newLUNs[lc.ID]
			if !ok || nl.Size == lc.Size || !sameButSize(nl, lc) {
				continue
			}
			// Online resize: the LU and its sessions stay; it grows.
			if err := s.checkResize(tc.Name, nl); err != nil {
				return fail(err)
			}
			p.resize = append(p.resize, resizeLUN{id: nl.ID, size: nl.Size})
		}
		freed := map[string]bool{} // paths of LUNs this reload closes
		for _, lc := range otc.LUNs {
			if nl, ok := newLUNs[lc.ID]; !ok || !reflect.DeepEqual(nl, lc) && !sameButSize(nl, lc) {
				p.remove = append(p.remove, lc.ID)
				if lc.Path != "" {
					freed[lc.Path] = true
				}
			}
		}
		for _, lc := range tc.LUNs {
			if ol, ok := oldLUNs[lc.ID]; ok && (reflect.DeepEqual(ol, lc) || sameButSize(ol, lc)) {
				continue
			}
			if lc.Path != "" && (freed[lc.Path] || s.pathInUse(lc.Path)) {
				// The image is open (and locked) under its old mapping
				// until the apply phase closes it.
				p.deferred = append(p.deferred, lc)
				continue
			}
			lu, store, err := s.openLU(tc.Name, lc, ids)
			if err != nil {
				return fail(err)
			}
			opened = append(opened, store)
			p.add = append(p.add, pendingLUN{id: lc.ID, lu: lu, store: store})
		}
		if !reflect.DeepEqual(otc.PortalGroups, tc.PortalGroups) {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("target %s: portal groups take effect at the next start", tc.Name))
		}
		if !accessEqual(otc, tc) {
			acc, err := newAccess(tc)
			if err != nil {
				return fail(fmt.Errorf("target %s: %w", tc.Name, err))
			}
			p.access = acc
		}
		p.masking = !reflect.DeepEqual(masking(otc), masking(tc))
		if p.masking {
			// Check it compiles before anything changes.
			if err := scsi.NewDevice(tc.Name).SetMasking(masking(tc)); err != nil {
				return fail(fmt.Errorf("target %s: %w", tc.Name, err))
			}
		}
		plans = append(plans, p)
	}
	var removed []string
	for _, otc := range old.Targets {
		if _, ok := newTargets[otc.Name]; !ok {
			removed = append(removed, otc.Name)
		}
	}
	// [discovery]: compiled now, installed with the rest below.
	var newDiscovery *iscsi.AuthPolicy
	if !reflect.DeepEqual(old.Discovery, cfg.Discovery) {
		da, err := discoveryAuth(cfg.Discovery)
		if err != nil {
			return fail(err)
		}
		newDiscovery = &da
	}
	// [limits]: from the next connection on (running ones keep theirs).
	var newLimits *iscsi.Options
	if !reflect.DeepEqual(old.Limits, cfg.Limits) {
		opts, err := fabricOptions(cfg)
		if err != nil {
			return fail(err)
		}
		newLimits = &opts
	}
	var listenAdd []net.Listener
	var listenAddAddr []string
	listenRemove := map[string]bool{}
	portalsOK := s.portalsMatch(old)
	if portalsOK {
		for _, a := range old.Server.Listen {
			if !slices.Contains(cfg.Server.Listen, a) {
				listenRemove[a] = true
			}
		}
		for _, a := range cfg.Server.Listen {
			if slices.Contains(old.Server.Listen, a) {
				continue
			}
			ln, err := net.Listen("tcp", a)
			if err != nil {
				for _, l := range listenAdd {
					l.Close()
				}
				return fail(fmt.Errorf("listen on %s: %w", a, err))
			}
			listenAdd = append(listenAdd, ln)
			listenAddAddr = append(listenAddAddr, a)
		}
	} else if !slices.Equal(old.Server.Listen, cfg.Server.Listen) {
		rep.Warnings = append(rep.Warnings, "server.listen: portals changed; they take effect at the next start")
	}

	// Apply. From here on nothing is undone; failures become warnings.
	// A new target is attached to the fabric (PREEMPT AND ABORT reaches
	// its tasks) before a login can find it.
	for _, t := range added {
		s.svc.AttachTarget(t)
	}
	s.mu.Lock()
	for _, t := range added {
		s.targets[t.Name] = t
	}
	for _, name := range removed {
		delete(s.targets, name)
	}
	s.mu.Unlock()
	if err := s.keepStores(addedStores...); err != nil {
		rep.Warnings = append(rep.Warnings, err.Error())
	}
	for _, t := range added {
		rep.Changes = append(rep.Changes, "added target "+t.Name)
	}
	for _, name := range removed {
		n := len(s.sessionsOf(name))
		s.svc.CloseTarget(name)
		if !s.svc.WaitTargetSessions(name, sessionDrainTimeout) {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("target %s: sessions still ending after %v", name, sessionDrainTimeout))
		}
		for _, err := range s.closeStoresOf(name, nil) {
			rep.Warnings = append(rep.Warnings, err.Error())
		}
		rep.Changes = append(rep.Changes, fmt.Sprintf("removed target %s (closed %d sessions)", name, n))
	}
	if newDiscovery != nil {
		s.svc.SetDiscoveryAuth(*newDiscovery)
		rep.Changes = append(rep.Changes, "discovery authentication changed (from the next discovery login)")
	}
	if old.Server.BusyPoll != cfg.Server.BusyPoll {
		s.svc.SetBusyPoll(cfg.Server.BusyPoll)
		rep.Changes = append(rep.Changes, fmt.Sprintf("server.busy_poll changed from %v to %v (every connection, at once)", old.Server.BusyPoll, cfg.Server.BusyPoll))
	}
	if newLimits != nil {
		s.svc.SetLimits(*newLimits)
		rep.Changes = append(rep.Changes, "[limits] changed (from the next connection; sessions up keep what they negotiated)")
	}
	for _, p := range plans {
		s.applyTarget(p, ids, rep)
	}
	s.remeasure(cfg, rep)
	s.applyPortals(listenRemove, listenAdd, listenAddAddr, rep)

	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
	if s.isns != nil {
		// Targets, aliases and portals as they are now (isns.go).
		s.isns.update(s.isnsRegistration())
	}
	return rep, nil
}

// applyTarget changes one target in place.
func (s *Server) applyTarget(p *targetPlan, ids *identity, rep *ReloadReport) {
	name := p.new.Name
	s.mu.RLock()
	t := s.targets[name]
	s.mu.RUnlock()
	if t == nil {
		return
	}
	dev := t.Device
	if p.masking {
		// Masking first, so an initiator never sees a LUN it is losing
		// mapped to new storage, nor a new LUN before its ACL allows it.
		if err := dev.SetMasking(masking(p.new)); err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("target %s: masking: %v", name, err))
		} else {
			rep.Changes = append(rep.Changes, fmt.Sprintf("target %s: LUN masking changed", name))
		}
	}
	for _, r := range p.resize {
		lu := dev.LU(r.id)
		if lu == nil {
			continue
		}
		if _, err := lu.Resize(r.size); err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("target %s lun %d: resize: %v", name, r.id, err))
			continue
		}
		rep.Changes = append(rep.Changes, fmt.Sprintf("target %s: LUN %d is now %d bytes", name, r.id, int64(lu.Blocks())*int64(lu.BlockSize())))
	}
	for _, id := range p.remove {
		lu, err := dev.RemoveLU(id)
		if err != nil {
			rep.Warnings = append(rep.Warnings, err.Error())
			continue
		}
		// Commands still in the backstore finish before it is flushed
		// and closed (and, for a LUN reopened below, before its file's
		// lock is taken again).
		if !lu.Drain(luDrainTimeout) {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("target %s lun %d: commands still running after %v; closing its backstore under them", name, id, luDrainTimeout))
		}
		for _, err := range s.closeStoresOf(name, &id) {
			rep.Warnings = append(rep.Warnings, err.Error())
		}
		rep.Changes = append(rep.Changes, fmt.Sprintf("target %s: unmapped LUN %d", name, id))
	}
	for _, lc := range p.deferred {
		lu, store, err := s.openLU(name, lc, ids)
		if err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("LUN left unmapped: %v", err))
			continue
		}
		p.add = append(p.add, pendingLUN{id: lc.ID, lu: lu, store: store})
	}
	for _, pl := range p.add {
		if err := dev.AddLU(pl.id, pl.lu); err != nil {
			pl.store.Close()
			rep.Warnings = append(rep.Warnings, err.Error())
			continue
		}
		if err := s.keepStores(namedStore{target: name, lun: pl.id, store: pl.store}); err != nil {
			rep.Warnings = append(rep.Warnings, err.Error())
		}
		rep.Changes = append(rep.Changes, fmt.Sprintf("target %s: mapped LUN %d", name, pl.id))
	}
	if p.access != nil {
		nt := *t
		nt.Alias = p.new.Alias
		nt.Admit = p.access.admit
		nt.Auth = p.access.auth
		s.mu.Lock()
		s.targets[name] = &nt
		s.mu.Unlock()
		// Sessions admitted under the old rules that the new ones refuse
		// are closed; CHAP changes apply to the next login.
		n := s.svc.CloseSessions(name, func(initiator string, remote net.Addr) bool {
			return !p.access.admit(initiator, remote)
		})
		msg := fmt.Sprintf("target %s: access rules changed", name)
		if n > 0 {
			msg += fmt.Sprintf(" (closed %d sessions no longer allowed)", n)
		}
		rep.Changes = append(rep.Changes, msg)
	}
}

// applyPortals closes removed portals and starts serving added ones.
// Connections accepted on a removed portal stay up until they end.
// Portals are matched by their listen address: after reloads the order of
// the bound portals need not be the config's.
func (s *Server) applyPortals(remove map[string]bool, add []net.Listener, addrs []string, rep *ReloadReport) {
	s.mu.Lock()
	if s.stopped {
		// Shutdown began during this reload: it closed the listeners
		// it saw and waits for their loops; start no more.
		s.mu.Unlock()
		for _, ln := range add {
			ln.Close()
		}
		rep.Warnings = append(rep.Warnings, "server is shutting down: portal changes not applied")
		return
	}
	var keepL []net.Listener
	var keepP []iscsi.Portal
	for i := range s.listeners {
		if remove[s.portals[i].Listen] {
			s.listeners[i].Close()
			rep.Changes = append(rep.Changes, "stopped listening on "+s.portals[i].Addr)
			continue
		}
		keepL = append(keepL, s.listeners[i])
		keepP = append(keepP, s.portals[i])
	}
	ctx := s.serveCtx
	var start []int
	for i, ln := range add {
		host, _, _ := net.SplitHostPort(addrs[i])
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		keepL = append(keepL, ln)
		keepP = append(keepP, iscsi.Portal{Addr: net.JoinHostPort(host, port), TPGT: config.DefaultPortalGroupTag, Listen: addrs[i]})
		start = append(start, len(keepL)-1)
		rep.Changes = append(rep.Changes, "listening on "+net.JoinHostPort(host, port))
	}
	s.listeners, s.portals = keepL, keepP
	if ctx != nil {
		for _, i := range start {
			ln, portal := keepL[i], keepP[i]
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.acceptLoop(ctx, ln, portal)
			}()
		}
	}
	s.mu.Unlock()
}

// portalsMatch reports whether the bound portals still line up one to one
// with the config's listen list, which portal reload relies on.
func (s *Server) portalsMatch(old *config.Config) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.portals) != len(old.Server.Listen) || len(s.listeners) != len(s.portals) {
		return false
	}
	for _, a := range old.Server.Listen {
		if !slices.ContainsFunc(s.portals, func(p iscsi.Portal) bool { return p.Listen == a }) {
			return false
		}
	}
	return true
}

func (s *Server) sessionsOf(target string) []iscsi.SessionInfo {
	var out []iscsi.SessionInfo
	for _, si := range s.svc.Sessions() {
		if si.Target == target {
			out = append(out, si)
		}
	}
	return out
}

// pathInUse reports whether an open backstore was opened from path.
func (s *Server) pathInUse(path string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, tc := range s.cfg.Targets {
		for _, lc := range tc.LUNs {
			if lc.Path == path {
				return true
			}
		}
	}
	return false
}

// closeStoresOf flushes, closes and forgets the backstores of a target (of
// one LUN when lun is not nil).
func (s *Server) closeStoresOf(target string, lun *uint64) []error {
	s.mu.Lock()
	var closing []namedStore
	keep := s.stores[:0]
	for _, ns := range s.stores {
		if ns.target == target && (lun == nil || ns.lun == *lun) {
			closing = append(closing, ns)
			continue
		}
		keep = append(keep, ns)
	}
	s.stores = keep
	if len(closing) == 0 {
		s.mu.Unlock()
		return nil
	}
	// Shutdown's closeStores waits for these (it sets closed under mu, so
	// this Add comes before its Wait).
	s.closing.Add(1)
	defer s.closing.Done()
	s.mu.Unlock()
	var errs []error
	for _, ns := range closing {
		if err := ns.store.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("flush %s lun %d: %w", ns.target, ns.lun, err))
		}
		if err := ns.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s lun %d: %w", ns.target, ns.lun, err))
		}
	}
	return errs
}

// restartOnly lists changed settings that reload does not apply.
func restartOnly(old, cfg *config.Config) []string {
	var w []string
	os, ns := old.Server, cfg.Server
	os.Listen, ns.Listen = nil, nil
	os.BusyPoll, ns.BusyPoll = 0, 0
	if !reflect.DeepEqual(os, ns) {
		w = append(w, "[server]: settings other than listen and busy_poll take effect at the next start")
	}
	if !reflect.DeepEqual(old.ISNS, cfg.ISNS) {
		w = append(w, "[isns] takes effect at the next start")
	}
	return w
}

func targetsByName(c *config.Config) map[string]config.Target {
	m := make(map[string]config.Target, len(c.Targets))
	for _, t := range c.Targets {
		m[t.Name] = t
	}
	return m
}

func lunsByID(t config.Target) map[uint64]config.LUN {
	m := make(map[uint64]config.LUN, len(t.LUNs))
	for _, l := range t.LUNs {
		m[l.ID] = l
	}
	return m
}

// accessEqual compares what decides logins: alias, ACLs, CHAP.
func accessEqual(a, b config.Target) bool {
	a.LUNs, b.LUNs = nil, nil
	a.PortalGroups, b.PortalGroups = nil, nil
	return reflect.DeepEqual(a, b)
}

// sameButSize reports whether two LUN configs differ in nothing but size.
func sameButSize(a, b config.LUN) bool {
	a.Size = b.Size
	return reflect.DeepEqual(a, b)
}

// checkResize is the prepare-phase check of an online resize: the LU must
// be able to grow (its backstore a backstore.Resizer) and the new size may
// not be smaller than what the LU serves, so that a refused resize fails
// the reload before anything changed.
func (s *Server) checkResize(target string, lc config.LUN) error {
	s.mu.RLock()
	t := s.targets[target]
	s.mu.RUnlock()
	if t == nil {
		return nil
	}
	lu := t.Device.LU(lc.ID)
	if lu == nil {
		return nil
	}
	if _, ok := lu.Backstore().(backstore.Resizer); !ok {
		return fmt.Errorf("target %s lun %d: size: a %s backstore cannot change size while it serves; restart to apply", target, lc.ID, lc.Backstore)
	}
	if current := int64(lu.Blocks()) * int64(lu.BlockSize()); lc.Size != 0 && lc.Size < current {
		return fmt.Errorf("target %s lun %d: size: %d bytes is smaller than the LUN's %d; a LUN cannot shrink", target, lc.ID, lc.Size, current)
	}
	return nil
}

// remeasure lets LUNs that take their size from the medium (block devices,
// images without a configured size) grow to it: a reload after an LV or
// image was extended shows initiators the new capacity.
func (s *Server) remeasure(cfg *config.Config, rep *ReloadReport) {
	for _, tc := range cfg.Targets {
		s.mu.RLock()
		t := s.targets[tc.Name]
		s.mu.RUnlock()
		if t == nil {
			continue
		}
		for _, lc := range tc.LUNs {
			lu := t.Device.LU(lc.ID)
			if lc.Size != 0 || lu == nil {
				continue
			}
			if _, ok := lu.Backstore().(backstore.Resizer); !ok {
				continue
			}
			changed, err := lu.Resize(0)
			if err != nil {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("target %s lun %d: %v", tc.Name, lc.ID, err))
			} else if changed {
				rep.Changes = append(rep.Changes, fmt.Sprintf("target %s: LUN %d grew to %d bytes", tc.Name, lc.ID, int64(lu.Blocks())*int64(lu.BlockSize())))
			}
		}
	}
}

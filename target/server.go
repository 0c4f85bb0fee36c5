// Package target is Blockport's core: it builds targets, logical units and
// portals from the config, owns the listeners, and hands connections to the
// iSCSI fabric.
package target

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/config"
	"github.com/blockport/blockport/target/iscsi"
	"github.com/blockport/blockport/target/scsi"
	"github.com/blockport/blockport/target/scsi/pr"
)

// Server is a running Blockport: targets, their LUNs, the portals and the
// fabric.
type Server struct {
	log *slog.Logger
	svc *iscsi.Service

	stateDir string // server.state_dir: identity, reservations

	mu        sync.RWMutex
	targets   map[string]*iscsi.Target // guarded by mu
	portals   []iscsi.Portal           // guarded by mu
	stores    []namedStore             // every open backstore; guarded by mu
	listeners []net.Listener           // guarded by mu
	wg        sync.WaitGroup           // accept loops and connections
	stopped   bool                     // guarded by mu
	closed    bool                     // closeStores ran; guarded by mu
	closing   sync.WaitGroup           // reloads closing stores they took out of stores (added under mu while !closed)

	// Live reload and status (reload.go, status.go).
	cfg      *config.Config  // the config in force; guarded by mu
	serveCtx context.Context // Serve's context, for accept loops added by reload; guarded by mu
	reloadMu sync.Mutex      // one reload at a time
	started  time.Time

	isns *isnsLink // [isns] registration (isns.go); nil without it; set by New
}

type namedStore struct {
	target string
	lun    uint64
	store  backstore.Backstore
}

// New opens every backstore of the config and builds the targets. Nothing
// listens yet.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log, targets: make(map[string]*iscsi.Target), stateDir: cfg.Server.StateDir, cfg: cfg, started: time.Now()}
	ids, err := loadIdentity(cfg.Server.StateDir)
	if err != nil {
		return nil, err
	}
	for _, tc := range cfg.Targets {
		t, err := s.buildTarget(tc, ids)
		if err != nil {
			s.closeStores()
			return nil, err
		}
		s.targets[tc.Name] = t
	}
	for _, addr := range cfg.Server.Listen {
		// Tag 1 serves targets without portal groups; the others map the
		// portal to their own groups by its listen address (portalgroups.go).
		s.portals = append(s.portals, iscsi.Portal{Addr: addr, TPGT: config.DefaultPortalGroupTag, Listen: addr})
	}
	opts, err := fabricOptions(cfg)
	if err != nil {
		s.closeStores()
		return nil, err
	}
	opts.Logger = log
	s.isns = newISNSLink(cfg, log)
	opts.DiscoveryFilter = s.isns.filter() // iSNS discovery domains, or nil
	s.svc = iscsi.NewService(s, opts)
	for _, t := range s.targets {
		s.svc.AttachTarget(t) // PREEMPT AND ABORT reaches the fabric's tasks
	}
	return s, nil
}

func (s *Server) buildTarget(tc config.Target, ids *identity) (*iscsi.Target, error) {
	dev := scsi.NewDevice(tc.Name)
	for _, lc := range tc.LUNs {
		lu, store, err := s.openLU(tc.Name, lc, ids)
		if err != nil {
			return nil, err
		}
		s.stores = append(s.stores, namedStore{target: tc.Name, lun: lc.ID, store: store})
		if err := dev.AddLU(lc.ID, lu); err != nil {
			return nil, fmt.Errorf("target %s lun %d: %w", tc.Name, lc.ID, err)
		}
	}
	return s.targetOf(tc, dev)
}

// openLU opens the backstore of one LUN and builds its LU; the caller owns
// the store (reload.go uses it for LUNs added at run time).
func (s *Server) openLU(target string, lc config.LUN, ids *identity) (*scsi.LU, backstore.Backstore, error) {
	seed := ids.seed(target, lc.ID)
	keyFile := ""
	if lc.Encrypt {
		// The key follows the LU's identity, as its reservations do.
		keyFile = stateFile(s.stateDir, keyStateDir, scsi.NewNAA(seed), ".key")
	}
	store, err := backstore.Open(backstore.Options{
		Kind:       lc.Backstore,
		Path:       lc.Path,
		Size:       lc.Size,
		BlockSize:  lc.BlockSize,
		DirectIO:   lc.DirectIO,
		WriteCache: lc.WriteCache,
		ReadOnly:   lc.ReadOnly,
		KeyFile:    keyFile,
		Pool:       lc.Pool,
		Image:      lc.Image,
		CephConf:   lc.CephConf,
		ClientID:   lc.ClientID,
		Keyring:    lc.Keyring,
		Logger:     s.log.With("target", target, "lun", lc.ID),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("target %s lun %d: %w", target, lc.ID, err)
	}
	serial := lc.Serial
	if medium, ok := store.(backstore.Identified); ok {
		// A medium with an identity of its own (an RBD image) gives the
		// LU its NAA and serial, the same on every gateway that exports
		// it: multipath and cluster validation see one device.
		digest := sha256.Sum256([]byte("blockport medium " + medium.Identity()))
		seed = digest[:]
		if serial == "" {
			serial = hex.EncodeToString(digest[:12])
		}
	} else if serial == "" {
		serial = ids.serial(target, lc.ID)
	}
	return s.newLU(target, lc, store, seed, serial)
}

// newLU builds the LU of an open backstore; on failure it closes the store.
func (s *Server) newLU(target string, lc config.LUN, store backstore.Backstore, seed []byte, serial string) (*scsi.LU, backstore.Backstore, error) {
	var prShared pr.Shared
	if sh, ok := store.(backstore.Shared); ok {
		// Reservations live beside the medium, for every gateway.
		rec, err := sh.Record("pr")
		if err != nil {
			store.Close()
			return nil, nil, fmt.Errorf("target %s lun %d: shared reservation state: %w", target, lc.ID, err)
		}
		prShared = rec
	}
	blockSize := lc.BlockSize
	if bs, ok := store.(backstore.BlockSizer); ok && blockSize == 0 {
		blockSize = bs.LUNBlockSize()
	}
	lu, err := scsi.NewLU(scsi.LUConfig{
		Backstore:  store,
		BlockSize:  blockSize,
		ReadOnly:   lc.ReadOnly,
		WriteCache: lc.WriteCache,
		Removable:  lc.Removable,
		Vendor:     lc.Vendor,
		Product:    lc.Product,
		Serial:     serial,
		NAA:        scsi.NewNAA(seed),
		PRFile:     prFile(s.stateDir, scsi.NewNAA(seed)),
		PRShared:   prShared,
		// thin_threshold_percent and physical_block_size (provisioning.go)
		ThinThresholdPercent: lc.ThinThresholdPercent,
		PhysicalBlockSize:    lc.PhysicalBlockSize,
	})
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("target %s lun %d: %w", target, lc.ID, err)
	}
	if rn, ok := store.(backstore.ResizeNotifier); ok {
		// The medium grew from outside (rbd resize, another gateway):
		// initiators get CAPACITY DATA HAS CHANGED.
		log := s.log.With("target", target, "lun", lc.ID)
		rn.OnResize(func() {
			changed, err := lu.Resize(0)
			switch {
			case err != nil:
				log.Warn("backstore size changed but the LU cannot follow", "error", err)
			case changed:
				log.Info("LUN grew", "blocks", lu.Blocks())
			}
		})
	}
	return lu, store, nil
}

// targetOf compiles a target's access control and LUN masking onto dev.
func (s *Server) targetOf(tc config.Target, dev *scsi.Device) (*iscsi.Target, error) {
	acc, err := newAccess(tc)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", tc.Name, err)
	}
	if err := dev.SetMasking(masking(tc)); err != nil {
		return nil, fmt.Errorf("target %s: %w", tc.Name, err)
	}
	portalGroup, remotePortals, err := portalGroups(tc, dev)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", tc.Name, err)
	}
	return &iscsi.Target{
		Name:   tc.Name,
		Alias:  tc.Alias,
		Device: dev,
		Admit:  acc.admit,
		Auth:   acc.auth,
		// [[target.portal_group]]: TPGT per portal and ALUA groups.
		PortalGroup: portalGroup,
		// remote = true groups: the other gateways' portals.
		RemotePortals: remotePortals,
	}, nil
}

// LookupTarget implements iscsi.Registry.
func (s *Server) LookupTarget(name string) *iscsi.Target {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.targets[name]
}

// Targets implements iscsi.Registry, sorted by name.
func (s *Server) Targets() []*iscsi.Target {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*iscsi.Target, 0, len(s.targets))
	for _, t := range s.targets {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Portals implements iscsi.Registry.
func (s *Server) Portals() []iscsi.Portal {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]iscsi.Portal(nil), s.portals...)
}

// Listen binds every portal. Portals given as host:0 are rewritten to the
// port the kernel chose, so SendTargets reports where we really are.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.portals {
		ln, err := net.Listen("tcp", p.Addr)
		if err != nil {
			for _, l := range s.listeners {
				l.Close()
			}
			s.listeners = nil
			return fmt.Errorf("listen on %s: %w", p.Addr, err)
		}
		host, _, _ := net.SplitHostPort(p.Addr)
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		s.portals[i].Addr = net.JoinHostPort(host, port)
		s.listeners = append(s.listeners, ln)
	}
	return nil
}

// Addrs returns the bound portal addresses.
func (s *Server) Addrs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, len(s.portals))
	for i, p := range s.portals {
		out[i] = p.Addr
	}
	return out
}

// Serve accepts connections on every listener until Shutdown, ctx's end,
// or reloads that remove every portal; it then returns nil. Its error is
// for a server that was never listening.
func (s *Server) Serve(ctx context.Context) error {
	// Shutdown sets stopped under mu before it waits on wg, so the accept
	// loops are counted under mu too: either they are counted before Wait
	// starts, or Serve sees stopped and starts none (a signal that arrives
	// as serving begins).
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.serveCtx = ctx
	lns := append([]net.Listener(nil), s.listeners...)
	portals := append([]iscsi.Portal(nil), s.portals...)
	if len(lns) == 0 {
		s.mu.Unlock()
		return errors.New("serve: no listeners (call Listen first)")
	}
	s.wg.Add(len(lns))
	s.mu.Unlock()
	if s.isns != nil {
		s.isns.start(ctx, s.isnsRegistration()) // beside serving; never blocks it
	}
	var loops sync.WaitGroup
	for i, ln := range lns {
		portal := portals[i]
		loops.Go(func() {
			defer s.wg.Done()
			s.acceptLoop(ctx, ln, portal)
		})
	}
	loops.Wait()
	return nil
}

// Accept errors other than the listener's close (EMFILE, ENFILE, ENOBUFS,
// ECONNABORTED...) are retried after a pause that doubles from
// acceptRetryMin to acceptRetryMax: out of file descriptors, the portal
// serves again as soon as connections end, rather than stay bound and
// unserved, with the kernel queueing connections nobody takes.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// acceptLoop serves ln until it is closed (Shutdown, or a reload that
// removes the portal).
func (s *Server) acceptLoop(ctx context.Context, ln net.Listener, portal iscsi.Portal) {
	var pause time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.RLock()
			stopped := s.stopped
			s.mu.RUnlock()
			if stopped || errors.Is(err, net.ErrClosed) {
				return
			}
			pause = min(max(2*pause, acceptRetryMin), acceptRetryMax)
			s.log.Warn("accept failed; retrying", "portal", ln.Addr().String(), "err", err, "retry_in", pause)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return // serving ends; Shutdown closes ln
			}
			continue
		}
		pause = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
			tc.SetKeepAlive(true)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.svc.ServePortal(ctx, nc, portal)
		}()
	}
}

// Shutdown stops accepting, lets in-flight commands finish (bounded by ctx),
// then flushes and closes every backstore.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	// Leave iSNS (bounded) while the sessions drain.
	isnsDone := make(chan struct{})
	go func() { defer close(isnsDone); s.isns.stop(ctx) }()
	err := s.svc.Shutdown(ctx)
	if err == nil {
		s.wg.Wait()
	}
	// Otherwise connections are stuck in a backstore call: flush what can
	// be flushed and return, rather than wait for them without end.
	<-isnsDone
	return errors.Join(err, s.closeStores())
}

// closeStores flushes and closes every backstore, and waits for those a
// reload is closing (closeStoresOf), so that none is still being flushed
// when the process exits.
func (s *Server) closeStores() error {
	s.mu.Lock()
	stores := s.stores
	s.stores = nil
	s.closed = true
	s.mu.Unlock()
	var errs []error
	for _, ns := range stores {
		if err := ns.store.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("flush %s lun %d: %w", ns.target, ns.lun, err))
		}
		if err := ns.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s lun %d: %w", ns.target, ns.lun, err))
		}
	}
	s.closing.Wait()
	return errors.Join(errs...)
}

// keepStores records backstores a reload opened, so that Shutdown flushes
// and closes them. A reload that ends after Shutdown closed the stores
// closes its own.
func (s *Server) keepStores(add ...namedStore) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.stores = append(s.stores, add...)
		return nil
	}
	var errs []error
	for _, ns := range add {
		errs = append(errs, ns.store.Sync(), ns.store.Close())
	}
	return errors.Join(errs...)
}

// Sessions lists live sessions (for status and tests).
func (s *Server) Sessions() []iscsi.SessionInfo { return s.svc.Sessions() }

// URL is how an initiator reaches a LUN with libiscsi and QEMU.
func URL(addr, target string, lun uint64) string {
	return "iscsi://" + addr + "/" + target + "/" + strconv.FormatUint(lun, 10)
}

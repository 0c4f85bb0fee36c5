package target

import (
	"encoding/hex"
	"sort"
	"strconv"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/iscsi"
	"github.com/blockport/blockport/target/scsi"
)

// Status is a snapshot of a running server for `blockport status`, the
// admin API and metrics.
type Status struct {
	Started time.Time      `json:"started"`
	Portals []string       `json:"portals"`
	Targets []TargetStatus `json:"targets"`
	Fabric  iscsi.Stats    `json:"fabric"`
	ISNS    *ISNSStatus    `json:"isns,omitempty"` // [isns] registration (isns.go); nil without it
}

// TargetStatus is one target.
type TargetStatus struct {
	Name              string          `json:"name"`
	Alias             string          `json:"alias,omitempty"`
	AllowAnyInitiator bool            `json:"allow_any_initiator"`
	ACLs              []string        `json:"acls,omitempty"` // initiator names
	LUNs              []LUNStatus     `json:"luns"`
	Sessions          []SessionStatus `json:"sessions"`
	Connections       int             `json:"connections"`
}

// LUNStatus is one logical unit.
type LUNStatus struct {
	LUN        uint64 `json:"lun"`
	Backstore  string `json:"backstore"`
	Path       string `json:"path,omitempty"`
	Size       int64  `json:"size_bytes"`
	BlockSize  uint32 `json:"block_size"`
	ReadOnly   bool   `json:"read_only"`
	WriteCache bool   `json:"write_cache"`
	// Allocated is the storage the backstore uses, in bytes; -1 when the
	// backstore cannot tell (memory) or the query failed.
	Allocated int64        `json:"allocated_bytes"`
	Stats     scsi.LUStats `json:"stats"`
}

// SessionStatus is one normal session.
type SessionStatus struct {
	Initiator string            `json:"initiator"`
	ISID      string            `json:"isid"`
	TSIH      uint16            `json:"tsih"`
	Remote    string            `json:"remote"`
	Since     time.Time         `json:"since"`
	Age       string            `json:"age"`
	Params    map[string]string `json:"params"`
}

// Status returns a snapshot of targets, LUNs and sessions.
func (s *Server) Status() Status {
	now := time.Now()
	sessions := s.svc.Sessions()
	s.mu.RLock()
	st := Status{Started: s.started}
	for _, p := range s.portals {
		st.Portals = append(st.Portals, p.Addr)
	}
	stores := make(map[lunKey]backstore.Backstore, len(s.stores))
	for _, ns := range s.stores {
		stores[lunKey{ns.target, ns.lun}] = ns.store
	}
	cfg := s.cfg
	targets := make(map[string]*iscsi.Target, len(s.targets))
	for n, t := range s.targets {
		targets[n] = t
	}
	s.mu.RUnlock()

	for _, tc := range cfg.Targets {
		t := targets[tc.Name]
		if t == nil {
			continue
		}
		ts := TargetStatus{Name: tc.Name, Alias: tc.Alias, AllowAnyInitiator: tc.AllowAnyInitiator}
		for _, acl := range tc.ACLs {
			ts.ACLs = append(ts.ACLs, acl.Initiator)
		}
		for _, lc := range tc.LUNs {
			lu := t.Device.LU(lc.ID)
			store := stores[lunKey{tc.Name, lc.ID}]
			if lu == nil || store == nil {
				continue
			}
			ls := LUNStatus{
				LUN: lc.ID, Backstore: lc.Backstore, Path: lc.Path, Size: store.Size(),
				BlockSize: lu.BlockSize(), ReadOnly: lc.ReadOnly, WriteCache: lc.WriteCache,
				Allocated: allocatedBytes(store), Stats: lu.Stats(),
			}
			ts.LUNs = append(ts.LUNs, ls)
		}
		for _, si := range sessions {
			if si.Target != tc.Name {
				continue
			}
			ts.Sessions = append(ts.Sessions, SessionStatus{
				Initiator: si.Initiator, ISID: hex.EncodeToString(si.ISID[:]), TSIH: si.TSIH,
				Remote: si.Remote, Since: si.Since, Age: now.Sub(si.Since).Round(time.Second).String(),
				Params: paramsMap(si.Params),
			})
		}
		sort.Slice(ts.Sessions, func(i, j int) bool { return ts.Sessions[i].Since.Before(ts.Sessions[j].Since) })
		ts.Connections = len(ts.Sessions) // one connection per session (MaxConnections=1)
		st.Targets = append(st.Targets, ts)
	}
	st.Fabric = s.svc.Stats()
	st.ISNS = s.isns.stats()
	return st
}

type lunKey struct {
	target string
	lun    uint64
}

// allocatedBytes asks a backstore for its allocated storage; -1 if it
// cannot tell.
func allocatedBytes(b backstore.Backstore) int64 {
	a, ok := b.(backstore.Allocator)
	if !ok {
		return -1
	}
	n, err := a.AllocatedBytes()
	if err != nil {
		return -1
	}
	return n
}

// paramsMap renders negotiated parameters with their RFC 7143 key names.
func paramsMap(p iscsi.Params) map[string]string {
	yn := func(b bool) string {
		if b {
			return "Yes"
		}
		return "No"
	}
	digest := func(b bool) string {
		if b {
			return "CRC32C"
		}
		return "None"
	}
	u := func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
	return map[string]string{
		"HeaderDigest":             digest(p.HeaderDigest),
		"DataDigest":               digest(p.DataDigest),
		"MaxConnections":           u(p.MaxConnections),
		"InitialR2T":               yn(p.InitialR2T),
		"ImmediateData":            yn(p.ImmediateData),
		"MaxRecvDataSegmentLength": u(p.MaxRecvDataSegmentLength),
		"MaxXmitDataSegmentLength": u(p.MaxXmitDataSegmentLength),
		"MaxBurstLength":           u(p.MaxBurstLength),
		"FirstBurstLength":         u(p.FirstBurstLength),
		"MaxOutstandingR2T":        u(p.MaxOutstandingR2T),
		"ErrorRecoveryLevel":       u(p.ErrorRecoveryLevel),
	}
}

// Ready reports whether the server listens on its portals and is not
// stopping (/readyz).
func (s *Server) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return !s.stopped && len(s.listeners) > 0 && s.serveCtx != nil
}

// SetObserver lets o hear the fabric's events (logins, task management,
// rejects). Call it before Listen.
func (s *Server) SetObserver(o iscsi.Observer) { s.svc.SetObserver(o) }

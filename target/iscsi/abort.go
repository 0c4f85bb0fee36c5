package iscsi

import (
	"context"

	"github.com/blockport/blockport/target/scsi"
)

// AttachTarget lets the SCSI core of t abort tasks queued in this fabric:
// PERSISTENT RESERVE OUT with PREEMPT AND ABORT must abort the preempted
// nexuses' tasks before it completes (SPC-5 5.14.12.5). The core calls
// it for every target it builds.
func (s *Service) AttachTarget(t *Target) {
	name := t.Name
	t.Device.SetTaskAborter(func(ctx context.Context, lu *scsi.LU, match func(*scsi.Nexus) bool, except *scsi.Command) error {
		waits := s.abortTarget(name, func(x *task) bool {
			// Each initiator may number the LU differently: match the LU.
			return &x.cmd != except && x.cmd.LU() == lu && x.cmd.Nexus != nil && match(x.cmd.Nexus)
		})
		if waitAll(waits, tmfWait) {
			return nil
		}
		// A preempted task is stuck in its backstore (a hung disk or NFS
		// server). Answering now would tell the cluster the node is
		// fenced while its write may still land: keep waiting, for as
		// long as the PREEMPT AND ABORT itself is not aborted.
		s.log.Warn("PREEMPT AND ABORT waits for preempted tasks stuck in the backstore", "target", name, "waited", tmfWait)
		for _, w := range waits {
			select {
			case <-w:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
}

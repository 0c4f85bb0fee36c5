package iscsi

import "github.com/blockport/blockport/target/scsi"

// AttachTarget lets the SCSI core of t abort tasks queued in this fabric:
// PERSISTENT RESERVE OUT with PREEMPT AND ABORT must abort the preempted
// nexuses' tasks before it completes (SPC-5 5.14.12.5). The core calls
// it for every target it builds.
func (s *Service) AttachTarget(t *Target) {
	name := t.Name
	t.Device.SetTaskAborter(func(lu *scsi.LU, match func(*scsi.Nexus) bool, except *scsi.Command) {
		waits := s.abortTarget(name, func(x *task) bool {
			// Each initiator may number the LU differently: match the LU.
			return &x.cmd != except && x.cmd.LU() == lu && x.cmd.Nexus != nil && match(x.cmd.Nexus)
		})
		waitAll(waits, tmfWait)
	})
}

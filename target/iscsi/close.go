package iscsi

import (
	"net"
	"time"
)

// CloseSessions closes the sessions of a target whose initiator (and the
// address it connected from) match reports true, as live reload does when
// an ACL no longer admits them. It returns how many it closed; they end
// asynchronously (see WaitTargetSessions).
func (s *Service) CloseSessions(target string, match func(initiator string, remote net.Addr) bool) int {
	n := 0
	for _, sess := range s.sessionsOf(target) {
		if match(sess.key.initiator, sess.conn.nc.RemoteAddr()) {
			sess.close()
			n++
		}
	}
	return n
}

// WaitTargetSessions waits until a target has no session left, at most d,
// and reports whether it has none.
func (s *Service) WaitTargetSessions(target string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if len(s.sessionsOf(target)) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

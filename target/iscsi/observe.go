package iscsi

import (
	"errors"
	"io"
)

// Observer hears about the fabric's rare events (logins, task management,
// rejected PDUs) as they happen; the metrics package implements it. The I/O
// path does not go through it: per-command counters are atomics in the SCSI
// core (scsi.LU.Stats), read when someone asks. Calls come from many
// goroutines at once and must not block.
type Observer interface {
	// Login reports the end of a login attempt.
	Login(result LoginResult)
	// TaskManagement reports a task management request and its response
	// code (RFC 7143 11.6.1).
	TaskManagement(function, response uint8)
	// PDURejected reports a PDU answered with a Reject or by closing the
	// connection; action says which ("reject" or "close").
	PDURejected(action string)
}

// LoginResult classifies how a login ended, for counting.
type LoginResult uint8

// Login results.
const (
	LoginSuccess       LoginResult = iota
	LoginAuthFailure               // CHAP failed (status 0201)
	LoginAuthzFailure              // not allowed in, or no such target (0202, 0203)
	LoginProtocolError             // any other initiator error, malformed PDUs, timeouts
	LoginTargetError               // the target could not take it (class 03)
	LoginAborted                   // the connection ended before a status was sent
	NumLoginResults
)

func (r LoginResult) String() string {
	switch r {
	case LoginSuccess:
		return "success"
	case LoginAuthFailure:
		return "authentication_failure"
	case LoginAuthzFailure:
		return "authorization_failure"
	case LoginProtocolError:
		return "protocol_error"
	case LoginTargetError:
		return "target_error"
	case LoginAborted:
		return "aborted"
	}
	return "unknown"
}

// loginResultOf classifies the error login returned.
func loginResultOf(err error) LoginResult {
	if err == nil {
		return LoginSuccess
	}
	var lerr *LoginError
	if errors.As(err, &lerr) {
		switch {
		case lerr.Class == loginClassInitiatorErr && lerr.Detail == loginDetailAuthFailure:
			return LoginAuthFailure
		case lerr.Class == loginClassInitiatorErr &&
			(lerr.Detail == loginDetailAuthzFailure || lerr.Detail == loginDetailNotFound || lerr.Detail == loginDetailTargetRemoved):
			return LoginAuthzFailure
		case lerr.Class == loginClassTargetErr:
			return LoginTargetError
		}
		return LoginProtocolError
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return LoginAborted
	}
	return LoginProtocolError
}

// SetObserver installs o. Call it before the service accepts connections.
func (s *Service) SetObserver(o Observer) { s.obs = o }

func (s *Service) observeLogin(r LoginResult) {
	if s.obs != nil {
		s.obs.Login(r)
	}
}

func (s *Service) observeTMF(fn, resp uint8) {
	if s.obs != nil {
		s.obs.TaskManagement(fn, resp)
	}
}

func (s *Service) observeReject(action string) {
	if s.obs != nil {
		s.obs.PDURejected(action)
	}
}

package iscsi

import "fmt"

// Errors are sorted by blast radius (as http2's ConnectionError vs
// StreamError): a ConnError ends the connection, a RejectError answers one
// PDU with a Reject and the connection goes on, a LoginError ends a login
// with the given status.

// ConnError closes the connection. Reason is for the log.
type ConnError struct {
	Reason string
}

func (e *ConnError) Error() string { return "iscsi: connection closed: " + e.Reason }

func connErrorf(format string, args ...any) *ConnError {
	return &ConnError{Reason: fmt.Sprintf(format, args...)}
}

// RejectError makes the connection send a Reject PDU carrying the offending
// header (RFC 7143 11.17) and carry on.
type RejectError struct {
	Reason uint8
	Header BHS
	Why    string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("iscsi: reject (reason 0x%02x): %s", e.Reason, e.Why)
}

// LoginError ends a login with a non-zero status (RFC 7143 11.13.5).
type LoginError struct {
	Class, Detail uint8
	Why           string
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("iscsi: login failed (status 0x%02x%02x): %s", e.Class, e.Detail, e.Why)
}

func loginErrorf(class, detail uint8, format string, args ...any) *LoginError {
	return &LoginError{Class: class, Detail: detail, Why: fmt.Sprintf(format, args...)}
}

// Login status classes and details, RFC 7143 11.13.5.
const (
	loginClassSuccess      = 0x00
	loginClassRedirect     = 0x01
	loginClassInitiatorErr = 0x02
	loginClassTargetErr    = 0x03

	loginDetailInitiatorError      = 0x00
	loginDetailAuthFailure         = 0x01
	loginDetailAuthzFailure        = 0x02
	loginDetailNotFound            = 0x03
	loginDetailTargetRemoved       = 0x04
	loginDetailUnsupportedVersion  = 0x05
	loginDetailTooManyConnections  = 0x06
	loginDetailMissingParameter    = 0x07
	loginDetailCantIncludeInSess   = 0x08
	loginDetailSessionTypeNotSupp  = 0x09
	loginDetailSessionDoesNotExist = 0x0a
	loginDetailInvalidDuringLogin  = 0x0b

	loginDetailTargetError        = 0x00
	loginDetailServiceUnavailable = 0x01
	loginDetailOutOfResources     = 0x02
)

package isns

import "fmt"

// Status is the status code at the start of every response (RFC 4171
// 5.4, 5.7.1). A Status other than StatusSuccess is an error, so
// errors.Is(err, isns.StatusNoSuchEntry) finds it in a *StatusError.
type Status uint32

// Status codes (RFC 4171 5.4).
const (
	StatusSuccess                  Status = 0
	StatusUnknownError             Status = 1
	StatusMessageFormatError       Status = 2
	StatusInvalidRegistration      Status = 3
	StatusInvalidQuery             Status = 5
	StatusSourceUnknown            Status = 6
	StatusSourceAbsent             Status = 7
	StatusSourceUnauthorized       Status = 8
	StatusNoSuchEntry              Status = 9
	StatusVersionNotSupported      Status = 10
	StatusInternalError            Status = 11
	StatusBusy                     Status = 12
	StatusOptionNotUnderstood      Status = 13
	StatusInvalidUpdate            Status = 14
	StatusMessageNotSupported      Status = 15
	StatusSCNEventRejected         Status = 16
	StatusSCNRegistrationRejected  Status = 17
	StatusAttributeNotImplemented  Status = 18
	StatusFCDomainIDNotAvailable   Status = 19
	StatusFCDomainIDNotAllocated   Status = 20
	StatusESINotAvailable          Status = 21
	StatusInvalidDeregistration    Status = 22
	StatusRegistrationNotSupported Status = 23
)

var statusNames = [...]string{
	StatusSuccess:                  "Successful",
	StatusUnknownError:             "Unknown Error",
	StatusMessageFormatError:       "Message Format Error",
	StatusInvalidRegistration:      "Invalid Registration",
	4:                              "", // reserved
	StatusInvalidQuery:             "Invalid Query",
	StatusSourceUnknown:            "Source Unknown",
	StatusSourceAbsent:             "Source Absent",
	StatusSourceUnauthorized:       "Source Unauthorized",
	StatusNoSuchEntry:              "No Such Entry",
	StatusVersionNotSupported:      "Version Not Supported",
	StatusInternalError:            "Internal Error",
	StatusBusy:                     "Busy",
	StatusOptionNotUnderstood:      "Option Not Understood",
	StatusInvalidUpdate:            "Invalid Update",
	StatusMessageNotSupported:      "Message Not Supported",
	StatusSCNEventRejected:         "SCN Event Rejected",
	StatusSCNRegistrationRejected:  "SCN Registration Rejected",
	StatusAttributeNotImplemented:  "Attribute Not Implemented",
	StatusFCDomainIDNotAvailable:   "FC_DOMAIN_ID Not Available",
	StatusFCDomainIDNotAllocated:   "FC_DOMAIN_ID Not Allocated",
	StatusESINotAvailable:          "ESI Not Available",
	StatusInvalidDeregistration:    "Invalid Deregistration",
	StatusRegistrationNotSupported: "Registration Feature Not Supported",
}

// String names the status: "No Such Entry (9)".
func (s Status) String() string {
	if int(s) < len(statusNames) && statusNames[s] != "" {
		return fmt.Sprintf("%s (%d)", statusNames[s], uint32(s))
	}
	return fmt.Sprintf("status %d", uint32(s))
}

func (s Status) Error() string { return "iSNS status " + s.String() }

// StatusError is a response whose status is not StatusSuccess.
type StatusError struct {
	Function Function // the request
	Status   Status
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("iSNS server answered %v with %s", e.Function, e.Status.String())
}

// Unwrap makes errors.Is(err, StatusNoSuchEntry) work.
func (e *StatusError) Unwrap() error { return e.Status }

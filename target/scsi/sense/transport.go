package sense

// Conditions a transport (the iSCSI fabric) reports for a command.

// ascDataPhase is SPC-5's DATA PHASE ERROR family (ASC 4Bh).
const ascDataPhase = 0x4B

// DataPhaseError is ABORTED COMMAND / DATA PHASE ERROR (4B/00): the data-out
// of a command arrived out of sequence and was not written.
func DataPhaseError() *Error { return New(KeyAbortedCommand, ascDataPhase, 0x00) }

package iscsi

import (
	"fmt"
	"strconv"
	"strings"
)

// Params is the operational result of a negotiation (RFC 7143 13).
type Params struct {
	HeaderDigest, DataDigest  bool
	MaxConnections            uint32
	InitialR2T, ImmediateData bool
	// MaxRecvDataSegmentLength is what the target receives: its own
	// declaration, or the 8192 default if it never declared one.
	MaxRecvDataSegmentLength uint32
	// MaxXmitDataSegmentLength is what the target may send: the initiator's
	// MaxRecvDataSegmentLength declaration (default 8192).
	MaxXmitDataSegmentLength             uint32
	MaxBurstLength, FirstBurstLength     uint32
	DefaultTime2Wait, DefaultTime2Retain uint32
	MaxOutstandingR2T                    uint32
	DataPDUInOrder, DataSequenceInOrder  bool
	ErrorRecoveryLevel                   uint32
	TaskReporting                        string // RFC 7143 13.23: "RFC3720", "ResponseFence" or "FastAbort"
	ProtocolLevel                        uint32 // RFC 7143 13.24 iSCSIProtocolLevel
}

// DefaultParams returns the RFC 7143 section 13 defaults, which are in force
// for every key not negotiated.
func DefaultParams() Params {
	return Params{
		MaxConnections:           1,
		InitialR2T:               true,
		ImmediateData:            true,
		MaxRecvDataSegmentLength: 8192,
		MaxXmitDataSegmentLength: 8192,
		MaxBurstLength:           262144,
		FirstBurstLength:         65536,
		DefaultTime2Wait:         2,
		DefaultTime2Retain:       20,
		MaxOutstandingR2T:        1,
		DataPDUInOrder:           true,
		DataSequenceInOrder:      true,
		ErrorRecoveryLevel:       0,
		TaskReporting:            "RFC3720",
		ProtocolLevel:            1,
	}
}

// DigestPolicy says which digest values the target accepts.
type DigestPolicy uint8

const (
	DigestNone     DigestPolicy = iota // only "None"
	DigestAllowed                      // "None" or "CRC32C", as the initiator prefers
	DigestRequired                     // only "CRC32C"
)

func (p DigestPolicy) accepts(v string) bool {
	switch v {
	case "None":
		return p != DigestRequired
	case "CRC32C":
		return p != DigestNone
	}
	return false
}

// TargetLimits is what this target supports or prefers. It must stay
// comparable (the service detects an unset value with ==).
type TargetLimits struct {
	// MaxRecvDataSegmentLength is the target's declaration (512..2^24-1).
	MaxRecvDataSegmentLength uint32
	// Upper bounds for minimum-function keys; Time2Wait is a lower bound.
	MaxBurstLength, FirstBurstLength uint32
	MaxOutstandingR2T                uint32
	MaxConnections                   uint32
	MaxErrorRecoveryLevel            uint32
	DefaultTime2Wait                 uint32
	DefaultTime2Retain               uint32
	MaxProtocolLevel                 uint32
	HeaderDigest, DataDigest         DigestPolicy
	// ImmediateData false forces ImmediateData=No (boolean AND).
	ImmediateData bool
	// InitialR2T true forces InitialR2T=Yes (boolean OR).
	InitialR2T bool
	// DataPDUInOrder / DataSequenceInOrder true force in-order data (OR).
	DataPDUInOrder, DataSequenceInOrder bool
	// FastAbort enables TaskReporting=ResponseFence and FastAbort (RFC 7143
	// 4.2.3.4, 13.23); without it only RFC3720 semantics are offered.
	FastAbort bool
}

// DefaultTargetLimits is a target that accepts digests, immediate data and
// up to 256 KiB segments, runs one connection per session, error recovery
// level 0, and needs data in order.
func DefaultTargetLimits() TargetLimits {
	return TargetLimits{
		MaxRecvDataSegmentLength: 262144,
		MaxBurstLength:           262144,
		FirstBurstLength:         65536,
		MaxOutstandingR2T:        1,
		MaxConnections:           1,
		MaxErrorRecoveryLevel:    0,
		DefaultTime2Wait:         2,
		DefaultTime2Retain:       20,
		MaxProtocolLevel:         1,
		HeaderDigest:             DigestAllowed,
		DataDigest:               DigestAllowed,
		ImmediateData:            true,
		InitialR2T:               false,
		DataPDUInOrder:           true,
		DataSequenceInOrder:      true,
	}
}

// normalized replaces zero values that are outside a key's range by the
// defaults, so that a partly filled TargetLimits still yields valid answers.
func (l TargetLimits) normalized() TargetLimits {
	d := DefaultTargetLimits()
	fix := func(v *uint32, lo, hi, def uint32) {
		if *v < lo || *v > hi {
			*v = def
		}
	}
	fix(&l.MaxRecvDataSegmentLength, 512, MaxDataSegmentLength, d.MaxRecvDataSegmentLength)
	fix(&l.MaxBurstLength, 512, MaxDataSegmentLength, d.MaxBurstLength)
	fix(&l.FirstBurstLength, 512, MaxDataSegmentLength, d.FirstBurstLength)
	fix(&l.MaxOutstandingR2T, 1, 65535, d.MaxOutstandingR2T)
	fix(&l.MaxConnections, 1, 65535, d.MaxConnections)
	fix(&l.MaxErrorRecoveryLevel, 0, 2, d.MaxErrorRecoveryLevel)
	fix(&l.DefaultTime2Wait, 0, 3600, d.DefaultTime2Wait)
	fix(&l.DefaultTime2Retain, 0, 3600, d.DefaultTime2Retain)
	fix(&l.MaxProtocolLevel, 0, 31, d.MaxProtocolLevel)
	return l
}

// KeyKind is how a key's result is computed (RFC 7143 6.2).
type KeyKind uint8

const (
	BooleanAnd         KeyKind = iota + 1 // result = offer AND target
	BooleanOr                             // result = offer OR target
	NumericMin                            // result = smaller value
	NumericMax                            // result = larger value
	ListSelect                            // first offered value the target supports
	Declarative                           // text declaration, no answer
	NumericDeclarative                    // numeric declaration, no answer
)

// KeyScope is SW (session-wide) or CO (connection-only), RFC 7143 13.
type KeyScope uint8

const (
	ScopeSession KeyScope = iota + 1
	ScopeConnection
)

// KeyUse says when a key may be sent (RFC 7143 13 "Use").
type KeyUse uint8

const (
	UseLeadingOnly KeyUse = iota + 1 // LO: leading login of a session only
	UseInitialOnly                   // IO: any login, never in Full Feature Phase
	UseAll                           // ALL: login and Full Feature Phase text negotiation
	UseFullFeature                   // FFPO: Full Feature Phase only
)

// KeySender says who may originate a key.
type KeySender uint8

const (
	SenderInitiator KeySender = iota + 1
	SenderTarget
	SenderBoth
)

// KeyDef is one row of the RFC 7143 section 13 key table.
type KeyDef struct {
	Name    string
	Section string // RFC 7143 section, for messages and docs
	Kind    KeyKind
	Scope   KeyScope
	Use     KeyUse
	Sender  KeySender
	Min     uint32 // numeric kinds
	Max     uint32
	Default string
	// IrrelevantInDiscovery: the RFC says "Irrelevant when:
	// SessionType=Discovery".
	IrrelevantInDiscovery bool
	// LoginLayer: answered by the login/text layer (names, SessionType,
	// authentication, SendTargets), skipped by Negotiation.Offer.
	LoginLayer bool
	// Obsolete: an RFC 3720 marker key (RFC 7143 13.25).
	Obsolete bool

	num   func(*Params) *uint32
	flag  func(*Params) *bool
	lnum  func(*TargetLimits) uint32
	lflag func(*TargetLimits) bool
	// list keys: whether the target accepts a value, and how to store it
	accept func(*TargetLimits, string) bool
	store  func(*Params, string)
}

const maxSegment = MaxDataSegmentLength // 2^24-1, the upper bound of the length keys

var keyTable = [...]KeyDef{
	{Name: "HeaderDigest", Section: "13.1", Kind: ListSelect, Scope: ScopeConnection, Use: UseInitialOnly, Sender: SenderBoth, Default: "None",
		accept: func(l *TargetLimits, v string) bool { return l.HeaderDigest.accepts(v) },
		store:  func(p *Params, v string) { p.HeaderDigest = v == "CRC32C" }},
	{Name: "DataDigest", Section: "13.1", Kind: ListSelect, Scope: ScopeConnection, Use: UseInitialOnly, Sender: SenderBoth, Default: "None",
		accept: func(l *TargetLimits, v string) bool { return l.DataDigest.accepts(v) },
		store:  func(p *Params, v string) { p.DataDigest = v == "CRC32C" }},
	{Name: "MaxConnections", Section: "13.2", Kind: NumericMin, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Min: 1, Max: 65535, Default: "1", IrrelevantInDiscovery: true,
		num: func(p *Params) *uint32 { return &p.MaxConnections }, lnum: func(l *TargetLimits) uint32 { return l.MaxConnections }},
	{Name: "SendTargets", Section: "13.3", Kind: Declarative, Scope: ScopeSession, Use: UseFullFeature, Sender: SenderInitiator, LoginLayer: true},
	{Name: "TargetName", Section: "13.4", Kind: Declarative, Scope: ScopeSession, Use: UseInitialOnly, Sender: SenderBoth, LoginLayer: true},
	{Name: "InitiatorName", Section: "13.5", Kind: Declarative, Scope: ScopeSession, Use: UseInitialOnly, Sender: SenderInitiator, LoginLayer: true},
	{Name: "TargetAlias", Section: "13.6", Kind: Declarative, Scope: ScopeSession, Use: UseAll, Sender: SenderTarget},
	{Name: "InitiatorAlias", Section: "13.7", Kind: Declarative, Scope: ScopeSession, Use: UseAll, Sender: SenderInitiator, LoginLayer: true},
	{Name: "TargetAddress", Section: "13.8", Kind: Declarative, Scope: ScopeSession, Use: UseAll, Sender: SenderTarget},
	{Name: "TargetPortalGroupTag", Section: "13.9", Kind: NumericDeclarative, Scope: ScopeSession, Use: UseInitialOnly, Sender: SenderTarget, Min: 0, Max: 65535},
	{Name: "InitialR2T", Section: "13.10", Kind: BooleanOr, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Default: "Yes", IrrelevantInDiscovery: true,
		flag: func(p *Params) *bool { return &p.InitialR2T }, lflag: func(l *TargetLimits) bool { return l.InitialR2T }},
	{Name: "ImmediateData", Section: "13.11", Kind: BooleanAnd, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Default: "Yes", IrrelevantInDiscovery: true,
		flag: func(p *Params) *bool { return &p.ImmediateData }, lflag: func(l *TargetLimits) bool { return l.ImmediateData }},
	{Name: "MaxRecvDataSegmentLength", Section: "13.12", Kind: NumericDeclarative, Scope: ScopeConnection, Use: UseAll, Sender: SenderBoth, Min: 512, Max: maxSegment, Default: "8192",
		num: func(p *Params) *uint32 { return &p.MaxXmitDataSegmentLength }},
	{Name: "MaxBurstLength", Section: "13.13", Kind: NumericMin, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Min: 512, Max: maxSegment, Default: "262144", IrrelevantInDiscovery: true,
		num: func(p *Params) *uint32 { return &p.MaxBurstLength }, lnum: func(l *TargetLimits) uint32 { return l.MaxBurstLength }},
	{Name: "FirstBurstLength", Section: "13.14", Kind: NumericMin, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Min: 512, Max: maxSegment, Default: "65536", IrrelevantInDiscovery: true,
		num: func(p *Params) *uint32 { return &p.FirstBurstLength }, lnum: func(l *TargetLimits) uint32 { return l.FirstBurstLength }},
	{Name: "DefaultTime2Wait", Section: "13.15", Kind: NumericMax, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Min: 0, Max: 3600, Default: "2",
		num: func(p *Params) *uint32 { return &p.DefaultTime2Wait }, lnum: func(l *TargetLimits) uint32 { return l.DefaultTime2Wait }},
	{Name: "DefaultTime2Retain", Section: "13.16", Kind: NumericMin, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Min: 0, Max: 3600, Default: "20",
		num: func(p *Params) *uint32 { return &p.DefaultTime2Retain }, lnum: func(l *TargetLimits) uint32 { return l.DefaultTime2Retain }},
	{Name: "MaxOutstandingR2T", Section: "13.17", Kind: NumericMin, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Min: 1, Max: 65535, Default: "1", IrrelevantInDiscovery: true,
		num: func(p *Params) *uint32 { return &p.MaxOutstandingR2T }, lnum: func(l *TargetLimits) uint32 { return l.MaxOutstandingR2T }},
	{Name: "DataPDUInOrder", Section: "13.18", Kind: BooleanOr, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Default: "Yes", IrrelevantInDiscovery: true,
		flag: func(p *Params) *bool { return &p.DataPDUInOrder }, lflag: func(l *TargetLimits) bool { return l.DataPDUInOrder }},
	{Name: "DataSequenceInOrder", Section: "13.19", Kind: BooleanOr, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Default: "Yes", IrrelevantInDiscovery: true,
		flag: func(p *Params) *bool { return &p.DataSequenceInOrder }, lflag: func(l *TargetLimits) bool { return l.DataSequenceInOrder }},
	{Name: "ErrorRecoveryLevel", Section: "13.20", Kind: NumericMin, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Min: 0, Max: 2, Default: "0",
		num: func(p *Params) *uint32 { return &p.ErrorRecoveryLevel }, lnum: func(l *TargetLimits) uint32 { return l.MaxErrorRecoveryLevel }},
	{Name: "SessionType", Section: "13.21", Kind: Declarative, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderInitiator, Default: "Normal", LoginLayer: true},
	{Name: "AuthMethod", Section: "12.1", Kind: ListSelect, Scope: ScopeConnection, Use: UseInitialOnly, Sender: SenderBoth, Default: "None", LoginLayer: true},
	{Name: "TaskReporting", Section: "13.23", Kind: ListSelect, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Default: "RFC3720", IrrelevantInDiscovery: true,
		accept: func(l *TargetLimits, v string) bool {
			return v == "RFC3720" || (l.FastAbort && (v == "ResponseFence" || v == "FastAbort"))
		},
		store: func(p *Params, v string) { p.TaskReporting = v }},
	{Name: "iSCSIProtocolLevel", Section: "13.24", Kind: NumericMin, Scope: ScopeSession, Use: UseLeadingOnly, Sender: SenderBoth, Min: 0, Max: 31, Default: "1",
		num: func(p *Params) *uint32 { return &p.ProtocolLevel }, lnum: func(l *TargetLimits) uint32 { return l.MaxProtocolLevel }},
	{Name: "OFMarker", Section: "13.25", Kind: BooleanAnd, Scope: ScopeConnection, Use: UseInitialOnly, Sender: SenderBoth, Default: "No", Obsolete: true},
	{Name: "IFMarker", Section: "13.25", Kind: BooleanAnd, Scope: ScopeConnection, Use: UseInitialOnly, Sender: SenderBoth, Default: "No", Obsolete: true},
	{Name: "OFMarkInt", Section: "13.25", Kind: NumericMin, Scope: ScopeConnection, Use: UseInitialOnly, Sender: SenderBoth, Min: 1, Max: 65535, Default: "2048", Obsolete: true},
	{Name: "IFMarkInt", Section: "13.25", Kind: NumericMin, Scope: ScopeConnection, Use: UseInitialOnly, Sender: SenderBoth, Min: 1, Max: 65535, Default: "2048", Obsolete: true},
}

var keyIndex = func() map[string]int {
	m := make(map[string]int, len(keyTable))
	for i, k := range keyTable {
		m[k.Name] = i
	}
	return m
}()

// LookupKey returns the table row of a standard key.
func LookupKey(name string) (KeyDef, bool) {
	i, ok := keyIndex[name]
	if !ok {
		return KeyDef{}, false
	}
	return keyTable[i], true
}

// loginLayerKey reports whether name is left to the login/text layer.
func loginLayerKey(name string) bool {
	if i, ok := keyIndex[name]; ok {
		return keyTable[i].LoginLayer
	}
	// RFC 7143 12: authentication keys of every method.
	for _, p := range [...]string{"CHAP_", "SRP_", "KRB_", "SPKM_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Reserved answer values (RFC 7143 6.2).
const (
	ValueReject        = "Reject"
	ValueIrrelevant    = "Irrelevant"
	ValueNotUnderstood = "NotUnderstood"
)

// NegotiationError is a negotiation the target cannot go on with: a key
// negotiated twice, sent by the wrong party, or a requirement of the target
// the initiator refused. The login layer fails the login with an initiator
// error (RFC 7143 6.2: "the target MUST respond with Login reject
// (initiator error)"); the text layer sends a Reject.
type NegotiationError struct {
	Key, Reason string
}

func (e *NegotiationError) Error() string {
	return fmt.Sprintf("iscsi: negotiation of %s: %s", e.Key, e.Reason)
}

// keyState tracks one key through a negotiation sequence.
type keyState uint8

const (
	keyOpen        keyState = iota // not negotiated yet
	keyAnswered                    // the initiator offered, the target answered
	keyOffered                     // the target offered and awaits the answer
	keyOfferedDone                 // the target offered a value whose result is fixed; an answer is optional
	keyClosed                      // the target's offer was answered
)

// Negotiation is the operational negotiation of one login (or one Full
// Feature Phase text negotiation). It is owned by the connection's login
// goroutine and not safe for concurrent use.
type Negotiation struct {
	limits     TargetLimits
	discovery  bool
	nonLeading bool
	ffp        bool // Full Feature Phase text negotiation

	params   Params
	state    [numKeys]keyState
	offered  [numKeys]string // the target's own offers
	declared bool            // the target's MaxRecvDataSegmentLength went out
}

// numKeys sizes the per-key state arrays (keyTable is an array, so its
// length is a constant).
const numKeys = len(keyTable)

// NewNegotiation starts the operational negotiation of a login.
func NewNegotiation(limits TargetLimits, discovery bool) *Negotiation {
	return &Negotiation{limits: limits.normalized(), discovery: discovery, params: DefaultParams()}
}

// NewTextNegotiation starts a Full Feature Phase text negotiation over the
// session's current parameters (see StartTextNegotiation).
func NewTextNegotiation(limits TargetLimits, discovery bool, current Params) *Negotiation {
	n := &Negotiation{limits: limits.normalized(), discovery: discovery, params: current, declared: true}
	n.StartTextNegotiation()
	return n
}

// SetLeading marks the login as the leading connection of its session
// (the default) or not: RFC 7143 13 "LO" keys are only allowed on the
// leading connection and are answered Reject elsewhere.
func (n *Negotiation) SetLeading(leading bool) { n.nonLeading = !leading }

// StartTextNegotiation begins a Text Request negotiation sequence in Full
// Feature Phase, keeping the results so far: only "ALL" keys are
// negotiable (others are answered Reject), and each may be sent once per
// sequence.
func (n *Negotiation) StartTextNegotiation() {
	n.ffp = true
	n.state = [numKeys]keyState{}
}

// Params returns the result so far. FirstBurstLength is clamped to
// MaxBurstLength (RFC 7143 13.14: it MUST NOT exceed it) in case the two
// were settled in an order that left them inconsistent.
func (n *Negotiation) Params() Params {
	p := n.params
	if p.FirstBurstLength > p.MaxBurstLength {
		p.FirstBurstLength = p.MaxBurstLength
	}
	return p
}

// Pending reports whether the target still waits for answers to its own
// offers; the login must not move to Full Feature Phase until it does not.
func (n *Negotiation) Pending() bool {
	for _, s := range n.state {
		if s == keyOffered {
			return true
		}
	}
	return false
}

// parseNumber reads an RFC 7143 6.1 numerical-value: a decimal-constant or
// a hex-constant ("0x" prefix), below 2^64. Base64 constants are not
// accepted for numbers by this target: no initiator uses them for
// operational keys.
func parseNumber(s string) (uint64, bool) {
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		v, err := strconv.ParseUint(s[2:], 16, 64)
		return v, err == nil
	}
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false // ParseUint would accept a leading '+'
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

func parseBool(s string) (v, ok bool) {
	switch s {
	case "Yes":
		return true, true
	case "No":
		return false, true
	}
	return false, false
}

func formatBool(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func formatNum(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// Offer processes the initiator's operational keys of one login (or text)
// request and returns the answers to send, in the order of the offers.
// Keys handled by the login layer are skipped. Answers:
//   - unknown keys, including X- and X# extensions: NotUnderstood (RFC 7143 6.2);
//   - malformed or out-of-range values: Reject (RFC 7143 6.2.1, 6.2.2);
//   - session keys of a discovery session marked so in 13.x: Irrelevant;
//   - declarations (MaxRecvDataSegmentLength) are recorded, not answered.
//
// A key negotiated twice, or a target-only key sent by the initiator, is a
// *NegotiationError.
func (n *Negotiation) Offer(kvs []KeyValue) ([]KeyValue, error) {
	answers := make([]KeyValue, len(kvs))
	// MaxBurstLength first, so that a FirstBurstLength in the same request
	// is answered against the new bound (RFC 7143 13.14).
	for pass := 0; pass < 2; pass++ {
		for i, kv := range kvs {
			if (kv.Key == "MaxBurstLength") != (pass == 0) {
				continue
			}
			a, err := n.offer(kv)
			if err != nil {
				return nil, err
			}
			answers[i] = a
		}
	}
	out := answers[:0]
	for _, a := range answers {
		if a.Key != "" {
			out = append(out, a)
		}
	}
	return out, nil
}

// offer handles one key; an empty KeyValue means "no answer".
func (n *Negotiation) offer(kv KeyValue) (KeyValue, error) {
	idx, known := keyIndex[kv.Key]
	if loginLayerKey(kv.Key) {
		return KeyValue{}, nil
	}
	if !known {
		return KeyValue{Key: kv.Key, Value: ValueNotUnderstood}, nil
	}
	def := &keyTable[idx]
	answer := func(v string) (KeyValue, error) {
		n.state[idx] = keyAnswered
		return KeyValue{Key: kv.Key, Value: v}, nil
	}
	if def.Sender == SenderTarget {
		return KeyValue{}, &NegotiationError{Key: kv.Key, Reason: "only the target may send this key (RFC 7143 " + def.Section + ")"}
	}
	switch n.state[idx] {
	case keyAnswered, keyClosed:
		return KeyValue{}, &NegotiationError{Key: kv.Key, Reason: "negotiated more than once (RFC 7143 6.2)"}
	case keyOffered, keyOfferedDone:
		return KeyValue{}, n.answerToOffer(idx, kv.Value)
	}

	if def.Obsolete {
		// RFC 7143 13.25: OFMarkInt/IFMarkInt MUST be answered Reject;
		// OFMarker/IFMarker SHOULD be answered Reject and MAY be answered
		// No. "No" keeps RFC 3720 initiators, which expect a boolean,
		// happy while meaning the same: no markers.
		if def.Kind == BooleanAnd {
			if _, ok := parseBool(kv.Value); ok {
				return answer("No")
			}
		}
		return answer(ValueReject)
	}
	switch {
	case n.ffp && def.Use != UseAll:
		// RFC 7143 13: only "ALL" keys may be negotiated in Full Feature Phase.
		return answer(ValueReject)
	case n.nonLeading && def.Use == UseLeadingOnly:
		return answer(ValueReject)
	}
	if n.discovery && def.IrrelevantInDiscovery {
		return answer(ValueIrrelevant)
	}

	switch def.Kind {
	case BooleanAnd, BooleanOr:
		offer, ok := parseBool(kv.Value)
		if !ok {
			return answer(ValueReject)
		}
		result := n.combineBool(def, offer)
		*def.flag(&n.params) = result
		return answer(formatBool(result))

	case NumericMin, NumericMax:
		v, ok := parseNumber(kv.Value)
		if !ok || v < uint64(def.Min) || v > uint64(def.Max) {
			return answer(ValueReject)
		}
		result := n.combineNum(def, uint32(v))
		*def.num(&n.params) = result
		return answer(formatNum(result))

	case NumericDeclarative:
		// MaxRecvDataSegmentLength: the initiator's receive limit is the
		// target's send limit (RFC 7143 13.12). Declarations are not answered.
		v, ok := parseNumber(kv.Value)
		if !ok || v < uint64(def.Min) || v > uint64(def.Max) {
			return answer(ValueReject)
		}
		*def.num(&n.params) = uint32(v)
		n.state[idx] = keyAnswered
		return KeyValue{}, nil

	case ListSelect:
		// RFC 7143 6.2.1: the answer is the first offered value the target
		// supports; Reject when there is none.
		for _, v := range strings.Split(kv.Value, ",") {
			if def.accept(&n.limits, v) {
				def.store(&n.params, v)
				return answer(v)
			}
		}
		if kv.Key == "HeaderDigest" || kv.Key == "DataDigest" {
			if n.requiredDigest(kv.Key) {
				return KeyValue{}, &NegotiationError{Key: kv.Key, Reason: fmt.Sprintf("target requires CRC32C, initiator offered %q", kv.Value)}
			}
		}
		return answer(ValueReject)
	}
	return answer(ValueReject)
}

func (n *Negotiation) requiredDigest(key string) bool {
	if key == "HeaderDigest" {
		return n.limits.HeaderDigest == DigestRequired
	}
	return n.limits.DataDigest == DigestRequired
}

func (n *Negotiation) combineBool(def *KeyDef, offer bool) bool {
	if def.Kind == BooleanAnd {
		return offer && def.lflag(&n.limits)
	}
	return offer || def.lflag(&n.limits)
}

func (n *Negotiation) combineNum(def *KeyDef, offer uint32) uint32 {
	limit := def.lnum(&n.limits)
	if def.Name == "FirstBurstLength" {
		limit = min(limit, n.params.MaxBurstLength, n.limits.MaxBurstLength)
	}
	if def.Kind == NumericMax {
		return max(offer, limit)
	}
	return min(offer, limit)
}

// answerToOffer applies the initiator's answer to an offer the target made
// in Declarations. The answer is combined with the offer by the key's
// result function, which also handles offers that crossed in flight.
func (n *Negotiation) answerToOffer(idx int, value string) error {
	def := &keyTable[idx]
	fixed := n.state[idx] == keyOfferedDone
	n.state[idx] = keyClosed
	switch value {
	case ValueIrrelevant:
		return nil // the default stays
	case ValueReject, ValueNotUnderstood:
		if fixed {
			return nil // the result never depended on the answer
		}
		return &NegotiationError{Key: def.Name, Reason: fmt.Sprintf("initiator answered %s to the target's offer %s", value, n.offered[idx])}
	}
	bad := func() error {
		return &NegotiationError{Key: def.Name, Reason: fmt.Sprintf("invalid answer %q to the target's offer %s", value, n.offered[idx])}
	}
	switch def.Kind {
	case BooleanAnd, BooleanOr:
		v, ok := parseBool(value)
		if !ok {
			return bad()
		}
		*def.flag(&n.params) = n.combineBool(def, v)
	case NumericMin, NumericMax:
		v, ok := parseNumber(value)
		if !ok || v < uint64(def.Min) || v > uint64(def.Max) {
			return bad()
		}
		*def.num(&n.params) = n.combineNum(def, uint32(v))
	case ListSelect:
		if !def.accept(&n.limits, value) || !containsValue(n.offered[idx], value) {
			return bad()
		}
		def.store(&n.params, value)
	default:
		return bad()
	}
	return nil
}

func containsValue(list, v string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == v {
			return true
		}
	}
	return false
}

// Declarations returns, once, the keys the target sends on its own
// initiative during operational negotiation: its MaxRecvDataSegmentLength
// declaration (RFC 7143 13.12; without it the initiator would assume 8192)
// and offers for keys whose default the target cannot live with and that
// the initiator has not offered (a smaller MaxBurstLength or
// FirstBurstLength, ImmediateData=No, a longer DefaultTime2Wait, a shorter
// DefaultTime2Retain, required digests). Call it when building each
// operational-stage Login Response; while Pending reports true the target
// must not set the T bit. TargetAlias and TargetPortalGroupTag belong to
// the login layer.
func (n *Negotiation) Declarations() []KeyValue {
	var out []KeyValue
	if !n.declared && !n.ffp {
		n.declared = true
		n.params.MaxRecvDataSegmentLength = n.limits.MaxRecvDataSegmentLength
		out = append(out, KeyValue{Key: "MaxRecvDataSegmentLength", Value: formatNum(n.limits.MaxRecvDataSegmentLength)})
	}
	if n.ffp {
		return out
	}
	offer := func(name, value string, fixed bool) {
		idx := keyIndex[name]
		def := &keyTable[idx]
		if n.state[idx] != keyOpen || (n.discovery && def.IrrelevantInDiscovery) ||
			(n.nonLeading && def.Use == UseLeadingOnly) {
			return
		}
		n.offered[idx] = value
		if fixed {
			n.state[idx] = keyOfferedDone
			// The offer alone decides a fixed boolean result.
			v, _ := parseBool(value)
			*def.flag(&n.params) = v
		} else {
			n.state[idx] = keyOffered
		}
		out = append(out, KeyValue{Key: name, Value: value})
	}
	d := DefaultParams()
	l := &n.limits
	if l.HeaderDigest == DigestRequired {
		offer("HeaderDigest", "CRC32C", false)
	}
	if l.DataDigest == DigestRequired {
		offer("DataDigest", "CRC32C", false)
	}
	if l.MaxBurstLength < d.MaxBurstLength {
		offer("MaxBurstLength", formatNum(l.MaxBurstLength), false)
	}
	if first := min(l.FirstBurstLength, l.MaxBurstLength); first < d.FirstBurstLength {
		offer("FirstBurstLength", formatNum(first), false)
	}
	if !l.ImmediateData {
		// RFC 7143 6.2.2: AND with "No" fixes the result; the answer is optional.
		offer("ImmediateData", "No", true)
	}
	if l.DefaultTime2Wait > d.DefaultTime2Wait {
		offer("DefaultTime2Wait", formatNum(l.DefaultTime2Wait), false)
	}
	if l.DefaultTime2Retain < d.DefaultTime2Retain {
		offer("DefaultTime2Retain", formatNum(l.DefaultTime2Retain), false)
	}
	return out
}

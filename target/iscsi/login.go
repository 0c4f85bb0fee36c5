package iscsi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/blockport/blockport/target/scsi"
)

// loginStage is a login stage (RFC 7143 6.3, CSG/NSG values).
type loginStage uint8

const (
	stageSecurity    loginStage = 0
	stageOperational loginStage = 1
	stageFullFeature loginStage = 3
)

func (s loginStage) String() string {
	switch s {
	case stageSecurity:
		return "security"
	case stageOperational:
		return "operational"
	case stageFullFeature:
		return "full-feature"
	}
	return "stage-" + strconv.Itoa(int(s))
}

// transitionAllowed is the login stage machine of RFC 7143 6.3: the stages
// only move forward, security may skip to full feature, and nothing leaves
// the full feature phase through login.
func transitionAllowed(from, to loginStage) bool {
	switch from {
	case stageSecurity:
		return to == stageOperational || to == stageFullFeature
	case stageOperational:
		return to == stageFullFeature
	}
	return false
}

// sessionType is the SessionType key (RFC 7143 13.21).
type sessionType uint8

const (
	sessionNormal sessionType = iota
	sessionDiscovery
)

// loginState is everything a login phase accumulates. Owned by the
// connection's goroutine during login.
type loginState struct {
	started     bool
	stage       loginStage
	isid        [6]byte
	tsih        uint16
	cid         uint16
	cmdSN       uint32
	statSN      uint32
	initiator   string
	alias       string
	targetName  string
	sessType    sessionType
	sessTypeSet bool
	target      *Target
	authDone    bool
	declared    bool // the target's own declarations were sent
	neg         *Negotiation
	pending     []byte // text of a request split with the C bit
	seenKeys    map[string]bool
}

// loginResult is what a finished login hands to the full feature phase.
type loginResult struct {
	state  *loginState
	params Params
}

// maxLoginText bounds the text a login may accumulate across C-bit PDUs,
// so a hostile initiator cannot make the target buffer without end.
const maxLoginText = 64 * 1024

// login runs the login phase on the connection (RFC 7143 6.3). It returns
// when the connection reaches the full feature phase or the login failed
// (the failure response has then been sent).
func (c *conn) login() (*loginResult, error) {
	st := &loginState{stage: stageSecurity, seenKeys: make(map[string]bool)}
	deadline := time.Now().Add(c.svc.opts.LoginTimeout)
	c.nc.SetDeadline(deadline)
	defer c.nc.SetDeadline(time.Time{})
	for {
		pdu, err := c.r.ReadPDU()
		if err != nil {
			return nil, fmt.Errorf("login: read: %w", err)
		}
		if pdu.Header.Opcode() != OpLoginRequest {
			// RFC 7143 6.3: only Login PDUs may be exchanged in the login phase.
			lerr := loginErrorf(loginClassInitiatorErr, loginDetailInvalidDuringLogin,
				"%v PDU during login", pdu.Header.Opcode())
			c.sendLoginFailure(st, pdu.Header.ITT(), lerr)
			return nil, lerr
		}
		req := pdu.Header.LoginRequest()
		done, err := c.loginStep(st, &req, pdu.Data)
		if err != nil {
			var lerr *LoginError
			if errors.As(err, &lerr) {
				c.sendLoginFailure(st, req.ITT, lerr)
			}
			return nil, err
		}
		if done {
			return &loginResult{state: st, params: st.neg.Params()}, nil
		}
	}
}

// loginStep handles one Login Request and sends its response.
func (c *conn) loginStep(st *loginState, req *LoginRequest, data []byte) (done bool, err error) {
	if !st.started {
		st.started = true
		// RFC 7143 11.12.4: version 0x00 is the only one defined.
		if req.VersionMin > 0 {
			return false, loginErrorf(loginClassInitiatorErr, loginDetailUnsupportedVersion,
				"version min %d", req.VersionMin)
		}
		st.isid, st.tsih, st.cid, st.cmdSN = req.ISID, req.TSIH, req.CID, req.CmdSN
		st.statSN = req.ExpStatSN
		st.stage = loginStage(req.CSG)
		if st.stage != stageSecurity && st.stage != stageOperational {
			return false, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError,
				"login starts in stage %v", st.stage)
		}
	} else if req.ISID != st.isid || req.TSIH != st.tsih || req.CID != st.cid {
		return false, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError,
			"ISID, TSIH or CID changed during login")
	}
	if loginStage(req.CSG) != st.stage {
		return false, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError,
			"CSG %d in stage %v", req.CSG, st.stage)
	}
	if len(st.pending)+len(data) > maxLoginText {
		return false, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError,
			"login text over %d bytes", maxLoginText)
	}
	st.pending = append(st.pending, data...)
	if req.Continue {
		// RFC 7143 6.3: the text continues in the next request; answer with
		// an empty response and wait for it.
		if req.Transit {
			return false, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError, "both T and C bits set")
		}
		return false, c.sendLoginResponse(st, req, false, st.stage, nil)
	}
	kvs, err := ParseText(st.pending)
	st.pending = st.pending[:0]
	if err != nil {
		return false, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError, "login text: %v", err)
	}
	answers, err := c.loginKeys(st, kvs)
	if err != nil {
		return false, err
	}

	transit := false
	next := st.stage
	if req.Transit {
		nsg := loginStage(req.NSG)
		if !transitionAllowed(st.stage, nsg) {
			return false, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError,
				"transition from %v to %v", st.stage, nsg)
		}
		if st.stage == stageSecurity && !st.authDone {
			// No AuthMethod was negotiated. Blockport requires no
			// authentication yet, which is what AuthMethod=None means.
			st.authDone = true
		}
		transit, next = true, nsg
	}
	// The target declares its own limits (MaxRecvDataSegmentLength...) once,
	// in the operational stage or on the jump to full feature.
	if !st.declared && (st.stage == stageOperational || next == stageFullFeature) {
		answers = append(answers, st.neg.Declarations()...)
		st.declared = true
	}
	if transit && next == stageFullFeature {
		if err := c.finishLogin(st); err != nil {
			return false, err
		}
	}
	if err := c.sendLoginResponse(st, req, transit, next, answers); err != nil {
		return false, err
	}
	if transit {
		st.stage = next
	}
	return st.stage == stageFullFeature, nil
}

// loginKeys applies the keys of one (reassembled) login request and returns
// the answers.
func (c *conn) loginKeys(st *loginState, kvs []KeyValue) ([]KeyValue, error) {
	var answers, ops []KeyValue
	first := st.neg == nil
	for _, kv := range kvs {
		switch kv.Key {
		case "InitiatorName", "InitiatorAlias", "TargetName", "SessionType":
			// Declarations of the leading login request (RFC 7143 13.4-13.6, 13.21).
			if st.seenKeys[kv.Key] {
				return nil, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError,
					"key %s sent twice", kv.Key)
			}
			st.seenKeys[kv.Key] = true
			switch kv.Key {
			case "InitiatorName":
				st.initiator = kv.Value
			case "InitiatorAlias":
				st.alias = kv.Value
			case "TargetName":
				st.targetName = kv.Value
			case "SessionType":
				switch kv.Value {
				case "Normal":
					st.sessType = sessionNormal
				case "Discovery":
					st.sessType = sessionDiscovery
				default:
					return nil, loginErrorf(loginClassInitiatorErr, loginDetailSessionTypeNotSupp,
						"SessionType=%q", kv.Value)
				}
				st.sessTypeSet = true
			}
		case "AuthMethod":
			if st.stage != stageSecurity {
				return nil, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError,
					"AuthMethod outside the security stage")
			}
			// RFC 7143 12.1: the target picks the first method it supports from
			// the initiator's list. Blockport offers None until CHAP lands.
			chosen := ""
			for _, m := range strings.Split(kv.Value, ",") {
				if m == "None" {
					chosen = m
					break
				}
			}
			if chosen == "" {
				return nil, loginErrorf(loginClassInitiatorErr, loginDetailAuthFailure,
					"no supported AuthMethod in %q", kv.Value)
			}
			st.authDone = true
			answers = append(answers, KeyValue{Key: "AuthMethod", Value: chosen})
		default:
			if strings.HasPrefix(kv.Key, "CHAP_") {
				return nil, loginErrorf(loginClassInitiatorErr, loginDetailAuthFailure,
					"%s without CHAP negotiated", kv.Key)
			}
			ops = append(ops, kv)
		}
	}
	if first {
		if st.initiator == "" {
			return nil, loginErrorf(loginClassInitiatorErr, loginDetailMissingParameter, "no InitiatorName")
		}
		if st.sessType == sessionNormal {
			if st.targetName == "" {
				return nil, loginErrorf(loginClassInitiatorErr, loginDetailMissingParameter, "no TargetName")
			}
			t := c.svc.registry.LookupTarget(st.targetName)
			if t == nil {
				return nil, loginErrorf(loginClassInitiatorErr, loginDetailNotFound,
					"target %q not found", st.targetName)
			}
			if t.Admit != nil && !t.Admit(st.initiator, c.nc.RemoteAddr()) {
				return nil, loginErrorf(loginClassInitiatorErr, loginDetailAuthzFailure,
					"initiator %q may not log in to %q", st.initiator, st.targetName)
			}
			st.target = t
		}
		if st.tsih != 0 {
			// Blockport runs one connection per session: a login naming an
			// existing session can only be an attempt to add a connection.
			if c.svc.lookupTSIH(st.tsih) == nil {
				return nil, loginErrorf(loginClassInitiatorErr, loginDetailSessionDoesNotExist,
					"TSIH %d", st.tsih)
			}
			return nil, loginErrorf(loginClassInitiatorErr, loginDetailTooManyConnections,
				"MaxConnections is 1")
		}
		st.neg = NewNegotiation(c.svc.opts.Limits, st.sessType == sessionDiscovery)
		if st.sessType == sessionNormal {
			// RFC 7143 13.9: the target sends its portal group tag in the
			// first login response of a normal session.
			answers = append(answers, KeyValue{Key: "TargetPortalGroupTag", Value: strconv.Itoa(int(c.tpgt))})
			if st.target.Alias != "" {
				answers = append(answers, KeyValue{Key: "TargetAlias", Value: st.target.Alias})
			}
		}
	}
	opAnswers, err := st.neg.Offer(ops)
	if err != nil {
		return nil, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError, "negotiation: %v", err)
	}
	return append(answers, opAnswers...), nil
}

// finishLogin runs just before the final login response: it builds the
// session, reinstating an older one with the same name and ISID.
func (c *conn) finishLogin(st *loginState) error {
	if st.sessType == sessionDiscovery {
		return nil
	}
	key := sessionKey{initiator: st.initiator, isid: st.isid, target: st.target.Name, tpgt: c.tpgt}
	sess := &Session{
		key:    key,
		target: st.target,
		nexus: &scsi.Nexus{
			Initiator: st.initiator,
			ISID:      st.isid,
			Target:    st.target.Name,
			TPGT:      c.tpgt,
		},
		params: st.neg.Params(),
		remote: c.nc.RemoteAddr().String(),
		since:  time.Now(),
		conn:   c,
	}
	old, ok := c.svc.register(key, sess)
	if !ok {
		return loginErrorf(loginClassTargetErr, loginDetailServiceUnavailable, "server is shutting down")
	}
	if old != nil {
		// RFC 7143 6.3.5: session reinstatement ends the old session (and its
		// tasks) before the new one starts.
		c.log.Info("session reinstatement", "initiator", st.initiator, "target", st.target.Name)
		old.close()
		old.conn.waitDone(5 * time.Second)
	}
	st.tsih = sess.tsih
	c.sess = sess
	return nil
}

func (c *conn) sendLoginResponse(st *loginState, req *LoginRequest, transit bool, next loginStage, answers []KeyValue) error {
	resp := LoginResponse{
		Transit:       transit,
		CSG:           uint8(st.stage),
		NSG:           uint8(next),
		VersionMax:    0,
		VersionActive: 0,
		ISID:          st.isid,
		TSIH:          st.tsih,
		ITT:           req.ITT,
		StatSN:        st.statSN,
		ExpCmdSN:      st.cmdSN,
		MaxCmdSN:      st.cmdSN + c.svc.opts.QueueDepth - 1,
	}
	if !transit {
		resp.NSG = 0
	}
	st.statSN++
	var h BHS
	resp.Encode(&h)
	data := AppendText(nil, answers...)
	return c.w.WritePDU(&h, data)
}

func (c *conn) sendLoginFailure(st *loginState, itt uint32, lerr *LoginError) {
	resp := LoginResponse{
		CSG:          uint8(st.stage),
		ISID:         st.isid,
		TSIH:         st.tsih,
		ITT:          itt,
		StatSN:       st.statSN,
		ExpCmdSN:     st.cmdSN,
		MaxCmdSN:     st.cmdSN + c.svc.opts.QueueDepth - 1,
		StatusClass:  lerr.Class,
		StatusDetail: lerr.Detail,
	}
	var h BHS
	resp.Encode(&h)
	if err := c.w.WritePDU(&h, nil); err != nil {
		c.log.Debug("login failure response not sent", "err", err)
	}
}

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
	auth        AuthPolicy    // what this initiator must prove; set with the target
	chap        *chapExchange // the CHAP exchange under way, if AuthMethod=CHAP
	declared    bool          // the target's own declarations were sent
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
// On failure the result still holds what the login said of itself (the
// initiator and target names), for the log line.
func (c *conn) login() (*loginResult, error) {
	st := &loginState{stage: stageSecurity, seenKeys: make(map[string]bool)}
	deadline := time.Now().Add(c.opts.LoginTimeout)
	c.nc.SetDeadline(deadline)
	defer c.nc.SetDeadline(time.Time{})
	// A Shutdown that came first set a read deadline of now, which the
	// line above replaced; it closed quit before that, so look.
	select {
	case <-c.quit:
		return &loginResult{state: st}, fmt.Errorf("login: %w", c.closeErr.Load())
	default:
	}
	for {
		pdu, err := c.r.ReadPDU()
		if err != nil {
			var de *DigestError
			var pe *ProtocolError
			if errors.As(err, &de) || errors.As(err, &pe) {
				c.svc.malformed.Add(1)
				c.svc.guard.failed(SourceIP(c.nc.RemoteAddr()))
			}
			return &loginResult{state: st}, fmt.Errorf("login: read: %w", err)
		}
		if pdu.Header.Opcode() != OpLoginRequest {
			// RFC 7143 6.3: only Login PDUs may be exchanged in the login phase.
			lerr := loginErrorf(loginClassInitiatorErr, loginDetailInvalidDuringLogin,
				"%v PDU during login", pdu.Header.Opcode())
			c.slowFailure()
			c.sendLoginFailure(st, pdu.Header.ITT(), lerr)
			return &loginResult{state: st}, lerr
		}
		req := pdu.Header.LoginRequest()
		done, err := c.loginStep(st, &req, pdu.Data)
		if err != nil {
			var lerr *LoginError
			if errors.As(err, &lerr) {
				c.slowFailure()
				c.sendLoginFailure(st, req.ITT, lerr)
			}
			return &loginResult{state: st}, err
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
		transit, next = true, nsg
		if st.stage == stageSecurity && !st.authDone {
			switch {
			case st.chap != nil:
				// RFC 7143 6.3: the target answers T=0 while the
				// exchange it needs is still under way.
				transit, next = false, st.stage
			case st.auth.CHAP != nil:
				return false, authFailure("leaving the security stage without authenticating")
			default:
				// No authentication needed: what AuthMethod=None means.
				st.authDone = true
			}
		}
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
	authMethod, hasAuthMethod := "", false
	chapKeys := map[string]string{}
	for _, kv := range kvs {
		switch kv.Key {
		case "InitiatorName", "InitiatorAlias", "TargetName", "SessionType":
			// Declarations of the leading login request (RFC 7143 13.4-13.6, 13.21).
			if st.seenKeys[kv.Key] {
				// Some initiators (libiscsi with CHAP) repeat their
				// declarations in every security PDU; only a change is an error.
				if st.declaredValue(kv.Key) == kv.Value {
					continue
				}
				return nil, loginErrorf(loginClassInitiatorErr, loginDetailInitiatorError,
					"key %s sent twice with different values", kv.Key)
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
			if hasAuthMethod || st.chap != nil || st.authDone {
				return nil, authFailure("AuthMethod negotiated twice")
			}
			// Settled below, once the target and so the policy are known.
			authMethod, hasAuthMethod = kv.Value, true
		default:
			if strings.HasPrefix(kv.Key, "CHAP_") {
				if st.stage != stageSecurity || st.chap == nil && !hasAuthMethod {
					return nil, authFailure("%s without CHAP negotiated", kv.Key)
				}
				chapKeys[kv.Key] = kv.Value
				continue
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
			// A target with portal groups is reached only through their
			// portals (RFC 7143 4.4.1: a target portal group is the set of
			// portals a session may use); the tag is that group's.
			tag, ok := t.tagFor(c.portal)
			if !ok {
				return nil, loginErrorf(loginClassInitiatorErr, loginDetailNotFound,
					"target %q is not served through portal %s", st.targetName, c.portal.Listen)
			}
			c.tpgt = tag
			st.target = t
			if t.Auth != nil {
				st.auth = t.Auth(st.initiator)
			}
		} else {
			st.auth = *c.svc.discoveryAuth.Load()
		}
		if st.auth.CHAP != nil && st.stage != stageSecurity {
			// RFC 7143 6.3: a login that starts in the operational stage
			// skips authentication, which this target requires.
			return nil, authFailure("login skips the security stage; CHAP is required")
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
		st.neg = NewNegotiation(c.opts.Limits, st.sessType == sessionDiscovery)
		if st.sessType == sessionNormal {
			// RFC 7143 13.9: the target sends its portal group tag in the
			// first login response of a normal session.
			answers = append(answers, KeyValue{Key: "TargetPortalGroupTag", Value: strconv.Itoa(int(c.tpgt))})
			if st.target.Alias != "" {
				answers = append(answers, KeyValue{Key: "TargetAlias", Value: st.target.Alias})
			}
		}
	}
	if hasAuthMethod {
		chosen, err := chooseAuthMethod(authMethod, st.auth)
		if err != nil {
			return nil, err
		}
		answers = append(answers, KeyValue{Key: "AuthMethod", Value: chosen})
		if chosen == "CHAP" {
			st.chap = &chapExchange{policy: st.auth}
		} else {
			st.authDone = true
		}
	}
	if st.chap != nil && !st.authDone {
		chapAnswers, err := st.chap.step(chapKeys)
		if err != nil {
			return nil, err
		}
		answers = append(answers, chapAnswers...)
		if st.chap.phase == chapDone {
			st.authDone = true
		}
	} else if len(chapKeys) > 0 {
		return nil, authFailure("CHAP keys after authentication finished")
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
	old, err := c.svc.register(key, sess)
	if err != nil {
		return err
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
		MaxCmdSN:      st.cmdSN + c.opts.QueueDepth - 1,
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
		MaxCmdSN:     st.cmdSN + c.opts.QueueDepth - 1,
		StatusClass:  lerr.Class,
		StatusDetail: lerr.Detail,
	}
	var h BHS
	resp.Encode(&h)
	if err := c.w.WritePDU(&h, nil); err != nil {
		c.log.Debug("login failure response not sent", "err", err)
	}
}

// chooseAuthMethod answers AuthMethod (RFC 7143 12.1): the first method of
// the initiator's list that the target accepts. With CHAP required that is
// CHAP only; otherwise None only (there are no credentials to check).
func chooseAuthMethod(offer string, policy AuthPolicy) (string, error) {
	want := "None"
	if policy.CHAP != nil {
		want = "CHAP"
	}
	for _, m := range strings.Split(offer, ",") {
		if m == want {
			return m, nil
		}
	}
	return "", authFailure("AuthMethod=%q does not offer %s", offer, want)
}

// slowFailure counts a failed login and holds its answer back for the
// source's current delay (see loginGuard), within the login deadline.
func (c *conn) slowFailure() {
	d := c.svc.guard.failed(SourceIP(c.nc.RemoteAddr()))
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.quit:
	}
}

// declaredValue is the value a leading-login declaration was given.
func (st *loginState) declaredValue(key string) string {
	switch key {
	case "InitiatorName":
		return st.initiator
	case "InitiatorAlias":
		return st.alias
	case "TargetName":
		return st.targetName
	case "SessionType":
		if st.sessType == sessionDiscovery {
			return "Discovery"
		}
		return "Normal"
	}
	return ""
}

package iscsi

import (
	"net"
	"strconv"
	"strings"
)

// textExchange is a Text response too long for one PDU, handed out piece by
// piece as the initiator asks with the TTT (RFC 7143 11.10.4).
type textExchange struct {
	itt  uint32
	ttt  uint32
	rest []byte
}

// maxTextRequest bounds the text one exchange may accumulate.
const maxTextRequest = 64 * 1024

// handleText answers a Text Request: SendTargets discovery (RFC 7143
// Appendix C) and continuation of long answers.
func (c *conn) handleText(h *BHS, data []byte) error {
	req := h.TextRequest()
	defer c.commandDone(req.Immediate)
	if req.TTT != 0xffffffff {
		ex := c.textCont
		if ex == nil || ex.ttt != req.TTT || ex.itt != req.ITT {
			return &RejectError{Reason: RejectInvalidPDUField, Header: *h, Why: "Text Request with an unknown TTT"}
		}
		c.textCont = nil
		c.sendText(req.ITT, req.LUN, ex.rest)
		return nil
	}
	c.textCont = nil
	if len(c.textReq)+len(data) > maxTextRequest {
		c.textReq = nil
		return &RejectError{Reason: RejectProtocolError, Header: *h, Why: "text request too long"}
	}
	c.textReq = append(c.textReq, data...)
	if req.Continue {
		// More text follows; acknowledge with an empty response (11.10.2).
		p := getOutPDU()
		r := TextResponse{Final: false, LUN: req.LUN, ITT: req.ITT, TTT: c.allocTextTTT()}
		r.Encode(&p.hdr)
		p.advanceSN = true
		c.send(p)
		return nil
	}
	kvs, err := ParseText(c.textReq)
	c.textReq = nil
	if err != nil {
		return &RejectError{Reason: RejectProtocolError, Header: *h, Why: "text: " + err.Error()}
	}
	var answer []byte
	for _, kv := range kvs {
		switch kv.Key {
		case "SendTargets":
			answer = c.appendSendTargets(answer, kv.Value)
		default:
			// Operational keys are settled at login; Blockport renegotiates
			// none in the full feature phase.
			answer = AppendText(answer, KeyValue{Key: kv.Key, Value: "NotUnderstood"})
		}
	}
	c.sendText(req.ITT, req.LUN, answer)
	return nil
}

func (c *conn) allocTextTTT() uint32 {
	t := c.nextTTT
	c.nextTTT++
	if c.nextTTT >= 0x80000000 {
		c.nextTTT = 1
	}
	return t
}

// sendText sends a text answer, splitting it at MaxRecvDataSegmentLength of
// the initiator with the C bit.
func (c *conn) sendText(itt uint32, lun uint64, answer []byte) {
	p := getOutPDU()
	max := int(c.params.MaxXmitDataSegmentLength)
	r := TextResponse{Final: true, LUN: lun, ITT: itt, TTT: 0xffffffff}
	if len(answer) > max {
		ttt := c.allocTextTTT()
		c.textCont = &textExchange{itt: itt, ttt: ttt, rest: answer[max:]}
		answer = answer[:max]
		r = TextResponse{Final: false, Continue: true, LUN: lun, ITT: itt, TTT: ttt}
	}
	r.Encode(&p.hdr)
	p.data = answer
	p.advanceSN = true
	c.send(p)
}

// appendSendTargets lists targets and their portals. In a discovery session
// "All" lists every target the initiator may log in to; in a normal session
// an empty value names the session's own target.
func (c *conn) appendSendTargets(dst []byte, which string) []byte {
	reg := c.svc.registry
	var targets []*Target
	switch {
	case which == "All" && c.discovery:
		targets = reg.Targets()
	case which == "" || which == "All":
		if c.sess != nil {
			targets = []*Target{c.sess.target}
		}
	default:
		if t := reg.LookupTarget(which); t != nil {
			targets = []*Target{t}
		}
	}
	portals := reg.Portals()
	admitted := targets[:0:0]
	for _, t := range targets {
		if t.Admit == nil || t.Admit(c.initiator, c.nc.RemoteAddr()) {
			admitted = append(admitted, t)
		}
	}
	if f := c.opts.DiscoveryFilter; f != nil && c.discovery && len(admitted) > 0 {
		admitted = filterTargets(f, c.initiator, admitted)
	}
	for _, t := range admitted {
		dst = AppendText(dst, KeyValue{Key: "TargetName", Value: t.Name})
		for _, p := range portals {
			// Every portal of every portal group of the target, with
			// that group's tag (RFC 7143 Appendix C).
			tag, ok := t.tagFor(p)
			if !ok {
				continue
			}
			p.TPGT = tag
			dst = AppendText(dst, KeyValue{Key: "TargetAddress", Value: c.portalAddress(p)})
		}
		for _, p := range t.RemotePortals {
			// As configured: a name or address of the other server.
			dst = AppendText(dst, KeyValue{Key: "TargetAddress", Value: p.Addr + "," + strconv.Itoa(int(p.TPGT))})
		}
	}
	return dst
}

// filterTargets keeps the targets f lets the initiator discover. Names are
// compared case-insensitively (RFC 3722: iSCSI names are normalized to
// lower case), since the filter may answer with another spelling.
func filterTargets(f DiscoveryFilter, initiator string, targets []*Target) []*Target {
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Name
	}
	visible := make(map[string]bool)
	for _, n := range f.VisibleTargets(initiator, names) {
		visible[strings.ToLower(n)] = true
	}
	out := targets[:0:0]
	for _, t := range targets {
		if visible[strings.ToLower(t.Name)] {
			out = append(out, t)
		}
	}
	return out
}

// portalAddress formats a portal as RFC 7143 13.8 TargetAddress:
// domainname[:port][,portal-group-tag], with IPv6 in brackets. A wildcard
// listen address is replaced by the address this connection came in on.
func (c *conn) portalAddress(p Portal) string {
	host, port, err := net.SplitHostPort(p.Addr)
	if err != nil {
		return p.Addr + "," + strconv.Itoa(int(p.TPGT))
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if la, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
			host = la.IP.String()
		}
	}
	return net.JoinHostPort(host, port) + "," + strconv.Itoa(int(p.TPGT))
}

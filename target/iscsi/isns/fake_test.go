package isns

import (
	"bufio"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeServer is an in-process iSNS server with just enough of RFC 4171 for
// the client's tests: entities with nodes and portals, DevAttrReg (with
// replace), DevDereg, the two DevAttrQry shapes the client sends, and
// discovery domains given as initiator -> visible targets. It can stop
// answering, refuse with a status, lose its database and go away.
type fakeServer struct {
	t    *testing.T
	addr string

	mu       sync.Mutex
	ln       net.Listener           // guarded by mu; nil while down
	conns    map[net.Conn]bool      // guarded by mu
	entities map[string]*fakeEntity // guarded by mu
	requests []Request              // every request in order; guarded by mu
	domains  map[string][]string    // initiator -> targets it may see; guarded by mu
	silent   bool                   // read requests, answer nothing; guarded by mu
	refuse   map[Function]Status    // answer these functions with a status; guarded by mu
	period   uint32                 // the registration period granted, seconds; guarded by mu
	wg       sync.WaitGroup
}

type fakeEntity struct {
	nodes   []string
	portals []netip.AddrPort
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	s := &fakeServer{t: t, conns: map[net.Conn]bool{}, entities: map[string]*fakeEntity{},
		domains: map[string][]string{}, refuse: map[Function]Status{}, period: 900}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.down)
	return s
}

func (s *fakeServer) serve(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[nc] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handle(nc)
			}()
		}
	}()
}

// down closes the listener and every connection: the server is gone.
func (s *fakeServer) down() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// up listens again on the same address.
func (s *fakeServer) up() {
	s.t.Helper()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.serve(ln)
}

// restart loses the database and the connections, as isnsd restarted with
// an in-memory database does.
func (s *fakeServer) restart() {
	s.down()
	s.mu.Lock()
	s.entities = map[string]*fakeEntity{}
	s.mu.Unlock()
	s.up()
}

func (s *fakeServer) handle(nc net.Conn) {
	defer func() {
		nc.Close()
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
	}()
	mr := NewMessageReader(bufio.NewReader(nc))
	for {
		m, err := mr.ReadMessage()
		if err != nil {
			return
		}
		req, err := ParseRequest(m)
		if err != nil {
			s.t.Errorf("fake iSNS server: %v", err)
			return
		}
		s.mu.Lock()
		s.requests = append(s.requests, req)
		silent := s.silent
		var resp Response
		if st, ok := s.refuse[req.Function]; ok {
			resp = Response{Status: st}
		} else {
			resp = s.answer(req)
		}
		s.mu.Unlock()
		if silent {
			continue
		}
		resp.Function = req.Function.Response()
		wire, err := AppendMessage(nil, Message{Function: resp.Function, Flags: FlagServer, TransactionID: m.TransactionID, Payload: resp.Payload()})
		if err != nil {
			s.t.Errorf("fake iSNS server: %v", err)
			return
		}
		if _, err := nc.Write(wire); err != nil {
			return
		}
	}
}

// answer applies a request to the database. The caller holds mu.
func (s *fakeServer) answer(req Request) Response {
	str := func(a Attribute) string {
		v, err := a.Str()
		if err != nil {
			s.t.Errorf("fake iSNS server: %v", err)
		}
		return v
	}
	portals := func(attrs []Attribute, ipTag, portTag Tag) []netip.AddrPort {
		var out []netip.AddrPort
		for i := 0; i+1 < len(attrs); i++ {
			if attrs[i].Tag == ipTag && attrs[i+1].Tag == portTag {
				ip, _ := attrs[i].IP()
				port, _, _ := attrs[i+1].Port()
				out = append(out, netip.AddrPortFrom(ip, port))
			}
		}
		return out
	}
	switch req.Function {
	case FuncDevAttrReg:
		if len(req.Keys) != 1 || req.Keys[0].Tag != TagEntityIdentifier {
			return Response{Status: StatusInvalidRegistration}
		}
		eid := str(req.Keys[0])
		e := s.entities[eid]
		if e == nil || req.Replace {
			e = &fakeEntity{}
			s.entities[eid] = e
		}
		for _, a := range req.Operating {
			if a.Tag == TagISCSIName && !slices.Contains(e.nodes, str(a)) {
				e.nodes = append(e.nodes, str(a))
			}
		}
		for _, p := range portals(req.Operating, TagPortalIPAddress, TagPortalPort) {
			if !slices.Contains(e.portals, p) {
				e.portals = append(e.portals, p)
			}
		}
		return Response{Keys: req.Keys, Operating: []Attribute{req.Keys[0], Uint32(TagRegistrationPeriod, s.period)}}
	case FuncDevDereg:
		for _, a := range req.Operating {
			switch a.Tag {
			case TagEntityIdentifier:
				delete(s.entities, str(a))
			case TagISCSIName:
				for _, e := range s.entities {
					e.nodes = slices.DeleteFunc(e.nodes, func(n string) bool { return n == str(a) })
				}
			}
		}
		for _, p := range portals(req.Operating, TagPortalIPAddress, TagPortalPort) {
			for _, e := range s.entities {
				e.portals = slices.DeleteFunc(e.portals, func(q netip.AddrPort) bool { return q == p })
			}
		}
		return Response{}
	case FuncDevAttrQry:
		switch {
		case len(req.Keys) == 1 && req.Keys[0].Tag == TagISCSIName:
			name := str(req.Keys[0])
			for eid, e := range s.entities {
				if slices.Contains(e.nodes, name) {
					return Response{Keys: req.Keys, Operating: []Attribute{String(TagEntityIdentifier, eid), req.Keys[0]}}
				}
			}
			return Response{Status: StatusNoSuchEntry}
		case len(req.Keys) == 1 && req.Keys[0].Tag == TagISCSINodeType:
			var op []Attribute
			for _, target := range s.domains[str(req.Source)] {
				if s.registeredLocked(target) {
					op = append(op, String(TagISCSIName, target), Uint32(TagISCSINodeType, NodeTypeTarget))
				}
			}
			if op == nil {
				return Response{Status: StatusNoSuchEntry}
			}
			return Response{Keys: req.Keys, Operating: op}
		}
		return Response{Status: StatusInvalidQuery}
	}
	return Response{Status: StatusMessageNotSupported}
}

func (s *fakeServer) registeredLocked(node string) bool {
	for _, e := range s.entities {
		if slices.Contains(e.nodes, node) {
			return true
		}
	}
	return false
}

// entity returns a copy of an entity, or nil.
func (s *fakeServer) entity(eid string) *fakeEntity {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entities[eid]
	if e == nil {
		return nil
	}
	return &fakeEntity{nodes: slices.Clone(e.nodes), portals: slices.Clone(e.portals)}
}

// log returns the requests so far.
func (s *fakeServer) log() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *fakeServer) set(f func(s *fakeServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package iscsi

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDecodeBinary(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []byte
		ok   bool
	}{
		{"0x00ff10", []byte{0, 0xff, 0x10}, true},
		{"0XABcd", []byte{0xab, 0xcd}, true},
		{"0xabc", []byte{0x0a, 0xbc}, true}, // odd count: implied leading zero
		{"0b" + base64.StdEncoding.EncodeToString([]byte("hello")), []byte("hello"), true},
		{"0BAAEC", []byte{0, 1, 2}, true},
		{"0x", nil, false},
		{"0b", nil, false},
		{"", nil, false},
		{"ff", nil, false},
		{"1xff", nil, false},
		{"0xzz", nil, false},
		{"0bAA=", nil, false},                           // bad padding
		{"0b!!!!", nil, false},                          // not base64
		{"0x" + strings.Repeat("00", 1025), nil, false}, // over 1024 bytes
		{"0b" + base64.StdEncoding.EncodeToString(make([]byte, 1025)), nil, false},
		{"0x" + strings.Repeat("00", 1024), make([]byte, 1024), true},
	} {
		got, err := decodeBinary(tt.in)
		if (err == nil) != tt.ok || tt.ok && !bytes.Equal(got, tt.want) {
			t.Errorf("decodeBinary(%.20q) = %x, %v; want %x ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	// Round trip of the encoding the target sends.
	b := []byte{1, 2, 0xfe}
	if got, err := decodeBinary(encodeBinary(b)); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("round trip: %x %v", got, err)
	}
}

func TestChooseCHAPAlgorithm(t *testing.T) {
	for _, tt := range []struct {
		offer   string
		allowed []CHAPAlgorithm
		want    CHAPAlgorithm
		ok      bool
	}{
		{"5", nil, CHAPMD5, true},
		{"5,6,7,8", nil, CHAPSHA3256, true},
		{"7,5", nil, CHAPSHA256, true},
		{"5,7", []CHAPAlgorithm{CHAPMD5}, CHAPMD5, true},
		{"8,7,6", []CHAPAlgorithm{CHAPSHA1, CHAPSHA256}, CHAPSHA256, true},
		{"5", []CHAPAlgorithm{CHAPSHA256}, 0, false},
		{"9,x,,300", nil, 0, false},
		{"", nil, 0, false},
		{"junk,6", nil, CHAPSHA1, true},
	} {
		got, ok := chooseCHAPAlgorithm(tt.offer, tt.allowed)
		if got != tt.want || ok != tt.ok {
			t.Errorf("choose(%q, %v) = %v %v, want %v %v", tt.offer, tt.allowed, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCHAPResponse(t *testing.T) {
	id, secret, chal := byte(7), []byte("0123456789abcdef"), []byte("challenge-bytes!")
	msg := append(append([]byte{id}, secret...), chal...)
	m5, s1, s256, s3 := md5.Sum(msg), sha1.Sum(msg), sha256.Sum256(msg), sha3.Sum256(msg)
	for _, tt := range []struct {
		a    CHAPAlgorithm
		want []byte
	}{{CHAPMD5, m5[:]}, {CHAPSHA1, s1[:]}, {CHAPSHA256, s256[:]}, {CHAPSHA3256, s3[:]}} {
		if got := chapResponse(tt.a, id, secret, chal); !bytes.Equal(got, tt.want) {
			t.Errorf("%v: %x, want %x", tt.a, got, tt.want)
		}
		if tt.a.Size() != len(tt.want) {
			t.Errorf("%v size %d", tt.a, tt.a.Size())
		}
		if p, err := ParseCHAPAlgorithm(tt.a.String()); err != nil || p != tt.a {
			t.Errorf("ParseCHAPAlgorithm(%q) = %v %v", tt.a.String(), p, err)
		}
	}
	if _, err := ParseCHAPAlgorithm("SHA-512"); err == nil {
		t.Error("SHA-512 accepted")
	}
}

func TestParseCHAPIdentifier(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "255": 255, "0x1f": 31, "256": -1, "-1": -1, "": -1, "0x": -1, "a": -1} {
		got, err := parseCHAPIdentifier(in)
		if want < 0 && err == nil || want >= 0 && (err != nil || int(got) != want) {
			t.Errorf("parseCHAPIdentifier(%q) = %d %v, want %d", in, got, err, want)
		}
	}
}

const (
	testSecret       = "initiator-secret-1"
	testTargetSecret = "target-secret-0002"
)

func TestSecretsNeverFormatted(t *testing.T) {
	p := AuthPolicy{CHAP: &Credentials{User: "u", Secret: []byte(testSecret)}, Mutual: &Credentials{User: "t", Secret: []byte(testTargetSecret)}}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "chap", *p.CHAP, "mutual", p.Mutual)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "chap", *p.CHAP, "policy", p)
	js, _ := json.Marshal(p)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s))[:16] }
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", p, p, *p.CHAP, *p.Mutual), logged.String(), string(js)} {
		// JSON would carry []byte in base64.
		if strings.Contains(s, testSecret) || strings.Contains(s, testTargetSecret) ||
			strings.Contains(s, b64(testSecret)) || strings.Contains(s, b64(testTargetSecret)) {
			t.Fatalf("secret in %q", s)
		}
	}
}

// chapFabric is a fabric whose target requires CHAP of every initiator.
func chapFabric(t *testing.T, policy AuthPolicy) *fabric {
	return startFabricWith(t, Options{DiscoveryAuth: policy}, func(tg *Target) {
		tg.Auth = func(string) AuthPolicy { return policy }
	})
}

func chapPolicy(mutual bool, algs ...CHAPAlgorithm) AuthPolicy {
	p := AuthPolicy{CHAP: &Credentials{User: "node1", Secret: []byte(testSecret)}, Algorithms: algs}
	if mutual {
		p.Mutual = &Credentials{User: "san", Secret: []byte(testTargetSecret)}
	}
	return p
}

// chapLogin is one CHAP login as an initiator does it. It returns the
// status and the keys of the last response.
type chapAttempt struct {
	offer       string // CHAP_A list
	user        string
	secret      string
	encode      func([]byte) string // CHAP_R encoding; hex when nil
	mutualChal  []byte              // non-nil: ask for mutual CHAP with this challenge
	reflect     bool                // use the target's own challenge as mutualChal
	replayResp  string              // send this CHAP_R instead of computing one
	seen        *chapSeen           // records the challenge and response
	sessionType string
}

type chapSeen struct {
	id        byte
	challenge []byte
	response  string
	alg       CHAPAlgorithm
}

func (in *initiator) chapLogin(a chapAttempt) (LoginResponse, []KeyValue) {
	in.t.Helper()
	keys := []KeyValue{{Key: "InitiatorName", Value: "iqn.2026-11.io.blockport:node1"}}
	if a.sessionType == "Discovery" {
		keys = append(keys, KeyValue{Key: "SessionType", Value: "Discovery"})
	} else {
		keys = append(keys, KeyValue{Key: "TargetName", Value: testTarget}, KeyValue{Key: "SessionType", Value: "Normal"})
	}
	keys = append(keys, KeyValue{Key: "AuthMethod", Value: "CHAP,None"})
	resp, kvs := in.loginPDU(0, 1, true, keys)
	if resp.StatusClass != 0 {
		return resp, kvs
	}
	if resp.Transit || value(kvs, "AuthMethod") != "CHAP" {
		in.t.Fatalf("first response T=%v keys %v: want AuthMethod=CHAP without transit", resp.Transit, kvs)
	}
	resp, kvs = in.loginPDU(0, 1, false, []KeyValue{{Key: "CHAP_A", Value: a.offer}})
	if resp.StatusClass != 0 {
		return resp, kvs
	}
	alg, _ := strconv.Atoi(value(kvs, "CHAP_A"))
	id, _ := strconv.Atoi(value(kvs, "CHAP_I"))
	chal, err := decodeBinary(value(kvs, "CHAP_C"))
	if err != nil || len(chal) != CHAPAlgorithm(alg).Size() {
		in.t.Fatalf("challenge %q for CHAP_A=%d: %v", value(kvs, "CHAP_C"), alg, err)
	}
	r := chapResponse(CHAPAlgorithm(alg), byte(id), []byte(a.secret), chal)
	enc := encodeBinary
	if a.encode != nil {
		enc = a.encode
	}
	rs := enc(r)
	if a.replayResp != "" {
		rs = a.replayResp
	}
	if a.seen != nil {
		*a.seen = chapSeen{id: byte(id), challenge: chal, response: rs, alg: CHAPAlgorithm(alg)}
	}
	reply := []KeyValue{{Key: "CHAP_N", Value: a.user}, {Key: "CHAP_R", Value: rs}}
	mchal := a.mutualChal
	if a.reflect {
		mchal = chal
	}
	if mchal != nil {
		reply = append(reply, KeyValue{Key: "CHAP_I", Value: "42"}, KeyValue{Key: "CHAP_C", Value: encodeBinary(mchal)})
	}
	resp, kvs = in.loginPDU(0, 1, true, reply)
	if resp.StatusClass != 0 {
		return resp, kvs
	}
	if !resp.Transit || resp.NSG != 1 {
		in.t.Fatalf("after CHAP_R: T=%v NSG=%d", resp.Transit, resp.NSG)
	}
	if mchal != nil {
		want := chapResponse(CHAPAlgorithm(alg), 42, []byte(testTargetSecret), mchal)
		got, err := decodeBinary(value(kvs, "CHAP_R"))
		if value(kvs, "CHAP_N") != "san" || err != nil || !bytes.Equal(got, want) {
			in.t.Fatalf("mutual CHAP answer %v does not prove the target's secret", kvs)
		}
	}
	resp2, kvs2 := in.loginPDU(1, 3, true, nil)
	return resp2, append(kvs, kvs2...)
}

func value(kvs []KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return ""
}

func TestCHAPLogin(t *testing.T) {
	b64 := func(b []byte) string { return "0b" + base64.StdEncoding.EncodeToString(b) }
	for _, tt := range []struct {
		name   string
		policy AuthPolicy
		try    chapAttempt
		detail uint8 // 0: success; else the class 2 status detail
		alg    CHAPAlgorithm
	}{
		{"one-way MD5", chapPolicy(false), chapAttempt{offer: "5", user: "node1", secret: testSecret}, 0, CHAPMD5},
		{"strongest offered", chapPolicy(false), chapAttempt{offer: "5,6,7,8", user: "node1", secret: testSecret}, 0, CHAPSHA3256},
		{"restricted algorithms", chapPolicy(false, CHAPSHA1), chapAttempt{offer: "8,6,5", user: "node1", secret: testSecret}, 0, CHAPSHA1},
		{"base64 response", chapPolicy(false), chapAttempt{offer: "7", user: "node1", secret: testSecret, encode: b64}, 0, CHAPSHA256},
		{"mutual", chapPolicy(true), chapAttempt{offer: "5", user: "node1", secret: testSecret, mutualChal: bytes.Repeat([]byte{9}, 32)}, 0, CHAPMD5},
		{"discovery", chapPolicy(false), chapAttempt{offer: "5", user: "node1", secret: testSecret, sessionType: "Discovery"}, 0, CHAPMD5},
		{"wrong secret", chapPolicy(false), chapAttempt{offer: "5", user: "node1", secret: "wrong-secret-000"}, loginDetailAuthFailure, 0},
		{"wrong user", chapPolicy(false), chapAttempt{offer: "5", user: "node2", secret: testSecret}, loginDetailAuthFailure, 0},
		{"discovery wrong secret", chapPolicy(false), chapAttempt{offer: "5", user: "node1", secret: "nope-nope-nope", sessionType: "Discovery"}, loginDetailAuthFailure, 0},
		{"no common algorithm", chapPolicy(false, CHAPSHA256), chapAttempt{offer: "5", user: "node1", secret: testSecret}, loginDetailAuthFailure, 0},
		{"mutual not configured", chapPolicy(false), chapAttempt{offer: "5", user: "node1", secret: testSecret, mutualChal: bytes.Repeat([]byte{9}, 32)}, loginDetailAuthFailure, 0},
		{"mutual short challenge", chapPolicy(true), chapAttempt{offer: "5", user: "node1", secret: testSecret, mutualChal: []byte{1, 2, 3}}, loginDetailAuthFailure, 0},
		{"reflected challenge", chapPolicy(true), chapAttempt{offer: "5", user: "node1", secret: testSecret, reflect: true}, loginDetailAuthFailure, 0},
		{"garbage response", chapPolicy(false), chapAttempt{offer: "5", user: "node1", secret: testSecret, replayResp: "0xnothex"}, loginDetailAuthFailure, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := chapFabric(t, tt.policy)
			in := dial(t, f)
			var seen chapSeen
			tt.try.seen = &seen
			resp, kvs := in.chapLogin(tt.try)
			if tt.detail == 0 {
				if resp.StatusClass != 0 || !resp.Transit || resp.NSG != 3 {
					t.Fatalf("login failed: %d/%d %v", resp.StatusClass, resp.StatusDetail, kvs)
				}
				if seen.alg != tt.alg {
					t.Fatalf("algorithm %v, want %v", seen.alg, tt.alg)
				}
				return
			}
			if resp.StatusClass != loginClassInitiatorErr || resp.StatusDetail != tt.detail {
				t.Fatalf("status %d/%d, want 2/%d", resp.StatusClass, resp.StatusDetail, tt.detail)
			}
		})
	}
}

func TestCHAPRequired(t *testing.T) {
	f := chapFabric(t, chapPolicy(false))
	// AuthMethod=None only: authentication failure.
	in := dial(t, f)
	resp, _ := in.login(normalKeys("iqn.2026-11.io.blockport:node1"), nil)
	if resp.StatusClass != 2 || resp.StatusDetail != loginDetailAuthFailure {
		t.Fatalf("AuthMethod=None: status %d/%d", resp.StatusClass, resp.StatusDetail)
	}
	// Starting in the operational stage skips authentication.
	in = dial(t, f)
	resp, _ = in.loginPDU(1, 3, true, []KeyValue{{Key: "InitiatorName", Value: "iqn.2026-11.io.blockport:node1"}, {Key: "TargetName", Value: testTarget}})
	if resp.StatusClass != 2 || resp.StatusDetail != loginDetailAuthFailure {
		t.Fatalf("operational start: status %d/%d", resp.StatusClass, resp.StatusDetail)
	}
	// Transit out of security with no AuthMethod at all.
	in = dial(t, f)
	resp, _ = in.loginPDU(0, 1, true, []KeyValue{{Key: "InitiatorName", Value: "iqn.2026-11.io.blockport:node1"}, {Key: "TargetName", Value: testTarget}})
	if resp.StatusClass != 2 || resp.StatusDetail != loginDetailAuthFailure {
		t.Fatalf("no AuthMethod: status %d/%d", resp.StatusClass, resp.StatusDetail)
	}
	// CHAP keys without CHAP.
	in = dial(t, f)
	resp, _ = in.loginPDU(0, 1, false, append(normalKeys("iqn.2026-11.io.blockport:node1"), KeyValue{Key: "CHAP_A", Value: "5"}))
	if resp.StatusClass != 2 {
		t.Fatalf("CHAP_A with AuthMethod=None: status %d/%d", resp.StatusClass, resp.StatusDetail)
	}
}

// A response seen on the wire does not log in again: every login gets a
// fresh challenge, and one challenge takes one response.
func TestCHAPReplay(t *testing.T) {
	f := chapFabric(t, chapPolicy(false))
	var seen chapSeen
	in := dial(t, f)
	resp, _ := in.chapLogin(chapAttempt{offer: "5", user: "node1", secret: testSecret, seen: &seen})
	if resp.StatusClass != 0 {
		t.Fatalf("first login %d/%d", resp.StatusClass, resp.StatusDetail)
	}
	in2 := dial(t, f)
	in2.isid[5]++
	var seen2 chapSeen
	resp, _ = in2.chapLogin(chapAttempt{offer: "5", user: "node1", secret: "unknown-to-attacker", replayResp: seen.response, seen: &seen2})
	if resp.StatusClass != 2 || resp.StatusDetail != loginDetailAuthFailure {
		t.Fatalf("replayed response: status %d/%d", resp.StatusClass, resp.StatusDetail)
	}
	if bytes.Equal(seen.challenge, seen2.challenge) {
		t.Fatal("the same challenge was issued twice")
	}

	// Within one exchange: after one response the challenge is spent.
	x := &chapExchange{policy: chapPolicy(false)}
	if _, err := x.step(map[string]string{"CHAP_A": "5"}); err != nil {
		t.Fatal(err)
	}
	good := encodeBinary(chapResponse(x.alg, x.id, []byte(testSecret), x.challenge))
	if _, err := x.step(map[string]string{"CHAP_N": "node1", "CHAP_R": "0x00"}); err == nil {
		t.Fatal("wrong response accepted")
	}
	x.phase = chapWaitResponse
	if _, err := x.step(map[string]string{"CHAP_N": "node1", "CHAP_R": good}); err == nil {
		t.Fatal("a second response to one challenge was accepted")
	}
}

func TestFailureDelay(t *testing.T) {
	for n, want := range map[int]time.Duration{0: 0, 1: 0, 2: 100 * time.Millisecond, 3: 200 * time.Millisecond,
		4: 400 * time.Millisecond, 7: 3200 * time.Millisecond, 8: 5 * time.Second, 1000: 5 * time.Second} {
		if got := failureDelay(n); got != want {
			t.Errorf("failureDelay(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestLoginGuard(t *testing.T) {
	g := newLoginGuard()
	now := time.Unix(1e9, 0)
	g.now = func() time.Time { return now }
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	// Per-source cap on logins in progress; another source is unaffected.
	for i := range 3 {
		if !g.admit(a, 100, 3, 10) {
			t.Fatalf("login %d refused", i)
		}
	}
	if g.admit(a, 100, 3, 10) {
		t.Fatal("fourth concurrent login from one source admitted")
	}
	if !g.admit(b, 100, 3, 10) {
		t.Fatal("another source refused")
	}
	g.loginEnded(a) // one of a's logins reached full feature
	if !g.admit(a, 100, 3, 10) {
		t.Fatal("a source under its cap again was refused")
	}
	// The global cap.
	if g.admit(netip.MustParseAddr("10.0.0.3"), 5, 3, 10) {
		t.Fatal("connection over MaxConnections admitted")
	}
	// The per-source cap counts connections past login too: c's first two
	// logged in, the third is refused though none is logging in.
	c := netip.MustParseAddr("10.0.0.4")
	for i := range 2 {
		if !g.admit(c, 100, 3, 2) {
			t.Fatalf("connection %d of c refused", i)
		}
		g.loginEnded(c)
	}
	if g.admit(c, 100, 3, 2) {
		t.Fatal("a third connection from a source capped at 2 admitted")
	}
	g.closed(c, false)
	if !g.admit(c, 100, 3, 2) {
		t.Fatal("a source under its cap again was refused")
	}
	// Failures slow down only the failing source and decay.
	var d time.Duration
	for range 4 {
		d = g.failed(a)
	}
	if d != 400*time.Millisecond {
		t.Fatalf("4th failure delay %v", d)
	}
	if d := g.failed(b); d != 0 {
		t.Fatalf("other source delayed %v", d)
	}
	now = now.Add(failureForget + time.Second)
	if d := g.failed(a); d != 0 {
		t.Fatalf("failures did not decay: %v", d)
	}
	// Successes in between (which the guard is not told of) do not clear
	// the count: logging in with one account buys no fast guesses at
	// another.
	g.failed(a)
	if d := g.failed(a); d != failureDelayBase*2 {
		t.Fatalf("third failure after a success: delay %v, want %v", d, failureDelayBase*2)
	}
	if g.failures.Load() != 8 || g.refused.Load() != 3 {
		t.Fatalf("counters failures=%d refused=%d", g.failures.Load(), g.refused.Load())
	}
}

// A flood of connections from one address that never log in does not keep
// another address from logging in, and its extra connections are closed
// at once.
func TestLoginFloodFromOneSource(t *testing.T) {
	f := startFabric(t, Options{MaxLoginsPerSource: 4, LoginTimeout: 10 * time.Second})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	var conns []net.Conn
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	closedEarly := 0
	for range 20 {
		c, err := d.Dial("tcp", f.addr)
		if err != nil {
			t.Skipf("cannot dial from 127.0.0.2: %v", err)
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil && !isTimeout(err) {
			closedEarly++ // closed by the target, not a timeout
		}
	}
	if closedEarly < 16 {
		t.Fatalf("%d of 20 flood connections closed at once, want at least 16", closedEarly)
	}
	in := dial(t, f)
	start := time.Now()
	in.mustLogin()
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("login took %v during the flood", el)
	}
	if st := f.svc.Stats(); st.RefusedConns < 16 {
		t.Fatalf("stats %+v", st)
	}
}

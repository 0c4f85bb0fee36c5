package iscsi

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strconv"
	"strings"
)

// CHAPAlgorithm is a CHAP_A value (RFC 7143 12.1.3; RFC 1994 for MD5, the
// IANA "PPP Authentication Algorithms" registry for the others).
type CHAPAlgorithm uint8

// CHAP algorithms, by their CHAP_A numbers.
const (
	CHAPMD5     CHAPAlgorithm = 5
	CHAPSHA1    CHAPAlgorithm = 6
	CHAPSHA256  CHAPAlgorithm = 7
	CHAPSHA3256 CHAPAlgorithm = 8
)

// CHAPAlgorithms lists every supported algorithm, strongest first: the
// order in which the target prefers them.
var CHAPAlgorithms = []CHAPAlgorithm{CHAPSHA3256, CHAPSHA256, CHAPSHA1, CHAPMD5}

func (a CHAPAlgorithm) String() string {
	switch a {
	case CHAPMD5:
		return "MD5"
	case CHAPSHA1:
		return "SHA-1"
	case CHAPSHA256:
		return "SHA-256"
	case CHAPSHA3256:
		return "SHA3-256"
	}
	return "CHAP_A(" + strconv.Itoa(int(a)) + ")"
}

// ParseCHAPAlgorithm accepts a name ("MD5", "SHA-256", ...; any case, with
// or without the dash) or a CHAP_A number.
func ParseCHAPAlgorithm(s string) (CHAPAlgorithm, error) {
	norm := strings.ReplaceAll(strings.ToUpper(s), "-", "")
	for _, a := range CHAPAlgorithms {
		if norm == strings.ReplaceAll(a.String(), "-", "") || s == strconv.Itoa(int(a)) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("unknown CHAP algorithm %q (want MD5, SHA-1, SHA-256 or SHA3-256)", s)
}

func (a CHAPAlgorithm) newHash() hash.Hash {
	switch a {
	case CHAPMD5:
		return md5.New()
	case CHAPSHA1:
		return sha1.New()
	case CHAPSHA256:
		return sha256.New()
	case CHAPSHA3256:
		return sha3.New256()
	}
	return nil
}

// Size is the digest length, which is also the length of the challenges
// the target sends.
func (a CHAPAlgorithm) Size() int {
	if h := a.newHash(); h != nil {
		return h.Size()
	}
	return 0
}

// chapResponse computes H(identifier || secret || challenge), RFC 1994 4.1.
func chapResponse(a CHAPAlgorithm, id byte, secret, challenge []byte) []byte {
	h := a.newHash()
	h.Write([]byte{id})
	h.Write(secret)
	h.Write(challenge)
	return h.Sum(nil)
}

// Credentials are one CHAP name and secret. The secret never appears in
// formatted output or logs.
type Credentials struct {
	User   string
	Secret []byte
}

func (c Credentials) String() string { return "CHAP user " + strconv.Quote(c.User) }
func (c Credentials) GoString() string {
	return "iscsi.Credentials{User:" + strconv.Quote(c.User) + ", Secret:<redacted>}"
}

// LogValue keeps the secret out of structured logs.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON keeps it out of JSON.
func (c Credentials) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// AuthPolicy is what a login must prove, decided by the core per target
// and initiator (or for discovery).
type AuthPolicy struct {
	// CHAP is what the initiator must answer with; nil means no
	// authentication (AuthMethod=None).
	CHAP *Credentials
	// Mutual is what the target answers with when the initiator asks it
	// to authenticate itself; nil refuses mutual CHAP.
	Mutual *Credentials
	// Algorithms restricts CHAP_A; empty means every supported one.
	Algorithms []CHAPAlgorithm
}

// maxBinaryValue bounds a decoded CHAP_C or CHAP_R. RFC 7143 12.1.3 has
// no CHAP challenge longer than 1024 bytes.
const maxBinaryValue = 1024

// minInitiatorChallenge is the shortest challenge the target answers in
// mutual CHAP: a shorter one would let a peer collect responses to
// guessable challenges.
const minInitiatorChallenge = 16

// decodeBinary decodes an RFC 7143 6.1 binary-value: "0x" followed by
// hexadecimal digits (an odd count has an implied leading zero) or "0b"
// followed by base64 (RFC 4648, with padding).
func decodeBinary(s string) ([]byte, error) {
	if len(s) < 3 || s[0] != '0' {
		return nil, errors.New("binary value must start with 0x or 0b and not be empty")
	}
	body := s[2:]
	var out []byte
	var err error
	switch s[1] {
	case 'x', 'X':
		if len(body)%2 == 1 {
			body = "0" + body
		}
		if len(body)/2 > maxBinaryValue {
			return nil, fmt.Errorf("binary value longer than %d bytes", maxBinaryValue)
		}
		out, err = hex.DecodeString(body)
	case 'b', 'B':
		if base64.StdEncoding.DecodedLen(len(body)) > maxBinaryValue+2 {
			return nil, fmt.Errorf("binary value longer than %d bytes", maxBinaryValue)
		}
		out, err = base64.StdEncoding.Strict().DecodeString(body)
	default:
		return nil, errors.New("binary value must start with 0x or 0b")
	}
	if err != nil {
		return nil, fmt.Errorf("bad binary value: %v", err)
	}
	if len(out) == 0 || len(out) > maxBinaryValue {
		return nil, fmt.Errorf("binary value of %d bytes (want 1..%d)", len(out), maxBinaryValue)
	}
	return out, nil
}

// encodeBinary is the hexadecimal form, which every initiator reads.
func encodeBinary(b []byte) string { return "0x" + hex.EncodeToString(b) }

// parseCHAPIdentifier reads CHAP_I: one octet (RFC 1994), given as a
// decimal or 0x hexadecimal number (RFC 7143 6.1 numerical values).
func parseCHAPIdentifier(s string) (byte, error) {
	var n uint64
	var err error
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		n, err = strconv.ParseUint(s[2:], 16, 8)
	} else {
		n, err = strconv.ParseUint(s, 10, 8)
	}
	if err != nil {
		return 0, fmt.Errorf("CHAP_I %q is not a number from 0 to 255", s)
	}
	return byte(n), nil
}

// chooseCHAPAlgorithm picks, from the initiator's CHAP_A list, the strongest
// algorithm that allowed also holds (all when empty). Values it does not
// know are ignored, as RFC 7143 6.2 lets a list hold unknown values.
func chooseCHAPAlgorithm(offer string, allowed []CHAPAlgorithm) (CHAPAlgorithm, bool) {
	if len(allowed) == 0 {
		allowed = CHAPAlgorithms
	}
	offered := map[CHAPAlgorithm]bool{}
	for _, v := range strings.Split(offer, ",") {
		n, err := strconv.ParseUint(v, 10, 8)
		if err == nil {
			offered[CHAPAlgorithm(n)] = true
		}
	}
	for _, a := range CHAPAlgorithms {
		if offered[a] && containsAlg(allowed, a) {
			return a, true
		}
	}
	return 0, false
}

func containsAlg(list []CHAPAlgorithm, a CHAPAlgorithm) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// chapPhase is where a CHAP exchange stands (RFC 7143 12.1.3).
type chapPhase uint8

const (
	chapWaitAlgorithm chapPhase = iota // AuthMethod=CHAP chosen; expecting CHAP_A
	chapWaitResponse                   // challenge sent; expecting CHAP_N and CHAP_R
	chapDone                           // the initiator is authenticated
)

// chapExchange is the target side of one CHAP exchange. Owned by the
// connection's goroutine during login.
type chapExchange struct {
	policy    AuthPolicy
	phase     chapPhase
	alg       CHAPAlgorithm
	id        byte
	challenge []byte // nil once a response was checked: never accepted twice
}

// authFailure is the login status for every CHAP failure (RFC 7143
// 11.13.5: 0201 authentication failure). The reason is for the log only and
// never holds a secret.
func authFailure(format string, args ...any) *LoginError {
	return loginErrorf(loginClassInitiatorErr, loginDetailAuthFailure, format, args...)
}

// step consumes the CHAP keys of one login request and returns the
// target's CHAP keys for the response.
func (x *chapExchange) step(keys map[string]string) ([]KeyValue, error) {
	switch x.phase {
	case chapWaitAlgorithm:
		offer, ok := keys["CHAP_A"]
		if !ok {
			if len(keys) > 0 {
				return nil, authFailure("CHAP keys before CHAP_A")
			}
			return nil, nil // nothing yet; the initiator may send CHAP_A next
		}
		if len(keys) != 1 {
			return nil, authFailure("CHAP_A sent with other CHAP keys")
		}
		alg, ok := chooseCHAPAlgorithm(offer, x.policy.Algorithms)
		if !ok {
			return nil, authFailure("no acceptable CHAP algorithm in CHAP_A=%q", offer)
		}
		var idb [1]byte
		x.challenge = make([]byte, alg.Size())
		if _, err := rand.Read(idb[:]); err != nil {
			return nil, loginErrorf(loginClassTargetErr, loginDetailTargetError, "random: %v", err)
		}
		if _, err := rand.Read(x.challenge); err != nil {
			return nil, loginErrorf(loginClassTargetErr, loginDetailTargetError, "random: %v", err)
		}
		x.alg, x.id, x.phase = alg, idb[0], chapWaitResponse
		return []KeyValue{
			{Key: "CHAP_A", Value: strconv.Itoa(int(alg))},
			{Key: "CHAP_I", Value: strconv.Itoa(int(x.id))},
			{Key: "CHAP_C", Value: encodeBinary(x.challenge)},
		}, nil

	case chapWaitResponse:
		if len(keys) == 0 {
			return nil, nil
		}
		name, hasN := keys["CHAP_N"]
		resp, hasR := keys["CHAP_R"]
		if !hasN || !hasR {
			return nil, authFailure("CHAP_N and CHAP_R must come together")
		}
		for k := range keys {
			switch k {
			case "CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C":
			default:
				return nil, authFailure("unexpected %s with the CHAP response", k)
			}
		}
		challenge := x.challenge
		x.challenge = nil // one response per challenge, right or wrong
		if challenge == nil {
			return nil, authFailure("CHAP challenge already used")
		}
		got, err := decodeBinary(resp)
		if err != nil {
			return nil, authFailure("CHAP_R: %v", err)
		}
		want := chapResponse(x.alg, x.id, x.policy.CHAP.Secret, challenge)
		userOK := subtle.ConstantTimeCompare([]byte(name), []byte(x.policy.CHAP.User))
		respOK := subtle.ConstantTimeCompare(got, want)
		if userOK&respOK != 1 {
			return nil, authFailure("wrong CHAP name or response for user %q", name)
		}

		idStr, hasI := keys["CHAP_I"]
		chalStr, hasC := keys["CHAP_C"]
		if !hasI && !hasC {
			x.phase = chapDone
			return nil, nil
		}
		// Mutual CHAP: the initiator challenges the target.
		if !hasI || !hasC {
			return nil, authFailure("mutual CHAP needs both CHAP_I and CHAP_C")
		}
		if x.policy.Mutual == nil {
			return nil, authFailure("initiator asks for mutual CHAP, which is not configured")
		}
		id, err := parseCHAPIdentifier(idStr)
		if err != nil {
			return nil, authFailure("%v", err)
		}
		theirs, err := decodeBinary(chalStr)
		if err != nil {
			return nil, authFailure("CHAP_C: %v", err)
		}
		if len(theirs) < minInitiatorChallenge {
			return nil, authFailure("mutual CHAP challenge of %d bytes is shorter than %d", len(theirs), minInitiatorChallenge)
		}
		// RFC 7143 12.1.3: a target must not answer a challenge equal to its
		// own (a reflection attack would make it compute the response).
		if subtle.ConstantTimeCompare(theirs, challenge) == 1 {
			return nil, authFailure("mutual CHAP challenge reflects the target's")
		}
		x.phase = chapDone
		return []KeyValue{
			{Key: "CHAP_N", Value: x.policy.Mutual.User},
			{Key: "CHAP_R", Value: encodeBinary(chapResponse(x.alg, id, x.policy.Mutual.Secret, theirs))},
		}, nil
	}
	return nil, authFailure("CHAP keys after authentication finished")
}

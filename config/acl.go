package config

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Secret is a CHAP secret. It never shows in formatted output, logs or
// errors; Reveal gives the bytes to the code that computes CHAP responses.
type Secret string

func (Secret) String() string   { return "<redacted>" }
func (Secret) GoString() string { return "<redacted>" }

// LogValue and MarshalJSON keep it out of slog's JSON handler
// (log_format = "json") and of JSON output (blockport status --json).
func (Secret) LogValue() slog.Value         { return slog.StringValue("<redacted>") }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"<redacted>"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte("<redacted>"), nil }

// Reveal returns the secret's bytes.
func (s Secret) Reveal() []byte { return []byte(s) }

// CHAP is one CHAP name and secret: chap = { user = "...", secret = "..." }
// or secret_file = "/path" (a file only its owner may read; one trailing
// newline is ignored). Validate loads secret_file into Secret.
type CHAP struct {
	User       string
	Secret     Secret
	SecretFile string
}

// ACL is one [[target.acl]] entry: an initiator allowed to log in, what it
// sees and what it must prove.
type ACL struct {
	Initiator string // iSCSI name of the initiator
	// LUNs it sees; nil (the key left out) means every LUN of the target
	// under its own number, an empty list none.
	LUNs       []ACLLUN
	CHAP       *CHAP // overrides the target's chap for this initiator
	MutualCHAP *CHAP // overrides the target's mutual_chap
	// Portals are the source networks it may connect from; empty: any.
	Portals []netip.Prefix
}

// ACLLUN maps one LUN of the target for an ACL: luns = [0, 1] or
// luns = [{ lun = 0, as = 1, read_only = true }].
type ACLLUN struct {
	LUN      uint64 // the target's LUN
	As       uint64 // the number the initiator sees; defaults to LUN
	ReadOnly bool   // writes answer DATA PROTECT
}

// Discovery holds the settings of discovery sessions ([discovery]).
type Discovery struct {
	CHAP           *CHAP    // required of discovery sessions when set
	MutualCHAP     *CHAP    // the target's answer to mutual CHAP
	CHAPAlgorithms []string // restricts CHAP_A; empty: all
}

// Limits bounds what initiators may use ([limits]). Zero values are
// replaced by the defaults at decode time.
type Limits struct {
	MaxSessionsPerTarget     int           // normal sessions of one target
	MaxConnections           int           // connections of the whole server
	MaxLoginsPerSource       int           // connections of one source address still logging in
	MaxConnectionsPerSource  int           // connections of one source address, any phase
	QueueDepth               uint32        // outstanding commands per session (CmdSN window)
	MaxRecvDataSegmentLength uint32        // bytes, 512..16777215
	MaxBurstLength           uint32        // bytes, 512..16777215
	FirstBurstLength         uint32        // bytes, 512..MaxBurstLength
	LoginTimeout             time.Duration // a connection that has not finished login is closed
	IdleTimeout              time.Duration // silence after which the target pings (NOP-In)
	NopTimeout               time.Duration // time an initiator has to answer a ping
}

// Defaults of [limits].
const (
	DefaultMaxSessionsPerTarget     = 1024
	DefaultMaxConnections           = 4096
	DefaultMaxLoginsPerSource       = 16
	DefaultMaxConnectionsPerSource  = 256
	DefaultQueueDepth               = 128
	DefaultMaxRecvDataSegmentLength = 262144
	DefaultMaxBurstLength           = 262144
	DefaultFirstBurstLength         = 65536
	DefaultLoginTimeout             = 15 * time.Second
	DefaultIdleTimeout              = 15 * time.Second
	DefaultNopTimeout               = 30 * time.Second

	// CHAP secrets: RFC 7143 12.1.3 asks for at least 96 random bits when
	// CHAP runs without IPsec, which Blockport does not provide.
	MinCHAPSecret = 12
	// MaxCHAPSecret and MaxCHAPUser keep values within a text key value.
	MaxCHAPSecret = 255
	MaxCHAPUser   = 255
	// maxDataSegment is the largest 24-bit data segment length.
	maxDataSegment = 1<<24 - 1
)

// CHAPAlgorithmNames are the values chap_algorithms accepts.
var CHAPAlgorithmNames = []string{"MD5", "SHA-1", "SHA-256", "SHA3-256"}

var (
	chapKeys      = []string{"user", "secret", "secret_file"}
	aclKeys       = []string{"initiator", "luns", "chap", "mutual_chap", "portals"}
	aclLUNKeys    = []string{"lun", "as", "read_only"}
	discoveryKeys = []string{"chap", "mutual_chap", "chap_algorithms"}
	limitsKeys    = []string{"max_sessions_per_target", "max_connections", "max_logins_per_source", "max_connections_per_source", "queue_depth",
		"max_recv_data_segment_length", "max_burst_length", "first_burst_length",
		"login_timeout", "idle_timeout", "nop_timeout"}
)

// DefaultLimits returns [limits] with every default.
func DefaultLimits() Limits {
	return Limits{
		MaxSessionsPerTarget:     DefaultMaxSessionsPerTarget,
		MaxConnections:           DefaultMaxConnections,
		MaxLoginsPerSource:       DefaultMaxLoginsPerSource,
		MaxConnectionsPerSource:  DefaultMaxConnectionsPerSource,
		QueueDepth:               DefaultQueueDepth,
		MaxRecvDataSegmentLength: DefaultMaxRecvDataSegmentLength,
		MaxBurstLength:           DefaultMaxBurstLength,
		FirstBurstLength:         DefaultFirstBurstLength,
		LoginTimeout:             DefaultLoginTimeout,
		IdleTimeout:              DefaultIdleTimeout,
		NopTimeout:               DefaultNopTimeout,
	}
}

// decodeAccess decodes [discovery] and [limits].
func decodeAccess(root table, c *Config, baseDir string) {
	c.Limits = DefaultLimits()
	if d, ok := root.sub("discovery", discoveryKeys); ok {
		d.checkUnknown()
		c.Discovery.CHAP = decodeCHAP(d, "chap", baseDir)
		c.Discovery.MutualCHAP = decodeCHAP(d, "mutual_chap", baseDir)
		d.stringList("chap_algorithms", &c.Discovery.CHAPAlgorithms)
	}
	if l, ok := root.sub("limits", limitsKeys); ok {
		l.checkUnknown()
		lim := &c.Limits
		l.intRange("max_sessions_per_target", 1, 1<<20, &lim.MaxSessionsPerTarget)
		l.intRange("max_connections", 1, 1<<20, &lim.MaxConnections)
		l.intRange("max_logins_per_source", 1, 1<<16, &lim.MaxLoginsPerSource)
		l.intRange("max_connections_per_source", 1, 1<<20, &lim.MaxConnectionsPerSource)
		l.uintRange("queue_depth", 1, 65535, &lim.QueueDepth)
		l.uintRange("max_recv_data_segment_length", 512, maxDataSegment, &lim.MaxRecvDataSegmentLength)
		l.uintRange("max_burst_length", 512, maxDataSegment, &lim.MaxBurstLength)
		l.uintRange("first_burst_length", 512, maxDataSegment, &lim.FirstBurstLength)
		l.duration("login_timeout", time.Second, time.Hour, &lim.LoginTimeout)
		l.duration("idle_timeout", time.Second, time.Hour, &lim.IdleTimeout)
		l.duration("nop_timeout", time.Second, time.Hour, &lim.NopTimeout)
	}
}

// decodeTargetAccess decodes the access keys of one [[target]].
func decodeTargetAccess(t table, target *Target, baseDir string) {
	target.CHAP = decodeCHAP(t, "chap", baseDir)
	target.MutualCHAP = decodeCHAP(t, "mutual_chap", baseDir)
	t.stringList("chap_algorithms", &target.CHAPAlgorithms)
	for _, at := range t.tables("acl", aclKeys) {
		target.ACLs = append(target.ACLs, decodeACL(at, baseDir))
	}
}

func decodeACL(t table, baseDir string) ACL {
	t.checkUnknown()
	var acl ACL
	if !t.str("initiator", &acl.Initiator) && !t.has("initiator") {
		t.r.add(t.key("initiator"), "missing: every ACL entry names an initiator, such as iqn.1991-05.com.microsoft:node1")
	}
	if v, ok := t.m["luns"]; ok {
		list, ok := v.([]any)
		if !ok {
			t.wrongType("luns", "an array of LUN numbers or { lun = N, as = M, read_only = true } tables")
		} else {
			acl.LUNs = []ACLLUN{}
			for i, e := range list {
				key := indexKey(t.key("luns"), i)
				switch e := e.(type) {
				case int64:
					if e < 0 || e > MaxLUN {
						t.r.add(key, "must be between 0 and %d, not %d", MaxLUN, e)
						continue
					}
					acl.LUNs = append(acl.LUNs, ACLLUN{LUN: uint64(e), As: uint64(e)})
				case map[string]any:
					lt := table{r: t.r, path: key, m: e, known: aclLUNKeys}
					lt.checkUnknown()
					var lun, as int64
					if !lt.integer("lun", &lun) {
						if !lt.has("lun") {
							t.r.add(lt.key("lun"), "missing: the target's LUN to show")
						}
						continue
					}
					as = lun
					lt.integer("as", &as)
					m := ACLLUN{}
					bad := false
					for _, f := range []struct {
						k string
						v int64
						d *uint64
					}{{"lun", lun, &m.LUN}, {"as", as, &m.As}} {
						if f.v < 0 || f.v > MaxLUN {
							t.r.add(lt.key(f.k), "must be between 0 and %d, not %d", MaxLUN, f.v)
							bad = true
						}
						*f.d = uint64(f.v)
					}
					lt.boolean("read_only", &m.ReadOnly)
					if !bad {
						acl.LUNs = append(acl.LUNs, m)
					}
				default:
					t.r.add(key, "must be a LUN number or a { lun = N, as = M, read_only = true } table, not %s", tomlType(e))
				}
			}
		}
	}
	acl.CHAP = decodeCHAP(t, "chap", baseDir)
	acl.MutualCHAP = decodeCHAP(t, "mutual_chap", baseDir)
	var portals []string
	if t.stringList("portals", &portals) {
		for i, p := range portals {
			pfx, err := parsePortal(p)
			if err != nil {
				t.r.add(indexKey(t.key("portals"), i), "%v", err)
				continue
			}
			acl.Portals = append(acl.Portals, pfx)
		}
	}
	return acl
}

// parsePortal accepts a CIDR prefix ("10.0.0.0/24") or a single address.
func parsePortal(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network such as \"10.0.0.0/24\"", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set; the network is %s", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither an IP address nor a network such as \"10.0.0.0/24\"", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// decodeCHAP reads an inline chap table; nil when the key is absent.
func decodeCHAP(t table, k string, baseDir string) *CHAP {
	ct, ok := t.sub(k, chapKeys)
	if !ok {
		return nil
	}
	ct.checkUnknown()
	c := &CHAP{}
	if !ct.str("user", &c.User) && !ct.has("user") {
		ct.r.add(ct.key("user"), "missing: CHAP needs a user name (CHAP_N)")
	}
	var secret string
	hasSecret := ct.str("secret", &secret)
	c.Secret = Secret(secret)
	if ct.str("secret_file", &c.SecretFile) {
		c.SecretFile = resolvePath(baseDir, c.SecretFile)
		if hasSecret {
			ct.r.add(ct.key("secret_file"), "give either secret or secret_file, not both")
		}
	} else if !hasSecret && !ct.has("secret") && !ct.has("secret_file") {
		ct.r.add(ct.key("secret"), "missing: give secret or secret_file")
	}
	return c
}

func (t table) intRange(k string, lo, hi int, dst *int) {
	var n int64
	if !t.integer(k, &n) {
		return
	}
	if n < int64(lo) || n > int64(hi) {
		t.r.add(t.key(k), "must be between %d and %d, not %d", lo, hi, n)
		return
	}
	*dst = int(n)
}

func (t table) uintRange(k string, lo, hi uint32, dst *uint32) {
	var n int64
	if !t.integer(k, &n) {
		return
	}
	if n < int64(lo) || n > int64(hi) {
		t.r.add(t.key(k), "must be between %d and %d, not %d", lo, hi, n)
		return
	}
	*dst = uint32(n)
}

// duration reads "15s"-style durations, or a number of seconds.
func (t table) duration(k string, lo, hi time.Duration, dst *time.Duration) {
	v, ok := t.m[k]
	if !ok {
		return
	}
	var d time.Duration
	switch v := v.(type) {
	case string:
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.r.add(t.key(k), "%q is not a duration such as \"15s\" or \"2m\"", v)
			return
		}
	case int64:
		if v < 0 || v > int64(hi/time.Second) {
			t.r.add(t.key(k), "must be between %v and %v, not %d seconds", lo, hi, v)
			return
		}
		d = time.Duration(v) * time.Second
	default:
		t.wrongType(k, `a duration such as "15s" or a number of seconds`)
		return
	}
	if d < lo || d > hi {
		t.r.add(t.key(k), "must be between %v and %v, not %v", lo, hi, d)
		return
	}
	*dst = d
}

// shortDuration reads a duration of 0..hi written with its unit ("50us"):
// a bare number would be seconds in the other duration keys, far beyond
// hi, so it is refused rather than guessed at.
func (t table) shortDuration(k string, hi time.Duration, dst *time.Duration) {
	v, ok := t.m[k]
	if !ok {
		return
	}
	s, isStr := v.(string)
	if !isStr {
		t.wrongType(k, fmt.Sprintf("a duration with its unit, such as \"50us\" (at most %v)", hi))
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.r.add(t.key(k), "%q is not a duration such as \"50us\"", s)
		return
	}
	if d < 0 || d > hi {
		t.r.add(t.key(k), "must be between 0 and %v, not %v", hi, d)
		return
	}
	*dst = d
}

// validateAccess checks ACLs, CHAP and limits. checkFiles loads secret
// files (and checks their permissions).
func validateAccess(c *Config, r *reporter, checkFiles bool) {
	validateCHAPPair(c.Discovery.CHAP, c.Discovery.MutualCHAP, "discovery", r, checkFiles)
	validateAlgorithms(c.Discovery.CHAPAlgorithms, "discovery.chap_algorithms", r)
	if c.Limits.FirstBurstLength > c.Limits.MaxBurstLength && c.Limits.MaxBurstLength != 0 {
		r.add("limits.first_burst_length", "%d is larger than max_burst_length %d (RFC 7143 13.14)",
			c.Limits.FirstBurstLength, c.Limits.MaxBurstLength)
	}
	for ti := range c.Targets {
		t := &c.Targets[ti]
		tkey := indexKey("target", ti)
		validateCHAPPair(t.CHAP, t.MutualCHAP, tkey, r, checkFiles)
		validateAlgorithms(t.CHAPAlgorithms, tkey+".chap_algorithms", r)
		luns := map[uint64]bool{}
		for _, l := range t.LUNs {
			luns[l.ID] = true
		}
		seen := map[string]string{}
		for ai := range t.ACLs {
			a := &t.ACLs[ai]
			akey := indexKey(tkey+".acl", ai)
			if err := ValidateName(a.Initiator); err != nil {
				r.add(akey+".initiator", "%v", err)
			} else if first, dup := seen[canonicalName(a.Initiator)]; dup {
				r.add(akey+".initiator", "initiator %q already has an ACL entry at %s", a.Initiator, r.where(first))
			} else {
				seen[canonicalName(a.Initiator)] = akey + ".initiator"
			}
			asUsed := map[uint64]int{}
			if r.reportedUnder(akey + ".luns[") {
				// Entries were dropped while decoding: indexes would not match.
				a = &ACL{Initiator: a.Initiator, CHAP: a.CHAP, MutualCHAP: a.MutualCHAP}
			}
			for li, m := range a.LUNs {
				lkey := indexKey(akey+".luns", li)
				if !luns[m.LUN] {
					r.add(lkey, "target has no LUN %d", m.LUN)
				}
				if first, dup := asUsed[m.As]; dup {
					r.add(lkey, "LUN number %d is already shown by luns[%d]", m.As, first)
				} else {
					asUsed[m.As] = li
				}
			}
			chap, mutual := a.CHAP, a.MutualCHAP
			if chap == nil {
				chap = t.CHAP
			}
			if mutual == nil {
				mutual = t.MutualCHAP
			}
			validateCHAP(a.CHAP, akey+".chap", r, checkFiles)
			validateCHAP(a.MutualCHAP, akey+".mutual_chap", r, checkFiles)
			checkMutual(chap, mutual, akey, r)
		}
	}
}

func validateCHAPPair(chap, mutual *CHAP, key string, r *reporter, checkFiles bool) {
	validateCHAP(chap, key+".chap", r, checkFiles)
	validateCHAP(mutual, key+".mutual_chap", r, checkFiles)
	checkMutual(chap, mutual, key, r)
}

// checkMutual applies RFC 7143 12.1.3: mutual CHAP needs one-way CHAP,
// and the two directions use different secrets.
func checkMutual(chap, mutual *CHAP, key string, r *reporter) {
	if mutual == nil {
		return
	}
	if chap == nil {
		r.add(key+".mutual_chap", "needs chap as well: the target answers only an initiator that authenticated")
		return
	}
	if chap.Secret != "" && chap.Secret == mutual.Secret {
		r.add(key+".mutual_chap", "uses the same secret as chap; RFC 7143 12.1.3 requires different secrets in each direction")
	}
}

func validateCHAP(c *CHAP, key string, r *reporter, checkFiles bool) {
	if c == nil {
		return
	}
	if c.User == "" {
		if !r.reported[key+".user"] {
			r.add(key+".user", "must not be empty")
		}
	} else if len(c.User) > MaxCHAPUser || !utf8.ValidString(c.User) || strings.ContainsFunc(c.User, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		r.add(key+".user", "must be at most %d bytes of printable UTF-8", MaxCHAPUser)
	}
	if c.SecretFile != "" && checkFiles {
		secret, err := readSecretFile(c.SecretFile)
		if err != nil {
			r.add(key+".secret_file", "%v", err)
			return
		}
		c.Secret = secret
	}
	if c.SecretFile != "" && c.Secret == "" {
		return // not loaded (no file checks)
	}
	where := "secret"
	if c.SecretFile != "" {
		where = "secret_file"
	}
	if n := len(c.Secret); n < MinCHAPSecret || n > MaxCHAPSecret {
		// The length only: the secret itself never appears in a message.
		r.add(key+"."+where, "CHAP secret is %d bytes; it must be %d to %d (RFC 7143 12.1.3: at least 96 bits)", n, MinCHAPSecret, MaxCHAPSecret)
	} else if strings.ContainsRune(string(c.Secret), 0) {
		r.add(key+"."+where, "CHAP secret must not contain NUL bytes")
	}
}

// readSecretFile loads a secret file that only its owner may access.
func readSecretFile(path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s is accessible by group or others (mode %04o); chmod 600 it", path, perm)
	}
	buf, err := io.ReadAll(io.LimitReader(f, MaxCHAPSecret+3))
	if err != nil {
		return "", err
	}
	if len(buf) > MaxCHAPSecret+2 {
		return "", fmt.Errorf("%s holds more than %d bytes", path, MaxCHAPSecret)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(buf), "\n"), "\r")
	return Secret(s), nil
}

func validateAlgorithms(names []string, key string, r *reporter) {
	for i, n := range names {
		if !slices.ContainsFunc(CHAPAlgorithmNames, func(a string) bool { return strings.EqualFold(a, n) }) {
			r.add(indexKey(key, i), "unknown CHAP algorithm %q; use %s", n, strings.Join(CHAPAlgorithmNames, ", "))
		}
	}
}

// reportedUnder reports whether a problem was reported for a key starting
// with prefix.
func (r *reporter) reportedUnder(prefix string) bool {
	for k := range r.reported {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

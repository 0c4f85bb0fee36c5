package isns

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Tag is an iSNS attribute tag (RFC 4171 6.1). Only the tags this client
// sends or reads have names; others pass through as numbers.
type Tag uint32

// Attribute tags (RFC 4171 6.1).
const (
	TagDelimiter          Tag = 0  // separates Message Key from Operating Attributes (5.6.3)
	TagEntityIdentifier   Tag = 1  // 6.2.1, string
	TagEntityProtocol     Tag = 2  // 6.2.2, uint32
	TagTimestamp          Tag = 4  // 6.2.4, 8 bytes
	TagRegistrationPeriod Tag = 6  // 6.2.6, uint32 seconds
	TagEntityIndex        Tag = 7  // 6.2.7, uint32
	TagPortalIPAddress    Tag = 16 // 6.3.1, 16-byte IPv6 or IPv4-mapped
	TagPortalPort         Tag = 17 // 6.3.2, uint32
	TagPortalSymbolicName Tag = 18 // 6.3.3, string
	TagESIInterval        Tag = 19 // 6.3.4, uint32 seconds
	TagESIPort            Tag = 20 // 6.3.5, uint32 like a portal port
	TagPortalIndex        Tag = 22 // 6.3.6
	TagSCNPort            Tag = 23 // 6.3.7
	TagISCSIName          Tag = 32 // 6.4.1, string
	TagISCSINodeType      Tag = 33 // 6.4.2, uint32 bitmap
	TagISCSIAlias         Tag = 34 // 6.4.3, string
	TagISCSISCNBitmap     Tag = 35 // 6.4.4
	TagISCSINodeIndex     Tag = 36 // 6.4.5
	TagPGISCSIName        Tag = 48 // 6.5.1, string
	TagPGPortalIPAddress  Tag = 49 // 6.5.2
	TagPGPortalPort       Tag = 50 // 6.5.3
	TagPGTag              Tag = 51 // 6.5.4, uint32; empty is a NULL PGT
	TagPGIndex            Tag = 52 // 6.5.5
	TagDDID               Tag = 2065
	TagDDSymbolicName     Tag = 2066
	TagDDMemberISCSIName  Tag = 2068
)

// Attribute values.
const (
	// EntityProtocolISCSI is the Entity Protocol of an iSCSI entity
	// (RFC 4171 6.2.2).
	EntityProtocolISCSI = 2
	// Node types, a bitmap (RFC 4171 6.4.2: bit 31 Target, 30 Initiator,
	// 29 Control, counting from the most significant bit 0).
	NodeTypeTarget    = 1 << 0
	NodeTypeInitiator = 1 << 1
	NodeTypeControl   = 1 << 2
	// portUDP marks a UDP port in a Portal TCP/UDP Port value (RFC 4171
	// 6.3.2: bit 15 of the 32-bit field); TCP when clear.
	portUDP = 1 << 16

	// Lengths of string values, NUL included (RFC 4171 6.1, 6.2.1, 6.4.1).
	maxISCSINameValue = 224
	maxEntityIDValue  = 256
	maxAliasValue     = 256
)

type valueKind uint8

const (
	kindOpaque valueKind = iota
	kindString
	kindUint32
	kindUint64
	kindIP
	kindPort
)

var tagInfo = map[Tag]struct {
	name string
	kind valueKind
}{
	TagDelimiter:          {"Delimiter", kindOpaque},
	TagEntityIdentifier:   {"Entity Identifier", kindString},
	TagEntityProtocol:     {"Entity Protocol", kindUint32},
	TagTimestamp:          {"Timestamp", kindUint64},
	TagRegistrationPeriod: {"Registration Period", kindUint32},
	TagEntityIndex:        {"Entity Index", kindUint32},
	TagPortalIPAddress:    {"Portal IP Address", kindIP},
	TagPortalPort:         {"Portal TCP/UDP Port", kindPort},
	TagPortalSymbolicName: {"Portal Symbolic Name", kindString},
	TagESIInterval:        {"ESI Interval", kindUint32},
	TagESIPort:            {"ESI Port", kindPort},
	TagPortalIndex:        {"Portal Index", kindUint32},
	TagSCNPort:            {"SCN Port", kindPort},
	TagISCSIName:          {"iSCSI Name", kindString},
	TagISCSINodeType:      {"iSCSI Node Type", kindUint32},
	TagISCSIAlias:         {"Alias", kindString},
	TagISCSISCNBitmap:     {"iSCSI SCN Bitmap", kindUint32},
	TagISCSINodeIndex:     {"iSCSI Node Index", kindUint32},
	TagPGISCSIName:        {"PG iSCSI Name", kindString},
	TagPGPortalIPAddress:  {"PG Portal IP Addr", kindIP},
	TagPGPortalPort:       {"PG Portal TCP/UDP Port", kindPort},
	TagPGTag:              {"PG Tag", kindUint32},
	TagPGIndex:            {"PG Index", kindUint32},
	TagDDID:               {"DD_ID", kindUint32},
	TagDDSymbolicName:     {"DD Symbolic Name", kindString},
	TagDDMemberISCSIName:  {"DD Member iSCSI Name", kindString},
}

func (t Tag) String() string {
	if info, ok := tagInfo[t]; ok {
		return info.name
	}
	return fmt.Sprintf("tag %d", uint32(t))
}

// Attribute is one TLV (RFC 4171 5.3). Value holds the value as sent,
// padding included; an empty Value is a zero-length (NIL) attribute, as
// used for the Delimiter, query keys that match anything, and requested
// Operating Attributes.
type Attribute struct {
	Tag   Tag
	Value []byte
}

// attrHeaderLen is the tag and length in front of every value.
const attrHeaderLen = 8

// Nil is a zero-length attribute.
func Nil(tag Tag) Attribute { return Attribute{Tag: tag} }

// Delimiter ends the Message Key (RFC 4171 5.6.3).
func Delimiter() Attribute { return Nil(TagDelimiter) }

// String is a string attribute: UTF-8, NUL-terminated and padded with
// NULs to a multiple of 4 bytes (RFC 4171 5.3.1, 6.1).
func String(tag Tag, s string) Attribute {
	n := (len(s) + 1 + 3) &^ 3
	v := make([]byte, n)
	copy(v, s)
	return Attribute{Tag: tag, Value: v}
}

// Uint32 is a 4-byte integer attribute.
func Uint32(tag Tag, v uint32) Attribute {
	return Attribute{Tag: tag, Value: binary.BigEndian.AppendUint32(nil, v)}
}

// IP is an address attribute: 16 bytes, an IPv4 address as IPv4-mapped
// IPv6 (RFC 4171 6.3.1).
func IP(tag Tag, a netip.Addr) Attribute {
	v := a.Unmap().As16() // As16 maps IPv4 to ::ffff:a.b.c.d
	return Attribute{Tag: tag, Value: v[:]}
}

// TCPPort is a TCP port attribute: the port in the low 16 bits, the UDP
// bit clear (RFC 4171 6.3.2).
func TCPPort(tag Tag, port uint16) Attribute { return Uint32(tag, uint32(port)) }

// Len is the encoded size of the attribute.
func (a Attribute) Len() int { return attrHeaderLen + len(a.Value) }

// AppendAttribute appends a's TLV to dst. A value whose length is not a
// multiple of 4 is padded with zeros.
func AppendAttribute(dst []byte, a Attribute) []byte {
	n := (len(a.Value) + 3) &^ 3
	dst = binary.BigEndian.AppendUint32(dst, uint32(a.Tag))
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, a.Value...)
	for i := len(a.Value); i < n; i++ {
		dst = append(dst, 0)
	}
	return dst
}

// ParseAttributes decodes a list of TLVs that fills b exactly. Values
// alias b. A length that is not a multiple of 4 or runs past the end is a
// *ProtocolError (RFC 4171 5.3.1: values are padded to 4-byte boundaries).
func ParseAttributes(b []byte) ([]Attribute, error) {
	var out []Attribute
	for len(b) > 0 {
		if len(b) < attrHeaderLen {
			return nil, protocolErrorf("%d bytes after the last attribute, too few for a tag and length", len(b))
		}
		tag := Tag(binary.BigEndian.Uint32(b[0:]))
		n := binary.BigEndian.Uint32(b[4:])
		if n%4 != 0 {
			return nil, protocolErrorf("%v attribute length %d is not a multiple of 4", tag, n)
		}
		if uint64(n) > uint64(len(b)-attrHeaderLen) {
			return nil, protocolErrorf("%v attribute length %d, but only %d bytes follow", tag, n, len(b)-attrHeaderLen)
		}
		end := attrHeaderLen + int(n)
		out = append(out, Attribute{Tag: tag, Value: b[attrHeaderLen:end:end]})
		b = b[end:]
	}
	return out, nil
}

// IsNil reports whether a has a zero-length value.
func (a Attribute) IsNil() bool { return len(a.Value) == 0 }

// Str decodes a string value: the bytes before the first NUL, which must
// be there, as valid UTF-8.
func (a Attribute) Str() (string, error) {
	i := strings.IndexByte(string(a.Value), 0)
	if i < 0 {
		return "", protocolErrorf("%v value is not NUL-terminated", a.Tag)
	}
	s := string(a.Value[:i])
	if !utf8.ValidString(s) {
		return "", protocolErrorf("%v value is not UTF-8", a.Tag)
	}
	return s, nil
}

// Uint32 decodes a 4-byte integer value.
func (a Attribute) Uint32() (uint32, error) {
	if len(a.Value) != 4 {
		return 0, protocolErrorf("%v value is %d bytes, want 4", a.Tag, len(a.Value))
	}
	return binary.BigEndian.Uint32(a.Value), nil
}

// Uint64 decodes an 8-byte integer value.
func (a Attribute) Uint64() (uint64, error) {
	if len(a.Value) != 8 {
		return 0, protocolErrorf("%v value is %d bytes, want 8", a.Tag, len(a.Value))
	}
	return binary.BigEndian.Uint64(a.Value), nil
}

// IP decodes a 16-byte address value; an IPv4-mapped one becomes IPv4.
func (a Attribute) IP() (netip.Addr, error) {
	if len(a.Value) != 16 {
		return netip.Addr{}, protocolErrorf("%v value is %d bytes, want 16", a.Tag, len(a.Value))
	}
	return netip.AddrFrom16([16]byte(a.Value)).Unmap(), nil
}

// Port decodes a TCP/UDP port value (RFC 4171 6.3.2).
func (a Attribute) Port() (port uint16, udp bool, err error) {
	v, err := a.Uint32()
	if err != nil {
		return 0, false, err
	}
	return uint16(v), v&portUDP != 0, nil
}

// String formats a for logs and test failures: "iSCSI Name=\"iqn...\"".
func (a Attribute) String() string {
	if a.IsNil() {
		return a.Tag.String() + "=<nil>"
	}
	var v string
	switch tagInfo[a.Tag].kind {
	case kindString:
		if s, err := a.Str(); err == nil {
			v = fmt.Sprintf("%q", s)
		}
	case kindUint32:
		if n, err := a.Uint32(); err == nil {
			v = fmt.Sprint(n)
		}
	case kindUint64:
		if n, err := a.Uint64(); err == nil {
			v = fmt.Sprint(n)
		}
	case kindIP:
		if ip, err := a.IP(); err == nil {
			v = ip.String()
		}
	case kindPort:
		if p, udp, err := a.Port(); err == nil {
			v = fmt.Sprintf("%d/tcp", p)
			if udp {
				v = fmt.Sprintf("%d/udp", p)
			}
		}
	}
	if v == "" {
		v = fmt.Sprintf("%x", a.Value)
	}
	return a.Tag.String() + "=" + v
}

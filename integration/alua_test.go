package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/blockport/blockport/internal/iscsitest"
)

const aluaIQN = "iqn.2026-11.io.blockport:alua"

// aluaConfig serves one memory LUN through two portal groups: tag 1
// (active/optimized) on addrs[0] and tag 2 (standby) on addrs[1].
func aluaConfig(addrs []string) string {
	return fmt.Sprintf(`[server]
listen = [%q, %q]
state_dir = "{{DIR}}/state"

[[target]]
name = %q
allow_any_initiator = true
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "16MiB"
  [[target.portal_group]]
  tag = 1
  addresses = [%q]
  [[target.portal_group]]
  tag = 2
  addresses = [%q]
  alua_state = "standby"
`, addrs[0], addrs[1], aluaIQN, addrs[0], addrs[1])
}

func rtpg(c *iscsitest.Client) (iscsitest.Result, error) {
	return c.Command([]byte{0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0}, 1024, nil)
}

// portGroupStates decodes REPORT TARGET PORT GROUPS data into group ->
// state and checks each group's one port has the group's number.
func portGroupStates(t *testing.T, data []byte) map[uint16]byte {
	t.Helper()
	if len(data) < 4 || int(binary.BigEndian.Uint32(data))+4 != len(data) {
		t.Fatalf("RTPG data % x", data)
	}
	states := map[uint16]byte{}
	for b := data[4:]; len(b) > 0; {
		if len(b) < 8 || len(b) < 8+4*int(b[7]) {
			t.Fatalf("truncated descriptor % x", b)
		}
		id := binary.BigEndian.Uint16(b[2:4])
		if b[7] != 1 || binary.BigEndian.Uint16(b[10:12]) != id {
			t.Fatalf("group %d ports % x", id, b[8:8+4*int(b[7])])
		}
		states[id] = b[0] & 0x0F
		b = b[8+4*int(b[7]):]
	}
	return states
}

// consumeUA runs REPORT TARGET PORT GROUPS (allowed in every access state)
// until it is GOOD and returns the unit attentions it reported.
func consumeUA(t *testing.T, c *iscsitest.Client) [][3]byte {
	t.Helper()
	var uas [][3]byte
	for range 10 {
		r, err := rtpg(c)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == statusGood {
			return uas
		}
		k, asc, ascq := r.SenseKey()
		if k != 0x6 {
			t.Fatalf("RTPG: status %#x sense %x/%x/%x", r.Status, k, asc, ascq)
		}
		uas = append(uas, [3]byte{k, asc, ascq})
	}
	t.Fatal("unit attentions do not clear")
	return nil
}

func checkSense(t *testing.T, what string, r iscsitest.Result, err error, key, asc, ascq byte) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if k, a, q := r.SenseKey(); r.Status != statusCheck || k != key || a != asc || q != ascq {
		t.Fatalf("%s: status %#x sense %x/%02x/%02x, want %x/%02x/%02x", what, r.Status, k, a, q, key, asc, ascq)
	}
}

// relativePort finds the relative target port designator of VPD 0x83.
func relativePort(t *testing.T, page []byte) (lu []byte, port uint16) {
	t.Helper()
	body := page[4:]
	for len(body) >= 4 {
		l := int(body[3])
		d := body[:4+l]
		switch assoc, typ := d[1]>>4&3, d[1]&0x0F; {
		case assoc == 0 && typ == 3:
			lu = d[4:]
		case assoc == 1 && typ == 4:
			port = binary.BigEndian.Uint16(d[6:8])
		}
		body = body[4+l:]
	}
	if lu == nil || port == 0 {
		t.Fatalf("VPD 0x83 without NAA or relative port: % x", page)
	}
	return lu, port
}

// TestALUAPortalGroups: two portal groups, active/optimized and standby,
// seen through both with real initiators and our own.
func TestALUAPortalGroups(t *testing.T) {
	addrs := StartPortals(t, 2, aluaConfig)

	// SendTargets (libiscsi's iscsi-ls) lists both portals with their tags.
	out, err := exec.Command(Tool(t, "iscsi-ls"), "iscsi://"+addrs[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
	for i, a := range addrs {
		if want := fmt.Sprintf("Portal:%s,%d", a, i+1); !strings.Contains(string(out), want) {
			t.Fatalf("iscsi-ls output lacks %q:\n%s", want, out)
		}
	}

	// libiscsi parses VPD 0x83 with the target port designators. (Its
	// tools cannot log in through the standby portal: they run TEST UNIT
	// READY after login and give up on NOT READY.)
	out, err = exec.Command(Tool(t, "iscsi-inq"), "-e", "1", "-c", "131", "iscsi://"+addrs[0]+"/"+aluaIQN+"/0").CombinedOutput()
	if err != nil {
		t.Fatalf("iscsi-inq VPD 0x83: %v\n%s", err, out)
	}
	for _, want := range []string{"RELATIVE_TARGET_PORT", "TARGET_PORT_GROUP", "[" + aluaIQN + ",t,0x0001]", "[" + aluaIQN + "]"} {
		if !strings.Contains(strings.ToLower(string(out)), strings.ToLower(want)) {
			t.Fatalf("iscsi-inq VPD 0x83 lacks %q:\n%s", want, out)
		}
	}

	a, err := iscsitest.Dial(addrs[0], "iqn.2026-11.io.blockport:node-a", aluaIQN, [6]byte{0x80, 0, 0, 0, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := iscsitest.Dial(addrs[1], "iqn.2026-11.io.blockport:node-b", aluaIQN, [6]byte{0x80, 0, 0, 0, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	consumeUA(t, a)
	consumeUA(t, b)

	// REPORT TARGET PORT GROUPS through either portal shows both groups.
	for _, c := range []*iscsitest.Client{a, b} {
		r, err := rtpg(c)
		if err != nil || r.Status != statusGood {
			t.Fatalf("RTPG: %v %#x", err, r.Status)
		}
		if s := portGroupStates(t, r.Data); len(s) != 2 || s[1] != 0 || s[2] != 2 {
			t.Fatalf("groups %v, want 1 active/optimized and 2 standby", s)
		}
	}

	// VPD 0x83: one LU designator, a relative port per portal group.
	var luIDs [2][]byte
	for i, c := range []*iscsitest.Client{a, b} {
		r, err := c.Command([]byte{0x12, 1, 0x83, 0x04, 0, 0}, 1024, nil)
		if err != nil || r.Status != statusGood {
			t.Fatalf("VPD 0x83: %v %#x", err, r.Status)
		}
		lu, port := relativePort(t, r.Data)
		if port != uint16(i+1) {
			t.Fatalf("relative target port %d through portal group %d", port, i+1)
		}
		luIDs[i] = lu
	}
	if !bytes.Equal(luIDs[0], luIDs[1]) {
		t.Fatalf("NAA differs: % x vs % x", luIDs[0], luIDs[1])
	}
	// VPD 0x80 too (INQUIRY runs through a standby port).
	var serials [2][]byte
	for i, c := range []*iscsitest.Client{a, b} {
		r, err := c.Command([]byte{0x12, 1, 0x80, 0x01, 0, 0}, 256, nil)
		if err != nil || r.Status != statusGood || len(r.Data) <= 4 {
			t.Fatalf("VPD 0x80: %v %#x", err, r.Status)
		}
		serials[i] = r.Data
	}
	if !bytes.Equal(serials[0], serials[1]) {
		t.Fatalf("VPD 0x80 differs: %q vs %q", serials[0], serials[1])
	}

	// I/O: the active portal reads, the standby one gets 04h/0Bh.
	if r, err := read10(a, 0, 1); err != nil || r.Status != statusGood {
		t.Fatalf("READ through the active portal: %v %#x", err, r.Status)
	}
	r, err := read10(b, 0, 1)
	checkSense(t, "READ through the standby portal", r, err, 0x2, 0x04, 0x0B)

	// SET TARGET PORT GROUPS through the standby portal swaps the states.
	param := []byte{0, 0, 0, 0, 0x02, 0, 0, 1, 0x00, 0, 0, 2}
	r, err = b.Command([]byte{0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, byte(len(param)), 0, 0}, uint32(len(param)), param)
	if err != nil || r.Status != statusGood {
		t.Fatalf("SET TARGET PORT GROUPS: %v status %#x sense % x", err, r.Status, r.Sense)
	}
	// The other nexus is told: ASYMMETRIC ACCESS STATE CHANGED.
	r, err = read10(a, 0, 1)
	checkSense(t, "first command after the change", r, err, 0x6, 0x2A, 0x06)
	r, err = read10(a, 0, 1)
	checkSense(t, "READ through the now standby portal", r, err, 0x2, 0x04, 0x0B)
	if r, err := read10(b, 0, 1); err != nil || r.Status != statusGood {
		t.Fatalf("READ through the now active portal: %v %#x % x", err, r.Status, r.Sense)
	}
	r, err = rtpg(a)
	if err != nil || r.Status != statusGood {
		t.Fatalf("RTPG: %v %#x", err, r.Status)
	}
	if s := portGroupStates(t, r.Data); s[1] != 2 || s[2] != 0 {
		t.Fatalf("groups after SET TARGET PORT GROUPS %v", s)
	}
}

// TestPortalGroupLoginRestriction: a target is reached only through the
// portals of its groups; the server refuses a group naming an address it
// does not listen on with file:line:key.
func TestPortalGroupLoginRestriction(t *testing.T) {
	addrs := StartPortals(t, 2, func(addrs []string) string {
		return fmt.Sprintf(`[server]
listen = [%q, %q]
state_dir = "{{DIR}}/state"
[[target]]
name = %q
allow_any_initiator = true
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "16MiB"
  [[target.portal_group]]
  tag = 5
  addresses = [%q]
`, addrs[0], addrs[1], aluaIQN, addrs[1])
	})
	if _, err := iscsitest.Dial(addrs[0], "iqn.2026-11.io.blockport:node-a", aluaIQN, [6]byte{0x80, 0, 0, 0, 0, 1}); err == nil {
		t.Fatal("login through a portal outside the target's portal groups succeeded")
	}
	c, err := iscsitest.Dial(addrs[1], "iqn.2026-11.io.blockport:node-a", aluaIQN, [6]byte{0x80, 0, 0, 0, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	out, err := exec.Command(Tool(t, "iscsi-ls"), "iscsi://"+addrs[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Portal:"+addrs[1]+",5") || strings.Contains(string(out), "Portal:"+addrs[0]) {
		t.Fatalf("SendTargets should list only %s,5:\n%s", addrs[1], out)
	}

	dir := TempDir(t)
	cfg := dir + "/bad.toml"
	bad := strings.Replace(aluaConfig([]string{"127.0.0.1:3260", "127.0.0.1:3261"}), `addresses = ["127.0.0.1:3261"]`, `addresses = ["127.0.0.9:3261"]`, 1)
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(bad, "{{DIR}}", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(Binary(t), "validate", "--config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "bad.toml:17: target[0].portal_group[1].addresses[0]") {
		t.Fatalf("validate: %v\n%s", err, out)
	}
}

package integration

import (
	"fmt"
	"github.com/blockport/blockport/internal/iscsitest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Access control with real initiators: CHAP (one-way and mutual) and LUN
// masking, checked with libiscsi's tools.

const (
	aclIQN         = "iqn.2026-11.io.blockport:acl"
	node1          = "iqn.2026-11.io.blockport:node1"
	node2          = "iqn.2026-11.io.blockport:node2"
	node3          = "iqn.2026-11.io.blockport:node3"
	node1Secret    = "node1-secret-0123"
	targetSecret   = "target-secret-4567"
	accessToolTime = 30 * time.Second
)

// accessConfig: node1 needs CHAP (secret from a file) and may ask for
// mutual CHAP, and sees LUNs 0 and 1; node2 needs nothing and sees LUN 2
// as LUN 0, read-only; nobody else may log in.
func accessConfig(t *testing.T) string {
	secretDir := t.TempDir()
	secretFile := filepath.Join(secretDir, "node1.secret")
	if err := os.WriteFile(secretFile, []byte(node1Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`[server]
listen = ["127.0.0.1:3260"]
state_dir = "{{DIR}}/state"

[[target]]
name = %q
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "8MiB"
  [[target.lun]]
  lun = 1
  backstore = "memory"
  size = "16MiB"
  [[target.lun]]
  lun = 2
  backstore = "memory"
  size = "32MiB"

  [[target.acl]]
  initiator = %q
  luns = [0, 1]
  chap = { user = "node1", secret_file = %q }
  mutual_chap = { user = "san", secret = %q }

  [[target.acl]]
  initiator = %q
  luns = [{ lun = 2, as = 0, read_only = true }]
`, aclIQN, node1, secretFile, targetSecret, node2)
}

func TestCHAPWithLibiscsi(t *testing.T) {
	inq := Tool(t, "iscsi-inq")
	srv := StartServer(t, accessConfig(t))
	url := func(cred string, lun int) string {
		return fmt.Sprintf("iscsi://%s@%s/%s/%d", cred, srv.Addr, aclIQN, lun)
	}

	// Right credentials log in.
	if res := Run(t, accessToolTime, inq, "-i", node1, url("node1%"+node1Secret, 0)); res.Err != nil {
		t.Fatalf("right CHAP credentials: %v\n%s", res.Err, res.Output)
	}
	// A wrong secret, a wrong user and no credentials fail with
	// authentication failure (login status 0201).
	for _, cred := range []string{"node1%wrong-secret-0000", "node9%" + node1Secret} {
		res := Run(t, accessToolTime, inq, "-i", node1, url(cred, 0))
		if res.Err == nil || !strings.Contains(res.Output, "Authentication failure") {
			t.Fatalf("credentials %q: exit %v, want authentication failure:\n%s", cred, res.Err, res.Output)
		}
	}
	res := Run(t, accessToolTime, inq, "-i", node1, fmt.Sprintf("iscsi://%s/%s/0", srv.Addr, aclIQN))
	if res.Err == nil || !strings.Contains(res.Output, "Authentication failure") {
		t.Fatalf("no credentials: exit %v, want authentication failure:\n%s", res.Err, res.Output)
	}
	// An initiator with no ACL entry: authorization failure (0202).
	res = Run(t, accessToolTime, inq, "-i", node3, fmt.Sprintf("iscsi://%s/%s/0", srv.Addr, aclIQN))
	if res.Err == nil || !strings.Contains(res.Output, "Authorization failure") {
		t.Fatalf("unknown initiator: exit %v, want authorization failure:\n%s", res.Err, res.Output)
	}
	// Each failure is logged once with who tried, where and the result.
	for _, want := range []string{
		"initiator=" + node1 + " target=" + aclIQN + " result=authentication_failure",
		"initiator=" + node3 + " target=" + aclIQN + " result=authorization_failure",
	} {
		if !srv.WaitOutput(want, 5*time.Second) {
			t.Errorf("the server log has no failed login line with %q:\n%s", want, srv.Output())
		}
	}

	// Mutual CHAP: the initiator checks the target's answer.
	mutual := func(password string) Result {
		cmd, cancel := Command(accessToolTime, inq, "-i", node1, url("node1%"+node1Secret, 1))
		defer cancel()
		cmd.Env = append(os.Environ(), "LIBISCSI_CHAP_TARGET_USERNAME=san", "LIBISCSI_CHAP_TARGET_PASSWORD="+password)
		out, err := cmd.CombinedOutput()
		return Result{Cmdline: cmd.String(), Output: string(out), Err: err}
	}
	if res := mutual(targetSecret); res.Err != nil {
		t.Fatalf("mutual CHAP: %v\n%s", res.Err, res.Output)
	}
	if res := mutual("not-the-target-secret"); res.Err == nil || !strings.Contains(res.Output, "CHAP_R") {
		t.Fatalf("mutual CHAP with a wrong target secret: exit %v, want the initiator to refuse the target:\n%s", res.Err, res.Output)
	}
	// The secret never reaches the log.
	if out := srv.Output(); strings.Contains(out, node1Secret) || strings.Contains(out, targetSecret) {
		t.Fatalf("a secret is in the server output:\n%s", out)
	}
}

func TestLUNMaskingWithLibiscsi(t *testing.T) {
	ls := Tool(t, "iscsi-ls")
	inq := Tool(t, "iscsi-inq")
	srv := StartServer(t, accessConfig(t))

	// Two initiators see different LUN sets; node2's only LUN is the
	// target's LUN 2 (32 MiB) renumbered to 0.
	out1 := MustRun(t, accessToolTime, ls, "-s", "-i", node1, fmt.Sprintf("iscsi://node1%%%s@%s", node1Secret, srv.Addr))
	out2 := MustRun(t, accessToolTime, ls, "-s", "-i", node2, "iscsi://"+srv.Addr)
	luns := func(out string) []string {
		var l []string
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "Lun:") {
				l = append(l, f[0]+" "+f[len(f)-1])
			}
		}
		return l
	}
	if got, want := strings.Join(luns(out1), ","), "Lun:0 (Size:"+lsSize(8<<20, 512)+"),Lun:1 (Size:"+lsSize(16<<20, 512)+")"; got != want {
		t.Fatalf("node1 sees %q, want %q:\n%s", got, want, out1)
	}
	if got, want := strings.Join(luns(out2), ","), "Lun:0 (Size:"+lsSize(32<<20, 512)+")"; got != want {
		t.Fatalf("node2 sees %q, want %q:\n%s", got, want, out2)
	}
	// SendTargets lists nothing for an initiator that may not log in.
	if out := MustRun(t, accessToolTime, ls, "-i", node3, "iscsi://"+srv.Addr); strings.Contains(out, aclIQN) {
		t.Fatalf("node3 discovered the target:\n%s", out)
	}

	// A masked LUN addressed directly, bypassing REPORT LUNS, fails.
	res := Run(t, accessToolTime, inq, "-i", node2, fmt.Sprintf("iscsi://%s/%s/1", srv.Addr, aclIQN))
	if res.Err == nil || !strings.Contains(res.Output, "LOGICAL_UNIT_NOT_SUPPORTED") {
		t.Fatalf("node2 on masked LUN 1: exit %v, want LOGICAL UNIT NOT SUPPORTED:\n%s", res.Err, res.Output)
	}

	// The read-only mapping: reads work; MODE SENSE shows WP, so qemu
	// refuses to open the LUN for writing; a write sent anyway, and a
	// PERSISTENT RESERVE OUT that would change what the LU's other
	// initiators see, answer DATA PROTECT / WRITE PROTECTED.
	qemuIO := Tool(t, "qemu-io")
	QemuISCSI(t)
	opts := srv.QemuOpts(aclIQN, 0, "") + ",file.initiator-name=" + node2
	if out := MustRun(t, accessToolTime, qemuIO, "-r", "--image-opts", "-c", "read 0 4096", opts); !strings.Contains(out, "read 4096/4096") {
		t.Fatalf("read through the read-only mapping:\n%s", out)
	}
	res = Run(t, accessToolTime, qemuIO, "--image-opts", "-c", "write -P 0x5a 0 4096", opts)
	if res.Err == nil || strings.Contains(res.Output, "wrote 4096/4096") || !strings.Contains(res.Output, "write protected") {
		t.Fatalf("qemu-io opened a read-only mapping for writing:\n%s", res.Output)
	}
	c, err := iscsitest.Dial(srv.Addr, node2, aclIQN, [6]byte{0x80, 0, 0, 0, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.ClearUA(); err != nil {
		t.Fatal(err)
	}
	register := make([]byte, 24)
	register[15] = 1
	for _, cmd := range []struct {
		name string
		cdb  []byte
		out  []byte
	}{
		{"WRITE(10)", []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, make([]byte, 512)},
		{"PERSISTENT RESERVE OUT(REGISTER)", []byte{0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0}, register},
	} {
		r, err := c.Command(cmd.cdb, uint32(len(cmd.out)), cmd.out)
		if err != nil {
			t.Fatal(err)
		}
		if key, asc, ascq := r.SenseKey(); r.Status != 2 || key != 7 || asc != 0x27 || ascq != 0 {
			t.Errorf("%s through a read-only mapping: status %#x sense %x/%x/%x, want DATA PROTECT / WRITE PROTECTED", cmd.name, r.Status, key, asc, ascq)
		}
	}
}

package integration

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

const testIQN = "iqn.2026-11.io.blockport:integration"

// writeRandomFile makes a raw image of size random bytes, so a transfer that
// drops, repeats or reorders blocks cannot compare equal by accident.
func writeRandomFile(t *testing.T, path string, size int64) []byte {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// lsSize renders a LUN size the way iscsi-ls prints it: READ CAPACITY(10)'s
// last LBA times the block length, divided by 1024 while above 1024.
func lsSize(sizeBytes, blockSize int64) string {
	size := (sizeBytes/blockSize - 1) * blockSize
	suffixes := []string{" ", "k", "M", "G", "T"}
	i := 0
	for ; i < 4 && size > 1024; i++ {
		size /= 1024
	}
	return fmt.Sprintf("%d%s", size, suffixes[i])
}

func TestLsSize(t *testing.T) {
	tests := []struct {
		size, bs int64
		want     string
	}{
		{64 << 20, 512, "63M"},       // one block short of 64 MiB
		{16 << 20, 4096, "15M"},      // 4095 blocks of 4 KiB
		{1 << 30, 512, "1023M"},      // just under 1 GiB
		{256 << 20, 512, "255M"},     // what iscsi-ls shows for a 256 MiB LUN
		{2048, 512, "1k"},            // 1536 bytes, truncated
		{1024, 512, "512 "},          // small sizes stay in bytes
		{int64(3) << 40, 4096, "2T"}, // 3 TiB minus one block
	}
	for _, tt := range tests {
		if got := lsSize(tt.size, tt.bs); got != tt.want {
			t.Errorf("lsSize(%d, %d) = %q, want %q", tt.size, tt.bs, got, tt.want)
		}
	}
}

func TestDiscoveryListsTargetAndLUNs(t *testing.T) {
	iscsiLs := Tool(t, "iscsi-ls")
	s := StartServer(t, Config(testIQN,
		LUN{LUN: 0, Backstore: "file", Path: "data/lun0.img", Size: "64MiB", BlockSize: 512, DirectIO: true},
		LUN{LUN: 1, Backstore: "memory", Size: "16MiB", BlockSize: 4096},
	))

	out := MustRun(t, DefaultToolTimeout, iscsiLs, "-s", s.Portal())
	wants := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Target:` + regexp.QuoteMeta(testIQN) + ` Portal:` + regexp.QuoteMeta(s.Addr) + `,\d+$`),
		regexp.MustCompile(`(?m)^Lun:0\s+Type:DIRECT_ACCESS \(Size:` + lsSize(64<<20, 512) + `\)$`),
		regexp.MustCompile(`(?m)^Lun:1\s+Type:DIRECT_ACCESS \(Size:` + lsSize(16<<20, 4096) + `\)$`),
	}
	for _, re := range wants {
		if !re.MatchString(out) {
			t.Errorf("iscsi-ls output does not match %q:\n%s", re, out)
		}
	}
	if n := strings.Count(out, "Lun:"); n != 2 {
		t.Errorf("iscsi-ls shows %d LUNs, want 2:\n%s", n, out)
	}
}

// inquiry runs iscsi-inq for the standard page (page < 0) or one VPD page.
func inquiry(t *testing.T, tool, url string, page int) string {
	t.Helper()
	args := []string{url}
	if page >= 0 {
		// iscsi-inq parses -c with atoi: decimal only.
		args = []string{"-e", "1", "-c", fmt.Sprint(page), url}
	}
	return MustRun(t, DefaultToolTimeout, tool, args...)
}

func TestInquiry(t *testing.T) {
	iscsiInq := Tool(t, "iscsi-inq")
	s := StartServer(t, Config(testIQN,
		LUN{LUN: 0, Backstore: "file", Path: "lun0.img", Size: "32MiB", BlockSize: 512, DirectIO: true},
	))
	url := s.URL(testIQN, 0)

	std := inquiry(t, iscsiInq, url, -1)
	for _, want := range []string{"Peripheral Qualifier:CONNECTED", "Peripheral Device Type:DIRECT_ACCESS", "Removable:0", "Vendor:", "Product:", "Revision:"} {
		if !strings.Contains(std, want) {
			t.Errorf("standard INQUIRY lacks %q:\n%s", want, std)
		}
	}

	// SPC-5 7.7.16: the Supported VPD Pages page lists at least 0x00, and
	// SBC-4 requires 0x80 (serial, when supported) and 0x83 (identification).
	supported := inquiry(t, iscsiInq, url, 0x00)
	for _, page := range []string{"Page:0x00", "Page:0x80", "Page:0x83", "Page:0xb0", "Page:0xb1", "Page:0xb2"} {
		if !strings.Contains(supported, page) {
			t.Errorf("Supported VPD Pages lacks %s:\n%s", page, supported)
		}
	}
	// SBC-4 block pages: limits, characteristics, provisioning. A thick
	// file LUN is fully provisioned and offers no UNMAP.
	for _, tt := range []struct {
		page int
		want []string
	}{
		{0xb0, []string{"maximum compare and write length:255", "maximum transfer length:16384", "maximum unmap lba count:0"}},
		{0xb1, []string{"Medium Rotation Rate:1"}},
		{0xb2, []string{"lbpu:0", "provisioning type:0"}},
	} {
		out := inquiry(t, iscsiInq, url, tt.page)
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("VPD page %#x lacks %q:\n%s", tt.page, w, out)
			}
		}
	}

	serial := serialNumber(t, inquiry(t, iscsiInq, url, 0x80))
	ids := inquiry(t, iscsiInq, url, 0x83)
	// SPC-5 7.7.6: a logical unit reports an NAA designator for itself;
	// initiators (multipath, udev) key on it.
	if !regexp.MustCompile(`(?s)Association:\(0\) LOGICAL_UNIT\s+Designator Type:\(3\) NAA`).MatchString(ids) {
		t.Errorf("Device Identification page has no NAA designator for the logical unit:\n%s", ids)
	}

	// Identifiers come from state_dir, so a restart must not change them.
	s.Restart()
	if again := serialNumber(t, inquiry(t, iscsiInq, url, 0x80)); again != serial {
		t.Errorf("unit serial number changed across restart: %q -> %q", serial, again)
	}
	if again := inquiry(t, iscsiInq, url, 0x83); again != ids {
		t.Errorf("Device Identification page changed across restart:\nbefore:\n%s\nafter:\n%s", ids, again)
	}
}

var serialRE = regexp.MustCompile(`Unit Serial Number:\[([^\]]*)\]`)

func serialNumber(t *testing.T, page string) string {
	t.Helper()
	m := serialRE.FindStringSubmatch(page)
	if m == nil || strings.TrimSpace(m[1]) == "" {
		t.Fatalf("no unit serial number in VPD page 0x80:\n%s", page)
	}
	return strings.TrimSpace(m[1])
}

func TestQemuImgRoundTrip(t *testing.T) {
	qemuImg := QemuISCSI(t)
	const size = 64 << 20
	s := StartServer(t, Config(testIQN,
		LUN{LUN: 0, Backstore: "file", Path: "lun0.img", Size: "64MiB", BlockSize: 512, DirectIO: true},
	))
	// libiscsi 1.19 (Debian 12) can ask for HeaderDigest only; qemu's iscsi
	// driver has no data digest option. Data digests are covered by the
	// fabric's unit tests.
	for _, digest := range []string{"none", "crc32c"} {
		t.Run("header-digest="+digest, func(t *testing.T) {
			dir := TempDir(t)
			src := filepath.Join(dir, "src.raw")
			back := filepath.Join(dir, "back.raw")
			want := writeRandomFile(t, src, size)
			opts := s.QemuOpts(testIQN, 0, digest)

			// -n: the LUN exists; qemu-img must not try to create it.
			MustRun(t, 5*time.Minute, qemuImg, "convert", "-n", "-f", "raw", "--target-image-opts", src, opts)
			MustRun(t, 5*time.Minute, qemuImg, "convert", "-O", "raw", "--image-opts", opts, back)

			got, err := os.ReadFile(back)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("read back %d bytes, want %d", len(got), len(want))
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("data read back differs from data written, first at byte %d", firstDiff(got, want))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// qemuIOCheck runs qemu-io commands on url and fails on a non-zero exit, a
// pattern mismatch, or a short transfer.
func qemuIOCheck(t *testing.T, qemuIO, url string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, url)
	res := Run(t, DefaultToolTimeout, qemuIO, args...)
	if res.Err != nil {
		t.Fatalf("qemu-io: %v\n%s", res.Err, res.Output)
	}
	if strings.Contains(res.Output, "Pattern verification failed") {
		t.Fatalf("qemu-io read back the wrong data:\n%s", res.Output)
	}
	for _, c := range cmds {
		f := strings.Fields(c) // e.g. "read -P 0xab 1000 3000"
		verb, off, length := f[0], f[len(f)-2], f[len(f)-1]
		past := map[string]string{"read": "read", "write": "wrote"}[verb]
		if want := fmt.Sprintf("%s %s/%s bytes at offset %s", past, length, length, off); !strings.Contains(res.Output, want) {
			t.Errorf("qemu-io output lacks %q:\n%s", want, res.Output)
		}
	}
}

func TestQemuIOUnalignedPatterns(t *testing.T) {
	QemuISCSI(t)
	qemuIO := Tool(t, "qemu-io")
	s := StartServer(t, Config(testIQN,
		LUN{LUN: 0, Backstore: "file", Path: "lun0.img", Size: "16MiB", BlockSize: 512, DirectIO: true},
		LUN{LUN: 1, Backstore: "memory", Size: "16MiB", BlockSize: 4096},
		LUN{LUN: 2, Backstore: "file", Path: "lun2.img", Size: "16MiB", BlockSize: 4096, DirectIO: false, WriteCache: true},
	))
	// Writes that start and end inside a block make qemu read-modify-write
	// the edge blocks; the bytes around the write must keep the old pattern.
	cases := []struct{ off, length int }{
		{1000, 3000},
		{4095, 2},
		{511, 8193},
		{4097, 40000},
		{1, 65534},
	}
	const span = 128 << 10
	for lun := range 3 {
		for _, c := range cases {
			t.Run(fmt.Sprintf("lun%d/%d+%d", lun, c.off, c.length), func(t *testing.T) {
				end := c.off + c.length
				qemuIOCheck(t, qemuIO, s.URL(testIQN, lun),
					fmt.Sprintf("write -P 0x11 0 %d", span),
					fmt.Sprintf("write -P 0xab %d %d", c.off, c.length),
					fmt.Sprintf("read -P 0x11 0 %d", c.off),
					fmt.Sprintf("read -P 0xab %d %d", c.off, c.length),
					fmt.Sprintf("read -P 0x11 %d %d", end, span-end),
				)
			})
		}
	}
}

func TestDataSurvivesRestart(t *testing.T) {
	QemuISCSI(t)
	qemuIO := Tool(t, "qemu-io")
	tests := []struct {
		name string
		lun  LUN
		// crash: also SIGKILL the server after the write. With the write
		// cache off an acknowledged write is in the file already, so it
		// must survive a crash of the server process.
		crash bool
	}{
		{"direct-io", LUN{Backstore: "file", Path: "lun0.img", Size: "16MiB", BlockSize: 512, DirectIO: true}, true},
		{"buffered-write-cache", LUN{Backstore: "file", Path: "lun0.img", Size: "16MiB", BlockSize: 512, WriteCache: true}, false},
		{"direct-io-4k", LUN{Backstore: "file", Path: "lun0.img", Size: "16MiB", BlockSize: 4096, DirectIO: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := StartServer(t, Config(testIQN, tt.lun))
			url := s.URL(testIQN, 0)
			qemuIOCheck(t, qemuIO, url, "write -P 0x5a 1048699 1048576", "write -P 0xc3 0 4096")

			s.Restart()
			qemuIOCheck(t, qemuIO, url, "read -P 0x5a 1048699 1048576", "read -P 0xc3 0 4096")

			if tt.crash {
				qemuIOCheck(t, qemuIO, url, "write -P 0x7e 8000000 333333")
				s.Kill()
				s.Start()
				qemuIOCheck(t, qemuIO, url, "read -P 0x7e 8000000 333333", "read -P 0x5a 1048699 1048576")
			}
		})
	}
}

func TestClientKilledMidTransfer(t *testing.T) {
	qemuImg := QemuISCSI(t)
	qemuIO := Tool(t, "qemu-io")
	iscsiLs := Tool(t, "iscsi-ls")
	const size = 256 << 20
	s := StartServer(t, Config(testIQN,
		LUN{LUN: 0, Backstore: "file", Path: "lun0.img", Size: "256MiB", BlockSize: 512, DirectIO: true},
	))
	dir := TempDir(t)
	src := filepath.Join(dir, "src.raw")
	writeRandomFile(t, src, size)
	opts := s.QemuOpts(testIQN, 0, "")

	transfers := []struct {
		name string
		args []string
	}{
		{"write", []string{"convert", "-n", "-f", "raw", "--target-image-opts", src, opts}},
		{"read", []string{"convert", "-O", "raw", "--image-opts", opts, filepath.Join(dir, "back.raw")}},
	}
	for _, tr := range transfers {
		t.Run(tr.name, func(t *testing.T) {
			cmd, cancel := Command(2*time.Minute, qemuImg, tr.args...)
			defer cancel()
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			// SIGKILL: the client vanishes without a logout, mid-command.
			killErr := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err := cmd.Wait()
			if cmd.ProcessState.Exited() {
				// The transfer beat the kill; the server still has to
				// serve the checks below, but say so.
				t.Logf("qemu-img finished before the kill (%v, kill: %v); output:\n%s", err, killErr, out.String())
			}

			if !s.Running() {
				t.Fatalf("server died after a client was killed: %v", s.ExitError())
			}
			ls := MustRun(t, DefaultToolTimeout, iscsiLs, "-s", s.Portal())
			if !strings.Contains(ls, "Lun:0") {
				t.Errorf("iscsi-ls after the kill does not list LUN 0:\n%s", ls)
			}
			qemuIOCheck(t, qemuIO, s.URL(testIQN, 0), "write -P 0x42 4096 65536", "read -P 0x42 4096 65536")
		})
	}
}

package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blockport/blockport/target/iscsi"
)

// Hostile input against the real binary: malformed PDUs, truncated logins
// and a login flood must not stop a normal client.

const hostileIQN = "iqn.2026-11.io.blockport:hostile"

func hostileConfig() string {
	return Config(hostileIQN, LUN{LUN: 0, Backstore: "memory", Size: "8MiB"})
}

func encodePDU(h iscsi.BHS, data []byte) []byte {
	var buf bytes.Buffer
	iscsi.NewWriter(&buf).WritePDU(&h, data)
	return buf.Bytes()
}

func loginPDU(csg, nsg uint8, transit bool, isid byte, text []byte) []byte {
	req := iscsi.LoginRequest{Transit: transit, CSG: csg, NSG: nsg, ISID: [6]byte{0x80, 0, 0, 0, 0, isid}, ITT: 1, CmdSN: 1}
	var h iscsi.BHS
	req.Encode(&h)
	return encodePDU(h, text)
}

func goodLogin(initiator string, isid byte) []byte {
	return loginPDU(0, 3, true, isid, iscsi.AppendText(nil,
		iscsi.KeyValue{Key: "InitiatorName", Value: initiator}, iscsi.KeyValue{Key: "TargetName", Value: hostileIQN},
		iscsi.KeyValue{Key: "SessionType", Value: "Normal"}, iscsi.KeyValue{Key: "AuthMethod", Value: "None"}))
}

// malformedCorpus is hand-made bad traffic; each entry is sent on its own
// connection.
func malformedCorpus() map[string][]byte {
	const ini = "iqn.2026-11.io.blockport:hostile-client"
	c := map[string][]byte{}
	c["garbage header"] = bytes.Repeat([]byte{0xA5}, 48)
	c["half a header"] = goodLogin(ini, 1)[:20]
	c["truncated login text"] = goodLogin(ini, 2)[:60]
	c["SCSI command before login"] = func() []byte {
		var h iscsi.BHS
		cmd := iscsi.SCSICommand{Final: true, Read: true, ExpectedDataTransferLength: 512, CmdSN: 1, CDB: [16]byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1}}
		cmd.Encode(&h)
		return encodePDU(h, nil)
	}()
	hugeLogin := goodLogin(ini, 3)
	copy(hugeLogin[5:8], []byte{0xff, 0xff, 0xff}) // DataSegmentLength far over 8192
	c["login over the segment limit"] = hugeLogin
	c["login with a long key value"] = loginPDU(0, 3, true, 4, []byte("InitiatorName="+strings.Repeat("x", 300)+"\x00"))
	c["login with invalid UTF-8"] = loginPDU(0, 3, true, 5, []byte("InitiatorName=iqn.2026-11.x:\xff\xfe\x00TargetName="+hostileIQN+"\x00"))
	c["login with a bad version"] = func() []byte {
		p := goodLogin(ini, 6)
		p[3] = 9 // VersionMin
		return p
	}()
	// After a good login: an unknown opcode, a Data-Out for an unknown
	// task, an AHS running past its segment, a CmdSN far outside the window.
	after := func(isid byte, more ...[]byte) []byte {
		return bytes.Join(append([][]byte{goodLogin(ini, isid)}, more...), nil)
	}
	var bad iscsi.BHS
	bad[0] = 0x1d
	var dout iscsi.BHS
	(&iscsi.DataOut{Final: true, ITT: 77, TTT: 1234}).Encode(&dout)
	var ahs iscsi.BHS
	(&iscsi.SCSICommand{Final: true, Read: true, ExpectedDataTransferLength: 512, CmdSN: 1, CDB: [16]byte{0x28}}).Encode(&ahs)
	ahs[4] = 64
	var far iscsi.BHS
	(&iscsi.SCSICommand{Final: true, CmdSN: 0x80000000}).Encode(&far)
	c["unknown opcode after login"] = after(7, encodePDU(bad, nil))
	c["Data-Out for an unknown task"] = after(8, encodePDU(dout, make([]byte, 512)))
	c["AHS beyond the segment"] = after(9, ahs[:])
	c["CmdSN outside the window"] = after(10, encodePDU(far, nil))
	return c
}

func TestMalformedPDUsThenNormalClient(t *testing.T) {
	inq := Tool(t, "iscsi-inq")
	srv := StartServer(t, hostileConfig())
	for name, wire := range malformedCorpus() {
		nc, err := net.DialTimeout("tcp", srv.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: dial: %v", name, err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		nc.Write(wire)
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		// The target answers (a login failure, a Reject) or closes; it must
		// not keep the connection open past our half-close and deadline.
		if _, err := io.Copy(io.Discard, nc); err != nil {
			t.Errorf("%s: the target neither answered nor closed: %v", name, err)
		}
		nc.Close()
	}
	if !srv.Running() {
		t.Fatal("server died")
	}
	if res := Run(t, accessToolTime, inq, srv.URL(hostileIQN, 0)); res.Err != nil {
		t.Fatalf("normal client after the malformed corpus: %v\n%s", res.Err, res.Output)
	}
	srv.WaitOutput("malformed PDU", 5*time.Second)
	out := srv.Output()
	if !strings.Contains(out, "malformed PDU") || !strings.Contains(out, "remote=127.0.0.1:") {
		t.Fatalf("malformed PDUs not logged with the peer address:\n%s", out)
	}
}

// A login flood from one address (127.0.0.2: idle connections that never
// log in plus repeated failing logins) does not stop another initiator.
func TestLoginFloodDoesNotStopOthers(t *testing.T) {
	inq := Tool(t, "iscsi-inq")
	srv := StartServer(t, strings.Replace(hostileConfig(), "allow_any_initiator = true", "allow_any_initiator = false", 1)+
		"  [[target.acl]]\n  initiator = \"iqn.2026-11.io.blockport:good\"\n")
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	if c, err := dialer.Dial("tcp", srv.Addr); err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	} else {
		c.Close()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var idle []net.Conn
	defer func() {
		close(stop)
		wg.Wait()
		mu.Lock()
		for _, c := range idle {
			c.Close()
		}
		mu.Unlock()
	}()
	// 200 connections that never send anything.
	for range 200 {
		if c, err := dialer.Dial("tcp", srv.Addr); err == nil {
			mu.Lock()
			idle = append(idle, c)
			mu.Unlock()
		}
	}
	// 8 loops of logins refused by the ACL.
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialer.Dial("tcp", srv.Addr)
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.Write(goodLogin(fmt.Sprintf("iqn.2026-11.io.blockport:attacker%d", i), byte(n)))
				io.Copy(io.Discard, c)
				c.Close()
			}
		}()
	}
	time.Sleep(time.Second)
	start := time.Now()
	res := Run(t, accessToolTime, inq, "-i", "iqn.2026-11.io.blockport:good", srv.URL(hostileIQN, 0))
	if res.Err != nil {
		t.Fatalf("login during the flood: %v\n%s", res.Err, res.Output)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("login during the flood took %v", el)
	}
	t.Logf("login during the flood took %v", time.Since(start).Round(time.Millisecond))
}

// Package iscsitest is a small iSCSI initiator built from Blockport's own
// codec (target/iscsi), for end-to-end tests that need what libiscsi's
// tools do not offer: several I_T nexuses with chosen ISIDs, persistent
// reservation commands, and a write left waiting for its data. One command
// runs at a time per Client, except for a write parked with Hold.
package iscsitest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/blockport/blockport/target/iscsi"
)

// Client is one logged-in session (one connection) to a target.
type Client struct {
	nc     net.Conn
	r      *iscsi.Reader
	w      *iscsi.Writer
	isid   [6]byte
	cmdSN  uint32
	expSN  uint32
	itt    uint32
	maxSeg int
	// Timeout bounds every exchange (default 20s).
	Timeout time.Duration
}

// Result is the outcome of one SCSI command.
type Result struct {
	Status uint8  // SCSI status (0 GOOD, 2 CHECK CONDITION, 0x18 RESERVATION CONFLICT)
	Sense  []byte // sense data, if any
	Data   []byte // data-in
}

// SenseKey, ASC and ASCQ decode fixed or descriptor format sense (0 if none).
func (r Result) SenseKey() (key, asc, ascq byte) {
	s := r.Sense
	switch {
	case len(s) >= 14 && s[0]&0x7F >= 0x72:
		return s[1] & 0x0F, s[2], s[3]
	case len(s) >= 14:
		return s[2] & 0x0F, s[12], s[13]
	}
	return 0, 0, 0
}

// Dial connects to addr and logs in to target as initiator with the given
// ISID (the ISID makes the I_T nexus: two Clients of one initiator name
// with different ISIDs are two nexuses).
func Dial(addr, initiator, target string, isid [6]byte) (*Client, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &Client{nc: nc, r: iscsi.NewReader(nc), w: iscsi.NewWriter(nc), isid: isid, cmdSN: 1, itt: 1, maxSeg: 8192, Timeout: 20 * time.Second}
	c.r.SetMaxRecvDataSegmentLength(0)
	if err := c.login(initiator, target); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// Close drops the connection without logging out (an I_T nexus loss).
func (c *Client) Close() error { return c.nc.Close() }

func (c *Client) login(initiator, target string) error {
	c.nc.SetDeadline(time.Now().Add(c.Timeout))
	var tsih uint16
	stages := []struct {
		csg, nsg uint8
		kvs      []iscsi.KeyValue
	}{
		{0, 1, []iscsi.KeyValue{{Key: "InitiatorName", Value: initiator}, {Key: "TargetName", Value: target},
			{Key: "SessionType", Value: "Normal"}, {Key: "AuthMethod", Value: "None"}}},
		{1, 3, []iscsi.KeyValue{{Key: "HeaderDigest", Value: "None"}, {Key: "DataDigest", Value: "None"},
			{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "No"},
			{Key: "MaxRecvDataSegmentLength", Value: "262144"}}},
	}
	for _, st := range stages {
		req := iscsi.LoginRequest{Transit: true, CSG: st.csg, NSG: st.nsg, ISID: c.isid, TSIH: tsih, ITT: c.itt, CmdSN: c.cmdSN, ExpStatSN: c.expSN}
		var h iscsi.BHS
		req.Encode(&h)
		if err := c.w.WritePDU(&h, iscsi.AppendText(nil, st.kvs...)); err != nil {
			return err
		}
		pdu, err := c.r.ReadPDU()
		if err != nil {
			return fmt.Errorf("login response: %w", err)
		}
		if pdu.Header.Opcode() != iscsi.OpLoginResponse {
			return fmt.Errorf("got %v, want a Login Response", pdu.Header.Opcode())
		}
		resp := pdu.Header.LoginResponse()
		if resp.StatusClass != 0 {
			return fmt.Errorf("login refused: status %d/%d", resp.StatusClass, resp.StatusDetail)
		}
		c.expSN, tsih = resp.StatSN+1, resp.TSIH
		if !resp.Transit || resp.NSG != st.nsg {
			return fmt.Errorf("target did not move to stage %d", st.nsg)
		}
	}
	return nil
}

func (c *Client) send(cdb []byte, edtl uint32, write bool) (uint32, error) {
	itt := c.itt
	c.itt++
	var c16 [16]byte
	copy(c16[:], cdb)
	req := iscsi.SCSICommand{Final: true, Read: !write && edtl > 0, Write: write, Attr: iscsi.TaskAttrSimple, ITT: itt,
		ExpectedDataTransferLength: edtl, CmdSN: c.cmdSN, ExpStatSN: c.expSN, CDB: c16}
	c.cmdSN++
	var h iscsi.BHS
	req.Encode(&h)
	return itt, c.w.WritePDU(&h, nil)
}

// Command runs one command to completion: out is the data-out of a write
// command (nil otherwise), edtl the expected data transfer length.
// Responses of other tasks (e.g. a held write the target aborted) are
// skipped.
func (c *Client) Command(cdb []byte, edtl uint32, out []byte) (Result, error) {
	c.nc.SetDeadline(time.Now().Add(c.Timeout))
	itt, err := c.send(cdb, edtl, out != nil)
	if err != nil {
		return Result{}, err
	}
	return c.wait(itt, out)
}

// Hold sends a write command and returns once the target asked for its
// data (the first R2T), without sending any: the task stays open on the
// target until it is aborted or the connection ends. Calling the returned
// function sends the data the R2T asked for, late, without waiting for a
// response (a task the target aborted must not write it).
func (c *Client) Hold(cdb []byte, edtl uint32) (sendLate func(data []byte) error, err error) {
	c.nc.SetDeadline(time.Now().Add(c.Timeout))
	itt, err := c.send(cdb, edtl, true)
	if err != nil {
		return nil, err
	}
	for {
		pdu, err := c.r.ReadPDU()
		if err != nil {
			return nil, err
		}
		switch pdu.Header.Opcode() {
		case iscsi.OpR2T:
			r := pdu.Header.R2T()
			if r.ITT != itt {
				continue
			}
			return func(data []byte) error {
				d := iscsi.DataOut{Final: true, ITT: itt, TTT: r.TTT, BufferOffset: r.BufferOffset, ExpStatSN: c.expSN}
				var h iscsi.BHS
				d.Encode(&h)
				return c.w.WritePDU(&h, data[:min(len(data), int(r.DesiredDataTransferLength))])
			}, nil
		case iscsi.OpSCSIResponse:
			r := pdu.Header.SCSIResponse()
			c.expSN = r.StatSN + 1
			if r.ITT == itt {
				return nil, fmt.Errorf("held write answered with status 0x%02x", r.Status)
			}
		}
	}
}

func (c *Client) wait(itt uint32, out []byte) (Result, error) {
	var res Result
	for {
		pdu, err := c.r.ReadPDU()
		if err != nil {
			return res, err
		}
		switch pdu.Header.Opcode() {
		case iscsi.OpR2T:
			r := pdu.Header.R2T()
			if r.ITT != itt {
				continue
			}
			end := r.BufferOffset + r.DesiredDataTransferLength
			if int(end) > len(out) {
				return res, errors.New("R2T beyond the data-out")
			}
			var dataSN uint32
			for off := r.BufferOffset; off < end; off += uint32(c.maxSeg) {
				e := min(off+uint32(c.maxSeg), end)
				d := iscsi.DataOut{Final: e == end, ITT: itt, TTT: r.TTT, DataSN: dataSN, BufferOffset: off, ExpStatSN: c.expSN}
				var dh iscsi.BHS
				d.Encode(&dh)
				if err := c.w.WritePDU(&dh, out[off:e]); err != nil {
					return res, err
				}
				dataSN++
			}
		case iscsi.OpDataIn:
			d := pdu.Header.DataIn()
			if d.ITT != itt {
				continue
			}
			res.Data = append(res.Data, pdu.Data...)
			if d.HasStatus {
				c.expSN = d.StatSN + 1
				res.Status = d.Status
				return res, nil
			}
		case iscsi.OpSCSIResponse:
			r := pdu.Header.SCSIResponse()
			c.expSN = r.StatSN + 1
			if r.ITT != itt {
				continue
			}
			res.Status = r.Status
			if len(pdu.Data) >= 2 {
				n := int(binary.BigEndian.Uint16(pdu.Data))
				if 2+n <= len(pdu.Data) {
					res.Sense = append([]byte(nil), pdu.Data[2:2+n]...)
				}
			}
			return res, nil
		case iscsi.OpNOPIn:
			// The target pings: answer so it keeps the session.
			n := pdu.Header.NOPIn()
			if n.TTT != 0xFFFFFFFF {
				o := iscsi.NOPOut{Immediate: true, ITT: 0xFFFFFFFF, TTT: n.TTT, LUN: n.LUN, CmdSN: c.cmdSN, ExpStatSN: c.expSN}
				var h iscsi.BHS
				o.Encode(&h)
				if err := c.w.WritePDU(&h, nil); err != nil {
					return res, err
				}
			}
		default:
			return res, fmt.Errorf("unexpected %v", pdu.Header.Opcode())
		}
	}
}

// ClearUA runs TEST UNIT READY until it returns GOOD (unit attentions
// pending on a new nexus are consumed), at most ten times.
func (c *Client) ClearUA() error {
	var last Result
	for range 10 {
		r, err := c.Command([]byte{0, 0, 0, 0, 0, 0}, 0, nil)
		if err != nil {
			return err
		}
		if r.Status == 0 {
			return nil
		}
		last = r
	}
	return fmt.Errorf("TEST UNIT READY keeps failing: status 0x%02x sense % x", last.Status, last.Sense)
}

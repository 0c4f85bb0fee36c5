package pr

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// The APTPL state file (SPC-5 5.14.5): JSON, replaced atomically. A crash
// at any point leaves the old file or the new one, never a mix: the new
// state is written to a temporary file in the same directory and synced,
// renamed over the old one, and the directory is synced so the rename
// itself is durable before the command completes.

// fileVersion is the format of the state file.
const fileVersion = 1

// maxFileSize bounds what load reads: MaxRegistrants with the longest
// iSCSI names stays far below it.
const maxFileSize = 4 << 20

type fileState struct {
	Version     int              `json:"version"`
	Generation  uint32           `json:"generation"`
	APTPL       bool             `json:"aptpl"`
	Reserved    bool             `json:"reserved"`
	Type        uint8            `json:"type,omitempty"`
	Holder      int              `json:"holder"` // index in Registrants; -1: none or all registrants
	Registrants []fileRegistrant `json:"registrants"`
}

type fileRegistrant struct {
	Key            uint64 `json:"key"`
	Initiator      string `json:"initiator"`
	ISID           string `json:"isid,omitempty"` // 12 hex digits; empty: every port of the initiator
	Target         string `json:"target"`
	TPGT           uint16 `json:"tpgt"`
	AllTargetPorts bool   `json:"all_tg_pt,omitempty"`
}

// encode returns the file text of st.
func encode(st *snapshot) ([]byte, error) {
	f := fileState{Version: fileVersion, Generation: st.Generation, APTPL: st.APTPL,
		Reserved: st.Reserved, Type: uint8(st.Type), Holder: st.Holder, Registrants: []fileRegistrant{}}
	for _, r := range st.Regs {
		f.Registrants = append(f.Registrants, toFile(r))
	}
	return json.MarshalIndent(&f, "", "  ")
}

// toFile is a registration as the state file (and a shared note) keeps it.
func toFile(r Registrant) fileRegistrant {
	fr := fileRegistrant{Key: r.Key, Initiator: r.Initiator, Target: r.Target, TPGT: r.TPGT, AllTargetPorts: r.AllTargetPorts}
	if r.HasISID {
		fr.ISID = hex.EncodeToString(r.ISID[:])
	}
	return fr
}

// fromFile checks and converts registration i of a file.
func fromFile(fr fileRegistrant, i int) (Registrant, error) {
	r := Registrant{Key: fr.Key, Initiator: fr.Initiator, Target: fr.Target, TPGT: fr.TPGT, AllTargetPorts: fr.AllTargetPorts}
	if fr.Key == 0 || fr.Initiator == "" || fr.Target == "" {
		return r, fmt.Errorf("registrant %d: key, initiator and target must be set", i)
	}
	if fr.ISID != "" {
		if len(fr.ISID) != 12 {
			return r, fmt.Errorf("registrant %d: isid %q is not 12 hex digits", i, fr.ISID)
		}
		raw, err := hex.DecodeString(fr.ISID)
		if err != nil {
			return r, fmt.Errorf("registrant %d: isid %q: %v", i, fr.ISID, err)
		}
		copy(r.ISID[:], raw)
		r.HasISID = true
	}
	return r, nil
}

// decode parses a state file and checks that it describes a consistent state.
func decode(data []byte) (snapshot, error) {
	var f fileState
	st := snapshot{Holder: -1}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return st, err
	}
	if dec.More() {
		return st, errors.New("data after the state object")
	}
	if f.Version != fileVersion {
		return st, fmt.Errorf("version %d, want %d", f.Version, fileVersion)
	}
	if len(f.Registrants) > MaxRegistrants {
		return st, fmt.Errorf("%d registrants, at most %d", len(f.Registrants), MaxRegistrants)
	}
	for i, fr := range f.Registrants {
		r, err := fromFile(fr, i)
		if err != nil {
			return st, err
		}
		st.Regs = append(st.Regs, r)
	}
	st.Generation, st.APTPL, st.Reserved, st.Type, st.Holder = f.Generation, f.APTPL, f.Reserved, Type(f.Type), f.Holder
	switch {
	case !st.Reserved:
		if st.Type != 0 || st.Holder != -1 {
			return st, errors.New("type or holder set without a reservation")
		}
	case !st.Type.Valid():
		return st, fmt.Errorf("reservation type %d is not valid", st.Type)
	case st.Type.allRegistrants():
		if st.Holder != -1 || len(st.Regs) == 0 {
			return st, errors.New("all-registrants reservation with a holder index or no registrant")
		}
	case st.Holder < 0 || st.Holder >= len(st.Regs):
		return st, fmt.Errorf("holder %d is not a registrant", st.Holder)
	}
	return st, nil
}

// load reads the state file; ok is false when there is none. Temporary
// files of an interrupted save are removed: they were never renamed, so
// they are not the state.
func load(file string) (st snapshot, ok bool, err error) {
	if tmps, _ := filepath.Glob(file + ".tmp*"); len(tmps) > 0 {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return snapshot{Holder: -1}, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("pr: load %s: %w", file, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	n := len(data)
	if err != nil {
		return st, false, fmt.Errorf("pr: load %s: %w", file, err)
	}
	if n > maxFileSize {
		return st, false, fmt.Errorf("pr: load %s: larger than %d bytes", file, maxFileSize)
	}
	st, err = decode(data[:n])
	if err != nil {
		return st, false, fmt.Errorf("pr: load %s: %w", file, err)
	}
	return st, true, nil
}

// saveLocked writes the state file, or removes it once APTPL is off
// (SPC-5 5.14.5: without APTPL nothing persists across power loss).
func (s *State) saveLocked() error {
	dir := filepath.Dir(s.file)
	if !s.st.APTPL {
		if err := os.Remove(s.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return syncDir(dir)
	}
	data, err := encode(&s.st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(s.file)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, s.file)
	}
	if err != nil {
		os.Remove(name)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

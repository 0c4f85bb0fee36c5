//go:build ceph && linux

package rbd

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"

	"github.com/blockport/blockport/backstore"
)

// Shared records (backstore.Shared) are RADOS objects in the image's pool,
// named "blockport.<image id>.<record>", so they follow the image and not
// the gateway. Updates are compare-and-swap on the object version
// (assert_version, or an exclusive create for the first one), so two
// gateways can never both succeed with conflicting updates. Every gateway
// that serves the image watches the object; a gateway that stored a change
// notifies the others and waits until each has taken it in (its watch
// function returned and it acknowledged) or notifyTimeout passed.

// Timeouts of the record watches.
const (
	// notifyTimeout bounds how long a store waits for the other
	// gateways to acknowledge; one that does not answer is presumed gone.
	notifyTimeout = 5 * time.Second
	// watchTimeout is after how long without contact RADOS drops a
	// gateway's watch, and the gateway learns that its watch is lost.
	watchTimeout = 10 * time.Second
	// maxRecord bounds a record's value.
	maxRecord = 4 << 20
	// nonceLen prefixes each notification with its sender's record nonce,
	// so a gateway does not act on its own notifications.
	nonceLen = 8
)

// recordSet is an image's records. They have a cluster connection of
// their own, with timeouts on every operation (the image's data path has
// none: librbd retries I/O until the cluster answers): a gateway cut off
// from the cluster then learns it within opTimeout and refuses what a
// reservation could refuse, instead of hanging with the state's lock held.
// Their own I/O context also keeps librados's per-context "last version"
// to their operations alone.
type recordSet struct {
	imageID string
	connect func() (*rados.Conn, error) // a new connection to the image's cluster
	pool    string

	dataConn *rados.Conn // the image's connection, for its addresses
	log      *slog.Logger

	mu    sync.Mutex // serializes operations: GetLastVersion is per ioctx
	conn  *rados.Conn
	ioctx *rados.IOContext // reads and writes; guarded by mu; opened by the first Record
	// wctx carries watches and notifications, which set librados's
	// per-context "last version" too and run without mu.
	wctx    *rados.IOContext
	gid     string    // conn's client id: this gateway's member key
	addrs   []string  // this gateway's client addresses, to fence it
	records []*record // guarded by mu
}

// opTimeout bounds each RADOS operation on a record.
const opTimeout = "15"

// Record implements backstore.Shared.
func (img *Image) Record(name string) (backstore.Record, error) {
	rs := &img.records
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.ioctx == nil {
		conn, err := rs.connect()
		if err != nil {
			return nil, err
		}
		ioctx, err := conn.OpenIOContext(rs.pool)
		if err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("rbd: pool %q: %w", rs.pool, err)
		}
		wctx, err := conn.OpenIOContext(rs.pool)
		if err != nil {
			ioctx.Destroy()
			conn.Shutdown()
			return nil, fmt.Errorf("rbd: pool %q: %w", rs.pool, err)
		}
		rs.conn, rs.ioctx, rs.wctx = conn, ioctx, wctx
		// Who this gateway is to the others: the records connection's
		// client id, and the addresses a fence must blocklist (the data
		// connection's, whose writes matter, and this one's).
		rs.gid = strconv.FormatUint(conn.GetInstanceID(), 10)
		addrs, err := clientAddrs(rs.dataConn, conn)
		if err != nil {
			rs.ioctx.Destroy()
			rs.wctx.Destroy()
			rs.conn.Shutdown()
			rs.conn, rs.ioctx, rs.wctx = nil, nil, nil
			return nil, err
		}
		rs.addrs = addrs
	}
	r := &record{set: rs, oid: "blockport." + rs.imageID + "." + name, name: img.name + " record " + name, stop: make(chan struct{})}
	if _, err := rand.Read(r.nonce[:]); err != nil {
		return nil, err
	}
	// The object exists before anyone watches it (a watch of a missing
	// object fails); an idempotent create leaves an existing one alone.
	if err := rs.ioctx.Create(r.oid, rados.CreateIdempotent); err != nil {
		return nil, fmt.Errorf("rbd: create %s: %w", r.oid, err)
	}
	if err := rs.joinLocked(r.oid); err != nil {
		return nil, err
	}
	rs.records = append(rs.records, r)
	return r, nil
}

func (rs *recordSet) close() {
	rs.mu.Lock()
	records := rs.records
	rs.records = nil
	rs.mu.Unlock()
	for _, r := range records {
		r.close()
		rs.leave(r.oid) // a clean leave: nobody needs to fence us
	}
	if rs.ioctx != nil {
		rs.ioctx.Destroy()
		rs.wctx.Destroy()
		rs.conn.Shutdown()
	}
}

// joinLocked records this gateway as a member of record oid: its client
// id and the addresses of both its connections, so that another gateway
// can fence it (blocklist) when it does not take a change in. mu is held.
func (rs *recordSet) joinLocked(oid string) error {
	if err := rs.ioctx.SetOmap(oid, map[string][]byte{rs.gid: []byte(strings.Join(rs.addrs, ","))}); err != nil {
		return fmt.Errorf("rbd: join %s: %w", oid, err)
	}
	return nil
}

type record struct {
	set   *recordSet
	oid   string
	name  string // for logs
	nonce [nonceLen]byte

	watchOnce sync.Once
	stop      chan struct{}
	stopped   chan struct{}
}

// Load implements backstore.Record. A record never stored reads as an
// empty value.
func (r *record) Load() ([]byte, uint64, error) {
	rs := r.set
	rs.mu.Lock()
	defer rs.mu.Unlock()
	// Most records are small: start with 64 KiB, and read again with a
	// larger buffer while one is filled up.
	for size := 64 << 10; ; size *= 4 {
		buf := make([]byte, size)
		n, err := rs.ioctx.Read(r.oid, buf, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("rbd: read %s: %w", r.oid, err)
		}
		version, err := rs.ioctx.GetLastVersion()
		if err != nil {
			return nil, 0, err
		}
		if n < size {
			return buf[:n:n], version, nil
		}
		if size >= maxRecord {
			return nil, 0, fmt.Errorf("rbd: %s is larger than %d bytes", r.oid, maxRecord)
		}
	}
}

// Store implements backstore.Record.
func (r *record) Store(value []byte, version uint64) (uint64, bool, error) {
	if len(value) >= maxRecord {
		return 0, false, fmt.Errorf("rbd: a %d-byte record is over the %d-byte limit", len(value), maxRecord)
	}
	rs := r.set
	rs.mu.Lock()
	defer rs.mu.Unlock()
	op := rados.CreateWriteOp()
	op.AssertVersion(version)
	op.WriteFull(value)
	err := op.Operate(rs.ioctx, r.oid, rados.OperationNoFlag)
	op.Release()
	var newVersion uint64
	if err == nil {
		newVersion, err = rs.ioctx.GetLastVersion()
	}
	switch errorCode(err) {
	case -int(syscall.ERANGE), -int(syscall.EOVERFLOW):
		// RADOS: the object's version is not the asserted one.
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("rbd: write %s: %w", r.oid, err)
	}
	return newVersion, true, nil
}

// Notify implements backstore.Record. With fence, every other gateway
// that has joined the record (member) and did not acknowledge the note as
// taken in is blocklisted from the cluster before Notify returns: its
// queued and future writes to the image are refused by the OSDs, so none
// of a preempted initiator's writes through it lands afterwards. A
// gateway that is alive but cut off, or stopped, is fenced as surely as a
// dead one.
func (r *record) Notify(note []byte, fence bool) error {
	rs := r.set
	msg := append(r.nonce[:len(r.nonce):len(r.nonce)], note...)
	acks, timeouts, err := rs.wctx.NotifyWithTimeout(r.oid, msg, notifyTimeout)
	if err != nil || len(timeouts) > 0 {
		rs.log.Warn("rbd: a gateway did not acknowledge a shared state change in time", "record", r.name,
			"unanswered", len(timeouts), "error", err)
	}
	if !fence {
		// A gateway that did not answer (librados: ETIMEDOUT) has lost
		// its watch by watchTimeout and reloads before trusting its
		// copy; the change stands.
		if err != nil && errorCode(err) != -int(syscall.ETIMEDOUT) {
			return fmt.Errorf("rbd: notify %s: %w", r.oid, err)
		}
		return nil
	}
	took := map[string]bool{}
	for _, a := range acks {
		if string(a.Response) == ackTaken {
			took[strconv.FormatUint(uint64(a.NotifierID), 10)] = true
		}
	}
	members, merr := rs.members(r.oid)
	if merr != nil {
		return merr
	}
	var fenceErr error
	fenced := 0
	for gid, addrs := range members {
		if gid == rs.gid || took[gid] {
			continue
		}
		rs.log.Warn("rbd: fencing a gateway that did not take a reservation change in (blocklisting it)",
			"record", r.name, "client", gid, "addresses", addrs)
		if err := rs.blocklist(addrs); err != nil {
			fenceErr = fmt.Errorf("rbd: fence gateway client %s of %s: %w", gid, r.oid, err)
			continue
		}
		fenced++
		rs.mu.Lock()
		rs.ioctx.RmOmapKeys(r.oid, []string{gid})
		rs.mu.Unlock()
	}
	if fenceErr == nil && fenced > 0 {
		// The blocklist is in the monitors' OSD map; the OSDs refuse the
		// fenced clients once they have that map. Have it here before
		// answering, so this gateway's own next writes carry it (librbd
		// does the same when it breaks a lock).
		if err := rs.dataConn.WaitForLatestOSDMap(); err != nil {
			fenceErr = fmt.Errorf("rbd: wait for the OSD map after fencing: %w", err)
		}
	}
	return fenceErr
}

// ackTaken is the acknowledgement of a note the watcher took in.
const ackTaken = "taken"

// blocklistExpiry is how long (seconds) a fenced client stays blocklisted:
// a year. The monitor wants a real number, hence the decimal point.
const blocklistExpiry = json.Number("31536000.0")

// leave removes this gateway from record oid (a clean close).
func (rs *recordSet) leave(oid string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.ioctx.RmOmapKeys(oid, []string{rs.gid})
}

// members lists the gateways that joined record oid: client id to addresses.
func (rs *recordSet) members(oid string) (map[string][]string, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	vals, err := rs.ioctx.GetAllOmapValues(oid, "", "", 256)
	if err != nil {
		return nil, fmt.Errorf("rbd: members of %s: %w", oid, err)
	}
	out := make(map[string][]string, len(vals))
	for gid, v := range vals {
		out[gid] = strings.Split(string(v), ",")
	}
	return out, nil
}

// blocklist adds client addresses to the cluster's blocklist: the OSDs
// then refuse their operations.
func (rs *recordSet) blocklist(addrs []string) error {
	for _, addr := range addrs {
		if addr == "" {
			continue
		}
		// The entries name one client instance (address and nonce), never
		// reused: they can outlive a long freeze (a year).
		cmd, _ := json.Marshal(map[string]any{"prefix": "osd blocklist", "blocklistop": "add", "addr": addr, "expire": blocklistExpiry})
		if _, status, err := rs.conn.MonCommand(cmd); err != nil {
			return fmt.Errorf("osd blocklist add %s: %v (%s)", addr, err, status)
		}
	}
	return nil
}

// Watch implements backstore.Record.
func (r *record) Watch(changed func(note []byte) error) error {
	w, err := r.set.wctx.WatchWithTimeout(r.oid, watchTimeout)
	if err != nil {
		return fmt.Errorf("rbd: watch %s: %w", r.oid, err)
	}
	started := false
	r.watchOnce.Do(func() {
		started = true
		r.stopped = make(chan struct{})
		go r.watch(w, changed)
	})
	if !started {
		w.Delete()
		return errors.New("rbd: record already watched")
	}
	return nil
}

// watch serves one record's notifications until close, and watches again
// after a lost watch. It acknowledges this gateway's own notes at once;
// other gateways' go to a worker in order, which acknowledges each when
// changed returns (aborting preempted tasks may take seconds, and this
// gateway's own notify must not wait behind that).
func (r *record) watch(w *rados.Watcher, changed func(note []byte) error) {
	defer close(r.stopped)
	// An item without an event says the watch was lost (watching false)
	// or is back (watching true).
	type item struct {
		ev       *rados.NotifyEvent
		watching bool
	}
	work := make(chan item, 64)
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		for it := range work {
			ev := it.ev
			if ev == nil {
				if it.watching {
					changed([]byte{})
				} else {
					changed(nil)
				}
				continue
			}
			note := []byte{}
			if len(ev.Data) > nonceLen {
				note = ev.Data[nonceLen:]
			}
			ack := []byte(ackTaken)
			if err := changed(note); err != nil {
				// Not taken in: the notifier fences this gateway if the
				// change took anyone's access away.
				r.set.log.Warn("rbd: a shared state change could not be taken in", "record", r.name, "error", err)
				ack = []byte("failed")
			}
			ev.Ack(ack)
		}
	}()
	defer func() {
		close(work)
		<-workerDone
	}()
	for {
		select {
		case <-r.stop:
			w.Delete()
			return
		case ev := <-w.Events():
			if len(ev.Data) >= nonceLen && string(ev.Data[:nonceLen]) == string(r.nonce[:]) {
				ev.Ack([]byte(ackTaken)) // our own note
				continue
			}
			work <- item{ev: &ev}
		case err := <-w.Errors():
			// Changes may have been missed while the watch was down.
			r.set.log.Warn("rbd: shared state watch lost; watching again", "record", r.name, "error", err)
			work <- item{}
			drain(w)
			w.Delete()
			for {
				var err error
				if w, err = r.set.wctx.WatchWithTimeout(r.oid, watchTimeout); err == nil {
					break
				}
				select {
				case <-r.stop:
					return
				case <-time.After(time.Second):
				}
			}
			// A fence may have removed this gateway from the members:
			// join again, so that it can be fenced again.
			r.set.mu.Lock()
			if err := r.set.joinLocked(r.oid); err != nil {
				r.set.log.Warn("rbd: rejoin shared state", "record", r.name, "error", err)
			}
			r.set.mu.Unlock()
			// Watching again: an empty note has the watcher reload what
			// changed between the two watches and trust its copy again.
			work <- item{watching: true}
		}
	}
}

// drain takes what a watcher being deleted may still deliver: go-ceph's
// callbacks block until their event is received, and a failed unwatch
// leaves them waiting for good.
func drain(w *rados.Watcher) {
	go func() {
		timeout := time.After(time.Minute)
		for {
			select {
			case ev := <-w.Events():
				ev.Ack([]byte("failed"))
			case <-w.Errors():
			case <-timeout:
				return
			}
		}
	}()
}

// errorCode is the negative errno of a go-ceph error, 0 for others.
func errorCode(err error) int {
	var opErr rados.OperationError
	if errors.As(err, &opErr) {
		err = opErr.OpError
	}
	var coded interface{ ErrorCode() int }
	if errors.As(err, &coded) {
		return coded.ErrorCode()
	}
	return 0
}

func (r *record) close() {
	close(r.stop)
	if r.stopped != nil {
		<-r.stopped
	}
}

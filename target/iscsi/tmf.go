package iscsi

import "time"

// tmfWait bounds how long a TMF waits for the tasks it aborted to stop.
var tmfWait = 30 * time.Second // a variable so tests can shorten it

// handleTaskMgmt runs a task management function. Waiting for aborted tasks
// happens off the reader goroutine so data for other tasks keeps flowing.
func (c *conn) handleTaskMgmt(h *BHS) error {
	req := h.TaskMgmtRequest()
	respond := func(code uint8) {
		p := getOutPDU()
		r := TaskMgmtResponse{Response: code, ITT: req.ITT}
		c.svc.observeTMF(req.Function&0x7f, code)
		r.Encode(&p.hdr)
		p.advanceSN = true
		c.commandDone(req.Immediate) // before the answer, as complete does
		c.send(p)
	}
	if c.sess == nil {
		respond(TMFRespNotSupported)
		return nil
	}
	dev := c.sess.target.Device
	lun := decodeLUN(req.LUN)
	// The LUN field is in this initiator's numbering and reaches only what
	// its LUN masking lets it see; tasks are matched by the LU they
	// address, so another initiator's numbering of the same LU is covered
	// and a masked LU is out of reach.
	lu := dev.Resolve(c.sess.nexus, lun)
	onLU := func(x *task) bool { return lu != nil && x.cmd.LU() == lu }
	fn := req.Function & 0x7f
	switch fn {
	case TMFAbortTask:
		c.mu.Lock()
		t := c.tasks[req.ReferencedTaskTag]
		c.mu.Unlock()
		if t == nil {
			// Completed already (its response is out or on its way), or never
			// received: RFC 7143 11.5.1 answers "task does not exist".
			respond(TMFRespTaskNotExist)
			return nil
		}
		// The ITT too: once completed, the task may be reused for
		// another command.
		itt := req.ReferencedTaskTag
		waits := c.abortTasks(func(x *task) bool { return x == t && x.itt == itt })
		c.goSender(func() { respond(completeAfter(waits)) })
	case TMFAbortTaskSet, TMFClearTaskSet:
		if lu == nil {
			respond(TMFRespLUNNotExist)
			return nil
		}
		var waits []chan struct{}
		if fn == TMFClearTaskSet {
			// CLEAR TASK SET clears the tasks of every I_T nexus (SAM-5 7.4).
			waits = c.svc.abortTarget(c.sess.target.Name, onLU)
		} else {
			waits = c.abortTasks(onLU)
		}
		c.goSender(func() { respond(completeAfter(waits)) })
	case TMFLogicalUnitReset:
		if lu == nil {
			respond(TMFRespLUNNotExist)
			return nil
		}
		waits := c.svc.abortTarget(c.sess.target.Name, onLU)
		nexus := c.sess.nexus
		c.goSender(func() {
			if code := completeAfter(waits); code != TMFRespFunctionComplete {
				respond(code)
				return
			}
			if err := dev.LUNReset(nexus, lun); err != nil {
				respond(TMFRespLUNNotExist)
				return
			}
			respond(TMFRespFunctionComplete)
		})
	case TMFTargetWarmReset, TMFTargetColdReset:
		name := c.sess.target.Name
		// A cold reset ends the sessions that exist now, not those that
		// log in while it completes (a quick initiator's next session).
		victims := c.svc.sessionsOf(name)
		waits := c.svc.abortTarget(name, func(*task) bool { return true })
		nexus := c.sess.nexus
		c.goSender(func() {
			if code := completeAfter(waits); code != TMFRespFunctionComplete {
				respond(code)
				return
			}
			dev.TargetReset(nexus)
			respond(TMFRespFunctionComplete)
			if fn == TMFTargetColdReset {
				// RFC 7143 11.5.1: a cold reset also drops every connection.
				time.Sleep(100 * time.Millisecond)
				for _, s := range victims {
					s.close()
				}
			}
		})
	case TMFTaskReassign:
		// Needs ErrorRecoveryLevel 2.
		respond(TMFRespReassignNotSupported)
	case TMFClearACA:
		// Blockport never establishes ACA (NACA=0 is the only mode).
		respond(TMFRespNotSupported)
	default:
		respond(TMFRespNotSupported)
	}
	return nil
}

// abortTasks marks this connection's matching tasks aborted and returns
// channels that close when each has stopped. Tasks still waiting for data are
// dropped at once by their reader; executing ones have their context
// cancelled, finish their I/O or stop at their next check, and their
// response is suppressed.
func (c *conn) abortTasks(match func(*task) bool) []chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	var waits []chan struct{}
	for itt, t := range c.tasks {
		if !match(t) {
			continue
		}
		t.aborted.Store(true)
		if t.state == taskExecuting {
			t.ctx.cancel() // commands that run long stop at their next check
			if t.waiters == nil {
				t.waiters = make(chan struct{})
			}
			waits = append(waits, t.waiters)
		} else {
			delete(c.tasks, itt)
			// The reader owns a receiving task's buffer; it may be reading
			// into it right now, so the buffer is left to the GC rather
			// than put back in the pool; it no longer counts.
			c.bufBytes.Add(-int64(t.bufN))
			t.bufN = 0
			c.commandDone(t.immediate)
		}
	}
	return waits
}

// dropWaitingTasks is used when the connection ends: tasks still waiting
// for data-out can never complete. Executing ones finish normally.
func (c *conn) dropWaitingTasks() {
	c.abortTasks(func(t *task) bool { return t.state == taskReceiving })
}

// waitTasks waits until the connection has no task left, bounded by d; it
// reports whether none is left.
func (c *conn) waitTasks(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		c.mu.Lock()
		n := len(c.tasks)
		c.mu.Unlock()
		if n == 0 {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// abortTarget aborts matching tasks in every session of a target.
func (s *Service) abortTarget(target string, match func(*task) bool) []chan struct{} {
	var waits []chan struct{}
	for _, sess := range s.sessionsOf(target) {
		waits = append(waits, sess.conn.abortTasks(match)...)
	}
	return waits
}

// waitAll waits for every channel to close, at most d in all; it reports
// whether they all did.
func waitAll(waits []chan struct{}, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-timer.C:
			return false
		}
	}
	return true
}

// completeAfter waits (tmfWait at most) for the aborted tasks to stop and
// gives the TMF's response: FUNCTION COMPLETE only once none of them can
// still touch the medium (RFC 7143 4.2.3.3: the response comes after the
// affected tasks are terminated). A task stuck in its backstore past the
// bound gets FUNCTION REJECTED, so the initiator escalates (a reset, a new
// session) instead of believing a write that may yet land was stopped.
func completeAfter(waits []chan struct{}) uint8 {
	if waitAll(waits, tmfWait) {
		return TMFRespFunctionComplete
	}
	return TMFRespFunctionRejected
}

package iscsi

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Tasks are reused: a command in the steady state allocates nothing
// (BenchmarkRead4K, BenchmarkWrite4K report the allocations of both ends).
var taskPool = sync.Pool{New: func() any { return new(task) }}

// newTask returns a zeroed task.
func newTask() *task { return taskPool.Get().(*task) }

// putTask gives back a task nothing refers to any more, zeroed but for the
// capacity of its R2T list.
func putTask(t *task) {
	r2ts := t.r2ts[:0]
	*t = task{}
	t.r2ts = r2ts
	taskPool.Put(t)
}

// taskContext is a task's context.Context, part of the task so that a
// command costs no allocation for it. It has no deadline and no values;
// cancel ends it. Its Done channel is made only when something waits on
// it (a long command), Err is an atomic load.
type taskContext struct {
	cancelled atomic.Bool
	mu        sync.Mutex
	done      chan struct{} // guarded by mu; made by Done
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (x *taskContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (x *taskContext) Value(any) any               { return nil }

func (x *taskContext) Err() error {
	if x.cancelled.Load() {
		return context.Canceled
	}
	return nil
}

func (x *taskContext) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		if x.cancelled.Load() {
			return closedChan
		}
		x.done = make(chan struct{})
	}
	return x.done
}

func (x *taskContext) cancel() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cancelled.Swap(true) {
		return
	}
	if x.done != nil {
		close(x.done)
	}
}

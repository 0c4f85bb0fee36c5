package iscsi

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestTaskContext(t *testing.T) {
	tests := []struct {
		name       string
		doneFirst  bool // Done is called before cancel
		cancel     int  // how many times cancel is called
		wantClosed bool
	}{
		{"live, never waited on", false, 0, false},
		{"live, waited on", true, 0, false},
		{"cancelled, then waited on", false, 1, true},
		{"waited on, then cancelled", true, 1, true},
		{"cancelled twice", true, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var x taskContext
			var ctx context.Context = &x
			var early <-chan struct{}
			if tt.doneFirst {
				early = ctx.Done()
			}
			for range tt.cancel {
				x.cancel()
			}
			closed := func(ch <-chan struct{}) bool {
				select {
				case <-ch:
					return true
				default:
					return false
				}
			}
			if got := closed(ctx.Done()); got != tt.wantClosed {
				t.Errorf("Done closed = %v, want %v", got, tt.wantClosed)
			}
			if early != nil && closed(early) != tt.wantClosed {
				t.Errorf("a Done channel taken before cancel: closed = %v, want %v", closed(early), tt.wantClosed)
			}
			wantErr := error(nil)
			if tt.wantClosed {
				wantErr = context.Canceled
			}
			if err := ctx.Err(); err != wantErr {
				t.Errorf("Err = %v, want %v", err, wantErr)
			}
			if _, ok := ctx.Deadline(); ok || ctx.Value("k") != nil {
				t.Error("a task context has no deadline and no values")
			}
		})
	}
}

// TestTaskContextCancelWakesWaiters races waiters taking Done with cancel:
// every waiter wakes.
func TestTaskContextCancelWakesWaiters(t *testing.T) {
	for range 100 {
		var x taskContext
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				select {
				case <-x.Done():
				case <-time.After(5 * time.Second):
					t.Error("waiter not woken by cancel")
				}
			})
		}
		x.cancel()
		wg.Wait()
	}
}

// TestTaskReuse: a task given back comes out zeroed (no buffer, command or
// abort state of the command before), keeping only its R2T capacity.
func TestTaskReuse(t *testing.T) {
	old := newTask()
	old.itt = 7
	old.buf = make([]byte, 10)
	old.aborted.Store(true)
	old.ctx.cancel()
	old.waiters = make(chan struct{})
	old.r2ts = append(old.r2ts, r2tSeq{ttt: 1})
	putTask(old)
	for range 10 { // the pool may hand out a fresh one; try a few
		x := newTask()
		if x.itt != 0 || x.buf != nil || x.aborted.Load() || x.ctx.Err() != nil || x.waiters != nil || len(x.r2ts) != 0 {
			t.Fatalf("reused task not zeroed: itt %d buf %v aborted %v err %v", x.itt, x.buf != nil, x.aborted.Load(), x.ctx.Err())
		}
		putTask(x)
	}
}

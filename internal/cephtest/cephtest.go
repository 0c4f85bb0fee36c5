//go:build ceph

// Package cephtest starts and stops the single-node Ceph cluster of
// integration/ceph/cluster.sh for the tests built with the ceph tag.
package cephtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cluster is a running test cluster.
type Cluster struct {
	Dir  string // its directory; removed by Stop
	Conf string // its ceph.conf
}

// script is integration/ceph/cluster.sh of this source tree.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "integration", "ceph", "cluster.sh")
}

// Start starts a cluster in a new directory under parent (os.TempDir when
// empty), with the pool "rbd". It takes about ten seconds.
func Start(parent string) (*Cluster, error) {
	dir, err := os.MkdirTemp(parent, "ceph-")
	if err != nil {
		return nil, err
	}
	// The daemons detach from the test process; a watchdog stops them if
	// the test process dies without calling Stop (a timeout, a panic),
	// even in the middle of this start.
	watchdog := exec.Command("sh", "-c", `while kill -0 "$1" 2>/dev/null; do sleep 1; done; sleep 1; exec "$2" stop "$3"`,
		"watchdog", strconv.Itoa(os.Getpid()), script(), dir)
	watchdog.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := watchdog.Start(); err == nil {
		go watchdog.Wait()
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(script(), "start", dir)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		err = fmt.Errorf("timed out after 3 minutes")
		<-done
	}
	c := &Cluster{Dir: dir, Conf: strings.TrimSpace(out.String())}
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("start ceph cluster: %v: %s", err, errOut.String())
	}
	return c, nil
}

// Stop stops the daemons and removes the directory.
func (c *Cluster) Stop() error {
	out, err := exec.Command(script(), "stop", c.Dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("stop ceph cluster: %v: %s", err, out)
	}
	return nil
}

// Run runs a ceph command-line tool (ceph, rbd, rados) against the cluster.
func (c *Cluster) Run(tool string, args ...string) (string, error) {
	out, err := exec.Command(tool, append([]string{"-c", c.Conf}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

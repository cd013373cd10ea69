// Package benchproc is what the bench programs (bench/abuse, bench/shadow,
// bench/memory) share about the processes they measure: building
// modelgate from this repository, running it or a stand-in backend as a
// child that cannot outlive the bench, and reading its memory from /proc.
// It lives here so that a fix to how a child is stopped or how RSS is read
// reaches every benchmark's numbers at once.
package benchproc

import (
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// Proc is a child process a bench program started. Stop ends it and only
// it (by PID, not the process group), so a bench never signals processes
// it did not start.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts cmd in its own process group, so a terminal's ^C reaches
// the bench alone and the bench decides how its children end; Pdeathsig
// kills the child if the bench dies first, so an interrupted run leaves
// nothing behind. name is only for the error.
//
// When drained is not nil, cmd.Wait is called only after it is closed:
// Wait closes cmd's pipes, so a caller reading one (a log) must be done
// with it first, or the last lines are lost.
func Start(name string, cmd *exec.Cmd, drained <-chan struct{}) (*Proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		if drained != nil {
			<-drained
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and Err is set.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is cmd.Wait's result; read it only after Done is closed.
func (p *Proc) Err() error { return p.err }

func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, so that modelgate's graceful shutdown is what runs,
// and SIGKILL if the process has not exited within 5 s, so that a bench
// never hangs on a stuck child. A nil or exited Proc is left alone.
func (p *Proc) Stop() {
	if p == nil || p.Exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

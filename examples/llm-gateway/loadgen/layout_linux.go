package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// cpuLayout says which CPU each process of a measurement runs on, as
// ../shared/bench's --layout does; -1 leaves a process unpinned.
type cpuLayout struct {
	name                  string
	driver, mock, gateway int
}

// layouts are ../shared/bench's: isolate gives the gateway a core of its
// own (the load generator and the mock share the other), split puts the
// load generator alone and the mock beside the gateway, none pins nothing.
var layouts = map[string]cpuLayout{
	"isolate": {"isolate", 1, 1, 0},
	"split":   {"split", 1, 0, 0},
	"none":    {"none", -1, -1, -1},
}

// startPinned starts cmd with its CPU affinity set to cpu (none when
// cpu < 0). The child inherits the mask of the thread that forks it, so
// the calling goroutine is locked to a thread whose mask is set for the
// fork and put back after; a Go child then sizes GOMAXPROCS to one CPU.
func startPinned(cmd *exec.Cmd, cpu int) error {
	if cpu < 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	err := cmd.Start()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil && err == nil {
		err = fmt.Errorf("restore affinity: %w", rerr)
	}
	return err
}

// pinSelf moves every thread of this process to cpu and runs Go code on
// one thread at a time (GOMAXPROCS 1), as a pinned child would. Threads
// started later inherit the mask of the thread that starts them.
func pinSelf(cpu int) error {
	if cpu < 0 {
		return nil
	}
	var set unix.CPUSet
	set.Set(cpu)
	runtime.GOMAXPROCS(1)
	// Two passes: a thread started during the first may have copied the
	// old mask.
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
			}
		}
	}
	return nil
}

// unpinSelf gives this process every CPU back (after a measurement run
// inside a test binary).
func unpinSelf(procs int) {
	var set unix.CPUSet
	for i := range runtime.NumCPU() {
		set.Set(i)
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			unix.SchedSetaffinity(tid, &set)
		}
	}
	runtime.GOMAXPROCS(procs)
}

//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

type cpuLayout struct {
	name                  string
	driver, mock, gateway int
}

var layouts = map[string]cpuLayout{"none": {"none", -1, -1, -1}}

func startPinned(cmd *exec.Cmd, cpu int) error {
	if cpu >= 0 {
		return errors.New("CPU layouts need Linux; use -layout none")
	}
	return cmd.Start()
}

func pinSelf(cpu int) error {
	if cpu >= 0 {
		return errors.New("CPU layouts need Linux; use -layout none")
	}
	return nil
}

func unpinSelf(int) {}

package main

import (
	"syscall"
	"unsafe"
)

var procGetProcessAffinityMask = syscall.NewLazyDLL("kernel32.dll").NewProc("GetProcessAffinityMask")

// processCPUSet reads the process affinity mask (GetProcessAffinityMask).
// The mask covers the process's processor group only; the agent never
// places a run across groups, so the numbers are the CPUs within that group.
func processCPUSet() ([]int, error) {
	proc, err := syscall.GetCurrentProcess()
	if err != nil {
		return nil, err
	}
	var processMask, systemMask uintptr
	ok, _, callErr := procGetProcessAffinityMask.Call(uintptr(proc),
		uintptr(unsafe.Pointer(&processMask)), uintptr(unsafe.Pointer(&systemMask)))
	if ok == 0 {
		return nil, callErr
	}
	return cpusFromMask([]uint64{uint64(processMask)}), nil
}

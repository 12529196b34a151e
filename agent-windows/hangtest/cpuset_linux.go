package main

import (
	"syscall"
	"unsafe"
)

// processCPUSet reads the CPUs this process may run on, as the kernel sees
// them (sched_getaffinity), so the agent can check its placement took effect.
func processCPUSet() ([]int, error) {
	var mask [16]uint64 // 1024 CPUs, the kernel's default CONFIG_NR_CPUS bound
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0,
		uintptr(len(mask)*8), uintptr(unsafe.Pointer(&mask[0])))
	if errno != 0 {
		return nil, errno
	}
	return cpusFromMask(mask[:]), nil
}

package main

import (
	"reflect"
	"syscall"
	"testing"
)

var (
	procSetProcessAffinityMask = syscall.NewLazyDLL("kernel32.dll").NewProc("SetProcessAffinityMask")
	procNtResumeProcess        = syscall.NewLazyDLL("ntdll.dll").NewProc("NtResumeProcess")
)

// The agent places a run as the Win32 docs allow: create the process
// suspended, SetProcessAffinityMask, then resume it. The cpu_set hangtest
// reports must be that placement, not the parent's.
func TestCPUSetIsTheAffinitySetBeforeResume(t *testing.T) {
	parent, err := processCPUSet()
	if err != nil {
		t.Fatal(err)
	}
	if len(parent) < 2 {
		t.Skipf("needs two CPUs to tell a placement from the default, have %v", parent)
	}
	cpu := parent[len(parent)-1]
	cmd := hangtestCommand("-scenario", "control-deadlock", "-control-chance", "0",
		"-workers", "1", "-iterations", "10", "-dump-dir", t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: 0x4} // CREATE_SUSPENDED
	events := startHangtest(t, cmd)
	const access = 0x0200 | 0x0800 | 0x0400 // PROCESS_SET_INFORMATION | SUSPEND_RESUME | QUERY_INFORMATION
	h, err := syscall.OpenProcess(access, false, uint32(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.CloseHandle(h)
	if ok, _, err := procSetProcessAffinityMask.Call(uintptr(h), uintptr(1)<<uint(cpu)); ok == 0 {
		t.Fatalf("SetProcessAffinityMask: %v", err)
	}
	if status, _, _ := procNtResumeProcess.Call(uintptr(h)); status != 0 {
		t.Fatalf("NtResumeProcess: NTSTATUS %#x", status)
	}
	start := awaitEvent(t, events, "start")
	got, _ := start["cpu_set"].([]any)
	if want := []any{float64(cpu)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("placed on CPU %d: want cpu_set %v, got %v (num_cpu %v)", cpu, want, start["cpu_set"], start["num_cpu"])
	}
}

package main

// An on-demand goroutine dump without a console. Ctrl+Break needs a console
// shared with the agent, which a Windows service does not have. Instead the
// agent names an event per run (-dump-event Local\reprofarm-dump-<id>),
// creates it before starting hangtest and sets it (SetEvent) to ask for a
// dump. hangtest waits on it in a goroutine of its own. Win32 docs:
// CreateEventW, OpenEventW, WaitForSingleObject, ResetEvent.

import (
	"fmt"
	"syscall"
	"unsafe"
)

var (
	procOpenEventW   = syscall.NewLazyDLL("kernel32.dll").NewProc("OpenEventW")
	procCreateEventW = syscall.NewLazyDLL("kernel32.dll").NewProc("CreateEventW")
	procResetEvent   = syscall.NewLazyDLL("kernel32.dll").NewProc("ResetEvent")
)

const eventModifyState = 0x0002 // EVENT_MODIFY_STATE

const dumpEventSupported = true

// openDumpEvent opens the named event the agent created, or creates it
// (auto-reset, not set) when nobody did, so a person can run hangtest by hand
// and signal it from another process.
func openDumpEvent(name string) (syscall.Handle, error) {
	name16, err := syscall.UTF16PtrFromString(name)
	if err != nil {
		return 0, err
	}
	h, _, openErr := procOpenEventW.Call(syscall.SYNCHRONIZE|eventModifyState, 0, uintptr(unsafe.Pointer(name16)))
	if h != 0 {
		return syscall.Handle(h), nil
	}
	if openErr != syscall.ERROR_FILE_NOT_FOUND {
		return 0, fmt.Errorf("OpenEventW %s: %w", name, openErr)
	}
	h, _, createErr := procCreateEventW.Call(0, 0, 0, uintptr(unsafe.Pointer(name16)))
	if h == 0 {
		return 0, fmt.Errorf("CreateEventW %s: %w", name, createErr)
	}
	return syscall.Handle(h), nil
}

// watchDumpEvent returns a channel that receives once per SetEvent of the
// named event (requests that arrive while a dump is pending are merged).
func watchDumpEvent(name string) (<-chan struct{}, error) {
	h, err := openDumpEvent(name)
	if err != nil {
		return nil, err
	}
	requests := make(chan struct{}, 1)
	go func() {
		for {
			if ev, _ := syscall.WaitForSingleObject(h, syscall.INFINITE); ev != syscall.WAIT_OBJECT_0 {
				return // the handle is unusable: no more dumps by event
			}
			// The agent creates an auto-reset event; reset anyway, so a
			// manual-reset one cannot turn this loop into a dump storm.
			_, _, _ = procResetEvent.Call(uintptr(h))
			select {
			case requests <- struct{}{}:
			default:
			}
		}
	}()
	return requests, nil
}

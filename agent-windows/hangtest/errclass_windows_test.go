package main

import (
	"net"
	"os"
	"syscall"
	"testing"
)

// Real Win32 errno values, wrapped as os and net wrap them: the message text
// of these differs by display language (and under Wine), the number does not.

func TestWindowsClosedPipeWriteErrnosAreExpected(t *testing.T) {
	for _, errno := range []syscall.Errno{232, 109, 233, 995} {
		err := &os.PathError{Op: "write", Path: "|1", Err: errno}
		if !isExpectedWriteError(err) {
			t.Errorf("want %q (errno %d) to be an expected pipe write error", err, uint32(errno))
		}
	}
}

func TestWindowsClosedPipeReadErrnosAreExpected(t *testing.T) {
	for _, errno := range []syscall.Errno{109, 233, 995} {
		err := &os.PathError{Op: "read", Path: "|0", Err: errno}
		if !isExpectedReadError(err) {
			t.Errorf("want %q (errno %d) to be an expected pipe read error", err, uint32(errno))
		}
	}
	// ERROR_NO_DATA is the writer's error; a reader never sees it legitimately.
	if err := (&os.PathError{Op: "read", Path: "|0", Err: syscall.Errno(232)}); isExpectedReadError(err) {
		t.Errorf("want %q (errno 232) from a read to be a real error", err)
	}
}

func TestWindowsResetSocketErrnosAreExpected(t *testing.T) {
	for _, errno := range []syscall.Errno{10054, 10053} {
		err := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("wsasend", errno)}
		if !isExpectedSocketError(err) {
			t.Errorf("want %q (errno %d) to be an expected socket error", err, uint32(errno))
		}
	}
	// WSAECONNREFUSED: nobody listens, not a close.
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connectex", syscall.Errno(10061))}
	if isExpectedSocketError(refused) {
		t.Errorf("want %q to be a real socket error", refused)
	}
}

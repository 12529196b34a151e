//go:build unix

package main

import (
	"net"
	"os"
	"syscall"
	"testing"
)

func TestUnixClosedPipeErrnosAreExpected(t *testing.T) {
	err := &os.PathError{Op: "write", Path: "|1", Err: syscall.EPIPE}
	if !isExpectedWriteError(err) {
		t.Errorf("want %q (EPIPE) to be an expected pipe write error", err)
	}
	if isExpectedReadError(err) {
		t.Errorf("want %q (EPIPE) from a pipe read to be a real error", err)
	}
}

func TestUnixResetSocketErrnosAreExpected(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ECONNRESET, syscall.EPIPE} {
		err := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
		if !isExpectedSocketError(err) {
			t.Errorf("want %q (errno %d) to be an expected socket error", err, errno)
		}
	}
	refused := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNREFUSED)}
	if isExpectedSocketError(refused) {
		t.Errorf("want %q to be a real socket error", refused)
	}
}

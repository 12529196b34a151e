package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestGoClosedErrorsAreExpectedEverywhere(t *testing.T) {
	for _, err := range []error{
		&os.PathError{Op: "write", Path: "|1", Err: os.ErrClosed},
		fmt.Errorf("pipe write: %w", os.ErrClosed),
		&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed},
		io.ErrClosedPipe,
	} {
		if !isExpectedWriteError(err) || !isExpectedReadError(err) || !isExpectedSocketError(err) {
			t.Errorf("want %q to be an expected write, read and socket error", err)
		}
	}
}

func TestEOFIsExpectedForReadsOnly(t *testing.T) {
	if !isExpectedReadError(io.EOF) || !isExpectedSocketError(io.EOF) || !isExpectedSocketError(io.ErrUnexpectedEOF) {
		t.Error("want EOF to end pipe and socket reads as expected, and ErrUnexpectedEOF socket reads")
	}
	if isExpectedWriteError(io.EOF) {
		t.Error("want EOF from a write to be a real error")
	}
}

// The words of a "closed" message, without the errno behind them, must not
// make an error expected: classification is by identity only.
func TestClosedWordsWithoutErrnoAreRealErrors(t *testing.T) {
	for _, err := range []error{
		errors.New("write |1: The pipe is being closed."),
		errors.New("write |1: Pipe closed."),
		errors.New("write: broken pipe"),
		errors.New("wsarecv: An existing connection was forcibly closed by the remote host."),
		errors.New("write /dev/pipe: i/o on hungup channel"),
	} {
		if isExpectedWriteError(err) || isExpectedReadError(err) || isExpectedSocketError(err) {
			t.Errorf("want %q (text only, no errno) to be a real error", err)
		}
	}
}

func TestOtherErrnosAreRealErrors(t *testing.T) {
	// EIO (5) is also ERROR_ACCESS_DENIED (5) on Windows: real on both.
	err := &os.PathError{Op: "write", Path: "|1", Err: syscall.Errno(5)}
	if isExpectedWriteError(err) || isExpectedReadError(err) || isExpectedSocketError(err) {
		t.Errorf("want %q (errno 5) to be a real error", err)
	}
}

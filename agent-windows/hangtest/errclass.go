package main

// Error classification: which errors mean only "closed", that is, the closer
// goroutine closed our end or the other end went away. Errors are classified
// by identity (errors.Is on sentinels and errno values), never by message
// text: Windows words errno messages in its display language, and Wine in its
// own way ("write |1: Pipe closed." for ERROR_NO_DATA), so matching text made
// every run "failed" there. The errno lists per OS are in errclass_unix.go,
// errclass_windows.go and errclass_other.go.

import (
	"errors"
	"io"
	"net"
	"os"
)

// closedAnywhere are Go's own "closed" errors, the same on every OS: our own
// end closed while in use (os.ErrClosed, net.ErrClosed, io.ErrClosedPipe).
var closedAnywhere = []error{os.ErrClosed, net.ErrClosed, io.ErrClosedPipe}

// isExpectedWriteError reports whether a pipe write failed only because the
// pipe was closed, which is what the closer goroutine is there to cause.
func isExpectedWriteError(err error) bool {
	return isAnyOf(err, closedAnywhere) || isAnyOf(err, pipeWriteClosedErrnos)
}

// isExpectedReadError reports whether a pipe read ended only because the
// write end or the read end was closed.
func isExpectedReadError(err error) bool {
	return errors.Is(err, io.EOF) || isAnyOf(err, closedAnywhere) || isAnyOf(err, pipeReadClosedErrnos)
}

// isExpectedSocketError reports whether a socket operation ended only
// because one side was closed or reset. io.ErrUnexpectedEOF is io.ReadFull's
// word for a peer that closed after one byte of the two-byte message.
func isExpectedSocketError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		isAnyOf(err, closedAnywhere) || isAnyOf(err, socketClosedErrnos)
}

func isAnyOf(err error, targets []error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

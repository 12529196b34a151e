package main

import "syscall"

// Win32 error codes (winerror.h) that the syscall package does not name.
const (
	// ERROR_NO_DATA, "The pipe is being closed.": a write to a pipe whose read
	// end is closed. This is what Windows and Wine return for os.Pipe.
	errorNoData = syscall.Errno(232)
	// ERROR_PIPE_NOT_CONNECTED: the other end of a named pipe is gone. Wine
	// implements anonymous pipes as named pipes, and so might a Go runtime
	// that moves os.Pipe to overlapped named pipes.
	errorPipeNotConnected = syscall.Errno(233)
)

// The errnos a closed pipe or socket gives on Windows.
var (
	// ERROR_BROKEN_PIPE is what the CreatePipe documentation promises for a
	// write after the read end closed; ERROR_NO_DATA is what is seen.
	// ERROR_OPERATION_ABORTED: the I/O was cancelled, and the only canceller
	// in hangtest is Close (CancelIoEx in internal/poll, CancelSynchronousIo in
	// toolchains with the fix). Go 1.21-1.27 turn it into os.ErrClosed
	// themselves; it is listed so a toolchain that lets it through is not
	// counted as failing.
	pipeWriteClosedErrnos = []error{errorNoData, syscall.ERROR_BROKEN_PIPE, errorPipeNotConnected,
		syscall.ERROR_OPERATION_ABORTED}
	// A read at a closed write end is ERROR_BROKEN_PIPE, which Go turns into
	// io.EOF for pipes; the rest as for writes.
	pipeReadClosedErrnos = []error{syscall.ERROR_BROKEN_PIPE, errorPipeNotConnected,
		syscall.ERROR_OPERATION_ABORTED}
	// WSAECONNRESET: the peer closed with unread data (a write after the
	// server end closed); WSAECONNABORTED: the stack aborted the connection.
	// syscall.ECONNRESET is an invented number on Windows and never matches.
	socketClosedErrnos = []error{syscall.WSAECONNRESET, syscall.WSAECONNABORTED}
)

//go:build unix

package main

import "syscall"

// The errnos a closed pipe or socket gives on Unix (seen on Linux in both
// scenarios). A pipe read at a closed write end is EOF, never an errno.
var (
	// EPIPE: a write to a pipe whose read end is closed (Go ignores SIGPIPE
	// for every file but stdout and stderr).
	pipeWriteClosedErrnos = []error{syscall.EPIPE}
	pipeReadClosedErrnos  = []error{}
	// ECONNRESET: the peer closed with unread data; EPIPE: a write after that.
	socketClosedErrnos = []error{syscall.ECONNRESET, syscall.EPIPE}
)

//go:build !unix && !windows

package main

// Elsewhere (Plan 9, js, wasip1) only Go's own "closed" errors and EOF count
// as expected; any other error is reported as a real one.
var (
	pipeWriteClosedErrnos = []error{}
	pipeReadClosedErrnos  = []error{}
	socketClosedErrnos    = []error{}
)

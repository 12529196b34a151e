//go:build unix

package main

import (
	"os"
	"syscall"
)

// dumpSignals are the signals that ask for a goroutine dump. SIGQUIT is the
// one Go itself uses; we catch it so the process survives the dump and a
// process dump can still be taken afterwards.
var dumpSignals = []os.Signal{syscall.SIGQUIT}

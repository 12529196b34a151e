package main

// Goroutine dumps: the Go-level view of a hang. On Windows ARM64 no debugger
// reads Go minidumps, so this text is often the only view of the goroutines.

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"
)

var dumpSequence atomic.Int64

// allGoroutineStacks returns the traceback of every goroutine, in the same
// format the runtime prints on a crash (states, wait minutes, created-by).
func allGoroutineStacks() []byte {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// writeGoroutineDump writes all goroutine stacks to a new file in dir and
// returns its absolute path.
func writeGoroutineDump(dir, reason string, now time.Time) (string, error) {
	stacks := allGoroutineStacks()
	seq := dumpSequence.Add(1)
	name := fmt.Sprintf("goroutines-%d-%d-%s.txt", os.Getpid(), seq, reason)
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	header := fmt.Sprintf("# hangtest goroutine dump\n# reason: %s\n# time: %s\n# goroutines: %d\n\n",
		reason, now.UTC().Format(time.RFC3339Nano), runtime.NumGoroutine())
	if err := os.WriteFile(path, append([]byte(header), stacks...), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

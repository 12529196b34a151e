//go:build !windows

package main

import "errors"

// Named events are a Windows object; elsewhere -dump-event is refused at
// flag parsing (send SIGQUIT for a dump instead).
const dumpEventSupported = false

func watchDumpEvent(string) (<-chan struct{}, error) {
	return nil, errors.New("named events exist on Windows only")
}

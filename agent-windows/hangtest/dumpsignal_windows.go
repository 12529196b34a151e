package main

import "os"

// Go has no SIGQUIT dump on Windows. Ctrl+Break (and Ctrl+C) reach a Go
// program as os.Interrupt; the agent starts hangtest in its own process group
// and sends CTRL_BREAK_EVENT to it with GenerateConsoleCtrlEvent.
var dumpSignals = []os.Signal{os.Interrupt}

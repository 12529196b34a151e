//go:build !unix && !windows

package main

import "os"

var dumpSignals = []os.Signal{}

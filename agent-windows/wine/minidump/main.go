// Command minidump writes a minidump of a running Windows process with
// dbghelp's MiniDumpWriteDump and the same dump type the agent uses
// (reprofarm_agent/platform/windows.py): full memory, handles, unloaded
// modules, thread info and full memory info, so a debugger can walk every
// thread. Under Wine it exercises Wine's dbghelp; winedbg --minidump writes
// only MiniDumpNormal (threads, stacks, modules).
//
//	minidump PID FILE
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// MiniDumpWithFullMemory | WithHandleData | WithUnloadedModules |
// WithFullMemoryInfo | WithThreadInfo, as the agent's _MINIDUMP_TYPE.
const dumpType = 0x2 | 0x4 | 0x20 | 0x800 | 0x1000

const (
	processQueryInformation = 0x0400
	processVMRead           = 0x0010
	processDupHandle        = 0x0040
)

var procMiniDumpWriteDump = syscall.NewLazyDLL("dbghelp.dll").NewProc("MiniDumpWriteDump")

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: minidump PID FILE")
		os.Exit(2)
	}
	pid, err := strconv.ParseUint(os.Args[1], 10, 32)
	if err != nil {
		fmt.Fprintln(os.Stderr, "minidump: PID:", err)
		os.Exit(2)
	}
	if err := writeDump(uint32(pid), os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "minidump:", err)
		os.Exit(1)
	}
}

func writeDump(pid uint32, path string) error {
	process, err := syscall.OpenProcess(processQueryInformation|processVMRead|processDupHandle, false, pid)
	if err != nil {
		return fmt.Errorf("OpenProcess %d: %w", pid, err)
	}
	defer syscall.CloseHandle(process)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	ok, _, callErr := procMiniDumpWriteDump.Call(uintptr(process), uintptr(pid), f.Fd(), dumpType, 0, 0, 0)
	if closeErr := f.Close(); closeErr != nil && ok != 0 {
		return closeErr
	}
	if ok == 0 {
		_ = os.Remove(path)
		return fmt.Errorf("MiniDumpWriteDump %d: %w", pid, callErr)
	}
	return nil
}

package main

// The event protocol: hangtest writes one JSON object per line on stdout.
// Every object has "event" (its kind), "v" (the protocol version) and "t"
// (RFC 3339 time with nanoseconds). docs/hangtest-events.md is the contract;
// bump protocolVersion when a field changes meaning or disappears.

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

const protocolVersion = 1

// emitter serialises events so that lines from concurrent goroutines never
// interleave. Each line is written with a single Write call, unbuffered, so a
// reader sees it at once even if the process hangs right after.
type emitter struct {
	mu  sync.Mutex
	out io.Writer
	now func() time.Time
}

func newEmitter(out io.Writer) *emitter {
	return &emitter{out: out, now: time.Now}
}

type startEvent struct {
	HangtestVersion string   `json:"hangtest_version"`
	GoVersion       string   `json:"go_version"`
	GOOS            string   `json:"goos"`
	GOARCH          string   `json:"goarch"`
	GOMAXPROCS      int      `json:"gomaxprocs"`
	NumCPU          int      `json:"num_cpu"`
	CPUSet          []int    `json:"cpu_set"`
	CPUSetError     string   `json:"cpu_set_error,omitempty"`
	PID             int      `json:"pid"`
	Scenario        string   `json:"scenario"`
	Workers         int      `json:"workers"`
	Iterations      int64    `json:"iterations"`
	DurationS       float64  `json:"duration_s"`
	StallTimeoutS   float64  `json:"stall_timeout_s"`
	OnStall         string   `json:"on_stall"`
	Args            []string `json:"args"`
}

type progressEvent struct {
	ElapsedS   float64 `json:"elapsed_s"`
	Iterations int64   `json:"iterations"`
	PerWorker  []int64 `json:"per_worker"`
	Errors     int64   `json:"errors"`
}

type errorEvent struct {
	Worker    int    `json:"worker"`
	Iteration int64  `json:"iteration"`
	Message   string `json:"message"`
}

type stalledWorker struct {
	Worker    int     `json:"worker"`
	Iteration int64   `json:"iteration"`
	StalledS  float64 `json:"stalled_s"`
	Since     string  `json:"since"`
}

type stallEvent struct {
	ElapsedS       float64         `json:"elapsed_s"`
	Workers        []stalledWorker `json:"workers"`
	GoroutineDump  string          `json:"goroutine_dump"`
	DumpError      string          `json:"dump_error,omitempty"`
	Action         string          `json:"action"`
	Iterations     int64           `json:"iterations"`
	GoroutineCount int             `json:"goroutine_count"`
}

type dumpEvent struct {
	Reason        string `json:"reason"`
	GoroutineDump string `json:"goroutine_dump"`
	DumpError     string `json:"dump_error,omitempty"`
}

type doneEvent struct {
	ElapsedS   float64 `json:"elapsed_s"`
	Iterations int64   `json:"iterations"`
	PerWorker  []int64 `json:"per_worker"`
	Errors     int64   `json:"errors"`
	Reason     string  `json:"reason"`
	ExitCode   int     `json:"exit_code"`
}

// emit writes one event. The payload's fields are merged with the envelope
// fields, so every line is a flat object a reader can dispatch on "event".
func (e *emitter) emit(kind string, payload any) {
	body, err := json.Marshal(payload)
	if err != nil {
		// Only our own structs reach here; a failure is a programming error.
		panic(err)
	}
	envelope, err := json.Marshal(struct {
		Event string `json:"event"`
		V     int    `json:"v"`
		T     string `json:"t"`
	}{kind, protocolVersion, e.now().UTC().Format(time.RFC3339Nano)})
	if err != nil {
		panic(err)
	}
	line := make([]byte, 0, len(envelope)+len(body)+1)
	line = append(line, envelope[:len(envelope)-1]...)
	if len(body) > 2 {
		line = append(line, ',')
		line = append(line, body[1:]...)
	} else {
		line = append(line, '}')
	}
	line = append(line, '\n')
	e.mu.Lock()
	defer e.mu.Unlock()
	// A write error (the reader went away) must not stop the workers: the
	// agent may be gone, but a hang still shows in the process dump.
	_, _ = e.out.Write(line)
}

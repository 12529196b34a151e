package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

func decodeLines(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	var events []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not one JSON object: %v", sc.Text(), err)
		}
		events = append(events, m)
	}
	return events
}

func TestEmitWritesFlatObjectWithEnvelope(t *testing.T) {
	var buf bytes.Buffer
	e := newEmitter(&buf)
	e.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC) }
	e.emit("error", errorEvent{Worker: 3, Iteration: 7, Message: "boom"})
	got := decodeLines(t, buf.Bytes())
	if len(got) != 1 {
		t.Fatalf("want 1 line, got %d: %q", len(got), buf.String())
	}
	want := map[string]any{"event": "error", "v": float64(1), "t": "2026-01-02T03:04:05.000000006Z",
		"worker": float64(3), "iteration": float64(7), "message": "boom"}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("field %s: want %v, got %v", k, v, got[0][k])
		}
	}
}

func TestEmitEmptyPayloadStillValidJSON(t *testing.T) {
	var buf bytes.Buffer
	newEmitter(&buf).emit("ping", struct{}{})
	got := decodeLines(t, buf.Bytes())
	if len(got) != 1 || got[0]["event"] != "ping" {
		t.Fatalf("want one ping event, got %q", buf.String())
	}
}

func TestConcurrentEmitsNeverInterleave(t *testing.T) {
	var buf bytes.Buffer
	e := newEmitter(&buf)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				e.emit("error", errorEvent{Worker: i, Iteration: int64(j), Message: strings.Repeat("x", 500)})
			}
		}(i)
	}
	wg.Wait()
	if n := len(decodeLines(t, buf.Bytes())); n != 1000 {
		t.Fatalf("want 1000 whole lines, got %d", n)
	}
}

package main

// socket-pipe-mix: the production variant of the hang. The same goroutines
// (and so, often, the same OS threads) do overlapped socket I/O (on Windows,
// AFD through the I/O completion port) and synchronous pipe I/O, while a
// closer races the closes of both. In the field the thread blocked in a
// synchronous pipe ReadFile had issued socket I/O before, and CancelIoEx on
// the socket then waited for an APC that thread could not receive.

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

type socketPipeMix struct{}

type socketPipeMixWorker struct {
	listener net.Listener
}

func (socketPipeMix) newWorker(int, config) (workerRunner, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	return &socketPipeMixWorker{listener: ln}, nil
}

func (s *socketPipeMixWorker) close() { _ = s.listener.Close() }

func (s *socketPipeMixWorker) iteration(int64) error {
	client, server, err := s.connectedPair()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		_ = client.Close()
		_ = server.Close()
		return fmt.Errorf("os.Pipe: %w", err)
	}
	errs := make(chan error, 3)
	go func() { errs <- mixedWriteUntilClosed(client, w) }()
	go func() { errs <- mixedReadUntilClosed(server, r) }()
	// Closes interleave sockets and pipes so that each kind is cancelled
	// while the other kind's I/O may be pending on the same threads.
	go func() { errs <- closeAfter(time.Millisecond, server, r, client, w) }()
	return firstError(errs, 3)
}

// connectedPair dials the worker's listener and accepts the connection. The
// kernel completes the handshake from its backlog, so Accept after Dial does
// not wait on the dialer.
func (s *socketPipeMixWorker) connectedPair() (net.Conn, net.Conn, error) {
	client, err := net.Dial("tcp", s.listener.Addr().String())
	if err != nil {
		return nil, nil, fmt.Errorf("dial loopback: %w", err)
	}
	server, err := s.listener.Accept()
	if err != nil {
		_ = client.Close()
		return nil, nil, fmt.Errorf("accept loopback: %w", err)
	}
	return client, server, nil
}

func mixedWriteUntilClosed(sock net.Conn, w *os.File) error {
	for {
		n, err := sock.Write(pipeMessage)
		if err != nil {
			if isExpectedSocketError(err) {
				return nil
			}
			return fmt.Errorf("socket write: %w", err)
		}
		if n != len(pipeMessage) {
			return shortIOError("socket write", n, len(pipeMessage))
		}
		n, err = w.Write(pipeMessage)
		if err != nil {
			if isExpectedWriteError(err) {
				return nil
			}
			return fmt.Errorf("pipe write: %w", err)
		}
		if n != len(pipeMessage) {
			return shortIOError("pipe write", n, len(pipeMessage))
		}
	}
}

func mixedReadUntilClosed(sock net.Conn, r *os.File) error {
	buf := make([]byte, len(pipeMessage))
	for {
		// TCP is a byte stream: two bytes may arrive in two reads.
		if _, err := io.ReadFull(sock, buf); err != nil {
			if isExpectedSocketError(err) {
				return nil
			}
			return fmt.Errorf("socket read: %w", err)
		}
		n, err := r.Read(buf)
		if err != nil {
			if isExpectedReadError(err) {
				return nil
			}
			return fmt.Errorf("pipe read: %w", err)
		}
		if n != len(buf) {
			return shortIOError("pipe read", n, len(buf))
		}
	}
}

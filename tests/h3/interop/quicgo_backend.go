// quicgo_backend: an independent HTTP/3 server (quic-go, from Debian) standing in for
// 'peak h3 backend' behind 'peak h3 ingress' in the interop test. It answers a POST with 201 and
// the same JSON as peak h3 backend: the SHA-256 of the body as streamed in, its length, the
// content-type as received and this server's id; GET /healthz with 200 "ok"; anything else 404.
// It serves on UDP [::1]:0, prints "listening on [::1]:PORT" once bound and one line per request
// (method, path, protocol, type, bytes) on stdout; SIGTERM ends it.
//
// Build offline: GO111MODULE=off GOPATH=/usr/share/gocode go build quicgo_backend.go
// Run: quicgo_backend CERT KEY ID
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/lucas-clemente/quic-go/http3"
)

type answer struct {
	Checksum string `json:"checksum"`
	Bytes    int64  `json:"bytes"`
	Type     string `json:"type"`
	Backend  string `json:"backend"`
}

var mu sync.Mutex

func logf(format string, a ...interface{}) {
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf(format+"\n", a...)
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: quicgo_backend CERT KEY ID")
		os.Exit(2)
	}
	cert, err := tls.LoadX509KeyPair(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	id := os.Args[3]
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" && r.URL.Path == "/healthz" {
			logf("request GET /healthz proto=%s", r.Proto)
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "ok\n")
			return
		}
		if r.Method != "POST" {
			logf("request %s %s proto=%s status=404", r.Method, r.URL.Path, r.Proto)
			http.NotFound(w, r)
			return
		}
		// hash as the body streams in: never hold it whole
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			logf("request POST %s proto=%s error=%v", r.URL.Path, r.Proto, err)
			w.WriteHeader(400)
			return
		}
		a := answer{hex.EncodeToString(h.Sum(nil)), n, r.Header.Get("Content-Type"), id}
		body, _ := json.Marshal(a)
		logf("request POST %s proto=%s type=%s bytes=%d", r.URL.Path, r.Proto, a.Type, n)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		w.Write(append(body, '\n'))
	})
	pc, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http3.Server{Handler: handler,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	stopping := make(chan struct{})
	go func() {
		<-sig
		close(stopping)
		srv.Close()
		pc.Close()
	}()
	logf("listening on [::1]:%d", pc.LocalAddr().(*net.UDPAddr).Port)
	err = srv.Serve(pc)
	select {
	case <-stopping: // Serve returns an error once closed: a clean stop all the same
		logf("stopped")
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

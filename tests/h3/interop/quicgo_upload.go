// quicgo_upload: an independent HTTP/3 client (quic-go, from Debian) for the interop test of
// peak h3 backend. It POSTs every FILE:TYPE given, all at once, over the one QUIC connection
// the round tripper keeps per host, and checks each answer's checksum against the file's
// SHA-256. One line per file; exit 1 on any mismatch or error.
//
// Build offline: GO111MODULE=off GOPATH=/usr/share/gocode go build quicgo_upload.go
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/lucas-clemente/quic-go/http3"
)

type answer struct {
	Checksum string `json:"checksum"`
	Bytes    int64  `json:"bytes"`
	Type     string `json:"type"`
	Backend  string `json:"backend"`
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: quicgo_upload URL CA FILE:TYPE...")
		os.Exit(2)
	}
	url, caFile, files := os.Args[1], os.Args[2], os.Args[3:]
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	rt := &http3.RoundTripper{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer rt.Close()
	client := &http.Client{Transport: rt}

	lines := make([]string, len(files))
	bad := make([]bool, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		go func(i int, f string) {
			defer wg.Done()
			k := strings.LastIndex(f, ":")
			path, ctype := f[:k], f[k+1:]
			data, err := os.ReadFile(path)
			if err != nil {
				lines[i], bad[i] = "file="+path+" error="+err.Error(), true
				return
			}
			sum := sha256.Sum256(data)
			want := hex.EncodeToString(sum[:])
			req, _ := http.NewRequest("POST", url, bytes.NewReader(data))
			req.Header.Set("Content-Type", ctype)
			resp, err := client.Do(req)
			if err != nil {
				lines[i], bad[i] = "file="+path+" error="+err.Error(), true
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var a answer
			check := "-"
			if resp.StatusCode == 201 && json.Unmarshal(body, &a) == nil {
				if a.Checksum == want && a.Bytes == int64(len(data)) {
					check = "ok"
				} else {
					check = "MISMATCH"
				}
			}
			bad[i] = check != "ok"
			lines[i] = fmt.Sprintf("file=%s type=%s status=%d proto=%s backend=%s checksum=%s",
				path, ctype, resp.StatusCode, resp.Proto, a.Backend, check)
		}(i, f)
	}
	wg.Wait()
	status := 0
	for i := range lines {
		fmt.Println(lines[i])
		if bad[i] {
			status = 1
		}
	}
	os.Exit(status)
}

// Command mkpki writes a throwaway CA and server and client certificates
// for trying ghostunnel out (make example-pki). They are not for production.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

func main() {
	dir := flag.String("dir", "example-pki", "directory to write ca.pem, server.{crt,key}, client.{crt,key} into")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	const validity = 30 * 24 * time.Hour
	ca := testpki.NewCAValidFor(*dir, "ca", validity)
	srv := testpki.Localhost()
	srv.Server = true
	srv.NotAfter = time.Now().Add(validity)
	ca.Issue("server", srv)
	ca.Issue("client", testpki.Options{CN: "client", URIs: []string{"spiffe://example.org/client"}, Client: true,
		NotAfter: time.Now().Add(validity)})
	fmt.Printf("wrote a throwaway CA and server/client certificates (valid 30 days) to %s\n", *dir)
}

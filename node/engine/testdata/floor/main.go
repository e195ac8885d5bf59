// Command floor is the memory floor that BenchmarkFootprint compares kiln-node with: a bare Go
// process with kiln's etcd client (node/etcdconn), one kept-alive lease with a key under it, and
// one watch, doing nothing else. It exits when its standard input closes.
//
//	floor -endpoints https://127.0.0.1:2379 -ca ca.crt -cert client.crt -key client.key -id m1
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/etcdconn"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(2)
	}
}

func run() error {
	endpoints := flag.String("endpoints", "", "etcd client URLs, comma-separated")
	ca := flag.String("ca", "", "CA certificate")
	cert := flag.String("cert", "", "client certificate")
	key := flag.String("key", "", "client key")
	id := flag.String("id", "floor", "name of the key kept under the lease")
	flag.Parse()
	cli, err := etcdconn.New(strings.Split(*endpoints, ","), *ca, *cert, *key)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, err := cli.Grant(ctx, 5)
	if err != nil {
		return err
	}
	if _, err := cli.Put(ctx, "/floor/"+*id, "up", clientv3.WithLease(g.ID)); err != nil {
		return err
	}
	ka, err := cli.KeepAlive(ctx, g.ID)
	if err != nil {
		return err
	}
	go func() {
		for range ka {
		}
	}()
	go func() {
		for range cli.Watch(ctx, "/floor/", clientv3.WithPrefix()) {
		}
	}()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

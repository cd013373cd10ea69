// Command etcd runs one etcd member from etcd's embed package (v3.7.3, the
// version modelgate's client is built against), for trying cluster mode on
// one machine and for bench/gateway/run.sh's mg-etcd setup, where no etcd
// server of a recent enough version can be installed (Debian's etcd-server
// is 3.4). It is not part of the modelgate binary.
//
//	go run ./examples/cluster/etcd -dir /tmp/etcd-0 -client http://127.0.0.1:2379 -peer http://127.0.0.1:2380
//
// For a cluster of three, give each member its -name and the same
// -initial-cluster (name=peer URL, comma-separated).
package main

import (
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dir := flag.String("dir", "", "data directory (required)")
	name := flag.String("name", "m0", "member name")
	client := flag.String("client", "http://127.0.0.1:2379", "client URL to listen on and advertise")
	peer := flag.String("peer", "http://127.0.0.1:2380", "peer URL to listen on and advertise")
	initial := flag.String("initial-cluster", "", "name=peerURL,... of every member (default: this member alone)")
	noFsync := flag.Bool("unsafe-no-fsync", false, "skip fsync (benchmarks on tmpfs; never for data you keep)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "usage: etcd -dir DIR [-name N] [-client URL] [-peer URL] [-initial-cluster N=URL,...]")
		os.Exit(2)
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir, cfg.LogLevel, cfg.UnsafeNoFsync = *name, *dir, "warn", *noFsync
	cu, err := url.Parse(*client)
	if err != nil {
		log.Fatalf("-client: %v", err)
	}
	pu, err := url.Parse(*peer)
	if err != nil {
		log.Fatalf("-peer: %v", err)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = *initial
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-e.Server.ReadyNotify():
		log.Printf("etcd member %s ready: clients at %s", cfg.Name, *client)
	case err := <-e.Err():
		log.Fatal(err)
	case <-stop:
		return
	}
	select {
	case err := <-e.Err():
		log.Fatal(err)
	case <-stop:
	}
}

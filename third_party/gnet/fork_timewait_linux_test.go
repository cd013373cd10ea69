package gnet

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain waits, before the tests, until no TCP connection of an earlier
// run still holds one of the fixed ports upstream's tests listen on.
// Upstream binds them without SO_REUSEADDR, and the side that closes first
// keeps its port in TIME_WAIT for a minute, so a run started within a
// minute of the last one failed at random ("address already in use", or
// "setsockopt: bad file descriptor" where gnet overwrites that error).
// (modelgate addition; Linux only, where /proc/net/tcp tells.)
func TestMain(m *testing.M) {
	waitFixedPortsFree(90 * time.Second)
	os.Exit(m.Run())
}

// upstreamPort reports whether upstream's tests listen on TCP port p.
func upstreamPort(p int) bool {
	return p >= 7200 && p <= 7210 || p >= 9980 && p <= 10020 || p == 18888 || p == 28888
}

func waitFixedPortsFree(limit time.Duration) {
	deadline := time.Now().Add(limit)
	told := false
	for {
		held := timeWaitPorts()
		if len(held) == 0 || time.Now().After(deadline) {
			return
		}
		if !told {
			fmt.Fprintf(os.Stderr, "gnet tests: waiting up to %s for ports %v, still in TIME_WAIT from an earlier run\n", limit, held)
			told = true
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// timeWaitPorts lists the fixed ports with a connection in TIME_WAIT.
func timeWaitPorts() []int {
	var ports []int
	seen := map[int]bool{}
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "06" { // 06: TIME_WAIT
				continue
			}
			_, port, ok := strings.Cut(fields[1], ":") // local address: hex IP, hex port
			if !ok {
				continue
			}
			p, err := strconv.ParseInt(port, 16, 32)
			if err == nil && upstreamPort(int(p)) && !seen[int(p)] {
				seen[int(p)] = true
				ports = append(ports, int(p))
			}
		}
		f.Close() //nolint:errcheck
	}
	return ports
}

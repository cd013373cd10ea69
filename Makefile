# modelgate: the two commands are `make demo` and `make test`.
GO ?= go
# Debian packages the tests need (installed by `make test` when missing):
# scipy checks internal/stats against the reference implementation; scikit-learn
# serves the real models of examples/sklearn; Chromium runs the dashboard tests;
# HAProxy is the load balancer of examples/cluster, whose test runs it.
APT_PACKAGES := python3-scipy python3-numpy python3-sklearn chromium haproxy
BIN := bin/modelgate
# staticcheck runs in `make test` and must report nothing; `go run` fetches
# this pinned version (honnef.co/go/tools v0.8.2 is staticcheck 2026.2.2)
# through the module proxy and builds it with the Go that runs the tests.
STATICCHECK_VERSION := v0.8.2

.PHONY: build install demo test test-gnet test-rollouts deps fuzz clean screenshots

build:
	$(GO) build -o $(BIN) ./cmd/modelgate

## install: build modelgate straight into $(PREFIX)/bin (default /usr/local/bin; `make install PREFIX=$$HOME/.local` needs no root). GOFLAGS applies as to any go build.
PREFIX ?= /usr/local
install:
	mkdir -p $(DESTDIR)$(PREFIX)/bin
	$(GO) build -o $(DESTDIR)$(PREFIX)/bin/modelgate ./cmd/modelgate

## demo: built-in models and traffic; a good canary is shadowed, ramped and promoted, a bad one rolled back.
## DEMO_FLAGS passes flags to it: make demo DEMO_FLAGS=--keep leaves the dashboard up at the end.
demo: build
	./$(BIN) demo $(DEMO_FLAGS)

## deps: Debian packages and Go modules the tests need.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
	$(GO) mod download
	cd third_party/gnet && $(GO) mod download

## test: go vet, staticcheck, every test with the race detector (fuzz targets run their seed corpus), and the part of gnet's suite closest to the loops (GNET_SUBSET).
test: deps
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) test -race -count=1 -timeout 14m ./...
	cd third_party/gnet && $(GO) test -race -count=1 -timeout 5m -run '$(GNET_SUBSET)' .

# The tests of gnet's suite (third_party/gnet, its own module, outside ./...)
# closest to modelgate's loops, and the fork's own tests (fork_modelgate_test.go):
# level-triggered TCP serving and client, echo with
# sync, async and writev writes, Enroll-ed backend connections (stream proxy),
# large writes, closes, shutdowns, wake-ups; about 30 s with -race on 2 cores.
# TestClosedWakeUp is left out: it binds port 9999 without SO_REUSEADDR, which
# TestClientReadOnEOF's connection holds in TIME_WAIT for a minute.
GNET_SUBSET := ^(TestPauseReadHoldsThePeerBack|TestBatchEndFollowsTraffic|TestServer|TestClient|TestStreamProxyServer|TestSimServer|TestDisconnectedAsyncWrite|TestCloseConnection|TestWakeConn|TestWakeConnImmediately|TestClientReadOnEOF|TestShutdown|TestCloseActionError|TestCloseActionOnOpen|TestShutdownActionError|TestShutdownActionOnOpen|TestStopServer|TestEngineStop|TestTick)$$/^(poll-LT|tcp-proxy-server|packet-size=512,batch=30|packet-size=64\*1024,batch=10|async-write|async-writev)$$/^(tcp|tcp-async|tcp-async-writev|1-loop-LT|N-loop-LT)$$

## test-gnet: gnet's whole upstream suite with the race detector against the fork in third_party/gnet (about 6 min).
test-gnet:
	cd third_party/gnet && $(GO) test -race -count=1 -timeout 20m ./...

## test-rollouts: whole rollouts with the default plan, end to end (the real binary, stand-in models in their own processes, 200 requests/s): identical canaries, one cold and one warmed by hand, promote on their own; about 6 min, so not in `make test`.
test-rollouts: deps
	$(GO) vet -tags rollouts_e2e ./internal/daemon/
	$(GO) test -race -count=1 -timeout 30m -tags rollouts_e2e -run '^TestIdenticalCanaryPromotesFromCold$$' -v ./internal/daemon/

## fuzz: run each fuzz target for a short while (FUZZTIME=30s).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep ^Fuzz); do \
			$(GO) test -run XXX -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

## screenshots: regenerate the dashboard screenshots in docs/img with headless Chromium.
screenshots: deps
	$(GO) test ./internal/dashboardtest/ -run TestDashboard -count=1 -update-screenshots

clean:
	rm -rf bin

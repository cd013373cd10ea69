# modelgate: the two commands are `make demo` and `make test`.
GO ?= go
# Debian packages the tests need (installed by `make test` when missing):
# scipy checks internal/stats against the reference implementation; scikit-learn
# serves the real models of examples/sklearn; Chromium runs the dashboard tests.
APT_PACKAGES := python3-scipy python3-numpy python3-sklearn chromium
BIN := bin/modelgate

.PHONY: build demo test deps fuzz clean screenshots

build:
	$(GO) build -o $(BIN) ./cmd/modelgate

## demo: built-in models and traffic; a good canary is shadowed, ramped and promoted, a bad one rolled back.
demo: build
	./$(BIN) demo

## deps: Debian packages and Go modules the tests need.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
	$(GO) mod download

## test: every test with the race detector (fuzz targets run their seed corpus).
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 14m ./...

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

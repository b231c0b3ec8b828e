# virtap: `make test` installs what it needs (as root), then runs every test,
# the end-to-end ones with a real libvirtd and QEMU guests included.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
FUZZTIME  ?= 5s
export GOFLAGS ?= -mod=mod

.PHONY: all build deps test unit fuzz bench demo e2e clean fmt vet deb

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/virtap ./cmd/virtap
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/virtap-hook ./cmd/virtap-hook

# The Debian package: PIE binaries (lintian wants no static non-PIE ELF),
# then hack/deb (nfpm as a library) writes virtap_VERSION_amd64.deb here.
deb:
	$(GO) build -trimpath -buildmode=pie -ldflags '$(LDFLAGS)' -o $(BIN)/deb/virtap ./cmd/virtap
	CGO_ENABLED=0 $(GO) build -trimpath -buildmode=pie -ldflags '$(LDFLAGS)' -o $(BIN)/deb/virtap-hook ./cmd/virtap-hook
	$(GO) run ./hack/deb -virtap $(BIN)/deb/virtap -hook $(BIN)/deb/virtap-hook -out .

deps:
	@hack/deps.sh

vet:
	$(GO) vet ./...

# Every test: unit, netns, frame-level, fuzz smoke, end-to-end.
test: deps build vet
	$(GO) test -count=1 -timeout 25m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

# Run each fuzz target for FUZZTIME (make fuzz FUZZTIME=10m for longer).
fuzz:
	@hack/fuzz.sh $(FUZZTIME)

bench: deps build
	@hack/bench.sh

demo: deps build
	$(GO) run ./test/demo

e2e: deps build
	$(GO) test -count=1 -v -timeout 20m ./test/...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) virtap_*.deb

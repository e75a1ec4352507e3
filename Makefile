# ghostunnel fleet. `make run` starts configs/example.yaml; `make test` is
# what CI runs.
GO        ?= go
BIN       ?= bin/ghostunnel
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
FUZZTIME  ?= 5s

.PHONY: all build build-lite run example-pki test test-short fuzz bench soak lint clean

# A static build without the OPA policy engine, the SPIFFE Workload API
# client (and their gRPC/protobuf dependencies) and PKCS#11 (cgo): a
# smaller binary and less memory, for fleets that use none of them. Their
# settings are refused with a clear error.
LITE_TAGS := noopa,nospiffe

# Tags of the shipped build. grpcnotrace drops gRPC's golang.org/x/net/trace
# (never enabled here), and with it text/template and html/template, whose
# reflective method calls make the linker keep every exported method of
# every type: 4 MB smaller, about 2.7 MiB less RSS per process.
# cmd/ghostunnel/build_test.go holds the same list.
TAGS := grpcnotrace

all: build

build:
	$(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ghostunnel

build-lite:
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(LITE_TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)-lite ./cmd/ghostunnel

# Throwaway certificates for configs/example.yaml, made afresh each run
# (valid 30 days, never committed).
example-pki:
	$(GO) run ./internal/testpki/cmd/mkpki -dir configs/example-pki

run: build example-pki
	./$(BIN) -config configs/example.yaml

# Everything, with the race detector. Fuzz targets run on their seed
# corpora here (deterministic); `make fuzz` explores new inputs.
test:
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) vet -tags '$(LITE_TAGS)' ./...
	$(GO) test -race -count=1 -timeout 15m -tags '$(TAGS)' ./...
	$(GO) test -race -count=1 -tags '$(LITE_TAGS)' ./tunnel/ ./supervisor/ ./statusd/

test-short:
	$(GO) test -race -short -count=1 -tags '$(TAGS)' ./...

# Each fuzz target on its seed corpus plus FUZZTIME of new inputs.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s -tags '$(TAGS)' ./tunnel/ ./statusd/ ./supervisor/
	$(GO) test -run '^$$' -bench FleetBinary -benchtime 3x -tags '$(TAGS)' ./cmd/ghostunnel/

# The long variants of the fault and load tests.
soak:
	GHOSTUNNEL_SOAK=1 $(GO) test -race -count=1 -timeout 60m -tags '$(TAGS)' -run 'Soak|Hardening' ./...

# staticcheck is fetched from the module proxy at a pinned version, and run
# on both builds: some code is used by one of them only.
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l . && false)
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) mod tidy -diff
	$(STATICCHECK) -tags '$(TAGS)' ./...
	$(STATICCHECK) -tags '$(LITE_TAGS)' ./...

clean:
	rm -rf bin configs/example-pki

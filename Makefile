# sluice build and test. Trivy's code needs encoding/json/v2, hence GOEXPERIMENT.
export GOEXPERIMENT := jsonv2
export CGO_ENABLED ?= 0
GO ?= go
BIN ?= bin/sluice

.PHONY: build test bench vet clean

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/sluice

test: vet
	$(GO) test -count=1 ./...

vet:
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin

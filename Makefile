# `make test` is the one command that runs every test; it first installs
# and starts what the tests need (Nix 2.8, a nix-daemon, OpenSSH).
GO ?= go

.PHONY: test deps unit bench fixtures

test: deps
	$(GO) vet ./...
	$(GO) test -timeout 20m ./...

deps:
	bash scripts/test-deps.sh

# Tests that need no Nix (the rest skip, or fail when CI=true).
unit:
	$(GO) test -short ./...

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./bench/...

# Re-instantiate the testdata expressions with real Nix and refresh fixtures.
fixtures: deps
	bash testdata/refresh.sh

# `make test` is the one command that runs every test; it first installs
# and starts what the tests need (Nix 2.8, a nix-daemon, OpenSSH).
GO ?= go

.PHONY: test deps unit bench fixtures

# The packages that run goroutines also run under the race detector. Measured
# once each with -race on the 2-core CI machine (shared, CI=true): nar/compress
# 87 s, store/daemon 22 s, eval/graph 14 s, sched/executor 13 s, sched 7 s;
# store/copy 396 s in full, most of it TestFromHost and TestToHost pushing
# their closures through the detector's slowdown, so of store/copy only the
# interrupted copies run, which tear down its goroutines mid-stream (74 s),
# and two delta copies, whose remote end is the race-built test binary
# (sender, indexer and assembly at once; 91 s for the three with the
# interrupted delta, on a loaded machine).
# eval/drv (58 s) is mostly single-threaded parsing: only its concurrency
# test runs (4 s). store/ssh (13 s: one master, many sessions) and sched/plan
# (4 s of tests: concurrent validity queries) came later. That adds about four
# minutes to the suite's two and a half.
RACE_PKGS = ./nar/compress ./store/daemon ./store/ssh ./eval/graph ./sched ./sched/plan ./sched/executor

test: deps
	$(GO) vet ./...
	$(GO) test -timeout 20m ./...
	$(GO) test -race -timeout 20m $(RACE_PKGS)
	$(GO) test -race -timeout 20m -run 'Interrupted|TestDeltaMassRebuild|TestDeltaCorrupt' ./store/copy
	$(GO) test -race -run 'Concurrent' ./eval/drv

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

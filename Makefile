# strata: make demo | make test | make bench | make fuzz. BUILD_DIR, JOBS and FUZZ_SECONDS may be
# overridden.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test demo bench fuzz clean

all: build

deps:
	scripts/install-deps.sh

configure:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

demo: deps build
	scripts/demo.sh $(BUILD_DIR)/tools/strata

bench: build
	scripts/bench.sh $(BUILD_DIR)

# The parsers' libFuzzer targets (clang, ASan, UBSan in build-fuzz), each for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(JOBS) scripts/fuzz.sh

clean:
	rm -rf $(BUILD_DIR)

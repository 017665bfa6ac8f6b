#!/usr/bin/env bash
# The fuzz targets in fuzz/ are coverage-guided with AFL++ through `cargo afl` (stable Rust; the
# crate `cargo-afl` builds AFL++ and its LLVM runtime when it is installed).
set -euo pipefail
version=0.18.2
if cargo afl --version 2>/dev/null | grep -q "$version"; then
    echo "cargo-afl $version: present"
    exit 0
fi
cargo install --locked --quiet cargo-afl --version "$version"
cargo afl --version

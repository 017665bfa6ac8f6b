#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, AFL++ instrumentation through `cargo afl`) and runs each for
# a bounded time from its committed seed corpus. Fails if any target found a crash (a panic).
#   scripts/fuzz.sh [SECONDS per target, default 20] [target ...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(contract_invoke chaincode_message block_codec certificate)
export CARGO_TARGET_DIR="${TOM_FUZZ_TARGET_DIR:-$PWD/target}"
cargo afl build --release --locked $(printf -- '--bin %s ' "${targets[@]}")

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
out="$(mktemp -d)"
failed=0
for target in "${targets[@]}"; do
    cargo afl fuzz -i "corpus/$target" -o "$out/$target" -V "$seconds" \
        "$CARGO_TARGET_DIR/release/$target" >"$out/$target.log" 2>&1 || {
        echo "fuzz $target: afl-fuzz failed:" >&2
        tail -20 "$out/$target.log" >&2
        failed=1
        continue
    }
    stats="$out/$target/default/fuzzer_stats"
    execs="$(awk -F' *: *' '$1=="execs_done"{print $2}' "$stats")"
    crashes="$(awk -F' *: *' '$1=="saved_crashes"{print $2}' "$stats")"
    hangs="$(awk -F' *: *' '$1=="saved_hangs"{print $2}' "$stats")"
    echo "fuzz $target: ${execs} inputs in ${seconds} s, ${crashes} crashes, ${hangs} hangs"
    if [ "$crashes" != "0" ]; then
        echo "crashing inputs kept in $out/$target/default/crashes" >&2
        failed=1
    fi
done
exit "$failed"

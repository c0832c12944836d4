#!/usr/bin/env bash
# Build the libFuzzer harnesses of the C core into fuzz/build/ (Debian: clang, libfuzzer-14-dev).
#   fuzz/build.sh            # fuzz/build/fuzz_classifier, fuzz/build/fuzz_framer
#   fuzz/build/fuzz_framer -max_total_time=30 fuzz/corpus/framer   # fuzz (add a scratch dir first to keep finds apart)
#   fuzz/build/fuzz_framer fuzz/corpus/framer/*                    # replay the checked-in corpus once
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
LIBDIR=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
LIB=$("$PY" -c 'import sysconfig; v = sysconfig.get_config_var("LDVERSION"); print("python" + v)')
mkdir -p build
FLAGS=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$INC" -Wno-unused-function)
clang "${FLAGS[@]}" fuzz_classifier.c -o build/fuzz_classifier -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -l"$LIB"
clang "${FLAGS[@]}" fuzz_framer.c -o build/fuzz_framer -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -l"$LIB"

#!/bin/bash -eu
# ClusterFuzzLite entry point: the real build is fuzz/build.sh, which also
# runs here (make fuzz-ossfuzz-test) with libFuzzer's settings.
exec "$SRC/evloop/fuzz/build.sh"

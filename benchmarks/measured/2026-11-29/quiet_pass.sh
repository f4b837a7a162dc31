#!/usr/bin/env bash
# Quiet-machine benchmark pass: pauses the campaign's training process, runs the timing
# benchmarks one after the other, resumes it (also on error).
cd "$(dirname "$0")/../../.."  # the repository root
PIDS=$(pgrep -f "jdc_jax.main" | tr '\n' ' ')
echo "pausing $PIDS"; kill -STOP $PIDS
trap 'kill -CONT $PIDS; echo resumed' EXIT
sleep 90
PEER=benchmarks/.peer-venv/bin/python
OURS=.venv/bin/python
out=runs/bench; mkdir -p $out
date; cat /proc/loadavg
$PEER benchmarks/bench_vs_compressai.py --parts coding --pairs cheng2020-anchor --ours codec,jicd --repeats 3 --peer_repeats 2 --json $out/coding_cheng.json > $out/coding_cheng.log 2>&1
date; cat /proc/loadavg
$PEER benchmarks/bench_vs_compressai.py --parts coding,inference --pairs mbt2018-mean --repeats 3 --json $out/coding_mbt.json > $out/coding_mbt.log 2>&1
date; cat /proc/loadavg
$PEER benchmarks/bench_vs_compressai.py --parts inference --pairs cheng2020-anchor --ours codec,jicd --repeats 3 --json $out/inference_cheng.json > $out/inference_cheng.log 2>&1
date; cat /proc/loadavg
$PEER benchmarks/bench_vs_compressai.py --parts train --pairs mbt2018-mean --repeats 2 --json $out/train_mbt.json > $out/train_mbt.log 2>&1
date; cat /proc/loadavg
$PEER benchmarks/bench_vs_compressai.py --parts train --pairs cheng2020-anchor --ours codec,jicd --repeats 2 --json $out/train_cheng.json > $out/train_cheng.log 2>&1
date; cat /proc/loadavg
$OURS benchmarks/bench_input_wait.py --steps 2 > $out/input_wait.log 2>&1
date; cat /proc/loadavg
$OURS benchmarks/bench_data_parallel.py > $out/data_parallel.log 2>&1
date; cat /proc/loadavg

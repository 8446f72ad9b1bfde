#!/bin/sh
# Every figure of docs/BENCHMARKS.md "LDPC: a fixed-point kernel's ceiling": writes figures/
# (run from anywhere; about 5 minutes on the 2-core VM).  Summaries: python summarize.py.
set -e
cd "$(dirname "$0")"
PY=../../.venv/bin/python
export OPENBLAS_NUM_THREADS=1
mkdir -p figures
{ date -u; uptime; } > figures/load.txt
$PY check.py 5 6 > figures/check.txt
for q in 0.02 0.05 0.08; do
    $PY kbench.py $q 10 15 5 numba f32 i16 > figures/kbench_$q.txt
done
for q in 0.02 0.08; do
    $PY kbench.py $q 10 15 5 i16 i16-nophi i16-nopc i16-nophi-nopc > figures/kparts_$q.txt
done
uptime >> figures/load.txt
for q in 0.02 0.05 0.08; do
    $PY protocol.py --qber $q --frames 100 --seed 1 --rounds 2 > figures/blind_${q}_s1.jsonl
    $PY protocol.py --qber $q --frames 100 --seed 2 > figures/blind_${q}_s2.jsonl
done
uptime >> figures/load.txt
SINGLE="--set f_start=1.10 --set steps=0 --set pre=0 --set max_retries=0"
for q in 0.02 0.05 0.08; do
    $PY protocol.py --qber $q --frames 100 --seed 2 $SINGLE > figures/single_${q}_s2.jsonl
    $PY protocol.py --qber $q --frames 100 --seed 2 $SINGLE --set stall=100 --set window=0 > figures/single_nostop_${q}_s2.jsonl
done
{ uptime; date -u; } >> figures/load.txt

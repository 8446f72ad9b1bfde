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
# added after the first run (04:02-04:05 UTC): the parts at 5 %, the phi variants' timing, and
# the single-attempt failures at 8 % over more seeds and kernel variants
$PY kbench.py 0.05 10 15 5 i16 i16-nophi i16-nopc i16-nophi-nopc > figures/kparts_0.05.txt
$PY kbench.py 0.02 10 15 5 i16 i16phix i16q7 > figures/kvariants_0.02.txt
$PY protocol.py --qber 0.08 --frames 40 --seed 1 $SINGLE > figures/single8_s1.jsonl
$PY protocol.py --qber 0.08 --frames 100 --seed 3 $SINGLE > figures/single8_s3.jsonl
for s in 2 3; do
    $PY protocol.py --qber 0.08 --frames 100 --seed $s --kernels i16q7,i16phix $SINGLE > figures/single8_variants_s$s.jsonl
    $PY protocol.py --qber 0.08 --frames 100 --seed $s --kernels numba --decoder sp $SINGLE > figures/single8_sp_s$s.jsonl
done
uptime >> figures/load.txt
# other QBERs (04:05 UTC): 40 frames each, seed 1
for q in 0.01 0.03 0.11; do
    $PY protocol.py --qber $q --frames 40 --seed 1 > figures/blind_other_${q}_s1.jsonl
done
uptime >> figures/load.txt

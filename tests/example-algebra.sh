#!/bin/sh
# tests/example-algebra.sh: examples/algebra_model trains its residual
# layer-norm network on the spiral (accuracy above 90% after 300 steps, the
# same every run for a seed), its composed and fused losses agree at every
# step, and a bad argument is refused.
prog=examples/algebra_model
out=$($prog --steps 300 --seed 3) || { echo "exit status $?: $out"; exit 1; }
echo "$out" | grep -q "agreed at every step" || { echo "no agreement line: $out"; exit 1; }
acc=$(echo "$out" | sed -n 's/^training accuracy \([0-9.]*\)%.*/\1/p')
[ -n "$acc" ] || { echo "no accuracy line: $out"; exit 1; }
awk "BEGIN { exit !($acc >= 90) }" || { echo "accuracy $acc% is below 90%"; exit 1; }
again=$($prog --steps 300 --seed 3)
[ "$out" = "$again" ] || { echo "two runs with one seed differ"; exit 1; }
$prog --steps x >/dev/null 2>&1
[ $? -eq 2 ] || { echo "a bad --steps should exit 2"; exit 1; }
echo "example-algebra: ok ($acc%)"

#!/bin/sh
# tests/mnist-cli.sh: tapegrad-mnist as a user runs it, on a small synthetic
# data set: bad options, missing data, the CSV log and SVG plot, and a run
# stopped after 2 epochs and resumed for 2 more ending bit-identical to 4
# epochs in one go; the same for --graph cnn with dropout and batch norm,
# and a step of --graph nielsen-cnn.
set -u
prog=./tapegrad-mnist
dir=$(mktemp -d) || exit 99
trap 'rm -rf "$dir"' EXIT
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }

# Bad options: usage and exit status 2, nothing trained.
for args in "--graph foo" "--epochs 0" "--lr -1" "--lr nan" "--batch 1x" \
            "--bogus" "--epochs" "extra" "--cost quadratic" \
            "--optimizer nesterov --momentum 0" "--threads 0" \
            "--graph cnn --dropout 1" "--graph cnn --batch-norm 2" \
            "--graph mlp --dropout 0.5" "--graph nielsen-cnn --batch-norm 1" \
            "--lambda -1"; do
  # shellcheck disable=SC2086
  $prog $args >"$dir/out" 2>&1
  st=$?
  if [ $st -eq 2 ] && grep -q 'tapegrad-mnist' "$dir/out"; then ok "rejects $args"
  else bad "'$args' gave status $st: $(head -n 2 "$dir/out")"; fi
done

# An unknown graph is named in the message.
$prog --graph lenet >"$dir/out" 2>&1
st=$?
if [ $st -eq 2 ] && grep -q "invalid --graph: 'lenet'" "$dir/out"; then ok "names an unknown graph"
else bad "--graph lenet gave status $st: $(head -n 2 "$dir/out")"; fi

$prog --data "$dir/none" >"$dir/out" 2>&1
st=$?
if [ $st -eq 1 ] && grep -q 'found neither' "$dir/out"; then ok "missing data"
else bad "missing data gave status $st: $(cat "$dir/out")"; fi

./tests/mkidx "$dir" 600 200 || exit 99
common="--data $dir --limit 500 --batch 20 --threads 1 --seed 7"

# An output into a missing or unwritable folder fails before any training:
# status 2 and a message naming the option and the path.
: >"$dir/plainfile"
for opt in --save --log --plot --dot; do
  for path in "$dir/missing/out" "$dir/plainfile/out"; do
    # shellcheck disable=SC2086
    $prog $common --epochs 1 "$opt" "$path" >"$dir/out" 2>&1
    st=$?
    if [ $st -eq 2 ] && grep -q -- "$opt '$path'" "$dir/out" && ! grep -q '^epoch' "$dir/out"; then
      ok "$opt into a bad folder fails before training"
    else bad "$opt $path gave status $st: $(head -n 3 "$dir/out")"; fi
  done
done

# A FIFO given to --resume is refused at once, not waited on (the timeout
# turns a hang into a failure).
mkfifo "$dir/fifo" || exit 99
# shellcheck disable=SC2086
timeout 60 $prog $common --epochs 1 --resume "$dir/fifo" >"$dir/out" 2>&1
st=$?
if [ $st -eq 1 ] && grep -q "$dir/fifo: not a regular file" "$dir/out"; then ok "refuses a FIFO checkpoint"
else bad "--resume FIFO gave status $st: $(tail -n 2 "$dir/out")"; fi
# shellcheck disable=SC2086
$prog $common --epochs 4 --log "$dir/log.csv" --plot "$dir/plot.svg" >"$dir/full" 2>&1 ||
  bad "4 epochs: $(tail -n 3 "$dir/full")"
rows=$(wc -l <"$dir/log.csv" 2>/dev/null || echo 0)
if [ "$rows" -eq 5 ] && head -n 1 "$dir/log.csv" | grep -q '^epoch,train_loss'; then ok "csv log"
else bad "csv log has $rows lines"; fi
if head -c 4 "$dir/plot.svg" | grep -q '<svg' && tail -n 1 "$dir/plot.svg" | grep -q '</svg>' &&
   [ "$(grep -c '<polyline' "$dir/plot.svg")" -eq 3 ]; then ok "svg plot"
else bad "svg plot is not a whole chart"; fi
acc=$(sed -n 's/^test accuracy: \([0-9]*\)\..*/\1/p' "$dir/full")
if [ "${acc:-0}" -ge 60 ]; then ok "learns ($acc%)"; else bad "test accuracy ${acc:-none}% < 60%"; fi

# shellcheck disable=SC2086
$prog $common --epochs 2 --save "$dir/ck" >"$dir/half" 2>&1 || bad "2 epochs: $(tail -n 3 "$dir/half")"
# shellcheck disable=SC2086
$prog $common --epochs 4 --resume "$dir/ck" --save "$dir/ck" >"$dir/resumed" 2>&1 ||
  bad "resume: $(tail -n 3 "$dir/resumed")"
h1=$(grep '^parameters: xxh3' "$dir/full")
h2=$(grep '^parameters: xxh3' "$dir/resumed")
if [ -n "$h1" ] && [ "$h1" = "$h2" ] && grep -q 'resumed from' "$dir/resumed"; then
  ok "2 + 2 resumed epochs equal 4 ($h1)"
else bad "resumed parameters differ: '$h1' vs '$h2'"; fi

# shellcheck disable=SC2086
$prog $common --epochs 4 --lr 0.1 --batch 10 --resume "$dir/ck" >"$dir/other" 2>&1
st=$?
if [ $st -ne 0 ] && grep -q 'saved with batch 20, this run has 10' "$dir/other"; then ok "refuses a different run's checkpoint"
else bad "resume with other settings gave status $st: $(tail -n 2 "$dir/other")"; fi
# A decaying rate depends on the planned epochs: resuming it with others is refused.
# shellcheck disable=SC2086
$prog $common --epochs 2 --schedule cosine --save "$dir/cos" >"$dir/cos2" 2>&1 ||
  bad "cosine 2 epochs: $(tail -n 3 "$dir/cos2")"
# shellcheck disable=SC2086
$prog $common --epochs 4 --schedule cosine --resume "$dir/cos" >"$dir/cos4" 2>&1
st=$?
if [ $st -ne 0 ] && grep -q 'saved with schedule cosine over 2 epochs, this run has cosine over 4 epochs' "$dir/cos4"
then ok "refuses to stretch a cosine schedule on resume"
else bad "cosine resume with more epochs gave status $st: $(tail -n 2 "$dir/cos4")"; fi
printf 'not a checkpoint' >"$dir/junk"
# shellcheck disable=SC2086
$prog $common --epochs 4 --resume "$dir/junk" >"$dir/other" 2>&1
st=$?
if [ $st -eq 1 ] && grep -q "$dir/junk" "$dir/other"; then ok "refuses a junk checkpoint"
else bad "junk checkpoint gave status $st: $(tail -n 2 "$dir/other")"; fi

# --graph cnn, the real graph on 500 images (Adam, as SGD needs more epochs
# on this noisy set): 4 epochs in one go learn far above chance (10%), and
# 2 + 2 resumed epochs end with the same bits, dropout's masks and batch
# norm's running statistics included (the second hash covers those).
cnn="--graph cnn --data $dir --limit 500 --batch 20 --seed 7 --threads 1 --optimizer adam --lr 0.0005 --batch-norm 1 --schedule none"
# shellcheck disable=SC2086
$prog $cnn --epochs 4 --log "$dir/cnn.csv" --plot "$dir/cnn.svg" --dot "$dir/cnn.dot" >"$dir/cnnfull" 2>&1 ||
  bad "cnn 4 epochs: $(tail -n 3 "$dir/cnnfull")"
acc=$(sed -n 's/^test accuracy: \([0-9]*\)\..*/\1/p' "$dir/cnnfull")
if [ "${acc:-0}" -ge 70 ]; then ok "cnn learns ($acc%)"; else bad "cnn test accuracy ${acc:-none}% < 70%"; fi
if [ "$(wc -l <"$dir/cnn.csv")" -eq 5 ] && grep -q '</svg>' "$dir/cnn.svg" &&
   grep -q 'conv2d' "$dir/cnn.dot" && grep -q 'batch_norm' "$dir/cnn.dot" &&
   grep -q 'dropout' "$dir/cnn.dot" && grep -q '^accuracy' "$dir/cnnfull"; then
  ok "cnn: csv log, svg plot, dot graph, confusion matrix"
else bad "cnn outputs incomplete"; fi
# shellcheck disable=SC2086
$prog $cnn --epochs 2 --save "$dir/cnnck" >"$dir/cnnhalf" 2>&1 || bad "cnn 2 epochs: $(tail -n 3 "$dir/cnnhalf")"
# shellcheck disable=SC2086
$prog $cnn --epochs 4 --resume "$dir/cnnck" >"$dir/cnnres" 2>&1 || bad "cnn resume: $(tail -n 3 "$dir/cnnres")"
h1=$(grep 'xxh3' "$dir/cnnfull" | tr '\n' ' ')
h2=$(grep 'xxh3' "$dir/cnnres" | tr '\n' ' ')
if [ "$(grep -c xxh3 "$dir/cnnfull")" -eq 2 ] && [ "$h1" = "$h2" ] && grep -q 'resumed from' "$dir/cnnres"; then
  ok "cnn: 2 + 2 resumed epochs equal 4 ($h1)"
else bad "cnn resumed state differs: '$h1' vs '$h2'"; fi
# shellcheck disable=SC2086
$prog $cnn --batch-norm 0 --epochs 4 --resume "$dir/cnnck" >"$dir/other" 2>&1
st=$?
if [ $st -ne 0 ] && grep -q 'saved with regularisation dropout 0.5, batch norm 1' "$dir/other"; then
  ok "cnn: refuses a checkpoint with batch norm into a run without"
else bad "cnn resume without batch norm gave status $st: $(tail -n 2 "$dir/other")"; fi

# --graph nielsen-cnn trains a step: the last sixth of the 600 images is
# its validation set, and it reports the test accuracy at the best epoch.
$prog --graph nielsen-cnn --data "$dir" --limit 100 --epochs 1 --threads 1 \
  --log "$dir/ncnn.csv" >"$dir/ncnn" 2>&1 || bad "nielsen-cnn: $(tail -n 3 "$dir/ncnn")"
if grep -q '100 training images' "$dir/ncnn" && grep -q '^epoch  1 .* val [0-9.]*%' "$dir/ncnn" &&
   grep -q '^best validation accuracy .* at epoch 1: test accuracy' "$dir/ncnn"; then
  ok "nielsen-cnn trains with a validation split"
else bad "nielsen-cnn output: $(tail -n 3 "$dir/ncnn")"; fi
# its CSV log carries the validation accuracy, the same as the epoch line's
val=$(sed -n 's/^epoch  1 .* val \([0-9.]*\)%.*/\1/p' "$dir/ncnn")
if head -n 1 "$dir/ncnn.csv" | grep -q ',val_accuracy$' &&
   awk -F, -v v="$val" 'NR == 2 { d = $7 - v; exit !(NF == 7 && d < 0.006 && d > -0.006) }' "$dir/ncnn.csv"; then
  ok "nielsen-cnn's CSV log has the validation accuracy"
else bad "nielsen-cnn CSV: $(cat "$dir/ncnn.csv") (epoch line: $val)"; fi

[ $fails -eq 0 ]

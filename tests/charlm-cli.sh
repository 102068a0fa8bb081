#!/bin/sh
# tests/charlm-cli.sh: tapegrad-charlm as a user runs it: a short training
# run on the built-in text whose loss must fall far below chance, a run
# stopped and resumed that ends bit-identical to one in a go, the log and
# plot, seeded sampling, --profile, and bad input (options, a prompt longer than the
# context, bytes outside the vocabulary, missing data, a FIFO, a corrupt
# checkpoint, a model shape that is not the checkpoint's): each a clear
# message and a non-zero exit.
set -u
prog=./tapegrad-charlm
dir=$(mktemp -d) || exit 99
trap 'rm -rf "$dir"' EXIT
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
# expect STATUS FRAGMENT DESCRIPTION ARGS...: the run exits with STATUS and
# its output holds FRAGMENT.
expect() {
  want=$1 frag=$2 what=$3
  shift 3
  "$prog" "$@" >"$dir/out" 2>&1
  st=$?
  if [ $st -eq "$want" ] && grep -q -- "$frag" "$dir/out"; then ok "$what"
  else bad "$what: status $st (expected $want): $(head -n 3 "$dir/out")"; fi
}

tiny="--builtin --layers 2 --heads 2 --width 32 --context 16 --batch 8 --threads 1 --eval-batches 4"

for args in "--layers 0" "--heads 3" "--vocab 1" "--vocab 257" "--dropout 1" \
            "--lr -1" "--lr nan" "--steps x" "--temperature -1" "--bogus" "extra" \
            "--warmup 20 --steps 10" "--stop-at 20 --steps 10" "--steps 0 --save $dir/x"; do
  # shellcheck disable=SC2086
  expect 2 'tapegrad-charlm' "rejects $args" $args
done
# shellcheck disable=SC2086
expect 2 'longer than the context of 16' "a prompt longer than the context" \
  $tiny --prompt "seventeen bytes!!"
# shellcheck disable=SC2086
expect 2 'outside the vocabulary of 100' "a prompt byte outside the vocabulary" \
  $tiny --vocab 100 --prompt "xyz"
expect 1 'cannot read' "missing data" --data-dir "$dir/none"
mkdir "$dir/utf8"
printf 'caf\303\251 and more than enough text to fill a context window\n' >"$dir/utf8/train.txt"
cp "$dir/utf8/train.txt" "$dir/utf8/val.txt"
expect 1 'byte 3 is 0xc3, outside the vocabulary of 128' "a data byte outside the vocabulary" \
  --data-dir "$dir/utf8" --vocab 128 --context 8 --steps 1
mkdir "$dir/short" && printf 'abc\n' >"$dir/short/train.txt" && cp "$dir/short/train.txt" "$dir/short/val.txt"
expect 1 'holds 4 bytes' "a text shorter than the context" --data-dir "$dir/short" --context 8 --steps 1
mkdir "$dir/fifo" && mkfifo "$dir/fifo/train.txt" || exit 99
if timeout 60 "$prog" --data-dir "$dir/fifo" --steps 1 >"$dir/out" 2>&1; then bad "a FIFO was read"
elif grep -q 'not a regular file' "$dir/out"; then ok "refuses a FIFO"
else bad "FIFO: $(cat "$dir/out")"; fi

# Training on the built-in line: chance is ln 256 = 5.55 nats per byte and
# the line's own byte frequencies give 2.59; only a model that uses
# the context gets below 0.5.
# shellcheck disable=SC2086
"$prog" $tiny --steps 300 --warmup 30 --eval-every 100 --lr 1e-2 --log "$dir/log.csv" \
  --plot "$dir/plot.svg" --save "$dir/full.ck" >"$dir/full" 2>&1 || bad "training: $(tail -n 3 "$dir/full")"
val=$(sed -n 's/^final: train [0-9.]*  val \([0-9.]*\) nats per byte$/\1/p' "$dir/full")
if [ -n "$val" ] && awk -v v="$val" 'BEGIN { exit !(v < 0.5) }'; then ok "training: validation loss $val < 0.5"
else bad "training: validation loss '$val' (want < 0.5): $(cat "$dir/full")"; fi
rows=$(wc -l <"$dir/log.csv" 2>/dev/null || echo 0)
if [ "$rows" -eq 4 ] && head -n 1 "$dir/log.csv" | grep -q '^step,train_loss,val_loss'; then ok "csv log"
else bad "csv log has $rows lines"; fi
if [ "$(grep -c '<polyline' "$dir/plot.svg" 2>/dev/null)" -eq 2 ]; then ok "svg plot of both curves"
else bad "svg plot"; fi

# Stopped at step 150 and resumed: the same parameters, bit for bit, with
# dropout on (its random stream is in the checkpoint too).
run="$tiny --steps 200 --warmup 20 --eval-every 50 --dropout 0.1"
# shellcheck disable=SC2086
"$prog" $run >"$dir/one" 2>&1 || bad "one go: $(tail -n 2 "$dir/one")"
# shellcheck disable=SC2086
"$prog" $run --stop-at 150 --save "$dir/half.ck" >"$dir/a" 2>&1 || bad "first half: $(tail -n 2 "$dir/a")"
# shellcheck disable=SC2086
"$prog" $run --resume "$dir/half.ck" >"$dir/b" 2>&1 || bad "resumed: $(tail -n 2 "$dir/b")"
h1=$(grep '^parameters: xxh3' "$dir/one")
h2=$(grep '^parameters: xxh3' "$dir/b")
h0=$(grep '^parameters: xxh3' "$dir/a")
if [ -n "$h1" ] && [ "$h1" = "$h2" ] && [ "$h0" != "$h1" ] && grep -q 'resumed from .* at step 150' "$dir/b"; then
  ok "stop and resume is bit-identical ($h1)"
else bad "resume: '$h1' vs '$h2' (stopped: '$h0')"; fi

# --profile prints the table, the shares and the memory, and trains the
# same parameters as a run without it (no timing is checked). Steps 2 to
# 200 of 2 layers make 199 x 2 x 2 attention products.
# shellcheck disable=SC2086
"$prog" $run --profile >"$dir/prof" 2>&1 || bad "--profile: $(tail -n 2 "$dir/prof")"
hp=$(grep '^parameters: xxh3' "$dir/prof")
if grep -q '^region  *op  *fwd calls' "$dir/prof" && grep -q '^attention  *matmul_ex  *796 ' "$dir/prof" &&
   grep -qE '^profile: step [0-9.]+ ms: matmuls [0-9.]+%, attention \(other ops\) [0-9.]+%, rest [0-9.]+%, optimizer [0-9.]+%' "$dir/prof" &&
   grep -qE '^profile: memory: tape arena peak [0-9.]+ MiB .* peak RSS [0-9.]+ MiB' "$dir/prof" &&
   [ "$hp" = "$h1" ]; then ok "--profile prints the shares and memory, same parameters"
else bad "--profile: '$hp' vs '$h1': $(grep '^profile' "$dir/prof")"; fi

# A resumed run with other settings is refused, naming what differs.
# shellcheck disable=SC2086
expect 1 "the model's shape does not match the checkpoint: saved with width 32, this run has 48" \
  "a model shape that is not the checkpoint's" $run --width 48 --resume "$dir/half.ck"
# shellcheck disable=SC2086
expect 1 "saved with tied 1, this run has 0" "an untied model from a tied checkpoint" \
  $run --untied --resume "$dir/half.ck"
# shellcheck disable=SC2086
expect 1 "the run's settings does not match the checkpoint: saved with batch 8" \
  "other training settings" $tiny --steps 200 --warmup 20 --eval-every 50 --dropout 0.1 --batch 4 \
  --resume "$dir/half.ck"
cp "$dir/half.ck" "$dir/bad.ck"
size=$(wc -c <"$dir/bad.ck")
printf 'X' | dd of="$dir/bad.ck" bs=1 seek=$((size - 10)) conv=notrunc 2>/dev/null
# shellcheck disable=SC2086
expect 1 'checksum' "a corrupt checkpoint" $run --resume "$dir/bad.ck"
head -c 100 "$dir/half.ck" >"$dir/trunc.ck"
# shellcheck disable=SC2086
expect 1 'trunc.ck' "a truncated checkpoint" $run --resume "$dir/trunc.ck"

# Sampling from a checkpoint (--steps 0), seeded: the same text twice, and
# the trained model goes on with its line.
# shellcheck disable=SC2086
"$prog" $tiny --steps 0 --resume "$dir/full.ck" --sample 40 --prompt "a tiny" --temperature 0.5 \
  --quiet >"$dir/s1" 2>&1 || bad "sample: $(cat "$dir/s1")"
# shellcheck disable=SC2086
"$prog" $tiny --steps 0 --resume "$dir/full.ck" --sample 40 --prompt "a tiny" --temperature 0.5 \
  --quiet >"$dir/s2" 2>&1
if cmp -s "$dir/s1" "$dir/s2" && grep -q '^a tiny transformer' "$dir/s1"; then ok "seeded sampling: $(head -c 46 "$dir/s1")"
else bad "sampling: $(cat "$dir/s1") / $(cat "$dir/s2")"; fi

[ $fails -eq 0 ] || { echo "$fails failures"; exit 1; }
echo "tapegrad-charlm: all command-line checks pass"

#!/bin/sh
# tests/explain-svg.sh: softmax_nll_explain --svg draws row 0 as four
# labelled bar charts; dC/da has one non-zero bar and dC/dz none that is
# zero; bad arguments and an unwritable path fail cleanly, leaving no file.
prog=examples/softmax_nll_explain
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
fail() { echo "explain-svg: $*"; exit 1; }

$prog --svg "$dir/g.svg" >"$dir/out" || fail "exit status $? with --svg"
grep -q "drawn in $dir/g.svg" "$dir/out" || fail "no line naming the file"
f=$dir/g.svg
head -c 4 "$f" | grep -q '<svg' || fail "not an SVG"
tail -n 1 "$f" | grep -q '</svg>' || fail "SVG not closed"
for label in 'a = softmax(z)' 'y (one-hot)' 'dC/da (composed)' 'dC/dz = (a - y)/N'; do
  grep -qF "$label" "$f" || fail "label '$label' missing"
done
[ "$(grep -c "class='bar'" "$f")" -eq 16 ] || fail "expected 16 bars"
# Values of row 0, in panel order: 4 of a, 4 of y, 4 of dC/da, 4 of dC/dz.
vals=$(sed -n "s/.*>\([+-][0-9.]*\)<\/text>.*/\1/p" "$f" | tr '\n' ' ')
set -- $vals
[ $# -eq 16 ] || fail "expected 16 values, got $#: $vals"
shift 8
nz=0
for v in $1 $2 $3 $4; do [ "$v" = "+0.000" ] || [ "$v" = "-0.000" ] || nz=$((nz + 1)); done
[ $nz -eq 1 ] || fail "dC/da should have exactly one non-zero bar: $1 $2 $3 $4"
shift 4
for v in "$@"; do [ "$v" = "+0.000" ] && fail "a dC/dz bar is zero: $*"; done

$prog --bogus >/dev/null 2>&1
[ $? -eq 2 ] || fail "a bad option should exit 2"
$prog --svg >/dev/null 2>&1
[ $? -eq 2 ] || fail "--svg without a file should exit 2"
$prog --svg "$dir/none/g.svg" >/dev/null 2>"$dir/err" && fail "writing into a missing folder succeeded"
grep -q "cannot write" "$dir/err" || fail "no message for an unwritable path"
[ ! -e "$dir/none" ] || fail "left something behind"
mkfifo "$dir/fifo"
$prog --svg "$dir/fifo" >/dev/null 2>"$dir/err" && fail "writing over a FIFO succeeded"
grep -q "not a regular file" "$dir/err" || fail "no message for a FIFO target"
[ -p "$dir/fifo" ] || fail "the FIFO was replaced"
echo "explain-svg: ok"

#!/bin/sh
# tests/check-python.sh: tapegrad's checkpoint and .npy files as NumPy reads
# them: tests/ckpt_writer writes them and says what scripts/check-npy.py must
# print. Skipped (exit 77) when no Python here has NumPy.
srcdir=${srcdir:-.}
py=
for p in python3 /usr/bin/python3 python; do
  if command -v "$p" >/dev/null 2>&1; then py=$p; break; fi
done
if [ -z "$py" ]; then
  echo "SKIP: no Python interpreter; scripts/check-npy.py needs Python 3 with NumPy"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-.}/check-python.XXXXXX") || exit 1
cleanup() {
  for f in want got ckpt.safetensors f32_2d.npy f64_1d.npy i32_3d.npy f32_4d.npy; do
    rm -f "$tmp/$f"
  done
  rmdir "$tmp"
}
trap cleanup EXIT

./tests/ckpt_writer "$tmp" >"$tmp/want" || exit 1
"$py" "$srcdir/scripts/check-npy.py" "$tmp/ckpt.safetensors" "$tmp/f32_2d.npy" \
  "$tmp/f64_1d.npy" "$tmp/i32_3d.npy" "$tmp/f32_4d.npy" >"$tmp/got"
rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP: no Python here has NumPy (Debian: apt-get install python3-numpy)"
  exit 77
fi
[ $rc -eq 0 ] || exit 1
diff -u "$tmp/want" "$tmp/got" || exit 1
cat "$tmp/got"

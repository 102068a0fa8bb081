#!/bin/sh
# tests/check-layers.sh: the layering rules of DESIGN.md, checked by grep.
# Each layer includes only the layers below it:
#   base < kernels < engine < io, ops < train, dist (public API only above).
top=${srcdir:-.}
cd "$top" || exit 1
fail=0
bad() { echo "check-layers: $*"; fail=1; }

# The private headers a file includes ("..." includes, not <...>).
quoted() { sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$1"; }

# only_includes FILE PATTERN...: every quoted include of FILE matches one.
only_includes() {
  f=$1
  shift
  for inc in $(quoted "$f"); do
    ok=0
    for p in "$@"; do
      case $inc in $p) ok=1 ;; esac
    done
    [ $ok = 1 ] || bad "$f includes \"$inc\", which its layer may not"
  done
}

for f in src/base/*.[ch]; do only_includes "$f" base.h "tapegrad.h"; done
for f in src/kernels/*.[ch]; do
  only_includes "$f" kernels.h ../base/base.h vmath.h gemm_drv.h gemm_kern.h config.h
  # kernels take pointers and sizes: no tape, no tensor
  grep -n 'tg_tape\|tg_tensor' "$f" | grep -v '^[0-9]*:[[:space:]]*/\?\*' |
    sed "s|^|$f:|" | grep . && bad "$f (a kernel) mentions a tape or a tensor"
done
for f in src/engine/*.[ch]; do
  only_includes "$f" engine.h tensor.h ../base/base.h ../kernels/kernels.h
  # the engine knows no op by name
  grep -n 'tg__op_[a-z]\|ops\.def\|ops/' "$f" | sed "s|^|$f:|" | grep . &&
    bad "$f (the engine) names an op or the op list"
done
for f in src/io/*.[ch]; do only_includes "$f" io.h ../engine/tensor.h; done
for f in src/train/*.[ch]; do
  only_includes "$f" train.h ../engine/tensor.h ../kernels/kernels.h
  # never the tape's fields
  grep -nE -- '->(nodes|n_nodes|chunks|arena|headers|grad_enabled|check_finite|bw_pass)\b' "$f" |
    sed "s|^|$f:|" | grep . && bad "$f (a training helper) reads the tape's fields"
done
# the distributed API: the public API, the base layer's allocator and
# errors, and its own message layer
for f in src/dist/*.[ch]; do only_includes "$f" transport.h ../base/base.h config.h; done
for f in ops/*.[ch]; do
  only_includes "$f" op.h ops.def unary.h softmax_row.h ../src/engine/engine.h ../src/kernels/vmath.h
  # ops never touch files
  [ "$f" = ops/op.h ] && continue
  grep -nE '\b(fopen|open|fwrite|tg__afile_[a-z]+|tg__src_[a-z]+)\(' "$f" |
    sed "s|^|$f:|" | grep . && bad "$f (an op) touches files"
done
for f in examples/*.[ch] bench/train.c bench/dist.c; do only_includes "$f" tapegrad.h charlm.h cli.h; done
# bench/gemm measures a kernel: the kernels' header and nothing else private.
only_includes bench/gemm.c kernels.h bench.h
# bench/elementwise measures an op's kernels on each vector path: the op
# interface, as an op sees it.
only_includes bench/elementwise.c ops/op.h
# bench/conv measures an op through the public API.
only_includes bench/conv.c tapegrad.h bench.h

# One CPU-feature probe for all kernels.
probes=$(grep -l '__builtin_cpu_supports\|cpuid' src/*/*.c ops/*.c | tr '\n' ' ')
[ "$probes" = "src/kernels/cpu.c " ] || bad "CPU features probed outside src/kernels/cpu.c: $probes"

# Every op in ops/ops.def has its definition, and every op file is built.
for name in $(sed -n 's/^TG_OP(\([a-z_0-9]*\)).*/\1/p' ops/ops.def); do
  grep -qE "tg__op_$name = |^#define UNARY_NAME $name\$" ops/*.c || bad "ops/ops.def lists $name, but no ops/*.c defines tg__op_$name"
done
for f in ops/*.c; do
  case $f in ops/opsupport.c|ops/oplist.c|ops/sparse.c) continue ;; esac
  grep -q "$f" Makefile.am || bad "$f is not in Makefile.am's OP_SOURCES"
done

[ $fail = 0 ] && echo "check-layers: all rules hold"
exit $fail

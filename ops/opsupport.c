/* ops/opsupport.c: shape rules and checks shared by the ops. */
#include <string.h>

#include "op.h"

int tg__rule_same(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                  tg_outshape *out) {
  (void)fn;
  (void)a;
  out->ndim = in[0]->ndim;
  memcpy(out->shape, in[0]->shape, sizeof out->shape);
  return TG_OK;
}

int tg__rule_same2(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                   tg_outshape *out) {
  int rc = tg__check_same(fn, in[0], in[1]);
  return rc ? rc : tg__rule_same(fn, in, a, out);
}

void tg__out_scalar(tg_outshape *out, tg_dtype dtype) {
  out->dtype = dtype;
  out->ndim = 0;
}

int tg__check_same(const char *fn, const tg_tensor *a, const tg_tensor *b) {
  char sa[96], sb[96];
  if (!tg__same_shape(a, b))
    return tg__err(TG_ESHAPE, "%s: shapes differ: a is %s, b is %s", fn,
                   tg__shape_str(a, sa), tg__shape_str(b, sb));
  return TG_OK;
}

int tg__check_2d(const char *fn, const tg_tensor *x, const char *what) {
  char sb[96];
  if (x->ndim != 2)
    return tg__err(TG_ESHAPE, "%s: %s must be 2-D [N,C], got %s", fn, what,
                   tg__shape_str(x, sb));
  return TG_OK;
}

#define COLSUM(T, S)                                                          \
  void tg__colsum_acc_##S(const T *restrict g, T *restrict d, int64_t rows,  \
                          int64_t cols) {                                     \
    for (int64_t r = 0; r < rows; r++) {                                      \
      TG__SIMD                                                                \
      for (int64_t j = 0; j < cols; j++) d[j] += g[r * cols + j];             \
    }                                                                         \
  }
TG__BOTH(COLSUM)
#undef COLSUM

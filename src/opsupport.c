/* src/opsupport.c: argument checks shared by the ops, and the body every
 * elementwise op runs. */
#include "internal.h"

int tg__check_float(const char *fn, const tg_tensor *x, const char *what) {
  if (!tg__is_float(x->dtype))
    return tg__err(TG_EDTYPE, "%s: %s is %s; it must be float32 or float64",
                   fn, what, tg_dtype_name(x->dtype));
  return TG_OK;
}

int tg__check_same(const char *fn, const tg_tensor *a, const tg_tensor *b) {
  char sa[96], sb[96];
  if (a->dtype != b->dtype)
    return tg__err(TG_EDTYPE, "%s: dtypes differ: a is %s, b is %s", fn,
                   tg_dtype_name(a->dtype), tg_dtype_name(b->dtype));
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

tg_tensor *tg__unary(tg_tape *t, tg_tensor *a, const tg_opdef *op,
                     tg__map_f32 f32, tg__map_f64 f64) {
  char fn[64];
  snprintf(fn, sizeof fn, "tg_%s", op->name);
  if (!a) return NULL;
  if (tg__check_inputs(fn, t, &a, 1) || tg__check_float(fn, a, "a"))
    return NULL;
  tg_tensor *y = tg__emit(t, op, a->dtype, a->ndim, a->shape, &a, 1);
  if (!y) return NULL;
  if (a->dtype == TG_F32)
    f32(a->data, y->data, a->numel);
  else
    f64(a->data, y->data, a->numel);
  return tg__done(t, y, fn);
}

tg_tensor *tg__emit_scalar(tg_tape *t, const tg_opdef *op, tg_dtype dtype,
                           tg_tensor *const *in, int n_in) {
  const int64_t one = 1;
  return tg__emit(t, op, dtype, 1, &one, in, n_in);
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

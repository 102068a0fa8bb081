/* ops/reduce.c: reductions of x over a set of axes R, the other axes K
 * kept; for each kept index o the slice S(o) holds n = prod of R's sizes
 * elements. With g = dy broadcast back over R:
 *   sum_axes:  y[o] = sum_{S(o)} x                  dx += g
 *   mean_axes: y[o] = sum_{S(o)} x / n              dx += g / n
 *   max_axes:  y[o] = max_{S(o)} x                  dx += g / c where x = y
 *   min_axes:  y[o] = min_{S(o)} x                  dx += g / c where x = y
 *              (c: how many elements of S(o) tie for the extreme)
 *   logsumexp: y[o] = m + ln sum_{S(o)} exp(x - m)  dx += exp(x - y) g
 *              (m the slice maximum, or 0 when that is not finite)
 *   var:       y[o] = sum_{S(o)} (x - u)^2 / (n - c), u the slice mean,
 *              c the correction                     dx += 2 (x - u) / (n - c) g
 * They share the axes argument, its checks and one strided walk over the
 * input, so they live in one file. Sums are accumulated in double for
 * both dtypes. */
#include <math.h>

#include "op.h"

/* The slots of tg_opargs.i. The axes travel as a set: bit ax + TG_MAX_DIMS
 * of A_MASK for each axis ax in [-TG_MAX_DIMS, TG_MAX_DIMS), so a negative
 * axis keeps its sign until the rule knows the rank. An axis outside that
 * range can be valid for no tensor; the first one is carried to the rule,
 * which reports it with the shape. A_MASK 0 means every axis. */
enum { A_MASK, A_KEEP, A_NAXES, A_BAD, A_BADVAL, A_CORR };
#define AXBIT(ax) (1 << ((ax) + TG_MAX_DIMS))

/* The public constructors' checks of what needs no shape; the rest is the
 * rule's (check_axes). */
static int encode_axes(const char *fn, const int *axes, int n_axes,
                       bool keepdim, tg_opargs *a) {
  if (n_axes < 0)
    return tg__err(TG_EINVAL, "%s: n_axes is %d; it must be >= 0", fn, n_axes);
  if (n_axes > 0 && !axes)
    return tg__err(TG_EINVAL, "%s: axes is NULL with n_axes %d", fn, n_axes);
  a->i[A_KEEP] = keepdim;
  a->i[A_NAXES] = n_axes;
  for (int k = 0; k < n_axes; k++) {
    int ax = axes[k];
    if (ax < -TG_MAX_DIMS || ax >= TG_MAX_DIMS) {
      if (!a->i[A_BAD]) {
        a->i[A_BAD] = 1;
        a->i[A_BADVAL] = ax;
      }
      continue;
    }
    if (a->i[A_MASK] & AXBIT(ax))
      return tg__err(TG_EINVAL, "%s: axis %d is given twice", fn, ax);
    a->i[A_MASK] |= AXBIT(ax);
  }
  return TG_OK;
}

static tg_tensor *apply_axes(tg_tape *t, const tg_opdef *op, tg_tensor *a,
                             const int *axes, int n_axes, bool keepdim,
                             int correction) {
  if (!a) return NULL; /* an earlier op failed: keep its message */
  char buf[64];
  tg_opargs args = {.i = {[A_CORR] = correction}};
  if (encode_axes(tg__fn_of(op, buf, sizeof buf), axes, n_axes, keepdim, &args))
    return NULL;
  return tg__apply(t, op, (tg_tensor *const[]){a}, &args);
}

/* The reduced dimensions of x, one bit each, from checked arguments. */
static unsigned reduced_dims(const tg_tensor *x, const tg_opargs *a) {
  if (!a->i[A_MASK]) return (1u << x->ndim) - 1;
  unsigned r = 0;
  for (int v = -TG_MAX_DIMS; v < TG_MAX_DIMS; v++)
    if (a->i[A_MASK] & AXBIT(v)) r |= 1u << (v < 0 ? v + x->ndim : v);
  return r;
}

static int check_axes(const char *fn, const tg_tensor *x, const tg_opargs *a) {
  char sa[96];
  int nd = x->ndim;
  if (a->i[A_NAXES] > nd)
    return tg__err(TG_EINVAL, "%s: %lld axes given for a of %s, which has %d",
                   fn, (long long)a->i[A_NAXES], tg__shape_str(x, sa), nd);
  if (a->i[A_BAD])
    return tg__err(TG_ERANGE, "%s: axis %lld is out of range for a of %s", fn,
                   (long long)a->i[A_BADVAL], tg__shape_str(x, sa));
  unsigned r = 0;
  for (int v = -TG_MAX_DIMS; v < TG_MAX_DIMS; v++) {
    if (!(a->i[A_MASK] & AXBIT(v))) continue;
    if (v < -nd || v >= nd)
      return tg__err(TG_ERANGE, "%s: axis %d is out of range for a of %s", fn,
                     v, tg__shape_str(x, sa));
    int d = v < 0 ? v + nd : v;
    if (r & (1u << d))
      return tg__err(TG_EINVAL,
                     "%s: axes %d and %d are given twice: both are dimension "
                     "%d of a of %s", fn, d - nd, d, d, tg__shape_str(x, sa));
    r |= 1u << d;
  }
  return TG_OK;
}

/* Elements per slice. */
static int64_t slice_len(const tg_tensor *x, unsigned red) {
  int64_t n = 1;
  for (int d = 0; d < x->ndim; d++)
    if (red >> d & 1) n *= x->shape[d];
  return n;
}

static int rule_axes(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                     tg_outshape *out) {
  const tg_tensor *x = in[0];
  int rc = check_axes(fn, x, a);
  if (rc) return rc;
  unsigned red = reduced_dims(x, a);
  out->ndim = 0;
  for (int d = 0; d < x->ndim; d++)
    if (!(red >> d & 1))
      out->shape[out->ndim++] = x->shape[d];
    else if (a->i[A_KEEP])
      out->shape[out->ndim++] = 1;
  return TG_OK;
}

/* max and min of no elements have no value. */
static int rule_extreme(const char *fn, tg_tensor *const *in,
                        const tg_opargs *a, tg_outshape *out) {
  char sa[96];
  int rc = rule_axes(fn, in, a, out);
  if (rc) return rc;
  if (slice_len(in[0], reduced_dims(in[0], a)) == 0)
    return tg__err(TG_ESHAPE, "%s: reduces over zero elements: a is %s", fn,
                   tg__shape_str(in[0], sa));
  return TG_OK;
}

/* Refusing n - correction <= 0, where PyTorch gives NaN or inf with a
 * warning: a C caller has no warning to see. */
static int rule_var(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                    tg_outshape *out) {
  char sa[96];
  int rc = rule_axes(fn, in, a, out);
  if (rc) return rc;
  long long c = (long long)a->i[A_CORR];
  if (c < 0)
    return tg__err(TG_EINVAL, "%s: correction is %lld; it must be >= 0", fn, c);
  long long n = (long long)slice_len(in[0], reduced_dims(in[0], a));
  if (n - c <= 0)
    return tg__err(TG_EINVAL,
                   "%s: %lld elements per slice with correction %lld leave "
                   "no degrees of freedom: a is %s", fn, n, c,
                   tg__shape_str(in[0], sa));
  return TG_OK;
}

/* The walk: x's dimensions with size-1 ones dropped and neighbours of one
 * kind (reduced or kept) merged, so kinds alternate; ostride is a merged
 * dimension's stride in the output, 0 when reduced. */
typedef struct {
  int nd;
  int64_t size[TG_MAX_DIMS], ostride[TG_MAX_DIMS];
  int64_t in_n, out_n, red_n;
} plan;

static void make_plan(const tg_tensor *x, unsigned red, plan *p) {
  bool kind[TG_MAX_DIMS];
  p->nd = 0;
  p->in_n = p->out_n = p->red_n = 1;
  for (int d = 0; d < x->ndim; d++) {
    int64_t s = x->shape[d];
    bool r = red >> d & 1;
    p->in_n *= s;
    *(r ? &p->red_n : &p->out_n) *= s;
    if (s == 1) continue;
    if (p->nd && kind[p->nd - 1] == r) {
      p->size[p->nd - 1] *= s;
    } else {
      kind[p->nd] = r;
      p->size[p->nd++] = s;
    }
  }
  int64_t st = 1;
  for (int d = p->nd - 1; d >= 0; d--) {
    p->ostride[d] = kind[d] ? 0 : st;
    if (!kind[d]) st *= p->size[d];
  }
}

static void plan_of(const tg_node *n, plan *p) {
  make_plan(n->in[0], reduced_dims(n->in[0], &n->args), p);
}

/* Runs the statements after OI on every input element, in memory order,
 * with XI its index in x and OI its slice's index in y. The last two merged
 * dimensions form a block walked by plain loops: a kept last dimension
 * (OI = XI's column, no dependence between iterations: SIMD, TG__SIMD or
 * nothing, goes before it) or a reduced one (OI fixed along the row); the
 * dimensions before the block advance an odometer once per block. */
#define WALK(p, XI, OI, SIMD, ...)                                            \
  do {                                                                        \
    const plan *p_ = (p);                                                     \
    if (p_->in_n == 0) break;                                                 \
    const int nd_ = p_->nd;                                                   \
    const int64_t cols_ = nd_ >= 1 ? p_->size[nd_ - 1] : 1,                   \
                  rows_ = nd_ >= 2 ? p_->size[nd_ - 2] : 1,                   \
                  cs_ = nd_ >= 1 ? p_->ostride[nd_ - 1] : 0,                  \
                  rs_ = nd_ >= 2 ? p_->ostride[nd_ - 2] : 0,                  \
                  nblk_ = p_->in_n / (rows_ * cols_);                         \
    int64_t idx_[TG_MAX_DIMS] = {0}, ob_ = 0, xb_ = 0;                        \
    for (int64_t b_ = 0; b_ < nblk_; b_++) {                                  \
      for (int64_t r_ = 0; r_ < rows_; r_++, xb_ += cols_) {                  \
        const int64_t or_ = ob_ + r_ * rs_;                                   \
        if (cs_) {                                                            \
          SIMD                                                                \
          for (int64_t j_ = 0; j_ < cols_; j_++) {                            \
            const int64_t XI = xb_ + j_, OI = or_ + j_;                       \
            __VA_ARGS__                                                       \
          }                                                                   \
        } else {                                                              \
          for (int64_t j_ = 0; j_ < cols_; j_++) {                            \
            const int64_t XI = xb_ + j_, OI = or_;                            \
            __VA_ARGS__                                                       \
          }                                                                   \
        }                                                                     \
      }                                                                       \
      for (int d_ = nd_ - 3; d_ >= 0; d_--) {                                 \
        ob_ += p_->ostride[d_];                                               \
        if (++idx_[d_] < p_->size[d_]) break;                                 \
        ob_ -= p_->ostride[d_] * p_->size[d_];                                \
        idx_[d_] = 0;                                                         \
      }                                                                       \
    }                                                                         \
  } while (0)
/* Bodies of plain arithmetic vectorise; those calling exp are left to the
 * compiler, which could not vectorise a libm call when asked to. */
#define VISIT(p, XI, OI, ...) WALK(p, XI, OI, TG__SIMD, __VA_ARGS__)
#define VISIT_CALLS(p, XI, OI, ...) WALK(p, XI, OI, , __VA_ARGS__)

/* NaN-propagating selections: once m is NaN no comparison replaces it. */
#define SEL_MAX(v, m) ((v) > (m) || (v) != (v) ? (v) : (m))
#define SEL_MIN(v, m) ((v) < (m) || (v) != (v) ? (v) : (m))

#define KERNELS(T, S)                                                         \
  static void sum_##S(const plan *p, const T *restrict x,                     \
                      double *restrict acc) {                                 \
    VISIT(p, xi, oi, acc[oi] += x[xi];);                                      \
  }                                                                           \
  static void bcast_acc_##S(const plan *p, const T *restrict g,               \
                            T *restrict dx, T k) {                            \
    VISIT(p, xi, oi, dx[xi] += k * g[oi];);                                   \
  }                                                                           \
  static void max_##S(const plan *p, const T *restrict x, T *restrict y) {    \
    for (int64_t o = 0; o < p->out_n; o++) y[o] = -INFINITY;                  \
    VISIT(p, xi, oi, y[oi] = SEL_MAX(x[xi], y[oi]););                         \
  }                                                                           \
  static void min_##S(const plan *p, const T *restrict x, T *restrict y) {    \
    for (int64_t o = 0; o < p->out_n; o++) y[o] = INFINITY;                   \
    VISIT(p, xi, oi, y[oi] = SEL_MIN(x[xi], y[oi]););                         \
  }                                                                           \
  static void ties_##S(const plan *p, const T *restrict x,                    \
                       const T *restrict y, T *restrict cnt) {                \
    for (int64_t o = 0; o < p->out_n; o++) cnt[o] = 0;                        \
    VISIT(p, xi, oi, cnt[oi] += x[xi] == y[oi];);                             \
  }                                                                           \
  static void ties_bwd_##S(const plan *p, const T *restrict x,                \
                           const T *restrict y, const T *restrict cnt,        \
                           const T *restrict g, T *restrict dx) {             \
    VISIT(p, xi, oi, dx[xi] += x[xi] == y[oi] ? g[oi] / cnt[oi] : 0;);        \
  }                                                                           \
  static void expsum_##S(const plan *p, const T *restrict x,                  \
                         const double *restrict sh, double *restrict s) {     \
    VISIT_CALLS(p, xi, oi, s[oi] += exp((double)x[xi] - sh[oi]););            \
  }                                                                           \
  /* exp(-inf - y) would be NaN for a slice of -inf only, whose y is -inf: \
   * an element at -inf takes no gradient. */                                 \
  static void lse_bwd_##S(const plan *p, const T *restrict x,                 \
                          const T *restrict y, const T *restrict g,           \
                          T *restrict dx) {                                   \
    VISIT_CALLS(p, xi, oi,                                                    \
                dx[xi] += x[xi] == -INFINITY                                  \
                              ? 0                                             \
                              : (T)(exp((double)x[xi] - (double)y[oi]) *      \
                                    (double)g[oi]););                         \
  }                                                                           \
  static void sqdev_##S(const plan *p, const T *restrict x,                   \
                        const double *restrict u, double *restrict s) {       \
    VISIT(p, xi, oi, double d_ = (double)x[xi] - u[oi]; s[oi] += d_ * d_;);   \
  }                                                                           \
  static void var_bwd_##S(const plan *p, const T *restrict x,                 \
                          const double *restrict u, const T *restrict g,      \
                          T *restrict dx, double k) {                         \
    VISIT(p, xi, oi,                                                          \
          dx[xi] += (T)(k * ((double)x[xi] - u[oi]) * (double)g[oi]););       \
  }
TG__BOTH(KERNELS)
#undef KERNELS

/* Scratch or saved memory for one double or T per output element. */
static void *out_buf(tg_tape *t, const tg_node *n, size_t elem) {
  char buf[64];
  void *b = tg__arena_alloc(t, (size_t)n->out->numel * elem);
  if (!b) tg__err(TG_ENOMEM, "%s: out of memory", tg__fn_of(n->op, buf, sizeof buf));
  return b;
}

/* The slices' sums in double: into y itself for float64. */
static double *sums(tg_tape *t, const tg_node *n, const plan *p) {
  const tg_tensor *a = n->in[0];
  double *acc = a->dtype == TG_F64 ? n->out->data : out_buf(t, n, sizeof(double));
  if (!acc) return NULL;
  for (int64_t o = 0; o < p->out_n; o++) acc[o] = 0;
  if (a->dtype == TG_F32)
    sum_f32(p, a->data, acc);
  else
    sum_f64(p, a->data, acc);
  return acc;
}

/* y = k * the slices' sums. */
static int forward_scaled(tg_tape *t, tg_node *n, bool mean) {
  plan p;
  plan_of(n, &p);
  if (p.out_n == 0) return TG_OK;
  double *acc = sums(t, n, &p);
  if (!acc) return TG_ENOMEM;
  /* 0/0: the mean of no elements is NaN, as in NumPy and PyTorch. */
  double k = !mean ? 1.0 : p.red_n ? 1.0 / (double)p.red_n : NAN;
  if (n->out->dtype == TG_F32) {
    float *y = n->out->data;
    for (int64_t o = 0; o < p.out_n; o++) y[o] = (float)(k * acc[o]);
  } else if (mean) {
    for (int64_t o = 0; o < p.out_n; o++) acc[o] *= k;
  }
  return TG_OK;
}

static int forward_sum(tg_tape *t, tg_node *n) { return forward_scaled(t, n, false); }
static int forward_mean(tg_tape *t, tg_node *n) { return forward_scaled(t, n, true); }

static void backward_scaled(const tg_node *n, bool mean) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  plan p;
  plan_of(n, &p);
  /* With no elements per slice there is no dx to add to. */
  double k = mean && p.red_n ? 1.0 / (double)p.red_n : 1.0;
  if (n->out->dtype == TG_F32)
    bcast_acc_f32(&p, n->out->grad, dx, (float)k);
  else
    bcast_acc_f64(&p, n->out->grad, dx, k);
}

static void backward_sum(const tg_node *n) { backward_scaled(n, false); }
static void backward_mean(const tg_node *n) { backward_scaled(n, true); }

/* max or min; a recorded node keeps the number of ties per slice. */
static int forward_extreme(tg_tape *t, tg_node *n, bool is_max) {
  const tg_tensor *a = n->in[0];
  plan p;
  plan_of(n, &p);
  if (p.out_n == 0) return TG_OK;
  bool f32 = a->dtype == TG_F32;
  if (f32)
    (is_max ? max_f32 : min_f32)(&p, a->data, n->out->data);
  else
    (is_max ? max_f64 : min_f64)(&p, a->data, n->out->data);
  if (!tg__recorded(n)) return TG_OK;
  if (!(n->saved = out_buf(t, n, tg__dtype_size(a->dtype)))) return TG_ENOMEM;
  if (f32)
    ties_f32(&p, a->data, n->out->data, n->saved);
  else
    ties_f64(&p, a->data, n->out->data, n->saved);
  return TG_OK;
}

static int forward_max(tg_tape *t, tg_node *n) { return forward_extreme(t, n, true); }
static int forward_min(tg_tape *t, tg_node *n) { return forward_extreme(t, n, false); }

/* Shared by max and min: the gradient split evenly among the ties. */
static void backward_extreme(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx || !n->saved) return;
  plan p;
  plan_of(n, &p);
  if (n->out->dtype == TG_F32)
    ties_bwd_f32(&p, n->in[0]->data, n->out->data, n->saved, n->out->grad, dx);
  else
    ties_bwd_f64(&p, n->in[0]->data, n->out->data, n->saved, n->out->grad, dx);
}

/* The maximum goes into y first, then becomes the shift; a shift of 0 for
 * a slice whose maximum is -inf gives ln 0 = -inf rather than -inf + inf,
 * and for +inf or NaN lets the exponentials carry it. */
static int forward_lse(tg_tape *t, tg_node *n) {
  const tg_tensor *a = n->in[0];
  plan p;
  plan_of(n, &p);
  if (p.out_n == 0) return TG_OK;
  double *sh = out_buf(t, n, sizeof(double)), *s = out_buf(t, n, sizeof(double));
  if (!sh || !s) return TG_ENOMEM;
  bool f32 = a->dtype == TG_F32;
  if (f32)
    max_f32(&p, a->data, n->out->data);
  else
    max_f64(&p, a->data, n->out->data);
  for (int64_t o = 0; o < p.out_n; o++) {
    double m = f32 ? ((float *)n->out->data)[o] : ((double *)n->out->data)[o];
    sh[o] = isfinite(m) ? m : 0;
    s[o] = 0;
  }
  if (f32)
    expsum_f32(&p, a->data, sh, s);
  else
    expsum_f64(&p, a->data, sh, s);
  for (int64_t o = 0; o < p.out_n; o++) {
    double y = sh[o] + log(s[o]);
    if (f32)
      ((float *)n->out->data)[o] = (float)y;
    else
      ((double *)n->out->data)[o] = y;
  }
  return TG_OK;
}

static void backward_lse(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  plan p;
  plan_of(n, &p);
  if (n->out->dtype == TG_F32)
    lse_bwd_f32(&p, n->in[0]->data, n->out->data, n->out->grad, dx);
  else
    lse_bwd_f64(&p, n->in[0]->data, n->out->data, n->out->grad, dx);
}

/* Two passes, mean then squared deviations, which keeps the digits a
 * one-pass sum of squares loses; a recorded node keeps the means. */
static int forward_var(tg_tape *t, tg_node *n) {
  const tg_tensor *a = n->in[0];
  plan p;
  plan_of(n, &p);
  if (p.out_n == 0) return TG_OK;
  double *u = out_buf(t, n, sizeof(double)), *s = out_buf(t, n, sizeof(double));
  if (!u || !s) return TG_ENOMEM;
  bool f32 = a->dtype == TG_F32;
  for (int64_t o = 0; o < p.out_n; o++) u[o] = s[o] = 0;
  if (f32)
    sum_f32(&p, a->data, u);
  else
    sum_f64(&p, a->data, u);
  for (int64_t o = 0; o < p.out_n; o++) u[o] /= (double)p.red_n;
  if (f32)
    sqdev_f32(&p, a->data, u, s);
  else
    sqdev_f64(&p, a->data, u, s);
  double dof = (double)(p.red_n - n->args.i[A_CORR]); /* > 0: the rule */
  for (int64_t o = 0; o < p.out_n; o++) {
    if (f32)
      ((float *)n->out->data)[o] = (float)(s[o] / dof);
    else
      ((double *)n->out->data)[o] = s[o] / dof;
  }
  n->saved = u;
  return TG_OK;
}

static void backward_var(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx || !n->saved) return;
  plan p;
  plan_of(n, &p);
  double k = 2.0 / (double)(p.red_n - n->args.i[A_CORR]);
  if (n->out->dtype == TG_F32)
    var_bwd_f32(&p, n->in[0]->data, n->saved, n->out->grad, dx, k);
  else
    var_bwd_f64(&p, n->in[0]->data, n->saved, n->out->grad, dx, k);
}

/* Cases: .i = {axes as bits, keepdim, n_axes, out-of-range flag, its
 * value, correction}. */
#define AX(k) AXBIT(k)
#define GOOD_CASES(c)                                                         \
  {.ndim = {1}, .shape = {{5}}, .args = {.i = {AX(0), 0, 1, [A_CORR] = c}}},  \
  {.ndim = {1}, .shape = {{5}}, .args = {.i = {0, 1, 0, [A_CORR] = c}}},      \
  {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {AX(0), 0, 1, [A_CORR] = c}}}, \
  {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {AX(1), 1, 1, [A_CORR] = c}}}, \
  {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {AX(-1), 0, 1, [A_CORR] = c}}}, \
  {.ndim = {3}, .shape = {{2, 3, 4}},                                         \
   .args = {.i = {AX(0) | AX(2), 0, 2, [A_CORR] = c}}},                     \
  {.ndim = {3}, .shape = {{2, 3, 4}},                                         \
   .args = {.i = {AX(-2) | AX(-1), 1, 2, [A_CORR] = c}}},                   \
  {.ndim = {3}, .shape = {{2, 3, 4}}, .args = {.i = {0, 0, 0, [A_CORR] = c}}}, \
  {.ndim = {4}, .shape = {{2, 3, 2, 3}},                                      \
   .args = {.i = {AX(1) | AX(3), 1, 2, [A_CORR] = c}}},                     \
  {.ndim = {4}, .shape = {{2, 3, 2, 3}},                                      \
   .args = {.i = {AX(0) | AX(-2), 0, 2, [A_CORR] = c}}},                    \
  {.ndim = {4}, .shape = {{3, 1, 4, 2}},                                      \
   .args = {.i = {AX(1) | AX(2), 0, 2, [A_CORR] = c}}},

/* Cases with one element per slice, which a correction of 1 refuses. */
#define SINGLE_CASES(c)                                                       \
  {.ndim = {0}, .args = {.i = {0, 0, 0, [A_CORR] = c}}},                    \
  {.ndim = {0}, .args = {.i = {0, 1, 0, [A_CORR] = c}}},                    \
  {.ndim = {3}, .shape = {{3, 1, 4}}, .args = {.i = {AX(1), 0, 1, [A_CORR] = c}}}, \
  {.ndim = {3}, .shape = {{1, 4, 1}},                                         \
   .args = {.i = {AX(0) | AX(2), 1, 2, [A_CORR] = c}}},

#define BAD_CASES                                                             \
  {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {AX(2), 0, 1}},              \
   .status = TG_ERANGE, .msg = "axis 2 is out of range for a of [3,4]"},      \
  {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {AX(-3), 0, 1}},             \
   .status = TG_ERANGE, .msg = "axis -3 is out of range"},                    \
  {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {AX(0), 0, 2, 1, 9}},        \
   .status = TG_ERANGE, .msg = "axis 9 is out of range for a of [3,4]"},      \
  {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {AX(0) | AX(-2), 0, 2}},     \
   .status = TG_EINVAL, .msg = "given twice"},                                \
  {.ndim = {0}, .args = {.i = {AX(0), 0, 1}}, .status = TG_EINVAL,            \
   .msg = "1 axes given for a of []"},                                        \
  {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {AX(0) | AX(1), 0, 3, 1, -5}}, \
   .status = TG_EINVAL, .msg = "3 axes given for a of [3,4], which has 2"},

static const tg_opcase sum_cases[] = {GOOD_CASES(0) SINGLE_CASES(0) BAD_CASES};
static const tg_opcase extreme_cases[] = {
    GOOD_CASES(0) SINGLE_CASES(0) BAD_CASES
    {.ndim = {2}, .shape = {{0, 3}}, .args = {.i = {AX(0), 0, 1}},
     .status = TG_ESHAPE, .msg = "reduces over zero elements: a is [0,3]"},
    {.ndim = {3}, .shape = {{2, 0, 3}}, .args = {.i = {0, 1, 0}},
     .status = TG_ESHAPE, .msg = "zero elements"},
};
static const tg_opcase var_cases[] = {
    GOOD_CASES(0) SINGLE_CASES(0) GOOD_CASES(1) BAD_CASES
    {.ndim = {2}, .shape = {{3, 1}}, .args = {.i = {AX(1), 0, 1, [A_CORR] = 1}},
     .status = TG_EINVAL, .msg = "1 elements per slice with correction 1"},
    {.ndim = {0}, .args = {.i = {0, 0, 0, [A_CORR] = 1}},
     .status = TG_EINVAL, .msg = "correction 1"},
    {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {AX(0), 0, 1, [A_CORR] = -1}},
     .status = TG_EINVAL, .msg = "correction is -1"},
};

const tg_opdef tg__op_sum_axes = {.name = "sum_axes", .n_in = 1,
                                  .rule = rule_axes, .forward = forward_sum,
                                  .backward = backward_sum, TG__CASES(sum_cases)};
const tg_opdef tg__op_mean_axes = {.name = "mean_axes", .n_in = 1,
                                   .rule = rule_axes, .forward = forward_mean,
                                   .backward = backward_mean,
                                   TG__CASES(sum_cases)};
const tg_opdef tg__op_max_axes = {.name = "max_axes", .n_in = 1,
                                  .rule = rule_extreme, .forward = forward_max,
                                  .backward = backward_extreme,
                                  TG__CASES(extreme_cases)};
const tg_opdef tg__op_min_axes = {.name = "min_axes", .n_in = 1,
                                  .rule = rule_extreme, .forward = forward_min,
                                  .backward = backward_extreme,
                                  TG__CASES(extreme_cases)};
const tg_opdef tg__op_logsumexp = {.name = "logsumexp", .n_in = 1,
                                   .rule = rule_axes, .forward = forward_lse,
                                   .backward = backward_lse,
                                   TG__CASES(sum_cases)};
const tg_opdef tg__op_var = {.name = "var", .n_in = 1, .rule = rule_var,
                             .forward = forward_var, .backward = backward_var,
                             TG__CASES(var_cases)};

tg_tensor *tg_sum_axes(tg_tape *t, tg_tensor *a, const int *axes, int n_axes,
                       bool keepdim) {
  return apply_axes(t, &tg__op_sum_axes, a, axes, n_axes, keepdim, 0);
}
tg_tensor *tg_mean_axes(tg_tape *t, tg_tensor *a, const int *axes, int n_axes,
                        bool keepdim) {
  return apply_axes(t, &tg__op_mean_axes, a, axes, n_axes, keepdim, 0);
}
tg_tensor *tg_max_axes(tg_tape *t, tg_tensor *a, const int *axes, int n_axes,
                       bool keepdim) {
  return apply_axes(t, &tg__op_max_axes, a, axes, n_axes, keepdim, 0);
}
tg_tensor *tg_min_axes(tg_tape *t, tg_tensor *a, const int *axes, int n_axes,
                       bool keepdim) {
  return apply_axes(t, &tg__op_min_axes, a, axes, n_axes, keepdim, 0);
}
tg_tensor *tg_logsumexp(tg_tape *t, tg_tensor *a, const int *axes, int n_axes,
                        bool keepdim) {
  return apply_axes(t, &tg__op_logsumexp, a, axes, n_axes, keepdim, 0);
}
tg_tensor *tg_var(tg_tape *t, tg_tensor *a, const int *axes, int n_axes,
                  int correction, bool keepdim) {
  return apply_axes(t, &tg__op_var, a, axes, n_axes, keepdim, correction);
}

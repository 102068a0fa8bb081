/* ops/linear.c: a dense layer as one op, y[N,O] = act(x[N,K] . W[K,O] + b[O]).
 * Where matmul, a broadcast add and an activation make three results and three
 * gradients, each a pass over memory, this makes one of each. */
#include <math.h>

#include "op.h"

/* What forward keeps for backward: x's sparse form when the product used it
 * and W needs a gradient, and room for g = dy * act'(y) (none for
 * TG_ACT_NONE, where g is dy itself). The user may read y's grad after
 * backward, so g never overwrites it. */
typedef struct {
  const tg__sparse *sx;
  void *g;
} saved;

/* The formulas of ops/sigmoid.c, relu.c and tanh.c, so that fused and
 * composed layers give the same values. */
static inline double sigmoid_f64(double x) { return 1 / (1 + exp(-x)); }
#define SIGMOID_f32 tg__sigmoidf
#define SIGMOID_f64 sigmoid_f64
#define TANH_f32 tanhf
#define TANH_f64 tanh
/* Only the loops of plain arithmetic ask to be vectorised: clang warns when
 * a request fails, and a libm call per element (double sigmoid, tanh)
 * makes it fail. */
#define SIMD_SIG_f32 TG__SIMD
#define SIMD_SIG_f64
#define GEMM_f32 tg__sgemm
#define GEMM_f64 tg__dgemm
#define GEMM_BIAS_f32 tg__sgemm_bias
#define GEMM_BIAS_f64 tg__dgemm_bias

/* One call's operands for the thread door's ranges (each element on one
 * thread: no result depends on the split). */
typedef struct {
  int act;
  void *y, *g;
  const void *dy;
} job;

#define KERNELS(T, S)                                                        \
  /* y = act(y), in place on the product. */                                 \
  static void act_##S(int act, T *restrict y, int64_t n) {                   \
    switch (act) {                                                           \
    case TG_ACT_RELU:                                                        \
      TG__SIMD                                                               \
      for (int64_t i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : 0;            \
      break;                                                                 \
    case TG_ACT_SIGMOID:                                                     \
      SIMD_SIG_##S                                                           \
      for (int64_t i = 0; i < n; i++) y[i] = SIGMOID_##S(y[i]);              \
      break;                                                                 \
    case TG_ACT_TANH:                                                        \
      for (int64_t i = 0; i < n; i++) y[i] = TANH_##S(y[i]);                 \
      break;                                                                 \
    }                                                                        \
  }                                                                          \
  /* g = dy * act'(y): relu' = [y > 0], sigmoid' = y(1-y), tanh' = 1-y^2,   \
   * each from the output alone. relu loads dy before the select: a load    \
   * under the condition is one the compiler may not hoist, and the loop    \
   * then stays scalar, with a branch mispredicted on half the elements.    \
   */                                                                        \
  static void dact_##S(int act, const T *restrict y, const T *restrict dy,   \
                       T *restrict g, int64_t n) {                           \
    switch (act) {                                                           \
    case TG_ACT_RELU:                                                        \
      TG__SIMD                                                               \
      for (int64_t i = 0; i < n; i++) {                                      \
        T d = dy[i];                                                         \
        g[i] = y[i] > 0 ? d : 0;                                             \
      }                                                                      \
      break;                                                                 \
    case TG_ACT_SIGMOID:                                                     \
      TG__SIMD                                                               \
      for (int64_t i = 0; i < n; i++) g[i] = dy[i] * y[i] * (1 - y[i]);      \
      break;                                                                 \
    case TG_ACT_TANH:                                                        \
      TG__SIMD                                                               \
      for (int64_t i = 0; i < n; i++) g[i] = dy[i] * (1 - y[i] * y[i]);      \
      break;                                                                 \
    }                                                                        \
  }                                                                          \
  /* The ranges of the thread door: elements [i0, i1) of act and dact. */  \
  static void act_range_##S(void *p, int64_t i0, int64_t i1) {               \
    const job *j = p;                                                        \
    act_##S(j->act, (T *)j->y + i0, i1 - i0);                                \
  }                                                                          \
  static void dact_range_##S(void *p, int64_t i0, int64_t i1) {              \
    const job *j = p;                                                        \
    dact_##S(j->act, (const T *)j->y + i0, (const T *)j->dy + i0,            \
             (T *)j->g + i0, i1 - i0);                                       \
  }                                                                          \
  /* Dense forward: the product's first K block stores b + its sum (beta   \
   * = 1 on the bias), so y is written once, with the bits of the bias      \
   * rows filled first and the product added onto them. */                 \
  static void fwd_##S(const T *x, const T *W, const T *b, T *y, int64_t N,   \
                      int64_t K, int64_t O) {                                \
    GEMM_BIAS_##S(false, false, N, O, K, 1, x, K, W, O, b ? 1 : 0, b, y, O); \
  }                                                                          \
  static void act_all_##S(int act, T *y, int64_t n) {                        \
    if (act == TG_ACT_NONE) return;                                          \
    job j = {.act = act, .y = y};                                            \
    tg__par_range(n, TG__PAR_ELEMS, act_range_##S, &j);                      \
  }                                                                          \
  static void bwd_##S(const tg_node *n, const tg__sparse *sx, T *gbuf) {     \
    const tg_tensor *x = n->in[0], *W = n->in[1], *y = n->out;               \
    int64_t N = x->shape[0], K = x->shape[1], O = W->shape[1];               \
    T *dx = tg__gin(n, 0), *dW = tg__gin(n, 1), *db = tg__gin(n, 2);         \
    const T *g = y->grad;                                                    \
    if (n->args.i[0] != TG_ACT_NONE) {                                       \
      job j = {.act = (int)n->args.i[0], .y = y->data, .dy = y->grad,        \
               .g = gbuf};                                                   \
      tg__par_range(y->numel, TG__PAR_ELEMS, dact_range_##S, &j);            \
      g = gbuf;                                                              \
    }                                                                        \
    if (dx) GEMM_##S(false, true, N, K, O, 1, g, O, W->data, O, 1, dx, K);   \
    if (dW && sx) /* a sparse form is only ever made of float32 */         \
      tg__spmm_tn_f32(sx, (const float *)g, O, (float *)dW);                 \
    else if (dW)                                                             \
      GEMM_##S(true, false, K, O, N, 1, x->data, K, g, O, 1, dW, O);         \
    if (db) tg__colsum_acc_##S(g, db, N, O);                                 \
  }
TG__BOTH(KERNELS)

/* dx += g W^T (NT), dW += x^T g (TN, or the sparse form's), db += column
 * sums of g, with g = dy * act'(y) computed once. */
static void backward(const tg_node *n) {
  const saved *s = n->saved;
  if (n->out->dtype == TG_F32)
    bwd_f32(n, s->sx, s->g);
  else
    bwd_f64(n, NULL, s->g);
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  const tg_tensor *x = in[0], *W = in[1], *b = in[2];
  char sx[96], sw[96], sb[96];
  if (x->ndim != 2 || W->ndim != 2)
    return tg__err(TG_ESHAPE, "%s: x and W must be 2-D: x is %s, W is %s", fn,
                   tg__shape_str(x, sx), tg__shape_str(W, sw));
  if (x->shape[1] != W->shape[0])
    return tg__err(TG_ESHAPE, "%s: inner dimensions differ: x is %s, W is %s",
                   fn, tg__shape_str(x, sx), tg__shape_str(W, sw));
  if (b && (b->ndim != 1 || b->shape[0] != W->shape[1]))
    return tg__err(TG_ESHAPE, "%s: b is %s; for W of %s it must be [%lld]", fn,
                   tg__shape_str(b, sb), tg__shape_str(W, sw),
                   (long long)W->shape[1]);
  if (a->i[0] < TG_ACT_NONE || a->i[0] > TG_ACT_TANH)
    return tg__err(TG_EINVAL, "%s: unknown activation %d", fn, (int)a->i[0]);
  out->ndim = 2;
  out->shape[0] = x->shape[0];
  out->shape[1] = W->shape[1];
  return TG_OK;
}

static int forward(tg_tape *t, tg_node *n) {
  const tg_tensor *x = n->in[0], *W = n->in[1], *b = n->in[2];
  tg_tensor *y = n->out;
  int act = (int)n->args.i[0];
  int64_t N = x->shape[0], K = x->shape[1], O = W->shape[1];
  /* Everything backward needs is taken from the arena now, by the shapes
   * alone: backward allocates nothing, and a steady state nothing at all. */
  bool rec = tg__recorded(n);
  saved *s = NULL;
  if (rec) {
    s = tg__arena_alloc(t, sizeof *s);
    if (s) {
      s->sx = NULL;
      s->g = act == TG_ACT_NONE
                 ? NULL
                 : tg__arena_alloc(t, (size_t)y->numel * tg__dtype_size(y->dtype));
    }
    if (!s || (act != TG_ACT_NONE && !s->g))
      return tg__err(TG_ENOMEM, "tg_linear: out of memory for what backward keeps");
    n->saved = s;
  }
  bool by_col = rec && (W->flags & TG__NEEDS_GRAD);
  tg__sparse *sp = tg__spmm_of(t, x, by_col);
  if (s && by_col) s->sx = sp;
  if (sp) {
    tg__spmm_f32(sp, W->data, b ? b->data : NULL, O, y->data);
    act_all_f32(act, y->data, y->numel);
  } else if (x->dtype == TG_F32) {
    fwd_f32(x->data, W->data, b ? b->data : NULL, y->data, N, K, O);
    act_all_f32(act, y->data, y->numel);
  } else {
    fwd_f64(x->data, W->data, b ? b->data : NULL, y->data, N, K, O);
    act_all_f64(act, y->data, y->numel);
  }
  return TG_OK;
}

/* x positive; W and b of one sign per output column (+ even, - odd), so a
 * pre-activation has the sign of its column and a size of at least 0.05 K
 * (+ 0.1 with b): far from relu's kink, and both of its sides are used.
 * A case with b of -1 dimensions has no bias (b NULL). args i[0]: the
 * activation. */
#define CASE(act, n, k, o, nb)                                               \
  {.ndim = {2, 2, nb}, .shape = {{n, k}, {k, o}, {o}},                       \
   .domain = {TG__DOM_POS, TG__DOM_COLSIGN, TG__DOM_COLSIGN},              \
   .args = {.i = {act}}}
#define CASES(act)                                                           \
  CASE(act, 3, 4, 5, 1), CASE(act, 1, 6, 1, 1), CASE(act, 5, 2, 3, -1),       \
      CASE(act, 1, 3, 1, -1), CASE(act, 4, 1, 2, 1)
static const tg_opcase cases[] = {CASES(TG_ACT_NONE), CASES(TG_ACT_SIGMOID),
                                  CASES(TG_ACT_RELU), CASES(TG_ACT_TANH)};

const tg_opdef tg__op_linear = {
    .name = "linear", .n_in = 3, .in_names = {"x", "W", "b"},
    .flags = TG__IN_OPT(2), .rule = rule, .forward = forward,
    .backward = backward, TG__CASES(cases)};

tg_tensor *tg_linear(tg_tape *t, tg_tensor *x, tg_tensor *W, tg_tensor *b,
                     tg_activation act) {
  return TG__APPLY(t, linear, &(tg_opargs){.i = {act}}, x, W, b);
}

/* ops/unary.h: the template every elementwise op is made from. Before
 * including it, define UNARY_NAME, FWD(x) (the value) and BWD(x, y, g) (the
 * gradient contribution to dx, given the input x, the output y and the
 * incoming gradient g), UNARY_DOMAIN for the generated tests, and
 * optionally UNARY_FWD_SIMD (below). FWD and BWD may read the op's scalar
 * arguments as a0 and a1 (args f[0], f[1], in the element type). An op
 * with such arguments defines UNARY_ARGS, the initializer of its test
 * cases' args (for example {.f = {0.1}}), and writes its own public
 * constructor; it may define UNARY_RULE, a check of the arguments with the
 * signature of a shape rule. An op may add test cases of its own (other
 * arguments, other domains, bad arguments) as UNARY_MORE_CASES, a list of
 * tg_opcase initializers. With <tgmath.h>, exp/log/tanh pick their float
 * or double version, and UNARY_PICK(fn, x) calls fn_f32 or fn_f64 (a
 * pair of inline functions the op defines, which may hold temporaries;
 * declared TG__VINLINE, so that each vector path's copy of a loop has
 * them inlined, not called). */
#include <tgmath.h>

#include "op.h"

#define U_CAT_(a, b) a##b
#define U_CAT(a, b) U_CAT_(a, b)
#define U_STR_(a) #a
#define U_STR(a) U_STR_(a)

/* UNARY_FWD_SIMD: which forward loops are straight-line arithmetic the
 * compiler can vectorise (TG__SIMD): 0 none (a libm call per element:
 * clang would warn that the request failed), 1 float only, 2 both. */
#ifndef UNARY_FWD_SIMD
#define UNARY_FWD_SIMD 0
#endif
/* UNARY_BWD_SIMD: the same for the backward loops; 2 unless the op's
 * BWD calls libm. */
#ifndef UNARY_BWD_SIMD
#define UNARY_BWD_SIMD 2
#endif
#define UNARY_PICK(fn, x) _Generic((x), float: fn##_f32, default: fn##_f64)(x)
#if UNARY_FWD_SIMD >= 1
#define U_SIMD_f32 TG__SIMD
#else
#define U_SIMD_f32
#endif
#if UNARY_FWD_SIMD >= 2
#define U_SIMD_f64 TG__SIMD
#else
#define U_SIMD_f64
#endif
#if UNARY_BWD_SIMD >= 1
#define U_BSIMD_f32 TG__SIMD
#else
#define U_BSIMD_f32
#endif
#if UNARY_BWD_SIMD >= 2
#define U_BSIMD_f64 TG__SIMD
#else
#define U_BSIMD_f64
#endif

/* UNARY_PAR_MIN: elements per thread from which a loop is split over
 * threads. The default suits the cheap ops, whose loops are bound by
 * memory; an op with much arithmetic per element pays sooner. */
#ifndef UNARY_PAR_MIN
#define UNARY_PAR_MIN TG__PAR_ELEMS
#endif

/* Each loop once per vector path (TG__SIMD_EACH); all give the same bits. */
#define U_LOOPS(ISA, T, S)                                                  \
  TG__TARGET_##ISA static void U_CAT(fwd_##S##_, ISA)(                      \
      const T *restrict xs, T *restrict ys, int64_t n,                      \
      const tg_opargs *args) {                                              \
    const T a0 = (T)args->f[0], a1 = (T)args->f[1];                         \
    (void)a0;                                                               \
    (void)a1;                                                               \
    U_SIMD_##S                                                              \
    for (int64_t i = 0; i < n; i++) {                                       \
      T x = xs[i];                                                          \
      ys[i] = FWD(x);                                                       \
    }                                                                       \
  }                                                                         \
  TG__TARGET_##ISA static void U_CAT(bwd_##S##_, ISA)(                      \
      const T *restrict xs, const T *restrict ys, const T *restrict gs,     \
      T *restrict dx, int64_t n, const tg_opargs *args) {                   \
    const T a0 = (T)args->f[0], a1 = (T)args->f[1];                         \
    (void)a0;                                                               \
    (void)a1;                                                               \
    U_BSIMD_##S                                                             \
    for (int64_t i = 0; i < n; i++) {                                       \
      T x = xs[i], y = ys[i], g = gs[i];                                    \
      (void)x;                                                              \
      (void)y;                                                              \
      dx[i] += BWD(x, y, g);                                                \
    }                                                                       \
  }
/* A job for tg__par_range: a pass over [i0, i1) of the tensors. */
typedef struct {
  const void *x, *y, *g;
  void *out; /* y in forward, dx in backward */
  const tg_opargs *args;
  int path;
} u_job;
#define U_KERNELS(T, S)                                                     \
  TG__SIMD_EACH(U_LOOPS, T, S)                                              \
  static void (*const U_CAT(fwd_tab_, S)[TG__SIMD_NPATHS])(                 \
      const T *restrict, T *restrict, int64_t, const tg_opargs *) =         \
      TG__SIMD_TABLE(fwd_##S);                                              \
  static void (*const U_CAT(bwd_tab_, S)[TG__SIMD_NPATHS])(                 \
      const T *restrict, const T *restrict, const T *restrict, T *restrict, \
      int64_t, const tg_opargs *) = TG__SIMD_TABLE(bwd_##S);                \
  static void U_CAT(fwd_range_, S)(void *p, int64_t i0, int64_t i1) {       \
    const u_job *j = p;                                                     \
    U_CAT(fwd_tab_, S)[j->path]((const T *)j->x + i0, (T *)j->out + i0,     \
                                i1 - i0, j->args);                          \
  }                                                                         \
  static void U_CAT(bwd_range_, S)(void *p, int64_t i0, int64_t i1) {       \
    const u_job *j = p;                                                     \
    U_CAT(bwd_tab_, S)[j->path]((const T *)j->x + i0, (const T *)j->y + i0, \
                                (const T *)j->g + i0, (T *)j->out + i0,     \
                                i1 - i0, j->args);                          \
  }
TG__BOTH(U_KERNELS)

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  char fn[48];
  int rc = tg__simd_check(tg__fn_of(n->op, fn, sizeof fn));
  if (rc) return rc;
  const tg_tensor *x = n->in[0];
  u_job j = {.x = x->data, .out = n->out->data, .args = &n->args,
             .path = tg__simd_path()};
  tg__par_range(x->numel, UNARY_PAR_MIN,
                x->dtype == TG_F32 ? fwd_range_f32 : fwd_range_f64, &j);
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  u_job j = {.x = n->in[0]->data, .y = n->out->data, .g = n->out->grad,
             .out = dx, .args = &n->args, .path = tg__simd_path()};
  tg__par_range(n->out->numel, UNARY_PAR_MIN,
                n->out->dtype == TG_F32 ? bwd_range_f32 : bwd_range_f64, &j);
}

#ifdef UNARY_ARGS
#define U_HAS_ARGS 1
#else
#define UNARY_ARGS {.f = {0}}
#endif
#ifdef UNARY_RULE
static int u_rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                  tg_outshape *out) {
  int rc = UNARY_RULE(fn, in, a, out);
  return rc ? rc : tg__rule_same(fn, in, a, out);
}
#else
#define u_rule tg__rule_same
#endif

static const tg_opcase cases[] = {
    {.ndim = {1}, .shape = {{7}}, .domain = {UNARY_DOMAIN}, .args = UNARY_ARGS},
    {.ndim = {2}, .shape = {{3, 5}}, .domain = {UNARY_DOMAIN}, .args = UNARY_ARGS},
    {.ndim = {3}, .shape = {{2, 3, 4}}, .domain = {UNARY_DOMAIN}, .args = UNARY_ARGS},
    {.ndim = {3}, .shape = {{1, 6, 1}}, .domain = {UNARY_DOMAIN}, .args = UNARY_ARGS},
    {.ndim = {0}, .domain = {UNARY_DOMAIN}, .args = UNARY_ARGS},
#ifdef UNARY_MORE_CASES
    UNARY_MORE_CASES
#endif
};

const tg_opdef U_CAT(tg__op_, UNARY_NAME) = {
    .name = U_STR(UNARY_NAME), .n_in = 1, .rule = u_rule, .forward = forward,
    .backward = backward, TG__CASES(cases)};

#ifndef U_HAS_ARGS
tg_tensor *U_CAT(tg_, UNARY_NAME)(tg_tape *t, tg_tensor *a) {
  return tg__apply(t, &U_CAT(tg__op_, UNARY_NAME), &a, NULL);
}
#endif

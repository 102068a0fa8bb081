/* tests/test_unary.c: the elementwise unary ops at known points, in float32
 * and float64: values and gradients against constants worked out apart
 * from the library (exactly, or to 17 digits at 40-digit precision), the
 * conventions at kinks and bounds, the limits at +-inf, and NaN in, NaN
 * out. The generic checks (gradients by finite differences, float32
 * against float64, bad arguments, special values) are in test_ops.c. */
#include "testutil.h"

#define F64_TOL 1e-13
#define F32_TOL 4e-6
#define MAXN 6

/* Every op as a function of one tensor and up to two constants. */
typedef tg_tensor *(*op_fn)(tg_tape *t, tg_tensor *a, const double *c);
#define PLAIN(name)                                                         \
  static tg_tensor *w_##name(tg_tape *t, tg_tensor *a, const double *c) {   \
    (void)c;                                                                \
    return tg_##name(t, a);                                                 \
  }
PLAIN(sqrt)
PLAIN(abs)
PLAIN(square)
PLAIN(log1p)
PLAIN(softplus)
PLAIN(gelu)
PLAIN(gelu_tanh)
PLAIN(silu)
static tg_tensor *w_pow_scalar(tg_tape *t, tg_tensor *a, const double *c) {
  return tg_pow_scalar(t, a, c[0]);
}
static tg_tensor *w_leaky_relu(tg_tape *t, tg_tensor *a, const double *c) {
  return tg_leaky_relu(t, a, c[0]);
}
static tg_tensor *w_clamp(tg_tape *t, tg_tensor *a, const double *c) {
  return tg_clamp(t, a, c[0], c[1]);
}
static tg_tensor *w_add_scalar(tg_tape *t, tg_tensor *a, const double *c) {
  return tg_add_scalar(t, a, c[0]);
}

/* y = op(x) and dL/dx for dL/dy = 1, at n points. */
typedef struct {
  const char *name;
  op_fn f;
  double c[2];
  int n;
  double x[MAXN], y[MAXN], dx[MAXN];
} known;

static const known knowns[] = {
    {"sqrt", w_sqrt, {0}, 4, {0.25, 4, 2, 0},
     {0.5, 2, 1.4142135623730951, 0}, {1, 0.25, 0.35355339059327373, INFINITY}},
    /* sign(0) = 0, for -0 too */
    {"abs", w_abs, {0}, 5, {-2, 0, 3, -0.0, -INFINITY}, {2, 0, 3, 0, INFINITY},
     {-1, 0, 1, 0, -1}},
    {"square", w_square, {0}, 3, {-3, 0.5, 0}, {9, 0.25, 0}, {-6, 1, 0}},
    {"pow_scalar 3", w_pow_scalar, {3}, 3, {-2, 0.5, 0}, {-8, 0.125, 0}, {12, 0.75, 0}},
    {"pow_scalar 0.5", w_pow_scalar, {0.5}, 2, {4, 0.25}, {2, 0.5}, {0.25, 1}},
    {"pow_scalar -1.5", w_pow_scalar, {-1.5}, 2, {4, 1}, {0.125, 1},
     {-0.046875, -1.5}},
    {"pow_scalar 2", w_pow_scalar, {2}, 3, {-3, 0, 0.5}, {9, 0, 0.25}, {-6, 0, 1}},
    /* x^1 at 0: derivative 1, no 0^negative; x^0: 1 everywhere, NaN too,
     * with gradient 0 */
    {"pow_scalar 1", w_pow_scalar, {1}, 2, {0, -2}, {0, -2}, {1, 1}},
    {"pow_scalar 0", w_pow_scalar, {0}, 4, {0, 5, -2, NAN}, {1, 1, 1, 1}, {0, 0, 0, 0}},
    {"log1p", w_log1p, {0}, 3, {0, 1e-10, 1}, {0, 9.9999999995e-11, 0.69314718055994531},
     {1, 0.9999999999, 0.5}},
    {"softplus", w_softplus, {0}, 6, {-1000, 1000, 0, 1, -3, -INFINITY},
     {0, 1000, 0.69314718055994531, 1.3132616875182228, 0.048587351573742059, 0},
     {0, 1, 0.5, 0.73105857863000488, 0.047425873177566781, 0}},
    /* gelu(-10) is about 7.6e-23: 1 + erf would have cancelled to 0 */
    {"gelu", w_gelu, {0}, 6, {1, -1, 0, -10, -INFINITY, INFINITY},
     {0.84134474606854295, -0.15865525393145705, 0, -7.6198530241605261e-23, 0, INFINITY},
     {1.0833154705876863, -0.083315470587686298, 0.5, -7.6184000964648141e-22, 0, 1}},
    {"gelu_tanh", w_gelu_tanh, {0}, 6, {1, -1, 2.5, -3, -INFINITY, INFINITY},
     {0.8411919906082767, -0.1588080093917233, 2.4849157339100014,
      -0.0036373920817730188, 0, INFINITY},
     {1.0829640838457826, -0.082964083845782555, 1.0379515762126662,
      -0.011584166630969726, 0, 1}},
    {"silu", w_silu, {0}, 6, {1, -1, 0, -3, -INFINITY, INFINITY},
     {0.73105857863000488, -0.26894142136999512, 0, -0.14227761953270034, 0, INFINITY},
     {0.92767051187148673, 0.072329488128513268, 0.5, -0.088104106015169617, 0, 1}},
    /* at 0 the slope, as PyTorch */
    {"leaky_relu", w_leaky_relu, {0.125}, 4, {-2, 0, 3, -INFINITY},
     {-0.25, 0, 3, -INFINITY}, {0.125, 0.125, 1, 0.125}},
    /* the gradient passes at both bounds, inclusive */
    {"clamp", w_clamp, {-1, 0.5}, 6, {-2, -1, 0, 0.5, 1, INFINITY},
     {-1, -1, 0, 0.5, 0.5, 0.5}, {0, 1, 1, 1, 0, 0}},
    {"clamp -inf..0", w_clamp, {-INFINITY, 0}, 4, {-1e30, 5, 0, -INFINITY},
     {-1e30, 0, 0, -INFINITY}, {1, 0, 1, 1}},
    {"clamp 2..2", w_clamp, {2, 2}, 3, {1, 2, 3}, {2, 2, 2}, {0, 1, 0}},
    {"add_scalar", w_add_scalar, {2.5}, 3, {1, -2.5, INFINITY}, {3.5, 0, INFINITY},
     {1, 1, 1}},
};

/* NaN, inf and zero exactly; anything else to tol relative. */
static bool near(double got, double want, double tol) {
  if (isnan(want)) return isnan(got);
  if (isinf(want) || want == 0) return got == want;
  return fabs(got - want) <= tol * fabs(want);
}

static tg_tensor *values(tg_dtype dt, int n, const double *v) {
  tg_tensor *x = tg_zeros(dt, TG_SHAPE(n));
  ck_assert_ptr_nonnull(x);
  for (int i = 0; i < n; i++) ck_assert_int_eq(tg_set(x, i, v[i]), TG_OK);
  return x;
}

/* _i: the known points' index. */
START_TEST(known_values) {
  const known *k = &knowns[_i];
  for (int d = 0; d < 2; d++) {
    tg_dtype dt = d ? TG_F32 : TG_F64;
    double tol = d ? F32_TOL : F64_TOL;
    tg_tensor *x = values(dt, k->n, k->x);
    ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
    tg_tape *t = tg_tape_new();
    tg_tensor *y = k->f(t, x, k->c);
    ck_assert_msg(y, "%s: %s", k->name, tg_last_error());
    ck_assert_int_eq(tg_tensor_dtype(y), dt);
    ck_assert_int_eq(tg_tensor_numel(y), k->n);
    tg_tensor *g = tg_ones(dt, TG_SHAPE(k->n));
    ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
    for (int i = 0; i < k->n; i++) {
      ck_assert_msg(near(tg_get(y, i), k->y[i], tol), "%s %s: y(%g) = %.17g, want %.17g",
                    k->name, tg_dtype_name(dt), k->x[i], tg_get(y, i), k->y[i]);
      ck_assert_msg(near(tg_grad_get(x, i), k->dx[i], tol),
                    "%s %s: dy/dx(%g) = %.17g, want %.17g", k->name, tg_dtype_name(dt),
                    k->x[i], tg_grad_get(x, i), k->dx[i]);
    }
    tg_tensor_free(g);
    tg_tape_free(t);
    tg_tensor_free(x);
  }
}
END_TEST

/* NaN in, NaN out, for every op (x^0 = 1 aside, checked above), among
 * ordinary values that stay ordinary. */
START_TEST(nan_in_nan_out) {
  static const struct {
    op_fn f;
    double c[2];
  } ops[] = {{w_sqrt, {0}},         {w_abs, {0}},          {w_square, {0}},
             {w_pow_scalar, {3}},   {w_pow_scalar, {-1.5}}, {w_log1p, {0}},
             {w_softplus, {0}},     {w_gelu, {0}},         {w_gelu_tanh, {0}},
             {w_silu, {0}},         {w_leaky_relu, {0.1}}, {w_clamp, {-1, 1}},
             {w_clamp, {-INFINITY, INFINITY}}, {w_add_scalar, {2}}};
  const double v[4] = {NAN, 0.5, -NAN, 2};
  for (size_t o = 0; o < sizeof ops / sizeof *ops; o++)
    for (int d = 0; d < 2; d++) {
      tg_tensor *x = values(d ? TG_F32 : TG_F64, 4, v);
      tg_tape *t = tg_tape_new();
      tg_tensor *y = ops[o].f(t, x, ops[o].c);
      ck_assert_msg(y, "op %zu: %s", o, tg_last_error());
      ck_assert_msg(isnan(tg_get(y, 0)) && isnan(tg_get(y, 2)), "op %zu: NaN gave %g, %g", o,
                    tg_get(y, 0), tg_get(y, 2));
      ck_assert_msg(isfinite(tg_get(y, 1)) && isfinite(tg_get(y, 3)), "op %zu", o);
      tg_tape_free(t);
      tg_tensor_free(x);
    }
}
END_TEST

/* A 0-d input gives a 0-d result, and tg_backward starts from it. */
START_TEST(sqrt_of_0d) {
  for (int d = 0; d < 2; d++) {
    tg_dtype dt = d ? TG_F32 : TG_F64;
    int64_t none[1] = {0};
    tg_tensor *x = tg_zeros(dt, 0, none);
    ck_assert_ptr_nonnull(x);
    tg_set(x, 0, 9);
    tg_requires_grad(x, true);
    tg_tape *t = tg_tape_new();
    tg_tensor *y = tg_sqrt(t, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_tensor_ndim(y), 0);
    ck_assert_int_eq(tg_backward(t, y), TG_OK);
    ck_assert(tg_get(y, 0) == 3);
    ck_assert(near(tg_grad_get(x, 0), 1.0 / 6, d ? F32_TOL : F64_TOL));
    tg_tape_free(t);
    tg_tensor_free(x);
  }
}
END_TEST

/* 1 - x as tg_add_scalar(tg_scale(x, -1), 1): values 1 - x, gradient -1. */
START_TEST(one_minus_x) {
  const double v[3] = {0.25, -2, 1};
  tg_tensor *x = values(TG_F64, 3, v);
  tg_requires_grad(x, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_add_scalar(t, tg_scale(t, x, -1), 1);
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  for (int i = 0; i < 3; i++) {
    ck_assert(tg_get(y, i) == 1 - v[i]);
    ck_assert(tg_grad_get(x, i) == -1);
  }
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* The argument checks name the op and the values. */
START_TEST(bad_arguments) {
  const double v[2] = {1, 2};
  tg_tensor *x = values(TG_F32, 2, v);
  tg_tape *t = tg_tape_new();
  ck_assert_ptr_null(tg_clamp(t, x, 1, -1));
  ck_assert_error_has(TG_EINVAL, "tg_clamp", "lo is 1, hi is -1");
  ck_assert_ptr_null(tg_clamp(t, x, 0, NAN));
  ck_assert_error_has(TG_EINVAL, "tg_clamp", "hi is nan");
  ck_assert_ptr_null(tg_pow_scalar(t, x, NAN));
  ck_assert_error_has(TG_EINVAL, "tg_pow_scalar", "p is NaN");
  ck_assert_ptr_null(tg_leaky_relu(t, x, NAN));
  ck_assert_error_has(TG_EINVAL, "tg_leaky_relu", "slope is NaN");
  ck_assert_ptr_null(tg_add_scalar(t, x, NAN));
  ck_assert_error_has(TG_EINVAL, "tg_add_scalar", "c is NaN");
  ck_assert_int_eq(tg_tape_nodes(t), 0);
  /* a NULL input: NULL, and the earlier message stays */
  ck_assert_ptr_null(tg_gelu(t, NULL));
  ck_assert_error_has(TG_EINVAL, "tg_add_scalar");
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

int main(void) {
  Suite *s = suite_create("unary");
  TCase *tc = tcase_create("unary ops");
  tcase_add_loop_test(tc, known_values, 0, (int)(sizeof knowns / sizeof *knowns));
  tcase_add_test(tc, nan_in_nan_out);
  tcase_add_test(tc, sqrt_of_0d);
  tcase_add_test(tc, one_minus_x);
  tcase_add_test(tc, bad_arguments);
  suite_add_tcase(s, tc);
  return run_suite(s);
}

/* tests/test_optim.c: SGD (plain, momentum, Nesterov, weight decay) and
 * Adam against updates worked out by hand, in float32 and float64; the
 * learning-rate schedules; bad configurations; the state accessors; and a
 * step that allocates nothing. */
#include "testutil.h"

static const tg_dtype dtypes[] = {TG_F64, TG_F32};

/* float64 is compared to 1e-12, float32 to a few ulps of the value. */
static double tol(tg_dtype dt, double v) {
  return dt == TG_F64 ? 1e-12 : 2e-6 * (fabs(v) > 1 ? fabs(v) : 1);
}

static tg_tensor *param(tg_dtype dt, int n, const double *v) {
  int64_t shape[1] = {n};
  tg_tensor *p = tg_zeros(dt, 1, shape);
  ck_assert_ptr_nonnull(p);
  for (int i = 0; i < n; i++) tg_set(p, i, v[i]);
  ck_assert_int_eq(tg_requires_grad(p, true), TG_OK);
  return p;
}

/* One training step on L = sum_p sum(p * p), so dL/dp = 2p. Each
 * parameter's term gets its own backward pass, so dtypes may differ. */
static void quad_step(tg_tape *t, tg_optim *opt) {
  for (int i = 0; i < tg_optim_n_params(opt); i++) {
    tg_tensor *p = tg_optim_param(opt, i);
    ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_mul(t, p, p))), TG_OK);
  }
  ck_assert_int_eq(tg_optim_step(opt), TG_OK);
  ck_assert_int_eq(tg_optim_zero_grad(opt), TG_OK);
  tg_tape_clear(t);
}

static const double w0[4] = {1, -2, 0.5, 3};

/* With g = 2w every SGD variant is linear in w, so w_t = c_t * w_0; c holds
 * c_1..c_3 for w_0 = 1. */
static void check_sgd(tg_dtype dt, const tg_sgd_config *cfg, const double c[3]) {
  tg_tensor *p = param(dt, 4, w0);
  tg_optim *opt = tg_sgd_new(&p, 1, cfg);
  ck_assert_ptr_nonnull(opt);
  tg_tape *t = tg_tape_new();
  for (int step = 0; step < 3; step++) {
    quad_step(t, opt);
    for (int i = 0; i < 4; i++)
      ck_assert_double_eq_tol(tg_get(p, i), c[step] * w0[i],
                              tol(dt, c[step] * w0[i]));
  }
  ck_assert_int_eq(tg_optim_steps(opt), 3);
  tg_tape_free(t);
  tg_optim_free(opt);
  tg_tensor_free(p);
}

START_TEST(sgd_plain) {
  /* w -= 0.1 * 2w: c_t = 0.8^t */
  tg_sgd_config cfg = TG_SGD_DEFAULTS;
  cfg.lr = 0.1;
  check_sgd(dtypes[_i], &cfg, (double[]){0.8, 0.64, 0.512});
}
END_TEST

START_TEST(sgd_momentum) {
  /* lr 0.1, mu 0.9, w_0 = 1:
   * 1: g = 2,    v = 2,                 w = 1 - 0.2      = 0.8
   * 2: g = 1.6,  v = 1.8 + 1.6 = 3.4,   w = 0.8 - 0.34   = 0.46
   * 3: g = 0.92, v = 3.06 + 0.92 = 3.98, w = 0.46 - 0.398 = 0.062 */
  tg_sgd_config cfg = TG_SGD_DEFAULTS;
  cfg.lr = 0.1;
  cfg.momentum = 0.9;
  check_sgd(dtypes[_i], &cfg, (double[]){0.8, 0.46, 0.062});
}
END_TEST

START_TEST(sgd_nesterov) {
  /* lr 0.1, mu 0.9, w_0 = 1; the step is g + mu * v:
   * 1: g = 2,      v = 2,      d = 2 + 1.8 = 3.8,         w = 0.62
   * 2: g = 1.24,   v = 3.04,   d = 1.24 + 2.736 = 3.976,  w = 0.2224
   * 3: g = 0.4448, v = 3.1808, d = 0.4448 + 2.86272,      w = -0.108352 */
  tg_sgd_config cfg = TG_SGD_DEFAULTS;
  cfg.lr = 0.1;
  cfg.momentum = 0.9;
  cfg.nesterov = true;
  check_sgd(dtypes[_i], &cfg, (double[]){0.62, 0.2224, -0.108352});
}
END_TEST

START_TEST(sgd_weight_decay) {
  /* wd 0.5 makes the gradient 2.5w. Plain, lr 0.1: c_t = 0.75^t. */
  tg_sgd_config cfg = TG_SGD_DEFAULTS;
  cfg.lr = 0.1;
  cfg.weight_decay = 0.5;
  check_sgd(dtypes[_i], &cfg, (double[]){0.75, 0.5625, 0.421875});
  /* With momentum 0.9:
   * 1: g' = 2.5,     v = 2.5,                w = 0.75
   * 2: g' = 1.875,   v = 2.25 + 1.875 = 4.125,  w = 0.75 - 0.4125 = 0.3375
   * 3: g' = 0.84375, v = 3.7125 + 0.84375 = 4.55625, w = -0.118125 */
  cfg.momentum = 0.9;
  check_sgd(dtypes[_i], &cfg, (double[]){0.75, 0.3375, -0.118125});
}
END_TEST

START_TEST(sgd_momentum_state) {
  /* after two steps of the momentum example, v = 3.4 * w_0 */
  tg_dtype dt = dtypes[_i];
  tg_tensor *p = param(dt, 4, w0);
  tg_sgd_config cfg = {.lr = 0.1, .momentum = 0.9};
  tg_optim *opt = tg_sgd_new(&p, 1, &cfg);
  tg_tape *t = tg_tape_new();
  quad_step(t, opt);
  quad_step(t, opt);
  tg_tensor *v = NULL, *none = p;
  ck_assert_int_eq(tg_optim_state(opt, 0, &v, &none), TG_OK);
  ck_assert_ptr_null(none);
  ck_assert_ptr_nonnull(v);
  ck_assert_int_eq(tg_tensor_dtype(v), dt);
  ck_assert_int_eq(tg_tensor_numel(v), 4);
  for (int i = 0; i < 4; i++)
    ck_assert_double_eq_tol(tg_get(v, i), 3.4 * w0[i], tol(dt, 3.4 * w0[i]));
  tg_tape_free(t);
  tg_optim_free(opt);
  tg_tensor_free(p);

  /* plain SGD keeps no state */
  p = param(dt, 4, w0);
  cfg.momentum = 0;
  opt = tg_sgd_new(&p, 1, &cfg);
  v = p;
  ck_assert_int_eq(tg_optim_state(opt, 0, &v, NULL), TG_OK);
  ck_assert_ptr_null(v);
  tg_optim_free(opt);
  tg_tensor_free(p);
}
END_TEST

/* Adam on g = 2w (+ wd w), evaluated here one scalar at a time. */
static void adam_ref(double w, const tg_adam_config *c, int steps, double *w_out,
                     double *m_out, double *v_out) {
  double m = 0, v = 0;
  for (int t = 1; t <= steps; t++) {
    double g = 2 * w + c->weight_decay * w;
    m = c->beta1 * m + (1 - c->beta1) * g;
    v = c->beta2 * v + (1 - c->beta2) * g * g;
    double mhat = m / (1 - pow(c->beta1, t));
    double vhat = v / (1 - pow(c->beta2, t));
    w -= c->lr * mhat / (sqrt(vhat) + c->eps);
  }
  *w_out = w;
  *m_out = m;
  *v_out = v;
}

static void check_adam(tg_dtype dt, const tg_adam_config *cfg,
                       const double lit_w[3], const double lit_mv[2]) {
  const double ws[5] = {1, -0.5, 2, -3, 0.25};
  tg_tensor *p = param(dt, 5, ws);
  tg_optim *opt = tg_adam_new(&p, 1, cfg);
  ck_assert_ptr_nonnull(opt);
  ck_assert_str_eq(tg_optim_name(opt), "adam");
  tg_tape *t = tg_tape_new();
  tg_tensor *m = NULL, *v = NULL;
  ck_assert_int_eq(tg_optim_state(opt, 0, &m, &v), TG_OK);
  for (int step = 1; step <= 3; step++) {
    quad_step(t, opt);
    /* w_0 = 1 against the literal numbers */
    ck_assert_double_eq_tol(tg_get(p, 0), lit_w[step - 1],
                            tol(dt, lit_w[step - 1]));
    for (int i = 0; i < 5; i++) {
      double w, mm, vv;
      adam_ref(ws[i], cfg, step, &w, &mm, &vv);
      ck_assert_double_eq_tol(tg_get(p, i), w, tol(dt, w));
      ck_assert_double_eq_tol(tg_get(m, i), mm, tol(dt, mm));
      ck_assert_double_eq_tol(tg_get(v, i), vv, tol(dt, vv));
    }
  }
  ck_assert_double_eq_tol(tg_get(m, 0), lit_mv[0], tol(dt, lit_mv[0]));
  ck_assert_double_eq_tol(tg_get(v, 0), lit_mv[1], tol(dt, lit_mv[1]));
  ck_assert_int_eq(tg_optim_steps(opt), 3);
  tg_tape_free(t);
  tg_optim_free(opt);
  tg_tensor_free(p);
}

START_TEST(adam_defaults_bias_corrected) {
  /* lr 0.1, betas 0.9/0.999, eps 1e-8, w_0 = 1:
   * 1: g = 2, m = 0.2, v = 0.004; m/(1-0.9) = 2, sqrt(v/(1-0.999)) = 2,
   *    w = 1 - 0.1 * 2 / (2 + 1e-8) = 0.9000000005 (without the bias
   *    correction the step would be 0.1 * 0.2/0.0632 = 0.316).
   * 2: g = 1.800000001, m = 0.3600000001, v = 0.0072360000036,
   *    m/0.19, sqrt(v/0.001999): w = 0.8004122286917927
   * 3: w = 0.7015862729460302, m = 0.4840824458283584,
   *    v = 0.00979140294695386 */
  tg_adam_config cfg = TG_ADAM_DEFAULTS;
  cfg.lr = 0.1;
  check_adam(dtypes[_i], &cfg,
             (double[]){0.9000000005, 0.8004122286917927, 0.7015862729460302},
             (double[]){0.4840824458283584, 0.00979140294695386});
}
END_TEST

START_TEST(adam_weight_decay) {
  /* lr 0.1, betas 0.5/0.75, eps 0.1, wd 0.5 (g' = 2.5w), w_0 = 1:
   * 1: g' = 2.5, m = 1.25, v = 1.5625; m/0.5 = 2.5, sqrt(v/0.25) = 2.5,
   *    w = 1 - 0.1 * 2.5 / 2.6 = 0.9038461538461539
   * 2: w = 0.8089518139512585
   * 3: w = 0.7160661477245014, m = 1.8885936135929193,
   *    v = 2.8587600619717115 */
  tg_adam_config cfg = {.lr = 0.1, .beta1 = 0.5, .beta2 = 0.75, .eps = 0.1,
                        .weight_decay = 0.5};
  check_adam(dtypes[_i], &cfg,
             (double[]){0.9038461538461539, 0.8089518139512585,
                        0.7160661477245014},
             (double[]){1.8885936135929193, 2.8587600619717115});
}
END_TEST

START_TEST(adam_first_step_is_lr_whatever_the_scale) {
  /* bias correction makes the first step lr * g/(|g| + eps) */
  tg_tensor *p = param(TG_F64, 3, (double[]){1e-3, -1, 1e3});
  tg_adam_config cfg = TG_ADAM_DEFAULTS;
  tg_optim *opt = tg_adam_new(&p, 1, &cfg);
  tg_tape *t = tg_tape_new();
  quad_step(t, opt);
  ck_assert_double_eq_tol(tg_get(p, 0), 1e-3 - 1e-3 * 2e-3 / (2e-3 + 1e-8), 1e-15);
  ck_assert_double_eq_tol(tg_get(p, 1), -1 + 1e-3, 1e-11);
  ck_assert_double_eq_tol(tg_get(p, 2), 1e3 - 1e-3, 1e-9);
  tg_tape_free(t);
  tg_optim_free(opt);
  tg_tensor_free(p);
}
END_TEST

START_TEST(mixed_dtypes_and_frozen_params) {
  tg_tensor *a = param(TG_F32, 2, (double[]){1, 2});
  tg_tensor *b = param(TG_F64, 2, (double[]){3, 4});
  tg_tensor *c = param(TG_F64, 1, (double[]){5});
  tg_tensor *ps[] = {a, b, c};
  tg_sgd_config cfg = {.lr = 0.25};
  tg_optim *opt = tg_sgd_new(ps, 3, &cfg);
  ck_assert_ptr_nonnull(opt);
  ck_assert_int_eq(tg_optim_n_params(opt), 3);
  ck_assert_str_eq(tg_optim_name(opt), "sgd");
  tg_tape *t = tg_tape_new();
  quad_step(t, opt); /* w -= 0.25 * 2w: halves */
  ck_assert_double_eq_tol(tg_get(a, 1), 1, 1e-7);
  ck_assert_double_eq_tol(tg_get(b, 0), 1.5, 1e-15);
  ck_assert_double_eq_tol(tg_get(c, 0), 2.5, 1e-15);
  /* frozen: skipped by the step (even with a grad left in its buffer), the
   * others go on */
  tg_requires_grad(c, false);
  tg_set(tg_tensor_grad(c), 0, 1);
  tg_tensor *L = tg_sum(t, tg_mul(t, b, b));
  ck_assert_int_eq(tg_backward(t, L), TG_OK);
  ck_assert_int_eq(tg_optim_step(opt), TG_OK);
  ck_assert_double_eq_tol(tg_get(b, 0), 0.75, 1e-15);
  ck_assert_double_eq_tol(tg_get(c, 0), 2.5, 1e-15);
  /* zero_grad clears every grad */
  ck_assert_double_ne(tg_grad_get(b, 0), 0);
  ck_assert_int_eq(tg_optim_zero_grad(opt), TG_OK);
  for (int i = 0; i < 3; i++)
    ck_assert_double_eq(tg_grad_get(ps[i], 0), 0);
  tg_tape_free(t);
  tg_optim_free(opt); /* the parameters are still ours */
  ck_assert_double_eq_tol(tg_get(a, 0), 0.5, 1e-7);
  for (int i = 0; i < 3; i++) tg_tensor_free(ps[i]);
}
END_TEST

START_TEST(learning_rate_and_steps) {
  tg_tensor *p = param(TG_F64, 2, (double[]){1, 2});
  tg_sgd_config cfg = {.lr = 0.5};
  tg_optim *opt = tg_sgd_new(&p, 1, &cfg);
  ck_assert_double_eq(tg_optim_lr(opt), 0.5);
  ck_assert_int_eq(tg_optim_set_lr(opt, 0.125), TG_OK);
  ck_assert_double_eq(tg_optim_lr(opt), 0.125);
  tg_tape *t = tg_tape_new();
  quad_step(t, opt);
  ck_assert_double_eq_tol(tg_get(p, 1), 2 * 0.75, 1e-15);
  ck_assert_int_eq(tg_optim_set_lr(opt, 0), TG_OK); /* a schedule's end */
  quad_step(t, opt);
  ck_assert_double_eq_tol(tg_get(p, 1), 1.5, 1e-15);
  ck_assert_int_eq(tg_optim_set_lr(opt, -1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_optim_set_lr", "lr is -1");
  ck_assert_int_eq(tg_optim_set_lr(opt, NAN), TG_EINVAL);
  ck_assert_int_eq(tg_optim_set_lr(opt, INFINITY), TG_EINVAL);
  ck_assert_double_eq(tg_optim_lr(opt), 0);
  ck_assert_int_eq(tg_optim_steps(opt), 2);
  ck_assert_int_eq(tg_optim_set_steps(opt, 40), TG_OK);
  ck_assert_int_eq(tg_optim_steps(opt), 40);
  ck_assert_int_eq(tg_optim_set_steps(opt, -1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_optim_set_steps", "-1");
  ck_assert_ptr_eq(tg_optim_param(opt, 0), p);
  ck_assert_ptr_null(tg_optim_param(opt, 1));
  ck_assert_error_has(TG_ERANGE, "tg_optim_param", "parameter 1", "there are 1");
  ck_assert_int_eq(tg_optim_state(opt, -1, NULL, NULL), TG_ERANGE);
  ck_assert_error_has(TG_ERANGE, "tg_optim_state", "-1");
  /* NULL optimizers */
  ck_assert_int_eq(tg_optim_step(NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_optim_step");
  ck_assert_int_eq(tg_optim_zero_grad(NULL), TG_EINVAL);
  ck_assert_int_eq(tg_optim_set_lr(NULL, 1), TG_EINVAL);
  ck_assert_double_eq(tg_optim_lr(NULL), 0);
  ck_assert_int_eq(tg_optim_steps(NULL), 0);
  ck_assert_int_eq(tg_optim_n_params(NULL), 0);
  ck_assert_str_eq(tg_optim_name(NULL), "");
  tg_optim_free(NULL);
  tg_tape_free(t);
  tg_optim_free(opt);
  tg_tensor_free(p);
}
END_TEST

START_TEST(schedules) {
  ck_assert_double_eq(tg_lr_step(0.1, 0, 10, 0.5), 0.1);
  ck_assert_double_eq(tg_lr_step(0.1, 9, 10, 0.5), 0.1);
  ck_assert_double_eq_tol(tg_lr_step(0.1, 10, 10, 0.5), 0.05, 1e-17);
  ck_assert_double_eq_tol(tg_lr_step(0.1, 25, 10, 0.5), 0.025, 1e-17);
  ck_assert_double_eq_tol(tg_lr_step(1, 7, 1, 0.1), 1e-7, 1e-20);
  /* cosine from 0.1 to 0.001 over 100 epochs */
  ck_assert_double_eq_tol(tg_lr_cosine(0.1, 0, 100, 0.001), 0.1, 1e-17);
  /* a quarter of the way: 0.001 + 0.099 * (1 + cos(pi/4))/2
   *                    = 0.001 + 0.099 * 0.8535533905932738 */
  ck_assert_double_eq_tol(tg_lr_cosine(0.1, 25, 100, 0.001),
                          0.08550178566873410, 1e-15);
  ck_assert_double_eq_tol(tg_lr_cosine(0.1, 50, 100, 0.001), 0.0505, 1e-15);
  ck_assert_double_eq_tol(tg_lr_cosine(0.1, 100, 100, 0.001), 0.001, 1e-17);
  ck_assert_double_eq(tg_lr_cosine(0.1, 150, 100, 0.001), 0.001);
  ck_assert_double_eq_tol(tg_lr_cosine(0.1, 3, 4, 0), 0.1 * (1 - sqrt(0.5)) / 2,
                          1e-17);

  /* bad arguments: NaN and a message, which set_lr then refuses */
  ck_assert(isnan(tg_lr_step(0.1, 5, 0, 0.5)));
  ck_assert_error_has(TG_EINVAL, "tg_lr_step", "step_size is 0");
  ck_assert(isnan(tg_lr_step(0.1, -1, 10, 0.5)));
  ck_assert_error_has(TG_EINVAL, "tg_lr_step", "epoch is -1");
  ck_assert(isnan(tg_lr_step(0.1, 1, 10, 0)));
  ck_assert_error_has(TG_EINVAL, "tg_lr_step", "gamma is 0");
  ck_assert(isnan(tg_lr_step(NAN, 1, 10, 0.5)));
  ck_assert_error_has(TG_EINVAL, "tg_lr_step", "base");
  ck_assert(isnan(tg_lr_cosine(0.1, 1, 0, 0)));
  ck_assert_error_has(TG_EINVAL, "tg_lr_cosine", "total_epochs is 0");
  ck_assert(isnan(tg_lr_cosine(0.1, -2, 10, 0)));
  ck_assert_error_has(TG_EINVAL, "tg_lr_cosine", "epoch is -2");
  ck_assert(isnan(tg_lr_cosine(0.1, 1, 10, 0.2)));
  ck_assert_error_has(TG_EINVAL, "tg_lr_cosine", "min_lr is 0.2", "base = 0.1");
  ck_assert(isnan(tg_lr_cosine(0.1, 1, 10, -0.1)));
  ck_assert_error_has(TG_EINVAL, "tg_lr_cosine", "min_lr is -0.1");
}
END_TEST

START_TEST(bad_parameters) {
  tg_tensor *p = param(TG_F64, 2, (double[]){1, 2});
  tg_tensor *nograd = tg_zeros(TG_F64, TG_SHAPE(2));
  tg_tensor *ints = tg_zeros(TG_I32, TG_SHAPE(2));
  tg_sgd_config s = {.lr = 0.1};
  tg_adam_config a = TG_ADAM_DEFAULTS;

  ck_assert_ptr_null(tg_sgd_new(NULL, 1, &s));
  ck_assert_error_has(TG_EINVAL, "tg_sgd_new", "params is NULL");
  ck_assert_ptr_null(tg_adam_new(&p, 0, &a));
  ck_assert_error_has(TG_EINVAL, "tg_adam_new", "n is 0", "at least 1");
  ck_assert_ptr_null(tg_sgd_new(&p, -3, &s));
  ck_assert_error_has(TG_EINVAL, "tg_sgd_new", "n is -3");
  ck_assert_ptr_null(tg_sgd_new((tg_tensor *[]){p, NULL}, 2, &s));
  ck_assert_error_has(TG_EINVAL, "tg_sgd_new", "params[1] is NULL");
  ck_assert_ptr_null(tg_sgd_new((tg_tensor *[]){p, nograd}, 2, &s));
  ck_assert_error_has(TG_ESTATE, "tg_sgd_new", "params[1]", "does not require grad");
  ck_assert_ptr_null(tg_adam_new((tg_tensor *[]){ints}, 1, &a));
  ck_assert_error_has(TG_EDTYPE, "tg_adam_new", "params[0] is int32", "float");
  ck_assert_ptr_null(tg_sgd_new((tg_tensor *[]){p, p}, 2, &s));
  ck_assert_error_has(TG_EINVAL, "tg_sgd_new", "params[0] and params[1]",
                      "same tensor");
  ck_assert_ptr_null(tg_sgd_new(&p, 1, NULL));
  ck_assert_error_has(TG_EINVAL, "tg_sgd_new", "cfg is NULL", "TG_SGD_DEFAULTS");
  ck_assert_ptr_null(tg_adam_new(&p, 1, NULL));
  ck_assert_error_has(TG_EINVAL, "tg_adam_new", "cfg is NULL", "TG_ADAM_DEFAULTS");
  tg_tensor_free(p);
  tg_tensor_free(nograd);
  tg_tensor_free(ints);
}
END_TEST

START_TEST(bad_configs) {
  tg_tensor *p = param(TG_F32, 2, (double[]){1, 2});
  struct {
    tg_sgd_config c;
    const char *frag;
  } sgd[] = {
      {{.lr = 0}, "lr is 0"},
      {{.lr = -0.5}, "lr is -0.5"},
      {{.lr = NAN}, "lr is"},
      {{.lr = INFINITY}, "lr is inf"},
      {{.lr = 0.1, .momentum = 1}, "momentum is 1"},
      {{.lr = 0.1, .momentum = -0.1}, "momentum is -0.1"},
      {{.lr = 0.1, .momentum = NAN}, "momentum is"},
      {{.lr = 0.1, .nesterov = true}, "nesterov needs momentum > 0"},
      {{.lr = 0.1, .weight_decay = -1e-4}, "weight_decay is -0.0001"},
      {{.lr = 0.1, .weight_decay = NAN}, "weight_decay is"},
  };
  for (size_t i = 0; i < sizeof sgd / sizeof *sgd; i++) {
    tg_clear_error();
    ck_assert_ptr_null(tg_sgd_new(&p, 1, &sgd[i].c));
    ck_assert_error_has(TG_EINVAL, "tg_sgd_new: ", sgd[i].frag);
  }
  ck_assert_error_has(TG_EINVAL, ">= 0");

  struct {
    tg_adam_config c;
    const char *frag;
  } adam[] = {
      {{0}, "lr is 0"}, /* zero fields are not defaults */
      {{.lr = 1e-3, .beta1 = 1, .beta2 = 0.999, .eps = 1e-8},
       "beta1 is 1; it must be in [0, 1)"},
      {{.lr = 1e-3, .beta1 = 0.9, .beta2 = -0.5, .eps = 1e-8}, "beta2 is -0.5"},
      {{.lr = 1e-3, .beta1 = 0.9, .beta2 = 1.5, .eps = 1e-8}, "beta2 is 1.5"},
      {{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 0}, "eps is 0"},
      {{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = -1}, "eps is -1"},
      {{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = NAN}, "eps is"},
      {{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
        .weight_decay = -2}, "weight_decay is -2"},
  };
  for (size_t i = 0; i < sizeof adam / sizeof *adam; i++) {
    tg_clear_error();
    ck_assert_ptr_null(tg_adam_new(&p, 1, &adam[i].c));
    ck_assert_error_has(TG_EINVAL, "tg_adam_new: ", adam[i].frag);
  }
  /* the boundaries that are allowed */
  tg_adam_config edge = {.lr = 1e-3, .beta1 = 0, .beta2 = 0, .eps = 1e-8};
  tg_optim *o = tg_adam_new(&p, 1, &edge);
  ck_assert_ptr_nonnull(o);
  tg_optim_free(o);
  tg_sgd_config nm = {.lr = 0.1, .momentum = 0.999, .nesterov = true};
  o = tg_sgd_new(&p, 1, &nm);
  ck_assert_ptr_nonnull(o);
  tg_optim_free(o);
  tg_tensor_free(p);
}
END_TEST

START_TEST(step_allocates_nothing) {
  counting_allocator(true);
  tg_tensor *a = param(TG_F32, 3, (double[]){1, 2, 3});
  tg_tensor *b = param(TG_F64, 2, (double[]){4, 5});
  tg_tensor *ps[] = {a, b};
  tg_adam_config ac = TG_ADAM_DEFAULTS;
  tg_sgd_config sc = {.lr = 0.1, .momentum = 0.9, .nesterov = true};
  tg_optim *adam = tg_adam_new(ps, 2, &ac), *sgd = tg_sgd_new(ps, 2, &sc);
  ck_assert_ptr_nonnull(adam);
  ck_assert_ptr_nonnull(sgd);
  /* stand-ins for gradients: any values will do */
  tg_fill(a, 0.5);
  tg_tensor_f32(tg_tensor_grad(a))[1] = 0.25f;
  tg_tensor_f64(tg_tensor_grad(b))[0] = -1.5;
  long before = *test_allocs();
  for (int k = 0; k < 10; k++) {
    ck_assert_int_eq(tg_optim_step(adam), TG_OK);
    ck_assert_int_eq(tg_optim_step(sgd), TG_OK);
    ck_assert_int_eq(tg_optim_set_lr(sgd, tg_lr_cosine(0.1, k, 10, 0)), TG_OK);
    ck_assert_int_eq(tg_optim_zero_grad(adam), TG_OK);
  }
  ck_assert_int_eq(*test_allocs(), before);
  ck_assert_int_eq(*test_frees(), 0);
  tg_optim_free(adam);
  tg_optim_free(sgd);
  tg_tensor_free(a);
  tg_tensor_free(b);
  ck_assert_int_eq(*test_frees(), *test_allocs()); /* and nothing leaked */
  counting_allocator(false);
}
END_TEST

int main(void) {
  Suite *s = suite_create("optim");
  TCase *tc = tcase_create("sgd");
  tcase_add_loop_test(tc, sgd_plain, 0, 2);
  tcase_add_loop_test(tc, sgd_momentum, 0, 2);
  tcase_add_loop_test(tc, sgd_nesterov, 0, 2);
  tcase_add_loop_test(tc, sgd_weight_decay, 0, 2);
  tcase_add_loop_test(tc, sgd_momentum_state, 0, 2);
  suite_add_tcase(s, tc);
  tc = tcase_create("adam");
  tcase_add_loop_test(tc, adam_defaults_bias_corrected, 0, 2);
  tcase_add_loop_test(tc, adam_weight_decay, 0, 2);
  tcase_add_test(tc, adam_first_step_is_lr_whatever_the_scale);
  suite_add_tcase(s, tc);
  tc = tcase_create("api");
  tcase_add_test(tc, mixed_dtypes_and_frozen_params);
  tcase_add_test(tc, learning_rate_and_steps);
  tcase_add_test(tc, schedules);
  tcase_add_test(tc, bad_parameters);
  tcase_add_test(tc, bad_configs);
  tcase_add_test(tc, step_allocates_nothing);
  suite_add_tcase(s, tc);
  return run_suite(s);
}

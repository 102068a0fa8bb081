/* tests/test_optim.c: SGD (plain, momentum, Nesterov, weight decay), Adam
 * and AdamW against updates worked out by hand or by PyTorch, in float32
 * and float64; clipping by the global norm; the
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

/* AdamW against torch.optim.AdamW (PyTorch 1.13, float64), on the same
 * loss L = sum(w * w) from w_0 = {1, -0.5, 2, -3, 0.25}: the literals were
 * printed by a short script that ran three steps of
 *   opt = torch.optim.AdamW([w], lr=..., betas=..., eps=..., weight_decay=...)
 *   opt.zero_grad(); (w * w).sum().backward(); opt.step()
 * and read opt.state[w]['exp_avg'] and ['exp_avg_sq'] at the end. By hand,
 * step 1 of the first case: w = 1 * (1 - 0.1 * 0.1) - 0.1 * 2 / (2 + 1e-8)
 * = 0.8900000005. */
static void check_adamw(tg_dtype dt, const tg_adam_config *cfg,
                        const double w[3][5], const double m[5],
                        const double v[5]) {
  const double ws[5] = {1, -0.5, 2, -3, 0.25};
  tg_tensor *p = param(dt, 5, ws);
  tg_optim *opt = tg_adamw_new(&p, 1, cfg);
  ck_assert_ptr_nonnull(opt);
  ck_assert_str_eq(tg_optim_name(opt), "adamw");
  tg_tape *t = tg_tape_new();
  tg_tensor *bm = NULL, *bv = NULL;
  ck_assert_int_eq(tg_optim_state(opt, 0, &bm, &bv), TG_OK);
  for (int step = 0; step < 3; step++) {
    quad_step(t, opt);
    for (int i = 0; i < 5; i++)
      ck_assert_double_eq_tol(tg_get(p, i), w[step][i], tol(dt, w[step][i]));
  }
  for (int i = 0; i < 5; i++) {
    ck_assert_double_eq_tol(tg_get(bm, i), m[i], tol(dt, m[i]));
    ck_assert_double_eq_tol(tg_get(bv, i), v[i], tol(dt, v[i]));
  }
  tg_tape_free(t);
  tg_optim_free(opt);
  tg_tensor_free(p);
}

START_TEST(adamw_matches_pytorch) {
  tg_adam_config cfg = TG_ADAMW_DEFAULTS;
  cfg.lr = 0.1;
  cfg.weight_decay = 0.1;
  check_adamw(dtypes[_i], &cfg,
              (const double[3][5]){
                  {0.8900000004999999, -0.395000001, 1.88000000025,
                   -2.8700000001666663, 0.14750000199999996},
                  {0.7815718559365048, -0.2923387042550786, 1.7614089505845592,
                   -2.741439940907542, 0.05049514299258255},
                  {0.6751012216400698, -0.19341560428094734, 1.6443686835605893,
                   -2.6144056172811183, -0.03371781112724521}},
              (const double[5]){0.47851437127730084, -0.21056774103101566,
                                1.0146817901619116, -1.5508879882115079,
                                0.07714902895851648},
              (const double[5]){0.009600653867524579, 0.001963324575178995,
                                0.042501724368553866, 0.0989046602022355,
                                0.00034663726522100576});
  tg_adam_config c2 = {.lr = 0.1, .beta1 = 0.5, .beta2 = 0.75, .eps = 0.1,
                       .weight_decay = 0.5};
  check_adamw(dtypes[_i], &c2,
              (const double[3][5]){
                  {0.8547619047619047, -0.38409090909090904, 1.8024390243902437,
                   -2.7516393442622946, 0.15416666666666665},
                  {0.718895668346937, -0.2781806135474112, 1.6159953970236098,
                   -2.5166785442435757, 0.07228552841894975},
                  {0.593187335831687, -0.1846139516235766, 1.4408000462633188,
                   -2.294980083927108, 0.010647511738311861}},
              (const double[5]){1.3962766207278894, -0.5952260680928657,
                                3.0172149092187315, -4.642498216374722,
                                0.2118688617522831},
              (const double[5]){1.6272744173421387, 0.32865382358832484,
                                7.298030950685135, 17.074810205725136,
                                0.05820696845214012});
}
END_TEST

START_TEST(adamw_without_decay_is_adam) {
  /* weight_decay 0: the same bits as Adam's */
  const double ws[3] = {1, -2, 0.5};
  tg_tensor *a = param(dtypes[_i], 3, ws), *b = param(dtypes[_i], 3, ws);
  tg_adam_config cfg = TG_ADAM_DEFAULTS;
  cfg.lr = 0.05;
  tg_optim *oa = tg_adam_new(&a, 1, &cfg), *ob = tg_adamw_new(&b, 1, &cfg);
  tg_tape *t = tg_tape_new();
  for (int k = 0; k < 4; k++) {
    quad_step(t, oa);
    quad_step(t, ob);
  }
  ck_assert_uint_eq(tg_tensor_hash(a), tg_tensor_hash(b));
  tg_tape_free(t);
  tg_optim_free(oa);
  tg_optim_free(ob);
  tg_tensor_free(a);
  tg_tensor_free(b);
}
END_TEST

START_TEST(adamw_bad_configs) {
  tg_tensor *p = param(TG_F32, 2, (double[]){1, 2});
  tg_adam_config c = TG_ADAMW_DEFAULTS;
  ck_assert_ptr_null(tg_adamw_new(&p, 1, NULL));
  ck_assert_error_has(TG_EINVAL, "tg_adamw_new", "TG_ADAMW_DEFAULTS");
  c.weight_decay = -0.1;
  ck_assert_ptr_null(tg_adamw_new(&p, 1, &c));
  ck_assert_error_has(TG_EINVAL, "tg_adamw_new: ", "weight_decay is -0.1");
  c = (tg_adam_config)TG_ADAMW_DEFAULTS;
  c.lr = 0.5;
  c.weight_decay = 4; /* 1 - 2 < 0 would flip the weights */
  ck_assert_ptr_null(tg_adamw_new(&p, 1, &c));
  ck_assert_error_has(TG_EINVAL, "tg_adamw_new: ", "lr * weight_decay is 0.5 * 4 = 2");
  c.weight_decay = 2; /* exactly 1 is allowed: the weights go to 0 */
  tg_optim *o = tg_adamw_new(&p, 1, &c);
  ck_assert_ptr_nonnull(o);
  ck_assert_int_eq(tg_optim_set_lr(o, 0.75), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_optim_set_lr", "lr * weight_decay is 0.75 * 2 = 1.5");
  ck_assert_double_eq(tg_optim_lr(o), 0.5);
  ck_assert_int_eq(tg_optim_set_lr(o, 0.25), TG_OK);
  tg_optim_free(o);
  c = (tg_adam_config)TG_ADAMW_DEFAULTS;
  c.eps = 1e-50; /* a valid double, 0 in float32 */
  ck_assert_ptr_null(tg_adamw_new(&p, 1, &c));
  ck_assert_error_has(TG_EINVAL, "tg_adamw_new: ", "eps is 1e-50", "float32");
  tg_tensor_free(p);
}
END_TEST

/* Values from torch.nn.utils.clip_grad_norm_ (PyTorch 1.13, float64) on
 * grads {3, -4} and {{1, 2}, {2, 0.5}}: total = sqrt(25 + 9.25) =
 * 5.852349955359813, and with max_norm 2 every grad times
 * 2 / (total + 1e-6). */
START_TEST(clip_grad_norm_matches_pytorch) {
  tg_dtype dt = dtypes[_i];
  tg_tensor *a = param(dt, 2, (double[]){0, 0});
  tg_tensor *b = tg_zeros(dt, TG_SHAPE(2, 2));
  tg_tensor *frozen = param(dt, 1, (double[]){0});
  tg_requires_grad(b, true);
  tg_tensor *ps[] = {a, b, frozen};
  const double ga[2] = {3, -4}, gb[4] = {1, 2, 2, 0.5};
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 2; i++) tg_set(tg_tensor_grad(a), i, ga[i]);
    for (int i = 0; i < 4; i++) tg_set(tg_tensor_grad(b), i, gb[i]);
    tg_requires_grad(frozen, true);
    tg_set(tg_tensor_grad(frozen), 0, 100); /* left out once frozen */
    tg_requires_grad(frozen, false);
    double max_norm = round == 0 ? 2.0 : 10.0;
    double n = tg_clip_grad_norm(ps, 3, max_norm);
    ck_assert_double_eq_tol(n, 5.852349955359813, tol(dt, 5.85));
    if (round == 0) {
      const double wa[2] = {1.0252290140776612, -1.366972018770215};
      const double wb[4] = {0.34174300469255375, 0.6834860093851075,
                            0.6834860093851075, 0.17087150234627688};
      for (int i = 0; i < 2; i++)
        ck_assert_double_eq_tol(tg_grad_get(a, i), wa[i], tol(dt, wa[i]));
      for (int i = 0; i < 4; i++)
        ck_assert_double_eq_tol(tg_grad_get(b, i), wb[i], tol(dt, wb[i]));
    } else { /* under the limit: untouched, bit for bit */
      for (int i = 0; i < 2; i++) ck_assert_double_eq(tg_grad_get(a, i), ga[i]);
      for (int i = 0; i < 4; i++) ck_assert_double_eq(tg_grad_get(b, i), gb[i]);
    }
  }
  /* through an optimizer, and the clipped norm is max_norm */
  tg_sgd_config sc = {.lr = 0.1};
  tg_optim *o = tg_sgd_new(ps, 2, &sc);
  ck_assert_double_eq_tol(tg_optim_clip_grad_norm(o, 1.0), 5.852349955359813,
                          tol(dt, 5.85));
  /* 1 * total / (total + 1e-6), a hair under max_norm, as PyTorch's */
  ck_assert_double_eq_tol(tg_optim_clip_grad_norm(o, 1.0),
                          5.852349955359813 / (5.852349955359813 + 1e-6),
                          tol(dt, 1));
  tg_optim_free(o);
  /* a non-finite norm is returned, the grads are left alone */
  tg_set(tg_tensor_grad(a), 0, INFINITY);
  ck_assert(isinf(tg_clip_grad_norm(ps, 2, 1.0)));
  ck_assert_double_eq(tg_grad_get(a, 1), tg_grad_get(a, 1));
  ck_assert(isinf(tg_grad_get(a, 0)));
  for (int i = 0; i < 3; i++) tg_tensor_free(ps[i]);
}
END_TEST

START_TEST(clip_grad_norm_bad_arguments) {
  tg_tensor *p = param(TG_F32, 2, (double[]){1, 2});
  tg_tensor *ints = tg_zeros(TG_I32, TG_SHAPE(2));
  tg_tensor *withnull[] = {p, NULL}, *withint[] = {p, ints};
  ck_assert_double_eq(tg_clip_grad_norm(NULL, 1, 1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_clip_grad_norm", "params is NULL");
  ck_assert_double_eq(tg_clip_grad_norm(&p, 0, 1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_clip_grad_norm", "n is 0");
  ck_assert_double_eq(tg_clip_grad_norm(withnull, 2, 1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "params[1] is NULL");
  ck_assert_double_eq(tg_clip_grad_norm(withint, 2, 1), TG_EDTYPE);
  ck_assert_error_has(TG_EDTYPE, "params[1] is int32");
  const double bad[] = {0, -1, NAN, INFINITY};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ck_assert_double_eq(tg_clip_grad_norm(&p, 1, bad[i]), TG_EINVAL);
    ck_assert_error_has(TG_EINVAL, "tg_clip_grad_norm", "max_norm is");
  }
  ck_assert_double_eq(tg_clip_grad_norm(&p, 1, 1e300), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "max_norm is 1e+300", "float32");
  ck_assert_double_eq(tg_optim_clip_grad_norm(NULL, 1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_optim_clip_grad_norm");
  tg_tensor_free(p);
  tg_tensor_free(ints);
}
END_TEST

START_TEST(warmup_cosine) {
  /* lr_max 0.1, lr_min 0.01, warmup 10, total 110 */
  ck_assert_double_eq(tg_lr_warmup_cosine(0.1, 0, 10, 110, 0.01), 0);
  ck_assert_double_eq_tol(tg_lr_warmup_cosine(0.1, 1, 10, 110, 0.01), 0.01, 1e-17);
  ck_assert_double_eq_tol(tg_lr_warmup_cosine(0.1, 5, 10, 110, 0.01), 0.05, 1e-17);
  ck_assert_double_eq(tg_lr_warmup_cosine(0.1, 10, 10, 110, 0.01), 0.1);
  /* a quarter into the cosine: 0.01 + 0.09 * (1 + cos(pi/4)) / 2 */
  ck_assert_double_eq_tol(tg_lr_warmup_cosine(0.1, 35, 10, 110, 0.01),
                          0.01 + 0.09 * 0.8535533905932738, 1e-16);
  ck_assert_double_eq_tol(tg_lr_warmup_cosine(0.1, 60, 10, 110, 0.01), 0.055, 1e-16);
  ck_assert_double_eq_tol(tg_lr_warmup_cosine(0.1, 110, 10, 110, 0.01), 0.01, 1e-17);
  ck_assert_double_eq(tg_lr_warmup_cosine(0.1, 1000, 10, 110, 0.01), 0.01);
  /* monotone: up through the warmup, down after it */
  double prev = -1;
  for (int s = 0; s <= 10; s++) {
    double lr = tg_lr_warmup_cosine(0.1, s, 10, 110, 0.01);
    ck_assert(lr > prev);
    prev = lr;
  }
  for (int s = 11; s <= 110; s++) {
    double lr = tg_lr_warmup_cosine(0.1, s, 10, 110, 0.01);
    ck_assert(lr < prev);
    prev = lr;
  }
  /* no warmup: the cosine from step 0; all warmup: lr_max to the end */
  ck_assert_double_eq(tg_lr_warmup_cosine(0.1, 0, 0, 4, 0), 0.1);
  ck_assert_double_eq_tol(tg_lr_warmup_cosine(0.1, 2, 0, 4, 0), 0.05, 1e-17);
  ck_assert_double_eq(tg_lr_warmup_cosine(0.1, 4, 4, 4, 0), 0.1);
  ck_assert_double_eq(tg_lr_warmup_cosine(0.1, 5, 4, 4, 0), 0);
  /* bad arguments: NaN and a message */
  ck_assert(isnan(tg_lr_warmup_cosine(0.1, -1, 10, 110, 0)));
  ck_assert_error_has(TG_EINVAL, "tg_lr_warmup_cosine", "step is -1");
  ck_assert(isnan(tg_lr_warmup_cosine(0.1, 1, 11, 10, 0)));
  ck_assert_error_has(TG_EINVAL, "tg_lr_warmup_cosine", "warmup is 11", "total = 10");
  ck_assert(isnan(tg_lr_warmup_cosine(0.1, 1, -1, 10, 0)));
  ck_assert_error_has(TG_EINVAL, "warmup is -1");
  ck_assert(isnan(tg_lr_warmup_cosine(0.1, 1, 0, 0, 0)));
  ck_assert_error_has(TG_EINVAL, "total is 0");
  ck_assert(isnan(tg_lr_warmup_cosine(0.1, 1, 0, 10, 0.2)));
  ck_assert_error_has(TG_EINVAL, "lr_min is 0.2", "lr_max = 0.1");
  ck_assert(isnan(tg_lr_warmup_cosine(INFINITY, 1, 0, 10, 0)));
  ck_assert_error_has(TG_EINVAL, "lr_max is inf");
  ck_assert(isnan(tg_lr_warmup_cosine(0.1, 1, 0, 10, NAN)));
  ck_assert_error_has(TG_EINVAL, "lr_min is");
}
END_TEST

START_TEST(step_allocates_nothing) {
  counting_allocator(true);
  tg_tensor *a = param(TG_F32, 3, (double[]){1, 2, 3});
  tg_tensor *b = param(TG_F64, 2, (double[]){4, 5});
  tg_tensor *ps[] = {a, b};
  tg_adam_config ac = TG_ADAM_DEFAULTS;
  tg_sgd_config sc = {.lr = 0.1, .momentum = 0.9, .nesterov = true};
  tg_adam_config wc = TG_ADAMW_DEFAULTS;
  tg_optim *adam = tg_adam_new(ps, 2, &ac), *sgd = tg_sgd_new(ps, 2, &sc);
  tg_optim *adamw = tg_adamw_new(ps, 2, &wc);
  ck_assert_ptr_nonnull(adam);
  ck_assert_ptr_nonnull(sgd);
  ck_assert_ptr_nonnull(adamw);
  /* stand-ins for gradients: any values will do */
  tg_fill(a, 0.5);
  tg_tensor_f32(tg_tensor_grad(a))[1] = 0.25f;
  tg_tensor_f64(tg_tensor_grad(b))[0] = -1.5;
  long before = *test_allocs();
  for (int k = 0; k < 10; k++) {
    ck_assert_int_eq(tg_optim_step(adam), TG_OK);
    ck_assert_int_eq(tg_optim_step(sgd), TG_OK);
    ck_assert(tg_optim_clip_grad_norm(adamw, 0.5) >= 0);
    ck_assert_int_eq(tg_optim_set_lr(adamw, tg_lr_warmup_cosine(1e-3, k, 3, 10, 0)), TG_OK);
    ck_assert_int_eq(tg_optim_step(adamw), TG_OK);
    ck_assert_int_eq(tg_optim_set_lr(sgd, tg_lr_cosine(0.1, k, 10, 0)), TG_OK);
    ck_assert_int_eq(tg_optim_zero_grad(adam), TG_OK);
  }
  ck_assert_int_eq(*test_allocs(), before);
  ck_assert_int_eq(*test_frees(), 0);
  tg_optim_free(adam);
  tg_optim_free(sgd);
  tg_optim_free(adamw);
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
  tcase_add_loop_test(tc, adamw_matches_pytorch, 0, 2);
  tcase_add_loop_test(tc, adamw_without_decay_is_adam, 0, 2);
  tcase_add_test(tc, adamw_bad_configs);
  suite_add_tcase(s, tc);
  tc = tcase_create("clip");
  tcase_add_loop_test(tc, clip_grad_norm_matches_pytorch, 0, 2);
  tcase_add_test(tc, clip_grad_norm_bad_arguments);
  suite_add_tcase(s, tc);
  tc = tcase_create("api");
  tcase_add_test(tc, mixed_dtypes_and_frozen_params);
  tcase_add_test(tc, learning_rate_and_steps);
  tcase_add_test(tc, schedules);
  tcase_add_test(tc, warmup_cosine);
  tcase_add_test(tc, bad_parameters);
  tcase_add_test(tc, bad_configs);
  tcase_add_test(tc, step_allocates_nothing);
  suite_add_tcase(s, tc);
  return run_suite(s);
}

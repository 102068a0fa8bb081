/* tests/test_train.c: a short training run of the mlp graph (784-100-10,
 * sigmoid hidden, fused softmax-NLL, SGD lr 0.5, batch 32) on 2,000 images:
 * the first 2,000 of the real MNIST when it has been fetched, else a
 * synthetic set with the same shapes whose ten classes are learnable. The
 * loss must fall and the held-out accuracy must pass a level that chance
 * (10%) cannot reach. */
#include <stdio.h>

#include "testutil.h"

enum { TRAIN = 2000, HELD_OUT = 1000, D = 784, CLASSES = 10, EPOCHS = 3 };

/* Ten random binary prototypes; each image is its class's prototype with
 * 35% of the pixels flipped, so classes overlap but are separable. */
static void synthetic(tg_tensor **x, tg_tensor **y, int64_t n, uint64_t seed) {
  static float proto[CLASSES][D];
  tg_rng rng;
  tg_rng_seed(&rng, 77); /* the same prototypes for every split */
  for (int c = 0; c < CLASSES; c++)
    for (int j = 0; j < D; j++) proto[c][j] = (float)tg_rng_below(&rng, 2);
  tg_rng_seed(&rng, seed);
  *x = tg_zeros(TG_F32, TG_SHAPE(n, D));
  *y = tg_zeros(TG_I32, TG_SHAPE(n));
  float *xd = tg_tensor_f32(*x);
  int32_t *yd = tg_tensor_i32(*y);
  for (int64_t i = 0; i < n; i++) {
    int c = (int)tg_rng_below(&rng, CLASSES);
    yd[i] = c;
    for (int j = 0; j < D; j++) {
      float p = proto[c][j];
      xd[i * D + j] = tg_rng_uniform(&rng) < 0.35 ? 1 - p : p;
    }
  }
}

static tg_tensor *first_rows(tg_tensor *src, int64_t n) {
  int64_t cols = tg_tensor_ndim(src) == 2 ? tg_tensor_dim(src, 1) : 0;
  tg_tensor *r = cols ? tg_tensor_from(TG_F32, TG_SHAPE(n, cols), tg_tensor_data(src))
                      : tg_tensor_from(TG_I32, TG_SHAPE(n), tg_tensor_data(src));
  ck_assert_ptr_nonnull(r);
  return r;
}

static tg_tensor *logits(tg_tape *t, tg_dense *l1, tg_dense *l2, tg_tensor *x) {
  return tg_dense_forward(t, l2, tg_activate(t, tg_dense_forward(t, l1, x), TG_ACT_SIGMOID));
}

START_TEST(mlp_learns_on_2000_images) {
  tg_tensor *xtr, *ytr, *xte, *yte;
  const char *dir = TOP_SRCDIR "/data/mnist";
  tg_tensor *ax, *ay, *bx, *by;
  bool real = tg_mnist_load(dir, "train", &ax, &ay) == TG_OK &&
              tg_mnist_load(dir, "t10k", &bx, &by) == TG_OK;
  if (real) {
    xtr = first_rows(ax, TRAIN), ytr = first_rows(ay, TRAIN);
    xte = first_rows(bx, HELD_OUT), yte = first_rows(by, HELD_OUT);
    tg_tensor_free(ax), tg_tensor_free(ay), tg_tensor_free(bx), tg_tensor_free(by);
  } else {
    tg_clear_error();
    synthetic(&xtr, &ytr, TRAIN, 1);
    synthetic(&xte, &yte, HELD_OUT, 2);
  }
  printf("test_train: %s data\n", real ? "the real MNIST" : "synthetic (MNIST not fetched)");

  tg_rng rng;
  tg_rng_seed(&rng, 1);
  tg_dense *l1 = tg_dense_new(D, 100, TG_F32, TG_ACT_SIGMOID, &rng);
  tg_dense *l2 = tg_dense_new(100, CLASSES, TG_F32, TG_ACT_NONE, &rng);
  tg_tensor *params[4];
  int np = tg_dense_params(l1, params);
  np += tg_dense_params(l2, params + np);
  tg_sgd_config cfg = TG_SGD_DEFAULTS;
  cfg.lr = 0.5;
  tg_optim *opt = tg_sgd_new(params, np, &cfg);
  tg_batcher *b = tg_batcher_new(xtr, ytr, 32, 3);
  tg_tape *t = tg_tape_new();
  ck_assert(l1 && l2 && opt && b && t);

  double first_loss = 0, last_loss = 0;
  for (int e = 0; e < EPOCHS; e++) {
    tg_batcher_shuffle(b);
    tg_tensor *x, *y;
    double sum = 0;
    int64_t rows = 0;
    while (tg_batcher_next(b, &x, &y) == 1) {
      tg_tensor *loss = tg_softmax_nll(t, logits(t, l1, l2, x), y);
      ck_assert_msg(loss != NULL, "%s", tg_last_error());
      ck_assert_int_eq(tg_backward(t, loss), TG_OK);
      ck_assert_int_eq(tg_optim_step(opt), TG_OK);
      tg_optim_zero_grad(opt);
      sum += tg_get(loss, 0) * (double)tg_tensor_dim(y, 0);
      rows += tg_tensor_dim(y, 0);
      tg_tape_clear(t);
    }
    if (e == 0) first_loss = sum / (double)rows;
    last_loss = sum / (double)rows;
  }
  tg_tape_set_grad(t, false);
  double acc = tg_accuracy(logits(t, l1, l2, xte), yte);
  printf("test_train: loss %.4f -> %.4f, held-out accuracy %.1f%%\n", first_loss,
         last_loss, 100 * acc);
  ck_assert_double_lt(last_loss, 0.5 * first_loss);
  /* Chance is 10%: 1,000 guesses reach 13% with probability < 1e-3, 70%
   * never. The real data gives about 84%, the synthetic set 100%. */
  ck_assert_double_ge(acc, 0.70);

  tg_tape_free(t);
  tg_batcher_free(b);
  tg_optim_free(opt);
  tg_dense_free(l1);
  tg_dense_free(l2);
  tg_tensor *all[] = {xtr, ytr, xte, yte};
  for (int i = 0; i < 4; i++) tg_tensor_free(all[i]);
}
END_TEST

int main(void) {
  Suite *s = suite_create("train");
  TCase *tc = tcase_create("short run");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, mlp_learns_on_2000_images);
  suite_add_tcase(s, tc);
  return run_suite(s);
}

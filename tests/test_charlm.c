/* tests/test_charlm.c: the character transformer of examples/charlm.h as a
 * whole: its gradient against central differences in float64 (tied and
 * untied output, with dropout masks held fixed), its causal mask (a later
 * token changes neither the loss at an earlier position nor, by a single
 * bit, the gradient flowing back to it), a training step that
 * allocates nothing once the tape has grown, and the dropout masks of a
 * shard of a batch (data-parallel training) against the whole batch's. */
#include "testutil.h"

#include "examples/charlm.h"

enum { B = 2, T = 8, V = 32 };

static charlm_config tiny(bool tied, double dropout) {
  return (charlm_config){.vocab = V, .layers = 2, .heads = 2, .width = 16,
                         .context = T, .tied = tied, .dropout = dropout,
                         .dtype = TG_F64};
}

typedef struct {
  charlm *m;
  tg_tensor *tokens, *targets;
  uint64_t drop_seed;
} gc_ctx;

/* The loss, with the dropout rng seeded afresh on every call so that every
 * evaluation of the function draws the same masks. */
static tg_tensor *loss_fn(tg_tape *t, tg_tensor *const *params, void *vctx) {
  (void)params;
  gc_ctx *c = vctx;
  tg_rng drop;
  tg_rng_seed(&drop, c->drop_seed);
  return charlm_loss(t, c->m, c->tokens, c->targets, &drop, c->m->cfg.dropout > 0);
}

static void fill_tokens(tg_tensor *tokens, tg_tensor *targets, tg_rng *rng) {
  for (int64_t i = 0; i < tg_tensor_numel(tokens); i++) {
    tg_set(tokens, i, (double)tg_rng_below(rng, V));
    tg_set(targets, i, (double)tg_rng_below(rng, V));
  }
}

START_TEST(whole_model_gradcheck) {
  bool tied = _i == 0;
  charlm m;
  tg_rng rng;
  tg_rng_seed(&rng, 11);
  charlm_config cfg = tiny(tied, tied ? 0.1 : 0);
  ck_assert_int_eq(charlm_init(&m, &cfg, &rng), 0);
  /* larger weights than GPT's 0.02, so every path carries a gradient well
   * above the differences' rounding */
  for (int i = 0; i < m.n_params; i++)
    if (tg_tensor_ndim(m.params[i]) == 2) tg_fill_normal(m.params[i], &rng, 0, 0.3);
  tg_tensor *tokens = tg_zeros(TG_I32, TG_SHAPE(B, T));
  tg_tensor *targets = tg_zeros(TG_I32, TG_SHAPE(B * T));
  fill_tokens(tokens, targets, &rng);
  gc_ctx c = {&m, tokens, targets, 5};
  tg_gradcheck_result r;
  ck_assert_msg(tg_gradcheck(loss_fn, &c, m.params, m.n_params, 0, &r) == TG_OK,
                "%s", tg_last_error());
  ck_assert_msg(r.max_rel_err <= 1e-6,
                "%s: worst relative error %g at %s[%lld]: analytic %.12g, numeric %.12g",
                tied ? "tied" : "untied", r.max_rel_err, m.names[r.param],
                (long long)r.index, r.analytic, r.numeric);
  ck_assert_int_eq(m.n_params, tied ? 28 : 29);
  tg_tensor_free(tokens);
  tg_tensor_free(targets);
  charlm_free(&m);
}
END_TEST

/* The loss of position p alone, from the logits of the whole sequence. */
static tg_tensor *loss_at(tg_tape *t, charlm *m, tg_tensor *tokens,
                          tg_tensor *target1, int p, tg_tensor **tok) {
  tg_tensor *z = charlm_logits(t, m, tokens, NULL, false, tok);
  return tg_softmax_nll(t, tg_slice(t, z, 0, p, p + 1, 1), target1);
}

START_TEST(causal_mask) {
  charlm m;
  tg_rng rng;
  tg_rng_seed(&rng, 3);
  charlm_config cfg = tiny(_i == 0, 0);
  ck_assert_int_eq(charlm_init(&m, &cfg, &rng), 0);
  for (int i = 0; i < m.n_params; i++)
    if (tg_tensor_ndim(m.params[i]) == 2) tg_fill_normal(m.params[i], &rng, 0, 0.3);
  tg_tensor *a = tg_zeros(TG_I32, TG_SHAPE(1, T)), *b = tg_zeros(TG_I32, TG_SHAPE(1, T));
  tg_tensor *y = tg_zeros(TG_I32, TG_SHAPE(1));
  tg_tape *t = tg_tape_new();
  for (int p = 0; p < T; p++) {
    for (int i = 0; i < T; i++) tg_set(a, i, (double)tg_rng_below(&rng, V));
    tg_set(y, 0, (double)tg_rng_below(&rng, V));
    /* b: the same up to p, every later token different */
    for (int i = 0; i < T; i++)
      tg_set(b, i, i <= p ? tg_get(a, i) : (double)(((int)tg_get(a, i) + 1 + i) % V));
    tg_tensor *tok = NULL;
    tg_tensor *la = loss_at(t, &m, a, y, p, &tok);
    ck_assert_ptr_nonnull(la);
    double va = tg_get(la, 0);
    ck_assert_int_eq(tg_backward(t, la), TG_OK);
    tg_tensor *g = tg_tensor_grad(tok); /* [1,T,C] */
    ck_assert_ptr_nonnull(g);
    const int64_t C = cfg.width;
    for (int i = 0; i < T; i++) {
      double mx = 0;
      for (int64_t j = 0; j < C; j++) mx = fmax(mx, fabs(tg_get(g, i * C + j)));
      if (i > p)
        ck_assert_msg(mx == 0, "position %d: a later token %d gets gradient %g", p, i, mx);
      else
        ck_assert_msg(mx > 0, "position %d: token %d gets no gradient", p, i);
    }
    for (int i = 0; i < m.n_params; i++) tg_zero_grad(m.params[i]);
    tg_tape_clear(t);
    double vb = tg_get(loss_at(t, &m, b, y, p, NULL), 0);
    ck_assert_msg(va == vb, "position %d: later tokens changed the loss from %.17g to %.17g",
                  p, va, vb);
    tg_tape_clear(t);
    /* and the test can tell: changing the token at p itself does change it */
    tg_set(b, p, (double)(((int)tg_get(a, p) + 1) % V));
    double vc = tg_get(loss_at(t, &m, b, y, p, NULL), 0);
    ck_assert_msg(va != vc, "position %d: its own token does not change its loss", p);
    tg_tape_clear(t);
  }
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(b);
  tg_tensor_free(y);
  charlm_free(&m);
}
END_TEST

START_TEST(step_allocates_nothing) {
  counting_allocator(true);
  charlm m;
  tg_rng rng, drop;
  tg_rng_seed(&rng, 1);
  tg_rng_seed(&drop, 2);
  charlm_config cfg = tiny(true, 0.1);
  cfg.dtype = TG_F32;
  cfg.vocab = 128; /* the text is ASCII */
  ck_assert_int_eq(charlm_init(&m, &cfg, &rng), 0);
  static const char text[] = "the quick brown fox jumps over the lazy dog; ";
  tg_tensor *tokens = tg_zeros(TG_I32, TG_SHAPE(B, T));
  tg_tensor *targets = tg_zeros(TG_I32, TG_SHAPE(B * T));
  tg_adam_config ac = TG_ADAMW_DEFAULTS;
  tg_optim *opt = tg_adamw_new(m.params, m.n_params, &ac);
  tg_tape *t = tg_tape_new();
  ck_assert_ptr_nonnull(opt);
  long before = 0;
  for (int s = 0; s < 4; s++) {
    if (s == 2) before = *test_allocs();
    charlm_batch((const uint8_t *)text, sizeof text - 1, &rng, tokens, targets);
    tg_tensor *loss = charlm_loss(t, &m, tokens, targets, &drop, true);
    ck_assert_msg(loss != NULL, "%s", tg_last_error());
    ck_assert_int_eq(tg_backward(t, loss), TG_OK);
    ck_assert(tg_optim_clip_grad_norm(opt, 1.0) >= 0);
    ck_assert_int_eq(tg_optim_set_lr(opt, tg_lr_warmup_cosine(1e-3, s + 1, 2, 4, 0)), TG_OK);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_int_eq(tg_optim_zero_grad(opt), TG_OK);
    tg_tape_clear(t);
  }
  ck_assert_int_eq(*test_allocs(), before);
  tg_tape_free(t);
  tg_optim_free(opt);
  tg_tensor_free(tokens);
  tg_tensor_free(targets);
  charlm_free(&m);
  counting_allocator(false);
}
END_TEST

/* A batch's shards with dropout on: each shard's logits are the whole
 * batch's rows of it (its sequences got the same masks), and the dropout
 * rng ends where the whole batch leaves it. _i 0: 4 sequences of an even
 * T x C and H x T x T, shards of 2, every mask exact. _i 1: 3 sequences
 * with T x C = 15 and H x T x T = 25, shards of 1: the shards at 0 and 2
 * start on a 64-bit draw and get their masks, the one at 1 starts mid-draw
 * and gets others, the rng still ending in step. */
START_TEST(shard_dropout_masks) {
  const int64_t NB = _i ? 3 : 4, per = _i ? 1 : 2, TT = _i ? 5 : T;
  charlm_config cfg = tiny(true, 0.5);
  if (_i) cfg.width = 3, cfg.heads = 1, cfg.context = TT;
  charlm m;
  tg_rng rng, drop;
  tg_rng_seed(&rng, 7);
  ck_assert_int_eq(charlm_init(&m, &cfg, &rng), 0);
  tg_tensor *tokens = tg_zeros(TG_I32, TG_SHAPE(NB, TT));
  tg_tensor *targets = tg_zeros(TG_I32, TG_SHAPE(NB * TT));
  fill_tokens(tokens, targets, &rng);
  tg_tape *t = tg_tape_new();
  tg_rng_seed(&drop, 11);
  tg_tensor *z = charlm_logits(t, &m, tokens, &drop, true, NULL);
  ck_assert_msg(z != NULL, "%s", tg_last_error());
  const tg_rng after = drop;
  const int64_t row = TT * V; /* logits per sequence */
  double *full = malloc((size_t)(NB * row) * sizeof *full);
  ck_assert_ptr_nonnull(full);
  for (int64_t i = 0; i < NB * row; i++) full[i] = tg_get(z, i);
  tg_tape_clear(t);
  m.shard_of = NB;
  for (int64_t lo = 0; lo < NB; lo += per) {
    tg_tensor *xs = tg_rows(tokens, lo, lo + per);
    ck_assert_ptr_nonnull(xs);
    m.shard_first = lo;
    tg_rng_seed(&drop, 11);
    tg_tensor *zs = charlm_logits(t, &m, xs, &drop, true, NULL);
    ck_assert_msg(zs != NULL, "%s", tg_last_error());
    double diff = 0;
    for (int64_t i = 0; i < per * row; i++)
      diff = fmax(diff, fabs(tg_get(zs, i) - full[lo * row + i]));
    if (_i == 0 || lo % 2 == 0) /* 15 lo and 25 lo even: on a draw */
      ck_assert_msg(diff < 1e-12, "shard at %lld: its logits differ by %g", (long long)lo, diff);
    else
      ck_assert_msg(diff > 1e-3, "shard at %lld: the same logits (%g) from a mid-draw start",
                    (long long)lo, diff);
    ck_assert_msg(!memcmp(&drop, &after, sizeof drop), "shard at %lld: the rng is "
                  "not where the whole batch leaves it", (long long)lo);
    tg_tape_clear(t);
    tg_tensor_free(xs);
  }
  /* a shard that does not fit in the batch is refused */
  m.shard_first = NB - per + 1;
  tg_tensor *xs = tg_rows(tokens, 0, per);
  ck_assert_ptr_null(charlm_logits(t, &m, xs, &drop, true, NULL));
  tg_tensor_free(xs);
  free(full);
  tg_tape_free(t);
  tg_tensor_free(tokens);
  tg_tensor_free(targets);
  charlm_free(&m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("charlm");
  TCase *tc = tcase_create("model");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, whole_model_gradcheck, 0, 2);
  tcase_add_loop_test(tc, causal_mask, 0, 2);
  tcase_add_test(tc, step_allocates_nothing);
  tcase_add_loop_test(tc, shard_dropout_masks, 0, 2);
  suite_add_tcase(s, tc);
  return run_suite(s);
}

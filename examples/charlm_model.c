/* examples/charlm_model.c: the GPT-style character model of charlm.h,
 * recorded on the tape with the public ops; the engine derives its backward
 * pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charlm.h"

const char *charlm_config_error(const charlm_config *c) {
  static char msg[160];
  if (c->vocab < 2 || c->vocab > 256)
    snprintf(msg, sizeof msg, "the vocabulary is %d; it must be 2 to 256", c->vocab);
  else if (c->layers < 1 || c->layers > CHARLM_MAX_LAYERS)
    snprintf(msg, sizeof msg, "layers is %d; it must be 1 to %d", c->layers,
             CHARLM_MAX_LAYERS);
  else if (c->width < 1 || c->heads < 1 || c->width % c->heads)
    snprintf(msg, sizeof msg, "width %d does not split into %d heads", c->width,
             c->heads);
  else if (c->context < 1)
    snprintf(msg, sizeof msg, "the context is %d; it must be at least 1", c->context);
  else if (!(c->dropout >= 0 && c->dropout < 1))
    snprintf(msg, sizeof msg, "dropout is %g; it must be in [0, 1)", c->dropout);
  else if (c->dtype != TG_F32 && c->dtype != TG_F64)
    snprintf(msg, sizeof msg, "the dtype must be float32 or float64");
  else
    return NULL;
  return msg;
}

/* Room for every parameter: 4 outside the blocks, 12 per block. */
static tg_tensor *param(charlm *m, const char *name, int ndim,
                        const int64_t *shape, tg_rng *rng, double std,
                        double fill) {
  tg_tensor *p = tg_zeros(m->cfg.dtype, ndim, shape);
  if (!p) return NULL;
  if ((std > 0 && tg_fill_normal(p, rng, 0, std)) ||
      (fill != 0 && tg_fill(p, fill)) || tg_requires_grad(p, true)) {
    tg_tensor_free(p);
    return NULL;
  }
  snprintf(m->names[m->n_params], CHARLM_NAME_LEN, "%s", name);
  m->name_ptrs[m->n_params] = m->names[m->n_params];
  m->params[m->n_params++] = p;
  return p;
}

int charlm_init(charlm *m, const charlm_config *cfg, tg_rng *rng) {
  memset(m, 0, sizeof *m);
  m->cfg = *cfg;
  const char *why = charlm_config_error(cfg);
  if (why) {
    fprintf(stderr, "charlm: %s\n", why);
    return -1;
  }
  int cap = 5 + 12 * cfg->layers;
  m->params = calloc((size_t)cap, sizeof *m->params);
  m->names = calloc((size_t)cap, sizeof *m->names);
  m->name_ptrs = calloc((size_t)cap, sizeof *m->name_ptrs);
  if (!m->params || !m->names || !m->name_ptrs) {
    fprintf(stderr, "charlm: out of memory\n");
    return -1;
  }
  const int64_t V = cfg->vocab, C = cfg->width, T = cfg->context;
  const double std = 0.02, proj_std = 0.02 / sqrt(2.0 * cfg->layers);
  bool ok = (m->wte = param(m, "wte", TG_SHAPE(V, C), rng, std, 0)) &&
            (m->wpe = param(m, "wpe", TG_SHAPE(T, C), rng, std, 0));
  for (int i = 0; ok && i < cfg->layers; i++) {
    charlm_block *b = &m->block[i];
    char n[CHARLM_NAME_LEN];
#define P(field, what, ...) \
  (snprintf(n, sizeof n, "h.%d.%s", i, what), (b->field = param(m, n, __VA_ARGS__)))
    ok = P(ln1_w, "ln1.weight", TG_SHAPE(C), rng, 0, 1) &&
         P(ln1_b, "ln1.bias", TG_SHAPE(C), rng, 0, 0) &&
         P(w_qkv, "attn.qkv.weight", TG_SHAPE(C, 3 * C), rng, std, 0) &&
         P(b_qkv, "attn.qkv.bias", TG_SHAPE(3 * C), rng, 0, 0) &&
         P(w_proj, "attn.proj.weight", TG_SHAPE(C, C), rng, proj_std, 0) &&
         P(b_proj, "attn.proj.bias", TG_SHAPE(C), rng, 0, 0) &&
         P(ln2_w, "ln2.weight", TG_SHAPE(C), rng, 0, 1) &&
         P(ln2_b, "ln2.bias", TG_SHAPE(C), rng, 0, 0) &&
         P(w_fc, "mlp.fc.weight", TG_SHAPE(C, 4 * C), rng, std, 0) &&
         P(b_fc, "mlp.fc.bias", TG_SHAPE(4 * C), rng, 0, 0) &&
         P(w_out, "mlp.proj.weight", TG_SHAPE(4 * C, C), rng, proj_std, 0) &&
         P(b_out, "mlp.proj.bias", TG_SHAPE(C), rng, 0, 0);
#undef P
  }
  ok = ok && (m->lnf_w = param(m, "lnf.weight", TG_SHAPE(C), rng, 0, 1)) &&
       (m->lnf_b = param(m, "lnf.bias", TG_SHAPE(C), rng, 0, 0));
  if (ok && !cfg->tied) ok = (m->head = param(m, "head", TG_SHAPE(C, V), rng, std, 0));
  if (!ok) fprintf(stderr, "charlm: %s\n", tg_last_error());
  return ok ? 0 : -1;
}

void charlm_free(charlm *m) {
  for (int i = 0; m->params && i < m->n_params; i++) tg_tensor_free(m->params[i]);
  free(m->params);
  free(m->names);
  free(m->name_ptrs);
  memset(m, 0, sizeof *m);
}

int64_t charlm_numel(const charlm *m) {
  int64_t n = 0;
  for (int i = 0; i < m->n_params; i++) n += tg_tensor_numel(m->params[i]);
  return n;
}

/* The heads [B,H,T,D] of the projection h . w_qkv[:, c0:c0+C] + b_qkv[c0:c0+C]:
 * slicing the weights (C x C) instead of the projected rows (B*T x C) keeps
 * the copies and their backward scatters small. */
static tg_tensor *heads(tg_tape *t, tg_tensor *h, const charlm_block *b, int64_t c0,
                        int64_t B, int64_t T, int64_t H, int64_t D) {
  tg_tensor *w = tg_slice(t, b->w_qkv, 1, c0, c0 + H * D, 1);
  tg_tensor *bias = tg_slice(t, b->b_qkv, 0, c0, c0 + H * D, 1);
  tg_tensor *x = tg_linear(t, h, w, bias, TG_ACT_NONE);
  x = tg_reshape(t, x, TG_SHAPE(B, T, H, D));
  return tg_permute(t, x, (const int[]){0, 2, 1, 3});
}

/* tg_dropout on a shard, drawing as a whole batch would (see charlm.h):
 * the mask of x's per (elements per sequence) starts after the draws of
 * the sequences before the shard, and the draws of those after it follow. */
static tg_tensor *shard_dropout(tg_tape *t, const charlm *m, tg_tensor *x, double p,
                                tg_rng *drop, bool training, int64_t B) {
  if (!x || !training || p == 0 || !drop || m->shard_of <= 0)
    return tg_dropout(t, x, p, drop, training);
  const uint64_t per = (uint64_t)(tg_tensor_numel(x) / B);
  const uint64_t before = (uint64_t)m->shard_first * per / 2,
                 mine = ((uint64_t)B * per + 1) / 2,
                 all = ((uint64_t)m->shard_of * per + 1) / 2;
  for (uint64_t i = 0; i < before; i++) tg_rng_next(drop);
  tg_tensor *y = tg_dropout(t, x, p, drop, training);
  for (uint64_t i = before + mine; i < all; i++) tg_rng_next(drop);
  return y;
}

tg_tensor *charlm_logits(tg_tape *t, charlm *m, tg_tensor *tokens,
                         tg_rng *drop, bool training, tg_tensor **tok) {
  const charlm_config *c = &m->cfg;
  if (tg_tensor_ndim(tokens) != 2 || tg_tensor_dim(tokens, 1) < 1 ||
      tg_tensor_dim(tokens, 1) > c->context) {
    fprintf(stderr, "charlm: tokens must be [B,T] with 1 <= T <= %d\n", c->context);
    return NULL;
  }
  const int64_t B = tg_tensor_dim(tokens, 0), T = tg_tensor_dim(tokens, 1);
  const int64_t C = c->width, H = c->heads, D = C / H, N = B * T;
  const double p = c->dropout;
  if (m->shard_of > 0 && (m->shard_first < 0 || B > m->shard_of - m->shard_first)) {
    fprintf(stderr, "charlm: a shard of %lld sequences from sequence %lld does not fit "
            "in a batch of %lld\n", (long long)B, (long long)m->shard_first,
            (long long)m->shard_of);
    return NULL;
  }
  tg_tensor *e = tg_embedding(t, m->wte, tokens);
  if (tok) *tok = e;
  tg_tensor *x = tg_add(t, e, tg_slice(t, m->wpe, 0, 0, T, 1));
  x = shard_dropout(t, m, x, p, drop, training, B);
  x = tg_reshape(t, x, TG_SHAPE(N, C));
  for (int i = 0; i < c->layers; i++) {
    const charlm_block *b = &m->block[i];
    tg_tensor *h = tg_layer_norm(t, x, b->ln1_w, b->ln1_b, 1e-5);
    /* Labels for tapegrad-charlm --profile: from the projection to heads
     * through their merge back into rows. */
    tg_tape_region(t, "attention");
    tg_tensor *q = heads(t, h, b, 0, B, T, H, D);
    tg_tensor *k = heads(t, h, b, C, B, T, H, D);
    tg_tensor *v = heads(t, h, b, 2 * C, B, T, H, D);
    /* scale, causal mask and softmax in one op: row i sees keys j <= i */
    tg_tensor *att = tg_softmax_causal(t, tg_matmul_ex(t, q, k, false, true),
                                       1 / sqrt((double)D));
    att = shard_dropout(t, m, att, p, drop, training, B);
    tg_tensor *y = tg_matmul_ex(t, att, v, false, false); /* [B,H,T,D] */
    y = tg_reshape(t, tg_permute(t, y, (const int[]){0, 2, 1, 3}), TG_SHAPE(N, C));
    y = tg_linear(t, y, b->w_proj, b->b_proj, TG_ACT_NONE);
    tg_tape_region(t, NULL);
    x = tg_add(t, x, shard_dropout(t, m, y, p, drop, training, B));
    h = tg_layer_norm(t, x, b->ln2_w, b->ln2_b, 1e-5);
    tg_tape_region(t, "mlp");
    tg_tensor *f = tg_gelu(t, tg_linear(t, h, b->w_fc, b->b_fc, TG_ACT_NONE));
    f = tg_linear(t, f, b->w_out, b->b_out, TG_ACT_NONE);
    tg_tape_region(t, NULL);
    x = tg_add(t, x, shard_dropout(t, m, f, p, drop, training, B));
  }
  x = tg_layer_norm(t, x, m->lnf_w, m->lnf_b, 1e-5);
  return c->tied ? tg_matmul_ex(t, x, m->wte, false, true) : tg_matmul(t, x, m->head);
}

tg_tensor *charlm_loss(tg_tape *t, charlm *m, tg_tensor *tokens,
                       tg_tensor *targets, tg_rng *drop, bool training) {
  return tg_softmax_nll(t, charlm_logits(t, m, tokens, drop, training, NULL), targets);
}

void charlm_batch(const uint8_t *text, size_t n, tg_rng *rng, tg_tensor *tokens,
                  tg_tensor *targets) {
  const int64_t B = tg_tensor_dim(tokens, 0), T = tg_tensor_dim(tokens, 1);
  int32_t *x = tg_tensor_i32(tokens), *y = tg_tensor_i32(targets);
  for (int64_t b = 0; b < B; b++) {
    size_t off = (size_t)tg_rng_below(rng, (uint64_t)(n - (size_t)T));
    for (int64_t i = 0; i < T; i++) {
      x[b * T + i] = text[off + (size_t)i];
      y[b * T + i] = text[off + (size_t)i + 1];
    }
  }
}

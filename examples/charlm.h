/* examples/charlm.h: a GPT-style character language model written against
 * tapegrad's public API (the model of tapegrad-charlm, and of the tests
 * that gradcheck it and check its causal mask).
 *
 * Tokens are bytes: the vocabulary is the byte values 0..vocab-1 (256 takes
 * any byte; 128 is enough for ASCII text such as the Brown corpus and makes
 * the output layer half as wide). The model:
 *   x = wte[tokens] + wpe[0..T)                        [B,T,C]
 *   L blocks of
 *     x += proj(causal multi-head self-attention(layer_norm(x)))
 *     x += W_out gelu(W_fc layer_norm(x) + b_fc) + b_out       (4C wide)
 *   logits = layer_norm(x) wte^T   (tied)   or   layer_norm(x) W_head
 *   loss   = softmax_nll(logits [B*T, V], next tokens [B*T])
 * Attention per head: softmax(q k^T / sqrt(C/H), with the scores of later
 * positions replaced by -1e9 through tg_where) v. The replaced scores give
 * softmax weights of exactly 0, so no gradient reaches a later position
 * (a -inf would give 0 * inf = NaN in the backward pass). Dropout (one
 * rate) after the embeddings, on the attention weights, and on each
 * residual branch, only while training. */
#ifndef TAPEGRAD_EXAMPLES_CHARLM_H
#define TAPEGRAD_EXAMPLES_CHARLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tapegrad.h"

enum { CHARLM_MAX_LAYERS = 64, CHARLM_NAME_LEN = 32 };

typedef struct {
  int vocab;      /* 2..256 */
  int layers;     /* 1..CHARLM_MAX_LAYERS */
  int heads;      /* divides width */
  int width;      /* C */
  int context;    /* T, the longest sequence */
  bool tied;      /* the output layer is wte^T */
  double dropout; /* in [0, 1) */
  tg_dtype dtype; /* TG_F32 to train, TG_F64 to gradcheck */
} charlm_config;

typedef struct {
  tg_tensor *ln1_w, *ln1_b, *w_qkv, *b_qkv, *w_proj, *b_proj;
  tg_tensor *ln2_w, *ln2_b, *w_fc, *b_fc, *w_out, *b_out;
} charlm_block;

typedef struct {
  charlm_config cfg;
  tg_tensor *wte, *wpe, *lnf_w, *lnf_b, *head; /* head NULL when tied */
  charlm_block block[CHARLM_MAX_LAYERS];
  /* every parameter in a fixed order, with its checkpoint name */
  int n_params;
  tg_tensor **params;
  char (*names)[CHARLM_NAME_LEN];
  const char **name_ptrs;
  /* A shard of a batch (data-parallel training): the tokens given to
   * charlm_logits are sequences [shard_first, shard_first + B) of a batch
   * of shard_of; 0 (charlm_init's) for a whole batch. See charlm_logits. */
  int64_t shard_first, shard_of;
} charlm;

/* A message for a config that cannot be built, or NULL when it is fine. */
const char *charlm_config_error(const charlm_config *cfg);
/* Makes every parameter (GPT-2's initialisation: normal(0, 0.02), the two
 * projections into the residual stream scaled by 1/sqrt(2L), biases 0,
 * layer norms 1 and 0), drawing from rng. Returns 0, or -1 after printing
 * a message to stderr (charlm_free is still safe). */
int charlm_init(charlm *m, const charlm_config *cfg, tg_rng *rng);
void charlm_free(charlm *m);
/* Parameter and element counts. */
int64_t charlm_numel(const charlm *m);

/* The logits [B*T, vocab] for tokens int32 [B,T] (T <= context, every token
 * checked by tg_embedding). drop is the dropout rng (used only while
 * training with a rate > 0). When tok is not NULL it receives the token
 * embeddings [B,T,C] on the tape, whose grad tg_backward fills. NULL and
 * a message on error.
 * With m->shard_of > 0 the dropout masks are drawn as if the whole batch
 * of shard_of sequences were there: before each mask drop skips the draws
 * of the sequences before the shard, after it those of the ones after, so
 * drop ends where a whole batch leaves it, and every sequence gets the
 * mask it would get in the whole batch. tg_dropout draws two elements per
 * 64-bit number, so that holds when shard_first x T x C and shard_first x
 * H x T x T are even (always when the shards' B is even, or T x C and H x
 * T x T are); a shard starting mid-number gets other masks, drop still
 * ending in the whole batch's state. */
tg_tensor *charlm_logits(tg_tape *t, charlm *m, tg_tensor *tokens,
                         tg_rng *drop, bool training, tg_tensor **tok);
/* The mean next-token loss: softmax_nll(logits, targets int32 [B*T]). */
tg_tensor *charlm_loss(tg_tape *t, charlm *m, tg_tensor *tokens,
                       tg_tensor *targets, tg_rng *drop, bool training);

/* Fills tokens [B,T] and targets [B*T] with B windows of text picked at
 * uniform offsets drawn from rng (targets are the tokens shifted by one).
 * n must be > T. */
void charlm_batch(const uint8_t *text, size_t n, tg_rng *rng,
                  tg_tensor *tokens, tg_tensor *targets);

#endif

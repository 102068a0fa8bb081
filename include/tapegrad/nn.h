/* tapegrad/nn.h: the pieces of a training loop built on the ops: a dense
 * layer, a 2-D convolution layer, batch normalisation and dropout layers
 * with a training mode, activations by name, a shuffling minibatch iterator
 * and classification metrics.
 *
 *   tg_rng rng;
 *   tg_rng_seed(&rng, 1);
 *   tg_dense *l1 = tg_dense_new(784, 100, TG_F32, TG_ACT_SIGMOID, &rng);
 *   tg_dense *l2 = tg_dense_new(100, 10, TG_F32, TG_ACT_NONE, &rng);
 *   tg_batcher *b = tg_batcher_new(images, labels, 32, 42);
 *   tg_tape *t = tg_tape_new();
 *   tg_tensor *x, *y;
 *   for (int epoch = 0; epoch < 10; epoch++) {
 *     tg_batcher_shuffle(b);
 *     while (tg_batcher_next(b, &x, &y) == 1) {
 *       tg_tensor *h = tg_dense_act(t, l1, x, TG_ACT_SIGMOID);
 *       tg_tensor *loss = tg_softmax_nll(t, tg_dense_forward(t, l2, h), y);
 *       ...tg_backward, tg_optim_step, tg_optim_zero_grad, tg_tape_clear...
 *     }
 *   }
 */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ops.h" /* tg_activation, which tg_linear takes too */
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "none", "sigmoid", "relu", "tanh"; "unknown" otherwise. */
TG_API const char *tg_activation_name(tg_activation act);

/* act(x) on the tape: x itself for TG_ACT_NONE, else tg_sigmoid, tg_relu or
 * tg_tanh. The result belongs to the tape. NULL x gives NULL with the
 * earlier message left in place (as every op); an unknown act gives NULL
 * and TG_EINVAL. */
TG_API tg_tensor *tg_activate(tg_tape *t, tg_tensor *x, tg_activation act);

/* --- dense (fully connected) layer: y[N,out] = x[N,in] . W[in,out] + b[out] */

/* Opaque. Owns its two parameters. */
typedef struct tg_dense tg_dense;

/* Makes W[in,out] and b[out] of dtype (float32 or float64), both with
 * requires_grad. act is the activation that will follow the layer and only
 * picks the initialisation of W: He normal (tg_init_he) for TG_ACT_RELU,
 * Xavier uniform (tg_init_xavier) otherwise; b starts at 0. The rng is
 * advanced, so one seeded rng gives a whole model reproducibly. The caller
 * owns the layer and frees it with tg_dense_free, which frees W and b. NULL
 * and a message on bad arguments. */
TG_API tg_dense *tg_dense_new(int64_t in, int64_t out, tg_dtype dtype,
                              tg_activation act, tg_rng *rng);
/* NULL is a no-op. W and b must not be used afterwards. */
TG_API void tg_dense_free(tg_dense *d);

/* x . W + b, without the activation: tg_linear(t, x, W, b, TG_ACT_NONE).
 * x must be [N,in] of the layer's dtype (checked here, so the message names
 * the layer's shapes). The result belongs to the tape. NULL x gives NULL
 * without a new message. */
TG_API tg_tensor *tg_dense_forward(tg_tape *t, const tg_dense *d,
                                   tg_tensor *x);
/* The layer with its activation, act(x . W + b), as one fused op
 * (tg_linear): the values and gradients of
 * tg_activate(t, tg_dense_forward(t, d, x), act) with one result on the
 * tape instead of two or three. The act given to tg_dense_new only chose
 * the initialisation; this one is applied. Checks and ownership as
 * tg_dense_forward; an unknown act gives NULL and TG_EINVAL. */
TG_API tg_tensor *tg_dense_act(tg_tape *t, const tg_dense *d, tg_tensor *x,
                               tg_activation act);

/* The layer's parameters (owned by the layer; NULL for a NULL layer). Hand
 * them to an optimizer, or read and write them to save and load. */
TG_API tg_tensor *tg_dense_weight(const tg_dense *d);
TG_API tg_tensor *tg_dense_bias(const tg_dense *d);
/* Writes {W, b} to out[0..1] and returns 2 (the count written), so a
 * model's parameter list is filled layer by layer:
 *   n += tg_dense_params(l1, params + n); n += tg_dense_params(l2, params + n);
 * A NULL layer or out writes nothing and returns 0. */
TG_API int tg_dense_params(const tg_dense *d, tg_tensor **out);

/* --- 2-D convolution layer: y[N,K,H',W'] = tg_conv2d(x[N,C,H,W], W, b) */

/* The layer's shape and arguments. stride, dilation and groups of 0 are
 * taken as 1 (so a designated initialiser names only what differs from a
 * plain convolution); padding 0 is no padding.
 *   tg_conv_spec s = {.in = 1, .out = 32, .kh = 5, .kw = 5, .pad_h = 2, .pad_w = 2};
 */
typedef struct {
  int64_t in, out; /* channels C and K */
  int64_t kh, kw;  /* kernel height R and width S */
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} tg_conv_spec;

/* Opaque. Owns its two parameters and keeps its spec. */
typedef struct tg_conv tg_conv;

/* Makes W[out, in/groups, kh, kw] and b[out] of dtype (float32 or
 * float64), both with requires_grad. W is He normal for a ReLU after the
 * layer, N(0, 2/fan_in) with fan_in = in/groups * kh * kw; b starts at 0.
 * rng is advanced. The caller owns the layer and frees it with
 * tg_conv_free, which frees W and b. NULL and a message (naming
 * tg_conv_new) on bad arguments: spec or rng NULL, a channel count or
 * kernel size < 1, in or out not divisible by groups, a negative stride,
 * padding, dilation or groups, a dtype that is not float. */
TG_API tg_conv *tg_conv_new(const tg_conv_spec *spec, tg_dtype dtype,
                            tg_rng *rng);
/* NULL is a no-op. W and b must not be used afterwards. */
TG_API void tg_conv_free(tg_conv *c);
/* tg_conv2d(t, x, W, b, ...) with the layer's arguments. x must be
 * [N,in,H,W] of the layer's dtype (checked here, so the message names the
 * layer's shapes); an image smaller than the kernel is refused by
 * tg_conv2d. The result belongs to the tape; its column buffers come from
 * the tape's arena (see tg_conv2d). NULL x gives NULL without a new
 * message. */
TG_API tg_tensor *tg_conv_forward(tg_tape *t, const tg_conv *c, tg_tensor *x);
/* The parameters (owned by the layer; NULL for a NULL layer). */
TG_API tg_tensor *tg_conv_weight(const tg_conv *c);
TG_API tg_tensor *tg_conv_bias(const tg_conv *c);
/* Writes {W, b} to out[0..1] and returns 2, as tg_dense_params; a NULL
 * layer or out writes nothing and returns 0. */
TG_API int tg_conv_params(const tg_conv *c, tg_tensor **out);
/* The layer's spec with the defaults resolved (stride, dilation and groups
 * >= 1); NULL for a NULL layer. Owned by the layer. */
TG_API const tg_conv_spec *tg_conv_get_spec(const tg_conv *c);

/* --- batch normalisation and dropout layers, and their training mode.
 *
 * These two layers compute something different while training and while
 * evaluating, so each holds a mode: training when made (as PyTorch's
 * modules), switched with its _set_training. A model sets every such layer
 * before an evaluation pass and back before training:
 *
 *   tg_batch_norm_layer_set_training(bn, false);
 *   tg_dropout_layer_set_training(drop, false);
 *   ... evaluate (usually in no-grad mode too: tg_tape_set_grad) ...
 *   tg_batch_norm_layer_set_training(bn, true);
 *   tg_dropout_layer_set_training(drop, true);
 *
 * The mode is not no-grad mode: tg_tape_set_grad(t, false) records nothing
 * but leaves a layer in training mode, where batch norm still uses (and
 * updates) the batch's statistics. */

/* Opaque. Batch normalisation (tg_batch_norm) over C channels of [N,C,H,W]
 * or C features of [N,C]. Owns gamma [C] (starts at 1) and beta [C] (0),
 * the trainable parameters, and the running statistics mean [C] (0) and
 * var [C] (1), which are not trainable but are the layer's state: save
 * them beside the parameters (tg_batch_norm_layer_buffers). */
typedef struct tg_batch_norm_layer tg_batch_norm_layer;

#define TG_BATCH_NORM_MOMENTUM 0.1 /* PyTorch's defaults */
#define TG_BATCH_NORM_EPS 1e-5

/* A layer over C >= 1 channels of dtype (float32 or float64), in training
 * mode, with momentum TG_BATCH_NORM_MOMENTUM and eps TG_BATCH_NORM_EPS.
 * The caller owns it and frees it with tg_batch_norm_layer_free, which
 * frees its four tensors. NULL and a message on bad arguments. */
TG_API tg_batch_norm_layer *tg_batch_norm_layer_new(int64_t C, tg_dtype dtype);
/* NULL is a no-op. The layer's tensors must not be used afterwards. */
TG_API void tg_batch_norm_layer_free(tg_batch_norm_layer *l);
/* Sets momentum (in [0, 1]) and eps (> 0, finite). TG_OK, or TG_EINVAL
 * with the layer unchanged. */
TG_API int tg_batch_norm_layer_configure(tg_batch_norm_layer *l,
                                         double momentum, double eps);
/* tg_batch_norm(t, x, gamma, beta, mean, var, training, momentum, eps) in
 * the layer's mode: in training mode the running statistics are updated
 * by the call. x must be [N,C] or [N,C,H,W] with the layer's C and dtype
 * (checked here, so the message names the layer). The result belongs to
 * the tape. NULL x gives NULL without a new message. */
TG_API tg_tensor *tg_batch_norm_layer_forward(tg_tape *t,
                                              tg_batch_norm_layer *l,
                                              tg_tensor *x);
/* Training (true, the start) or evaluation mode. */
TG_API void tg_batch_norm_layer_set_training(tg_batch_norm_layer *l,
                                             bool training);
TG_API bool tg_batch_norm_layer_training(const tg_batch_norm_layer *l);
/* Writes {gamma, beta} to out[0..1] and returns 2, as tg_dense_params: the
 * tensors to hand to an optimizer. NULL layer or out: 0. */
TG_API int tg_batch_norm_layer_params(const tg_batch_norm_layer *l,
                                      tg_tensor **out);
/* Writes {running mean, running var} to out[0..1] and returns 2: the
 * layer's state that is not trained, to save in a checkpoint beside the
 * parameters and load back on resume (tg_save, tg_load_into), for
 * example as "bn0.running_mean" and "bn0.running_var". Owned by the layer;
 * they need no gradient. NULL layer or out: 0. */
TG_API int tg_batch_norm_layer_buffers(const tg_batch_norm_layer *l,
                                       tg_tensor **out);

/* Opaque. Inverted dropout (tg_dropout) of probability p with a generator
 * of its own. */
typedef struct tg_dropout_layer tg_dropout_layer;

/* p in [0, 1); the generator is seeded with seed. In training mode. The
 * caller owns the layer (tg_dropout_layer_free). NULL and TG_EINVAL for a
 * bad p. */
TG_API tg_dropout_layer *tg_dropout_layer_new(double p, uint64_t seed);
TG_API void tg_dropout_layer_free(tg_dropout_layer *l);
/* tg_dropout(t, x, p, the layer's generator, training): in evaluation
 * mode x itself. NULL layer: NULL and TG_EINVAL. */
TG_API tg_tensor *tg_dropout_layer_forward(tg_tape *t, tg_dropout_layer *l,
                                           tg_tensor *x);
TG_API void tg_dropout_layer_set_training(tg_dropout_layer *l, bool training);
TG_API bool tg_dropout_layer_training(const tg_dropout_layer *l);
/* Seeds the generator again. The masks depend only on the seed and the
 * shapes drawn since, so seeding from (run seed, epoch) at each epoch's
 * start makes a resumed run draw the same masks as an unbroken one,
 * without saving the generator's state. */
TG_API void tg_dropout_layer_seed(tg_dropout_layer *l, uint64_t seed);

/* --- minibatches */

/* Opaque. Serves the rows of images[N,D] (float32 or float64) with their
 * labels[N] (int32, >= 0) in batches, in an order made by
 * tg_batcher_shuffle. It reads the two tensors at every batch but does not
 * own them: they must be caller-owned (not made on a tape) and outlive the
 * batcher. */
typedef struct tg_batcher tg_batcher;

/* batch_size >= 1; a batch size above N is taken as N. The order starts as
 * 0..N-1 and the internal rng is seeded with seed, so the sequence of
 * epochs is the same on every machine for a given seed. Everything the
 * batcher uses is allocated here: tg_batcher_next allocates nothing. The
 * caller owns the result and frees it with tg_batcher_free. NULL and a
 * message on bad arguments. */
TG_API tg_batcher *tg_batcher_new(const tg_tensor *images,
                                  const tg_tensor *labels, int64_t batch_size,
                                  uint64_t seed);
TG_API void tg_batcher_free(tg_batcher *b);

/* Starts a new epoch in a new random order: a Fisher-Yates shuffle of
 * 0..N-1 (driven by tg_rng_below on the batcher's rng, so successive epochs
 * differ). Returns TG_OK or TG_EINVAL. */
TG_API int tg_batcher_shuffle(tg_batcher *b);
/* Starts the epoch again in the same order. */
TG_API int tg_batcher_rewind(tg_batcher *b);

/* The next batch: *x = the rows [B,D] and *y = their labels [B], copied in
 * the current order. Returns 1 with a batch, 0 at the end of the epoch
 * (and rewinds, so the next call starts the same order again; call
 * tg_batcher_shuffle for a new one), or a negative tg_status.
 * When N is not a multiple of the batch size the last batch of an epoch is
 * smaller (N mod batch_size rows); it comes in a second pair of tensors, so
 * every tensor keeps one shape. All four tensors are owned by the batcher:
 * do not free them; their contents are overwritten by the next call. */
TG_API int tg_batcher_next(tg_batcher *b, tg_tensor **x, tg_tensor **y);

/* Batches per epoch (ceil(N / batch_size)); 0 for NULL. */
TG_API int64_t tg_batcher_batches(const tg_batcher *b);

/* --- classification metrics. scores[N,C] are logits or probabilities
 * (float32/float64; a tape's result is fine until its clear); labels[N] are
 * int32 classes in [0, C). The prediction is the argmax of a row; ties go to
 * the lowest index, and NaN never wins over a number. */

/* Fraction of rows predicted right, in [0, 1]; on bad arguments a negative
 * tg_status (as a double) and a message. */
TG_API double tg_accuracy(const tg_tensor *scores, const tg_tensor *labels);
/* Adds each row to matrix[C*C] (row = true class, column = predicted), so
 * it accumulates over batches; the caller zeroes it first. On bad arguments
 * nothing is added. Returns TG_OK or a negative tg_status. */
TG_API int tg_confusion(const tg_tensor *scores, const tg_tensor *labels,
                        int64_t *matrix);
/* Prints the C*C matrix as a table (rows true, columns predicted) followed
 * by the overall accuracy. Returns TG_OK, TG_EINVAL or TG_EIO. */
TG_API int tg_confusion_print(FILE *f, const int64_t *matrix, int C);

#ifdef __cplusplus
}
#endif
#endif

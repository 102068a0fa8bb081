/* tapegrad/optim.h: optimizers (SGD with momentum/Nesterov, Adam) that update
 * caller-owned parameters from their accumulated grads, and learning-rate
 * schedules as plain functions of the epoch.
 *
 *   tg_tensor *params[] = {W1, b1, W2, b2};
 *   tg_sgd_config cfg = TG_SGD_DEFAULTS;
 *   cfg.lr = 0.1;
 *   cfg.momentum = 0.9;
 *   tg_optim *opt = tg_sgd_new(params, 4, &cfg);
 *   for (...) {
 *     tg_backward(t, loss);
 *     tg_optim_step(opt);        // uses the grads, leaves them as they are
 *     tg_optim_zero_grad(opt);
 *     tg_tape_clear(t);
 *   }
 *   tg_optim_free(opt);          // the parameters stay the caller's
 */
#ifndef TAPEGRAD_OPTIM_H
#define TAPEGRAD_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque. Holds pointers to the parameters (it does not own them: they must
 * outlive the optimizer) and its state buffers, all allocated at creation,
 * so tg_optim_step and tg_optim_zero_grad never allocate. */
typedef struct tg_optim tg_optim;

/* Stochastic gradient descent, with PyTorch's semantics (no dampening):
 *   g' = g + weight_decay * w
 *   momentum == 0:  w -= lr * g'
 *   momentum  > 0:  v = momentum * v + g'   (v starts at 0, so v_1 = g')
 *                   w -= lr * v                      (classical)
 *                   w -= lr * (g' + momentum * v)    (nesterov)
 * Every field is used as given; there are no "zero means default" fields.
 * Start from TG_SGD_DEFAULTS and change what you need. */
typedef struct {
  double lr;           /* > 0 */
  double momentum;     /* in [0, 1) */
  bool nesterov;       /* needs momentum > 0 */
  double weight_decay; /* >= 0: L2 penalty added to the gradient */
} tg_sgd_config;

#define TG_SGD_DEFAULTS \
  { .lr = 0.01, .momentum = 0.0, .nesterov = false, .weight_decay = 0.0 }

/* Adam (Kingma & Ba) with bias correction and PyTorch's semantics; weight
 * decay is the L2 kind, added to the gradient (not AdamW):
 *   g' = g + weight_decay * w
 *   m = beta1 * m + (1 - beta1) * g'
 *   v = beta2 * v + (1 - beta2) * g'^2
 *   w -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * with t the step number, counting from 1. As for SGD, every field is used
 * as given: start from TG_ADAM_DEFAULTS. */
typedef struct {
  double lr;           /* > 0 */
  double beta1, beta2; /* each in [0, 1) */
  double eps;          /* > 0 */
  double weight_decay; /* >= 0 */
} tg_adam_config;

#define TG_ADAM_DEFAULTS                                              \
  { .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,            \
    .weight_decay = 0.0 }

/* Creation. params: n >= 1 distinct caller-owned float32/float64 tensors
 * with requires_grad; the optimizer copies the array of pointers (the array
 * itself may be freed after the call) but not the tensors. The caller owns
 * the result and frees it with tg_optim_free. On a bad parameter or config:
 * NULL and a message (tg_last_error) naming the field and its value. */
TG_API tg_optim *tg_sgd_new(tg_tensor *const *params, int n,
                            const tg_sgd_config *cfg);
TG_API tg_optim *tg_adam_new(tg_tensor *const *params, int n,
                             const tg_adam_config *cfg);
/* NULL is a no-op. The parameters are left untouched. */
TG_API void tg_optim_free(tg_optim *opt);

/* One update of every parameter from its current grad. The grads are left
 * as they are (call tg_optim_zero_grad before the next backward pass). A
 * parameter whose requires_grad has been switched off since creation is
 * frozen: skipped, its state untouched. Returns TG_OK or TG_EINVAL (NULL). */
TG_API int tg_optim_step(tg_optim *opt);
/* Zeroes the grad of every parameter. */
TG_API int tg_optim_zero_grad(tg_optim *opt);

/* The learning rate used by the next step. tg_optim_set_lr accepts any
 * finite lr >= 0 (a schedule may end at 0; creation insists on lr > 0
 * because a zero there is almost always a forgotten field); otherwise
 * TG_EINVAL and the lr is unchanged. tg_optim_lr(NULL) is 0. */
TG_API int tg_optim_set_lr(tg_optim *opt, double lr);
TG_API double tg_optim_lr(const tg_optim *opt);

/* --- state, for checkpoints */

/* "sgd" or "adam"; "" for NULL. */
TG_API const char *tg_optim_name(const tg_optim *opt);
/* Number of parameters; 0 for NULL. */
TG_API int tg_optim_n_params(const tg_optim *opt);
/* Parameter i, or NULL (with a message) when i is out of range. */
TG_API tg_tensor *tg_optim_param(const tg_optim *opt, int i);
/* Steps taken so far (Adam's t; SGD counts them too). A restored
 * checkpoint sets it back with tg_optim_set_steps (0 to 2^53). */
TG_API int64_t tg_optim_steps(const tg_optim *opt);
TG_API int tg_optim_set_steps(tg_optim *opt, int64_t steps);
/* The state buffers of parameter i, each of the parameter's dtype and
 * shape, owned by the optimizer (valid until tg_optim_free; read them to
 * save, write them to restore):
 *   SGD:  *buf1 = the momentum buffer v (NULL when momentum is 0),
 *         *buf2 = NULL;
 *   Adam: *buf1 = m (first moment), *buf2 = v (second moment).
 * Either out-pointer may be NULL. Returns TG_OK, or TG_EINVAL/TG_ERANGE. */
TG_API int tg_optim_state(tg_optim *opt, int i, tg_tensor **buf1,
                          tg_tensor **buf2);

/* --- learning-rate schedules: pure functions of the epoch (counting from 0),
 * to feed tg_optim_set_lr at the start of each epoch. On bad arguments they
 * return NaN and record a message, and tg_optim_set_lr rejects the NaN. */

/* base * gamma^floor(epoch / step_size); step_size >= 1, epoch >= 0,
 * gamma > 0. */
TG_API double tg_lr_step(double base, int epoch, int step_size, double gamma);
/* Cosine annealing from base (epoch 0) to min_lr (epoch total_epochs):
 *   min_lr + (base - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2,
 * and min_lr after total_epochs. total_epochs >= 1, epoch >= 0,
 * 0 <= min_lr <= base. */
TG_API double tg_lr_cosine(double base, int epoch, int total_epochs,
                           double min_lr);

#ifdef __cplusplus
}
#endif
#endif

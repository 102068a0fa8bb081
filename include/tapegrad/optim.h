/* tapegrad/optim.h: optimizers (SGD with momentum/Nesterov, Adam, AdamW)
 * that update caller-owned parameters from their accumulated grads, clipping
 * of the gradients by their global norm, and learning-rate schedules as
 * plain functions of the epoch or step.
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

/* AdamW (Loshchilov & Hutter): Adam with the weight decay decoupled from
 * the gradient, exactly as PyTorch's torch.optim.AdamW:
 *   w *= 1 - lr * weight_decay             (before the moments are used)
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g^2
 *   w -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * It takes tg_adam_config, whose weight_decay is then the decoupled kind;
 * TG_ADAMW_DEFAULTS are PyTorch's (weight_decay 0.01). The factor
 * 1 - lr * weight_decay is worked out in double and rounded once to the
 * parameter's dtype, as PyTorch does. lr * weight_decay must not exceed 1
 * (a factor below 0 would flip the weights' signs): checked at creation and
 * by tg_optim_set_lr. State, steps and checkpoints as for Adam. */
#define TG_ADAMW_DEFAULTS                                             \
  { .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,            \
    .weight_decay = 1e-2 }

/* Creation. params: n >= 1 distinct caller-owned float32/float64 tensors
 * with requires_grad; the optimizer copies the array of pointers (the array
 * itself may be freed after the call) but not the tensors. The caller owns
 * the result and frees it with tg_optim_free. On a bad parameter or config:
 * NULL and a message (tg_last_error) naming the field and its value. */
TG_API tg_optim *tg_sgd_new(tg_tensor *const *params, int n,
                            const tg_sgd_config *cfg);
TG_API tg_optim *tg_adam_new(tg_tensor *const *params, int n,
                             const tg_adam_config *cfg);
TG_API tg_optim *tg_adamw_new(tg_tensor *const *params, int n,
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

/* Gradient clipping by the global norm, as torch.nn.utils.clip_grad_norm_
 * (norm_type 2): total = sqrt(sum over every grad element of its square),
 * accumulated in double in a fixed order (the same on any thread count);
 * with c = max_norm / (total + 1e-6), every grad is multiplied by c when
 * c < 1 (c rounded to each grad's dtype) and left alone otherwise. Returns
 * total, measured before scaling. A total that is not finite is returned as
 * it is and the grads are left unscaled (PyTorch would fill them with NaN):
 * skip that step. The parameters are those with requires_grad on (n >= 1,
 * float32 or float64, as for the optimizers; others are skipped).
 * max_norm must be finite and > 0, and not round to 0 or inf in float32
 * when a grad is float32. Allocates nothing. On bad arguments a negative
 * tg_status (as a double) and a message naming the argument. */
TG_API double tg_clip_grad_norm(tg_tensor *const *params, int n,
                                double max_norm);
/* The same over the optimizer's parameters (frozen ones skipped). */
TG_API double tg_optim_clip_grad_norm(tg_optim *opt, double max_norm);

/* The learning rate used by the next step. tg_optim_set_lr accepts any
 * finite lr >= 0 (a schedule may end at 0; creation insists on lr > 0
 * because a zero there is almost always a forgotten field); otherwise
 * TG_EINVAL and the lr is unchanged. tg_optim_lr(NULL) is 0. */
TG_API int tg_optim_set_lr(tg_optim *opt, double lr);
TG_API double tg_optim_lr(const tg_optim *opt);

/* --- state, for checkpoints */

/* "sgd", "adam" or "adamw"; "" for NULL. */
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
 *   Adam, AdamW: *buf1 = m (first moment), *buf2 = v (second moment).
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
/* Linear warmup, then cosine decay, as a function of the step (the update
 * about to be taken, counting from 1: tg_optim_steps(opt) + 1; step 0 is
 * the start and gives 0):
 *   step <= warmup:          lr_max * step / warmup
 *   warmup < step <= total:  lr_min + (lr_max - lr_min)
 *                              * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2
 *   step > total:            lr_min
 * warmup 0 starts the cosine at once (lr_max at step 0). 0 <= warmup <=
 * total, total >= 1, step >= 0, lr_max finite, 0 <= lr_min <= lr_max. On
 * bad arguments NaN and a message, as the others. */
TG_API double tg_lr_warmup_cosine(double lr_max, int64_t step, int64_t warmup,
                                  int64_t total, double lr_min);

#ifdef __cplusplus
}
#endif
#endif

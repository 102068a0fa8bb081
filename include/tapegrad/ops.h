/* tapegrad/ops.h: the ops. Each runs at once (eager) and, if the tape is
 * recording and an input needs a gradient, records itself for tg_backward.
 *
 * Common rules:
 *  - inputs share one float dtype (float32 or float64);
 *  - the result belongs to the tape (valid until tg_tape_clear/tg_tape_free);
 *  - on bad input: NULL and a message (tg_last_error) naming the op and the
 *    shapes; given a NULL input, an op returns NULL and leaves the earlier
 *    message in place, so a model may check once, at its loss. */
#ifndef TAPEGRAD_OPS_H
#define TAPEGRAD_OPS_H

#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The activations a dense layer can end with (tg_linear, and tg_activate
 * and tg_activation_name in nn.h). */
typedef enum {
  TG_ACT_NONE = 0,
  TG_ACT_SIGMOID = 1,
  TG_ACT_RELU = 2,
  TG_ACT_TANH = 3,
} tg_activation;

/* c[M,N] = a[M,K] . b[K,N]. Backward: da = dc . b^T, db = a^T . dc. */
TG_API tg_tensor *tg_matmul(tg_tape *t, tg_tensor *a, tg_tensor *b);
/* A dense layer as one op: y[N,out] = act(x[N,in] . W[in,out] + b[out]),
 * b broadcast over the rows; b NULL means no bias. act is TG_ACT_NONE,
 * _SIGMOID, _RELU or _TANH. The same values and gradients as
 * tg_activate(t, tg_add(t, tg_matmul(t, x, W), b), act), in one pass over
 * the output each way instead of three, with one result instead of three.
 * Backward: with g = dy * act'(y), dx = g . W^T, dW = x^T . g, db = column
 * sums of g. The result belongs to the tape. A NULL x or W gives NULL
 * without a new message; bad shapes, dtypes or act give NULL and a message
 * naming tg_linear and the shapes. */
TG_API tg_tensor *tg_linear(tg_tape *t, tg_tensor *x, tg_tensor *W,
                            tg_tensor *b, tg_activation act);
/* a + b, same shape; or a[N,C] + b[C] with b broadcast over the rows. */
TG_API tg_tensor *tg_add(tg_tape *t, tg_tensor *a, tg_tensor *b);
/* Elementwise a * b, same shape. */
TG_API tg_tensor *tg_mul(tg_tape *t, tg_tensor *a, tg_tensor *b);
TG_API tg_tensor *tg_neg(tg_tape *t, tg_tensor *a);
/* c * a for a constant c. */
TG_API tg_tensor *tg_scale(tg_tape *t, tg_tensor *a, double c);
TG_API tg_tensor *tg_sigmoid(tg_tape *t, tg_tensor *a);
TG_API tg_tensor *tg_relu(tg_tape *t, tg_tensor *a);
TG_API tg_tensor *tg_tanh(tg_tape *t, tg_tensor *a);
TG_API tg_tensor *tg_exp(tg_tape *t, tg_tensor *a);
/* Natural log; log(0) = -inf (see tg_tape_set_check_finite). */
TG_API tg_tensor *tg_log(tg_tape *t, tg_tensor *a);
/* Softmax along the last dimension, with the row maximum subtracted. */
TG_API tg_tensor *tg_softmax(tg_tape *t, tg_tensor *a);
/* Sum of all elements: a 0-d tensor. */
TG_API tg_tensor *tg_sum(tg_tape *t, tg_tensor *a);
/* Sum along one axis (negative counts from the end); the axis is removed
 * (a 1-D input gives a 0-d tensor). */
TG_API tg_tensor *tg_sum_axis(tg_tape *t, tg_tensor *a, int axis);
/* Mean of all elements: a 0-d tensor (NaN for no elements). */
TG_API tg_tensor *tg_mean(tg_tape *t, tg_tensor *a);
/* out[i] = a[i, index[i]] for a[N,C] and int32 index[N]: picks one entry per
 * row (the target class's, in a composed log-likelihood). */
TG_API tg_tensor *tg_pick(tg_tape *t, tg_tensor *a, tg_tensor *index);

/* --- elementwise unary ops */

/* --- elementwise binary ops, broadcast with NumPy's rules */

/* --- reductions over axes, and softmax along an axis */

/* The reductions below take a set of axes: axes[0..n_axes) are axis
 * numbers, negative counting from the end, each at most once; n_axes 0
 * means every axis (a 0-d input is then reduced over nothing and the result
 * is its value). The reduced axes are removed, or kept with size 1 when
 * keepdim; reducing every axis without keepdim gives a 0-d tensor. The
 * gradient of each is broadcast back over the reduced axes. The result
 * belongs to the tape. A NULL a gives NULL without a new message. Errors:
 * n_axes < 0, axes NULL with n_axes > 0, an axis given twice (also as i
 * and i - ndim) or n_axes > ndim: TG_EINVAL; an axis out of range:
 * TG_ERANGE; each message names the function, and the axis and a's shape
 * where it can. */

/* Sums over the axes (accumulated in double); a sum of no elements is 0.
 * Backward: da += g. */
TG_API tg_tensor *tg_sum_axes(tg_tape *t, tg_tensor *a, const int *axes,
                              int n_axes, bool keepdim);
/* Means over the axes, n elements per slice; a mean of no elements is NaN,
 * as in NumPy and PyTorch (see tg_tape_set_check_finite). Backward:
 * da += g / n. */
TG_API tg_tensor *tg_mean_axes(tg_tape *t, tg_tensor *a, const int *axes,
                               int n_axes, bool keepdim);
/* Maxima (minima) over the axes; a NaN in a slice gives NaN. Backward: g
 * split evenly among the elements equal to the extreme (as PyTorch's amax,
 * amin), none to the others. A slice of no elements: TG_ESHAPE. */
TG_API tg_tensor *tg_max_axes(tg_tape *t, tg_tensor *a, const int *axes,
                              int n_axes, bool keepdim);
TG_API tg_tensor *tg_min_axes(tg_tape *t, tg_tensor *a, const int *axes,
                              int n_axes, bool keepdim);
/* ln sum exp(a) over the axes, computed as m + ln sum exp(a - m) with m the
 * slice maximum, so large values do not overflow; a slice of -inf only
 * gives -inf (of no elements, -inf too). Backward: da += exp(a - y) g, the
 * softmax over the slice times g; an element at -inf gets 0. */
TG_API tg_tensor *tg_logsumexp(tg_tape *t, tg_tensor *a, const int *axes,
                               int n_axes, bool keepdim);
/* Variances over the axes: sum (a - u)^2 / (n - correction), u the slice
 * mean, n its elements; correction 0 gives the population variance, 1 the
 * unbiased sample one (as PyTorch's). Computed in two passes in double.
 * Backward: da += 2 (a - u) / (n - correction) g. n - correction <= 0,
 * where PyTorch returns NaN or inf with a warning, and a negative
 * correction: TG_EINVAL. */
TG_API tg_tensor *tg_var(tg_tape *t, tg_tensor *a, const int *axes,
                         int n_axes, int correction, bool keepdim);
/* Softmax along one axis (negative counts from the end; a 0-d a takes axis
 * 0 or -1 and gives 1), the maximum along it subtracted. Same shape as a.
 * Backward: da += y (g - sum_axis g y). An axis out of range: TG_ERANGE.
 * tg_softmax is this along the last axis. */
TG_API tg_tensor *tg_softmax_axis(tg_tape *t, tg_tensor *a, int axis);
/* ln softmax along one axis in one stable pass:
 * y = a - m - ln sum exp(a - m), m the maximum along the axis; finite for
 * any finite a. Backward: da += g - exp(y) sum_axis g. An axis out of
 * range: TG_ERANGE. */
TG_API tg_tensor *tg_log_softmax(tg_tape *t, tg_tensor *a, int axis);

/* --- shape ops: views, copies and indexing */

/* --- products and layers for real models */

/* --- fused losses; each is a 0-d mean over the N rows of a [N,C] input. */

/* Softmax + negative log-likelihood in one stable pass (log-sum-exp):
 *   L = -(1/N) sum_i ln softmax(z_i)[y_i].
 * target: int32 class indices [N], or float rows [N,C] of probabilities
 * (one-hot or soft: L = -(1/N) sum_i sum_j y_ij ln a_ij).
 * Backward: dL/dz = (softmax(z) - y) / N for rows that sum to 1; in general
 * (softmax(z) * sum_j y_ij - y) / N, and dL/dy = -ln softmax(z) / N. */
TG_API tg_tensor *tg_softmax_nll(tg_tape *t, tg_tensor *logits,
                                 tg_tensor *target);
/* Sigmoid + binary cross-entropy summed over outputs, mean over rows:
 *   L = -(1/N) sum_i sum_j [y ln a + (1-y) ln(1-a)],  a = sigmoid(z).
 * Computed from z stably. Backward: dL/dz = (sigmoid(z) - y) / N. */
TG_API tg_tensor *tg_sigmoid_bce(tg_tape *t, tg_tensor *logits,
                                 tg_tensor *target);
/* Quadratic cost on activations: L = (1/2N) sum_i ||y_i - a_i||^2.
 * Backward: dL/da = (a - y) / N. */
TG_API tg_tensor *tg_quadratic(tg_tape *t, tg_tensor *a, tg_tensor *target);

#ifdef __cplusplus
}
#endif
#endif

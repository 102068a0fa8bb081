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

/* c[M,N] = a[M,K] . b[K,N]. Backward: da = dc . b^T, db = a^T . dc.
 * Batched operands (3-D, 4-D) too: tg_matmul_ex with no transposes. */
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

/* --- elementwise unary ops
 * Each gives a result of a's shape and dtype, on the tape; a NULL a gives
 * NULL without a new message; a bad argument gives NULL and a message
 * naming the op (TG_EINVAL). A NaN element gives a NaN result (except
 * x^0 = 1). In the gradients, g is the incoming gradient dL/dy. */

/* sqrt x; dx = g / (2 y). sqrt of a negative is NaN, as in C. */
TG_API tg_tensor *tg_sqrt(tg_tape *t, tg_tensor *a);
/* |x|; dx = g sign(x), with sign(0) = 0 (PyTorch's convention). */
TG_API tg_tensor *tg_abs(tg_tape *t, tg_tensor *a);
/* x^2; dx = 2 x g. */
TG_API tg_tensor *tg_square(tg_tape *t, tg_tensor *a);
/* x^p for a constant p; dx = p x^(p-1) g, and 0 when p = 0 (PyTorch's
 * convention). C's pow gives the rest: x^0 = 1 for every x, NaN for a
 * negative x and a non-integer p, inf for 0 and a negative p. A NaN p is
 * refused (TG_EINVAL). */
TG_API tg_tensor *tg_pow_scalar(tg_tape *t, tg_tensor *a, double p);
/* ln(1 + x), exact for small x; dx = g / (1 + x). NaN below -1. */
TG_API tg_tensor *tg_log1p(tg_tape *t, tg_tensor *a);
/* ln(1 + e^x), computed stably as max(x, 0) + log1p(e^-|x|);
 * dx = sigmoid(x) g. */
TG_API tg_tensor *tg_softplus(tg_tape *t, tg_tensor *a);
/* The exact GELU: x P(x), P the standard normal CDF,
 * P(x) = (1 + erf(x / sqrt 2)) / 2; dx = (P(x) + x p(x)) g, p the normal
 * density. gelu(-inf) = 0. */
TG_API tg_tensor *tg_gelu(tg_tape *t, tg_tensor *a);
/* PyTorch's GELU(approximate='tanh'):
 * x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2, with its exact
 * derivative. */
TG_API tg_tensor *tg_gelu_tanh(tg_tape *t, tg_tensor *a);
/* SiLU (swish): x s, s = sigmoid(x); dx = g (s + x s (1 - s)). */
TG_API tg_tensor *tg_silu(tg_tape *t, tg_tensor *a);
/* x for x > 0, else slope x; dx = g for x > 0, else slope g (at 0 too, as
 * PyTorch). A NaN slope is refused (TG_EINVAL). */
TG_API tg_tensor *tg_leaky_relu(tg_tape *t, tg_tensor *a, double slope);
/* min(max(x, lo), hi); dx = g where lo <= x <= hi (bounds included, as
 * PyTorch), else 0. Either bound may be infinite; lo > hi or a NaN bound
 * is refused (TG_EINVAL, the message giving lo and hi). */
TG_API tg_tensor *tg_clamp(tg_tape *t, tg_tensor *a, double lo, double hi);
/* x + c for a constant c; dx = g. With tg_scale, 1 - x is
 * tg_add_scalar(t, tg_scale(t, x, -1), 1). A NaN c is refused
 * (TG_EINVAL). */
TG_API tg_tensor *tg_add_scalar(tg_tape *t, tg_tensor *a, double c);

/* --- elementwise binary ops, broadcast with NumPy's rules */

/* Broadcasting: the shapes are aligned from the right; in each position
 * every input has the same size, 1, or no dimension there, and the result
 * has the size that is not 1 ([N,C] with [C] gives [N,C], [2,1] with [3]
 * gives [2,3], a 0-d tensor goes with any shape). A size 0 against 1 gives
 * 0 (an empty result); 0 against 3 does not broadcast. Backward: the
 * gradient of an input that was broadcast is the sum of its contributions
 * over the elements it was broadcast to, in its own shape. Inputs share
 * one float dtype; the result belongs to the tape. Shapes that do not
 * broadcast give NULL and TG_ESHAPE, "tg_sub: shapes do not broadcast: a
 * is [2,3], b is [4]". */

/* a + b. Backward: da = g, db = g (summed as above). [N,C] + [C] is the
 * bias form and runs as fast as a dedicated one. */
TG_API tg_tensor *tg_add(tg_tape *t, tg_tensor *a, tg_tensor *b);
/* a - b. Backward: da = g, db = -g. */
TG_API tg_tensor *tg_sub(tg_tape *t, tg_tensor *a, tg_tensor *b);
/* a * b. Backward: da = g b, db = g a. */
TG_API tg_tensor *tg_mul(tg_tape *t, tg_tensor *a, tg_tensor *b);
/* a / b (IEEE: b = 0 gives inf or NaN). Backward: da = g / b,
 * db = -g a / b^2. */
TG_API tg_tensor *tg_div(tg_tape *t, tg_tensor *a, tg_tensor *b);
/* a^b for a tensor exponent (NaN for a < 0 with a non-integer b).
 * Backward: da = g b a^(b-1) (0 where b = 0), db = g a^b ln a (0 where
 * a^b = 0). */
TG_API tg_tensor *tg_pow(tg_tape *t, tg_tensor *a, tg_tensor *b);
/* The larger / smaller of a and b; NaN if either is NaN. Backward: g goes
 * to the input that was picked; at a tie (a = b) each gets g/2, as in
 * PyTorch. */
TG_API tg_tensor *tg_maximum(tg_tape *t, tg_tensor *a, tg_tensor *b);
TG_API tg_tensor *tg_minimum(tg_tape *t, tg_tensor *a, tg_tensor *b);
/* mask ? a : b elementwise: an int32 mask (non-zero picks a), with mask, a
 * and b all broadcast together (the message names mask, a and b).
 * Backward: da = g where mask != 0, db = g where mask = 0; the mask gets
 * no gradient. A mask that is not int32 gives TG_EDTYPE. */
TG_API tg_tensor *tg_where(tg_tape *t, tg_tensor *mask, tg_tensor *a,
                           tg_tensor *b);

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
/* Attention's scaled causal softmax: a [..., Tq, Tk] (at least 2-D,
 * Tq <= Tk), y = softmax over the last axis of scale * a, where row i sees
 * columns j <= i + Tk - Tq (the queries are the last Tq positions) and the
 * others are exactly 0 (never exponentiated). The same as scale, then
 * where(causal mask, ., -1e9), then softmax_axis(-1), in one pass and
 * without a mask tensor. Backward: da += scale y (g - sum_j g y) on the
 * visible entries, 0 on the masked. Tq > Tk or a 1-D a: TG_ESHAPE; a
 * non-finite scale: TG_EINVAL. */
TG_API tg_tensor *tg_softmax_causal(tg_tape *t, tg_tensor *a, double scale);

/* --- shape ops: views, copies and indexing */

/* Every result belongs to the tape. A view shares its input's data (no
 * copy): writing into the input shows through it, and it is valid while
 * that data lives (a caller's input must outlive it). Axes may be
 * negative (counting from the end) where said. */

/* a with the shape given (ndim 0 to 4, at most one dimension -1, inferred
 * from the others): a view, for a caller's tensor or a tape result alike.
 * Backward: da += g, element for element. TG_ESHAPE when the element
 * counts differ (naming both shapes), for two -1 or another negative
 * dimension, or ndim outside 0..4; TG_EINVAL for a NULL shape. */
TG_API tg_tensor *tg_reshape(tg_tape *t, tg_tensor *a, int ndim,
                             const int64_t *shape);
/* A copy of a with its axes reordered: y.shape[d] = a.shape[perm[d]];
 * perm has a's ndim entries, a permutation of 0..ndim-1 (no negatives:
 * TG_EINVAL otherwise). Backward: g through the inverse permutation. */
TG_API tg_tensor *tg_permute(tg_tape *t, tg_tensor *a, const int *perm);
/* tg_permute swapping axes d0 and d1 (negative allowed; out of range:
 * TG_ERANGE). Messages of the door (a stale a, a tape's mismatch) name
 * tg_permute. */
TG_API tg_tensor *tg_transpose(tg_tape *t, tg_tensor *a, int d0, int d1);
/* a[..., start:stop:step, ...] along axis, with Python's rules: negative
 * start or stop count from the end, both are clamped to [0, len], and
 * start >= stop gives a zero-size dimension; step >= 1 (TG_EINVAL
 * otherwise; a bad axis: TG_ERANGE). A view when the slice is one run of
 * memory (every dimension before axis of size 1, and step 1 or a single
 * index taken), else a copy. Backward: g scattered into the sliced
 * positions; the others get nothing. */
TG_API tg_tensor *tg_slice(tg_tape *t, tg_tensor *a, int axis, int64_t start,
                           int64_t stop, int64_t step);
/* The n >= 1 tensors xs joined along axis (negative allowed): their shapes
 * agree except along axis, whose sizes add up. Backward: each input gets
 * its part of g. A copy. TG_ESHAPE naming the first mismatching xs[k] and
 * both shapes; TG_ERANGE for the axis (0-d inputs have none); n < 1 or a
 * NULL xs: TG_EINVAL. */
TG_API tg_tensor *tg_concat(tg_tape *t, tg_tensor *const *xs, int n, int axis);
/* The n >= 1 tensors xs, all of one shape, stacked along a new axis of
 * size n at position axis, in [-ndim-1, ndim]. Backward: each input gets
 * its slice of g. A copy. TG_ESHAPE for differing shapes (naming the
 * index and both shapes) or 4-D inputs (the result would be 5-D). */
TG_API tg_tensor *tg_stack(tg_tape *t, tg_tensor *const *xs, int n, int axis);
/* Constant padding: before[d] and after[d] (one pair per dimension of a,
 * each in [0, 2^31)) elements of value around dimension d. Backward: da +=
 * the interior of g. Negative pads: TG_EINVAL; NULL before or after for
 * a of ndim >= 1: TG_EINVAL. */
TG_API tg_tensor *tg_pad(tg_tape *t, tg_tensor *a, const int64_t *before,
                         const int64_t *after, double value);
/* PyTorch's torch.gather: y has index's shape and y[i] = a[i with i[axis]
 * replaced by index[i]]. index is int32 of a's ndim with index.shape[d] <=
 * a.shape[d] for d != axis (TG_ESHAPE otherwise); every index is checked
 * before anything is computed (TG_ERANGE naming its position and value).
 * Backward scatter-adds into da (repeated indices accumulate); index gets
 * no gradient, and backward uses a copy of it taken by forward, so the
 * caller may refill it. */
TG_API tg_tensor *tg_gather(tg_tape *t, tg_tensor *a, int axis, tg_tensor *index);

/* --- products and layers for real models */

/* Batched, transposed products: c = op(a) op(b), op(x) = x, or x with its
 * last two dims swapped when its flag (ta, tb) is true. a and b are 2-D to
 * 4-D (a 1-D or 0-d operand is refused: make it [1,K] or [K,1]); op(a) is
 * [..., M, K] and op(b) [..., K, N], and the leading (batch) dims
 * broadcast with NumPy's rules, so c is [batch..., M, N]: [B,H,T,D] x
 * [B,H,D,T] -> [B,H,T,T], [B,T,D] x [D,E] -> [B,T,E], [1,T,D] x [B,D,E]
 * -> [B,T,E]. One GEMM per matrix of c; no transpose is ever copied.
 * Backward: d op(a) = g op(b)^T and d op(b) = op(a)^T g per matrix
 * (transposed back onto a or b where it was transposed), and a broadcast
 * batch dim's gradient is summed over the batch. Errors (NULL, TG_ESHAPE,
 * a message naming tg_matmul_ex and the shapes): an operand below 2-D,
 * inner dims that differ, batch dims that do not broadcast. */
TG_API tg_tensor *tg_matmul_ex(tg_tape *t, tg_tensor *a, tg_tensor *b,
                               bool ta, bool tb);
/* Rows of a table picked by indices: table [V,D] float, index int32 of 0
 * to 3 dims; out[p..., :] = table[index[p...], :], out [index.shape..., D]
 * (a 0-d index gives [D]). Backward scatter-adds g's rows into dtable (an
 * index that repeats gets the sum of its rows); index gets no gradient.
 * The indices are checked before anything is written and copied for
 * backward, so the caller may reuse index's buffer at once. Errors: an
 * index outside [0, V) gives TG_ERANGE naming its position and value;
 * table not 2-D or index of 4 dims, TG_ESHAPE; index not int32, TG_EDTYPE. */
TG_API tg_tensor *tg_embedding(tg_tape *t, tg_tensor *table, tg_tensor *index);
/* Inverted dropout. training: y = a * m / (1-p), m ~ Bernoulli(1-p) per
 * element drawn from rng (which is advanced: the same seed gives the same
 * mask); backward dx = g * m / (1-p) with the mask forward drew. Not
 * training, or p == 0: returns a itself and records nothing (no new
 * tensor: the result is a, owned by whoever owns a). p is resolved to
 * 2^-32. Errors (TG_EINVAL, naming tg_dropout): p NaN, negative or >= 1
 * (in either mode); rng NULL while training with p > 0. */
TG_API tg_tensor *tg_dropout(tg_tape *t, tg_tensor *a, double p, tg_rng *rng,
                             bool training);
/* Layer normalisation over the last axis of x [..., D], one op:
 *   y = (x - mean) / sqrt(var + eps) * w + b
 * per row, var the biased variance (as PyTorch); w and b are [D], each
 * optional (NULL: 1 and 0). Forward keeps each row's mean and 1/sqrt(var +
 * eps). Backward in closed form, with xh = (x - mean) rstd and h = g w:
 * dx = rstd (h - mean(h) - xh mean(h xh)), dw = sum over rows of g xh, db
 * = sum over rows of g. Errors: x 0-d, w or b not [D] (TG_ESHAPE); eps not
 * > 0 and finite (TG_EINVAL). */
TG_API tg_tensor *tg_layer_norm(tg_tape *t, tg_tensor *x, tg_tensor *w,
                                tg_tensor *b, double eps);

/* 2-D convolution of images x [N,C,H,W] with kernels w [K,C/groups,R,S]
 * and an optional bias b [K] (NULL: none), NCHW, as PyTorch's
 * torch.nn.functional.conv2d (a cross-correlation):
 *   y[n,k,i,j] = b[k] + sum over c in k's group, r, s of
 *                w[k,c,r,s] x[n, c, i*stride_h - pad_h + r*dil_h,
 *                                  j*stride_w - pad_w + s*dil_w]
 * with x taken as 0 in the padding. y is [N,K,H_out,W_out],
 *   H_out = floor((H + 2 pad_h - dil_h (R-1) - 1) / stride_h) + 1
 * (W_out likewise). groups splits the C input and K output channels into
 * that many groups, each convolved with its own K/groups kernels.
 * The arguments are plain ints in PyTorch's order (stride, padding,
 * dilation, each as height then width, then groups) rather than a struct:
 * every one of them is spelled out at the call, and none has a hidden
 * default. A plain convolution is (1, 1, 0, 0, 1, 1, 1).
 * Forward, dx, dw and db are GEMMs on im2col columns; the columns live in
 * the tape's arena: per call, (C/groups) R S H_out W_out elements of x's
 * dtype times min(N, threads) when the batch is split over threads (a call
 * of N K H_out W_out (C/groups) R S >= 4e6 multiply-adds with N >= 2),
 * else once (a 1x1, stride-1, unpadded convolution needs none); for such a
 * split call whose w needs a gradient, also min(N, 8) K (C/groups) R S
 * elements for the weight gradient's partial sums. Nothing comes from the
 * heap per step. Results are the same on any number of threads.
 * Errors (NULL and a message naming tg_conv2d and the shapes): x or w not
 * 4-D, C or K not divisible by groups, w's second dimension not C/groups,
 * b not [K], an empty kernel, the dilated kernel larger than the padded
 * input (TG_ESHAPE); stride or dilation < 1, padding < 0, groups < 1
 * (TG_EINVAL); x, w, b of different dtypes (TG_EDTYPE). */
TG_API tg_tensor *tg_conv2d(tg_tape *t, tg_tensor *x, tg_tensor *w,
                            tg_tensor *b, int stride_h, int stride_w,
                            int pad_h, int pad_w, int dil_h, int dil_w,
                            int groups);
/* --- pooling and normalisation, for convolutional networks. Images are
 * NCHW: x [N,C,H,W], each of the N*C planes pooled on its own. */

/* Max pooling: each output is the largest element of a kh x kw window;
 * window (i, j) starts at row i*stride_h - pad_h and column j*stride_w -
 * pad_w, and positions outside x (the padding) count as -inf. The result
 * is [N, C, (H + 2 pad_h - kh) / stride_h + 1, (W + 2 pad_w - kw) /
 * stride_w + 1] (floor division: PyTorch's max_pool2d with ceil_mode off
 * and dilation 1). Ties go to the first element in row-major order and a
 * NaN wins, as PyTorch's. Forward keeps the argmax of each output (int32,
 * in the tape's arena); backward adds g there. Errors (NULL, naming
 * tg_max_pool2d and the shapes): x not 4-D or a plane of 2^31 elements or
 * more, a kernel larger than the padded input (TG_ESHAPE); a kernel side or
 * stride below 1, a padding below 0 or above half the kernel side (as
 * PyTorch refuses: such windows could hold padding only) (TG_EINVAL). */
TG_API tg_tensor *tg_max_pool2d(tg_tape *t, tg_tensor *x, int kh, int kw,
                                int stride_h, int stride_w, int pad_h,
                                int pad_w);
/* Average pooling over the same windows as tg_max_pool2d, with the same
 * result shape and errors: each output is the window's sum / (kh kw), the
 * padding counting as zeros (PyTorch's count_include_pad=True). Backward
 * spreads g / (kh kw) over the window's elements. */
TG_API tg_tensor *tg_avg_pool2d(tg_tape *t, tg_tensor *x, int kh, int kw,
                                int stride_h, int stride_w, int pad_h,
                                int pad_w);
/* Global average pooling: x [N,C,H,W] -> [N,C], each plane's mean (2-D, so
 * a dense layer takes it as it is; tg_reshape makes it [N,C,1,1]).
 * Backward: dx += g / (H W). Errors (TG_ESHAPE): x not 4-D, or H or W 0. */
TG_API tg_tensor *tg_global_avg_pool2d(tg_tape *t, tg_tensor *x);
/* Batch normalisation over the channels of x [N,C,H,W] (or the features of
 * x [N,C]), one op: per channel c, y = gamma (x - mu) / sqrt(var + eps) +
 * beta, with gamma and beta [C] each optional (NULL: 1 and 0).
 * - training: mu and var are the batch's mean and biased variance over
 *   the N*H*W values of the channel, and running_mean and running_var are
 *   updated in place, as PyTorch's: running = (1 - momentum) running +
 *   momentum stat, the variance's stat unbiased (times M/(M-1), M =
 *   N*H*W). Backward goes through the batch statistics: dx = gamma rstd
 *   (g - mean(g) - xh mean(g xh)), xh = (x - mu) rstd.
 * - evaluation (training false): mu and var are running_mean and
 *   running_var, which are only read; backward is the affine map dx =
 *   gamma rstd g.
 * Both: dgamma = sum g xh, dbeta = sum g over the channel's values. The
 * running statistics are [C] tensors of x's dtype that the caller owns
 * (never a tape's result), apart from every other argument; they get no
 * gradient, and the updated values are in place when the call returns
 * (also in no-grad mode). Errors (NULL, naming tg_batch_norm): x not 2-D
 * or 4-D, gamma, beta or a running tensor not [C], fewer than 2 values per
 * channel while training (TG_ESHAPE); momentum outside [0, 1], eps not > 0
 * and finite, a running tensor that is a tape's or shares data with
 * another argument (TG_EINVAL); dtypes that differ (TG_EDTYPE). Nothing
 * is updated on an error. */
TG_API tg_tensor *tg_batch_norm(tg_tape *t, tg_tensor *x, tg_tensor *gamma,
                                tg_tensor *beta, tg_tensor *running_mean,
                                tg_tensor *running_var, bool training,
                                double momentum, double eps);

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

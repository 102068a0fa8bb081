/* tapegrad.h: tape-based reverse-mode automatic differentiation in C.
 *
 * A model is a C function that records its forward pass onto a tape:
 *
 *   tg_tape *t = tg_tape_new();
 *   tg_tensor *W = tg_zeros(TG_F32, TG_SHAPE(784, 100));   // a parameter
 *   tg_requires_grad(W, true);
 *   ...
 *   tg_tensor *h    = tg_sigmoid(t, tg_add(t, tg_matmul(t, x, W), b));
 *   tg_tensor *loss = tg_softmax_nll(t, tg_add(t, tg_matmul(t, h, V), c), y);
 *   if (!loss) fprintf(stderr, "%s\n", tg_last_error());
 *   tg_backward(t, loss);          // W, b, V, c now hold dloss/dparam
 *   ...update the parameters, tg_zero_grad them (an optimizer from
 *      tapegrad/optim.h: tg_optim_step, tg_optim_zero_grad)...
 *   tg_tape_clear(t);              // O(1); the memory is reused next step
 *
 * Every op runs at once; the tape remembers what it needs for the backward
 * pass. Parameters are caller-owned tensors; everything an op makes belongs
 * to the tape. Functions return NULL or a negative tg_status on error and
 * never abort; tg_last_error() says what was wrong.
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include "tapegrad/status.h"
#include "tapegrad/tensor.h"
#include "tapegrad/tape.h"
#include "tapegrad/ops.h"
#include "tapegrad/gradcheck.h"
#include "tapegrad/io.h"
#include "tapegrad/optim.h"
#include "tapegrad/nn.h"
#include "tapegrad/checkpoint.h"
#include "tapegrad/dist.h"
#include "tapegrad/report.h"

#define TG_VERSION "0.1.0"

#endif

/* tapegrad/tape.h: the tape that records ops and runs the backward pass. */
#ifndef TAPEGRAD_TAPE_H
#define TAPEGRAD_TAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque. Holds the recorded nodes and an arena for every tensor its ops
 * make. Not thread-safe: one tape per thread. */
typedef struct tg_tape tg_tape;

/* The caller owns the tape and frees it with tg_tape_free, which also frees
 * every tensor its ops made. NULL on allocation failure. */
TG_API tg_tape *tg_tape_new(void);
TG_API void tg_tape_free(tg_tape *t);

/* Forget every node and every tensor the tape made, in O(1). The arena keeps
 * its memory, so the next step of a training loop allocates nothing.
 * Tensors made before the clear must not be used after it. Until new ops
 * reuse its place, a stale tensor is recognised and refused (TG_ESTATE);
 * after that the pointer names whichever new tensor took its place, so
 * keep no tensor of a tape across its clear. */
TG_API void tg_tape_clear(tg_tape *t);

/* A 0-d tensor holding value (rounded to dtype, float32 or float64) on the
 * tape: a scalar constant for the broadcasting ops, as in
 * tg_sub(t, tg_const(t, TG_F32, 1.0), x). It belongs to the tape (valid
 * until tg_tape_clear) and needs no gradient. */
TG_API tg_tensor *tg_const(tg_tape *t, tg_dtype dtype, double value);

/* Backward pass from a one-element loss: adds dloss/dx into the grad of
 * every parameter x the loss depends on, and fills the grads of the
 * intermediate tensors on the way (readable until the next clear).
 * Backward reads the inputs' values as they are now: change no input of a
 * recorded op (a batch tensor, say) between the forward pass and this call.
 * Given a NULL loss after an op failed, it returns that op's status and
 * keeps its message. */
TG_API int tg_backward(tg_tape *t, tg_tensor *loss);
/* The same from a tensor of any shape, with the gradient of some scalar with
 * respect to it given explicitly (same shape and dtype as out). */
TG_API int tg_backward_grad(tg_tape *t, tg_tensor *out,
                            const tg_tensor *grad_out);

/* Recording on (the default) or off. Off, ops still compute their results
 * on the tape's arena but record nothing and need no grads: evaluation mode.
 * Returns the previous setting. */
TG_API bool tg_tape_set_grad(tg_tape *t, bool enabled);
/* When on, every op checks its output for NaN/Inf; the first op that makes
 * one fails with TG_ENONFINITE and a message naming it. Off by default.
 * Returns the previous setting. */
TG_API bool tg_tape_set_check_finite(tg_tape *t, bool enabled);

/* Number of nodes recorded since the last clear. */
TG_API size_t tg_tape_nodes(const tg_tape *t);
/* Bytes of arena memory the tape holds (in use or kept for reuse). */
TG_API size_t tg_tape_arena_bytes(const tg_tape *t);
/* Writes the recorded graph to f as Graphviz DOT (render it with
 * `dot -Tsvg`): one box per recorded op, labelled with its name and its
 * result's shape and dtype, an arrow from each input; parameters are filled
 * boxes, inputs that need no gradient grey ellipses. Only recorded ops are
 * drawn (those with an input that needs a gradient). Returns TG_OK,
 * TG_EINVAL for a NULL argument, TG_EIO when writing fails, TG_ENOMEM. */
TG_API int tg_tape_dot(const tg_tape *t, FILE *f);

#ifdef __cplusplus
}
#endif
#endif

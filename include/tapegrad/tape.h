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
/* The most arena bytes in use at once between two clears, over the tape's
 * life: a training step's tape memory (its results, saved state and
 * gradients), whichever step was largest. */
TG_API size_t tg_tape_arena_peak(const tg_tape *t);
/* Writes the recorded graph to f as Graphviz DOT (render it with
 * `dot -Tsvg`): one box per recorded op, labelled with its name and its
 * result's shape and dtype, an arrow from each input; parameters are filled
 * boxes, inputs that need no gradient grey ellipses. Only recorded ops are
 * drawn (those with an input that needs a gradient). Returns TG_OK,
 * TG_EINVAL for a NULL argument, TG_EIO when writing fails, TG_ENOMEM. */
TG_API int tg_tape_dot(const tg_tape *t, FILE *f);

/* --- Profiling: where a step's time goes, per region and op.
 *
 *   tg_tape_set_profile(t, true);
 *   tg_tape_region(t, "attention");   ... ops ...   tg_tape_region(t, NULL);
 *   tg_backward(t, loss);
 *   tg_tape_profile_print(t, stdout);
 *
 * On, the op door times each op's forward kernel and tg_backward times each
 * recorded node's backward (its kernel and the zeroing of the gradients it
 * is first to write), with CLOCK_MONOTONIC, into totals per (region, op):
 * the region is the label current when the op was applied. What is not
 * inside a kernel (the door's checks, the tape's bookkeeping, code between
 * ops) is in no entry. Off (the default), each op pays one flag test. Only
 * turning it on allocates (once, a fixed table): a profiled step allocates
 * nothing. A node recorded while profiling was off is not timed in backward.
 * Like the rest of the tape, none of this is for several threads at once. */
#define TG_PROFILE_MAX_REGIONS 32  /* distinct labels a tape remembers */
#define TG_PROFILE_MAX_ENTRIES 256 /* distinct (region, op) pairs */

/* Profiling on or off. Totals are kept across off and on (see
 * tg_tape_profile_reset). Returns TG_OK, TG_EINVAL for a NULL tape,
 * TG_ENOMEM. */
TG_API int tg_tape_set_profile(tg_tape *t, bool enabled);
/* Labels the ops applied from now on with label (NULL: no region), until
 * the next call; labels are told apart by their text. The tape keeps the
 * pointer, so label must outlive it (a string literal). Works whether
 * profiling is on or not, and survives tg_tape_clear. Returns TG_OK,
 * TG_EINVAL for a NULL tape, or TG_ERANGE when label would be the tape's
 * TG_PROFILE_MAX_REGIONS + 1st distinct one (the region is then none). */
TG_API int tg_tape_region(tg_tape *t, const char *label);

/* One (region, op) pair's totals. */
typedef struct {
  const char *region; /* the label given to tg_tape_region; NULL: none */
  const char *op;     /* the op's name, as tg_tape_dot labels it */
  long long forward_calls, backward_calls;
  double forward_seconds, backward_seconds;
} tg_profile_entry;

/* Copies up to cap entries (those with a call since the last reset, in the
 * order their pairs were first seen) to out, and returns how many there are
 * in all (more than cap: some were left out), or TG_EINVAL for a NULL tape,
 * a negative cap, or a NULL out with cap > 0. An op applied when the
 * table holds TG_PROFILE_MAX_ENTRIES pairs and its pair is new fails with
 * TG_ERANGE. */
TG_API int tg_tape_profile(const tg_tape *t, tg_profile_entry *out, int cap);
/* Sets every total to zero (the labels and pairs are kept). */
TG_API void tg_tape_profile_reset(tg_tape *t);
/* Writes the totals to f as a table, largest first, with each entry's share
 * of the timed total. Returns TG_OK, TG_EINVAL for a NULL argument, TG_EIO
 * when writing fails. */
TG_API int tg_tape_profile_print(const tg_tape *t, FILE *f);

#ifdef __cplusplus
}
#endif
#endif

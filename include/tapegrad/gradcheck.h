/* tapegrad/gradcheck.h: compare the engine's gradients with central
 * differences, for any function the user records on a tape. */
#ifndef TAPEGRAD_GRADCHECK_H
#define TAPEGRAD_GRADCHECK_H

#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Records a function of the parameters on the tape and returns its output
 * (any shape). Must be deterministic. */
typedef tg_tensor *(*tg_fn)(tg_tape *t, tg_tensor *const *params, void *ctx);

typedef struct {
  double max_rel_err; /* worst |analytic - numeric| / max(|analytic|, |numeric|, 1e-2) */
  int param;          /* which parameter it was at */
  int64_t index;      /* flat index within that parameter */
  double analytic;    /* the engine's gradient there */
  double numeric;     /* the central difference there */
} tg_gradcheck_result;

/* Checks d(out)/d(params) in float64: every parameter must be float64 with
 * requires_grad. A non-scalar output is reduced to sum(R * out) with a fixed
 * random R, so every output element takes part. eps <= 0 means 1e-6.
 * The parameters' values and accumulated grads are left as they were.
 * Returns TG_OK and fills *res, or an error (the function's own included). */
TG_API int tg_gradcheck(tg_fn f, void *ctx, tg_tensor *const *params,
                        int n_params, double eps, tg_gradcheck_result *res);

#ifdef __cplusplus
}
#endif
#endif

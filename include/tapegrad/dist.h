/* tapegrad/dist.h: data-parallel training across processes and machines
 * (MPI when built with --with-mpi), the same program running in one process
 * otherwise.
 *
 *   tg_dist *d = tg_dist_init(&argc, &argv);   // NULL + message on failure
 *   int rank = tg_dist_rank(d), size = tg_dist_size(d);
 *   ...load the data; tg_dist_check(d, rc, tg_last_error()) so a rank that
 *      failed stops every rank with its message...
 *   tg_dist_broadcast_optim(d, opt);            // rank 0's parameters + state
 *   for each global batch of B rows, this rank's shard of B / size rows:
 *     tg_backward(t, loss);                     // loss: the mean over the shard
 *     tg_dist_mean_grads(d, params, np, rows);  // grads: the global batch's mean
 *     tg_optim_step(opt);                       // the same step on every rank
 *   tg_dist_finalize(d);
 *
 * Run with `mpirun -np P prog ...`; without mpirun (or in a build without
 * MPI) tg_dist_init gives rank 0 of 1 and every call does what it would in
 * a one-process job, so the program runs unchanged.
 *
 * Reproducible: for a fixed number of processes the reduced gradients are
 * the same bits on every rank and in every run. The default reduction fixes
 * the order of the sums itself (a reduce-scatter where the owner of each
 * chunk adds the ranks' parts in rank order, then an all-gather), so it does
 * not depend on the algorithm MPI picks. TG_DIST_REDUCE_MPI hands the sum to
 * MPI_Allreduce instead, for comparison (whose order MPI does not promise).
 *
 * Errors, not hangs: every exchange carries a header (this rank's status,
 * which call, a sequence number, the parameters' shape hash), so a rank
 * that reports a failure (tg_dist_check, tg_dist_fail), calls a different
 * exchange, or holds parameters of other shapes makes every rank's call
 * return an error naming that rank and the cause; a rank that says nothing
 * for the timeout (TG_DIST_TIMEOUT seconds in the environment, default 60;
 * tg_dist_set_timeout) is named as silent. A rank that exits without
 * tg_dist_finalize makes mpirun end the whole job. After a failed exchange
 * every later call returns TG_ESTATE, and tg_dist_finalize does not call
 * MPI_Finalize (which would wait for the ranks that are gone): return from
 * main with a failure status and mpirun stops the rest. The library never
 * aborts the job by itself; tg_dist_abort is there for a program that wants
 * to.
 *
 * Every function takes NULL and returns TG_EINVAL (or 0 / false). */
#ifndef TAPEGRAD_DIST_H
#define TAPEGRAD_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "optim.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque. One per process. */
typedef struct tg_dist tg_dist;

/* Joins the job mpirun started (its environment says so: OMPI_COMM_WORLD_SIZE,
 * PMIX_RANK or PMI_RANK), calling MPI_Init unless the program has already;
 * otherwise a one-process job. argc and argv may be NULL. The caller frees
 * the result with tg_dist_finalize. NULL and a message when MPI cannot
 * start or memory runs out. */
TG_API tg_dist *tg_dist_init(int *argc, char ***argv);

/* This process's rank in [0, size), and the number of processes. */
TG_API int tg_dist_rank(const tg_dist *d);
TG_API int tg_dist_size(const tg_dist *d);
/* True when running as several processes under MPI. */
TG_API bool tg_dist_is_mpi(const tg_dist *d);
/* Seconds that exchanges must wait for a silent rank before failing
 * (> 0; default TG_DIST_TIMEOUT from the environment, else 60). */
TG_API int tg_dist_set_timeout(tg_dist *d, double seconds);

/* How tg_dist_mean_grads sums; the environment's TG_DIST_REDUCE=fixed|mpi
 * sets it at tg_dist_init. */
typedef enum {
  TG_DIST_REDUCE_FIXED = 0, /* rank order, bit-reproducible (default) */
  TG_DIST_REDUCE_MPI = 1    /* MPI_Allreduce; no status header, no timeout */
} tg_dist_reduce;
TG_API int tg_dist_set_reduce(tg_dist *d, tg_dist_reduce how);

/* A collective status check: every rank passes its status (TG_OK or a
 * negative tg_status) and, on failure, why (may be NULL). Returns TG_OK when
 * every rank is fine; otherwise the lowest failing rank's status, with the
 * message "rank R of P: why" (a rank that fails itself gets its own status
 * and why back). */
TG_API int tg_dist_check(tg_dist *d, int status, const char *why);
/* Tells every other rank that this one cannot go on (status < 0, why may be
 * NULL), without waiting for them to listen: whichever exchange they are in
 * fails with "rank R of P: why". The tg_dist is unusable afterwards
 * (TG_ESTATE), except for tg_dist_finalize. Returns status. */
TG_API int tg_dist_fail(tg_dist *d, int status, const char *why);
/* Waits until every rank has called it. */
TG_API int tg_dist_barrier(tg_dist *d);

/* Copies rank 0's tensors into every rank's (n >= 0; any dtypes; the data,
 * not the grads). Every rank must pass tensors of the same dtypes and
 * shapes, in the same order: the ranks exchange a hash of them first, and a
 * rank whose list differs from rank 0's makes every rank fail with
 * TG_ESHAPE naming it (every rank knows, so the job stays usable, as after
 * tg_dist_check). A one-process job checks the list and copies nothing. */
TG_API int tg_dist_broadcast(tg_dist *d, tg_tensor *const *tensors, int n);
/* Rank 0's optimizer to every rank: its parameters, its state buffers
 * (tg_optim_state: momentum, or Adam's two moments), its step count and its
 * learning rate. The optimizers must be of the same kind over the same
 * shapes (else TG_ESHAPE naming the rank). */
TG_API int tg_dist_broadcast_optim(tg_dist *d, tg_optim *opt);

/* The gradient all-reduce, once per step. Each rank's params[0..n-1] (one
 * float dtype, requires_grad, the same shapes on every rank) hold the mean
 * gradient over its rows >= 0 samples; afterwards every rank's grads hold
 * the mean over all ranks' samples, sum_r rows_r g_r / sum_r rows_r, the
 * same bits on every rank. With equal shards that is the plain average; a
 * rank with rows 0 contributes nothing (its grads are ignored). The grads
 * travel as one packed buffer; its memory is allocated on the first call
 * (and again only for a larger list), so steady-state steps allocate
 * nothing. A one-process job leaves the grads untouched. Errors: TG_EINVAL,
 * TG_EDTYPE (mixed dtypes), TG_ESHAPE (another rank's shapes differ),
 * TG_ERANGE (no rows on any rank), TG_EIO (MPI failed, or a rank fell
 * silent), or the status a failing rank reported. */
TG_API int tg_dist_mean_grads(tg_dist *d, tg_tensor *const *params, int n,
                              int64_t rows);

/* Sums v[0..n-1] (n <= TG_DIST_MAX_SUM) over the ranks, in rank order, the
 * same bits on every rank: for statistics such as an epoch's loss. */
enum { TG_DIST_MAX_SUM = 16 };
TG_API int tg_dist_sum(tg_dist *d, double *v, int n);

/* Seconds this rank has spent in exchanges since tg_dist_init (waiting for
 * slower ranks included), and the bytes it has sent. */
TG_API double tg_dist_comm_seconds(const tg_dist *d);
TG_API uint64_t tg_dist_bytes_sent(const tg_dist *d);

/* Ends this process's part of the job and frees d (NULL is a no-op and
 * returns TG_OK). Calls MPI_Finalize when tg_dist_init called MPI_Init and
 * no exchange failed; after a failure it returns TG_ESTATE instead (see the
 * top of this header). */
TG_API int tg_dist_finalize(tg_dist *d);
/* Ends every rank of the job at once (MPI_Abort with exit_code; exit in a
 * one-process job). Does not return. */
TG_API void tg_dist_abort(tg_dist *d, int exit_code);

#ifdef __cplusplus
}
#endif
#endif

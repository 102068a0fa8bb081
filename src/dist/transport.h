/* src/dist/transport.h: what the distributed API (dist.c) needs from the
 * message layer (mpi.c, built only with --with-mpi): start, point-to-point
 * exchanges with a deadline, MPI_Allreduce for comparison, the end. */
#ifndef TAPEGRAD_PRIV_TRANSPORT_H
#define TAPEGRAD_PRIV_TRANSPORT_H

#include "../base/base.h"

/* Every message starts with this header, so a receiver can tell a failure,
 * a different exchange or different shapes from the data it expected. */
enum { TG__DIST_HDR = 256, TG__DIST_WHY = 192 };
typedef struct {
  uint32_t magic;
  int32_t status; /* TG_OK, or the failure a rank reports */
  int32_t kind;   /* which exchange */
  int32_t rank;
  uint64_t seq;   /* counts exchanges: equal on every rank */
  int64_t rows;   /* tg_dist_mean_grads: the rows behind the grads */
  uint64_t hash;  /* the shapes of the tensor list */
  int64_t numel;
  int64_t n;      /* tensors in the list, or values summed */
  char why[TG__DIST_WHY];
} tg__dist_hdr;

typedef struct tg__transport tg__transport;

/* Joins the job; fills *rank and *size. TG_OK or TG_EIO with a message. */
int tg__transport_init(tg__transport **tp, int *argc, char ***argv, int *rank,
                       int *size);
/* One exchange with every other rank q: sends send[q] (slen[q] bytes; none
 * when slen[q] is 0) and receives into recv[q] (up to rcap[q] bytes; none
 * when 0), waiting at most timeout seconds. On failure: a negative status
 * and a message naming fn and the ranks not heard from; the requests still
 * open are cancelled or released. A received header of another exchange
 * than mine (kind, seq: tg_dist_fail's included) ends the wait at once: TG_OK
 * with *early = that rank (else -1), whose header the caller then reads. */
int tg__transport_exchange(tg__transport *tp, const char *fn,
                           void *const *send, const size_t *slen,
                           void *const *recv, const size_t *rcap,
                           double timeout, const tg__dist_hdr *mine,
                           int *early);
/* MPI_Allreduce(MPI_IN_PLACE, SUM) over count values: dtype 0 float,
 * 1 double, 2 int64. */
int tg__transport_allreduce(tg__transport *tp, const char *fn, void *buf,
                            int64_t count, int dtype);
/* Sends buf to every other rank and waits for the sends at most timeout. */
int tg__transport_tell_all(tg__transport *tp, const void *buf, size_t n,
                           double timeout);
/* MPI_Finalize when init called MPI_Init (clean: skipped after a failure),
 * then frees tp. */
int tg__transport_finalize(tg__transport *tp, bool clean);
void tg__transport_abort(tg__transport *tp, int code);

#endif

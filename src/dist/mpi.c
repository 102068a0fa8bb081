/* src/dist/mpi.c: the message layer of the distributed API on MPI (built
 * with --with-mpi): a private communicator that returns errors instead of
 * aborting, and exchanges of non-blocking sends and receives waited on with
 * a deadline, so a silent rank is named instead of hanging the job. */
#include <math.h>
#include <mpi.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "transport.h"

struct tg__transport {
  MPI_Comm comm;
  int rank, size;
  bool we_init;
  /* 2 per peer: receive then send; peer[k] names request k's rank */
  MPI_Request *req;
  int *peer;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int mpi_err(const char *fn, const char *what, int code, int peer) {
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(code, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", code);
  if (peer >= 0)
    return tg__err(TG_EIO, "%s: %s with rank %d failed: %s", fn, what, peer, s);
  return tg__err(TG_EIO, "%s: %s failed: %s", fn, what, s);
}

int tg__transport_init(tg__transport **tpp, int *argc, char ***argv, int *rank,
                       int *size) {
  static const char fn[] = "tg_dist_init";
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (finalized) return tg__err(TG_ESTATE, "%s: MPI has been finalized already", fn);
  tg__transport *tp = tg__calloc(1, sizeof *tp);
  if (!tp) return tg__err(TG_ENOMEM, "%s: out of memory", fn);
  if (!inited) {
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS) {
      tg__free(tp);
      return mpi_err(fn, "MPI_Init", rc, -1);
    }
    tp->we_init = true;
  }
  /* our own communicator: the program's messages never meet ours, and an
   * error returns to us instead of ending the job */
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &tp->comm);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(tp->comm, MPI_ERRORS_RETURN);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(tp->comm, &tp->rank);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_size(tp->comm, &tp->size);
  if (rc != MPI_SUCCESS) {
    mpi_err(fn, "setting up the communicator", rc, -1);
    tg__free(tp);
    return TG_EIO;
  }
  tp->req = tg__calloc(2 * (size_t)tp->size, sizeof *tp->req);
  tp->peer = tg__calloc(2 * (size_t)tp->size, sizeof *tp->peer);
  if (!tp->req || !tp->peer) {
    tg__free(tp->req);
    tg__free(tp->peer);
    tg__free(tp);
    return tg__err(TG_ENOMEM, "%s: out of memory", fn);
  }
  *rank = tp->rank, *size = tp->size;
  *tpp = tp;
  return TG_OK;
}

/* Releases what is still open after a failure: receives are cancelled;
 * sends get up to linger seconds to go out (so the others hear what this
 * rank has to say, rather than wait for it), then are left to MPI. */
static void drop(tg__transport *tp, int nreq, double linger) {
  for (int k = 0; k < nreq; k += 2)
    if (tp->req[k] != MPI_REQUEST_NULL) {
      MPI_Cancel(&tp->req[k]);
      MPI_Request_free(&tp->req[k]);
    }
  double t0 = now();
  for (bool open = true; open && now() - t0 < linger;) {
    open = false;
    for (int k = 1; k < nreq; k += 2) {
      int flag = 1;
      if (tp->req[k] != MPI_REQUEST_NULL &&
          MPI_Test(&tp->req[k], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        flag = 1; /* that peer is unreachable: nothing more to do for it */
      if (!flag) open = true;
    }
    if (open) sched_yield();
  }
  for (int k = 1; k < nreq; k += 2)
    if (tp->req[k] != MPI_REQUEST_NULL) MPI_Request_free(&tp->req[k]);
}

/* Waits for the nreq requests until the deadline; spins while messages
 * arrive, then yields the core (more ranks than cores is common in tests,
 * and a rank spinning on a core another rank needs slows both). */
static int wait_deadline(tg__transport *tp, const char *fn, int nreq, double timeout,
                         void *const *recv, const tg__dist_hdr *mine, int *early) {
  double t0 = now(), last = t0;
  int left = nreq, idle = 0;
  for (int k = 0; k < nreq; k++)
    if (tp->req[k] == MPI_REQUEST_NULL) left--;
  while (left > 0) {
    bool progress = false;
    for (int k = 0; k < nreq; k++) {
      if (tp->req[k] == MPI_REQUEST_NULL) continue;
      int flag = 0;
      MPI_Status st;
      int rc = MPI_Test(&tp->req[k], &flag, &st);
      if (rc != MPI_SUCCESS) {
        int peer = tp->peer[k];
        if (rc == MPI_ERR_TRUNCATE ||
            (MPI_Error_class(rc, &flag) == MPI_SUCCESS && flag == MPI_ERR_TRUNCATE)) {
          tg__err(TG_ESHAPE, "%s: rank %d sent more than this exchange expects "
                  "(it is in another exchange, or holds tensors of other shapes)",
                  fn, peer);
        } else {
          mpi_err(fn, k & 1 ? "sending" : "receiving", rc, peer);
        }
        drop(tp, nreq, fmin(timeout, 1.0));
        return tg_last_status();
      }
      if (flag) left--, progress = true;
      /* another exchange (tg_dist_fail's included) is known from the header
       * at once: do not wait for the rest, which may never come */
      if (flag && !(k & 1) && recv && mine) {
        tg__dist_hdr h;
        memcpy(&h, recv[k / 2], sizeof h);
        if (h.kind != mine->kind || h.seq != mine->seq) {
          *early = k / 2;
          drop(tp, nreq, fmin(timeout, 1.0));
          return TG_OK;
        }
      }
    }
    if (!left) break;
    double t = now();
    if (progress) last = t, idle = 0;
    if (t - t0 > timeout) {
      char who[256];
      size_t len = 0;
      who[0] = '\0';
      for (int k = 0; k < nreq && len < sizeof who - 16; k += 2)
        if (tp->req[k] != MPI_REQUEST_NULL || tp->req[k + 1] != MPI_REQUEST_NULL)
          len += (size_t)snprintf(who + len, sizeof who - len, "%s%d", len ? ", " : "",
                                  tp->peer[k]);
      drop(tp, nreq, 0);
      return tg__err(TG_EIO, "%s: no word from rank %s of %d within %g s (it "
                     "stopped, is stuck, or exited early)", fn, who, tp->size, timeout);
    }
    if (++idle > 64) {
      if (t - last > 0.002) {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
      } else {
        sched_yield();
      }
    }
  }
  return TG_OK;
}

int tg__transport_exchange(tg__transport *tp, const char *fn, void *const *send,
                           const size_t *slen, void *const *recv,
                           const size_t *rcap, double timeout,
                           const tg__dist_hdr *mine, int *early) {
  int nreq = 2 * tp->size;
  for (int k = 0; k < nreq; k++) tp->req[k] = MPI_REQUEST_NULL, tp->peer[k] = k / 2;
  /* the receives first, so messages land in place rather than in MPI's
   * unexpected-message queue */
  for (int q = 0; q < tp->size; q++) {
    if (q == tp->rank || !rcap[q]) continue;
    int rc = MPI_Irecv(recv[q], (int)rcap[q], MPI_BYTE, q, 7, tp->comm, &tp->req[2 * q]);
    if (rc != MPI_SUCCESS) {
      drop(tp, nreq, 0);
      return mpi_err(fn, "MPI_Irecv", rc, q);
    }
  }
  for (int i = 1; i <= tp->size; i++) {
    /* from the next rank on, so not every rank sends to rank 0 first */
    int q = (tp->rank + i) % tp->size;
    if (q == tp->rank || !slen[q]) continue;
    int rc = MPI_Isend(send[q], (int)slen[q], MPI_BYTE, q, 7, tp->comm, &tp->req[2 * q + 1]);
    if (rc != MPI_SUCCESS) {
      drop(tp, nreq, fmin(timeout, 1.0));
      return mpi_err(fn, "MPI_Isend", rc, q);
    }
  }
  *early = -1;
  return wait_deadline(tp, fn, nreq, timeout, recv, mine, early);
}

int tg__transport_allreduce(tg__transport *tp, const char *fn, void *buf,
                            int64_t count, int dtype) {
  MPI_Datatype t = dtype == 0 ? MPI_FLOAT : dtype == 1 ? MPI_DOUBLE : MPI_INT64_T;
  /* MPI counts are int: large buffers go in pieces */
  size_t es = dtype == 0 ? 4 : 8;
  for (int64_t off = 0; off < count;) {
    int64_t c = count - off > (1 << 30) ? (1 << 30) : count - off;
    int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)off * es, (int)c, t,
                           MPI_SUM, tp->comm);
    if (rc != MPI_SUCCESS) return mpi_err(fn, "MPI_Allreduce", rc, -1);
    off += c;
  }
  return TG_OK;
}

int tg__transport_tell_all(tg__transport *tp, const void *buf, size_t n,
                           double timeout) {
  int nreq = 2 * tp->size;
  for (int k = 0; k < nreq; k++) tp->req[k] = MPI_REQUEST_NULL, tp->peer[k] = k / 2;
  for (int q = 0; q < tp->size; q++)
    if (q != tp->rank)
      MPI_Isend((void *)buf, (int)n, MPI_BYTE, q, 7, tp->comm, &tp->req[2 * q + 1]);
  char keep[1024];
  snprintf(keep, sizeof keep, "%s", tg_last_error());
  int rc = wait_deadline(tp, "tg_dist_fail", nreq, timeout, NULL, NULL, NULL);
  if (rc) tg__err(tg_last_status(), "%s", keep); /* the caller's message matters more */
  return rc;
}

int tg__transport_finalize(tg__transport *tp, bool clean) {
  int rc = TG_OK;
  if (clean) {
    MPI_Comm_free(&tp->comm);
    if (tp->we_init) {
      int mrc = MPI_Finalize();
      if (mrc != MPI_SUCCESS) rc = mpi_err("tg_dist_finalize", "MPI_Finalize", mrc, -1);
    }
  }
  tg__free(tp->req);
  tg__free(tp->peer);
  tg__free(tp);
  return rc;
}

void tg__transport_abort(tg__transport *tp, int code) {
  MPI_Abort(tp->comm, code);
}

/* src/dist/dist.c: the distributed API of tapegrad/dist.h: argument checks,
 * the shape hash, packing grads into one buffer, the fixed-order reduction,
 * and the one-process job. The messages go through transport.h (MPI), which
 * a build without MPI does not have. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "transport.h"

enum { MAGIC = 0x74676473 };
enum { K_CHECK = 1, K_BARRIER, K_BCAST_HDR, K_BCAST_DATA, K_GRADS1, K_GRADS2,
       K_SUM, K_FAIL, K_MPI_REDUCE };
#if TG_HAVE_MPI
static const char *const kind_names[] = {
    "?", "tg_dist_check", "tg_dist_barrier", "tg_dist_broadcast",
    "tg_dist_broadcast (data)", "tg_dist_mean_grads", "tg_dist_mean_grads (gather)",
    "tg_dist_sum", "tg_dist_fail", "tg_dist_mean_grads (MPI_Allreduce)"};
#endif

struct tg_dist {
  int rank, size;
  bool mpi, broken;
  double timeout;
  tg_dist_reduce reduce;
  uint64_t seq;
  double comm_s;
  uint64_t bytes;
  tg__transport *tp;
  /* the exchange buffers, grown (never shrunk) to the largest list seen */
  unsigned char *sbuf, *rbuf;
  size_t scap, rcap;
  /* per peer: pointers and sizes for one exchange */
  void **send, **recv;
  size_t *slen, *rlen;
  char why[TG__DIST_WHY]; /* the failure that broke the job, for later calls */
};

#if TG_HAVE_MPI
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

#endif

static size_t elem_size(tg_dtype dt) { return dt == TG_F64 ? 8 : 4; }

/* Refuses NULL and a job an earlier failure broke. */
static int usable(const tg_dist *d, const char *fn) {
  if (!d) return tg__err(TG_EINVAL, "%s: tg_dist is NULL", fn);
  if (d->broken)
    return tg__err(TG_ESTATE, "%s: an earlier exchange failed (%s); the job "
                   "cannot go on", fn, d->why);
  return TG_OK;
}

/* Records the failure that breaks the job and returns status. */
static int broke(tg_dist *d, int status) {
  d->broken = true;
  snprintf(d->why, sizeof d->why, "%s", tg_last_error());
  return status;
}

#if TG_HAVE_MPI
/* Makes the buffers hold at least s and r bytes. Allocates only to grow. */
static int reserve(tg_dist *d, const char *fn, size_t s, size_t r) {
  if (s > d->scap) {
    unsigned char *p = tg__aligned_alloc(s);
    if (!p) return tg__err(TG_ENOMEM, "%s: out of memory for %zu bytes", fn, s);
    tg__aligned_free(d->sbuf);
    d->sbuf = p, d->scap = s;
  }
  if (r > d->rcap) {
    unsigned char *p = tg__aligned_alloc(r);
    if (!p) return tg__err(TG_ENOMEM, "%s: out of memory for %zu bytes", fn, r);
    tg__aligned_free(d->rbuf);
    d->rbuf = p, d->rcap = r;
  }
  return TG_OK;
}

static tg__dist_hdr header(const tg_dist *d, int kind, int status) {
  tg__dist_hdr h;
  memset(&h, 0, sizeof h);
  h.magic = MAGIC;
  h.status = status;
  h.kind = kind;
  h.rank = d->rank;
  h.seq = d->seq;
  return h;
}

#endif

/* The shapes of a tensor list: XXH3 over each dtype and shape, in order.
 * Writes the element count and the data bytes. NULL tensors: TG_EINVAL. */
static int list_shape(const char *fn, tg_tensor *const *ts, int n,
                      uint64_t *hash, int64_t *numel, size_t *bytes) {
  uint64_t h = XXH3_64bits_withSeed(&n, sizeof n, 0x6469737421ULL);
  int64_t total = 0;
  size_t b = 0;
  for (int i = 0; i < n; i++) {
    if (!ts[i]) return tg__err(TG_EINVAL, "%s: tensor %d of %d is NULL", fn, i, n);
    int64_t rec[2 + TG_MAX_DIMS] = {tg_tensor_dtype(ts[i]), tg_tensor_ndim(ts[i])};
    for (int k = 0; k < rec[1]; k++) rec[2 + k] = tg_tensor_dim(ts[i], k);
    h = XXH3_64bits_withSeed(rec, sizeof rec, h);
    total += tg_tensor_numel(ts[i]);
    b += (size_t)tg_tensor_numel(ts[i]) * elem_size(tg_tensor_dtype(ts[i]));
  }
  *hash = h, *numel = total, *bytes = b;
  return TG_OK;
}

#if TG_HAVE_MPI
/* What a received header says, checked against what this rank expects:
 * the peer's failure, another exchange, or other shapes. */
static int check_hdr(tg_dist *d, const char *fn, const tg__dist_hdr *h, int q,
                     int kind, bool shapes, const tg__dist_hdr *mine) {
  if (h->magic != MAGIC || h->rank != q)
    return tg__err(TG_EIO, "%s: rank %d of %d sent a message that is not "
                   "tapegrad's (another program on the communicator?)", fn, q,
                   d->size);
  if (h->status < 0) {
    char why[TG__DIST_WHY];
    snprintf(why, sizeof why, "%s", h->why);
    return tg__err(h->status, "%s: rank %d of %d failed: %s", fn, q, d->size,
                   why[0] ? why : tg_strerror(h->status));
  }
  if (h->kind != kind || h->seq != d->seq) {
    int hk = h->kind > 0 && h->kind <= K_MPI_REDUCE ? h->kind : 0;
    return tg__err(TG_ESTATE, "%s: rank %d of %d is in %s (exchange %llu) while "
                   "rank %d is in %s (exchange %llu): the ranks must make the "
                   "same calls in the same order", fn, q, d->size,
                   kind_names[hk], (unsigned long long)h->seq, d->rank,
                   kind_names[kind], (unsigned long long)d->seq);
  }
  if (shapes && (h->hash != mine->hash || h->numel != mine->numel || h->n != mine->n))
    return tg__err(TG_ESHAPE, "%s: rank %d of %d has %lld tensors of %lld "
                   "elements (shape hash %016llx), rank %d has %lld of %lld "
                   "(%016llx): every rank must pass the same dtypes and shapes",
                   fn, q, d->size, (long long)h->n, (long long)h->numel,
                   (unsigned long long)h->hash, mine->rank, (long long)mine->n,
                   (long long)mine->numel, (unsigned long long)mine->hash);
  return TG_OK;
}

/* One exchange through the transport; a failure breaks the job. mine is
 * this rank's header, against which an early answer is checked. */
static int exchange(tg_dist *d, const char *fn, const tg__dist_hdr *mine) {
  for (int q = 0; q < d->size; q++)
    if (q != d->rank) d->bytes += d->slen[q];
  int early = -1;
  int rc = tg__transport_exchange(d->tp, fn, d->send, d->slen, d->recv,
                                  d->rlen, d->timeout, mine, &early);
  if (rc) return broke(d, rc);
  if (early >= 0) {
    tg__dist_hdr h;
    memcpy(&h, d->recv[early], sizeof h);
    rc = check_hdr(d, fn, &h, early, mine->kind, false, mine);
    return broke(d, rc ? rc : tg__err(TG_EIO, "%s: rank %d of %d broke off the "
                                      "exchange", fn, early, d->size));
  }
  return TG_OK;
}

/* Every rank sends its header (and, with extra, extra bytes after it) to
 * every other; rank q's lands at d->rbuf + q * seg. */
static int all_to_all(tg_dist *d, const char *fn, const tg__dist_hdr *h,
                      const void *extra, size_t extra_n) {
  size_t seg = round64(TG__DIST_HDR + extra_n);
  int rc = reserve(d, fn, seg, seg * (size_t)d->size);
  if (rc) return broke(d, rc);
  memcpy(d->sbuf, h, sizeof *h);
  if (extra_n) memcpy(d->sbuf + TG__DIST_HDR, extra, extra_n);
  memcpy(d->rbuf + (size_t)d->rank * seg, d->sbuf, TG__DIST_HDR + extra_n);
  for (int q = 0; q < d->size; q++) {
    bool peer = q != d->rank;
    d->send[q] = d->sbuf, d->slen[q] = peer ? TG__DIST_HDR + extra_n : 0;
    d->recv[q] = d->rbuf + (size_t)q * seg, d->rlen[q] = peer ? seg : 0;
  }
  return exchange(d, fn, h);
}
#endif

/* --- setup */

tg_dist *tg_dist_init(int *argc, char ***argv) {
  static const char fn[] = "tg_dist_init";
  tg_dist *d = tg__calloc(1, sizeof *d);
  if (!d) {
    tg__err(TG_ENOMEM, "%s: out of memory", fn);
    return NULL;
  }
  d->size = 1;
  d->timeout = 60;
  const char *env = getenv("TG_DIST_TIMEOUT");
  if (env && *env) {
    char *end;
    double t = strtod(env, &end);
    if (*end || !(t > 0) || !isfinite(t)) {
      tg__err(TG_EINVAL, "%s: TG_DIST_TIMEOUT is '%s'; it must be a number of "
              "seconds > 0", fn, env);
      tg__free(d);
      return NULL;
    }
    d->timeout = t;
  }
  env = getenv("TG_DIST_REDUCE");
  if (env && *env) {
    if (!strcmp(env, "mpi")) d->reduce = TG_DIST_REDUCE_MPI;
    else if (strcmp(env, "fixed")) {
      tg__err(TG_EINVAL, "%s: TG_DIST_REDUCE is '%s'; it must be fixed or mpi", fn, env);
      tg__free(d);
      return NULL;
    }
  }
  bool launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") ||
                  getenv("PMI_RANK");
#if TG_HAVE_MPI
  if (launched) {
    if (tg__transport_init(&d->tp, argc, argv, &d->rank, &d->size)) {
      tg__free(d);
      return NULL;
    }
    d->mpi = true;
  }
#else
  (void)argc, (void)argv;
  if (launched) {
    const char *sz = getenv("OMPI_COMM_WORLD_SIZE");
    if (sz && strcmp(sz, "1")) {
      /* every process would train alone and write the same files */
      tg__err(TG_ESTATE, "%s: started by mpirun as one of %s processes, but "
              "this tapegrad was built without MPI (configure --with-mpi)", fn, sz);
      tg__free(d);
      return NULL;
    }
  }
#endif
  size_t P = (size_t)d->size;
  d->send = tg__calloc(P, sizeof *d->send);
  d->recv = tg__calloc(P, sizeof *d->recv);
  d->slen = tg__calloc(P, sizeof *d->slen);
  d->rlen = tg__calloc(P, sizeof *d->rlen);
  if (!d->send || !d->recv || !d->slen || !d->rlen) {
    tg__err(TG_ENOMEM, "%s: out of memory", fn);
    d->broken = true;
    tg_dist_finalize(d);
    return NULL;
  }
  return d;
}

int tg_dist_rank(const tg_dist *d) { return d ? d->rank : 0; }
int tg_dist_size(const tg_dist *d) { return d ? d->size : 0; }
bool tg_dist_is_mpi(const tg_dist *d) { return d && d->mpi && d->size > 1; }
double tg_dist_comm_seconds(const tg_dist *d) { return d ? d->comm_s : 0; }
uint64_t tg_dist_bytes_sent(const tg_dist *d) { return d ? d->bytes : 0; }

int tg_dist_set_timeout(tg_dist *d, double seconds) {
  if (!d) return tg__err(TG_EINVAL, "tg_dist_set_timeout: tg_dist is NULL");
  if (!(seconds > 0) || !isfinite(seconds))
    return tg__err(TG_EINVAL, "tg_dist_set_timeout: seconds is %g; it must be "
                   "finite and > 0", seconds);
  d->timeout = seconds;
  return TG_OK;
}

int tg_dist_set_reduce(tg_dist *d, tg_dist_reduce how) {
  if (!d) return tg__err(TG_EINVAL, "tg_dist_set_reduce: tg_dist is NULL");
  if (how != TG_DIST_REDUCE_FIXED && how != TG_DIST_REDUCE_MPI)
    return tg__err(TG_EINVAL, "tg_dist_set_reduce: unknown reduction %d", (int)how);
  d->reduce = how;
  return TG_OK;
}

int tg_dist_finalize(tg_dist *d) {
  if (!d) return TG_OK;
  int rc = TG_OK;
  if (d->broken && d->tp)
    rc = tg__err(TG_ESTATE, "tg_dist_finalize: not finalized, since an exchange "
                 "failed (%s); end the process with a failure status and "
                 "mpirun stops the other ranks", d->why);
#if TG_HAVE_MPI
  if (d->tp) {
    int frc = tg__transport_finalize(d->tp, !d->broken);
    if (!rc) rc = frc;
  }
#endif
  tg__aligned_free(d->sbuf);
  tg__aligned_free(d->rbuf);
  tg__free(d->send);
  tg__free(d->recv);
  tg__free(d->slen);
  tg__free(d->rlen);
  tg__free(d);
  return rc;
}

void tg_dist_abort(tg_dist *d, int exit_code) {
  fflush(NULL);
#if TG_HAVE_MPI
  if (d && d->tp) tg__transport_abort(d->tp, exit_code);
#else
  (void)d;
#endif
  exit(exit_code);
}

/* --- status */

#if TG_HAVE_MPI
/* One header from every rank, checked: the body of tg_dist_check (kind
 * K_CHECK, this rank's status and why) and of tg_dist_barrier (K_BARRIER,
 * TG_OK). In a check, a failure a rank reports is the exchange's answer,
 * not a broken job. */
static int exchange_status(tg_dist *d, const char *fn, int kind, int status,
                           const char *why) {
  double t0 = now();
  d->seq++;
  tg__dist_hdr h = header(d, kind, status);
  snprintf(h.why, sizeof h.why, "%s", why);
  int rc = all_to_all(d, fn, &h, NULL, 0);
  size_t seg = round64(TG__DIST_HDR);
  for (int q = 0; !rc && q < d->size; q++) {
    tg__dist_hdr hq;
    memcpy(&hq, d->rbuf + (size_t)q * seg, sizeof hq);
    if (kind == K_CHECK && hq.magic == MAGIC && hq.kind == K_CHECK &&
        hq.seq == d->seq && hq.status < 0) {
      char theirs[TG__DIST_WHY];
      memcpy(theirs, hq.why, sizeof theirs);
      theirs[sizeof theirs - 1] = '\0';
      rc = tg__err(hq.status, "rank %d of %d: %s", q, d->size, theirs);
      break;
    }
    if (q != d->rank && (rc = check_hdr(d, fn, &hq, q, kind, false, &h)))
      broke(d, rc);
  }
  d->comm_s += now() - t0;
  return rc;
}
#endif

int tg_dist_check(tg_dist *d, int status, const char *why) {
  static const char fn[] = "tg_dist_check";
  int rc = usable(d, fn);
  if (rc) return rc;
  if (status > 0) return tg__err(TG_EINVAL, "%s: status is %d; it must be TG_OK "
                                 "or negative", fn, status);
  char own[TG__DIST_WHY];
  snprintf(own, sizeof own, "%s", why && *why ? why : status ? tg_strerror(status) : "");
  if (!d->mpi || d->size == 1)
    return status ? tg__err(status, "rank 0 of 1: %s", own) : TG_OK;
#if TG_HAVE_MPI
  return exchange_status(d, fn, K_CHECK, status, own);
#else
  return TG_OK;
#endif
}

int tg_dist_barrier(tg_dist *d) {
  static const char fn[] = "tg_dist_barrier";
  int rc = usable(d, fn);
  if (rc || !d->mpi || d->size == 1) return rc;
#if TG_HAVE_MPI
  return exchange_status(d, fn, K_BARRIER, TG_OK, "");
#else
  return TG_OK;
#endif
}

int tg_dist_fail(tg_dist *d, int status, const char *why) {
  if (!d) return tg__err(TG_EINVAL, "tg_dist_fail: tg_dist is NULL");
  if (status >= 0) status = TG_ESTATE;
  char own[TG__DIST_WHY];
  snprintf(own, sizeof own, "%s", why && *why ? why : tg_strerror(status));
#if TG_HAVE_MPI
  if (d->mpi && d->size > 1 && !d->broken) {
    tg__dist_hdr h = header(d, K_FAIL, status);
    memcpy(h.why, own, sizeof h.why);
    /* bounded: the others may be gone already */
    tg__transport_tell_all(d->tp, &h, sizeof h, fmin(d->timeout, 5.0));
  }
#endif
  tg__err(status, "rank %d of %d: %s", d->rank, d->size, own);
  broke(d, status);
  return status;
}

/* --- broadcast */

#if TG_HAVE_MPI
static void copy_list(tg_tensor *const *ts, int n, unsigned char *buf, bool out) {
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    size_t b = (size_t)tg_tensor_numel(ts[i]) * elem_size(tg_tensor_dtype(ts[i]));
    if (!b) continue;
    if (out) memcpy(buf + off, tg_tensor_data(ts[i]), b);
    else memcpy(tg_tensor_data(ts[i]), buf + off, b);
    off += b;
  }
}

#endif

int tg_dist_broadcast(tg_dist *d, tg_tensor *const *tensors, int n) {
  static const char fn[] = "tg_dist_broadcast";
  int rc = usable(d, fn);
  if (rc) return rc;
  if (n < 0 || (n > 0 && !tensors))
    return tg__err(TG_EINVAL, "%s: n is %d with tensors %s", fn, n,
                   tensors ? "given" : "NULL");
  uint64_t hash;
  int64_t numel;
  size_t bytes;
  if ((rc = list_shape(fn, tensors, n, &hash, &numel, &bytes))) return rc;
  if (!d->mpi || d->size == 1) return TG_OK;
#if TG_HAVE_MPI
  double t0 = now();
  /* the shapes first, so no rank receives data it cannot hold */
  d->seq++;
  tg__dist_hdr h = header(d, K_BCAST_HDR, TG_OK);
  h.hash = hash, h.numel = numel, h.n = n;
  if ((rc = all_to_all(d, fn, &h, NULL, 0))) goto out;
  size_t seg = round64(TG__DIST_HDR);
  tg__dist_hdr h0;
  memcpy(&h0, d->rbuf, sizeof h0);
  for (int q = 0; q < d->size; q++) {
    tg__dist_hdr hq;
    memcpy(&hq, d->rbuf + (size_t)q * seg, sizeof hq);
    if (q != d->rank && (rc = check_hdr(d, fn, &hq, q, K_BCAST_HDR, false, &h))) {
      broke(d, rc);
      goto out;
    }
  }
  /* every rank sees every header, so all agree on the first that differs,
   * and the job stays usable (a clean finalize, for one) */
  for (int q = 1; q < d->size; q++) {
    tg__dist_hdr hq;
    memcpy(&hq, d->rbuf + (size_t)q * seg, sizeof hq);
    if ((rc = check_hdr(d, fn, &hq, q, K_BCAST_HDR, true, &h0))) goto out;
  }
  d->seq++;
  size_t len = TG__DIST_HDR + bytes;
  if ((rc = reserve(d, fn, round64(len), round64(len)))) {
    broke(d, rc);
    goto out;
  }
  h = header(d, K_BCAST_DATA, TG_OK);
  h.hash = hash, h.numel = numel, h.n = n;
  for (int q = 0; q < d->size; q++) d->slen[q] = d->rlen[q] = 0;
  if (d->rank == 0) {
    memcpy(d->sbuf, &h, sizeof h);
    copy_list(tensors, n, d->sbuf + TG__DIST_HDR, true);
    for (int q = 1; q < d->size; q++) d->send[q] = d->sbuf, d->slen[q] = len;
  } else {
    d->recv[0] = d->rbuf, d->rlen[0] = round64(len);
  }
  if ((rc = exchange(d, fn, &h))) goto out;
  if (d->rank != 0) {
    memcpy(&h0, d->rbuf, sizeof h0);
    if ((rc = check_hdr(d, fn, &h0, 0, K_BCAST_DATA, true, &h))) {
      broke(d, rc);
      goto out;
    }
    copy_list(tensors, n, d->rbuf + TG__DIST_HDR, false);
  }
out:
  d->comm_s += now() - t0;
  return rc;
#else
  return TG_OK;
#endif
}

int tg_dist_broadcast_optim(tg_dist *d, tg_optim *opt) {
  static const char fn[] = "tg_dist_broadcast_optim";
  int rc = usable(d, fn);
  if (rc) return rc;
  if (!opt) return tg__err(TG_EINVAL, "%s: optimizer is NULL", fn);
  int np = tg_optim_n_params(opt);
  /* parameters, state buffers, then steps and lr in one f64 tensor (a
   * double holds the step count exactly: it is at most 2^53) */
  int cap = 3 * np + 1;
  tg_tensor **list = tg__calloc((size_t)cap, sizeof *list);
  /* the kind changes the last tensor's shape, so an SGD and an Adam
   * optimizer over the same parameters differ in the shape hash */
  bool adam = !strcmp(tg_optim_name(opt), "adam");
  tg_tensor *extra = tg_zeros(TG_F64, TG_SHAPE(adam ? 3 : 2));
  if (!list || !extra) {
    tg__free(list);
    tg_tensor_free(extra);
    return tg__err(TG_ENOMEM, "%s: out of memory", fn);
  }
  int n = 0;
  for (int i = 0; i < np; i++) {
    tg_tensor *b1 = NULL, *b2 = NULL;
    list[n++] = tg_optim_param(opt, i);
    tg_optim_state(opt, i, &b1, &b2);
    if (b1) list[n++] = b1;
    if (b2) list[n++] = b2;
  }
  double *x = tg_tensor_f64(extra);
  x[0] = (double)tg_optim_steps(opt);
  x[1] = tg_optim_lr(opt);
  list[n++] = extra;
  rc = tg_dist_broadcast(d, list, n);
  if (!rc) rc = tg_optim_set_steps(opt, (int64_t)x[0]);
  if (!rc) rc = tg_optim_set_lr(opt, x[1]);
  tg__free(list);
  tg_tensor_free(extra);
  return rc;
}

/* --- the gradient all-reduce */

#if TG_HAVE_MPI
/* Copies the grads of ps into the buffer (dir 1) or back (dir 0): element
 * i of the list lives at seg_of(i) * seg + HDR + (i - lo(seg_of(i))) * es. */
typedef struct {
  int64_t N;
  int P;
  size_t seg, es;
} layout;

static int64_t chunk_lo(const layout *L, int q) { return L->N * q / L->P; }

static unsigned char *elem_at(const layout *L, unsigned char *base, int64_t i, int *q) {
  while (i >= chunk_lo(L, *q + 1)) ++*q;
  return base + (size_t)*q * L->seg + TG__DIST_HDR + (size_t)(i - chunk_lo(L, *q)) * L->es;
}

/* Moves the grads between the tensors and the segments, one contiguous run
 * at a time. For dir 0 the segment of rank own is read from own_base. */
static void move_grads(const layout *L, tg_tensor *const *ps, int n,
                       unsigned char *base, unsigned char *own_base, int own,
                       bool to_buf) {
  int64_t i = 0;
  int q = 0;
  for (int k = 0; k < n; k++) {
    unsigned char *g = tg_tensor_data(tg_tensor_grad(ps[k]));
    int64_t m = tg_tensor_numel(ps[k]), j = 0;
    while (j < m) {
      unsigned char *p = elem_at(L, base, i, &q);
      int64_t run = chunk_lo(L, q + 1) - i;
      if (run > m - j) run = m - j;
      if (!to_buf && q == own)
        p = own_base + (size_t)(i - chunk_lo(L, q)) * L->es;
      if (to_buf) memcpy(p, g + (size_t)j * L->es, (size_t)run * L->es);
      else memcpy(g + (size_t)j * L->es, p, (size_t)run * L->es);
      i += run, j += run;
    }
  }
}

/* out = sum over q in rank order of w[q] * in[q] (ranks with no rows
 * skipped); in[q] and out may not overlap. */
#define REDUCE(T, S)                                                          \
  static void reduce_##S(T *restrict out, T *const *in, const double *w,      \
                         const int64_t *rows, int P, int64_t m) {            \
    bool first = true;                                                        \
    for (int q = 0; q < P; q++) {                                             \
      if (!rows[q]) continue;                                                 \
      const T *x = in[q];                                                     \
      T wq = (T)w[q];                                                         \
      if (first)                                                              \
        for (int64_t i = 0; i < m; i++) out[i] = wq * x[i];                   \
      else                                                                    \
        for (int64_t i = 0; i < m; i++) out[i] += wq * x[i];                  \
      first = false;                                                          \
    }                                                                         \
  }
TG__BOTH(REDUCE)
#undef REDUCE
#endif

static int grads_list(const char *fn, tg_tensor *const *ps, int n, tg_dtype *dt) {
  if (n < 1 || !ps) return tg__err(TG_EINVAL, "%s: n is %d with params %s; it "
                                   "must be >= 1", fn, n, ps ? "given" : "NULL");
  for (int i = 0; i < n; i++) {
    if (!ps[i]) return tg__err(TG_EINVAL, "%s: params[%d] is NULL", fn, i);
    tg_dtype t = tg_tensor_dtype(ps[i]);
    if (t != TG_F32 && t != TG_F64)
      return tg__err(TG_EDTYPE, "%s: params[%d] is %s; grads are float32 or "
                     "float64", fn, i, tg_dtype_name(t));
    if (i && t != *dt)
      return tg__err(TG_EDTYPE, "%s: params[%d] is %s, params[0] %s: the grads "
                     "travel in one buffer of one dtype", fn, i, tg_dtype_name(t),
                     tg_dtype_name(*dt));
    *dt = t;
    if (!tg_tensor_grad(ps[i]))
      return tg__err(TG_ESTATE, "%s: params[%d] has no grad (tg_requires_grad)",
                     fn, i);
  }
  return TG_OK;
}

#if TG_HAVE_MPI
static int mean_fixed(tg_dist *d, const char *fn, tg_tensor *const *ps, int n,
                      int64_t rows, tg_dtype dt, uint64_t hash, int64_t N) {
  int P = d->size, r = d->rank;
  layout L = {N, P, 0, elem_size(dt)};
  int64_t maxc = (N + P - 1) / P;
  L.seg = round64(TG__DIST_HDR + (size_t)maxc * L.es);
  int rc = reserve(d, fn, L.seg * (size_t)P, L.seg * (size_t)P);
  if (rc) return broke(d, rc);
  /* phase 1, reduce-scatter: segment q of the packed grads goes to rank q,
   * which adds the P parts of its chunk in rank order */
  d->seq++;
  tg__dist_hdr h = header(d, K_GRADS1, TG_OK);
  h.rows = rows, h.hash = hash, h.numel = N, h.n = n;
  move_grads(&L, ps, n, d->sbuf, NULL, -1, true);
  for (int q = 0; q < P; q++) {
    memcpy(d->sbuf + (size_t)q * L.seg, &h, sizeof h);
    d->send[q] = d->sbuf + (size_t)q * L.seg;
    d->slen[q] = q == r ? 0 : TG__DIST_HDR + (size_t)(chunk_lo(&L, q + 1) - chunk_lo(&L, q)) * L.es;
    d->recv[q] = d->rbuf + (size_t)q * L.seg;
    d->rlen[q] = q == r ? 0 : L.seg;
  }
  if ((rc = exchange(d, fn, &h))) return rc;
  /* the rows behind every rank's grads, in a small fixed array when P is
   * small, else in the (unused) header space of the receive buffer */
  int64_t rows_small[64];
  double w_small[64];
  int64_t *rq = rows_small;
  double *w = w_small;
  void *in_small[64];
  void **in = in_small;
  if (P > 64) {
    /* rare: a job this wide pays one allocation per step for its tables */
    rq = tg__malloc((size_t)P * (sizeof *rq + sizeof *w + sizeof *in));
    if (!rq) return broke(d, tg__err(TG_ENOMEM, "%s: out of memory", fn));
    w = (double *)(rq + P);
    in = (void **)(w + P);
  }
  int64_t total = 0;
  for (int q = 0; q < P && !rc; q++) {
    tg__dist_hdr hq;
    memcpy(&hq, q == r ? (void *)&h : d->rbuf + (size_t)q * L.seg, sizeof hq);
    if (q != r && (rc = check_hdr(d, fn, &hq, q, K_GRADS1, true, &h))) break;
    if (hq.rows < 0) {
      rc = tg__err(TG_EINVAL, "%s: rank %d of %d gave rows %lld", fn, q, P,
                   (long long)hq.rows);
      break;
    }
    rq[q] = hq.rows;
    total += hq.rows;
    if (q == r) in[q] = d->sbuf + (size_t)r * L.seg + TG__DIST_HDR;
    else in[q] = d->rbuf + (size_t)q * L.seg + TG__DIST_HDR;
  }
  if (!rc && total == 0)
    rc = tg__err(TG_ERANGE, "%s: no rank has any rows; the mean of nothing is "
                 "not a gradient", fn);
  if (rc) {
    if (P > 64) tg__free(rq);
    return broke(d, rc);
  }
  for (int q = 0; q < P; q++) w[q] = (double)rq[q] / (double)total;
  /* the sum goes into this rank's own (unused) segment of the receive
   * buffer, so no input is overwritten while it is read */
  unsigned char *mine = d->rbuf + (size_t)r * L.seg;
  int64_t m = chunk_lo(&L, r + 1) - chunk_lo(&L, r);
  if (dt == TG_F32)
    reduce_f32((float *)(mine + TG__DIST_HDR), (float *const *)in, w, rq, P, m);
  else
    reduce_f64((double *)(mine + TG__DIST_HDR), (double *const *)in, w, rq, P, m);
  if (P > 64) tg__free(rq);
  /* phase 2, all-gather: each rank's summed chunk to every other */
  d->seq++;
  h = header(d, K_GRADS2, TG_OK);
  h.hash = hash, h.numel = N, h.n = n;
  memcpy(mine, &h, sizeof h);
  for (int q = 0; q < P; q++) {
    d->send[q] = mine;
    d->slen[q] = q == r ? 0 : TG__DIST_HDR + (size_t)m * L.es;
    d->recv[q] = d->sbuf + (size_t)q * L.seg;
    d->rlen[q] = q == r ? 0 : L.seg;
  }
  if ((rc = exchange(d, fn, &h))) return rc;
  for (int q = 0; q < P; q++) {
    tg__dist_hdr hq;
    memcpy(&hq, d->sbuf + (size_t)q * L.seg, sizeof hq);
    if (q != r && (rc = check_hdr(d, fn, &hq, q, K_GRADS2, true, &h))) return broke(d, rc);
  }
  move_grads(&L, ps, n, d->sbuf, mine + TG__DIST_HDR, r, false);
  return TG_OK;
}

/* The same mean through MPI_Allreduce: each rank scales its grads by its
 * share of the rows, MPI sums in an order of its choosing. */
static int mean_mpi(tg_dist *d, const char *fn, tg_tensor *const *ps, int n,
                    int64_t rows, tg_dtype dt, int64_t N) {
  layout L = {N, 1, 0, elem_size(dt)};
  L.seg = round64(TG__DIST_HDR + (size_t)N * L.es);
  int rc = reserve(d, fn, L.seg, 64);
  if (rc) return broke(d, rc);
  d->seq++;
  int64_t total = rows;
  if ((rc = tg__transport_allreduce(d->tp, fn, &total, 1, 2))) return broke(d, rc);
  if (total <= 0)
    return broke(d, tg__err(TG_ERANGE, "%s: no rank has any rows; the mean of "
                            "nothing is not a gradient", fn));
  move_grads(&L, ps, n, d->sbuf, NULL, -1, true);
  double w = (double)rows / (double)total;
  unsigned char *b = d->sbuf + TG__DIST_HDR;
  if (dt == TG_F32) {
    float *x = (float *)b, wf = (float)w;
    for (int64_t i = 0; i < N; i++) x[i] = rows ? wf * x[i] : 0;
  } else {
    double *x = (double *)b;
    for (int64_t i = 0; i < N; i++) x[i] = rows ? w * x[i] : 0;
  }
  if ((rc = tg__transport_allreduce(d->tp, fn, b, N, dt == TG_F32 ? 0 : 1)))
    return broke(d, rc);
  d->bytes += (uint64_t)N * L.es;
  move_grads(&L, ps, n, d->sbuf, NULL, -1, false);
  return TG_OK;
}
#endif

int tg_dist_mean_grads(tg_dist *d, tg_tensor *const *params, int n, int64_t rows) {
  static const char fn[] = "tg_dist_mean_grads";
  int rc = usable(d, fn);
  if (rc) return rc;
  tg_dtype dt = TG_F32;
  if ((rc = grads_list(fn, params, n, &dt))) return rc;
  if (rows < 0)
    return tg__err(TG_EINVAL, "%s: rows is %lld; it must be >= 0", fn, (long long)rows);
  uint64_t hash;
  int64_t N;
  size_t bytes;
  if ((rc = list_shape(fn, params, n, &hash, &N, &bytes))) return rc;
  if (!d->mpi || d->size == 1)
    return rows ? TG_OK
                : tg__err(TG_ERANGE, "%s: no rank has any rows; the mean of "
                          "nothing is not a gradient", fn);
#if TG_HAVE_MPI
  double t0 = now();
  rc = d->reduce == TG_DIST_REDUCE_MPI ? mean_mpi(d, fn, params, n, rows, dt, N)
                                       : mean_fixed(d, fn, params, n, rows, dt, hash, N);
  d->comm_s += now() - t0;
  return rc;
#else
  return TG_OK;
#endif
}

int tg_dist_sum(tg_dist *d, double *v, int n) {
  static const char fn[] = "tg_dist_sum";
  int rc = usable(d, fn);
  if (rc) return rc;
  if (n < 0 || n > TG_DIST_MAX_SUM || (n && !v))
    return tg__err(TG_EINVAL, "%s: n is %d with v %s; n must be in [0, %d]", fn,
                   n, v ? "given" : "NULL", TG_DIST_MAX_SUM);
  if (!d->mpi || d->size == 1) return TG_OK;
#if TG_HAVE_MPI
  double t0 = now();
  d->seq++;
  tg__dist_hdr h = header(d, K_SUM, TG_OK);
  h.n = n;
  size_t seg = round64(TG__DIST_HDR + (size_t)n * sizeof *v);
  if ((rc = all_to_all(d, fn, &h, v, (size_t)n * sizeof *v))) goto out;
  double acc[TG_DIST_MAX_SUM];
  for (int q = 0; q < d->size; q++) {
    const unsigned char *s = d->rbuf + (size_t)q * seg;
    tg__dist_hdr hq;
    memcpy(&hq, s, sizeof hq);
    if (q != d->rank && (rc = check_hdr(d, fn, &hq, q, K_SUM, false, &h))) {
      broke(d, rc);
      goto out;
    }
    if (hq.n != n) {
      rc = broke(d, tg__err(TG_ESHAPE, "%s: rank %d of %d sums %lld values, "
                            "rank %d %d", fn, q, d->size, (long long)hq.n,
                            d->rank, n));
      goto out;
    }
    for (int k = 0; k < n; k++) {
      double x;
      memcpy(&x, s + TG__DIST_HDR + (size_t)k * sizeof x, sizeof x);
      acc[k] = q ? acc[k] + x : x;
    }
  }
  memcpy(v, acc, (size_t)n * sizeof *v);
out:
  d->comm_s += now() - t0;
  return rc;
#else
  return TG_OK;
#endif
}

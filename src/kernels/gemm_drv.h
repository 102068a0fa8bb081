/* src/kernels/gemm_drv.h: the blocked GEMM driver, written once and included by
 * gemm.c for each float type, with T (the element type) and P(x) (the
 * type's prefix pasted onto x) defined.
 *
 * GotoBLAS/BLIS order: for each NC-wide column block of C and each KC-deep
 * slice of K, a KC x NC block of op(B) is packed into NR-wide micro-panels;
 * for each MC-tall row block, an MC x KC block of op(A) is packed into
 * MR-tall micro-panels; the micro-kernel then sweeps the MR x NR tiles. The
 * packing routines read A or B in whichever layout they are stored, so NN,
 * NT, TN and TT differ only there. */

/* A kernel stores alpha * (the tile's product) + beta * C, or with bias
 * non-NULL alpha * (product) + beta * bias[j] in every row: C as if it had
 * been filled with the bias rows, the same operations in the same order,
 * without the pass over C that the fill would cost. */
typedef void (*P(kern_fn))(int64_t kc, const T *a, const T *b, int64_t rsb,
                           T *c, int64_t ldc, T alpha, T beta, int m, int n,
                           const T *bias);

/* Packs a transposed B block (as pack_b with tb), faster than the plain
 * loop; NULL where there is none. */
typedef void (*P(pack_fn))(const T *B, int64_t ldb, int64_t kb, int64_t nb,
                           int nr, T *bp);

/* Packs one whole MR-row micro-panel of a non-transposed A block:
 * ap[k*mr + i] = A[i*lda + k]; NULL where there is none. */
typedef void (*P(pack_a_fn))(const T *A, int64_t lda, int64_t kb, T *ap);

typedef struct {
  P(kern_fn) fn;
  int mr, nr, kc, mc, nc;
  P(pack_fn) pack_bt;
  P(pack_a_fn) pack_an;
} P(cfg);

/* The tile of a kernel that did not fill a whole MR x NR block, or the
 * portable kernel's whole tile. Always inline: made inside each kernel,
 * for its instruction set and its tile's ldt (the small products of the
 * MNIST nets lost up to a third when the bias made it large enough for gcc
 * to call it instead). */
static inline __attribute__((always_inline)) void P(edge)(
    const T *t, int ldt, int m, int n, T *restrict c, int64_t ldc, T alpha,
    T beta, const T *restrict bias) {
  for (int i = 0; i < m; i++) {
    const T *ti = t + (int64_t)i * ldt;
    T *ci = c + i * ldc;
    if (beta == 0)
      for (int j = 0; j < n; j++) ci[j] = alpha * ti[j];
    else if (bias)
      for (int j = 0; j < n; j++) ci[j] = alpha * ti[j] + beta * bias[j];
    else
      for (int j = 0; j < n; j++) ci[j] = alpha * ti[j] + beta * ci[j];
  }
}

/* Portable micro-kernel: plain C the compiler can vectorise for whatever
 * target it builds for. */
#define GMR 4
#define GNR 8
static void P(kern_generic)(int64_t kc, const T *restrict a,
                            const T *restrict b, int64_t rsb, T *restrict c,
                            int64_t ldc, T alpha, T beta, int m, int n,
                            const T *restrict bias) {
  T acc[GMR][GNR];
  memset(acc, 0, sizeof acc);
  for (int64_t k = 0; k < kc; k++) {
    for (int i = 0; i < GMR; i++) {
      T ai = a[i];
      for (int j = 0; j < GNR; j++) acc[i][j] += ai * b[j];
    }
    a += GMR;
    b += rsb;
  }
  P(edge)(&acc[0][0], GNR, m, n, c, ldc, alpha, beta, bias);
}
#undef GMR
#undef GNR

/* count rows of n values, src and dst stepping by ss and ds: n is a
 * kernel's MR or NR, so each case is a loop of copies of known size the
 * compiler makes inline. A variable-length copy becomes a call to memcpy
 * per row, a third of a small product's time; and the switch must stay
 * outside the loop, where -O2 does not move it, or it costs as much as
 * the copies. */
static inline void P(copy_rows)(T *restrict dst, int64_t ds,
                                const T *restrict src, int64_t ss,
                                int64_t count, int n) {
#define COPY_ROWS(N)                                                   \
  for (int64_t r = 0; r < count; r++, dst += ds, src += ss)           \
    memcpy(dst, src, (size_t)(N) * sizeof(T));
  switch (n) {
    case 4: COPY_ROWS(4) break;
    case 6: COPY_ROWS(6) break;
    case 8: COPY_ROWS(8) break;
    case 12: COPY_ROWS(12) break;
    case 16: COPY_ROWS(16) break;
    case 32: COPY_ROWS(32) break;
    default: COPY_ROWS(n) break;
  }
#undef COPY_ROWS
}

/* Packs op(A)[0:mb, 0:kb] (A points at its first element) into MR-tall
 * micro-panels, ap[panel][k][i], padding the last panel with zeros. */
static void P(pack_a)(const P(cfg) *cf, bool ta, const T *restrict A,
                      int64_t lda, int64_t mb, int64_t kb, T *restrict ap) {
  const int mr = cf->mr;
  if (ta) {
    /* Row k of the stored A holds element k of every panel: read it once,
     * front to back, rather than MR values of it per panel and per pass
     * over the block's rows. */
    int64_t nfull = mb / mr * mr;
    if (nfull >= 4 * mr) {
      for (int64_t k = 0; k < kb; k++)
        P(copy_rows)(ap + k * mr, kb * mr, A + k * lda, mr, nfull / mr, mr);
    } else {
      /* Few panels: a call per row of A would copy only one or two
       * panel rows each (the MNIST W1 products lost 15% that way). */
      for (int64_t i0 = 0; i0 < nfull; i0 += mr)
        P(copy_rows)(ap + i0 * kb, mr, A + i0, lda, kb, mr);
    }
    if (nfull < mb) {
      int m = (int)(mb - nfull);
      T *pan = ap + nfull * kb;
      for (int64_t k = 0; k < kb; k++) {
        const T *src = A + k * lda + nfull;
        for (int i = 0; i < m; i++) pan[k * mr + i] = src[i];
        for (int i = m; i < mr; i++) pan[k * mr + i] = 0;
      }
    }
    return;
  }
  for (int64_t i0 = 0; i0 < mb; i0 += mr) {
    int m = mb - i0 < mr ? (int)(mb - i0) : mr;
    const T *a0 = A + i0 * lda;
    if (m == mr && cf->pack_an) {
      cf->pack_an(a0, lda, kb, ap);
    } else if (m == mr) {
      for (int64_t k = 0; k < kb; k++)
        for (int i = 0; i < mr; i++) ap[k * mr + i] = a0[i * lda + k];
    } else {
      for (int64_t k = 0; k < kb; k++) {
        for (int i = 0; i < m; i++) ap[k * mr + i] = a0[i * lda + k];
        for (int i = m; i < mr; i++) ap[k * mr + i] = 0;
      }
    }
    ap += kb * mr;
  }
}

/* Packs op(B)[0:kb, 0:nb] into NR-wide micro-panels, bp[panel][k][j],
 * padding the last panel with zeros. */
static void P(pack_b)(bool tb, const T *restrict B, int64_t ldb, int64_t kb,
                      int64_t nb, int nr, T *restrict bp) {
  int64_t j0 = 0;
  if (!tb && nb / nr >= 4) {
    /* Many panels: read each row of B once, front to back, and deal it out
     * to them, rather than a panel's width of every row per panel: a B
     * cold in memory (the K = 4096 weight gradients of the LM, where B is
     * the [4096,512] output gradient) then streams. */
    int64_t nfull = nb / nr * nr;
    for (int64_t k = 0; k < kb; k++)
      P(copy_rows)(bp + k * nr, kb * nr, B + k * ldb, nr, nfull / nr, nr);
    j0 = nfull;
    bp += nfull * kb;
  }
  for (; j0 < nb; j0 += nr) {
    int n = nb - j0 < nr ? (int)(nb - j0) : nr;
    if (!tb && n == nr) {
      P(copy_rows)(bp, nr, B + j0, ldb, kb, nr);
    } else if (!tb) {
      for (int64_t k = 0; k < kb; k++) {
        const T *src = B + k * ldb + j0;
        T *dst = bp + k * nr;
        for (int j = 0; j < n; j++) dst[j] = src[j];
        for (int j = n; j < nr; j++) dst[j] = 0;
      }
    } else {
      /* Row j of the stored B is column j of op(B): read it contiguously. */
      for (int j = 0; j < n; j++) {
        const T *src = B + (j0 + j) * ldb;
        for (int64_t k = 0; k < kb; k++) bp[k * nr + j] = src[k];
      }
      for (int j = n; j < nr; j++)
        for (int64_t k = 0; k < kb; k++) bp[k * nr + j] = 0;
    }
    bp += kb * nr;
  }
}

static inline int64_t P(min)(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t P(round_up)(int64_t a, int64_t m) {
  return (a + m - 1) / m * m;
}

/* Splits n into the fewest blocks of at most blk, of near-equal size
 * rounded up to a multiple of unit: K = 784 with KC = 256 gives four blocks
 * of 196 rather than three of 256 and a thin one of 16. */
static inline int64_t P(balanced)(int64_t n, int64_t blk, int64_t unit) {
  int64_t nblk = (n + blk - 1) / blk;
  return P(round_up)((n + nblk - 1) / nblk, unit);
}

/* Elements of packing buffer the blocked product of this shape needs. */
static size_t P(buf_elems)(const P(cfg) *cf, int64_t M, int64_t N,
                           int64_t K, int64_t *mc, int64_t *nc, int64_t *kc) {
  *kc = P(balanced)(K, cf->kc, 1);
  *mc = P(balanced)(M, cf->mc, cf->mr);
  *nc = P(balanced)(N, cf->nc, cf->nr);
  /* The B region starts on a 64-byte boundary. */
  size_t a = (size_t)P(round_up)(*mc * *kc, 64 / (int64_t)sizeof(T));
  return a + (size_t)(*nc * *kc);
}

/* How one thread runs its product. C(i,j) is C[i*rsc + j*csc]: csc is 1,
 * or the product is computed transposed (C^T = op(B)^T op(A)^T) and the
 * kernel's tiles are written back through a small buffer. With direct_b
 * (only when !tb), whole B micro-panels are read where they are stored
 * instead of being packed, which pays when few rows of A reuse them. */
typedef struct {
  bool ta, tb, direct_b;
  int64_t rsc, csc;
  /* Set when C is computed transposed: the bias (one per column of the
   * caller's C) is then one per row of the computed one. */
  bool bias_rows;
  /* When set, op(A)'s panels come from this callback (A is unused): see
   * tg__sgemm_pack_a in kernels.h. */
  tg__gemm_pack_a_fn apack;
  void *actx;
} P(plan);

#define MAX_TILE (12 * 32)

/* The blocked product on one thread, into buf (buf_elems values). */
static void P(blocked)(const P(cfg) *cf, const P(plan) *pl, int64_t mc,
                       int64_t nc, int64_t kc, int64_t M, int64_t N,
                       int64_t K, T alpha, int64_t ia, const T *A, int64_t lda,
                       const T *B, int64_t ldb, T beta, const T *bias, T *C,
                       T *buf) {
  const int mr = cf->mr, nr = cf->nr;
  const bool ta = pl->ta, tb = pl->tb;
  const int64_t rsc = pl->rsc, csc = pl->csc;
  T *ap = buf;
  T *bp = buf + P(round_up)(mc * kc, 64 / (int64_t)sizeof(T));
  _Alignas(64) T tile[MAX_TILE];
  for (int64_t jc = 0; jc < N; jc += nc) {
    int64_t nb = P(min)(nc, N - jc);
    for (int64_t pc = 0; pc < K; pc += kc) {
      int64_t kb = P(min)(kc, K - pc);
      T be = pc == 0 ? beta : 1;
      /* The bias stands in for C in the first K block only: the later
       * ones add onto what it left. */
      const T *bi = pc == 0 ? bias : NULL;
      const T *bblk = tb ? B + jc * ldb + pc : B + pc * ldb + jc;
      int64_t nfull = nb / nr * nr; /* columns in whole micro-panels */
      if (tb && cf->pack_bt)
        cf->pack_bt(bblk, ldb, kb, nb, nr, bp);
      else if (!pl->direct_b)
        P(pack_b)(tb, bblk, ldb, kb, nb, nr, bp);
      else if (nfull < nb) /* only the ragged last panel */
        P(pack_b)(tb, bblk + nfull, ldb, kb, nb - nfull, nr,
                  bp + nfull * kb);
      for (int64_t ic = 0; ic < M; ic += mc) {
        int64_t mb = P(min)(mc, M - ic);
        if (pl->apack)
          pl->apack(pl->actx, ia + ic, mb, pc, kb, mr, ap);
        else
          P(pack_a)(cf, ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda,
                    mb, kb, ap);
        for (int64_t jr = 0; jr < nb; jr += nr) {
          int n = (int)P(min)(nr, nb - jr);
          const T *b = bp + jr * kb;
          int64_t rsb = nr;
          if (pl->direct_b && jr < nfull) {
            b = bblk + jr;
            rsb = ldb;
          }
          for (int64_t ir = 0; ir < mb; ir += mr) {
            int m = (int)P(min)(mr, mb - ir);
            T *c = C + (ic + ir) * rsc + (jc + jr) * csc;
            if (csc == 1) {
              cf->fn(kb, ap + ir * kb, b, rsb, c, rsc, alpha, be, m, n,
                     bi && !pl->bias_rows ? bi + jc + jr : NULL);
              continue;
            }
            cf->fn(kb, ap + ir * kb, b, rsb, tile, nr, 1, 0, mr, nr, NULL);
            if (!bi || be == 0) {
              for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                  T *cij = c + i * rsc + j * csc;
                  T v = alpha * tile[i * nr + j];
                  *cij = be == 0 ? v : v + be * *cij;
                }
            } else {
              for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                  T old = pl->bias_rows ? bi[ic + ir + i] : bi[jc + jr + j];
                  c[i * rsc + j * csc] = alpha * tile[i * nr + j] + be * old;
                }
            }
          }
        }
      }
    }
  }
}

/* Without a packing buffer (allocation failed): correct, not fast. A row
 * of a called-back A is packed as a one-row panel, NAIVE_KB values of k at
 * a time, into a buffer on the stack. */
#define NAIVE_KB 64
static void P(naive)(const P(cfg) *cf, const P(plan) *pl, int64_t M,
                     int64_t N, int64_t K, T alpha, int64_t ia, const T *A,
                     int64_t lda, const T *B, int64_t ldb, T beta,
                     const T *bias, T *C) {
  T row[NAIVE_KB * 12];
  const int mr = cf->mr;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      T s = 0;
      for (int64_t k = 0; k < K; k++) {
        T a;
        if (pl->apack) {
          if (k % NAIVE_KB == 0)
            pl->apack(pl->actx, ia + i, 1, k, P(min)(NAIVE_KB, K - k), mr,
                      row);
          a = row[k % NAIVE_KB * mr];
        } else {
          a = pl->ta ? A[k * lda + i] : A[i * lda + k];
        }
        s += a * (pl->tb ? B[j * ldb + k] : B[k * ldb + j]);
      }
      T *c = C + i * pl->rsc + j * pl->csc;
      T old = !bias ? *c : pl->bias_rows ? bias[i] : bias[j];
      *c = beta == 0 ? alpha * s : alpha * s + beta * old;
    }
}
#undef NAIVE_KB

/* One thread's share of C, with that thread's own buffer. */
static void P(slab)(const P(cfg) *cf, const P(plan) *pl, int64_t M,
                    int64_t N, int64_t K, T alpha, int64_t ia, const T *A,
                    int64_t lda, const T *B, int64_t ldb, T beta,
                    const T *bias, T *C) {
  int64_t mc, nc, kc;
  size_t n = P(buf_elems)(cf, M, N, K, &mc, &nc, &kc);
  T *buf = gemm_buf(n * sizeof(T));
  if (!buf) {
    P(naive)(cf, pl, M, N, K, alpha, ia, A, lda, B, ldb, beta, bias, C);
    return;
  }
  P(blocked)(cf, pl, mc, nc, kc, M, N, K, alpha, ia, A, lda, B, ldb, beta,
             bias, C, buf);
}

/* A product split among threads: each takes a slab of C along its longer
 * side, in whole tiles, and runs the serial blocked product on it with its
 * own buffer: no barrier, no shared packing. */
typedef struct {
  const P(cfg) *cf;
  const P(plan) *pl;
  bool split_n;
  int64_t units, M, N, K;
  T alpha;
  const T *A;
  int64_t lda;
  const T *B;
  int64_t ldb;
  T beta;
  const T *bias;
  T *C;
} P(job);

static void P(job_part)(void *ctx, int t, int nth) {
  const P(job) *j = ctx;
  const P(cfg) *cf = j->cf;
  const P(plan) *pl = j->pl;
  int64_t u0 = j->units * t / nth, u1 = j->units * (t + 1) / nth;
  if (j->split_n) {
    int64_t j0 = u0 * cf->nr, j1 = P(min)(u1 * cf->nr, j->N);
    if (j1 > j0)
      P(slab)(cf, pl, j->M, j1 - j0, j->K, j->alpha, 0, j->A, j->lda,
              pl->tb ? j->B + j0 * j->ldb : j->B + j0, j->ldb, j->beta,
              j->bias && !pl->bias_rows ? j->bias + j0 : j->bias,
              j->C + j0 * pl->csc);
  } else {
    int64_t i0 = u0 * cf->mr, i1 = P(min)(u1 * cf->mr, j->M);
    if (i1 > i0)
      P(slab)(cf, pl, i1 - i0, j->N, j->K, j->alpha, i0,
              pl->apack ? NULL : pl->ta ? j->A + i0 : j->A + i0 * j->lda,
              j->lda, j->B, j->ldb, j->beta,
              j->bias && pl->bias_rows ? j->bias + i0 : j->bias,
              j->C + i0 * pl->rsc);
  }
}

/* With apack set, op(A) comes from it (A, lda and ta unused). */
static void P(gemm)(const P(cfg) *cf, tg__gemm_pack_a_fn apack, void *actx,
                    bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    T alpha, const T *A, int64_t lda, const T *B,
                    int64_t ldb, T beta, const T *bias, T *C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0) {
    for (int64_t i = 0; i < M; i++) {
      T *c = C + i * ldc;
      if (beta == 0)
        for (int64_t j = 0; j < N; j++) c[j] = 0;
      else if (bias)
        for (int64_t j = 0; j < N; j++) c[j] = beta * bias[j];
      else if (beta != 1)
        for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
    return;
  }
  P(plan) pl = {ta, tb, false, ldc, 1, false, apack, actx};
  /* A C narrower than one micro-panel wastes most of each tile and packs
   * all of A to use it once: compute C^T = op(B)^T op(A)^T instead, whose
   * tiles are full and whose B is A, often readable in place. (Not with a
   * called-back A, which packs only as A.) */
  if (N < cf->nr && M >= 2 * cf->nr && !apack) {
    const T *t = A;
    A = B;
    B = t;
    int64_t l = lda, d = M;
    lda = ldb;
    ldb = l;
    M = N;
    N = d;
    pl = (P(plan)){!tb, !ta, false, 1, ldc, true, NULL, NULL};
  }
  /* Packing B pays for itself over the row blocks of A that reuse it; with
   * a single short one, read B in place. */
  pl.direct_b = !pl.tb && M <= DIRECT_B_MAX_M;
  bool split_n = N / cf->nr >= M / cf->mr;
  int64_t units = split_n ? (N + cf->nr - 1) / cf->nr
                          : (M + cf->mr - 1) / cf->mr;
  int nt = gemm_threads((double)M * (double)N * (double)K, units);
  P(job) j = {cf,  &pl, split_n, units, M, N,    K,
              alpha, A, lda, B, ldb, beta, bias, C};
  tg__par_run(nt, P(job_part), &j);
}

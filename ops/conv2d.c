/* ops/conv2d.c: 2-D convolution (cross-correlation, as PyTorch's conv2d) of
 * x[N,C,H,W] with w[K,C/G,R,S] and an optional bias b[K], NCHW, in G groups.
 * Every product goes through the built-in GEMM on im2col columns; a deep
 * forward (conv2 of the CNN) as y^T = col^T w^T over a few images at once,
 * with col^T packed by the GEMM straight from x, never stored (implicit
 * GEMM: it writes and reads no column matrix).
 *
 * Per image n and group g, with P = Ho*Wo and CRS = (C/G)*R*S:
 *   col[CRS,P]  = im2col(x[n, g's channels])       (zeros where padded)
 *   y[n,g][Kg,P] = w_g[Kg,CRS] . col + b            forward
 *   dcol        = w_g^T . dy[n,g];  dx += col2im(dcol)
 *   dw_g       += dy[n,g] . col^T  (summed over n: Threads, below)
 *   db         += sum over n and P of dy
 * A 1x1 kernel with stride 1 and no padding reads x as its own column
 * matrix ([C/G, H*W] per image and group), so it needs no im2col at all.
 * Stride 1 with Wo == W (conv1 and conv2) moves each (c, r, s) row of
 * columns to and from x as one run, not one short image row at a time.
 *
 * Memory per call, from the tape's arena (nothing from the heap):
 *   nbuf buffers of x's dtype (none for the 1x1 case above), where
 *   nbuf = min(N, threads) when the batch is split over threads
 *   (N * K * P * CRS >= CONV_PAR_WORK and N >= 2) and 1 otherwise; each
 *   CRS * P elements of one image's columns (for backward, and the forward
 *   not transposed), plus, where the forward runs transposed over nb
 *   images (CRS >= CONV_T_MIN_CRS), Kg * nb * P for its product. When that
 *   same size condition holds and w needs a gradient, also min(N,
 *   CONV_DW_CHUNKS = 8) * K * CRS elements for the weight gradient's
 *   partial sums. For the CNN's conv2, x[64,32,14,14] w[64,32,5,5] pad 2
 *   in f32 on two threads (nb = 3):
 *   2 * (800 * 196 + 64 * 588) * 4 bytes = 1.5 MiB of buffers and
 *   8 * 64 * 800 * 4 = 1.6 MiB of partial sums.
 *
 * Threads: forward and the input gradient split the batch (each image's
 * work is independent, so a result never depends on the split); the GEMM
 * inside a thread then runs on that thread (the thread door refuses to
 * nest). When the batch does not split, the GEMM threads itself. The
 * weight gradient is summed over a number of chunks of images fixed by
 * the shapes (see dw_chunks), the chunks on threads and their sums added
 * in chunk order, so it too is the same on any number of threads. */
#include <limits.h>
#include <string.h>

#include "op.h"

enum { A_SH, A_SW, A_PH, A_PW, A_DH, A_DW, A_G };

/* Multiply-adds of a whole call from which splitting the batch pays: the
 * GEMM's own threshold for a second thread. */
#define CONV_PAR_WORK 4.0e6

typedef struct {
  int64_t N, C, H, W, K, R, S, Ho, Wo, G, Cg, Kg, P, CRS;
  int64_t sh, sw, ph, pw, dh, dw;
  bool direct; /* 1x1, stride 1, no padding: x is the column matrix */
  int64_t nb;  /* images per forward product, 0 for one per image */
  bool dw_tr;  /* the weight gradient's chunks summed transposed */
} geom;

/* A forward product at least this deep (C R S) runs transposed over the
 * columns of nb images: conv2 (800 deep) gains 10-15% so; conv1 (25
 * deep, 32 output channels) loses half, and stays one product per image. */
#define CONV_T_MIN_CRS 256
/* Rows (nb * P) one transposed product should have at least: three of
 * conv2's images (P = 196) measured best, against one or eight. */
#define CONV_COLS 512
/* The most elements the column matrix of one transposed product would
 * have (16 MiB of f32), were it stored: fewer images per product beyond
 * it. It is packed from x instead; the bound keeps the products, and their
 * buffers of Kg * nb * P, as they were. */
#define CONV_COL_MAX (4.0 * 1024 * 1024)

/* What forward keeps: the column buffers, nbuf of buf_elems, and
 * room for the weight gradient's nchunk partial sums of K*CRS (NULL when
 * the weight gradient goes straight into dw). */
typedef struct {
  void *buf, *part;
  int nbuf, nchunk;
} saved;

static void geom_of(const tg_node *n, geom *g) {
  const tg_tensor *x = n->in[0], *w = n->in[1];
  const int64_t *a = n->args.i;
  g->N = x->shape[0], g->C = x->shape[1], g->H = x->shape[2], g->W = x->shape[3];
  g->K = w->shape[0], g->R = w->shape[2], g->S = w->shape[3];
  g->sh = a[A_SH], g->sw = a[A_SW], g->ph = a[A_PH], g->pw = a[A_PW];
  g->dh = a[A_DH], g->dw = a[A_DW], g->G = a[A_G];
  g->Cg = g->C / g->G, g->Kg = g->K / g->G;
  g->Ho = n->out->shape[2], g->Wo = n->out->shape[3];
  g->P = g->Ho * g->Wo;
  g->CRS = g->Cg * g->R * g->S;
  g->direct = g->R == 1 && g->S == 1 && g->sh == 1 && g->sw == 1 &&
              g->ph == 0 && g->pw == 0;
  /* The GEMM's tiles are MR rows by NR >= MR columns: the chunks of the
   * weight gradient take the longer of Kg and CRS as the product's columns
   * (conv1's 25 x 32 filters: 5 -> 8% faster transposed on one thread;
   * conv2's 64 x 800 3% slower so). */
  g->dw_tr = g->CRS < g->Kg;
  g->nb = 0;
  if (!g->direct && g->P > 0 && g->CRS >= CONV_T_MIN_CRS) {
    g->nb = (CONV_COLS + g->P - 1) / g->P;
    if (g->nb > g->N) g->nb = g->N;
    while (g->nb > 1 && (double)g->nb * (double)g->P * (double)g->CRS >
                            CONV_COL_MAX)
      g->nb--;
    if (g->nb < 1) g->nb = 1;
  }
}

/* Elements of one thread's buffer: the columns of one image [CRS, P]
 * (backward's, and the forward's when not transposed) and, for the
 * transposed forward, its product [nb*P, Kg]. */
static size_t buf_elems(const geom *g) {
  return (size_t)g->CRS * (size_t)g->P +
         (g->nb ? (size_t)g->Kg * (size_t)(g->nb * g->P) : 0);
}

/* Where a thread's buffer of buf_elems keeps the transposed product. */
static char *ybuf_of(const geom *g, char *buf, size_t elem) {
  return buf && g->nb ? buf + (size_t)(g->CRS * g->P) * elem : NULL;
}

/* Threads for the batch split: 1 when it does not pay. */
static int batch_threads_want(const geom *g) {
  double work = (double)g->N * (double)g->K * (double)g->P * (double)g->CRS;
  if (g->N < 2 || work < CONV_PAR_WORK) return 1;
  int most = tg_get_num_threads();
  return g->N < most ? (int)g->N : most;
}

/* The weight gradient sums over the batch. Where splitting the batch pays
 * it is summed in this many chunks of images (fewer for a smaller batch),
 * each chunk's partial sum on a thread, and the partial sums are then added
 * in chunk order: a number of chunks fixed by the shapes alone, so the
 * result is the same on any number of threads. 0: no chunks, the images
 * summed in order straight into dw. */
#define CONV_DW_CHUNKS 8
static int dw_chunks(const geom *g) {
  double work = (double)g->N * (double)g->K * (double)g->P * (double)g->CRS;
  if (g->N < 2 || work < CONV_PAR_WORK) return 0;
  return g->N < CONV_DW_CHUNKS ? (int)g->N : CONV_DW_CHUNKS;
}

/* The output columns ow in [*lo, *hi) whose input column ow*s + off is
 * inside [0, len). */
static void valid_range(int64_t off, int64_t s, int64_t len, int64_t n,
                        int64_t *lo, int64_t *hi) {
  int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t b = len - off <= 0 ? 0 : (len - off + s - 1) / s;
  if (a > n) a = n;
  if (b > n) b = n;
  if (b < a) b = a;
  *lo = a, *hi = b;
}

/* d[i] += s[i] for i < n: col2im's long runs. On x86 eight floats (four
 * doubles) at a time where the CPU has AVX2, as the library's portable
 * build vectorizes four (two) at most; elementwise, so the same sums. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
__attribute__((target("avx2"))) static void add_run_f32_avx2(
    float *restrict d, const float *restrict s, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_add_ps(_mm256_loadu_ps(d + i),
                                          _mm256_loadu_ps(s + i)));
  for (; i < n; i++) d[i] += s[i];
}
__attribute__((target("avx2"))) static void add_run_f64_avx2(
    double *restrict d, const double *restrict s, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    _mm256_storeu_pd(d + i, _mm256_add_pd(_mm256_loadu_pd(d + i),
                                          _mm256_loadu_pd(s + i)));
  for (; i < n; i++) d[i] += s[i];
}
#define ADD_RUN_AVX2 1
#endif
#define ADD_RUN(T, S_)                                                        \
  static void add_run_##S_(T *restrict d, const T *restrict s, int64_t n) {  \
    if (ADD_RUN_FAST(S_)) {                                                  \
      add_run_##S_##_avx2(d, s, n);                                          \
      return;                                                                \
    }                                                                        \
    TG__SIMD                                                                 \
    for (int64_t i = 0; i < n; i++) d[i] += s[i];                            \
  }
#ifdef ADD_RUN_AVX2
#define ADD_RUN_FAST(S_) (tg__cpu_features() & TG__CPU_AVX2_FMA)
#else
#define ADD_RUN_FAST(S_) 0
#define add_run_f32_avx2(d, s, n) ((void)0)
#define add_run_f64_avx2(d, s, n) ((void)0)
#endif
TG__BOTH(ADD_RUN)

/* dst[i] = keep[i] ? src[i] : 0 for i < N (or, merging, only for the
 * lanes of store, the others left as they are), as bits: keep[i] and
 * store[i] are all ones or zero, so a value kept is the same bits and one
 * dropped +0. Every src[i] is read; with N a constant, loads, ands and
 * stores of vectors. */
#define PACK_SELECT_N(B, N, dst, src, keep)                                  \
  {                                                                          \
    B v_[N];                                                                 \
    memcpy(v_, src, sizeof v_);                                              \
    TG__SIMD                                                                 \
    for (int i_ = 0; i_ < (N); i_++) v_[i_] &= (keep)[i_];                   \
    memcpy(dst, v_, sizeof v_);                                              \
  }
#define PACK_MERGE_N(B, N, dst, src, keep, store)                            \
  {                                                                          \
    B v_[N], o_[N];                                                          \
    memcpy(v_, src, sizeof v_);                                              \
    memcpy(o_, dst, sizeof o_);                                              \
    TG__SIMD                                                                 \
    for (int i_ = 0; i_ < (N); i_++)                                         \
      v_[i_] = (v_[i_] & (keep)[i_]) | (o_[i_] & ~(store)[i_]);              \
    memcpy(dst, v_, sizeof v_);                                              \
  }

/* The transposed forward's A, col^T, read straight from x as the GEMM
 * packs it, so the column matrix is never stored: op(A)[i, k] for i =
 * image * P + position over the images of one product and k = (c, r, s)
 * in one group is x[n, c, oh*sh - ph + r*dh, ow*sw - pw + s*dw], 0 in the
 * padding (the values im2col writes, so the same sums). x is the first
 * image's group of channels, xoff elements into the whole tensor of xn:
 * the portable select reads values it then drops, but only inside it. */
typedef struct {
  const geom *g;
  const void *x;
  int64_t xoff, xn;
} colsrc;

/* The largest MR of a GEMM kernel (kernels.h's callback gets it); the
 * widest kernel whose column masks a panel keeps on the stack; the most
 * runs of consecutive x a panel's rows may read in to be selected run by
 * run (conv2's panels of 12 rows of 14-wide images read one, or two at a
 * change of image), rather than read row by row. */
#define PACK_MAX_MR 16
#define PACK_MAX_S 64
#define PACK_MAX_RUNS 4
#define KEEP_f32 uint32_t
#define KEEP_f64 uint64_t
#define GEMM_PACK_f32 tg__sgemm_pack_a
#define GEMM_PACK_f64 tg__dgemm_pack_a

/* count panel rows of mr values, dst and src stepping by ds and ss: in the
 * lanes of bit mask store, dst[i] = bit i of keep ? src[i] : 0 (keep is
 * within store). With AVX-512, a masked load (which reads nothing where
 * the mask is clear) and a masked store. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f"))) static void select_rows_f32_avx512(
    float *dst, int64_t ds, const float *src, int64_t ss, int64_t count,
    int mr, uint32_t keep, uint32_t store) {
  (void)mr;
  __mmask16 ld = (__mmask16)keep, st = (__mmask16)store;
  for (int64_t c = 0; c < count; c++, dst += ds, src += ss)
    _mm512_mask_storeu_ps(dst, st, _mm512_maskz_loadu_ps(ld, src));
}
__attribute__((target("avx512f"))) static void select_rows_f64_avx512(
    double *dst, int64_t ds, const double *src, int64_t ss, int64_t count,
    int mr, uint32_t keep, uint32_t store) {
  (void)mr;
  __mmask8 ld0 = (__mmask8)keep, ld1 = (__mmask8)(keep >> 8);
  __mmask8 st0 = (__mmask8)store, st1 = (__mmask8)(store >> 8);
  for (int64_t c = 0; c < count; c++, dst += ds, src += ss) {
    if (st0) _mm512_mask_storeu_pd(dst, st0, _mm512_maskz_loadu_pd(ld0, src));
    if (st1)
      _mm512_mask_storeu_pd(dst + 8, st1, _mm512_maskz_loadu_pd(ld1, src + 8));
  }
}
/* with the elementwise loops' path, so TG_SIMD=generic tests the other */
#define SELECT_AVX512 (tg__simd_path() == TG__SIMD_AVX512)
#else
#define SELECT_AVX512 0
#define select_rows_f32_avx512(...) ((void)0)
#define select_rows_f64_avx512(...) ((void)0)
#endif

#define PACK_COL(T, S_)                                                       \
  /* The portable select_rows: reads all mr values of each row of src. */     \
  static void select_rows_##S_(T *dst, int64_t ds, const T *src, int64_t ss,  \
                               int64_t count, int mr, uint32_t keep,          \
                               uint32_t store) {                              \
    KEEP_##S_ k[PACK_MAX_MR], st[PACK_MAX_MR];                                \
    for (int i = 0; i < mr; i++) {                                            \
      k[i] = (KEEP_##S_)0 - (keep >> i & 1);                                  \
      st[i] = (KEEP_##S_)0 - (store >> i & 1);                                \
    }                                                                         \
    bool all = store == (1u << mr) - 1;                                       \
    for (int64_t c = 0; c < count; c++, dst += ds, src += ss)                 \
      if (all && mr == 12)                                                    \
        PACK_SELECT_N(KEEP_##S_, 12, dst, src, k)                             \
      else if (all && mr == 6)                                                \
        PACK_SELECT_N(KEEP_##S_, 6, dst, src, k)                              \
      else if (all && mr == 4)                                                \
        PACK_SELECT_N(KEEP_##S_, 4, dst, src, k)                              \
      else if (mr == 12)                                                      \
        PACK_MERGE_N(KEEP_##S_, 12, dst, src, k, st)                          \
      else                                                                    \
        for (int i = 0; i < mr; i++)                                          \
          if (store >> i & 1) dst[i] = keep >> i & 1 ? src[i] : 0;            \
  }                                                                           \
  /* Each panel once: where its rows read (pos, relative to x and (r, s)),    \
   * which are inside x for each r and each s (bit masks), and the runs of    \
   * rows that read consecutive x (stride 1 inside an output row, or          \
   * across rows when Wo == W: conv2's case). Then for each (r, s) every      \
   * channel c of the block at once: a select of mr consecutive values per    \
   * run, or where the runs are many one read per row. */                     \
  static void pack_col_##S_(void *ctx, int64_t i0, int64_t mb, int64_t k0,    \
                            int64_t kb, int mr, void *out) {                  \
    const colsrc *cs = ctx;                                                   \
    const geom *g = cs->g;                                                    \
    const T *x = cs->x;                                                       \
    T *ap = out;                                                              \
    int64_t HW = g->H * g->W, CHW = g->C * HW, RS = g->R * g->S, k1 = k0 + kb; \
    int64_t hb[PACK_MAX_MR], wb[PACK_MAX_MR], pos[PACK_MAX_MR];               \
    int start[PACK_MAX_RUNS + 1];                                             \
    uint32_t wmask[PACK_MAX_S];                                               \
    bool avx512 = SELECT_AVX512;                                              \
    if (mr > PACK_MAX_MR) return; /* no kernel's is (kernels.h) */            \
    /* k = c*RS + rs is in [k0, k1) for c in [c0, c1), where c0 counts the    \
     * k = c*RS + rs below k0 and c1 those below k1 */                        \
    int64_t q0 = k0 / RS, e0 = k0 % RS, q1 = k1 / RS, e1 = k1 % RS;           \
    uint32_t all = (1u << mr) - 1;                                            \
    for (int64_t p0 = 0; p0 < mb; p0 += mr, ap += kb * mr) {                  \
      int m = mb - p0 < mr ? (int)(mb - p0) : mr, nrun = 0;                   \
      int64_t q = i0 + p0, n = q / g->P, p = q % g->P;                        \
      int64_t oh = p / g->Wo, ow = p % g->Wo;                                 \
      for (int i = 0; i < m; i++) {                                           \
        hb[i] = oh * g->sh - g->ph;                                           \
        wb[i] = ow * g->sw - g->pw;                                           \
        pos[i] = n * CHW + hb[i] * g->W + wb[i];                              \
        if (!i || pos[i] != pos[i - 1] + 1) {                                 \
          if (nrun < PACK_MAX_RUNS) start[nrun] = i;                          \
          nrun++;                                                             \
        }                                                                     \
        if (++ow == g->Wo) {                                                  \
          ow = 0;                                                             \
          if (++oh == g->Ho) oh = 0, n++;                                     \
        }                                                                     \
      }                                                                       \
      if (nrun <= PACK_MAX_RUNS) start[nrun] = m;                             \
      for (int64_t s = 0; s < g->S && s < PACK_MAX_S; s++) {                  \
        uint32_t bits = 0;                                                    \
        for (int i = 0; i < m; i++) {                                         \
          int64_t iw = wb[i] + s * g->dw;                                     \
          bits |= (uint32_t)(iw >= 0 && iw < g->W) << i;                      \
        }                                                                     \
        wmask[s] = bits;                                                      \
      }                                                                       \
      for (int64_t r = 0; r < g->R; r++) {                                    \
        uint32_t hmask = 0;                                                   \
        for (int i = 0; i < m; i++) {                                         \
          int64_t ih = hb[i] + r * g->dh;                                     \
          hmask |= (uint32_t)(ih >= 0 && ih < g->H) << i;                     \
        }                                                                     \
        for (int64_t s = 0; s < g->S; s++) {                                  \
          int64_t rs = r * g->S + s;                                          \
          int64_t c0 = q0 + (rs < e0), c1 = q1 + (rs < e1), cnt = c1 - c0;    \
          if (cnt <= 0) continue;                                             \
          uint32_t wm = wmask[s < PACK_MAX_S ? s : 0];                        \
          if (s >= PACK_MAX_S) {                                              \
            wm = 0;                                                           \
            for (int i = 0; i < m; i++) {                                     \
              int64_t iw = wb[i] + s * g->dw;                                 \
              wm |= (uint32_t)(iw >= 0 && iw < g->W) << i;                    \
            }                                                                 \
          }                                                                   \
          uint32_t keep = hmask & wm;                                         \
          int64_t d = r * g->dh * g->W + s * g->dw;                           \
          T *dst = ap + (c0 * RS + rs - k0) * mr;                             \
          if (!keep) {                                                        \
            for (int64_t c = 0; c < cnt; c++, dst += RS * mr)                 \
              memset(dst, 0, (size_t)mr * sizeof(T));                         \
            continue;                                                         \
          }                                                                   \
          /* run j's rows read x from off + i for row i; each run's mr      \
           * values must lie inside x (the masked AVX-512 load would read   \
           * none outside, but its address must still be x's), or the rows  \
           * are read one by one */                                          \
          bool runs = nrun <= PACK_MAX_RUNS;                                  \
          for (int j = 0; runs && j < nrun; j++) {                            \
            int64_t at = cs->xoff + c0 * HW + pos[start[j]] - start[j] + d;   \
            runs = at >= 0 && at + (cnt - 1) * HW + mr <= cs->xn;             \
          }                                                                   \
          if (!runs) {                                                        \
            for (int64_t c = c0; c < c1; c++, dst += RS * mr)                 \
              for (int i = 0; i < mr; i++)                                    \
                dst[i] = keep >> i & 1 ? x[c * HW + pos[i] + d] : 0;          \
            continue;                                                         \
          }                                                                   \
          bool first = true;                                                  \
          for (int j = 0; j < nrun; j++) {                                    \
            uint32_t lanes = (1u << start[j + 1]) - (1u << start[j]);         \
            if (!(keep & lanes)) continue;                                    \
            const T *src = x + c0 * HW + pos[start[j]] - start[j] + d;        \
            if (avx512)                                                       \
              select_rows_##S_##_avx512(dst, RS * mr, src, HW, cnt, mr,       \
                                        keep & lanes, first ? all : lanes);   \
            else                                                              \
              select_rows_##S_(dst, RS * mr, src, HW, cnt, mr, keep & lanes,  \
                               first ? all : lanes);                          \
            first = false;                                                    \
          }                                                                   \
        }                                                                     \
      }                                                                       \
    }                                                                         \
  }
TG__BOTH(PACK_COL)

#define KERNELS(T, S_)                                                        \
  /* im2col for stride 1 with rows as wide as x's (Wo == W): a (c, r, s)   \
   * row of columns is one run of x[c] at one offset, copied whole (not    \
   * in conv2's 14-wide pieces), then the entries in the padding, which    \
   * the run wrapped onto the neighbouring rows, set to zero. */           \
  static void im2col_run_##S_(const geom *g, const T *restrict x,           \
                              T *restrict col, int64_t ld) {                \
    for (int64_t r = 0; r < g->R; r++) {                                     \
      int64_t hoff = r * g->dh - g->ph, o0, o1;                              \
      valid_range(hoff, 1, g->H, g->Ho, &o0, &o1);                           \
      for (int64_t s = 0; s < g->S; s++) {                                   \
        int64_t woff = s * g->dw - g->pw, lo, hi;                            \
        valid_range(woff, 1, g->W, g->Wo, &lo, &hi);                         \
        int64_t from = o0 * g->Wo + lo, to = (o1 - 1) * g->Wo + hi;          \
        if (o0 >= o1 || lo >= hi) from = to = 0;                             \
        int64_t off = hoff * g->W + woff; /* from + off >= 0 */              \
        for (int64_t c = 0; c < g->Cg; c++) {                                \
          T *cr = col + ((c * g->R + r) * g->S + s) * ld;                    \
          memset(cr, 0, (size_t)from * sizeof(T));                           \
          memcpy(cr + from, x + c * g->H * g->W + from + off,                \
                 (size_t)(to - from) * sizeof(T));                           \
          memset(cr + to, 0, (size_t)(g->P - to) * sizeof(T));               \
          for (int64_t oh = o0; to > from && oh < o1; oh++) {                \
            T *row = cr + oh * g->Wo;                                        \
            for (int64_t ow = 0; ow < lo; ow++) row[ow] = 0;                 \
            for (int64_t ow = hi; ow < g->Wo; ow++) row[ow] = 0;             \
          }                                                                  \
        }                                                                    \
      }                                                                      \
    }                                                                        \
  }                                                                          \
  /* col[(c,r,s), (oh,ow)] = x[c, oh*sh-ph+r*dh, ow*sw-pw+s*dw], 0 outside.   \
   * x is one image's group of channels [Cg,H,W]; col's rows are ld apart,  \
   * so the columns of several images can sit side by side. */              \
  static void im2col_##S_(const geom *g, const T *restrict x,                \
                          T *restrict col, int64_t ld) {                     \
    if (g->sh == 1 && g->sw == 1 && g->Wo == g->W) {                         \
      im2col_run_##S_(g, x, col, ld);                                        \
      return;                                                                \
    }                                                                        \
    for (int64_t c = 0; c < g->Cg; c++)                                      \
      for (int64_t r = 0; r < g->R; r++)                                     \
        for (int64_t s = 0; s < g->S; s++) {                                 \
          int64_t woff = s * g->dw - g->pw, lo, hi;                          \
          valid_range(woff, g->sw, g->W, g->Wo, &lo, &hi);                   \
          const T *xc = x + c * g->H * g->W;                                 \
          T *cr = col + ((c * g->R + r) * g->S + s) * ld;                    \
          for (int64_t oh = 0; oh < g->Ho; oh++, cr += g->Wo) {              \
            int64_t ih = oh * g->sh - g->ph + r * g->dh;                     \
            if (ih < 0 || ih >= g->H) {                                      \
              memset(cr, 0, (size_t)g->Wo * sizeof(T));                      \
              continue;                                                      \
            }                                                                \
            const T *xr = xc + ih * g->W + woff;                             \
            for (int64_t ow = 0; ow < lo; ow++) cr[ow] = 0;                  \
            if (g->sw == 1)                                                  \
              memcpy(cr + lo, xr + lo, (size_t)(hi - lo) * sizeof(T));       \
            else                                                             \
              for (int64_t ow = lo; ow < hi; ow++) cr[ow] = xr[ow * g->sw];  \
            for (int64_t ow = hi; ow < g->Wo; ow++) cr[ow] = 0;              \
          }                                                                  \
        }                                                                    \
  }                                                                          \
  /* col2im for stride 1 where a row of columns is as wide as one of x    \
   * (Wo == W, as with "same" padding): then a (c, r, s) row of columns    \
   * lands on dx[c] at one offset, so it is added in one long run over all \
   * its image rows, not row by row (conv2's rows are 14 wide). The        \
   * entries that fall in the padding would wrap onto the neighbouring     \
   * row: they are zeroed first (col is scratch), so they add nothing     \
   * (but for a -0 in dx turning +0).                                      \
   * Channels innermost: a run shifted by one element over the dx the     \
   * previous run just stored stalls on store forwarding. Each dx sum is   \
   * still in the order r then s, as in the general loop. */              \
  static void col2im_run_##S_(const geom *g, T *restrict col, int64_t ld,   \
                              T *restrict dx) {                             \
    for (int64_t r = 0; r < g->R; r++) {                                     \
      int64_t hoff = r * g->dh - g->ph, o0, o1;                              \
      valid_range(hoff, 1, g->H, g->Ho, &o0, &o1);                           \
      if (o0 >= o1) continue;                                                \
      for (int64_t s = 0; s < g->S; s++) {                                   \
        int64_t woff = s * g->dw - g->pw, lo, hi;                            \
        valid_range(woff, 1, g->W, g->Wo, &lo, &hi);                         \
        if (lo >= hi) continue;                                              \
        int64_t from = o0 * g->Wo + lo, to = (o1 - 1) * g->Wo + hi;          \
        int64_t off = hoff * g->W + woff; /* from + off >= 0 */              \
        for (int64_t c = 0; c < g->Cg; c++) {                                \
          T *cr = col + ((c * g->R + r) * g->S + s) * ld;                    \
          for (int64_t oh = o0; oh < o1; oh++) {                             \
            T *row = cr + oh * g->Wo;                                        \
            for (int64_t ow = 0; ow < lo; ow++) row[ow] = 0;                 \
            for (int64_t ow = hi; ow < g->Wo; ow++) row[ow] = 0;             \
          }                                                                  \
          add_run_##S_(dx + c * g->H * g->W + from + off, cr + from,         \
                       to - from);                                           \
        }                                                                    \
      }                                                                      \
    }                                                                        \
  }                                                                          \
  /* The adjoint of im2col: dx[c, ih, iw] += dcol at every place im2col     \
   * read it from. col is scratch (col2im_run zeroes parts of it). */      \
  static void col2im_##S_(const geom *g, T *restrict col, int64_t ld,        \
                          T *restrict dx) {                                  \
    if (g->sh == 1 && g->sw == 1 && g->Wo == g->W) {                         \
      col2im_run_##S_(g, col, ld, dx);                                       \
      return;                                                                \
    }                                                                        \
    for (int64_t c = 0; c < g->Cg; c++)                                      \
      for (int64_t r = 0; r < g->R; r++)                                     \
        for (int64_t s = 0; s < g->S; s++) {                                 \
          int64_t woff = s * g->dw - g->pw, lo, hi;                          \
          valid_range(woff, g->sw, g->W, g->Wo, &lo, &hi);                   \
          T *dc = dx + c * g->H * g->W;                                      \
          const T *cr = col + ((c * g->R + r) * g->S + s) * ld;              \
          for (int64_t oh = 0; oh < g->Ho; oh++, cr += g->Wo) {              \
            int64_t ih = oh * g->sh - g->ph + r * g->dh;                     \
            if (ih < 0 || ih >= g->H) continue;                              \
            T *dr = dc + ih * g->W + woff;                                   \
            if (g->sw == 1) {                                                \
              TG__SIMD                                                       \
              for (int64_t ow = lo; ow < hi; ow++) dr[ow] += cr[ow];         \
            } else {                                                         \
              for (int64_t ow = lo; ow < hi; ow++) dr[ow * g->sw] += cr[ow]; \
            }                                                                \
          }                                                                  \
        }                                                                    \
  }                                                                          \
  /* Forward for images [n0, n1). Where the products are deep (g->nb >   \
   * 0), nb images at a time: y^T = col^T w_g^T, [m*P, CRS] . [CRS, Kg],   \
   * whose m*P rows fill the kernel's tiles and Kg columns its panels      \
   * (w_g's 64 rows in conv2 fill 5 1/3 tiles of 12), into ybuf [m*P, Kg],  \
   * then transposed into y; col^T is never stored, the GEMM packs it from \
   * x (pack_col). ybuf starts as the bias, as the per-image product adds  \
   * onto it, so each sum is the same. Otherwise one product per image and \
   * group. col: a buffer (unused when direct or transposed). */          \
  static void fwd_images_##S_(const geom *g, const T *x, const T *w,         \
                              const T *b, T *y, T *col, T *ybuf, int64_t n0, \
                              int64_t n1) {                                  \
    int64_t HW = g->H * g->W, step = g->nb ? g->nb : 1;                      \
    bool prod = g->CRS && g->Kg && g->P;                                     \
    for (int64_t n = n0; n < n1; n += step) {                                \
      int64_t m = n1 - n < step ? n1 - n : step, L = m * g->P;               \
      for (int64_t gi = 0; gi < g->G; gi++) {                                \
        const T *wg = w + gi * g->Kg * g->CRS;                               \
        if (g->nb && prod) {                                                 \
          for (int64_t q = 0; q < (b ? L : 0); q++)                          \
            memcpy(ybuf + q * g->Kg, b + gi * g->Kg,                         \
                   (size_t)g->Kg * sizeof(T));                               \
          int64_t xo = (n * g->C + gi * g->Cg) * HW;                         \
          colsrc cs = {g, x + xo, xo, g->N * g->C * HW};                     \
          GEMM_PACK_##S_(pack_col_##S_, &cs, true, L, g->Kg, g->CRS, 1, wg,  \
                         g->CRS, b ? 1 : 0, ybuf, g->Kg);                    \
          for (int64_t i = 0; i < m; i++)                                    \
            for (int64_t k = 0; k < g->Kg; k++) {                            \
              T *yk = y + ((n + i) * g->K + gi * g->Kg + k) * g->P;          \
              const T *src = ybuf + i * g->P * g->Kg + k;                    \
              for (int64_t p = 0; p < g->P; p++) yk[p] = src[p * g->Kg];     \
            }                                                                \
          continue;                                                          \
        }                                                                    \
        T *yg = y + (n * g->K + gi * g->Kg) * g->P;                          \
        if (b) /* the bias rows, then the product added onto them */         \
          for (int64_t k = 0; k < g->Kg; k++) {                              \
            T v = b[gi * g->Kg + k];                                         \
            T *yk = yg + k * g->P;                                           \
            for (int64_t p = 0; p < g->P; p++) yk[p] = v;                    \
          }                                                                  \
        else if (!prod)                                                      \
          memset(yg, 0, (size_t)(g->Kg * g->P) * sizeof(T));                 \
        if (!prod) continue;                                                 \
        const T *cm = x + (n * g->C + gi * g->Cg) * HW;                      \
        if (!g->direct) {                                                    \
          im2col_##S_(g, cm, col, g->P);                                     \
          cm = col;                                                          \
        }                                                                    \
        GEMM_##S_(false, false, g->Kg, g->P, g->CRS, 1, wg, g->CRS, cm,      \
                  g->P, b ? 1 : 0, yg, g->P);                                \
      }                                                                      \
    }                                                                        \
  }                                                                          \
  /* dx for images [n0, n1): dcol = w_g^T dy, then col2im; when direct the  \
   * product lands on dx itself. */                                          \
  static void dx_images_##S_(const geom *g, const T *w, const T *dy, T *dx,  \
                             T *col, int64_t n0, int64_t n1) {               \
    int64_t HW = g->H * g->W;                                                \
    if (!g->CRS || !g->Kg || !g->P) return;                                  \
    for (int64_t n = n0; n < n1; n++)                                        \
      for (int64_t gi = 0; gi < g->G; gi++) {                                \
        T *dxg = dx + (n * g->C + gi * g->Cg) * HW;                          \
        const T *dyg = dy + (n * g->K + gi * g->Kg) * g->P;                  \
        const T *wg = w + gi * g->Kg * g->CRS;                               \
        if (g->direct) {                                                     \
          GEMM_##S_(true, false, g->CRS, g->P, g->Kg, 1, wg, g->CRS, dyg,    \
                    g->P, 1, dxg, g->P);                                     \
        } else {                                                             \
          GEMM_##S_(true, false, g->CRS, g->P, g->Kg, 1, wg, g->CRS, dyg,    \
                    g->P, 0, col, g->P);                                     \
          col2im_##S_(g, col, g->P, dxg);                                    \
        }                                                                    \
      }                                                                      \
  }                                                                          \
  /* dw += dy . col^T over images [n0, n1) in order; with tr, into dw's    \
   * transpose, per group [CRS, Kg]: dw^T += col . dy^T (the same sums over \
   * P in the same order, so the same values). */                          \
  static void dw_images_##S_(const geom *g, const T *x, const T *dy, T *dw,  \
                             T *col, int64_t n0, int64_t n1, bool tr) {      \
    int64_t HW = g->H * g->W;                                                \
    if (!g->CRS || !g->Kg || !g->P) return;                                  \
    for (int64_t n = n0; n < n1; n++)                                        \
      for (int64_t gi = 0; gi < g->G; gi++) {                                \
        const T *dyg = dy + (n * g->K + gi * g->Kg) * g->P;                  \
        const T *cm = x + (n * g->C + gi * g->Cg) * HW;                      \
        if (!g->direct) {                                                    \
          im2col_##S_(g, cm, col, g->P);                                     \
          cm = col;                                                          \
        }                                                                    \
        if (tr)                                                              \
          GEMM_##S_(false, true, g->CRS, g->Kg, g->P, 1, cm, g->P, dyg, g->P, \
                    1, dw + gi * g->Kg * g->CRS, g->Kg);                     \
        else                                                                 \
          GEMM_##S_(false, true, g->Kg, g->CRS, g->P, 1, dyg, g->P, cm,      \
                    g->P, 1, dw + gi * g->Kg * g->CRS, g->CRS);              \
      }                                                                      \
  }                                                                          \
  /* db += the sums of dy over images and positions. */                     \
  static void db_##S_(const geom *g, const T *dy, T *db) {                   \
    for (int64_t n = 0; n < g->N; n++)                                       \
      for (int64_t k = 0; k < g->K; k++) {                                   \
        db[k] += tg__rowsum_##S_(dy + (n * g->K + k) * g->P, g->P);          \
      }                                                                      \
  }                                                                          \
  /* dw += the chunks' partial sums (dw's transpose per group when          \
   * g->dw_tr), added in chunk order. */                                     \
  static void dw_reduce_##S_(const geom *g, const T *part, int nchunk,       \
                             T *restrict dw) {                               \
    int64_t len = g->K * g->CRS;                                             \
    if (!g->dw_tr) {                                                         \
      for (int64_t i = 0; i < len; i++) {                                    \
        T s = part[i];                                                       \
        for (int ch = 1; ch < nchunk; ch++) s += part[ch * len + i];         \
        dw[i] += s;                                                          \
      }                                                                      \
      return;                                                                \
    }                                                                        \
    for (int64_t gi = 0; gi < g->G; gi++)                                    \
      for (int64_t k = 0; k < g->Kg; k++)                                    \
        for (int64_t c = 0; c < g->CRS; c++) {                               \
          int64_t i = gi * g->Kg * g->CRS + c * g->Kg + k;                   \
          T s = part[i];                                                     \
          for (int ch = 1; ch < nchunk; ch++) s += part[ch * len + i];       \
          dw[gi * g->Kg * g->CRS + k * g->CRS + c] += s;                     \
        }                                                                    \
  }
#define GEMM_f32 tg__sgemm
#define GEMM_f64 tg__dgemm
TG__BOTH(KERNELS)

/* ---- the batch split: thread t of nt takes images [N t/nt, N (t+1)/nt)
 * and column buffer t. */
typedef struct {
  const geom *g;
  const tg_node *n;
  char *buf; /* nt buffers of buf_elems */
  size_t buf_bytes;
  bool backward;
  const saved *s; /* for the weight gradient's chunks */
} job;

static void run_part(void *p, int t, int nt) {
  const job *j = p;
  const geom *g = j->g;
  const tg_node *n = j->n;
  int64_t n0 = g->N * t / nt, n1 = g->N * (t + 1) / nt;
  char *col = j->buf ? j->buf + (size_t)t * j->buf_bytes : NULL;
  char *yb = ybuf_of(g, col, tg__dtype_size(n->out->dtype));
  const tg_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
  if (!j->backward) {
    if (x->dtype == TG_F32)
      fwd_images_f32(g, x->data, w->data, b ? b->data : NULL, n->out->data,
                     (void *)col, (void *)yb, n0, n1);
    else
      fwd_images_f64(g, x->data, w->data, b ? b->data : NULL, n->out->data,
                     (void *)col, (void *)yb, n0, n1);
  } else if (x->dtype == TG_F32) {
    dx_images_f32(g, w->data, n->out->grad, tg__gin(n, 0), (void *)col, n0,
                  n1);
  } else {
    dx_images_f64(g, w->data, n->out->grad, tg__gin(n, 0), (void *)col, n0,
                  n1);
  }
}

/* Runs the batch on up to nbuf threads (those the door grants). */
static void run_batch(const geom *g, const tg_node *n, void *buf, int nbuf,
                      bool backward) {
  int nt = nbuf > 1 ? tg__par_threads(nbuf) : 1;
  if (nt > nbuf) nt = nbuf;
  job j = {g, n, buf, buf_elems(g) * tg__dtype_size(n->out->dtype), backward,
           NULL};
  tg__par_run(nt, run_part, &j);
}

/* Thread t of nt takes chunks t, t + nt, ... of the weight gradient, each
 * summed from zero into its own partial sum, with column buffer t. */
static void dw_part(void *p, int t, int nt) {
  const job *j = p;
  const geom *g = j->g;
  const tg_node *n = j->n;
  const saved *s = j->s;
  const tg_tensor *x = n->in[0];
  size_t len = (size_t)(g->K * g->CRS), elem = tg__dtype_size(x->dtype);
  char *col = j->buf ? j->buf + (size_t)t * j->buf_bytes : NULL;
  for (int c = t; c < s->nchunk; c += nt) {
    int64_t n0 = g->N * c / s->nchunk, n1 = g->N * (c + 1) / s->nchunk;
    char *part = (char *)s->part + (size_t)c * len * elem;
    memset(part, 0, len * elem);
    if (x->dtype == TG_F32)
      dw_images_f32(g, x->data, n->out->grad, (float *)part, (void *)col,
                    n0, n1, g->dw_tr);
    else
      dw_images_f64(g, x->data, n->out->grad, (double *)part,
                    (void *)col, n0, n1, g->dw_tr);
  }
}

static void weight_grad(const geom *g, const tg_node *n, const saved *s,
                        void *dw) {
  const tg_tensor *x = n->in[0];
  bool f32 = x->dtype == TG_F32;
  if (!s->part) {
    if (f32)
      dw_images_f32(g, x->data, n->out->grad, dw, s->buf, 0, g->N, false);
    else
      dw_images_f64(g, x->data, n->out->grad, dw, s->buf, 0, g->N, false);
    return;
  }
  int most = g->direct || s->nchunk < s->nbuf ? s->nchunk : s->nbuf;
  int nt = most > 1 ? tg__par_threads(most) : 1;
  if (nt > most) nt = most;
  job j = {g, n, s->buf, buf_elems(g) * tg__dtype_size(x->dtype), true, s};
  tg__par_run(nt, dw_part, &j);
  if (f32)
    dw_reduce_f32(g, s->part, s->nchunk, dw);
  else
    dw_reduce_f64(g, s->part, s->nchunk, dw);
}

static int forward(tg_tape *t, tg_node *n) {
  geom g;
  geom_of(n, &g);
  /* The buffers are sized by the shapes and the thread setting alone (not
   * by what the door grants this time), so every step of a training loop
   * takes the same arena memory. */
  int nbuf = g.direct ? 0 : batch_threads_want(&g);
  saved *s = tg__arena_alloc(t, sizeof *s);
  if (!s) return tg__err(TG_ENOMEM, "tg_conv2d: out of memory");
  s->nbuf = nbuf;
  s->buf = NULL;
  size_t elem = tg__dtype_size(n->out->dtype);
  if (nbuf && g.CRS && g.P) {
    /* nb * CRS * P <= CONV_COL_MAX unless nb <= 1, and Kg * nb * P is at
     * most y's size, so only CRS * P itself can overflow */
    if ((uint64_t)g.CRS > SIZE_MAX / 4 / (size_t)g.P / elem / (size_t)nbuf)
      return tg__err(TG_ENOMEM, "tg_conv2d: column buffers too large");
    s->buf = tg__arena_alloc(t, (size_t)nbuf * buf_elems(&g) * elem);
    if (!s->buf)
      return tg__err(TG_ENOMEM,
                     "tg_conv2d: out of memory for %d column buffer(s) of "
                     "%lld x %lld", nbuf, (long long)g.CRS, (long long)g.P);
  }
  /* the weight gradient's partial sums, when backward will want them */
  s->nchunk = dw_chunks(&g);
  s->part = NULL;
  if (tg__recorded(n) && (n->in[1]->flags & TG__NEEDS_GRAD) && s->nchunk &&
      g.K && g.CRS) {
    if ((uint64_t)g.K > SIZE_MAX / (size_t)g.CRS / elem / (size_t)s->nchunk)
      return tg__err(TG_ENOMEM, "tg_conv2d: weight gradient buffers too large");
    s->part = tg__arena_alloc(t, (size_t)s->nchunk * (size_t)(g.K * g.CRS) * elem);
    if (!s->part)
      return tg__err(TG_ENOMEM, "tg_conv2d: out of memory for %d partial "
                     "weight gradients of %lld x %lld", s->nchunk,
                     (long long)g.K, (long long)g.CRS);
  }
  n->saved = s;
  int par = g.direct ? batch_threads_want(&g) : nbuf;
  run_batch(&g, n, s->buf, par, false);
  return TG_OK;
}

static void backward(const tg_node *n) {
  const saved *s = n->saved;
  geom g;
  geom_of(n, &g);
  if (tg__gin(n, 0))
    run_batch(&g, n, s->buf, g.direct ? batch_threads_want(&g) : s->nbuf,
              true);
  void *dw = tg__gin(n, 1), *db = tg__gin(n, 2);
  if (dw) weight_grad(&g, n, s, dw);
  if (db) {
    if (n->out->dtype == TG_F32)
      db_f32(&g, n->out->grad, db);
    else
      db_f64(&g, n->out->grad, db);
  }
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  const tg_tensor *x = in[0], *w = in[1], *b = in[2];
  char sx[96], sw[96], sb[96];
  const int64_t *v = a->i;
  if (x->ndim != 4)
    return tg__err(TG_ESHAPE, "%s: x must be 4-D [N,C,H,W]: x is %s, w is %s",
                   fn, tg__shape_str(x, sx), tg__shape_str(w, sw));
  if (w->ndim != 4)
    return tg__err(TG_ESHAPE,
                   "%s: w must be 4-D [K,C/groups,R,S]: x is %s, w is %s", fn,
                   tg__shape_str(x, sx), tg__shape_str(w, sw));
  tg__shape_str(x, sx);
  tg__shape_str(w, sw);
  if (v[A_SH] < 1 || v[A_SW] < 1 || v[A_SH] > INT_MAX || v[A_SW] > INT_MAX)
    return tg__err(TG_EINVAL, "%s: stride %lldx%lld; each must be >= 1 (x is "
                   "%s, w is %s)", fn, (long long)v[A_SH], (long long)v[A_SW],
                   sx, sw);
  if (v[A_PH] < 0 || v[A_PW] < 0 || v[A_PH] > INT_MAX || v[A_PW] > INT_MAX)
    return tg__err(TG_EINVAL, "%s: padding %lldx%lld; each must be >= 0 (x is "
                   "%s, w is %s)", fn, (long long)v[A_PH], (long long)v[A_PW],
                   sx, sw);
  if (v[A_DH] < 1 || v[A_DW] < 1 || v[A_DH] > INT_MAX || v[A_DW] > INT_MAX)
    return tg__err(TG_EINVAL, "%s: dilation %lldx%lld; each must be >= 1 (x "
                   "is %s, w is %s)", fn, (long long)v[A_DH],
                   (long long)v[A_DW], sx, sw);
  int64_t G = v[A_G];
  if (G < 1 || G > INT_MAX)
    return tg__err(TG_EINVAL, "%s: groups %lld; it must be >= 1 (x is %s, w "
                   "is %s)", fn, (long long)G, sx, sw);
  int64_t C = x->shape[1], K = w->shape[0];
  if (C % G)
    return tg__err(TG_ESHAPE, "%s: x's channels C = %lld do not divide by "
                   "groups %lld: x is %s, w is %s", fn, (long long)C,
                   (long long)G, sx, sw);
  if (K % G)
    return tg__err(TG_ESHAPE, "%s: w's output channels K = %lld do not divide "
                   "by groups %lld: x is %s, w is %s", fn, (long long)K,
                   (long long)G, sx, sw);
  if (w->shape[1] != C / G)
    return tg__err(TG_ESHAPE, "%s: w's second dimension must be C/groups = "
                   "%lld: x is %s, w is %s, groups %lld", fn,
                   (long long)(C / G), sx, sw, (long long)G);
  if (w->shape[2] < 1 || w->shape[3] < 1)
    return tg__err(TG_ESHAPE, "%s: an empty kernel: w is %s", fn, sw);
  if (b && (b->ndim != 1 || b->shape[0] != K))
    return tg__err(TG_ESHAPE, "%s: b is %s; for w of %s it must be [%lld]", fn,
                   tg__shape_str(b, sb), sw, (long long)K);
  /* Every term fits in int64: dims are below 2^60 (a tensor's numel is),
   * the arguments below 2^31. */
  int64_t span_h = v[A_DH] * (w->shape[2] - 1) + 1,
          span_w = v[A_DW] * (w->shape[3] - 1) + 1;
  int64_t room_h = x->shape[2] + 2 * v[A_PH], room_w = x->shape[3] + 2 * v[A_PW];
  if (span_h > room_h || span_w > room_w)
    return tg__err(TG_ESHAPE, "%s: the kernel is larger than the padded input: "
                   "x is %s, w is %s, padding %lldx%lld, dilation %lldx%lld "
                   "(a kernel span of %lldx%lld over %lldx%lld)", fn, sx, sw,
                   (long long)v[A_PH], (long long)v[A_PW], (long long)v[A_DH],
                   (long long)v[A_DW], (long long)span_h, (long long)span_w,
                   (long long)room_h, (long long)room_w);
  out->ndim = 4;
  out->shape[0] = x->shape[0];
  out->shape[1] = K;
  out->shape[2] = (room_h - span_h) / v[A_SH] + 1;
  out->shape[3] = (room_w - span_w) / v[A_SW] + 1;
  return TG_OK;
}

/* args: stride h, w; padding h, w; dilation h, w; groups. A bias of ndim
 * -1 is left out. */
#define CONV(n, c, h, w_, k, r, s, nb, sh, sw, ph, pw, dh, dw, g)           \
  {.ndim = {4, 4, nb},                                                       \
   .shape = {{n, c, h, w_}, {k, (c) / (g), r, s}, {k}},                      \
   .args = {.i = {sh, sw, ph, pw, dh, dw, g}}}
#define BAD(nx, sx_, nw, sw_, nb, sb_, sh, sw, ph, pw, dh, dw, g, st, m)    \
  {.ndim = {nx, nw, nb}, .shape = {sx_, sw_, sb_},                           \
   .args = {.i = {sh, sw, ph, pw, dh, dw, g}}, .status = st, .msg = m}
#define SH4(a, b, c, d) {a, b, c, d}
#define SH3(a, b, c) {a, b, c}
#define SH1(a) {a}
static const tg_opcase cases[] = {
    /* valid, stride 1, bias, N=1, even */
    CONV(1, 1, 4, 4, 1, 3, 3, 1, 1, 1, 0, 0, 1, 1, 1),
    /* padding 1, N=2, odd sizes, several channels */
    CONV(2, 3, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
    /* stride 2, groups 2, no bias, even */
    CONV(1, 2, 6, 6, 4, 3, 3, -1, 2, 2, 1, 1, 1, 1, 2),
    /* non-square kernel and strides, padding 2 on one side only */
    CONV(2, 2, 7, 5, 2, 2, 3, 1, 2, 1, 2, 0, 1, 1, 1),
    /* dilation 2, padding 2 */
    CONV(1, 2, 7, 7, 3, 3, 3, -1, 1, 1, 2, 2, 2, 2, 1),
    /* dilation 2x1, stride 2, groups 2, N=2, odd width */
    CONV(2, 4, 6, 5, 2, 3, 2, 1, 2, 2, 1, 1, 2, 1, 2),
    /* 1x1, stride 1, no padding: no im2col; with groups and without */
    CONV(2, 4, 3, 3, 6, 1, 1, 1, 1, 1, 0, 0, 1, 1, 2),
    CONV(1, 3, 2, 5, 2, 1, 1, -1, 1, 1, 0, 0, 1, 1, 1),
    /* 1x1 with stride 2 does need it */
    CONV(1, 2, 5, 5, 3, 1, 1, 1, 2, 2, 0, 0, 1, 1, 1),
    /* a kernel larger than the input, inside the padding */
    CONV(1, 1, 2, 3, 2, 3, 3, 1, 1, 1, 2, 2, 1, 1, 1),
    /* stride 2 unpadded, N=2, even by odd */
    CONV(2, 1, 6, 7, 2, 3, 2, -1, 2, 2, 0, 0, 1, 1, 1),
    /* stride 1 with rows as wide as x's (col2im's long runs): unequal
     * padding, a wide kernel; and in groups with dilation */
    CONV(2, 2, 5, 6, 2, 3, 5, 1, 1, 1, 1, 2, 1, 1, 1),
    CONV(1, 4, 5, 6, 4, 2, 3, -1, 1, 1, 1, 2, 2, 2, 2),
    /* C R S >= 256, the forward's columns packed from x: stride 2x1 with
     * padding; and in groups with dilation 2x1 and stride 1x2 */
    CONV(1, 16, 5, 4, 1, 4, 4, 1, 2, 1, 2, 1, 1, 1, 1),
    CONV(1, 32, 5, 6, 4, 4, 4, -1, 1, 2, 1, 1, 2, 1, 2),
    /* no input channels: the bias alone (empty results: tests/test_nn.c) */
    {.ndim = {4, 4, 1}, .shape = {{1, 0, 4, 4}, {2, 0, 3, 3}, {2}},
     .args = {.i = {1, 1, 1, 1, 1, 1, 1}}},
    /* bad input */
    BAD(3, SH3(1, 4, 4), 4, SH4(1, 1, 3, 3), -1, SH1(1), 1, 1, 0, 0, 1, 1, 1,
        TG_ESHAPE, "x must be 4-D [N,C,H,W]: x is [1,4,4], w is [1,1,3,3]"),
    BAD(4, SH4(1, 1, 4, 4), 3, SH3(1, 3, 3), -1, SH1(1), 1, 1, 0, 0, 1, 1, 1,
        TG_ESHAPE, "w must be 4-D [K,C/groups,R,S]: x is [1,1,4,4], w is [1,3,3]"),
    BAD(4, SH4(1, 3, 4, 4), 4, SH4(2, 1, 3, 3), -1, SH1(1), 1, 1, 0, 0, 1, 1, 2,
        TG_ESHAPE, "C = 3 do not divide by groups 2: x is [1,3,4,4], w is [2,1,3,3]"),
    BAD(4, SH4(1, 2, 4, 4), 4, SH4(3, 1, 3, 3), -1, SH1(1), 1, 1, 0, 0, 1, 1, 2,
        TG_ESHAPE, "K = 3 do not divide by groups 2: x is [1,2,4,4], w is [3,1,3,3]"),
    BAD(4, SH4(1, 2, 4, 4), 4, SH4(2, 1, 3, 3), -1, SH1(1), 1, 1, 0, 0, 1, 1, 1,
        TG_ESHAPE, "must be C/groups = 2: x is [1,2,4,4], w is [2,1,3,3], groups 1"),
    BAD(4, SH4(1, 1, 4, 4), 4, SH4(2, 1, 3, 3), 1, SH1(3), 1, 1, 0, 0, 1, 1, 1,
        TG_ESHAPE, "b is [3]; for w of [2,1,3,3] it must be [2]"),
    BAD(4, SH4(1, 1, 4, 4), 4, SH4(2, 1, 3, 3), 2, SH3(2, 1, 1), 1, 1, 0, 0, 1,
        1, 1, TG_ESHAPE, "b is [2,1]"),
    BAD(4, SH4(1, 1, 4, 4), 4, SH4(1, 1, 3, 3), -1, SH1(1), 0, 1, 0, 0, 1, 1, 1,
        TG_EINVAL, "stride 0x1; each must be >= 1 (x is [1,1,4,4], w is [1,1,3,3])"),
    BAD(4, SH4(1, 1, 4, 4), 4, SH4(1, 1, 3, 3), -1, SH1(1), 1, -2, 0, 0, 1, 1, 1,
        TG_EINVAL, "stride 1x-2"),
    BAD(4, SH4(1, 1, 4, 4), 4, SH4(1, 1, 3, 3), -1, SH1(1), 1, 1, 0, 0, 1, 0, 1,
        TG_EINVAL, "dilation 1x0; each must be >= 1"),
    BAD(4, SH4(1, 1, 4, 4), 4, SH4(1, 1, 3, 3), -1, SH1(1), 1, 1, -1, 0, 1, 1, 1,
        TG_EINVAL, "padding -1x0; each must be >= 0"),
    BAD(4, SH4(1, 1, 4, 4), 4, SH4(1, 1, 3, 3), -1, SH1(1), 1, 1, 0, 0, 1, 1, 0,
        TG_EINVAL, "groups 0; it must be >= 1"),
    BAD(4, SH4(1, 1, 2, 4), 4, SH4(1, 1, 3, 3), -1, SH1(1), 1, 1, 0, 0, 1, 1, 1,
        TG_ESHAPE, "the kernel is larger than the padded input: x is [1,1,2,4], "
                   "w is [1,1,3,3], padding 0x0"),
    /* dilated: a span of 5 over 4 */
    BAD(4, SH4(1, 1, 4, 4), 4, SH4(1, 1, 3, 3), -1, SH1(1), 1, 1, 0, 0, 2, 2, 1,
        TG_ESHAPE, "dilation 2x2 (a kernel span of 5x5 over 4x4)"),
};

const tg_opdef tg__op_conv2d = {
    .name = "conv2d", .n_in = 3, .in_names = {"x", "w", "b"},
    .flags = TG__IN_OPT(2), .rule = rule, .forward = forward,
    .backward = backward, TG__CASES(cases)};

tg_tensor *tg_conv2d(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b,
                     int stride_h, int stride_w, int pad_h, int pad_w,
                     int dil_h, int dil_w, int groups) {
  tg_opargs a = {.i = {stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups}};
  return TG__APPLY(t, conv2d, &a, x, w, b);
}

/* src/kernels/gemm_kern.h: the SIMD micro-kernel, written once and included by
 * gemm.c for each (instruction set, float type) pair. It computes one
 * KMR x (2*KVL) tile of C from a packed A micro-panel (a[k*KMR + i]) and a
 * B micro-panel whose rows are rsb apart (b[k*rsb + j], 2*KVL valid values
 * per row), keeping the whole tile in registers.
 *
 * The includer defines: KNAME, KTARGET, KT (element type), KV (vector type),
 * KVL (lanes), KMR, KROWS(X) (X(0) ... X(KMR-1)), KZERO(), KLOAD(p),
 * KSTORE(p, v), KBCAST(p), KFMA(a, b, c) = a*b + c, KMUL(a, b), KSET1(x) and
 * KEDGE (the scalar edge store for KT). */

KTARGET static void KNAME(int64_t kc, const KT *restrict a,
                          const KT *restrict b, int64_t rsb, KT *restrict c,
                          int64_t ldc, KT alpha, KT beta, int m, int n,
                          const KT *restrict bias) {
#define KDECL(r) KV c##r##0 = KZERO(), c##r##1 = KZERO();
  KROWS(KDECL)
#undef KDECL
  /* C is touched only after the K loop: start fetching its rows now. */
#define KPF(r)                                             \
  if ((r) < m) {                                           \
    __builtin_prefetch(c + (r) * ldc, 1, 3);               \
    __builtin_prefetch(c + (r) * ldc + 2 * KVL - 1, 1, 3); \
  }
  KROWS(KPF)
#undef KPF
  /* With a bias, beta multiplies it in place of C: the same two vectors
   * for every row (see kern_fn). */
#define KOLD(r, h) \
  (bias ? (h) == 0 ? vbias0 : vbias1 : KLOAD(c + (r) * ldc + (h) * KVL))
#define KROW(r, o)                                                   \
  {                                                                  \
    KV ar = KBCAST(a + (o) * KMR + (r));                             \
    c##r##0 = KFMA(ar, b0, c##r##0);                                 \
    c##r##1 = KFMA(ar, b1, c##r##1);                                 \
  }
#define KROW0(r) KROW(r, 0)
#define KROW1(r) KROW(r, 1)
#define KROW2(r) KROW(r, 2)
#define KROW3(r) KROW(r, 3)
#define KSTEP(o, ROWX)                                               \
  {                                                                  \
    const KT *bo = b + (o) * rsb;                                    \
    KV b0 = KLOAD(bo), b1 = KLOAD(bo + KVL);                         \
    KROWS(ROWX)                                                      \
  }
  int64_t k = 0;
  /* Unrolled by four: the loop overhead is then small beside the FMAs. */
  for (; k + 4 <= kc; k += 4) {
    KSTEP(0, KROW0)
    KSTEP(1, KROW1)
    KSTEP(2, KROW2)
    KSTEP(3, KROW3)
    a += 4 * KMR;
    b += 4 * rsb;
  }
  for (; k < kc; k++) {
    KSTEP(0, KROW0)
    a += KMR;
    b += rsb;
  }
#undef KSTEP
#undef KROW
#undef KROW0
#undef KROW1
#undef KROW2
#undef KROW3
  KV va = KSET1(alpha);
  if (m == KMR && n == 2 * KVL) {
    if (beta == 0) {
      /* beta 0 must not read C: it may hold NaN garbage. */
#define KST(r)                                       \
  KSTORE(c + (r) * ldc, KMUL(va, c##r##0));          \
  KSTORE(c + (r) * ldc + KVL, KMUL(va, c##r##1));
      KROWS(KST)
#undef KST
    } else if (bias) {
      KV vb = KSET1(beta), vbias0 = KLOAD(bias), vbias1 = KLOAD(bias + KVL);
#define KST(r)                                                              \
  KSTORE(c + (r) * ldc, KFMA(vb, vbias0, KMUL(va, c##r##0)));               \
  KSTORE(c + (r) * ldc + KVL, KFMA(vb, vbias1, KMUL(va, c##r##1)));
      KROWS(KST)
#undef KST
    } else {
      KV vb = KSET1(beta);
#define KST(r)                                                              \
  KSTORE(c + (r) * ldc,                                                     \
         KFMA(vb, KLOAD(c + (r) * ldc), KMUL(va, c##r##0)));                \
  KSTORE(c + (r) * ldc + KVL,                                               \
         KFMA(vb, KLOAD(c + (r) * ldc + KVL), KMUL(va, c##r##1)));
      KROWS(KST)
#undef KST
    }
  } else if (n == 2 * KVL) {
    /* A tile of fewer rows but whole ones (conv1's 32 filters leave 8 of
     * 12): the full tile's stores, row by row, rather than the scalar
     * edge. */
    if (beta == 0) {
#define KST(r)                                        \
  if ((r) < m) {                                      \
    KSTORE(c + (r) * ldc, KMUL(va, c##r##0));         \
    KSTORE(c + (r) * ldc + KVL, KMUL(va, c##r##1));   \
  }
      KROWS(KST)
#undef KST
    } else {
      KV vb = KSET1(beta);
      KV vbias0 = bias ? KLOAD(bias) : KZERO();
      KV vbias1 = bias ? KLOAD(bias + KVL) : KZERO();
#define KST(r)                                                              \
  if ((r) < m) {                                                            \
    KSTORE(c + (r) * ldc, KFMA(vb, KOLD(r, 0), KMUL(va, c##r##0)));         \
    KSTORE(c + (r) * ldc + KVL, KFMA(vb, KOLD(r, 1), KMUL(va, c##r##1)));   \
  }
      KROWS(KST)
#undef KST
    }
  } else {
    _Alignas(64) KT t[KMR * 2 * KVL];
#define KST(r)                                  \
  KSTORE(t + (r) * 2 * KVL, c##r##0);           \
  KSTORE(t + (r) * 2 * KVL + KVL, c##r##1);
    KROWS(KST)
#undef KST
    KEDGE(t, 2 * KVL, m, n, c, ldc, alpha, beta, bias);
  }
#undef KOLD
}

/* Each inclusion defines one kernel; its parameters end here. */
#undef KZERO
#undef KLOAD
#undef KSTORE
#undef KBCAST
#undef KFMA
#undef KMUL
#undef KSET1
#undef KNAME
#undef KT
#undef KV
#undef KVL
#undef KEDGE

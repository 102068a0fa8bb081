/* src/gemm.c: the built-in matrix product for both float types, in the
 * three layouts the forward and backward passes need (NN, NT, TN), without
 * materialising a transpose. Loops are ordered so the innermost one runs
 * over contiguous memory and vectorises. */
#include "internal.h"

#define PAR_THRESHOLD (1L << 18) /* multiply-adds below which one thread is faster */

#define DEF_GEMM(T, S)                                                        \
  void tg__##S##gemm(      bool ta, bool tb, int64_t M, int64_t N, int64_t K, \
                          T alpha, const T *A, int64_t lda, const T *B,       \
                          int64_t ldb, T beta, T *C, int64_t ldc) {           \
    long work = (long)(M * N * K);                                            \
    (void)work;                                                               \
    _Pragma("omp parallel for if (work > PAR_THRESHOLD) schedule(static)")    \
    for (int64_t i = 0; i < M; i++) {                                         \
      T *c = C + i * ldc;                                                     \
      if (beta == 0)                                                          \
        for (int64_t j = 0; j < N; j++) c[j] = 0;                             \
      else if (beta != 1)                                                     \
        for (int64_t j = 0; j < N; j++) c[j] *= beta;                         \
      if (!tb) {                                                              \
        /* c[i,:] += sum_k a(i,k) * B[k,:] */                                 \
        for (int64_t k = 0; k < K; k++) {                                     \
          T a = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);               \
          if (a == 0) continue;                                               \
          const T *b = B + k * ldb;                                           \
          for (int64_t j = 0; j < N; j++) c[j] += a * b[j];                   \
        }                                                                     \
      } else {                                                                \
        /* c[i,j] += a(i,:) . B[j,:] */                                       \
        for (int64_t j = 0; j < N; j++) {                                     \
          const T *b = B + j * ldb;                                           \
          T s = 0;                                                            \
          if (!ta)                                                            \
            for (int64_t k = 0; k < K; k++) s += A[i * lda + k] * b[k];       \
          else                                                                \
            for (int64_t k = 0; k < K; k++) s += A[k * lda + i] * b[k];       \
          c[j] += alpha * s;                                                  \
        }                                                                     \
      }                                                                       \
    }                                                                         \
  }

DEF_GEMM(float, s)
DEF_GEMM(double, d)

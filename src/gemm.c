/* src/gemm.c: the built-in matrix product for both float types, in the
 * three layouts the forward and backward passes need (NN, NT, TN), without
 * materialising a transpose. Each inner loop runs over contiguous memory
 * and is marked for SIMD; rows of C go to threads above a work threshold. */
#include "internal.h"

#define PAR_THRESHOLD (1L << 18) /* multiply-adds below which one thread is faster */

#define DEF_GEMM(T, S)                                                        \
  void tg__##S##gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,      \
                     T alpha, const T *restrict A, int64_t lda,               \
                     const T *restrict B, int64_t ldb, T beta,                \
                     T *restrict C, int64_t ldc) {                            \
    long work = (long)(M * N * K);                                            \
    (void)work;                                                               \
    _Pragma("omp parallel for if (work > PAR_THRESHOLD) schedule(static)")    \
    for (int64_t i = 0; i < M; i++) {                                         \
      T *restrict c = C + i * ldc;                                            \
      if (beta == 0) {                                                        \
        for (int64_t j = 0; j < N; j++) c[j] = 0;                             \
      } else if (beta != 1) {                                                 \
        for (int64_t j = 0; j < N; j++) c[j] *= beta;                         \
      }                                                                       \
      if (!tb) {                                                              \
        /* c[i,:] += sum_k a(i,k) * B[k,:] */                                 \
        for (int64_t k = 0; k < K; k++) {                                     \
          T a = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);               \
          if (a == 0) continue;                                               \
          const T *restrict b = B + k * ldb;                                  \
          _Pragma("omp simd")                                                 \
          for (int64_t j = 0; j < N; j++) c[j] += a * b[j];                   \
        }                                                                     \
      } else {                                                                \
        /* c[i,j] += a(i,:) . B[j,:] */                                       \
        for (int64_t j = 0; j < N; j++) {                                     \
          const T *restrict b = B + j * ldb;                                  \
          T s = 0;                                                            \
          if (!ta) {                                                          \
            const T *restrict a = A + i * lda;                                \
            _Pragma("omp simd reduction(+ : s)")                              \
            for (int64_t k = 0; k < K; k++) s += a[k] * b[k];                 \
          } else {                                                            \
            for (int64_t k = 0; k < K; k++) s += A[k * lda + i] * b[k];       \
          }                                                                   \
          c[j] += alpha * s;                                                  \
        }                                                                     \
      }                                                                       \
    }                                                                         \
  }

DEF_GEMM(float, s)
DEF_GEMM(double, d)

/* tapegrad/tensor.h: dense tensors (float32, float64, int32), their
 * initialisers and the library's deterministic random number generator. */
#ifndef TAPEGRAD_TENSOR_H
#define TAPEGRAD_TENSOR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TG_F32 = 0, TG_F64 = 1, TG_I32 = 2 } tg_dtype;

#define TG_MAX_DIMS 4

/* Opaque. Data is contiguous, row-major and 64-byte aligned. */
typedef struct tg_tensor tg_tensor;

/* --- creation: the caller owns the result and frees it with tg_tensor_free.
 * ndim is 0..TG_MAX_DIMS (0: a scalar, one element; shape may then be
 * NULL), every dimension >= 0 (a dimension of 0 holds no elements). On
 * error: NULL and a message (tg_last_error). */
TG_API tg_tensor *tg_zeros(tg_dtype dtype, int ndim, const int64_t *shape);
TG_API tg_tensor *tg_ones(tg_dtype dtype, int ndim, const int64_t *shape);
/* Copies numel elements of dtype from data. */
TG_API tg_tensor *tg_tensor_from(tg_dtype dtype, int ndim,
                                 const int64_t *shape, const void *data);
/* A copy of any tensor (a tape's included) with the same dtype and shape;
 * owned by the caller; requires_grad is not copied. */
TG_API tg_tensor *tg_tensor_clone(const tg_tensor *src);
/* Frees a tensor the caller owns (and its grad). NULL is a no-op. Tensors
 * made by ops belong to their tape and are not freed here (TG_ESTATE). */
TG_API int tg_tensor_free(tg_tensor *t);

/* Rows [start, stop) of a caller-owned tensor a (0 <= start <= stop <=
 * a's first dimension), as a new caller-owned tensor that shares a's data:
 * no copy, so a train/validation split of a data set costs nothing, and
 * writes show through both ways. Valid while a lives (a view of a view,
 * while the first tensor lives); free it with tg_tensor_free, which then
 * leaves the data to a. A view made a parameter gets a gradient of its
 * own, not a's. A tensor on a tape is refused (TG_ESTATE; tg_slice is the
 * op); bad rows: TG_ERANGE; a 0-d a: TG_ESHAPE. */
TG_API tg_tensor *tg_rows(const tg_tensor *a, int64_t start, int64_t stop);

/* Convenience: shape from a short list, e.g. TG_SHAPE(32, 784). */
#define TG_SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                      ((const int64_t[]){__VA_ARGS__})

/* --- queries */
TG_API tg_dtype tg_tensor_dtype(const tg_tensor *t);
TG_API int tg_tensor_ndim(const tg_tensor *t);
/* Size of dimension i; negative i counts from the end. 0 if out of range. */
TG_API int64_t tg_tensor_dim(const tg_tensor *t, int i);
TG_API int64_t tg_tensor_numel(const tg_tensor *t);
TG_API const char *tg_dtype_name(tg_dtype dtype);

/* --- element access. The pointers stay owned by the tensor. The typed
 * accessors return NULL (with a message) when the dtype differs. */
TG_API void *tg_tensor_data(tg_tensor *t);
TG_API float *tg_tensor_f32(tg_tensor *t);
TG_API double *tg_tensor_f64(tg_tensor *t);
TG_API int32_t *tg_tensor_i32(tg_tensor *t);
/* The gradient of t as a tensor of t's dtype and shape, viewing t's grad
 * buffer (no copy: writes go to the gradient), or NULL if t has none:
 * parameters own one; tape tensors get one during tg_backward when they lie
 * on a path from a parameter to the loss. Every tensor function takes it
 * (tg_get, tg_tensor_f32, tg_npy_save...); tg_tensor_free refuses it. It
 * belongs to t: valid while t is (for a tape tensor, until the tape's next
 * clear). */
TG_API tg_tensor *tg_tensor_grad(tg_tensor *t);
/* Flat (row-major) element i as a double; 0 with a message if out of range. */
TG_API double tg_get(const tg_tensor *t, int64_t i);
TG_API double tg_grad_get(const tg_tensor *t, int64_t i);
TG_API int tg_set(tg_tensor *t, int64_t i, double value);
/* Fill every element with value. */
TG_API int tg_fill(tg_tensor *t, double value);

/* XXH3-64 of the tensor's dtype, shape and data: equal tensors hash equal
 * on every machine; a quick way to compare runs bit for bit. */
TG_API uint64_t tg_tensor_hash(const tg_tensor *t);

/* Print "name [2,3] float32" and the values, rows per line, to f. */
TG_API int tg_tensor_print(FILE *f, const tg_tensor *t, const char *name);

/* --- parameters. Marks a caller-owned float tensor as a parameter: it gets a
 * zeroed grad buffer that backward passes accumulate into (+=) until
 * tg_zero_grad. Tensors made by ops cannot be marked (TG_ESTATE). */
TG_API int tg_requires_grad(tg_tensor *t, bool on);
TG_API bool tg_tensor_requires_grad(const tg_tensor *t);
TG_API int tg_zero_grad(tg_tensor *t);

/* --- random numbers: xoshiro256** seeded through splitmix64. The same seed
 * gives the same stream on every machine. Caller-allocated. Given a NULL
 * rng, each records TG_EINVAL and returns 0 (NaN for the doubles). */
typedef struct {
  uint64_t s[4];
} tg_rng;
TG_API void tg_rng_seed(tg_rng *rng, uint64_t seed);
TG_API uint64_t tg_rng_next(tg_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
TG_API double tg_rng_uniform(tg_rng *rng);
/* Uniform integer in [0, n); n >= 1. Unbiased. */
TG_API uint64_t tg_rng_below(tg_rng *rng, uint64_t n);
/* Standard normal (Marsaglia's polar method). */
TG_API double tg_rng_normal(tg_rng *rng);

TG_API int tg_fill_uniform(tg_tensor *t, tg_rng *rng, double lo, double hi);
TG_API int tg_fill_normal(tg_tensor *t, tg_rng *rng, double mean, double std);
/* For a weight W[fan_in, fan_out] (used as x[N,fan_in] . W):
 * Xavier/Glorot uniform in +-sqrt(6/(fan_in+fan_out));
 * He/Kaiming normal with std sqrt(2/fan_in). */
TG_API int tg_init_xavier(tg_tensor *w, tg_rng *rng);
TG_API int tg_init_he(tg_tensor *w, tg_rng *rng);

#ifdef __cplusplus
}
#endif
#endif

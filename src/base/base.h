/* src/base/base.h: what every layer may use: the replaceable allocator, the
 * record of the last error, and a few compiler macros. Below the kernels;
 * knows no tensor and no tape. */
#ifndef TAPEGRAD_BASE_H
#define TAPEGRAD_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tapegrad.h"

#define TG__ALIGN 64

/* errors.c: records the message and returns status. */
int tg__err(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* alloc.c: through the replaceable allocator. */
void *tg__malloc(size_t n);
void *tg__calloc(size_t count, size_t n);
void *tg__realloc(void *p, size_t n);
void tg__free(void *p);
/* The free function in force: a block kept across calls (the GEMM packing
 * buffers) is freed with the one that matches its allocation. */
tg_free_fn tg__free_fn(void);
void *tg__aligned_alloc(size_t n); /* 64-byte aligned, zeroed */
void tg__aligned_free(void *p);

/* Before a loop without dependences between iterations: vectorise it even
 * where the optimisation level's cost model would not (GCC's -O2). */
#ifdef _OPENMP
#define TG__SIMD _Pragma("omp simd")
#else
#define TG__SIMD
#endif

/* Both-dtype kernels: TG__BOTH(DEF) expands DEF(float, f32) and
 * DEF(double, f64); TG__PICK(dtype, fn) picks by dtype. */
#define TG__BOTH(DEF) DEF(float, f32) DEF(double, f64)
#define TG__PICK(dtype, fn) ((dtype) == TG_F32 ? fn##_f32 : fn##_f64)

#endif

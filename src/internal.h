/* src/internal.h: the engine's private structures and the interface every
 * op in ops/ is written against. Not installed. */
#ifndef TAPEGRAD_INTERNAL_H
#define TAPEGRAD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tapegrad.h"

#define TG__ALIGN 64
#define TG__MAX_IN 3
#define TG__HBLOCK 256

enum {
  TG__OWNED = 1u,      /* heap tensor the caller frees */
  TG__REQ_GRAD = 2u,   /* a parameter: keeps and accumulates its grad */
  TG__NEEDS_GRAD = 4u, /* a parameter, or made from one by a recorded op */
};

struct tg_tensor {
  void *data;
  void *grad;
  int64_t shape[TG_MAX_DIMS];
  int64_t numel;
  int ndim;
  tg_dtype dtype;
  unsigned flags;
  tg_tape *tape;     /* owning tape, NULL for caller-owned tensors */
  uint64_t gen;      /* the tape's generation when made */
  int64_t node;      /* index of the node that made it, -1 if none */
  uint64_t bw_pass;  /* last backward pass that zeroed its grad */
};

typedef struct tg_node tg_node;
typedef struct tg_opcase tg_opcase;

/* One op's definition: the engine calls backward by pointer and knows no op
 * by name. call/cases let the tests drive every op in the list. */
typedef struct tg_opdef {
  const char *name;
  int n_in;
  /* Accumulates (+=) into n->in[k]->grad for each input whose grad is
   * non-NULL, from n->out->grad. */
  void (*backward)(const tg_node *n);
  tg_tensor *(*call)(tg_tape *t, tg_tensor *const *in, const tg_opcase *c);
  const tg_opcase *cases;
  int n_cases;
} tg_opdef;

struct tg_node {
  const tg_opdef *op;
  tg_tensor *in[TG__MAX_IN];
  tg_tensor *out;
  double f;      /* a scalar argument (scale's constant) */
  int64_t i;     /* an integer argument (an axis) */
  void *saved;   /* what forward kept for backward, in the tape's arena */
};

/* Input domains for the generated tests. */
enum {
  TG__DOM_ANY = 0,  /* normal(0,1) */
  TG__DOM_POS,      /* uniform in [0.5, 2] */
  TG__DOM_NONZERO,  /* |x| in [0.1, 2]: away from a kink at 0 */
  TG__DOM_CLASS,    /* int32 class indices in [0, C), C = case's i */
  TG__DOM_PROB,     /* float rows that are probability distributions */
  TG__DOM_UNIT,     /* uniform in [0, 1] */
  TG__DOM_COLSIGN,  /* |x| in [0.1, 1], positive where the last index is
                       even, negative where it is odd: one sign per column */
};

/* An input of ndim 0 is left out: the op is called with NULL there (an
 * optional input, such as tg_linear's bias). */
struct tg_opcase {
  int ndim[TG__MAX_IN];
  int64_t shape[TG__MAX_IN][TG_MAX_DIMS];
  int domain[TG__MAX_IN];
  double f;   /* scalar argument */
  int64_t i;  /* integer argument: axis, or class count for TG__DOM_CLASS */
};

struct tg_arena_chunk;

struct tg_tape {
  tg_node *nodes;
  size_t n_nodes, cap_nodes;
  char **chunks;       /* arena chunks, 64-byte aligned */
  size_t *chunk_cap;
  size_t n_chunks;
  size_t cur, used;    /* current chunk and bytes used in it */
  tg_tensor **headers; /* blocks of TG__HBLOCK tensor headers, kept until
                          tg_tape_free so a stale tensor pointer always
                          points at a header, never at freed memory */
  size_t n_hblocks, h_used;
  uint64_t gen;        /* bumped by every clear */
  uint64_t bw_pass;    /* bumped by every backward */
  bool grad_enabled;
  bool check_finite;
};

/* errors.c */
int tg__err(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* "[32,784]" into buf (at least 96 bytes); returns buf. */
const char *tg__shape_str(const tg_tensor *t, char *buf);

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

/* tape.c */
void *tg__arena_alloc(tg_tape *t, size_t n); /* 64-byte aligned, not zeroed */
/* Checks that t is a tape and that every non-NULL input is usable on it
 * (float, current generation, this tape). Returns TG_OK or an error with a
 * message naming fn. */
int tg__check_inputs(const char *fn, tg_tape *t, tg_tensor *const *in, int n);
/* The same, naming the inputs in messages by names[i] (as the op's
 * documentation does) instead of a, b, c. */
int tg__check_inputs_named(const char *fn, tg_tape *t, tg_tensor *const *in,
                           const char *const *names, int n);
/* Allocates the output of op on the tape (data not zeroed) and records a
 * node when recording and any input needs grad. NULL on failure. */
tg_tensor *tg__emit(tg_tape *t, const tg_opdef *op, tg_dtype dtype, int ndim,
                    const int64_t *shape, tg_tensor *const *in, int n_in);
/* The node that made out, or NULL when nothing was recorded. */
tg_node *tg__node_of(tg_tensor *out);
/* Called by each op after its forward kernel: the finite check. Returns out,
 * or NULL with TG_ENONFINITE. */
tg_tensor *tg__done(tg_tape *t, tg_tensor *out, const char *fn);

/* The grad buffer a backward kernel accumulates into for input i, or NULL
 * when that input needs no gradient. */
static inline void *tg__gin(const tg_node *n, int i) {
  tg_tensor *x = n->in[i];
  return x && (x->flags & TG__NEEDS_GRAD) ? x->grad : NULL;
}

/* tensor.c */
size_t tg__dtype_size(tg_dtype d);
bool tg__same_shape(const tg_tensor *a, const tg_tensor *b);
bool tg__is_float(tg_dtype d);
/* rows = numel / last dim, cols = last dim. */
void tg__rows_cols(const tg_tensor *t, int64_t *rows, int64_t *cols);

/* fileio.c: reading files treated as hostile, and replacing files
 * atomically. Messages name fn and the path. */
const char *tg__errstr(int errnum, char *buf, size_t n);
/* A byte source: a regular file of known size, a memory buffer (the
 * fuzzers' way in), or, opened with tg__src_open_stream, a gzip'd file or a
 * stream that cannot be sized (a pipe) read through zlib; gz is set then,
 * and size is unknown. pos counts the (decompressed) bytes consumed. */
struct gzFile_s;
typedef struct {
  const char *fn, *path;
  FILE *f;
  struct gzFile_s *gz;
  const unsigned char *mem;
  bool gzipped; /* gz decompresses (rather than passing a stream through) */
  uint64_t size, pos;
} tg__src;
/* A regular file; anything else is TG_EIO. */
int tg__src_open(tg__src *s, const char *fn, const char *path);
/* Any file but a folder: a plain regular file is read as by tg__src_open,
 * a gzip'd one (found by its magic bytes, whatever its name) or a stream
 * through zlib. */
int tg__src_open_stream(tg__src *s, const char *fn, const char *path);
void tg__src_mem(tg__src *s, const char *fn, const char *name, const void *buf,
                 size_t len);
/* Exactly n bytes, from a source without gz; callers check sizes against
 * s->size first, so a short read means the file changed under us (TG_EIO). */
int tg__src_read(tg__src *s, void *buf, size_t n);
/* Up to n bytes; *got < n only at a clean end of file. A read error is
 * TG_EIO; corrupt gzip data or a gzip stream cut short is TG_EFORMAT. */
int tg__src_read_some(tg__src *s, void *buf, size_t n, size_t *got);
void tg__src_close(tg__src *s);
bool tg__host_le(void);
void tg__bswap(void *p, size_t n_elems, size_t elem);
/* Offset of the first byte that is not well-formed UTF-8 (or is NUL); n
 * when there is none. */
size_t tg__utf8_check(const unsigned char *s, size_t n);

/* Writes path.XXXXXX beside path, then commit: flush, fsync, close, rename
 * over path, fsync the folder. The first error sticks (TG_EIO with a
 * message); commit then removes the temporary file and returns it, leaving
 * path untouched. abort removes the temporary file. */
typedef struct {
  const char *fn, *path;
  char *tmp;
  int fd;
  unsigned char *buf;
  size_t used;
  int rc;
} tg__afile;
int tg__afile_open(tg__afile *a, const char *fn, const char *path);
int tg__afile_write(tg__afile *a, const void *p, size_t n);
/* Elements of elem bytes, written little-endian whatever the host. */
int tg__afile_write_le(tg__afile *a, const void *p, size_t n, size_t elem);
int tg__afile_commit(tg__afile *a);
void tg__afile_abort(tg__afile *a);

/* Parsers from memory, for the fuzzers: as the public loaders, on a buffer
 * instead of a file. */
int tg__safetensors_parse(const void *buf, size_t len, tg_checkpoint **out);
tg_tensor *tg__npy_parse(const void *buf, size_t len);
tg_tensor *tg__idx_parse(const void *buf, size_t len, tg_dtype dtype);

/* gemm.c: C[M,N] = alpha * op(A) op(B) + beta * C, row-major, op(X) = X or
 * X^T. Leading dimensions are those of the stored matrices. */
void tg__sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb,
               float beta, float *C, int64_t ldc);
void tg__dgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
               double alpha, const double *A, int64_t lda, const double *B,
               int64_t ldb, double beta, double *C, int64_t ldc);
/* The micro-kernels gemm.c can run. By default it takes the best the CPU
 * supports, or the one named by the environment variable TG_GEMM_KERNEL
 * (generic, avx2, avx512, avx512-on-avx2) when the CPU supports that one.
 * avx512-on-avx2 is the AVX-512 kernel's code and tile on AVX2 vectors, so
 * that path is tested on machines without AVX-512; never the default. */
enum {
  TG__GEMM_GENERIC,
  TG__GEMM_AVX2,
  TG__GEMM_AVX512,
  TG__GEMM_AVX512_ON_AVX2,
  TG__GEMM_NKERNELS
};
bool tg__gemm_kernel_supported(int k);
const char *tg__gemm_kernel_name(int k);
int tg__gemm_kernel(void); /* the one in use */
/* Forces kernel k for every thread (k < 0: back to the default); TG_EINVAL
 * when this CPU cannot run it. */
int tg__gemm_set_kernel(int k);
/* Frees the calling thread's packing buffers (they are otherwise kept for
 * the next call, and freed when the thread ends). tg_tape_free calls it, so
 * once every tapegrad object is freed the calling thread holds nothing. */
void tg__gemm_release(void);

/* spmm.c: products with a float left operand A[M,K] that is mostly zeros,
 * kept by rows (CSR: rowptr[M+1], colidx/val[nnz]) and, for the weight
 * gradient, by columns (colptr[K+1], rowidx/cval[nnz]). */
typedef struct {
  int64_t m, k, nnz;
  int32_t *rowptr, *colidx, *colptr, *rowidx;
  float *val, *cval;
} tg__sparse;
/* False when the environment variable TG_SPARSE_INPUT is "0". */
bool tg__spmm_enabled(void);
/* A's non-zeros, or -1 as soon as there are too many for the sparse
 * product to pay. */
int64_t tg__spmm_nnz(const float *A, int64_t M, int64_t K);
/* The most non-zeros tg__spmm_nnz accepts for an [M,K] operand. */
int64_t tg__spmm_max_nnz(int64_t M, int64_t K);
/* Fills s (arrays allocated by the caller for nnz + TG__SPMM_SLACK
 * entries, as the build may write that far past its last; the by-column
 * ones only when by_col). */
#define TG__SPMM_SLACK 8
void tg__spmm_build(tg__sparse *s, const float *A, int64_t M, int64_t K,
                    bool by_col);
/* C[M,N] = A B (+ bias[N] on every row when bias is not NULL; B row-major
 * [K,N]); D[K,N] += A^T G (G [M,N]). */
void tg__spmm_f32(const tg__sparse *s, const float *B, const float *bias,
                  int64_t N, float *C);
void tg__spmm_tn_f32(const tg__sparse *s, const float *G, int64_t N, float *D);
/* For an op whose left operand is a: a's sparse form in t's arena when a is
 * a caller-owned float32 [M,K] matrix (data, not an op's result) that is
 * mostly zeros; NULL otherwise, and the op runs the dense product. by_col
 * adds the by-column copy, which only the weight gradient reads: ask for
 * it when backward will need it. */
tg__sparse *tg__spmm_of(tg_tape *t, const tg_tensor *a, bool by_col);

/* opsupport.c: checks and the shared body of elementwise ops. Each check
 * returns TG_OK or records a message naming fn and returns the error. */
int tg__check_float(const char *fn, const tg_tensor *x, const char *what);
int tg__check_same(const char *fn, const tg_tensor *a, const tg_tensor *b);
int tg__check_2d(const char *fn, const tg_tensor *x, const char *what);
/* In ops/pick.c: index must be int32 [N], values in [0, C), for a [N,C]. */
int tg__check_classes(const char *fn, const tg_tensor *a, const tg_tensor *index);
typedef void (*tg__map_f32)(const float *x, float *y, int64_t n);
typedef void (*tg__map_f64)(const double *x, double *y, int64_t n);
tg_tensor *tg__unary(tg_tape *t, tg_tensor *a, const tg_opdef *op,
                     tg__map_f32 f32, tg__map_f64 f64);
/* d[j] += sum over rows of g[r, j], g [rows, cols]: a bias's gradient. */
void tg__colsum_acc_f32(const float *restrict g, float *restrict d,
                        int64_t rows, int64_t cols);
void tg__colsum_acc_f64(const double *restrict g, double *restrict d,
                        int64_t rows, int64_t cols);
/* A [1] result, for reductions and losses. */
tg_tensor *tg__emit_scalar(tg_tape *t, const tg_opdef *op, tg_dtype dtype,
                           tg_tensor *const *in, int n_in);

/* oplist.c: every op, from ops/ops.def. */
#define TG_OP(name) extern const tg_opdef tg__op_##name;
#include "../ops/ops.def"
#undef TG_OP
extern const tg_opdef *const tg__ops[];
extern const int tg__n_ops;

/* Before a loop without dependences between iterations: vectorise it even
 * where the optimisation level's cost model would not (GCC's -O2). */
#ifdef _OPENMP
#define TG__SIMD _Pragma("omp simd")
#else
#define TG__SIMD
#endif

/* threads.c: fn(ctx, i0, i1) over [0, n) in contiguous chunks, one per
 * thread, with at least min_chunk elements each (so small n stays on the
 * calling thread); for elementwise work, whose result cannot depend on the
 * split. */
typedef void (*tg__range_fn)(void *ctx, int64_t i0, int64_t i1);
void tg__par_range(int64_t n, int64_t min_chunk, tg__range_fn fn, void *ctx);
/* Every parallel region goes through these two: tg__par_threads(want) is
 * the number of threads to run (1 when OpenMP is absent, inside a parallel
 * region, or while the guard below has regions run on one thread), and
 * tg__par_run(nt, fn, ctx) calls fn(ctx, t, nt) on each thread t (just
 * fn(ctx, 0, 1) for nt < 2), timing the region for the guard. */
typedef void (*tg__par_fn)(void *ctx, int t, int nt);
int tg__par_threads(int want);
void tg__par_run(int nt, tg__par_fn fn, void *ctx);
/* The guard's state and rule, apart so the tests can drive them: after
 * TG__GUARD_WINDOW regions, when the decayed sums of their CPU time fall
 * under TG__GUARD_GAIN times their wall time, the next `stretch` regions
 * run on one thread, and the stretch doubles (up to the maximum) until a
 * window pays again. */
typedef struct {
  double cpu, wall;
  int seen;
  int64_t skip, stretch;
} tg__guard;
#define TG__GUARD_WINDOW 8
#define TG__GUARD_DECAY 0.9
#define TG__GUARD_GAIN 1.1
#define TG__GUARD_MIN_STRETCH 64
#define TG__GUARD_MAX_STRETCH 4096
/* True (and one fewer to go) while regions are to run on one thread. */
bool tg__guard_serial(tg__guard *g);
void tg__guard_update(tg__guard *g, double cpu, double wall);
/* For the tests: with the guard off, every region that asks for threads
 * gets them. */
void tg__par_guard_enable(bool on);
/* Elements per thread from which a memory-bound elementwise pass over
 * parameters is worth splitting: W2's 784x512 and 512x512 weights, not
 * W1's 784x100 (whose pass takes less than a parallel region costs). */
#define TG__PAR_ELEMS ((int64_t)1 << 17)

/* Both-dtype kernels: TG__BOTH(DEF) expands DEF(float, f32) and
 * DEF(double, f64); TG__CALL(t, fn, ...) picks by dtype. */
#define TG__BOTH(DEF) DEF(float, f32) DEF(double, f64)
#define TG__PICK(dtype, fn) ((dtype) == TG_F32 ? fn##_f32 : fn##_f64)

#endif

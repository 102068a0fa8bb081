/* tapegrad/status.h: library-wide matters: status codes, the thread-local
 * error message, the replaceable allocator, the thread count. */
#ifndef TAPEGRAD_STATUS_H
#define TAPEGRAD_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TG_API __attribute__((visibility("default")))
#else
#define TG_API
#endif

/* X(NAME, value, message): one table gives the enum, the names and the
 * messages. Zero is success; every error is negative. */
#define TG_STATUS_MAP(X)                                                 \
  X(OK, 0, "success")                                                    \
  X(EINVAL, -1, "invalid argument")                                      \
  X(ESHAPE, -2, "shape mismatch")                                        \
  X(EDTYPE, -3, "dtype mismatch")                                        \
  X(ENOMEM, -4, "out of memory")                                         \
  X(ESTATE, -5, "operation not valid in the current state")              \
  X(ERANGE, -6, "value out of range")                                    \
  X(ENONFINITE, -7, "non-finite value")                                  \
  X(EIO, -8, "input/output error")                                       \
  X(EFORMAT, -9, "malformed data")                                       \
  X(ECHECKSUM, -10, "checksum mismatch")

typedef enum {
#define TG__STATUS_ENUM(name, val, msg) TG_##name = (val),
  TG_STATUS_MAP(TG__STATUS_ENUM)
#undef TG__STATUS_ENUM
} tg_status;

/* "TG_ESHAPE" for TG_ESHAPE; "TG_UNKNOWN" for a value not in the table. */
TG_API const char *tg_status_name(int status);
/* A fixed one-line description of a status code. */
TG_API const char *tg_strerror(int status);

/* The detailed message of the last error on this thread, naming the function
 * and the offending shapes or values, e.g.
 *   "tg_matmul: inner dimensions differ: a is [32,784], b is [100,10]".
 * Empty string when no error has been recorded. The string stays valid until
 * the next tapegrad call on this thread. */
TG_API const char *tg_last_error(void);
/* The status of the last error on this thread (TG_OK if none). */
TG_API int tg_last_status(void);
/* Forget the last error on this thread. */
TG_API void tg_clear_error(void);

/* Replace the allocator used for every heap allocation the library makes
 * (tensors, tapes, arenas), including those of the libraries it reads files
 * with: cJSON's (safetensors headers), zlib's (gzip'd IDX files, inflated
 * with its zalloc/zfree hooks) and the XXH3 checksum state (kept on the
 * stack). cJSON's hooks are global to the process: tapegrad installs them
 * once, on its first safetensors load or save, and from then on cJSON
 * allocates through the current tapegrad allocator for every user of
 * cJSON in the process. The C library's own buffers (a FILE's stdio
 * buffer, for instance) are not covered. All four must be given; call
 * before any other tapegrad function, or after every tapegrad object has
 * been freed. Returns TG_OK or TG_EINVAL. */
typedef void *(*tg_malloc_fn)(size_t size);
typedef void *(*tg_realloc_fn)(void *ptr, size_t size);
typedef void *(*tg_calloc_fn)(size_t count, size_t size);
typedef void (*tg_free_fn)(void *ptr);
TG_API int tg_set_allocator(tg_malloc_fn m, tg_realloc_fn r, tg_calloc_fn c,
                            tg_free_fn f);

/* The number of threads the kernels may use (OpenMP); small ops always run
 * on one. Defaults to OpenMP's own default (OMP_NUM_THREADS, else the core
 * count). tg_set_num_threads returns TG_OK, or TG_EINVAL for n < 1; without
 * OpenMP it accepts any n >= 1 and tg_get_num_threads is 1. */
TG_API int tg_set_num_threads(int n);
TG_API int tg_get_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif

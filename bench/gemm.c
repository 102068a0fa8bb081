/* bench/gemm.c: GFLOP/s of the built-in SGEMM on square sizes, on the
 * MNIST training shapes and on the character transformer's (forward and
 * both backward products of each), on 1 and 2 threads, beside OpenBLAS's
 * cblas_sgemm when the build found it.
 * It calls the internal tg__sgemm, so it links the engine, not the shared
 * library. Usage: bench/gemm [--cpu-time] [reps] (median of reps timings,
 * default 7); --cpu-time runs one thread only, timed by its thread CPU
 * time, for a busy machine.
 * The last line is machine-readable:
 *   gemm-vs-openblas: 1024@1=R 1024@2=R W2@1=R W2@2=R LM@1=R LM@2=R
 * with R = built-in GFLOP/s / OpenBLAS GFLOP/s (W2, LM: geometric mean over
 * the group's shapes); without OpenBLAS it prints GFLOP/s instead. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef HAVE_OPENBLAS
#include <cblas.h>
#endif

typedef struct {
  const char *group; /* "square", "W1", "W2", "LM" */
  const char *what;
  bool ta, tb;
  int64_t m, n, k;
} shape;

static const shape shapes[] = {
    {"square", "256", 0, 0, 256, 256, 256},
    {"square", "512", 0, 0, 512, 512, 512},
    {"square", "1024", 0, 0, 1024, 1024, 1024},
    {"square", "2048", 0, 0, 2048, 2048, 2048},
    /* W1 net, batch 32: 784 -> 100 -> 10 */
    {"W1", "x.W1", 0, 0, 32, 100, 784},
    {"W1", "h.W2", 0, 0, 32, 10, 100},
    {"W1", "dW1=xT.dh", 1, 0, 784, 100, 32},
    {"W1", "dW2=hT.dz", 1, 0, 100, 10, 32},
    {"W1", "dh=dz.W2T", 0, 1, 32, 100, 10},
    /* W2 net, batch 128: 784 -> 512 -> 512 -> 10 */
    {"W2", "x.W1", 0, 0, 128, 512, 784},
    {"W2", "h1.W2", 0, 0, 128, 512, 512},
    {"W2", "h2.W3", 0, 0, 128, 10, 512},
    {"W2", "dh2=dz.W3T", 0, 1, 128, 512, 10},
    {"W2", "dh1=dh2.W2T", 0, 1, 128, 512, 512},
    {"W2", "dW3=h2T.dz", 1, 0, 512, 10, 128},
    {"W2", "dW2=h1T.dh2", 1, 0, 512, 512, 128},
    {"W2", "dW1=xT.dh1", 1, 0, 784, 512, 128},
    /* The character transformer's defaults (examples/charlm_model.c): C 128,
     * 4 heads of 32, B*T = 32*128 = 4096 rows, vocabulary 128. Each linear
     * y = x.W is y[4096,O] = x[4096,K] W[K,O]; its backward (ops/linear.c)
     * is dx = dy.W^T (NT) and dW = x^T.dy (TN). */
    {"LM", "qkv", 0, 0, 4096, 384, 128},
    {"LM", "qkv dx", 0, 1, 4096, 128, 384},
    {"LM", "qkv dW", 1, 0, 128, 384, 4096},
    {"LM", "proj", 0, 0, 4096, 128, 128},
    {"LM", "proj dx", 0, 1, 4096, 128, 128},
    {"LM", "proj dW", 1, 0, 128, 128, 4096},
    {"LM", "fc", 0, 0, 4096, 512, 128},
    {"LM", "fc dx", 0, 1, 4096, 128, 512},
    {"LM", "fc dW", 1, 0, 128, 512, 4096},
    {"LM", "out", 0, 0, 4096, 128, 512},
    {"LM", "out dx", 0, 1, 4096, 512, 128},
    {"LM", "out dW", 1, 0, 512, 128, 4096},
    /* The tied head x.wte^T is tg_matmul_ex(x, wte, 0, 1); its backward
     * (ops/matmul.c) is dx = g.wte (NN) and dwte = g^T.x (TN). */
    {"LM", "head", 0, 1, 4096, 128, 128},
    {"LM", "head dx", 0, 0, 4096, 128, 128},
    {"LM", "head dwte", 1, 0, 128, 128, 4096},
    /* One head of attention (T 128, D 32), run B*H = 128 times a step each:
     * att = q.k^T, y = att.v, and their backward through tg_matmul_ex:
     * dq = g.k (NN), dk = g^T.q (TN), datt = g.v^T (NT), dv = att^T.g (TN). */
    {"LM", "qkT", 0, 1, 128, 128, 32},
    {"LM", "qkT dq", 0, 0, 128, 32, 128},
    {"LM", "qkT dk", 1, 0, 128, 32, 128},
    {"LM", "av", 0, 0, 128, 32, 128},
    {"LM", "av datt", 0, 1, 128, 128, 32},
    {"LM", "av dv", 1, 0, 128, 32, 128},
};
#define NSHAPES (sizeof shapes / sizeof *shapes)

typedef void (*gemm_fn)(const shape *s, const float *A, const float *B,
                        float *C);

static void run_builtin(const shape *s, const float *A, const float *B,
                        float *C) {
  tg__sgemm(s->ta, s->tb, s->m, s->n, s->k, 1, A, s->ta ? s->m : s->k, B,
            s->tb ? s->k : s->n, 0, C, s->n);
}

#ifdef HAVE_OPENBLAS
static void run_openblas(const shape *s, const float *A, const float *B,
                         float *C) {
  cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
              s->tb ? CblasTrans : CblasNoTrans, (int)s->m, (int)s->n,
              (int)s->k, 1, A, (int)(s->ta ? s->m : s->k), B,
              (int)(s->tb ? s->k : s->n), 0, C, (int)s->n);
}
#endif

/* Median GFLOP/s over reps timings, each of enough calls to last ~20 ms. */
static double gflops(gemm_fn f, const shape *s, const float *A,
                     const float *B, float *C, int reps) {
  double flop = 2.0 * (double)s->m * (double)s->n * (double)s->k;
  f(s, A, B, C);
  double t0 = tick();
  f(s, A, B, C);
  double one = tick() - t0;
  int calls = one > 0.02 ? 1 : (int)(0.02 / (one > 1e-7 ? one : 1e-7)) + 1;
  double *r = malloc(sizeof(double) * (size_t)reps);
  if (!r) return 0;
  for (int i = 0; i < reps; i++) {
    t0 = tick();
    for (int c = 0; c < calls; c++) f(s, A, B, C);
    r[i] = flop * calls / (tick() - t0) * 1e-9;
  }
  qsort(r, (size_t)reps, sizeof *r, cmp_double);
  double med = r[reps / 2];
  free(r);
  return med;
}

static void set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
#ifdef HAVE_OPENBLAS
  openblas_set_num_threads(n);
#endif
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--cpu-time")) cpu_time = true, argc--, argv++;
  int reps = argc > 1 ? atoi(argv[1]) : 7;
  /* bench/gemm reps M N K ta tb: that one product alone, for profiling. */
  shape one = {"one", "one", false, false, 0, 0, 0};
  if (argc == 7) {
    one.m = atol(argv[2]), one.n = atol(argv[3]), one.k = atol(argv[4]);
    one.ta = atoi(argv[5]), one.tb = atoi(argv[6]);
  }
  if (reps < 1) reps = 1;
  size_t big = 2048 * 2048;
  float *A = malloc(sizeof(float) * big), *B = malloc(sizeof(float) * big),
        *C = malloc(sizeof(float) * big);
  if (!A || !B || !C) return 1;
  /* Naming the kernel keeps the built-in product even in a build that
   * hands large products to a CBLAS. */
  tg__gemm_set_kernel(tg__gemm_kernel());
  srand(1);
  for (size_t i = 0; i < big; i++) {
    A[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    B[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    C[i] = 0;
  }
  if (one.m > 0) {
    if (one.m * one.k > (int64_t)big || one.k * one.n > (int64_t)big ||
        one.m * one.n > (int64_t)big)
      return 1;
#ifdef _OPENMP
    set_threads(cpu_time ? 1 : omp_get_max_threads());
#else
    set_threads(1);
#endif
    double g = gflops(run_builtin, &one, A, B, C, reps), o = 0;
#ifdef HAVE_OPENBLAS
    o = gflops(run_openblas, &one, A, B, C, reps);
#endif
    printf("%ldx%ldx%ld %c%c: tapegrad %.1f, openblas %.1f GFLOP/s\n",
           (long)one.m, (long)one.n, (long)one.k, one.ta ? 'T' : 'N',
           one.tb ? 'T' : 'N', g, o);
    return 0;
  }
  const char *env = getenv("OPENBLAS_CORETYPE");
  printf("built-in kernel: %s; OPENBLAS_CORETYPE %s%s\n",
         tg__gemm_kernel_name(tg__gemm_kernel()), env ? "=" : "unset",
         env ? env : "");
  printf("%-7s %-12s %2s %5s %5s %5s %3s %10s %10s %6s\n", "group", "product",
         "op", "M", "N", "K", "thr", "tapegrad", "openblas", "ratio");
  double sq1024[3] = {0, 0, 0}, g1024[3] = {0, 0, 0}, w2log[3] = {0, 0, 0},
         lmlog[3] = {0, 0, 0};
  int w2n = 0, lmn = 0;
  /* Each library runs all its shapes in one phase, with a pause between
   * phases: both keep idle threads spinning for a while after a call, and
   * interleaving them would make each pay for the other's spinners. */
  double gt[NSHAPES], ot[NSHAPES];
  const struct timespec pause = {0, 300000000};
  int most_thr = cpu_time ? 1 : 2;
  for (int thr = 1; thr <= most_thr; thr++) {
    set_threads(thr);
    nanosleep(&pause, NULL);
    for (size_t i = 0; i < NSHAPES; i++)
      gt[i] = gflops(run_builtin, &shapes[i], A, B, C, reps);
    nanosleep(&pause, NULL);
    for (size_t i = 0; i < NSHAPES; i++) {
      ot[i] = 0;
#ifdef HAVE_OPENBLAS
      ot[i] = gflops(run_openblas, &shapes[i], A, B, C, reps);
#endif
    }
    for (size_t i = 0; i < NSHAPES; i++) {
      const shape *s = &shapes[i];
      double g = gt[i], o = ot[i];
      double ratio = o > 0 ? g / o : 0;
      printf("%-7s %-12s %c%c %5ld %5ld %5ld %3d %10.1f %10.1f %6.2f\n",
             s->group, s->what, s->ta ? 'T' : 'N', s->tb ? 'T' : 'N',
             (long)s->m, (long)s->n, (long)s->k, thr, g, o, ratio);
      double r = o > 0 ? ratio : g;
      if (strcmp(s->what, "1024") == 0) sq1024[thr] = r, g1024[thr] = g;
      if (strcmp(s->group, "W2") == 0) {
        w2log[thr] += log(r);
        if (thr == 1) w2n++;
      }
      if (strcmp(s->group, "LM") == 0) {
        lmlog[thr] += log(r);
        if (thr == 1) lmn++;
      }
    }
    fflush(stdout);
  }
  /* The ceiling the built-in product is measured against: what the CPU's
   * FMA units do with nothing else to do (timed by the wall clock, so not
   * with --cpu-time). */
  for (int thr = 1; thr <= (cpu_time ? 0 : 2); thr++) {
    const char *isa = NULL;
    double peak = fma_ceiling(thr, reps, &isa);
    if (peak > 0)
      printf("FMA ceiling (%s, %d thread%s): %.1f GFLOP/s; built-in 1024^2: "
             "%.1f GFLOP/s = %.0f%% of it\n", isa, thr, thr > 1 ? "s" : "",
             peak, g1024[thr], 100 * g1024[thr] / peak);
  }
  const char *unit =
#ifdef HAVE_OPENBLAS
      "";
#else
      " (no OpenBLAS: these are GFLOP/s)";
#endif
  if (cpu_time)
    printf("gemm-vs-openblas: 1024@1=%.2f W2@1=%.2f LM@1=%.2f (thread CPU "
           "time, 1 thread)%s\n",
           sq1024[1], exp(w2log[1] / w2n), exp(lmlog[1] / lmn), unit);
  else
    printf("gemm-vs-openblas: 1024@1=%.2f 1024@2=%.2f W2@1=%.2f W2@2=%.2f "
           "LM@1=%.2f LM@2=%.2f%s\n",
           sq1024[1], sq1024[2], exp(w2log[1] / w2n), exp(w2log[2] / w2n),
           exp(lmlog[1] / lmn), exp(lmlog[2] / lmn), unit);
  free(A);
  free(B);
  free(C);
  tg__gemm_release();
  return 0;
}

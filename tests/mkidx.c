/* tests/mkidx.c: writes a small synthetic data set in MNIST's IDX layout
 * (train and t10k, images and labels) into a directory, for the tests of
 * tapegrad-mnist: ten noisy binary prototypes of 28x28 pixels.
 * Usage: mkidx DIR N_TRAIN N_TEST */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tapegrad.h"

static int put_be32(FILE *f, uint32_t v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 8), (unsigned char)v};
  return fwrite(b, 1, 4, f) == 4 ? 0 : -1;
}

static int write_split(const char *dir, const char *split, long n, tg_rng *rng,
                       const unsigned char proto[10][784]) {
  char ip[4096], lp[4096];
  snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte", dir, split);
  snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte", dir, split);
  FILE *fi = fopen(ip, "wb"), *fl = fopen(lp, "wb");
  int rc = fi && fl ? 0 : -1;
  rc = rc || put_be32(fi, 0x803) || put_be32(fi, (uint32_t)n) ||
       put_be32(fi, 28) || put_be32(fi, 28);
  rc = rc || put_be32(fl, 0x801) || put_be32(fl, (uint32_t)n);
  for (long i = 0; i < n && !rc; i++) {
    unsigned char c = (unsigned char)tg_rng_below(rng, 10), px[784];
    for (int j = 0; j < 784; j++)
      px[j] = tg_rng_uniform(rng) < 0.3 ? (unsigned char)(255 - proto[c][j]) : proto[c][j];
    rc = fwrite(px, 1, 784, fi) != 784 || fwrite(&c, 1, 1, fl) != 1;
  }
  if (fi && fclose(fi)) rc = -1;
  if (fl && fclose(fl)) rc = -1;
  if (rc) fprintf(stderr, "mkidx: cannot write %s or %s\n", ip, lp);
  return rc;
}

int main(int argc, char **argv) {
  long ntr, nte;
  if (argc != 4 || (ntr = atol(argv[2])) < 1 || (nte = atol(argv[3])) < 1) {
    fprintf(stderr, "usage: mkidx DIR N_TRAIN N_TEST\n");
    return 2;
  }
  static unsigned char proto[10][784];
  tg_rng rng;
  tg_rng_seed(&rng, 5);
  for (int c = 0; c < 10; c++)
    for (int j = 0; j < 784; j++) proto[c][j] = tg_rng_below(&rng, 2) ? 255 : 0;
  return write_split(argv[1], "train", ntr, &rng, proto) ||
                 write_split(argv[1], "t10k", nte, &rng, proto)
             ? 1
             : 0;
}

/* examples/cli.c: the command-line helpers of cli.h, built into both training
 * programs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tapegrad.h"

int parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int parse_double(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
  *out = v;
  return 0;
}

int pick(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s, names[i])) return i;
  return -1;
}

int invalid_option(const char *prog, const char *what, const char *arg) {
  fprintf(stderr, "%s: invalid %s: '%s'\n", prog, what, arg);
  return 2;
}

int check_output(const char *prog, const char *opt, const char *path) {
  if (tg_output_check(path) == TG_OK) return 0;
  /* the library's message names its function first; the user gave an option */
  const char *why = tg_last_error(), *colon = strstr(why, ": ");
  fprintf(stderr, "%s: %s '%s': %s\n", prog, opt, path, colon ? colon + 2 : why);
  return 2;
}

double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

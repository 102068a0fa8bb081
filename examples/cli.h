/* examples/cli.h: the command-line pieces tapegrad-mnist and tapegrad-charlm
 * share: number and name parsing for their options, the message for a bad
 * value, the early check of output paths, and a monotonic clock. */
#ifndef TAPEGRAD_EXAMPLES_CLI_H
#define TAPEGRAD_EXAMPLES_CLI_H

/* s as a whole decimal number in [lo, hi] into *out: 0, or -1 (and *out
 * untouched) for anything else, overflow included. */
int parse_long(const char *s, long lo, long hi, long *out);
/* s as a whole floating-point number in [lo, hi] (NaN is outside every
 * range) into *out: 0 or -1. */
int parse_double(const char *s, double lo, double hi, double *out);
/* The index of s among the n names, or -1. */
int pick(const char *s, const char *const *names, int n);
/* Prints "PROG: invalid WHAT: 'ARG'" to stderr and returns 2, the exit
 * status of a bad command line (the caller adds its usage). */
int invalid_option(const char *prog, const char *what, const char *arg);
/* An output file's folder must exist and be writable, checked before any
 * data is read (tg_output_check): 0, or 2 after printing
 * "PROG: OPT 'PATH': the reason". */
int check_output(const char *prog, const char *opt, const char *path);
/* Seconds on the monotonic clock. */
double now(void);

#endif

/* src/engine/engine.h: the tape, its nodes, and the declaration every op is
 * (tg_opdef), applied by one door, tg__apply. The engine knows no op by
 * name: it calls an op's rule and kernels through its declaration. */
#ifndef TAPEGRAD_ENGINE_H
#define TAPEGRAD_ENGINE_H

#include "../kernels/kernels.h"
#include "tensor.h"

#define TG__MAX_IN 5 /* of an op of fixed arity, and of a test case (batch
                        * norm: x, gamma, beta and the two running stats) */
#define TG__VARIADIC (-1) /* an op's n_in: any number >= 1 (concat) */
#define TG__MAX_IARGS 8 /* conv2d: stride, padding, dilation (2 each), groups */
#define TG__HBLOCK 256

typedef struct tg_node tg_node;

/* The scalar arguments of one op call (a constant, an axis, a flag), kept
 * in its node for backward. What each slot means is the op's to say. */
typedef struct {
  double f[2];
  int64_t i[TG__MAX_IARGS];
  void *ptr; /* an object the op uses, such as dropout's generator */
  int n_in;  /* set by the door: how many inputs the call has */
} tg_opargs;

/* What a shape rule decides: the result's dtype and shape. */
typedef struct {
  tg_dtype dtype;
  int ndim;
  int64_t shape[TG_MAX_DIMS];
} tg_outshape;

/* Input domains for the generated tests. */
enum {
  TG__DOM_ANY = 0,  /* normal(0,1) */
  TG__DOM_POS,      /* uniform in [0.5, 2] */
  TG__DOM_NONZERO,  /* |x| in [0.1, 2]: away from a kink at 0 */
  TG__DOM_CLASS,    /* int32 class indices in [0, C), C = case's classes */
  TG__DOM_PROB,     /* float rows that are probability distributions */
  TG__DOM_UNIT,     /* uniform in [0, 1] */
  TG__DOM_COLSIGN,  /* |x| in [0.1, 1], positive where the last index is
                       even, negative where it is odd: one sign per column */
  TG__DOM_DISTINCT, /* distinct multiples of 1/16 in random order: no two
                       elements within a gradient check's step (max pool) */
};

/* One test case of an op: its inputs' shapes and domains, and the
 * arguments it is applied with. An input of ndim -1 is left out (NULL: an
 * optional input, such as tg_linear's bias); ndim 0 is a 0-d tensor. A
 * case with a status is bad input: the op must refuse it with that status
 * and a message holding msg (the tests also check that it names the op). */
typedef struct {
  int n; /* inputs, for a variadic op */
  int ndim[TG__MAX_IN];
  int64_t shape[TG__MAX_IN][TG_MAX_DIMS];
  int domain[TG__MAX_IN];
  tg_opargs args;
  int64_t classes; /* for TG__DOM_CLASS */
  int status;      /* 0: a good case; else the error expected */
  const char *msg; /* a fragment the error message must hold */
} tg_opcase;

/* Per-input flags of an op, for input k < 8 (a variadic op's inputs from
 * the eighth on have none). */
#define TG__IN_INT(k) (1u << (k))        /* int32 (indices), never float */
#define TG__IN_OPT(k) (1u << (8 + (k)))  /* may be NULL */
#define TG__IN_NODIFF(k) (1u << (16 + (k))) /* no gradient flows to it */
/* The result is a view: the door allocates no data for it, and forward
 * points out->data into an input's (backward still adds its gradient into
 * the input's, like any op). */
#define TG__OP_VIEW (1u << 24)

/* An op, as the engine applies it (tg__apply):
 * - rule: checks the inputs' shapes (and argument values) and gives the
 *   result's dtype and shape, or records a message naming fn and returns
 *   the error. The door has already checked what flags say: inputs
 *   present, alive, on this tape, float (or int32) and of one float dtype.
 * - forward: computes n->out from n->in and n->args. It may keep what
 *   backward needs in n->saved (tape arena memory); n is the recorded node,
 *   or a node of the door's own when nothing is recorded (tg__recorded
 *   tells them apart). Returns TG_OK or an error with a message.
 * - backward: accumulates (+=) into tg__gin(n, k) for each input k whose
 *   gradient is wanted, from n->out->grad. */
typedef struct tg_opdef {
  const char *name;
  const char *api; /* the function named in messages; NULL: "tg_" name */
  int n_in; /* or TG__VARIADIC */
  const char *in_names[TG__MAX_IN]; /* NULL: "a", "b", "c", "d", "e" */
  unsigned flags;
  int (*rule)(const char *fn, tg_tensor *const *in, const tg_opargs *a,
              tg_outshape *out);
  int (*forward)(tg_tape *t, tg_node *n);
  void (*backward)(const tg_node *n);
  const tg_opcase *cases;
  int n_cases;
} tg_opdef;

/* The cases field pair of a tg_opdef, counted from the array itself. */
#define TG__CASES(arr) .cases = (arr), .n_cases = (int)(sizeof(arr) / sizeof((arr)[0]))

struct tg_node {
  const tg_opdef *op;
  tg_tensor **in; /* n_in inputs, in the tape's arena when recorded */
  int n_in;
  tg_tensor *out;
  tg_opargs args;
  void *saved; /* what forward kept for backward, in the tape's arena */
  int prof;    /* 1 + its profile entry, or 0: not timed in backward */
};

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
  bool profile;        /* time kernels into prof (profile.c) */
  size_t in_use, peak; /* arena bytes handed out since the clear; their most */
  struct tg__prof *prof; /* allocated when profiling is first turned on */
  /* Region labels, kept for the tape's life so that a node's region stays
   * an index; region is 1 + the current label's, 0 for none. */
  const char *regions[TG_PROFILE_MAX_REGIONS];
  int n_regions, region;
};

/* apply.c: the door every op goes through. in has n entries (op->n_in,
 * unless the op is variadic); args may be NULL (all zero). Returns the
 * result on t, or NULL: a NULL required input returns NULL and keeps the
 * message of the op that failed first; anything else wrong records a
 * message naming the op. */
tg_tensor *tg__apply_n(tg_tape *t, const tg_opdef *op, tg_tensor *const *in,
                       int n, const tg_opargs *args);
static inline tg_tensor *tg__apply(tg_tape *t, const tg_opdef *op,
                                   tg_tensor *const *in, const tg_opargs *args) {
  return tg__apply_n(t, op, in, op->n_in, args);
}
/* The function an op's messages name: op->api or "tg_" op->name. */
const char *tg__fn_of(const tg_opdef *op, char *buf, size_t n);

/* tape.c */
void *tg__arena_alloc(tg_tape *t, size_t n); /* 64-byte aligned, not zeroed */
/* tensor.c: zeroes t->grad (all numel elements), large ones over threads. */
void tg__grad_zero(tg_tensor *t);
/* A zeroed tensor header that lives until the tape's next clear. */
tg_tensor *tg__tape_header(tg_tape *t);
/* Allocates a result of op on the tape (data not zeroed) and records a
 * node when recording and any input needs grad. NULL on failure. */
tg_tensor *tg__emit(tg_tape *t, const tg_opdef *op, tg_dtype dtype, int ndim,
                    const int64_t *shape, tg_tensor *const *in, int n_in);
/* The node that made out, or NULL when nothing was recorded. */
tg_node *tg__node_of(tg_tensor *out);
/* The finite check, when the tape asks for it: out, or NULL with
 * TG_ENONFINITE. */
tg_tensor *tg__done(tg_tape *t, tg_tensor *out, const char *fn);

/* profile.c. The entry for op in the current region, 1-based, or -1 with a
 * message naming fn when the table is full. */
int tg__prof_slot(tg_tape *t, const tg_opdef *op, const char *fn);
/* n's forward (slot from tg__prof_slot), timed into its entry. */
int tg__prof_forward(tg_tape *t, tg_node *n, int slot);
/* Adds one backward of the node whose entry is slot, started at start
 * (tg__prof_now). */
double tg__prof_now(void);
void tg__prof_backward(tg_tape *t, int slot, double start);
void tg__prof_free(tg_tape *t);

/* Whether n is on the tape (backward will run it). */
static inline bool tg__recorded(const tg_node *n) { return n->out->node >= 0; }

/* The grad buffer a backward kernel accumulates into for input i, or NULL
 * when that input needs no gradient. */
static inline void *tg__gin(const tg_node *n, int i) {
  tg_tensor *x = i < n->n_in ? n->in[i] : NULL;
  return x && (x->flags & TG__NEEDS_GRAD) ? x->grad : NULL;
}

#endif

/* src/engine/tensor.h: the tensor's fields and the helpers on them. The one
 * private header the layers above the engine (file formats, training
 * helpers) may reach; the tape's fields are not here. */
#ifndef TAPEGRAD_ENGINE_TENSOR_H
#define TAPEGRAD_ENGINE_TENSOR_H

#include "../base/base.h"

enum {
  TG__OWNED = 1u,      /* heap tensor the caller frees */
  TG__REQ_GRAD = 2u,   /* a parameter: keeps and accumulates its grad */
  TG__NEEDS_GRAD = 4u, /* a parameter, or made from one by a recorded op */
  TG__GRAD_VIEW = 8u,  /* the view of another tensor's grad (tg_tensor_grad) */
  TG__VIEW_OF = 16u,   /* a caller's header over another tensor's data
                          (tg_rows): freeing it leaves the data alone */
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
  tg_tensor *gview;  /* the tensor tg_tensor_grad returns, made once */
};

size_t tg__dtype_size(tg_dtype d);
bool tg__same_shape(const tg_tensor *a, const tg_tensor *b);
bool tg__is_float(tg_dtype d);
/* rows = numel / last dim, cols = last dim. */
void tg__rows_cols(const tg_tensor *t, int64_t *rows, int64_t *cols);
/* "[32,784]" into buf (at least 96 bytes); returns buf. */
const char *tg__shape_str(const tg_tensor *t, char *buf);
/* TG_OK when x is caller-owned or its tape has not been cleared since x
 * was made; else TG_ESTATE with a message naming fn and what. */
int tg__check_alive(const char *fn, const tg_tensor *x, const char *what);
/* The same, and t is a tape on which x may be used: x is caller-owned or
 * was made on t. */
int tg__check_usable(const char *fn, const tg_tape *t, const tg_tensor *x,
                     const char *what);

#endif

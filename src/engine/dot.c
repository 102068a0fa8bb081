/* src/engine/dot.c: the recorded graph as Graphviz DOT, for a user to look
 * at the graph a model built (dot -Tsvg). */
#include <string.h>

#include "engine.h"

/* The leaves (inputs no recorded node made) get ids in order of first use:
 * a linear search, which is fine for the graphs one looks at. */
typedef struct {
  const tg_tensor **v;
  size_t n, cap;
} leaves;

static long leaf_id(leaves *l, const tg_tensor *x, bool *fresh) {
  *fresh = false;
  for (size_t i = 0; i < l->n; i++)
    if (l->v[i] == x) return (long)i;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    const tg_tensor **v = tg__realloc(l->v, cap * sizeof *v);
    if (!v) return -1;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n] = x;
  *fresh = true;
  return (long)l->n++;
}

static void describe(FILE *f, const tg_tensor *x) {
  char sb[96];
  fprintf(f, "%s %s", tg__shape_str(x, sb), tg_dtype_name(x->dtype));
}

int tg_tape_dot(const tg_tape *t, FILE *f) {
  if (!t || !f)
    return tg__err(TG_EINVAL, "tg_tape_dot: %s is NULL", !t ? "tape" : "file");
  leaves l = {0};
  fprintf(f, "digraph tapegrad {\n  rankdir=LR;\n"
             "  node [fontname=\"Helvetica\", fontsize=10];\n");
  for (size_t k = 0; k < t->n_nodes; k++) {
    const tg_node *n = &t->nodes[k];
    char fb[64];
    fprintf(f, "  n%zu [shape=box, style=\"rounded,filled\", fillcolor=\"#dbe8f6\", "
               "label=\"%s\\n", k, tg__fn_of(n->op, fb, sizeof fb) + 3);
    describe(f, n->out);
    fprintf(f, "\"];\n");
    for (int i = 0; i < n->n_in; i++) {
      const tg_tensor *x = n->in[i];
      if (!x) continue;
      if (x->tape == t && x->gen == t->gen && x->node >= 0) {
        fprintf(f, "  n%lld -> n%zu;\n", (long long)x->node, k);
        continue;
      }
      bool fresh;
      long id = leaf_id(&l, x, &fresh);
      if (id < 0) {
        tg__free(l.v);
        return tg__err(TG_ENOMEM, "tg_tape_dot: out of memory");
      }
      if (fresh) {
        bool param = x->flags & TG__REQ_GRAD;
        fprintf(f, "  x%ld [shape=%s, label=\"%s\\n", id,
                param ? "box, style=filled, fillcolor=\"#f6e3c5\"" : "ellipse, color=gray",
                param ? "parameter" : x->tape ? "constant" : "input");
        describe(f, x);
        fprintf(f, "\"];\n");
      }
      fprintf(f, "  x%ld -> n%zu%s;\n", id, k,
              x->flags & TG__NEEDS_GRAD ? "" : " [color=gray]");
    }
  }
  fprintf(f, "}\n");
  tg__free(l.v);
  if (fflush(f) || ferror(f))
    return tg__err(TG_EIO, "tg_tape_dot: writing the graph failed");
  return TG_OK;
}

/* tests/ckpt_writer.c: writes DIR/ckpt.safetensors and a few .npy files
 * through the public API, and prints what scripts/check-npy.py should print
 * for them (tests/check-python.sh compares the two). Values are small
 * multiples of 1/4, so every sum is exact whatever the order of addition. */
#include <stdio.h>
#include <tapegrad.h>

static double sum(tg_tensor *t) {
  double s = 0;
  for (int64_t i = 0; i < tg_tensor_numel(t); i++) s += tg_get(t, i);
  return s;
}

static void print_line(const char *name, tg_tensor *t) {
  printf("%s %s [", name, tg_dtype_name(tg_tensor_dtype(t)));
  for (int i = 0; i < tg_tensor_ndim(t); i++)
    printf(i ? ",%lld" : "%lld", (long long)tg_tensor_dim(t, i));
  printf("] sum=%.6f\n", sum(t));
}

static tg_tensor *filled(tg_dtype dt, int ndim, const int64_t *shape, int k) {
  tg_tensor *t = tg_zeros(dt, ndim, shape);
  if (!t) return NULL;
  for (int64_t i = 0; i < tg_tensor_numel(t); i++)
    tg_set(t, i, dt == TG_I32 ? (double)(i * k - 7) : (double)(i % 13 - 5) * 0.25 * k);
  return t;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: ckpt_writer DIR\n");
    return 2;
  }
  tg_tensor *t[4] = {
      filled(TG_F32, TG_SHAPE(4, 3), 1),
      filled(TG_F64, TG_SHAPE(5), 3),
      filled(TG_I32, TG_SHAPE(2, 3, 2), 2),
      filled(TG_F32, TG_SHAPE(2, 1, 3, 2), 5),
  };
  const char *names[4] = {"layer.W", "layer.b", "steps", "conv.k"};
  const char *npy[4] = {"f32_2d.npy", "f64_1d.npy", "i32_3d.npy", "f32_4d.npy"};
  char path[4096];
  snprintf(path, sizeof path, "%s/ckpt.safetensors", argv[1]);
  if (tg_save(path, names, t, 4, (const char *[]){"epoch", "2", NULL}) != TG_OK) {
    fprintf(stderr, "ckpt_writer: %s\n", tg_last_error());
    return 1;
  }
  printf("== ckpt.safetensors: 4 tensors, format tapegrad 1\n");
  for (int i = 0; i < 4; i++) print_line(names[i], t[i]);
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s/%s", argv[1], npy[i]);
    if (tg_npy_save(path, t[i]) != TG_OK) {
      fprintf(stderr, "ckpt_writer: %s\n", tg_last_error());
      return 1;
    }
    printf("== %s\n", npy[i]);
    print_line("-", t[i]);
  }
  for (int i = 0; i < 4; i++) tg_tensor_free(t[i]);
  return 0;
}

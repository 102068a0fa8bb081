/* tests/ckpt_saver.c: saves a checkpoint again and again, with new content
 * each time, for tests/test_kill.c to kill at any moment. Version v (BASE+1,
 * BASE+2, ...) fills tensor i with (v % 100000) + i and stores "version" in
 * the metadata, so a file holding parts of two versions would show. */
#include <stdio.h>
#include <stdlib.h>
#include <tapegrad.h>

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: ckpt_saver FILE BASE [COUNT]\n"
                    "saves FILE COUNT times (forever without it)\n");
    return 2;
  }
  long base = atol(argv[2]), count = argc == 4 ? atol(argv[3]) : -1;
  const char *names[3] = {"emb", "proj", "steps"};
  tg_tensor *t[3] = {
      tg_zeros(TG_F32, TG_SHAPE(256, 1024)), /* 1 MiB */
      tg_zeros(TG_F64, TG_SHAPE(64, 256)),
      tg_zeros(TG_I32, TG_SHAPE(3, 4, 5)),
  };
  if (!t[0] || !t[1] || !t[2]) {
    fprintf(stderr, "ckpt_saver: %s\n", tg_last_error());
    return 1;
  }
  int rc = 0;
  for (long k = 1; count < 0 || k <= count; k++) {
    long v = base + k;
    char vs[32];
    snprintf(vs, sizeof vs, "%ld", v);
    for (int i = 0; i < 3; i++) tg_fill(t[i], (double)(v % 100000) + i);
    if (tg_save(argv[1], names, t, 3, (const char *[]){"version", vs, NULL})) {
      fprintf(stderr, "ckpt_saver: %s\n", tg_last_error());
      rc = 1;
      break;
    }
  }
  for (int i = 0; i < 3; i++) tg_tensor_free(t[i]);
  return rc;
}

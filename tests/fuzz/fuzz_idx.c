/* tests/fuzz/fuzz_idx.c: libFuzzer target for the IDX reader. The first
 * input byte picks the dtype asked for (F32, F64, I32); the rest is the file.
 * Plain files are read from memory; gzip'd ones (1f 8b) go through an
 * anonymous in-memory file so zlib's path is fuzzed too. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tg_tensor *load_gz(const uint8_t *data, size_t size, tg_dtype dt) {
  int fd = memfd_create("fuzz_idx", 0);
  if (fd < 0) return NULL;
  tg_tensor *t = NULL;
  if (write(fd, data, size) == (ssize_t)size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    t = tg_idx_load(path, dt);
    if (!t && (tg_last_status() >= 0 || !tg_last_error()[0])) __builtin_trap();
  }
  close(fd);
  return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static const tg_dtype dts[3] = {TG_F32, TG_F64, TG_I32};
  tg_dtype dt = dts[data[0] % 3];
  data++;
  size--;
  tg_clear_error();
  tg_tensor *t;
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
    t = load_gz(data, size, dt);
  } else {
    t = tg__idx_parse(data, size, dt);
    if (!t && (tg_last_status() >= 0 || !tg_last_error()[0])) __builtin_trap();
    /* A plain file loads only when it is exactly header plus data. */
    if (t && (uint64_t)tg_tensor_numel(t) + 8 > size) __builtin_trap();
  }
  if (t) {
    if (tg_tensor_dtype(t) != dt) __builtin_trap();
    tg_tensor_free(t);
  }
  return 0;
}

/* tests/test_kill.c: a process saving a checkpoint again and again
 * (tests/ckpt_saver) is killed with SIGKILL many times: as soon as its
 * temporary file appears, and at random moments after a save of its has
 * finished. After every kill the
 * checkpoint must load, verify and hold one whole version no older than
 * the last, and at most one temporary file may be left, the next save
 * removing what a killed one left. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#ifndef CKPT_SAVER
#define CKPT_SAVER "./tests/ckpt_saver"
#endif

static const char *names[3] = {"emb", "proj", "steps"};

/* The temporary files of ckpt.st in test_dir(); with pid > 0, only those
 * of that writer (their names carry its pid). */
static int temps(pid_t pid) {
  char prefix[64];
  if (pid > 0) snprintf(prefix, sizeof prefix, "ckpt.st.tg-tmp.%ld.", (long)pid);
  else snprintf(prefix, sizeof prefix, "ckpt.st.tg-tmp.");
  DIR *d = opendir(test_dir());
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d))) n += !strncmp(e->d_name, prefix, strlen(prefix));
  closedir(d);
  return n;
}

/* The checkpoint's inode: each finished save renames a new file over it. */
static ino_t inode(void) {
  struct stat st;
  ck_assert_int_eq(stat(P("ckpt.st"), &st), 0);
  return st.st_ino;
}

static pid_t start_saver(long base, const char *count) {
  char b[32];
  snprintf(b, sizeof b, "%ld", base);
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    execl(CKPT_SAVER, CKPT_SAVER, P("ckpt.st"), b, count, (char *)NULL);
    fprintf(stderr, "cannot run %s: %s\n", CKPT_SAVER, strerror(errno));
    _exit(127);
  }
  return pid;
}

static int wait_for(pid_t pid) {
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  return st;
}

/* The checkpoint on disk: whole, verified, one version; returns it. */
static long check_file(int round) {
  tg_checkpoint *ck = tg_checkpoint_open(P("ckpt.st"));
  ck_assert_msg(ck != NULL, "round %d: %s", round, tg_last_error());
  ck_assert_msg(tg_checkpoint_verified(ck), "round %d: not verified", round);
  ck_assert_int_eq(tg_checkpoint_count(ck), 3);
  const char *vs = tg_checkpoint_meta(ck, "version");
  ck_assert_ptr_nonnull(vs);
  long v = atol(vs);
  for (int i = 0; i < 3; i++) {
    tg_tensor *x = tg_checkpoint_get(ck, names[i]);
    ck_assert_ptr_nonnull(x);
    double want = (double)(v % 100000) + i;
    ck_assert_double_eq(tg_get(x, 0), want);
    ck_assert_double_eq(tg_get(x, tg_tensor_numel(x) - 1), want);
  }
  tg_checkpoint_close(ck);
  /* and into tensors of one's own, as a resumed run would */
  tg_tensor *t[3] = {tg_zeros(TG_F32, TG_SHAPE(256, 1024)),
                     tg_zeros(TG_F64, TG_SHAPE(64, 256)),
                     tg_zeros(TG_I32, TG_SHAPE(3, 4, 5))};
  ck_assert_msg(tg_load_into(P("ckpt.st"), names, t, 3) == TG_OK, "round %d: %s",
                round, tg_last_error());
  ck_assert_double_eq(tg_get(t[2], 59), (double)(v % 100000) + 2);
  for (int i = 0; i < 3; i++) tg_tensor_free(t[i]);
  return v;
}

START_TEST(killed_saves) {
  bool quick = getenv("TG_TEST_QUICK") != NULL;
  int rounds = quick ? 16 : 40;
  ck_assert_int_eq(WEXITSTATUS(wait_for(start_saver(0, "1"))), 0);
  ck_assert_int_eq(check_file(-1), 1);
  tg_rng rng;
  tg_rng_seed(&rng, 20261202);
  long last = 1;
  int advanced = 0, left = 0;
  for (int r = 0; r < rounds; r++) {
    long base = (r + 1) * 1000000L;
    ino_t ino0 = inode();
    pid_t pid = start_saver(base, NULL);
    /* Odd rounds: kill as soon as the saver's temporary file is there. */
    if (r % 2) {
      struct timespec step = {0, 50000}, t0, now;
      clock_gettime(CLOCK_MONOTONIC, &t0);
      while (temps(pid) == 0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        ck_assert_msg(now.tv_sec - t0.tv_sec < 20, "round %d: no temporary "
                      "file appeared in 20 s", r);
        nanosleep(&step, NULL);
      }
    } else {
      /* Even rounds: once the saver has finished a save (a new file is in
       * place, so the test cannot pass without saves completing however
       * slow the machine), at a random moment of the next 0-30 ms. */
      struct timespec step = {0, 200000}, t0, now;
      clock_gettime(CLOCK_MONOTONIC, &t0);
      while (inode() == ino0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        ck_assert_msg(now.tv_sec - t0.tv_sec < 20, "round %d: no save "
                      "finished in 20 s", r);
        nanosleep(&step, NULL);
      }
      struct timespec ts = {0, (long)tg_rng_below(&rng, 30) * 1000000L};
      nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    int st = wait_for(pid);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                  "round %d: the saver was not killed (exit status %d)", r,
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    long v = check_file(r);
    ck_assert_msg(v >= last, "round %d: version %ld after %ld", r, v, last);
    advanced += v != last;
    last = v;
    int n = temps(0);
    ck_assert_msg(n <= 1, "round %d: %d temporary files left", r, n);
    left += n;
  }
  fprintf(stderr, "test_kill: %d kills; %d left a temporary file; the "
          "checkpoint advanced %d times\n", rounds, left, advanced);
  /* the kills did land in the middle of saves, and saves did finish */
  ck_assert_msg(left > 0, "no kill left a temporary file in %d rounds", rounds);
  ck_assert_msg(advanced > 0, "no save finished in %d rounds", rounds);
  /* one whole save removes what the last killed one left */
  ck_assert_int_eq(WEXITSTATUS(wait_for(start_saver(999000000L, "1"))), 0);
  ck_assert_int_eq(check_file(rounds), 999000001L);
  ck_assert_int_eq(temps(0), 0);
}
END_TEST

int main(void) {
  make_dir("test_kill");
  Suite *s = suite_create("kill");
  TCase *tc = tcase_create("kill -9 during saves");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, killed_saves);
  suite_add_tcase(s, tc);
  int rc = run_suite(s);
  remove_tree(test_dir());
  return rc;
}

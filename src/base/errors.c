/* src/base/errors.c: status names and messages, and the thread-local record of
 * the last error. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base.h"

static _Thread_local char last_msg[512];
static _Thread_local int last_status;

const char *tg_status_name(int status) {
  switch (status) {
#define TG__NAME_CASE(name, val, msg) \
  case TG_##name:                     \
    return "TG_" #name;
    TG_STATUS_MAP(TG__NAME_CASE)
#undef TG__NAME_CASE
  }
  return "TG_UNKNOWN";
}

const char *tg_strerror(int status) {
  switch (status) {
#define TG__MSG_CASE(name, val, msg) \
  case TG_##name:                    \
    return msg;
    TG_STATUS_MAP(TG__MSG_CASE)
#undef TG__MSG_CASE
  }
  return "unknown status";
}

const char *tg_last_error(void) { return last_msg; }
int tg_last_status(void) { return last_status; }

void tg_clear_error(void) {
  last_msg[0] = '\0';
  last_status = TG_OK;
}

int tg__err(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_msg, sizeof last_msg, fmt, ap);
  va_end(ap);
  last_status = status;
  return status;
}

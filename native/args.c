/*
 * Argument checks for berth_os's exported functions, on the JS thread before any thread
 * starts: types, lengths, NUL bytes, absolute paths, allowed flag bits, loop device names.
 * Each throws a TypeError or RangeError naming the argument and returns 0 when it refuses.
 */
#include <stdio.h>
#include <string.h>

#include "addon.h"

/* Copies a JS string into buf: the right type, shorter than cap bytes, no NUL, and for
 * ABSOLUTE_PATH starting with "/". `nullable` accepts null (then *present = 0). */
int berth_arg_str(napi_env env, napi_value v, char *buf, size_t cap, const char *name,
                  enum str_kind kind, int nullable, int *present) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (nullable && (t == napi_null || t == napi_undefined)) {
    *present = 0;
    buf[0] = 0;
    return 1;
  }
  char msg[160];
  if (t != napi_string) {
    snprintf(msg, sizeof msg, "%s must be a string", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return 0;
  }
  size_t len = 0;
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  if (len == 0 || len >= cap) {
    snprintf(msg, sizeof msg, "%s must be 1 to %zu bytes long", name, cap - 1);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return 0;
  }
  napi_get_value_string_utf8(env, v, buf, cap, &len);
  if (memchr(buf, 0, len) != NULL) {
    snprintf(msg, sizeof msg, "%s must not contain NUL", name);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return 0;
  }
  if (kind == ABSOLUTE_PATH && buf[0] != '/') {
    snprintf(msg, sizeof msg, "%s must be an absolute path", name);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return 0;
  }
  if (present) *present = 1;
  return 1;
}

/* A whole number in [0, max]. */
int berth_arg_u32(napi_env env, napi_value v, const char *name, uint32_t max, uint32_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  double d = -1;
  if (t == napi_boolean) {
    bool b;
    napi_get_value_bool(env, v, &b);
    d = b;
  } else if (t == napi_number) {
    napi_get_value_double(env, v, &d);
  }
  if (!(d >= 0 && d <= max && d == (double)(uint32_t)d)) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s must be a whole number from 0 to %u (or a boolean)", name, max);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return 0;
  }
  *out = (uint32_t)d;
  return 1;
}

int berth_arg_mask(napi_env env, napi_value v, const char *name, uint32_t allowed, uint32_t *out) {
  if (!berth_arg_u32(env, v, name, UINT32_MAX, out)) return 0;
  if (*out & ~allowed) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s has bits outside the allowed set 0x%x", name, allowed);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return 0;
  }
  return 1;
}

/* A loop device node: "/dev/loop" and digits only. */
int berth_arg_loop_device(napi_env env, napi_value v, char *buf) {
  if (!berth_arg_str(env, v, buf, 32, "device", ABSOLUTE_PATH, 0, NULL)) return 0;
  const char *p = buf + 9;
  int ok = strncmp(buf, "/dev/loop", 9) == 0 && *p;
  for (; ok && *p; p++) ok = *p >= '0' && *p <= '9';
  if (!ok) napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "device must be /dev/loop<N>");
  return ok;
}

/*
 * Settling a job on the JS thread: its result as a JS value, or the Error it rejects with
 * (code, errno, syscall), then freeing it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

napi_value berth_num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

void berth_set(napi_env env, napi_value obj, const char *key, napi_value v) {
  napi_set_named_property(env, obj, key, v);
}

napi_value berth_str(napi_env env, const char *s) {
  napi_value out;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out);
  return out;
}

/* errno names (strerrorname_np is glibc-only; this also serves musl). */
#define E(x) {x, #x}
static const struct {
  int n;
  const char *name;
} ERRNO_NAMES[] = {
    E(EPERM),  E(ENOENT),  E(EINTR),   E(EIO),       E(ENXIO),   E(E2BIG),        E(EBADF),
    E(EAGAIN), E(ENOMEM),  E(EACCES),  E(EFAULT),    E(ENOTBLK), E(EBUSY),        E(EEXIST),
    E(EXDEV),  E(ENODEV),  E(ENOTDIR), E(EISDIR),    E(EINVAL),  E(ENFILE),       E(EMFILE),
    E(ENOTTY), E(EFBIG),   E(ENOSPC),  E(EROFS),     E(EMLINK),  E(ENAMETOOLONG), E(ENOLCK),
    E(ENOSYS), E(ELOOP),   E(EOVERFLOW), E(EOPNOTSUPP), E(ETIMEDOUT), E(ESTALE),  E(EDQUOT),
    E(EUCLEAN), E(ENOMEDIUM), E(EMEDIUMTYPE), E(ENODATA), E(ENOTEMPTY), E(ESRCH), E(ETXTBSY),
    E(ENOTCONN), E(ECONNABORTED), E(ECANCELED), E(ESHUTDOWN),
};
#undef E

/* Runs on the JS thread only (strerror's buffer is not shared with the workers). */
napi_value berth_sys_error(napi_env env, int err, const char *step) {
  char code[24], buf[256];
  snprintf(code, sizeof code, "E%d", err);
  for (size_t i = 0; i < sizeof ERRNO_NAMES / sizeof ERRNO_NAMES[0]; i++)
    if (ERRNO_NAMES[i].n == err) snprintf(code, sizeof code, "%s", ERRNO_NAMES[i].name);
  snprintf(buf, sizeof buf, "%s: %s (%s)", step ? step : "system call", strerror(err), code);
  napi_value error;
  napi_create_error(env, berth_str(env, code), berth_str(env, buf), &error);
  berth_set(env, error, "errno", berth_num(env, err));
  berth_set(env, error, "syscall", berth_str(env, step ? step : "system call"));
  return error;
}

static napi_value result(napi_env env, job_t *j) {
  napi_value out;
  switch (j->op) {
    case OP_LOOP_ATTACH:
      napi_create_object(env, &out);
      berth_set(env, out, "device", berth_str(env, j->device));
      {
        napi_value b;
        napi_get_boolean(env, j->existing, &b);
        berth_set(env, out, "existing", b);
      }
      return out;
    case OP_BLK_SIZE: return berth_num(env, (double)j->bytes); /* exact below 2^53 (8 PiB) */
    case OP_BLK_RO_GET: napi_get_boolean(env, j->flag != 0, &out); return out;
    case OP_BIND_CREATE:
    case OP_UMOUNT_REMOVE: napi_get_boolean(env, j->flag != 0, &out); return out;
    case OP_STATFS:
      napi_create_object(env, &out);
      berth_set(env, out, "type", berth_num(env, (double)j->sf.type));
      berth_set(env, out, "bsize", berth_num(env, (double)j->sf.bsize));
      berth_set(env, out, "frsize", berth_num(env, (double)j->sf.frsize));
      berth_set(env, out, "blocks", berth_num(env, (double)j->sf.blocks));
      berth_set(env, out, "bfree", berth_num(env, (double)j->sf.bfree));
      berth_set(env, out, "bavail", berth_num(env, (double)j->sf.bavail));
      berth_set(env, out, "files", berth_num(env, (double)j->sf.files));
      berth_set(env, out, "ffree", berth_num(env, (double)j->sf.ffree));
      berth_set(env, out, "namelen", berth_num(env, (double)j->sf.namelen));
      berth_set(env, out, "flags", berth_num(env, (double)j->sf.flags));
      return out;
    default: napi_get_undefined(env, &out); return out;
  }
}

void berth_settle(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)js_cb;
  (void)context;
  job_t *j = data;
  if (env != NULL) {
    if (j->err) napi_reject_deferred(env, j->deferred, berth_sys_error(env, j->err, j->step));
    else napi_resolve_deferred(env, j->deferred, result(env, j));
  }
  free(j);
}

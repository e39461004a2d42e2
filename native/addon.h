/*
 * Shared between the Node-API files of berth_os (addon.c, args.c, settle.c): the job one
 * call becomes, and the helpers each file offers the others.
 */
#ifndef BERTH_ADDON_H
#define BERTH_ADDON_H

#define NAPI_VERSION 8
#include <node_api.h>

#include <limits.h>
#include <stdint.h>

#include "ops.h"

enum op {
  OP_MOUNT,
  OP_BIND,
  OP_BIND_CREATE,
  OP_UMOUNT,
  OP_UMOUNT_REMOVE,
  OP_LOOP_ATTACH,
  OP_LOOP_DETACH,
  OP_LOOP_CAPACITY,
  OP_BLK_SIZE,
  OP_BLK_RO_GET,
  OP_BLK_RO_SET,
  OP_FS_SHUTDOWN,
  OP_STATFS,
};

#define DATA_MAX 4096 /* the kernel copies at most one page of mount data */
#define FSTYPE_MAX 32

typedef struct job {
  enum op op;
  napi_deferred deferred;
  napi_threadsafe_function tsfn;
  char a[PATH_MAX]; /* source, image, device or path */
  char b[PATH_MAX]; /* target */
  char fstype[FSTYPE_MAX];
  char data[DATA_MAX];
  int has_fstype, has_data;
  uint32_t u1, u2, u3, u4;
  /* results */
  int err;
  const char *step;
  char device[32];
  int existing, flag;
  uint64_t bytes;
  struct berth_statfs sf;
} job_t;

/* settle.c */
napi_value berth_num(napi_env env, double v);
napi_value berth_str(napi_env env, const char *s);
void berth_set(napi_env env, napi_value obj, const char *key, napi_value v);
/* The Error a failed call rejects with: code ("EBUSY"), errno and syscall (the failed step). */
napi_value berth_sys_error(napi_env env, int err, const char *step);
/* Thread-safe function callback: settles the job's promise on the JS thread and frees it. */
void berth_settle(napi_env env, napi_value js_cb, void *context, void *data);

/* args.c: argument checks that throw TypeError / RangeError synchronously; 0 when they threw. */
enum str_kind { ABSOLUTE_PATH, ANY_TEXT };
int berth_arg_str(napi_env env, napi_value v, char *buf, size_t cap, const char *name,
                  enum str_kind kind, int nullable, int *present);
int berth_arg_u32(napi_env env, napi_value v, const char *name, uint32_t max, uint32_t *out);
int berth_arg_mask(napi_env env, napi_value v, const char *name, uint32_t allowed, uint32_t *out);
int berth_arg_loop_device(napi_env env, napi_value v, char *buf);

#endif

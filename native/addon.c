/*
 * berth_os: the Node-API face of ops.c. Each exported function checks its arguments on the
 * JS thread (types, lengths, no NUL, absolute paths, allowed flag bits), copies them into a
 * job, and runs the job on a thread of its own; the promise settles on the JS thread through
 * one thread-safe function. A call that hangs in the kernel (a mount on a dead device) holds
 * only its own thread: never the event loop, never libuv's shared pool that fs/promises
 * needs, never the thread a later fencing call runs on. The thread-safe function is unref'd:
 * pending calls do not keep the process alive (core/os/sys.ts keeps a timer per call).
 *
 * Errors reject with an Error carrying `code` ("EBUSY"), `errno` (16) and `syscall` (the
 * step that failed, e.g. "LOOP_CONFIGURE"); core/os/sys-errors.ts turns them into berth's
 * typed errors with the device, path and operation in the message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "addon.h"

static void run(job_t *j) {
  const char **s = &j->step;
  switch (j->op) {
    case OP_MOUNT:
      j->err = berth_mount(j->a, j->b, j->has_fstype ? j->fstype : NULL, j->u1,
                           j->has_data ? j->data : NULL, s);
      break;
    case OP_BIND: j->err = berth_bind(j->a, j->b, j->u1, j->u2, s); break;
    case OP_BIND_CREATE: j->err = berth_bind_create(j->a, j->b, j->u1, j->u2, (int)j->u3, &j->flag, s); break;
    case OP_UMOUNT: j->err = berth_umount(j->a, (int)j->u1, s); break;
    case OP_UMOUNT_REMOVE: j->err = berth_umount_remove(j->a, &j->flag, s); break;
    case OP_LOOP_ATTACH: j->err = berth_loop_attach(j->a, (int)j->u1, j->device, &j->existing, s); break;
    case OP_LOOP_DETACH: j->err = berth_loop_detach(j->a, s); break;
    case OP_LOOP_CAPACITY: j->err = berth_loop_set_capacity(j->a, s); break;
    case OP_BLK_SIZE: j->err = berth_blk_size(j->a, &j->bytes, s); break;
    case OP_BLK_RO_GET: j->err = berth_blk_ro_get(j->a, &j->flag, s); break;
    case OP_BLK_RO_SET: j->err = berth_blk_ro_set(j->a, (int)j->u1, s); break;
    case OP_FS_SHUTDOWN: j->err = berth_fs_shutdown(j->a, j->u1, (int)j->u2, j->u3, j->u4, s); break;
    case OP_STATFS: j->err = berth_statfs(j->a, &j->sf, s); break;
  }
}

static void *worker(void *arg) {
  job_t *j = arg;
  napi_threadsafe_function tsfn = j->tsfn; /* j belongs to the JS thread once queued */
  run(j);
  if (napi_call_threadsafe_function(tsfn, j, napi_tsfn_blocking) != napi_ok) free(j); /* env gone */
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  return NULL;
}

/* ---- calls ---- */

typedef struct {
  napi_threadsafe_function tsfn;
} instance_t;

#define MAX_ARGS 6

/* Starts j on its own thread and returns the promise it settles. */
static napi_value start(napi_env env, job_t *j) {
  instance_t *inst;
  napi_get_instance_data(env, (void **)&inst);
  napi_value promise;
  napi_create_promise(env, &j->deferred, &promise);
  j->tsfn = inst->tsfn;
  napi_acquire_threadsafe_function(j->tsfn);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  /* The thread blocks every signal, so its system calls never see EINTR and Node's own
   * signal handling stays on Node's threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t tid;
  int rc = pthread_create(&tid, &attr, worker, j);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    napi_release_threadsafe_function(j->tsfn, napi_tsfn_release);
    j->err = rc;
    j->step = "pthread_create";
    napi_reject_deferred(env, j->deferred, berth_sys_error(env, j->err, j->step));
    free(j);
  }
  return promise;
}

static job_t *prepare(napi_env env, napi_callback_info info, enum op op, size_t want, napi_value *argv) {
  size_t argc = MAX_ARGS;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments");
    return NULL;
  }
  job_t *j = calloc(1, sizeof *j);
  if (!j) napi_throw_error(env, "ENOMEM", "out of memory");
  else j->op = op;
  return j;
}

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      free(j);                                                                                     \
      return NULL;                                                                                 \
    }                                                                                              \
  } while (0)

/* mount(source, target, fstype, flags, data) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  job_t *j = prepare(env, info, OP_MOUNT, 5, argv);
  if (!j) return NULL;
  CHECK(berth_arg_str(env, argv[0], j->a, PATH_MAX, "source", ANY_TEXT, 0, NULL));
  CHECK(berth_arg_str(env, argv[1], j->b, PATH_MAX, "target", ABSOLUTE_PATH, 0, NULL));
  CHECK(berth_arg_str(env, argv[2], j->fstype, FSTYPE_MAX, "fstype", ANY_TEXT, 1, &j->has_fstype));
  CHECK(berth_arg_mask(env, argv[3], "flags", BERTH_MOUNT_FLAGS, &j->u1));
  CHECK(berth_arg_str(env, argv[4], j->data, DATA_MAX, "data", ANY_TEXT, 1, &j->has_data));
  return start(env, j);
}

/* bind(source, target, attrSet, attrClr) and bindCreate(..., kind) -> created (boolean) */
static napi_value bind_call(napi_env env, napi_callback_info info, enum op op) {
  napi_value argv[MAX_ARGS];
  job_t *j = prepare(env, info, op, op == OP_BIND_CREATE ? 5 : 4, argv);
  if (!j) return NULL;
  CHECK(berth_arg_str(env, argv[0], j->a, PATH_MAX, "source", ABSOLUTE_PATH, 0, NULL));
  CHECK(berth_arg_str(env, argv[1], j->b, PATH_MAX, "target", ABSOLUTE_PATH, 0, NULL));
  CHECK(berth_arg_mask(env, argv[2], "attrSet", BERTH_BIND_ATTRS, &j->u1));
  CHECK(berth_arg_mask(env, argv[3], "attrClr", BERTH_BIND_ATTRS, &j->u2));
  if (op == OP_BIND_CREATE) CHECK(berth_arg_u32(env, argv[4], "kind", BERTH_TARGET_FILE, &j->u3));
  return start(env, j);
}
static napi_value js_bind(napi_env env, napi_callback_info info) {
  return bind_call(env, info, OP_BIND);
}
static napi_value js_bind_create(napi_env env, napi_callback_info info) {
  return bind_call(env, info, OP_BIND_CREATE);
}

/* umount(target, flags) */
static napi_value js_umount(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  job_t *j = prepare(env, info, OP_UMOUNT, 2, argv);
  if (!j) return NULL;
  CHECK(berth_arg_str(env, argv[0], j->a, PATH_MAX, "target", ABSOLUTE_PATH, 0, NULL));
  CHECK(berth_arg_mask(env, argv[1], "flags", BERTH_UMOUNT_FLAGS, &j->u1));
  return start(env, j);
}

/* The calls that take one absolute path, named `name` in an error. */
static napi_value path_call(napi_env env, napi_callback_info info, enum op op, const char *name) {
  napi_value argv[MAX_ARGS];
  job_t *j = prepare(env, info, op, 1, argv);
  if (!j) return NULL;
  CHECK(berth_arg_str(env, argv[0], j->a, PATH_MAX, name, ABSOLUTE_PATH, 0, NULL));
  return start(env, j);
}

/* umountRemove(target) -> removed (boolean) */
static napi_value js_umount_remove(napi_env env, napi_callback_info info) {
  return path_call(env, info, OP_UMOUNT_REMOVE, "target");
}

/* loopAttach(image, readOnly) -> { device, existing } */
static napi_value js_loop_attach(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  job_t *j = prepare(env, info, OP_LOOP_ATTACH, 2, argv);
  if (!j) return NULL;
  CHECK(berth_arg_str(env, argv[0], j->a, PATH_MAX, "image", ABSOLUTE_PATH, 0, NULL));
  CHECK(berth_arg_u32(env, argv[1], "readOnly", 1, &j->u1));
  return start(env, j);
}

/* loopDetach(device), loopSetCapacity(device): loop devices only. */
static napi_value loop_device_call(napi_env env, napi_callback_info info, enum op op) {
  napi_value argv[MAX_ARGS];
  job_t *j = prepare(env, info, op, 1, argv);
  if (!j) return NULL;
  CHECK(berth_arg_loop_device(env, argv[0], j->a));
  return start(env, j);
}
static napi_value js_loop_detach(napi_env env, napi_callback_info info) {
  return loop_device_call(env, info, OP_LOOP_DETACH);
}
static napi_value js_loop_set_capacity(napi_env env, napi_callback_info info) {
  return loop_device_call(env, info, OP_LOOP_CAPACITY);
}

/* blockSize(device), blockReadOnly(device) */
static napi_value js_block_size(napi_env env, napi_callback_info info) {
  return path_call(env, info, OP_BLK_SIZE, "device");
}
static napi_value js_block_ro_get(napi_env env, napi_callback_info info) {
  return path_call(env, info, OP_BLK_RO_GET, "device");
}

/* setBlockReadOnly(device, readOnly) */
static napi_value js_block_ro_set(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  job_t *j = prepare(env, info, OP_BLK_RO_SET, 2, argv);
  if (!j) return NULL;
  CHECK(berth_arg_str(env, argv[0], j->a, PATH_MAX, "device", ABSOLUTE_PATH, 0, NULL));
  CHECK(berth_arg_u32(env, argv[1], "readOnly", 1, &j->u1));
  return start(env, j);
}

/* fsShutdown(mountpoint, how, devMajor | null, devMinor | null) */
static napi_value js_fs_shutdown(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  job_t *j = prepare(env, info, OP_FS_SHUTDOWN, 4, argv);
  if (!j) return NULL;
  CHECK(berth_arg_str(env, argv[0], j->a, PATH_MAX, "mountpoint", ABSOLUTE_PATH, 0, NULL));
  CHECK(berth_arg_u32(env, argv[1], "how", BERTH_SHUTDOWN_NOLOGFLUSH, &j->u1));
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  j->u2 = t != napi_null && t != napi_undefined;
  if (j->u2) {
    CHECK(berth_arg_u32(env, argv[2], "devMajor", UINT32_MAX, &j->u3));
    CHECK(berth_arg_u32(env, argv[3], "devMinor", UINT32_MAX, &j->u4));
  }
  return start(env, j);
}

/* statfs(path) */
static napi_value js_statfs(napi_env env, napi_callback_info info) {
  return path_call(env, info, OP_STATFS, "path");
}

/* ---- module ---- */

static void free_instance(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  berth_set(env, exports, name, fn);
}

#define CONST(obj, name) berth_set(env, obj, #name, berth_num(env, (double)(name)))

NAPI_MODULE_INIT() {
  instance_t *inst = calloc(1, sizeof *inst);
  if (!inst) return NULL;
  napi_value name = berth_str(env, "berth_os");
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, berth_settle,
                                      &inst->tsfn) != napi_ok) {
    free(inst);
    napi_throw_error(env, NULL, "berth_os: cannot create its thread-safe function");
    return NULL;
  }
  napi_unref_threadsafe_function(env, inst->tsfn);
  napi_set_instance_data(env, inst, free_instance, NULL);

  export_fn(env, exports, "mount", js_mount);
  export_fn(env, exports, "bind", js_bind);
  export_fn(env, exports, "bindCreate", js_bind_create);
  export_fn(env, exports, "umount", js_umount);
  export_fn(env, exports, "umountRemove", js_umount_remove);
  export_fn(env, exports, "loopAttach", js_loop_attach);
  export_fn(env, exports, "loopDetach", js_loop_detach);
  export_fn(env, exports, "loopSetCapacity", js_loop_set_capacity);
  export_fn(env, exports, "blockSize", js_block_size);
  export_fn(env, exports, "blockReadOnly", js_block_ro_get);
  export_fn(env, exports, "setBlockReadOnly", js_block_ro_set);
  export_fn(env, exports, "fsShutdown", js_fs_shutdown);
  export_fn(env, exports, "statfs", js_statfs);

  napi_value c;
  napi_create_object(env, &c);
  CONST(c, MS_RDONLY);
  CONST(c, MS_NOSUID);
  CONST(c, MS_NODEV);
  CONST(c, MS_NOEXEC);
  CONST(c, MS_NOATIME);
  CONST(c, MS_NODIRATIME);
  CONST(c, MS_RELATIME);
  CONST(c, MS_STRICTATIME);
  CONST(c, MS_SILENT);
  CONST(c, MOUNT_ATTR_RDONLY);
  CONST(c, MOUNT_ATTR_NOSUID);
  CONST(c, MOUNT_ATTR_NODEV);
  CONST(c, MOUNT_ATTR_NOEXEC);
  CONST(c, MOUNT_ATTR__ATIME);
  CONST(c, MOUNT_ATTR_RELATIME);
  CONST(c, MOUNT_ATTR_NOATIME);
  CONST(c, MOUNT_ATTR_STRICTATIME);
  CONST(c, MOUNT_ATTR_NODIRATIME);
  CONST(c, MNT_DETACH);
  CONST(c, UMOUNT_NOFOLLOW);
  berth_set(env, c, "FS_SHUTDOWN_FLAGS_DEFAULT", berth_num(env, BERTH_SHUTDOWN_DEFAULT));
  berth_set(env, c, "FS_SHUTDOWN_FLAGS_LOGFLUSH", berth_num(env, BERTH_SHUTDOWN_LOGFLUSH));
  berth_set(env, c, "FS_SHUTDOWN_FLAGS_NOLOGFLUSH", berth_num(env, BERTH_SHUTDOWN_NOLOGFLUSH));
  berth_set(env, c, "LOOP_MAJOR", berth_num(env, BERTH_LOOP_MAJOR));
  berth_set(env, c, "TARGET_DIR", berth_num(env, BERTH_TARGET_DIR));
  berth_set(env, c, "TARGET_FILE", berth_num(env, BERTH_TARGET_FILE));
  berth_set(env, exports, "constants", c);
  return exports;
}

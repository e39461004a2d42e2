/*
 * berth_sock: blocking unix-socket calls for the per-call executables (dvdcli, the FlexVolume
 * driver), loaded only by frontends/blocking-socket.ts. They make a request or two and exit,
 * with nothing else to run meanwhile, so they wait on the JS thread instead of loading Node's
 * stream stack (node:net and the streams it brings are ~4 ms of a ~70 ms process start).
 *
 *   connect(path, timeoutMs) -> fd     socket(AF_UNIX, SOCK_STREAM) + connect
 *   send(fd, buffer)                   all of it, or an error
 *   recv(fd, max) -> Buffer | null     what has arrived (up to max bytes); null at end of stream
 *   close(fd)
 *
 * timeoutMs > 0 bounds every later wait on the socket (SO_RCVTIMEO / SO_SNDTIMEO: the longest
 * silence, as node's socket.setTimeout); 0 waits as long as it takes. A wait past it fails
 * with code ETIMEDOUT. Errors carry `code` ("ENOENT"), `errno`, `syscall` and, for connect,
 * `address`, as node:net's do, and a message in node's form ("connect ENOENT /run/x.sock").
 * Nothing here takes a path or a size unchecked: the path must fit sun_path and hold no NUL,
 * sizes are bounded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* Largest single recv: callers read a reply in pieces of at most this. */
#define MAX_RECV (16 * 1024 * 1024)

#define E(x) {x, #x}
static const struct {
  int n;
  const char *name;
} NAMES[] = {
    E(ENOENT),     E(EACCES),  E(ECONNREFUSED), E(ECONNRESET), E(ENOTSOCK), E(EPIPE),
    E(ETIMEDOUT),  E(EAGAIN),  E(ENAMETOOLONG), E(EMFILE),     E(ENFILE),   E(ENOMEM),
    E(ENOTDIR),    E(ELOOP),   E(EPROTOTYPE),   E(EBADF),      E(EINVAL),   E(EPERM),
    E(ENOBUFS),    E(EINTR),   E(ECONNABORTED),
};

static napi_value str(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

/* Throws node:net's kind of error: "<syscall> <CODE>[ <address>]" with code, errno, syscall. */
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *address) {
  char code[24], msg[256];
  snprintf(code, sizeof code, "E%d", err);
  for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
    if (NAMES[i].n == err) snprintf(code, sizeof code, "%s", NAMES[i].name);
  if (address) snprintf(msg, sizeof msg, "%s %s %s", syscall, code, address);
  else snprintf(msg, sizeof msg, "%s %s", syscall, code);
  napi_value error, n;
  napi_create_error(env, str(env, code), str(env, msg), &error);
  napi_create_int32(env, -err, &n); /* negative, as libuv's errno on node's errors */
  napi_set_named_property(env, error, "errno", n);
  napi_set_named_property(env, error, "syscall", str(env, syscall));
  if (address) napi_set_named_property(env, error, "address", str(env, address));
  napi_throw(env, error);
  return NULL;
}

/* Reads argument i as an int within [lo, hi]; throws a TypeError naming it otherwise. */
static int int_arg(napi_env env, napi_value *argv, size_t argc, size_t i, const char *name, int64_t lo, int64_t hi, int64_t *out) {
  napi_valuetype t = napi_undefined;
  if (i < argc) napi_typeof(env, argv[i], &t);
  if (t != napi_number) {
    char m[96];
    snprintf(m, sizeof m, "berth_sock: %s must be a number", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", m);
    return 0;
  }
  double d;
  napi_get_value_double(env, argv[i], &d);
  if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d) {
    char m[96];
    snprintf(m, sizeof m, "berth_sock: %s is out of range", name);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", m);
    return 0;
  }
  *out = (int64_t)d;
  return 1;
}

/* connect(path, timeoutMs) -> fd */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype t = napi_undefined;
  if (argc > 0) napi_typeof(env, argv[0], &t);
  if (t != napi_string) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "berth_sock: path must be a string");
    return NULL;
  }
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  size_t len = 0;
  napi_get_value_string_utf8(env, argv[0], NULL, 0, &len);
  char path[sizeof addr.sun_path];
  if (len == 0 || len >= sizeof path) {
    char shown[64];
    napi_get_value_string_utf8(env, argv[0], shown, sizeof shown, NULL);
    return throw_errno(env, len == 0 ? ENOENT : ENAMETOOLONG, "connect", shown);
  }
  napi_get_value_string_utf8(env, argv[0], path, sizeof path, NULL);
  if (strlen(path) != len) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "berth_sock: path must not contain NUL");
    return NULL;
  }
  int64_t timeout_ms;
  if (!int_arg(env, argv, argc, 1, "timeoutMs", 0, 24LL * 3600 * 1000, &timeout_ms)) return NULL;
  memcpy(addr.sun_path, path, len + 1);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", NULL);
  if (timeout_ms > 0) {
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
      int err = errno;
      close(fd);
      return throw_errno(env, err, "setsockopt", NULL);
    }
  }
  int rc;
  do rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    /* A full backlog that stays full for the timeout: EAGAIN with SO_SNDTIMEO. */
    int err = errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS ? ETIMEDOUT : errno;
    close(fd);
    return throw_errno(env, err, "connect", path);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

/* The calls on an open socket: up to two arguments into argv (the rest undefined), the
 * first an fd; throws and returns 0 when it is not one. */
static int fd_call(napi_env env, napi_callback_info info, napi_value argv[2], size_t *argc, int *fd) {
  *argc = 2;
  napi_get_cb_info(env, info, argc, argv, NULL, NULL);
  int64_t v;
  if (!int_arg(env, argv, *argc, 0, "fd", 0, 1 << 30, &v)) return 0;
  *fd = (int)v;
  return 1;
}

/* send(fd, buffer): writes all of it (MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE). */
static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[2];
  int fd;
  if (!fd_call(env, info, argv, &argc, &fd)) return NULL;
  bool is_buffer = false;
  if (argc > 1) napi_is_buffer(env, argv[1], &is_buffer);
  if (!is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "berth_sock: data must be a Buffer");
    return NULL;
  }
  char *data;
  size_t len;
  napi_get_buffer_info(env, argv[1], (void **)&data, &len);
  size_t done = 0;
  while (done < len) {
    ssize_t n = send(fd, data + done, len - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return throw_errno(env, errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno, "write", NULL);
    }
    done += (size_t)n;
  }
  return NULL;
}

/* recv(fd, max) -> Buffer with what has arrived, or null at the end of the stream. */
static napi_value js_recv(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[2];
  int fd;
  int64_t max;
  if (!fd_call(env, info, argv, &argc, &fd)) return NULL;
  if (!int_arg(env, argv, argc, 1, "max", 1, MAX_RECV, &max)) return NULL;
  char stack[64 * 1024];
  char *buf = max <= (int64_t)sizeof stack ? stack : malloc((size_t)max);
  if (!buf) return throw_errno(env, ENOMEM, "read", NULL);
  ssize_t n;
  do n = recv(fd, buf, (size_t)max, 0);
  while (n < 0 && errno == EINTR);
  napi_value out = NULL;
  if (n < 0) {
    int err = errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno;
    if (buf != stack) free(buf);
    return throw_errno(env, err, "read", NULL);
  }
  if (n == 0) napi_get_null(env, &out);
  else napi_create_buffer_copy(env, (size_t)n, buf, NULL, &out);
  if (buf != stack) free(buf);
  return out;
}

/* close(fd) */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[2];
  int fd;
  if (!fd_call(env, info, argv, &argc, &fd)) return NULL;
  if (close(fd) != 0 && errno != EINTR) return throw_errno(env, errno, "close", NULL);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  const napi_property_descriptor fns[] = {
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recv", NULL, js_recv, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

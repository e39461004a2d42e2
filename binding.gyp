{
  # berth's two addons (native/), built by `npm ci` / `npm install` (the install script runs
  # node-gyp). Linux only.
  "targets": [
    {
      # The per-call executables' blocking unix-socket calls (native/sock.c), loaded only by
      # frontends/blocking-socket.ts.
      "target_name": "berth_sock",
      "sources": ["native/sock.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2", "-fvisibility=hidden"],
      "conditions": [["OS!='linux'", { "type": "none" }]]
    },
    {
      "target_name": "berth_os",
      "sources": ["native/addon.c", "native/args.c", "native/settle.c", "native/ops.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2", "-fvisibility=hidden"],
      "conditions": [["OS!='linux'", { "type": "none" }]]
    }
  ]
}

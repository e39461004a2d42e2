{
  # berth's system-call addon (native/): built by `npm ci` / `npm install` (the install
  # script runs node-gyp), loaded only by core/os/sys.ts. Linux only.
  "targets": [
    {
      "target_name": "berth_os",
      "sources": ["native/addon.c", "native/args.c", "native/settle.c", "native/ops.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2", "-fvisibility=hidden"],
      "conditions": [["OS!='linux'", { "type": "none" }]]
    }
  ]
}

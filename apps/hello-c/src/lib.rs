//! Intentionally empty. The `hello-c` app is `hello.c`, written against `gatehouse.h` alone;
//! `build.rs` compiles it into the plugin `libhello_c.so` (next to `libhello.so` in
//! `target/<profile>/`). Cargo needs a target in every package, so this one exists; it holds no
//! code and is not the plugin.

//! Process-wide allocator settings.

/// Caps glibc malloc at two arenas. By default glibc gives threads their own arenas (up to
/// eight per core) and memory freed in one is not reused by another: with the store thread
/// writing and Tokio's threads reading, that fragmentation added ~100 MiB of RSS with a
/// million aliases (measured with `core/benches/aliases.rs`). For programs on glibc malloc (the
/// gateway binary uses mimalloc); call it first thing in `main`, before any thread starts. No effect on other C libraries.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tuning parameter; it is called before the
    // process starts other threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

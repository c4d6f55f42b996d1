//! The example plugins, built once per test binary with cargo into their own target dir (no
//! lock on the outer build).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_plugins() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = root().join("target").join("plugin-tests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root())
            .args([
                "build",
                "--quiet",
                "-p",
                "pushgate-plugin-webhook-provider",
                "-p",
                "pushgate-plugin-faulty",
                "--target-dir",
            ])
            .arg(&target)
            .status()
            .expect("run cargo build for the plugins");
        assert!(status.success(), "building the example plugins failed");
        target.join("debug")
    })
}

/// The shared library of the Rust example plugin `name` (`webhook_provider`, `faulty`).
pub fn rust_plugin(name: &str) -> PathBuf {
    rust_plugins().join(format!("libpushgate_plugin_{name}.so"))
}

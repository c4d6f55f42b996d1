//! Databases on the throwaway PostgreSQL server `scripts/test.sh` starts (its URL is in
//! `PUSHGATE_TEST_DATABASE_URL`). Test binaries whose name starts with `pg_` run their
//! gateways on PostgreSQL: [`super::gateway::config`] adds the `[store]` table.

use std::path::Path;
use std::process::Command;

/// The server's URL (database `postgres`); fails the test with how to get one.
pub fn admin_url() -> String {
    std::env::var("PUSHGATE_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "PUSHGATE_TEST_DATABASE_URL is not set: the PostgreSQL tests need a server. Run \
             scripts/test.sh, which starts a throwaway one on 127.0.0.1 (or set the variable \
             to postgres://user@127.0.0.1:port/postgres of a server where user may create \
             databases)"
        )
    })
}

/// Whether this test binary runs its gateways on PostgreSQL.
pub fn enabled() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("pg_"))
        })
        .unwrap_or(false)
}

/// Runs one SQL command on database `db` with psql.
pub fn psql(db_url: &str, sql: &str) -> String {
    let psql = std::env::var("PUSHGATE_TEST_PSQL").unwrap_or_else(|_| "psql".into());
    let out = Command::new(psql)
        .args([
            db_url,
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The URL of database `name`, created empty if it does not exist.
pub fn database(name: &str) -> String {
    let admin = admin_url();
    let exists = psql(
        &admin,
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    );
    if exists.is_empty() {
        psql(&admin, &format!("CREATE DATABASE {name}"));
    }
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// The database of a test's data directory: the same directory (a restarted gateway) gets the
/// same database, another directory another one.
pub fn database_for(data_dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    database(&format!("t_{:016x}", h.finish()))
}

/// The `[store]` table of a gateway on `url`.
pub fn store_table(url: &str, node_id: &str) -> String {
    format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 8\nlease_ms = 3000\nnode_id = \"{node_id}\"\n"
    )
}

//! The strategy 2 suite (tests/strategy2.rs) with every gateway on PostgreSQL: the support
//! module picks the backend from this binary's `pg_` name.

#[path = "strategy2.rs"]
mod suite;

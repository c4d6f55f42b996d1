//! The strategy 1 suite (tests/strategy1.rs) with every gateway on PostgreSQL: the support
//! module picks the backend from this binary's `pg_` name.

#[path = "strategy1.rs"]
mod suite;

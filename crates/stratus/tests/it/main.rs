//! The integration tests of the `stratus` binary, in one test binary: real HTTP on a random port
//! against real SQLite and PostgreSQL stores (`on_both_stores!`), the binary's own processes, the
//! crash harness and the authorization golden table. Shared helpers are in `common`.

#[macro_use]
mod common;

mod access_keys;
mod authz_golden;
mod catalogue;
mod compute;
mod crash;
mod create_image;
mod ecs;
mod guests;
mod iam;
mod identity;
mod images;
mod limits;
mod router;
mod serve;
mod structure;
mod tenancy;
mod volumes;

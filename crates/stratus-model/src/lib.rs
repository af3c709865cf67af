//! The domain's records and states, shared by the store (which persists them), the services
//! (which decide over them) and the API (which converts them to each wire format by hand).
//!
//! No I/O here. A record is what the domain knows of one object; `#[derive(sqlx::FromRow)]` and
//! the states' column encodings let the store read and write them without a copy of each field,
//! and nothing in this crate knows SQL.

mod compute;
mod identity;
mod images;
mod sagas;
mod states;
mod volumes;

pub use compute::*;
pub use identity::*;
pub use images::*;
pub use sagas::*;
pub use states::*;
pub use volumes::*;

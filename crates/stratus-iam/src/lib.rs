//! The IAM policy engine of stratus. Pure: no I/O, no HTTP, no storage.
//!
//! - [`action`]: action patterns and their matching rules;
//! - [`condition`]: condition operators and global keys, as tables;
//! - [`policy`]: parsing and write-time validation of `Version "1.1"` policy documents;
//! - [`catalogue`]: the action catalogue (route → action, dependencies, scopes);
//! - [`engine`]: compiled policies and the decision procedure.

pub mod action;
pub mod catalogue;
pub mod condition;
pub mod engine;
pub mod policy;

pub use catalogue::{Catalogue, Entry, ResourceKind, ServiceScope, SEED_ROW};
pub use engine::{
    decide, CompiledPolicy, Context, Decision, GrantScope, Outcome, PrincipalPolicies, Request,
};
pub use policy::{parse_policy, Limits, PolicyDocument, PolicyError};

/// Parses a policy against a catalogue (every action pattern must match a catalogue action).
pub fn parse_for(
    cat: &Catalogue,
    text: &str,
    limits: &Limits,
) -> Result<PolicyDocument, PolicyError> {
    parse_policy(text, limits, &|p| cat.knows(p))
}

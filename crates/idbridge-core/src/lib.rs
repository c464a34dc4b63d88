//! Domain types shared by every idbridge crate.
//!
//! Everything here is a pure function of its input: parsing happens once, at the edge, and the rest
//! of the program handles values that are known to be well formed ("parse, don't validate").

mod attr;
mod clock;
pub mod config;
mod dn;
mod guid;
mod secret;
mod sid;

pub use attr::AttrName;
pub use clock::{Clock, ManualClock, SystemClock};
pub use dn::{Dn, DnError, Rdn};
pub use guid::{GuidError, ObjectGuid};
pub use secret::Secret;
pub use sid::{Sid, SidError};

/// An Active Directory update sequence number (`uSNChanged`, DRS high-water marks).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Usn(pub i64);

impl std::fmt::Display for Usn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

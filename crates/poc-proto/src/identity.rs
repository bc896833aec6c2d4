//! Who is who: States, roles and PoC identifiers.

use serde::{Deserialize, Serialize};

use crate::validate::{Validate, Validator};

/// An ISO 3166-1 alpha-3 country code of a participating State, e.g. `EST`.
///
/// Only officially assigned codes are accepted, so a typo such as `FRN` is
/// caught at the edge rather than creating a State nobody can reach.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "[u8; 3]", into = "[u8; 3]")]
pub struct StateCode([u8; 3]);

/// Why a string is not a [`StateCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateCodeError {
    /// Not exactly three upper-case ASCII letters.
    #[error("{0:?} is not three upper-case letters (ISO 3166-1 alpha-3, e.g. EST, FRA, KEN)")]
    Format(String),
    /// Three letters, but not an officially assigned alpha-3 code.
    #[error("{0:?} is not an officially assigned ISO 3166-1 alpha-3 code")]
    Unassigned(String),
}

impl StateCode {
    /// Parses and checks an alpha-3 code.
    pub fn new(code: &str) -> Result<Self, StateCodeError> {
        let bytes: [u8; 3] = code
            .as_bytes()
            .try_into()
            .map_err(|_| StateCodeError::Format(code.to_owned()))?;
        Self::try_from(bytes)
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        // Construction guarantees three ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<[u8; 3]> for StateCode {
    type Error = StateCodeError;
    fn try_from(bytes: [u8; 3]) -> Result<Self, Self::Error> {
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(StateCodeError::Format(
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
        if crate::iso3166::ALPHA3.binary_search(&bytes).is_err() {
            return Err(StateCodeError::Unassigned(
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
        Ok(StateCode(bytes))
    }
}

impl From<StateCode> for [u8; 3] {
    fn from(code: StateCode) -> [u8; 3] {
        code.0
    }
}

impl std::str::FromStr for StateCode {
    type Err = StateCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StateCode::new(s)
    }
}

impl std::fmt::Display for StateCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for StateCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateCode({})", self.as_str())
    }
}

/// The role of a PoC (Annex A para 9), or the directory manager's own identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// A diplomatic PoC (usually the foreign ministry): de-escalation, raising
    /// incidents to higher levels of government.
    Diplomatic,
    /// A technical PoC (usually the national CERT/CSIRT): information,
    /// assistance, requested actions, lessons learned.
    Technical,
    /// The directory manager (UNODA): sends ping tests, never substantive traffic.
    DirectoryManager,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Diplomatic => "diplomatic",
            Role::Technical => "technical",
            Role::DirectoryManager => "directory-manager",
        })
    }
}

/// Who signed a PoC certificate: a State's root key, or the directory manager
/// (only for the manager's own ping identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Issuer {
    /// A participating State's offline root key.
    State(StateCode),
    /// The directory manager's key.
    DirectoryManager,
}

/// The identifier of one PoC, e.g. `EST.cert` or `FRA.mfa-cyber`.
///
/// Form: 1 to 64 ASCII characters from `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit. A State's PoC ids start with its alpha-3 code and a dot;
/// certificate checks enforce that.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PocId(String);

/// Why a string is not a [`PocId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a PoC id: use 1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit (e.g. EST.cert)"
)]
pub struct PocIdError(pub String);

impl PocId {
    /// Longest PoC id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Parses and checks a PoC id.
    pub fn new(id: impl Into<String>) -> Result<Self, PocIdError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(PocId(id))
        } else {
            Err(PocIdError(id))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The State this id belongs to, if it has the form `<STATE>.<name>`
    /// for an assigned alpha-3 code.
    pub fn state(&self) -> Option<StateCode> {
        self.0
            .get(..3)
            .and_then(|code| StateCode::new(code).ok())
            .filter(|state| self.belongs_to(*state))
    }

    /// Whether this id has the form `<STATE>.<name>` for `state`.
    pub fn belongs_to(&self, state: StateCode) -> bool {
        self.0
            .strip_prefix(state.as_str())
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'))
    }
}

impl TryFrom<String> for PocId {
    type Error = PocIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PocId::new(s)
    }
}

impl From<PocId> for String {
    fn from(id: PocId) -> String {
        id.0
    }
}

impl std::str::FromStr for PocId {
    type Err = PocIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PocId::new(s)
    }
}

impl std::fmt::Display for PocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for PocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PocId({})", self.0)
    }
}

impl Validate for PocId {
    // Format and length are enforced when the id is deserialized.
    fn validate(&self, _: &mut Validator) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_are_checked() {
        assert_eq!(StateCode::new("EST").unwrap().as_str(), "EST");
        assert!(matches!(
            StateCode::new("est"),
            Err(StateCodeError::Format(_))
        ));
        assert!(matches!(
            StateCode::new("ESTO"),
            Err(StateCodeError::Format(_))
        ));
        assert!(matches!(
            StateCode::new("XXX"),
            Err(StateCodeError::Unassigned(_))
        ));
        for code in ["FRA", "KEN", "CHN", "RUS", "USA", "BRA", "ZWE", "AFG"] {
            StateCode::new(code).unwrap();
        }
    }

    #[test]
    fn iso_list_is_sorted_and_complete() {
        let list = crate::iso3166::ALPHA3;
        assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "ALPHA3 must be sorted"
        );
        assert_eq!(list.len(), 249);
    }

    #[test]
    fn poc_ids_are_checked() {
        let id = PocId::new("EST.cert").unwrap();
        assert!(id.belongs_to(StateCode::new("EST").unwrap()));
        assert!(!id.belongs_to(StateCode::new("FRA").unwrap()));
        assert!(
            !PocId::new("EST.")
                .unwrap()
                .belongs_to(StateCode::new("EST").unwrap())
        );
        assert_eq!(id.state(), Some(StateCode::new("EST").unwrap()));
        for other in ["UN.ping", "UNODA.ping", "EST.", "XXX.ping", "EST"] {
            assert_eq!(PocId::new(other).unwrap().state(), None, "{other}");
        }
        assert!(PocId::new("").is_err());
        assert!(PocId::new(".x").is_err());
        assert!(PocId::new("a b").is_err());
        assert!(PocId::new("a".repeat(65)).is_err());
        assert!(PocId::new("a".repeat(64)).is_ok());
    }
}

//! [`Kind`]: the object kinds the admin API serves, by their wire names.

use std::fmt;
use std::str::FromStr;

use super::AdminError;

/// An object kind of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An endpoint (id: its name).
    Endpoint,
    /// A price table entry (id: `provider/model`, `*/model` for any provider).
    Price,
    /// A provider credential (id: its name).
    Credential,
    /// A gateway key (id: its id).
    Key,
    /// A team.
    Team,
    /// A user.
    User,
    /// A budget or rate limit.
    Budget,
    /// The lease sizing policy (a single object; ids are ignored).
    LeasePolicy,
}

impl Kind {
    /// Every kind, in the order errors list them.
    pub const ALL: [Kind; 8] = [
        Self::Endpoint,
        Self::Price,
        Self::Credential,
        Self::Key,
        Self::Team,
        Self::User,
        Self::Budget,
        Self::LeasePolicy,
    ];

    /// The wire name (`endpoint`, ..., `lease_policy`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoint",
            Self::Price => "price",
            Self::Credential => "credential",
            Self::Key => "key",
            Self::Team => "team",
            Self::User => "user",
            Self::Budget => "budget",
            Self::LeasePolicy => "lease_policy",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = AdminError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                AdminError::field(
                    "kind",
                    format!(
                        "unknown kind `{text}`; expected one of {}",
                        known.join(", ")
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_kinds_name_the_field() {
        for kind in Kind::ALL {
            assert_eq!(kind.name().parse::<Kind>().unwrap(), kind);
        }
        let AdminError::InvalidArgument { errors } = "widget".parse::<Kind>().unwrap_err() else {
            panic!("not a field error");
        };
        assert_eq!(errors[0].field, "kind");
        assert!(errors[0].reason.contains("lease_policy"));
    }
}

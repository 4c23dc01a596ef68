//! The dimensions usage is keyed, filtered and grouped by, and how an event maps onto them.
//! Names here are the API's stable names (`endpoint`, `key`, `status`, ...).

use floodgate_proto::v1::{UsageEvent, UsageFilter};
use serde::{Deserialize, Serialize};

/// A dimension of the aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The endpoint name.
    Endpoint,
    /// The provider that served (or was tried last).
    Provider,
    /// The provider model that served (or was tried last).
    Model,
    /// The gateway key id.
    Key,
    /// The key's team.
    Team,
    /// The key's user.
    User,
    /// The status class ([`status_class`]).
    Status,
}

impl Dimension {
    /// Every dimension, in key order.
    pub const ALL: [Dimension; 7] = [
        Self::Endpoint,
        Self::Provider,
        Self::Model,
        Self::Key,
        Self::Team,
        Self::User,
        Self::Status,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoint",
            Self::Provider => "provider",
            Self::Model => "model",
            Self::Key => "key",
            Self::Team => "team",
            Self::User => "user",
            Self::Status => "status",
        }
    }

    /// The dimension with this stable name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The status class of an HTTP status: `499` stays itself (the client went away), others
/// become `2xx`, `4xx`, ...; `0` (no status) is `none`.
pub fn status_class(status: u32) -> String {
    match status {
        0 => "none".to_owned(),
        499 => "499".to_owned(),
        _ => format!("{}xx", status / 100),
    }
}

/// One value per dimension, in [`Dimension::ALL`] order.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dims(pub [String; 7]);

impl Dims {
    /// The dimensions of an event.
    pub fn of(event: &UsageEvent) -> Self {
        Self([
            event.endpoint.clone(),
            event.provider.clone(),
            event.model.clone(),
            event.key_id.clone(),
            event.team.clone(),
            event.user.clone(),
            status_class(event.status),
        ])
    }

    /// The value of one dimension.
    pub fn get(&self, dimension: Dimension) -> &str {
        &self.0[dimension.index()]
    }
}

/// Equality filters over dimensions; an absent one matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter(pub Vec<(Dimension, String)>);

impl Filter {
    /// Whether `dims` passes every filter.
    pub fn matches(&self, dims: &Dims) -> bool {
        self.0.iter().all(|(d, value)| dims.get(*d) == value)
    }

    /// Whether an event passes every filter.
    pub fn admits(&self, event: &UsageEvent) -> bool {
        self.matches(&Dims::of(event))
    }

    /// The value filtered on for `dimension`, if any.
    pub fn value(&self, dimension: Dimension) -> Option<&str> {
        self.0
            .iter()
            .find(|(d, _)| *d == dimension)
            .map(|(_, v)| v.as_str())
    }

    /// The filters set in a gRPC [`UsageFilter`] (empty fields match everything).
    pub fn from_proto(filter: Option<&UsageFilter>) -> Self {
        let Some(f) = filter else {
            return Self::default();
        };
        let fields = [
            (Dimension::Endpoint, &f.endpoint),
            (Dimension::Provider, &f.provider),
            (Dimension::Model, &f.model),
            (Dimension::Key, &f.key),
            (Dimension::Team, &f.team),
            (Dimension::User, &f.user),
            (Dimension::Status, &f.status),
        ];
        Self(
            fields
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(d, v)| (d, v.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(499), "499");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(0), "none");
    }

    #[test]
    fn names_round_trip() {
        for d in Dimension::ALL {
            assert_eq!(Dimension::parse(d.name()), Some(d));
        }
        assert_eq!(Dimension::parse("colour"), None);
    }
}

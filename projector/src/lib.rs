//! # floodgate-projector
//!
//! The projector (see `ARCHITECTURE.md`, projector): reads usage events from an
//! [`floodgate_events::EventSource`], folds them into usage aggregates and trace records in
//! sled, and answers the usage query API over gRPC (`UsageService`, `projector.proto`) and
//! JSON.
//!
//! Module map:
//!
//! * [`keys`] — the sled key layout (read this first: why every query is a range scan).
//! * [`dims`] — the dimensions (endpoint, provider, model, key, team, user, status class).
//! * [`aggregate`] — counters, tokens, cost and mergeable latency histograms of one key;
//!   [`histogram`] — those histograms, sparse.
//! * [`trace`] — one record per request, with its indexes; [`parked`] — messages that are
//!   not readable events, kept aside.
//! * [`store`] — [`Projection`]: the atomic fold (aggregates + traces + dedup + position in
//!   one sled batch), pruning, the live feed; `rows` — the fold's cache of decoded rows.
//! * [`runner`] — the loop: fetch, fold, flush, ack; retries and skips.
//! * [`mod@rebuild`] — replay a source into a fresh store ([`rebuild()`]).
//! * [`query`] — validated questions and their answers; [`view`] — traces as JSON.
//! * [`grpc`], [`http`], [`watch`] — the transports; [`service`] — [`Projector`], all of it
//!   started together; [`config`] — its settings.

pub mod aggregate;
pub mod config;
pub mod dims;
pub mod grpc;
pub mod histogram;
pub mod http;
pub mod keys;
pub mod parked;
pub mod query;
pub mod rebuild;
mod rows;
pub mod runner;
pub mod service;
pub mod store;
pub mod trace;
pub mod view;
pub mod watch;

pub use config::{ProjectorSettings, SettingsError};
pub use rebuild::{RebuildError, Rebuilt, rebuild};
pub use service::{Listening, Projector, StartError};
pub use store::{Folded, Projection, StoreError};

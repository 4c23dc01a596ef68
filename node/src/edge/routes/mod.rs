//! HTTP handlers, one module per API family.

pub mod health;
pub mod metrics;
pub mod mlflow;
pub mod native;
pub mod openai;
pub mod proxy;

//! The one pooled upstream HTTP client: rustls with the `ring` provider, HTTP/2 where the
//! provider offers it (ALPN), keep-alive, TCP_NODELAY.

use std::time::Duration;

/// Installs `ring` as the process's rustls provider; idempotent. Must run before any client
/// is built (reqwest panics otherwise).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the shared client.
pub fn build(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("floodgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

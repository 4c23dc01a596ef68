//! The `floodgate` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    floodgate::http_client::install_crypto_provider();
    floodgate::cli::Cli::parse().run()
}

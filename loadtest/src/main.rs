//! The `floodgate-loadtest` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    floodgate_loadtest::install_crypto_provider();
    match floodgate_loadtest::cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("floodgate-loadtest: {error:#}");
            ExitCode::FAILURE
        }
    }
}

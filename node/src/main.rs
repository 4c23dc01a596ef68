//! The `floodgate` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    floodgate::http_client::install_crypto_provider();
    match floodgate::cli::Cli::try_parse() {
        Ok(cli) => cli.run(),
        Err(error) => {
            // Help and --version print and succeed; a bad command line exits 64 like a bad config.
            let _ = error.print();
            if error.use_stderr() {
                std::process::ExitCode::from(floodgate::cli::EXIT_CONFIG)
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
    }
}

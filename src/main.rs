#![forbid(unsafe_code)]

use clap::Parser;
use credgate::args::Cli;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.log.init(&cli.command) {
        Ok(()) => cli.command.run().await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, the causes joined: what went wrong and what to do.
            eprintln!("credgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

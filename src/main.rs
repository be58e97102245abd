#![forbid(unsafe_code)]

use clap::Parser;
use credgate::args::Cli;
use std::process::ExitCode;

// Admission answers allocate many small JSON values on every worker thread:
// mimalloc's thread-local heaps keep that off a shared lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

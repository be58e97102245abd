#![forbid(unsafe_code)]

use clap::Parser;
use credgate::args::Cli;
use std::process::ExitCode;

// Admission answers allocate many small JSON values on every worker thread:
// mimalloc's thread-local heaps keep that off a shared lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // At least two workers whatever the CPU limit (tokio sizes by it): one busy
    // decision never stalls /livez, /readyz and the watches.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build();
    let result = match (runtime, cli.log.init(&cli.command)) {
        (Ok(runtime), Ok(())) => runtime.block_on(cli.command.run()),
        (Err(error), _) => Err(anyhow::anyhow!("cannot start the async runtime: {error}")),
        (_, Err(error)) => Err(error),
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

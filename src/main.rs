#![forbid(unsafe_code)]

use clap::Parser;
use credgate::args::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.log.init()?;
    cli.command.run().await
}

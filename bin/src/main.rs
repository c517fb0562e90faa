//! `sierradb`: the server and its admin commands.

mod bench;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sierradb",
    version,
    about = "SierraDB: a durable event store speaking RESP3",
    long_about = "SierraDB: a durable event store speaking RESP3 (redis-cli and any Redis client work).\n\nEvery acknowledged append is on stable storage (group-commit fsync)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (defaults: ./data, 127.0.0.1:9090). Options come from flags, then
    /// SIERRADB_* environment variables, then --config FILE (TOML), then defaults.
    Serve(serve::ServeArgs),
    /// Measure performance and print numbers.
    Bench(BenchArgs),
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Drive the store in process through the real disk (no network).
    #[arg(long)]
    embedded: bool,
    /// Print one JSON line per workload instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: bench::Common,
    #[command(flatten, next_help_heading = "With --embedded")]
    embedded_args: bench::embedded::EmbeddedArgs,
    #[command(flatten, next_help_heading = "Over RESP (without --embedded)")]
    resp_args: bench::resp::RespArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            if args.embedded {
                runtime.block_on(bench::embedded::run(
                    args.embedded_args,
                    args.common,
                    args.json,
                ))
            } else {
                runtime.block_on(bench::resp::run(args.resp_args, args.common, args.json))
            }
        }
    }
}

//! `sierradb`: the server and its admin commands.

mod alloc;
mod bench;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: an append allocates a few small objects on
/// one thread and frees them on another, which glibc's malloc makes costly
/// (docs/decisions/0007-mimalloc.md).
#[global_allocator]
static ALLOCATOR: alloc::MiMalloc = alloc::MiMalloc;

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
    /// Verify a data directory (CRCs, framing, gapless sequences and versions, index files
    /// against data) without changing it; exit non-zero on problems. With --repair, rebuild
    /// indexes and cut a torn tail (saving the cut bytes beside it); damage in the middle of
    /// the data is reported, never deleted.
    Check(CheckArgs),
    /// Measure performance and print numbers.
    Bench(BenchArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// Data directory to check.
    #[arg(long, short = 'd', default_value = "./data")]
    dir: std::path::PathBuf,
    /// Repair what can be repaired: rebuild index files, cut a torn tail (the cut bytes are
    /// kept in segment-N.log.torn-OFFSET), remove leftover temporary files.
    #[arg(long)]
    repair: bool,
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
        Command::Check(args) => check(args),
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

/// Runs `sierradb check`: holds the directory lock so no server writes while it reads.
fn check(args: CheckArgs) -> anyhow::Result<()> {
    if !args.dir.join("sierradb.layout").exists() {
        anyhow::bail!(
            "{} is not a SierraDB data directory (no sierradb.layout)",
            args.dir.display()
        );
    }
    let _lock = serve::lock_dir(&args.dir)?;
    let options = db::store::check::CheckOptions {
        repair: args.repair,
    };
    let report = db::store::check::check(&disk::RealDisk, &args.dir, options)?;
    print!("{report}");
    if !report.is_clean() {
        std::process::exit(1);
    }
    Ok(())
}

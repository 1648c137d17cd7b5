//! `rpc-load`: a Bolt (or Dubbo) load generator and fixed-answer echo server, to
//! measure the sidecar's RPC path without Node peers.
//!
//! ```text
//! rpc-load serve --addr 127.0.0.1:12200                  # prints LISTENING <port>
//! rpc-load run --addr 127.0.0.1:12200 --connections 4 --concurrency 64 --duration-ms 10000
//! rpc-load run --addr 127.0.0.1:12200 --one-at-a-time --duration-ms 5000
//! ```
//!
//! `run` prints one line, as `bench/rpc/bolt-throughput.sh` does:
//! `RESULT mode=LABEL calls=.. calls_per_sec=.. p50_ms=.. p99_ms=.. errors=..`, plus
//! `proxy_cpu_us_per_call=..` with `--cpu-pid` (the utime+stime that process spent
//! in the measured window, per call). It exits 1 when a call failed.

mod load;
mod serve;
mod wire;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use proxy_codec::{Bolt, Dubbo};

use crate::load::{Plan, Tally};

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "rpc-load", about = "Bolt/Dubbo load generator and echo server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
enum Command {
    /// Drive calls at an address and print a RESULT line.
    Run(RunArgs),
    /// Answer every call with a fixed response.
    Serve(ServeArgs),
}

/// The protocol spoken.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Proto {
    /// SOFARPC Bolt v1.
    Bolt,
    /// Dubbo with hessian2.
    Dubbo,
}

/// `rpc-load run`.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The server or the sidecar listener.
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, value_enum, default_value = "bolt")]
    protocol: Proto,
    /// Connections opened.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Calls in flight on each connection.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// One connection, one call at a time (the single-call latency).
    #[arg(long)]
    one_at_a_time: bool,
    /// The measured window, after the warm-up.
    #[arg(long, default_value_t = 10_000)]
    duration_ms: u64,
    /// Stop after this many calls in the measured window instead (the duration
    /// still caps it).
    #[arg(long)]
    calls: Option<u64>,
    /// Calls made before the measured window, not counted.
    #[arg(long, default_value_t = 1_000)]
    warmup_ms: u64,
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// How long unanswered calls are waited for once sending stops.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// A process whose CPU time per call to report (the sidecar).
    #[arg(long)]
    cpu_pid: Option<u32>,
    /// Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
    /// The `mode=` of the RESULT line.
    #[arg(long, default_value = "run")]
    label: String,
    /// Runtime threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// `rpc-load serve`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Where to listen (port 0: one the kernel picks; the port is printed).
    #[arg(long, default_value = "127.0.0.1:12200")]
    addr: SocketAddr,
    #[arg(long, value_enum, default_value = "bolt")]
    protocol: Proto,
    /// Runtime threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_all().build().context("building the runtime")
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => runtime(args.threads)?.block_on(async {
            let l = tokio::net::TcpListener::bind(args.addr)
                .await
                .with_context(|| format!("binding {}", args.addr))?;
            println!("LISTENING {}", l.local_addr()?.port());
            match args.protocol {
                Proto::Bolt => serve::serve(Bolt, l).await?,
                Proto::Dubbo => serve::serve(Dubbo, l).await?,
            }
            Ok(())
        }),
        Command::Run(args) => {
            let ok = runtime(args.threads)?.block_on(run(args))?;
            std::process::exit(if ok { 0 } else { 1 })
        }
    }
}

/// Runs the load, prints the RESULT line; whether every call succeeded.
async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let (connections, concurrency) = if args.one_at_a_time {
        (1, 1)
    } else {
        (args.connections.max(1), args.concurrency.max(1))
    };
    let plan = Plan {
        addr: args.addr,
        connections,
        concurrency,
        warmup: Duration::from_millis(args.warmup_ms),
        duration: Some(Duration::from_millis(args.duration_ms)),
        calls: args.calls,
        payload_bytes: args.payload_bytes,
        timeout: Duration::from_millis(args.timeout_ms),
    };
    // The CPU clock starts with the measured window.
    let cpu_start = args.cpu_pid.map(|pid| {
        let at = tokio::time::Instant::now() + plan.warmup;
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            cpu_ticks(pid)
        })
    });
    let load = async {
        match args.protocol {
            Proto::Bolt => load::run(Bolt, &plan).await,
            Proto::Dubbo => load::run(Dubbo, &plan).await,
        }
    };
    let (mut tally, from) = load
        .await
        .with_context(|| format!("driving {}", args.addr))?;
    let cpu = match (args.cpu_pid, cpu_start) {
        (Some(pid), Some(start)) => {
            let start = start.await?.context("reading /proc/PID/stat")?;
            let end = cpu_ticks(pid).context("reading /proc/PID/stat")?;
            Some((end - start) as f64 / args.clk_tck as f64)
        }
        _ => None,
    };
    let end = tally.last.unwrap_or(from);
    let secs = end.saturating_duration_since(from).as_secs_f64();
    println!("{}", result_line(&args.label, &mut tally, secs, cpu));
    Ok(tally.errors == 0 && tally.calls > 0)
}

/// The RESULT line.
fn result_line(label: &str, tally: &mut Tally, secs: f64, cpu_secs: Option<f64>) -> String {
    tally.latencies.sort_unstable();
    let pct = |p: f64| {
        let n = tally.latencies.len();
        if n == 0 {
            return 0.0;
        }
        let i = ((p * n as f64) as usize).min(n - 1);
        tally.latencies[i] as f64 / 1e6
    };
    let rate = if secs > 0.0 {
        tally.calls as f64 / secs
    } else {
        0.0
    };
    let mut line = format!(
        "RESULT mode={label} calls={} calls_per_sec={rate:.1} p50_ms={:.3} p99_ms={:.3} errors={}",
        tally.calls,
        pct(0.5),
        pct(0.99),
        tally.errors
    );
    if let Some(cpu) = cpu_secs {
        let per_call = if tally.calls > 0 {
            cpu * 1e6 / tally.calls as f64
        } else {
            0.0
        };
        line.push_str(&format!(" proxy_cpu_us_per_call={per_call:.2}"));
    }
    line
}

/// utime + stime of process `pid`, in clock ticks (fields 14 and 15 of
/// /proc/PID/stat).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("no ')' in /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc/PID/stat")?.parse()?)
    };
    Ok(field(11)? + field(12)?)
}

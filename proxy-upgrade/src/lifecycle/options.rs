//! What a binary says about hot upgrades: the socket, whether it takes over, the
//! hand-off window it asks for, and what `SIGUSR2` starts.

use std::{path::PathBuf, time::Duration};

use crate::signal::Reexec;

/// How [`serve`](crate::serve) takes part in hot upgrades.
///
/// Without a `socket` the server runs alone (no upgrade served, none taken). With
/// one and `take_over`, the process takes the listeners of the process serving that
/// socket before it serves, then serves the next upgrade there; without `take_over`
/// it serves upgrades there from the start.
///
/// ```
/// use std::time::Duration;
/// use proxy_upgrade::UpgradeOptions;
///
/// let options = UpgradeOptions::serving("/run/proxy/upgrade.sock")
///     .taking_over(true)
///     .with_handoff_window(Duration::from_secs(2));
/// assert!(options.take_over);
/// assert!(UpgradeOptions::default().socket.is_none());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UpgradeOptions {
    /// The Unix socket upgrades are served on (and taken from, with `take_over`).
    pub socket: Option<PathBuf>,
    /// Start as the new process of an upgrade: take the listeners of the process
    /// serving `socket` (failing, binding nothing, when there is none).
    pub take_over: bool,
    /// With `take_over`: the window over which the old process hands its live
    /// connections over, each at a moment drawn evenly within it.
    pub handoff_window: Duration,
    /// What `SIGUSR2` starts while this process serves upgrades: the new binary,
    /// taking over ([`Reexec`]). `None`: `SIGUSR2` is not handled.
    pub on_signal: Option<Reexec>,
}

impl Default for UpgradeOptions {
    /// No upgrade socket, a 1 s window, no signal trigger.
    fn default() -> Self {
        Self {
            socket: None,
            take_over: false,
            handoff_window: Duration::from_secs(1),
            on_signal: None,
        }
    }
}

impl UpgradeOptions {
    /// Serves upgrades on `socket` (the defaults otherwise).
    pub fn serving(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: Some(socket.into()),
            ..Self::default()
        }
    }

    /// Takes over from the process serving the socket first, or not.
    #[must_use]
    pub fn taking_over(mut self, take_over: bool) -> Self {
        self.take_over = take_over;
        self
    }

    /// The hand-off window asked for when taking over.
    #[must_use]
    pub fn with_handoff_window(mut self, window: Duration) -> Self {
        self.handoff_window = window;
        self
    }

    /// What `SIGUSR2` starts while serving upgrades.
    #[must_use]
    pub fn on_signal(mut self, reexec: Reexec) -> Self {
        self.on_signal = Some(reexec);
        self
    }
}

/// The command-line flags of hot upgrade (`cli` feature), to `#[command(flatten)]`
/// into a binary's `clap::Parser`: `--upgrade-socket PATH`, `--upgrade`,
/// `--upgrade-window DURATION`.
///
/// ```
/// use clap::Parser;
/// use proxy_upgrade::UpgradeArgs;
///
/// #[derive(Parser)]
/// struct Args {
///     #[command(flatten)]
///     upgrade: UpgradeArgs,
/// }
///
/// let args = Args::parse_from(["proxy", "--upgrade-socket", "/run/p.sock", "--upgrade-window", "500ms"]);
/// let options = args.upgrade.into_options()?;
/// assert_eq!(options.handoff_window, std::time::Duration::from_millis(500));
/// assert!(options.on_signal.is_some()); // SIGUSR2 starts this binary again with --upgrade
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(feature = "cli")]
#[derive(Clone, Debug, clap::Args)]
pub struct UpgradeArgs {
    /// Serve hot upgrades on this Unix socket: a new process started with the same
    /// path and `--upgrade` takes the listeners over, then this one drains and exits.
    /// If the new process dies within its hand-off window, this one takes the
    /// listeners back and keeps the connections it had not handed over yet.
    /// SIGUSR2 starts the new binary (this executable's path, these arguments plus
    /// `--upgrade`) itself.
    #[arg(long, value_name = "PATH")]
    pub upgrade_socket: Option<PathBuf>,
    /// Start as the new process of a hot upgrade: take the listeners of the process
    /// serving `--upgrade-socket`, serve on them, then tell it to drain and exit.
    #[arg(long, requires = "upgrade_socket")]
    pub upgrade: bool,
    /// With `--upgrade`: the old process hands its idle HTTP/1.1 keep-alive
    /// connections and its Bolt and Dubbo connections over (TLS and HTTP/2 drain),
    /// each at a moment drawn evenly over this window (`500ms`, `2s`), so they do not
    /// all come at once.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub upgrade_window: Duration,
}

#[cfg(feature = "cli")]
impl UpgradeArgs {
    /// The options of these flags; with `--upgrade-socket`, `SIGUSR2` starts the
    /// executable this process was started from ([`Reexec::current`], resolved now,
    /// before an upgrade replaces the file).
    ///
    /// # Errors
    /// When the path of the running executable cannot be read.
    pub fn into_options(self) -> std::io::Result<UpgradeOptions> {
        let on_signal = match self.upgrade_socket {
            Some(_) => Some(Reexec::current()?),
            None => None,
        };
        Ok(UpgradeOptions {
            socket: self.upgrade_socket,
            take_over: self.upgrade,
            handoff_window: self.upgrade_window,
            on_signal,
        })
    }
}

/// `250ms`, `2s` or `1.5s`.
#[cfg(any(feature = "cli", test))]
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 500ms or 2s");
    let (number, unit) = match s.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (s.strip_suffix('s').ok_or_else(bad)?, 1.0),
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(value * unit).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds_and_milliseconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "2", "s", "-1s", "1m", "abcms", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn builder_sets_each_field() {
        let options = UpgradeOptions::serving("/tmp/x.sock")
            .taking_over(true)
            .with_handoff_window(Duration::from_millis(250))
            .on_signal(Reexec::new("/bin/proxy", ["--config", "p.yaml"]));
        assert_eq!(
            options.socket.as_deref(),
            Some(std::path::Path::new("/tmp/x.sock"))
        );
        assert!(options.take_over);
        assert_eq!(options.handoff_window, Duration::from_millis(250));
        assert!(options.on_signal.is_some());
    }
}

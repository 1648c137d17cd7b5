//! `SIGUSR2` starts the upgrade, nginx-style: the process serving upgrades starts the
//! new binary itself, as a detached child taking over (`--upgrade`); the rest is the
//! usual protocol (the child takes the listeners, this process drains and exits; a
//! child that fails leaves this process serving).

use std::{
    ffi::{OsStr, OsString},
    io,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The flag that makes a process the new one of an upgrade.
pub const TAKE_OVER_FLAG: &str = "--upgrade";

/// The command `SIGUSR2` runs: a program and its arguments, `--upgrade` among them.
///
/// Resolve it when the process starts ([`Reexec::current`]): the executable's file is
/// usually replaced by the new binary before the signal comes, and the path it was
/// started from is the one to run then.
///
/// ```
/// use proxy_upgrade::Reexec;
///
/// let reexec = Reexec::new("/usr/bin/proxy", ["--config", "p.yaml", "--upgrade-socket", "/run/p.sock"]);
/// assert_eq!(reexec.args().last().map(|a| a.to_str()), Some(Some("--upgrade")));
/// // A process that took over already has the flag: it is not added twice.
/// let again = Reexec::new("/usr/bin/proxy", reexec.args().to_vec());
/// assert_eq!(again.args(), reexec.args());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reexec {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Reexec {
    /// Runs `program` with `args`, plus `--upgrade` unless one of them is exactly that.
    pub fn new<A: Into<OsString>>(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = A>,
    ) -> Self {
        let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        if !args.iter().any(|a| a == OsStr::new(TAKE_OVER_FLAG)) {
            args.push(TAKE_OVER_FLAG.into());
        }
        Self {
            program: program.into(),
            args,
        }
    }

    /// This process's executable (`std::env::current_exe`, resolved now) with this
    /// process's arguments, plus `--upgrade`.
    ///
    /// # Errors
    /// When the path of the running executable cannot be read.
    pub fn current() -> io::Result<Self> {
        Ok(Self::new(
            std::env::current_exe()?,
            std::env::args_os().skip(1),
        ))
    }

    /// The program run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Its arguments, `--upgrade` among them.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// Starts the program as a detached child: in a process group of its own (a
    /// terminal's Ctrl-C or a signal to this process's group does not reach it),
    /// stdin from `/dev/null`, stdout and stderr shared with this process. A thread
    /// reaps it and logs how it ended, while this process lives. Returns its pid.
    ///
    /// # Errors
    /// When the program cannot be started.
    pub fn spawn(&self) -> io::Result<u32> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pid = child.id();
        std::thread::Builder::new()
            .name("upgrade-child".into())
            .spawn(move || match child.wait() {
                Ok(status) if status.success() => {
                    tracing::info!(pid, "the upgrade's new process exited")
                }
                Ok(status) => tracing::warn!(pid, %status, "the upgrade's new process failed"),
                Err(e) => {
                    tracing::warn!(pid, error = %e, "cannot wait for the upgrade's new process")
                }
            })?;
        Ok(pid)
    }
}

/// Starts `reexec` at each `SIGUSR2` received on `signals`, unless `handed_off`
/// says this process has handed its listeners to a successor already. Runs until
/// the task is dropped.
pub(crate) async fn upgrade_on_signal(
    mut signals: tokio::signal::unix::Signal,
    reexec: Reexec,
    handed_off: impl Fn() -> bool,
) {
    while signals.recv().await.is_some() {
        if handed_off() {
            tracing::info!("SIGUSR2: this process has handed off already; ignored");
            continue;
        }
        match reexec.spawn() {
            Ok(pid) => tracing::info!(
                pid,
                program = %reexec.program().display(),
                "SIGUSR2: started the new process; it takes the listeners over"
            ),
            Err(e) => tracing::error!(
                error = %e,
                program = %reexec.program().display(),
                "SIGUSR2: cannot start the new process; this one serves on"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_take_over_flag_once() {
        let r = Reexec::new(
            "/bin/p",
            ["--upgrade-socket", "/s", "--upgrade-window", "2s"],
        );
        assert_eq!(
            r.args(),
            [
                "--upgrade-socket",
                "/s",
                "--upgrade-window",
                "2s",
                "--upgrade"
            ]
            .map(OsString::from)
        );
        let r = Reexec::new("/bin/p", ["--upgrade", "--upgrade-socket", "/s"]);
        assert_eq!(
            r.args(),
            ["--upgrade", "--upgrade-socket", "/s"].map(OsString::from)
        );
        assert_eq!(
            Reexec::new("/bin/p", Vec::<OsString>::new()).args(),
            [OsString::from("--upgrade")]
        );
    }

    #[test]
    fn current_is_this_executable() {
        let r = Reexec::current().expect("current exe");
        assert_eq!(r.program(), std::env::current_exe().expect("current exe"));
        assert_eq!(r.args().iter().filter(|a| *a == TAKE_OVER_FLAG).count(), 1);
    }

    #[test]
    fn spawns_a_detached_child() {
        let dir = std::env::temp_dir().join(format!("reexec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("args");
        let script = format!("echo \"$@\" > {}", out.display());
        let r = Reexec::new("/bin/sh", ["-c", script.as_str(), "sh"]);
        let pid = r.spawn().expect("spawn");
        assert_ne!(pid, std::process::id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let written = loop {
            match std::fs::read_to_string(&out) {
                Ok(s) if !s.is_empty() => break s,
                _ if std::time::Instant::now() > deadline => panic!("the child wrote nothing"),
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        assert_eq!(written.trim(), "--upgrade");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_program_fails_to_spawn() {
        let r = Reexec::new("/nonexistent/proxy-binary", ["--config", "x"]);
        assert!(r.spawn().is_err());
    }
}

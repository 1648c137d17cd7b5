//! Applying a [`ThreadPriority`] to the calling thread (Linux: per-thread nice values
//! and scheduling policies).

use std::io;

use crate::config::ThreadPriority;

/// Sets `priority` on the calling thread.
///
/// # Errors
/// The system's refusal (`EPERM` where a policy is forbidden, say), or
/// `Unsupported` off Linux.
pub(crate) fn apply(priority: ThreadPriority) -> io::Result<()> {
    match priority {
        ThreadPriority::Normal => Ok(()),
        ThreadPriority::Nice(n) => set_nice(n.clamp(1, ThreadPriority::LOWEST_NICE)),
        ThreadPriority::Idle => set_sched_idle(),
    }
}

/// On Linux a nice value belongs to the thread: `PRIO_PROCESS` with a thread id
/// changes that thread alone.
#[cfg(target_os = "linux")]
fn set_nice(n: i8) -> io::Result<()> {
    let me = rustix::thread::gettid();
    rustix::process::setpriority_process(Some(me), i32::from(n)).map_err(io::Error::from)
}

/// `SCHED_IDLE` for the calling thread. rustix has no `sched_setscheduler`, so this is
/// the raw system call (per thread on Linux, unlike the POSIX function, which musl
/// refuses to implement for that reason).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_sched_idle() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is an initialized `sched_param` that outlives the call, which
    // only reads it; pid 0 names the calling thread. No other memory is touched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0 as libc::pid_t,
            libc::SCHED_IDLE,
            &param as *const libc::sched_param,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_nice(_: i8) -> io::Result<()> {
    Err(unsupported())
}

#[cfg(not(target_os = "linux"))]
fn set_sched_idle() -> io::Result<()> {
    Err(unsupported())
}

#[cfg(not(target_os = "linux"))]
fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "per-thread priorities are set on Linux only",
    )
}

//! The worker runtimes: one current-thread runtime per core, or one multi-thread
//! runtime.

use super::ServerError;

pub(super) fn build_multi_thread_runtime(
    workers: usize,
) -> Result<tokio::runtime::Runtime, ServerError> {
    // Tasks move between a multi-thread runtime's threads, so per-worker state gives
    // no locality there; its threads are still numbered, spreading the shares.
    let next = std::sync::atomic::AtomicUsize::new(0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("proxy-worker")
        .on_thread_start(move || {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::worker::set_index(i % workers.max(1));
        })
        .enable_all()
        .build()
        .map_err(|source| ServerError::Io {
            what: "starting a runtime".into(),
            source,
        })
}

pub(super) fn build_runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ServerError::Io {
            what: "starting a runtime".into(),
            source,
        })
}

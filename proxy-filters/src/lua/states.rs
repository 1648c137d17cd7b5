//! The Lua states of each worker thread: one per script, made on the thread's first
//! request through that script, kept for the next ones.
//!
//! A state is taken out of the thread's table for a call and put back after it, so a
//! call never holds a borrow of the table (nothing can re-enter it). A state whose
//! call ran out of budget is dropped instead: the next request gets a fresh one. A
//! state whose script no longer serves (replaced by a reload, its filter dropped) is
//! freed when the thread next makes a state.

use std::{
    cell::RefCell,
    sync::{Arc, Weak},
};

use super::{
    sandbox::{Failure, State},
    Script,
};

struct Slot {
    id: u64,
    script: Weak<Script>,
    state: Option<State>,
}

thread_local! {
    static STATES: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's state of `script` (made when the thread has none).
pub(crate) fn with_state<R>(
    script: &Arc<Script>,
    f: impl FnOnce(&State) -> Result<R, (Failure, String)>,
) -> Result<R, (Failure, String)> {
    let state = match take(script.id) {
        Some(state) => state,
        None => State::new(&script.source, &script.chunk, &script.limits)
            .map_err(|e| (Failure::Runtime, e.to_string()))?,
    };
    let result = f(&state);
    match &result {
        Err((Failure::Instructions | Failure::Memory, _)) => drop(state),
        _ => put(script, state),
    }
    result
}

fn take(id: u64) -> Option<State> {
    STATES
        .try_with(|slots| {
            let mut slots = slots.try_borrow_mut().ok()?;
            slots.iter_mut().find(|s| s.id == id)?.state.take()
        })
        .ok()
        .flatten()
}

fn put(script: &Arc<Script>, state: State) {
    // Fails only while the thread is being torn down: the state is then dropped.
    let _ = STATES.try_with(|slots| {
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return;
        };
        if let Some(slot) = slots.iter_mut().find(|s| s.id == script.id) {
            slot.state = Some(state);
            return;
        }
        slots.retain(|s| s.script.strong_count() > 0);
        slots.push(Slot {
            id: script.id,
            script: Arc::downgrade(script),
            state: Some(state),
        });
    });
}

/// The number of states this thread holds (for tests).
#[cfg(test)]
pub(crate) fn held() -> usize {
    STATES.with(|s| s.borrow().iter().filter(|s| s.state.is_some()).count())
}

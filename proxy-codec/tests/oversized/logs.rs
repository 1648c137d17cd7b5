//! A process-wide `tracing` subscriber that keeps every event at `info` and above, so
//! a test can check what an operator would see (built on `tracing` alone: no
//! formatter, no extra dependency).

use std::{
    fmt,
    sync::{Mutex, OnceLock, PoisonError},
};

use tracing::{
    field::{Field, Visit},
    span, Event, Level, Metadata, Subscriber,
};

/// One event: its level, target and fields (`message` included), values as text.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) level: Level,
    pub(crate) target: String,
    pub(crate) fields: Vec<(String, String)>,
}

impl Line {
    /// The value of field `name`.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every `(name, value)` pair is among its fields.
    pub(crate) fn has(&self, pairs: &[(&str, &str)]) -> bool {
        pairs.iter().all(|(k, v)| self.field(k) == Some(*v))
    }
}

static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());

/// Installs the subscriber (once per process; every thread, the proxy's included).
pub(crate) fn capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(Capture)
            .expect("no other global subscriber in this test binary");
    });
}

/// The events kept so far that have every `(name, value)` pair.
pub(crate) fn lines_with(pairs: &[(&str, &str)]) -> Vec<Line> {
    LINES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|l| l.has(pairs))
        .cloned()
        .collect()
}

struct Capture;

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // More verbose levels compare greater.
        *metadata.level() <= Level::INFO
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let meta = event.metadata();
        LINES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Line {
                level: *meta.level(),
                target: meta.target().to_owned(),
                fields: fields.0,
            });
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

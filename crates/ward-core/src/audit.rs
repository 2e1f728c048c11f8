//! Audit events: security decisions (a package verified or refused, an input refused, a
//! request denied), one JSON object each, on their own `tracing` target.
//!
//! Libraries emit them with [`AuditEvent::emit`] (a service's requests with ward-net's
//! `RequestEvent`, on the same target); the binary decides where the target goes
//! (`ward --audit-log FILE`), apart from the debug log. The `event` names are stable: log
//! pipelines match on them.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The `tracing` target of audit events. The message of each event is its JSON line.
pub const AUDIT_TARGET: &str = "ward::audit";

/// One security decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Stable name, `<area>.<outcome>`: `package.verified`, `package.refused`, ….
    pub event: &'static str,
    /// What was decided about: a package directory, a model name.
    pub subject: String,
    /// Who vouched or asked: a key name from the trust policy, a principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Why, for refusals and warnings: a stable reason code such as `digest-mismatch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The human-readable detail, one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEvent {
    pub fn new(event: &'static str, subject: impl Into<String>) -> AuditEvent {
        AuditEvent {
            event,
            subject: subject.into(),
            signer: None,
            reason: None,
            detail: None,
        }
    }

    pub fn signer(mut self, signer: impl Into<String>) -> AuditEvent {
        self.signer = Some(signer.into());
        self
    }

    pub fn reason(mut self, reason: &'static str, detail: impl Into<String>) -> AuditEvent {
        self.reason = Some(reason);
        self.detail = Some(detail.into());
        self
    }

    /// The event as one JSON line (no newline).
    pub fn to_json(&self) -> String {
        // A struct of strings always serialises.
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"event\":\"{}\"}}", self.event))
    }

    /// Sends the event to the audit target.
    pub fn emit(&self) {
        tracing::info!(target: AUDIT_TARGET, "{}", self.to_json());
    }
}

/// A `tracing` layer that writes the JSON line of each audit event to `writer`, flushed,
/// and ignores every other event.
pub struct AuditLayer<W> {
    writer: Mutex<W>,
}

impl<W: Write> AuditLayer<W> {
    pub fn new(writer: W) -> AuditLayer<W> {
        AuditLayer {
            writer: Mutex::new(writer),
        }
    }
}

/// Most audit lines waiting for the writer thread; past it, the code that decides waits
/// (an audit line is never dropped).
const AUDIT_QUEUE: usize = 16_384;
/// How long the writer thread lets lines gather after each batch it writes.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

enum AuditMessage {
    Line(Vec<u8>),
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// A writer for [`AuditLayer`] that hands lines to a thread of its own, which writes them
/// in batches and flushes whenever it has caught up: a server that audits every request
/// pays a channel send per line, not a write system call.
pub struct BackgroundWriter {
    sender: std::sync::mpsc::SyncSender<AuditMessage>,
    line: Vec<u8>,
}

/// Waits for every audit line sent so far to be written. Keep it, and call it before the
/// process exits.
#[derive(Clone)]
pub struct AuditFlush(std::sync::mpsc::SyncSender<AuditMessage>);

impl AuditFlush {
    pub fn flush(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.0.send(AuditMessage::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(std::time::Duration::from_secs(10));
        }
    }
}

impl BackgroundWriter {
    pub fn spawn<W: Write + Send + 'static>(
        writer: W,
    ) -> std::io::Result<(BackgroundWriter, AuditFlush)> {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<AuditMessage>(AUDIT_QUEUE);
        std::thread::Builder::new()
            .name("ward-audit".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(1 << 16, writer);
                let mut failed = false;
                let mut write = |out: &mut std::io::BufWriter<W>, line: &[u8]| {
                    if out.write_all(line).is_err() && !failed {
                        failed = true;
                        eprintln!("warning: cannot write the audit log");
                    }
                };
                while let Ok(message) = receiver.recv() {
                    let mut acks = Vec::new();
                    let mut next = Some(message);
                    while let Some(m) = next {
                        match m {
                            AuditMessage::Line(line) => write(&mut out, &line),
                            AuditMessage::Flush(ack) => acks.push(ack),
                        }
                        next = receiver.try_recv().ok();
                    }
                    let _ = out.flush();
                    for ack in acks {
                        let _ = ack.send(());
                    }
                    // Let lines gather: one wake-up per batch, not one per line, on a
                    // server that audits thousands of requests a second.
                    std::thread::sleep(BATCH_PAUSE);
                }
                let _ = out.flush();
            })?;
        Ok((
            BackgroundWriter {
                sender: sender.clone(),
                line: Vec::new(),
            },
            AuditFlush(sender),
        ))
    }
}

impl Write for BackgroundWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// Hands the line written since the last flush to the writer thread.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.line);
        self.sender
            .send(AuditMessage::Line(line))
            .map_err(|_| std::io::Error::other("the audit writer thread has stopped"))
    }
}

/// Keeps an event's `message` field.
struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<W: Write + Send + 'static, S: Subscriber> Layer<S> for AuditLayer<W> {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != AUDIT_TARGET {
            return;
        }
        let mut message = MessageVisitor(String::new());
        event.record(&mut message);
        // A poisoned lock only means another thread panicked mid-write; keep logging.
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // An audit sink that cannot be written is reported once per event on stderr
        // rather than stopping the decision it records.
        if writeln!(writer, "{}", message.0)
            .and_then(|()| writer.flush())
            .is_err()
        {
            eprintln!("warning: cannot write the audit log: {}", message.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_stable_names() {
        let line = AuditEvent::new("package.refused", "models/a\nb")
            .signer("release")
            .reason(
                "digest-mismatch",
                "weights.safetensors: expected 00, found 11",
            )
            .to_json();
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["event"], "package.refused");
        assert_eq!(v["subject"], "models/a\nb");
        assert_eq!(v["signer"], "release");
        assert_eq!(v["reason"], "digest-mismatch");
        let bare = AuditEvent::new("package.verified", "p").to_json();
        assert_eq!(bare, r#"{"event":"package.verified","subject":"p"}"#);
    }

    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_background_writer_writes_every_line_in_order() {
        use tracing_subscriber::layer::SubscriberExt;
        let sink = Shared::default();
        let (writer, flush) = BackgroundWriter::spawn(sink.clone()).unwrap();
        let subscriber = tracing_subscriber::registry().with(AuditLayer::new(writer));
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..1000 {
                AuditEvent::new("package.verified", format!("p{i}")).emit();
            }
        });
        flush.flush();
        let text = String::from_utf8(sink.0.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(
            lines[999],
            r#"{"event":"package.verified","subject":"p999"}"#
        );
    }

    #[test]
    fn the_layer_writes_audit_lines_only() {
        use tracing_subscriber::layer::SubscriberExt;
        let sink = Shared::default();
        let subscriber = tracing_subscriber::registry().with(AuditLayer::new(sink.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "ward::debug", "not audit");
            AuditEvent::new("package.verified", "p").signer("k").emit();
        });
        let text = String::from_utf8(sink.0.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(
            text,
            "{\"event\":\"package.verified\",\"subject\":\"p\",\"signer\":\"k\"}\n"
        );
    }
}

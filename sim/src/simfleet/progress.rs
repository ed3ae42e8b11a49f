//! Progress: plain lines, and bars. On a terminal the bars are `indicatif` bars redrawn in
//! place. Anywhere else (a pipe, a CI log, a caller's writer) nothing is redrawn and no escape
//! codes are written: lines go out as they come, and each bar as one plain line with its final
//! figures when it ends (and, while a bar runs long, one line every [`PLAIN_EVERY`] so a log
//! shows the run is alive). Quiet (writes nothing) in tests.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes; see the module documentation.
pub struct Progress {
    mode: Mode,
    started: Instant,
}

enum Mode {
    Quiet,
    /// Standard error is a terminal: the bar under way, if any, drawn by indicatif.
    Terminal(Mutex<Option<Bar>>),
    /// Plain text to a writer: the bar under way, if any, only remembered.
    Plain(Mutex<Plain>),
}

struct Bar {
    label: String,
    bar: ProgressBar,
}

struct Plain {
    out: Box<dyn Write + Send>,
    bar: Option<PlainBar>,
}

struct PlainBar {
    label: String,
    done: usize,
    total: usize,
    detail: String,
    /// When the last line about this bar was written (or the bar began).
    written: Instant,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Quiet => "quiet",
            Mode::Terminal(_) => "terminal",
            Mode::Plain(_) => "plain",
        };
        f.debug_struct("Progress").field("mode", &mode).finish()
    }
}

/// Width of the bar in characters.
const WIDTH: usize = 30;

/// Without a terminal, how often a running bar writes a line with its figures so far.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Progress {
    /// Writes nothing.
    pub fn quiet() -> Self {
        Progress {
            mode: Mode::Quiet,
            started: Instant::now(),
        }
    }

    /// Writes to standard error: bars drawn in place when it is a terminal, plain lines
    /// otherwise.
    pub fn stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Progress {
                mode: Mode::Terminal(Mutex::new(None)),
                started: Instant::now(),
            }
        } else {
            Self::to(Box::new(std::io::stderr()))
        }
    }

    /// Writes plain lines (no bars redrawn, no escape codes) to `out`.
    pub fn to(out: Box<dyn Write + Send>) -> Self {
        Progress {
            mode: Mode::Plain(Mutex::new(Plain { out, bar: None })),
            started: Instant::now(),
        }
    }

    /// Seconds since this progress began, as bars show them.
    fn elapsed(&self) -> String {
        format!("{:.1} s", self.started.elapsed().as_secs_f64())
    }

    /// One line of text.
    pub fn line(&self, text: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Terminal(bar) => {
                let print = || {
                    // Progress is best effort: a closed terminal must not stop the simulation.
                    let _ = writeln!(std::io::stderr(), "{text}");
                };
                match &*lock(bar) {
                    // Above the bar, which is drawn again below.
                    Some(b) => b.bar.suspend(print),
                    None => print(),
                }
            }
            Mode::Plain(plain) => {
                let mut plain = lock(plain);
                plain.write(&format!("{text}\n"));
            }
        }
    }

    /// Shows the bar `label [#####.....] done/total detail (elapsed)`: on a terminal drawn
    /// again in place; elsewhere remembered, and written when it ends (see [`Self::end_bar`]).
    /// A bar with another label ends the one under way.
    pub fn bar(&self, label: &str, done: usize, total: usize, detail: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Terminal(slot) => {
                let mut slot = lock(slot);
                if let Some(b) = slot.take_if(|b| b.label != label) {
                    b.bar.finish();
                }
                let b = slot.get_or_insert_with(|| Bar {
                    label: label.to_owned(),
                    bar: self.terminal_bar(label),
                });
                b.bar.set_length(total as u64);
                b.bar.set_position(done as u64);
                b.bar.set_message(detail.to_owned());
            }
            Mode::Plain(plain) => {
                let mut plain = lock(plain);
                if plain.bar.as_ref().is_some_and(|b| b.label != label) {
                    self.end_plain(&mut plain);
                }
                let now = Instant::now();
                let bar = plain.bar.get_or_insert_with(|| PlainBar {
                    label: label.to_owned(),
                    done,
                    total,
                    detail: String::new(),
                    written: now,
                });
                bar.done = done;
                bar.total = total;
                detail.clone_into(&mut bar.detail);
                if now.duration_since(bar.written) >= PLAIN_EVERY {
                    bar.written = now;
                    let text = self.plain_line(bar);
                    plain.write(&text);
                }
            }
        }
    }

    /// Ends the bar under way, leaving its last figures on screen (or in the log).
    pub fn end_bar(&self) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Terminal(slot) => {
                if let Some(b) = lock(slot).take() {
                    b.bar.finish();
                }
            }
            Mode::Plain(plain) => self.end_plain(&mut lock(plain)),
        }
    }

    fn terminal_bar(&self, label: &str) -> ProgressBar {
        let started = self.started;
        let style = ProgressStyle::with_template(&format!(
            "  {{prefix:<18}} [{{bar:{WIDTH}}}] {{pos}}/{{len}} {{msg}} ({{since}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "since",
            move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} s", started.elapsed().as_secs_f64());
            },
        )
        .progress_chars("#.");
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(label.to_owned())
    }

    fn plain_line(&self, bar: &PlainBar) -> String {
        let PlainBar {
            label,
            done,
            total,
            detail,
            ..
        } = bar;
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" {detail}")
        };
        format!(
            "  {label:<18} {done}/{total}{detail} ({})\n",
            self.elapsed()
        )
    }

    fn end_plain(&self, plain: &mut Plain) {
        if let Some(bar) = plain.bar.take() {
            let text = self.plain_line(&bar);
            plain.write(&text);
        }
    }
}

impl Plain {
    fn write(&mut self, text: &str) {
        // Progress is best effort: a closed pipe must not stop the simulation.
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    #[test]
    fn without_a_terminal_bars_are_plain_lines_once_they_end() {
        let out = Shared::default();
        let p = Progress::to(Box::new(out.clone()));
        p.line("starting");
        for i in 1..=50 {
            p.bar("starting agents", i, 50, "sites");
        }
        assert_eq!(out.text(), "starting\n", "nothing until the bar ends");
        p.end_bar();
        p.end_bar();
        p.bar("converging", 3, 4, "");
        p.bar("enrolling sites", 0, 0, "online");
        p.end_bar();
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text:?}");
        assert!(
            lines[1].starts_with("  starting agents    50/50 sites ("),
            "{text:?}"
        );
        assert!(
            lines[2].starts_with("  converging         3/4 ("),
            "{text:?}"
        );
        assert!(
            lines[3].starts_with("  enrolling sites    0/0 online ("),
            "{text:?}"
        );
        assert!(lines.iter().all(|l| l.ends_with(" s)") || *l == "starting"));
        assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
    }

    #[test]
    fn without_a_terminal_a_long_bar_reports_now_and_then() {
        let out = Shared::default();
        let p = Progress::to(Box::new(out.clone()));
        p.bar("converging", 1, 10, "workloads");
        if let Mode::Plain(plain) = &p.mode {
            let mut plain = lock(plain);
            let bar = plain.bar.as_mut().unwrap();
            bar.written = bar.written.checked_sub(PLAIN_EVERY).unwrap();
        }
        p.bar("converging", 2, 10, "workloads");
        p.bar("converging", 3, 10, "workloads");
        assert_eq!(out.text().lines().count(), 1, "{:?}", out.text());
        assert!(
            out.text()
                .starts_with("  converging         2/10 workloads (")
        );
        p.end_bar();
        assert!(
            out.text()
                .lines()
                .nth(1)
                .unwrap()
                .contains("3/10 workloads")
        );
    }

    #[test]
    fn quiet_writes_nothing_and_takes_any_call() {
        let p = Progress::quiet();
        p.line("x");
        p.bar("y", 1, 2, "z");
        p.end_bar();
        assert_eq!(format!("{p:?}"), "Progress { mode: \"quiet\" }");
    }
}

//! Progress on a terminal: plain lines, and a bar redrawn in place with `\r`. Quiet (writes
//! nothing) in tests.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Where progress goes; see the module documentation.
pub struct Progress {
    out: Option<Mutex<Box<dyn Write + Send>>>,
    started: Instant,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("quiet", &self.out.is_none())
            .finish()
    }
}

/// Width of the bar in characters.
const WIDTH: usize = 30;

impl Progress {
    /// Writes nothing.
    pub fn quiet() -> Self {
        Progress {
            out: None,
            started: Instant::now(),
        }
    }

    /// Writes to standard error.
    pub fn stderr() -> Self {
        Self::to(Box::new(std::io::stderr()))
    }

    /// Writes to `out`.
    pub fn to(out: Box<dyn Write + Send>) -> Self {
        Progress {
            out: Some(Mutex::new(out)),
            started: Instant::now(),
        }
    }

    fn write(&self, text: &str) {
        if let Some(out) = &self.out {
            let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
            // Progress is best effort: a closed terminal must not stop the simulation.
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }

    /// One line of text.
    pub fn line(&self, text: &str) {
        self.write(&format!("{text}\n"));
    }

    /// Redraws the bar: `label [#####.....] done/total detail (elapsed)`.
    pub fn bar(&self, label: &str, done: usize, total: usize, detail: &str) {
        let filled = (done.min(total) * WIDTH)
            .checked_div(total)
            .unwrap_or(WIDTH);
        self.write(&format!(
            "\r  {label:<18} [{}{}] {done}/{total} {detail} ({:.1} s)\x1b[K",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            self.started.elapsed().as_secs_f64()
        ));
    }

    /// Ends the bar's line.
    pub fn end_bar(&self) {
        self.write("\n");
    }
}

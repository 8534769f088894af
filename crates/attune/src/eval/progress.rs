//! A progress bar on stderr: redrawn in place on a terminal, one closing line
//! otherwise (logs and tests stay readable).

use std::io::{IsTerminal, Write};
use std::time::Instant;

const WIDTH: usize = 30;

pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    drawn_percent: usize,
    started: Instant,
    live: bool,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: usize) -> Progress {
        let progress = Progress {
            label: label.into(),
            total,
            done: 0,
            drawn_percent: usize::MAX,
            started: Instant::now(),
            live: std::io::stderr().is_terminal(),
        };
        progress.draw();
        progress
    }

    pub fn step(&mut self) {
        self.done += 1;
        let percent = self.done * 100 / self.total.max(1);
        if percent != self.drawn_percent {
            self.drawn_percent = percent;
            self.draw();
        }
    }

    fn draw(&self) {
        if !self.live {
            return;
        }
        let filled = self.done * WIDTH / self.total.max(1);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{:<28} [{}{}] {}/{}",
            self.label,
            "=".repeat(filled),
            " ".repeat(WIDTH - filled.min(WIDTH)),
            self.done,
            self.total
        );
        let _ = err.flush();
    }

    /// Ends the bar with the elapsed time.
    pub fn finish(self) {
        let mut err = std::io::stderr().lock();
        let elapsed = self.started.elapsed().as_secs_f64();
        let _ = if self.live {
            writeln!(err, "  {elapsed:.2}s")
        } else {
            writeln!(
                err,
                "{} {}/{} {elapsed:.2}s",
                self.label, self.done, self.total
            )
        };
    }
}

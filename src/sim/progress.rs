//! A progress bar on stderr for studies that take more than a second; silent with `--quiet`, when
//! stderr is not a terminal, and for short runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const SHOW_AFTER: Duration = Duration::from_secs(1);

pub struct Progress {
    bar: ProgressBar,
    enabled: bool,
    shown: AtomicBool,
    started: Instant,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        let enabled = enabled && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} simulating [{bar:30}] {pos}/{len} runs, {eta} left",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            bar,
            enabled,
            shown: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    pub fn hidden() -> Self {
        Self::new(false)
    }

    pub fn start(&self, total: u64) {
        self.bar.set_length(total);
    }

    /// One run done; the bar appears once the study has taken more than a second.
    pub fn inc(&self) {
        self.bar.inc(1);
        if self.enabled
            && self.started.elapsed() > SHOW_AFTER
            && !self.shown.swap(true, Ordering::Relaxed)
        {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.enable_steady_tick(Duration::from_millis(200));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

//! Terminal output: cargo-style status lines on stderr ([`Status`]) and a
//! spinner for long work ([`Progress`]) when stderr is a terminal. Nothing
//! here reaches an output file.

/// Status lines on stderr (cargo style), unless quiet.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub quiet: bool,
}

impl Status {
    pub fn say(&self, verb: &str, msg: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let line = format!("{verb:>12} {msg}");
        match ACTIVE.lock().ok().and_then(|a| a.clone()) {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// A progress display for long work: a spinner with `msg` (updated with
    /// [`Progress::set`]) when stderr is a terminal, nothing otherwise (the
    /// status lines are the progress then).
    pub fn progress(&self, msg: &str) -> Progress {
        use std::io::IsTerminal;
        if self.quiet || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
            bar.set_style(style);
        }
        bar.set_message(msg.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Ok(mut a) = ACTIVE.lock() {
            *a = Some(bar.clone());
        }
        Progress { bar: Some(bar) }
    }
}

/// Status lines go above the active progress display, if any.
static ACTIVE: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// A running progress display (see [`Status::progress`]); cleared on drop.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Replace the message.
    pub fn set(&self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            if let Ok(mut a) = ACTIVE.lock() {
                *a = None;
            }
        }
    }
}

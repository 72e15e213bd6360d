//! Progress on stderr: one bar per running stage (with its id and ETA), an
//! overall bar, and a line per finished stage.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipeline::{Event, EventSink, Outcome};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

pub struct Ui {
    mp: MultiProgress,
    overall: ProgressBar,
    bars: Mutex<HashMap<String, ProgressBar>>,
    quiet_cached: bool,
}

impl Ui {
    pub fn new(total: usize) -> Ui {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let mp = MultiProgress::with_draw_target(target);
        let overall = mp.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30.green/white}] {pos}/{len} stages  {elapsed_precise}  ETA {eta}")
                .unwrap()
                .progress_chars("=> "),
        );
        overall.set_prefix("eigentrace");
        Ui {
            mp,
            overall,
            bars: Mutex::new(HashMap::new()),
            quiet_cached: true,
        }
    }

    pub fn line(&self, s: &str) {
        self.mp.suspend(|| eprintln!("{s}"));
    }

    pub fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

impl EventSink for Ui {
    fn event(&self, e: Event<'_>) {
        match e {
            Event::Started { id, reason, .. } => {
                let bar = self.mp.insert_before(&self.overall, ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>32} [{bar:30.cyan/blue}] {pos}/{len} {msg}  ETA {eta}",
                    )
                    .unwrap()
                    .progress_chars("=> "),
                );
                bar.set_prefix(id.to_string());
                self.line(&format!("  run    {id}: {reason}"));
                self.bars.lock().unwrap().insert(id.to_string(), bar);
            }
            Event::Progress {
                id,
                done,
                total,
                msg,
            } => {
                if let Some(bar) = self.bars.lock().unwrap().get(id) {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(msg.to_string());
                }
            }
            Event::Finished(rep) => {
                if let Some(bar) = self.bars.lock().unwrap().remove(&rep.id) {
                    bar.finish_and_clear();
                    self.mp.remove(&bar);
                }
                self.overall.inc(1);
                match rep.status {
                    Outcome::Ran => {
                        self.line(&format!("  done   {} in {:.1}s", rep.id, rep.seconds))
                    }
                    Outcome::Cached if self.quiet_cached => {}
                    Outcome::Cached => self.line(&format!("  cached {}", rep.id)),
                    Outcome::Failed => self.line(&format!(
                        "  FAILED {}: {}",
                        rep.id,
                        rep.error.as_deref().unwrap_or("unknown error")
                    )),
                    Outcome::Skipped => self.line(&format!(
                        "  skip   {}: {}",
                        rep.id,
                        rep.reason.as_deref().unwrap_or("an input failed")
                    )),
                }
            }
        }
    }
}

//! Progress of a rebuild on the terminal: a progress bar (events/s, position, ETA) when standard
//! error is a terminal, plain lines every few seconds otherwise (logs, CI), so the output of a
//! long rebuild is useful wherever it lands.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use projections::replay::{Progress, Stage};
use tokio::sync::watch;

/// How often a plain progress line is written.
const LINE_EVERY: Duration = Duration::from_secs(2);

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Replaying => "replaying the log",
        Stage::Indexing => "building indexes",
        Stage::Swapping => "swapping in",
        Stage::Done => "done",
    }
}

/// Shows the progress published on `progress` until its sender is dropped.
pub async fn show(mut progress: watch::Receiver<Progress>) {
    if std::io::stderr().is_terminal() {
        bar(&mut progress).await
    } else {
        lines(&mut progress).await
    }
}

async fn bar(progress: &mut watch::Receiver<Progress>) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:18} [{bar:40}] {pos}/{len} events  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    while progress.changed().await.is_ok() {
        let now = *progress.borrow_and_update();
        bar.set_length(now.head.max(now.position));
        bar.set_position(now.position);
        bar.set_message(stage_name(now.stage));
    }
    bar.finish_and_clear();
}

async fn lines(progress: &mut watch::Receiver<Progress>) {
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut last_stage = None;
    while progress.changed().await.is_ok() {
        let now = *progress.borrow_and_update();
        if last_stage == Some(now.stage) && last_line.elapsed() < LINE_EVERY {
            continue;
        }
        last_stage = Some(now.stage);
        last_line = Instant::now();
        let seconds = started.elapsed().as_secs_f64().max(0.001);
        let rate = now.position as f64 / seconds;
        let left = now.head.saturating_sub(now.position);
        let eta = if rate > 0.0 {
            format!("{:.0} s", left as f64 / rate)
        } else {
            "-".into()
        };
        eprintln!(
            "replay tasks: {}: {}/{} events ({:.0}%), {:.0} events/s, ETA {eta}",
            stage_name(now.stage),
            now.position,
            now.head,
            100.0 * now.position as f64 / now.head.max(1) as f64,
            rate
        );
    }
}

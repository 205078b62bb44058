//! What the supervisor does with a program that will not behave: one that floods its output
//! is stopped at the cap, and one that starts processes without end meets a process limit;
//! either way nothing it started is left running (what it left is reported, and reaped). The programs are shell one-liners, bounded, so
//! that a failure of the containment costs little.

use std::path::Path;
use std::time::{Duration, Instant};

use supervisor::{PidsCgroup, Run};

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

#[test]
fn a_flood_of_output_is_stopped_at_the_cap() {
    let start = Instant::now();
    // `yes` writes for ever; bounded anyway at 200 MB by head, should the cap fail.
    let outcome = Run::new(Path::new("/bin/sh"), scratch())
        .args(&["-c", "yes | head -c 200000000"])
        .max_output(1 << 20)
        .go();
    assert!(
        outcome.leftovers.iter().any(|l| l.starts_with("flooded its output")),
        "the flood was not reported: {}",
        outcome.describe().chars().take(500).collect::<String>()
    );
    assert!(outcome.stdout.len() <= (1 << 20) + (64 << 10), "kept {} bytes", outcome.stdout.len());
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
}

#[test]
fn a_fork_bomb_meets_a_process_limit() {
    if let Err(why) = PidsCgroup::available() {
        if std::env::var_os("CI").is_some() {
            panic!("CI must test the process limit, and cannot here: {why}");
        }
        eprintln!("a_fork_bomb_meets_a_process_limit: skipped: {why}");
        return;
    }
    // 300 sleepers at once (bounded), under a limit of 32: most forks must be refused.
    let outcome = Run::new(Path::new("/bin/sh"), scratch())
        .args(&["-c", "for i in $(seq 300); do sleep 2 & done; wait"])
        .contain_processes(32)
        .go();
    assert!(
        outcome.stderr.contains("fork") || outcome.stderr.contains("Resource temporarily unavailable"),
        "no fork was refused: {}",
        outcome.describe()
    );
    // sh gives up at the first refused fork, leaving its sleepers: reported, and reaped.
    for left in &outcome.leftovers {
        let pid: String =
            left.split("pid ").nth(1).unwrap_or("").chars().take_while(char::is_ascii_digit).collect();
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "{left}: still there after the run");
    }
}

//! MPI jobs started by the kit, with plain shell programs as ranks (`mpiexec` starts any
//! program; each gets its rank in `PMI_RANK`), and with real MPI ranks of the kit's own
//! (examples/ranks.rs, built with `--features mpi`): every rank's output is read and checked, a
//! failing rank ends the job fast, the deadline kills it whole, and nothing is left. The
//! lesson's own ranks, real MPI programs, are tested with the lesson. Where MPICH is
//! missing these tests say so in one line and are skipped; under CI they fail instead.

use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use mpijob::{FINISHED, Job};

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1); // one job at a time: two at once would be more ranks than CPUs
    let missing = mpijob::installed().err().map(|e| format!("{e:#}"));
    if let Some(why) = &missing {
        if std::env::var_os("CI").is_some() {
            eprintln!("CI is set and MPICH is missing, so the MPI tests fail: {why}");
            std::process::exit(1);
        }
        eprintln!("skipping the MPI job tests: {why}");
    }
    let tests = [
        ("every-rank-is-read", every_rank_is_read as fn() -> anyhow::Result<()>),
        ("a-rank-that-ends-early-is-named", a_rank_that_ends_early_is_named),
        ("a-killed-rank-ends-the-job", a_killed_rank_ends_the_job),
        ("the-deadline-kills-the-whole-job", the_deadline_kills_the_whole_job),
        ("more-ranks-than-cpus-are-refused", more_ranks_than_cpus_are_refused),
        ("mpi-ranks-finish", mpi_ranks_finish),
        ("an-mpi-rank-that-panics-ends-the-job", an_mpi_rank_that_panics_ends_the_job),
        ("an-mpi-rank-that-exits-early-is-named", an_mpi_rank_that_exits_early_is_named),
    ];
    let trials = tests.into_iter().map(|(name, test)| {
        Trial::test(name, move || test().map_err(|e| Failed::from(format!("{e:#}"))))
            .with_ignored_flag(missing.is_some())
    });
    libtest_mimic::run(&args, trials.collect()).exit();
}

/// A job of `ranks` copies of `sh -c script` (the script sees its rank as `$PMI_RANK`).
fn shell(ranks: usize, script: &str) -> Job {
    Job::new("sh", ranks).args(["-c", script]).env("FINISHED", FINISHED)
}

/// A word no other program's command line holds: each test's ranks carry it, so that a test
/// can look for its own processes, and never touch another's.
fn token(test: &str) -> String {
    format!("mpijob-test-{test}-{}", std::process::id())
}

/// The processes still running whose command line holds `token`.
fn left_with(token: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| {
            let line = std::fs::read(e.path().join("cmdline")).ok()?;
            let line = String::from_utf8_lossy(&line).replace('\0', " ");
            line.contains(token).then(|| format!("{}: {line}", e.file_name().to_string_lossy()))
        })
        .collect()
}

fn every_rank_is_read() -> anyhow::Result<()> {
    let output = shell(2, r#"echo "rank $PMI_RANK of $PMI_SIZE"; echo "$FINISHED""#).run()?;
    anyhow::ensure!(
        output.ranks == [vec!["rank 0 of 2".to_string()], vec!["rank 1 of 2".to_string()]],
        "the ranks' lines: {:?}",
        output.ranks
    );
    Ok(())
}

fn a_rank_that_ends_early_is_named() -> anyhow::Result<()> {
    // Rank 1 exits 0 without finishing: mpiexec may well exit 0 too.
    let script = r#"if [ "$PMI_RANK" = 1 ]; then echo "leaving early"; exit 0; fi; echo "$FINISHED""#;
    let error = match shell(2, script).run() {
        Ok(output) => anyhow::bail!("the job succeeded: {:?}", output.ranks),
        Err(e) => format!("{e:#}"),
    };
    anyhow::ensure!(
        error.contains("rank 1 did not finish; its last line: leaving early") && !error.contains("rank 0"),
        "the error does not name rank 1 alone, with its last line: {error}"
    );
    Ok(())
}

fn a_killed_rank_ends_the_job() -> anyhow::Result<()> {
    let token = token("killed");
    let script = format!(r#"if [ "$PMI_RANK" = 1 ]; then kill -9 $$; fi; sleep 30 # {token}"#);
    let start = Instant::now();
    let error = match shell(2, &script).run() {
        Ok(output) => anyhow::bail!("the job succeeded: {:?}", output.ranks),
        Err(e) => format!("{e:#}"),
    };
    let took = start.elapsed();
    anyhow::ensure!(took < Duration::from_secs(2), "the job took {took:?} to end after rank 1 was killed");
    anyhow::ensure!(
        error.contains("rank 1 did not finish") && error.contains("rank 0 did not finish"),
        "the error does not name both ranks: {error}"
    );
    let left = left_with(&token);
    anyhow::ensure!(left.is_empty(), "left running: {left:?}");
    Ok(())
}

fn the_deadline_kills_the_whole_job() -> anyhow::Result<()> {
    let token = token("deadline");
    let job = shell(2, &format!("sleep 30 # {token}")).deadline(Duration::from_millis(500));
    let start = Instant::now();
    let error = match job.run() {
        Ok(output) => anyhow::bail!("the job succeeded: {:?}", output.ranks),
        Err(e) => format!("{e:#}"),
    };
    let took = start.elapsed();
    anyhow::ensure!(error.contains("deadline"), "the error does not say the deadline passed: {error}");
    anyhow::ensure!(took < Duration::from_secs(2), "the job took {took:?} to end, its deadline 0.5 s");
    let left = left_with(&token);
    anyhow::ensure!(left.is_empty(), "left running: {left:?}");
    Ok(())
}

fn more_ranks_than_cpus_are_refused() -> anyhow::Result<()> {
    let error = match shell(mpijob::cpus() + 1, r#"echo "$FINISHED""#).run() {
        Ok(_) => anyhow::bail!("the job ran"),
        Err(e) => format!("{e:#}"),
    };
    anyhow::ensure!(error.contains("one rank per CPU"), "the error does not say why: {error}");
    shell(mpijob::cpus() + 1, r#"echo "$FINISHED""#).oversubscribe().run()?;
    Ok(())
}

/// The kit's example rank, built with MPI (once, by the first test that needs it).
fn ranks(ranks: usize) -> anyhow::Result<Job> {
    static BUILT: std::sync::OnceLock<Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let build = escargot::CargoBuild::new().package("mpijob").example("ranks").features("mpi");
        build.run().map(|run| run.path().to_path_buf()).map_err(|e| format!("build the example ranks: {e}"))
    });
    Ok(Job::new(built.clone().map_err(anyhow::Error::msg)?, ranks))
}

fn mpi_ranks_finish() -> anyhow::Result<()> {
    let output = ranks(2)?.run()?;
    anyhow::ensure!(
        output.ranks == [vec!["rank 0 of 2".to_string()], vec!["rank 1 of 2".to_string()]],
        "the ranks' lines: {:?}",
        output.ranks
    );
    Ok(())
}

fn an_mpi_rank_that_panics_ends_the_job() -> anyhow::Result<()> {
    // Rank 0 waits for a message from rank 1, which panics instead of sending it.
    let job = ranks(2)?.args(["panic", "1"]).deadline(Duration::from_secs(5));
    let start = Instant::now();
    let error = match job.run() {
        Ok(output) => anyhow::bail!("the job succeeded: {:?}", output.ranks),
        Err(e) => format!("{e:#}"),
    };
    let took = start.elapsed();
    anyhow::ensure!(took < Duration::from_secs(1), "the job took {took:?} to end after rank 1 panicked");
    // mpiexec's status is non-zero, 101 or 255 (whichever failing process reported first);
    // rank 1's last words are its panic's message, never lost (150 runs).
    anyhow::ensure!(
        !error.contains("(exit status 0)")
            && error.contains("rank 1 did not finish; its last line: rank 1 panics on purpose"),
        "the error does not give rank 1's panic: {error}"
    );
    Ok(())
}

fn an_mpi_rank_that_exits_early_is_named() -> anyhow::Result<()> {
    // Rank 1 leaves without finishing MPI; mpiexec ends the job and (here) exits 0.
    let error = match ranks(2)?.args(["exit", "1"]).run() {
        Ok(output) => anyhow::bail!("the job succeeded: {:?}", output.ranks),
        Err(e) => format!("{e:#}"),
    };
    anyhow::ensure!(
        error.contains("rank 1 did not finish; its last line: rank 1 of 2"),
        "the error does not name rank 1: {error}"
    );
    Ok(())
}

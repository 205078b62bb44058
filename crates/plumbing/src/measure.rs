//! `--measure`: run each case several times, keep the median, the fastest and the slowest
//! run, and print them beside a baseline measured in the same run.
//!
//! Every lesson prints the same table, and with `--json` the same records, one JSON object
//! per line; `cargo xtask measure` turns those records into the book's tables with
//! [`markdown_table`], so a table in the book is always the output of a command.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::busy::{Watch, spread_warning};
use crate::cli::{Args, Lesson};
use crate::machine::Machine;

/// One measured case: what `--json` prints, one per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub lesson: String,
    pub case: String,
    /// `"rust"` or `"python"`.
    #[serde(rename = "impl")]
    pub implementation: String,
    pub runs: usize,
    /// Seconds per run; a run does `ops` operations.
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// The case this one is compared with, or null for a case that is itself a baseline.
    pub baseline: Option<String>,
    /// Operations per run: per-operation time is `median_s / ops`.
    pub ops: u64,
    /// Bytes moved per run, where that is the point of the case.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes: Option<u64>,
    /// Page faults in the median run (minor ones: a page mapped, not read from disk), by the
    /// measuring process and every child it reaped during the run (`getrusage`), and by
    /// long-lived workers that report their own. Records measured before faults were
    /// counted have none.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub faults: Option<u64>,
}

impl Record {
    /// Median seconds per operation.
    pub fn per_op(&self) -> f64 {
        self.median_s / self.ops as f64
    }

    /// The same case in another run of the experiment: everything but the numbers agrees.
    pub fn same_case(&self, other: &Record) -> bool {
        (&self.lesson, &self.case, &self.implementation, &self.baseline, self.ops, self.bytes)
            == (&other.lesson, &other.case, &other.implementation, &other.baseline, other.ops, other.bytes)
    }
}

/// How a case is named and counted, before it runs.
#[derive(Debug, Clone)]
pub struct Case {
    name: String,
    ops: u64,
    bytes: Option<u64>,
    baseline: Option<String>,
}

impl Case {
    /// A case that does one operation per run, with no baseline (so it is one).
    pub fn new(name: &str) -> Case {
        Case { name: name.to_string(), ops: 1, bytes: None, baseline: None }
    }

    /// Each run does `ops` operations; the table shows time per operation.
    pub fn ops(mut self, ops: u64) -> Case {
        self.ops = ops;
        self
    }

    /// Each run moves `bytes` bytes; the table shows MiB/s.
    pub fn bytes(mut self, bytes: u64) -> Case {
        self.bytes = Some(bytes);
        self
    }

    /// Compare this case with the named one (per operation).
    pub fn vs(mut self, baseline: &str) -> Case {
        self.baseline = Some(baseline.to_string());
        self
    }
}

/// Runs cases and collects their records; prints the table (or JSON) as it goes.
pub struct Bench {
    lesson: &'static str,
    title: String,
    runs: usize,
    json: bool,
    quick: bool,
    python: bool,
    python_path: &'static str,
    records: Vec<Record>,
    notes: Vec<String>,
    /// How busy the machine is while the cases run.
    watch: Watch,
}

impl Bench {
    /// Start measuring `lesson`; `title` says what is measured, for the table's first line.
    pub fn new(lesson: &Lesson, args: &Args, title: &str) -> Bench {
        if cfg!(debug_assertions) && !args.quick {
            eprintln!("note: this is a debug build; measure with --release for meaningful numbers");
        }
        let mut notes = Vec::new();
        if args.trace.is_some() {
            notes.push("traced (--trace): these times include the cost of tracing".to_string());
        }
        Bench {
            lesson: lesson.name,
            title: title.to_string(),
            runs: args.runs,
            json: args.json,
            quick: args.quick,
            python: !args.no_python,
            python_path: lesson.python,
            records: Vec::new(),
            notes,
            watch: Watch::start(),
        }
    }

    /// Measure a case whose whole closure is one run.
    pub fn run(&mut self, case: Case, mut one_run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.run_timed(case, || {
            let start = Instant::now();
            one_run()?;
            Ok(start.elapsed())
        })
    }

    /// Measure a case whose closure times its own run (to leave set-up out) and returns it.
    pub fn run_timed(
        &mut self,
        case: Case,
        mut one_run: impl FnMut() -> anyhow::Result<Duration>,
    ) -> anyhow::Result<()> {
        self.run_counted(case, || Ok((one_run()?, 0)))
    }

    /// [`Bench::run_timed`] for a case whose workers outlive its runs: the closure returns
    /// its run's time and the page faults its long-lived workers took meanwhile (which
    /// `getrusage` counts only for children that have been reaped).
    pub fn run_counted(
        &mut self,
        case: Case,
        mut one_run: impl FnMut() -> anyhow::Result<(Duration, u64)>,
    ) -> anyhow::Result<()> {
        eprint!("measuring {:<36}", case.name);
        let _ = std::io::stderr().flush();
        multiproc::proc::line_open(true); // an error meanwhile starts on a line of its own
        // Under --trace, each run is a phase of the timeline, named by its case and run.
        let phase = |run: usize| {
            let name = &case.name;
            multiproc::trace::span("phase", move || match run {
                0 => format!("{name}, warm-up"),
                run => format!("{name}, run {run}"),
            })
        };
        if !self.quick {
            let _warm_up = phase(0);
            one_run()?; // warm-up: caches, page faults, lazy binding; not counted
        }
        let mut runs = Vec::with_capacity(self.runs);
        for run in 1..=self.runs {
            let _run = phase(run);
            let before = faults_so_far()?;
            let (time, theirs) = one_run()?;
            runs.push((time.as_secs_f64(), faults_so_far()? - before + theirs));
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut times: Vec<f64> = runs.iter().map(|run| run.0).collect();
        let faults = Some(runs[(runs.len() - 1) / 2].1); // the median run's
        let record = Record {
            lesson: self.lesson.to_string(),
            case: case.name,
            implementation: "rust".to_string(),
            runs: self.runs,
            median_s: median(&mut times),
            min_s: times[0],
            max_s: times[times.len() - 1],
            baseline: case.baseline,
            ops: case.ops,
            bytes: case.bytes,
            faults,
        };
        multiproc::proc::line_open(false);
        eprintln!(" {}/op", duration(record.per_op()));
        if let Some(warning) = spread_warning(&record.case, record.min_s, record.max_s) {
            eprintln!("{warning}");
            self.notes.push(warning);
        }
        self.push(record);
        Ok(())
    }

    /// A row the lesson's cost model predicts instead of measuring: `model` computes seconds
    /// per operation from the rows measured so far, each read through the function it is
    /// given (a case's name in, its seconds per operation out). It is called three times:
    /// with every row's median, fastest and slowest run, for the prediction and its range.
    pub fn predict(
        &mut self,
        case: Case,
        model: impl Fn(&dyn Fn(&str) -> anyhow::Result<f64>) -> anyhow::Result<f64>,
    ) -> anyhow::Result<()> {
        let records = &self.records;
        let at = |seconds: fn(&Record) -> f64| {
            model(&|name: &str| {
                let row = records.iter().find(|r| r.case == name && r.implementation == "rust");
                let row = row.ok_or_else(|| anyhow::anyhow!("the model needs {name:?}, not measured yet"))?;
                Ok(seconds(row) / row.ops as f64)
            })
        };
        let per_op = [at(|r| r.median_s)?, at(|r| r.min_s)?, at(|r| r.max_s)?];
        let [median_s, min_s, max_s] = per_op.map(|s| s * case.ops as f64);
        anyhow::ensure!(min_s <= median_s && median_s <= max_s, "{}: the model is not monotonic", case.name);
        eprintln!("predicted {:<35} {}/op", case.name, duration(median_s / case.ops as f64));
        let record = Record {
            lesson: self.lesson.to_string(),
            case: case.name,
            implementation: "rust".to_string(),
            runs: self.runs,
            median_s,
            min_s,
            max_s,
            baseline: case.baseline,
            ops: case.ops,
            bytes: case.bytes,
            faults: None,
        };
        self.push(record);
        Ok(())
    }

    /// A line to print under the table (and on stderr now): a fact about the machine that
    /// the rows depend on.
    pub fn note(&mut self, line: &str) {
        eprintln!("{line}");
        self.notes.push(line.to_string());
    }

    /// Run the lesson's Python program in measure mode and add its cases, or say why not.
    pub fn python(&mut self) -> anyhow::Result<()> {
        if !self.python {
            return Ok(());
        }
        match crate::python::measure(self.python_path, self.runs, self.quick)? {
            Some(records) => records.into_iter().for_each(|r| self.push(r)),
            None => {
                let note = "python3 (or a module the twin needs) not found, Python rows skipped".to_string();
                eprintln!("{note}");
                self.notes.push(note);
            }
        }
        Ok(())
    }

    fn push(&mut self, record: Record) {
        if self.json {
            println!("{}", serde_json::to_string(&record).expect("a record is plain data"));
        }
        self.records.push(record);
    }

    /// Print the table (unless `--json`), with how busy the machine was meanwhile and a
    /// warning if it was too busy, and return the records.
    pub fn finish(mut self) -> Vec<Record> {
        let busy = self.watch.end();
        if let Some(warning) = busy.warning() {
            eprintln!("{warning}");
            self.notes.push(warning);
        }
        if !self.json {
            println!("{}: {}", self.lesson, self.title);
            println!("measured on {}; {busy}", Machine::detect());
            println!();
            print!("{}", text_table(&self.records));
            for note in &self.notes {
                println!("{note}");
            }
        }
        self.records
    }
}

/// Minor page faults so far of this process, and of its children that have been reaped.
pub fn faults_so_far() -> anyhow::Result<u64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let mine = getrusage(UsageWho::RUSAGE_SELF)?.minor_page_faults();
    let children = getrusage(UsageWho::RUSAGE_CHILDREN)?.minor_page_faults();
    Ok((mine + children) as u64)
}

/// A count of page faults in few characters: `812`, `8.2k`, `1.3M`.
pub fn count(n: u64) -> String {
    match n {
        n if n < 1_000 => n.to_string(),
        n if n < 1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        n => format!("{:.1}M", n as f64 / 1e6),
    }
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 { times[n / 2] } else { (times[n / 2 - 1] + times[n / 2]) / 2.0 }
}

/// How many times `base` a `time` is, written as the tables write a ratio: `0.52x`, `3.6x`.
/// (For a demo that compares its own timings; `--measure` tables do this from records.)
pub fn times(time: Duration, base: Duration) -> String {
    format!("{}x", short_ratio(time.as_secs_f64() / base.as_secs_f64()))
}

/// The CPU time process `pid` has used so far, as the kernel counts it: the first field of
/// /proc/PID/schedstat, in nanoseconds (what an idle waiter burns is measured so).
pub fn cpu_time(pid: nix::unistd::Pid) -> anyhow::Result<Duration> {
    use anyhow::Context;
    let path = format!("/proc/{pid}/schedstat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let nanos = text.split_whitespace().next().and_then(|field| field.parse().ok());
    Ok(Duration::from_nanos(nanos.with_context(|| format!("no CPU time in {path}: {text:?}"))?))
}

/// Seconds, in the unit that suits them: `8.41 µs`, `1.20 ms`, `0.503 s`.
pub fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 1e-6 => format!("{:.1} ns", s * 1e9),
        s if s < 1e-3 => format!("{:.2} µs", s * 1e6),
        s if s < 1.0 => format!("{:.2} ms", s * 1e3),
        s => format!("{s:.3} s"),
    }
}

fn rows(records: &[Record]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let with_bytes = records.iter().any(|r| r.bytes.is_some());
    let with_faults = records.iter().any(|r| r.faults.is_some());
    let mut header = vec!["case", "impl", "runs", "median/op", "min/op", "max/op"];
    if with_bytes {
        header.push("MiB/s");
    }
    if with_faults {
        header.push("faults/run");
    }
    header.push("vs baseline");
    let rows = records
        .iter()
        .map(|r| {
            let per = |s: f64| duration(s / r.ops as f64);
            let mut row = vec![
                r.case.clone(),
                r.implementation.clone(),
                r.runs.to_string(),
                per(r.median_s),
                per(r.min_s),
                per(r.max_s),
            ];
            if with_bytes {
                row.push(
                    r.bytes.map_or(String::new(), |b| format!("{:.0}", b as f64 / r.median_s / 1048576.0)),
                );
            }
            if with_faults {
                row.push(r.faults.map_or(String::new(), count));
            }
            row.push(ratio(r, records));
            row
        })
        .collect();
    (header, rows)
}

fn ratio(record: &Record, records: &[Record]) -> String {
    let Some(name) = &record.baseline else { return "(baseline)".to_string() };
    match records.iter().find(|b| &b.case == name) {
        Some(base) => format!("{}x {name}", two_figures(record.per_op() / base.per_op())),
        None => format!("({name} not measured)"),
    }
}

/// A ratio with two decimals, or two significant figures when it is smaller than 0.1
/// (`0.00057`, not `0.00`).
fn two_figures(ratio: f64) -> String {
    if ratio >= 0.1 || ratio <= 0.0 || !ratio.is_finite() {
        format!("{ratio:.2}")
    } else {
        let decimals = (-ratio.log10()).floor() as usize + 2;
        format!("{ratio:.decimals$}")
    }
}

/// The table `--measure` prints, in aligned columns.
pub fn text_table(records: &[Record]) -> String {
    let (header, rows) = rows(records);
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The same table in Markdown, for the book.
pub fn markdown_table(records: &[Record]) -> String {
    // Narrow enough for the book's column: no runs column (the stamp above the table gives
    // the runs), and each row a ratio names by a mark (①) beside its case, not by its name.
    let referenced = referenced(records);
    let mark = |case: &str| referenced.iter().position(|c| *c == case).map(circled);
    let with_bytes = records.iter().any(|r| r.bytes.is_some());
    let with_faults = records.iter().any(|r| r.faults.is_some());
    let mut header = vec!["case", "impl", "median/op", "min/op", "max/op"];
    if with_bytes {
        header.push("MiB/s");
    }
    if with_faults {
        header.push("faults");
    }
    header.push("vs");
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!("|{}\n", header.iter().map(|_| "---|").collect::<String>()));
    for r in records {
        let per = |s: f64| duration(s / r.ops as f64);
        let case = match mark(&r.case) {
            Some(mark) => format!("{mark} {}", r.case),
            None => r.case.clone(),
        };
        let mut row = vec![case, r.implementation.clone(), per(r.median_s), per(r.min_s), per(r.max_s)];
        if with_bytes {
            row.push(r.bytes.map_or(String::new(), |b| format!("{:.0}", b as f64 / r.median_s / 1048576.0)));
        }
        if with_faults {
            row.push(r.faults.map_or(String::new(), count));
        }
        row.push(match &r.baseline {
            None => "baseline".to_string(),
            Some(name) => match (records.iter().find(|b| &b.case == name), mark(name)) {
                (Some(base), Some(mark)) => format!("{}x {mark}", short_ratio(r.per_op() / base.per_op())),
                _ => format!("({name} not measured)"),
            },
        });
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// The cases other rows are compared with, in table order: the rows the book marks ①, ②...
pub fn referenced(records: &[Record]) -> Vec<&str> {
    records
        .iter()
        .filter(|r| records.iter().any(|other| other.baseline.as_deref() == Some(r.case.as_str())))
        .map(|r| r.case.as_str())
        .collect()
}

/// ①, ②... for the rows other rows are compared with (up to ⑳; then (21)...).
pub fn circled(index: usize) -> String {
    match char::from_u32(0x2460 + index as u32) {
        Some(mark) if index < 20 => mark.to_string(),
        _ => format!("({})", index + 1),
    }
}

/// A ratio in few characters: `25348x`, `154x`, `3.6x`... below 10, two figures after the
/// point as [`two_figures`] gives them.
fn short_ratio(ratio: f64) -> String {
    match ratio {
        r if r >= 100.0 => format!("{r:.0}"),
        r if r >= 10.0 => format!("{r:.1}"),
        r => two_figures(r),
    }
}

/// Parse `--json` output: one record per non-empty line.
pub fn parse_records(jsonl: &str) -> Result<Vec<Record>, String> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not a measure record: {e}: {l}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(case: &str, median: f64, baseline: Option<&str>) -> Record {
        Record {
            lesson: "demo".into(),
            case: case.into(),
            implementation: "rust".into(),
            runs: 3,
            median_s: median,
            min_s: median * 0.9,
            max_s: median * 1.2,
            baseline: baseline.map(String::from),
            ops: 1000,
            bytes: None,
            faults: None,
        }
    }

    #[test]
    fn small_ratios_keep_two_figures() {
        assert_eq!(two_figures(1.5), "1.50");
        assert_eq!(two_figures(0.12), "0.12");
        assert_eq!(two_figures(0.0571), "0.057");
        assert_eq!(two_figures(0.000573), "0.00057");
    }

    #[test]
    fn a_prediction_reads_the_rows_measured_before_it() {
        let lesson = Lesson { name: "demo", about: "", python: "", roles: &[] };
        let args = Args { quick: true, runs: 3, no_python: true, ..Args::default() };
        let mut bench = Bench::new(&lesson, &args, "predictions");
        bench.records.extend([rec("a", 0.1, None), rec("b", 0.2, None)]); // per op: 1e-4, 2e-4
        bench.predict(Case::new("a + b").ops(10), |row| Ok(row("a")? + row("b")?)).unwrap();
        let predicted = bench.records.last().unwrap();
        let close = |x: f64, y: f64| (x - y).abs() < 1e-12;
        assert_eq!(predicted.case, "a + b");
        // Each of median, fastest and slowest from the same of every row: 0.9x and 1.2x.
        assert!(close(predicted.median_s, 3e-3), "{predicted:?}");
        assert!(close(predicted.min_s, 0.9 * 3e-3) && close(predicted.max_s, 1.2 * 3e-3), "{predicted:?}");
        // A row that was not measured is an error, not a guess.
        assert!(bench.predict(Case::new("c"), |row| row("not measured")).is_err());
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn ratio_is_per_operation() {
        let records = [rec("floor", 0.1, None), rec("fork", 0.15, Some("floor"))];
        let table = text_table(&records);
        assert!(table.contains("1.50x floor"), "{table}");
        assert!(table.contains("100.00 µs"), "{table}");
        let book = markdown_table(&records);
        assert!(book.contains("| ① floor | rust | 100.00 µs |"), "{book}");
        assert!(book.contains("| fork | rust | 150.00 µs | 135.00 µs | 180.00 µs | 1.50x ① |"), "{book}");
    }

    #[test]
    fn json_round_trip() {
        let r = rec("fork", 0.15, Some("floor"));
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.contains("\"impl\":\"rust\""));
        assert_eq!(parse_records(&line).unwrap(), vec![r]);
    }
}

//! forklore's repo commands (`cargo xtask <command>`, an alias in .cargo/config.toml):
//!
//! - `cargo xtask book`: build the book into book/build with mdBook's own library, so
//!   nothing needs installing; open book/build/index.html.
//! - `cargo xtask measure [LESSON...] [--runs N] [--busy-ok]`: run every lesson's (or the
//!   named ones') `--measure --json` in release mode on this machine, and write its records
//!   and its table and its chart (SVG), stamped with machine, date and how busy the machine
//!   was, under book/src/measured/. A lesson measured while other processes kept the machine
//!   busy (plumbing::busy) is not written, unless `--busy-ok`.
//! - `cargo xtask tables`: write each measured table again from its records, as `measure`
//!   would, keeping the stamp (machine and date) of the run that measured them: for a change
//!   of the tables' layout, which changes no number.
//! - `cargo xtask timelines`: run the lessons the book shows timelines of with `--trace`
//!   (release builds), and keep each run's reduced trace and its picture under
//!   book/src/timelines/, stamped with machine and date (src/timeline.rs).
//! - `cargo xtask exercises`: write the book's pages of exercises from their manifests
//!   (`exercises/<lesson>/exercises.toml`): each chapter's Exercises section and each
//!   lesson's solutions page (crates/ex/src/book.rs).
//! - `cargo xtask class DIR [N]`: make a class of N generated students (30 if not given) in
//!   DIR, for measuring `cargo ex grade DIR`: copies made from solutions and starters, some
//!   broken, some missing (crates/ex/src/grade.rs).

use std::process::{Command, ExitCode, Stdio};

use plumbing::machine::Machine;
use plumbing::measure::parse_records;

const USAGE: &str = "\
Usage: cargo xtask book
       cargo xtask measure [LESSON...] [--runs N] [--busy-ok]
       cargo xtask tables
       cargo xtask timelines
       cargo xtask exercises
       cargo xtask class DIR [N]

  book      build the book into book/build (open book/build/index.html)
  measure   re-measure lessons in release mode on this machine and regenerate their
            tables under book/src/measured/ (all lessons unless some are named); a
            lesson measured on a busy machine is not written, unless --busy-ok
  tables    write the measured tables again from their records (a new layout, the same numbers)
  timelines trace a run of the lessons the book draws as timelines, and draw them again
  exercises write the book's exercise sections and solutions pages from the manifests
  class     make a class of N generated students (30 by default) in DIR, to try
            `cargo ex grade DIR` on";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Problem::Usage(message)) => {
            eprintln!("xtask: {message}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Problem::Failed(message)) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Problem {
    Usage(String),
    Failed(String),
}

fn run() -> Result<(), Problem> {
    use lexopt::prelude::*;
    let usage = |e: lexopt::Error| Problem::Usage(e.to_string());
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next().map_err(usage)? {
        Some(Value(command)) => command.string().map_err(usage)?,
        Some(Short('h') | Long("help")) => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(other) => return Err(Problem::Usage(other.unexpected().to_string())),
        None => return Err(Problem::Usage("which command?".into())),
    };
    let mut lessons = Vec::new();
    let mut runs = None;
    let mut busy_ok = false;
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Long("busy-ok") if command == "measure" => busy_ok = true,
            Long("runs") if command == "measure" => {
                runs = Some(parser.value().map_err(usage)?.string().map_err(usage)?)
            }
            Value(lesson) if command == "measure" || command == "class" => {
                lessons.push(lesson.string().map_err(usage)?)
            }
            other => return Err(Problem::Usage(other.unexpected().to_string())),
        }
    }
    match command.as_str() {
        "book" => book(),
        "measure" => measure(lessons, runs, busy_ok),
        "exercises" => exercises(),
        "tables" => tables(),
        "timelines" => timelines(),
        "class" => class(&lessons),
        other => Err(Problem::Usage(format!("unknown command {other:?}"))),
    }
}

fn exercises() -> Result<(), Problem> {
    let root = forklore::root();
    let all = ex::manifest::all(root).map_err(|e| Problem::Failed(format!("{e:#}")))?;
    for (path, text) in ex::book::pages(root, &all) {
        let fail = |e: std::io::Error| Problem::Failed(format!("write {}: {e}", path.display()));
        std::fs::create_dir_all(path.parent().expect("a page in a folder")).map_err(fail)?;
        std::fs::write(&path, text).map_err(fail)?;
        println!("wrote {}", path.strip_prefix(root).unwrap_or(&path).display());
    }
    Ok(())
}

/// `class DIR [N]`: a generated class to grade.
fn class(args: &[String]) -> Result<(), Problem> {
    let (dir, size) = match args {
        [dir] => (dir, 30),
        [dir, size] => match size.parse::<usize>() {
            Ok(size) if size > 0 => (dir, size),
            _ => return Err(Problem::Usage(format!("a class has 1 or more students: not {size:?}"))),
        },
        _ => return Err(Problem::Usage("class DIR [N]".into())),
    };
    let root = forklore::root();
    let all = ex::manifest::all(root).map_err(|e| Problem::Failed(format!("{e:#}")))?;
    let dir = std::path::Path::new(dir);
    if dir.exists() {
        return Err(Problem::Failed(format!("{} exists: name a new folder", dir.display())));
    }
    let exercises: Vec<&ex::Exercise> = all.iter().collect();
    let works =
        ex::grade::make_class(root, &exercises, dir, size).map_err(|e| Problem::Failed(format!("{e:#}")))?;
    let count = |work| works.iter().flatten().filter(|w| **w == work).count();
    use ex::grade::Work;
    println!(
        "made {size} students in {}: {} solved, {} starters, {} broken, {} not started; grade them with \
         `cargo ex grade {}`",
        dir.display(),
        count(Work::Solved),
        count(Work::Starter),
        count(Work::Broken),
        count(Work::Absent),
        dir.display()
    );
    Ok(())
}

fn timelines() -> Result<(), Problem> {
    let machine = Machine::detect();
    let dir = forklore::root().join("book/src/timelines");
    std::fs::create_dir_all(&dir).map_err(|e| Problem::Failed(format!("create {}: {e}", dir.display())))?;
    // One traced run per lesson and options; each of its scenarios is a part of that run.
    let mut runs: Vec<(&str, &[&str])> = forklore::TIMELINES.iter().map(|s| (s.lesson, s.args)).collect();
    runs.dedup();
    for (lesson, args) in runs {
        let package = format!("lesson-{lesson}");
        let program = release_build(&package)?;
        let trace = program.with_file_name(format!("trace-{lesson}.json"));
        let ran = Command::new(&program)
            .args(args)
            .arg("--trace")
            .arg(&trace)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| Problem::Failed(format!("run {package}: {e}")))?;
        if !ran.success() {
            return Err(Problem::Failed(format!("{package} --trace failed: {ran}")));
        }
        let fail = |e: String| Problem::Failed(format!("{lesson}: {e}"));
        let text = std::fs::read_to_string(&trace).map_err(|e| fail(e.to_string()))?;
        let _ = std::fs::remove_file(&trace);
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        for scenario in forklore::TIMELINES.iter().filter(|s| s.lesson == lesson && s.args == args) {
            let options: String = args.iter().map(|a| format!("{a} ")).collect();
            let stamp = format!(
                "Traced on {machine} by `cargo xtask timelines`: `cargo run --release -p {package} -- {options}--trace FILE`"
            );
            let window = forklore::timeline::window(&value, scenario.window).map_err(fail)?;
            let timeline = forklore::timeline::from_trace(&value, window, &stamp).map_err(fail)?;
            let json = serde_json::to_string(&timeline).map_err(|e| fail(e.to_string()))?;
            write(&forklore::timeline_file(scenario.name, "json"), &json)?;
            let svg = forklore::timeline::svg(scenario.title, &timeline);
            write(&forklore::timeline_file(scenario.name, "svg"), &svg)?;
            println!(
                "wrote book/src/timelines/{}.json and .svg ({} tracks, {} messages, {})",
                scenario.name,
                timeline.tracks.len(),
                timeline.messages,
                plumbing::measure::duration(timeline.duration_us / 1e6)
            );
        }
    }
    // A picture no scenario makes any more would be left in the book: remove it.
    for entry in
        std::fs::read_dir(&dir).map_err(|e| Problem::Failed(format!("read {}: {e}", dir.display())))?
    {
        let path = entry.map_err(|e| Problem::Failed(e.to_string()))?.path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if !forklore::TIMELINES.iter().any(|s| s.name == stem) {
            std::fs::remove_file(&path)
                .map_err(|e| Problem::Failed(format!("remove {}: {e}", path.display())))?;
            println!("removed {}, which no timeline makes any more", path.display());
        }
    }
    Ok(())
}

fn tables() -> Result<(), Problem> {
    for lesson in forklore::lessons() {
        let (page, records) = (forklore::measured(&lesson, "md"), forklore::measured(&lesson, "jsonl"));
        let fail = |e: String| Problem::Failed(format!("{lesson}: {e}"));
        let text = std::fs::read_to_string(&page).map_err(|e| fail(e.to_string()))?;
        let jsonl = std::fs::read_to_string(&records).map_err(|e| fail(e.to_string()))?;
        let records = parse_records(&jsonl).map_err(fail)?;
        let (stamp, _) = forklore::split_measured_page(&text)
            .ok_or_else(|| fail("not a page `cargo xtask measure` made".into()))?;
        let (new, chart) =
            (forklore::measured_page_with_stamp(stamp, &records), forklore::measured_chart(stamp, &records));
        std::fs::write(&page, new).map_err(|e| fail(e.to_string()))?;
        std::fs::write(forklore::measured(&lesson, "svg"), chart).map_err(|e| fail(e.to_string()))?;
        println!("wrote {}", page.strip_prefix(forklore::root()).unwrap_or(&page).display());
    }
    Ok(())
}

fn book() -> Result<(), Problem> {
    // mdBook only logs what goes wrong (a missing include is an ERROR, and the build goes on):
    // print its warnings and errors, and fail on an error.
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let log = std::sync::Arc::clone(&said);
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .without_time()
        .with_ansi(false)
        .with_writer(move || Tee(std::sync::Arc::clone(&log)))
        .init();
    let root = forklore::root().join("book");
    let broken = forklore::book::broken_includes(&root.join("src"));
    if !broken.is_empty() {
        return Err(Problem::Failed(format!(
            "includes that name no file or anchor:\n  {}",
            broken.join("\n  ")
        )));
    }
    let book = forklore::book::load(&root).map_err(|e| Problem::Failed(format!("load the book: {e:#}")))?;
    book.build().map_err(|e| Problem::Failed(format!("build the book: {e:#}")))?;
    let said = String::from_utf8_lossy(&said.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    let errors: Vec<&str> = said.lines().filter(|l| l.contains("ERROR")).collect();
    if !errors.is_empty() {
        return Err(Problem::Failed(format!(
            "mdBook reported {} error(s): {}",
            errors.len(),
            errors.join("; ")
        )));
    }
    println!("built the book: open {}", book.build_dir_for("html").join("index.html").display());
    Ok(())
}

/// mdBook's log, to stderr and kept to look at once the build ends.
struct Tee(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Tee {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
        std::io::stderr().write_all(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn measure(mut lessons: Vec<String>, runs: Option<String>, busy_ok: bool) -> Result<(), Problem> {
    let all = forklore::lessons();
    if lessons.is_empty() {
        lessons = all.clone();
    }
    if let Some(unknown) = lessons.iter().find(|l| !all.contains(l)) {
        return Err(Problem::Usage(format!(
            "no lesson named {unknown:?}; the lessons are {}",
            all.join(", ")
        )));
    }
    let machine = Machine::detect();
    eprintln!("measuring on {machine}");
    for lesson in &lessons {
        let package = format!("lesson-{lesson}");
        eprintln!("== {package}");
        let mut command = Command::new(release_build(&package)?);
        command.args(["--measure", "--json"]);
        if let Some(runs) = &runs {
            command.args(["--runs", runs]);
        }
        let watch = plumbing::busy::Watch::start();
        let output = command
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| Problem::Failed(format!("run {package}: {e}")))?;
        if !output.status.success() {
            return Err(Problem::Failed(format!("{package} --measure --json failed: {}", output.status)));
        }
        let busy = watch.end();
        if busy.is_busy() && !busy_ok {
            return Err(Problem::Failed(format!(
                "{package} was measured on a busy machine ({busy}), so its table was not written: \
                 measure again when the machine is idle, or pass --busy-ok to write it anyway"
            )));
        }
        let jsonl = String::from_utf8_lossy(&output.stdout);
        let records = parse_records(&jsonl).map_err(Problem::Failed)?;
        let page = forklore::measured_page(lesson, &machine, &busy, &records);
        write(&forklore::measured(lesson, "jsonl"), &jsonl)?;
        write(&forklore::measured(lesson, "md"), &page)?;
        let (stamp, _) = forklore::split_measured_page(&page).expect("a page just made");
        write(&forklore::measured(lesson, "svg"), &forklore::measured_chart(stamp, &records))?;
        println!("{page}");
    }
    Ok(())
}

/// Build `package` (a lesson) in release mode: the program's path.
fn release_build(package: &str) -> Result<std::path::PathBuf, Problem> {
    let features = forklore::features(package.trim_start_matches("lesson-"));
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", package, "--features", features])
        .current_dir(forklore::root())
        .status()
        .map_err(|e| Problem::Failed(format!("run cargo build: {e}")))?;
    if !built.success() {
        return Err(Problem::Failed(format!("cargo build --release -p {package} failed")));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| forklore::root().join("target"));
    Ok(target.join("release").join(package))
}

fn write(path: &std::path::Path, text: &str) -> Result<(), Problem> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Problem::Failed(format!("create {}: {e}", dir.display())))?;
    }
    std::fs::write(path, text).map_err(|e| Problem::Failed(format!("write {}: {e}", path.display())))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

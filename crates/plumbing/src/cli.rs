//! Every lesson's command line: the same options, the same `--help`, the same errors.
//!
//! A bad option prints one line on stderr and exits with status 2; `--help` prints the
//! lesson's own description and the options, and exits 0.

use std::ffi::OsString;
use std::process;
use std::time::Duration;

/// What a lesson says about itself in `--help`, and where its Python twin lives.
pub struct Lesson {
    /// The topic, kebab-case: the package is `lesson-<name>`.
    pub name: &'static str,
    /// One paragraph: what the lesson shows.
    pub about: &'static str,
    /// The lesson's Python program, for side-by-side runs and measurements.
    pub python: &'static str,
    /// The roles the lesson plays when it runs itself again as a child (`--child ROLE`,
    /// Python's "spawn" start method); empty if it never does.
    pub roles: &'static [&'static str],
}

/// The options every lesson understands.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// Run the full-size experiment instead of the demonstration.
    pub measure: bool,
    /// With `--measure`: print one JSON object per case instead of the table.
    pub json: bool,
    /// With `--measure`: tiny sizes and one run, to check that every case runs.
    pub quick: bool,
    /// With `--measure`: how many times each case is repeated.
    pub runs: usize,
    /// With `--measure`: leave out the Python cases.
    pub no_python: bool,
    /// `--trace FILE`: write what every process did, as a timeline (Trace Event Format).
    pub trace: Option<std::path::PathBuf>,
    /// Internal: the lesson re-executed itself as a child with this role and arguments
    /// (Python's "spawn" start method). Not for people to type.
    pub child: Option<Vec<String>>,
}

/// Runs per case when `--runs` is not given.
pub const DEFAULT_RUNS: usize = 5;
/// The most runs per case `--runs` takes: more would run for hours, and tell nothing new.
pub const MAX_RUNS: usize = 100;

impl Args {
    /// `full` for a real measurement, `quick` under `--quick` (sizes for a smoke test).
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

impl Lesson {
    /// The package name: `lesson-<name>`.
    pub fn package(&self) -> String {
        format!("lesson-{}", self.name)
    }

    /// Run the lesson: parse the options, call `lesson` with them, and end. `--help` prints
    /// the help and exits 0; a bad option is one line on stderr and exit status 2. If
    /// `lesson` fails, every child it forked and has not reaped is stopped and reaped, and its
    /// error is one line on stderr (naming the child that died, if one did): status 1.
    pub fn run(&self, lesson: impl FnOnce(&Args) -> anyhow::Result<()>) -> process::ExitCode {
        let args = self.args();
        run_program(&self.package(), &args, lesson)
    }

    /// Parse this process's arguments; on `--help` print help and exit 0, on a bad
    /// argument print one line on stderr and exit 2.
    pub fn args(&self) -> Args {
        match self.parse(std::env::args_os().skip(1)) {
            Ok(Parsed::Run(args)) => args,
            Ok(Parsed::Help) => {
                print!("{}", self.help());
                process::exit(0);
            }
            Err(message) => {
                eprintln!("{}: {message} (try --help)", self.package());
                process::exit(2);
            }
        }
    }

    /// The text `--help` prints.
    pub fn help(&self) -> String {
        let package = self.package();
        format!(
            "{package}: {about}\n\n\
             Usage: cargo run -p {package} [-- OPTIONS]\n\
             \x20      cargo run --release -p {package} -- --measure [--json] [--runs N]\n\n\
             Options:\n\
             \x20 --measure    run the full-size experiment: a table of median times (use --release)\n\
             \x20 --json       with --measure: one JSON object per case instead of the table\n\
             \x20 --runs N     with --measure: repeat each case N times (default {DEFAULT_RUNS})\n\
             \x20 --quick      with --measure: tiny sizes and one run, to check that every case runs\n\
             \x20 --no-python  with --measure: leave out the Python cases\n\
             \x20 --trace FILE write what every process did to FILE, a timeline for ui.perfetto.dev\n\
             \x20 -h, --help   print this help\n\n\
             The same lesson in Python: python3 {python}\n",
            about = self.about,
            python = self.python,
        )
    }

    fn parse(&self, argv: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
        use lexopt::prelude::*;
        let mut args = Args { runs: DEFAULT_RUNS, ..Args::default() };
        let mut runs_given = false;
        let mut parser = lexopt::Parser::from_args(argv);
        while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
            match arg {
                Short('h') | Long("help") => return Ok(Parsed::Help),
                Long("measure") => args.measure = true,
                Long("json") => args.json = true,
                Long("quick") => args.quick = true,
                Long("no-python") => args.no_python = true,
                Long("trace") => {
                    let value = parser.value().map_err(|e| e.to_string())?;
                    args.trace = Some(std::path::PathBuf::from(value));
                }
                Long("runs") => {
                    let value = parser.value().map_err(|e| e.to_string())?;
                    let text = value.string().map_err(|e| e.to_string())?;
                    args.runs = match text.parse::<usize>() {
                        Ok(n) if (1..=MAX_RUNS).contains(&n) => n,
                        _ => {
                            return Err(format!(
                                "--runs takes a whole number from 1 to {MAX_RUNS}, not '{text}'"
                            ));
                        }
                    };
                    runs_given = true;
                }
                Long("child") => {
                    let rest = parser.raw_args().map_err(|e| e.to_string())?;
                    let rest: Vec<String> = rest.map(|a| a.to_string_lossy().into_owned()).collect();
                    match rest.first() {
                        _ if self.roles.is_empty() => {
                            return Err(
                                "--child is not an option of this lesson (it never runs itself again)".into(),
                            );
                        }
                        None => return Err(format!("--child needs a role: {}", self.roles.join(", "))),
                        Some(role) if !self.roles.contains(&role.as_str()) => {
                            return Err(format!(
                                "--child: no role '{role}' (roles: {})",
                                self.roles.join(", ")
                            ));
                        }
                        Some(_) => args.child = Some(rest),
                    }
                }
                _ => return Err(arg.unexpected().to_string()),
            }
        }
        let measure_only = args.json || args.quick || args.no_python || runs_given;
        if measure_only && !args.measure {
            return Err("--json, --runs, --quick and --no-python go with --measure".into());
        }
        if args.quick && !runs_given {
            args.runs = 1;
        }
        Ok(Parsed::Run(args))
    }
}

/// The end of every lesson's and exercise's `main`: call `program` with `args` (the kit's
/// fault points listening if a test asks); if it fails, stop and reap every child it left,
/// and print its error as one line, `label: error` (naming the child that died, if one did).
fn run_program(
    label: &str,
    args: &Args,
    program: impl FnOnce(&Args) -> anyhow::Result<()>,
) -> process::ExitCode {
    crate::fault::listen();
    // A panic in one of the program's threads is one line, as a child's is (no backtrace, and
    // none of Rust's default two-line report): "lesson-x: thread worker 1 panicked: ...".
    let who = label.to_string();
    std::panic::set_hook(Box::new(move |panic| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        multiproc::proc::say(&format!("{who}: thread {name} {}", multiproc::proc::panic_line(panic)))
    }));
    let traced = match (&args.trace, &args.child) {
        (Some(path), _) => multiproc::trace::start(path),
        // A child started by exec joins its parent's trace, if there is one.
        (None, Some(role)) => multiproc::trace::join_from_env(&role.join(" ")),
        (None, None) => Ok(()),
    };
    if let Err(error) = traced {
        multiproc::proc::say(&format!("{label}: {error:#}"));
        return process::ExitCode::from(2);
    }
    let outcome = program(args);
    // If it failed, a child may be dying right now: a moment to say how it died.
    let grace = if outcome.is_err() { Duration::from_millis(100) } else { Duration::ZERO };
    let failed = multiproc::proc::last_failure(grace);
    let left = multiproc::proc::unreaped();
    multiproc::proc::stop_all();
    if let Err(error) = multiproc::trace::finish() {
        multiproc::proc::say(&format!("{label}: the trace: {error:#}"));
    }
    let line = match (outcome, left) {
        (Ok(()), 0) => return process::ExitCode::SUCCESS,
        (Ok(()), 1) => format!("{label}: left 1 child unreaped: stopped and reaped it"),
        (Ok(()), n) => format!("{label}: left {n} children unreaped: stopped and reaped them"),
        (Err(error), _) => {
            let mut line = format!("{label}: {error:#}");
            if let Some((pid, child)) = failed
                && !line.contains(&format!("pid {pid}"))
            {
                line.push_str(&format!(" ({child})"));
            }
            line
        }
    };
    multiproc::proc::say(&line);
    process::ExitCode::FAILURE
}

/// An exercise (`exercises/<lesson>/`): a small program on the kit, with a lesson's options
/// and error lines, and no Python twin. Its `main` is `EXERCISE.run(exercise)`.
pub struct Exercise {
    /// The lesson it belongs to.
    pub lesson: &'static str,
    /// Its name, kebab-case: `cargo ex <lesson>/<name>` checks it.
    pub name: &'static str,
    /// What it does, for `--help`.
    pub about: &'static str,
}

impl Exercise {
    /// Run the exercise as [`Lesson::run`] runs a lesson; its error lines start with
    /// `<lesson>/<name>: `.
    pub fn run(&self, exercise: impl FnOnce(&Args) -> anyhow::Result<()>) -> process::ExitCode {
        let label = format!("{}/{}", self.lesson, self.name);
        let as_lesson = Lesson { name: self.lesson, about: self.about, python: "", roles: &[] };
        let args = match as_lesson.parse(std::env::args_os().skip(1)) {
            Ok(Parsed::Run(args)) => args,
            Ok(Parsed::Help) => {
                print!(
                    "{label}: {}\n\nUsage: cargo ex {label}    (checks it; see `cargo ex help`)\n\n\
                     Options: --measure [--json] [--runs N] [--quick], -h/--help\n",
                    self.about
                );
                process::exit(0);
            }
            Err(message) => {
                eprintln!("{label}: {message} (try --help)");
                process::exit(2);
            }
        };
        run_program(&label, &args, exercise)
    }
}

enum Parsed {
    Run(Args),
    Help,
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Lesson = Lesson { name: "demo", about: "a demo", python: "demo.py", roles: &["greet"] };

    fn parse(line: &str) -> Result<Args, String> {
        match L.parse(line.split_whitespace().map(OsString::from))? {
            Parsed::Run(args) => Ok(args),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn options() {
        let a = parse("--measure --json --runs 3").unwrap();
        assert!(a.measure && a.json && a.runs == 3 && !a.quick);
        assert_eq!(parse("--measure --quick").unwrap().runs, 1);
        assert_eq!(parse("").unwrap().runs, DEFAULT_RUNS);
        let c = parse("--child greet alice").unwrap();
        assert_eq!(c.child.unwrap(), ["greet", "alice"]);
    }

    #[test]
    fn errors_are_one_line() {
        let huge = "--measure --runs 18446744073709551615";
        for bad in
            ["--bogus", "--runs", "--runs 0", "--runs x", "--json", "stray", "--child", "--child bogus", huge]
        {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
        assert_eq!(parse("-h").unwrap_err(), "help");
    }
}

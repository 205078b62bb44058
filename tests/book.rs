//! The book: every lesson has a chapter in SUMMARY.md and a row in README.md; every `{{#include}}` names a file and
//! anchor that exist, and every anchor in the sources is included somewhere; code and output
//! are only ever included, never pasted; "Things to try" names only code that exists; the
//! book builds, and its rendered HTML really holds every included line (mdBook logs an error
//! for a missing file and renders an empty block for a missing anchor, yet exits 0); and each
//! measured table is exactly what `cargo xtask measure` makes of the records beside it.

use std::fs;
use std::path::{Path, PathBuf};

use forklore::book::{Include, included_lines, includes, includes_within};
use libtest_mimic::{Arguments, Failed, Trial};
use regex::Regex;

fn main() {
    let args = Arguments::from_args();
    let mut trials = vec![
        Trial::test("summary-lists-every-lesson", summary_lists_every_lesson),
        Trial::test("summary-titles-are-chapter-headings", summary_titles_are_chapter_headings),
        Trial::test("readme-lists-every-lesson", readme_lists_every_lesson),
        Trial::test("includes-resolve", includes_resolve),
        Trial::test("code-is-included-not-pasted", code_is_included_not_pasted),
        Trial::test("every-anchor-is-included", every_anchor_is_included),
        Trial::test("things-to-try-name-real-code", things_to_try_name_real_code),
        Trial::test("rendered-html-holds-includes", rendered_html_holds_includes),
        Trial::test("listings-are-flush-and-labelled", listings_are_flush_and_labelled),
        Trial::test("every-diagram-is-shown", every_diagram_is_shown),
        Trial::test("timelines-are-current-and-shown", timelines_are_current_and_shown),
        Trial::test("chapters-open-with-their-rust", chapters_open_with_their_rust),
    ];
    for lesson in forklore::lessons() {
        trials.push(Trial::test(format!("measured-table::{lesson}"), move || measured_table(&lesson)));
    }
    libtest_mimic::run(&args, trials).exit();
}

fn book_src() -> PathBuf {
    forklore::root().join("book/src")
}

/// Every Markdown page of the book, with its text.
fn pages() -> Vec<(PathBuf, String)> {
    let mut pages = Vec::new();
    let mut dirs = vec![book_src()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                let text = fs::read_to_string(&path).unwrap();
                pages.push((path, text));
            }
        }
    }
    pages.sort();
    pages
}

/// Fails naming every lesson for which `listed` is false.
fn every_lesson(listed: impl Fn(&str) -> bool, what: &str) -> Result<(), Failed> {
    let missing: Vec<String> = forklore::lessons().into_iter().filter(|lesson| !listed(lesson)).collect();
    if missing.is_empty() { Ok(()) } else { Err(format!("{what}: {missing:?}").into()) }
}

fn summary_lists_every_lesson() -> Result<(), Failed> {
    let summary = fs::read_to_string(book_src().join("SUMMARY.md"))?;
    every_lesson(
        |lesson| {
            summary.contains(&format!("({lesson}.md)")) && book_src().join(format!("{lesson}.md")).is_file()
        },
        "lessons without a chapter book/src/<name>.md listed in SUMMARY.md",
    )
}

fn summary_titles_are_chapter_headings() -> Result<(), Failed> {
    // The sidebar says what the page says: each entry's title is its chapter's first heading.
    let summary = fs::read_to_string(book_src().join("SUMMARY.md"))?;
    let entry = Regex::new(r"\[([^\]]+)\]\(([^)]+\.md)\)").unwrap();
    let mut problems = Vec::new();
    for c in entry.captures_iter(&summary) {
        let (title, file) = (&c[1], &c[2]);
        let chapter = fs::read_to_string(book_src().join(file))?;
        let heading = chapter.lines().next().unwrap_or("");
        if heading != format!("# {title}") {
            problems.push(format!("SUMMARY.md says {title:?}, {file} begins {heading:?}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

fn readme_lists_every_lesson() -> Result<(), Failed> {
    let readme = fs::read_to_string(forklore::root().join("README.md"))?;
    every_lesson(
        |lesson| {
            let features = forklore::features_option(lesson);
            readme.contains(&format!("`cargo run -p lesson-{lesson}{features}`"))
        },
        "README.md's lesson table lacks `cargo run -p lesson-<name>` for",
    )
}

fn includes_resolve() -> Result<(), Failed> {
    let mut problems = Vec::new();
    for (page, text) in pages() {
        for inc in includes(&page, &text) {
            match included_lines(&inc) {
                Ok(lines) if lines.iter().all(|l| l.trim().is_empty()) => {
                    problems.push(format!("{}: includes nothing from {}", page.display(), inc.file.display()))
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e}", page.display())),
            }
            // A snapshot is included from its first line after insta's header, whatever
            // the header's length: the reader sees the output and nothing else.
            if inc.file.extension().is_some_and(|e| e == "snap") {
                let text = fs::read_to_string(&inc.file).unwrap_or_default();
                let header = text.lines().skip(1).position(|l| l == "---").map(|i| i + 2);
                let wanted = header.map(|h| format!("{}:", h + 1));
                if wanted.is_none() || inc.spec != wanted {
                    problems.push(format!(
                        "{}: include {} from line {} (after insta's header), not {:?}",
                        page.display(),
                        inc.file.display(),
                        wanted.unwrap_or_default(),
                        inc.spec
                    ));
                }
            }
        }
    }
    // Every lesson's chapter includes its code, its Python twin, its verified output and
    // its measured table.
    for lesson in forklore::lessons() {
        let chapter = book_src().join(format!("{lesson}.md"));
        let text = fs::read_to_string(&chapter).unwrap_or_default();
        for needed in [
            format!("lessons/{lesson}/src/main.rs:"),
            format!("lessons/{lesson}/python/"),
            format!("lessons/{lesson}/output.snap"),
            format!("lessons/{lesson}/python/output.snap"),
            format!("measured/{lesson}.md"),
        ] {
            if !text.contains(&needed) {
                problems.push(format!("{}: includes nothing from {needed}", chapter.display()));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

/// The sources whose anchors the book includes: lessons (Rust and Python) and the crates.
fn anchored_sources() -> Vec<PathBuf> {
    let root = forklore::root();
    let mut files = Vec::new();
    for lesson in forklore::lessons() {
        files.push(root.join("lessons").join(&lesson).join("src/main.rs"));
        files.extend(files_in(&root.join("lessons").join(&lesson).join("python"), "py"));
    }
    for entry in fs::read_dir(root.join("crates")).unwrap().filter_map(|e| e.ok()) {
        files.extend(files_in(&entry.path().join("src"), "rs"));
        files.extend(files_in(&entry.path().join("python"), "py"));
    }
    // Every exercise's starter and solution: the chapter shows one, its solutions page the other.
    for lesson in fs::read_dir(root.join("exercises")).into_iter().flatten().filter_map(|e| e.ok()) {
        for exercise in fs::read_dir(lesson.path()).into_iter().flatten().filter_map(|e| e.ok()) {
            files.extend(files_in(&exercise.path(), "rs"));
        }
    }
    files
}

fn files_in(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok());
    entries.map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == extension)).collect()
}

fn every_anchor_is_included() -> Result<(), Failed> {
    // An anchor no chapter includes marks code as teaching material that nobody reads.
    let mut included = std::collections::BTreeSet::new();
    for (page, text) in pages() {
        for inc in includes(&page, &text) {
            if let (Ok(file), Some(spec)) = (inc.file.canonicalize(), inc.spec) {
                included.insert((file, spec));
            }
        }
    }
    let anchor = Regex::new(r"ANCHOR:\s*(\w+)").unwrap();
    let mut unused = Vec::new();
    for file in anchored_sources() {
        let text = fs::read_to_string(&file)?;
        let canonical = file.canonicalize()?;
        for name in anchor.captures_iter(&text).map(|c| c[1].to_string()) {
            if !included.contains(&(canonical.clone(), name.clone())) {
                unused.push(format!("{}: {name}", file.display()));
            }
        }
    }
    if unused.is_empty() {
        Ok(())
    } else {
        Err(format!("anchors no chapter includes:\n{}", unused.join("\n")).into())
    }
}

/// Names of the system's own API that "Things to try" mentions: not the repo's code.
const SYSTEM_NAMES: [&str; 2] = ["fcntl", "F_SETPIPE_SZ"];

fn things_to_try_name_real_code() -> Result<(), Failed> {
    // A "Things to try" refers to existing code by name (and describes edits in words), so
    // that it cannot drift from the code unnoticed: every name in backticks must exist, as a
    // word, in the lesson's sources or the crates. Code the reader is asked to type is not a
    // name (it has spaces, dots, operators), and is not checked.
    let word = Regex::new(r"[A-Za-z_][A-Za-z0-9_]*").unwrap();
    let name = Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*!?(\(\))?$").unwrap();
    let span = Regex::new(r"`([^`\n]+)`").unwrap();
    let words_of = |files: &[PathBuf]| -> std::collections::BTreeSet<String> {
        let texts = files.iter().filter_map(|f| fs::read_to_string(f).ok());
        texts.flat_map(|t| word.find_iter(&t).map(|m| m.as_str().to_string()).collect::<Vec<_>>()).collect()
    };
    let mut problems = Vec::new();
    for lesson in forklore::lessons() {
        let chapter = fs::read_to_string(book_src().join(format!("{lesson}.md")))?;
        let Some(start) = chapter.find("## Things to try") else {
            problems.push(format!("{lesson}.md has no \"## Things to try\""));
            continue;
        };
        let section = &chapter[start..];
        let end = section.find("<details>").unwrap_or(section.len());
        let mut files: Vec<PathBuf> = anchored_sources()
            .into_iter()
            .filter(|f| !f.starts_with(forklore::root().join("lessons")))
            .collect();
        files.push(forklore::root().join("lessons").join(&lesson).join("src/main.rs"));
        files.extend(files_in(&forklore::root().join("lessons").join(&lesson).join("python"), "py"));
        let known = words_of(&files);
        for quoted in span.captures_iter(&section[..end]).map(|c| c[1].to_string()) {
            if !name.is_match(&quoted) {
                continue;
            }
            let missing: Vec<&str> = quoted
                .trim_end_matches("()")
                .trim_end_matches('!')
                .split("::")
                .filter(|s| !known.contains(*s) && !SYSTEM_NAMES.contains(s))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{lesson}.md, Things to try: `{quoted}` names {missing:?}, found in no source"
                ));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

fn code_is_included_not_pasted() -> Result<(), Failed> {
    // Code and output blocks hold only includes; console blocks hold the commands to type.
    let fence = Regex::new(r"(?ms)^```(\w*)[^\n]*\n(.*?)^```").unwrap();
    let mut problems = Vec::new();
    for (page, text) in pages() {
        for block in fence.captures_iter(&text) {
            let (lang, body) = (&block[1], &block[2]);
            let pasted = match lang {
                "console" | "sh" | "bash" => {
                    body.lines().any(|l| !l.trim().is_empty() && !l.starts_with("$ "))
                }
                _ => body.lines().any(|l| !l.trim().is_empty() && !l.trim().starts_with("{{#include")),
            };
            if pasted {
                problems.push(format!("{}: a ```{lang} block holds pasted text:\n{body}", page.display()));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

/// How a line of code appears in mdBook's HTML: `&`, `<` and `>` escaped (quotes are not).
fn html_escape(line: &str) -> String {
    line.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Text with its quotes left out: mdBook's smart punctuation curls the quotes of rendered
/// Markdown (`'d'` becomes `‘d’`), so pages and expected text are compared without them.
fn without_quotes(text: &str) -> String {
    text.replace("&quot;", "").replace("&#39;", "").replace(['\'', '"', '‘', '’', '“', '”'], "")
}

/// What must appear in the rendered page for one included line. Code is shown as it is;
/// an included Markdown page (a measured table) is rendered, so its table cells are looked
/// for one by one, and its other lines by their plain words.
fn expected_pieces(inc: &Include, line: &str) -> Vec<String> {
    if inc.file.extension().is_none_or(|e| e != "md") {
        return vec![html_escape(line)];
    }
    if line.starts_with('|') {
        if line.starts_with("|---") {
            return vec![];
        }
        return line.trim_matches('|').split('|').map(|cell| html_escape(cell.trim())).collect();
    }
    if line.starts_with("{{#") {
        return vec![]; // an include of its own: checked as one
    }
    if let Some(image) = line.strip_prefix("![") {
        // An image: where it comes from.
        let src = image.split_once("](").map(|(_, rest)| rest.trim_end_matches(')')).unwrap_or_default();
        return vec![html_escape(src)];
    }
    // Prose: its first words, before any Markdown markup (a heading's `#`s are markup too).
    let line = line.trim_start_matches('#').trim_start();
    let plain: String = line.chars().take_while(|c| !"`*_[<".contains(*c)).collect();
    vec![html_escape(plain.trim())].into_iter().filter(|p| !p.is_empty()).collect()
}

/// Every Rust or Python listing of the rendered book starts at the left edge (no indent
/// shared by all its lines), and every listing is labelled with its file, as many listings
/// as the sources include.
fn listings_are_flush_and_labelled() -> Result<(), Failed> {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("book-listings");
    let _ = fs::remove_dir_all(&out);
    let mut book = forklore::book::load(&forklore::root().join("book")).map_err(|e| format!("{e:#}"))?;
    book.config.build.build_dir = out.clone();
    book.build().map_err(|e| format!("the book does not build: {e:#}"))?;
    let listing = Regex::new(r#"(?s)<code class="language-(?:rust|python)[^"]*">(.*?)</code>"#).unwrap();
    let tag = Regex::new(r"<[^>]+>").unwrap();
    let (mut problems, mut listings, mut labels) = (Vec::new(), 0, 0);
    for entry in fs::read_dir(&out)?.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "html") || path.ends_with("print.html") {
            continue;
        }
        let html = fs::read_to_string(&path)?;
        labels += html.matches("<p class=\"listing-file\">Filename:").count();
        for found in listing.captures_iter(&html) {
            listings += 1;
            let text = tag.replace_all(&found[1], "");
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if !lines.is_empty() && lines.iter().all(|l| l.starts_with(' ')) {
                problems.push(format!("{}: a listing indented as a whole: {}", path.display(), lines[0]));
            }
        }
    }
    if labels * 10 < listings * 9 {
        problems.push(format!("{labels} file labels for {listings} listings: most listings name no file"));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

/// Every diagram in book/src/diagrams is an SVG with a size and a title (what it shows, in
/// words, for a reader who cannot see it), and a chapter shows it. (tests/browser.rs sees
/// each one load.)
fn every_diagram_is_shown() -> Result<(), Failed> {
    let chapters: String = pages().into_iter().map(|(_, text)| text).collect();
    let mut problems = Vec::new();
    let mut count = 0;
    for entry in fs::read_dir(book_src().join("diagrams"))?.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = fs::read_to_string(entry.path())?;
        count += 1;
        let has = |piece: &str| text.contains(piece);
        if !(name.ends_with(".svg") && has("<svg") && has(" width=\"") && has(" height=\"") && has("<title"))
        {
            problems.push(format!("diagrams/{name}: not an SVG with a width, a height and a <title>"));
        }
        if !chapters.contains(&format!("](diagrams/{name})")) {
            problems.push(format!("diagrams/{name}: no chapter shows it"));
        }
    }
    if count == 0 {
        problems.push("book/src/diagrams holds no diagram".into());
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

/// Each timeline's picture is what `cargo xtask timelines` draws from the trace it kept
/// beside it (stamped with machine and date), its lesson's chapter shows it, and the folder
/// holds no picture that is not one of them.
fn timelines_are_current_and_shown() -> Result<(), Failed> {
    let mut problems = Vec::new();
    for scenario in &forklore::TIMELINES {
        let name = scenario.name;
        let (json, svg) = (forklore::timeline_file(name, "json"), forklore::timeline_file(name, "svg"));
        let Ok(text) = fs::read_to_string(&json) else {
            problems.push(format!("{}: missing: run `cargo xtask timelines`", json.display()));
            continue;
        };
        let timeline: forklore::timeline::Timeline = serde_json::from_str(&text)?;
        if !(timeline.stamp.starts_with("Traced on ") && timeline.stamp.contains(" on 20")) {
            problems.push(format!("{}: the stamp does not say machine and date", json.display()));
        }
        let drawn = forklore::timeline::svg(scenario.title, &timeline);
        if fs::read_to_string(&svg).ok() != Some(drawn) {
            problems
                .push(format!("{}: not what `cargo xtask timelines` draws from its trace", svg.display()));
        }
        let chapter = fs::read_to_string(book_src().join(format!("{}.md", scenario.lesson)))?;
        if !chapter.contains(&format!("](timelines/{name}.svg)")) {
            problems.push(format!("timelines/{name}.svg: the {} chapter does not show it", scenario.lesson));
        }
    }
    for entry in fs::read_dir(book_src().join("timelines"))? {
        let path = entry?.path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if !forklore::TIMELINES.iter().any(|s| s.name == stem) {
            problems.push(format!("{}: no timeline of `cargo xtask timelines`: remove it", path.display()));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

/// Every lesson's chapter opens, right under its title, with the box that names the Rust it
/// uses for the first time, each item linking to a section of the primer (the browser test
/// checks that each `#fragment` is a heading there).
fn chapters_open_with_their_rust() -> Result<(), Failed> {
    let link = Regex::new(r"\]\((rust-from-python\.md)?#?([^)]*)\)").unwrap();
    let mut problems = Vec::new();
    for lesson in forklore::lessons() {
        let text = fs::read_to_string(book_src().join(format!("{lesson}.md")))?;
        let first = text.lines().skip(1).find(|l| !l.trim().is_empty()).unwrap_or_default();
        if !first.starts_with("> **Rust in this chapter**") {
            problems.push(format!("{lesson}.md does not open with its \"Rust in this chapter\" box"));
            continue;
        }
        let links: Vec<_> = link.captures_iter(first).collect();
        let into_primer = links.iter().filter(|c| c.get(1).is_some() && !c[2].is_empty()).count();
        if into_primer == 0 || links.iter().any(|c| c.get(1).is_none()) {
            problems.push(format!("{lesson}.md: its box must link only into rust-from-python.md: {first}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

fn rendered_html_holds_includes() -> Result<(), Failed> {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("book");
    let _ = fs::remove_dir_all(&out);
    let mut book = forklore::book::load(&forklore::root().join("book")).map_err(|e| format!("{e:#}"))?;
    book.config.build.build_dir = out.clone();
    book.build().map_err(|e| format!("the book does not build: {e:#}"))?;

    let mut problems = Vec::new();
    for (page, text) in pages() {
        let relative = page.strip_prefix(book_src()).unwrap().with_extension("html");
        if relative.starts_with("measured")
            || relative.starts_with("exercises")
            || relative == Path::new("SUMMARY.html")
        {
            continue; // included into chapters, or the table of contents: not pages of their own
        }
        let Ok(html) = fs::read_to_string(out.join(&relative)).map(|h| without_quotes(&h)) else {
            problems.push(format!("{} was not rendered (is it in SUMMARY.md?)", relative.display()));
            continue;
        };
        for inc in includes_within(&page, &text) {
            let Ok(lines) = included_lines(&inc) else { continue }; // reported by includes-resolve
            // Every included line appears in the page, in order.
            let mut at = 0;
            'lines: for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
                for piece in expected_pieces(&inc, line).iter().map(|p| without_quotes(p)) {
                    match html[at..].find(piece.as_str()) {
                        Some(i) => at += i + piece.len(),
                        None => {
                            problems.push(format!(
                                "{}: the rendered page lacks {piece:?}, from this line of {}: {line:?}",
                                relative.display(),
                                inc.file.display()
                            ));
                            break 'lines;
                        }
                    }
                }
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

fn measured_table(lesson: &str) -> Result<(), Failed> {
    let page_path = forklore::measured(lesson, "md");
    let page = fs::read_to_string(&page_path)
        .map_err(|e| format!("{}: {e}; run `cargo xtask measure {lesson}`", page_path.display()))?;
    let records = fs::read_to_string(forklore::measured(lesson, "jsonl"))?;
    let records = plumbing::measure::parse_records(&records)?;
    let (stamp, table) = forklore::split_measured_page(&page)
        .ok_or_else(|| format!("{}: not a page made by `cargo xtask measure`", page_path.display()))?;
    if !(stamp.starts_with("Measured on ") && stamp.contains("CPU") && stamp.contains(" on 20")) {
        return Err(
            format!("{}: the stamp does not say machine and date: {stamp}", page_path.display()).into()
        );
    }
    let chart = forklore::measured(lesson, "svg");
    if fs::read_to_string(&chart).ok() != Some(forklore::measured_chart(stamp, &records)) {
        return Err(format!(
            "{}: missing, or not what `cargo xtask measure` draws from {lesson}.jsonl: run `cargo xtask tables`",
            chart.display()
        )
        .into());
    }
    if !page.contains(&format!("(measured/{lesson}.svg)")) {
        return Err(format!("{}: does not show its chart", page_path.display()).into());
    }
    if table != plumbing::measure::markdown_table(&records) {
        return Err(format!(
            "{}: the table is not what `cargo xtask measure` makes of {lesson}.jsonl (edited by hand?)",
            page_path.display()
        )
        .into());
    }
    Ok(())
}

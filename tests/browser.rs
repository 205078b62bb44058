//! The book as a reader sees it, in a real headless Chromium (Debian's `chromium`, driven
//! through its DevTools protocol by the headless_chrome crate). The book is built into the
//! test's own folder, and each page is opened from there, at 1280 and at 400 px wide:
//!
//! - `page::<name>`: it loads with no console error or uncaught exception; no raw `{{#` is
//!   left in its text; nothing reaches past the window's right edge (a wide table or
//!   listing scrolls inside its own box), and at desktop width no table or listing is wider
//!   than the text, so nothing is hidden; every image has a size; every local link names a page that
//!   exists, and its `#fragment` an element of that page. A screenshot at each width goes to
//!   `target/tmp/browser/screenshots/`, for a person to look at.
//! - `search::<word>`: the search box, typed into as a reader does, lists results for
//!   "chunksize" and "futex".
//! - `print`: print.html, laid out for paper, holds every chapter, and no table is wider
//!   than the text.
//!
//! A machine without Chromium gets one line saying how to install it, and these tests pass
//! as skipped; in CI (`CI` set) they fail instead: `.ci/run` installs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions, Tab};
use libtest_mimic::{Arguments, Failed, Trial};

/// The two widths every page is looked at: a desktop window and a phone.
const WIDTHS: [u32; 2] = [1280, 400];
/// An A4 page's text, as a browser prints it (210 mm less margins, at 96 px an inch).
const PAPER: u32 = 700;

fn main() {
    let args = Arguments::from_args();
    let Some(chromium) = chromium() else {
        let line = "the browser tests need Chromium: install it with `apt-get install chromium` \
                    (Debian), or name one in FORKLORE_CHROMIUM";
        let ci = std::env::var_os("CI").is_some();
        println!("{line}{}", if ci { " (CI: failing)" } else { ": skipped" });
        let trial = Trial::test("chromium-is-there", move || if ci { Err(line.into()) } else { Ok(()) });
        libtest_mimic::run(&args, vec![trial]).exit();
    };
    let book = build_book();
    let chromium = Browsers::new(chromium);
    let mut trials = Vec::new();
    for page in pages(&book) {
        let (book, chromium) = (book.clone(), chromium.clone());
        let name = page.trim_end_matches(".html").to_string();
        trials.push(Trial::test(format!("page::{name}"), move || check_page(&chromium, &book, &page)));
    }
    for word in ["chunksize", "futex"] {
        let (book, chromium) = (book.clone(), chromium.clone());
        trials.push(Trial::test(format!("search::{word}"), move || search(&chromium, &book, word)));
    }
    {
        let (book, chromium) = (book.clone(), chromium.clone());
        trials.push(Trial::test("print", move || print(&chromium, &book)));
    }
    let conclusion = libtest_mimic::run(&args, trials);
    chromium.close(); // before exit, which would leave Chromium running
    // What was looked at, for a person (and a closing note) to quote.
    for (what, n) in FIGURES.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("browser figures: {what}: {n}");
    }
    conclusion.exit();
}

/// How many of each thing the checks looked at: pages, links, images, search results.
static FIGURES: Mutex<std::collections::BTreeMap<String, usize>> =
    Mutex::new(std::collections::BTreeMap::new());

fn figure(what: &str, n: usize) {
    *FIGURES.lock().unwrap_or_else(|e| e.into_inner()).entry(what.to_string()).or_default() += n;
}

/// Chromium: FORKLORE_CHROMIUM, or the first of the usual names on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FORKLORE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser")
}

/// The book, built into the test's own folder (as `cargo xtask book` builds it).
fn build_book() -> PathBuf {
    let out = scratch().join("book");
    let _ = std::fs::remove_dir_all(&out);
    let mut book = forklore::book::load(&forklore::root().join("book")).expect("load the book");
    book.config.build.build_dir = out.clone();
    book.build().expect("build the book");
    out
}

/// The pages a reader reaches: every chapter SUMMARY.md links, and print.html.
fn pages(book: &Path) -> Vec<String> {
    let summary = std::fs::read_to_string(forklore::root().join("book/src/SUMMARY.md")).expect("SUMMARY.md");
    let link = regex::Regex::new(r"\]\(([^)]+)\.md\)").expect("a valid pattern");
    let mut pages: Vec<String> = link.captures_iter(&summary).map(|c| format!("{}.html", &c[1])).collect();
    pages.push("print.html".into());
    pages.retain(|page| book.join(page).is_file() || page == "print.html");
    pages
}

/// One browser per width, started once and shared by the checks (a tab each), and closed
/// before the test exits: dropping a `Browser` ends its Chromium, and with it every process
/// Chromium started. Each keeps its profile in the test's own folder.
#[derive(Clone)]
struct Browsers(Arc<Mutex<Vec<(u32, Browser)>>>, PathBuf);

impl Browsers {
    fn new(chromium: PathBuf) -> Browsers {
        Browsers(Arc::new(Mutex::new(Vec::new())), chromium)
    }

    fn at(&self, width: u32) -> Result<Browser, Failed> {
        let mut browsers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, browser)) = browsers.iter().find(|(w, _)| *w == width) {
            return Ok(browser.clone());
        }
        let profile = scratch().join(format!("profile-{width}"));
        let _ = std::fs::remove_dir_all(&profile);
        // Chromium makes a folder in TMPDIR for its singleton socket and leaves it when it is
        // ended: give it one in the test's own folder, or every run leaves three in /tmp.
        let tmp = scratch().join(format!("tmp-{width}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        let envs = std::collections::HashMap::from([("TMPDIR".to_string(), tmp.display().to_string())]);
        let quiet =
            [std::ffi::OsStr::new("--disable-crash-reporter"), std::ffi::OsStr::new("--disable-breakpad")];
        let options = LaunchOptions::default_builder()
            .path(Some(self.1.clone()))
            .headless(true)
            .sandbox(false) // as root in a container, Chromium's sandbox cannot start
            .window_size(Some((width, 900)))
            .user_data_dir(Some(profile))
            .process_envs(Some(envs))
            .args(quiet.to_vec())
            .idle_browser_timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| format!("launch options: {e:#}"))?;
        let browser = Browser::new(options).map_err(|e| format!("start Chromium: {e:#}"))?;
        browsers.push((width, browser.clone()));
        Ok(browser)
    }

    fn close(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// What a tab's console said of errors, and its uncaught exceptions, as they come.
type Said = Arc<Mutex<Vec<String>>>;

/// A tab that keeps what the console says of errors, and uncaught exceptions.
fn tab(browsers: &Browsers, width: u32) -> Result<(Arc<Tab>, Said), Failed> {
    let tab = browsers.at(width)?.new_tab().map_err(|e| format!("a new tab: {e:#}"))?;
    tab.set_default_timeout(Duration::from_secs(20));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&errors);
    tab.enable_log().and_then(|t| t.enable_runtime()).map_err(|e| format!("{e:#}"))?;
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let said = match event {
            Event::LogEntryAdded(entry) if format!("{:?}", entry.params.entry.level) == "Error" => {
                Some(format!("{}: {:?}", entry.params.entry.text, entry.params.entry.url))
            }
            Event::RuntimeExceptionThrown(thrown) => Some(thrown.params.exception_details.text.clone()),
            _ => None,
        };
        if let Some(said) = said {
            seen.lock().unwrap_or_else(|e| e.into_inner()).push(said);
        }
    }))
    .map_err(|e| format!("{e:#}"))?;
    Ok((tab, errors))
}

/// Evaluate `expression` (which gives a string) in the page.
fn eval(tab: &Tab, expression: &str) -> Result<String, Failed> {
    let value = tab.evaluate(expression, false).map_err(|e| format!("evaluate: {e:#}"))?.value;
    Ok(value.and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
}

fn url(book: &Path, page: &str) -> String {
    format!("file://{}", book.join(page).display())
}

/// What the checks read from a page, as one JSON text.
const LOOK: &str = r#"JSON.stringify({
    overflow: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth,
    outside: [...document.querySelectorAll('main *')].filter(e => {
        const r = e.getBoundingClientRect();
        if (r.width === 0 || r.right <= window.innerWidth + 1) return false;
        // A scroll box of the content's own (a table's wrapper, a listing), not the page's
        // containers: mdBook's content box scrolls, which would excuse everything.
        for (let a = e.parentElement; a && a.tagName !== 'MAIN'; a = a.parentElement) {
            const o = getComputedStyle(a).overflowX;
            if (o === 'auto' || o === 'scroll') return false;
        }
        return true;
    }).slice(0, 5).map(e => e.tagName + ' ' + (e.innerText || '').slice(0, 40)),
    wide_tables: [...document.querySelectorAll('main table')]
        .filter(t => t.scrollWidth > (t.closest('.table-wrapper') || t.parentElement).clientWidth + 1)
        .map(t => (t.querySelector('td') || t).innerText.slice(0, 40)),
    wide_code: [...document.querySelectorAll('main pre > code')]
        .filter(c => c.scrollWidth > c.clientWidth + 1)
        .map(c => c.innerText.split('\n').reduce((a, b) => b.length > a.length ? b : a, '').trim().slice(0, 60)),
    raw: document.body.innerText.includes('{{#'),
    images: [...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src),
    counts: {
        images: document.images.length,
        tables: document.querySelectorAll('main table').length,
        listings: document.querySelectorAll('main pre > code').length,
    },
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))
})"#;

fn check_page(chromium: &Browsers, book: &Path, page: &str) -> Result<(), Failed> {
    let mut problems = Vec::new();
    for width in WIDTHS {
        let (tab, errors) = tab(chromium, width)?;
        tab.navigate_to(&url(book, page))
            .and_then(|t| t.wait_until_navigated())
            .map_err(|e| format!("{page} at {width} px: {e:#}"))?;
        let look: serde_json::Value = serde_json::from_str(&eval(&tab, LOOK)?)?;
        figure(&format!("pages looked at, at {width} px (overflow checked)"), 1);
        if width == WIDTHS[0] {
            for (what, n) in look["counts"].as_object().into_iter().flatten() {
                figure(&format!("{what} on the pages, each checked"), n.as_u64().unwrap_or(0) as usize);
            }
        }
        if look["overflow"].as_i64().unwrap_or(0) > 0 {
            problems.push(format!("at {width} px the page scrolls sideways by {} px", look["overflow"]));
        }
        for outside in look["outside"].as_array().into_iter().flatten() {
            problems.push(format!("at {width} px, past the window's right edge (clipped): {outside}"));
        }
        if width == WIDTHS[0] {
            // At desktop width, nothing a reader must scroll sideways to read.
            for table in look["wide_tables"].as_array().into_iter().flatten() {
                problems
                    .push(format!("at {width} px a table is wider than the text: the one starting {table}"));
            }
            for code in look["wide_code"].as_array().into_iter().flatten() {
                problems.push(format!("at {width} px a listing is wider than the text: {code}"));
            }
        }
        if look["raw"] == true {
            problems.push(format!("at {width} px its text holds a raw {{{{#"));
        }
        for image in look["images"].as_array().into_iter().flatten() {
            problems.push(format!("an image did not load: {image}"));
        }
        if width == WIDTHS[0] {
            for link in look["links"].as_array().into_iter().flatten().filter_map(|l| l.as_str()) {
                if !link.contains("://") {
                    figure("local links (and #fragments) resolved", 1);
                }
                if let Some(problem) = broken_link(book, page, link) {
                    problems.push(problem);
                }
            }
        }
        // The top of the page, and its first table (where there is one), as a reader sees them.
        let shots = scratch().join("screenshots");
        std::fs::create_dir_all(&shots)?;
        let name = page.trim_end_matches(".html");
        for (shot, scroll) in [("", "window.scrollTo(0, 0)"), ("-table", "document.querySelector('table')")] {
            let there = eval(
                &tab,
                &format!(
                    "(() => {{ const t = {scroll}; if (t && t.scrollIntoView) t.scrollIntoView(); return t === null ? 'no' : 'yes'; }})()"
                ),
            )?;
            if there == "no" {
                continue;
            }
            let png = tab
                .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
                .map_err(|e| format!("screenshot: {e:#}"))?;
            std::fs::write(shots.join(format!("{name}-{width}{shot}.png")), png)?;
        }
        for error in errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            problems.push(format!("at {width} px the console said: {error}"));
        }
        let _ = tab.close(false);
    }
    if problems.is_empty() { Ok(()) } else { Err(format!("{page}:\n  {}", problems.join("\n  ")).into()) }
}

/// A local link that names no page, or a fragment that names no element of it.
fn broken_link(book: &Path, page: &str, link: &str) -> Option<String> {
    if link.contains("://") || link.starts_with("mailto:") || link.starts_with("javascript:") {
        return None; // not ours to check here
    }
    let (file, fragment) = link.split_once('#').unwrap_or((link, ""));
    let target = if file.is_empty() {
        book.join(page)
    } else {
        book.join(page).parent().expect("a page in a folder").join(file)
    };
    let target = if target.is_dir() { target.join("index.html") } else { target };
    let Ok(html) = std::fs::read_to_string(&target) else {
        return (!target.exists()).then(|| format!("a link to {link}: no such file"));
    };
    if fragment.is_empty() || target.extension().is_none_or(|e| e != "html") {
        return None;
    }
    let ids: BTreeSet<&str> = html.split("id=\"").skip(1).filter_map(|rest| rest.split('"').next()).collect();
    (!ids.contains(fragment)).then(|| format!("a link to {link}: no element with id {fragment:?} there"))
}

/// Type `word` into the search box of the introduction, as a reader does: results listed.
fn search(chromium: &Browsers, book: &Path, word: &str) -> Result<(), Failed> {
    let (tab, _) = tab(chromium, WIDTHS[0])?;
    tab.navigate_to(&url(book, "index.html"))
        .and_then(|t| t.wait_until_navigated())
        .map_err(|e| format!("{e:#}"))?;
    tab.press_key("s").map_err(|e| format!("press s to search: {e:#}"))?;
    let bar =
        tab.wait_for_element("#mdbook-searchbar, #searchbar").map_err(|e| format!("no search box: {e:#}"))?;
    bar.click().map_err(|e| format!("{e:#}"))?;
    tab.type_str(word).map_err(|e| format!("{e:#}"))?;
    let results = tab
        .wait_for_elements("#mdbook-searchresults li, #searchresults li")
        .map_err(|e| format!("searching for {word:?} listed nothing: {e:#}"))?;
    let _ = tab.close(false);
    figure(&format!("search results for {word:?}"), results.len());
    if results.is_empty() { Err(format!("searching for {word:?} listed nothing").into()) } else { Ok(()) }
}

/// print.html laid out for paper: every chapter there, no table wider than the text.
fn print(chromium: &Browsers, book: &Path) -> Result<(), Failed> {
    use headless_chrome::protocol::cdp::Emulation;
    let (tab, _) = tab(chromium, PAPER)?;
    tab.navigate_to(&url(book, "print.html"))
        .and_then(|t| t.wait_until_navigated())
        .map_err(|e| format!("{e:#}"))?;
    tab.call_method(Emulation::SetEmulatedMedia { media: Some("print".into()), features: None })
        .map_err(|e| format!("emulate print: {e:#}"))?;
    let clipped = eval(
        &tab,
        r#"JSON.stringify([...document.querySelectorAll('table')]
            .filter(t => t.scrollWidth > t.parentElement.clientWidth + 1)
            .map(t => t.querySelector('td') ? t.querySelector('td').innerText : '?'))"#,
    )?;
    let headings =
        eval(&tab, r#"JSON.stringify([...document.querySelectorAll('h1')].map(h => h.innerText))"#)?;
    let _ = tab.close(false);
    let clipped: Vec<String> = serde_json::from_str(&clipped)?;
    let headings: Vec<String> = serde_json::from_str(&headings)?;
    let mut problems = Vec::new();
    if !clipped.is_empty() {
        problems.push(format!("{} tables wider than the printed text, starting: {clipped:?}", clipped.len()));
    }
    for lesson in forklore::lessons() {
        let chapter =
            std::fs::read_to_string(forklore::root().join("book/src").join(format!("{lesson}.md")))?;
        let title = chapter.lines().next().unwrap_or_default().trim_start_matches("# ").trim().to_string();
        if !headings.iter().any(|h| h.trim().replace('\u{2019}', "'") == title) {
            problems.push(format!("print.html lacks the chapter {title:?}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

//! The book's includes, read as mdBook reads them: for the book tests (tests/book.rs) and
//! for `cargo xtask book`, which fails on an include that names a missing file or anchor
//! (mdBook itself logs the first and renders the second as an empty block).

use std::path::{Path, PathBuf};

use regex::Regex;

/// One `{{#include path:spec}}` of a page.
pub struct Include {
    pub file: PathBuf,
    /// `None` for the whole file; an anchor name; or a line range like `4:` or `2:10`.
    pub spec: Option<String>,
}

pub fn includes(page: &Path, text: &str) -> Vec<Include> {
    let re = Regex::new(r"\{\{#(?:include|rustdoc_include)\s+([^}:\s]+)(?::([^}\s]*))?\s*\}\}").unwrap();
    re.captures_iter(text)
        .map(|c| Include {
            file: page.parent().unwrap().join(&c[1]),
            spec: c.get(2).map(|m| m.as_str().to_string()).filter(|s| !s.is_empty()),
        })
        .collect()
}

/// The includes of a page, and those of the Markdown files it includes (a chapter's generated
/// Exercises section includes the starters), each relative to the file it is written in.
pub fn includes_within(page: &Path, text: &str) -> Vec<Include> {
    let mut found = Vec::new();
    for inc in includes(page, text) {
        if inc.file.extension().is_some_and(|e| e == "md")
            && let Ok(inner) = std::fs::read_to_string(&inc.file)
        {
            found.extend(includes_within(&inc.file, &inner));
        }
        found.push(inc);
    }
    found
}

/// The lines an include brings in, the way mdBook takes them.
pub fn included_lines(inc: &Include) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(&inc.file).map_err(|e| format!("{}: {e}", inc.file.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let taken: Vec<&str> = match inc.spec.as_deref() {
        None => lines,
        Some(spec) if spec.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
            let (from, to) = spec.split_once(':').unwrap_or((spec, spec));
            let from: usize = from.parse().map_err(|_| format!("bad line range {spec}"))?;
            let to: usize =
                if to.is_empty() { lines.len() } else { to.parse().map_err(|_| format!("bad {spec}"))? };
            lines.get(from.saturating_sub(1)..to.min(lines.len())).unwrap_or(&[]).to_vec()
        }
        Some(anchor) => {
            let start = Regex::new(&format!(r"ANCHOR:\s*{}\b", regex::escape(anchor))).unwrap();
            let end = Regex::new(&format!(r"ANCHOR_END:\s*{}\b", regex::escape(anchor))).unwrap();
            let begin = lines.iter().position(|l| start.is_match(l));
            let finish = lines.iter().position(|l| end.is_match(l));
            match (begin, finish) {
                (Some(b), Some(f)) if b < f => lines[b + 1..f].to_vec(),
                _ => {
                    return Err(format!(
                        "{} has no ANCHOR/ANCHOR_END pair named {anchor:?}",
                        inc.file.display()
                    ));
                }
            }
        }
    };
    Ok(taken
        .into_iter()
        .filter(|l| !l.contains("ANCHOR:") && !l.contains("ANCHOR_END:"))
        .map(String::from)
        .collect())
}

/// Every include in the book's pages (and the Markdown they include) whose file or anchor is
/// missing: "page: file: what is wrong".
pub fn broken_includes(src: &Path) -> Vec<String> {
    let mut broken = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                for inc in includes(&path, &text) {
                    if let Err(why) = included_lines(&inc) {
                        broken.push(format!("{}: {why}", path.display()));
                    }
                }
            }
        }
    }
    broken.sort();
    broken
}

/// The book, loaded as every build of it loads it (`cargo xtask book`, the book and browser
/// tests): each listing (a `rust` or `python` block that includes a file) gets a line naming
/// its file above it, as the Rust book's "Filename:", and, once the includes are read, each
/// listing loses the indent its lines share (a snippet from inside a function starts at the
/// left edge).
pub fn load(book_dir: &Path) -> anyhow::Result<mdbook_driver::MDBook> {
    let mut book = mdbook_driver::MDBook::load(book_dir)?;
    let src = book_dir.join(&book.config.book.src);
    let repo = book_dir.parent().unwrap_or(book_dir).to_path_buf();
    book.book.for_each_chapter_mut(|chapter| {
        let Some(source) = &chapter.source_path else { return };
        let dir = src.join(source).parent().map(Path::to_path_buf).unwrap_or_else(|| src.clone());
        chapter.content = label_listings(&chapter.content, &dir, &repo);
    });
    book.with_preprocessor(Dedent);
    Ok(book)
}

/// A fenced block is a listing when its language is one of these.
const LISTINGS: [&str; 2] = ["rust", "python"];

/// `text` with a "Filename:" line above every listing that includes a file (paths relative
/// to `dir`, shown relative to `repo`).
pub fn label_listings(text: &str, dir: &Path, repo: &Path) -> String {
    let include = Regex::new(r"^\{\{#(?:include|rustdoc_include)\s+([^}:\s]+)").expect("a valid pattern");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len() + 256);
    for (i, line) in lines.iter().enumerate() {
        let fence =
            line.trim_start().strip_prefix("```").map(|rest| rest.split([',', ' ']).next().unwrap_or(""));
        if let (Some(language), Some(next)) = (fence, lines.get(i + 1))
            && LISTINGS.contains(&language)
            && let Some(found) = include.captures(next.trim())
        {
            let file = lexical(&dir.join(&found[1]));
            let shown = file.strip_prefix(repo).unwrap_or(&file).display().to_string();
            out.push_str(&format!("<p class=\"listing-file\">Filename: <code>{shown}</code></p>\n\n"));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `path` with its `..` and `.` taken away, as written (not as the file system resolves it).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Removes from every listing the indent all its lines share.
struct Dedent;

impl mdbook_preprocessor::Preprocessor for Dedent {
    fn name(&self) -> &str {
        "forklore-dedent"
    }

    fn run(
        &self,
        _: &mdbook_preprocessor::PreprocessorContext,
        mut book: mdbook_preprocessor::book::Book,
    ) -> mdbook_preprocessor::errors::Result<mdbook_preprocessor::book::Book> {
        book.for_each_chapter_mut(|chapter| chapter.content = dedent_listings(&chapter.content));
        Ok(book)
    }
}

/// `text` with each listing's shared indent removed.
pub fn dedent_listings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut block: Option<Vec<&str>> = None;
    for line in text.lines() {
        let fence = line.trim_start().starts_with("```");
        match &mut block {
            None => {
                out.push_str(line);
                out.push('\n');
                let language =
                    line.trim_start().trim_start_matches('`').split([',', ' ']).next().unwrap_or("");
                if fence && LISTINGS.contains(&language) {
                    block = Some(Vec::new());
                }
            }
            Some(lines) if fence => {
                let indent = lines
                    .iter()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| l.len() - l.trim_start_matches(' ').len())
                    .min()
                    .unwrap_or(0);
                for kept in lines.iter() {
                    out.push_str(kept.get(indent..).unwrap_or(kept.trim_start()));
                    out.push('\n');
                }
                out.push_str(line);
                out.push('\n');
                block = None;
            }
            Some(lines) => lines.push(line),
        }
    }
    if let Some(lines) = block {
        for kept in lines {
            out.push_str(kept);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_loses_its_shared_indent_and_output_keeps_its_own() {
        let text = "x\n```rust\n    let a = 1;\n        go(a);\n```\n```text\n   worker 1\n```\n";
        assert_eq!(
            dedent_listings(text),
            "x\n```rust\nlet a = 1;\n    go(a);\n```\n```text\n   worker 1\n```\n"
        );
    }

    #[test]
    fn a_listing_that_includes_a_file_is_labelled() {
        let repo = Path::new("/repo");
        let text = "```rust\n{{#include ../../lessons/pool/src/main.rs:map}}\n```\n```text\n{{#include x.out}}\n```\n";
        let labelled = label_listings(text, Path::new("/repo/book/src"), repo);
        assert!(
            labelled.starts_with(
                "<p class=\"listing-file\">Filename: <code>lessons/pool/src/main.rs</code></p>\n\n```rust\n"
            ),
            "{labelled}"
        );
        assert_eq!(labelled.matches("Filename").count(), 1, "{labelled}");
    }
}

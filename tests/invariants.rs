//! What each lesson's snapshot cannot show, because redaction hides it: relations between
//! the values that vary (the child that greets is the child that was joined, every pid is a
//! different process, a race's outcomes stay within their bounds) and the facts its chapter
//! states, asserted on the real output.
//! Every lesson also gets the generic checks of tests/lessons.rs, without editing anything.

use std::path::Path;

use regex::Regex;
use supervisor::Run;

/// The lesson's default run: exit 0, nothing left behind; its stdout.
fn default_run(lesson: &str) -> String {
    let binary = forklore::lesson_binary(lesson);
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let result = Run::new(&binary, scratch).env(plumbing::varies::VARIABLE, "1").go();
    assert!(result.status.success() && result.leftovers.is_empty(), "{}", result.describe());
    result.stdout
}

/// Every pid on the line that matches `pattern` (its first group).
fn pids(stdout: &str, pattern: &str) -> Vec<u32> {
    let re = Regex::new(pattern).unwrap();
    stdout.lines().filter_map(|l| re.captures(l)).map(|c| c[1].parse().unwrap()).collect()
}

/// The lines appear in this order (others may come between).
fn in_order(stdout: &str, lines: &[&str]) {
    let mut rest = stdout;
    for line in lines {
        let at = rest.find(line).unwrap_or_else(|| panic!("{line:?} missing or out of order in:\n{stdout}"));
        rest = &rest[at + line.len()..];
    }
}

#[test]
fn spawn_join() {
    let out = default_run("spawn-join");
    // The child that says hello is the one the parent joins, for fork and for spawn.
    let greeted = pids(&out, r"hello \w+ from the child, pid (\d+)");
    let joined = pids(&out, r"parent: joined child pid (\d+)");
    assert_eq!(greeted.len(), 2, "{out}");
    assert_eq!(greeted, joined, "{out}");
    // Every child is a new process, none of them this test's.
    let mut all = pids(&out, r"pid (\d+)");
    all.sort();
    all.dedup();
    assert!(all.len() >= 4 && !all.contains(&std::process::id()), "{out}");
    in_order(
        &out,
        &[
            "is_alive true",
            "exitcode -9 (SIGKILL), is_alive false",
            "ECHILD",
            "exitcode -15 (SIGTERM)",
            "a child that returns 3: exitcode 3",
            "a child that panics: exitcode 101",
            "exitcodes 0 and 0",
        ],
    );
}

#[test]
fn pipe() {
    let out = default_run("pipe");
    // Every message and every reply, in the order sent: one request, one answer.
    in_order(
        &out,
        &[
            "parent sent: hello",
            "child replied: hi, parent",
            "parent sent: hey",
            "child replied: hey yourself",
            "parent sent: hru?",
            "child replied: fine, thanks",
            "parent sent: END",
            "child replied: bye",
        ],
    );
    in_order(&out, &["one plain read returns \"hellohey\"", "recv returns \"hello\", then \"hey\""]);
    in_order(&out, &["no EOF within", "dropped the parent's write end: EOF"]);
    in_order(&out, &["received: first", "received: second", "received: third", "EOF after 3 messages"]);
    // Five children, five different processes, each joined with exitcode 0.
    let joined = pids(&out, r"joined child pid (\d+): exitcode 0");
    let mut distinct = joined.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!((joined.len(), distinct.len()), (5, 5), "{out}");
}

#[test]
fn lock_race() {
    let out = default_run("lock-race");
    // (b) the futex lock and (c) fetch_add: exactly 100 in every one of the 10 rounds.
    let exact = "   final balances: 100 100 100 100 100 100 100 100 100 100\n   right in 10 of 10 rounds\n";
    in_order(&out, &["3. The same read and write", exact, "4. No lock, one indivisible", exact]);
    // (a) the race: ten final balances, each within 100 +/- 10000 (a write is a read +/- 1,
    // and each worker writes 10000 times), and the summary line agrees with them. That a
    // round goes wrong is likely, never certain: it is not asserted.
    let list = Regex::new(r"final balances: \{varies: (-?\d+(?: -?\d+)*)\}").unwrap();
    let caps = list.captures(&out).unwrap_or_else(|| panic!("no racy balances in:\n{out}"));
    let finals: Vec<i64> = caps[1].split(' ').map(|b| b.parse().unwrap()).collect();
    assert_eq!(finals.len(), 10, "{out}");
    assert!(finals.iter().all(|b| (-9900..=10100).contains(b)), "{out}");
    let wrong = finals.iter().filter(|&&b| b != 100).count();
    let (low, high) = (finals.iter().min().unwrap(), finals.iter().max().unwrap());
    let summary = format!("wrong in {{varies: {wrong} of 10}} rounds, from {{varies: {low} to {high}}}");
    assert!(out.contains(&summary), "expected {summary:?} in:\n{out}");
}

#[test]
fn value_array() {
    let out = default_run("value-array");
    // The counter lost no update, and the parent saw every worker's part, with and
    // without the lock; a MAP_PRIVATE write never reaches the parent, a MAP_SHARED one does.
    in_order(
        &out,
        &[
            "final count: 40000 (expected 4 x 10000 = 40000)",
            "sum of all 40000 values: 799980000 (expected 799980000)",
            "sum of all 40000 values: 799980000 (expected 799980000)",
            "(MAP_PRIVATE): the parent reads 0",
            "(memfd, MAP_SHARED): the parent reads 42",
        ],
    );
}

#[test]
fn zero_copy() {
    let out = default_run("zero-copy");
    // Each worker's row holds exactly the values it wrote, seen by the parent without a copy.
    for w in 0..4 {
        let row: Vec<String> = (0..10).map(|c| (w * 10 + c).to_string()).collect();
        let re = Regex::new(&format!(r"worker {w} wrote row {w}:\s+{}\n", row.join(r"\s+"))).unwrap();
        assert!(re.is_match(&out), "row {w} wrong in:\n{out}");
    }
    // An f64 view at an offset that is not a multiple of 8 is refused, not misread.
    assert!(out.contains("cannot view offset 4 as f64"), "{out}");
}

#[test]
fn queue() {
    let out = default_run("queue");
    // The two consumers' shares vary, but always add up to all 3000 items.
    let re = Regex::new(r"the consumers got \{varies: \[(\d+), (\d+)\]\} items, fewest first").unwrap();
    let c = re.captures(&out).unwrap_or_else(|| panic!("no consumer counts in:\n{out}"));
    let (few, many): (u32, u32) = (c[1].parse().unwrap(), c[2].parse().unwrap());
    assert!(few <= many && few + many == 3000, "{out}");
    for p in 0..3 {
        let line =
            format!("producer {p}: every item got exactly once: true; sequence numbers add up to 499500");
        assert!(out.contains(&line), "{out}");
    }
    in_order(
        &out,
        &[
            "3000 items in all",
            "came in the order they were put: true",
            "after 300 ms the child is still running",
            "got 1048576 bytes",
            "then join: exitcode 0",
            "has still put only 4",
            "qsize() is 4: put number 5 waits",
            "never more than 4 puts ahead",
            "joined the child: exitcode 0",
        ],
    );
}

#[test]
fn manager_proxy() {
    let out = default_run("manager-proxy");
    in_order(
        &out,
        &[
            "len() from the parent: 3",
            "child: appended Jeff 8",
            "child: Name: Sam, Score: 10",
            "child: Name: Adam, Score: 9",
            "child: Name: Kevin, Score: 9",
            "child: Name: Jeff, Score: 8",
            "child: get(\"round\") = Some(1)",
            "child: get(\"missing\") = None",
            "parent: get(\"round\") = Some(2)",
            "snapshot(): 204 records (4 before, plus 4 x 50)",
            "worker 0: 50 records, in the order it sent them: true",
            "worker 1: 50 records, in the order it sent them: true",
            "worker 2: 50 records, in the order it sent them: true",
            "worker 3: 50 records, in the order it sent them: true",
            "exitcode 0\n6. The server dies",
            "len(): error: the manager's server process is gone: connection closed",
            "exitcode -9 (SIGKILL)",
        ],
    );
    // The server joined in section 5 is the one started in section 1; the killed one is
    // section 6's own, and no client is a server.
    let started = pids(&out, r"started the server, pid (\d+)");
    let doomed = pids(&out, r"a new server, pid (\d+)");
    let joined = pids(&out, r"joined the server, pid (\d+)");
    assert_eq!(joined, [started[0], doomed[0]], "{out}");
    assert_ne!(started[0], doomed[0], "{out}");
    let mut clients = pids(&out, r"joined the (?:appending child|printing child|child), pid (\d+)");
    clients.sort();
    clients.dedup();
    assert_eq!(clients.len(), 3, "{out}");
    assert!(!clients.contains(&started[0]) && !clients.contains(&doomed[0]), "{out}");
}

#[test]
fn copy_on_write() {
    let out = default_run("copy-on-write");
    // The raw /proc/<pid>/smaps_rollup figures (kB) vary a little from run to run; the
    // relations between them do not. In output order: parent before and after filling,
    // worker 0 before reading, after reading, after writing; worker 1 the same; parent now.
    let re = Regex::new(
        r"\{varies: Rss (\d+), Pss (\d+), Shared_Clean (\d+), Shared_Dirty (\d+), Private_Clean (\d+), Private_Dirty (\d+)\}",
    )
    .unwrap();
    let rows: Vec<[i64; 6]> =
        re.captures_iter(&out).map(|c| std::array::from_fn(|i| c[i + 1].parse().unwrap())).collect();
    assert_eq!(rows.len(), 9, "{out}");
    let (rss, pss, shared_dirty, private_dirty) = (0, 1, 3, 5);
    let matrices_kb = 31_250; // 16 x 500 x 500 f64
    assert!(rows[1][rss] >= rows[0][rss] + matrices_kb, "the parent's Rss did not grow: {out}");
    assert!((rows[8][rss] - rows[1][rss]).abs() < 1024, "the workers' reading cost the parent: {out}");
    for w in 0..2 {
        let [before, read, wrote] = [rows[2 + 3 * w], rows[3 + 3 * w], rows[4 + 3 * w]];
        assert!(before[rss] >= matrices_kb && before[private_dirty] < 1024, "worker {w}: {out}");
        assert!(before[pss] <= before[rss] - matrices_kb / 2, "worker {w}: pages not shared: {out}");
        assert!(read[private_dirty] - before[private_dirty] < 1024, "worker {w}: reading copied: {out}");
        let copied = wrote[private_dirty] - read[private_dirty];
        assert!((4..64).contains(&copied), "worker {w}: one write copied {copied} kB: {out}");
        assert!(wrote[shared_dirty] <= read[shared_dirty], "worker {w}: {out}");
    }
    in_order(&out, &["summed matrices 0..=7: 8725000", "summed matrices 8..=15: 8925000"]);
    // Two workers, two processes, neither of them the parent.
    let parent = pids(&out, r"parent pid (\d+)");
    let workers = pids(&out, r"worker \d \(pid (\d+)\)");
    assert!(parent.len() == 3 && parent.iter().all(|&p| p == parent[0]), "{out}");
    assert!(workers.len() == 2 && workers[0] != workers[1] && !workers.contains(&parent[0]), "{out}");
}

#[test]
fn pool() {
    let out = default_run("pool");
    in_order(
        &out,
        &[
            "map returned [1, 4, 9, 16, 25]",
            "sum 332833500",
            "the same results: true",
            "each chunk's 10 results came together, in input order: true",
            "sorted, they are map's results: true",
            "all 4 workers exited with exitcode 0",
            "the task panicked on item 13 (index 12): 13 is unlucky",
            "the same worker processes as before: true",
            "exitcode -9 (SIGKILL); stopped the 1 still running",
            "workers left: 0",
        ],
    );
    // How the 1000 tasks fell among the 4 workers varies; that they add up, and come in
    // whole chunks (15 of 63 and one of 55), does not.
    let re = Regex::new(r"did \{varies: \[(\d+), (\d+), (\d+), (\d+)\]\}").unwrap();
    let c = re.captures(&out).unwrap_or_else(|| panic!("no task counts in:\n{out}"));
    let counts: Vec<u64> = (1..=4).map(|i| c[i].parse().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]) && counts.iter().sum::<u64>() == 1000, "{out}");
    assert!(counts.iter().all(|n| n % 63 == 0 || n % 63 == 55), "{out}");
    assert!(
        Regex::new(r"in input order this time: \{varies: (true|false)\}").unwrap().is_match(&out),
        "{out}"
    );
    // The worker reported dead is the one the parent killed.
    assert_eq!(pids(&out, r"killed worker 1, pid (\d+)"), pids(&out, r"child 1 of 2 \(pid (\d+)\)"), "{out}");
}

#[test]
fn when_slower() {
    let out = default_run("when-slower");
    // One job, three ways: the same checksum three times.
    let re = Regex::new(r"checksum (0x[0-9a-f]{16})").unwrap();
    let sums: Vec<&str> = re.captures_iter(&out).map(|c| c.get(1).unwrap().as_str()).collect();
    assert!(sums.len() == 3 && sums.iter().all(|s| *s == sums[0]), "{out}");
    assert_eq!(out.matches("the same as one process's: true").count(), 2, "{out}");
    in_order(
        &out,
        &[
            "the parent got 8 images (384 KiB through the pipe)",
            "8 images (384 KiB) in place, 0 bytes through a pipe",
        ],
    );
}

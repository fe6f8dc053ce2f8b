//! The architecture invariants of docs/architecture.md, checked on the source:
//! the cores read no clock and touch no file, socket, channel or JSON, and the
//! top-level modules import each other without a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir` that is not a test file, with its text minus
/// comments and minus `#[cfg(test)]` modules at its end.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .expect("read src")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if p.is_dir() {
                if name != "tests" && name != "fixtures" {
                    stack.push(p);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
                let text = std::fs::read_to_string(&p).expect("read source");
                out.push((p, code_only(&text)));
            }
        }
    }
    out
}

/// The text without line comments, doc comments and the trailing test module.
fn code_only(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string (a URL) is rare in these modules; the
            // checks below look for paths, which strings do not hold.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn relative(p: &Path) -> String {
    p.strip_prefix(src()).unwrap_or(p).display().to_string()
}

#[test]
fn the_cores_read_no_clock_and_touch_no_file_channel_socket_or_json() {
    // Architecture Invariant: the call core, the queue engine and the flow
    // engine are handed `Now` and give back outputs; the shell owns the rest.
    let cores = [
        "call",
        "acd/router.rs",
        "acd/service.rs",
        "acd/queue.rs",
        "acd/estimate.rs",
        "acd/agents.rs",
        "flow/engine.rs",
        "cluster/dispatcher.rs",
        "cluster/shared.rs",
        "cluster/view.rs",
        "media/receive.rs",
        "sdp.rs",
        "time.rs",
    ];
    let forbidden = [
        ("Instant::now", "reads the monotonic clock"),
        ("SystemTime::now", "reads the wall clock"),
        ("Utc::now", "reads the wall clock"),
        ("std::fs", "touches files"),
        ("tokio::", "uses the runtime (sockets, channels, timers)"),
        ("std::sync::mpsc", "uses a channel"),
        ("std::net::UdpSocket", "opens a socket"),
        ("serde_json", "knows JSON"),
        ("crate::metrics", "writes metrics itself"),
        ("crate::events::EventBus", "publishes live events itself"),
        ("crate::cdr::RecordSink", "writes records itself"),
    ];
    let mut found = Vec::new();
    for core in cores {
        let path = src().join(core);
        let files = if path.is_dir() {
            sources(&path)
        } else {
            let text = std::fs::read_to_string(&path).expect("core source");
            vec![(path, code_only(&text))]
        };
        for (file, text) in files {
            for (needle, what) in forbidden {
                // `time.rs` is where the shell's one clock read lives.
                if file.ends_with("time.rs") && needle.ends_with("::now") {
                    continue;
                }
                if text.contains(needle) {
                    found.push(format!("{} {what} ({needle})", relative(&file)));
                }
            }
        }
    }
    assert!(found.is_empty(), "cores doing I/O:\n{}", found.join("\n"));
}

#[test]
fn only_api_knows_json_and_http() {
    // API Boundary: JSON and HTTP live in `api/`. Records keep JSON in
    // their journal and `info` column, and `prompts render` in the manifest
    // it writes beside the audio, and the cluster in what it keeps in
    // Redis: those are file and wire formats, not the API. Unit tests may
    // look at JSON to check what the API will show.
    let allowed = ["api", "cdr", "cluster", "prompts/render.rs"];
    let mut found = Vec::new();
    for (file, text) in sources(&src()) {
        let rel = relative(&file);
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for needle in ["serde_json", "axum::"] {
            if code.contains(needle) {
                found.push(format!("{rel} uses {needle}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "JSON or HTTP outside api/:\n{}",
        found.join("\n")
    );
}

/// Top-level module → the top-level modules it names with `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in sources(&src()) {
        let rel = relative(&file);
        let top = rel
            .split('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let deps = graph.entry(top.clone()).or_default();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let graph = module_graph();
    // Depth-first search; a back edge is a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            cycles.push(cycle.join(" -> "));
            return;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, cycles);
        }
        path.pop();
        done.insert(node.to_string());
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checks_find_what_they_look_for() {
    // The checks above would pass on an empty tree: show they see code.
    let graph = module_graph();
    assert!(graph["call"].contains("acd"), "{graph:?}");
    assert!(graph["server"].contains("call"), "{graph:?}");
    let call = sources(&src().join("call"));
    assert!(call.iter().any(|(_, t)| t.contains("QueueService")));
    assert!(!code_only("let x = 1; // Instant::now()").contains("Instant::now"));
}

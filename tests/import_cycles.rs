//! No import cycle between the library's modules: every `use` and every inline `crate::`/`super::`/`self::`
//! path in `src/` is an edge from its file's module to the deepest module it names, and the graph must
//! have no cycle. A parent's `pub use` of its own submodules is a facade, not a dependency, and is skipped.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path ("serve::http::v1") of a file under `src/`; the binary's own files are not library modules.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    match parts.last().map(String::as_str) {
        Some("main" | "cli") if parts.len() == 1 => return None,
        Some("lib") if parts.len() == 1 => parts.clear(),
        Some("mod") => {
            parts.pop();
        }
        _ => {}
    }
    Some(parts.join("::"))
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a::b::{c, d::{e}, f}` → the paths `a::b::c`, `a::b::d`, `a::b::f` (first segment inside braces is
/// enough to find the module).
fn expand(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else { return vec![path.trim().trim_end_matches("::*").to_string()] };
    let prefix = &path[..open];
    let inner = &path[open + 1..path.rfind('}').unwrap_or(path.len())];
    let (mut depth, mut start, mut items) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .iter()
        .map(|i| i.trim().split(['{', ' ']).next().unwrap_or("").trim_end_matches("::"))
        .filter(|i| !i.is_empty() && *i != "self")
        .map(|i| format!("{prefix}{i}"))
        .collect()
}

/// Paths a file refers to: `use` statements (minus facade re-exports of its own submodules) and inline
/// `crate::`, `super::` and `self::` paths.
fn references(text: &str, children: &[&str]) -> Vec<String> {
    // Unit-test modules (`#[cfg(test)] mod tests`, at the end of a file) see their file as `super`: not edges.
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut refs = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let stmt_end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        let stmt = &rest[at + 4..stmt_end];
        let line_start = before.rsplit('\n').next().unwrap_or("").trim();
        let starts_statement = matches!(line_start, "" | "pub" | "pub(crate)" | "pub(super)");
        if starts_statement {
            let facade = line_start == "pub" && !stmt.starts_with("crate::") && !stmt.starts_with("super::");
            if !facade {
                refs.extend(expand(&stmt.split_whitespace().collect::<String>()));
            }
        }
        rest = &rest[stmt_end.min(rest.len())..];
        if rest.is_empty() {
            break;
        }
        rest = &rest[1.min(rest.len())..];
    }
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(root) {
            let start = from + i;
            let end = code[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| start + e);
            let prev = code[..start].chars().last();
            if !prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                refs.push(code[start..end].trim_end_matches("::").to_string());
            }
            from = end.max(start + root.len());
        }
    }
    // `child::item` paths relative to this module (`v1::score`, `registry::Registry`), facades aside.
    let code: String = code.lines().filter(|l| !l.trim_start().starts_with("pub use ")).collect::<Vec<_>>().join("\n");
    for child in children {
        let pat = format!("{child}::");
        let mut from = 0;
        while let Some(i) = code[from..].find(&pat) {
            let start = from + i;
            let prev = code[..start].chars().last();
            if !prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                refs.push(format!("self::{child}"));
            }
            from = start + pat.len();
        }
    }
    refs
}

/// The deepest known module a path names, relative to `module`.
fn resolve(path: &str, module: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut segs: Vec<&str> = if module.is_empty() { vec![] } else { module.split("::").collect() };
    let mut parts = path.split("::").peekable();
    match parts.peek().copied() {
        Some("crate") => {
            segs.clear();
            parts.next();
        }
        Some("super") => {
            while parts.peek() == Some(&"super") {
                segs.pop();
                parts.next();
            }
        }
        Some("self") => {
            parts.next();
        }
        Some(first)
            if modules
                .contains(&[segs.join("::"), first.to_string()].join("::").trim_start_matches("::").to_string()) => {}
        _ => return None,
    }
    let mut best = segs.join("::");
    for p in parts {
        segs.push(p);
        let candidate = segs.join("::");
        if modules.contains(&candidate) {
            best = candidate;
        } else {
            break;
        }
    }
    Some(best)
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                t.low.insert(v, t.low[v].min(lw));
            } else if t.on.contains(w.as_str()) {
                let iw = t.index[w.as_str()];
                t.low.insert(v, t.low[v].min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                t.out.push(scc);
            }
        }
    }
    let mut t =
        T { g: graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], on: BTreeSet::new(), out: vec![] };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let files: Vec<(String, PathBuf)> = files.into_iter().filter_map(|f| Some((module_of(src, &f)?, f))).collect();
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let prefix = if module.is_empty() { String::new() } else { format!("{module}::") };
        let children: Vec<&str> = modules
            .iter()
            .filter_map(|m| m.strip_prefix(prefix.as_str()).filter(|c| !c.is_empty() && !c.contains("::")))
            .collect();
        let edges: BTreeSet<String> = references(&text, &children)
            .iter()
            .filter_map(|r| resolve(r, module, &modules))
            .filter(|target| target != module)
            .collect();
        graph.insert(module.clone(), edges);
    }
    graph
}

#[test]
fn the_library_has_no_import_cycle() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    assert!(graph.contains_key("serve::scoring") && graph["serve::http::v1"].contains("serve::scoring"), "{graph:#?}");
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles between modules: {found:?}");
}

#[test]
fn the_checker_finds_a_planted_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("serve")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod serve;\n").unwrap();
    std::fs::write(src.join("serve/mod.rs"), "pub mod a;\npub mod b;\npub mod c;\npub use a::A;\nfn g() { c::C; }\n")
        .unwrap();
    std::fs::write(src.join("serve/c.rs"), "use super::g;\npub struct C;\n").unwrap();
    std::fs::write(src.join("serve/a.rs"), "use super::b::{B, other};\npub struct A;\n").unwrap();
    std::fs::write(src.join("serve/b.rs"), "pub struct B;\nfn f() { crate::serve::a::A; }\n").unwrap();
    let found = cycles(&import_graph(src));
    let mut found: Vec<Vec<String>> = found
        .into_iter()
        .map(|mut c| {
            c.sort();
            c
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![vec!["serve".to_string(), "serve::c".to_string()], vec!["serve::a".to_string(), "serve::b".to_string()]]
    );
}

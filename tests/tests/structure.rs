//! The shape of the code, as a newcomer reads it: every library source file fits in a
//! reader's head (at most [`MAX_LINES`] lines), and the modules of each crate import each other
//! without circles, so that each crate reads bottom-up. Test modules are left out of both.
//!
//! The import graph is read from the source text: a file imports the modules that its
//! `crate::…` and `super::…` paths name (in `use` items, grouped `use crate::{a::X, b::Y}`,
//! and paths in code), comments and `#[cfg(test)] mod …` blocks excluded. Intra-doc links
//! do not count: they are comments.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a library source file may be.
const MAX_LINES: usize = 1_200;

/// A module, as the path of names from its crate's root (`[]` is the root).
type Module = Vec<String>;

/// The workspace's member crates, from the root `Cargo.toml`'s `members = [...]`: a crate
/// added there is checked without anyone having to remember this test.
fn crates(root: &Path) -> Vec<String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("the root manifest");
    let start = manifest.find("members").expect("a members list");
    let list = &manifest[start..];
    let list = &list[list.find('[').expect("[") + 1..list.find(']').expect("]")];
    let crates: Vec<String> = list
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    assert!(
        crates.len() >= 7 && crates.iter().all(|c| root.join(c).join("src").is_dir()),
        "the workspace members, each with a src/: {crates:?}"
    );
    crates
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_owned()
}

/// Every non-test source file of a crate's `src/`, by module.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("readable source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut module: Module = rel
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            let test = module
                .iter()
                .any(|m| m == "tests" || m == "testutil" || m == "bin");
            if !test {
                out.insert(module, path);
            }
        }
    }
    out
}

/// The source without comments and without its `#[cfg(test)] mod name { … }` block (by
/// convention the last item of a file).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|next| {
                let next = next.trim_start();
                next.contains("mod ") && next.trim_end().ends_with('{')
            })
        {
            break;
        }
        out.push_str(line.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// The paths (as module name lists, relative to the crate root) that `code` of `module`
/// names. A module's path includes its own name, so `super` is the path without its last
/// name, for `mod.rs` files as for the others.
fn references(module: &Module, code: &str) -> Vec<Module> {
    let bytes = code.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let at = |i: usize, s: &str| bytes[i.min(bytes.len())..].starts_with(s.as_bytes());
    let text = |a: usize, b: usize| String::from_utf8_lossy(&bytes[a..b]).into_owned();
    let mut refs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let keyword =
            |kw: &str| at(i, kw) && (i == 0 || !word(bytes[i - 1])) && at(i + kw.len(), "::");
        let mut path = if keyword("crate") {
            i += "crate".len();
            Vec::new()
        } else if keyword("super") {
            i += "super".len();
            module[..module.len().saturating_sub(1)].to_vec()
        } else {
            i += 1;
            continue;
        };
        // `super::super::…`
        while at(i, "::super") && !bytes.get(i + 7).is_some_and(|&c| word(c)) {
            path.pop();
            i += 7;
        }
        while at(i, "::") {
            i += 2;
            if at(i, "{") {
                // A group: each item is a path from here.
                let end = bytes[i..]
                    .iter()
                    .position(|&c| c == b'}')
                    .map_or(bytes.len(), |e| i + e);
                for item in text(i + 1, end).split(',') {
                    let mut p = path.clone();
                    p.extend(
                        item.trim()
                            .split("::")
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                    );
                    refs.push(p);
                }
                i = end;
                break;
            }
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            path.push(text(start, i));
        }
        if !at(i, "}") {
            refs.push(path);
        }
    }
    refs
}

/// The module a path lands in: its longest prefix that is a module.
fn resolve<'a>(modules: &'a BTreeMap<Module, PathBuf>, path: &Module) -> Option<&'a Module> {
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get_key_value(&path[..n]).map(|(k, _)| k))
}

/// The import graph of a crate: module → the modules it names, not counting its ancestors
/// (a module may use what its parent re-exports).
fn graph(modules: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut edges = BTreeMap::new();
    for (module, path) in modules {
        let text = fs::read_to_string(path).expect("readable source file");
        let mut to = BTreeSet::new();
        for r in references(module, &code(&text)) {
            if let Some(target) = resolve(modules, &r)
                && target != module
                && !module.starts_with(target)
            {
                to.insert(target.clone());
            }
        }
        edges.insert(module.clone(), to);
    }
    edges
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in &self.edges[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

fn name(crate_name: &str, module: &Module) -> String {
    if module.is_empty() {
        crate_name.to_owned()
    } else {
        format!("{crate_name}::{}", module.join("::"))
    }
}

#[test]
fn no_library_source_file_is_too_long() {
    let root = workspace();
    let mut long = Vec::new();
    for krate in crates(&root) {
        for path in modules(&root.join(&krate).join("src")).values() {
            let lines = fs::read_to_string(path).expect("readable").lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", path.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "library source files over {MAX_LINES} lines (split them by concern): {long:#?}"
    );
}

#[test]
fn no_import_circles() {
    let root = workspace();
    let mut found = Vec::new();
    for krate in crates(&root) {
        let modules = modules(&root.join(&krate).join("src"));
        assert!(!modules.is_empty(), "{krate} has source files");
        let edges = graph(&modules);
        for component in cycles(&edges) {
            let members: BTreeSet<&Module> = component.iter().collect();
            let krate = krate.as_str();
            let arrows: Vec<String> = component
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| members.contains(b))
                        .map(move |b| format!("{} -> {}", name(krate, a), name(krate, b)))
                })
                .collect();
            found.push(arrows);
        }
    }
    assert!(
        found.is_empty(),
        "import circles (move what both sides need into a leaf module): {found:#?}"
    );
}

/// The checker itself finds a circle where there is one, and none where there is none.
#[test]
fn the_checker_sees_circles() {
    let m = |s: &str| -> Module {
        s.split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let modules: BTreeMap<Module, PathBuf> = ["", "a", "b", "c", "c::d"]
        .iter()
        .map(|s| (m(s), PathBuf::new()))
        .collect();
    let refs = references(
        &m("c::d"),
        "use crate::{a::X, b::Y};\nfn f() { super::super::c::Z; crate::c::d::W; }",
    );
    let targets: BTreeSet<&Module> = refs.iter().filter_map(|r| resolve(&modules, r)).collect();
    assert_eq!(
        targets,
        [m("a"), m("b"), m("c"), m("c::d")].iter().collect(),
        "{refs:?}"
    );
    let edges = |pairs: &[(&str, &str)]| -> BTreeMap<Module, BTreeSet<Module>> {
        let mut e: BTreeMap<Module, BTreeSet<Module>> = modules
            .keys()
            .map(|k| (k.clone(), BTreeSet::new()))
            .collect();
        for (a, b) in pairs {
            e.get_mut(&m(a)).expect("known").insert(m(b));
        }
        e
    };
    assert!(cycles(&edges(&[("a", "b"), ("b", "c")])).is_empty());
    let found = cycles(&edges(&[("a", "b"), ("b", "c"), ("c", "a")]));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    assert_eq!(
        code("use crate::a; // crate::b\n#[cfg(test)]\nmod tests {\n use crate::c;\n}\n"),
        "use crate::a; \n"
    );
}

//! herald's modules form layers that only point downward, in the order
//! `src/lib.rs`'s map gives: no module names a module of its own layer or of
//! a higher one, so the imports have no loop. Checked on the source itself:
//! every file under `src/` is parsed with `syn` (a hand-written scan would
//! miss grouped `use` trees, paths in code and `super::` chains), and every
//! path that leaves its module through `crate::`, `self::` or `super::` is
//! judged, in `use` items, in code, in attributes and in macro bodies.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// The layers of `src/lib.rs`'s map, top first, each a list of modules.
///
/// The map is a numbered list, one item per layer; under each, one bullet
/// per module, opening with a link to it:
///
/// ```text
/// //! 1. What `main` runs:
/// //!    - [`app`]: ...
/// ```
fn declared_layers(lib: &str) -> Vec<Vec<String>> {
    let mut layers: Vec<Vec<String>> = Vec::new();
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let text = doc.trim_start();
        let indent = doc.len() - text.len();
        let number = text.split_once(". ").map(|(n, _)| n);
        if indent == 1 && number.is_some_and(|n| n.parse::<usize>().is_ok()) {
            let n: usize = number.unwrap().parse().unwrap();
            assert_eq!(n, layers.len() + 1, "lib.rs: layer {n} out of order");
            layers.push(Vec::new());
        } else if let (Some(layer), Some(rest)) = (layers.last_mut(), text.strip_prefix("- [`")) {
            if indent > 1 {
                let name = rest.split_once('`').map(|(name, _)| name).unwrap();
                layer.push(name.to_owned());
            }
        }
    }
    layers
}

/// The layer (1 = top) of each module, from `src/lib.rs`.
struct Layers(Vec<Vec<String>>);

impl Layers {
    fn from_lib() -> Self {
        Self(declared_layers(&read(&src().join("lib.rs"))))
    }

    fn of(&self, module: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|layer| layer.iter().any(|m| m == module))
            .map(|i| i + 1)
    }
}

/// A path from one module into another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reach {
    /// The path as written (`crate::broker::BrokerError`).
    written: String,
    /// The top-level module it lands in; empty for the crate root.
    target: String,
}

/// Collects, for one file, every path that leaves its module, and the
/// first segment of every other path (the crates it names).
struct Paths {
    /// The module the code being visited is in, from the crate root: the
    /// file's module, then any inline `mod` around the code.
    module: Vec<String>,
    reaches: BTreeSet<Reach>,
    /// First segments of paths not rooted in the crate: crates and local
    /// names (`actix`, `std`, `Vec`, ...).
    others: BTreeSet<String>,
}

impl Paths {
    fn new(module: Vec<String>) -> Self {
        Self {
            module,
            reaches: BTreeSet::new(),
            others: BTreeSet::new(),
        }
    }

    /// Records a path given as its segments.
    fn note(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let absolute: Vec<String> = match first.as_str() {
            "crate" => segments[1..].to_vec(),
            "self" => self.module.iter().chain(&segments[1..]).cloned().collect(),
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let kept = self.module.len().saturating_sub(ups);
                self.module[..kept]
                    .iter()
                    .chain(&segments[ups..])
                    .cloned()
                    .collect()
            }
            other => {
                self.others.insert(other.to_owned());
                return;
            }
        };
        self.reaches.insert(Reach {
            written: segments.join("::"),
            target: absolute.first().cloned().unwrap_or_default(),
        });
    }

    fn note_use(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.note_use(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                let mut full = prefix.clone();
                if name.ident != "self" {
                    full.push(name.ident.to_string());
                }
                self.note(&full);
            }
            syn::UseTree::Rename(rename) => {
                let mut full = prefix.clone();
                if rename.ident != "self" {
                    full.push(rename.ident.to_string());
                }
                self.note(&full);
            }
            syn::UseTree::Glob(_) => self.note(prefix),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.note_use(prefix, tree);
                }
            }
        }
    }

    /// Paths inside tokens that `syn` leaves unparsed (macro bodies,
    /// attribute arguments): each run of `ident :: ident ...`.
    fn note_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(group) => {
                    self.note_tokens(group.stream());
                    i += 1;
                }
                TokenTree::Ident(ident) => {
                    let mut segments = vec![ident.to_string()];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) =
                        (trees.get(j), trees.get(j + 1))
                    {
                        let Some(TokenTree::Ident(next)) = trees.get(j + 2) else {
                            break;
                        };
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 {
                        self.note(&segments);
                    }
                    i = j;
                }
                TokenTree::Punct(_) | TokenTree::Literal(_) => i += 1,
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if item.leading_colon.is_some() {
            // `use ::name::...`: always a crate from outside.
            if let syn::UseTree::Path(path) = &item.tree {
                self.others.insert(path.ident.to_string());
            }
            return;
        }
        self.note_use(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.note(&segments);
        } else if let Some(first) = path.segments.first() {
            self.others.insert(first.ident.to_string());
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.note_tokens(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }

    fn visit_meta_list(&mut self, list: &'ast syn::MetaList) {
        self.note_tokens(list.tokens.clone());
        visit::visit_meta_list(self, list);
    }

    /// `pub(crate)`, `pub(super)`: who may see an item, not a use of
    /// another module.
    fn visit_vis_restricted(&mut self, _: &'ast syn::VisRestricted) {}

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.module.push(item.ident.to_string());
        visit::visit_item_mod(self, item);
        self.module.pop();
    }
}

/// The paths of one file's source, read as module `module`.
fn paths_of(module: Vec<String>, source: &str) -> Paths {
    let file = syn::parse_file(source).unwrap_or_else(|e| panic!("{module:?}: {e}"));
    let mut paths = Paths::new(module);
    paths.visit_file(&file);
    paths
}

/// Every way `source`, read as module `module`, breaks the layer order.
fn violations(layers: &Layers, module: Vec<String>, source: &str) -> Vec<String> {
    let top = module[0].clone();
    let Some(own) = layers.of(&top) else {
        return vec![format!("`{top}` is in no layer of lib.rs's map")];
    };
    let paths = paths_of(module, source);
    let mut found = Vec::new();
    for reach in paths.reaches {
        if reach.target == top {
            continue;
        }
        match layers.of(&reach.target) {
            Some(theirs) if theirs > own => {}
            Some(theirs) => found.push(format!(
                "`{}`: {top} (layer {own}) may not use {} (layer {theirs})",
                reach.written, reach.target
            )),
            None => found.push(format!(
                "`{}`: {top} reaches `{}`, which is in no layer",
                reach.written, reach.target
            )),
        }
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file of the library under `src/`, with its module path
/// (`src/hub/session/mod.rs` → `hub::session`); not `lib.rs` (the root,
/// above every layer) nor `main.rs` (the binary, above the library).
fn library_files() -> Vec<(PathBuf, Vec<String>)> {
    fn walk(dir: &Path, module: &[String], out: &mut Vec<(PathBuf, Vec<String>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                let mut inner = module.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut own = module.to_vec();
                if stem != "mod" {
                    own.push(stem.to_owned());
                }
                if own != ["lib"] && own != ["main"] {
                    out.push((path, own));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&src(), &[], &mut out);
    out
}

#[test]
fn lib_rs_puts_every_module_in_exactly_one_layer() {
    let lib = read(&src().join("lib.rs"));
    let layers = declared_layers(&lib);
    assert!(layers.len() > 1, "lib.rs's map has no layers: {layers:?}");
    let mut listed: Vec<&String> = layers.iter().flatten().collect();
    listed.sort();
    let file = syn::parse_file(&lib).unwrap();
    let mut declared: Vec<String> = file
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect();
    declared.sort();
    assert_eq!(listed, declared.iter().collect::<Vec<_>>(), "lib.rs's map");
}

#[test]
fn every_module_uses_only_modules_of_lower_layers() {
    let layers = Layers::from_lib();
    let mut found = Vec::new();
    let files = library_files();
    assert!(files.len() > 30, "{} files under src/", files.len());
    for (path, module) in files {
        let shown = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        for problem in violations(&layers, module, &read(&path)) {
            found.push(format!("{}: {problem}", shown.display()));
        }
    }
    assert!(
        found.is_empty(),
        "imports against the layers of src/lib.rs:\n{}",
        found.join("\n")
    );
}

/// The broker reports upward through its own trait: it names no actix
/// crate (nor, by its layer, any hub type).
#[test]
fn the_broker_names_no_actix_crate() {
    for (path, module) in library_files() {
        if module[0] != "broker" {
            continue;
        }
        let paths = paths_of(module, &read(&path));
        let actix: Vec<_> = paths
            .others
            .iter()
            .filter(|name| name.starts_with("actix"))
            .collect();
        assert!(actix.is_empty(), "{}: {actix:?}", path.display());
    }
}

/// The check itself can fail: upward and sideways paths of every kind are
/// caught, downward ones pass.
#[test]
fn upward_and_sideways_paths_are_caught() {
    let layers = Layers::from_lib();
    let source = r#"
        use crate::hub::NotifyServer;
        use crate::{ids::ClientId, token::TokenVerifier};
        use crate::protocol::PendingFrame;
        fn f() -> crate::error::ApiError {
            log::info!("{}", crate::routes::NAME);
            todo!()
        }
        #[cfg(test)]
        mod tests {
            use super::super::super::app::Application;
            use super::*;
        }
    "#;
    let found = violations(&layers, vec!["broker".into(), "redis".into()], source);
    let named: Vec<&str> = found.iter().map(|v| v.split('`').nth(1).unwrap()).collect();
    assert_eq!(
        named,
        [
            "crate::error::ApiError",
            "crate::hub::NotifyServer",
            "crate::routes::NAME",
            "crate::token::TokenVerifier",
            "super::super::super::app::Application",
        ],
        "{found:#?}"
    );
    let paths = paths_of(vec!["broker".into()], "fn f() { actix_web::rt::spawn(x); }");
    assert!(paths.others.contains("actix_web"));
}

/// A module split into a directory stays one module of its layer: its
/// files reach each other freely through `super::`, and each is held to
/// the layer of the whole.
#[test]
fn the_files_of_a_module_directory_share_its_layer() {
    let layers = Layers::from_lib();
    let source = r#"
        use super::join;
        use super::super::ids::ClientId;
        use crate::hub::backlog::Backlog;
        #[cfg(test)]
        mod tests {
            use super::super::ServerFrame;
            use super::super::super::history::History;
        }
    "#;
    let found = violations(&layers, vec!["protocol".into(), "poll".into()], source);
    let named: Vec<&str> = found.iter().map(|v| v.split('`').nth(1).unwrap()).collect();
    assert_eq!(
        named,
        [
            "crate::hub::backlog::Backlog",
            "super::super::super::history::History",
        ],
        "{found:#?}"
    );
    let files = library_files();
    assert!(
        files
            .iter()
            .any(|(_, module)| module == &["protocol".to_owned(), "poll".to_owned()]),
        "src/protocol/poll.rs is read as protocol::poll"
    );
}

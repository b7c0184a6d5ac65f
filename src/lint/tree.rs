//! The image as one tree: its layers' facts merged bottom first, with the
//! whiteouts of upper layers applied, and paths resolved inside it as the
//! kernel would: symlinks followed (absolute ones from the image's root,
//! relative ones from their directory, `..` never above the root), at
//! most [`MAX_HOPS`] of them.

use super::elf::Content;
use super::scan::{FactKind, LayerFacts};
use std::collections::BTreeMap;

/// Symlinks followed in one lookup (the kernel's `MAXSYMLINKS`).
pub const MAX_HOPS: usize = 40;
/// Nesting of `include` in the loader's configuration.
const MAX_INCLUDES: usize = 8;

static DIR: FactKind = FactKind::Dir;

/// One path of the image: what the topmost layer that has it says.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    pub kind: &'a FactKind,
    /// The layer it comes from (bottom is 0; `usize::MAX` for a directory
    /// only implied by its children).
    pub layer: usize,
    pub package: Option<&'a str>,
}

impl Node<'_> {
    /// A regular file's content and exec bit.
    pub fn file(&self) -> Option<(&Content, bool)> {
        match self.kind {
            FactKind::File { exec, content } => Some((content, *exec)),
            _ => None,
        }
    }
}

/// The merged image.
#[derive(Debug, Default)]
pub struct Image<'a> {
    nodes: BTreeMap<&'a str, Node<'a>>,
}

/// `a/b/c` components of a path, empty ones dropped.
fn comps(p: &str) -> impl DoubleEndedIterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty())
}

fn join(dir: &str, name: &str) -> String {
    match dir.is_empty() {
        true => name.to_string(),
        false => format!("{dir}/{name}"),
    }
}

impl<'a> Image<'a> {
    /// The image made of `layers`, bottom first.
    pub fn new(layers: &[&'a LayerFacts]) -> Image<'a> {
        let mut img = Image::default();
        for (i, l) in layers.iter().enumerate() {
            // Whiteouts hide what the layers below have, not this layer.
            for f in &l.entries {
                match f.kind {
                    FactKind::Whiteout => {
                        img.nodes.remove(f.path.as_str());
                        img.remove_below(&f.path);
                    }
                    FactKind::Opaque => img.remove_below(&f.path),
                    _ => {}
                }
            }
            for f in &l.entries {
                if matches!(f.kind, FactKind::Whiteout | FactKind::Opaque) {
                    continue;
                }
                if !matches!(f.kind, FactKind::Dir) {
                    img.remove_below(&f.path);
                }
                let node = Node {
                    kind: &f.kind,
                    layer: i,
                    package: f.package.as_deref(),
                };
                img.nodes.insert(&f.path, node);
            }
        }
        img
    }

    fn remove_below(&mut self, dir: &str) {
        let below: Vec<&'a str> = self.below(dir).map(|(k, _)| *k).collect();
        for k in below {
            self.nodes.remove(k);
        }
    }

    /// Entries below directory `dir` (`""`: everything), in path order.
    fn below<'s>(&'s self, dir: &str) -> impl Iterator<Item = (&'s &'a str, &'s Node<'a>)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.nodes
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(&prefix))
    }

    /// Every path and what it is, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Node<'a>)> + '_ {
        self.nodes.iter().map(|(k, n)| (*k, *n))
    }

    /// The node at exactly `key` (no symlink followed); a directory that
    /// only its children imply counts as one.
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        let implied = Node {
            kind: &DIR,
            layer: usize::MAX,
            package: None,
        };
        if key.is_empty() {
            return Some(implied);
        }
        match self.nodes.get(key) {
            Some(n) => Some(*n),
            None => self.below(key).next().map(|_| implied),
        }
    }

    /// The names directly in the directory `dir` (exact path), sorted.
    pub fn children(&self, dir: &str) -> Vec<&'a str> {
        let skip = if dir.is_empty() { 0 } else { dir.len() + 1 };
        let mut v: Vec<&'a str> = self
            .below(dir)
            .map(|(k, _)| &k[skip..])
            .filter(|rest| !rest.contains('/'))
            .collect();
        v.dedup();
        v
    }

    /// Resolve `path` (absolute or relative to the root) inside the image,
    /// following symlinks on the way and, with `follow_last`, at the end:
    /// the canonical path and its node, or, when something on the way is
    /// missing, the canonical path as far as it resolved with the rest of
    /// the path after it (where the missing file would have to be).
    pub fn lookup(&self, path: &str, follow_last: bool) -> Result<(String, Node<'a>), String> {
        let mut todo: Vec<&str> = comps(path).rev().collect();
        let mut cur = String::new();
        let mut hops = 0;
        let rest = |at: String, todo: &[&str]| todo.iter().rev().fold(at, |acc, c| join(&acc, c));
        while let Some(c) = todo.pop() {
            match c {
                "." => continue,
                ".." => {
                    cur.truncate(cur.rfind('/').unwrap_or(0));
                    continue;
                }
                _ => {}
            }
            let next = join(&cur, c);
            let last = todo.is_empty();
            let Some(node) = self.get(&next) else {
                return Err(rest(next, &todo));
            };
            match node.kind {
                FactKind::Symlink(t) if !last || follow_last => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(rest(next, &todo));
                    }
                    if t.starts_with('/') {
                        cur.clear();
                    }
                    todo.extend(comps(t).rev());
                }
                FactKind::File { .. } if !last => return Err(rest(next, &todo)),
                _ => cur = next,
            }
        }
        let node = self.get(&cur).expect("every step resolved");
        Ok((cur, node))
    }

    /// The regular file `path` resolves to (symlinks followed): its
    /// canonical path and node.
    pub fn file(&self, path: &str) -> Result<(String, Node<'a>), String> {
        match self.lookup(path, true) {
            Ok((p, n)) if n.file().is_some() => Ok((p, n)),
            Ok((p, _)) => Err(p),
            Err(p) => Err(p),
        }
    }

    /// The directories the loader's configuration lists: `etc/ld.so.conf`
    /// (with its `include`s) and every `etc/ld.so.conf.d/*.conf`, in that
    /// order, each once, as absolute paths.
    pub fn ld_conf_dirs(&self) -> Vec<String> {
        let mut dirs = Vec::new();
        self.conf_file("etc/ld.so.conf", 0, &mut dirs);
        if let Ok((d, _)) = self.lookup("etc/ld.so.conf.d", true) {
            for name in self.children(&d) {
                if name.ends_with(".conf") {
                    self.conf_file(&join(&d, name), 0, &mut dirs);
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        dirs
    }

    fn conf_file(&self, path: &str, depth: usize, dirs: &mut Vec<String>) {
        let Ok((p, node)) = self.file(path) else {
            return;
        };
        let Some((Content::Text(text), _)) = node.file() else {
            return;
        };
        let parent = p.rsplit_once('/').map_or("", |(d, _)| d);
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let word = line.split_whitespace().next().unwrap_or_default();
            match word {
                "" | "hwcap" => {}
                "include" if depth < MAX_INCLUDES => {
                    for pattern in line.split_whitespace().skip(1) {
                        for f in self.glob(pattern, parent) {
                            self.conf_file(&f, depth + 1, dirs);
                        }
                    }
                }
                "include" => {}
                _ => dirs.push(format!("/{}", comps(line).collect::<Vec<_>>().join("/"))),
            }
        }
    }

    /// The files `pattern` (wildcards in its last component only; relative
    /// to `dir`) matches, sorted.
    fn glob(&self, pattern: &str, dir: &str) -> Vec<String> {
        let full = if pattern.starts_with('/') {
            pattern.to_string()
        } else {
            join(dir, pattern)
        };
        let (d, name) = full.rsplit_once('/').unwrap_or(("", &full));
        let (Ok(pat), Ok((d, _))) = (glob::Pattern::new(name), self.lookup(d, true)) else {
            return Vec::new();
        };
        let names = self.children(&d).into_iter().filter(|n| pat.matches(n));
        names.map(|n| join(&d, n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::scan::Fact;

    fn fact(path: &str, kind: FactKind) -> Fact {
        Fact {
            path: path.into(),
            kind,
            package: None,
        }
    }
    pub fn file(path: &str) -> Fact {
        fact(
            path,
            FactKind::File {
                exec: true,
                content: Content::Other,
            },
        )
    }
    fn link(path: &str, t: &str) -> Fact {
        fact(path, FactKind::Symlink(t.into()))
    }

    #[test]
    fn symlink_chains_absolute_relative_and_merged_usr_resolve() {
        let l = LayerFacts {
            truncated: false,
            entries: vec![
                link("bin", "usr/bin"),
                link("lib64", "usr/lib64"),
                fact("usr", FactKind::Dir),
                file("usr/bin/dash"),
                link("usr/bin/sh", "dash"),
                link("usr/lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so"),
                link("lib", "usr/lib"),
                file("usr/lib/x86_64-linux-gnu/ld.so"),
                link("usr/bin/up", "../../usr/./bin/../bin/sh"),
                link("loop", "loop"),
                link("esc", "../../../../usr/bin/dash"),
            ],
        };
        let img = Image::new(&[&l]);
        let f = |p: &str| img.file(p).map(|(p, _)| p);
        assert_eq!(f("/bin/sh"), Ok("usr/bin/dash".into()));
        assert_eq!(
            f("/lib64/ld.so"),
            Ok("usr/lib/x86_64-linux-gnu/ld.so".into())
        );
        assert_eq!(f("bin/up"), Ok("usr/bin/dash".into()));
        assert_eq!(
            f("/esc"),
            Ok("usr/bin/dash".into()),
            "`..` stops at the root"
        );
        assert_eq!(f("/loop"), Err("loop".into()));
        assert_eq!(f("/bin/bash"), Err("usr/bin/bash".into()));
        assert_eq!(f("/bin/dash/x"), Err("usr/bin/dash/x".into()));
        assert_eq!(f("/usr"), Err("usr".into()), "a directory is not a file");
        assert_eq!(
            img.lookup("/bin/sh", false).map(|(p, _)| p),
            Ok("usr/bin/sh".into())
        );
    }

    #[test]
    fn upper_layers_whiteout_and_replace() {
        let low = LayerFacts {
            truncated: false,
            entries: vec![file("a/x"), file("a/y"), file("b/z"), file("c/w")],
        };
        let up = LayerFacts {
            truncated: false,
            entries: vec![
                fact("a/x", FactKind::Whiteout),
                fact("b", FactKind::Opaque),
                file("b/new"),
                link("c", "a"),
            ],
        };
        let img = Image::new(&[&low, &up]);
        let keys: Vec<&str> = img.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a/y", "b/new", "c"]);
        assert!(img.file("c/y").is_ok());
        assert!(img.get("a").is_some(), "implied by a/y");
    }

    #[test]
    fn ld_so_conf_includes_and_conf_d_are_read() {
        let text = |p: &str, t: &str| {
            fact(
                p,
                FactKind::File {
                    exec: false,
                    content: Content::Text(t.into()),
                },
            )
        };
        let l = LayerFacts {
            truncated: false,
            entries: vec![
                text(
                    "etc/ld.so.conf",
                    "# comment\ninclude /etc/ld.so.conf.d/*.conf\n/opt/lib/\n",
                ),
                text(
                    "etc/ld.so.conf.d/b.conf",
                    "/usr/local/lib\nhwcap 0 nosegneg\n",
                ),
                text(
                    "etc/ld.so.conf.d/a.conf",
                    "/opt/a # trailing\ninclude more/*.x\n",
                ),
                text("etc/ld.so.conf.d/more/1.x", "/opt/more\n"),
                text("etc/ld.so.conf.d/skip.txt", "/nope\n"),
            ],
        };
        let img = Image::new(&[&l]);
        assert_eq!(
            img.ld_conf_dirs(),
            ["/opt/a", "/opt/more", "/usr/local/lib", "/opt/lib"]
        );
    }
}

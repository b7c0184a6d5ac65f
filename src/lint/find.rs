//! What each file needs, and whether the image has it: `#!` interpreters
//! (and the program `#!/usr/bin/env NAME` runs, on `PATH`), ELF
//! interpreters and `DT_NEEDED` libraries, searched as the dynamic loader
//! searches them; and whether what the config runs can start.
//!
//! Library search for an object (its directory is `$ORIGIN`): its
//! `DT_RPATH` when it has no `DT_RUNPATH` (and, when it is loaded for the
//! program the config runs, that program's `DT_RPATH`), the config's
//! `LD_LIBRARY_PATH`, its `DT_RUNPATH`, the directories of the image's
//! loader configuration, then the defaults for the architecture
//! (`/lib/<triplet>`, `/usr/lib/<triplet>`, `/lib64`, `/usr/lib64`, `/lib`,
//! `/usr/lib`). `$ORIGIN`, `$LIB` and `$PLATFORM` are expanded; relative
//! entries (relative to the process's working directory) are skipped.

use super::elf::{Content, ElfInfo};
use super::tree::{Image, Node};
use super::{NeedKind, Unresolved};
use std::collections::BTreeSet;

/// Interpreters of interpreters followed from what the config runs.
const MAX_DEPTH: usize = 4;
/// `PATH` when the config sets none (runc's and docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the image's dependencies are searched.
pub struct Env<'i, 'a> {
    pub img: &'i Image<'a>,
    /// Layer labels, bottom first, for files no package ships.
    pub labels: Vec<String>,
    conf: Vec<String>,
    defaults: Vec<String>,
    ld_library_path: Vec<String>,
    path: Vec<String>,
    /// `$LIB`, `$PLATFORM`.
    lib: String,
    platform: String,
}

/// `(triplet, platform)` of a Debian architecture.
pub fn triplet(arch: &str) -> (String, String) {
    let (t, p) = match arch {
        "amd64" => ("x86_64-linux-gnu", "x86_64"),
        "arm64" => ("aarch64-linux-gnu", "aarch64"),
        "i386" => ("i386-linux-gnu", "i686"),
        "armhf" => ("arm-linux-gnueabihf", "v7l"),
        "armel" => ("arm-linux-gnueabi", "v5l"),
        "ppc64el" => ("powerpc64le-linux-gnu", "powerpc64le"),
        "s390x" => ("s390x-linux-gnu", "s390x"),
        "riscv64" => ("riscv64-linux-gnu", "riscv64"),
        "mips64el" => ("mips64el-linux-gnuabi64", "mips64"),
        other => return (format!("{other}-linux-gnu"), other.to_string()),
    };
    (t.to_string(), p.to_string())
}

fn split_dirs(v: Option<&str>) -> Vec<String> {
    v.unwrap_or_default()
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(str::to_string)
        .collect()
}

/// A path without its leading `/`.
fn rel(p: &str) -> String {
    p.trim_start_matches('/').to_string()
}

impl<'i, 'a> Env<'i, 'a> {
    pub fn new(img: &'i Image<'a>, opts: &super::LintOptions) -> Env<'i, 'a> {
        let (t, platform) = triplet(opts.arch);
        let defaults = [
            format!("/lib/{t}"),
            format!("/usr/lib/{t}"),
            "/lib64".into(),
            "/usr/lib64".into(),
            "/lib".into(),
            "/usr/lib".into(),
        ];
        Env {
            img,
            labels: opts.layers.iter().map(|l| l.label.clone()).collect(),
            conf: img.ld_conf_dirs(),
            defaults: defaults.to_vec(),
            ld_library_path: split_dirs(opts.start.ld_library_path.as_deref()),
            path: split_dirs(Some(opts.start.path.as_deref().unwrap_or(DEFAULT_PATH))),
            lib: format!("lib/{t}"),
            platform,
        }
    }

    /// Where a missing `path` would have to be: as written, resolved as
    /// far as the image allows (`missing`), and as packages list it
    /// (merged-/usr).
    fn candidates(&self, path: &str, missing: String) -> Vec<String> {
        let literal = rel(path);
        let mut v = vec![missing];
        v.extend(crate::layer::package::merge_usr(&literal));
        v.push(literal);
        v.sort();
        v.dedup();
        v
    }

    /// The regular file at `path`, or where it would have to be.
    fn file(&self, path: &str) -> Result<String, Vec<String>> {
        self.img
            .file(path)
            .map(|(p, _)| p)
            .map_err(|m| self.candidates(path, m))
    }

    /// The first of `dirs` holding a file `name` (executable with `exec`).
    fn search(&self, dirs: &[String], name: &str, exec: bool) -> Result<String, Vec<String>> {
        let mut cands = Vec::new();
        for d in dirs {
            let full = format!("{d}/{name}");
            match self.img.file(&full) {
                Ok((p, n)) if !exec || n.file().is_some_and(|f| f.1) => return Ok(p),
                Ok((p, _)) => cands.push(p),
                Err(m) => cands.extend(self.candidates(&full, m)),
            }
        }
        cands.sort();
        cands.dedup();
        Err(cands)
    }

    /// `name` as `execvp` finds it: a path, or a file on `PATH`.
    pub fn program(&self, name: &str, workdir: &str) -> Result<String, Vec<String>> {
        match name.contains('/') {
            true if name.starts_with('/') => self.file(name),
            true => self.file(&format!("{workdir}/{name}")),
            false => self.search(&self.path, name, true),
        }
    }

    /// An `RPATH`/`RUNPATH` entry with `$ORIGIN` (the directory `origin`),
    /// `$LIB` and `$PLATFORM` expanded; `None` when it stays relative.
    fn expand(&self, entry: &str, origin: &str) -> Option<String> {
        let mut s = entry.to_string();
        for (names, val) in [
            (["$ORIGIN", "${ORIGIN}"], format!("/{origin}")),
            (["$LIB", "${LIB}"], self.lib.clone()),
            (["$PLATFORM", "${PLATFORM}"], self.platform.clone()),
        ] {
            for n in names {
                s = s.replace(n, &val);
            }
        }
        s.starts_with('/').then_some(s)
    }

    /// The directories `obj` (a canonical path) loads its libraries from.
    fn lib_dirs(&self, obj: &str, elf: &ElfInfo, inherited: &[String]) -> Vec<String> {
        let origin = obj.rsplit_once('/').map_or("", |(d, _)| d);
        let expand = |v: &[String]| -> Vec<String> {
            v.iter().filter_map(|e| self.expand(e, origin)).collect()
        };
        let mut dirs = Vec::new();
        if elf.runpath.is_empty() {
            dirs.extend(expand(&elf.rpath));
            dirs.extend(inherited.iter().cloned());
        }
        dirs.extend(self.ld_library_path.iter().cloned());
        dirs.extend(expand(&elf.runpath));
        dirs.extend(self.conf.iter().cloned());
        dirs.extend(self.defaults.iter().cloned());
        dirs
    }

    /// Library `name` needed by `obj`.
    fn library(
        &self,
        obj: &str,
        elf: &ElfInfo,
        name: &str,
        inherited: &[String],
    ) -> Result<String, Vec<String>> {
        if name.contains('/') {
            return self.file(name);
        }
        self.search(&self.lib_dirs(obj, elf, inherited), name, false)
    }

    /// What the file at `obj` (canonical) needs, each found or not.
    pub fn needs(&self, obj: &str, content: &Content, inherited: &[String]) -> Vec<Need> {
        let mut out = Vec::new();
        match content {
            Content::Script { interp, arg } => {
                let found = self.file(interp);
                let env = found.is_ok() && interp.rsplit('/').next() == Some("env");
                let prog = arg.as_deref().and_then(env_program).filter(|_| env);
                out.push(Need::new(NeedKind::Interpreter, interp, found));
                if let Some(prog) = prog {
                    out.push(Need::new(NeedKind::Program, prog, self.program(prog, "")));
                }
            }
            Content::Elf(elf) => {
                if let Some(i) = &elf.interp {
                    out.push(Need::new(NeedKind::ElfInterpreter, i, self.file(i)));
                }
                for lib in &elf.needed {
                    out.push(Need::new(
                        NeedKind::Library,
                        lib,
                        self.library(obj, elf, lib, inherited),
                    ));
                }
            }
            _ => {}
        }
        out
    }

    /// An unresolved need of the file `obj`.
    pub fn unresolved(&self, obj: &str, node: Option<Node>, need: Need) -> Unresolved {
        let layer = node
            .and_then(|n| self.labels.get(n.layer).cloned())
            .unwrap_or_default();
        Unresolved {
            package: node.and_then(|n| n.package.map(str::to_string)),
            path: format!("/{obj}"),
            kind: need.kind,
            needs: need.name,
            layer,
            providers: Vec::new(),
            candidates: need.found.err().unwrap_or_default(),
        }
    }
}

/// One thing a file needs.
pub struct Need {
    pub kind: NeedKind,
    pub name: String,
    /// Its canonical path, or where it would have to be.
    pub found: Result<String, Vec<String>>,
}

impl Need {
    fn new(kind: NeedKind, name: &str, found: Result<String, Vec<String>>) -> Need {
        Need {
            kind,
            name: name.to_string(),
            found,
        }
    }
}

/// The program `#!/usr/bin/env ARG` runs: with options (`-S`, `-i`, `-u
/// NAME`...) the words are env's own parsing, skipping `NAME=value`;
/// without, the whole argument is the program name, as env takes it.
pub fn env_program(arg: &str) -> Option<&str> {
    if !arg.starts_with('-') {
        return Some(arg);
    }
    let mut words = arg.split_whitespace();
    while let Some(w) = words.next() {
        match w {
            "-u" | "--unset" | "-C" | "--chdir" | "-P" => {
                words.next();
            }
            _ if w.starts_with('-') || w.contains('=') => {}
            _ => return Some(w),
        }
    }
    None
}

/// Every file of the image whose needs are not all there.
pub fn findings(env: &Env) -> Vec<Unresolved> {
    let mut out = Vec::new();
    for (path, node) in env.img.iter() {
        let Some((content, exec)) = node.file() else {
            continue;
        };
        // Scripts run only when executable; ELF objects are loaded either way.
        if matches!(content, Content::Script { .. }) && !exec {
            continue;
        }
        for need in env.needs(path, content, &[]) {
            // A library's own interpreter matters only when it is run.
            let runs = exec || need.kind != NeedKind::ElfInterpreter;
            if need.found.is_err() && runs {
                out.push(env.unresolved(path, Some(node), need));
            }
        }
    }
    out
}

/// Why what the config runs (`program`, from `workdir`) cannot start:
/// empty when it can.
pub fn start(env: &Env, program: &str, workdir: &str) -> (Option<String>, Vec<Unresolved>) {
    let mut out = Vec::new();
    match env.program(program, workdir) {
        Ok(p) => {
            startable(env, &p, 0, &mut out);
            (Some(format!("/{p}")), out)
        }
        Err(c) => {
            let need = Need::new(NeedKind::Missing, program, Err(c));
            let mut u = env.unresolved("", None, need);
            u.path = program.to_string();
            out.push(u);
            (None, out)
        }
    }
}

/// Whether the file at `path` (canonical) can be executed, with what it
/// needs, recursively; problems go to `out`.
fn startable(env: &Env, path: &str, depth: usize, out: &mut Vec<Unresolved>) {
    let Some(node) = env.img.get(path) else {
        return;
    };
    let Some((content, exec)) = node.file() else {
        return;
    };
    let problem = |kind| Need::new(kind, &format!("/{path}"), Err(Vec::new()));
    if !exec {
        out.push(env.unresolved(path, Some(node), problem(NeedKind::NotExecutable)));
        return;
    }
    match content {
        Content::Elf(elf) => load(env, path, node, elf, out),
        Content::Script { .. } => {
            for need in env.needs(path, content, &[]) {
                match &need.found {
                    Ok(p) if depth < MAX_DEPTH => startable(env, &p.clone(), depth + 1, out),
                    Ok(_) => {}
                    Err(_) => out.push(env.unresolved(path, Some(node), need)),
                }
            }
        }
        Content::Unread => {}
        _ => out.push(env.unresolved(path, Some(node), problem(NeedKind::NotRunnable))),
    }
}

/// Load the ELF program `exe` as the loader would: its interpreter, and
/// every library it needs, transitively.
fn load(env: &Env, exe: &str, node: Node, elf: &ElfInfo, out: &mut Vec<Unresolved>) {
    if let Some(i) = &elf.interp
        && let Err(c) = env.file(i)
    {
        let need = Need::new(NeedKind::ElfInterpreter, i, Err(c));
        out.push(env.unresolved(exe, Some(node), need));
    }
    // The program's RPATH applies to the libraries it loads.
    let origin = exe.rsplit_once('/').map_or("", |(d, _)| d);
    let inherited: Vec<String> = match elf.runpath.is_empty() {
        true => elf
            .rpath
            .iter()
            .filter_map(|e| env.expand(e, origin))
            .collect(),
        false => Vec::new(),
    };
    let mut seen = BTreeSet::from([exe.to_string()]);
    let mut todo = vec![(exe.to_string(), node, elf.clone())];
    while let Some((obj, n, info)) = todo.pop() {
        for need in env.needs(&obj, &Content::Elf(info.clone()), &inherited) {
            if need.kind != NeedKind::Library {
                continue;
            }
            match &need.found {
                Ok(p) if seen.insert(p.clone()) => {
                    if let Some(lib) = env.img.get(p)
                        && let Some((Content::Elf(e), _)) = lib.file()
                    {
                        todo.push((p.clone(), lib, e.clone()));
                    }
                }
                Ok(_) => {}
                Err(_) => out.push(env.unresolved(&obj, Some(n), need)),
            }
        }
    }
}

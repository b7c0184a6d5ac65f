//! What the configure step runs, decided before anything runs: dpkg's
//! configuration order, the triggers to process, the debconf answers, and
//! the driver script that runs them all in one sandboxed process.
//!
//! * **Order.** Packages are configured dependencies first (over
//!   `Pre-Depends` and `Depends`, every alternative that is being configured
//!   counts), ties and cycles broken by name, as dpkg breaks them: the
//!   result depends only on the package set. `preinst install` runs for all
//!   packages in that order, then `postinst configure`.
//! * **Triggers.** Named triggers activated by the configured packages'
//!   `triggers` files (`activate*`) or by their scripts (`dpkg-trigger`,
//!   read back from dpkg's `triggers/Unincorp` inside the driver), and file
//!   triggers whose interest path is at or above a path a configured
//!   package ships. Every package present in the root (image, base,
//!   toolset) with an `interest*` in an activated trigger runs `postinst
//!   triggered "<names>"`, in name order, after all postinsts.
//! * **Driver.** One POSIX shell script (run by the toolset's `/bin/sh`)
//!   sets dpkg's maintainer-script environment, preseeds debconf, runs each
//!   script, and after each one lists (with `find -cnewer`) the paths it
//!   created or changed, so every change can be traced to a package. In an
//!   overlay root the list walks only the upper directory (bound read-only
//!   at `WORK/upper`): every path a script writes is copied up there, with
//!   the same change time the root shows, and a removal leaves a
//!   whiteout, so the script that removed a path is named too. Elsewhere
//!   it walks the whole root.

use crate::deb::ControlInfo;
use std::collections::{BTreeMap, BTreeSet};

/// Where the driver, its marker and its change lists live in the root
/// (never shipped).
pub const WORK: &str = ".imgforge-configure";

/// A package's control-area files that matter to configuration.
#[derive(Debug, Clone, Default)]
pub struct Scripts {
    pub name: String,
    /// `preinst`, `postinst`, `config`, `templates`, `triggers`.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Scripts {
    fn text(&self, file: &str) -> String {
        self.files
            .get(file)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    /// `(directive, name)` lines of the `triggers` file.
    pub fn triggers(&self) -> Vec<(String, String)> {
        self.text("triggers")
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_string(), it.next()?.to_string()))
            })
            .collect()
    }

    /// Question name -> type, from the `templates` file.
    pub fn template_types(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut name = None;
        for line in self.text("templates").lines() {
            if let Some(n) = line.strip_prefix("Template:") {
                name = Some(n.trim().to_string());
            } else if let Some(t) = line.strip_prefix("Type:")
                && let Some(n) = name.take()
            {
                out.insert(n, t.trim().to_string());
            }
        }
        out
    }
}

/// Package names in dpkg's configuration order.
pub fn order(pkgs: &[(&str, &ControlInfo)]) -> Vec<String> {
    let names: BTreeSet<&str> = pkgs.iter().map(|(n, _)| *n).collect();
    let mut deps: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (n, c) in pkgs {
        let mut d = BTreeSet::new();
        for field in ["Pre-Depends", "Depends"] {
            for clause in c.get(field).unwrap_or("").split([',', '|']) {
                let dep = clause
                    .split(['(', ' ', ':'])
                    .find(|s| !s.is_empty())
                    .unwrap_or("");
                if let Some(&d_name) = names.get(dep)
                    && d_name != *n
                {
                    d.insert(d_name);
                }
            }
        }
        deps.insert(n, d);
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < names.len() {
        let ready = names
            .iter()
            .find(|n| !done.contains(*n) && deps[*n].iter().all(|d| done.contains(d)));
        // A cycle: take the first remaining package by name, as dpkg
        // configures one member of a cycle first.
        let next = ready.or_else(|| names.iter().find(|n| !done.contains(*n)));
        let next = *next.expect("a package remains");
        done.insert(next);
        out.push(next.to_string());
    }
    out
}

/// Triggers activated by the configured packages (names and file paths),
/// before any script runs.
pub fn activated(configured: &[&Scripts], shipped: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in configured {
        for (d, name) in s.triggers() {
            if d.starts_with("activate") {
                out.insert(name);
            }
        }
    }
    // File triggers are matched against interests in `interests`.
    for p in shipped {
        out.insert(format!("/{p}"));
    }
    out
}

/// Interested package -> trigger names (or paths) it is interested in.
pub fn interests(present: &[&Scripts]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in present {
        for (d, name) in s.triggers() {
            if d.starts_with("interest") {
                out.entry(s.name.clone()).or_default().insert(name);
            }
        }
    }
    out
}

/// Single-quote a string for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// One script run by the driver: `(package, script, args)`.
pub type Run = (String, String, Vec<String>);

/// The driver's inputs.
pub struct Driver<'a> {
    pub runs: &'a [Run],
    /// `owner question type value` lines for `debconf-set-selections`.
    pub selections: &'a [String],
    /// Interested package -> interests, for triggers.
    pub interests: &'a BTreeMap<String, BTreeSet<String>>,
    /// Triggers activated before any script ran.
    pub activated: &'a BTreeSet<String>,
    pub arch: &'a str,
}

/// The driver script. Runs are numbered from 1; run `n` writes its change
/// list to `WORK/changes/<n>`; a failing script stops the driver with exit
/// code 100 after printing `imgforge-configure-failed: <n> <code>`.
pub fn driver(d: &Driver<'_>) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        r#"#!/bin/sh
# Generated by imgforge: runs maintainer scripts as dpkg would.
set -u
W=/{WORK}
export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true
export DEBCONF_NOWARNINGS=yes DPKG_ADMINDIR=/var/lib/dpkg DPKG_ROOT=
export DPKG_MAINTSCRIPT_ARCH={arch} DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1
export DPKG_RUNNING_VERSION=1.21.23 DPKG_COLORS=never
mkdir -p /var/lib/dpkg/triggers /var/lib/dpkg/updates /var/lib/dpkg/alternatives "$W/changes"
# dpkg-trigger records activations only where this file exists (else it
# takes dpkg for one without deferred triggers and records nothing).
[ -e /var/lib/dpkg/triggers/Unincorp ] || : > /var/lib/dpkg/triggers/Unincorp
: > /var/lib/dpkg/status
for f in /var/lib/dpkg/status.d/*; do
  case "$f" in *.md5sums) ;; *) cat "$f" >> /var/lib/dpkg/status; echo >> /var/lib/dpkg/status ;; esac
done
changed() {{
  if [ -d "$W/upper$W" ]; then
    U=$W/upper
    find "$U" -xdev \( -path "$U$W" -o -path "$U/proc" -o -path "$U/sys" -o -path "$U/dev" -o -path "$U/tmp" \) -prune \
      -o -cnewer "$W/mark" -printf '/%P\n' > "$W/changes/$1" 2>/dev/null || true
  else
    find / -xdev \( -path "$W" -o -path /proc -o -path /sys -o -path /dev -o -path /tmp \) -prune \
      -o -cnewer "$W/mark" -print > "$W/changes/$1" 2>/dev/null || true
  fi
}}
run() {{
  n=$1; pkg=$2; script=$3; shift 3
  f=/var/lib/dpkg/info/$pkg.$script
  [ -e "$f" ] || return 0
  echo "imgforge-configure: $pkg $script $*"
  touch "$W/mark"
  DPKG_MAINTSCRIPT_PACKAGE=$pkg DPKG_MAINTSCRIPT_NAME=$script "$f" "$@" < /dev/null
  rc=$?
  changed "$n"
  if [ "$rc" -ne 0 ]; then
    echo "imgforge-configure-failed: $n $rc"
    exit 100
  fi
}}
"#,
        arch = d.arch
    ));
    if !d.selections.is_empty() {
        s.push_str("touch \"$W/mark\"\ndebconf-set-selections <<'IMGFORGE_EOF' || { echo \"imgforge-configure-failed: 0 $?\"; exit 100; }\n");
        for l in d.selections {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("IMGFORGE_EOF\n");
    }
    for (i, (pkg, script, args)) in d.runs.iter().enumerate() {
        let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
        s.push_str(&format!(
            "run {} {} {} {}\n",
            i + 1,
            sh_quote(pkg),
            script,
            args.join(" ")
        ));
    }
    s.push_str(&triggers_part(d));
    s
}

/// The trigger phase: activations known up front plus those recorded by
/// `dpkg-trigger` during the scripts; each interested package once.
fn triggers_part(d: &Driver<'_>) -> String {
    let mut s = String::from("# Triggers.\nact=$(mktemp)\n");
    for a in d.activated {
        if !a.starts_with('/') {
            s.push_str(&format!("echo {} >> \"$act\"\n", sh_quote(a)));
        }
    }
    s.push_str(
        "[ -f /var/lib/dpkg/triggers/Unincorp ] && cut -d' ' -f1 /var/lib/dpkg/triggers/Unincorp >> \"$act\"\n",
    );
    let mut n = d.runs.len();
    for (pkg, names) in d.interests {
        let mut files = Vec::new();
        let mut named = Vec::new();
        for i in names {
            if i.starts_with('/') {
                let hit = d
                    .activated
                    .iter()
                    .any(|a| a == i || a.starts_with(&format!("{}/", i.trim_end_matches('/'))));
                if hit {
                    files.push(i.clone());
                }
            } else {
                named.push(i.clone());
            }
        }
        n += 1;
        // Names: those of its interests found in the activation list.
        let files_q: Vec<String> = files.iter().map(|f| sh_quote(f)).collect();
        let named_q: Vec<String> = named.iter().map(|f| sh_quote(f)).collect();
        s.push_str(&format!(
            "t=\"{files}\"\nfor i in {named}; do grep -qxF \"$i\" \"$act\" && t=\"${{t:+$t }}$i\"; done\n[ -n \"$t\" ] && run {n} {pkg} postinst triggered \"$t\"\n",
            files = files_q
                .iter()
                .map(|f| f.trim_matches('\''))
                .collect::<Vec<_>>()
                .join(" "),
            named = if named_q.is_empty() {
                "''".to_string()
            } else {
                named_q.join(" ")
            },
            pkg = sh_quote(pkg),
        ));
    }
    s.push_str("rm -f \"$act\"\nexit 0\n");
    s
}

/// Number of trigger runs the driver may make (one per interested package).
pub fn trigger_runs(interests: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    interests.keys().cloned().collect()
}
